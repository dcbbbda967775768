//! Private `hack/testenv` control planes, for suites that must own theirs:
//! the fault suite kills and freezes its processes, and the scheduler
//! conformance suite needs a cluster whose every node is its own ("0/N
//! nodes are available" counts them all).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Why this run cannot own a control plane, if it cannot: that needs
/// `hack/testenv`'s binaries, which are built only for the local setup.
/// `what` says what the suite does with its plane, for the message.
pub fn skip_reason(what: &str) -> Option<String> {
    let bin_dir = Command::new(super::repo_root().join("hack/testenv"))
        .arg("bin-dir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let built = bin_dir.is_some_and(|d| d.join("kube-apiserver").is_file());
    let foreign = std::env::var_os("KUBECONFIG").is_some_and(|k| !k.is_empty());
    (!built && foreign).then(|| {
        format!(
            "skipped: {what}, so it needs a control plane of its own from hack/testenv, whose \
             binaries are not built here; KUBECONFIG names a cluster this suite does not own"
        )
    })
}

/// A port below the ephemeral range (so no outgoing connection holds it by
/// chance) that nothing listens on now.
pub fn fixed_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A private `hack/testenv` control plane, taken down when dropped (its
/// logs are copied to target/test-logs first when the test failed).
pub struct ControlPlane {
    pub tag: String,
    pub dir: PathBuf,
    pub env: Vec<(&'static str, String)>,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts one in /tmp/dlite-`suite`-`tag`-PID on free ports, without a
    /// real node, with `nodes` kwok nodes and `env` for hack/testenv.
    pub fn up(
        suite: &str,
        tag: &str,
        nodes: usize,
        env: Vec<(&'static str, String)>,
    ) -> ControlPlane {
        let dir = PathBuf::from(format!("/tmp/dlite-{suite}-{tag}-{}", std::process::id()));
        let mut all = vec![
            ("DLITE_TESTENV_DIR", dir.display().to_string()),
            ("DLITE_APISERVER_PORT", fixed_port().to_string()),
            ("DLITE_ETCD_PORT", fixed_port().to_string()),
            ("DLITE_ETCD_PEER_PORT", fixed_port().to_string()),
            ("DLITE_REAL_NODE", "0".to_string()),
        ];
        all.extend(env);
        let mut cp = ControlPlane {
            tag: format!("{suite}-{tag}"),
            dir,
            env: all,
            kubeconfig: PathBuf::new(),
        };
        let started = Instant::now();
        let out = cp.testenv(&["up", "--nodes", &nodes.to_string()]);
        let path = out
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .unwrap_or_else(|| panic!("hack/testenv up printed no KUBECONFIG line:\n{out}"));
        cp.kubeconfig = PathBuf::from(path.trim());
        eprintln!(
            "[{}] private control plane up in {:.0?} ({})",
            cp.tag,
            started.elapsed(),
            cp.dir.display()
        );
        cp
    }

    /// Runs hack/testenv against this control plane; its stdout.
    pub fn testenv(&self, args: &[&str]) -> String {
        let out = Command::new(super::repo_root().join("hack/testenv"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("running hack/testenv");
        assert!(
            out.status.success(),
            "hack/testenv {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn port(&self, var: &str) -> u16 {
        self.env
            .iter()
            .find(|(k, _)| *k == var)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap()
    }

    /// An admin client whose requests fail fast when the API server does
    /// not answer.
    pub async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        cfg.connect_timeout = Some(Duration::from_secs(2));
        cfg.read_timeout = Some(Duration::from_secs(10));
        Client::try_from(cfg).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let keep =
                super::repo_root().join(format!("target/test-logs/{}-control-plane", self.tag));
            let _ = std::fs::remove_dir_all(&keep);
            let _ = Command::new("cp")
                .arg("-r")
                .arg(self.dir.join("logs"))
                .arg(&keep)
                .status();
            eprintln!(
                "[{}] control plane logs kept in {}",
                self.tag,
                keep.display()
            );
        }
        let _ = Command::new(super::repo_root().join("hack/testenv"))
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}
