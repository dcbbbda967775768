//! The shipped container image, as `make image` (hack/image) builds it with
//! podman on this machine:
//!
//! - its layout is what the Dockerfile's final stage says (the Dockerfile
//!   is what hosted CI builds with a Docker engine): the same files at the
//!   same paths, user, command, no entrypoint, the same labels; every binary
//!   in it is static and runs on the empty base;
//! - run as the chart runs it (the chart's command line, environment and
//!   ServiceAccount, as user 65532 with a read-only root filesystem and no
//!   capabilities, on the host network) against the cluster under test, the
//!   controller takes its Lease, rolls a DeploymentLite out and serves
//!   `/metrics`.
//!
//! Needs podman and the image: `make image` installs the one and builds the
//! other. The image is $DLITE_IMAGE, else the reference `make image` tags by
//! default (the chart's default image).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use serde_json::{Value, json};
use support::{TestNamespace, kubeconfig_path, repo_root, wait_for};

/// What this machine's podman needs to run a container (found by trying):
/// crun refuses the hybrid cgroup v1/v2 layout, so runc; no systemd, so
/// cgroupfs; and the default ulimits (nofile 1048576, nproc 32768) are
/// refused, so lower ones that are still plenty for one process.
const PODMAN_GLOBAL: &[&str] = &["--runtime", "runc", "--cgroup-manager=cgroupfs"];
const PODMAN_RUN_LIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// What `make image` tags by default: the chart's default image.
fn default_image() -> String {
    format!(
        "ghcr.io/dlite-dev/deploymentlite:{}",
        env!("CARGO_PKG_VERSION")
    )
}

fn image() -> String {
    std::env::var("DLITE_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(default_image)
}

/// Runs podman (with this machine's global flags); a missing podman fails
/// the test saying how to get it.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(PODMAN_GLOBAL)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running podman: {e}. The image tests need podman and the image: run `make image` \
                 (it installs podman and runc with apt-get and builds {})",
                image()
            )
        })
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman image inspect` of the image, failing clearly when it was never
/// built.
fn inspect_image() -> Value {
    let image = image();
    let out = podman(&["image", "inspect", &image]);
    assert!(
        out.status.success(),
        "image {image} is not in podman's store: run `make image` to build it ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("podman image inspect prints JSON");
    v[0].clone()
}

// ---------------------------------------------------------------------------
// The Dockerfile

/// One instruction: keyword (upper case) and its arguments, continuation
/// lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (kw, rest) = current
                    .trim()
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((kw.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// `key="value" key2=value2 ...` of a LABEL instruction.
fn label_pairs(args: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("LABEL key=value");
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote in LABEL");
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        pairs.push((key.trim().to_string(), value.to_string()));
        rest = after.trim();
    }
    pairs
}

/// What the Dockerfile's final stage produces.
#[derive(Debug)]
struct FinalStage {
    base: String,
    /// Paths of the files it copies in.
    files: BTreeSet<String>,
    user: Option<String>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
}

fn dockerfile_final_stage() -> FinalStage {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("reading Dockerfile");
    let all = instructions(&text);
    let stage_starts: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    let last = *stage_starts.last().expect("a FROM in the Dockerfile");
    let (build, final_) = (&all[..last], &all[last..]);

    // The build stage's /out/: the files its RUN copies there.
    let run = build
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a)
        .find(|a| a.contains(" /out/"))
        .expect("a RUN in the build stage that fills /out/");
    let after_cp = run
        .split("&& cp ")
        .nth(1)
        .expect("`&& cp ... /out/` in the build stage");
    let out_files: Vec<String> = after_cp
        .split_whitespace()
        .take_while(|t| *t != "/out/")
        .map(|t| {
            Path::new(t)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // The same binaries the cargo command builds.
    let bins: BTreeSet<String> = run
        .split("--bin ")
        .skip(1)
        .map(|s| s.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        out_files.iter().cloned().collect::<BTreeSet<_>>(),
        bins,
        "the Dockerfile copies to /out/ exactly the binaries it builds"
    );

    let mut stage = FinalStage {
        base: final_[0].1.clone(),
        files: BTreeSet::new(),
        user: None,
        cmd: None,
        entrypoint: None,
        labels: BTreeMap::new(),
    };
    for (kw, args) in &final_[1..] {
        match kw.as_str() {
            "COPY" => {
                let parts: Vec<&str> = args.split_whitespace().collect();
                assert_eq!(
                    parts[..2],
                    ["--from=build", "/out/"],
                    "the final stage copies only the build stage's /out/: {args}"
                );
                let dest = parts[2].trim_end_matches('/');
                for f in &out_files {
                    stage.files.insert(format!("{dest}/{f}"));
                }
            }
            "USER" => stage.user = Some(args.clone()),
            "CMD" => stage.cmd = Some(serde_json::from_str(args).expect("CMD in JSON form")),
            "ENTRYPOINT" => {
                stage.entrypoint =
                    Some(serde_json::from_str(args).expect("ENTRYPOINT in JSON form"))
            }
            "LABEL" => stage.labels.extend(label_pairs(args)),
            other => panic!(
                "the final stage has a {other} instruction this test does not compare; teach it"
            ),
        }
    }
    stage
}

#[test]
fn dockerfile_parser_reads_the_instructions() {
    let text = "FROM a AS b\n# c\nRUN x \\\n  && y\n\nLABEL k=\"v w\" \\\n  k2=v2\nCMD [\"/p\"]\n";
    assert_eq!(
        instructions(text),
        vec![
            ("FROM".into(), "a AS b".into()),
            ("RUN".into(), "x  && y".into()),
            ("LABEL".into(), "k=\"v w\"  k2=v2".into()),
            ("CMD".into(), "[\"/p\"]".into()),
        ]
    );
    assert_eq!(
        label_pairs("k=\"v w\"  k2=v2"),
        vec![("k".into(), "v w".into()), ("k2".into(), "v2".into())]
    );
}

// ---------------------------------------------------------------------------
// The image's filesystem

/// One entry of the image's filesystem.
#[derive(Debug, Clone)]
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    /// The first bytes of a regular file (enough for the ELF headers).
    head: Vec<u8>,
}

/// The image's filesystem: its layers (from `podman image save` as a
/// docker-dir, uncompressed) applied in order, whiteouts included.
fn image_filesystem(image: &str) -> BTreeMap<String, Entry> {
    let dir = tempdir("image-save");
    let dir_s = dir.display().to_string();
    podman_ok(&[
        "image",
        "save",
        "--format",
        "docker-dir",
        "-o",
        &dir_s,
        image,
    ]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut fs: BTreeMap<String, Entry> = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().unwrap();
        let blob = dir.join(digest.trim_start_matches("sha256:"));
        let mut archive = tar::Archive::new(std::fs::File::open(&blob).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = format!(
                "/{}",
                entry
                    .path()
                    .unwrap()
                    .display()
                    .to_string()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
            );
            let (parent, name) = path.rsplit_once('/').unwrap();
            if name == ".wh..wh..opq" {
                let prefix = format!("{parent}/");
                fs.retain(|p, _| !p.starts_with(&prefix));
                continue;
            }
            if let Some(gone) = name.strip_prefix(".wh.") {
                let gone = format!("{parent}/{gone}");
                fs.retain(|p, _| *p != gone && !p.starts_with(&format!("{gone}/")));
                continue;
            }
            let header = entry.header().clone();
            let mut head = Vec::new();
            if header.entry_type() == tar::EntryType::Regular {
                (&mut entry).take(64 * 1024).read_to_end(&mut head).unwrap();
            }
            fs.insert(
                path,
                Entry {
                    kind: header.entry_type(),
                    mode: header.mode().unwrap() & 0o7777,
                    uid: header.uid().unwrap(),
                    gid: header.gid().unwrap(),
                    head,
                },
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    fs
}

/// Whether an ELF executable asks for a program interpreter (the dynamic
/// loader, which an empty base does not have): a PT_INTERP program header.
fn elf_interpreter(head: &[u8]) -> Result<bool, String> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if head[4] != 2 || head[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    let end = phoff + phentsize * phnum;
    if end > head.len() {
        return Err(format!("program headers end at {end}, past what was read"));
    }
    const PT_INTERP: u32 = 3;
    Ok((0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(head[o..o + 4].try_into().unwrap()) == PT_INTERP
    }))
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = repo_root()
        .join("target/test-logs")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn image_layout_matches_the_dockerfile() {
    let stage = dockerfile_final_stage();
    let image = image();
    let inspect = inspect_image();
    let config = &inspect["Config"];

    // Nothing pulled: both start from an empty base.
    assert_eq!(stage.base, "scratch", "the Dockerfile's final stage base");

    assert_eq!(
        config["User"].as_str(),
        stage.user.as_deref(),
        "USER of {image} vs the Dockerfile"
    );
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
    };
    assert_eq!(strings(&config["Cmd"]), stage.cmd, "CMD of {image}");
    assert_eq!(
        strings(&config["Entrypoint"]).filter(|e| !e.is_empty()),
        stage.entrypoint,
        "ENTRYPOINT of {image}"
    );
    // podman stamps its own version as a label (io.buildah.version); every
    // other label is the Dockerfile's.
    let labels: BTreeMap<String, String> = config["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "io.buildah.version")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(labels, stage.labels, "labels of {image} vs the Dockerfile");

    // The filesystem: exactly the Dockerfile's files and the directories
    // that hold them, owned by root and executable by anyone.
    let fs = image_filesystem(&image);
    let files: BTreeSet<&String> = fs
        .iter()
        .filter(|(_, e)| !e.kind.is_dir())
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        files,
        stage.files.iter().collect::<BTreeSet<_>>(),
        "files in {image} vs the Dockerfile's final stage"
    );
    let dirs: BTreeSet<&String> = fs
        .iter()
        .filter(|(_, e)| e.kind.is_dir())
        .map(|(p, _)| p)
        .collect();
    let parents: BTreeSet<String> = stage
        .files
        .iter()
        .flat_map(|f| {
            Path::new(f)
                .ancestors()
                .skip(1)
                .map(|a| a.display().to_string())
                .filter(|a| a != "/")
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        dirs,
        parents.iter().collect::<BTreeSet<_>>(),
        "directories in {image}: only those holding the binaries"
    );
    for (path, e) in &fs {
        assert_eq!((e.uid, e.gid), (0, 0), "{path} in {image} is owned by root");
        let want = 0o755;
        assert_eq!(e.mode, want, "{path} in {image} has mode {:o}", e.mode);
        if e.kind == tar::EntryType::Regular {
            let interp = elf_interpreter(&e.head).unwrap_or_else(|err| panic!("{path}: {err}"));
            assert!(
                !interp,
                "{path} in {image} is dynamically linked (PT_INTERP)"
            );
        }
    }

    // Each binary runs on the empty base, as the image's user.
    for path in &stage.files {
        let entrypoint = format!("--entrypoint={path}");
        let mut args = vec!["run", "--rm", "--pull=never", "--network=none"];
        args.extend_from_slice(PODMAN_RUN_LIMITS);
        args.extend([entrypoint.as_str(), image.as_str(), "--help"]);
        let out = podman_ok(&args);
        assert!(
            out.contains("Usage"),
            "{path} --help in {image} printed no usage:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Against the cluster

fn helm(args: &[&str]) -> String {
    let bin = support::helm_bin();
    let out = Command::new(&bin)
        .args(args)
        .current_dir(repo_root())
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (set $HELM or run hack/testenv build)",
                bin.display()
            )
        });
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The API server of the cluster under test: host, port and its CA (PEM).
/// It must be on a loopback address: the container shares the host's
/// network and nothing here may dial anything else.
async fn api_server() -> (String, u16, Vec<u8>) {
    let server = support::config().await.cluster_url;
    let host = server
        .host()
        .expect("the API server's URL has a host")
        .trim_matches(['[', ']'])
        .to_string();
    let ip: std::net::IpAddr = host
        .parse()
        .unwrap_or_else(|_| panic!("the API server's host {host} is not an IP address"));
    assert!(
        ip.is_loopback(),
        "the API server is at {server}; this test runs the container on the host network \
         and dials loopback addresses only"
    );
    let path = kubeconfig_path();
    let kc = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let context = kc.current_context.clone().expect("current-context");
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .expect("the current context");
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .expect("the current context's cluster");
    let port = server.port_u16().unwrap_or(443);
    let ca = if let Some(file) = &cluster.certificate_authority {
        std::fs::read(file).unwrap_or_else(|e| panic!("reading {file}: {e}"))
    } else if let Some(data) = &cluster.certificate_authority_data {
        // k8s-openapi's ByteString is base64 on the wire.
        serde_json::from_value::<k8s_openapi::ByteString>(json!(data))
            .expect("certificate-authority-data is base64")
            .0
    } else {
        panic!("the kubeconfig's cluster names no CA; a pod always has one (ca.crt)")
    };
    (host, port, ca)
}

/// The files a pod of `sa` gets at /var/run/secrets/kubernetes.io/serviceaccount:
/// a fresh token from the TokenRequest API, the cluster's CA, the namespace.
async fn service_account_files(client: &Client, ns: &str, sa: &str, ca: &[u8], dir: &Path) {
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let tr: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource("token", sa, &PostParams::default(), &tr)
        .await
        .expect("a token for the ServiceAccount");
    let token = tr
        .status
        .and_then(|s| s.token)
        .expect("status.token of the TokenRequest");
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca).unwrap();
    std::fs::write(dir.join("namespace"), ns).unwrap();
    // The kubelet projects these files 0644 (defaultMode 420); the
    // container runs as 65532.
    use std::os::unix::fs::PermissionsExt;
    for f in ["token", "ca.crt", "namespace"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A podman container, removed (after saving its log to target/test-logs)
/// when dropped.
struct PodmanContainer {
    name: String,
    log: PathBuf,
}

impl PodmanContainer {
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self) -> Value {
        let v: Value =
            serde_json::from_str(&podman_ok(&["container", "inspect", &self.name])).unwrap();
        v[0].clone()
    }

    /// Still running and never refused anything by the API server.
    fn assert_healthy(&self) {
        let state = &self.inspect()["State"];
        let logs = self.logs();
        assert_eq!(
            state["Running"],
            json!(true),
            "container {} is not running ({state}); log:\n{logs}",
            self.name
        );
        assert!(
            !logs.to_lowercase().contains("forbidden") && !logs.contains("code: 403"),
            "container {} was refused something by the API server; log:\n{logs}",
            self.name
        );
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.log, self.logs());
        let _ = podman(&["rm", "--force", "--time", "2", &self.name]);
    }
}

/// The value of `--flag=value` in args.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

/// A memory quantity (as the chart writes them: 256Mi, 1Gi, plain bytes)
/// in bytes.
fn memory_bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (n, mult) = units
        .iter()
        .find_map(|(suffix, m)| Some((q.strip_suffix(suffix)?, *m)))
        .unwrap_or((q, 1));
    n.parse::<u64>()
        .unwrap_or_else(|_| panic!("memory quantity {q:?} not understood here"))
        * mult
}

/// A CPU quantity (500m, 1, 1.5) as podman's --cpus.
fn cpus(q: &str) -> String {
    match q.strip_suffix('m') {
        Some(milli) => {
            let m: u64 = milli
                .parse()
                .unwrap_or_else(|_| panic!("cpu quantity {q:?}"));
            format!("{}.{:03}", m / 1000, m % 1000)
        }
        None => {
            q.parse::<f64>()
                .unwrap_or_else(|_| panic!("cpu quantity {q:?}"));
            q.to_string()
        }
    }
}

#[test]
fn quantities_convert_for_podman() {
    assert_eq!(memory_bytes("256Mi"), 256 * 1024 * 1024);
    assert_eq!(memory_bytes("1Gi"), 1 << 30);
    assert_eq!(memory_bytes("1000"), 1000);
    assert_eq!(cpus("500m"), "0.500");
    assert_eq!(cpus("1"), "1");
}

/// The line `key:\tvalue` of /proc/PID/status.
fn proc_status(pid: i64, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids (real, effective, saved, filesystem) of `key` ("Uid" or "Gid")
/// of process `pid` as its own user namespace sees them: /proc shows host
/// ids, which differ under rootless podman; `{uid,gid}_map` maps them back
/// (the identity map when podman runs as root).
fn ids_in_container(pid: i64, key: &str) -> Vec<u64> {
    let map_file = format!("/proc/{pid}/{}_map", key.to_lowercase());
    let map: Vec<(u64, u64, u64)> = std::fs::read_to_string(&map_file)
        .unwrap_or_else(|e| panic!("reading {map_file}: {e}"))
        .lines()
        .map(|l| {
            let n: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (n[0], n[1], n[2])
        })
        .collect();
    proc_status(pid, key)
        .split(' ')
        .map(|id| {
            let host: u64 = id.parse().unwrap();
            map.iter()
                .find(|(_, outside, count)| (*outside..outside + count).contains(&host))
                .map(|(inside, outside, _)| inside + (host - outside))
                .unwrap_or_else(|| panic!("host id {host} is not in {map_file}: {map:?}"))
        })
        .collect()
}

#[tokio::test]
async fn image_runs_the_charts_controller_against_the_cluster() {
    let image = image();
    inspect_image();
    let (api_host, api_port, ca) = api_server().await;
    let client = support::client().await;
    support::dl::install_crd(&client).await;
    let ns = TestNamespace::new("t-image").await;
    let apps = TestNamespace::new("t-image-apps").await;
    let release = ns.name.clone();

    // The chart's objects without its pods (the container below is the pod):
    // ServiceAccount, RBAC and a Deployment to read the command line from.
    helm(&[
        "install",
        &release,
        "charts/deploymentlite",
        "--namespace",
        &ns.name,
        "--set",
        &format!(
            // crds.enabled=false: the suite installs the CRD itself, and a CRD
            // can belong to one Helm release only.
            "crds.enabled=false,controller.replicas=0,scheduler.replicas=0,controller.watchNamespace={},scheduler.schedulerName={release}-sched",
            apps.name
        ),
        "--wait",
        "--timeout",
        "120s",
    ]);
    let deployments: Api<Deployment> = ns.api();
    let controller = deployments
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={release},app.kubernetes.io/component=controller"
        )))
        .await
        .unwrap()
        .items
        .pop()
        .expect("the chart's controller Deployment");
    let pod_spec = controller.spec.unwrap().template.spec.unwrap();
    let sa = pod_spec
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    let c: Container = pod_spec.containers[0].clone();
    assert_eq!(
        c.image.as_deref(),
        Some(default_image().as_str()),
        "the chart's default image is the one `make image` tags"
    );

    // The chart's security settings, applied below as podman flags.
    let pod_sc = pod_spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let (uid, gid) = (
        pod_sc.run_as_user.expect("runAsUser"),
        pod_sc.run_as_group.expect("runAsGroup"),
    );
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        pod_sc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault"),
        "podman's default seccomp profile stands for RuntimeDefault"
    );

    // The chart's resource limits.
    let limits = c
        .resources
        .clone()
        .and_then(|r| r.limits)
        .unwrap_or_default();
    let memory = memory_bytes(&limits.get("memory").expect("a memory limit").0);
    let cpus = cpus(&limits.get("cpu").expect("a cpu limit").0);

    // The chart's command line, with the endpoints moved to free loopback
    // ports (host network, a shared machine).
    let (metrics_port, health_port) = (support::dl::free_port(), support::dl::free_port());
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-bind-address=") {
                format!("--metrics-bind-address=127.0.0.1:{metrics_port}")
            } else if a.starts_with("--health-probe-bind-address=") {
                format!("--health-probe-bind-address=127.0.0.1:{health_port}")
            } else {
                a
            }
        })
        .collect();
    assert_eq!(flag(&args, "--namespace"), Some(apps.name.as_str()));
    let lease = flag(&args, "--leader-election-id")
        .expect("--leader-election-id in the chart's args")
        .to_string();
    let command = c.command.clone().expect("the chart sets command");

    // The pod's environment: the chart's env (downward API resolved as the
    // kubelet would) and what the kubelet adds for the API server.
    let pod_name = format!("{release}-controller-image");
    let mut env = vec![
        format!("KUBERNETES_SERVICE_HOST={api_host}"),
        format!("KUBERNETES_SERVICE_PORT={api_port}"),
    ];
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from.and_then(|v| v.field_ref)) {
            (Some(v), _) => v,
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.clone(),
            (None, Some(f)) if f.field_path == "metadata.namespace" => ns.name.clone(),
            (v, f) => panic!(
                "env {} of the chart: {v:?} {f:?} is not handled here",
                e.name
            ),
        };
        env.push(format!("{}={value}", e.name));
    }

    let secrets = tempdir(&format!("{release}-serviceaccount"));
    service_account_files(&client, &ns.name, &sa, &ca, &secrets).await;

    let name = format!("{release}-controller");
    let mut run: Vec<String> = [
        "run",
        "--detach",
        "--pull=never",
        "--name",
        &name,
        "--network=host",
        "--read-only",
        // readOnlyRootFilesystem mounts no tmpfs anywhere either.
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run.extend(PODMAN_RUN_LIMITS.iter().map(|s| s.to_string()));
    run.push(format!("--user={uid}:{gid}"));
    run.push(format!("--memory={memory}b"));
    run.push(format!("--cpus={cpus}"));
    run.push(format!(
        "--volume={}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        secrets.display()
    ));
    for e in &env {
        run.push(format!("--env={e}"));
    }
    run.push(format!(
        "--entrypoint={}",
        serde_json::to_string(&command).unwrap()
    ));
    run.push(image.clone());
    run.extend(args.iter().cloned());
    let _ = podman(&["rm", "--force", &name]);
    let run_refs: Vec<&str> = run.iter().map(String::as_str).collect();
    podman_ok(&run_refs);
    let container = PodmanContainer {
        name: name.clone(),
        log: repo_root().join(format!("target/test-logs/{name}.log")),
    };

    // Running as the chart says: uid/gid 65532, no capabilities, no new
    // privileges, seccomp on, read-only root.
    let inspect = container.inspect();
    assert_eq!(inspect["HostConfig"]["ReadonlyRootfs"], json!(true));
    assert_eq!(inspect["HostConfig"]["Memory"], json!(memory));
    let pid = inspect["State"]["Pid"].as_i64().expect("State.Pid");
    assert!(
        pid > 0,
        "container {name} is not running: {}\n{}",
        inspect["State"],
        container.logs()
    );
    assert_eq!(
        ids_in_container(pid, "Uid"),
        [uid as u64; 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(
        ids_in_container(pid, "Gid"),
        [gid as u64; 4],
        "real, effective, saved, fs gid"
    );
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapBnd"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "seccomp filter mode");

    // It takes its Lease, as the pod named POD_NAME.
    let leases: Api<Lease> = ns.api();
    wait_for(
        "the containerized controller to hold its Lease",
        Duration::from_secs(60),
        || async {
            let holder = leases
                .get_opt(&lease)
                .await
                .map_err(|e| e.to_string())?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .ok_or_else(|| {
                    format!(
                        "lease {}/{lease} not held; log:\n{}",
                        ns.name,
                        container.logs()
                    )
                })?;
            if holder == pod_name {
                Ok(())
            } else {
                Err(format!("held by {holder}"))
            }
        },
    )
    .await;

    // It reconciles a DeploymentLite: its ReplicaSet appears, the pods run
    // (on kwok nodes here) and the DeploymentLite becomes Available.
    let dls: Api<DeploymentLite> = apps.api();
    dls.create(
        &PostParams::default(),
        &support::dl::manifest("web", 2, "nginx:1.27", json!({})),
    )
    .await
    .unwrap();
    let dl = support::dl::wait_complete(&dls, "web", Duration::from_secs(90)).await;
    assert_eq!(
        support::dl::condition(&dl, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    let rses = support::dl::replica_sets(&apps, "web").await;
    assert_eq!(rses.len(), 1, "one ReplicaSet for web: {rses:?}");
    let pods: Api<Pod> = apps.api();
    let nodes: BTreeSet<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.spec.and_then(|s| s.node_name).unwrap_or_default())
        .collect();
    assert!(
        !nodes.is_empty() && nodes.iter().all(|n| !n.is_empty()),
        "web's pods are all bound: {nodes:?}"
    );
    eprintln!("web's pods run on {nodes:?}");

    // It serves the endpoints the chart's probes and metrics Service use.
    wait_for(
        "/readyz and /healthz 200 and dlite_controller_leader 1 on /metrics",
        Duration::from_secs(30),
        || async {
            let (ready, body) = support::http_get(health_port, "/readyz")?;
            let (healthy, _) = support::http_get(health_port, "/healthz")?;
            let (status, metrics) = support::http_get(metrics_port, "/metrics")?;
            if ready == 200
                && healthy == 200
                && status == 200
                && metrics.contains("\ndlite_controller_leader 1\n")
            {
                Ok(())
            } else {
                Err(format!(
                    "readyz {ready} ({body:?}), healthz {healthy}, metrics {status}: {metrics:?}"
                ))
            }
        },
    )
    .await;
    container.assert_healthy();
    drop(container);

    helm(&["uninstall", &release, "--namespace", &ns.name, "--wait"]);
    let _ = std::fs::remove_dir_all(&secrets);
    apps.cleanup().await;
    ns.cleanup().await;
}
