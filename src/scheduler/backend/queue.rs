//! The scheduling queue: which pending pod is attempted next, and when a
//! rejected one is attempted again.
//!
//! Pods live in exactly one place:
//! - **activeQ**, a heap in PrioritySort order (higher `spec.priority`
//!   first, then earlier enqueue), popped by the scheduling cycle;
//! - **backoffQ**, pods that failed recently and wait out their backoff
//!   (1 s doubling per attempt up to 10 s) before they return to activeQ;
//! - **unschedulable**, pods no node could take. They return when a
//!   [`ClusterEvent`] concerns a plugin that rejected them, or after 5
//!   minutes regardless, in case an event was missed;
//! - **gated**, pods with `schedulingGates`, not attempted until the gates
//!   are gone;
//! - **in flight**, popped and being scheduled or bound. Watch updates only
//!   refresh the copy, so a pod is never attempted twice at once, and a pod
//!   that was bound stays here until the watch shows it with a nodeName.
//!
//! Time is passed in, so the rules are unit-tested without waiting.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::backend::cluster_event::{ClusterEvent, pending_pod_changed};
use crate::scheduler::framework::types::{pod_name, pod_namespace};
use crate::scheduler::plugins::priority_sort::{self, pod_priority};
use crate::scheduler::plugins::scheduling_gates::is_gated;

/// `namespace/name`.
pub type PodKey = String;

pub fn pod_key(pod: &Pod) -> PodKey {
    format!("{}/{}", pod_namespace(pod), pod_name(pod))
}

/// Backoff and retry timings (kube-scheduler's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Unschedulable pods are retried after this long even without a
    /// relevant cluster event.
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(5 * 60),
        }
    }
}

impl QueueConfig {
    /// 1 s for the first failed attempt, doubling per attempt, capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Active,
    Backoff { until: Instant },
    Unschedulable { since: Instant },
    Gated,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    location: Location,
    attempts: u32,
    last_failure: Option<Instant>,
    unschedulable_plugins: BTreeSet<String>,
    /// Bumped on every move; heap items of older generations are stale.
    generation: u64,
}

/// A pod handed to the scheduling cycle.
#[derive(Clone, Debug)]
pub struct PoppedPod {
    pub key: PodKey,
    pub pod: Arc<Pod>,
    /// Attempts including this one.
    pub attempts: u32,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    /// Enqueue order: earlier pods of equal priority go first.
    seq: u64,
    generation: u64,
    key: PodKey,
}

impl Ord for ActiveItem {
    /// The heap pops the greatest item: the highest priority, then the
    /// earliest enqueued (PrioritySort).
    fn cmp(&self, other: &Self) -> Ordering {
        // `self` is greater when PrioritySort pops it before `other`.
        priority_sort::compare(other.priority, &other.seq, self.priority, &self.seq)
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Counts per place, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLengths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
    pub in_flight: usize,
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    config: QueueConfig,
    pods: HashMap<PodKey, Entry>,
    active: BinaryHeap<ActiveItem>,
    /// (time, generation, key): backoff expiry, or when an unschedulable
    /// pod is due for its periodic retry.
    timers: BinaryHeap<Reverse<(Instant, u64, PodKey)>>,
    /// The unschedulable pods, so a cluster event looks at them only and
    /// not at every queued pod.
    unschedulable: HashSet<PodKey>,
    next_seq: u64,
    next_generation: u64,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    #[cfg(test)]
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    #[cfg(test)]
    pub fn location(&self, key: &str) -> Option<Location> {
        self.pods.get(key).map(|e| e.location)
    }

    /// The latest copy of a queued pod.
    pub fn pod(&self, key: &str) -> Option<&Arc<Pod>> {
        self.pods.get(key).map(|e| &e.pod)
    }

    pub fn lengths(&self) -> QueueLengths {
        let mut l = QueueLengths::default();
        for e in self.pods.values() {
            match e.location {
                Location::Active => l.active += 1,
                Location::Backoff { .. } => l.backoff += 1,
                Location::Unschedulable { .. } => l.unschedulable += 1,
                Location::Gated => l.gated += 1,
                Location::InFlight => l.in_flight += 1,
            }
        }
        l
    }

    /// Every pod key known to the queue.
    pub fn keys(&self) -> impl Iterator<Item = &PodKey> {
        self.pods.keys()
    }

    /// A pending pod of this scheduler as the watch shows it (new or
    /// updated). Pods being deleted are dropped; gated pods wait; an
    /// unschedulable pod whose labels or spec changed is retried.
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete(&key);
            return;
        }
        let Some(entry) = self.pods.get_mut(&key) else {
            let gated = is_gated(&pod);
            self.pods.insert(
                key.clone(),
                Entry {
                    pod,
                    location: Location::Gated,
                    attempts: 0,
                    last_failure: None,
                    unschedulable_plugins: BTreeSet::new(),
                    generation: 0,
                },
            );
            if !gated {
                self.move_to_active(&key);
            }
            return;
        };
        let old = std::mem::replace(&mut entry.pod, pod);
        match entry.location {
            Location::Gated if !is_gated(&entry.pod) => self.move_to_active(&key),
            Location::Unschedulable { .. } if pending_pod_changed(&old, &entry.pod) => {
                self.move_to_active_or_backoff(&key, now)
            }
            // Active and backoff pods are attempted anyway, with this copy;
            // in-flight pods keep their attempt (the cycle holds its copy).
            _ => {}
        }
    }

    /// The pod is gone, or got a nodeName (from this scheduler's binding or
    /// anyone else's): it leaves the queue wherever it is.
    pub fn delete(&mut self, key: &str) -> Option<Location> {
        // Heap items of the removed entry become stale and are skipped.
        self.unschedulable.remove(key);
        self.pods.remove(key).map(|e| e.location)
    }

    /// The next pod to attempt, in PrioritySort order; it is in flight
    /// until `requeue_*` or `delete`.
    pub fn pop(&mut self) -> Option<PoppedPod> {
        while let Some(item) = self.active.pop() {
            let Some(entry) = self.pods.get_mut(&item.key) else {
                continue;
            };
            if entry.generation != item.generation || entry.location != Location::Active {
                continue;
            }
            entry.location = Location::InFlight;
            entry.attempts += 1;
            entry.generation = self.next_generation;
            self.next_generation += 1;
            return Some(PoppedPod {
                key: item.key,
                pod: entry.pod.clone(),
                attempts: entry.attempts,
            });
        }
        None
    }

    /// An in-flight pod fit nowhere: park it until an event concerning
    /// one of `plugins` (the ones that rejected it), or the periodic retry.
    pub fn requeue_unschedulable(&mut self, key: &str, plugins: BTreeSet<String>, now: Instant) {
        let deadline = now + self.config.max_unschedulable;
        let generation = self.bump();
        let Some(entry) = self.pods.get_mut(key) else {
            return;
        };
        if entry.location != Location::InFlight {
            return;
        }
        entry.location = Location::Unschedulable { since: now };
        self.unschedulable.insert(key.to_string());
        entry.last_failure = Some(now);
        entry.unschedulable_plugins = plugins;
        entry.generation = generation;
        self.timers
            .push(Reverse((deadline, generation, key.to_string())));
    }

    /// An in-flight pod failed for another reason (its binding failed, the
    /// cache could not assume it): retry after its backoff.
    pub fn requeue_backoff(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.pods.get_mut(key) else {
            return;
        };
        if entry.location != Location::InFlight {
            return;
        }
        entry.last_failure = Some(now);
        let until = now + self.config.backoff_duration(entry.attempts);
        self.move_to_backoff(key, until);
    }

    /// Retries a pod without counting an attempt or a failure: the cycle
    /// had to put it aside (e.g. its failure is still being recorded).
    pub fn requeue_after(&mut self, key: &str, until: Instant) {
        if let Some(entry) = self.pods.get_mut(key)
            && entry.location == Location::InFlight
        {
            entry.attempts = entry.attempts.saturating_sub(1);
            self.move_to_backoff(key, until);
        }
    }

    /// A cluster event happened: unschedulable pods it may help go back to
    /// activeQ (or to backoffQ while their backoff lasts). Returns how
    /// many moved.
    pub fn move_for_event(&mut self, event: ClusterEvent, now: Instant) -> usize {
        let keys: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods
                    .get(*k)
                    .is_some_and(|e| event.may_help(&e.unschedulable_plugins))
            })
            .cloned()
            .collect();
        // In key order, not the HashSet's (random per process): pods moved
        // together then queue in the same order every time, so a
        // scheduler fuzz seed (scheduler/fuzz.rs) replays exactly.
        let mut keys = keys;
        keys.sort();
        for key in &keys {
            self.move_to_active_or_backoff(key, now);
        }
        keys.len()
    }

    /// Moves backoff pods whose time is up to activeQ, and unschedulable
    /// pods parked for too long back to the queue.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, key))) = self.timers.peek().cloned() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.pods.get(&key) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            match entry.location {
                Location::Backoff { .. } => self.move_to_active(&key),
                Location::Unschedulable { .. } => self.move_to_active_or_backoff(&key, now),
                _ => {}
            }
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        // Drop stale timers so an old deadline does not wake the loop.
        while let Some(Reverse((at, generation, key))) = self.timers.peek() {
            match self.pods.get(key) {
                Some(e) if e.generation == *generation => return Some(*at),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn move_to_active(&mut self, key: &str) {
        let generation = self.bump();
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(entry) = self.pods.get_mut(key) else {
            return;
        };
        entry.location = Location::Active;
        self.unschedulable.remove(key);
        entry.generation = generation;
        self.active.push(ActiveItem {
            priority: pod_priority(&entry.pod),
            seq,
            generation,
            key: key.to_string(),
        });
        self.compact();
    }

    fn move_to_backoff(&mut self, key: &str, until: Instant) {
        let generation = self.bump();
        let Some(entry) = self.pods.get_mut(key) else {
            return;
        };
        entry.location = Location::Backoff { until };
        self.unschedulable.remove(key);
        entry.generation = generation;
        self.timers
            .push(Reverse((until, generation, key.to_string())));
    }

    fn move_to_active_or_backoff(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.pods.get(key) else {
            return;
        };
        let until = entry
            .last_failure
            .map(|t| t + self.config.backoff_duration(entry.attempts));
        match until {
            Some(until) if until > now => self.move_to_backoff(key, until),
            _ => self.move_to_active(key),
        }
    }

    /// Stale heap items are skipped lazily; rebuild when they dominate so
    /// memory stays proportional to the pods actually queued.
    fn compact(&mut self) {
        if self.active.len() > 1024 && self.active.len() > 4 * self.pods.len() {
            let pods = &self.pods;
            self.active.retain(|i| {
                pods.get(&i.key)
                    .is_some_and(|e| e.generation == i.generation && e.location == Location::Active)
            });
        }
        if self.timers.len() > 1024 && self.timers.len() > 4 * self.pods.len() {
            let pods = &self.pods;
            self.timers
                .retain(|Reverse((_, g, k))| pods.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::names;
    use crate::scheduler::testing::pod;

    fn arc(p: Pod) -> Arc<Pod> {
        Arc::new(p)
    }

    fn plugins(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|p| p.to_string()).collect()
    }

    fn pop_names(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop()).map(|p| p.key).collect()
    }

    #[test]
    fn pops_by_priority_then_enqueue_order() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("low1").build()), t);
        q.add_or_update(arc(pod("high").priority(100).build()), t);
        q.add_or_update(arc(pod("low2").build()), t);
        q.add_or_update(arc(pod("neg").priority(-1).build()), t);
        q.add_or_update(arc(pod("high2").priority(100).build()), t);
        assert_eq!(
            pop_names(&mut q),
            [
                "default/high",
                "default/high2",
                "default/low1",
                "default/low2",
                "default/neg"
            ]
        );
        assert_eq!(q.lengths().in_flight, 5);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let c = QueueConfig::default();
        let secs: Vec<u64> = (1..=6).map(|a| c.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(c.backoff_duration(0), Duration::ZERO);
        assert_eq!(c.backoff_duration(200), Duration::from_secs(10));
    }

    #[test]
    fn failed_binding_waits_out_its_backoff() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        let p = q.pop().unwrap();
        assert_eq!(p.attempts, 1);
        q.requeue_backoff(&p.key, t);
        assert_eq!(q.next_wakeup(), Some(t + Duration::from_secs(1)));
        q.flush(t + Duration::from_millis(999));
        assert!(q.pop().is_none(), "still backing off");
        q.flush(t + Duration::from_secs(1));
        let p = q.pop().unwrap();
        assert_eq!(p.attempts, 2);
        let t2 = t + Duration::from_secs(1);
        q.requeue_backoff(&p.key, t2);
        assert_eq!(
            q.location(&p.key),
            Some(Location::Backoff {
                until: t2 + Duration::from_secs(2)
            })
        );
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("cpu").build()), t);
        q.add_or_update(arc(pod("taint").build()), t);
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        q.requeue_unschedulable(&a.key, plugins(&[names::NODE_RESOURCES_FIT]), t);
        q.requeue_unschedulable(&b.key, plugins(&[names::TAINT_TOLERATION]), t);
        assert_eq!(q.lengths().unschedulable, 2);

        // A new taint-free pod elsewhere: nothing to do for either.
        assert_eq!(q.move_for_event(ClusterEvent::AssignedPodAdd, t), 0);
        // A pod was deleted: the cpu one may fit now; its 1 s backoff holds it.
        let later = t + Duration::from_millis(300);
        assert_eq!(q.move_for_event(ClusterEvent::AssignedPodDelete, later), 1);
        assert_eq!(
            q.location("default/cpu"),
            Some(Location::Backoff {
                until: t + Duration::from_secs(1)
            })
        );
        q.flush(t + Duration::from_secs(1));
        assert_eq!(pop_names(&mut q), ["default/cpu"]);
        // Long after its backoff, a taint removal sends the other straight to activeQ.
        assert_eq!(
            q.move_for_event(ClusterEvent::NodeTaintChange, t + Duration::from_secs(30)),
            1
        );
        assert_eq!(q.location("default/taint"), Some(Location::Active));
        assert!(q.unschedulable.is_empty(), "the index follows the pods out");
        let p = q.pop().unwrap();
        q.requeue_unschedulable(&p.key, plugins(&[names::TAINT_TOLERATION]), t);
        q.delete(&p.key);
        assert!(q.unschedulable.is_empty());
        assert_eq!(q.move_for_event(ClusterEvent::NodeAdd, t), 0);
    }

    #[test]
    fn unschedulable_pods_are_retried_after_five_minutes_anyway() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        let p = q.pop().unwrap();
        q.requeue_unschedulable(&p.key, plugins(&[names::NODE_AFFINITY]), t);
        assert_eq!(q.next_wakeup(), Some(t + Duration::from_secs(300)));
        q.flush(t + Duration::from_secs(299));
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(300));
        assert_eq!(pop_names(&mut q), ["default/p"]);
    }

    #[test]
    fn gated_pods_wait_for_their_gates_to_go() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("g").gate("example.com/wait").build()), t);
        assert!(q.pop().is_none());
        assert_eq!(q.location("default/g"), Some(Location::Gated));
        q.add_or_update(
            arc(pod("g")
                .label("still", "gated")
                .gate("example.com/wait")
                .build()),
            t,
        );
        assert!(q.pop().is_none());
        q.add_or_update(arc(pod("g").build()), t);
        assert_eq!(pop_names(&mut q), ["default/g"]);
    }

    #[test]
    fn deleted_pods_are_dropped_wherever_they_are() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        for name in ["a", "b", "c"] {
            q.add_or_update(arc(pod(name).build()), t);
        }
        let a = q.pop().unwrap();
        q.requeue_backoff(&a.key, t);
        assert_eq!(
            q.delete("default/a"),
            Some(Location::Backoff {
                until: t + Duration::from_secs(1)
            })
        );
        assert_eq!(q.delete("default/b"), Some(Location::Active));
        q.flush(t + Duration::from_secs(5));
        assert_eq!(pop_names(&mut q), ["default/c"]);
        assert_eq!(q.next_wakeup(), None, "stale timers are dropped");

        let mut terminating = pod("c").build();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        q.add_or_update(arc(terminating), t);
        assert!(
            !q.contains("default/c"),
            "a pod being deleted leaves the queue"
        );
    }

    #[test]
    fn updates_do_not_disturb_in_flight_pods() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        let p = q.pop().unwrap();
        q.add_or_update(arc(pod("p").label("x", "y").build()), t);
        assert_eq!(q.location(&p.key), Some(Location::InFlight));
        assert!(q.pop().is_none(), "never attempted twice at once");
        assert_eq!(
            q.pod(&p.key).unwrap().metadata.labels.as_ref().unwrap()["x"],
            "y"
        );
    }

    #[test]
    fn spec_changes_retry_an_unschedulable_pod_but_status_changes_do_not() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        let p = q.pop().unwrap();
        q.requeue_unschedulable(&p.key, plugins(&[names::TAINT_TOLERATION]), t);
        let mut status_update = pod("p").build();
        status_update.status = Some(Default::default());
        q.add_or_update(arc(status_update), t + Duration::from_secs(20));
        assert!(matches!(
            q.location(&p.key),
            Some(Location::Unschedulable { .. })
        ));
        let tolerant = pod("p")
            .toleration(crate::scheduler::testing::toleration("k", "Exists", "", ""))
            .build();
        q.add_or_update(arc(tolerant), t + Duration::from_secs(20));
        assert_eq!(q.location(&p.key), Some(Location::Active));
    }

    #[test]
    fn put_aside_pods_do_not_lose_an_attempt() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        let p = q.pop().unwrap();
        q.requeue_after(&p.key, t + Duration::from_millis(100));
        q.flush(t + Duration::from_millis(100));
        assert_eq!(q.pop().unwrap().attempts, 1);
    }

    #[test]
    fn stale_heap_items_are_compacted() {
        let t = Instant::now();
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add_or_update(arc(pod("p").build()), t);
        for i in 0..5000u64 {
            let p = q.pop().unwrap();
            q.requeue_unschedulable(&p.key, BTreeSet::new(), t);
            q.move_for_event(ClusterEvent::NodeAdd, t + Duration::from_secs(20 + i));
        }
        assert!(q.active.len() <= 1025);
        assert!(q.timers.len() <= 1025, "{}", q.timers.len());
        assert_eq!(q.len(), 1);
    }
}
