//! Scale benchmark (`make bench-scale`, or `cargo bench --bench scale --
//! --help`): N DeploymentLites of R replicas against N Deployments of R
//! replicas created the same way, on the control plane KUBECONFIG names.
//!
//! `make bench-scale` starts a control plane of its own for this (10,000
//! kwok pods are no load to put on one that other tests share), with the
//! client limits of kube-controller-manager and kube-scheduler raised for
//! both sides equally: kube-controller-manager's ReplicaSet controller
//! creates every pod of both, and kube-scheduler binds them, so at the
//! testenv's defaults (300 and 200 requests/s) those limits, not the
//! Deployment controllers under comparison, would set both times.
//!
//! Per side and run: a fresh namespace; for DeploymentLite, the release
//! dlite-controller watching only that namespace; the N objects created
//! with a fixed number of creations in flight; the time from the first
//! creation until a watch has seen every object Available (observed
//! generation current, availableReplicas == updatedReplicas == R, condition
//! Available=True); for DeploymentLite, the controller's peak RSS (VmHWM)
//! at that point. The namespace is deleted and waited for before the next
//! run. Sides alternate in order from run to run; the median is reported.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "cargo bench --bench scale --",
    about = "N DeploymentLites x R replicas vs N Deployments x R replicas: time to all Available, and dlite-controller's peak RSS"
)]
struct Args {
    /// Objects per side.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Replicas of each object.
    #[arg(long, default_value_t = 5)]
    replicas: usize,
    /// Runs per side, alternating which side goes first; the median is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Sides to run, comma-separated: deployment, deploymentlite.
    #[arg(long, default_value = "deployment,deploymentlite", value_delimiter = ',', value_parser = parse_side)]
    only: Vec<Side>,
    /// Object creations in flight at once (the same for both sides).
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// The dlite-controller binary [default: the release build cargo bench made].
    #[arg(long)]
    controller: Option<PathBuf>,
    /// dlite-controller's --kube-api-qps. Its Deployment counterpart shares
    /// kube-controller-manager's client, which `make bench-scale` raises to
    /// 2000/4000 (DLITE_KCM_QPS/BURST): the same limits here, so neither
    /// side's client limit sets the times compared.
    #[arg(long, env = "DLITE_KCM_QPS", default_value_t = 2000.0)]
    controller_qps: f64,
    /// dlite-controller's --kube-api-burst (see --controller-qps).
    #[arg(long, env = "DLITE_KCM_BURST", default_value_t = 4000)]
    controller_burst: u32,
    /// dlite-controller's --concurrent-deployment-syncs [default: its own, 5,
    /// as kube-controller-manager's].
    #[arg(long)]
    controller_concurrent_syncs: Option<u16>,
    /// Kubeconfig of the cluster to use (required: the benchmark never
    /// falls back to the shared local control plane).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Passed by `cargo bench` to every bench target; nothing to do here.
    #[arg(long, hide = true)]
    bench: bool,
    /// Where the controller's logs and the table go.
    #[arg(long, default_value = "target/bench-scale")]
    out: PathBuf,
}

fn parse_side(s: &str) -> Result<Side, String> {
    match s.trim().to_lowercase().as_str() {
        "deployment" => Ok(Side::Deployment),
        "deploymentlite" => Ok(Side::DeploymentLite),
        other => Err(format!(
            "--only: unknown side {other:?} (deployment, deploymentlite)"
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Deployment,
    DeploymentLite,
}

impl Side {
    fn resource(self) -> ApiResource {
        match self {
            Side::Deployment => ApiResource {
                group: "apps".into(),
                version: "v1".into(),
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                plural: "deployments".into(),
            },
            Side::DeploymentLite => ApiResource {
                group: "apps.dlite.dev".into(),
                version: "v1".into(),
                api_version: "apps.dlite.dev/v1".into(),
                kind: "DeploymentLite".into(),
                plural: "deploymentlites".into(),
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Deployment => "Deployment",
            Side::DeploymentLite => "DeploymentLite",
        }
    }
}

struct Run {
    created_secs: f64,
    available_secs: f64,
    peak_rss_mib: Option<f64>,
    /// What the API server served during the run (both controllers, the
    /// scheduler, kwok and this benchmark together).
    requests: Requests,
}

/// Requests the API server served, per resource and verb: how many, the
/// seconds it spent on them (apiserver_request_duration_seconds_sum), and
/// how many it answered with an error (a 409 Conflict among them: a write
/// from a stale read), from its /metrics. The difference of two scrapes is
/// what a run cost it.
#[derive(Default, Clone)]
struct Requests(BTreeMap<String, Served>);

#[derive(Default, Clone, Copy)]
struct Served {
    count: f64,
    seconds: f64,
    errors: f64,
}

impl Served {
    fn plus(self, o: Served) -> Served {
        Served {
            count: self.count + o.count,
            seconds: self.seconds + o.seconds,
            errors: self.errors + o.errors,
        }
    }

    fn minus(self, o: Served) -> Served {
        Served {
            count: self.count - o.count,
            seconds: self.seconds - o.seconds,
            errors: self.errors - o.errors,
        }
    }

    fn cell(&self) -> String {
        let errors = if self.errors > 0.0 {
            format!(", {:.0} errors", self.errors)
        } else {
            String::new()
        };
        format!("{:.0} ({:.1} s{errors})", self.count, self.seconds)
    }
}

impl Requests {
    async fn scrape(client: &Client) -> anyhow::Result<Requests> {
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = client.request_text(req).await?;
        let mut out: BTreeMap<String, Served> = BTreeMap::new();
        for line in text.lines() {
            let (metric, count) = if let Some(rest) = line.strip_prefix("apiserver_request_total{")
            {
                (rest, true)
            } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_sum{")
            {
                (rest, false)
            } else {
                continue;
            };
            let Some((labels, value)) = metric.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split("\",")
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let resource = label("resource");
            // Long-running watches and the API server's own discovery are
            // not the controllers' work.
            let verb = label("verb");
            if resource.is_empty() || verb == "WATCH" || verb == "CONNECT" {
                continue;
            }
            let sub = label("subresource");
            let dry = if label("dry_run").is_empty() {
                ""
            } else {
                " (dry run)"
            };
            let key = format!(
                "{verb} {resource}{}{dry}",
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                }
            );
            let e = out.entry(key).or_default();
            if count {
                e.count += value;
                if !label("code").starts_with('2') {
                    e.errors += value;
                }
            } else {
                e.seconds += value;
            }
        }
        Ok(Requests(out))
    }

    /// `self - before`, rows that did not change left out.
    fn since(&self, before: &Requests) -> Requests {
        Requests(
            self.0
                .iter()
                .filter_map(|(k, now)| {
                    let d = now.minus(before.0.get(k).copied().unwrap_or_default());
                    (d.count > 0.0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
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
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The same object for both sides: one container, R replicas, the
/// defaults of the API (RollingUpdate 25%/25%).
fn object(side: Side, name: &str, replicas: usize) -> DynamicObject {
    let ar = side.resource();
    serde_json::from_value(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": "registry.example/scale:1"}]
                }
            }
        }
    }))
    .expect("a valid object")
}

fn is_available(o: &DynamicObject, replicas: i64) -> bool {
    let generation = o.metadata.generation.unwrap_or(0);
    let st = &o.data["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    st["observedGeneration"].as_i64().unwrap_or(0) >= generation
        && n("availableReplicas") == replicas
        && n("updatedReplicas") == replicas
        && st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
}

/// Runs an idempotent request again on what a loaded API server answers
/// now and then (a reset connection, 429, 5xx).
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
            Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => {
                return Err(anyhow::Error::new(kube::Error::Api(s)).context(what.to_string()));
            }
            Err(e) if attempt >= 10 => {
                return Err(anyhow::Error::new(e).context(what.to_string()));
            }
            Err(e) => {
                eprintln!("  retrying {what}: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"dlite.dev/bench": "scale"}}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    // Pods cannot be created before the namespace's default ServiceAccount.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let start = Instant::now();
    while sas.get_opt("default").await?.is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("namespace {name} has no default ServiceAccount after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Deletes the namespace and waits until it is gone, so the next run
/// starts on a cluster without this run's pods.
async fn delete_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api = Api::<Namespace>::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    let start = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if start.elapsed() > Duration::from_secs(900) {
            bail!("namespace {name} still there 900 s after its deletion");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "  namespace {name} deleted in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Pods the schedulable nodes can take.
async fn pod_capacity(client: &Client) -> anyhow::Result<usize> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .filter_map(|n| {
            n.status
                .as_ref()?
                .allocatable
                .as_ref()?
                .get("pods")?
                .0
                .parse::<usize>()
                .ok()
        })
        .sum())
}

async fn install_crd(client: &Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = dlite::api::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("dlite-bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the CRD")?;
    let start = Instant::now();
    loop {
        let established = crds
            .get(&name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the CRD {name} is not Established after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_controller(args: &Args, bin: &Path, namespace: &str) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&args.out)?;
    let log = args.out.join(format!("{namespace}-controller.log"));
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "--namespace",
        namespace,
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--health-probe-bind-address",
        "127.0.0.1:0",
    ])
    .arg(format!("--kube-api-qps={}", args.controller_qps))
    .arg(format!("--kube-api-burst={}", args.controller_burst));
    if let Some(n) = args.controller_concurrent_syncs {
        cmd.arg(format!("--concurrent-deployment-syncs={n}"));
    }
    cmd.env("KUBECONFIG", &args.kubeconfig)
        // Info, as a deployed controller logs: debug lines would measure the logger.
        .env("RUST_LOG", "info")
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn run_side(client: &Client, args: &Args, side: Side, round: usize) -> anyhow::Result<Run> {
    let ns = format!(
        "bench-scale-{}-{round}-{}",
        side.name().to_lowercase(),
        std::process::id()
    );
    create_namespace(client, &ns).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &side.resource());
    let mut controller = match side {
        Side::Deployment => None,
        Side::DeploymentLite => {
            let bin = args
                .controller
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dlite-controller")));
            Some(start_controller(args, &bin, &ns)?)
        }
    };
    let replicas = args.replicas as i64;
    let total = args.objects;

    // The watch is open before the first creation, so no transition is missed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(
            watcher(watch_api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                let _ = tx.send((o.name_any(), is_available(&o, replicas)));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let requests_before = Requests::scrape(client).await?;
    let start = Instant::now();
    futures::stream::iter(0..total)
        .map(|i| {
            let api = api.clone();
            let obj = object(side, &format!("s{i:04}"), args.replicas);
            async move {
                retry(&format!("creating {}", obj.name_any()), || async {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => Ok(()),
                        // A retry after a creation that got through.
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await
            }
        })
        .buffer_unordered(args.create_concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let created_secs = start.elapsed().as_secs_f64();
    eprintln!("  {total} {}s created in {created_secs:.1} s", side.name());

    let mut available: HashSet<String> = HashSet::new();
    let deadline = start + Duration::from_secs(args.timeout);
    let mut last_report = Instant::now();
    while available.len() < total {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((name, ok))) => {
                if ok {
                    available.insert(name);
                } else {
                    available.remove(&name);
                }
            }
            Ok(None) => bail!("the watch of {}s ended", side.name()),
            Err(_) => bail!(
                "{}/{total} {}s Available after {} s (namespace {ns} kept for inspection)",
                available.len(),
                side.name(),
                args.timeout
            ),
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:>5.0} s: {}/{total} Available",
                start.elapsed().as_secs_f64(),
                available.len()
            );
            last_report = Instant::now();
        }
    }
    let available_secs = start.elapsed().as_secs_f64();
    let requests = Requests::scrape(client).await?.since(&requests_before);
    let peak_rss_mib = controller.as_ref().and_then(|c| peak_rss_mib(c.id()));
    eprintln!(
        "  all {total} {}s Available in {available_secs:.1} s{}",
        side.name(),
        peak_rss_mib
            .map(|m| format!("; dlite-controller peak RSS {m:.1} MiB"))
            .unwrap_or_default()
    );
    watch.abort();
    if let Some(c) = controller.as_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            bail!("dlite-controller exited during the run: {status}");
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    delete_namespace(client, &ns).await?;
    Ok(Run {
        created_secs,
        available_secs,
        peak_rss_mib,
        requests,
    })
}

/// The API server's work per side, summed over the runs: the requests of
/// each kind and the seconds spent serving them, largest first. Both sides
/// share the ReplicaSet controller, the scheduler and kwok, so the
/// difference between the columns is what the two Deployment controllers
/// asked for.
fn requests_table(runs: &[(Side, Run)]) -> String {
    let mut sum: BTreeMap<String, [Served; 2]> = BTreeMap::new();
    for (side, run) in runs {
        let i = usize::from(*side == Side::DeploymentLite);
        for (k, served) in &run.requests.0 {
            let e = &mut sum.entry(k.clone()).or_default()[i];
            *e = e.plus(*served);
        }
    }
    let mut rows: Vec<_> = sum.into_iter().collect();
    rows.sort_by(|a, b| {
        let w = |r: &[Served; 2]| r[0].seconds.max(r[1].seconds);
        w(&b.1).total_cmp(&w(&a.1))
    });
    let total = |i: usize| {
        rows.iter()
            .fold(Served::default(), |t, (_, r)| t.plus(r[i]))
    };
    let mut t = String::from(
        "\nAPI server requests during the runs (all clients; watches left out), summed over runs: count, seconds serving them, and error answers:\n\n\
         | request | Deployment | DeploymentLite |\n|---|---|---|\n",
    );
    t.push_str(&format!(
        "| all | {} | {} |\n",
        total(0).cell(),
        total(1).cell()
    ));
    for (k, [d, l]) in rows.iter().take(16) {
        t.push_str(&format!("| {k} | {} | {} |\n", d.cell(), l.cell()));
    }
    t
}

/// The median; NaN (printed as such) for a side that was not run.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1}-{hi:.1}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.repeat == 0 || args.objects == 0 {
        bail!("--repeat and --objects must be at least 1");
    }
    let client = client(&args.kubeconfig).await?;
    let pods = args.objects * args.replicas;
    let capacity = pod_capacity(&client).await?;
    if capacity < pods + 100 {
        bail!(
            "the cluster's nodes take {capacity} pods; {pods} (plus room for others) are needed: \
             start the control plane with more nodes (make bench-scale does: hack/testenv up --nodes 100)"
        );
    }
    install_crd(&client).await?;

    let mut runs: Vec<(Side, Run)> = vec![];
    for round in 0..args.repeat {
        // Alternate the order, so neither side always meets a cluster
        // that just deleted the other's pods.
        let order = if round % 2 == 0 {
            [Side::DeploymentLite, Side::Deployment]
        } else {
            [Side::Deployment, Side::DeploymentLite]
        };
        for side in order.into_iter().filter(|s| args.only.contains(s)) {
            eprintln!(
                "run {}/{}: {} {}s x {} replicas",
                round + 1,
                args.repeat,
                args.objects,
                side.name(),
                args.replicas
            );
            let run = run_side(&client, &args, side, round).await?;
            runs.push((side, run));
        }
    }

    let of = |side: Side, f: fn(&Run) -> Option<f64>| -> Vec<f64> {
        runs.iter()
            .filter(|(s, _)| *s == side)
            .filter_map(|(_, r)| f(r))
            .collect()
    };
    let dep = of(Side::Deployment, |r| Some(r.available_secs));
    let dl = of(Side::DeploymentLite, |r| Some(r.available_secs));
    let dep_created = of(Side::Deployment, |r| Some(r.created_secs));
    let dl_created = of(Side::DeploymentLite, |r| Some(r.created_secs));
    let rss = of(Side::DeploymentLite, |r| r.peak_rss_mib);
    let ratios: Vec<f64> = dl.iter().zip(&dep).map(|(l, d)| l / d).collect();
    let (dep_m, dl_m) = (median(dep.clone()), median(dl.clone()));
    let rss_m = if rss.is_empty() {
        f64::NAN
    } else {
        median(rss.clone())
    };

    let mut table = String::new();
    table.push_str(&format!(
        "{} objects x {} replicas ({} pods per side), median of {} run(s) per side (range in brackets):\n\n",
        args.objects,
        args.replicas,
        pods,
        args.repeat
    ));
    table.push_str(
        "| objects | all created | all Available: Deployment | all Available: DeploymentLite | ratio DeploymentLite/Deployment | dlite-controller peak RSS |\n\
         |---|---|---|---|---|---|\n",
    );
    table.push_str(&format!(
        "| {} x {} | {:.1} s / {:.1} s | {dep_m:.1} s ({}) | {dl_m:.1} s ({}) | {:.2} ({}) | {rss_m:.1} MiB ({}) |\n",
        args.objects,
        args.replicas,
        median(dep_created),
        median(dl_created),
        range(&dep),
        range(&dl),
        median(ratios.clone()),
        if ratios.len() > 1 { format!("{:.2}-{:.2}", ratios.iter().copied().fold(f64::INFINITY, f64::min), ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)) } else { "one run".into() },
        if rss.is_empty() { "n/a".into() } else { range(&rss) },
    ));
    table.push_str("\nPer run (seconds to all Available):\n\n| run | Deployment | DeploymentLite | ratio | peak RSS |\n|---|---|---|---|---|\n");
    for (i, ((d, l), r)) in dep
        .iter()
        .zip(&dl)
        .zip(rss.iter().map(Some).chain(std::iter::repeat(None)))
        .enumerate()
    {
        table.push_str(&format!(
            "| {} | {d:.1} | {l:.1} | {:.2} | {} |\n",
            i + 1,
            l / d,
            r.map(|m| format!("{m:.1} MiB")).unwrap_or_default()
        ));
    }
    table.push_str(&requests_table(&runs));
    println!("\n{table}");
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("table.md");
    std::fs::write(&path, &table)?;
    eprintln!("table written to {}", path.display());
    Ok(())
}
