//! Harness for tests against a real Kubernetes API server.
//!
//! The cluster is the one `KUBECONFIG` names (a kind cluster in hosted CI)
//! or, when it is unset, the local control plane of `hack/testenv`, brought
//! up once per test run (`up` is idempotent and reuses a running one).
//! Each test gets its own namespace; waits poll a condition with a timeout
//! and fail with what they saw last.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod dl;
pub mod nodes;
pub mod plane;
pub mod realnode;

use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the cluster under test, bringing up the local control
/// plane on first use when KUBECONFIG is not set.
pub fn kubeconfig_path() -> PathBuf {
    KUBECONFIG
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
                return PathBuf::from(p);
            }
            let out = Command::new(repo_root().join("hack/testenv"))
                .arg("up")
                .stderr(Stdio::inherit())
                .output()
                .expect("running hack/testenv up");
            assert!(
                out.status.success(),
                "hack/testenv up failed (exit {:?}); see its output above",
                out.status.code()
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let path = stdout
                .lines()
                .find_map(|l| l.strip_prefix("export KUBECONFIG="))
                .unwrap_or_else(|| panic!("hack/testenv up printed no KUBECONFIG line:\n{stdout}"));
            PathBuf::from(path.trim())
        })
        .clone()
}

pub async fn config() -> Config {
    let path = kubeconfig_path();
    let kc = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable")
}

pub async fn client() -> Client {
    Client::try_from(config().await).expect("client from kubeconfig")
}

/// A client that acts as `user` (and `groups`) through impersonation.
pub async fn impersonating(user: &str, groups: &[&str]) -> Client {
    let mut cfg = config().await;
    cfg.auth_info.impersonate = Some(user.to_string());
    cfg.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(cfg).expect("impersonating client")
}

/// Polls `probe` every 200 ms until it yields `Ok`, or panics after
/// `timeout` with `what` and the last thing the probe reported.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last saw: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A throw-away namespace. Deleted by `cleanup` when the test passes; left
/// in place for inspection when it fails.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let suffix: u32 = rand_suffix();
        let name = format!("{}-{:06x}", prefix, suffix & 0xff_ffff);
        Self::create(client().await, &name).await
    }

    /// Creates namespace `name` through `client` (a private control plane's,
    /// say) and waits until pods can be created in it.
    pub async fn create(client: Client, name: &str) -> Self {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"dlite.dev/test": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating test namespace");
        // Pods cannot be created until the service-account controller has
        // made the namespace's default ServiceAccount.
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        wait_for(
            "the default ServiceAccount",
            Duration::from_secs(30),
            || async {
                sas.get_opt("default")
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "not yet".to_string())
            },
        )
        .await;
        TestNamespace {
            name: name.to_string(),
            client,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + Debug,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits for an event of `reason` in the namespace that `matches`, and
    /// returns it; on timeout, says which reasons it saw instead.
    pub async fn wait_for_event(
        &self,
        reason: &str,
        timeout: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Event {
        let events: Api<Event> = self.api();
        let (events, matches) = (&events, &matches);
        wait_for(
            &format!("a matching {reason} event"),
            timeout,
            || async move {
                let list = events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .iter()
                    .find(|e| e.reason.as_deref() == Some(reason) && matches(e))
                    .cloned()
                    .ok_or_else(|| {
                        let seen: Vec<String> = list
                            .items
                            .iter()
                            .map(|e| {
                                format!(
                                    "{} {}: {}",
                                    e.reason.as_deref().unwrap_or(""),
                                    e.involved_object.name.as_deref().unwrap_or(""),
                                    e.message.as_deref().unwrap_or("")
                                )
                            })
                            .collect();
                        format!("events: {seen:?}")
                    })
            },
        )
        .await
    }

    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// A process of one of the project's binaries, killed when dropped. Its
/// output goes to target/test-logs/<name>.log, named in failures.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn start(bin: &str, name: &str, args: &[&str]) -> Self {
        Self::start_against(bin, name, args, &kubeconfig_path())
    }

    /// Like `start`, against the cluster `kubeconfig` names (a control
    /// plane of the test's own).
    pub fn start_against(
        bin: &str,
        name: &str,
        args: &[&str],
        kubeconfig: &std::path::Path,
    ) -> Self {
        let dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,dlite=debug".into()),
            )
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Process { child, log }
    }

    /// SIGKILL: no chance to finish anything, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET http://127.0.0.1:port/path over plain HTTP/1.0: (status code, body).
/// For the components' /metrics, /healthz and /readyz endpoints.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connecting to :{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response {raw:?}"))?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value of an unlabelled series in a metrics page.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(&format!("{name} "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The helm to run: `$HELM`, else the one `hack/testenv build` built (with
/// its version flags, so a chart's kubeVersion is checked), else `helm` on
/// PATH.
pub fn helm_bin() -> PathBuf {
    if let Some(h) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Ok(out) = Command::new(repo_root().join("hack/testenv"))
        .arg("helm-bin-dir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("helm").is_file() {
            return dir.join("helm");
        }
    }
    PathBuf::from("helm")
}
