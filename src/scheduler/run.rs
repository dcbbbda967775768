//! Wires dlite-scheduler together: rate-limited clients, the watches of
//! pods, nodes and namespaces, the event sink, and the scheduling loop on
//! its own thread. `src/bin/dlite-scheduler.rs` only parses flags and calls
//! [`run`].

use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use thiserror::Error;

use super::backend::queue::QueueConfig;
use super::binder::EventSink;
use super::config::SchedulerConfig;
use super::eventhandlers::{Io, LoopConfig, MSG_CHANNEL_CAPACITY, Msg, Observability, Scheduler};
use super::framework::parallelize::Parallelizer;
use super::plugins::default_framework;

/// Event workers; each publishes one event at a time (see [`EventSink`]).
const EVENT_SHARDS: usize = 16;
/// Events queued per worker before new ones are dropped.
const EVENT_QUEUE: usize = 4096;
/// Pods listed per page on (re)list.
const LIST_PAGE_SIZE: u32 = 500;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
    #[error("starting the filter threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    #[error("the scheduling loop panicked")]
    LoopPanicked,
}

pub use crate::runtime::rate_limit::rate_limited_client;

fn reporting_instance(scheduler_name: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let instance = format!("{scheduler_name}-{host}-{}", std::process::id());
    instance.chars().take(128).collect()
}

/// Drops `managedFields` before objects reach the cache: the scheduler
/// never reads them and they are often the largest part of an object.
fn strip<K: kube::Resource>(event: watcher::Event<K>) -> watcher::Event<K> {
    event.modify(|o| o.meta_mut().managed_fields = None)
}

/// Runs the scheduler until `shutdown` resolves, then stops taking new
/// pods, waits briefly for bindings in flight and flushes queued events.
/// Readiness is reported to `observe.health` once the caches are synced.
pub async fn run(
    config: SchedulerConfig,
    kube_config: kube::Config,
    observe: Observability,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // Like kube-scheduler, events get a client (and token bucket) of their
    // own with the same limits, so event traffic never delays bindings.
    let client = rate_limited_client(kube_config.clone(), config.qps, config.burst)?;
    let event_client = rate_limited_client(kube_config, config.qps, config.burst)?;
    let scheduler_name = config.profile.scheduler_name.clone();
    let parallelizer = Parallelizer::new(config.parallelism)?;
    // Events name the scheduler as their reporting controller, as
    // kube-scheduler's do; the API server limits that field to 128 chars.
    let controller: String = scheduler_name.chars().take(128).collect();
    let (events, event_workers) = EventSink::new(
        event_client,
        &controller,
        &reporting_instance(&scheduler_name),
        EVENT_SHARDS,
        EVENT_QUEUE,
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(MSG_CHANNEL_CAPACITY);
    let health = observe.health.clone();
    let mut watches = Vec::new();
    {
        // Terminal pods hold no resources; the server leaves them out (and
        // reports a pod that finishes as deleted).
        let cfg = watcher::Config::default()
            .fields("status.phase!=Succeeded,status.phase!=Failed")
            .page_size(LIST_PAGE_SIZE);
        let stream =
            watcher(Api::<Pod>::all(client.clone()), cfg).backoff(crate::runtime::watch_backoff());
        let tx = tx.clone();
        watches.push(tokio::spawn(forward(
            stream,
            tx,
            health.clone(),
            "pods",
            |e| Msg::Pod(Box::new(strip(e))),
        )));
    }
    {
        let cfg = watcher::Config::default().page_size(LIST_PAGE_SIZE);
        let stream =
            watcher(Api::<Node>::all(client.clone()), cfg).backoff(crate::runtime::watch_backoff());
        let tx = tx.clone();
        watches.push(tokio::spawn(forward(
            stream,
            tx,
            health.clone(),
            "nodes",
            |e| Msg::Node(Box::new(strip(e))),
        )));
    }
    {
        // Only labels matter (namespaceSelector in affinity terms).
        let api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
        let stream =
            watcher(api, watcher::Config::default()).backoff(crate::runtime::watch_backoff());
        let tx = tx.clone();
        watches.push(tokio::spawn(forward(
            stream,
            tx,
            health.clone(),
            "namespaces",
            |e| Msg::Namespace(Box::new(e.modify(|o| o.metadata.managed_fields = None))),
        )));
    }

    {
        // Preemption respects them where it can.
        let api = Api::<PodDisruptionBudget>::all(client.clone());
        let stream =
            watcher(api, watcher::Config::default()).backoff(crate::runtime::watch_backoff());
        let tx = tx.clone();
        watches.push(tokio::spawn(forward(
            stream,
            tx,
            health.clone(),
            "poddisruptionbudgets",
            |e| Msg::PodDisruptionBudget(Box::new(strip(e))),
        )));
    }

    let framework = default_framework(config.profile.clone());
    tracing::info!(
        scheduler_name = %scheduler_name,
        qps = config.qps,
        burst = config.burst,
        parallelism = parallelizer.workers(),
        bind_concurrency = config.bind_concurrency,
        framework = ?framework,
        "starting dlite-scheduler"
    );
    let scheduler = Scheduler::new(
        LoopConfig {
            scheduler_name,
            bind_concurrency: config.bind_concurrency,
            queue: QueueConfig::default(),
        },
        framework,
        parallelizer,
        Io {
            runtime: tokio::runtime::Handle::current(),
            client,
            events,
            tx: tx.clone(),
        },
        observe,
    );
    let mut schedule_loop = tokio::task::spawn_blocking(move || scheduler.run(rx));

    let result = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutdown requested");
            let _ = tx.send(Msg::Shutdown).await;
            (&mut schedule_loop).await
        }
        r = &mut schedule_loop => r,
    };
    for w in &watches {
        w.abort();
    }
    drop(tx);
    // The loop's Io held the last EventSink clone; with it gone the event
    // workers finish what is queued and stop.
    event_workers.drain(std::time::Duration::from_secs(5)).await;
    tracing::info!("dlite-scheduler stopped");
    result.map_err(|_| RunError::LoopPanicked)
}

/// Feeds one watch into the loop's channel until the loop is gone, waiting
/// while the channel is full, and tells `health` whether the watch fails.
async fn forward<S, E, F>(
    stream: S,
    tx: tokio::sync::mpsc::Sender<Msg>,
    health: Option<std::sync::Arc<crate::runtime::server::Health>>,
    what: &'static str,
    wrap: F,
) where
    S: futures::Stream<Item = Result<E, watcher::Error>>,
    F: Fn(E) -> Msg,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                if let Some(h) = &health {
                    h.watch_outcome(what, None);
                }
                if tx.send(wrap(event)).await.is_err() {
                    return;
                }
            }
            // The watcher retries with backoff; the error is reported, and
            // the component is not ready until the watch resumes.
            Err(e) => {
                tracing::warn!(watch = what, error = %e, "watch error");
                if let Some(h) = &health {
                    h.watch_outcome(what, Some(e.to_string()));
                }
            }
        }
    }
}
