//! The kernel cache (`DNS_CACHE`) gives the userspace cache's answers: a real `cache` plugin,
//! filled through its own chain from a scripted upstream plugin, linked to the kernel map the
//! agent's dataplane loads; then every query runs through `dns_xdp` and `dns_tc` with
//! `BPF_PROG_TEST_RUN`, and every answer the kernel sends must be, byte for byte but the TTLs,
//! the one userspace's cache sends for the same query, its TTLs between userspace's just before
//! and just after (the same whole second but at a second's boundary). Answers the kernel cannot
//! reproduce (CNAMEs, other sections, several TTLs, the DO or CD bit, another spelling, a
//! truncated size) pass to userspace; expired entries pass; the map never holds more than the
//! cache. Needs root.

#[allow(dead_code)]
#[path = "kernel_answers/packets.rs"]
mod packets;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns_agent::dataplane::{
    programs, AttachMode, Dataplane, DataplaneConfig, KernelAnswers, KernelProgram, EBPF_OBJECT,
};
use dns_agent::metrics::Metrics;
use dns_agent::plugin::cache::{Cache, Clock, Config, KernelCache};
use dns_agent::plugin::{Answer, Block, Ctx, Next, Plugin, Router};
use dns_agent::server::answer::{Request, Transport};
use dns_agent::server::wire;
use dns_agent_tests::rng::Rng;
use dns_agent_tests::test_run::test_run;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS};
use hickory_proto::rr::{Name, RData, Record};
use packets::*;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const PROGS: [&str; 2] = [programs::DNS_XDP, programs::DNS_TC];
/// A name long enough that 16 AAAA records do not fit in 512 bytes.
const BIG: &str = "a-rather-long-label-to-make-the-answer-big.example.com.";

/// The upstream: what a forwarder would return, by question.
struct Upstream;

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

fn a(owner: &Name, ttl: u32, last: u8) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    )
}

fn aaaa(owner: &Name, ttl: u32, last: u16) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, last))),
    )
}

impl Upstream {
    fn answer(req: &Request) -> Message {
        let q = req.question.name().clone();
        let lower = q.to_ascii().to_ascii_lowercase();
        let qtype = u16::from(req.question.query_type());
        let mut m = req.reply(ResponseCode::NoError);
        m.set_recursion_available(true);
        let label = lower.split('.').next().unwrap_or("").to_owned();
        match (label.as_str(), qtype) {
            ("one", 1) => {
                m.add_answer(a(&q, 30, 1));
            }
            ("three", 1) => {
                for i in 1..=3 {
                    m.add_answer(a(&q, 30, i));
                }
            }
            ("three", 28) => {
                m.add_answer(aaaa(&q, 30, 1));
                m.add_answer(aaaa(&q, 30, 2));
            }
            ("a-rather-long-label-to-make-the-answer-big", 28) => {
                for i in 1..=16 {
                    m.add_answer(aaaa(&q, 30, i));
                }
            }
            ("cname", 1) => {
                let target = name("one.example.com.");
                m.add_answer(Record::from_rdata(
                    q.clone(),
                    30,
                    RData::CNAME(CNAME(target.clone())),
                ));
                m.add_answer(a(&target, 30, 1));
            }
            ("mixed-ttl", 1) => {
                m.add_answer(a(&q, 30, 1));
                m.add_answer(a(&q, 40, 2));
            }
            ("extra", 1) => {
                m.add_answer(a(&q, 30, 1));
                m.add_name_server(Record::from_rdata(
                    name("example.com."),
                    30,
                    RData::NS(NS(name("ns.example.com."))),
                ));
            }
            ("many", 1) => {
                for i in 1..=17 {
                    m.add_answer(a(&q, 30, i));
                }
            }
            ("upper", 1) => {
                m.add_answer(a(&q, 30, 7));
            }
            ("short", 1) => {
                m.add_answer(a(&q, 2, 9));
            }
            ("capped", 1) => {
                m.add_answer(a(&q, 300, 5));
            }
            (l, 1) if l.starts_with("name") => {
                m.add_answer(a(&q, 60, 1));
            }
            _ => {}
        }
        m
    }
}

impl Plugin for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let m = Upstream::answer(&req);
        Box::pin(async move { Ok(m) })
    }
}

/// A dataplane (no interface), a cache linked to its `DNS_CACHE`, and the router of the block
/// `cache` + upstream.
struct Harness {
    dp: std::cell::RefCell<Dataplane>,
    answers: Arc<KernelAnswers>,
    cache: Arc<Cache>,
    router: Router,
    rt: tokio::runtime::Runtime,
    /// Kernel answers also given, the same, over IPv6.
    six: std::cell::Cell<usize>,
}

impl Harness {
    fn new(config: Config, cache_entries: u32) -> Self {
        let cfg = DataplaneConfig {
            interfaces: Vec::new(),
            service_ips: vec![
                std::net::IpAddr::V4(Ipv4Addr::from(SERVICE_IP)),
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(SERVICE_IP6)),
            ],
            port: DNS_PORT,
            mode: AttachMode::Auto,
            program: KernelProgram::Answer,
            map_entries: 64,
            cache_entries,
        };
        let dp = Dataplane::start_with_object(EBPF_OBJECT, &cfg)
            .unwrap_or_else(|e| panic!("loading the kernel program (root needed): {e}"));
        assert_eq!(dp.kernel_cache().capacity(), cache_entries);
        let metrics = Metrics::default();
        let cache = Arc::new(Cache::new(
            config,
            &metrics.registry,
            "dns://:53",
            Clock::system(),
        ));
        let router = Router::new(vec![Block {
            zones: vec![".".into()],
            plugins: vec![Arc::clone(&cache) as Arc<dyn Plugin>, Arc::new(Upstream)],
        }]);
        let answers = dp.kernel_cache();
        let sink: Arc<dyn KernelCache> = answers.clone();
        assert_eq!(router.link_kernel_cache(&sink), 1, "the cache is linked");
        assert!(cache.is_kernel_linked());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Harness {
            dp: std::cell::RefCell::new(dp),
            answers,
            cache,
            router,
            rt,
            six: std::cell::Cell::new(0),
        }
    }

    /// Userspace's response to `query`: from the entry's bytes when the byte path answers it,
    /// else through the chain (as the UDP listener does).
    fn userspace(&self, query: &[u8]) -> Vec<u8> {
        let client = SocketAddr::from((CLIENT_IP, CLIENT_PORT));
        let local = SocketAddr::from((SERVICE_IP, DNS_PORT));
        let mut out = Vec::new();
        if self.router.answer_wire(query, client, &mut out).is_some() {
            return out;
        }
        self.rt
            .block_on(self.router.handle(query, Transport::Udp, client, local))
            .expect("an answer")
            .bytes
            .to_vec()
    }

    /// Runs `query` through `prog`: the DNS message sent back, or `None` when passed (the
    /// packet then unchanged).
    fn kernel(&self, prog: &'static str, query: &[u8]) -> Option<Vec<u8>> {
        let answer = self.kernel_over(prog, Frame::query(query.to_vec()).bytes());
        // The same query over IPv6 gets the same answer, TTLs aside (or, an entry expiring
        // between the two runs, none: both verdicts are checked either way).
        let six = self.kernel_over(prog, Frame::query6(query.to_vec()).bytes());
        if let (Some(four), Some(six)) = (&answer, &six) {
            assert_eq!(
                without_ttls(six).0,
                without_ttls(four).0,
                "{prog}: over IPv6 not as over IPv4 for {query:02x?}"
            );
            self.six.set(self.six.get() + 1);
        }
        answer
    }

    /// [`Harness::kernel`] for one frame, IPv4 or IPv6.
    fn kernel_over(&self, prog: &'static str, frame: Vec<u8>) -> Option<Vec<u8>> {
        let mut dp = self.dp.borrow_mut();
        let fd = dp.program_fd(prog).expect("program loaded");
        let out = test_run(fd, &frame, 1).expect("BPF_PROG_TEST_RUN");
        drop(dp);
        let (answered, passed) = if prog == programs::DNS_XDP {
            (XDP_TX, XDP_PASS)
        } else {
            (TC_ACT_REDIRECT, TC_ACT_OK)
        };
        if out.retval == passed {
            assert_eq!(out.data, frame, "{prog} passed a packet it changed");
            return None;
        }
        assert_eq!(out.retval, answered, "{prog}: unexpected verdict");
        Some(udp_payload(&out.data).to_vec())
    }

    /// Runs `query` through the kernel between two userspace answers and checks the kernel's
    /// against them; returns the kernel's answer (None: passed).
    fn check(&self, prog: &'static str, query: &[u8]) -> Option<Vec<u8>> {
        let before = self.userspace(query);
        let kernel = self.kernel(prog, query)?;
        let after = self.userspace(query);
        let (kb, kt) = without_ttls(&kernel);
        let (bb, bt) = without_ttls(&before);
        let (ab, at) = without_ttls(&after);
        assert_eq!(
            bb, ab,
            "userspace changed its answer meanwhile: {query:02x?}"
        );
        assert_eq!(
            kb, bb,
            "{prog}: the kernel's answer differs from userspace's cache (TTLs aside) for {query:02x?}"
        );
        for ((k, b), a) in kt.iter().zip(&bt).zip(&at) {
            assert!(
                b >= k && k >= a,
                "{prog}: TTL {k} outside userspace's {b}..{a} at the same time"
            );
        }
        Some(kernel)
    }

    fn fill(&self, query: &Query) {
        let _ = self.userspace(&query.bytes());
    }
}

/// The DNS message of an answered frame (Ethernet, IPv4 without options or IPv6, UDP).
fn udp_payload(frame: &[u8]) -> &[u8] {
    let udp = if frame[12..14] == [0x86, 0xdd] {
        14 + 40
    } else {
        14 + usize::from(frame[14] & 0x0f) * 4
    };
    let len = usize::from(u16::from_be_bytes([frame[udp + 4], frame[udp + 5]]));
    &frame[udp + 8..udp + len]
}

/// The message with every TTL (OPT aside) zeroed, and those TTLs in order.
fn without_ttls(msg: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let records = wire::records(msg).expect("a walkable message");
    let mut out = msg.to_vec();
    let mut ttls = Vec::new();
    for r in records.iter().filter(|r| r.rtype != 41) {
        let at = r.ttl_at;
        ttls.push(u32::from_be_bytes([
            msg[at],
            msg[at + 1],
            msg[at + 2],
            msg[at + 3],
        ]));
        out[at..at + 4].fill(0);
    }
    (out, ttls)
}

fn ttls(msg: &[u8]) -> Vec<u32> {
    without_ttls(msg).1
}

fn config() -> Config {
    let mut c = Config::new(vec![".".into()]);
    // `short`'s 2 s TTL is kept for 2 s.
    c.success.min_ttl = 1;
    c
}

/// Header and EDNS variants of one question.
fn variants(q: &Query) -> Vec<(&'static str, Vec<u8>)> {
    let cookie = Opt {
        options: vec![(10, vec![7; 8])],
        ..Opt::new(1232)
    };
    let with = |flags: u16, opt: Option<Opt>| {
        Query {
            flags,
            opt,
            ..q.clone()
        }
        .bytes()
    };
    vec![
        ("plain", with(RD, None)),
        ("no RD", with(0, None)),
        ("AD", with(RD | AD, None)),
        ("EDNS 1232", with(RD, Some(Opt::new(1232)))),
        ("EDNS 512", with(RD, Some(Opt::new(512)))),
        ("EDNS cookie", with(RD, Some(cookie))),
        (
            "DO",
            with(
                RD,
                Some(Opt {
                    flags: DO,
                    ..Opt::new(4096)
                }),
            ),
        ),
        ("CD", with(RD | CD, None)),
    ]
}

const NEVER: [&str; 2] = ["DO", "CD"];

#[test]
fn cached_external_answers_are_userspaces_byte_for_byte() {
    let h = Harness::new(config(), 9984);
    let questions = [
        Query::a("one.example.com."),
        Query::a("three.example.com."),
        Query::aaaa("three.example.com."),
        Query::aaaa(BIG),
        Query::a("cname.example.com."),
        Query::a("mixed-ttl.example.com."),
        Query::a("extra.example.com."),
        Query::a("many.example.com."),
    ];
    for q in &questions {
        h.fill(q);
    }
    // What the agent wrote: the five answers the kernel can repeat (`mixed-ttl`'s two TTLs
    // are both the entry's TTL, the smaller, once cached: userspace caps them so).
    assert_eq!(h.answers.written(), 5, "entries written to DNS_CACHE");
    assert_eq!(h.answers.read_all().len(), 5, "entries in DNS_CACHE");

    let mut answered = BTreeSet::new();
    let six_before = h.six.get();
    for round in 0..2 {
        for q in &questions {
            let qname = dotted(&q.qname);
            let mixed = Query {
                qname: wire(&mixed_case(&dotted(&q.qname))),
                ..q.clone()
            };
            for (what, query) in variants(q).into_iter().chain(
                variants(&mixed)
                    .into_iter()
                    .map(|(w, b)| (if w == "plain" { "mixed case" } else { "mixed+" }, b)),
            ) {
                for prog in PROGS {
                    if let Some(k) = h.check(prog, &query) {
                        assert!(
                            !NEVER.contains(&what) && !what.starts_with("mixed"),
                            "{prog} answered a {what} query for {qname}"
                        );
                        if round == 1 {
                            assert!(
                                ttls(&k).iter().all(|&t| t < 30),
                                "the TTL decayed after a second: {:?}",
                                ttls(&k)
                            );
                        }
                        answered.insert((dotted(&q.qname), q.qtype, what));
                    }
                }
            }
        }
        // Past the next whole second of every entry: TTLs are one lower.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let kinds = |n: &str, t: u16| {
        answered
            .iter()
            .filter(|(a, b, _)| a == n && *b == t)
            .map(|(_, _, w)| *w)
            .collect::<BTreeSet<_>>()
    };
    let all: BTreeSet<&str> = [
        "plain",
        "no RD",
        "AD",
        "EDNS 1232",
        "EDNS 512",
        "EDNS cookie",
    ]
    .into_iter()
    .collect();
    assert!(
        h.six.get() - six_before >= answered.len(),
        "the kernel's cached answers are given over IPv6 too"
    );
    assert_eq!(kinds("one.example.com.", 1), all, "one A");
    assert_eq!(kinds("three.example.com.", 1), all, "three A");
    assert_eq!(kinds("three.example.com.", 28), all, "three AAAA");
    assert_eq!(
        kinds("mixed-ttl.example.com.", 1),
        all,
        "mixed TTLs, capped to one"
    );
    // 16 AAAA records do not fit in 512 bytes: only the large EDNS sizes are answered.
    assert_eq!(
        kinds(BIG, 28),
        ["EDNS 1232", "EDNS cookie"].into_iter().collect(),
        "16 AAAA records"
    );
    // An entry stored for a query in another spelling (its response carries that spelling):
    // never written, the lower-case spelling is userspace's alone too.
    h.fill(&Query::a("UPPER.Example.COM."));
    assert_eq!(h.answers.written(), 5, "not written");
    for prog in PROGS {
        assert!(
            h.check(prog, &Query::a("upper.example.com.").bytes())
                .is_none(),
            "{prog}: upper.example.com."
        );
        assert!(
            h.check(prog, &Query::a("UPPER.Example.COM.").bytes())
                .is_none(),
            "{prog}: the spelling as cached"
        );
    }
    for n in [
        "cname.example.com.",
        "extra.example.com.",
        "many.example.com.",
    ] {
        assert!(kinds(n, 1).is_empty(), "{n} stays in userspace");
    }
}

#[test]
fn expired_entries_pass_and_ttl_caps_hold() {
    let mut config = config();
    config.success.max_ttl = 5;
    let h = Harness::new(config, 9984);
    let short = Query::a("short.example.com.").bytes();
    let capped = Query::a("capped.example.com.").bytes();
    let start = Instant::now();
    h.fill(&Query::a("short.example.com."));
    h.fill(&Query::a("capped.example.com."));
    let filled = Instant::now();
    let mut lives: Vec<(u64, u32)> = h
        .answers
        .read_all()
        .iter()
        .map(|(_, v)| (v.expires_ns - v.decay_from_ns, v.ttl))
        .collect();
    lives.sort();
    assert_eq!(
        lives,
        [(2_000_000_000, 2), (5_000_000_000, 5)],
        "each entry lives as long as userspace keeps it, its TTL capped at 5 s (300 upstream)"
    );
    for prog in PROGS {
        let k = h
            .check(prog, &capped)
            .expect("capped answered in the kernel");
        // 5, or 4 past the first whole second (`check` compares it with userspace's).
        assert!(
            ttls(&k)[0] <= 5,
            "the cache's TTL cap (300 upstream): {:?}",
            ttls(&k)
        );
        assert!(h.check(prog, &short).is_some(), "short answered");
    }
    // Just before 2 s from the fill it is still answered; from 2 s after it never.
    let until = start + Duration::from_millis(1850);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    if Instant::now() < start + Duration::from_millis(1950) {
        for prog in PROGS {
            let k = h.kernel(prog, &short).expect("short still answered");
            assert!(ttls(&k)[0] <= 1, "TTL {:?}", ttls(&k));
        }
    }
    std::thread::sleep(
        (filled + Duration::from_millis(2005)).saturating_duration_since(Instant::now()),
    );
    for prog in PROGS {
        assert!(
            h.kernel(prog, &short).is_none(),
            "{prog} answered an expired entry"
        );
        assert!(h.check(prog, &capped).is_some(), "capped lives 5 s");
    }
    // Userspace does not answer it from the cache either: the upstream again, a new entry.
    let before = h.answers.written();
    let _ = h.userspace(&short);
    assert_eq!(h.answers.written(), before, "the same key written again");
    for prog in PROGS {
        assert!(
            h.check(prog, &short).is_some(),
            "the refreshed entry is answered"
        );
    }
    std::thread::sleep(
        (filled + Duration::from_millis(5005)).saturating_duration_since(Instant::now()),
    );
    for prog in PROGS {
        assert!(
            h.kernel(prog, &capped).is_none(),
            "capped expired after 5 s"
        );
    }
}

#[test]
fn the_kernel_map_never_holds_more_than_the_cache() {
    let mut config = config();
    config.success.capacity = 8;
    let h = Harness::new(config, 8);
    let names: Vec<String> = (0..64).map(|i| format!("name{i}.example.com.")).collect();
    for n in &names {
        h.fill(&Query::a(n));
        let in_map = h.answers.read_all().len();
        assert!(in_map <= 8, "DNS_CACHE holds {in_map} entries (capacity 8)");
        assert!(h.answers.written() <= 8, "the agent's count");
        let (success, _) = h.cache.len();
        assert!(success <= 8, "the cache holds {success}");
    }
    // Every answer the kernel gives is one userspace's cache still holds (check compares them
    // with its byte path, which answers only what it holds).
    let mut answered = 0;
    for n in &names {
        let q = Query::a(n).bytes();
        let mut out = Vec::new();
        let held = h
            .router
            .answer_wire(&q, SocketAddr::from((CLIENT_IP, CLIENT_PORT)), &mut out)
            .is_some();
        let k = h.kernel(programs::DNS_XDP, &q);
        assert!(
            held || k.is_none(),
            "{n}: the kernel answers what userspace evicted"
        );
        if k.is_some() {
            answered += 1;
            h.check(programs::DNS_XDP, &q);
        }
    }
    // The LRU map may drop an entry before the agent deletes it (its free lists are per CPU),
    // never hold one more.
    assert!(answered >= 1, "the names held are answered in the kernel");
    assert_eq!(
        answered,
        h.answers.read_all().len(),
        "every entry of the map answers"
    );
}

/// `Web.Example.com.` for `web.example.com.`: every other letter upper case.
fn mixed_case(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The dotted form of a wire name.
fn dotted(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while wire[at] != 0 {
        let len = usize::from(wire[at]);
        out.push_str(&String::from_utf8_lossy(&wire[at + 1..at + 1 + len]));
        out.push('.');
        at += 1 + len;
    }
    out
}

/// Cached queries with bytes changed, cut or added (framed correctly): whatever the kernel
/// answers is userspace's answer to the same bytes; the rest passes untouched.
#[test]
fn mutated_queries_of_cached_names_are_answered_as_userspace_or_passed() {
    let h = Harness::new(config(), 9984);
    let seeds: Vec<Vec<u8>> = [
        Query::a("one.example.com."),
        Query::a("three.example.com."),
        Query::aaaa("three.example.com."),
        Query::aaaa(BIG),
    ]
    .iter()
    .flat_map(|q| {
        h.fill(q);
        variants(q).into_iter().map(|(_, b)| b)
    })
    .collect();
    let mut rng = Rng(0x5eed_cace | 1);
    let packets = 20_000;
    let mut answered = 0;
    for i in 0..packets {
        let mut dns = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(2) {
            if dns.is_empty() {
                break;
            }
            match rng.below(4) {
                0 => {
                    let at = rng.below(dns.len());
                    dns[at] = rng.next_u64() as u8;
                }
                1 => {
                    let at = rng.below(dns.len());
                    dns[at] ^= 1 << rng.below(8);
                }
                2 => dns.truncate(rng.below(dns.len() + 1)),
                _ => dns.extend((0..1 + rng.below(8)).map(|_| rng.next_u64() as u8)),
            }
        }
        let prog = PROGS[i % 2];
        if h.kernel(prog, &dns).is_some() {
            // The kernel answered: userspace answers the same bytes the same way.
            h.check(prog, &dns).expect("answered again");
            answered += 1;
        }
    }
    eprintln!("{packets} mutated queries: {answered} answered in the kernel, each as userspace");
    assert!(
        answered > 0,
        "some mutations (ID, flags) are still cached questions"
    );
}
