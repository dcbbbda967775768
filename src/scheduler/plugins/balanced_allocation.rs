//! BalancedAllocation: prefer nodes where CPU and memory would be used in
//! similar proportions, so neither runs out while the other sits idle.
//!
//! Since v1.36 the score is the change in balance the pod brings, not the
//! balance it leaves: `50 + (50 + with - without) / 2` (integer division),
//! `with` and `without` the balance of the node's requests with and
//! without the pod. A node already lopsided that the pod evens out scores
//! above one the pod leaves as balanced as it was.
//!
//! Unlike NodeResourcesFit's scoring it reads actual requests (no 100m /
//! 200Mi defaults): the defaults would make every best-effort pod look
//! unbalanced. A pod requesting nothing says nothing about balance, so the
//! plugin is skipped for it.

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{NodeInfo, Snapshot};
use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::util::resource::{RESOURCE_CPU, RESOURCE_MEMORY, Resource, pod_requests};

use super::names;

/// The resources whose balance is scored.
const RESOURCES: [&str; 2] = [RESOURCE_CPU, RESOURCE_MEMORY];

pub struct BalancedAllocation;

const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

struct PreScoreState {
    request: Resource,
}

/// `floor((1 - std) * 100)` over the fractions `requested / allocatable`
/// (each capped at 1). With two resources the standard deviation is half
/// their difference.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_BALANCED_ALLOCATION
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        let request = pod_requests(pod, false);
        if RESOURCES.iter().all(|r| request.get(r) == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { request });
        Status::success()
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64 {
        let request = state.read_or_compute(
            PRE_SCORE_STATE_KEY,
            |s: &PreScoreState| &s.request,
            || pod_requests(pod, false),
        );
        let allocated = RESOURCES.map(|r| node_info.requested.get(r));
        let requested = RESOURCES.map(|r| node_info.requested.get(r) + request.get(r));
        let allocatable = RESOURCES.map(|r| node_info.allocatable.get(r));
        score_of_change(
            balanced_score(&requested, &allocatable),
            balanced_score(&allocated, &allocatable),
        )
    }
}

/// The score of going from balance `without` to `with`: 75 for no change;
/// with two resources both are in [50, 100], and so is the score.
pub fn score_of_change(with: i64, without: i64) -> i64 {
    MAX_NODE_SCORE / 2 + (MAX_NODE_SCORE / 2 + with - without) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn formula() {
        assert_eq!(balanced_score(&[3000, 5000], &[4000, 10000]), 87);
        assert_eq!(balanced_score(&[3000, 5000], &[6000, 10000]), 100);
        // The same two onto empty nodes (balance 100 without the pod), as
        // upstream v1.36's table has them: 87 -> 68, 100 -> 75.
        assert_eq!(score_of_change(87, 100), 68);
        assert_eq!(score_of_change(100, 100), 75);
        // Two fractions in [0, 1] keep a balance in [50, 100]: evening out
        // the most lopsided node scores 100, doing the reverse 50.
        assert_eq!(score_of_change(100, 50), 100);
        assert_eq!(score_of_change(50, 100), 50);
        assert_eq!(
            balanced_score(&[8000, 0], &[4000, 10000]),
            50,
            "fractions cap at 1"
        );
        assert_eq!(
            balanced_score(&[1, 1], &[0, 10]),
            100,
            "missing resources are left out"
        );
        // Three resources: fractions 0, 0.5, 1 -> std sqrt(1/6) ~ 0.408.
        assert_eq!(balanced_score(&[0, 5, 10], &[10, 10, 10]), 59);
    }

    #[test]
    fn best_effort_pods_skip_the_plugin() {
        let mut state = CycleState::default();
        let status = BalancedAllocation.pre_score(
            &mut state,
            &pod("p").container(&[]).build(),
            &Snapshot::default(),
            &[],
        );
        assert!(status.is_skip());
    }

    #[test]
    fn existing_requests_count_without_defaults() {
        let snapshot = Snapshot::new(
            &[node("a").allocatable("4000m", "10000", "32").build()],
            &[
                pod("old").on("a").container(&[]).build(),
                pod("old2").on("a").container(&[("cpu", "1000m")]).build(),
            ],
        );
        let p = pod("p")
            .container(&[("cpu", "1000m"), ("memory", "5000")])
            .build();
        let mut state = CycleState::default();
        BalancedAllocation.pre_score(&mut state, &p, &snapshot, &[0]);
        // Without the pod cpu 1000/4000, memory 0 (no default counted):
        // balance 87. With it cpu 2000/4000 = 0.5, memory 5000/10000 = 0.5:
        // 100. 50 + (50 + 100 - 87) / 2.
        assert_eq!(BalancedAllocation.score(&state, &p, &snapshot[0]), 81);
    }
}
