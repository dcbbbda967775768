//! Model-based fuzzing of the scheduler (issue 13).
//!
//! Random clusters (nodes with capacities, labels, taints, cordons; pods
//! already bound) and random pending pods (requests, node selectors and
//! required node affinity, tolerations, host ports, required pod
//! anti-affinity by host or zone) go through the real
//! scheduling queue, cache and [`schedule_pod`], driven as the scheduling
//! loop drives them: pop, schedule, assume, bind; bindings that succeed,
//! fail, or are confirmed by the watch later; pod updates arriving while a
//! binding is in flight; bound pods deleted.
//!
//! Every binding is re-checked by the filters evaluated here, written from
//! the Kubernetes rules and not with the plugins' code; no pod ever gets a
//! second binding request; every unschedulable verdict names each node once
//! with a reason, and indeed no node passes the filters here.
//!
//! Not modelled: pod affinity, topology spread, scheduling gates, init
//! containers and overhead (the plugins' table tests cover them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::backend::cache::SchedulerCache;
use super::backend::cluster_event::ClusterEvent;
use super::backend::queue::{QueueConfig, SchedulingQueue, pod_key};
use super::framework::Profile;
use super::framework::types::assigned_node;
use super::plugins::default_framework;
use super::schedule_one::{fit_error_message, schedule_pod};
use super::testing::{affinity_term, node, pod, term, toleration};
use crate::fuzzing::{Rng, fuzz};

const ZONES: [&str; 3] = ["z1", "z2", "z3"];
const APPS: [&str; 3] = ["web", "db", "cache"];
/// (key, value, effect) of the taints nodes may carry.
const TAINTS: [(&str, &str, &str); 3] = [
    ("dedicated", "gpu", "NoSchedule"),
    ("maintenance", "", "NoExecute"),
    ("spot", "true", "PreferNoSchedule"),
];
const HOST_PORTS: [i32; 2] = [8080, 9090];

/// A pending pod's wishes, as generated; [`PodSpec::build`] turns them into
/// a Pod and [`fits`] reads them back independently.
#[derive(Clone, Debug)]
struct PodSpec {
    name: String,
    app: &'static str,
    cpu_m: u64,
    mem_mi: u64,
    zone_selector: Option<&'static str>,
    /// Required node affinity: `disk In [ssd]`, or `zone NotIn [z]`.
    needs_ssd: bool,
    not_zone: Option<&'static str>,
    /// Tolerated taint keys (index into TAINTS), and the cordon.
    tolerates: Vec<usize>,
    tolerates_unschedulable: bool,
    host_port: Option<i32>,
    /// Required anti-affinity to pods of this app, by host or by zone.
    anti: Option<(&'static str, bool)>,
    node_name: Option<String>,
}

impl PodSpec {
    fn build(&self) -> Pod {
        let cpu = format!("{}m", self.cpu_m);
        let mem = format!("{}Mi", self.mem_mi);
        let mut b = pod(&self.name)
            .label("app", self.app)
            .container(&[("cpu", &cpu), ("memory", &mem)]);
        if let Some(z) = self.zone_selector {
            b = b.node_selector(&[("zone", z)]);
        }
        let mut exprs: Vec<(&str, &str, &[&str])> = Vec::new();
        if self.needs_ssd {
            exprs.push(("disk", "In", &["ssd"]));
        }
        let not_zone = self.not_zone.map(|z| [z]);
        if let Some(z) = &not_zone {
            exprs.push(("zone", "NotIn", z));
        }
        if !exprs.is_empty() {
            b = b.required_terms(vec![term(&exprs)]);
        }
        for &t in &self.tolerates {
            let (key, value, effect) = TAINTS[t];
            b = if value.is_empty() {
                b.toleration(toleration(key, "Exists", "", effect))
            } else {
                b.toleration(toleration(key, "Equal", value, effect))
            };
        }
        if self.tolerates_unschedulable {
            b = b.toleration(toleration(
                "node.kubernetes.io/unschedulable",
                "Exists",
                "",
                "NoSchedule",
            ));
        }
        if let Some(p) = self.host_port {
            b = b.host_port("TCP", "", p);
        }
        if let Some((app, by_zone)) = self.anti {
            let key = if by_zone {
                "zone"
            } else {
                "kubernetes.io/hostname"
            };
            b = b.anti_affinity(affinity_term(key, &[("app", app)]));
        }
        if let Some(n) = &self.node_name {
            b = b.on(n);
        }
        let mut p = b.build();
        p.metadata.uid = Some(format!("uid-{}", self.name));
        p.spec.as_mut().unwrap().scheduler_name = Some("dlite-scheduler".into());
        p
    }
}

#[derive(Clone, Debug)]
struct NodeSpec {
    name: String,
    zone: &'static str,
    ssd: bool,
    cpu_m: u64,
    mem_mi: u64,
    pods: u64,
    taints: Vec<usize>,
    unschedulable: bool,
}

impl NodeSpec {
    fn build(&self) -> Node {
        let mut b = node(&self.name)
            .label("zone", self.zone)
            .label("kubernetes.io/hostname", &self.name)
            .allocatable(
                &format!("{}m", self.cpu_m),
                &format!("{}Mi", self.mem_mi),
                &self.pods.to_string(),
            );
        if self.ssd {
            b = b.label("disk", "ssd");
        }
        for &t in &self.taints {
            let (k, v, e) = TAINTS[t];
            b = b.taint(k, v, e);
        }
        if self.unschedulable {
            b = b.unschedulable();
        }
        b.build()
    }
}

/// The filters, from the rules: why `p` cannot go to `n` next to `on`
/// (every pod assigned or assumed anywhere, with its node), or `None`.
fn fits(
    p: &PodSpec,
    n: &NodeSpec,
    nodes: &[NodeSpec],
    on: &[(PodSpec, String)],
) -> Option<&'static str> {
    if n.unschedulable && !p.tolerates_unschedulable {
        return Some("unschedulable");
    }
    if p.node_name.as_ref().is_some_and(|want| *want != n.name) {
        return Some("node name");
    }
    for &t in &n.taints {
        if TAINTS[t].2 != "PreferNoSchedule" && !p.tolerates.contains(&t) {
            return Some("taint");
        }
    }
    if p.zone_selector.is_some_and(|z| z != n.zone)
        || (p.needs_ssd && !n.ssd)
        || p.not_zone == Some(n.zone)
    {
        return Some("node affinity");
    }
    let here: Vec<&PodSpec> = on
        .iter()
        .filter(|(_, node)| *node == n.name)
        .map(|(p, _)| p)
        .collect();
    if p.host_port.is_some() && here.iter().any(|q| q.host_port == p.host_port) {
        return Some("host port");
    }
    let zone_of = |name: &str| nodes.iter().find(|x| x.name == name).map(|x| x.zone);
    let same_domain = |by_zone: bool, other_node: &str| {
        if by_zone {
            zone_of(other_node) == Some(n.zone)
        } else {
            other_node == n.name
        }
    };
    // The incoming pod's anti-affinity, and every existing pod's (it is
    // symmetric).
    if let Some((app, by_zone)) = p.anti
        && on
            .iter()
            .any(|(q, node)| q.app == app && same_domain(by_zone, node))
    {
        return Some("anti-affinity");
    }
    if on.iter().any(|(q, node)| {
        q.anti
            .is_some_and(|(app, by_zone)| app == p.app && same_domain(by_zone, node))
    }) {
        return Some("existing anti-affinity");
    }
    let cpu: u64 = here.iter().map(|q| q.cpu_m).sum();
    let mem: u64 = here.iter().map(|q| q.mem_mi).sum();
    if here.len() as u64 + 1 > n.pods || cpu + p.cpu_m > n.cpu_m || mem + p.mem_mi > n.mem_mi {
        return Some("resources");
    }
    None
}

fn gen_node(rng: &mut Rng, i: usize) -> NodeSpec {
    let mut taints = vec![];
    for t in 0..TAINTS.len() {
        if rng.pct(15) {
            taints.push(t);
        }
    }
    NodeSpec {
        name: format!("n{i}"),
        zone: ZONES[rng.below(3) as usize],
        ssd: rng.pct(50),
        cpu_m: 500 * (1 + rng.below(8)),
        mem_mi: 512 * (1 + rng.below(8)),
        pods: 1 + rng.below(6),
        taints,
        unschedulable: rng.pct(10),
    }
}

fn gen_pod(rng: &mut Rng, name: String) -> PodSpec {
    let mut tolerates = vec![];
    for t in 0..TAINTS.len() {
        if rng.pct(30) {
            tolerates.push(t);
        }
    }
    PodSpec {
        name,
        app: APPS[rng.below(3) as usize],
        cpu_m: 100 * (1 + rng.below(15)),
        mem_mi: 128 * (1 + rng.below(12)),
        zone_selector: rng.pct(15).then(|| ZONES[rng.below(3) as usize]),
        needs_ssd: rng.pct(20),
        not_zone: rng.pct(15).then(|| ZONES[rng.below(3) as usize]),
        tolerates,
        tolerates_unschedulable: rng.pct(10),
        host_port: rng.pct(20).then(|| HOST_PORTS[rng.below(2) as usize]),
        anti: rng
            .pct(25)
            .then(|| (APPS[rng.below(3) as usize], rng.pct(40))),
        // A pod with spec.nodeName never reaches a scheduler.
        node_name: None,
    }
}

/// One binding request on its way to the API server.
struct Binding {
    key: String,
    node: String,
}

/// The scheduler's queue and cache with the loop's steps around them, a
/// server that records bindings, and the model the checks read.
struct Harness {
    nodes: Vec<NodeSpec>,
    specs: BTreeMap<String, PodSpec>,
    queue: SchedulingQueue,
    cache: SchedulerCache,
    framework: super::framework::Framework,
    now: Instant,
    start_index: usize,
    /// The server: pod key -> node of its binding.
    bound: BTreeMap<String, String>,
    in_flight: Vec<Binding>,
    /// Bound pods whose watch event has not arrived yet.
    unconfirmed: Vec<String>,
    /// What the checks believe is placed: bound, or assumed by the cache.
    placed: BTreeMap<String, String>,
    trace: bool,
    schedulings: usize,
    verdicts: usize,
}

impl Harness {
    fn events(&mut self, events: Vec<ClusterEvent>) {
        for e in events {
            self.queue.move_for_event(e, self.now);
        }
    }

    fn placed_pods(&self) -> Vec<(PodSpec, String)> {
        self.placed
            .iter()
            .map(|(k, n)| (self.specs[k].clone(), n.clone()))
            .collect()
    }

    /// The loop's schedule_one, with the checks around the real cycle.
    fn schedule_next(&mut self, random: u64) -> Result<(), String> {
        self.queue.flush(self.now);
        let Some(popped) = self.queue.pop() else {
            return Ok(());
        };
        let key = popped.key.clone();
        if assigned_node(&popped.pod).is_some() {
            self.queue.delete(&key);
            return Ok(());
        }
        let spec = self.specs[&key].clone();
        match schedule_pod(
            &self.framework,
            &popped.pod,
            self.cache.snapshot(),
            self.start_index,
            random,
        ) {
            Ok(result) => {
                self.start_index = result.next_start_index;
                let host = result.suggested_host;
                let n = self.nodes.iter().find(|n| n.name == host).unwrap().clone();
                let others: Vec<(PodSpec, String)> = self
                    .placed_pods()
                    .into_iter()
                    .filter(|(p, _)| p.name != spec.name)
                    .collect();
                if let Some(why) = fits(&spec, &n, &self.nodes, &others) {
                    return Err(format!(
                        "{key} scheduled to {host}, which fails {why}: {spec:?} on {n:?} next to {others:?}"
                    ));
                }
                match self.cache.assume_pod(&popped.pod, &host) {
                    Err(_) => self.queue.requeue_backoff(&key, self.now),
                    Ok(()) => {
                        if let Some(b) = self.in_flight.iter().find(|b| b.key == key) {
                            return Err(format!(
                                "{key}: a second binding (to {host}) while one to {} is in flight",
                                b.node
                            ));
                        }
                        if let Some(node) = self.bound.get(&key) {
                            return Err(format!(
                                "{key}: a second binding (to {host}), already bound to {node}"
                            ));
                        }
                        self.placed.insert(key.clone(), host.clone());
                        self.in_flight.push(Binding { key, node: host });
                        self.schedulings += 1;
                    }
                }
            }
            Err(fit) => {
                self.start_index = fit.next_start_index;
                self.verdicts += 1;
                let message = fit_error_message(fit.num_all_nodes, &fit.diagnosis);
                let names: BTreeSet<&str> = fit
                    .diagnosis
                    .nodes
                    .iter()
                    .map(|d| d.node.as_str())
                    .collect();
                if fit.diagnosis.nodes.len() != self.nodes.len() || names.len() != self.nodes.len()
                {
                    return Err(format!(
                        "{key} unschedulable, but the verdict names {} of {} nodes: {:?}",
                        names.len(),
                        self.nodes.len(),
                        fit.diagnosis.nodes
                    ));
                }
                if let Some(d) = fit
                    .diagnosis
                    .nodes
                    .iter()
                    .find(|d| d.reasons.is_empty() || d.plugin.is_empty())
                {
                    return Err(format!(
                        "{key}: node {} rejected without a reason: {d:?}",
                        d.node
                    ));
                }
                let prefix = format!("0/{} nodes are available: ", self.nodes.len());
                if !message.starts_with(&prefix) {
                    return Err(format!("{key}: message {message:?}"));
                }
                let others = self.placed_pods();
                if let Some(n) = self
                    .nodes
                    .iter()
                    .find(|n| fits(&spec, n, &self.nodes, &others).is_none())
                {
                    return Err(format!(
                        "{key} unschedulable ({message}), but fits {}: {spec:?} on {n:?} next to {others:?}",
                        n.name
                    ));
                }
                self.queue.requeue_unschedulable(
                    &key,
                    fit.diagnosis.unschedulable_plugins,
                    self.now,
                );
            }
        }
        Ok(())
    }

    /// The server answers a binding request.
    fn finish_binding(&mut self, i: usize, ok: bool) {
        let b = self.in_flight.remove(i % self.in_flight.len());
        if ok {
            self.bound.insert(b.key.clone(), b.node);
            self.unconfirmed.push(b.key);
        } else {
            // handle_bind_done's Failed.
            if self.cache.forget_pod(&b.key) {
                self.events(vec![ClusterEvent::AssignedPodDelete]);
            }
            self.placed.remove(&b.key);
            self.queue.requeue_backoff(&b.key, self.now);
        }
    }

    /// The watch shows a bound pod (apply_pod of an assigned pod).
    fn confirm(&mut self, i: usize) {
        let key = self.unconfirmed.remove(i % self.unconfirmed.len());
        let node = self.bound[&key].clone();
        let mut spec = self.specs[&key].clone();
        spec.node_name = Some(node.clone());
        self.queue.delete(&key);
        let events = self.cache.add_or_update_pod(Arc::new(spec.build()));
        self.events(events);
        self.placed.insert(key, node);
    }

    /// A pending pod's update arrives (a label the scheduler ignores),
    /// possibly while it is in flight: the loop's apply_pod.
    fn update_pending(&mut self, i: usize) {
        let pending: Vec<String> = self
            .specs
            .keys()
            .filter(|k| !self.bound.contains_key(*k))
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        let key = &pending[i % pending.len()];
        let mut p = self.specs[key].build();
        p.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("touched".into(), "yes".into());
        self.queue.add_or_update(Arc::new(p), self.now);
    }

    /// A bound and confirmed pod is deleted.
    fn delete_bound(&mut self, i: usize) {
        let confirmed: Vec<String> = self
            .bound
            .keys()
            .filter(|k| !self.unconfirmed.contains(k))
            .cloned()
            .collect();
        if confirmed.is_empty() {
            return;
        }
        let key = confirmed[i % confirmed.len()].clone();
        self.bound.remove(&key);
        self.placed.remove(&key);
        self.specs.remove(&key);
        self.queue.delete(&key);
        let events = self.cache.remove_pod(&key);
        self.events(events);
    }
}

fn scheduler_case(seed: u64, trace: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let nodes: Vec<NodeSpec> = (0..1 + rng.below(8) as usize)
        .map(|i| gen_node(&mut rng, i))
        .collect();
    let mut h = Harness {
        nodes: nodes.clone(),
        specs: BTreeMap::new(),
        queue: SchedulingQueue::new(QueueConfig::default()),
        cache: SchedulerCache::new(),
        framework: default_framework(Profile {
            scheduler_name: "dlite-scheduler".into(),
            ..Profile::default()
        }),
        now: Instant::now(),
        start_index: 0,
        bound: BTreeMap::new(),
        in_flight: vec![],
        unconfirmed: vec![],
        placed: BTreeMap::new(),
        trace,
        schedulings: 0,
        verdicts: 0,
    };
    for n in &nodes {
        let events = h.cache.add_or_update_node(n.build());
        h.events(events);
    }
    // Pods already running, wherever the rules let them be.
    for i in 0..rng.below(6) {
        let mut spec = gen_pod(&mut rng, format!("old{i}"));
        spec.node_name = None;
        let placed = h.placed_pods();
        if let Some(n) = nodes
            .iter()
            .find(|n| fits(&spec, n, &nodes, &placed).is_none())
        {
            let key = pod_key(&spec.build());
            spec.node_name = Some(n.name.clone());
            let events = h.cache.add_or_update_pod(Arc::new(spec.build()));
            h.events(events);
            h.bound.insert(key.clone(), n.name.clone());
            h.placed.insert(key.clone(), n.name.clone());
            spec.node_name = None;
            h.specs.insert(key, spec);
        }
    }
    let mut next_pod = 0;
    for step in 0..60 {
        let r = rng.below(100);
        if h.trace {
            eprintln!(
                "  [{step}] r={r} in flight {} unconfirmed {}",
                h.in_flight.len(),
                h.unconfirmed.len()
            );
        }
        match r {
            0..=19 => {
                let spec = gen_pod(&mut rng, format!("p{next_pod}"));
                next_pod += 1;
                let p = spec.build();
                h.specs.insert(pod_key(&p), spec);
                h.queue.add_or_update(Arc::new(p), h.now);
            }
            20..=59 => {
                let random = rng.u64();
                h.schedule_next(random)
                    .map_err(|e| format!("step {step}: {e}"))?;
            }
            60..=74 if !h.in_flight.is_empty() => {
                let (i, ok) = (rng.below(64) as usize, rng.pct(85));
                h.finish_binding(i, ok);
            }
            75..=86 if !h.unconfirmed.is_empty() => h.confirm(rng.below(64) as usize),
            87..=93 => h.update_pending(rng.below(64) as usize),
            94..=97 => h.delete_bound(rng.below(64) as usize),
            _ => h.now += Duration::from_secs(1 + rng.below(5)),
        }
    }
    if h.trace {
        eprintln!(
            "  {} schedulings, {} unschedulable verdicts",
            h.schedulings, h.verdicts
        );
    }
    SCHEDULINGS.fetch_add(h.schedulings, Ordering::Relaxed);
    VERDICTS.fetch_add(h.verdicts, Ordering::Relaxed);
    Ok(())
}

static SCHEDULINGS: AtomicUsize = AtomicUsize::new(0);
static VERDICTS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn scheduler_model_fuzz() {
    fuzz("scheduler_model_fuzz", 1000, scheduler_case);
    // Both kinds of check must have run, many times.
    let (s, v) = (
        SCHEDULINGS.load(Ordering::Relaxed),
        VERDICTS.load(Ordering::Relaxed),
    );
    eprintln!("scheduler_model_fuzz: {s} bindings and {v} unschedulable verdicts checked");
    assert!(s > 100 && v > 100, "{s} bindings, {v} verdicts checked");
}
