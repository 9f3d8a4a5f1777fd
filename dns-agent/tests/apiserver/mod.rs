//! An in-test Kubernetes API server over plain HTTP/1.1: lists, chunked watches, bookmarks, 410 Gone, dropped connections.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A watched resource: its list path, list kind, apiVersion and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Namespaces,
    Services,
    EndpointSlices,
    Pods,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Namespaces,
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Pods,
    ];

    fn path(self) -> &'static str {
        match self {
            Resource::Namespaces => "/api/v1/namespaces",
            Resource::Services => "/api/v1/services",
            Resource::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
            Resource::Pods => "/api/v1/pods",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespaces => "Namespace",
            Resource::Services => "Service",
            Resource::EndpointSlices => "EndpointSlice",
            Resource::Pods => "Pod",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::EndpointSlices => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    fn from_path(path: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.path() == path)
    }
}

/// One change, kept for watches that resume from an older resourceVersion.
#[derive(Clone, Debug)]
struct Change {
    /// Position in the history (bookmarks share the resourceVersion of the last change).
    seq: u64,
    rv: u64,
    resource: Resource,
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`.
    kind: &'static str,
    object: Value,
}

#[derive(Debug)]
struct Store {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
    /// Every object, with its JSON as a list item (no apiVersion and kind), written once.
    objects: BTreeMap<(Resource, String, String), (Value, String)>,
    /// Number of objects by resource.
    counts: BTreeMap<Resource, usize>,
    changes: Vec<Change>,
    seq: u64,
    /// Lists wait while this is set (the agent has not synced yet).
    hold_lists: bool,
    /// Watches are answered with HTTP 410 instead of a 410 ERROR event when expired.
    gone_as_http: bool,
    /// Bumped to end every open watch abruptly (a dropped connection).
    drops: u64,
    /// Requests served, by resource: (lists, watches).
    requests: BTreeMap<Resource, (u32, u32)>,
}

/// The fake API server. Objects are JSON as the API serves them; every mutation takes the next
/// resourceVersion and reaches the open watches.
pub struct FakeApi {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    notify: watch::Sender<u64>,
    server: Option<JoinSetHandle>,
}

struct JoinSetHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JoinSetHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake API server listens");
        let addr = listener.local_addr().expect("fake API server address");
        let store = Arc::new(Mutex::new(Store {
            rv: 1000,
            oldest: 0,
            objects: BTreeMap::new(),
            counts: BTreeMap::new(),
            changes: Vec::new(),
            seq: 0,
            hold_lists: false,
            gone_as_http: false,
            drops: 0,
            requests: BTreeMap::new(),
        }));
        let (notify, _) = watch::channel(0);
        let mut api = FakeApi {
            addr,
            store,
            notify,
            server: None,
        };
        api.serve(listener);
        api
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let store = Arc::clone(&self.store);
        let notify = self.notify.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let store = Arc::clone(&store);
                let notify = notify.subscribe();
                conns.spawn(async move {
                    let _ = connection(stream, store, notify).await;
                });
            }
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
        });
        self.server = Some(JoinSetHandle { task });
    }

    /// Stops listening and closes every connection; the objects stay for [`FakeApi::resume`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let mut server = server;
            server.task.abort();
            let _ = (&mut server.task).await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("fake API server rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("fake API server cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates or replaces `object` (its kind picks the resource), as ADDED or MODIFIED.
    pub fn apply(&self, object: Value) {
        let resource = resource_of(&object);
        let (ns, name) = names_of(&object);
        let mut store = self.store();
        store.rv += 1;
        let rv = store.rv;
        let mut object = object;
        let key = (resource, ns, name);
        let (kind, uid, created) = match store.objects.get(&key).map(|(o, _)| o) {
            Some(old) => (
                "MODIFIED",
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => (
                "ADDED",
                json!(format!("00000000-0000-4000-8000-{rv:012}")),
                json!("2026-11-22T00:00:00Z"),
            ),
        };
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = uid;
        meta["creationTimestamp"] = created;
        let item = list_item(&object);
        if store.objects.insert(key, (object.clone(), item)).is_none() {
            *store.counts.entry(resource).or_default() += 1;
        }
        store.seq += 1;
        let seq = store.seq;
        store.changes.push(Change {
            seq,
            rv,
            resource,
            kind,
            object,
        });
        drop(store);
        self.notify.send_replace(rv);
    }

    /// Deletes the object of `kind` `ns/name` (`ns` empty for Namespaces), as DELETED.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.kind() == kind)
            .unwrap_or_else(|| panic!("no resource for kind {kind}"));
        let mut store = self.store();
        let key = (resource, ns.to_owned(), name.to_owned());
        let Some((mut object, _)) = store.objects.remove(&key) else {
            panic!("fake API server: delete {kind} {ns}/{name}: no such object");
        };
        *store.counts.entry(resource).or_default() -= 1;
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.seq += 1;
        let seq = store.seq;
        store.changes.push(Change {
            seq,
            rv,
            resource,
            kind: "DELETED",
            object,
        });
        drop(store);
        self.notify.send_replace(rv);
    }

    /// Sends a BOOKMARK with the current resourceVersion on every open watch.
    pub fn bookmark(&self) {
        let mut store = self.store();
        let rv = store.rv;
        for resource in Resource::ALL {
            store.seq += 1;
            let seq = store.seq;
            store.changes.push(Change {
                seq,
                rv,
                resource,
                kind: "BOOKMARK",
                object: json!({
                    "kind": resource.kind(),
                    "apiVersion": resource.api_version(),
                    "metadata": {
                        "resourceVersion": rv.to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"}
                    }
                }),
            });
        }
        drop(store);
        self.notify.send_replace(rv);
    }

    /// Compacts the history: every resourceVersion handed out so far is now too old to
    /// watch from (410 Gone), and open watches get a 410 ERROR event.
    pub fn expire(&self) {
        let mut store = self.store();
        store.rv += 1;
        store.oldest = store.rv;
        store.changes.clear();
        let rv = store.rv;
        drop(store);
        self.notify.send_replace(rv);
    }

    /// Answers expired watches with HTTP 410 instead of an ERROR event.
    pub fn gone_as_http(&self, on: bool) {
        self.store().gone_as_http = on;
    }

    /// Ends every open watch without a word (the TCP connection closes mid-stream).
    pub fn drop_watches(&self) {
        let mut store = self.store();
        store.drops += 1;
        let rv = store.rv;
        drop(store);
        self.notify.send_replace(rv);
    }

    /// While on, list requests are held (not answered) until it is turned off.
    pub fn hold_lists(&self, on: bool) {
        self.store().hold_lists = on;
        let rv = self.store().rv;
        self.notify.send_replace(rv);
    }

    /// (lists, watches) requested so far for `resource`.
    pub fn requests(&self, resource: Resource) -> (u32, u32) {
        self.store()
            .requests
            .get(&resource)
            .copied()
            .unwrap_or_default()
    }
}

fn resource_of(object: &Value) -> Resource {
    let kind = object["kind"].as_str().unwrap_or("");
    Resource::ALL
        .into_iter()
        .find(|r| r.kind() == kind)
        .unwrap_or_else(|| panic!("fake API server: no resource for kind {kind:?}"))
}

fn names_of(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("").to_owned();
    let ns = meta["namespace"].as_str().unwrap_or("").to_owned();
    (ns, name)
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One client connection: requests in turn (keep-alive) until a watch takes it over or it ends.
async fn connection(
    mut stream: TcpStream,
    store: Arc<Mutex<Store>>,
    mut notify: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let line = head.lines().next().unwrap_or("");
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .collect();
        let Some(resource) = Resource::from_path(path).filter(|_| method == "GET") else {
            let status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":format!("the server could not find the requested resource ({method} {path})"),
                "reason":"NotFound","details":{},"code":404});
            respond(&mut stream, "404 Not Found", &status).await?;
            continue;
        };
        if params
            .get("watch")
            .is_some_and(|v| *v == "true" || *v == "1")
        {
            let from = params
                .get("resourceVersion")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            return watch_stream(&mut stream, &store, &mut notify, resource, from).await;
        }
        // A list: held while the test says so.
        loop {
            if !lock(&store).hold_lists {
                break;
            }
            if notify.changed().await.is_err() {
                return Ok(());
            }
        }
        let limit: usize = params
            .get("limit")
            .and_then(|v| v.parse().ok())
            .filter(|&l| l > 0)
            .unwrap_or(usize::MAX);
        // The continue token: how many items came before, and the key of the last one.
        let after: Option<(usize, (Resource, String, String))> = params
            .get("continue")
            .and_then(|token| token.split_once('-'))
            .and_then(|(done, key)| {
                let key = String::from_utf8(hex_decode(key)?).ok()?;
                let (ns, name) = key.split_once('/')?;
                Some((
                    done.parse().ok()?,
                    (resource, ns.to_owned(), name.to_owned()),
                ))
            });
        let body = {
            let mut st = lock(&store);
            st.requests.entry(resource).or_default().0 += 1;
            // Pages are read from the continue key on (lists of 100,000 objects come in pages).
            let first = (resource, String::new(), String::new());
            let done = after.as_ref().map_or(0, |(n, _)| *n);
            let range = match &after {
                Some((_, key)) => st
                    .objects
                    .range((Bound::Excluded(key.clone()), Bound::Unbounded)),
                None => st.objects.range(first..),
            };
            let mut items = String::new();
            let mut last = None;
            let mut count = 0;
            let mut more = false;
            for (key, (_, item)) in range.take_while(|((r, _, _), _)| *r == resource) {
                if count == limit {
                    more = true;
                    break;
                }
                if count > 0 {
                    items.push(',');
                }
                items.push_str(item);
                last = Some(key);
                count += 1;
            }
            let mut metadata = json!({"resourceVersion": st.rv.to_string()});
            if let (true, Some((_, ns, name))) = (more, last) {
                let total = st.counts.get(&resource).copied().unwrap_or(0);
                let token = format!(
                    "{}-{}",
                    done + count,
                    hex_encode(format!("{ns}/{name}").as_bytes())
                );
                metadata["continue"] = json!(token);
                metadata["remainingItemCount"] = json!(total - done - count);
            }
            format!(
                r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":[{items}]}}"#,
                resource.kind(),
                resource.api_version(),
                metadata
            )
        };
        respond_text(&mut stream, "200 OK", &body).await?;
    }
}

/// The JSON of `object` as a list item: the API server leaves apiVersion and kind out.
fn list_item(object: &Value) -> String {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    o.to_string()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() & 1 == 1 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn respond(stream: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    respond_text(stream, status, &body.to_string()).await
}

async fn respond_text(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

fn gone_status(from: u64, oldest: u64) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":format!("too old resource version: {from} ({oldest})"),
        "reason":"Expired","code":410})
}

async fn chunk(stream: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let mut data = line.to_string();
    data.push('\n');
    let framed = format!("{:x}\r\n{data}\r\n", data.len());
    stream.write_all(framed.as_bytes()).await
}

/// A watch: events after `from`, as they happen, one JSON object per chunk, until the test
/// drops it, the history is compacted past it, or the client goes away.
async fn watch_stream(
    stream: &mut TcpStream,
    store: &Mutex<Store>,
    notify: &mut watch::Receiver<u64>,
    resource: Resource,
    from: u64,
) -> std::io::Result<()> {
    let (drops, oldest, as_http) = {
        let mut st = lock(store);
        st.requests.entry(resource).or_default().1 += 1;
        (st.drops, st.oldest, st.gone_as_http)
    };
    if from < oldest && as_http {
        return respond(stream, "410 Gone", &gone_status(from, oldest)).await;
    }
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    let mut sent = from;
    // Changes after `from` first; then every change not sent yet, bookmarks included.
    let mut sent_seq = {
        let st = lock(store);
        st.changes
            .iter()
            .find(|c| c.rv > from)
            .map_or(st.seq, |c| c.seq - 1)
    };
    loop {
        notify.borrow_and_update();
        let (events, gone, dropped) = {
            let st = lock(store);
            let gone = sent < st.oldest;
            let events: Vec<Change> = st
                .changes
                .iter()
                .filter(|c| c.resource == resource && c.seq > sent_seq)
                .cloned()
                .collect();
            (events, gone.then_some(st.oldest), st.drops != drops)
        };
        if dropped {
            // No terminating chunk: the connection just ends.
            return Ok(());
        }
        if let Some(oldest) = gone {
            let event = json!({"type": "ERROR", "object": gone_status(sent, oldest)});
            chunk(stream, &event).await?;
            return stream.write_all(b"0\r\n\r\n").await;
        }
        for c in events {
            sent = sent.max(c.rv);
            sent_seq = c.seq;
            chunk(stream, &json!({"type": c.kind, "object": c.object})).await?;
        }
        if notify.changed().await.is_err() {
            return Ok(());
        }
    }
}
