//! DefaultPreemption's decision, as a pure function (upstream
//! pkg/scheduler/framework/preemption and plugins/defaultpreemption,
//! v1.36): after a pod fit nowhere, which node to free by evicting which
//! pods of lower priority, or why none.
//!
//! The steps, in upstream's order:
//!
//! 1. Eligibility: `preemptionPolicy: Never` refuses; so does a terminating
//!    lower-priority pod on the node the pod is already nominated to (its
//!    earlier preemption is still under way).
//! 2. Potential nodes: those that failed only for reasons an eviction can
//!    change (Unschedulable, not UnschedulableAndUnresolvable).
//! 3. Dry run on each: remove every pod of lower priority; if the pod still
//!    does not fit, the node's verdict is the filters' (or `No preemption
//!    victims found for incoming pod` when there was nothing to remove).
//!    Otherwise put victims back one by one, most important first, those
//!    whose eviction would violate a PodDisruptionBudget before the others,
//!    keeping each one the pod still fits beside: the rest are the victims.
//! 4. The candidate: fewest PDB violations, then the lowest highest victim
//!    priority, the lowest sum of priorities, the fewest victims, the latest
//!    start among the most important victims, then the first.
//!
//! With no candidate the verdict is a nested `0/N nodes are available: ...`
//! over the nodes dry-run and `Preemption is not helpful for scheduling` for
//! all others.
//!
//! Left out, and said so in docs/scheduler.md: the cycle state is rebuilt by
//! running PreFilter again on the changed snapshot rather than by
//! upstream's incremental AddPod/RemovePod extensions (the same answer,
//! more work per dry run), and other pods' nominations are not counted on
//! their nominated nodes when filtering.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;

use super::framework::types::{PodInfo, Snapshot};
use super::framework::{Framework, Status, filter_node, run_pre_filter_plugins};
use super::plugins::priority_sort::pod_priority;
use super::schedule_one::{Diagnosis, push_histogram};
use super::util::labels::Selector;

pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const NOT_ELIGIBLE_TERMINATING: &str =
    "not eligible due to a terminating pod on the nominated node.";

/// A node to free and the pods to evict there.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    pub num_pdb_violations: usize,
}

/// What DefaultPreemption decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Preemption {
    /// Evict the victims on the candidate's node and nominate the pod there.
    Nominate(Candidate),
    /// Preemption cannot help; the message after `preemption: `.
    Unschedulable(String),
}

impl Preemption {
    /// The PostFilter message part (`preemption: ...`), empty when it
    /// succeeded, as upstream's is.
    pub fn message(&self) -> String {
        match self {
            Preemption::Nominate(_) => String::new(),
            Preemption::Unschedulable(m) => format!("preemption: {m}"),
        }
    }
}

/// Runs DefaultPreemption for `pod` after it fit nowhere in `snapshot`
/// (`diagnosis` says why, per node), with the cluster's PodDisruptionBudgets.
pub fn preempt(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    diagnosis: &Diagnosis,
    pdbs: &[PodDisruptionBudget],
) -> Preemption {
    if let Some(why) = not_eligible(pod, snapshot, diagnosis) {
        return Preemption::Unschedulable(why.to_string());
    }
    let priority = pod_priority(pod);
    let potential: Vec<&str> = diagnosis
        .nodes
        .iter()
        .filter(|d| !d.unresolvable)
        .map(|d| d.node.as_str())
        .collect();
    let mut statuses: Vec<Status> = Vec::new();
    let mut candidates = Vec::new();
    // Cloned only when some node has something to evict: most failures
    // (every pod of one priority) never need it.
    let mut scratch: Option<Snapshot> = None;
    for node in potential {
        let Some(info) = snapshot.get(node) else {
            continue;
        };
        let victims: Vec<PodInfo> = info
            .pods
            .iter()
            .filter(|p| pod_priority(&p.pod) < priority)
            .cloned()
            .collect();
        if victims.is_empty() {
            statuses.push(Status::unschedulable_and_unresolvable(NO_VICTIMS));
            continue;
        }
        let snap = scratch.get_or_insert_with(|| snapshot.clone());
        match select_victims(framework, pod, snap, node, victims, pdbs) {
            Ok(c) => candidates.push(c),
            Err(status) => statuses.push(status),
        }
    }
    if let Some(best) = pick_one(candidates) {
        return Preemption::Nominate(best);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &statuses {
        for r in s.reasons() {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let total = snapshot.len();
    if total > statuses.len() {
        *counts.entry(NOT_HELPFUL).or_default() += total - statuses.len();
    }
    // The nested verdict reads as the outer fit error does.
    let mut msg = format!("0/{total} nodes are available:");
    push_histogram(&mut msg, &counts);
    Preemption::Unschedulable(msg)
}

fn not_eligible(pod: &Pod, snapshot: &Snapshot, diagnosis: &Diagnosis) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    if spec.preemption_policy.as_deref() == Some("Never") {
        return Some(NOT_ELIGIBLE_NEVER);
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())?;
    // Nominated to a node no eviction can help on: try again elsewhere.
    if diagnosis
        .nodes
        .iter()
        .any(|d| d.node == nominated && d.unresolvable)
    {
        return None;
    }
    let priority = pod_priority(pod);
    let info = snapshot.get(nominated)?;
    info.pods
        .iter()
        .any(|p| pod_priority(&p.pod) < priority && p.pod.metadata.deletion_timestamp.is_some())
        .then_some(NOT_ELIGIBLE_TERMINATING)
}

/// Whether `pod` fits on `node` in `snap` as it is now.
fn fits(framework: &Framework, pod: &Pod, snap: &Snapshot, node: &str) -> Status {
    let (state, status) = run_pre_filter_plugins(framework, pod, snap);
    if !status.is_success() {
        return status;
    }
    match snap.get(node) {
        Some(info) => filter_node(framework, &state, pod, info),
        None => Status::unschedulable_and_unresolvable(NOT_HELPFUL),
    }
}

/// Step 3 on one node; `snap` is left as it was found.
fn select_victims(
    framework: &Framework,
    pod: &Pod,
    snap: &mut Snapshot,
    node: &str,
    mut potential: Vec<PodInfo>,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, Status> {
    for v in &potential {
        snap.remove_pod_from_node(node, v.namespace(), v.name());
    }
    let status = fits(framework, pod, snap, node);
    if !status.is_success() {
        for v in potential {
            let _ = snap.add_pod_to_node(node, v);
        }
        return Err(status);
    }
    potential.sort_by(|a, b| more_important_first(&a.pod, &b.pod));
    let (violating, non_violating) = split_by_pdb_violation(potential, pdbs);
    let mut victims = Vec::new();
    let mut num_pdb_violations = 0;
    for (v, violates) in violating
        .into_iter()
        .map(|v| (v, true))
        .chain(non_violating.into_iter().map(|v| (v, false)))
    {
        let (namespace, name) = (v.namespace().to_string(), v.name().to_string());
        let _ = snap.add_pod_to_node(node, v);
        if fits(framework, pod, snap, node).is_success() {
            continue; // reprieved
        }
        let v = snap
            .remove_pod_from_node(node, &namespace, &name)
            .expect("just added");
        if violates {
            num_pdb_violations += 1;
        }
        victims.push(v);
    }
    // Back as found: the reprieved are in already.
    for v in &victims {
        let _ = snap.add_pod_to_node(node, v.clone());
    }
    if victims.is_empty() {
        return Err(Status::unschedulable_and_unresolvable(format!(
            "expected at least one victim pod on node {node:?}"
        )));
    }
    victims.sort_by(|a, b| more_important_first(&a.pod, &b.pod));
    Ok(Candidate {
        node: node.to_string(),
        victims: victims.into_iter().map(|v| v.pod).collect(),
        num_pdb_violations,
    })
}

fn start_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Upstream's MoreImportantPod: higher priority first, then the one that
/// started earlier (it has run longer).
fn more_important_first(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
}

/// Victims whose eviction would take a PodDisruptionBudget below what it
/// allows (counting the victims before them), and the others, each in the
/// order given.
fn split_by_pdb_violation(
    victims: Vec<PodInfo>,
    pdbs: &[PodDisruptionBudget],
) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.disruptions_allowed)
                .unwrap_or(0)
        })
        .collect();
    let (mut violating, mut non_violating) = (Vec::new(), Vec::new());
    for v in victims {
        let labels = v.pod.metadata.labels.clone().unwrap_or_default();
        let mut violates = false;
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref() != v.pod.metadata.namespace.as_deref() {
                    continue;
                }
                let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                    continue;
                };
                // An empty selector matches nothing here, as in upstream's
                // check.
                if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && selector
                        .match_expressions
                        .as_ref()
                        .is_none_or(|e| e.is_empty())
                {
                    continue;
                }
                if !Selector::from_label_selector(Some(selector)).matches(&labels) {
                    continue;
                }
                // Already counted as disrupted by the PDB controller.
                let already = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(v.name()));
                if already {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violates = true;
                }
            }
        }
        if violates {
            violating.push(v);
        } else {
            non_violating.push(v);
        }
    }
    (violating, non_violating)
}

/// Step 4: upstream's pickOneNodeForPreemption.
fn pick_one(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    type Key = fn(&Candidate) -> i128;
    let keys: [Key; 5] = [
        |c| -(c.num_pdb_violations as i128),
        |c| -i128::from(c.victims.first().map_or(0, |p| pod_priority(p))),
        |c| {
            -c.victims
                .iter()
                .map(|p| i128::from(pod_priority(p)) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        |c| -(c.victims.len() as i128),
        // The latest start among the most important victims: the node
        // whose victims have run the shortest.
        |c| {
            let top = c.victims.first().map_or(0, |p| pod_priority(p));
            c.victims
                .iter()
                .filter(|p| pod_priority(p) == top)
                .filter_map(|p| start_time(p))
                .min()
                .map_or(i128::MIN, |t| t.as_nanosecond())
        },
    ];
    for key in keys {
        if candidates.len() <= 1 {
            break;
        }
        let best = candidates.iter().map(key).max()?;
        candidates.retain(|c| key(c) == best);
    }
    candidates.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Profile;
    use crate::scheduler::plugins::default_framework;
    use crate::scheduler::schedule_one::find_nodes_that_fit;
    use crate::scheduler::testing::{node, pod};

    fn run(p: &Pod, nodes: &[k8s_openapi::api::core::v1::Node], pods: &[Pod]) -> Preemption {
        run_with(p, nodes, pods, &[])
    }

    fn run_with(
        p: &Pod,
        nodes: &[k8s_openapi::api::core::v1::Node],
        pods: &[Pod],
        pdbs: &[PodDisruptionBudget],
    ) -> Preemption {
        let fw = default_framework(Profile::default());
        let snapshot = Snapshot::new(nodes, pods);
        let outcome = find_nodes_that_fit(&fw, p, &snapshot, 0);
        assert!(outcome.feasible_nodes.is_empty(), "fits somewhere");
        preempt(&fw, p, &snapshot, &outcome.diagnosis, pdbs)
    }

    fn victims(p: &Preemption) -> (String, Vec<String>) {
        match p {
            Preemption::Nominate(c) => (
                c.node.clone(),
                c.victims
                    .iter()
                    .map(|v| v.metadata.name.clone().unwrap())
                    .collect(),
            ),
            other => panic!("no candidate: {other:?}"),
        }
    }

    fn four_cpu(name: &str) -> k8s_openapi::api::core::v1::Node {
        node(name).allocatable("4", "8Gi", "110").build()
    }

    #[test]
    fn evicts_as_few_as_needed_lowest_priority_first() {
        let nodes = [four_cpu("a")];
        let pods = [
            pod("low1")
                .on("a")
                .container(&[("cpu", "1")])
                .priority(1)
                .build(),
            pod("low2")
                .on("a")
                .container(&[("cpu", "1")])
                .priority(2)
                .build(),
            pod("low3")
                .on("a")
                .container(&[("cpu", "1")])
                .priority(3)
                .build(),
            pod("same")
                .on("a")
                .container(&[("cpu", "1")])
                .priority(10)
                .build(),
        ];
        let p = pod("p").container(&[("cpu", "2")]).priority(10).build();
        // 2 cpu needed: the two least important go, low3 is reprieved.
        assert_eq!(
            victims(&run(&p, &nodes, &pods)),
            ("a".into(), vec!["low2".into(), "low1".into()])
        );
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        let nodes = [four_cpu("a"), four_cpu("b"), four_cpu("c")];
        let pods = [
            pod("a-5")
                .on("a")
                .container(&[("cpu", "3")])
                .priority(5)
                .build(),
            pod("b-1")
                .on("b")
                .container(&[("cpu", "3")])
                .priority(1)
                .build(),
            pod("c-1")
                .on("c")
                .container(&[("cpu", "2")])
                .priority(1)
                .build(),
            pod("c-2")
                .on("c")
                .container(&[("cpu", "1")])
                .priority(1)
                .build(),
        ];
        let p = pod("p").container(&[("cpu", "3")]).priority(10).build();
        // b and c tie on the highest victim priority (1); b's sum is lower
        // (one victim against two).
        assert_eq!(
            victims(&run(&p, &nodes, &pods)),
            ("b".into(), vec!["b-1".into()])
        );
    }

    #[test]
    fn a_pod_disruption_budget_is_respected_where_another_node_can_do() {
        let nodes = [four_cpu("a"), four_cpu("b")];
        let pods = [
            pod("guarded")
                .on("a")
                .label("app", "db")
                .container(&[("cpu", "3")])
                .priority(1)
                .build(),
            pod("free")
                .on("b")
                .label("app", "web")
                .container(&[("cpu", "3")])
                .priority(5)
                .build(),
        ];
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap();
        let p = pod("p").container(&[("cpu", "3")]).priority(10).build();
        // Without the budget the lower-priority victim (a) would go.
        assert_eq!(victims(&run(&p, &nodes, &pods)).0, "a");
        // With it, b's higher-priority pod goes instead: fewest violations first.
        assert_eq!(
            victims(&run_with(&p, &nodes, &pods, std::slice::from_ref(&pdb))),
            ("b".into(), vec!["free".into()])
        );
        // When every way violates it, the budget yields.
        let only_a = [four_cpu("a")];
        match run_with(&p, &only_a, &pods[..1], std::slice::from_ref(&pdb)) {
            Preemption::Nominate(c) => assert_eq!(c.num_pdb_violations, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn why_preemption_cannot_help() {
        let nodes = [
            four_cpu("a"),
            node("b")
                .allocatable("4", "8Gi", "110")
                .taint("k", "v", "NoSchedule")
                .build(),
        ];
        // Nothing of lower priority on a; b is unresolvable.
        let pods = [pod("same").on("a").container(&[("cpu", "3")]).build()];
        let p = pod("p").container(&[("cpu", "2")]).build();
        assert_eq!(
            run(&p, &nodes, &pods).message(),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        );
        // A lower-priority pod whose eviction is not enough: the filters' verdict.
        let pods = [
            pod("low")
                .on("a")
                .container(&[("cpu", "1")])
                .priority(1)
                .build(),
            pod("same")
                .on("a")
                .container(&[("cpu", "2")])
                .priority(10)
                .build(),
        ];
        let p = pod("p").container(&[("cpu", "3")]).priority(10).build();
        assert_eq!(
            run(&p, &nodes, &pods).message(),
            "preemption: 0/2 nodes are available: 1 Insufficient cpu, \
             1 Preemption is not helpful for scheduling."
        );
        let mut never = p.clone();
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert_eq!(
            run(&never, &nodes, &pods).message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn a_preemption_under_way_is_not_repeated() {
        let nodes = [four_cpu("a")];
        let mut leaving = pod("leaving")
            .on("a")
            .container(&[("cpu", "3")])
            .priority(1)
            .build();
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        let mut p = pod("p").container(&[("cpu", "2")]).priority(10).build();
        p.status.get_or_insert_default().nominated_node_name = Some("a".into());
        assert_eq!(
            run(&p, &nodes, &[leaving]).message(),
            "preemption: not eligible due to a terminating pod on the nominated node."
        );
    }
}
