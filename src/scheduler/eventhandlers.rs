//! The scheduling loop: one thread that owns the cache and the queue,
//! applies watch events between cycles, and runs one cycle at a time
//! (pop, filter, score, assume), handing bindings and failure records to
//! async tasks.
//!
//! Owning the state on one thread means a cycle reads the snapshot without
//! locks or copies, and no event can change it mid-cycle; the cycle itself
//! fans nodes out over the [`Parallelizer`]. Everything the loop hears
//! arrives as a [`Msg`] on one channel, in the order it happened.
//!
//! The channel is bounded ([`MSG_CHANNEL_CAPACITY`]): when the loop falls
//! behind, the senders (watch forwarders and binding tasks, all async) wait
//! instead of queueing without limit, and a waiting watch leaves its events
//! on the API server's side, which ends a watcher that lags too far and
//! makes it relist. Memory stays bounded however fast the cluster changes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{Receiver, Sender};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

use crate::runtime::events::EventType;

use super::backend::cache::SchedulerCache;
use super::backend::cluster_event::ClusterEvent;
use super::backend::queue::{PodKey, QueueConfig, SchedulingQueue, pod_key};
use super::binder::{
    self, BindOutcome, EventRecord, EventSink, FailureRecord, REASON_FAILED_SCHEDULING,
    REASON_PREEMPTED, REASON_SCHEDULED, pod_reference,
};
use super::diagnosis::SchedulingDiagnosis;
use super::framework::Framework;
use super::framework::parallelize::Parallelizer;
use super::framework::types::{assigned_node, is_terminal, node_name, pod_name, pod_namespace};
use super::metrics::{RESULT_ERROR, RESULT_SCHEDULED, RESULT_UNSCHEDULABLE, SchedulerMetrics};
use super::preemption::Candidate;
use super::schedule_one::{FitError, schedule_pod_with};

/// Messages the loop's channel holds before senders wait. A relist of a
/// large cluster streams through it a page at a time; 1024 events are a
/// few milliseconds of the loop's work, enough to keep it busy.
pub const MSG_CHANNEL_CAPACITY: usize = 1024;

/// How soon a pod whose last failure is still being written is tried again.
const FAILURE_WRITE_RETRY: Duration = Duration::from_millis(100);
/// Longest wait for a message when nothing is due, so the loop logs its
/// state now and then.
const IDLE_TICK: Duration = Duration::from_secs(10);
/// How often the queue gauges are refreshed (counting walks every pod).
const QUEUE_METRICS_PERIOD: Duration = Duration::from_secs(1);
/// How long shutdown waits for bindings already sent.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the loop hears about.
pub enum Msg {
    // Boxed: watch events are large and the channel holds many.
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    Namespace(Box<Event<PartialObjectMeta<Namespace>>>),
    PodDisruptionBudget(Box<Event<PodDisruptionBudget>>),
    BindDone {
        key: PodKey,
        uid: Option<String>,
        outcome: BindOutcome,
    },
    FailureRecorded {
        key: PodKey,
    },
    Shutdown,
}

/// What the loop needs to start I/O.
pub struct Io {
    pub runtime: tokio::runtime::Handle,
    pub client: Client,
    pub events: EventSink,
    pub tx: Sender<Msg>,
}

/// What the loop reports to: metrics, and readiness once its caches are
/// synced.
#[derive(Clone)]
pub struct Observability {
    pub metrics: SchedulerMetrics,
    pub health: Option<std::sync::Arc<crate::runtime::server::Health>>,
}

/// Loop settings.
pub struct LoopConfig {
    pub scheduler_name: String,
    pub bind_concurrency: usize,
    pub queue: QueueConfig,
}

/// A splitmix64 stream: ties between equally good nodes are broken
/// uniformly without pulling in a random number crate.
struct TieBreaker(u64);

impl TieBreaker {
    fn new() -> TieBreaker {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        TieBreaker(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Tracks one watch's relist: objects known before it but not listed again
/// were deleted while the watch was down.
#[derive(Default)]
struct Relist {
    listing: Option<HashSet<String>>,
    synced: bool,
}

impl Relist {
    fn start(&mut self) {
        self.listing = Some(HashSet::new());
    }

    fn saw(&mut self, key: &str) {
        if let Some(l) = self.listing.as_mut() {
            l.insert(key.to_string());
        }
    }

    /// Ends the relist: returns the keys listed.
    fn done(&mut self) -> HashSet<String> {
        self.synced = true;
        self.listing.take().unwrap_or_default()
    }
}

pub struct Scheduler {
    config: LoopConfig,
    framework: Framework,
    parallelizer: Parallelizer,
    cache: SchedulerCache,
    queue: SchedulingQueue,
    io: Io,
    observe: Observability,
    next_start_index: usize,
    tie_breaker: TieBreaker,
    binds_in_flight: usize,
    /// Pods whose failure record is still being written; not retried until
    /// it is, so a late write can never follow a successful binding.
    failure_writes: HashSet<PodKey>,
    pods_relist: Relist,
    nodes_relist: Relist,
    scheduled: u64,
    unschedulable: u64,
    /// namespace/name -> the budget, for preemption.
    pdbs: std::collections::BTreeMap<String, PodDisruptionBudget>,
}

impl Scheduler {
    pub fn new(
        config: LoopConfig,
        framework: Framework,
        parallelizer: Parallelizer,
        io: Io,
        observe: Observability,
    ) -> Scheduler {
        Scheduler {
            queue: SchedulingQueue::new(config.queue),
            config,
            framework,
            parallelizer,
            cache: SchedulerCache::new(),
            io,
            observe,
            next_start_index: 0,
            tie_breaker: TieBreaker::new(),
            binds_in_flight: 0,
            failure_writes: HashSet::new(),
            pods_relist: Relist::default(),
            nodes_relist: Relist::default(),
            scheduled: 0,
            unschedulable: 0,
            pdbs: Default::default(),
        }
    }

    fn synced(&self) -> bool {
        // Scheduling against a partial list would overcommit nodes whose
        // pods have not been seen yet.
        self.pods_relist.synced && self.nodes_relist.synced
    }

    /// Runs until a [`Msg::Shutdown`] (or every sender is gone), then waits
    /// briefly for bindings already sent.
    pub fn run(mut self, mut rx: Receiver<Msg>) {
        let mut last_log = Instant::now();
        let mut last_metrics = Instant::now();
        let mut was_synced = false;
        'outer: loop {
            loop {
                match rx.try_recv() {
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => break 'outer,
                    Ok(msg) => self.handle(msg),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            self.queue.flush(now);
            if now.duration_since(last_log) >= IDLE_TICK {
                last_log = now;
                self.log_state();
            }
            if now.duration_since(last_metrics) >= QUEUE_METRICS_PERIOD {
                last_metrics = now;
                self.observe.metrics.set_queue(self.queue.lengths());
            }
            if !was_synced && self.synced() {
                was_synced = true;
                tracing::info!(
                    nodes = self.cache.node_count(),
                    queued = self.queue.len(),
                    "caches synced; scheduling"
                );
                if let Some(health) = &self.observe.health {
                    health.set_ready(true, "caches synced; scheduling");
                }
            }
            if self.synced()
                && self.binds_in_flight < self.config.bind_concurrency
                && let Some(popped) = self.queue.pop()
            {
                self.schedule_one(popped.key, popped.pod, popped.attempts);
                continue;
            }
            let timeout = self
                .queue
                .next_wakeup()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(IDLE_TICK)
                .min(IDLE_TICK);
            match self.recv_timeout(&mut rx, timeout) {
                Ok(Some(Msg::Shutdown)) | Ok(None) => break,
                Ok(Some(msg)) => self.handle(msg),
                Err(_elapsed) => {}
            }
        }
        self.shut_down(&mut rx);
    }

    /// The next message, waiting at most `timeout` (the loop runs on a
    /// blocking thread of the runtime, so it may block on the runtime).
    /// Ok(None): every sender is gone.
    fn recv_timeout(
        &self,
        rx: &mut Receiver<Msg>,
        timeout: Duration,
    ) -> Result<Option<Msg>, tokio::time::error::Elapsed> {
        self.io
            .runtime
            .block_on(tokio::time::timeout(timeout, rx.recv()))
    }

    fn shut_down(&mut self, rx: &mut Receiver<Msg>) {
        tracing::info!(
            bindings = self.binds_in_flight,
            failure_writes = self.failure_writes.len(),
            "stopping: no new cycles; waiting for writes already sent"
        );
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.binds_in_flight > 0 || !self.failure_writes.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                tracing::warn!(
                    bindings = self.binds_in_flight,
                    "shutdown grace period over"
                );
                break;
            };
            match self.recv_timeout(rx, left) {
                Ok(Some(msg @ (Msg::BindDone { .. } | Msg::FailureRecorded { .. }))) => {
                    self.handle(msg)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.log_state();
    }

    fn log_state(&self) {
        let q = self.queue.lengths();
        tracing::debug!(
            nodes = self.cache.node_count(),
            cached_pods = self.cache.pod_count(),
            active = q.active,
            backoff = q.backoff,
            unschedulable = q.unschedulable,
            gated = q.gated,
            in_flight = q.in_flight,
            binds_in_flight = self.binds_in_flight,
            scheduled = self.scheduled,
            unschedulable_attempts = self.unschedulable,
            "scheduler state"
        );
    }

    pub fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Pod(event) => self.handle_pod_event(*event, now),
            Msg::Node(event) => self.handle_node_event(*event, now),
            Msg::Namespace(event) => self.handle_namespace_event(*event),
            Msg::PodDisruptionBudget(event) => self.handle_pdb_event(*event),
            Msg::BindDone { key, uid, outcome } => self.handle_bind_done(key, uid, outcome, now),
            Msg::FailureRecorded { key } => {
                self.failure_writes.remove(&key);
            }
            Msg::Shutdown => {}
        }
    }

    fn cluster_events(&mut self, events: Vec<ClusterEvent>, now: Instant) {
        for event in events {
            let moved = self.queue.move_for_event(event, now);
            if moved > 0 {
                tracing::debug!(?event, moved, "unschedulable pods moved back to the queue");
            }
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref())
            == Some(self.config.scheduler_name.as_str())
    }

    fn apply_pod(&mut self, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        if assigned_node(&pod).is_some() || is_terminal(&pod) {
            // Bound (by this scheduler's binding or anyone's) or finished:
            // never queued again, whatever stale copy the queue holds.
            self.queue.delete(&key);
            let events = self.cache.add_or_update_pod(Arc::new(pod));
            self.cluster_events(events, now);
        } else if self.is_ours(&pod) {
            self.queue.add_or_update(Arc::new(pod), now);
        }
        // Pending pods of other schedulers are none of our business.
    }

    fn delete_pod(&mut self, key: &str, now: Instant) {
        self.queue.delete(key);
        let events = self.cache.remove_pod(key);
        self.cluster_events(events, now);
    }

    fn handle_pod_event(&mut self, event: Event<Pod>, now: Instant) {
        match event {
            Event::Apply(pod) => self.apply_pod(pod, now),
            Event::Delete(pod) => self.delete_pod(&pod_key(&pod), now),
            Event::Init => self.pods_relist.start(),
            Event::InitApply(pod) => {
                self.pods_relist.saw(&pod_key(&pod));
                self.apply_pod(pod, now);
            }
            Event::InitDone => {
                let listed = self.pods_relist.done();
                let gone: Vec<String> = self
                    .queue
                    .keys()
                    .chain(self.cache.pod_keys())
                    .filter(|k| !listed.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.delete_pod(&key, now);
                }
                tracing::info!(
                    pods = listed.len(),
                    queued = self.queue.len(),
                    "pod list synced"
                );
            }
        }
    }

    fn handle_node_event(&mut self, event: Event<Node>, now: Instant) {
        match event {
            Event::Apply(node) => {
                let events = self.cache.add_or_update_node(node);
                self.cluster_events(events, now);
            }
            Event::Delete(node) => self.cache.remove_node(node_name(&node)),
            Event::Init => self.nodes_relist.start(),
            Event::InitApply(node) => {
                self.nodes_relist.saw(node_name(&node));
                let events = self.cache.add_or_update_node(node);
                self.cluster_events(events, now);
            }
            Event::InitDone => {
                let listed = self.nodes_relist.done();
                for name in self.cache.node_names() {
                    if !listed.contains(&name) {
                        self.cache.remove_node(&name);
                    }
                }
                tracing::info!(nodes = listed.len(), "node list synced");
            }
        }
    }

    fn handle_namespace_event(&mut self, event: Event<PartialObjectMeta<Namespace>>) {
        match event {
            Event::Apply(ns) | Event::InitApply(ns) => {
                if let Some(name) = ns.metadata.name.as_deref() {
                    self.cache
                        .set_namespace_labels(name, ns.metadata.labels.clone());
                }
            }
            Event::Delete(ns) => {
                if let Some(name) = ns.metadata.name.as_deref() {
                    self.cache.set_namespace_labels(name, None);
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }

    fn handle_pdb_event(&mut self, event: Event<PodDisruptionBudget>) {
        let key = |p: &PodDisruptionBudget| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            )
        };
        match event {
            Event::Init => self.pdbs.clear(),
            Event::Apply(p) | Event::InitApply(p) => {
                self.pdbs.insert(key(&p), p);
            }
            Event::Delete(p) => {
                self.pdbs.remove(&key(&p));
            }
            Event::InitDone => {}
        }
        self.cache.set_pdbs(self.pdbs.values().cloned().collect());
    }

    fn handle_bind_done(
        &mut self,
        key: PodKey,
        uid: Option<String>,
        outcome: BindOutcome,
        now: Instant,
    ) {
        self.binds_in_flight = self.binds_in_flight.saturating_sub(1);
        match outcome {
            // Stays assumed (and in flight in the queue) until the watch
            // shows the nodeName.
            BindOutcome::Bound => {
                self.scheduled += 1;
                self.observe.metrics.bindings.inc();
            }
            BindOutcome::AlreadyBound(message) => {
                // Bound by someone else (or by our own earlier incarnation):
                // the watch will bring the real node; never bind again.
                tracing::info!(pod = %key, %message, "pod was already bound");
                if self.cache.forget_pod(&key) {
                    self.cluster_events(vec![ClusterEvent::AssignedPodDelete], now);
                }
            }
            BindOutcome::PodGone(message) => {
                tracing::debug!(pod = %key, %message, "pod went away before binding");
                if self.cache.forget_pod(&key) {
                    self.cluster_events(vec![ClusterEvent::AssignedPodDelete], now);
                }
                if self.queue.pod(&key).and_then(|p| p.metadata.uid.clone()) == uid {
                    self.queue.delete(&key);
                }
            }
            BindOutcome::Failed(message) => {
                tracing::warn!(pod = %key, %message, "binding failed; retrying after backoff");
                self.observe.metrics.attempt(RESULT_ERROR, 0.0);
                if self.cache.forget_pod(&key) {
                    self.cluster_events(vec![ClusterEvent::AssignedPodDelete], now);
                }
                if let Some(pod) = self.queue.pod(&key) {
                    self.io.events.publish(EventRecord {
                        regarding: pod_reference(pod),
                        type_: EventType::Warning,
                        reason: REASON_FAILED_SCHEDULING,
                        action: "Binding",
                        note: format!("Binding rejected: {message}"),
                    });
                }
                self.queue.requeue_backoff(&key, now);
            }
        }
    }

    /// One scheduling cycle for one pod.
    fn schedule_one(&mut self, key: PodKey, pod: Arc<Pod>, attempts: u32) {
        let now = Instant::now();
        if pod.metadata.deletion_timestamp.is_some() || assigned_node(&pod).is_some() {
            // Being deleted, or the informer copy already has a node:
            // a pod is never bound twice.
            self.queue.delete(&key);
            return;
        }
        if self.failure_writes.contains(&key) {
            self.queue.requeue_after(&key, now + FAILURE_WRITE_RETRY);
            return;
        }
        let result = schedule_pod_with(
            &self.framework,
            &pod,
            self.cache.snapshot(),
            self.next_start_index,
            self.tie_breaker.next(),
            &self.parallelizer,
        );
        match result {
            Ok(result) => {
                self.next_start_index = result.next_start_index;
                let node = result.suggested_host;
                let cycle = now.elapsed().as_secs_f64();
                if let Err(e) = self.cache.assume_pod(&pod, &node) {
                    self.observe.metrics.attempt(RESULT_ERROR, cycle);
                    tracing::warn!(pod = %key, error = %e, "could not assume pod; retrying after backoff");
                    self.queue.requeue_backoff(&key, now);
                    return;
                }
                tracing::debug!(
                    pod = %key,
                    %node,
                    attempts,
                    evaluated = result.evaluated_nodes,
                    feasible = result.feasible_nodes,
                    cycle_us = now.elapsed().as_micros() as u64,
                    "assumed; binding"
                );
                self.observe.metrics.attempt(RESULT_SCHEDULED, cycle);
                self.binds_in_flight += 1;
                self.spawn_bind(key, pod, node);
            }
            Err(fit) => {
                self.observe
                    .metrics
                    .attempt(RESULT_UNSCHEDULABLE, now.elapsed().as_secs_f64());
                self.next_start_index = fit.next_start_index;
                self.unschedulable += 1;
                self.queue.requeue_unschedulable(
                    &key,
                    fit.diagnosis.unschedulable_plugins.clone(),
                    now,
                );
                self.record_failure(key, &pod, fit);
            }
        }
    }

    fn spawn_bind(&self, key: PodKey, pod: Arc<Pod>, node: String) {
        let client = self.io.client.clone();
        let events = self.io.events.clone();
        let tx = self.io.tx.clone();
        self.io.runtime.spawn(async move {
            let outcome = binder::bind(&client, &pod, &node).await;
            if outcome == BindOutcome::Bound {
                events.publish(EventRecord {
                    regarding: pod_reference(&pod),
                    type_: EventType::Normal,
                    reason: REASON_SCHEDULED,
                    action: "Binding",
                    note: format!("Successfully assigned {} to {node}", key),
                });
            }
            let _ = tx
                .send(Msg::BindDone {
                    key,
                    uid: pod.metadata.uid.clone(),
                    outcome,
                })
                .await;
        });
    }

    /// Evicts the victims preemption chose, each in a task of its own, with
    /// a `Preempted` event on each as upstream's. Their deletions come back
    /// through the pod watch and move the preemptor back to the active
    /// queue; it is nominated to the node meanwhile (the failure record).
    fn spawn_preemption(&self, preemptor: &Pod, candidate: &Candidate) {
        let node = candidate.node.clone();
        let uid = preemptor.metadata.uid.clone().unwrap_or_default();
        for victim in &candidate.victims {
            let client = self.io.client.clone();
            let events = self.io.events.clone();
            let scheduler_name = self.config.scheduler_name.clone();
            let victim = victim.clone();
            let (node, uid) = (node.clone(), uid.clone());
            self.io.runtime.spawn(async move {
                match binder::preempt_victim(&client, &victim, &scheduler_name).await {
                    Ok(()) => events.publish(EventRecord {
                        regarding: pod_reference(&victim),
                        type_: EventType::Normal,
                        reason: REASON_PREEMPTED,
                        action: "Preempting",
                        note: format!("Preempted by pod {uid} on node {node}"),
                    }),
                    Err(e) => tracing::warn!(
                        victim = %format!("{}/{}", pod_namespace(&victim), pod_name(&victim)),
                        error = %e,
                        "preempting failed; the next attempt decides again"
                    ),
                }
            });
        }
    }

    /// The failure path: PodScheduled=False/Unschedulable with the fit
    /// error's message, the diagnosis annotation, a FailedScheduling event.
    fn record_failure(&mut self, key: PodKey, pod: &Arc<Pod>, fit: FitError) {
        let message = fit.to_string();
        let diagnosis = SchedulingDiagnosis::new(&message, fit.num_all_nodes, &fit.diagnosis);
        let record = FailureRecord::for_pod(
            pod,
            &message,
            diagnosis.to_annotation(),
            fit.nominate.as_ref().map(|c| c.node.as_str()),
        );
        if let Some(candidate) = &fit.nominate {
            self.spawn_preemption(pod, candidate);
        }
        tracing::debug!(pod = %key, %message, "unschedulable");
        self.io.events.publish(EventRecord {
            regarding: pod_reference(pod),
            type_: EventType::Warning,
            reason: REASON_FAILED_SCHEDULING,
            action: "Scheduling",
            note: message,
        });
        if record.is_empty() {
            return;
        }
        self.failure_writes.insert(key.clone());
        let client = self.io.client.clone();
        let tx = self.io.tx.clone();
        let pod = pod.clone();
        self.io.runtime.spawn(async move {
            if let Err(e) = binder::record_failure(&client, &pod, &record).await {
                tracing::debug!(pod = %key, error = %e, "recording the scheduling failure failed");
            }
            let _ = tx.send(Msg::FailureRecorded { key }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tie_breaker_spreads() {
        let mut t = TieBreaker(1);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[(t.next() % 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn relist_reports_what_was_listed() {
        let mut r = Relist::default();
        assert!(!r.synced);
        r.saw("ignored before a relist starts");
        r.start();
        r.saw("a");
        r.saw("b");
        let listed = r.done();
        assert!(r.synced);
        assert_eq!(listed, HashSet::from(["a".to_string(), "b".to_string()]));
    }
}
