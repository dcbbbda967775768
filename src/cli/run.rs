//! The I/O of kubectl-dlite: connect as kubectl would, fetch, patch, watch.

use std::io::Write;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher::watch_object;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::args::{Cli, Command, CompletionShell, DryRun, Global, Rollout, Set, WriteFlags};
use super::{
    CliError, RESOURCE, RESTARTED_AT_ANNOTATION, UndoPlan, check_pause, check_restart,
    check_status_revision, history_revision, history_table, parse_name, plan_undo, rollout_status,
    set_images, undo_patch,
};
use crate::api::DeploymentLite;
use crate::controller::defaulting::{Defaulted, ServerDefaults};
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
    let config = g
        .client
        .config()
        .await
        .map_err(|e| CliError::msg(format!("loading kubeconfig: {e:#}")))?;
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

/// A change to the object: a merge patch, or (where fields must be
/// replaced whole, as `rollout undo` replaces the template) a JSON patch.
pub enum Change {
    Merge(serde_json::Value),
    Json(serde_json::Value),
}

/// Reads the object, lets `decide` build the change from it, and sends it
/// conditional on the resourceVersion read; a conflict starts over from a
/// fresh read. `--dry-run=client` applies the change here and sends
/// nothing; `--dry-run=server` sends it with dryRun=All.
async fn patch_from_fresh<F>(
    api: &Api<DeploymentLite>,
    name: &str,
    dry_run: DryRun,
    mut decide: F,
) -> Result<DeploymentLite, CliError>
where
    F: FnMut(&DeploymentLite) -> Result<Change, CliError>,
{
    for attempt in 1..=CONFLICT_RETRIES {
        let dl = get_dl(api, name).await?;
        let change = decide(&dl)?;
        if dry_run == DryRun::Client {
            return apply_locally(&dl, &change);
        }
        let rv = dl.resource_version();
        let params = PatchParams {
            dry_run: dry_run == DryRun::Server,
            ..Default::default()
        };
        let sent = match change {
            Change::Merge(mut patch) => {
                patch["metadata"]["resourceVersion"] = json!(rv);
                api.patch(name, &params, &Patch::Merge(&patch)).await
            }
            Change::Json(ops) => {
                // The same precondition: the API server refuses the result
                // with 409 when the stored resourceVersion moved on.
                let mut ops = ops.as_array().cloned().unwrap_or_default();
                ops.push(
                    json!({"op": "replace", "path": "/metadata/resourceVersion", "value": rv}),
                );
                let patch: json_patch::Patch = serde_json::from_value(json!(ops))
                    .map_err(|e| CliError::msg(format!("building the JSON patch: {e}")))?;
                api.patch(name, &params, &Patch::Json::<()>(patch)).await
            }
        };
        match sent {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < CONFLICT_RETRIES => continue,
            Err(e) => return Err(server_error(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// `--dry-run=client`: the object as the change would leave it.
fn apply_locally(dl: &DeploymentLite, change: &Change) -> Result<DeploymentLite, CliError> {
    let mut doc = serde_json::to_value(dl).map_err(|e| CliError::msg(e.to_string()))?;
    match change {
        Change::Merge(patch) => json_patch::merge(&mut doc, patch),
        Change::Json(ops) => {
            let patch: json_patch::Patch = serde_json::from_value(ops.clone())
                .map_err(|e| CliError::msg(format!("building the JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &patch)
                .map_err(|e| CliError::msg(format!("applying the patch: {e}")))?;
        }
    }
    serde_json::from_value(doc).map_err(|e| CliError::msg(format!("the patched object: {e}")))
}

/// Prints the result of a writing verb as `-o` asks.
fn print_result(
    out: &mut dyn Write,
    obj: &DeploymentLite,
    name: &str,
    verb: &str,
    write: WriteFlags,
) -> Result<(), CliError> {
    let text = super::output::render(obj, name, verb, write.output, write.dry_run)?;
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(())
}

/// Runs one command, writing what kubectl would print to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    if let Command::Completion { shell } = cli.command {
        completion(shell, out);
        return Ok(());
    }
    let (client, ns) = connect(&cli.global).await?;
    let api: Api<DeploymentLite> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        Command::Completion { .. } => unreachable!("handled before connecting"),
        Command::Rollout(Rollout::Status {
            name,
            watch,
            timeout,
            revision,
        }) => {
            let name = parse_name(&name)?;
            let work = status(&api, &name, watch, revision, out);
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
        Command::Rollout(Rollout::Undo {
            name,
            to_revision,
            write,
        }) => {
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
                    let _ = writeln!(out, "{line}");
                    Ok(())
                }
                UndoPlan::RollBack(revision) => {
                    let updated = patch_from_fresh(&api, &name, write.dry_run, |fresh| {
                        // Re-check on the fresh copy: it may have been paused since.
                        plan_undo(fresh, &rses, revision)?;
                        Ok(Change::Json(undo_patch(fresh, &rses, revision)?))
                    })
                    .await?;
                    print_result(out, &updated, &name, "rolled back", write)?;
                    // What happened and what follows, for a person; stdout
                    // stays kubectl's one line (or the object).
                    if write.dry_run == DryRun::None {
                        eprintln!(
                            "spec.template is now revision {revision}'s; dlite-controller rolls it out as a new revision (follow it with: kubectl dlite rollout status {name} -n {ns})"
                        );
                    }
                    Ok(())
                }
            }
        }
        Command::Rollout(Rollout::Pause { name, write }) => {
            let name = parse_name(&name)?;
            let updated = patch_from_fresh(&api, &name, write.dry_run, |dl| {
                check_pause(dl, true)?;
                Ok(Change::Merge(json!({"spec": {"paused": true}})))
            })
            .await?;
            print_result(out, &updated, &name, "paused", write)
        }
        Command::Rollout(Rollout::Resume { name, write }) => {
            let name = parse_name(&name)?;
            let updated = patch_from_fresh(&api, &name, write.dry_run, |dl| {
                check_pause(dl, false)?;
                Ok(Change::Merge(json!({"spec": {"paused": null}})))
            })
            .await?;
            print_result(out, &updated, &name, "resumed", write)
        }
        Command::Rollout(Rollout::Restart { name, write }) => {
            let name = parse_name(&name)?;
            let now = k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let updated = patch_from_fresh(&api, &name, write.dry_run, |dl| {
                check_restart(dl)?;
                Ok(Change::Merge(
                    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}}),
                ))
            })
            .await?;
            print_result(out, &updated, &name, "restarted", write)
        }
        Command::Set(Set::Image {
            name,
            images,
            write,
        }) => {
            let name = parse_name(&name)?;
            let updated = patch_from_fresh(&api, &name, write.dry_run, |dl| {
                let t = set_images(&dl.spec.template, &images)?;
                let spec = t.spec.unwrap_or_default();
                let mut patch =
                    json!({"spec": {"template": {"spec": {"containers": spec.containers}}}});
                if let Some(init) = spec.init_containers {
                    patch["spec"]["template"]["spec"]["initContainers"] = json!(init);
                }
                Ok(Change::Merge(patch))
            })
            .await?;
            print_result(out, &updated, &name, "image updated", write)
        }
        Command::Describe { name } => {
            let name = parse_name(&name)?;
            let dl = get_dl(&api, &name).await?;
            let rses = owned_replica_sets(&client, &ns, &dl).await?;
            // As kubectl: events that cannot be listed (RBAC) leave the
            // section out rather than fail the description.
            let events = events_about(&client, &ns, &dl).await.ok();
            // The ReplicaSets' templates were defaulted by the API server;
            // find the new one by the current template in the same form.
            let defaulted = ServerDefaults::default()
                .template(&client, &dl)
                .await
                .map_err(|e| CliError::msg(format!("defaulting the pod template: {e}")))?;
            let related = super::describe::Related {
                replica_sets: &rses,
                template: match &defaulted {
                    Defaulted::Template(t) => Some(t.as_ref()),
                    _ => None,
                },
                events: events.as_deref(),
                now: k8s_openapi::jiff::Timestamp::now(),
                tz: &k8s_openapi::jiff::tz::TimeZone::system(),
            };
            let _ = write!(out, "{}", super::describe::describe(&dl, &related));
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

/// The core/v1 Events about the object, selected as kubectl's describe
/// selects them (name, namespace, kind and uid of the involved object).
async fn events_about(
    client: &Client,
    ns: &str,
    dl: &DeploymentLite,
) -> Result<Vec<Event>, CliError> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "involvedObject.name={},involvedObject.namespace={ns},involvedObject.kind=DeploymentLite,involvedObject.uid={}",
        dl.name_any(),
        dl.uid().unwrap_or_default()
    );
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(server_error)?;
    Ok(list.items)
}

/// `completion bash|zsh`: clap's script for the kubectl-dlite executable.
fn completion(shell: CompletionShell, out: &mut dyn Write) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    match shell {
        CompletionShell::Bash => {
            // clap_complete's bash script walks the typed words with
            // function names made from the bin name ('-' -> "__") but labels
            // the subcommands with '-' -> "__subcmd__": for "kubectl-dlite"
            // the two never meet and nothing below the top level completes.
            // Generated for a name without '-', registered for the real one.
            clap_complete::generate(
                clap_complete::Shell::Bash,
                &mut cmd,
                "kubectl_dlite",
                &mut buf,
            );
            let script = String::from_utf8_lossy(&buf)
                .replace("-o default kubectl_dlite\n", "-o default kubectl-dlite\n");
            let _ = out.write_all(script.as_bytes());
        }
        CompletionShell::Zsh => {
            clap_complete::generate(
                clap_complete::Shell::Zsh,
                &mut cmd,
                "kubectl-dlite",
                &mut buf,
            );
            let _ = out.write_all(&buf);
        }
    }
}

/// `rollout status`: print each new status line; done, failed or (without
/// --watch) after one line.
async fn status(
    api: &Api<DeploymentLite>,
    name: &str,
    watch: bool,
    revision: i64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let first = get_dl(api, name).await?;
    check_status_revision(&first, revision)?;
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
                check_status_revision(&dl, revision)?;
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
