//! Cache hits answered from bytes ([`Router::answer_wire`]) against the same hits decoded
//! ([`Router::handle`]): two routers with the same chain (`errors prometheus loadbalance cache`
//! in front of a scripted upstream) and hand-moved clocks get the same queries; one answers
//! from bytes whenever it can, the other never does. Every response, and every metric but the
//! durations, must be the same.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};

use super::cache::{self, Cache, Clock, ManualClock};
use super::{Answer, Block, Ctx, Next, Plugin, PluginError, Router, Setup};
use crate::metrics::Metrics;
use crate::server::answer::{Request, Transport};

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 7], 40000);
const LOCAL: ([u8; 4], u16) = ([10, 96, 0, 10], 53);

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn a(owner: &str, ttl: u32, last: u8) -> Record {
    rec(owner, ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
}

fn soa(ttl: u32) -> Record {
    rec(
        "example.org.",
        ttl,
        RData::SOA(SOA::new(
            name("ns.example.org."),
            name("host.example.org."),
            1,
            7200,
            1800,
            86400,
            ttl,
        )),
    )
}

/// The upstream: answers by the question's name (lower-cased), as the same name spelled in
/// the question.
struct Upstream;

impl Plugin for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let q = req.question.name().to_lowercase().to_ascii();
        let owner = req.question.name().to_ascii();
        let mut m: Message = req.reply(ResponseCode::NoError);
        m.set_recursion_available(true);
        let m = match q.as_str() {
            "one.example.org." => m.add_answer(a(&owner, 300, 1)).add_answer(soa(300)).clone(),
            "many.example.org." => {
                for i in 1..=4 {
                    m.add_answer(a(&owner, 60, i));
                }
                m
            }
            "cname.example.org." => {
                m.add_answer(rec(
                    &owner,
                    120,
                    RData::CNAME(CNAME(name("edge.cdn.example.net."))),
                ));
                for i in 1..=3 {
                    m.add_answer(a("edge.cdn.example.net.", 20, i));
                }
                m
            }
            // Addresses before the CNAME: loadbalance reorders them.
            "mixed.example.org." => {
                m.add_answer(a("edge.cdn.example.net.", 20, 1));
                m.add_answer(a("edge.cdn.example.net.", 20, 2));
                m.add_answer(rec(
                    &owner,
                    120,
                    RData::CNAME(CNAME(name("edge.cdn.example.net."))),
                ));
                m
            }
            "six.example.org." => {
                for i in 1..=2u16 {
                    m.add_answer(rec(
                        &owner,
                        90,
                        RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))),
                    ));
                }
                m
            }
            "mail.example.org." => {
                m.add_answer(rec(
                    &owner,
                    600,
                    RData::MX(MX::new(10, name("mx.example.org."))),
                ));
                m.add_additional(a("mx.example.org.", 30, 25));
                m
            }
            "text.example.org." => m
                .add_answer(rec(
                    &owner,
                    45,
                    RData::TXT(TXT::new(vec!["v=spf1 -all".to_owned()])),
                ))
                .clone(),
            // 40 addresses: more than 512 bytes.
            "big.example.org." => {
                for i in 1..=40 {
                    m.add_answer(a(&owner, 300, i));
                }
                m
            }
            "short.example.org." => m.add_answer(a(&owner, 2, 9)).clone(),
            "broken.example.org." => {
                m.set_response_code(ResponseCode::ServFail);
                m
            }
            "empty.example.org." => m.add_name_server(soa(40)).clone(),
            _ => {
                m.set_response_code(ResponseCode::NXDomain);
                m.add_name_server(soa(60));
                m
            }
        };
        Box::pin(async move { Ok::<_, PluginError>(m) })
    }
}

/// A router with `plugins` (Corefile lines) in front of the upstream, its metrics and the
/// hand of its cache's clock.
fn router(lines: &str) -> (Router, Arc<Metrics>, ManualClock) {
    let metrics = Arc::new(Metrics::default());
    let zones = vec![".".to_owned()];
    let setup = Setup {
        zones: &zones,
        dir: std::path::Path::new("."),
        metrics: &metrics,
        server: "dns://:53",
    };
    let cf = crate::corefile::parse("Corefile", &format!(". {{\n{lines}\n}}\n")).expect("parses");
    let (clock, hand) = Clock::manual();
    let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
    for d in &cf.blocks[0].directives {
        let p: Arc<dyn Plugin> = match d.name.text.as_str() {
            "cache" => Arc::new(Cache::new(
                cache::parse(d, &zones).expect("cache config"),
                &metrics.registry,
                "dns://:53",
                clock.clone(),
            )),
            "errors" => super::errors::setup(d, &setup).expect("errors"),
            "prometheus" => super::prometheus::setup(d, &setup).expect("prometheus"),
            "loadbalance" => super::loadbalance::setup(d, &setup).expect("loadbalance"),
            "log" => super::log::setup(d, &setup).expect("log"),
            other => panic!("no {other} in this test"),
        };
        plugins.push(p);
    }
    plugins.push(Arc::new(Upstream));
    let router = Router::new(vec![Block { zones, plugins }]);
    (router, metrics, hand)
}

/// A query: `flags` the third and fourth header bytes, `opt` (UDP size, DO) an OPT record.
fn query(id: u16, flags: [u8; 2], qname: &str, qtype: u16, opt: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&flags);
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    for label in qname.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((size, dnssec_ok)) = opt {
        let [s0, s1] = size.to_be_bytes();
        q.extend_from_slice(&[
            0,
            0,
            41,
            s0,
            s1,
            0,
            0,
            if dnssec_ok { 0x80 } else { 0 },
            0,
            0,
            0,
        ]);
    }
    q
}

/// The two routers side by side.
struct Pair {
    wire: (Router, Arc<Metrics>, ManualClock),
    decoded: (Router, Arc<Metrics>, ManualClock),
    /// Queries the wire router answered from bytes.
    from_bytes: usize,
}

impl Pair {
    fn new(lines: &str) -> Self {
        Pair {
            wire: router(lines),
            decoded: router(lines),
            from_bytes: 0,
        }
    }

    /// Asks both; asserts the same response; returns it and whether it came from bytes.
    async fn ask(&mut self, q: &[u8]) -> (Option<Vec<u8>>, bool) {
        let (client, local) = (SocketAddr::from(CLIENT), SocketAddr::from(LOCAL));
        let mut out = Vec::new();
        let (wire, from_bytes) = match self.wire.0.answer_wire(q, client, &mut out) {
            Some(rcode) => {
                let decoded = Message::from_vec(&out).expect("a response from bytes decodes");
                assert_eq!(
                    u16::from(decoded.response_code()),
                    rcode,
                    "the RCODE returned"
                );
                (Some(out), true)
            }
            None => {
                assert!(
                    out.is_empty(),
                    "nothing written when not answered from bytes"
                );
                let r = self.wire.0.handle(q, Transport::Udp, client, local).await;
                (r.map(|r| r.bytes), false)
            }
        };
        let decoded = self
            .decoded
            .0
            .handle(q, Transport::Udp, client, local)
            .await
            .map(|r| r.bytes);
        assert_eq!(wire, decoded, "query {q:02x?} (from bytes: {from_bytes})");
        self.from_bytes += usize::from(from_bytes);
        (wire, from_bytes)
    }

    fn advance(&self, d: Duration) {
        self.wire.2.advance(d);
        self.decoded.2.advance(d);
    }

    /// The metrics of both, durations aside (their counts kept), must be the same.
    fn same_metrics(&self) {
        let text = |m: &Metrics| {
            m.render(None)
                .lines()
                .filter(|l| {
                    !l.starts_with("coredns_dns_request_duration_seconds_bucket")
                        && !l.starts_with("coredns_dns_request_duration_seconds_sum")
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&self.wire.1), text(&self.decoded.1));
    }
}

const NAMES: &[(&str, u16)] = &[
    ("one.example.org.", 1),
    ("many.example.org.", 1),
    ("cname.example.org.", 1),
    ("mixed.example.org.", 1),
    ("six.example.org.", 28),
    ("mail.example.org.", 15),
    ("text.example.org.", 16),
    ("big.example.org.", 1),
    ("short.example.org.", 1),
    ("broken.example.org.", 1),
    ("empty.example.org.", 1),
    ("missing.example.org.", 1),
    ("missing.example.org.", 28),
    (".", 2),
];

/// Every shape of query the wire path reads, for every name.
fn variants() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut id = 7u16;
    for &(qname, qtype) in NAMES {
        for flags in [[0x01, 0x00], [0x00, 0x00], [0x01, 0x10], [0x01, 0x20]] {
            for opt in [
                None,
                Some((1232, false)),
                Some((4096, true)),
                Some((100, false)),
            ] {
                id = id.wrapping_mul(31).wrapping_add(17);
                out.push(query(id, flags, qname, qtype, opt));
            }
        }
    }
    out
}

#[tokio::test]
async fn hits_from_bytes_are_the_decoded_hits_byte_for_byte() {
    let mut pair = Pair::new("errors\nprometheus :9153\nloadbalance\ncache 300");
    let queries = variants();
    for round in 0..4 {
        for q in &queries {
            pair.ask(q).await;
        }
        // TTLs decay, `short` expires (asked upstream again by both).
        pair.advance(Duration::from_millis(1500 + 700 * round));
    }
    pair.same_metrics();
    // Every round after the first answers most hits from bytes: not the truncated `big`
    // without EDNS, not `mixed` (loadbalance reorders it), not the expired `short`.
    assert!(
        pair.from_bytes > queries.len() * 2,
        "{} of {} answered from bytes",
        pair.from_bytes,
        queries.len() * 4
    );
}

#[tokio::test]
async fn what_the_bytes_cannot_reproduce_goes_the_decoded_way() {
    let mut pair = Pair::new("errors\nprometheus\nloadbalance\ncache 300");
    let q = |id, name: &str, opt| query(id, [1, 0], name, 1, opt);
    // First asks fill the cache: never from bytes.
    for name in [
        "many.example.org.",
        "big.example.org.",
        "mixed.example.org.",
    ] {
        assert!(!pair.ask(&q(1, name, None)).await.1, "{name}: a miss");
    }
    // Hits of the plain shapes come from bytes, loadbalance's turn included.
    let first = pair.ask(&q(2, "many.example.org.", None)).await;
    let second = pair.ask(&q(3, "many.example.org.", None)).await;
    assert!(first.1 && second.1);
    let rotated = |r: &Option<Vec<u8>>| {
        let m = Message::from_vec(r.as_deref().expect("answered")).expect("decodes");
        m.answers()
            .iter()
            .map(|r| r.data().to_string())
            .collect::<Vec<_>>()
    };
    assert_ne!(
        rotated(&first.0),
        rotated(&second.0),
        "each hit one turn further"
    );
    // Another spelling of the name: decoded (hickory compresses case-sensitively).
    assert!(!pair.ask(&q(4, "MANY.example.org.", None)).await.1);
    // Too large for 512 bytes: truncated the decoded way; fits in 4096 bytes from bytes.
    let cut = pair.ask(&q(5, "big.example.org.", None)).await;
    assert!(!cut.1);
    assert!(Message::from_vec(&cut.0.expect("answered"))
        .expect("decodes")
        .truncated());
    assert!(
        pair.ask(&q(6, "big.example.org.", Some((4096, false))))
            .await
            .1
    );
    // Addresses before a CNAME: loadbalance reorders the records, decoded.
    assert!(!pair.ask(&q(7, "mixed.example.org.", None)).await.1);
    // Stale past its TTL (no serve_stale): asked upstream again.
    pair.advance(Duration::from_secs(301));
    assert!(!pair.ask(&q(8, "many.example.org.", None)).await.1);
    pair.same_metrics();
}

#[tokio::test]
async fn blocks_with_other_plugins_before_the_cache_never_answer_from_bytes() {
    for lines in [
        "log\ncache 300",
        "cache 300 {\n prefetch 2\n}",
        "errors\nprometheus",
    ] {
        let mut pair = Pair::new(lines);
        for _ in 0..3 {
            pair.ask(&query(9, [1, 0], "one.example.org.", 1, None))
                .await;
        }
        assert_eq!(pair.from_bytes, 0, "{lines}");
    }
    // serve_stale: fresh hits from bytes, stale ones decoded (they may refresh).
    let mut pair = Pair::new("cache 300 {\n serve_stale 1h\n}");
    let q = query(9, [1, 0], "one.example.org.", 1, None);
    assert!(!pair.ask(&q).await.1);
    assert!(pair.ask(&q).await.1);
    pair.advance(Duration::from_secs(400));
    assert!(!pair.ask(&q).await.1);
    pair.same_metrics();
}

#[tokio::test]
async fn mutated_queries_get_the_same_answer_either_way() {
    let mut pair = Pair::new("errors\nprometheus\nloadbalance\ncache 300");
    let queries = variants();
    for q in &queries {
        pair.ask(q).await;
    }
    // xorshift: the same mutations on every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let mut q = queries[next() as usize % queries.len()].clone();
        match next() % 4 {
            0 => {
                let i = next() as usize % q.len();
                q[i] = next() as u8;
            }
            1 => {
                let i = next() as usize % q.len();
                q[i] ^= 1 << (next() % 8);
            }
            2 => q.truncate(next() as usize % q.len()),
            _ => q.extend((0..next() % 16).map(|_| next() as u8)),
        }
        pair.ask(&q).await;
    }
    pair.same_metrics();
    assert!(pair.from_bytes > 1000, "{} from bytes", pair.from_bytes);
}

/// A kernel map that only counts what it is given.
#[derive(Default)]
struct CountingKernel(std::sync::atomic::AtomicUsize);

impl cache::KernelCache for CountingKernel {
    fn put(&self, _: &[u8], _: u16, _: &dns_common::cache::CachedAnswer) -> bool {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }
    fn remove(&self, _: &[u8], _: u16) {}
}

/// The caches the kernel repeats are those the byte path answers for (and only one-address
/// answers behind `loadbalance`).
#[test]
fn the_kernel_gets_the_caches_the_byte_path_answers_for() {
    for (lines, linked, single) in [
        ("cache", 1, false),
        ("errors\nprometheus\ncache", 1, false),
        ("loadbalance\ncache", 1, true),
        ("log\ncache", 0, false),
        ("cache {\nprefetch 2\n}", 0, false),
        ("cache {\nkeepttl\n}", 0, false),
        ("errors", 0, false),
    ] {
        let (router, _, _) = router(lines);
        let caches = router.kernel_caches();
        assert_eq!(caches.len(), linked, "{lines}");
        assert!(caches.iter().all(|(_, s)| *s == single), "{lines}");
        let sink: Arc<dyn cache::KernelCache> = Arc::new(CountingKernel::default());
        assert_eq!(router.link_kernel_cache(&sink), linked, "{lines}");
        assert_eq!(router.link_kernel_cache(&sink), 0, "{lines}: linked once");
    }
}
