//! Flags every long-running component shares: where to serve metrics and
//! health, how to elect a leader, and how to reach the API server.

use std::net::SocketAddr;

#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Address of the Prometheus /metrics endpoint ("0" disables it).
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "DLITE_METRICS_BIND_ADDRESS"
    )]
    pub metrics_bind_address: String,
    /// Address of the /healthz and /readyz endpoints ("0" disables them).
    #[arg(
        long,
        default_value = "0.0.0.0:8081",
        env = "DLITE_HEALTH_PROBE_BIND_ADDRESS"
    )]
    pub health_probe_bind_address: String,
    /// Elect a leader on a coordination.k8s.io Lease; only the leader acts.
    /// `--leader-elect` alone means true, as in controller-runtime.
    #[arg(
        long,
        env = "DLITE_LEADER_ELECT",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = crate::flags::parse_bool
    )]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "DLITE_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (default: the component's name).
    #[arg(long, env = "DLITE_LEADER_ELECTION_ID")]
    pub leader_election_id: Option<String>,
    /// How long a leader's claim lasts without renewal; a standby takes
    /// over at most this long after the leader stops renewing.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration_seconds: u64,
    /// This process's identity in the Lease (default: $POD_NAME, else host and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl RuntimeArgs {
    /// Parses an address flag; "0" (or empty) turns the endpoint off.
    pub fn addr(flag: &str, value: &str) -> anyhow::Result<Option<SocketAddr>> {
        if value.is_empty() || value == "0" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|e| {
            anyhow::anyhow!("--{flag}: {value:?} is not an address like 0.0.0.0:8080: {e}")
        })
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_else(|_| "localhost".into());
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    pub fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}

/// How to reach the API server, as kubectl and kube-scheduler take it: one
/// definition for dlite-controller, dlite-scheduler and kubectl-dlite.
/// The flags are global so the plugin takes them before or after its verb.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config,
    /// else the in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClientArgs {
    /// The client configuration these flags select. Without either flag it
    /// is kube's inference (kubeconfig, else in-cluster), as before.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        Ok(match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    anyhow::anyhow!("--kubeconfig: reading {}: {e}", path.display())
                })?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| anyhow::anyhow!("--context {context}: {e}"))?,
            (None, None) => kube::Config::infer().await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Both {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    fn parse(args: &[&str]) -> Result<Both, clap::Error> {
        Both::try_parse_from(std::iter::once("bin").chain(args.iter().copied()))
    }

    #[test]
    fn leader_elect_works_bare_and_with_a_value() {
        for (args, want) in [
            (&[][..], false),
            (&["--leader-elect"][..], true),
            (&["--leader-elect=true"][..], true),
            (&["--leader-elect=false"][..], false),
            (&["--leader-elect=1"][..], true),
            (&["--leader-elect=False"][..], false),
        ] {
            assert_eq!(parse(args).unwrap().runtime.leader_elect, want, "{args:?}");
        }
        // pflag reads `--leader-elect false` as the flag plus an argument.
        assert!(parse(&["--leader-elect", "false"]).is_err());
        let e = parse(&["--leader-elect=yes"]).unwrap_err().to_string();
        assert!(e.contains(r#"invalid boolean "yes""#), "{e}");
    }

    #[test]
    fn client_flags() {
        let b = parse(&["--kubeconfig", "/k", "--context=c"]).unwrap();
        assert_eq!(
            b.client,
            ClientArgs {
                kubeconfig: Some("/k".into()),
                context: Some("c".into())
            }
        );
        assert_eq!(parse(&[]).unwrap().client, ClientArgs::default());
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named() {
        let args = ClientArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            context: None,
        };
        let e = args.config().await.unwrap_err().to_string();
        assert!(
            e.starts_with("--kubeconfig: reading /nonexistent/kubeconfig"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_unknown_context_is_named() {
        let dir = std::env::temp_dir().join(format!("dlite-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: here\n  context: {cluster: c, user: u, namespace: ns1}\ncurrent-context: here\n",
        )
        .unwrap();
        let ok = ClientArgs {
            kubeconfig: Some(path.clone()),
            context: Some("here".into()),
        };
        assert_eq!(ok.config().await.unwrap().default_namespace, "ns1");
        let bad = ClientArgs {
            kubeconfig: Some(path.clone()),
            context: Some("elsewhere".into()),
        };
        let e = bad.config().await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("--kubeconfig {}", path.display())),
            "{e}"
        );
        assert!(e.contains("elsewhere"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
