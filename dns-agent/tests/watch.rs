//! The watch path: the agent (userspace only, 127.0.0.1) against an in-test API server over HTTP.

mod apiserver;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use apiserver::{FakeApi, Resource};
use dns_agent::app::App;
use dns_agent::cli::{
    AttachModeArg, Config, KernelConfig, KernelProgramArg, SnapshotSource,
    DEFAULT_KERNEL_MAP_ENTRIES,
};
use dns_agent::k8s::ApiSource;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long any change may take to be answered.
const DEADLINE: Duration = Duration::from_secs(15);

// ---- log capture: warnings must name the object ----

struct Capture;

fn captured() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("dns_agent") {
            let line = format!("{} {}", record.level(), record.args());
            eprintln!("{line}");
            captured()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    static CAPTURE: Capture = Capture;
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn logged(needle: &str) -> bool {
    captured()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|l| l.contains(needle))
}

// ---- objects as the API serves them ----

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}})
}

fn endpoint_slice(ns: &str, name: &str, svc: Option<&str>, addrs: &[&str]) -> Value {
    let mut labels =
        json!({"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    if let Some(svc) = svc {
        labels["kubernetes.io/service-name"] = json!(svc);
    }
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

/// A fake API server holding `default` with `web` (10.96.0.20) and the headless `db` with
/// two ready endpoints.
async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    api.apply(namespace("default"));
    api.apply(service("default", "web", "10.96.0.20"));
    api.apply(service("default", "db", "None"));
    api.apply(endpoint_slice(
        "default",
        "db-abcde",
        Some("db"),
        &["10.1.0.5", "10.1.0.6"],
    ));
    api
}

async fn agent(api: &FakeApi) -> App {
    init_log();
    let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
    c.metrics_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    c.api = Some(ApiSource {
        kubeconfig: None,
        apiserver: Some(api.url()),
        ..Default::default()
    });
    App::start(c)
        .await
        .unwrap_or_else(|e| panic!("agent start: {e}"))
}

// ---- DNS and HTTP clients ----

/// (RCODE, sorted A addresses) for `name` A over UDP.
async fn resolve(app: &App, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let mut msg = Message::new();
    msg.set_id(0x5151)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let qname = Name::from_ascii(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    msg.add_query(Query::query(qname, RecordType::A));
    let bytes = msg.to_vec().expect("query encodes");
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("client socket");
    let server = app.dns_addrs()[0];
    for _ in 0..3 {
        sock.send_to(&bytes, server).await.expect("send");
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        {
            let resp = Message::from_vec(&buf[..n]).expect("response decodes");
            let mut addrs: Vec<Ipv4Addr> = resp
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            addrs.sort();
            return (resp.response_code(), addrs);
        }
    }
    panic!("no answer for {name} from {server}");
}

fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = list
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
    v.sort();
    v
}

/// Polls until `name` answers `want` (NOERROR with these addresses, or NXDOMAIN when empty).
async fn until_answers(app: &App, name: &str, want: &[&str]) {
    let want_rcode = if want.is_empty() {
        ResponseCode::NXDomain
    } else {
        ResponseCode::NoError
    };
    let want = ips(want);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = resolve(app, name).await;
        if got == (want_rcode, want.clone()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: still {got:?} after {DEADLINE:?}, want {want_rcode:?} {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status code of `GET path` on the metrics listener.
async fn http_status(app: &App, path: &str) -> u16 {
    let addr = app.metrics_addr().expect("metrics listener");
    let mut s = TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .expect("response in time")
        .expect("response");
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"))
}

async fn until_ready(app: &App) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while http_status(app, "/ready").await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready still not 200 after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WEB: &str = "web.default.svc.cluster.local.";
const DB: &str = "db.default.svc.cluster.local.";

// ---- the tests ----

#[tokio::test]
async fn initial_list_then_added_modified_deleted_objects_are_answered() {
    let api = cluster().await;
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_answers(&app, DB, &["10.1.0.5", "10.1.0.6"]).await;
    until_ready(&app).await;

    api.apply(namespace("shop"));
    api.apply(service("shop", "cart", "10.96.1.1"));
    until_answers(&app, "cart.shop.svc.cluster.local.", &["10.96.1.1"]).await;

    api.apply(service("default", "web", "10.96.0.21"));
    until_answers(&app, WEB, &["10.96.0.21"]).await;

    api.apply(endpoint_slice(
        "default",
        "db-fghij",
        Some("db"),
        &["10.1.0.7"],
    ));
    until_answers(&app, DB, &["10.1.0.5", "10.1.0.6", "10.1.0.7"]).await;
    api.apply(endpoint_slice(
        "default",
        "db-abcde",
        Some("db"),
        &["10.1.0.6"],
    ));
    until_answers(&app, DB, &["10.1.0.6", "10.1.0.7"]).await;

    // Bookmarks move the watch along without a re-list.
    api.bookmark();
    api.delete("Service", "shop", "cart");
    until_answers(&app, "cart.shop.svc.cluster.local.", &[]).await;
    api.delete("EndpointSlice", "default", "db-fghij");
    until_answers(&app, DB, &["10.1.0.6"]).await;
    for r in [
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Namespaces,
    ] {
        assert_eq!(
            api.requests(r).0,
            1,
            "{r:?}: listed once, then only watched"
        );
    }
    assert_eq!(
        api.requests(Resource::Pods),
        (0, 0),
        "no pod mode: pods not watched"
    );
    app.stop().await;
}

#[tokio::test]
async fn not_ready_and_servfail_until_the_first_list_completes() {
    let api = cluster().await;
    let app = agent(&api).await;
    assert_eq!(http_status(&app, "/ready").await, 503, "nothing listed yet");
    let (rcode, _) = resolve(&app, WEB).await;
    assert_eq!(
        rcode,
        ResponseCode::ServFail,
        "an unknown name before the first list is SERVFAIL, not NXDOMAIN"
    );
    assert_eq!(
        http_status(&app, "/ready").await,
        503,
        "still nothing listed"
    );
    api.hold_lists(false);
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_ready(&app).await;
    until_answers(&app, "nope.default.svc.cluster.local.", &[]).await;
    app.stop().await;
}

/// While the API server is away, a Service is deleted, one added, and the history compacted:
/// the watch cannot resume (410 Gone) and the agent lists again.
async fn relist_after_gone(as_http: bool) {
    let mut api = cluster().await;
    api.gone_as_http(as_http);
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_ready(&app).await;
    api.stop().await;
    api.delete("Service", "default", "web");
    api.apply(service("default", "api", "10.96.0.30"));
    api.expire();
    api.resume().await;
    until_answers(&app, "api.default.svc.cluster.local.", &["10.96.0.30"]).await;
    until_answers(&app, WEB, &[]).await;
    until_answers(&app, DB, &["10.1.0.5", "10.1.0.6"]).await;
    assert!(
        api.requests(Resource::Services).0 >= 2,
        "Services listed again after 410 Gone: {:?}",
        api.requests(Resource::Services)
    );
    // And watched again from the new list.
    api.apply(service("default", "web", "10.96.0.40"));
    until_answers(&app, WEB, &["10.96.0.40"]).await;
    app.stop().await;
}

#[tokio::test]
async fn gone_event_relists() {
    relist_after_gone(false).await;
}

#[tokio::test]
async fn gone_http_status_relists() {
    relist_after_gone(true).await;
}

#[tokio::test]
async fn open_watch_expired_relists() {
    let api = cluster().await;
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    api.expire();
    api.apply(service("default", "web", "10.96.0.50"));
    until_answers(&app, WEB, &["10.96.0.50"]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while api.requests(Resource::Services).0 < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-list after 410"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn dropped_watches_reconnect_without_relisting() {
    let api = cluster().await;
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_ready(&app).await;
    let watches = api.requests(Resource::Services).1;
    for round in 0..3u8 {
        api.drop_watches();
        let ip = format!("10.96.2.{}", round + 1);
        api.apply(service("default", "web", &ip));
        until_answers(&app, WEB, &[ip.as_str()]).await;
    }
    assert!(
        api.requests(Resource::Services).1 > watches,
        "the Service watch was opened again"
    );
    assert_eq!(
        api.requests(Resource::Services).0,
        1,
        "resumed from the last resourceVersion, no re-list"
    );
    assert_eq!(http_status(&app, "/ready").await, 200, "still ready");
    app.stop().await;
}

#[tokio::test]
async fn api_server_away_last_state_served_then_changes_applied() {
    let mut api = cluster().await;
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_ready(&app).await;
    api.stop().await;
    api.apply(service("default", "web", "10.96.0.60"));
    api.delete("EndpointSlice", "default", "db-abcde");
    // Several backoff rounds fail meanwhile; the last state is still answered.
    for _ in 0..10 {
        assert_eq!(
            resolve(&app, WEB).await,
            (ResponseCode::NoError, ips(&["10.96.0.20"]))
        );
        assert_eq!(
            resolve(&app, DB).await,
            (ResponseCode::NoError, ips(&["10.1.0.5", "10.1.0.6"]))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http_status(&app, "/ready").await,
        200,
        "served state stays ready"
    );
    api.resume().await;
    until_answers(&app, WEB, &["10.96.0.60"]).await;
    until_answers(&app, DB, &[]).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_objects_are_skipped_with_a_warning_naming_them() {
    let api = cluster().await;
    api.apply(service("bad", "broken", "10.96.0.300"));
    api.apply(endpoint_slice("default", "orphan-xyz", None, &["10.1.0.9"]));
    let app = agent(&api).await;
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    until_answers(&app, DB, &["10.1.0.5", "10.1.0.6"]).await;
    until_ready(&app).await;
    until_answers(&app, "broken.bad.svc.cluster.local.", &[]).await;
    assert!(
        logged("Service bad/broken: spec.clusterIP \"10.96.0.300\" is not an IP address"),
        "warning names the Service"
    );
    assert!(
        logged("EndpointSlice default/orphan-xyz: no kubernetes.io/service-name label"),
        "warning names the EndpointSlice"
    );
    // A good object turning bad while watched: skipped, the rest stays.
    api.apply(service("default", "web", "10.96.0.999"));
    api.apply(service("default", "later", "10.96.0.70"));
    until_answers(&app, "later.default.svc.cluster.local.", &["10.96.0.70"]).await;
    until_answers(&app, WEB, &[]).await;
    until_answers(&app, DB, &["10.1.0.5", "10.1.0.6"]).await;
    assert!(logged(
        "Service default/web: spec.clusterIP \"10.96.0.999\""
    ));
    // Fixed again: served again.
    api.apply(service("default", "web", "10.96.0.71"));
    until_answers(&app, WEB, &["10.96.0.71"]).await;
    app.stop().await;
}

#[tokio::test]
async fn a_snapshot_is_ready_at_once_and_reloads_while_the_api_cannot() {
    init_log();
    let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
    c.metrics_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let app = App::start(c).await.expect("agent starts");
    assert_eq!(http_status(&app, "/ready").await, 200);
    assert_eq!(
        app.reload().ok(),
        Some(false),
        "snapshot reloads, unchanged"
    );
    app.stop().await;

    let api = cluster().await;
    let app = agent(&api).await;
    let err = app
        .reload()
        .expect_err("nothing to reload from the API server");
    assert_eq!(
        err.to_string(),
        "the records come from the API server: there is no snapshot to reload"
    );
    app.stop().await;
}

#[tokio::test]
async fn large_lists_come_in_pages() {
    let api = FakeApi::start().await;
    api.apply(namespace("default"));
    for i in 0..1200u32 {
        api.apply(service(
            "default",
            &format!("svc-{i}"),
            &format!("10.96.{}.{}", i / 250, i % 250 + 1),
        ));
    }
    let app = agent(&api).await;
    until_ready(&app).await;
    until_answers(&app, "svc-0.default.svc.cluster.local.", &["10.96.0.1"]).await;
    until_answers(
        &app,
        "svc-1199.default.svc.cluster.local.",
        &["10.96.4.200"],
    )
    .await;
    let served = app
        .records()
        .load()
        .a_map()
        .keys()
        .filter(|n| n.ends_with(".default.svc.cluster.local."))
        .count();
    assert_eq!(served, 1200, "every page's Services served");
    assert_eq!(
        api.requests(Resource::Services).0,
        3,
        "1200 Services in pages of 500"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_kubeconfig_names_the_api_server() {
    let api = cluster().await;
    let dir = std::env::temp_dir().join(format!("dns-agent-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: agent\n  user:\n    token: not-checked\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: agent\n\
             current-context: test\n",
            api.url()
        ),
    )
    .expect("kubeconfig written");
    init_log();
    let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
    c.api = Some(ApiSource {
        kubeconfig: Some(path.clone()),
        apiserver: None,
        ..Default::default()
    });
    let app = App::start(c.clone()).await.expect("agent starts");
    until_answers(&app, WEB, &["10.96.0.20"]).await;
    app.stop().await;

    c.api = Some(ApiSource {
        kubeconfig: Some(dir.join("missing")),
        apiserver: None,
        ..Default::default()
    });
    let err = App::start(c)
        .await
        .err()
        .expect("a missing kubeconfig fails the start")
        .to_string();
    let want = format!("--kubeconfig {}: ", dir.join("missing").display());
    assert!(err.starts_with(&want), "got {err:?}, want {want:?}...");
    assert!(!err.contains('\n'), "one line: {err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The watchers alone, with the pods switch on: Pods are listed and watched too, and the
/// cluster is complete only once they are.
#[tokio::test]
async fn pods_are_watched_when_a_pod_mode_needs_them() {
    use dns_agent::k8s::{self, Sink, WatchConfig};
    use std::sync::Arc;

    init_log();
    let api = cluster().await;
    api.apply(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}}));
    let client = k8s::client(&ApiSource {
        kubeconfig: None,
        apiserver: Some(api.url()),
        ..Default::default()
    })
    .await
    .expect("client");
    let seen: Arc<Mutex<Vec<(usize, usize, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink = {
        let seen = Arc::clone(&seen);
        Arc::new(
            move |c: &dns_agent::cluster::Cluster, _changes, synced: bool| {
                seen.lock().unwrap_or_else(PoisonError::into_inner).push((
                    c.services.len(),
                    c.pods.len(),
                    synced,
                ));
            },
        )
    };
    let task = k8s::spawn(client, &WatchConfig { pods: true }, sink);
    let last = || {
        *seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .unwrap_or(&(0, 0, false))
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while last() != (2, 1, true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}, want 2 Services, 1 Pod, synced; requests {:?}",
            last(),
            Resource::ALL.map(|r| api.requests(r))
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(|&(_, pods, synced)| !synced || pods == 1),
        "never complete without the Pods"
    );
    api.delete("Pod", "default", "web-1");
    while last() != (2, 0, true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Pod deletion not seen: {:?}",
            last()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(api.requests(Resource::Pods).1 >= 1, "Pods watched");
    task.abort();
}

// ---- the kernel path follows the API ----

/// `dns_agent_kernel_responses_total` from the metrics listener.
async fn kernel_responses(app: &App) -> u64 {
    let addr = app.metrics_addr().expect("metrics listener");
    let mut s = TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .expect("response in time")
        .expect("response");
    out.lines()
        .find_map(|l| l.strip_prefix("dns_agent_kernel_responses_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dns_agent_kernel_responses_total in {out}"))
}

/// Asks `name` once and tells whether the kernel program answered it (its counter moved).
async fn answered_by_kernel(app: &App, name: &str) -> ((ResponseCode, Vec<Ipv4Addr>), bool) {
    let before = kernel_responses(app).await;
    let got = resolve(app, name).await;
    (got, kernel_responses(app).await > before)
}

/// Needs root: the kernel program is attached (TC) to `lo` of a private network namespace,
/// as `cargo xtask bench --watch` does, and every change made in the API must reach its map.
#[test]
fn kernel_maps_follow_added_modified_deleted_objects() {
    // A private network namespace for this thread and the runtime's threads it starts.
    // SAFETY: unshare affects only the calling thread; no runtime exists yet.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "unshare(CLONE_NEWNET) needs root: {}",
        std::io::Error::last_os_error()
    );
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link set lo up");
    assert!(up.success());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let api = cluster().await;
        init_log();
        let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
        c.metrics_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        c.api = Some(ApiSource {
            kubeconfig: None,
            apiserver: Some(api.url()),
            ..Default::default()
        });
        c.kernel = Some(KernelConfig {
            interfaces: vec!["lo".into()],
            mode: AttachModeArg::Tc,
            program: KernelProgramArg::Answer,
            map_entries: DEFAULT_KERNEL_MAP_ENTRIES,
        });
        let app = App::start(c)
            .await
            .unwrap_or_else(|e| panic!("agent start: {e}"));
        until_ready(&app).await;
        until_answers(&app, WEB, &["10.96.0.20"]).await;
        let (got, kernel) = answered_by_kernel(&app, WEB).await;
        assert_eq!(got, (ResponseCode::NoError, ips(&["10.96.0.20"])));
        assert!(kernel, "{WEB} answered by the kernel after the list");

        // Added, then modified: the kernel answers the new state.
        api.apply(service("default", "api", "10.96.0.30"));
        let api_name = "api.default.svc.cluster.local.";
        until_answers(&app, api_name, &["10.96.0.30"]).await;
        assert_eq!(
            answered_by_kernel(&app, api_name).await,
            ((ResponseCode::NoError, ips(&["10.96.0.30"])), true)
        );
        api.apply(service("default", "api", "10.96.0.31"));
        until_answers(&app, api_name, &["10.96.0.31"]).await;
        assert_eq!(
            answered_by_kernel(&app, api_name).await,
            ((ResponseCode::NoError, ips(&["10.96.0.31"])), true)
        );

        // A headless service's endpoints and endpoint names follow its slice.
        api.apply(endpoint_slice(
            "default",
            "db-abcde",
            Some("db"),
            &["10.1.0.6", "10.1.0.7"],
        ));
        until_answers(&app, DB, &["10.1.0.6", "10.1.0.7"]).await;
        assert_eq!(
            answered_by_kernel(&app, DB).await,
            (
                (ResponseCode::NoError, ips(&["10.1.0.6", "10.1.0.7"])),
                true
            )
        );
        let gone = "10-1-0-5.db.default.svc.cluster.local.";
        until_answers(&app, gone, &[]).await;
        assert!(
            !answered_by_kernel(&app, gone).await.1,
            "{gone} left the map"
        );
        let new = "10-1-0-7.db.default.svc.cluster.local.";
        assert_eq!(
            answered_by_kernel(&app, new).await,
            ((ResponseCode::NoError, ips(&["10.1.0.7"])), true)
        );

        // Deleted: out of the address map and out of the zone's tree, so NXDOMAIN from the
        // kernel (issue 5) as from userspace.
        api.delete("Service", "default", "api");
        until_answers(&app, api_name, &[]).await;
        assert_eq!(
            answered_by_kernel(&app, api_name).await,
            ((ResponseCode::NXDomain, ips(&[])), true),
            "{api_name}: NXDOMAIN from the kernel once deleted"
        );
        app.stop().await;
    });
}
