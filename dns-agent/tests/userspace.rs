//! Black-box tests: the agent (userspace only) on 127.0.0.1, queried over real UDP and TCP
//! sockets, with raw queries, hickory's decoder and, when installed, `dig`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use dns_agent::app::{self, App};
use dns_agent::cli::{Config, CorefileSource, SnapshotSource};
use dns_agent::snapshot;
use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(3);
const A: u16 = 1;
const IN: u16 = 1;
const RD: u16 = 0x0100;

fn config() -> Config {
    let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
    c.metrics_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    c
}

async fn start() -> App {
    App::start(config())
        .await
        .unwrap_or_else(|e| panic!("agent start: {e}"))
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// EDNS of a query: UDP size, the OPT TTL field (ext-rcode, version, flags), options.
struct Edns {
    udp: u16,
    ttl: u32,
    options: Vec<u8>,
}

fn query(id: u16, flags: u16, name: &str, qtype: u16, edns: Option<&Edns>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    out.extend_from_slice(&wire_name(name));
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&IN.to_be_bytes());
    if let Some(e) = edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&e.udp.to_be_bytes());
        out.extend_from_slice(&e.ttl.to_be_bytes());
        out.extend_from_slice(&(e.options.len() as u16).to_be_bytes());
        out.extend_from_slice(&e.options);
    }
    out
}

async fn udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("client socket");
    sock.send_to(q, server).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    let (n, from) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .expect("recv");
    assert_eq!(from, server, "answer from the service address");
    buf.truncate(n);
    buf
}

async fn tcp_read_one(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut len))
        .await
        .expect("TCP answer in time")
        .expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.expect("message");
    buf
}

fn framed(q: &[u8]) -> Vec<u8> {
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(q);
    out
}

fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("undecodable response {bytes:02x?}: {e}"))
}

fn answers(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .map(|r| format!("{} {} {} {}", r.name(), r.ttl(), r.record_type(), r.data()))
        .collect()
}

#[tokio::test]
async fn udp_answers_follow_the_contract() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];

    // A hit, as dig sends it: mixed case, RD, OPT 1232 with DO and a COOKIE.
    let cookie = vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let edns = Edns {
        udp: 1232,
        ttl: 0x8000,
        options: cookie,
    };
    let q = query(0x4242, RD, "WEB.default.svc.cluster.local.", A, Some(&edns));
    let r = udp(server, &q).await;
    let mut want = vec![0x42, 0x42, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
    want.extend_from_slice(&q[12..q.len() - 23]);
    want.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 96, 10, 20]);
    want.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    assert_eq!(r, want, "byte-exact hit (kernel format)");

    // Headless: ready and ready-nil endpoints, deduplicated, ascending.
    let m = decode(&udp(server, &query(1, RD, "db.demo.svc.cluster.local.", A, None)).await);
    assert_eq!(
        answers(&m),
        [
            "db.demo.svc.cluster.local. 5 A 10.244.1.11",
            "db.demo.svc.cluster.local. 5 A 10.244.2.12",
            "db.demo.svc.cluster.local. 5 A 10.244.3.14"
        ]
    );
    assert!(m.extensions().is_none(), "no OPT without one in the query");

    // NODATA: AAAA of an existing name, with the SOA.
    let m = decode(
        &udp(
            server,
            &query(2, RD, "web.default.svc.cluster.local.", 28, None),
        )
        .await,
    );
    assert_eq!(
        (m.response_code(), m.answers().len(), m.name_servers().len()),
        (ResponseCode::NoError, 0, 1)
    );
    assert!(m.authoritative());

    // NXDOMAIN with the SOA, serial = load time.
    let m = decode(
        &udp(
            server,
            &query(3, RD, "nope.demo.svc.cluster.local.", A, None),
        )
        .await,
    );
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    let soa = m.name_servers()[0]
        .data()
        .as_soa()
        .expect("SOA in authority");
    assert_eq!(soa.serial(), agent.records().load().serial);
    assert_eq!(soa.mname().to_string(), "ns.dns.cluster.local.");

    // REFUSED outside the zone, without AA.
    let m = decode(&udp(server, &query(4, RD, "example.com.", A, None)).await);
    assert_eq!(m.response_code(), ResponseCode::Refused);
    assert!(!m.authoritative());

    // BADVERS for EDNS version 1: RCODE 16 split between header and OPT.
    let edns = Edns {
        udp: 4096,
        ttl: 0x0001_0000,
        options: vec![],
    };
    let r = udp(
        server,
        &query(5, RD, "web.default.svc.cluster.local.", A, Some(&edns)),
    )
    .await;
    assert_eq!(r[3] & 0x0f, 0, "low RCODE bits");
    assert_eq!(
        &r[r.len() - 11..],
        &[0, 0, 41, 0x10, 0x00, 1, 0, 0, 0, 0, 0]
    );

    // The userspace counters saw every response.
    let metrics = agent.metrics();
    assert_eq!(metrics.responses("NOERROR"), 3);
    assert_eq!(metrics.responses("NXDOMAIN"), 1);
    assert_eq!(metrics.responses("REFUSED"), 1);
    assert_eq!(metrics.responses("BADVERS"), 1);
    agent.stop().await;
}

#[tokio::test]
async fn truncation_over_udp_then_tcp() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];
    let q = query(7, RD, "fanout.demo.svc.cluster.local.", A, None);
    let r = udp(server, &q).await;
    let m = decode(&r);
    assert!(m.truncated(), "40 addresses do not fit 512 bytes");
    assert_eq!((m.queries().len(), m.answers().len()), (1, 0));

    let mut stream = TcpStream::connect(server).await.expect("TCP connect");
    stream.write_all(&framed(&q)).await.expect("write");
    let m = decode(&tcp_read_one(&mut stream).await);
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 40);
    agent.stop().await;
}

#[tokio::test]
async fn tcp_pipelined_queries_are_answered_in_order() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];
    let names = [
        "web.default.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "api.demo.svc.cluster.local.",
    ];
    let mut burst = Vec::new();
    for (i, name) in names.iter().enumerate() {
        burst.extend_from_slice(&framed(&query(100 + i as u16, RD, name, A, None)));
    }
    let mut stream = TcpStream::connect(server).await.expect("TCP connect");
    // All three in one write, the last split across two writes.
    let split = burst.len() - 5;
    stream.write_all(&burst[..split]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(&burst[split..]).await.expect("write");
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = decode(&tcp_read_one(&mut stream).await);
        got.push((m.id(), m.response_code(), m.answers().len()));
    }
    assert_eq!(
        got,
        [
            (100, ResponseCode::NoError, 1),
            (101, ResponseCode::NXDomain, 0),
            (102, ResponseCode::NoError, 1)
        ]
    );
    agent.stop().await;
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let mut c = config();
    c.tcp_idle_timeout = Duration::from_millis(200);
    let agent = App::start(c).await.expect("start");
    let mut stream = TcpStream::connect(agent.dns_addrs()[0])
        .await
        .expect("TCP connect");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closes an idle connection");
    agent.stop().await;
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("metrics connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out))
        .await
        .expect("HTTP answer in time")
        .expect("read");
    out
}

#[tokio::test]
async fn metrics_endpoint() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];
    udp(
        server,
        &query(1, 0, "web.default.svc.cluster.local.", A, None),
    )
    .await;
    udp(server, &query(2, 0, "x.svc.cluster.local.", A, None)).await;
    let addr = agent.metrics_addr().expect("metrics on");
    let page = http_get(addr, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    for line in [
        "dns_agent_userspace_responses_total{rcode=\"NOERROR\"} 1",
        "dns_agent_userspace_responses_total{rcode=\"NXDOMAIN\"} 1",
        // Service names, endpoint names and ns.dns.cluster.local. of the sample.
        "dns_agent_records{type=\"A\"} 52",
        "dns_agent_kernel_responses_total 0",
        "dns_agent_kernel_passed_total{reason=\"miss\"} 0",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in\n{page}"
        );
    }
    let page = http_get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 404 Not Found\r\n"), "{page}");
    agent.stop().await;
}

#[tokio::test]
async fn records_can_be_replaced_at_run_time() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];
    let before = agent.records().load().serial;
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 10.96.99.1\n";
    let cluster = snapshot::parse("update", yaml).expect("parse").cluster;
    assert!(agent.update(&cluster).expect("update"), "content changed");
    assert!(
        !agent.update(&cluster).expect("update"),
        "same content again"
    );
    let m = decode(
        &udp(
            server,
            &query(1, 0, "web.default.svc.cluster.local.", A, None),
        )
        .await,
    );
    assert_eq!(
        answers(&m),
        ["web.default.svc.cluster.local. 5 A 10.96.99.1"]
    );
    let m = decode(&udp(server, &query(2, 0, "db.demo.svc.cluster.local.", A, None)).await);
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert!(agent.records().load().serial > before);
    agent.stop().await;
}

#[tokio::test]
async fn run_stops_on_shutdown_and_releases_the_port() {
    let mut c = config();
    // Learn a free port first, then run on it.
    let probe = App::start(c.clone()).await.expect("start");
    let port = probe.dns_addrs()[0].port();
    probe.stop().await;
    c.dns_port = port;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app::run(c.clone(), async move {
        let _ = rx.await;
    }));
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut answered = false;
    for _ in 0..50 {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("socket");
        sock.send_to(
            &query(1, 0, "web.default.svc.cluster.local.", A, None),
            server,
        )
        .await
        .expect("send");
        let mut buf = [0u8; 512];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "the agent answers while running");
    tx.send(()).expect("signal shutdown");
    tokio::time::timeout(TIMEOUT, running)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("clean exit");
    let again = App::start(c).await.expect("the port is free again");
    again.stop().await;
}

#[tokio::test]
async fn bad_snapshot_fails_to_start_with_one_line() {
    let mut c = config();
    c.snapshot = SnapshotSource::Text {
        origin: "bad.yaml".into(),
        yaml: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  clusterIP: 10.96.0.256\n".into(),
    };
    let err = App::start(c).await.err().expect("must fail").to_string();
    assert_eq!(
        err,
        "bad.yaml: document 1 (Service demo/web): spec.clusterIP \"10.96.0.256\" is not an IP address, \"None\" or empty"
    );
}

/// `dig` output sections for one query, or `None` (with a note) when dig is not installed.
fn dig(server: SocketAddr, args: &[&str]) -> String {
    let port = server.port().to_string();
    let at = format!("@{}", server.ip());
    let mut cmd = Command::new("dig");
    cmd.args([
        at.as_str(),
        "-p",
        port.as_str(),
        "+time=2",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
        "+authority",
    ]);
    cmd.args(args);
    // dig is installed by `cargo xtask setup`; a missing dig is a failure, not a skip.
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run dig (run `cargo xtask setup`): {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dig_sees_the_same_answers() {
    let agent = start().await;
    let server = agent.dns_addrs()[0];
    let checks: &[(&[&str], &[&str])] = &[
        (
            &["web.default.svc.cluster.local", "A"],
            &[
                "status: NOERROR",
                "flags: qr aa rd;",
                "web.default.svc.cluster.local. 5 IN A 10.96.10.20",
            ],
        ),
        (
            &["+tcp", "db.demo.svc.cluster.local", "A"],
            &[
                "status: NOERROR",
                "db.demo.svc.cluster.local. 5 IN A 10.244.3.14",
            ],
        ),
        (
            &["nope.demo.svc.cluster.local", "A"],
            &[
                "status: NXDOMAIN",
                "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local.",
            ],
        ),
        (&["example.org", "A"], &["status: REFUSED"]),
        (
            &[
                "+edns=1",
                "+noednsnegotiation",
                "web.default.svc.cluster.local",
                "A",
            ],
            &["status: BADVERS"],
        ),
        (
            &["+noedns", "+ignore", "fanout.demo.svc.cluster.local", "A"],
            &["flags: qr aa tc rd;", "ANSWER: 0"],
        ),
        (&["fanout.demo.svc.cluster.local", "A"], &["ANSWER: 40"]),
    ];
    for (args, wants) in checks {
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            move || dig(server, &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("dig task");
        for want in *wants {
            assert!(
                squash(&out).contains(&squash(want)),
                "dig {args:?}: missing {want:?} in\n{out}"
            );
        }
    }
    agent.stop().await;
}

/// Collapses runs of blanks and tabs, as dig aligns columns with either.
fn squash(s: &str) -> String {
    s.split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn every_service_address_answers_on_one_port() {
    let mut c = config();
    c.service_ips = vec![
        Ipv4Addr::new(127, 0, 0, 1).into(),
        Ipv4Addr::new(127, 0, 0, 53).into(),
    ];
    let agent = App::start(c).await.expect("start");
    let addrs = agent.dns_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(
        addrs[0].port(),
        addrs[1].port(),
        "one port for every address"
    );
    for server in addrs {
        let q = query(9, 0, "kubernetes.default.svc.cluster.local.", A, None);
        let m = decode(&udp(server, &q).await);
        assert_eq!(
            answers(&m),
            ["kubernetes.default.svc.cluster.local. 5 A 10.96.0.1"]
        );
        let mut stream = TcpStream::connect(server).await.expect("TCP connect");
        stream.write_all(&framed(&q)).await.expect("write");
        assert_eq!(
            answers(&decode(&tcp_read_one(&mut stream).await)),
            answers(&m)
        );
    }
    agent.stop().await;
}

/// The options of a Corefile's `kubernetes` block shape what is served: here `namespaces`
/// and `ttl`, and a name outside the block's zone is REFUSED (no server block for it).
#[tokio::test]
async fn corefile_kubernetes_options_shape_the_answers() {
    let mut c = config();
    c.corefile = CorefileSource::Text {
        origin: "test Corefile".to_owned(),
        text:
            "cluster.local {\n    kubernetes {\n        namespaces demo\n        ttl 17\n    }\n}\n"
                .to_owned(),
    };
    let app = App::start(c).await.expect("start");
    let server = app.dns_addrs()[0];
    let m = decode(
        &udp(
            server,
            &query(1, RD, "api.demo.svc.cluster.local.", A, None),
        )
        .await,
    );
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(
        answers(&m),
        ["api.demo.svc.cluster.local. 17 A 10.96.20.30"]
    );
    let m = decode(
        &udp(
            server,
            &query(2, RD, "web.default.svc.cluster.local.", A, None),
        )
        .await,
    );
    assert_eq!(
        m.response_code(),
        ResponseCode::NXDomain,
        "default is not exposed"
    );
    let m = decode(&udp(server, &query(3, RD, "www.example.org.", A, None)).await);
    assert_eq!(m.response_code(), ResponseCode::Refused);
    app.stop().await;

    // A broken block stops the start with its place.
    let mut c = config();
    c.corefile = CorefileSource::Text {
        origin: "test Corefile".to_owned(),
        text: "cluster.local {\n    kubernetes {\n        pods sometimes\n    }\n}\n".to_owned(),
    };
    let err = App::start(c).await.err().expect("refused").to_string();
    assert_eq!(
        err,
        "test Corefile:3:14: kubernetes: pods mode \"sometimes\" is unknown: give insecure, verified or disabled"
    );
}
