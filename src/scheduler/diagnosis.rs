//! The `dlite.dev/scheduling-diagnosis` annotation: why the last attempt to
//! schedule a pod failed, node by node.
//!
//! The `FailedScheduling` event only carries counts ("3 Insufficient cpu");
//! which node said what is what a user needs to fix a pending pod, and
//! kube-scheduler keeps it only in its logs. dlite-scheduler writes it on
//! the pod as compact JSON, bounded so a large cluster cannot make the pod
//! object huge:
//!
//! ```json
//! {"message":"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.",
//!  "numAllNodes":3,
//!  "nodes":[{"node":"a","plugin":"NodeResourcesFit","reasons":["Insufficient cpu"]},
//!           {"node":"b","plugin":"NodeAffinity","reasons":["node(s) didn't match Pod's node affinity/selector"],"unresolvable":true}],
//!  "omitted":1}
//! ```
//!
//! `nodes` lists rejected nodes sorted by name, as many as fit in
//! [`MAX_ANNOTATION_BYTES`]; `omitted` (absent when 0) counts the rest.
//! `unresolvable` (absent when false) marks nodes where evicting pods could
//! not help. The annotation stays after the pod is bound: it describes the
//! last failed attempt, and the PodScheduled condition says whether it is
//! still pending.
//!
//! `kubectl dlite why-pending` reads it with [`parse_annotation`] and prints
//! [`render_table`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::schedule_one::{Diagnosis, NodeDiagnosis};

/// The annotation's key.
pub const ANNOTATION: &str = "dlite.dev/scheduling-diagnosis";

/// Upper bound of the annotation value's length in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 8 * 1024;

/// The message is quoted whole up to this length (it is bounded by the
/// number of distinct reasons, but a taint value can be long).
const MAX_MESSAGE_BYTES: usize = 1024;

/// What the annotation holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingDiagnosis {
    /// The `FailedScheduling` message of the attempt.
    pub message: String,
    /// Nodes in the cluster at the attempt.
    pub num_all_nodes: usize,
    /// Rejected nodes with the first plugin that rejected each.
    #[serde(default)]
    pub nodes: Vec<NodeDiagnosis>,
    /// Rejected nodes left out to respect the size bound.
    #[serde(default, rename = "omitted", skip_serializing_if = "is_zero")]
    pub omitted_nodes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Error)]
pub enum DiagnosisError {
    #[error("pod has no {ANNOTATION} annotation")]
    Missing,
    #[error("the {ANNOTATION} annotation is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
}

fn truncate_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl SchedulingDiagnosis {
    /// The record of one failed attempt, with every rejected node.
    pub fn new(message: &str, num_all_nodes: usize, diagnosis: &Diagnosis) -> SchedulingDiagnosis {
        let mut nodes = diagnosis.nodes.clone();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        SchedulingDiagnosis {
            message: truncate_to(message, MAX_MESSAGE_BYTES),
            num_all_nodes,
            nodes,
            omitted_nodes: 0,
        }
    }

    /// Compact JSON of at most `max_bytes`: the first nodes (by name) that
    /// fit, and the count of those left out.
    pub fn to_annotation_with_limit(&self, max_bytes: usize) -> String {
        let full = serde_json::to_string(self).expect("plain data serialises");
        if full.len() <= max_bytes {
            return full;
        }
        let total = self.nodes.len() + self.omitted_nodes;
        let mut bounded = SchedulingDiagnosis {
            nodes: Vec::new(),
            omitted_nodes: total,
            ..self.clone()
        };
        // Size with no nodes, then add nodes while they fit; each node
        // costs its JSON plus a comma. The omitted count only gets shorter
        // as nodes are added, so the estimate never undershoots.
        let mut size = serde_json::to_string(&bounded)
            .map(|s| s.len())
            .unwrap_or(0);
        for node in &self.nodes {
            let cost = serde_json::to_string(node).map(|s| s.len()).unwrap_or(0) + 1;
            if size + cost > max_bytes {
                break;
            }
            size += cost;
            bounded.nodes.push(node.clone());
        }
        bounded.omitted_nodes = total - bounded.nodes.len();
        serde_json::to_string(&bounded).expect("plain data serialises")
    }

    /// Compact JSON within [`MAX_ANNOTATION_BYTES`].
    pub fn to_annotation(&self) -> String {
        self.to_annotation_with_limit(MAX_ANNOTATION_BYTES)
    }
}

/// Reads the annotation's value.
pub fn parse_annotation(value: &str) -> Result<SchedulingDiagnosis, DiagnosisError> {
    Ok(serde_json::from_str(value)?)
}

/// Reads the annotation from a pod's annotations map.
pub fn from_annotations(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<SchedulingDiagnosis, DiagnosisError> {
    let value = annotations
        .and_then(|a| a.get(ANNOTATION))
        .ok_or(DiagnosisError::Missing)?;
    parse_annotation(value)
}

/// A plain-text table for terminals: the message, then one row per
/// rejected node (NODE, PLUGIN, REASON), then how many nodes were left out.
pub fn render_table(diagnosis: &SchedulingDiagnosis) -> String {
    let headers = ["NODE", "PLUGIN", "REASON"];
    let rows: Vec<[String; 3]> = diagnosis
        .nodes
        .iter()
        .map(|n| {
            let mut reason = n.reasons.join(", ");
            if n.unresolvable {
                reason.push_str(" (preemption cannot help)");
            }
            [n.node.clone(), n.plugin.clone(), reason]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 3]| {
        // The last column is not padded, so lines carry no trailing blanks.
        format!(
            "{:<w0$}   {:<w1$}   {}",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1]
        )
    };
    let mut out = format!("{}\n", diagnosis.message);
    if rows.is_empty() && diagnosis.omitted_nodes == 0 {
        return out;
    }
    out.push('\n');
    out.push_str(&line(headers));
    out.push('\n');
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2]]));
        out.push('\n');
    }
    if diagnosis.omitted_nodes > 0 {
        out.push_str(&format!(
            "... and {} more node(s) not recorded (the annotation is limited to {} KiB)\n",
            diagnosis.omitted_nodes,
            MAX_ANNOTATION_BYTES / 1024
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, plugin: &str, reason: &str, unresolvable: bool) -> NodeDiagnosis {
        NodeDiagnosis {
            node: name.into(),
            plugin: plugin.into(),
            reasons: vec![reason.into()],
            unresolvable,
        }
    }

    fn sample() -> SchedulingDiagnosis {
        let diagnosis = Diagnosis {
            nodes: vec![
                node(
                    "b",
                    "NodeAffinity",
                    "node(s) didn't match Pod's node affinity/selector",
                    true,
                ),
                node("a", "NodeResourcesFit", "Insufficient cpu", false),
            ],
            ..Default::default()
        };
        SchedulingDiagnosis::new(
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector.",
            2,
            &diagnosis,
        )
    }

    #[test]
    fn compact_json_with_nodes_sorted_by_name() {
        let json = sample().to_annotation();
        assert_eq!(
            json,
            r#"{"message":"0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector.","numAllNodes":2,"nodes":[{"node":"a","plugin":"NodeResourcesFit","reasons":["Insufficient cpu"]},{"node":"b","plugin":"NodeAffinity","reasons":["node(s) didn't match Pod's node affinity/selector"],"unresolvable":true}]}"#
        );
        assert_eq!(parse_annotation(&json).unwrap(), sample());
    }

    #[test]
    fn large_clusters_are_truncated_within_the_bound() {
        let nodes: Vec<NodeDiagnosis> = (0..5000)
            .map(|i| {
                node(
                    &format!("node-{i:05}"),
                    "NodeResourcesFit",
                    "Insufficient cpu",
                    false,
                )
            })
            .collect();
        let d = SchedulingDiagnosis::new(
            "0/5000 nodes are available: 5000 Insufficient cpu.",
            5000,
            &Diagnosis {
                nodes,
                ..Default::default()
            },
        );
        let json = d.to_annotation();
        assert!(json.len() <= MAX_ANNOTATION_BYTES, "{}", json.len());
        assert!(
            json.len() > MAX_ANNOTATION_BYTES - 200,
            "the space is used: {}",
            json.len()
        );
        let back = parse_annotation(&json).unwrap();
        assert_eq!(back.nodes.len() + back.omitted_nodes, 5000);
        assert_eq!(
            back.nodes[0].node, "node-00000",
            "the first nodes by name are kept"
        );
        assert!(back.omitted_nodes > 4000);
        for limit in [150, 300, 1000, 2000] {
            let small = d.to_annotation_with_limit(limit);
            assert!(small.len() <= limit, "{limit}: {}", small.len());
            let back = parse_annotation(&small).unwrap();
            assert_eq!(back.nodes.len() + back.omitted_nodes, 5000);
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(5000);
        let d = SchedulingDiagnosis::new(&long, 1, &Diagnosis::default());
        assert_eq!(d.message.len(), MAX_MESSAGE_BYTES);
        assert!(d.message.ends_with("..."));
    }

    #[test]
    fn reads_from_pod_annotations() {
        assert!(matches!(
            from_annotations(None),
            Err(DiagnosisError::Missing)
        ));
        let mut a = std::collections::BTreeMap::new();
        a.insert(ANNOTATION.to_string(), "{not json".to_string());
        let err = from_annotations(Some(&a)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the dlite.dev/scheduling-diagnosis annotation is not valid"),
            "{err}"
        );
        a.insert(ANNOTATION.to_string(), sample().to_annotation());
        assert_eq!(from_annotations(Some(&a)).unwrap(), sample());
    }

    #[test]
    fn table() {
        let mut d = sample();
        d.omitted_nodes = 3;
        assert_eq!(
            render_table(&d),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector.\n\
             \n\
             NODE   PLUGIN             REASON\n\
             a      NodeResourcesFit   Insufficient cpu\n\
             b      NodeAffinity       node(s) didn't match Pod's node affinity/selector (preemption cannot help)\n\
             ... and 3 more node(s) not recorded (the annotation is limited to 8 KiB)\n"
        );
        let empty = SchedulingDiagnosis {
            message: "no nodes available to schedule pods".into(),
            ..Default::default()
        };
        assert_eq!(
            render_table(&empty),
            "no nodes available to schedule pods\n"
        );
    }
}
