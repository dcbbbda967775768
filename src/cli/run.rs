//! The I/O of kubectl-dlite: connect as kubectl would, fetch, patch, watch.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::watch_object;
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;

use super::args::{Cli, Command, Global, Rollout, Set};
use super::{
    CliError, RESOURCE, RESTARTED_AT_ANNOTATION, UndoPlan, check_pause, check_restart,
    history_revision, history_table, parse_name, plan_undo, rollout_status, set_images,
};
use crate::api::DeploymentLite;
use crate::controller::defaulting::{Defaulted, ServerDefaults};

/// How long `rollout undo` waits for the controller to act on the request.
const UNDO_WAIT: Duration = Duration::from_secs(30);
/// Attempts of a read-decide-write cycle that lost a race (409).
const CONFLICT_RETRIES: usize = 5;

fn server_error(e: kube::Error) -> CliError {
    match e {
        kube::Error::Api(s) => CliError::Server {
            reason: s.reason,
            message: s.message,
        },
        other => CliError::msg(other.to_string()),
    }
}

/// A client and namespace from the kubeconfig, honouring --kubeconfig,
/// --context and -n like kubectl.
pub async fn connect(g: &Global) -> Result<(Client, String), CliError> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..Default::default()
    };
    let config = match &g.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                CliError::msg(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| CliError::msg(format!("loading kubeconfig: {e}")))?;
    let namespace = g
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client =
        Client::try_from(config).map_err(|e| CliError::msg(format!("creating client: {e}")))?;
    Ok((client, namespace))
}

async fn get_dl(api: &Api<DeploymentLite>, name: &str) -> Result<DeploymentLite, CliError> {
    match api.get_opt(name).await {
        Ok(Some(dl)) => Ok(dl),
        Ok(None) => Err(CliError::not_found(name)),
        Err(e) => Err(server_error(e)),
    }
}

/// The ReplicaSets the object controls.
async fn owned_replica_sets(
    client: &Client,
    ns: &str,
    dl: &DeploymentLite,
) -> Result<Vec<ReplicaSet>, CliError> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let uid = dl.uid();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(server_error)?;
    Ok(list
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect())
}

/// Reads the object, lets `decide` build a merge patch from it, and sends
/// it conditional on the resourceVersion read; a conflict starts over from
/// a fresh read.
async fn patch_from_fresh<F>(
    api: &Api<DeploymentLite>,
    name: &str,
    mut decide: F,
) -> Result<DeploymentLite, CliError>
where
    F: FnMut(&DeploymentLite) -> Result<serde_json::Value, CliError>,
{
    for attempt in 1..=CONFLICT_RETRIES {
        let dl = get_dl(api, name).await?;
        let mut patch = decide(&dl)?;
        patch["metadata"]["resourceVersion"] = json!(dl.resource_version());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_RETRIES => continue,
            Err(e) => return Err(server_error(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// Runs one command, writing what kubectl would print to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let (client, ns) = connect(&cli.global).await?;
    let api: Api<DeploymentLite> = Api::namespaced(client.clone(), &ns);
    let print = |out: &mut dyn Write, line: &str| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    match cli.command {
        Command::Rollout(Rollout::Status {
            name,
            watch,
            timeout,
        }) => {
            let name = parse_name(&name)?;
            let work = status(&api, &name, watch, out);
            if timeout.is_zero() {
                work.await
            } else {
                tokio::time::timeout(timeout, work)
                    .await
                    .unwrap_or_else(|_| Err(CliError::msg("timed out waiting for the condition")))
            }
        }
        Command::Rollout(Rollout::History { name, revision }) => {
            let name = parse_name(&name)?;
            let dl = get_dl(&api, &name).await?;
            let rses = owned_replica_sets(&client, &ns, &dl).await?;
            match revision {
                None | Some(0) => {
                    let _ = write!(out, "{}", history_table(&name, &rses));
                }
                Some(r) => {
                    let _ = write!(out, "{}", history_revision(&name, &rses, r)?);
                }
            }
            Ok(())
        }
        Command::Rollout(Rollout::Undo { name, to_revision }) => {
            let name = parse_name(&name)?;
            let dl = get_dl(&api, &name).await?;
            let rses = owned_replica_sets(&client, &ns, &dl).await?;
            // The revisions' templates were defaulted by the API server;
            // compare the current one in the same form.
            let mut defaulted = dl.clone();
            if let Defaulted::Template(t) =
                ServerDefaults::default()
                    .template(&client, &dl)
                    .await
                    .map_err(|e| CliError::msg(format!("defaulting the pod template: {e}")))?
            {
                defaulted.spec.template = t.as_ref().clone();
            }
            match plan_undo(&defaulted, &rses, to_revision)? {
                UndoPlan::Skip(line) => {
                    print(out, &line);
                    Ok(())
                }
                UndoPlan::RollBack(revision) => {
                    patch_from_fresh(&api, &name, |fresh| {
                        // Re-check on the fresh copy: it may have been paused since.
                        plan_undo(fresh, &rses, revision)?;
                        Ok(json!({"spec": {"rollbackTo": {"revision": revision}}}))
                    })
                    .await?;
                    wait_rollback_taken(&api, &name).await?;
                    print(out, &format!("{RESOURCE}/{name} rolled back"));
                    Ok(())
                }
            }
        }
        Command::Rollout(Rollout::Pause { name }) => {
            let name = parse_name(&name)?;
            patch_from_fresh(&api, &name, |dl| {
                check_pause(dl, true)?;
                Ok(json!({"spec": {"paused": true}}))
            })
            .await?;
            print(out, &format!("{RESOURCE}/{name} paused"));
            Ok(())
        }
        Command::Rollout(Rollout::Resume { name }) => {
            let name = parse_name(&name)?;
            patch_from_fresh(&api, &name, |dl| {
                check_pause(dl, false)?;
                Ok(json!({"spec": {"paused": null}}))
            })
            .await?;
            print(out, &format!("{RESOURCE}/{name} resumed"));
            Ok(())
        }
        Command::Rollout(Rollout::Restart { name }) => {
            let name = parse_name(&name)?;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            patch_from_fresh(&api, &name, |dl| {
                check_restart(dl)?;
                Ok(json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}}))
            })
            .await?;
            print(out, &format!("{RESOURCE}/{name} restarted"));
            Ok(())
        }
        Command::Set(Set::Image { name, images }) => {
            let name = parse_name(&name)?;
            patch_from_fresh(&api, &name, |dl| {
                let t = set_images(&dl.spec.template, &images)?;
                let spec = t.spec.unwrap_or_default();
                let mut patch =
                    json!({"spec": {"template": {"spec": {"containers": spec.containers}}}});
                if let Some(init) = spec.init_containers {
                    patch["spec"]["template"]["spec"]["initContainers"] = json!(init);
                }
                Ok(patch)
            })
            .await?;
            print(out, &format!("{RESOURCE}/{name} image updated"));
            Ok(())
        }
        Command::WhyPending { pod } => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let p = match pods.get_opt(&pod).await.map_err(server_error)? {
                Some(p) => p,
                None => {
                    return Err(CliError::Server {
                        reason: "NotFound".into(),
                        message: format!("pods \"{pod}\" not found"),
                    });
                }
            };
            let _ = write!(out, "{}", super::why_pending(&p)?);
            Ok(())
        }
    }
}

/// `rollout status`: print each new status line; done, failed or (without
/// --watch) after one line.
async fn status(
    api: &Api<DeploymentLite>,
    name: &str,
    watch: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let first = get_dl(api, name).await?;
    let (line, done) = rollout_status(&first)?;
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if done || !watch {
        return Ok(());
    }
    let mut last = line;
    let mut stream = Box::pin(watch_object(api.clone(), name));
    while let Some(event) = stream.next().await {
        match event {
            Ok(Some(dl)) => {
                let (line, done) = rollout_status(&dl)?;
                if line != last {
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    last = line;
                }
                if done {
                    return Ok(());
                }
            }
            Ok(None) => {
                return Err(CliError::msg(format!(
                    "{RESOURCE}/{name} was deleted while waiting for its rollout"
                )));
            }
            // The watch reconnects by itself; a failure is not the rollout's.
            Err(_) => continue,
        }
    }
    Err(CliError::msg("watch closed before the rollout finished"))
}

/// The controller clears `spec.rollbackTo` once it has acted.
async fn wait_rollback_taken(api: &Api<DeploymentLite>, name: &str) -> Result<(), CliError> {
    let wait = async {
        let mut stream = Box::pin(watch_object(api.clone(), name));
        while let Some(event) = stream.next().await {
            if let Ok(Some(dl)) = event
                && dl.spec.rollback_to.is_none()
            {
                return Ok(());
            }
        }
        Err(CliError::msg("watch closed before the rollback was taken"))
    };
    tokio::time::timeout(UNDO_WAIT, wait).await.unwrap_or_else(|_| {
        Err(CliError::msg(format!(
            "the rollback request on {RESOURCE}/{name} was not taken within {}s: is dlite-controller running?",
            UNDO_WAIT.as_secs()
        )))
    })
}
