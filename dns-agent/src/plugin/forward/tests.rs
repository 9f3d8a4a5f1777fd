use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::setup::{parse, parse_duration, Config, Policy};
use super::*;
use crate::corefile;
use crate::metrics::Metrics;
use crate::plugin::{Ctx, Next, Plugin, PluginError};
use crate::server::answer::{Edns, Request, Transport};

fn directive(text: &str) -> corefile::Directive {
    let cf = corefile::parse("Corefile", text).expect("test Corefile parses");
    cf.blocks[0].directives[0].clone()
}

fn config_in(text: &str, dir: &Path) -> Result<Config, String> {
    parse(&directive(text), dir).map_err(|e| e.to_string())
}

fn config(text: &str) -> Result<Config, String> {
    config_in(text, Path::new("/nonexistent"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "dns-agent-forward-{tag}-{}-{}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn defaults() {
    let cfg = config(".:53 {\n  forward . 10.0.0.1\n}").unwrap();
    assert_eq!(cfg.from, ".");
    assert_eq!(cfg.upstreams, vec![addr("10.0.0.1:53")]);
    assert!(cfg.except.is_empty());
    assert!(!cfg.force_tcp && !cfg.prefer_udp);
    assert_eq!(cfg.expire, Duration::from_secs(10));
    assert_eq!(cfg.max_fails, 2);
    assert_eq!(cfg.health_check, Duration::from_millis(500));
    assert!(cfg.health_rec);
    assert_eq!(cfg.health_domain, ".");
    assert_eq!(cfg.policy, Policy::Random);
    assert_eq!(cfg.max_concurrent, None);
}

#[test]
fn every_option() {
    let cfg = config(
        ".:53 {
  forward Example.ORG 10.0.0.1 10.0.0.2:5353 dns://10.0.0.3 dns://10.0.0.4:54 [::1]:55 ::2 {
    except a.example.org B.example.org
    force_tcp
    prefer_udp
    expire 1m30s
    max_fails 5
    health_check 250ms no_rec domain Health.Example.
    policy round_robin
    max_concurrent 1000
  }
}",
    )
    .unwrap();
    assert_eq!(cfg.from, "example.org.");
    assert_eq!(
        cfg.upstreams,
        vec![
            addr("10.0.0.1:53"),
            addr("10.0.0.2:5353"),
            addr("10.0.0.3:53"),
            addr("10.0.0.4:54"),
            addr("[::1]:55"),
            addr("[::2]:53"),
        ]
    );
    assert_eq!(cfg.except, vec!["a.example.org.", "b.example.org."]);
    assert!(cfg.force_tcp && cfg.prefer_udp);
    assert_eq!(cfg.expire, Duration::from_secs(90));
    assert_eq!(cfg.max_fails, 5);
    assert_eq!(cfg.health_check, Duration::from_millis(250));
    assert!(!cfg.health_rec);
    assert_eq!(cfg.health_domain, "health.example.");
    assert_eq!(cfg.policy, Policy::RoundRobin);
    assert_eq!(cfg.max_concurrent, Some(1000));

    for (p, want) in [
        ("random", Policy::Random),
        ("sequential", Policy::Sequential),
    ] {
        let cfg = config(&format!(
            ".:53 {{\n forward . 1.1.1.1 {{\n policy {p}\n }}\n}}"
        ))
        .unwrap();
        assert_eq!(cfg.policy, want);
    }
    let cfg =
        config(".:53 {\n forward . 1.1.1.1 {\n max_concurrent 0\n max_fails 0\n }\n}").unwrap();
    assert_eq!(cfg.max_concurrent, None);
    assert_eq!(cfg.max_fails, 0);
}

#[test]
fn resolv_conf_relative_to_the_corefile() {
    let dir = TempDir::new("resolv");
    std::fs::write(
        dir.0.join("resolv.conf"),
        "# comment\nsearch svc.cluster.local\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions ndots:5\nnameserver fe80::1%eth0\n",
    )
    .unwrap();
    let cfg = config_in(".:53 {\n forward . resolv.conf 192.0.2.9\n}", &dir.0).unwrap();
    assert_eq!(
        cfg.upstreams,
        vec![
            addr("192.0.2.1:53"),
            addr("[2001:db8::1]:53"),
            addr("192.0.2.9:53")
        ]
    );
    std::fs::write(dir.0.join("empty.conf"), "search x\n").unwrap();
    let e = config_in(".:53 {\n forward . empty.conf\n}", &dir.0).unwrap_err();
    assert!(
        e.starts_with("Corefile:2:12: forward: upstream \"empty.conf\": no usable nameserver line"),
        "{e}"
    );
}

#[test]
fn at_most_15_upstreams() {
    let ups: Vec<String> = (1..=15).map(|i| format!("10.0.0.{i}")).collect();
    let ok = format!(".:53 {{\n forward . {}\n}}", ups.join(" "));
    assert_eq!(config(&ok).unwrap().upstreams.len(), 15);
    let bad = format!(".:53 {{\n forward . {} 10.0.0.16\n}}", ups.join(" "));
    let e = config(&bad).unwrap_err();
    let col = 12 + ups.iter().map(|u| u.len() + 1).sum::<usize>();
    assert_eq!(
        e,
        format!("Corefile:2:{col}: forward: too many upstreams: at most 15")
    );
}

#[test]
fn errors_name_the_option_at_its_position() {
    let cases: &[(&str, &str)] = &[
        ("forward", "Corefile:2:2: forward: missing FROM and TO"),
        ("forward .", "Corefile:2:2: forward: missing TO"),
        ("forward a/b 1.1.1.1", "Corefile:2:10: forward: FROM \"a/b\": expected a domain name"),
        ("forward . tls://1.1.1.1", "Corefile:2:12: forward: upstream \"tls://1.1.1.1\": tls:// is not supported"),
        ("forward . dns://example.com", "Corefile:2:12: forward: upstream \"dns://example.com\": expected dns://IP"),
        ("forward . 1.1.1.1:0", "Corefile:2:12: forward: upstream \"1.1.1.1:0\": port 0"),
        ("forward . nofile.conf", "Corefile:2:12: forward: upstream \"nofile.conf\": not an IP address, IP:port or readable resolv.conf file"),
        ("forward . 1.1.1.1 {\n except\n }", "Corefile:3:2: forward: except: expected at least one domain name"),
        ("forward . 1.1.1.1 {\n except a..b\n }", "Corefile:3:9: forward: except \"a..b\": expected a domain name"),
        ("forward . 1.1.1.1 {\n force_tcp yes\n }", "Corefile:3:12: forward: force_tcp: expected no arguments"),
        ("forward . 1.1.1.1 {\n prefer_udp yes\n }", "Corefile:3:13: forward: prefer_udp: expected no arguments"),
        ("forward . 1.1.1.1 {\n expire\n }", "Corefile:3:2: forward: expire: expected one DURATION"),
        ("forward . 1.1.1.1 {\n expire 10\n }", "Corefile:3:9: forward: expire \"10\": expected a duration such as 500ms, 10s or 1m"),
        ("forward . 1.1.1.1 {\n expire 10s 20s\n }", "Corefile:3:13: forward: expire: expected one DURATION"),
        ("forward . 1.1.1.1 {\n max_fails -1\n }", "Corefile:3:12: forward: max_fails \"-1\": expected an integer"),
        ("forward . 1.1.1.1 {\n health_check\n }", "Corefile:3:2: forward: health_check: expected DURATION [no_rec] [domain FQDN]"),
        ("forward . 1.1.1.1 {\n health_check 1x\n }", "Corefile:3:15: forward: health_check \"1x\": expected a duration"),
        ("forward . 1.1.1.1 {\n health_check 1s rec\n }", "Corefile:3:18: forward: health_check: unknown argument \"rec\""),
        ("forward . 1.1.1.1 {\n health_check 1s domain\n }", "Corefile:3:18: forward: health_check: domain: expected an FQDN"),
        ("forward . 1.1.1.1 {\n health_check 1s domain a..b\n }", "Corefile:3:25: forward: health_check domain \"a..b\": expected a domain name"),
        ("forward . 1.1.1.1 {\n policy fastest\n }", "Corefile:3:9: forward: policy \"fastest\": expected random, round_robin or sequential"),
        ("forward . 1.1.1.1 {\n policy\n }", "Corefile:3:2: forward: policy: expected one of random, round_robin, sequential"),
        ("forward . 1.1.1.1 {\n max_concurrent many\n }", "Corefile:3:17: forward: max_concurrent \"many\": expected a non-negative integer"),
        ("forward . 1.1.1.1 {\n tls cert key\n }", "Corefile:3:2: forward: tls: DNS over TLS is not supported"),
        ("forward . 1.1.1.1 {\n next NXDOMAIN\n }", "Corefile:3:2: forward: unknown option \"next\": expected except, force_tcp"),
    ];
    for (line, want) in cases {
        let text = format!(".:53 {{\n {line}\n}}");
        let got = config(&text).expect_err(line);
        assert!(got.starts_with(want), "{line}:\n got {got}\nwant {want}...");
    }
}

#[test]
fn durations() {
    for (s, want) in [
        ("0", Some(Duration::ZERO)),
        ("500ms", Some(Duration::from_millis(500))),
        ("0.5s", Some(Duration::from_millis(500))),
        ("10s", Some(Duration::from_secs(10))),
        ("1m", Some(Duration::from_secs(60))),
        ("1h1m1s", Some(Duration::from_secs(3661))),
        ("250us", Some(Duration::from_micros(250))),
        ("", None),
        ("10", None),
        ("s", None),
        ("-1s", None),
        ("1d", None),
    ] {
        assert_eq!(parse_duration(s), want, "{s:?}");
    }
}

fn forward(text: &str) -> (Forward, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let cfg = config(text).unwrap();
    (Forward::new(cfg, &metrics), metrics)
}

fn three(policy: &str, extra: &str) -> (Forward, Arc<Metrics>) {
    forward(&format!(
        ".:53 {{\n forward . 10.0.0.1 10.0.0.2 10.0.0.3 {{\n policy {policy}\n {extra}\n }}\n}}"
    ))
}

#[test]
fn policies_order_the_upstreams() {
    let (f, _) = three("sequential", "");
    for _ in 0..3 {
        assert_eq!(f.upstreams().order(), vec![0, 1, 2]);
    }
    let (f, _) = three("round_robin", "");
    assert_eq!(f.upstreams().order(), vec![0, 1, 2]);
    assert_eq!(f.upstreams().order(), vec![1, 2, 0]);
    assert_eq!(f.upstreams().order(), vec![2, 0, 1]);
    assert_eq!(f.upstreams().order(), vec![0, 1, 2]);
    let (f, _) = three("random", "");
    let mut firsts = [0usize; 3];
    for _ in 0..300 {
        let mut o = f.upstreams().order();
        firsts[o[0]] += 1;
        o.sort_unstable();
        assert_eq!(o, vec![0, 1, 2]);
    }
    assert!(firsts.iter().all(|&n| n > 30), "not random: {firsts:?}");
}

#[test]
fn failing_upstreams_are_marked_down_and_skipped() {
    let (f, metrics) = three("sequential", "max_fails 2");
    let ups = f.upstreams();
    ups.list[0].failed();
    assert!(!ups.is_down(0));
    assert_eq!(ups.order(), vec![0, 1, 2]);
    ups.list[0].failed();
    assert!(ups.is_down(0));
    assert_eq!(ups.order(), vec![1, 2]);
    ups.list[0].answered();
    assert!(!ups.is_down(0));
    assert_eq!(ups.order(), vec![0, 1, 2]);

    // All down: one at random anyway, counted as broken health checking.
    for u in &ups.list {
        u.failed();
        u.failed();
    }
    let o = ups.order();
    assert_eq!(o.len(), 1);
    assert!(o[0] < 3);
    let mut text = String::new();
    metrics.registry.render(&mut text);
    assert!(
        text.contains("coredns_forward_healthcheck_broken_total 1"),
        "{text}"
    );

    // max_fails 0 (or no health checks): never down.
    for extra in ["max_fails 0", "health_check 0s"] {
        let (f, _) = three("sequential", extra);
        for _ in 0..10 {
            f.upstreams().list[1].failed();
        }
        assert!(!f.upstreams().is_down(1), "{extra}");
        assert_eq!(f.upstreams().order(), vec![0, 1, 2]);
    }
}

// --- behaviour through `serve`, against fake upstreams on loopback ---

fn request(name: &str, qtype: RecordType, transport: Transport) -> Request {
    let mut header = Header::new();
    header.set_id(4242);
    header.set_message_type(MessageType::Query);
    header.set_op_code(OpCode::Query);
    header.set_recursion_desired(true);
    header.set_query_count(1);
    Request {
        header,
        question: Query::query(Name::from_ascii(name).unwrap(), qtype),
        edns: Some(Edns {
            udp_size: 4096,
            dnssec_ok: true,
        }),
        transport,
    }
}

fn ctx() -> Ctx {
    Ctx {
        client: addr("127.0.0.1:40000"),
        local: addr("127.0.0.1:53"),
        zone: Arc::from("."),
        received: Instant::now(),
    }
}

/// The answer every fake upstream gives: `n` A records, RA and AD set, NXDOMAIN if asked.
fn answer_to(query: &Message, n: usize, rcode: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authentic_data(true)
        .set_response_code(rcode);
    m.add_queries(query.queries().to_vec());
    let name = query.queries()[0].name().clone();
    for i in 0..n {
        m.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, (i % 250) as u8 + 1)),
        ));
    }
    if let Some(e) = query.extensions() {
        m.set_edns(e.clone());
    }
    m
}

/// What a fake UDP upstream saw, and its address.
struct FakeUdp {
    addr: SocketAddr,
    queries: Arc<std::sync::Mutex<Vec<Message>>>,
}

/// A UDP upstream that sends a decoy (wrong ID) before every answer of `n` records, with TC
/// set (and no records) when the answer would exceed `limit` bytes.
async fn fake_udp(n: usize, limit: usize) -> FakeUdp {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = sock.local_addr().unwrap();
    let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&queries);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = Message::from_vec(&buf[..len]).unwrap();
            seen.lock().unwrap().push(q.clone());
            let mut decoy = answer_to(&q, 1, ResponseCode::Refused);
            decoy.set_id(q.id().wrapping_add(1));
            sock.send_to(&decoy.to_vec().unwrap(), from).await.unwrap();
            let mut a = answer_to(&q, n, ResponseCode::NoError);
            if a.to_vec().unwrap().len() > limit {
                a.take_answers();
                a.set_truncated(true);
            }
            sock.send_to(&a.to_vec().unwrap(), from).await.unwrap();
        }
    });
    FakeUdp { addr, queries }
}

/// A TCP upstream on `addr`'s port answering with `n` records; counts connections.
async fn fake_tcp(addr: SocketAddr, n: usize) -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(addr).await.unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let len = s.read_u16().await.unwrap();
                let mut buf = vec![0u8; usize::from(len)];
                s.read_exact(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf).unwrap();
                let a = answer_to(&q, n, ResponseCode::NoError).to_vec().unwrap();
                s.write_u16(a.len() as u16).await.unwrap();
                s.write_all(&a).await.unwrap();
            });
        }
    });
    conns
}

/// A loopback port where nothing listens (UDP and TCP refused).
fn dead_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.local_addr().unwrap()
}

/// The end of the chain in tests: answers REFUSED with AA, to see a query went on.
struct Tail;

impl Plugin for Tail {
    fn name(&self) -> &'static str {
        "tail"
    }
    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> crate::plugin::Answer<'a> {
        Box::pin(async move {
            let mut m = req.reply(ResponseCode::Refused);
            m.set_authoritative(true);
            Ok(m)
        })
    }
}

async fn serve(f: Forward, req: Request) -> (Result<Message, PluginError>, Arc<dyn Plugin>) {
    let chain: Vec<Arc<dyn Plugin>> = vec![Arc::new(f), Arc::new(Tail)];
    let c = ctx();
    let r = Next::chain(&chain).serve(&c, req).await;
    (r, Arc::clone(&chain[0]))
}

fn upstream_block(to: &[SocketAddr], extra: &str) -> String {
    let to: Vec<String> = to.iter().map(ToString::to_string).collect();
    format!(
        ".:53 {{\n forward example.org {} {{\n policy sequential\n {extra}\n }}\n}}",
        to.join(" ")
    )
}

#[tokio::test]
async fn forwards_with_the_clients_flags_and_keeps_the_upstreams_answer() {
    let up = fake_udp(2, 65535).await;
    let (f, metrics) = forward(&upstream_block(&[up.addr], ""));
    let (r, _) = serve(
        f,
        request("www.example.org.", RecordType::A, Transport::Udp),
    )
    .await;
    let m = r.unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 2);
    assert!(m.recursion_available() && m.authentic_data());
    assert!(m.extensions().is_none(), "the upstream's OPT is removed");
    let qs = up.queries.lock().unwrap().clone();
    assert_eq!(
        qs.len(),
        1,
        "the decoy datagram did not cause a second attempt"
    );
    let q = &qs[0];
    assert_ne!(q.id(), 4242, "a fresh ID, not the client's");
    assert!(q.recursion_desired());
    let edns = q.extensions().as_ref().expect("EDNS0 sent");
    assert_eq!(edns.max_payload(), 1232);
    assert!(edns.flags().dnssec_ok);

    let mut text = String::new();
    metrics.registry.render(&mut text);
    let to = up.addr.to_string();
    assert!(
        text.contains(&format!("coredns_forward_requests_total{{to=\"{to}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "coredns_forward_responses_total{{to=\"{to}\",rcode=\"NOERROR\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("coredns_forward_request_duration_seconds_count{"),
        "{text}"
    );
}

#[tokio::test]
async fn names_outside_from_or_excepted_go_to_the_next_plugin() {
    let up = fake_udp(1, 65535).await;
    let text = upstream_block(&[up.addr], "except private.example.org");
    for name in [
        "example.com.",
        "private.example.org.",
        "a.private.example.org.",
    ] {
        let (f, _) = forward(&text);
        let (r, _) = serve(f, request(name, RecordType::A, Transport::Udp)).await;
        let m = r.unwrap();
        assert!(m.authoritative(), "{name} reached the tail");
        assert_eq!(m.response_code(), ResponseCode::Refused);
    }
    assert!(up.queries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn truncated_udp_answers_are_retried_over_tcp() {
    let up = fake_udp(100, 1232).await;
    let conns = fake_tcp(up.addr, 100).await;
    let (f, _) = forward(&upstream_block(&[up.addr], ""));
    let (r, _) = serve(
        f,
        request("big.example.org.", RecordType::A, Transport::Udp),
    )
    .await;
    let m = r.unwrap();
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 100);
    assert_eq!(up.queries.lock().unwrap().len(), 1);
    assert_eq!(conns.load(Ordering::Relaxed), 1);

    // force_tcp: TCP only.
    let (f, _) = forward(&upstream_block(&[up.addr], "force_tcp"));
    let (r, _) = serve(
        f,
        request("big.example.org.", RecordType::A, Transport::Udp),
    )
    .await;
    assert_eq!(r.unwrap().answers().len(), 100);
    assert_eq!(up.queries.lock().unwrap().len(), 1);
    assert_eq!(conns.load(Ordering::Relaxed), 2);

    // A TCP client's query goes over TCP, unless prefer_udp.
    let (f, _) = forward(&upstream_block(&[up.addr], ""));
    let (r, _) = serve(
        f,
        request("small.example.org.", RecordType::A, Transport::Tcp),
    )
    .await;
    assert_eq!(r.unwrap().answers().len(), 100);
    assert_eq!(conns.load(Ordering::Relaxed), 3);
    let (f, _) = forward(&upstream_block(&[up.addr], "prefer_udp"));
    let (r, _) = serve(
        f,
        request("big.example.org.", RecordType::A, Transport::Tcp),
    )
    .await;
    assert_eq!(r.unwrap().answers().len(), 100, "UDP first, then TCP on TC");
    assert_eq!(up.queries.lock().unwrap().len(), 2);
    assert_eq!(conns.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn fails_over_and_marks_the_dead_upstream_down() {
    let dead = dead_port();
    let up = fake_udp(1, 65535).await;
    let (f, _) = forward(&upstream_block(&[dead, up.addr], "health_check 1h"));
    let ups = Arc::clone(f.upstreams());
    let chain: Vec<Arc<dyn Plugin>> = vec![Arc::new(f)];
    let c = ctx();
    for i in 1..=3 {
        let r = Next::chain(&chain)
            .serve(
                &c,
                request("www.example.org.", RecordType::A, Transport::Udp),
            )
            .await;
        assert_eq!(r.unwrap().answers().len(), 1);
        assert_eq!(up.queries.lock().unwrap().len(), i);
    }
    // Two failures (max_fails 2), of queries or of the health check a failed query starts
    // (which comes second is a race): down; the third query did not try it.
    assert!(ups.is_down(0));
    let (fails, requests) = (ups.list[0].fails(), ups.list[0].requests.get());
    assert!(
        fails >= 2 && (1..=2).contains(&requests),
        "{fails} failures, {requests} requests"
    );
}

#[tokio::test]
async fn servfail_when_every_upstream_is_dead() {
    let (f, _) = forward(&upstream_block(&[dead_port(), dead_port()], ""));
    let start = Instant::now();
    let (r, _) = serve(
        f,
        request("www.example.org.", RecordType::A, Transport::Udp),
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.plugin, "forward");
    assert!(
        e.message
            .starts_with("no answer from any upstream for www.example.org. A"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_the_next_answers() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let up = fake_udp(1, 65535).await;
    let (f, _) = forward(&upstream_block(
        &[silent.local_addr().unwrap(), up.addr],
        "",
    ));
    let start = Instant::now();
    let (r, _) = serve(
        f,
        request("www.example.org.", RecordType::A, Transport::Udp),
    )
    .await;
    assert_eq!(r.unwrap().answers().len(), 1);
    let took = start.elapsed();
    assert!(
        took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test]
async fn max_concurrent_rejects_at_once() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let (f, metrics) = forward(&upstream_block(
        &[silent.local_addr().unwrap()],
        "max_concurrent 1",
    ));
    let f = Arc::new(f);
    let c = ctx();
    let first = {
        let f = Arc::clone(&f);
        let c = c.clone();
        tokio::spawn(async move {
            let chain: Vec<Arc<dyn Plugin>> = vec![f];
            Next::chain(&chain)
                .serve(&c, request("a.example.org.", RecordType::A, Transport::Udp))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let chain: Vec<Arc<dyn Plugin>> = vec![f];
    let e = Next::chain(&chain)
        .serve(&c, request("b.example.org.", RecordType::A, Transport::Udp))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(e.message, "max concurrent queries reached");
    let mut text = String::new();
    metrics.registry.render(&mut text);
    assert!(
        text.contains("coredns_forward_max_concurrent_rejects_total 1"),
        "{text}"
    );
    first.abort();
}

#[tokio::test]
async fn health_checks_bring_a_down_upstream_back() {
    // Upstream 0 is a port that is dead at first and answers later.
    let port = dead_port();
    let (f, metrics) = forward(&upstream_block(
        &[port],
        "max_fails 1\n health_check 50ms no_rec",
    ));
    let ups = Arc::clone(f.upstreams());
    ups.list[0].failed();
    assert!(ups.is_down(0));
    // The checker fails against the dead port and counts it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while ups.list[0].healthcheck_failures.get() == 0 {
        assert!(Instant::now() < deadline, "no failed health check counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ups.is_down(0));
    let up = FakeUdp {
        addr: port,
        queries: fake_udp_at(port).await,
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while ups.is_down(0) {
        assert!(Instant::now() < deadline, "still down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let q = up.queries.lock().unwrap()[0].clone();
    assert_eq!(q.queries()[0].name(), &Name::root());
    assert_eq!(q.queries()[0].query_type(), RecordType::NS);
    assert!(!q.recursion_desired(), "no_rec");
    let mut text = String::new();
    metrics.registry.render(&mut text);
    assert!(
        text.contains("coredns_forward_healthcheck_failures_total{to="),
        "{text}"
    );
    // Dropping the plugin stops the checker.
    drop(f);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(Arc::strong_count(&ups), 1);
}

/// A minimal answering UDP upstream on a given address.
async fn fake_udp_at(addr: SocketAddr) -> Arc<std::sync::Mutex<Vec<Message>>> {
    let sock = UdpSocket::bind(addr).await.unwrap();
    let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&queries);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((len, from)) = sock.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..len]).unwrap();
            seen.lock().unwrap().push(q.clone());
            let a = answer_to(&q, 0, ResponseCode::Refused);
            let _ = sock.send_to(&a.to_vec().unwrap(), from).await;
        }
    });
    queries
}

/// The ```corefile examples of the README.
fn readme_examples() -> Vec<corefile::Corefile> {
    corefile::readme_examples(include_str!("README.md"))
        .into_iter()
        .map(|text| corefile::parse("README.md", text).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

#[test]
fn readme_examples_parse_and_set_up() {
    let examples = readme_examples();
    assert_eq!(examples.len(), 2);
    for cf in examples {
        let d = cf.blocks[0]
            .directives_named("forward")
            .next()
            .expect("a forward line");
        // The machine's /etc/resolv.conf is not read in tests: a stand-in of the same name.
        let dir = TempDir::new("readme");
        std::fs::write(dir.0.join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        let mut d = d.clone();
        for a in &mut d.args {
            if a.text == "/etc/resolv.conf" {
                a.text = "resolv.conf".to_owned();
            }
        }
        parse(&d, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    }
}
