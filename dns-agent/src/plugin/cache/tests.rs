//! The cache through `setup` and `serve`, with a scripted next plugin and a hand-moved clock.

use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use hickory_proto::op::{Header, Query};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::*;
use crate::corefile;
use crate::metrics::Metrics;
use crate::plugin::PluginError;
use crate::server::answer::{Edns, Transport};

type Script = dyn Fn(&Request, usize) -> Result<Message, PluginError> + Send + Sync;

/// The rest of the chain: counts its calls and answers what the script says for the n-th one
/// (0-based).
struct Fake {
    calls: AtomicUsize,
    script: Box<Script>,
}

impl Plugin for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = (self.script)(&req, n);
        Box::pin(async move { answer })
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

fn request(qname: &str, qtype: RecordType) -> Request {
    let mut header = Header::new();
    header.set_id(4242);
    Request {
        header,
        question: Query::query(name(qname), qtype),
        edns: None,
        transport: Transport::Udp,
    }
}

fn a(owner: &Name, ttl: u32, last: u8) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(10, 0, 0, last))),
    )
}

/// NOERROR with one A record of `ttl` for the question.
fn answer(req: &Request, ttl: u32) -> Message {
    let mut m = req.reply(ResponseCode::NoError);
    m.add_answer(a(req.question.name(), ttl, 1));
    m
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("ns.example.org."),
        name("hostmaster.example.org."),
        1,
        7200,
        1800,
        86400,
        minimum,
    );
    Record::from_rdata(name("example.org."), ttl, RData::SOA(soa))
}

fn nxdomain(req: &Request, soa_ttl: u32, minimum: u32) -> Message {
    let mut m = req.reply(ResponseCode::NXDomain);
    m.add_name_server(soa(soa_ttl, minimum));
    m
}

fn fail() -> Result<Message, PluginError> {
    Err(PluginError::new("fake", "upstream down"))
}

/// A cache in front of a fake, on a manual clock.
struct Harness {
    chain: Vec<Arc<dyn Plugin>>,
    cache: Arc<Cache>,
    fake: Arc<Fake>,
    clock: ManualClock,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn with_config(
        config: Config,
        script: impl Fn(&Request, usize) -> Result<Message, PluginError> + Send + Sync + 'static,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let (clock, hand) = Clock::manual();
        let cache = Arc::new(Cache::new(config, &metrics.registry, "dns://:53", clock));
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            script: Box::new(script),
        });
        Harness {
            chain: vec![cache.clone(), fake.clone()],
            cache,
            fake,
            clock: hand,
            metrics,
        }
    }

    /// A cache set up from `cache ...` in a `.` server block.
    fn new(
        directive: &str,
        script: impl Fn(&Request, usize) -> Result<Message, PluginError> + Send + Sync + 'static,
    ) -> Self {
        let config = parse_text(&format!(".:53 {{\n{directive}\n}}\n"), &["."]).expect("valid");
        Harness::with_config(config, script)
    }

    async fn try_ask(&self, req: Request) -> Result<Message, PluginError> {
        let ctx = Ctx {
            client: "127.0.0.1:5353".parse().expect("addr"),
            local: "127.0.0.1:53".parse().expect("addr"),
            zone: Arc::from("."),
            received: Instant::now(),
        };
        Next::chain(&self.chain).serve(&ctx, req).await
    }

    async fn ask(&self, req: Request) -> Message {
        self.try_ask(req).await.expect("an answer")
    }

    async fn ask_a(&self, qname: &str) -> Message {
        self.ask(request(qname, RecordType::A)).await
    }

    fn calls(&self) -> usize {
        self.fake.calls.load(Ordering::SeqCst)
    }

    fn advance(&self, secs: f64) {
        self.clock.advance(Duration::from_secs_f64(secs));
    }

    /// Lets background refreshes run until the fake has been called `n` times.
    async fn settle(&self, n: usize) {
        for _ in 0..1000 {
            if self.calls() >= n {
                break;
            }
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(self.calls(), n, "calls to next after background work");
    }

    /// The value of one series, `name{labels}` as rendered; 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        self.metrics.registry.render(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().expect("a number"))
    }
}

fn ttls(m: &Message) -> Vec<u32> {
    m.answers()
        .iter()
        .chain(m.name_servers())
        .map(Record::ttl)
        .collect()
}

fn parse_text(text: &str, zones: &[&str]) -> Result<Config, CorefileError> {
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    let d = file.blocks[0]
        .directives_named("cache")
        .next()
        .expect("a cache directive");
    let zones: Vec<String> = zones.iter().map(|z| (*z).to_owned()).collect();
    parse(d, &zones)
}

const SUCCESS: &str = "{server=\"dns://:53\",type=\"success\",zone=\".\",view=\"\"}";
const DENIAL: &str = "{server=\"dns://:53\",type=\"denial\",zone=\".\",view=\"\"}";
const ROOT: &str = "{server=\"dns://:53\",zone=\".\",view=\"\"}";

// ---- setup ----

#[test]
fn defaults_are_coredns_defaults() {
    let c = parse_text(".:53 {\n cache\n}\n", &["."]).expect("valid");
    assert_eq!(c, Config::new(vec![".".into()]));
    assert_eq!(c.success.max_ttl, 3600);
    assert_eq!(c.denial.max_ttl, 1800);
    assert_eq!((c.success.min_ttl, c.success.capacity), (5, 9984));
    assert_eq!(c.servfail, Duration::from_secs(5));
    assert!(c.prefetch.is_none() && c.serve_stale.is_none() && !c.keepttl);
}

#[test]
fn every_option() {
    let c = parse_text(
        "example.org:53 {\n cache 300 Example.ORG b.test {\n  success 5000 600 10\n  denial 2048 60 1\n  prefetch 3 30s 20%\n  serve_stale 2h verify\n  servfail 10s\n  disable success c.test\n  disable denial\n  keepttl\n }\n}\n",
        &["example.org."],
    )
    .expect("valid");
    assert_eq!(c.zones, ["example.org.", "b.test."]);
    assert_eq!(
        c.success,
        Tier {
            capacity: 5000,
            max_ttl: 600,
            min_ttl: 10
        }
    );
    assert_eq!(
        c.denial,
        Tier {
            capacity: 2048,
            max_ttl: 60,
            min_ttl: 1
        }
    );
    assert_eq!(
        c.prefetch,
        Some(Prefetch {
            amount: 3,
            window: Duration::from_secs(30),
            percentage: 20
        })
    );
    assert_eq!(
        c.serve_stale,
        Some(ServeStale {
            window: Duration::from_secs(7200),
            mode: StaleMode::Verify
        })
    );
    assert_eq!(c.servfail, Duration::from_secs(10));
    assert_eq!(c.disable_success, ["c.test."]);
    assert_eq!(
        c.disable_denial,
        ["example.org.", "b.test."],
        "the cache's zones"
    );
    assert!(c.keepttl);
}

#[test]
fn optional_arguments_take_their_defaults() {
    let c = parse_text(
        ".:53 {\n cache 30 {\n  success 100\n  prefetch 2\n  serve_stale\n }\n}\n",
        &["."],
    )
    .expect("valid");
    assert_eq!(c.zones, ["."], "the block's zones");
    assert_eq!(
        (c.success.max_ttl, c.denial.max_ttl),
        (30, 30),
        "TTL caps both"
    );
    assert_eq!(c.success.capacity, MIN_CAPACITY, "raised to the minimum");
    let p = c.prefetch.expect("prefetch");
    assert_eq!(
        (p.amount, p.window, p.percentage),
        (2, Duration::from_secs(60), 10)
    );
    let s = c.serve_stale.expect("serve_stale");
    assert_eq!(
        (s.window, s.mode),
        (Duration::from_secs(3600), StaleMode::Immediate)
    );
    let c = parse_text(
        ".:53 {\n cache {\n  prefetch 2 50%\n  servfail 0\n }\n}\n",
        &["."],
    )
    .expect("valid");
    assert_eq!(c.prefetch.map(|p| p.percentage), Some(50));
    assert_eq!(c.servfail, Duration::ZERO);
}

#[test]
fn errors_name_the_token() {
    let cases = [
        ("cache 3o", "Corefile:2:8: cache: TTL \"3o\": expected seconds (1-4294967295)"),
        ("cache 0", "Corefile:2:8: cache: TTL \"0\": expected seconds (1-4294967295)"),
        ("cache -5", "Corefile:2:8: cache: TTL \"-5\": expected seconds (1-4294967295)"),
        ("cache 30 a..b", "Corefile:2:11: cache: zone \"a..b\": expected a domain name"),
        ("cache {\n success\n }", "Corefile:3:2: cache: success: expected CAPACITY [TTL] [MINTTL]"),
        ("cache {\n success 0\n }", "Corefile:3:10: cache: success CAPACITY \"0\": expected a positive number of entries"),
        ("cache {\n denial 10 x\n }", "Corefile:3:12: cache: denial TTL \"x\": expected seconds (1-4294967295)"),
        ("cache {\n denial 10 20 -1\n }", "Corefile:3:15: cache: denial MINTTL \"-1\": expected seconds (0-4294967295)"),
        ("cache {\n success 10 20 1 9\n }", "Corefile:3:18: cache: success \"9\": too many arguments (expected CAPACITY [TTL] [MINTTL])"),
        ("cache {\n prefetch\n }", "Corefile:3:2: cache: prefetch: expected AMOUNT [[DURATION] [PERCENTAGE%]]"),
        ("cache {\n prefetch 0\n }", "Corefile:3:11: cache: prefetch AMOUNT \"0\": expected a positive number"),
        ("cache {\n prefetch 1 1x\n }", "Corefile:3:13: cache: prefetch DURATION \"1x\": expected a positive duration like 30s or 1m"),
        ("cache {\n prefetch 1 1m 5%\n }", "Corefile:3:16: cache: prefetch PERCENTAGE \"5%\": expected 10% to 90% (the % sign is required)"),
        ("cache {\n prefetch 1 1m 20\n }", "Corefile:3:16: cache: prefetch PERCENTAGE \"20\": expected 10% to 90% (the % sign is required)"),
        ("cache {\n prefetch 1 1m 20% x\n }", "Corefile:3:20: cache: prefetch \"x\": too many arguments (expected AMOUNT [[DURATION] [PERCENTAGE%]])"),
        ("cache {\n serve_stale 1d\n }", "Corefile:3:14: cache: serve_stale DURATION \"1d\": expected a duration like 30s or 1h"),
        ("cache {\n serve_stale 1h later\n }", "Corefile:3:17: cache: serve_stale REFRESH_MODE \"later\": expected immediate or verify"),
        ("cache {\n serve_stale 1h verify x\n }", "Corefile:3:24: cache: serve_stale \"x\": too many arguments (expected [DURATION] [immediate|verify])"),
        ("cache {\n servfail\n }", "Corefile:3:2: cache: servfail: expected DURATION"),
        ("cache {\n servfail 6m\n }", "Corefile:3:11: cache: servfail DURATION \"6m\": expected at most 5m"),
        ("cache {\n servfail 5\n }", "Corefile:3:11: cache: servfail DURATION \"5\": expected a duration like 5s"),
        ("cache {\n servfail 5s 1\n }", "Corefile:3:14: cache: servfail \"1\": too many arguments (expected DURATION)"),
        ("cache {\n disable\n }", "Corefile:3:2: cache: disable: expected success or denial"),
        ("cache {\n disable errors\n }", "Corefile:3:10: cache: disable \"errors\": expected success or denial"),
        ("cache {\n disable denial a..b\n }", "Corefile:3:17: cache: zone \"a..b\": expected a domain name"),
        ("cache {\n keepttl 1\n }", "Corefile:3:10: cache: keepttl \"1\": expected no arguments"),
        ("cache {\n bogus 1\n }", "Corefile:3:2: cache: unknown option \"bogus\" (expected success, denial, prefetch, serve_stale, servfail, disable or keepttl)"),
        ("cache {\n success 10 {\n }\n }", "Corefile:3:2: cache: success: unexpected block"),
    ];
    for (directive, want) in cases {
        let text = format!(".:53 {{\n {directive}\n}}\n");
        let got = parse_text(&text, &["."]).expect_err(directive).to_string();
        assert_eq!(got, want, "{directive}");
    }
}

#[test]
fn go_durations() {
    let ok = [
        ("0", 0.0),
        ("300ms", 0.3),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("2m", 120.0),
        ("10us", 0.00001),
    ];
    for (text, secs) in ok {
        assert_eq!(
            parse_duration(text),
            Some(Duration::from_secs_f64(secs)),
            "{text}"
        );
    }
    for bad in ["", "5", "-1s", "1d", "s", "1s5", ".s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn setup_registers_the_plugin() {
    let file = corefile::parse("Corefile", ".:53 {\n cache 30\n}\n").expect("parses");
    let metrics = Arc::new(Metrics::default());
    let zones = vec![".".to_owned()];
    let s = Setup {
        zones: &zones,
        dir: Path::new("/nonexistent"),
        metrics: &metrics,
        server: "dns://:53",
    };
    let plugin = setup(&file.blocks[0].directives[0], &s).expect("valid");
    assert_eq!(plugin.name(), "cache");
    let mut text = String::new();
    metrics.registry.render(&mut text);
    for family in [
        "coredns_cache_entries",
        "coredns_cache_requests_total",
        "coredns_cache_hits_total",
        "coredns_cache_misses_total",
        "coredns_cache_prefetch_total",
        "coredns_cache_drops_total",
        "coredns_cache_served_stale_total",
        "coredns_cache_evictions_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} in\n{text}"
        );
    }
}

#[test]
fn readme_examples_parse() {
    let mut blocks = 0;
    for text in corefile::readme_examples(include_str!("README.md")) {
        let file = corefile::parse("README.md", text)
            .unwrap_or_else(|e| panic!("example does not parse: {e}\n{text}"));
        for block in &file.blocks {
            let zones: Vec<String> = block.keys.iter().flat_map(|k| k.zones.clone()).collect();
            for d in block.directives_named("cache") {
                parse(d, &zones).unwrap_or_else(|e| panic!("{e}\n{text}"));
            }
        }
        blocks += 1;
    }
    assert!(blocks >= 3, "README examples found: {blocks}");
}

// ---- serving ----

#[tokio::test]
async fn hit_after_miss_with_the_query_id() {
    let h = Harness::new("cache", |req, _| Ok(answer(req, 300)));
    let first = h.ask_a("www.example.org.").await;
    assert_eq!(h.calls(), 1);
    let mut req = request("WWW.Example.ORG.", RecordType::A);
    req.header.set_id(7);
    let second = h.ask(req).await;
    assert_eq!(
        h.calls(),
        1,
        "the second query is a hit (names compare lower-case)"
    );
    assert_eq!(second.id(), 7);
    assert_eq!(second.queries()[0].name(), &name("WWW.Example.ORG."));
    assert_eq!(second.answers()[0].data(), first.answers()[0].data());
    assert_eq!(second.response_code(), ResponseCode::NoError);
    assert_eq!(h.metric(&format!("coredns_cache_hits_total{SUCCESS}")), 1.0);
    assert_eq!(h.metric(&format!("coredns_cache_misses_total{ROOT}")), 1.0);
    assert_eq!(
        h.metric(&format!("coredns_cache_requests_total{ROOT}")),
        2.0
    );
    assert_eq!(h.metric(&format!("coredns_cache_entries{SUCCESS}")), 1.0);
    // Another type, another class: other keys.
    h.ask(request("www.example.org.", RecordType::AAAA)).await;
    let mut chaos = request("www.example.org.", RecordType::A);
    chaos.question.set_query_class(DNSClass::CH);
    h.ask(chaos).await;
    assert_eq!(h.calls(), 3);
}

#[tokio::test]
async fn ttls_decay_and_items_expire() {
    let h = Harness::new("cache", |req, _| {
        let mut m = answer(req, 300);
        m.add_answer(a(req.question.name(), 100, 2));
        m.add_name_server(soa(50, 3600));
        Ok(m)
    });
    // Cached for the smallest TTL (50 s); no TTL sent outlives the item.
    assert_eq!(ttls(&h.ask_a("a.example.").await), [50, 50, 50]);
    h.advance(10.9);
    assert_eq!(
        ttls(&h.ask_a("a.example.").await),
        [40, 40, 40],
        "whole seconds"
    );
    h.advance(39.0);
    let m = h.ask_a("a.example.").await;
    assert_eq!(ttls(&m), [1, 1, 1]);
    assert_eq!(h.calls(), 1);
    h.advance(0.1);
    assert_eq!(
        ttls(&h.ask_a("a.example.").await),
        [50, 50, 50],
        "fetched again"
    );
    assert_eq!(h.calls(), 2);

    // Records below the item's TTL decay to 0 on their own.
    let h = Harness::new("cache", |req, _| {
        let mut m = answer(req, 2);
        m.add_answer(a(req.question.name(), 8, 2));
        Ok(m)
    });
    assert_eq!(
        ttls(&h.ask_a("b.example.").await),
        [2, 5],
        "MINTTL 5 keeps it 5 s"
    );
    h.advance(3.0);
    assert_eq!(ttls(&h.ask_a("b.example.").await), [0, 2]);
    assert_eq!(h.calls(), 1);
}

#[tokio::test]
async fn ttl_bounds() {
    // `cache 10`: at most 10 s, the answer of the miss already capped.
    let h = Harness::new("cache 10", |req, _| Ok(answer(req, 300)));
    assert_eq!(ttls(&h.ask_a("a.example.").await), [10]);
    h.advance(9.0);
    assert_eq!(ttls(&h.ask_a("a.example.").await), [1]);
    h.advance(1.0);
    h.ask_a("a.example.").await;
    assert_eq!(h.calls(), 2, "expired after 10 s");

    // MINTTL: a 1 s record stays 5 s, its TTL at 0 after the first second.
    let h = Harness::new("cache", |req, _| Ok(answer(req, 1)));
    h.ask_a("a.example.").await;
    h.advance(4.5);
    assert_eq!(ttls(&h.ask_a("a.example.").await), [0]);
    assert_eq!(h.calls(), 1);
    h.advance(0.5);
    h.ask_a("a.example.").await;
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn denial_ttl_comes_from_the_soa() {
    // NXDOMAIN: min(SOA TTL 3600, MINIMUM 60) = 60 s.
    let h = Harness::new("cache", |req, _| Ok(nxdomain(req, 3600, 60)));
    let first = h.ask_a("missing.example.org.").await;
    assert_eq!(first.response_code(), ResponseCode::NXDomain);
    assert_eq!(ttls(&first), [60], "the SOA's TTL capped at the cache TTL");
    h.advance(59.0);
    let hit = h.ask_a("missing.example.org.").await;
    assert_eq!(hit.response_code(), ResponseCode::NXDomain);
    assert_eq!(ttls(&hit), [1]);
    assert!(matches!(hit.name_servers()[0].data(), RData::SOA(_)));
    assert_eq!(h.calls(), 1);
    assert_eq!(h.metric(&format!("coredns_cache_hits_total{DENIAL}")), 1.0);
    assert_eq!(h.metric(&format!("coredns_cache_entries{DENIAL}")), 1.0);
    assert_eq!(h.metric(&format!("coredns_cache_entries{SUCCESS}")), 0.0);
    h.advance(1.0);
    h.ask_a("missing.example.org.").await;
    assert_eq!(h.calls(), 2);

    // NODATA (NOERROR, no answers): the SOA's TTL when smaller than MINIMUM; denial TTL cap.
    let h = Harness::new("cache 20", |req, _| {
        let mut m = req.reply(ResponseCode::NoError);
        m.add_name_server(soa(30, 300));
        Ok(m)
    });
    assert_eq!(ttls(&h.ask_a("nodata.example.org.").await), [20]);
    h.advance(19.0);
    assert_eq!(ttls(&h.ask_a("nodata.example.org.").await), [1]);
    assert_eq!(h.calls(), 1);
    assert_eq!(h.metric(&format!("coredns_cache_hits_total{DENIAL}")), 1.0);
}

#[tokio::test]
async fn an_answer_replaces_a_denial_of_the_same_key() {
    let h = Harness::new("cache", |req, n| {
        if n == 0 {
            Ok(nxdomain(req, 10, 10))
        } else {
            Ok(answer(req, 300))
        }
    });
    h.ask_a("flip.example.").await;
    h.advance(10.0);
    h.ask_a("flip.example.").await;
    assert_eq!(h.cache.len(), (1, 0), "the expired denial is gone");
    assert_eq!(h.metric(&format!("coredns_cache_entries{DENIAL}")), 0.0);
    assert_eq!(h.metric(&format!("coredns_cache_entries{SUCCESS}")), 1.0);
}

#[tokio::test]
async fn capacity_evicts() {
    let mut config = Config::new(vec![".".into()]);
    // Under four entries per shard the table is one shard: evictions are exact.
    config.success.capacity = 7;
    let h = Harness::with_config(config, |req, _| Ok(answer(req, 300)));
    for i in 0..20 {
        h.ask_a(&format!("n{i}.example.")).await;
    }
    let (success, denial) = h.cache.len();
    assert_eq!((success, denial), (7, 0));
    assert_eq!(
        h.metric(&format!("coredns_cache_evictions_total{SUCCESS}")),
        13.0
    );
    assert_eq!(h.metric(&format!("coredns_cache_entries{SUCCESS}")), 7.0);
    // The most recent name is always there (it evicted someone, nobody evicted it).
    h.ask_a("n19.example.").await;
    assert_eq!(h.calls(), 20);
}

#[tokio::test]
async fn only_names_in_the_cache_zones() {
    let config = parse_text(".:53 {\n cache example.org\n}\n", &["."]).expect("valid");
    let h = Harness::with_config(config, |req, _| Ok(answer(req, 300)));
    for _ in 0..2 {
        h.ask_a("www.Example.org.").await;
        h.ask_a("example.org.").await;
        h.ask_a("www.example.com.").await;
        h.ask_a("notexample.org.").await;
    }
    assert_eq!(h.calls(), 6, "two names cached, two not");
    let zone = "{server=\"dns://:53\",zone=\"example.org.\",view=\"\"}";
    assert_eq!(
        h.metric(&format!("coredns_cache_requests_total{zone}")),
        4.0
    );
    assert_eq!(h.metric(&format!("coredns_cache_misses_total{zone}")), 2.0);
}

#[tokio::test]
async fn dnssec_ok_and_checking_disabled_are_separate_keys() {
    let h = Harness::new("cache", |req, n| Ok(answer(req, 100 + n as u32)));
    let plain = request("www.example.", RecordType::A);
    let mut dnssec = plain.clone();
    dnssec.edns = Some(Edns {
        udp_size: 1232,
        dnssec_ok: true,
    });
    let mut no_do = plain.clone();
    no_do.edns = Some(Edns {
        udp_size: 1232,
        dnssec_ok: false,
    });
    let mut cd = plain.clone();
    cd.header.set_checking_disabled(true);
    assert_eq!(ttls(&h.ask(plain.clone()).await), [100]);
    assert_eq!(
        ttls(&h.ask(dnssec.clone()).await),
        [101],
        "DO: its own entry"
    );
    assert_eq!(ttls(&h.ask(cd.clone()).await), [102], "CD: its own entry");
    assert_eq!(
        ttls(&h.ask(no_do).await),
        [100],
        "EDNS without DO shares the plain one"
    );
    assert_eq!(ttls(&h.ask(dnssec).await), [101]);
    assert_eq!(ttls(&h.ask(cd).await), [102]);
    assert_eq!(h.calls(), 3);
}

#[tokio::test]
async fn keepttl_answers_the_ttls_as_received() {
    let h = Harness::new("cache 60 {\n keepttl\n}", |req, _| Ok(answer(req, 300)));
    assert_eq!(ttls(&h.ask_a("k.example.").await), [300]);
    h.advance(30.0);
    assert_eq!(ttls(&h.ask_a("k.example.").await), [300]);
    h.advance(30.0);
    h.ask_a("k.example.").await;
    assert_eq!(h.calls(), 2, "still gone after the cache TTL");
}

#[tokio::test]
async fn servfail_is_cached_for_its_duration() {
    let h = Harness::new("cache", |req, _| Ok(req.reply(ResponseCode::ServFail)));
    h.ask_a("broken.example.").await;
    h.advance(4.9);
    let m = h.ask_a("broken.example.").await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(h.calls(), 1);
    h.advance(0.1);
    h.ask_a("broken.example.").await;
    assert_eq!(h.calls(), 2, "5 s by default");

    let h = Harness::new("cache {\n servfail 0\n}", |req, _| {
        Ok(req.reply(ResponseCode::ServFail))
    });
    h.ask_a("broken.example.").await;
    h.ask_a("broken.example.").await;
    assert_eq!(h.calls(), 2, "servfail 0 disables it");
}

#[tokio::test]
async fn what_is_never_cached() {
    let h = Harness::new("cache", |req, _| {
        let label = req
            .question
            .name()
            .iter()
            .next()
            .unwrap_or_default()
            .to_vec();
        Ok(match label.as_slice() {
            b"refused" => req.reply(ResponseCode::Refused),
            b"tc" => {
                let mut m = answer(req, 300);
                m.set_truncated(true);
                m
            }
            b"other" => {
                let mut m = answer(req, 300);
                m.queries_mut()[0].set_name(name("elsewhere.example."));
                m
            }
            _ => answer(req, 300),
        })
    });
    for _ in 0..2 {
        h.ask_a("refused.example.").await;
        h.ask_a("tc.example.").await;
        h.ask_a("other.example.").await;
        h.ask(request("zone.example.", RecordType::AXFR)).await;
    }
    assert_eq!(h.calls(), 8);
    assert_eq!(h.metric(&format!("coredns_cache_drops_total{ROOT}")), 2.0);
    assert_eq!(h.cache.len(), (0, 0));
    // Errors of the chain go back as they are.
    let h = Harness::new("cache", |_, _| fail());
    assert!(h
        .try_ask(request("x.example.", RecordType::A))
        .await
        .is_err());
}

#[tokio::test]
async fn disable_by_type_and_zone() {
    let h = Harness::new("cache {\n disable success example.org\n}", |req, _| {
        if req.question.name().iter().next() == Some(b"nx") {
            Ok(nxdomain(req, 60, 60))
        } else {
            Ok(answer(req, 300))
        }
    });
    for _ in 0..2 {
        h.ask_a("www.example.org.").await;
        h.ask_a("nx.example.org.").await;
        h.ask_a("www.example.net.").await;
    }
    assert_eq!(
        h.calls(),
        4,
        "only the success under example.org goes on each time"
    );
}

#[tokio::test]
async fn prefetch_refreshes_popular_items_in_the_background() {
    let h = Harness::new("cache {\n prefetch 1 1m 10%\n}", |req, _| {
        Ok(answer(req, 100))
    });
    h.ask_a("hot.example.").await;
    h.advance(50.0);
    h.ask_a("hot.example.").await;
    h.settle(1).await;
    h.advance(41.0);
    // 9 s left of 100: below 10%.
    let m = h.ask_a("hot.example.").await;
    assert_eq!(ttls(&m), [9], "answered from the cache at once");
    h.settle(2).await;
    assert_eq!(
        h.metric(&format!("coredns_cache_prefetch_total{ROOT}")),
        1.0
    );
    h.advance(1.0);
    assert_eq!(
        ttls(&h.ask_a("hot.example.").await),
        [99],
        "the refreshed item"
    );
    h.settle(2).await;

    // Not popular enough: no refresh.
    let h = Harness::new("cache {\n prefetch 3 1m 10%\n}", |req, _| {
        Ok(answer(req, 100))
    });
    h.ask_a("cold.example.").await;
    h.advance(95.0);
    h.ask_a("cold.example.").await;
    h.settle(1).await;
    // Hits more than a minute apart do not add up.
    let h = Harness::new("cache {\n prefetch 2 10s 50%\n}", |req, _| {
        Ok(answer(req, 100))
    });
    h.ask_a("slow.example.").await;
    h.advance(60.0);
    h.ask_a("slow.example.").await;
    h.advance(11.0);
    h.ask_a("slow.example.").await;
    h.settle(1).await;
    h.advance(1.0);
    h.ask_a("slow.example.").await;
    h.settle(2).await;
}

#[tokio::test]
async fn serve_stale_immediate() {
    let h = Harness::new("cache {\n serve_stale 1m\n}", |req, n| {
        if n == 0 {
            Ok(answer(req, 30))
        } else {
            fail()
        }
    });
    h.ask_a("stale.example.").await;
    h.advance(40.0);
    let m = h.ask_a("stale.example.").await;
    assert_eq!(ttls(&m), [0], "stale, TTL 0");
    assert_eq!(m.response_code(), ResponseCode::NoError);
    h.settle(2).await;
    assert_eq!(
        h.metric(&format!("coredns_cache_served_stale_total{ROOT}")),
        1.0
    );
    // The refresh failed: the item stays and the next query tries again.
    assert_eq!(ttls(&h.ask_a("stale.example.").await), [0]);
    h.settle(3).await;
    // 30 s + 1 m after storing, it is too old to serve.
    h.advance(50.0);
    assert!(h
        .try_ask(request("stale.example.", RecordType::A))
        .await
        .is_err());
    assert_eq!(h.calls(), 4);

    // A refresh that works replaces the item.
    let h = Harness::new("cache {\n serve_stale\n}", |req, n| {
        Ok(answer(req, 30 + n as u32))
    });
    h.ask_a("stale.example.").await;
    h.advance(31.0);
    assert_eq!(ttls(&h.ask_a("stale.example.").await), [0]);
    h.settle(2).await;
    assert_eq!(ttls(&h.ask_a("stale.example.").await), [31]);
}

#[tokio::test]
async fn serve_stale_verify() {
    let h = Harness::new("cache {\n serve_stale 1h verify\n}", |req, n| match n {
        0 | 3 => Ok(answer(req, 30)),
        1 => fail(),
        _ => Ok(req.reply(ResponseCode::ServFail)),
    });
    h.ask_a("v.example.").await;
    h.advance(31.0);
    // next fails: the stale answer.
    let m = h.ask_a("v.example.").await;
    assert_eq!((h.calls(), ttls(&m)), (2, vec![0]));
    // next answers SERVFAIL: the stale answer again (and the SERVFAIL is not cached).
    let m = h.ask_a("v.example.").await;
    assert_eq!((h.calls(), ttls(&m)), (3, vec![0]));
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(
        h.metric(&format!("coredns_cache_served_stale_total{ROOT}")),
        2.0
    );
    // next answers: that answer, cached.
    let m = h.ask_a("v.example.").await;
    assert_eq!((h.calls(), ttls(&m)), (4, vec![30]));
    h.advance(1.0);
    assert_eq!(ttls(&h.ask_a("v.example.").await), [29]);
    assert_eq!(h.calls(), 4);
}

/// The rest of the chain for refresh tests: answers the first call at once, later ones when
/// the gate opens.
struct Gated {
    calls: AtomicUsize,
    gate: Arc<tokio::sync::Notify>,
}

impl Plugin for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n > 0 {
                self.gate.notified().await;
            }
            Ok(answer(&req, 100))
        })
    }
}

#[tokio::test]
async fn one_refresh_at_a_time() {
    let config = parse_text(".:53 {\n cache {\n  prefetch 1\n }\n}\n", &["."]).expect("valid");
    let metrics = Metrics::default();
    let (clock, hand) = Clock::manual();
    let cache: Arc<dyn Plugin> = Arc::new(Cache::new(config, &metrics.registry, "s", clock));
    let gated = Arc::new(Gated {
        calls: AtomicUsize::new(0),
        gate: Arc::new(tokio::sync::Notify::new()),
    });
    let chain: Vec<Arc<dyn Plugin>> = vec![cache, gated.clone()];
    let ctx = Ctx {
        client: "127.0.0.1:5353".parse().expect("addr"),
        local: "127.0.0.1:53".parse().expect("addr"),
        zone: Arc::from("."),
        received: Instant::now(),
    };
    let ask = || Next::chain(&chain).serve(&ctx, request("hot.example.", RecordType::A));
    let calls = || gated.calls.load(Ordering::SeqCst);
    ask().await.expect("miss");
    hand.advance(Duration::from_secs(91));
    assert_eq!(ttls(&ask().await.expect("hit")), [9]);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls(), 2, "the refresh is under way");
    hand.advance(Duration::from_millis(500));
    assert_eq!(
        ttls(&ask().await.expect("hit")),
        [9],
        "91.5 s: still 91 whole seconds"
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls(), 2, "no second refresh while one is under way");
    gated.gate.notify_one();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    hand.advance(Duration::from_secs(1));
    assert_eq!(
        ttls(&ask().await.expect("hit")),
        [99],
        "refreshed at 91.5 s"
    );
    assert_eq!(calls(), 2);
}

#[tokio::test]
async fn disable_without_a_question_in_the_answer() {
    let h = Harness::new("cache {\n disable success\n}", |req, _| {
        let mut m = answer(req, 300);
        m.take_queries();
        Ok(m)
    });
    h.ask_a("a.example.").await;
    h.ask_a("a.example.").await;
    assert_eq!(h.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_from_many_tasks() {
    let h = Arc::new(Harness::new("cache", |req, _| Ok(answer(req, 300))));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            for i in 0..2000 {
                let qname = format!("n{}.example.", (i * 7 + t) % 50);
                let m = h.ask_a(&qname).await;
                assert_eq!(m.answers()[0].name(), &name(&qname));
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(h.cache.len(), (50, 0));
    assert!((50..=200).contains(&h.calls()), "{} calls", h.calls());
    assert_eq!(
        h.metric(&format!("coredns_cache_requests_total{ROOT}")),
        8000.0
    );
    let hits = h.metric(&format!("coredns_cache_hits_total{SUCCESS}"));
    let misses = h.metric(&format!("coredns_cache_misses_total{ROOT}"));
    assert_eq!(hits + misses, 8000.0);
}

/// What the cache wrote to a (fake) kernel map: the live entries by (name, type).
#[derive(Default)]
struct FakeKernel {
    entries: std::sync::Mutex<
        std::collections::BTreeMap<(Vec<u8>, u16), dns_common::cache::CachedAnswer>,
    >,
    puts: AtomicUsize,
    removes: AtomicUsize,
}

impl KernelCache for FakeKernel {
    fn put(&self, name: &[u8], qtype: u16, value: &dns_common::cache::CachedAnswer) -> bool {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .expect("lock")
            .insert((name.to_vec(), qtype), *value);
        true
    }

    fn remove(&self, name: &[u8], qtype: u16) {
        self.removes.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .expect("lock")
            .remove(&(name.to_vec(), qtype));
    }
}

impl FakeKernel {
    fn names(&self) -> Vec<(String, u16)> {
        self.entries
            .lock()
            .expect("lock")
            .keys()
            .map(|(n, t)| (String::from_utf8_lossy(n).into_owned(), *t))
            .collect()
    }

    fn get(&self, wire: &[u8], qtype: u16) -> Option<dns_common::cache::CachedAnswer> {
        self.entries
            .lock()
            .expect("lock")
            .get(&(wire.to_vec(), qtype))
            .copied()
    }
}

fn linked(h: &Harness, single_address_only: bool) -> Arc<FakeKernel> {
    let kernel = Arc::new(FakeKernel::default());
    assert!(h.cache.link_kernel(KernelLink {
        sink: kernel.clone(),
        single_address_only,
    }));
    kernel
}

const WWW_WIRE: &[u8] = b"\x03www\x07example\x03org\x00";

#[tokio::test]
async fn kernel_gets_plain_address_answers_with_their_times() {
    let h = Harness::new("cache 60", |req, _| {
        let mut m = answer(req, 300);
        m.add_answer(a(req.question.name(), 300, 2));
        Ok(m)
    });
    let kernel = linked(&h, false);
    h.advance(3.5);
    h.ask_a("www.example.org.").await;
    let v = kernel.get(WWW_WIRE, 1).expect("written to the kernel");
    assert_eq!(
        (v.count, v.ttl),
        (2, 60),
        "two addresses, the TTL capped at 60"
    );
    assert_eq!(
        (v.decay_from_ns, v.expires_ns),
        (3_500_000_000, 63_500_000_000),
        "stored at 3.5 s of the (manual) clock, kept 60 s"
    );
    assert_eq!(v.addrs[0][0], u32::from_ne_bytes([10, 0, 0, 1]));
    assert_eq!(v.addrs[1][0], u32::from_ne_bytes([10, 0, 0, 2]));
    assert_eq!(v.flags[0] & 0x80, 0x80, "QR as userspace sends it");
    assert_eq!(
        v.name,
        dns_common::name::pack_name(WWW_WIRE).expect("a name"),
        "the lower-case name, for the collision check"
    );
}

#[tokio::test]
async fn kernel_never_gets_what_it_cannot_repeat() {
    let h = Harness::new("cache", |req, _| {
        let q = req.question.name().to_ascii();
        let mut m = req.reply(ResponseCode::NoError);
        match q.as_str() {
            "cname.example.org." => {
                let target = name("www.example.org.");
                m.add_answer(Record::from_rdata(
                    req.question.name().clone(),
                    300,
                    RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
                ));
                m.add_answer(a(&target, 300, 1));
            }
            "authority.example.org." => {
                m.add_answer(a(req.question.name(), 300, 1));
                m.add_name_server(soa(300, 300));
            }
            "nxdomain.example.org." => return Ok(nxdomain(req, 300, 300)),
            _ => {
                m.add_answer(a(req.question.name(), 300, 1));
            }
        }
        Ok(m)
    });
    let kernel = linked(&h, false);
    h.ask_a("cname.example.org.").await;
    h.ask_a("authority.example.org.").await;
    h.ask_a("nxdomain.example.org.").await;
    // The DO bit keys another entry.
    let mut dnssec = request("dnssec.example.org.", RecordType::A);
    dnssec.edns = Some(Edns {
        udp_size: 1232,
        dnssec_ok: true,
    });
    h.ask(dnssec).await;
    assert_eq!(h.calls(), 4);
    assert!(kernel.names().is_empty(), "{:?}", kernel.names());
    assert_eq!(kernel.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn kernel_follows_replacements_denials_and_evictions() {
    // An answer that becomes NXDOMAIN once refreshed; the table holds few entries.
    let mut config = Config::new(vec![".".into()]);
    config.success.capacity = 4;
    let h = Harness::with_config(config, |req, n| {
        if req.question.name().to_ascii() == "gone.example.org." && n > 0 {
            Ok(nxdomain(req, 300, 300))
        } else {
            Ok(answer(req, 10))
        }
    });
    let kernel = linked(&h, false);
    h.ask_a("gone.example.org.").await;
    assert_eq!(kernel.names().len(), 1);
    // Expired, asked again: now a denial, which takes the name out of the kernel.
    h.advance(11.0);
    h.ask_a("gone.example.org.").await;
    assert!(kernel.names().is_empty(), "{:?}", kernel.names());
    // More names than the table holds: the kernel never holds more than the table.
    for i in 0..32 {
        h.ask_a(&format!("n{i}.example.org.")).await;
        let (success, _) = h.cache.len();
        assert_eq!(
            kernel.names().len(),
            success,
            "the kernel follows the table"
        );
        assert!(success <= 4);
    }
    assert!(
        kernel.removes.load(Ordering::SeqCst) >= 28,
        "evictions deleted"
    );
    // A cache that goes away (reload) takes its answers out of the kernel.
    drop(h);
    assert!(kernel.names().is_empty(), "{:?}", kernel.names());
}

#[tokio::test]
async fn kernel_link_rules() {
    // With `loadbalance` before the cache, only one-address answers go to the kernel.
    let h = Harness::new("cache", |req, _| {
        let mut m = answer(req, 300);
        if req.question.name().to_ascii() == "two.example.org." {
            m.add_answer(a(req.question.name(), 300, 2));
        }
        Ok(m)
    });
    let kernel = linked(&h, true);
    h.ask_a("two.example.org.").await;
    h.ask_a("one.example.org.").await;
    assert_eq!(
        kernel.names(),
        [(
            String::from_utf8_lossy(b"\x03one\x07example\x03org\x00").into_owned(),
            1
        )]
    );
    // Linked once only.
    assert!(!h.cache.link_kernel(KernelLink {
        sink: kernel.clone(),
        single_address_only: false,
    }));
    // Not with `prefetch` (it counts hits) or `keepttl` (the kernel decays TTLs).
    for directive in ["cache {\nprefetch 2\n}", "cache {\nkeepttl\n}"] {
        let h = Harness::new(directive, |req, _| Ok(answer(req, 300)));
        assert!(
            !h.cache.link_kernel(KernelLink {
                sink: Arc::new(FakeKernel::default()),
                single_address_only: false,
            }),
            "{directive}"
        );
        assert!(!h.cache.is_kernel_linked());
    }
}
