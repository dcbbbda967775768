//! Model-based fuzzing of the planner (issue 13).
//!
//! A simulated API server holds one DeploymentLite, its ReplicaSets and
//! their pods. Random sequences of operations run against it: the user's
//! spec changes, scales, pauses and rollbacks; the ReplicaSet controller
//! creating and deleting pods (with a lag); pods turning ready and
//! unready; someone else deleting, relabelling or touching ReplicaSets;
//! and syncs of the controller that read from watch caches which lag
//! behind the server. A sync is the reconciler's, modelled step by step:
//! claim (release and adopt with resourceVersion preconditions), the
//! template defaulted by the server (dry run), [`plan`], then every action
//! executed in order with its precondition, stopping at the first 409 or
//! 404 as the reconciler does.
//!
//! The server defaults and canonicalises templates as the real one does
//! for the fields generated here (quantities such as `0.5` become `500m`,
//! `imagePullPolicy` follows the image's tag, the pod and container
//! defaults are filled), so the same template written two ways is one
//! revision and template identity is really exercised.
//!
//! After every operation the invariants are checked (see [`World::check`]);
//! at the end the user resumes and the system must converge. A failing
//! sequence is shrunk (operations dropped while it still fails) and printed
//! with its seed. `DLITE_FUZZ_SEED=N` replays one seed (with a trace of
//! every operation), `DLITE_FUZZ_CASES=N` sets how many seeds a run tries
//! (from `DLITE_FUZZ_FIRST_SEED`, 0 by default, so every run is the same
//! run unless asked otherwise).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{Action, SyncInput, plan, reason, resolve_bounds};
use crate::api::{DeploymentLite, REVISION_ANNOTATION, RollbackConfig, StrategyType};
use crate::controller::expectations::Expectations;
use crate::controller::hash::equal_ignore_hash;
use crate::controller::rollout::progress::to_time;
use crate::fuzzing::{Rng, fuzz};

const DL_UID: &str = "dl-uid";
const NS: &str = "default";

// ---------------------------------------------------------------------------
// Templates and the server's defaulting
// ---------------------------------------------------------------------------

/// A pod template as a user may write it: `canon` picks what it means
/// (image, CPU, memory, an extra label), `spelling` how it is written
/// (quantities in another unit, defaults spelled out or left to the
/// server). Two templates with the same `canon` are the same revision.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TemplateChoice {
    canon: u8,
    spelling: u8,
}

const IMAGES: [&str; 3] = ["nginx:1.27", "nginx:1.28", "nginx"];
/// CPU requests: (meaning index, two spellings).
const CPUS: [[Option<&str>; 2]; 3] = [
    [None, None],
    [Some("500m"), Some("0.5")],
    [Some("1"), Some("1000m")],
];
const MEMORY: [[Option<&str>; 2]; 2] = [[None, None], [Some("1Gi"), Some("1024Mi")]];
const CANON_COUNT: u8 = 3 * 3 * 2 * 2;

impl TemplateChoice {
    fn json(self) -> Value {
        let c = self.canon % CANON_COUNT;
        let (image, cpu, mem, tier) = (
            IMAGES[usize::from(c % 3)],
            CPUS[usize::from(c / 3 % 3)],
            MEMORY[usize::from(c / 9 % 2)],
            c / 18 % 2 == 1,
        );
        let s = self.spelling;
        let mut container =
            json!({"name": "app", "image": image, "ports": [{"containerPort": 8080}]});
        let mut requests = serde_json::Map::new();
        if let Some(q) = cpu[usize::from(s & 1)] {
            requests.insert("cpu".into(), json!(q));
        }
        if let Some(q) = mem[usize::from(s >> 1 & 1)] {
            requests.insert("memory".into(), json!(q));
        }
        if !requests.is_empty() {
            container["resources"] = json!({"requests": requests});
        }
        if s >> 2 & 1 == 1 {
            container["imagePullPolicy"] = json!(default_pull_policy(image));
        }
        if s >> 3 & 1 == 1 {
            container["ports"][0]["protocol"] = json!("TCP");
        }
        let mut spec = json!({"containers": [container]});
        if s >> 4 & 1 == 1 {
            spec["terminationGracePeriodSeconds"] = json!(30);
        }
        let mut labels = json!({"app": "web"});
        if tier {
            labels["tier"] = json!("canary");
        }
        json!({"metadata": {"labels": labels}, "spec": spec})
    }
}

/// The API server's rule: `:latest` or no tag pulls always.
fn default_pull_policy(image: &str) -> &'static str {
    let tag = image.rsplit_once(':').map(|(_, t)| t);
    if tag.is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Quantities in canonical form, as the server stores them, for the
/// spellings generated here.
fn canonical_quantity(q: &str) -> String {
    match q {
        "0.5" => "500m",
        "1000m" => "1",
        "1024Mi" => "1Gi",
        other => other,
    }
    .to_string()
}

/// What a create (or a dry run) stores of a pod template.
fn server_default(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut v = serde_json::to_value(t).expect("template serializes");
    let spec = &mut v["spec"];
    for (k, d) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if spec.get(k).is_none() {
            spec[k] = d;
        }
    }
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        let image = c["image"].as_str().unwrap_or_default().to_string();
        for (k, d) in [
            ("imagePullPolicy", json!(default_pull_policy(&image))),
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            ("resources", json!({})),
        ] {
            if c.get(k).is_none() {
                c[k] = d;
            }
        }
        for kind in ["requests", "limits"] {
            if let Some(m) = c["resources"].get_mut(kind).and_then(|m| m.as_object_mut()) {
                for q in m.values_mut() {
                    *q = json!(canonical_quantity(q.as_str().unwrap_or_default()));
                }
            }
        }
        for p in c["ports"].as_array_mut().into_iter().flatten() {
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
        }
    }
    serde_json::from_value(v).expect("defaulted template deserializes")
}

fn template_of(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref().and_then(|s| s.template.as_ref())
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// The controller reconciles, from its caches.
    Sync,
    /// Watch caches catch up with the server: bit 0 DeploymentLites, bit 1
    /// ReplicaSets, bit 2 pods.
    CacheCatchUp(u8),
    /// The ReplicaSet controller syncs the k-th ReplicaSet (all on 255).
    RsController(u8),
    /// Unready pods turn ready, each with a chance drawn from the seed.
    PodsReady(u64),
    /// The k-th ready pod turns unready (a failing probe).
    PodUnready(u16),
    /// The user writes a new template (or respells the current one).
    Template(TemplateChoice),
    Scale(i32),
    /// maxSurge / maxUnavailable, indexes into [`BOUND_VALUES`].
    Bounds(u8, u8),
    Pause(bool),
    Rollback(i64),
    /// Someone deletes the k-th ReplicaSet (its pods go with it).
    DeleteRs(u8),
    /// Someone relabels the k-th ReplicaSet out of the selector.
    RelabelRs(u8),
    /// Someone puts the selector's labels back on the k-th ReplicaSet.
    RestoreLabels(u8),
    /// Someone else writes the k-th ReplicaSet (255: the DeploymentLite),
    /// so a decision taken on an earlier read gets a 409.
    Touch(u8),
}

const BOUND_VALUES: [&str; 6] = ["0", "1", "2", "25%", "50%", "100%"];

fn bound_value(i: u8) -> Value {
    let s = BOUND_VALUES[usize::from(i) % BOUND_VALUES.len()];
    match s.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(s),
    }
}

fn gen_ops(rng: &mut Rng, n: usize) -> Vec<Op> {
    (0..n)
        .map(|_| match rng.below(100) {
            0..=29 => Op::Sync,
            30..=39 => Op::CacheCatchUp(rng.byte() | if rng.pct(50) { 7 } else { 0 }),
            40..=57 => Op::RsController(if rng.pct(40) { 255 } else { rng.byte() }),
            58..=67 => Op::PodsReady(rng.u64()),
            68..=70 => Op::PodUnready(rng.below(1000) as u16),
            71..=76 => Op::Template(TemplateChoice {
                // Half of the changes go back to a small set of templates,
                // so revisions are revisited.
                canon: if rng.pct(50) {
                    rng.below(3) as u8
                } else {
                    rng.byte()
                },
                spelling: rng.byte(),
            }),
            77..=80 => Op::Scale(rng.below(9) as i32),
            81..=82 => Op::Bounds(rng.byte(), rng.byte()),
            83..=85 => Op::Pause(rng.pct(60)),
            86..=88 => Op::Rollback(rng.below(4) as i64),
            89..=90 => Op::DeleteRs(rng.byte()),
            91..=92 => Op::RelabelRs(rng.byte()),
            93..=94 => Op::RestoreLabels(rng.byte()),
            _ => Op::Touch(if rng.pct(30) { 255 } else { rng.byte() }),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The simulated server
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct SimPod {
    name: String,
    ready: bool,
}

/// What a watch cache holds: the server's objects as of some moment.
#[derive(Clone)]
struct Cache {
    dl: DeploymentLite,
    rses: Vec<ReplicaSet>,
    pods: BTreeMap<String, Vec<SimPod>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SyncOutcome {
    Done,
    /// 409 or 404: the reconciler returns an error and retries later.
    Failed,
}

struct World {
    dl: DeploymentLite,
    rses: Vec<ReplicaSet>,
    /// Pods by the uid of the ReplicaSet that controls them.
    pods: BTreeMap<String, Vec<SimPod>>,
    dl_cache: DeploymentLite,
    rs_cache: Vec<ReplicaSet>,
    pod_cache: BTreeMap<String, Vec<SimPod>>,
    next_rv: u64,
    next_uid: u64,
    now: Timestamp,
    /// Invariants are armed once they hold, and disarmed by an operation
    /// that may break them through no fault of the controller.
    surge_armed: bool,
    available_armed: bool,
    recreate_armed: bool,
    /// A new ReplicaSet's revision only grows, except after someone else
    /// deleted or released ReplicaSets (then it restarts from what is left).
    last_new_revision: Option<(String, i64)>,
    /// The reconciler's record of its own writes (controller/expectations.rs).
    expectations: Expectations,
    epoch: Instant,
    steps: u64,
    /// ReplicaSets deleted since the cache last caught up (their deletion
    /// events are still to come).
    deleted: Vec<(String, String)>,
    defaults_seen: Vec<(PodTemplateSpec, PodTemplateSpec)>,
    /// ReplicaSets with a pod that turned unready since their last status:
    /// availability is not armed again until they report it.
    unreported_flips: std::collections::BTreeSet<String>,
    trace: bool,
}

fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

fn rs_uid(rs: &ReplicaSet) -> String {
    rs.metadata.uid.clone().unwrap_or_default()
}

fn rs_rv(rs: &ReplicaSet) -> &str {
    rs.metadata.resource_version.as_deref().unwrap_or_default()
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn controller_uid(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn is_owned(rs: &ReplicaSet) -> bool {
    controller_uid(rs) == Some(DL_UID)
}

/// The DeploymentLite's selector (`app=web`), evaluated here rather than
/// with the reconciler's code.
fn selected(rs: &ReplicaSet) -> bool {
    rs.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get("app").map(String::as_str) == Some("web"))
}

struct Violation(String);

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(Violation(format!($($arg)*)));
        }
    };
}

/// The parameters one seed draws besides its operations.
#[derive(Clone, Debug)]
struct Setup {
    replicas: i32,
    recreate: bool,
    surge: u8,
    unavailable: u8,
    history_limit: i32,
    template: TemplateChoice,
}

fn gen_setup(rng: &mut Rng) -> Setup {
    let (mut surge, mut unavailable) = (rng.byte(), rng.byte());
    // The schema refuses both 0; `0` is index 0.
    if surge % BOUND_VALUES.len() as u8 == 0 && unavailable % BOUND_VALUES.len() as u8 == 0 {
        unavailable = 1;
    }
    if rng.pct(10) {
        surge = 0;
    }
    Setup {
        replicas: rng.below(8) as i32 + 1,
        recreate: rng.pct(20),
        surge,
        unavailable,
        history_limit: rng.below(4) as i32,
        template: TemplateChoice {
            canon: rng.below(3) as u8,
            spelling: rng.byte(),
        },
    }
}

fn initial_object(s: &Setup) -> DeploymentLite {
    let strategy = if s.recreate {
        json!({"type": "Recreate"})
    } else {
        json!({"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": bound_value(s.surge), "maxUnavailable": bound_value(s.unavailable)}})
    };
    serde_json::from_value(json!({
        "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
        "metadata": {"name": "web", "namespace": NS, "uid": DL_UID, "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": "2024-03-01T11:00:00Z"},
        "spec": {"replicas": s.replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": s.template.json(), "strategy": strategy,
                 "revisionHistoryLimit": s.history_limit, "progressDeadlineSeconds": 600}
    }))
    .expect("DeploymentLite fixture")
}

impl World {
    fn new(setup: &Setup, trace: bool) -> World {
        let dl = initial_object(setup);
        World {
            dl_cache: dl.clone(),
            dl,
            rses: vec![],
            pods: BTreeMap::new(),
            rs_cache: vec![],
            pod_cache: BTreeMap::new(),
            next_rv: 10,
            next_uid: 0,
            now: "2024-03-01T12:00:00Z".parse().unwrap(),
            surge_armed: false,
            available_armed: false,
            recreate_armed: true,
            last_new_revision: None,
            expectations: Expectations::default(),
            epoch: Instant::now(),
            steps: 0,
            deleted: vec![],
            defaults_seen: vec![],
            unreported_flips: Default::default(),
            trace,
        }
    }

    /// An operation takes 100 ms of the reconciler's clock: a watch cache
    /// that lags a whole sequence behind is a lost watch, which the
    /// expectations' timeout is for, not a lag to plan through.
    fn clock(&self) -> Instant {
        self.epoch + Duration::from_millis(100 * self.steps)
    }

    /// [`server_default`], remembered: a sequence uses few templates, and
    /// the serde round trip is most of a case's time.
    fn defaulted(&mut self, t: &PodTemplateSpec) -> PodTemplateSpec {
        if let Some((_, d)) = self.defaults_seen.iter().find(|(k, _)| k == t) {
            return d.clone();
        }
        let d = server_default(t);
        self.defaults_seen.push((t.clone(), d.clone()));
        d
    }

    fn rv(&mut self) -> String {
        self.next_rv += 1;
        self.next_rv.to_string()
    }

    fn bounds(&self) -> (i32, i32) {
        let b = resolve_bounds(&self.dl).expect("generated bounds are valid");
        (b.max_surge, b.max_unavailable)
    }

    fn recreate(&self) -> bool {
        self.dl.spec.strategy.type_ == StrategyType::Recreate
    }

    /// A user's write to `spec`: a new generation.
    fn write_spec(&mut self, f: impl FnOnce(&mut DeploymentLite)) {
        let before = self.dl.spec.clone();
        f(&mut self.dl);
        if self.dl.spec != before {
            self.dl.metadata.generation = Some(self.dl.metadata.generation.unwrap_or(0) + 1);
            self.dl.metadata.resource_version = Some(self.rv());
        }
    }

    fn nth_rs(&self, k: u8) -> Option<usize> {
        (!self.rses.is_empty()).then(|| usize::from(k) % self.rses.len())
    }

    fn snapshot(&self) -> Cache {
        Cache {
            dl: self.dl.clone(),
            rses: self.rses.clone(),
            pods: self.pods.clone(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), Violation> {
        match op {
            Op::Sync => {
                let outcome = self.sync()?;
                if self.trace {
                    eprintln!("    -> {outcome:?}");
                }
            }
            Op::CacheCatchUp(mask) => {
                let snap = self.snapshot();
                if mask & 1 != 0 {
                    self.dl_cache = snap.dl;
                }
                if mask & 2 != 0 {
                    // The watch events the cache gets on the way, deletions
                    // of ReplicaSets it never held included.
                    for rs in &snap.rses {
                        self.expectations.observe(
                            "default/web",
                            rs_name(rs),
                            &rs_uid(rs),
                            rs_rv(rs),
                        );
                    }
                    for (name, uid) in std::mem::take(&mut self.deleted) {
                        self.expectations
                            .observe("default/web", &name, &uid, "deleted");
                    }
                    self.rs_cache = snap.rses;
                }
                if mask & 4 != 0 {
                    self.pod_cache = snap.pods;
                }
            }
            Op::RsController(k) => {
                if *k == 255 {
                    for i in 0..self.rses.len() {
                        self.rs_controller(i);
                    }
                } else if let Some(i) = self.nth_rs(*k) {
                    self.rs_controller(i);
                }
            }
            Op::PodsReady(seed) => {
                let mut rng = Rng::new(*seed);
                for pods in self.pods.values_mut() {
                    for p in pods.iter_mut() {
                        if !p.ready && rng.pct(60) {
                            p.ready = true;
                        }
                    }
                }
            }
            Op::PodUnready(k) => {
                let ready: Vec<(String, usize)> = self
                    .pods
                    .iter()
                    .flat_map(|(uid, ps)| {
                        ps.iter()
                            .enumerate()
                            .filter(|(_, p)| p.ready)
                            .map(move |(i, _)| (uid.clone(), i))
                    })
                    .collect();
                if !ready.is_empty() {
                    let (uid, i) = &ready[usize::from(*k) % ready.len()];
                    self.pods.get_mut(uid).unwrap()[*i].ready = false;
                    self.available_armed = false;
                    self.unreported_flips.insert(uid.clone());
                }
            }
            Op::Template(t) => {
                let v = t.json();
                self.write_spec(|d| d.spec.template = serde_json::from_value(v).unwrap());
            }
            Op::Scale(n) => {
                self.write_spec(|d| d.spec.replicas = *n);
                self.surge_armed = false;
                self.available_armed = false;
            }
            Op::Bounds(s, u) => {
                if self.recreate()
                    || (s % BOUND_VALUES.len() as u8 == 0 && u % BOUND_VALUES.len() as u8 == 0)
                {
                    return Ok(());
                }
                let (s, u) = (bound_value(*s), bound_value(*u));
                self.write_spec(|d| {
                    d.spec.strategy.rolling_update = Some(
                        serde_json::from_value(json!({"maxSurge": s, "maxUnavailable": u}))
                            .unwrap(),
                    )
                });
                self.surge_armed = false;
                self.available_armed = false;
            }
            Op::Pause(p) => self.write_spec(|d| d.spec.paused = *p),
            Op::Rollback(r) => {
                self.write_spec(|d| d.spec.rollback_to = Some(RollbackConfig { revision: *r }))
            }
            Op::DeleteRs(k) => {
                if let Some(i) = self.nth_rs(*k) {
                    let rs = self.rses.remove(i);
                    self.pods.remove(&rs_uid(&rs));
                    self.deleted.push((rs_name(&rs).to_string(), rs_uid(&rs)));
                    self.available_armed = false;
                    self.last_new_revision = None;
                }
            }
            Op::RelabelRs(k) => {
                if let Some(i) = self.nth_rs(*k) {
                    let rv = self.rv();
                    let rs = &mut self.rses[i];
                    rs.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert("app".into(), "moved-away".into());
                    rs.metadata.resource_version = Some(rv);
                }
            }
            Op::RestoreLabels(k) => {
                if let Some(i) = self.nth_rs(*k)
                    && !selected(&self.rses[i])
                {
                    let rv = self.rv();
                    let rs = &mut self.rses[i];
                    rs.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert("app".into(), "web".into());
                    rs.metadata.resource_version = Some(rv);
                }
            }
            Op::Touch(k) => {
                let rv = self.rv();
                let n = self.next_rv;
                if *k == 255 {
                    self.dl
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert("example.com/touched".into(), n.to_string());
                    self.dl.metadata.resource_version = Some(rv);
                } else if let Some(i) = self.nth_rs(*k) {
                    let rs = &mut self.rses[i];
                    rs.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert("example.com/touched".into(), n.to_string());
                    rs.metadata.resource_version = Some(rv);
                }
            }
        }
        self.now += SignedDuration::from_secs(1);
        self.steps += 1;
        if self.trace {
            eprintln!("      {}", self.state());
        }
        self.check()
    }

    /// Each ReplicaSet as (name, ours, spec, ready/pods, reported available).
    fn state(&self) -> String {
        self.rses
            .iter()
            .map(|r| {
                let pods = self.pods_of(r);
                format!(
                    "{}{} spec {} pods {}/{} status {}",
                    rs_name(r),
                    if is_owned(r) { "" } else { " (not ours)" },
                    spec_replicas(r),
                    pods.iter().filter(|p| p.ready).count(),
                    pods.len(),
                    r.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The ReplicaSet controller's sync of one ReplicaSet: pods created
    /// (not ready) or deleted (unready first) to match spec.replicas, and
    /// the status it then reports, a new resourceVersion if it changed.
    fn rs_controller(&mut self, i: usize) {
        let uid = rs_uid(&self.rses[i]);
        self.unreported_flips.remove(&uid);
        let want = spec_replicas(&self.rses[i]).max(0) as usize;
        let name = rs_name(&self.rses[i]).to_string();
        let mut counter = self.next_uid;
        let pods = self.pods.entry(uid).or_default();
        while pods.len() < want {
            counter += 1;
            pods.push(SimPod {
                name: format!("{name}-p{counter}"),
                ready: false,
            });
        }
        while pods.len() > want {
            let victim = pods
                .iter()
                .rposition(|p| !p.ready)
                .unwrap_or(pods.len() - 1);
            pods.remove(victim);
        }
        let ready = pods.iter().filter(|p| p.ready).count() as i32;
        let replicas = pods.len() as i32;
        self.next_uid = counter;
        let rs = &self.rses[i];
        let status = ReplicaSetStatus {
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            fully_labeled_replicas: Some(replicas),
            observed_generation: rs.metadata.generation,
            terminating_replicas: Some(0),
            conditions: None,
        };
        if rs.status.as_ref() != Some(&status) {
            let rv = self.rv();
            let rs = &mut self.rses[i];
            rs.status = Some(status);
            rs.metadata.resource_version = Some(rv);
        }
    }

    /// One reconcile, as `reconciler::reconcile_inner` and `execute` do it.
    fn sync(&mut self) -> Result<SyncOutcome, Violation> {
        // The reconciler's create expectation: no sync while the cache has
        // not yet seen the ReplicaSet this controller created (the real
        // one also gives up after a timeout: here, once the cache has
        // caught up with a server where it is already gone).
        let clock = self.clock();
        let cache = &self.rs_cache;
        let seen = self.expectations.satisfied("default/web", clock, |name| {
            cache
                .iter()
                .find(|r| rs_name(r) == name)
                .map(|r| (rs_uid(r), rs_rv(r).to_string()))
        });
        if !seen {
            return Ok(SyncOutcome::Failed);
        }
        let fresh = self.dl_cache == self.dl && self.rs_cache == self.rses;
        let dl = self.dl_cache.clone();
        // Claim.
        let mut claimed: Vec<ReplicaSet> = Vec::new();
        let mut fresh_checked = false;
        for rs in self.rs_cache.clone() {
            let matches = selected(&rs);
            match controller_uid(&rs) {
                Some(u) if u != DL_UID => continue,
                Some(_) if matches => claimed.push(rs),
                Some(_) => {
                    // Release, conditional on what was read.
                    let Some(live) = self.rses.iter_mut().find(|r| rs_name(r) == rs_name(&rs))
                    else {
                        return Ok(SyncOutcome::Failed);
                    };
                    if rs_rv(live) != rs_rv(&rs) {
                        return Ok(SyncOutcome::Failed);
                    }
                    live.metadata.owner_references = None;
                    self.next_rv += 1;
                    live.metadata.resource_version = Some(self.next_rv.to_string());
                    // Its pods are no longer ours; what is left of ours
                    // starts the revision order over.
                    self.available_armed = false;
                    self.last_new_revision = None;
                }
                None if matches && rs.metadata.deletion_timestamp.is_none() => {
                    if !fresh_checked {
                        // The owner re-read from the server: ours is never
                        // deleted here, so the check passes.
                        fresh_checked = true;
                    }
                    let Some(live) = self.rses.iter_mut().find(|r| rs_name(r) == rs_name(&rs))
                    else {
                        return Ok(SyncOutcome::Failed);
                    };
                    if rs_rv(live) != rs_rv(&rs) {
                        return Ok(SyncOutcome::Failed);
                    }
                    live.metadata.owner_references = Some(vec![super::controller_ref(&dl)]);
                    self.next_rv += 1;
                    live.metadata.resource_version = Some(self.next_rv.to_string());
                    claimed.push(live.clone());
                    // An adopted ReplicaSet brings its pods and its
                    // revision along.
                    self.surge_armed = false;
                    self.recreate_armed = false;
                    self.last_new_revision = None;
                }
                None => {}
            }
        }
        let uids: Vec<String> = claimed.iter().map(rs_uid).collect();
        let pods: Vec<Pod> = self
            .pod_cache
            .iter()
            .filter(|(uid, _)| uids.contains(uid))
            .flat_map(|(uid, ps)| ps.iter().map(move |p| sim_pod(uid, p)))
            .collect();
        // The dry run: the server's defaulting of the object's template.
        let template = self.defaulted(&dl.spec.template);
        let p = plan(SyncInput {
            dl: &dl,
            rses: &claimed,
            pods: &pods,
            template: &template,
            now: self.now,
        });
        if self.trace {
            for a in &p.actions {
                eprintln!("    {}", describe(a));
            }
        }
        let mut current = dl.clone();
        let mut status = p.status.clone();
        for action in &p.actions {
            match action {
                Action::CreateReplicaSet(new) => {
                    let name = rs_name(new).to_string();
                    if let Some(existing) = self.rses.iter().find(|r| rs_name(r) == name) {
                        // handle_name_collision
                        let same =
                            template_of(existing).is_some_and(|t| equal_ignore_hash(&template, t));
                        if is_owned(existing) && same {
                            return Ok(SyncOutcome::Done);
                        }
                        let count = dl
                            .status
                            .as_ref()
                            .and_then(|s| s.collision_count)
                            .unwrap_or(0)
                            + 1;
                        status.collision_count = Some(count);
                        return Ok(self.write_status(&current, status));
                    }
                    let mut stored = (**new).clone();
                    let spec = stored.spec.as_mut().expect("spec");
                    let stored_template = spec.template.clone().expect("template");
                    let stored_template = self.defaulted(&stored_template);
                    stored.spec.as_mut().expect("spec").template = Some(stored_template.clone());
                    // Exactly one ReplicaSet per template: none of ours has it.
                    let dup = self.rses.iter().find(|r| {
                        is_owned(r)
                            && template_of(r)
                                .is_some_and(|t| equal_ignore_hash(t, &stored_template))
                    });
                    ensure!(
                        dup.is_none(),
                        "created {name} for a template that {} (ours) already has",
                        dup.map(rs_name).unwrap_or_default()
                    );
                    let rev = revision(&stored);
                    if fresh {
                        let max = self
                            .rses
                            .iter()
                            .filter(|r| is_owned(r))
                            .map(revision)
                            .max()
                            .unwrap_or(0);
                        ensure!(
                            rev > max,
                            "created {name} at revision {rev}, not above {max}"
                        );
                    }
                    self.next_uid += 1;
                    stored.metadata.uid = Some(format!("uid-{}", self.next_uid));
                    let clock = self.clock();
                    self.expectations
                        .created("default/web", &name, &rs_uid(&stored), clock);
                    stored.metadata.resource_version = Some(self.rv());
                    stored.metadata.creation_timestamp = Some(to_time(self.now));
                    stored.metadata.generation = Some(1);
                    self.rses.push(stored);
                }
                Action::UpdateReplicaSet {
                    name,
                    resource_version,
                    replicas,
                    annotations,
                    min_ready_seconds,
                    ..
                } => {
                    ensure!(
                        !resource_version.is_empty(),
                        "an update of {name} without a resourceVersion"
                    );
                    let rv = self.rv();
                    let fresh_max_other = self
                        .rses
                        .iter()
                        .filter(|r| is_owned(r) && rs_name(r) != name)
                        .map(revision)
                        .max()
                        .unwrap_or(0);
                    let Some(live) = self.rses.iter_mut().find(|r| rs_name(r) == name) else {
                        return Ok(SyncOutcome::Failed);
                    };
                    if rs_rv(live) != resource_version {
                        return Ok(SyncOutcome::Failed);
                    }
                    let before = revision(live);
                    // A merge patch: annotations added or overwritten.
                    live.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .extend(annotations.clone());
                    let after = revision(live);
                    if fresh && after != before {
                        ensure!(
                            after > fresh_max_other,
                            "{name} raised to revision {after}, not above {fresh_max_other}"
                        );
                    }
                    let spec = live.spec.as_mut().expect("spec");
                    if spec.replicas != Some(*replicas)
                        || spec.min_ready_seconds != Some(*min_ready_seconds)
                    {
                        live.metadata.generation = Some(live.metadata.generation.unwrap_or(1) + 1);
                    }
                    spec.replicas = Some(*replicas);
                    spec.min_ready_seconds = Some(*min_ready_seconds);
                    live.metadata.resource_version = Some(rv);
                    let clock = self.clock();
                    self.expectations
                        .updated("default/web", name, resource_version, clock);
                }
                Action::DeleteReplicaSet {
                    name,
                    uid,
                    resource_version,
                } => {
                    let Some(i) = self.rses.iter().position(|r| rs_name(r) == name) else {
                        continue; // 404 is fine
                    };
                    let live = &self.rses[i];
                    if live.metadata.uid.as_ref() != Some(uid) || rs_rv(live) != resource_version {
                        return Ok(SyncOutcome::Failed);
                    }
                    let pods = self.pods.get(uid).map_or(0, Vec::len);
                    ensure!(
                        spec_replicas(live) == 0 && pods == 0,
                        "deleted {name} with spec.replicas {} and {pods} pods",
                        spec_replicas(live)
                    );
                    // An adopted copy of the template is history like any
                    // other; the one that runs it stays.
                    let current = |r: &ReplicaSet| {
                        is_owned(r)
                            && template_of(r).is_some_and(|t| equal_ignore_hash(t, &template))
                    };
                    ensure!(
                        !current(live) || self.rses.iter().filter(|r| current(r)).count() > 1,
                        "deleted {name}, the ReplicaSet of the current template"
                    );
                    self.rses.remove(i);
                    self.pods.remove(uid);
                    self.deleted.push((name.clone(), uid.clone()));
                }
                Action::AnnotateDeployment { annotations } => {
                    if self.dl.metadata.resource_version != current.metadata.resource_version {
                        return Ok(SyncOutcome::Failed);
                    }
                    self.dl
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .extend(annotations.clone());
                    self.dl.metadata.resource_version = Some(self.rv());
                    current = self.dl.clone();
                }
                Action::Rollback {
                    template: t,
                    annotations,
                } => {
                    if self.dl.metadata.resource_version != current.metadata.resource_version {
                        return Ok(SyncOutcome::Failed);
                    }
                    let mut next = current.clone();
                    next.spec.rollback_to = None;
                    if let Some(t) = t {
                        next.spec.template = (**t).clone();
                        let mut all: BTreeMap<String, String> = current
                            .metadata
                            .annotations
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|(k, _)| super::skip_copy_annotation(k))
                            .collect();
                        all.extend(annotations.clone());
                        next.metadata.annotations = Some(all);
                    }
                    // A replace keeps the stored status.
                    next.status = self.dl.status.clone();
                    if next.spec != self.dl.spec {
                        next.metadata.generation =
                            Some(self.dl.metadata.generation.unwrap_or(0) + 1);
                    }
                    next.metadata.resource_version = Some(self.rv());
                    self.dl = next;
                    current = self.dl.clone();
                }
                Action::Event { .. } => {}
            }
        }
        if Some(&status) != current.status.as_ref() {
            return Ok(self.write_status(&current, status));
        }
        Ok(SyncOutcome::Done)
    }

    fn write_status(
        &mut self,
        current: &DeploymentLite,
        status: crate::api::DeploymentLiteStatus,
    ) -> SyncOutcome {
        if self.dl.metadata.resource_version != current.metadata.resource_version {
            return SyncOutcome::Failed;
        }
        self.dl.status = Some(status);
        self.dl.metadata.resource_version = Some(self.rv());
        SyncOutcome::Done
    }

    fn owned(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.rses.iter().filter(|r| is_owned(r))
    }

    fn pods_of(&self, rs: &ReplicaSet) -> &[SimPod] {
        self.pods.get(&rs_uid(rs)).map_or(&[], Vec::as_slice)
    }

    /// The invariants, on the server's state after every operation.
    fn check(&mut self) -> Result<(), Violation> {
        let replicas = self.dl.spec.replicas;
        let (surge, unavailable) = self.bounds();
        let spec_sum: i32 = self.owned().map(spec_replicas).sum();
        let pods: i32 = self.owned().map(|r| self.pods_of(r).len() as i32).sum();
        let scaling_down = self
            .owned()
            .any(|r| self.pods_of(r).len() as i32 > spec_replicas(r));
        // Availability as the controller (like upstream's) can know it:
        // what the ReplicaSets report, and of that no more than each keeps
        // (spec.replicas). A pod that turned ready since its ReplicaSet's
        // last status counts once it is reported.
        let available: i32 = self
            .owned()
            .map(|r| {
                let reported = r
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0);
                reported.min(spec_replicas(r))
            })
            .sum();

        // Surge: ReplicaSet sizes always; live pods while no ReplicaSet is
        // still scaling down (the ReplicaSet controller's lag).
        let max = replicas + surge;
        let surge_ok = spec_sum <= max && (scaling_down || pods <= max);
        if self.surge_armed {
            ensure!(
                surge_ok,
                "surge: {spec_sum} pods wanted / {pods} live > {replicas}+{surge}"
            );
        }
        // Armed only once a sync has seen the spec these bounds come from.
        let observed = self.dl.status.as_ref().and_then(|s| s.observed_generation)
            == self.dl.metadata.generation;
        self.surge_armed |= surge_ok && observed;

        if !self.recreate() {
            let min = replicas - unavailable;
            if self.available_armed {
                ensure!(
                    available >= min,
                    "availability: {available} available < {replicas}-{unavailable}"
                );
            }
            self.available_armed |=
                available >= min && observed && self.unreported_flips.is_empty();
        } else {
            // Recreate: never pods of two ReplicaSets at once (counting
            // those that want pods: the ReplicaSet controller may act on
            // them at any moment).
            let with_pods = self
                .owned()
                .filter(|r| !self.pods_of(r).is_empty() || spec_replicas(r) > 0)
                .count();
            if self.recreate_armed {
                ensure!(
                    with_pods <= 1,
                    "recreate: {with_pods} ReplicaSets have pods at once"
                );
            }
            self.recreate_armed |= with_pods <= 1;
        }

        // Revisions: the new ReplicaSet (the oldest of ours with the
        // current template) is above every other one of ours, once the
        // controller has seen this generation, and never goes back.
        let template = self.defaulted(&self.dl.spec.template.clone());
        if observed && !self.dl.spec.paused {
            let mut mine: Vec<&ReplicaSet> = self
                .owned()
                .filter(|r| template_of(r).is_some_and(|t| equal_ignore_hash(t, &template)))
                .collect();
            mine.sort_by_key(|r| {
                (
                    r.metadata.creation_timestamp.clone(),
                    rs_name(r).to_string(),
                )
            });
            if let Some(new) = mine.first() {
                let rev = revision(new);
                let name = rs_name(new).to_string();
                if let Some((last_name, last)) = &self.last_new_revision {
                    if *last_name == name {
                        ensure!(
                            rev >= *last,
                            "{name}'s revision went back from {last} to {rev}"
                        );
                    } else {
                        ensure!(
                            rev > *last,
                            "new ReplicaSet {name} at revision {rev}, not above {last_name}'s {last}"
                        );
                    }
                }
                let others = self
                    .owned()
                    .filter(|r| rs_name(r) != name)
                    .map(revision)
                    .max()
                    .unwrap_or(0);
                if rev > others {
                    self.last_new_revision = Some((name, rev));
                }
            }
        }
        Ok(())
    }

    /// The end of a sequence: the user resumes; with caches in step and
    /// pods turning ready, the rollout must complete, within bounds, and
    /// leave the history limit kept.
    fn converge(&mut self) -> Result<(), Violation> {
        let trace = self.trace;
        self.apply(&Op::Pause(false))?;
        let mut last = String::new();
        for round in 0..60 {
            self.apply(&Op::CacheCatchUp(7))?;
            if trace {
                eprintln!("  round {round}: Sync");
            }
            self.apply(&Op::Sync)?;
            self.apply(&Op::RsController(255))?;
            self.apply(&Op::PodsReady(round))?;
            self.apply(&Op::RsController(255))?;
            let replicas = self.dl.spec.replicas;
            let template = self.defaulted(&self.dl.spec.template.clone());
            let status = self.dl.status.clone().unwrap_or_default();
            let current: Vec<&ReplicaSet> = self
                .owned()
                .filter(|r| template_of(r).is_some_and(|t| equal_ignore_hash(t, &template)))
                .collect();
            let old: Vec<&ReplicaSet> = self
                .owned()
                .filter(|r| !template_of(r).is_some_and(|t| equal_ignore_hash(t, &template)))
                .collect();
            let progressing = status
                .conditions
                .iter()
                .find(|c| c.type_ == reason::PROGRESSING)
                .and_then(|c| c.reason.clone())
                .unwrap_or_default();
            let done = status.observed_generation == self.dl.metadata.generation
                && self.dl.spec.rollback_to.is_none()
                && current.iter().map(|r| spec_replicas(r)).sum::<i32>() == replicas
                && old
                    .iter()
                    .all(|r| spec_replicas(r) == 0 && self.pods_of(r).is_empty())
                && status.available_replicas == replicas
                && status.updated_replicas == replicas
                && progressing == reason::NEW_RS_AVAILABLE;
            last = format!(
                "status {:?}, ReplicaSets {:?}",
                (
                    status.observed_generation,
                    status.replicas,
                    status.updated_replicas,
                    status.available_replicas,
                    &progressing
                ),
                self.owned()
                    .map(|r| (
                        rs_name(r),
                        revision(r),
                        spec_replicas(r),
                        self.pods_of(r).len()
                    ))
                    .collect::<Vec<_>>()
            );
            // Cleanup runs on the sync after the complete status is stored.
            if done {
                let limit = self.dl.spec.revision_history_limit.unwrap_or(i32::MAX) as usize;
                let settled = round > 0 && old.len() <= limit;
                if settled {
                    // An adopted copy of the template may stay as history,
                    // scaled to 0; one ReplicaSet runs the template.
                    let active = current.iter().filter(|r| spec_replicas(r) > 0).count();
                    ensure!(
                        active <= 1,
                        "{active} active ReplicaSets of the current template: {last}"
                    );
                    return Ok(());
                }
            }
        }
        Err(Violation(format!("no convergence after 60 rounds: {last}")))
    }
}

fn sim_pod(rs_uid: &str, p: &SimPod) -> Pod {
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    // Built directly rather than from JSON: this runs for every pod of
    // every sync.
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(NS.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: rs_uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::CreateReplicaSet(rs) => format!(
            "create {} at {} (revision {})",
            rs_name(rs),
            spec_replicas(rs),
            revision(rs)
        ),
        Action::UpdateReplicaSet {
            name,
            from,
            replicas,
            annotations,
            ..
        } => format!(
            "update {name} {from}->{replicas} (revision {})",
            annotations
                .get(REVISION_ANNOTATION)
                .map_or("-", String::as_str)
        ),
        Action::DeleteReplicaSet { name, .. } => format!("delete {name}"),
        Action::AnnotateDeployment { annotations } => format!("annotate {annotations:?}"),
        Action::Rollback { template, .. } => {
            format!("rollback (template: {})", template.is_some())
        }
        Action::Event {
            reason, message, ..
        } => format!("event {reason}: {message}"),
    }
}

/// Runs one sequence; the error names the operation that broke it.
fn run_ops(setup: &Setup, ops: &[Op], trace: bool) -> Result<(), String> {
    let mut w = World::new(setup, trace);
    for (i, op) in ops.iter().enumerate() {
        if trace {
            eprintln!("  [{i}] {op:?}");
        }
        w.apply(op)
            .map_err(|v| format!("after op {i} ({op:?}): {v:?}"))?;
    }
    if trace {
        eprintln!("  converging");
    }
    w.converge().map_err(|v| format!("at the end: {v:?}"))
}

fn case(seed: u64) -> (Setup, Vec<Op>) {
    let mut rng = Rng::new(seed);
    let setup = gen_setup(&mut rng);
    let n = 30 + rng.below(50) as usize;
    (setup, gen_ops(&mut rng, n))
}

/// Drops operations (halves, then smaller chunks, then single ones) while
/// the sequence still fails.
fn shrink(setup: &Setup, mut ops: Vec<Op>) -> (Vec<Op>, String) {
    let mut err = run_ops(setup, &ops, false).expect_err("shrink starts from a failure");
    let mut chunk = ops.len() / 2;
    while chunk >= 1 {
        let mut i = 0;
        while i + chunk <= ops.len() {
            let mut candidate = ops.clone();
            candidate.drain(i..i + chunk);
            match run_ops(setup, &candidate, false) {
                Err(e) => {
                    ops = candidate;
                    err = e;
                }
                Ok(()) => i += 1,
            }
        }
        chunk /= 2;
    }
    (ops, err)
}

fn planner_case(seed: u64, trace: bool) -> Result<(), String> {
    let (setup, ops) = case(seed);
    if trace {
        eprintln!("setup: {setup:?}");
    }
    match run_ops(&setup, &ops, trace) {
        Ok(()) => Ok(()),
        Err(_) if trace => run_ops(&setup, &ops, false),
        Err(_) => {
            let (ops, err) = shrink(&setup, ops);
            eprintln!("trace of the shrunk sequence:");
            let _ = run_ops(&setup, &ops, true);
            Err(format!(
                "{err}\nsetup: {setup:?}\nshrunk to {} operations:\n{}",
                ops.len(),
                ops.iter()
                    .map(|o| format!("  {o:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        }
    }
}

#[test]
fn planner_model_fuzz() {
    fuzz("planner_model_fuzz", 2000, planner_case);
}

/// Seed 3, shrunk: a Recreate object whose template changes together with
/// a rollback request. The rollback created the new template's ReplicaSet
/// at full size while the old pods still ran.
#[test]
fn regression_recreate_rollback_with_a_new_template_never_runs_both() {
    let setup = Setup {
        replicas: 5,
        recreate: true,
        surge: 128,
        unavailable: 133,
        history_limit: 0,
        template: TemplateChoice {
            canon: 0,
            spelling: 186,
        },
    };
    let ops = [
        Op::Sync,
        Op::RsController(255),
        Op::Rollback(0),
        Op::Template(TemplateChoice {
            canon: 168,
            spelling: 36,
        }),
        Op::Sync,
    ];
    run_ops(&setup, &ops, false).unwrap();
}

fn tc(canon: u8, spelling: u8) -> TemplateChoice {
    TemplateChoice { canon, spelling }
}

/// Seed 18, shrunk: someone deletes the running ReplicaSet of a Recreate
/// object, then a rollback comes with a new template. The rollback created
/// the new ReplicaSet at full size while the recreated old one still
/// wanted its pods.
#[test]
fn regression_recreate_rollback_waits_for_an_active_old_replica_set() {
    let setup = Setup {
        replicas: 6,
        recreate: true,
        surge: 24,
        unavailable: 190,
        history_limit: 2,
        template: tc(2, 79),
    };
    let ops = [
        Op::Sync,
        Op::CacheCatchUp(175),
        Op::DeleteRs(158),
        Op::Rollback(0),
        Op::CacheCatchUp(46),
        Op::Template(tc(0, 167)),
        Op::Sync,
    ];
    run_ops(&setup, &ops, false).unwrap();
}

/// Seed 376, shrunk: a scaling event shrinks an old ReplicaSet whose
/// status still reports its earlier, larger availability; the next sync
/// counted those pods as available and scaled it to 0, below minAvailable.
#[test]
fn regression_pods_above_spec_replicas_are_not_counted_available() {
    let setup = Setup {
        replicas: 8,
        recreate: false,
        surge: 126,
        unavailable: 1,
        history_limit: 0,
        template: tc(2, 14),
    };
    let ops = [
        Op::Template(tc(157, 1)),
        Op::Sync,
        Op::RsController(31),
        Op::CacheCatchUp(183),
        Op::Sync,
        Op::CacheCatchUp(159),
        Op::Sync,
        Op::Scale(3),
        Op::PodsReady(12396880771690542296),
        Op::RsController(255),
        Op::CacheCatchUp(59),
        Op::Sync,
    ];
    run_ops(&setup, &ops, false).unwrap();
}

/// Seed 454, shrunk: the controller scales the new ReplicaSet up, the
/// template changes, and the next sync plans from a ReplicaSet cache that
/// has not seen the scale-up: the next ReplicaSet was created at a size
/// computed for the old one's earlier size, past maxSurge. The create
/// expectations (controller/expectations.rs) hold the sync back.
#[test]
fn regression_no_plan_from_a_cache_behind_the_controllers_own_writes() {
    let setup = Setup {
        replicas: 7,
        recreate: false,
        surge: 170,
        unavailable: 17,
        history_limit: 0,
        template: tc(1, 166),
    };
    let ops = [
        Op::Template(tc(110, 108)),
        Op::Sync,
        Op::CacheCatchUp(143),
        Op::Sync,
        Op::CacheCatchUp(159),
        Op::Sync,
        Op::Template(tc(131, 79)),
        Op::CacheCatchUp(173),
        Op::Sync,
    ];
    run_ops(&setup, &ops, false).unwrap();
}

/// Seed 460, shrunk: a Recreate object adopts a second active ReplicaSet
/// while it is scaled; every sync was a scaling event that Recreate cannot
/// scale, so both kept running forever.
#[test]
fn regression_recreate_with_two_active_replica_sets_is_not_stuck_scaling() {
    let setup = Setup {
        replicas: 2,
        recreate: true,
        surge: 66,
        unavailable: 37,
        history_limit: 3,
        template: tc(0, 92),
    };
    let ops = [
        Op::Template(tc(99, 102)),
        Op::Sync,
        Op::RelabelRs(111),
        Op::CacheCatchUp(47),
        Op::Sync,
        Op::Scale(6),
        Op::RestoreLabels(18),
    ];
    run_ops(&setup, &ops, false).unwrap();
}

#[test]
fn the_server_model_canonicalises_what_the_generator_writes() {
    // Every spelling of a meaning defaults to the same template; different
    // meanings never do. Without this the fuzzer would not test template
    // identity at all.
    for canon in 0..CANON_COUNT {
        let base = server_default(
            &serde_json::from_value(TemplateChoice { canon, spelling: 0 }.json()).unwrap(),
        );
        for spelling in 0..32 {
            let t: PodTemplateSpec =
                serde_json::from_value(TemplateChoice { canon, spelling }.json()).unwrap();
            assert!(
                equal_ignore_hash(&server_default(&t), &base),
                "{canon}/{spelling}"
            );
        }
        for other in 0..CANON_COUNT {
            if other != canon {
                let o = server_default(
                    &serde_json::from_value(
                        TemplateChoice {
                            canon: other,
                            spelling: 0,
                        }
                        .json(),
                    )
                    .unwrap(),
                );
                assert!(!equal_ignore_hash(&o, &base), "{canon} vs {other}");
            }
        }
    }
}
