//! kubectl-dlite: the `rollout` and `set image` verbs kubectl refuses for
//! custom resources, for DeploymentLite, with kubectl's wording.
//!
//! Every decision (what to print, whether a request is valid, what to
//! patch) is a pure function here, tested without a cluster; [`run`] only
//! fetches objects and sends the patches.

pub mod args;
pub mod run;
pub mod template;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use crate::api::{CHANGE_CAUSE_ANNOTATION, DeploymentLite, REVISION_ANNOTATION};
use crate::controller::hash::equal_ignore_hash;

/// How kubectl names the resource in its messages.
pub const RESOURCE: &str = "deploymentlite.apps.dlite.dev";
/// The plural.group form of API errors ("deploymentlites.apps.dlite.dev").
pub const RESOURCE_PLURAL: &str = "deploymentlites.apps.dlite.dev";
/// The annotation `rollout restart` stamps into the template, as kubectl.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// A failed command: one line for the user, and kubectl's exit code (1).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    /// The server's own words, as kubectl prints them.
    #[error("Error from server ({reason}): {message}")]
    Server { reason: String, message: String },
    #[error("error: {0}")]
    Message(String),
}

impl CliError {
    pub fn msg(m: impl Into<String>) -> Self {
        CliError::Message(m.into())
    }

    pub fn exit_code(&self) -> i32 {
        1
    }

    pub fn not_found(name: &str) -> Self {
        CliError::Server {
            reason: "NotFound".into(),
            message: format!("{RESOURCE_PLURAL} \"{name}\" not found"),
        }
    }
}

/// Accepts `NAME`, `dl/NAME`, `dlite/NAME`, `deploymentlite/NAME`,
/// `deploymentlites/NAME` and the fully qualified forms, as kubectl does for
/// `deployment/NAME`.
pub fn parse_name(arg: &str) -> Result<String, CliError> {
    let (kind, name) = match arg.split_once('/') {
        None => return non_empty(arg),
        Some((k, n)) => (k, n),
    };
    let known = [
        "dl",
        "dlite",
        "deploymentlite",
        "deploymentlites",
        "deploymentlite.apps.dlite.dev",
        "deploymentlites.apps.dlite.dev",
    ];
    if !known.contains(&kind.to_ascii_lowercase().as_str()) {
        return Err(CliError::msg(format!(
            "the server doesn't have a resource type \"{kind}\" for this command; kubectl dlite works on deploymentlites (dl)"
        )));
    }
    non_empty(name)
}

fn non_empty(name: &str) -> Result<String, CliError> {
    if name.is_empty() || name.contains('/') {
        return Err(CliError::msg(format!("invalid resource name {name:?}")));
    }
    Ok(name.to_string())
}

/// One step of `rollout status`: the line to print, and whether the rollout
/// is done. A rollout past its deadline is an error, as in kubectl.
pub fn rollout_status(dl: &DeploymentLite) -> Result<(String, bool), CliError> {
    let name = dl.name_any();
    let st = dl.status.clone().unwrap_or_default();
    if dl.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0) {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = st.conditions.iter().find(|c| c.type_ == "Progressing");
    if progressing.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Err(CliError::msg(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        )));
    }
    let replicas = dl.spec.replicas;
    if st.updated_replicas < replicas {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} out of {replicas} new replicas have been updated...",
                st.updated_replicas
            ),
            false,
        ));
    }
    if st.replicas > st.updated_replicas {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                st.replicas - st.updated_replicas
            ),
            false,
        ));
    }
    if st.available_replicas < st.updated_replicas {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} of {} updated replicas are available...",
                st.available_replicas, st.updated_replicas
            ),
            false,
        ));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out"),
        true,
    ))
}

fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.annotations().get(REVISION_ANNOTATION)?.parse().ok()
}

/// The object's ReplicaSets by revision (those without one are not history).
pub fn history(rses: &[ReplicaSet]) -> BTreeMap<i64, &ReplicaSet> {
    rses.iter()
        .filter_map(|rs| revision_of(rs).map(|r| (r, rs)))
        .collect()
}

/// `rollout history NAME`: kubectl's REVISION / CHANGE-CAUSE table.
pub fn history_table(name: &str, rses: &[ReplicaSet]) -> String {
    let mut out = format!("{RESOURCE}/{name} \nREVISION  CHANGE-CAUSE\n");
    for (rev, rs) in history(rses) {
        let cause = rs
            .annotations()
            .get(CHANGE_CAUSE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "<none>".into());
        out.push_str(&format!("{:<10}{}\n", rev, cause));
    }
    out
}

/// `rollout history NAME --revision N`: that revision's pod template.
pub fn history_revision(
    name: &str,
    rses: &[ReplicaSet],
    revision: i64,
) -> Result<String, CliError> {
    let h = history(rses);
    let rs = h
        .get(&revision)
        .ok_or_else(|| CliError::msg("unable to find the specified revision"))?;
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let mut out = format!("{RESOURCE}/{name} with revision #{revision}\n");
    out.push_str(&template::describe(&template));
    Ok(out)
}

/// Validates `rollout undo` before the request is sent: the revision to go
/// back to (0 = the previous one), or the line to print when there is
/// nothing to do.
#[derive(Debug, PartialEq, Eq)]
pub enum UndoPlan {
    /// Ask the controller to roll back to this revision.
    RollBack(i64),
    /// The current template already is that revision's.
    Skip(String),
}

pub fn plan_undo(
    dl: &DeploymentLite,
    rses: &[ReplicaSet],
    to_revision: i64,
) -> Result<UndoPlan, CliError> {
    let name = dl.name_any();
    // kubectl checks the revision first, with its "not found" wording.
    if to_revision < 0 {
        return Err(CliError::msg(format!(
            "unable to find specified revision {to_revision} in history"
        )));
    }
    if dl.spec.paused {
        return Err(CliError::msg(format!(
            "you cannot rollback a paused deployment; resume it first with 'kubectl dlite rollout resume dl/{name}' and try again"
        )));
    }
    let h = history(rses);
    let target = if to_revision == 0 {
        // The newest revision below the current one.
        let mut revs: Vec<i64> = h.keys().copied().collect();
        revs.sort_unstable();
        match revs.len() {
            0 | 1 => {
                return Err(CliError::msg(format!(
                    "no rollout history found for deployment \"{name}\""
                )));
            }
            n => revs[n - 2],
        }
    } else {
        to_revision
    };
    let rs = h.get(&target).ok_or_else(|| {
        CliError::msg(format!(
            "unable to find specified revision {target} in history"
        ))
    })?;
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    if template.is_some_and(|t| same_template(&dl.spec.template, t)) {
        return Ok(UndoPlan::Skip(format!(
            "{RESOURCE}/{name} skipped rollback (current template already matches revision {target})"
        )));
    }
    Ok(UndoPlan::RollBack(target))
}

/// Equal templates ignoring the hash label, as kubectl's rollback checks.
/// `current` must be the object's template as the API server defaults it
/// (the caller asks with a dry run), like the revision's stored template.
fn same_template(current: &PodTemplateSpec, revision: &PodTemplateSpec) -> bool {
    equal_ignore_hash(current, revision)
}

/// `set image`: the new container list. `*` sets every container (and init
/// container); an unknown name is an error, as in kubectl.
pub fn set_images(
    template: &PodTemplateSpec,
    assignments: &[String],
) -> Result<PodTemplateSpec, CliError> {
    if assignments.is_empty() {
        return Err(CliError::msg("at least one image update is required"));
    }
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_with(Default::default);
    for a in assignments {
        let (container, image) = a
            .split_once('=')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty())
            .ok_or_else(|| {
                CliError::msg(format!(
                    "invalid image update {a:?}: expected CONTAINER=IMAGE"
                ))
            })?;
        let mut found = false;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            if container == "*" || c.name == container {
                c.image = Some(image.to_string());
                found = true;
            }
        }
        if !found {
            return Err(CliError::msg(format!(
                "unable to find container named \"{container}\""
            )));
        }
    }
    Ok(t)
}

/// `rollout pause` / `resume`: refuse what would change nothing, as kubectl.
pub fn check_pause(dl: &DeploymentLite, pause: bool) -> Result<(), CliError> {
    let name = dl.name_any();
    match (pause, dl.spec.paused) {
        (true, true) => Err(CliError::msg(format!(
            "{RESOURCE_PLURAL} \"{name}\" is already paused"
        ))),
        (false, false) => Err(CliError::msg(format!(
            "{RESOURCE_PLURAL} \"{name}\" is not paused"
        ))),
        _ => Ok(()),
    }
}

/// `rollout restart`: kubectl refuses a paused object.
pub fn check_restart(dl: &DeploymentLite) -> Result<(), CliError> {
    if dl.spec.paused {
        return Err(CliError::msg(format!(
            "{RESOURCE_PLURAL} \"{}\" can't restart paused deployment (run rollout resume first)",
            dl.name_any()
        )));
    }
    Ok(())
}

/// The annotation dlite-scheduler leaves on a pod it could not place.
pub const DIAGNOSIS_ANNOTATION: &str = "dlite.dev/scheduling-diagnosis";

/// `why-pending POD`: the per-node reasons of the pod's last failed
/// scheduling attempt, as a table.
pub fn why_pending(pod: &k8s_openapi::api::core::v1::Pod) -> Result<String, CliError> {
    let name = pod.name_any();
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty())
    {
        return Err(CliError::msg(format!(
            "pod \"{name}\" is not pending: it is bound to a node"
        )));
    }
    let raw = pod.annotations().get(DIAGNOSIS_ANNOTATION).ok_or_else(|| {
        CliError::msg(format!(
            "pod \"{name}\" has no {DIAGNOSIS_ANNOTATION} annotation: dlite-scheduler has not failed to place it (does its schedulerName name dlite-scheduler?)"
        ))
    })?;
    render_diagnosis(raw).map_err(|e| {
        CliError::msg(format!(
            "pod \"{name}\": unreadable {DIAGNOSIS_ANNOTATION} annotation: {e}"
        ))
    })
}

/// NODE / PLUGIN / REASON rows from the diagnosis JSON.
pub fn render_diagnosis(raw: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let nodes = v
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or("no \"nodes\" list")?;
    let mut rows: Vec<[String; 3]> = Vec::new();
    for n in nodes {
        let node = n
            .get("node")
            .and_then(|x| x.as_str())
            .unwrap_or("?")
            .to_string();
        let plugin = n
            .get("plugin")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let reasons: Vec<&str> = n
            .get("reasons")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        rows.push([node, plugin, reasons.join("; ")]);
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(4) + 3;
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(6) + 3;
    let mut out = String::new();
    if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
        out.push_str(m);
        out.push('\n');
    }
    out.push_str(&format!("{:<w0$}{:<w1$}{}\n", "NODE", "PLUGIN", "REASON"));
    for r in rows {
        out.push_str(&format!("{:<w0$}{:<w1$}{}\n", r[0], r[1], r[2]));
    }
    if let Some(k) = v.get("omitted").and_then(|k| k.as_u64()).filter(|k| *k > 0) {
        out.push_str(&format!("... and {k} more node(s) not recorded\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
