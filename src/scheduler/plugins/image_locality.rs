//! ImageLocality: prefer nodes that already hold the pod's images, so it
//! starts without a pull.
//!
//! Each image present counts its size scaled by the share of nodes that
//! have it: an image on every node gives no reason to prefer any one of
//! them, and favouring rare copies would pile pods onto the few nodes that
//! have them ("node heating").

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{NodeInfo, Snapshot};
use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status,
};

use super::names;

const MB: i64 = 1024 * 1024;
/// Below this, an image is cheap to pull anyway: score 0.
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container; above `containers * this`, more bytes earn no more.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// An image reference without tag or digest means `:latest`; node status
/// lists images with their tag, so the pod's reference is completed to
/// compare like with like.
pub fn normalized_image_name(name: &str) -> String {
    // A tag is a colon after the last slash: `registry:5000/app` has a
    // colon, but in the host part. (`None` orders before any position.)
    if name.rfind(':') <= name.rfind('/') {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// Maps the sum of scaled image sizes to 0..=100 between the thresholds.
pub fn calculate_priority(sum_scores: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers.max(1) as i64;
    let clamped = sum_scores.clamp(MIN_THRESHOLD, max_threshold);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

pub struct ImageLocality;

const PRE_SCORE_STATE_KEY: &str = "PreScoreImageLocality";

struct PreScoreState {
    /// For every container (init and regular): its normalised image and
    /// the share of all nodes that hold it.
    images: Vec<(String, f64)>,
    num_containers: usize,
}

fn pre_score_state(pod: &Pod, snapshot: &Snapshot) -> PreScoreState {
    let total = snapshot.len().max(1) as f64;
    let spec = pod.spec.as_ref();
    let containers = spec
        .into_iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .collect::<Vec<_>>();
    let images = containers
        .iter()
        .filter_map(|c| c.image.as_deref())
        .map(|image| {
            let name = normalized_image_name(image);
            let spread = snapshot.image_num_nodes(&name) as f64 / total;
            (name, spread)
        })
        .collect();
    PreScoreState {
        images,
        num_containers: containers.len(),
    }
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        names::IMAGE_LOCALITY
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        state.write(PRE_SCORE_STATE_KEY, pre_score_state(pod, snapshot));
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &Pod, node_info: &NodeInfo) -> i64 {
        // Without PreScore the spread is unknown; score nothing rather
        // than guess.
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return 0;
        };
        let sum: i64 = s
            .images
            .iter()
            .filter_map(|(name, spread)| {
                node_info
                    .image_sizes
                    .get(name)
                    .map(|size| (*size as f64 * spread) as i64)
            })
            .sum();
        calculate_priority(sum, s.num_containers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn image_names_are_completed_with_latest() {
        assert_eq!(normalized_image_name("root"), "root:latest");
        assert_eq!(
            normalized_image_name("gcr.io:5000/root"),
            "gcr.io:5000/root:latest"
        );
        assert_eq!(normalized_image_name("root:tag"), "root:tag");
        assert_eq!(
            normalized_image_name("gcr.io:5000/root:tag"),
            "gcr.io:5000/root:tag"
        );
        assert_eq!(normalized_image_name("root@sha256:abc"), "root@sha256:abc");
    }

    fn scores(p: &Pod, nodes: &[k8s_openapi::api::core::v1::Node]) -> Vec<i64> {
        let snapshot = Snapshot::new(nodes, &[]);
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, p, &snapshot, &[]);
        (0..snapshot.len())
            .map(|i| ImageLocality.score(&state, p, &snapshot[i]))
            .collect()
    }

    #[test]
    fn thresholds() {
        // 250 MiB on one of two nodes: 125 MiB, two containers.
        // 100 * (125 - 23) / (2000 - 23) = 5.
        let p = pod("p").image("gcr.io/40").image("gcr.io/250").build();
        let nodes = [
            node("n1").image(&["gcr.io/40:latest"], 40 * MB).build(),
            node("n2").image(&["gcr.io/250:latest"], 250 * MB).build(),
        ];
        assert_eq!(scores(&p, &nodes), [0, 5]);
        // 4000 MiB on one of two nodes: 2000 MiB reaches the two-container cap.
        let p = pod("p").image("gcr.io/4000").image("gcr.io/10").build();
        let nodes = [
            node("n1").image(&["gcr.io/4000:latest"], 4000 * MB).build(),
            node("n2").image(&["gcr.io/10:latest"], 10 * MB).build(),
        ];
        assert_eq!(scores(&p, &nodes), [100, 0]);
    }

    #[test]
    fn size_is_scaled_by_the_share_of_nodes_holding_the_image() {
        // The same 600 MiB image on all 3 nodes scores (600-23)/(1000-23).
        let p = pod("p").image("big:1").build();
        let nodes = [
            node("a").image(&["big:1"], 600 * MB).build(),
            node("b").image(&["big:1"], 600 * MB).build(),
            node("c").image(&["big:1"], 600 * MB).build(),
        ];
        assert_eq!(scores(&p, &nodes), [59, 59, 59]);
        // On one node of three: 200 MiB effective.
        let nodes = [
            node("a").image(&["big:1"], 600 * MB).build(),
            node("b").build(),
            node("c").build(),
        ];
        assert_eq!(scores(&p, &nodes), [18, 0, 0]);
    }

    #[test]
    fn calculate_priority_edges() {
        assert_eq!(calculate_priority(0, 1), 0);
        assert_eq!(calculate_priority(MIN_THRESHOLD, 1), 0);
        assert_eq!(calculate_priority(MAX_CONTAINER_THRESHOLD, 1), 100);
        assert_eq!(calculate_priority(5 * MAX_CONTAINER_THRESHOLD, 2), 100);
        assert_eq!(
            calculate_priority(170 * MB, 0),
            15,
            "a pod without containers scores as one"
        );
    }
}
