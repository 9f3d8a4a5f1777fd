//! The live cluster view: kube-rs watchers on Services, EndpointSlices, Namespaces (and Pods) feeding a `Cluster`.

mod client;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, SelectAll, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, ErrorResponse};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;

use crate::cluster::SERVICE_NAME_LABEL;
use crate::cluster::{Cluster, NamespaceObj, ObjectKey, PodObj, ServiceObj, SliceObj};
use crate::records::Changes;
use crate::snapshot::{check_endpoint_slice, check_service};

pub use client::{check, client, config, ApiSource, K8sError};

/// After a change, further events are awaited this long before the records are rebuilt...
pub const COALESCE_QUIET: Duration = Duration::from_millis(5);
/// ...but never longer than this after the first one.
pub const COALESCE_MAX: Duration = Duration::from_millis(20);

/// What to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Also watch Pods (a `pods verified` mode needs them).
    pub pods: bool,
}

/// Receives each new state of the cluster, what changed since the previous call, and whether
/// every watched kind has been listed completely at least once. Runs on a blocking thread: it
/// may rebuild and sync at length.
pub type Sink = Arc<dyn Fn(&Cluster, &Changes, bool) + Send + Sync>;

/// A kind of watched object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Pod,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Pod => "Pod",
        }
    }

    fn api_resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Kind::Pod => ApiResource::erase::<Pod>(&()),
        }
    }
}

type Item = (Kind, Result<Event<DynamicObject>, watcher::Error>);

/// Watches the API until the returned task is aborted, calling `sink` with every coalesced
/// change. While the API server is unreachable nothing is called: the last state stays served.
pub fn spawn(
    client: kube::Client,
    config: &WatchConfig,
    sink: Sink,
) -> tokio::task::JoinHandle<()> {
    let mut kinds = vec![Kind::Namespace, Kind::Service, Kind::EndpointSlice];
    if config.pods {
        kinds.push(Kind::Pod);
    }
    let mut streams: SelectAll<BoxStream<'static, Item>> = SelectAll::new();
    for &kind in &kinds {
        streams.push(kind_stream(client.clone(), kind));
    }
    let state = State::new(&kinds);
    tokio::spawn(run(streams, state, sink))
}

/// One kind's events, forever: the watcher lists, watches from the list's resourceVersion,
/// follows bookmarks, re-lists on a 410 Gone event and backs off on errors. When a watch is
/// refused with HTTP 410 Gone, a new watcher starts with a new list.
fn kind_stream(client: kube::Client, kind: Kind) -> BoxStream<'static, Item> {
    stream::repeat(())
        .flat_map(move |()| {
            let api = Api::<DynamicObject>::all_with(client.clone(), &kind.api_resource());
            watcher(api, watcher::Config::default())
                .backoff(backoff())
                .scan(false, move |gone, event| {
                    if *gone {
                        return futures::future::ready(None);
                    }
                    if let Err(e) = &event {
                        *gone = http_gone(e);
                    }
                    futures::future::ready(Some((kind, event)))
                })
        })
        .boxed()
}

/// Whether the API server answered a watch request with HTTP 410 Gone (the watcher itself only
/// re-lists on a 410 `ERROR` event, and would retry the same resourceVersion forever).
fn http_gone(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::WatchStartFailed(kube::Error::Api(ErrorResponse { code: 410, .. }))
            | watcher::Error::WatchFailed(kube::Error::Api(ErrorResponse { code: 410, .. }))
    )
}

/// First and longest wait before retrying a failed list or watch.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

fn backoff() -> Doubling {
    Doubling { next: BACKOFF_MIN }
}

/// Waits doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], back to the minimum after a success
/// (the watcher stream resets it on every event).
struct Doubling {
    next: Duration,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(BACKOFF_MAX);
        Some(now)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// What the watchers have seen.
struct State {
    cluster: Cluster,
    /// Per kind: listed completely at least once; the objects of a list in progress.
    kinds: BTreeMap<Kind, KindState>,
    /// What changed since the sink was last called.
    changes: Changes,
}

#[derive(Default)]
struct KindState {
    synced: bool,
    relist: Option<Cluster>,
}

impl State {
    fn new(kinds: &[Kind]) -> Self {
        State {
            cluster: Cluster::default(),
            kinds: kinds.iter().map(|&k| (k, KindState::default())).collect(),
            changes: Changes::default(),
        }
    }

    fn synced(&self) -> bool {
        self.kinds.values().all(|k| k.synced)
    }

    fn handle(&mut self, kind: Kind, event: Result<Event<DynamicObject>, watcher::Error>) {
        let Some(ks) = self.kinds.get_mut(&kind) else {
            return;
        };
        match event {
            Err(e) => log::warn!("watching {}s: {e}", kind.name()),
            Ok(Event::Init) => ks.relist = Some(Cluster::default()),
            Ok(Event::InitApply(obj)) => {
                let target = ks.relist.get_or_insert_with(Cluster::default);
                insert(target, kind, obj, &mut Changes::default());
            }
            Ok(Event::InitDone) => {
                let listed = ks.relist.take().unwrap_or_default();
                let before = self.synced();
                replace_kind(&mut self.cluster, listed, kind);
                if let Some(ks) = self.kinds.get_mut(&kind) {
                    if !ks.synced {
                        log::info!("{}s listed", kind.name());
                    }
                    ks.synced = true;
                }
                if !before && self.synced() {
                    log::info!("every watched kind listed: the zone is complete");
                }
                self.changes.full = true;
            }
            Ok(Event::Apply(obj)) => insert(&mut self.cluster, kind, obj, &mut self.changes),
            Ok(Event::Delete(obj)) => {
                if let Some(key) = key_of(kind, &obj) {
                    remove(&mut self.cluster, kind, &key, &mut self.changes);
                }
            }
        }
    }
}

async fn run(mut streams: SelectAll<BoxStream<'static, Item>>, mut state: State, sink: Sink) {
    while let Some((kind, event)) = streams.next().await {
        state.handle(kind, event);
        let until = tokio::time::Instant::now() + COALESCE_MAX;
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout(COALESCE_QUIET, streams.next()).await {
                Ok(Some((kind, event))) => state.handle(kind, event),
                Ok(None) | Err(_) => break,
            }
        }
        if state.changes.is_empty() {
            continue;
        }
        let changes = std::mem::take(&mut state.changes);
        let synced = state.synced();
        let cluster = std::mem::take(&mut state.cluster);
        let sink = Arc::clone(&sink);
        // A full rebuild may take long for big clusters: off the async workers. The cluster
        // moves there and back instead of being copied.
        let done = tokio::task::spawn_blocking(move || {
            sink(&cluster, &changes, synced);
            cluster
        })
        .await;
        match done {
            Ok(cluster) => state.cluster = cluster,
            Err(e) => {
                log::error!(
                    "applying the cluster state failed: {e}; watching stopped, the last records stay served"
                );
                return;
            }
        }
    }
}

/// `Kind ns/name` (or `Kind name` for cluster objects), as warnings name objects.
fn describe(kind: Kind, obj: &DynamicObject) -> String {
    let name = obj.metadata.name.as_deref().unwrap_or("<no name>");
    match (kind, obj.metadata.namespace.as_deref()) {
        (Kind::Namespace, _) | (_, None) => format!("{} {name}", kind.name()),
        (_, Some(ns)) => format!("{} {ns}/{name}", kind.name()),
    }
}

fn key_of(kind: Kind, obj: &DynamicObject) -> Option<ObjectKey> {
    let name = obj.metadata.name.clone().filter(|n| !n.is_empty());
    let Some(name) = name else {
        log::warn!("{}: metadata.name is missing, skipped", describe(kind, obj));
        return None;
    };
    if kind == Kind::Namespace {
        return Some(ObjectKey::new("", name));
    }
    match obj.metadata.namespace.clone().filter(|n| !n.is_empty()) {
        Some(ns) => Some(ObjectKey::new(ns, name)),
        None => {
            log::warn!(
                "{}: metadata.namespace is missing, skipped",
                describe(kind, obj)
            );
            None
        }
    }
}

fn typed<K: DeserializeOwned>(obj: &DynamicObject) -> Result<K, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Stores `obj` in `target` and notes what it changes in `changes`. An object that cannot
/// serve records is skipped with a warning naming it, and an earlier version of it is dropped
/// (it no longer describes the object).
fn insert(target: &mut Cluster, kind: Kind, obj: DynamicObject, changes: &mut Changes) {
    let Some(key) = key_of(kind, &obj) else {
        return;
    };
    if let Err(problem) = insert_checked(target, kind, &key, &obj, changes) {
        log::warn!("{}: {problem}, skipped", describe(kind, &obj));
        remove(target, kind, &key, changes);
    }
}

fn insert_checked(
    target: &mut Cluster,
    kind: Kind,
    key: &ObjectKey,
    obj: &DynamicObject,
    changes: &mut Changes,
) -> Result<(), String> {
    match kind {
        Kind::Namespace => {
            let ns: Namespace = typed(obj)?;
            target.insert_namespace(key.name.clone(), NamespaceObj::from(&ns));
            changes.namespaces.insert(key.name.clone());
        }
        Kind::Service => {
            let svc: Service = typed(obj)?;
            check_service(&svc)?;
            target.insert_service(key.clone(), ServiceObj::from(&svc));
            changes.services.insert(key.clone());
        }
        Kind::EndpointSlice => {
            let slice: EndpointSlice = typed(obj)?;
            check_endpoint_slice(&slice)?;
            let slice = SliceObj::from(&slice);
            if slice.service.is_none() {
                return Err(format!("no {SERVICE_NAME_LABEL} label: names no Service"));
            }
            note_slice(changes, key, Some(&slice));
            let old = target.insert_slice(key.clone(), slice);
            note_slice(changes, key, old.as_ref());
        }
        Kind::Pod => {
            let pod: Pod = typed(obj)?;
            target.insert_pod(key.clone(), PodObj::from(&pod));
            changes.pods.insert(key.namespace.clone());
        }
    }
    Ok(())
}

/// Notes the service a slice belongs to as changed.
fn note_slice(changes: &mut Changes, key: &ObjectKey, slice: Option<&SliceObj>) {
    if let Some(svc) = slice.and_then(|s| s.service.as_deref()) {
        changes
            .services
            .insert(ObjectKey::new(key.namespace.clone(), svc));
    }
}

fn remove(target: &mut Cluster, kind: Kind, key: &ObjectKey, changes: &mut Changes) {
    match kind {
        Kind::Namespace => {
            if target.remove_namespace(&key.name).is_some() {
                changes.namespaces.insert(key.name.clone());
            }
        }
        Kind::Service => {
            if target.remove_service(key).is_some() {
                changes.services.insert(key.clone());
            }
        }
        Kind::EndpointSlice => {
            let old = target.remove_slice(key);
            note_slice(changes, key, old.as_ref());
        }
        Kind::Pod => {
            if target.remove_pod(key).is_some() {
                changes.pods.insert(key.namespace.clone());
            }
        }
    }
}

/// Replaces `kind`'s objects in `cluster` by those of a complete list. The maps are rebuilt
/// in bulk: a map filled one insert at a time in key order leaves its nodes half empty.
fn replace_kind(cluster: &mut Cluster, listed: Cluster, kind: Kind) {
    match kind {
        Kind::Namespace => cluster.namespaces = listed.namespaces.into_iter().collect(),
        Kind::Service => cluster.services = listed.services.into_iter().collect(),
        Kind::EndpointSlice => {
            cluster.endpoint_slices = listed.endpoint_slices.into_iter().collect()
        }
        Kind::Pod => cluster.pods = listed.pods.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests;
