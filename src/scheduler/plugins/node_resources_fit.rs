//! NodeResourcesFit: a pod fits when what it requests is at most what the
//! node can allocate minus what its pods already request. Scoring prefers
//! emptier nodes (LeastAllocated, the default) or fuller ones
//! (MostAllocated, for bin packing).

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{NodeInfo, Snapshot};
use crate::scheduler::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, ScoringStrategy, ScoringStrategyType, Status,
};
use crate::scheduler::util::resource::{
    RESOURCE_CPU, RESOURCE_EPHEMERAL_STORAGE, RESOURCE_MEMORY, Resource, is_scalar_resource_name,
    pod_requests,
};

use super::names;

pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// One resource the node is short of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource_name: String,
    /// `Too many pods` or `Insufficient <name>`.
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
    /// The request exceeds the node's whole allocatable: evicting pods
    /// cannot make room.
    pub unresolvable: bool,
}

fn insufficient(name: &str, requested: i64, used: i64, capacity: i64) -> InsufficientResource {
    InsufficientResource {
        resource_name: name.to_string(),
        reason: format!("Insufficient {name}"),
        requested,
        used,
        capacity,
        unresolvable: requested > capacity,
    }
}

/// Every resource for which `pod_request` does not fit on the node (all
/// are reported, not just the first, so the event says everything that is
/// short). Resources requested at zero are never checked.
pub fn fits_request(pod_request: &Resource, node_info: &NodeInfo) -> Vec<InsufficientResource> {
    let mut short = Vec::new();
    let allowed = node_info.allocatable.allowed_pod_number;
    let pods = node_info.pods.len() as i64;
    if pods + 1 > allowed {
        short.push(InsufficientResource {
            resource_name: "pods".into(),
            reason: REASON_TOO_MANY_PODS.into(),
            requested: 1,
            used: pods,
            capacity: allowed,
            unresolvable: false,
        });
    }
    if pod_request.is_empty_request() {
        return short;
    }
    let (alloc, used) = (&node_info.allocatable, &node_info.requested);
    for (name, requested, allocatable, in_use) in [
        (
            RESOURCE_CPU,
            pod_request.milli_cpu,
            alloc.milli_cpu,
            used.milli_cpu,
        ),
        (
            RESOURCE_MEMORY,
            pod_request.memory,
            alloc.memory,
            used.memory,
        ),
        (
            RESOURCE_EPHEMERAL_STORAGE,
            pod_request.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ] {
        if requested > 0 && requested > allocatable - in_use {
            short.push(insufficient(name, requested, in_use, allocatable));
        }
    }
    for (name, &requested) in &pod_request.scalar_resources {
        if requested == 0 {
            continue;
        }
        let (allocatable, in_use) = (alloc.get(name), used.get(name));
        if requested > allocatable - in_use {
            short.push(insufficient(name, requested, in_use, allocatable));
        }
    }
    short
}

/// `(allocatable - requested) * 100 / allocatable`: the share left free.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `requested * 100 / allocatable`: the share in use (capped at full).
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

pub struct NodeResourcesFit {
    strategy: ScoringStrategy,
}

impl NodeResourcesFit {
    pub fn new(strategy: ScoringStrategy) -> NodeResourcesFit {
        NodeResourcesFit { strategy }
    }
}

const PRE_FILTER_STATE_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesFit";

struct PreFilterState {
    request: Resource,
}

struct PreScoreState {
    /// The scoring-view request (100m / 200Mi for missing requests).
    request: Resource,
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_FIT
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        state.write(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                request: pod_requests(pod, false),
            },
        );
        Status::success()
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        let request = state.read_or_compute(
            PRE_FILTER_STATE_KEY,
            |s: &PreFilterState| &s.request,
            || pod_requests(pod, false),
        );
        let short = fits_request(&request, node_info);
        if short.is_empty() {
            return Status::success();
        }
        let code = if short.iter().any(|r| r.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::new(code, short.into_iter().map(|r| r.reason).collect())
    }
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                request: pod_requests(pod, true),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    /// Weighted average over the strategy's resources of the per-resource
    /// score, counting the node's pods and this pod with the non-zero
    /// defaults. Resources the node does not have are left out.
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64 {
        let request = state.read_or_compute(
            PRE_SCORE_STATE_KEY,
            |s: &PreScoreState| &s.request,
            || pod_requests(pod, true),
        );
        let (mut node_score, mut weight_sum) = (0, 0);
        for spec in &self.strategy.resources {
            let pod_request = request.get(&spec.name);
            // An extended resource the pod does not ask for says nothing
            // about how well the pod fits.
            if pod_request == 0 && is_scalar_resource_name(&spec.name) {
                continue;
            }
            let allocatable = node_info.allocatable.get(&spec.name);
            if allocatable == 0 {
                continue;
            }
            let requested = node_info.non_zero_requested.get(&spec.name) + pod_request;
            let score = match self.strategy.type_ {
                ScoringStrategyType::LeastAllocated => {
                    least_requested_score(requested, allocatable)
                }
                ScoringStrategyType::MostAllocated => most_requested_score(requested, allocatable),
            };
            node_score += score * spec.weight;
            weight_sum += spec.weight;
        }
        if weight_sum == 0 {
            0
        } else {
            node_score / weight_sum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::ResourceSpec;
    use crate::scheduler::testing::{node, pod};

    fn filter(nodes: &[k8s_openapi::api::core::v1::Node], pods: &[Pod], p: &Pod) -> Status {
        let snapshot = Snapshot::new(nodes, pods);
        let fit = NodeResourcesFit::new(ScoringStrategy::default());
        let mut state = CycleState::default();
        fit.pre_filter(&mut state, p, &snapshot);
        fit.filter(&state, p, &snapshot[0])
    }

    #[test]
    fn every_failing_resource_is_reported() {
        let n = node("a")
            .allocatable("10m", "20", "1")
            .alloc("example.com/gpu", "1")
            .build();
        let used = pod("old").on("a").container(&[("cpu", "5m")]).build();
        let p = pod("p")
            .container(&[("cpu", "6m"), ("memory", "30"), ("example.com/gpu", "2")])
            .build();
        let s = filter(&[n], &[used], &p);
        assert_eq!(
            s.reasons(),
            [
                "Too many pods",
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        assert_eq!(
            s.code(),
            Code::UnschedulableAndUnresolvable,
            "memory and gpu exceed the whole node"
        );
    }

    #[test]
    fn resolvable_when_eviction_could_make_room() {
        let n = node("a").allocatable("10m", "20", "32").build();
        let used = pod("old").on("a").container(&[("cpu", "8m")]).build();
        let s = filter(&[n], &[used], &pod("p").container(&[("cpu", "3m")]).build());
        assert_eq!(s.reasons(), ["Insufficient cpu"]);
        assert_eq!(s.code(), Code::Unschedulable);
    }

    #[test]
    fn extended_resource_missing_on_node() {
        let n = node("a").allocatable("1", "1Gi", "32").build();
        let s = filter(
            &[n],
            &[],
            &pod("p").container(&[("example.com/foo", "1")]).build(),
        );
        assert_eq!(s.reasons(), ["Insufficient example.com/foo"]);
    }

    #[test]
    fn zero_requests_are_not_checked() {
        // Node already over-committed on cpu; the pod asks only for memory.
        let n = node("a").allocatable("1m", "100", "32").build();
        let used = pod("old").on("a").container(&[("cpu", "2m")]).build();
        assert!(
            filter(
                &[n],
                &[used],
                &pod("p").container(&[("memory", "10")]).build()
            )
            .is_success()
        );
    }

    #[test]
    fn ephemeral_storage() {
        let n = node("a")
            .allocatable("1", "1Gi", "32")
            .alloc("ephemeral-storage", "1Gi")
            .build();
        let s = filter(
            &[n],
            &[],
            &pod("p").container(&[("ephemeral-storage", "2Gi")]).build(),
        );
        assert_eq!(s.reasons(), ["Insufficient ephemeral-storage"]);
    }

    fn score(
        strategy: ScoringStrategy,
        n: k8s_openapi::api::core::v1::Node,
        pods: &[Pod],
        p: &Pod,
    ) -> i64 {
        let snapshot = Snapshot::new(&[n], pods);
        let fit = NodeResourcesFit::new(strategy);
        let mut state = CycleState::default();
        fit.pre_score(&mut state, p, &snapshot, &[0]);
        fit.score(&state, p, &snapshot[0])
    }

    #[test]
    fn most_allocated() {
        let most = ScoringStrategy {
            type_: ScoringStrategyType::MostAllocated,
            ..Default::default()
        };
        let p = pod("p")
            .container(&[("cpu", "3000m"), ("memory", "5000")])
            .build();
        // cpu 3000/4000 = 75, memory 5000/10000 = 50 -> 62.
        assert_eq!(
            score(
                most.clone(),
                node("a").allocatable("4000m", "10000", "32").build(),
                &[],
                &p
            ),
            62
        );
        // Over-committed resources count as full, not more.
        let used = pod("old")
            .on("a")
            .container(&[("cpu", "4000m"), ("memory", "10000")])
            .build();
        assert_eq!(
            score(
                most,
                node("a").allocatable("4000m", "10000", "32").build(),
                &[used],
                &p
            ),
            100
        );
    }

    #[test]
    fn least_allocated_uses_non_zero_defaults_for_best_effort_pods() {
        // Best-effort pod counts as 100m / 200Mi: cpu (1000-100)/1000 = 90,
        // memory (1Gi-200Mi)/1Gi = 80 -> 85.
        let p = pod("p").container(&[]).build();
        assert_eq!(
            score(
                ScoringStrategy::default(),
                node("a").allocatable("1", "1Gi", "32").build(),
                &[],
                &p
            ),
            85
        );
        // An existing best-effort pod counts the same way.
        let old = pod("old").on("a").container(&[]).build();
        assert_eq!(
            score(
                ScoringStrategy::default(),
                node("a").allocatable("1", "1Gi", "32").build(),
                &[old],
                &p
            ),
            70
        );
    }

    #[test]
    fn least_allocated_over_capacity_scores_zero_and_weights_apply() {
        let p = pod("p")
            .container(&[("cpu", "2"), ("memory", "512Mi")])
            .build();
        assert_eq!(
            score(
                ScoringStrategy::default(),
                node("a").allocatable("1", "1Gi", "32").build(),
                &[],
                &p
            ),
            25
        );
        let weighted = ScoringStrategy {
            type_: ScoringStrategyType::LeastAllocated,
            resources: vec![
                ResourceSpec {
                    name: "cpu".into(),
                    weight: 1,
                },
                ResourceSpec {
                    name: "memory".into(),
                    weight: 3,
                },
                ResourceSpec {
                    name: "example.com/gpu".into(),
                    weight: 5,
                },
            ],
        };
        // (0*1 + 50*3) / 4 = 37; the gpu is skipped, the pod asks for none.
        assert_eq!(
            score(
                weighted,
                node("a").allocatable("1", "1Gi", "32").build(),
                &[],
                &p
            ),
            37
        );
    }
}
