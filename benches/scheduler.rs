//! Scheduler benchmark on the local control plane (`make bench-scheduler`,
//! or `cargo bench --bench scheduler -- --help`).
//!
//! For each size (nodes x pods) it creates that many fake kwok nodes, then
//! for each contender creates the pods as fast as the API server takes
//! them and records, from its own watch, when each pod is first seen bound:
//!
//! - dlite-scheduler (the release binary),
//! - kube-scheduler (the testenv binary, a second instance with its own
//!   schedulerName, leader election off, no serving port),
//! - a raw binder inside this process that posts Bindings round-robin with
//!   no filtering or scoring: the ceiling any scheduler could reach here.
//!
//! All three get the same client QPS/burst. Reported: pods bound per second
//! (all pods / first creation to last binding), p50/p99 of creation to
//! binding, and the scheduler process's peak RSS (VmHWM). Nodes and pods
//! are removed afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

// The cluster tests' support code: fake nodes and their readiness.
#[path = "../tests/support/mod.rs"]
mod support;

use support::nodes::{is_ready_and_untainted, kwok_node};

const BENCH_LABEL: &str = "dlite.dev/bench";
const DLITE_NAME: &str = "bench-dlite-scheduler";
const KUBE_NAME: &str = "bench-kube-scheduler";
const RAW_NAME: &str = "bench-raw-binder";

#[derive(Parser, Debug)]
#[command(
    name = "cargo bench --bench scheduler --",
    about = "dlite-scheduler vs kube-scheduler vs a raw binder, on the local control plane"
)]
struct Args {
    /// Sizes as NODESxPODS, comma-separated.
    #[arg(long, default_value = "100x1000,1000x5000", value_delimiter = ',')]
    sizes: Vec<String>,
    /// A short run: 50 nodes x 500 pods (`--quick` or `--quick=true`).
    #[arg(
        long,
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = dlite::flags::parse_bool
    )]
    quick: bool,
    /// Contenders to run, comma-separated: dlite, kube, raw.
    #[arg(long, default_value = "kube,dlite,raw", value_delimiter = ',')]
    only: Vec<String>,
    /// Client QPS given to every contender (testenv's default scheduler has the same).
    #[arg(long, default_value_t = 200.0)]
    qps: f64,
    /// Client burst given to every contender.
    #[arg(long, default_value_t = 400)]
    burst: u32,
    /// The dlite-scheduler binary.
    #[arg(long, default_value = "target/release/dlite-scheduler")]
    dlite_scheduler: PathBuf,
    /// Extra flags for dlite-scheduler (space-separated), e.g. "--bind-concurrency 256".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    dlite_args: String,
    /// The kube-scheduler binary [default: $(hack/testenv bin-dir)/kube-scheduler].
    #[arg(long)]
    kube_scheduler: Option<PathBuf>,
    /// Kubeconfig [default: $KUBECONFIG].
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Runs per contender and size, interleaved (kube, dlite, raw, kube, ...);
    /// the run with the median pods/s is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Pod creations in flight at once.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
    /// Passed by `cargo bench` to every bench target; nothing to do here.
    #[arg(long, hide = true)]
    bench: bool,
    /// Where logs and the table go.
    #[arg(long, default_value = "target/bench-scheduler")]
    out: PathBuf,
}

struct Row {
    scheduler: &'static str,
    nodes: usize,
    pods: usize,
    pods_per_sec: f64,
    p50: Duration,
    p99: Duration,
    peak_rss_mib: Option<f64>,
    create_secs: f64,
    /// Lowest-highest pods/s over the repeated runs.
    range: String,
}

fn parse_size(s: &str) -> anyhow::Result<(usize, usize)> {
    let (n, p) = s
        .split_once('x')
        .with_context(|| format!("size {s:?}: expected NODESxPODS"))?;
    Ok((n.trim().parse()?, p.trim().parse()?))
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Creates `count` bench nodes (tainted and labelled so only bench pods
/// use them) and waits until they are Ready and untainted by the node
/// lifecycle controller.
async fn create_nodes(client: &Client, count: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let zones = ["zone-a", "zone-b", "zone-c"];
    futures::stream::iter(0..count)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = format!("bench-node-{i:04}");
                let node = kwok_node(
                    &name,
                    "32",
                    "256Gi",
                    json!({BENCH_LABEL: "true", "topology.kubernetes.io/zone": zones[i % 3]}),
                    json!([{"key": BENCH_LABEL, "value": "true", "effect": "NoSchedule"}]),
                );
                nodes
                    .patch(
                        &name,
                        &PatchParams::apply("dlite-bench").force(),
                        &Patch::Apply(&node),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let start = Instant::now();
    loop {
        let list = nodes
            .list(&ListParams::default().labels(&format!("{BENCH_LABEL}=true")))
            .await?;
        let ready = list
            .items
            .iter()
            .filter(|n| is_ready_and_untainted(n))
            .count();
        if ready >= count {
            eprintln!(
                "  {count} nodes Ready in {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("only {ready}/{count} bench nodes became Ready");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn delete_nodes(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{BENCH_LABEL}=true")),
        )
        .await?;
    Ok(())
}

/// Whether an error is worth retrying: a loaded API server resets
/// connections and answers 429/5xx now and then.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Runs an idempotent request again on transient errors.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < 10 => {
                eprintln!("  retrying {what}: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
    }
}

/// Creates `pod`, retrying what a loaded API server may answer now and
/// then (a reset connection, 429, 5xx). An AlreadyExists on a retry means
/// an earlier attempt got through.
async fn create_pod(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt > 1 => return Ok(()),
            Err(kube::Error::Api(e)) if e.code != 429 && e.code < 500 => return Err(e.into()),
            Err(e) if attempt >= 10 => return Err(e.into()),
            Err(e) => {
                eprintln!("  retrying the creation of {}: {e}", pod.name_any());
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
        }
    }
}

fn bench_pod(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {BENCH_LABEL: "true"},
            "tolerations": [{"key": BENCH_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "c", "image": "bench:1", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]
        }
    }))
    .expect("a valid pod")
}

/// When each pod of the namespace was first seen bound, from a watch, and
/// when its creation was acknowledged.
#[derive(Clone, Default)]
struct BindTimes {
    bound: Arc<Mutex<HashMap<String, Instant>>>,
    created: Arc<Mutex<HashMap<String, Instant>>>,
}

impl BindTimes {
    fn start(client: &Client, namespace: &str) -> (BindTimes, tokio::task::JoinHandle<()>) {
        let times = BindTimes::default();
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let t = times.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(Ok(p)) = stream.next().await {
                if p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| !n.is_empty())
                {
                    t.bound
                        .lock()
                        .unwrap()
                        .entry(p.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        });
        (times, task)
    }

    fn get(&self, name: &str) -> Option<Instant> {
        self.bound.lock().unwrap().get(name).copied()
    }

    fn count_prefix(&self, prefix: &str) -> usize {
        self.bound
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .count()
    }
}

/// A contender running outside or inside this process.
enum Contender {
    Process(Child),
    InProcess(tokio::task::JoinHandle<()>),
}

impl Contender {
    fn pid(&self) -> Option<u32> {
        match self {
            Contender::Process(c) => Some(c.id()),
            Contender::InProcess(_) => None,
        }
    }

    async fn stop(self) {
        match self {
            Contender::Process(mut c) => {
                // SIGTERM, as a kubelet would; then reap.
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                for _ in 0..100 {
                    if c.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            Contender::InProcess(task) => task.abort(),
        }
    }
}

fn log_file(out: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(out)?;
    Ok(std::fs::File::create(out.join(format!("{name}.log")))?)
}

fn start_dlite(args: &Args, tag: &str) -> anyhow::Result<Contender> {
    let log = log_file(&args.out, &format!("dlite-scheduler-{tag}"))?;
    let child = Command::new(&args.dlite_scheduler)
        .args([
            "--scheduler-name",
            DLITE_NAME,
            "--kube-api-qps",
            &args.qps.to_string(),
            "--kube-api-burst",
            &args.burst.to_string(),
        ])
        .args([
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ])
        .args(args.dlite_args.split_whitespace())
        .arg("--kubeconfig")
        .arg(&args.kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("DLITE_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (run `cargo build --release --bin dlite-scheduler`)",
                args.dlite_scheduler.display()
            )
        })?;
    Ok(Contender::Process(child))
}

fn kube_scheduler_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.kube_scheduler {
        return Ok(p.clone());
    }
    let out = Command::new("hack/testenv")
        .arg("bin-dir")
        .output()
        .context("running hack/testenv bin-dir")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kube-scheduler"))
}

fn start_kube_scheduler(args: &Args, tag: &str) -> anyhow::Result<Contender> {
    std::fs::create_dir_all(&args.out)?;
    let config = args.out.join("kube-scheduler.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubescheduler.config.k8s.io/v1\n\
             kind: KubeSchedulerConfiguration\n\
             clientConnection:\n  kubeconfig: {}\n  qps: {}\n  burst: {}\n\
             leaderElection:\n  leaderElect: false\n\
             profiles:\n- schedulerName: {KUBE_NAME}\n",
            std::fs::canonicalize(&args.kubeconfig)?.display(),
            args.qps,
            args.burst
        ),
    )?;
    let log = log_file(&args.out, &format!("kube-scheduler-{tag}"))?;
    let bin = kube_scheduler_bin(args)?;
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--secure-port", "0", "-v", "1"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Contender::Process(child))
}

/// The ceiling: bind every pending pod of `namespace` naming the raw
/// binder to the bench nodes in turn, with the contenders' client limits
/// and dlite-scheduler's bind concurrency, doing nothing else.
async fn start_raw(args: &Args, namespace: &str, nodes: usize) -> anyhow::Result<Contender> {
    let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let limited = dlite::scheduler::run::rate_limited_client(config, args.qps, args.burst)?;
    let api: Api<Pod> = Api::namespaced(limited.clone(), namespace);
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut next = 0usize;
        let mut seen = std::collections::HashSet::new();
        stream
            .filter_map(|p| async move { p.ok() })
            .filter(|p| {
                let pending = p.spec.as_ref().is_some_and(|s| {
                    s.scheduler_name.as_deref() == Some(RAW_NAME) && s.node_name.is_none()
                });
                async move { pending }
            })
            .filter_map(|p| {
                let fresh = seen.insert(p.name_any());
                async move { fresh.then_some(p) }
            })
            .map(|p| {
                let node = format!("bench-node-{:04}", next % nodes);
                next += 1;
                let client = limited.clone();
                async move {
                    dlite::scheduler::binder::bind(&client, &p, &node).await;
                }
            })
            .buffer_unordered(dlite::scheduler::config::DEFAULT_BIND_CONCURRENCY)
            .for_each(|_| async {})
            .await;
    });
    Ok(Contender::InProcess(task))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn wait_bound(
    times: &BindTimes,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let bound = times.count_prefix(prefix);
        if bound >= count {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("only {bound}/{count} pods bound after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_one(
    args: &Args,
    client: &Client,
    which: &str,
    nodes: usize,
    pods: usize,
    round: usize,
) -> anyhow::Result<Row> {
    let (label, scheduler_name): (&'static str, &str) = match which {
        "dlite" => ("dlite-scheduler", DLITE_NAME),
        "kube" => ("kube-scheduler", KUBE_NAME),
        "raw" => ("raw binder (ceiling)", RAW_NAME),
        other => bail!("unknown contender {other:?} (dlite, kube, raw)"),
    };
    let namespace = format!("dlite-bench-{which}-{nodes}x{pods}-{round}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await
        .with_context(|| {
            format!("creating namespace {namespace} (left over from an earlier run? delete it)")
        })?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // The default ServiceAccount must exist before pods can be created.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &namespace);
    while retry("reading the default ServiceAccount", || {
        sas.get_opt("default")
    })
    .await?
    .is_none()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (times, watch) = BindTimes::start(client, &namespace);
    let tag = format!("{nodes}x{pods}-{round}");
    let contender = match which {
        "dlite" => start_dlite(args, &tag),
        "kube" => start_kube_scheduler(args, &tag),
        _ => start_raw(args, &namespace, nodes).await,
    };
    // Whatever happens while measuring, the contender is stopped and the
    // namespace removed, so a failed run leaves nothing behind.
    let measured = match contender {
        Ok(contender) => {
            let result = measure(
                args,
                &pods_api,
                &times,
                scheduler_name,
                pods,
                contender.pid(),
            )
            .await;
            contender.stop().await;
            result
        }
        Err(e) => Err(e),
    };
    watch.abort();
    let cleaned = cleanup(&namespaces, &pods_api, &namespace).await;
    let (first_create, create_secs, peak_rss_mib) = measured?;
    cleaned?;

    let created = times.created.lock().unwrap().clone();
    let mut latencies = Vec::with_capacity(pods);
    let mut last_bound = first_create;
    for (name, at) in &created {
        let bound = times.get(name).expect("every pod was bound");
        last_bound = last_bound.max(bound);
        latencies.push(bound.saturating_duration_since(*at));
    }
    latencies.sort();
    Ok(Row {
        scheduler: label,
        nodes,
        pods,
        pods_per_sec: pods as f64 / last_bound.duration_since(first_create).as_secs_f64(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        peak_rss_mib,
        create_secs,
        range: String::new(),
    })
}

/// Creates the pods and waits for all to be bound; returns when creation
/// started, how long it took, and the contender's peak RSS (read while it
/// still runs).
async fn measure(
    args: &Args,
    pods_api: &Api<Pod>,
    times: &BindTimes,
    scheduler_name: &str,
    pods: usize,
    pid: Option<u32>,
) -> anyhow::Result<(Instant, f64, Option<f64>)> {
    // A warm-up pod proves the contender's caches are synced.
    create_pod(pods_api, &bench_pod("warmup", scheduler_name)).await?;
    wait_bound(times, "warmup", 1, Duration::from_secs(180))
        .await
        .context("the warm-up pod was not bound")?;

    eprintln!("  creating {pods} pods");
    let created = times.created.clone();
    let first_create = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pods_api.clone();
            let created = created.clone();
            async move {
                let name = format!("p-{i:05}");
                create_pod(&api, &bench_pod(&name, scheduler_name)).await?;
                created.lock().unwrap().insert(name, Instant::now());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.create_concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let create_secs = first_create.elapsed().as_secs_f64();
    wait_bound(times, "p-", pods, Duration::from_secs(900)).await?;
    Ok((first_create, create_secs, pid.and_then(peak_rss_mib)))
}

/// Pods at once (grace 0), then the namespace.
async fn cleanup(
    namespaces: &Api<Namespace>,
    pods_api: &Api<Pod>,
    namespace: &str,
) -> anyhow::Result<()> {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let (all, one, plain) = (
        ListParams::default(),
        ListParams::default().limit(1),
        DeleteParams::default(),
    );
    retry("deleting the pods", || {
        pods_api.delete_collection(&now, &all)
    })
    .await?;
    let start = Instant::now();
    while !retry("listing pods", || pods_api.list(&one))
        .await?
        .items
        .is_empty()
        && start.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    retry("deleting the namespace", || {
        namespaces.delete(namespace, &plain)
    })
    .await?;
    while retry("reading the namespace", || namespaces.get_opt(namespace))
        .await?
        .is_some()
        && start.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn table(rows: &[Row], args: &Args) -> String {
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "Client limits for every contender: QPS {}, burst {}; median of {} run(s) (range of pods/s in brackets).\n\n\
         | scheduler | nodes | pods | pods/s | p50 | p99 | peak RSS |\n|---|---|---|---|---|---|---|\n",
        args.qps,
        args.burst,
        args.repeat.max(1)
    );
    for r in rows {
        let range = if args.repeat > 1 {
            format!(" ({})", r.range)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0}{range} | {} | {} | {} |\n",
            r.scheduler,
            r.nodes,
            r.pods,
            r.pods_per_sec,
            ms(r.p50),
            ms(r.p99),
            r.peak_rss_mib
                .map(|m| format!("{m:.1} MiB"))
                .unwrap_or_else(|| "-".into())
        ));
    }
    out.push_str("\nPod creation (64 in flight, no client limit) took: ");
    let creates: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}x{} {:.1} s",
                r.scheduler, r.nodes, r.pods, r.create_secs
            )
        })
        .collect();
    out.push_str(&creates.join("; "));
    out.push('\n');
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes: Vec<(usize, usize)> = if args.quick {
        vec![(50, 500)]
    } else {
        args.sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<anyhow::Result<_>>()?
    };
    let client = client(&args.kubeconfig).await?;
    let mut rows = Vec::new();
    let result: anyhow::Result<()> = async {
        for &(nodes, pods) in &sizes {
            eprintln!("size {nodes} nodes x {pods} pods");
            delete_nodes(&client).await?;
            create_nodes(&client, nodes).await?;
            let mut runs: Vec<Vec<Row>> = args.only.iter().map(|_| Vec::new()).collect();
            for round in 0..args.repeat.max(1) {
                for (i, which) in args.only.iter().enumerate() {
                    // One run broken by the machine (a reset connection under
                    // load) is reported and skipped; the others still count.
                    match run_one(&args, &client, which, nodes, pods, round).await {
                        Ok(row) => {
                            eprintln!(
                                "  {}: {:.0} pods/s, p50 {:?}, p99 {:?}, peak RSS {:?} MiB",
                                row.scheduler, row.pods_per_sec, row.p50, row.p99, row.peak_rss_mib
                            );
                            runs[i].push(row);
                        }
                        Err(e) => eprintln!("  {which} run {round} failed and is left out: {e:#}"),
                    }
                }
            }
            for mut r in runs.into_iter().filter(|r| !r.is_empty()) {
                r.sort_by(|a, b| a.pods_per_sec.total_cmp(&b.pods_per_sec));
                let median = r.len() / 2;
                let spread = format!(
                    "{:.0}-{:.0}",
                    r[0].pods_per_sec,
                    r[r.len() - 1].pods_per_sec
                );
                let mut row = r.swap_remove(median);
                row.range = spread;
                rows.push(row);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = delete_nodes(&client).await {
        eprintln!("deleting the bench nodes: {e}");
    }
    result?;
    let table = table(&rows, &args);
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("table.md"), &table)?;
    Ok(())
}
