//! The I/O side of the controller: read from the watch caches, claim
//! ReplicaSets, ask the [`planner`] what one sync does, and execute it.
//!
//! Every write that depends on what was read carries the resourceVersion it
//! was read at. A conflict (409) ends the reconcile with an error; the error
//! policy requeues it quickly and the next attempt plans again from fresh
//! state, never re-applying the stale decision.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{DeploymentLite, DeploymentLiteStatus, POD_TEMPLATE_HASH_LABEL, StrategyType};
use crate::controller::defaulting::{Defaulted, ServerDefaults};
use crate::controller::expectations::Expectations;
use crate::controller::hash::equal_ignore_hash;
use crate::controller::planner::{self, Action, EventType, SyncInput, controller_ref};
use crate::controller::rollout::progress::{new_condition, set_condition};
use crate::runtime::events::Recorder;
use crate::runtime::metrics::{ControllerMetrics, ErrorLabel, ResultLabel};
use crate::runtime::server::Health;

/// The component name on events and field managers.
pub const CONTROLLER_NAME: &str = "dlite-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} changed since it was read (409 Conflict); retrying from fresh state")]
    Conflict { what: String },
    #[error("{action} {what}: {source}")]
    Api {
        action: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    fn api(action: &'static str, what: impl Into<String>, source: kube::Error) -> Self {
        let what = what.into();
        match &source {
            kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict" => {
                Error::Conflict { what }
            }
            _ => Error::Api {
                action,
                what,
                source,
            },
        }
    }
}

/// Shared by every reconcile: one client, the watch caches, one event queue.
pub struct Context {
    pub client: Client,
    pub replica_sets: Store<ReplicaSet>,
    pub events: EventQueue,
    pub metrics: ControllerMetrics,
    /// Templates as the API server defaults them (see [`ServerDefaults`]).
    pub defaults: ServerDefaults,
    /// This controller's ReplicaSet writes the cache has not yet shown.
    pub expectations: Expectations,
    /// The sync workers (see [`Workers`]).
    pub workers: Workers,
}

/// At most N syncs at once, granted in the order they were asked for, as
/// upstream's work queue hands keys to its `--concurrent-deployment-syncs`
/// workers.
///
/// kube-runtime's own concurrency limit is not used for this: when every
/// slot is busy it keeps the waiting objects in a hash set and takes
/// whichever the set yields first, so an object synced a moment ago (woken
/// again by its ReplicaSet's status) could run before one never synced at
/// all. Under a burst that made each object sync once per pod turning
/// Ready, about twice as many status writes as a Deployment's, and left the
/// last new objects waiting twice as long for their first sync. Here the
/// runner starts every requested sync at once (still never two of one
/// object: a request for an object whose sync is waiting or running is
/// held, and requests piling up meanwhile collapse into one), and each
/// waits on a fair semaphore: first asked, first served, so the changes an
/// object collects while it waits are handled by one sync.
pub struct Workers {
    permits: tokio::sync::Semaphore,
    /// The objects as the watch shows them now: a sync that waited syncs
    /// the newest version, not the one it was asked for with.
    deploymentlites: Store<DeploymentLite>,
}

impl Workers {
    pub fn new(concurrent_syncs: u16, deploymentlites: Store<DeploymentLite>) -> Self {
        Workers {
            permits: tokio::sync::Semaphore::new(usize::from(concurrent_syncs)),
            deploymentlites,
        }
    }

    /// Waits for a free worker (first asked, first served), then returns it
    /// with the object as the cache shows it now; `None` if the object was
    /// deleted while it waited (its deletion needs nothing from this
    /// controller: the garbage collector removes what it owned).
    async fn start(
        &self,
        requested: &DeploymentLite,
    ) -> Option<(tokio::sync::SemaphorePermit<'_>, Arc<DeploymentLite>)> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the workers' semaphore is never closed");
        let current = self.deploymentlites.get(&ObjectRef::from_obj(requested))?;
        Some((permit, current))
    }
}

/// One event waiting to be recorded.
struct QueuedEvent {
    regarding: k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: String,
    action: &'static str,
    message: String,
}

/// Events are recorded by a task of their own, in the order they were
/// queued, as client-go's event broadcaster does for upstream's
/// controllers: a sync never waits for an event request between its
/// writes. The queue is bounded like the broadcaster's (1000); when it is
/// full an event is dropped with a warning rather than holding up a
/// rollout.
#[derive(Clone)]
pub struct EventQueue {
    tx: tokio::sync::mpsc::Sender<QueuedEvent>,
}

impl EventQueue {
    const CAPACITY: usize = 1000;

    /// Starts the recording task; it ends when every sender is gone.
    pub fn start(recorder: Recorder) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<QueuedEvent>(Self::CAPACITY);
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                // An event that cannot be recorded is not a reason to stop
                // a rollout.
                if let Err(err) = recorder
                    .publish(&e.regarding, e.type_, &e.reason, e.action, &e.message)
                    .await
                {
                    warn!(error = %err, reason = e.reason, "could not record event");
                }
            }
        });
        EventQueue { tx }
    }

    fn send(&self, event: QueuedEvent) {
        if let Err(e) = self.tx.try_send(event) {
            warn!(error = %e, "event queue full; dropping an event");
        }
    }
}

/// Syncs running at once unless told otherwise: kube-controller-manager's
/// default for --concurrent-deployment-syncs.
pub const DEFAULT_CONCURRENT_SYNCS: u16 = 5;

/// Options of the controller process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Reconciles running at once. Bounded as upstream's worker count is:
    /// unbounded, a burst of N new objects starts N syncs that all wait on
    /// the client's token bucket at once, each holding its requests and
    /// state, so memory grows with N and no object finishes early.
    pub concurrent_syncs: u16,
}

fn api_for<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves. `health` turns ready once
/// every watch cache has synced.
pub async fn run(
    client: Client,
    opts: Options,
    metrics: ControllerMetrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let dls: Api<DeploymentLite> = api_for(&client, &opts.namespace);
    let rses: Api<ReplicaSet> = api_for(&client, &opts.namespace);
    let pods: Api<PartialObjectMeta<Pod>> = api_for(&client, &opts.namespace);

    // Readiness is tracked from the watch streams themselves (the initial
    // list done), not with Store::wait_until_ready: that future keeps a
    // single waker, so a second waiter next to the controller's own could
    // leave one of them asleep forever.
    let synced = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let (dl_store, dl_writer) = reflector::store();
    let dl_stream = reflector::reflector(
        dl_writer,
        track_sync(
            watcher(dls, watcher::Config::default().any_semantic()).modify(strip_managed_fields),
            synced[0].clone(),
            health.clone(),
            "deploymentlites",
        ),
    )
    .backoff(crate::runtime::watch_backoff())
    .applied_objects();
    let (rs_store, rs_writer) = reflector::store();
    let rs_stream = reflector::reflector(
        rs_writer,
        track_sync(
            watcher(rses, watcher::Config::default().any_semantic()).modify(strip_managed_fields),
            synced[1].clone(),
            health.clone(),
            "replicasets",
        ),
    )
    .backoff(crate::runtime::watch_backoff())
    .touched_objects();
    // Pods are not cached: every pod of every ReplicaSet in scope carries
    // the hash label, most of them not a DeploymentLite's (a Deployment's
    // do too), and a cache of them grows with the cluster. The watch only
    // wakes the DeploymentLite behind a pod that goes away (Recreate waits
    // for those), and needs nothing but metadata for that; the few
    // reconciles that read pods list them (see `pods_of`).
    let pod_stream = track_sync(
        watcher(
            pods,
            watcher::Config::default()
                .labels(POD_TEMPLATE_HASH_LABEL)
                .any_semantic(),
        ),
        synced[2].clone(),
        health.clone(),
        "pods",
    )
    .modify(|p| p.metadata.managed_fields = None)
    .backoff(crate::runtime::watch_backoff())
    .touched_objects();

    let recorder = Recorder::new(
        client.clone(),
        CONTROLLER_NAME,
        std::env::var("POD_NAME").ok(),
    );
    let ctx = Arc::new(Context {
        client,
        replica_sets: rs_store.clone(),
        events: EventQueue::start(recorder),
        metrics: metrics.clone(),
        defaults: ServerDefaults::default(),
        expectations: Expectations::default(),
        workers: Workers::new(opts.concurrent_syncs, dl_store.clone()),
    });

    // No debounce: kube-runtime's is trailing-edge, so every ReplicaSet
    // status update (one per pod turning Ready) pushed the next sync back
    // again, and each step of a rolling update waited for the last of them
    // plus the delay. Like upstream's work queue, a request for an object
    // whose reconcile is running is held (never run concurrently) and
    // requests that pile up meanwhile collapse into one.
    // Each watch above backs off on its own errors; the Controller's own
    // backoff on the merged trigger streams (client-go's, up to 30 s plus
    // jitter) would wait again on every one of them, and kept it deaf for up
    // to a minute after an API server outage.
    // Unbounded here: the limit is Workers', which is first come, first
    // served.
    let controller = Controller::for_stream(dl_stream, dl_store.clone())
        .with_config(ControllerConfig::default().concurrency(0))
        .trigger_backoff(crate::runtime::NoBackoff);
    let dls_for_depth = dl_store.clone();
    let background = tokio::spawn(async move {
        health.set_ready(false, "waiting for the caches to sync");
        while !synced.iter().all(|s| s.load(Ordering::SeqCst)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!("caches synced");
        health.set_ready(true, "caches synced");
        // The backlog: objects whose newest generation is not yet observed.
        loop {
            let pending = dls_for_depth
                .state()
                .iter()
                .filter(|d| {
                    d.status.as_ref().and_then(|s| s.observed_generation) < d.metadata.generation
                })
                .count();
            metrics.queue_depth.set(pending as i64);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let dl_store_for_rs = dl_store.clone();
    let rs_store_for_pods = rs_store.clone();
    let ctx_for_rs = ctx.clone();
    let dl_store_for_pods = dl_store.clone();
    controller
        .watches_stream(rs_stream, move |rs: ReplicaSet| {
            let owners = replica_set_owners(&dl_store_for_rs, &rs);
            for owner in &owners {
                let key = format!(
                    "{}/{}",
                    owner.namespace.as_deref().unwrap_or_default(),
                    owner.name
                );
                ctx_for_rs.expectations.observe(
                    &key,
                    &rs.name_any(),
                    &rs.uid().unwrap_or_default(),
                    &rs.resource_version().unwrap_or_default(),
                );
            }
            owners
        })
        .watches_stream(pod_stream, move |pod: PartialObjectMeta<Pod>| {
            pod_owner(&dl_store_for_pods, &rs_store_for_pods, &pod)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    background.abort();
}

/// The caches hold every DeploymentLite and ReplicaSet in scope, and
/// managedFields are often the largest part of an object. Nothing here
/// reads them, and no write sends them back: status writes and the
/// rollback's replace leave them out, so the API server keeps what it has.
fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Passes watch events through, raising `flag` once the initial list is in
/// and telling `health` whether the watch is failing (readiness).
fn track_sync<K, S>(
    stream: S,
    flag: Arc<AtomicBool>,
    health: Arc<Health>,
    watch: &'static str,
) -> impl futures::Stream<Item = S::Item>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.inspect(move |ev| match ev {
        Ok(e) => {
            if let watcher::Event::InitDone = e {
                flag.store(true, Ordering::SeqCst);
            }
            health.watch_outcome(watch, None);
        }
        Err(e) => health.watch_outcome(watch, Some(e.to_string())),
    })
}

/// Which DeploymentLites care about a ReplicaSet event: its controller, or
/// for an orphan, every DeploymentLite whose selector matches it (adoption).
fn replica_set_owners(
    dls: &Store<DeploymentLite>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<DeploymentLite>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
    {
        if owner.kind == "DeploymentLite" && owner.api_version.starts_with("apps.dlite.dev/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    dls.state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()) && selects(d, rs.labels()))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// A pod that is going away may unblock a Recreate rollout of the
/// DeploymentLite behind its ReplicaSet. (A pod that finishes changes its
/// ReplicaSet's status, which wakes the DeploymentLite through that watch.)
/// Only a Recreate rollout waits on pods (upstream's deletePod handler also
/// wakes only Recreate Deployments): a RollingUpdate reads its ReplicaSets'
/// status alone, and a sync for every terminating pod of a scale-down would
/// only hold up the sync that the next ReplicaSet status asks for.
fn pod_owner(
    dls: &Store<DeploymentLite>,
    rses: &Store<ReplicaSet>,
    pod: &PartialObjectMeta<Pod>,
) -> Option<ObjectRef<DeploymentLite>> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    let rs = rses.get(&ObjectRef::new(&owner.name).within(&pod.namespace()?))?;
    let dl = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "DeploymentLite")?;
    let dl = ObjectRef::new(&dl.name).within(&pod.namespace()?);
    let recreate = dls
        .get(&dl)
        .is_some_and(|d| d.spec.strategy.type_ == StrategyType::Recreate);
    recreate.then_some(dl)
}

/// The pods of `claimed` ReplicaSets, listed from the API server (a
/// consistent read): only a Recreate rollout reads pods, and only while
/// old ReplicaSets exist, so they are not worth a cache (see `run`).
async fn pods_of(
    ctx: &Context,
    dl: &DeploymentLite,
    ns: &str,
    claimed: &[ReplicaSet],
) -> Result<Vec<Pod>, Error> {
    if dl.spec.strategy.type_ != crate::api::StrategyType::Recreate || claimed.is_empty() {
        return Ok(Vec::new());
    }
    let uids: HashSet<String> = claimed.iter().filter_map(|rs| rs.uid()).collect();
    let selector = Selector::try_from(dl.spec.selector.clone())
        .map_err(|_| Error::MissingField("a valid spec.selector"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector.to_string()))
        .await
        .map_err(|e| {
            Error::api(
                "listing pods of",
                format!("DeploymentLite {}", dl.name_any()),
                e,
            )
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && uids.contains(&o.uid))
        })
        .collect())
}

fn selects(dl: &DeploymentLite, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(dl.spec.selector.clone()) {
        Ok(sel) => !sel.selects_all() && sel.matches(labels),
        Err(_) => false,
    }
}

/// How soon a sync that met a 409 Conflict runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(20);

/// Requeue policy on errors: conflicts are retried almost at once (fresh
/// state is already in the cache or on its way); anything else backs off.
pub fn error_policy(dl: Arc<DeploymentLite>, err: &Error, _ctx: Arc<Context>) -> Requeue {
    match err {
        Error::Conflict { .. } => {
            debug!(deploymentlite = %dl.name_any(), error = %err, "conflict; retrying");
            // Upstream's work queue retries after 5 ms at first. A conflict
            // on the status write that ends a sync (the watch had not yet
            // delivered our own previous write) holds back what users
            // wait on, the status, for as long as this delay.
            Requeue::requeue(CONFLICT_RETRY)
        }
        _ => {
            warn!(deploymentlite = %dl.name_any(), error = %err, "reconcile failed");
            Requeue::requeue(Duration::from_secs(5))
        }
    }
}

/// One reconcile of one DeploymentLite, once a worker is free.
pub async fn reconcile(dl: Arc<DeploymentLite>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let Some((_worker, dl)) = ctx.workers.start(&dl).await else {
        return Ok(Requeue::await_change());
    };
    let ns = dl
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = info_span!("reconcile", deploymentlite = %format!("{ns}/{}", dl.name_any()), generation = dl.metadata.generation);
    let start = std::time::Instant::now();
    // Boxed: every requested sync waits on the workers as a future of its
    // own, and unboxed each would be as large as the whole sync's state.
    let result = Box::pin(reconcile_inner(dl, ctx.clone(), ns).instrument(span)).await;
    let m = &ctx.metrics;
    m.reconcile_duration.observe(start.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "success" } else { "error" };
    m.reconciles
        .get_or_create(&ResultLabel {
            result: outcome.into(),
        })
        .inc();
    if let Err(e) = &result {
        let kind = match e {
            Error::Conflict { .. } => "conflict",
            Error::Api { .. } => "api",
            Error::MissingField(_) => "invalid",
        };
        m.errors
            .get_or_create(&ErrorLabel { kind: kind.into() })
            .inc();
    }
    result
}

async fn reconcile_inner(
    dl: Arc<DeploymentLite>,
    ctx: Arc<Context>,
    ns: String,
) -> Result<Requeue, Error> {
    // Plan only from a cache that shows this controller's own writes (see
    // controller/expectations.rs); the watch event that brings them
    // triggers the next reconcile, the requeue is a fallback.
    let key = format!("{ns}/{}", dl.name_any());
    let seen = ctx
        .expectations
        .satisfied(&key, std::time::Instant::now(), |name| {
            ctx.replica_sets
                .get(&ObjectRef::new(name).within(&ns))
                .map(|rs| {
                    (
                        rs.uid().unwrap_or_default(),
                        rs.resource_version().unwrap_or_default(),
                    )
                })
        });
    if !seen {
        debug!("waiting for the cache to show this controller's last writes");
        return Ok(Requeue::requeue(Duration::from_millis(200)));
    }
    let rses: Vec<Arc<ReplicaSet>> = ctx
        .replica_sets
        .state()
        .into_iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let claimed = claim_replica_sets(&ctx, &dl, &ns, rses).await?;
    let pods = pods_of(&ctx, &dl, &ns, &claimed).await?;

    // The defaulted template tells the new ReplicaSet from the old ones and
    // a rollback target from the current template. With no ReplicaSet there
    // is nothing to tell apart: the new one is built from the template as
    // written either way (the server defaults it on create), and the create
    // teaches the cache what a dry run would have (ServerDefaults::learn).
    // So a new object's first sync skips the dry run.
    let template = if claimed.is_empty() {
        dl.spec.template.clone()
    } else {
        defaulted_template(&ctx, &dl).await?
    };
    let plan = planner::plan(SyncInput {
        dl: &dl,
        rses: &claimed,
        pods: &pods,
        template: &template,
        now: k8s_openapi::jiff::Timestamp::now(),
    });
    debug!(actions = plan.actions.len(), "planned");
    execute(&ctx, &dl, &ns, plan).await
}

/// The object's template as the API server defaults it. When the server
/// refuses the template, no stored ReplicaSet can equal it and creating one
/// fails with the server's message (ReplicaSetCreateError), as for a
/// Deployment whose ReplicaSet is refused; the template as written stands in.
async fn defaulted_template(ctx: &Context, dl: &DeploymentLite) -> Result<PodTemplateSpec, Error> {
    match ctx.defaults.template(&ctx.client, dl).await {
        Ok(Defaulted::Template(t)) => Ok(t.as_ref().clone()),
        Ok(Defaulted::Refused(message)) => {
            debug!(%message, "the API server refuses the template");
            Ok(dl.spec.template.clone())
        }
        Err(e) => Err(Error::api(
            "defaulting the pod template (dry run) of",
            format!("DeploymentLite {}", dl.name_any()),
            e,
        )),
    }
}

/// docs/controller.md §10: keep ours that still match, release ours that no longer do,
/// adopt matching orphans (after re-reading the owner from the API server,
/// so a deleted-and-recreated object never adopts its predecessor's
/// children), ignore what another controller owns.
async fn claim_replica_sets(
    ctx: &Context,
    dl: &DeploymentLite,
    ns: &str,
    rses: Vec<Arc<ReplicaSet>>,
) -> Result<Vec<ReplicaSet>, Error> {
    let uid = dl.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let deleting = dl.metadata.deletion_timestamp.is_some();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut claimed = Vec::new();
    let mut fresh_checked = false;
    for rs in rses {
        let controller = rs
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true));
        let matches = selects(dl, rs.labels());
        match controller {
            Some(o) if o.uid != uid => continue,
            Some(_) if matches || deleting => claimed.push(rs.as_ref().clone()),
            Some(_) => {
                // Ours but no longer selected: let it go.
                let refs: Vec<_> = rs
                    .owner_references()
                    .iter()
                    .filter(|o| o.uid != uid)
                    .cloned()
                    .collect();
                let patch = json!({"metadata": {"resourceVersion": rs.resource_version(), "ownerReferences": refs}});
                api.patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::api("releasing", format!("ReplicaSet {}", rs.name_any()), e))?;
                info!(replicaset = %rs.name_any(), "released ReplicaSet that no longer matches the selector");
            }
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                if !fresh_checked {
                    let dls: Api<DeploymentLite> = Api::namespaced(ctx.client.clone(), ns);
                    let fresh = dls.get(&dl.name_any()).await.map_err(|e| {
                        Error::api("re-reading", format!("DeploymentLite {}", dl.name_any()), e)
                    })?;
                    if fresh.uid().as_deref() != Some(uid.as_str())
                        || fresh.metadata.deletion_timestamp.is_some()
                    {
                        return Ok(claimed);
                    }
                    fresh_checked = true;
                }
                let mut refs = rs.owner_references().to_vec();
                refs.push(controller_ref(dl));
                let patch = json!({"metadata": {"resourceVersion": rs.resource_version(), "ownerReferences": refs}});
                let adopted = api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(|e| {
                        Error::api("adopting", format!("ReplicaSet {}", rs.name_any()), e)
                    })?;
                info!(replicaset = %rs.name_any(), "adopted orphan ReplicaSet");
                claimed.push(adopted);
            }
            None => {}
        }
    }
    Ok(claimed)
}

/// Queues an event about `dl` (see [`EventQueue`]); it does not wait for
/// the event to be written.
fn publish(ctx: &Context, dl: &DeploymentLite, type_: EventType, reason: &str, message: String) {
    let action = if reason == planner::reason::SCALING_RS {
        "Scale"
    } else {
        "Reconcile"
    };
    ctx.events.send(QueuedEvent {
        regarding: dl.object_ref(&()),
        type_,
        reason: reason.to_string(),
        action,
        message,
    });
}

/// Executes a plan in order, then records the status.
async fn execute(
    ctx: &Context,
    dl: &DeploymentLite,
    ns: &str,
    plan: planner::Plan,
) -> Result<Requeue, Error> {
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let dl_api: Api<DeploymentLite> = Api::namespaced(ctx.client.clone(), ns);
    let name = dl.name_any();
    let key = format!("{ns}/{name}");
    let mut current = dl.clone();
    let mut status = plan.status;

    for action in plan.actions {
        match action {
            Action::CreateReplicaSet(rs) => {
                let rs_name = rs.name_any();
                let size = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(created) => {
                        ctx.defaults.learn(ns, &dl.spec.template, &created);
                        ctx.expectations.created(
                            &key,
                            &rs_name,
                            &created.uid().unwrap_or_default(),
                            std::time::Instant::now(),
                        );
                        info!(replicaset = %rs_name, replicas = size, "created ReplicaSet");
                        if size > 0 {
                            let msg = format!("Scaled up replica set {rs_name} from 0 to {size}");
                            publish(ctx, dl, EventType::Normal, planner::reason::SCALING_RS, msg);
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                        return handle_name_collision(ctx, dl, &current, &rs_api, &rs_name, status)
                            .await;
                    }
                    // As upstream: a terminating namespace refuses every
                    // create, so there is nothing to report.
                    Err(kube::Error::Api(s)) if is_namespace_terminating(&s) => {
                        return Err(Error::api(
                            "creating",
                            format!("ReplicaSet {rs_name}"),
                            kube::Error::Api(s),
                        ));
                    }
                    Err(e) => {
                        // Upstream's words: the server's message, reason
                        // ReplicaSetCreateError on the event, and the
                        // condition only when there is a progress deadline.
                        let msg = format!(
                            "Failed to create new replica set \"{rs_name}\": {}",
                            api_message(&e)
                        );
                        publish(
                            ctx,
                            dl,
                            EventType::Warning,
                            planner::reason::CREATE_ERROR,
                            msg.clone(),
                        );
                        if planner::has_progress_deadline(dl) {
                            set_condition(
                                &mut status.conditions,
                                new_condition(
                                    "Progressing",
                                    "False",
                                    planner::reason::CREATE_ERROR,
                                    msg,
                                    k8s_openapi::jiff::Timestamp::now(),
                                ),
                            );
                            write_status(&dl_api, &current, status).await?;
                        }
                        return Err(Error::api("creating", format!("ReplicaSet {rs_name}"), e));
                    }
                }
            }
            Action::UpdateReplicaSet {
                name: rs_name,
                resource_version,
                from,
                replicas,
                annotations,
                min_ready_seconds,
            } => {
                let patch = json!({
                    "metadata": {"resourceVersion": resource_version, "annotations": annotations},
                    "spec": {"replicas": replicas, "minReadySeconds": min_ready_seconds},
                });
                let patched = rs_api
                    .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::api("scaling", format!("ReplicaSet {rs_name}"), e))?;
                // A patch that changed nothing keeps the resourceVersion
                // and brings no watch event: nothing to wait for.
                if patched.resource_version().as_deref() != Some(resource_version.as_str()) {
                    ctx.expectations.updated(
                        &key,
                        &rs_name,
                        &resource_version,
                        std::time::Instant::now(),
                    );
                }
                if from != replicas {
                    let dir = if replicas > from { "up" } else { "down" };
                    info!(replicaset = %rs_name, from, to = replicas, "scaled ReplicaSet");
                    let msg =
                        format!("Scaled {dir} replica set {rs_name} from {from} to {replicas}");
                    publish(ctx, dl, EventType::Normal, planner::reason::SCALING_RS, msg);
                }
            }
            Action::DeleteReplicaSet {
                name: rs_name,
                uid,
                resource_version,
            } => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: Some(resource_version),
                    }),
                    ..DeleteParams::background()
                };
                match rs_api.delete(&rs_name, &dp).await {
                    Ok(_) => {
                        info!(replicaset = %rs_name, "deleted old ReplicaSet (revision history limit)")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(Error::api("deleting", format!("ReplicaSet {rs_name}"), e));
                    }
                }
            }
            Action::AnnotateDeployment { annotations } => {
                let patch = json!({"metadata": {"resourceVersion": current.resource_version(), "annotations": annotations}});
                current = dl_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::api("annotating", format!("DeploymentLite {name}"), e))?;
            }
            Action::Rollback {
                template,
                annotations,
            } => {
                let mut next = current.clone();
                next.spec.rollback_to = None;
                if let Some(t) = template {
                    next.spec.template = *t;
                    // The bookkeeping annotations as they are now (this
                    // sync may just have written the revision), the rest
                    // from the revision rolled back to.
                    let mut all: BTreeMap<String, String> = current
                        .annotations()
                        .iter()
                        .filter(|(k, _)| planner::skip_copy_annotation(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    all.extend(annotations);
                    next.metadata.annotations = Some(all);
                }
                next.status = None;
                current = dl_api
                    .replace(&name, &PostParams::default(), &next)
                    .await
                    .map_err(|e| Error::api("rolling back", format!("DeploymentLite {name}"), e))?;
            }
            Action::Event {
                type_,
                reason,
                message,
            } => publish(ctx, dl, type_, reason, message),
        }
    }

    if Some(&status) != current.status.as_ref() {
        write_status(&dl_api, &current, status).await?;
    }
    Ok(match plan.requeue_after {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    })
}

/// What the API server said, without the client's wrapping: the text a Go
/// client's error prints.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The API server refuses creates in a namespace being deleted with this
/// status cause.
fn is_namespace_terminating(s: &kube::core::Status) -> bool {
    s.details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

/// The new ReplicaSet's name is taken. If it is ours with our template, the
/// cache was just behind; otherwise bump collisionCount so the next sync
/// hashes to a new name (docs/controller.md §1), and say so.
async fn handle_name_collision(
    ctx: &Context,
    dl: &DeploymentLite,
    current: &DeploymentLite,
    rs_api: &Api<ReplicaSet>,
    rs_name: &str,
    mut status: DeploymentLiteStatus,
) -> Result<Requeue, Error> {
    let existing = rs_api
        .get(rs_name)
        .await
        .map_err(|e| Error::api("reading", format!("ReplicaSet {rs_name}"), e))?;
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == dl.uid().as_ref());
    let same_template = if ours {
        // Defaulted, as the existing ReplicaSet's is (the sync may have
        // skipped the dry run, seeing no ReplicaSet of its own).
        let template = defaulted_template(ctx, dl).await?;
        existing
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(&template, t))
    } else {
        false
    };
    if ours && same_template {
        debug!(
            replicaset = rs_name,
            "new ReplicaSet already exists; cache is behind"
        );
        return Ok(Requeue::requeue(Duration::from_millis(200)));
    }
    let count = dl
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0)
        + 1;
    status.collision_count = Some(count);
    let owner = existing
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| format!("{} {}", o.kind, o.name))
        .unwrap_or_else(|| "no controller".into());
    let msg = format!(
        "ReplicaSet {rs_name} already exists with a different template (controlled by {owner}); collisionCount raised to {count} to pick a new name"
    );
    publish(ctx, dl, EventType::Warning, "ReplicaSetNameCollision", msg);
    let dl_api: Api<DeploymentLite> =
        Api::namespaced(ctx.client.clone(), &dl.namespace().unwrap_or_default());
    write_status(&dl_api, current, status).await?;
    Ok(Requeue::requeue(Duration::from_millis(100)))
}

/// Replaces the status, conditional on the resourceVersion last seen.
async fn write_status(
    api: &Api<DeploymentLite>,
    current: &DeploymentLite,
    status: DeploymentLiteStatus,
) -> Result<(), Error> {
    let mut obj = current.clone();
    obj.status = Some(status);
    obj.metadata.managed_fields = None;
    api.replace_status(&current.name_any(), &PostParams::default(), &obj)
        .await
        .map_err(|e| {
            Error::api(
                "writing status of",
                format!("DeploymentLite {}", current.name_any()),
                e,
            )
        })?;
    Ok(())
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
