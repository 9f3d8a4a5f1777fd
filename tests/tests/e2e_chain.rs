//! End-to-end: the userspace plugin chain (`kubernetes`, `cache`, `forward`, `hosts`, `reload`)
//! between real clients in a pod namespace and real Knot DNS upstreams in a third namespace.
//!
//! Needs root, iproute2, dig, kdig, getent, curl, knotd/knotc (Knot DNS) and the agent binary
//! (`DNS_AGENT_BIN`, set by `cargo xtask test`). Every test builds its own namespaces (distinct
//! prefixes) and upstreams; the guards stop the processes and remove the namespaces and
//! temporary files even when an assertion fails. Nothing here reaches the internet or reads the
//! machine's resolv.conf: the upstreams are the two Knot instances.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dns_agent_tests::agent::{path_str, sample_path, Agent, ClientOutput, Metrics, DIG_ONCE};
use dns_agent_tests::knot::{self, Knot};
use dns_agent_tests::netns::{Topology, UpstreamNet};

/// A service of the sample snapshot and its address (the agent's readiness probe).
const WEB: (&str, Ipv4Addr) = (
    "web.default.svc.cluster.local.",
    Ipv4Addr::new(10, 96, 10, 20),
);
/// TTL of the cluster zone's answers (the Corefile's `kubernetes { ttl 5 }`).
const CLUSTER_TTL: u32 = 5;
/// The cache's TTL cap (`cache 30`).
const CACHE_TTL: u32 = 30;
/// The cache's default MINTTL: an answer stays cached at least this long.
const CACHE_MIN_TTL: u64 = 5;

// ---------------------------------------------------------------------------------------------
// The topology: pod -> node (agent, kernel program) -> upstream namespace (two Knot instances).

/// The Corefile of these tests: the cluster zones answered by `kubernetes` (as the other
/// end-to-end tests), everything else cached and forwarded to the Knot instances in order.
/// `reload` adds `reload 2s`; `hosts` adds an entry for `reloaded.test` (10.9.9.9), other
/// names falling through to the cache and forward.
fn corefile_text(upstreams: &[Ipv4Addr], reload: bool, hosts: bool) -> String {
    let to: Vec<String> = upstreams.iter().map(Ipv4Addr::to_string).collect();
    let reload = if reload { "    reload 2s\n" } else { "" };
    let hosts = if hosts {
        "    hosts extra.hosts {\n        10.9.9.9 reloaded.test\n        fallthrough\n    }\n"
    } else {
        ""
    };
    format!(
        "cluster.local in-addr.arpa ip6.arpa {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fallthrough in-addr.arpa ip6.arpa
        ttl {CLUSTER_TTL}
    }}
}}
.:53 {{
    errors
{reload}{hosts}    cache {CACHE_TTL} {{
        serve_stale 1h
    }}
    forward . {} {{
        policy sequential
        health_check 500ms
        max_fails 1
    }}
}}
",
        to.join(" ")
    )
}

/// A temporary directory holding the Corefile (and the empty hosts file it may name), removed
/// on drop.
struct CorefileDir {
    dir: PathBuf,
}

impl CorefileDir {
    fn new(topo: &Topology) -> CorefileDir {
        let dir = std::env::temp_dir().join(format!("dns-agent-chain-{}", topo.node_ns()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // The hosts plugin's file: empty, so that only the Corefile's entries count (not the
        // machine's /etc/hosts).
        std::fs::write(dir.join("extra.hosts"), "").expect("writing extra.hosts");
        CorefileDir { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("Corefile")
    }

    /// Replaces the Corefile at once (a rename), so a reload never reads half of it.
    fn write(&self, text: &str) {
        let tmp = self.dir.join("Corefile.new");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        std::fs::rename(&tmp, self.path()).expect("renaming the Corefile into place");
    }
}

impl Drop for CorefileDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything one test runs on. Fields drop in order: the agent first, then the Knot
/// instances, the upstream namespace, the pod and node namespaces, the Corefile.
struct Chain {
    agent: Option<Agent>,
    knots: Vec<Knot>,
    net: UpstreamNet,
    topo: Topology,
    corefile: CorefileDir,
}

impl Chain {
    /// Builds the three namespaces, starts two Knot instances and the agent with the kernel
    /// program attached, running [`corefile_text`] (with `reload` when asked).
    fn start(name: &str, reload: bool) -> Chain {
        let topo = Topology::create_unique(name).expect("create topology");
        let corefile = CorefileDir::new(&topo);
        let net = topo.add_upstream(2).expect("create the upstream namespace");
        let knots: Vec<Knot> = net.addrs().iter().map(|a| Knot::start(&net, *a)).collect();
        let upstreams: Vec<Ipv4Addr> = knots.iter().map(Knot::addr).collect();
        corefile.write(&corefile_text(&upstreams, reload, false));
        let agent = Agent::start_with_corefile(&topo, &corefile.path(), &sample_path(), &[], WEB);
        Chain {
            agent: Some(agent),
            knots,
            net,
            topo,
            corefile,
        }
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("the agent runs")
    }

    fn upstreams(&self) -> Vec<Ipv4Addr> {
        self.knots.iter().map(Knot::addr).collect()
    }

    /// Zone queries (UDP, TCP) each Knot instance received so far.
    fn knot_queries(&self) -> Vec<(u64, u64)> {
        self.knots.iter().map(Knot::queries).collect()
    }

    /// Runs `client args...` in the pod against the service address (dig: one UDP packet
    /// unless the options say otherwise) and parses its output.
    fn ask(&self, client: Client, opts: &[&str], name: &str, qtype: &str) -> Reply {
        let out = self.run(client, opts, name, qtype);
        let what = format!("{client:?} {} {name} {qtype}", opts.join(" "));
        Reply::new(ClientOutput::parse(&what, &out))
    }

    /// Like [`Chain::ask`], `None` when the client got no reply.
    fn try_ask(&self, client: Client, opts: &[&str], name: &str, qtype: &str) -> Option<Reply> {
        let out = self.run(client, opts, name, qtype);
        let text = String::from_utf8_lossy(&out.stdout);
        (out.status.success() && text.contains("status:"))
            .then(|| Reply::new(ClientOutput::parse(name, &out)))
    }

    fn run(&self, client: Client, opts: &[&str], name: &str, qtype: &str) -> std::process::Output {
        let server = format!("@{}", self.topo.service_ip());
        let mut args: Vec<&str> = match client {
            Client::Dig => [server.as_str()].into_iter().chain(DIG_ONCE).collect(),
            Client::Kdig => vec![&server, "+retry=0", "+timeout=3", "+ignore", "+nostats"],
        };
        args.extend(opts);
        args.extend([name, qtype]);
        let cmd = match client {
            Client::Dig => "dig",
            Client::Kdig => "kdig",
        };
        self.topo
            .exec_in_pod(cmd, &args)
            .expect("running the DNS client")
    }

    /// `getent ahosts NAME` in the pod (glibc with the pod's resolv.conf): exit code and the
    /// distinct addresses.
    fn getent(&self, name: &str) -> (Option<i32>, BTreeSet<IpAddr>) {
        let out = self
            .topo
            .exec_in_pod("getent", &["ahosts", name])
            .expect("getent");
        let text = String::from_utf8_lossy(&out.stdout);
        let addrs = text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        (out.status.code(), addrs)
    }

    /// Stops the agent, checking that it exits cleanly on SIGTERM.
    fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Dig,
    Kdig,
}

/// One response as a client printed it.
struct Reply {
    out: ClientOutput,
    /// Answer records as `(name, ttl, type, data)`, names lower-cased.
    answer: Vec<(String, u32, String, String)>,
}

impl Reply {
    fn new(out: ClientOutput) -> Reply {
        let answer = out
            .answer
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert!(f.len() >= 5, "answer line {l:?}:\n{}", out.text);
                let ttl = f[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("TTL of {l:?}:\n{}", out.text));
                (f[0].to_lowercase(), ttl, f[3].to_string(), f[4..].join(" "))
            })
            .collect();
        Reply { out, answer }
    }

    fn status(&self) -> &str {
        &self.out.status
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.out.flags.iter().any(|f| f == flag)
    }

    /// The data of the answer records of type `rtype`.
    fn data(&self, rtype: &str) -> BTreeSet<String> {
        self.answer
            .iter()
            .filter(|(_, _, t, _)| t == rtype)
            .map(|(_, _, _, d)| d.clone())
            .collect()
    }

    /// The largest TTL in the answer section.
    fn max_ttl(&self) -> u32 {
        self.answer
            .iter()
            .map(|(_, ttl, _, _)| *ttl)
            .max()
            .unwrap_or(0)
    }

    /// Asserts NOERROR with exactly `addrs` as the A (or AAAA) records of the answer.
    fn expect_addrs<A: ToString>(&self, rtype: &str, addrs: &[A]) {
        let want: BTreeSet<String> = addrs.iter().map(ToString::to_string).collect();
        assert_eq!(self.status(), "NOERROR", "{}", self.out.text);
        assert_eq!(self.data(rtype), want, "{}", self.out.text);
    }
}

fn strings<A: ToString>(addrs: &[A]) -> BTreeSet<String> {
    addrs.iter().map(ToString::to_string).collect()
}

/// The value of metric `name` summed over its series, from the agent's metrics.
fn metric(chain: &Chain, name: &str) -> u64 {
    Metrics::scrape(&chain.topo).sum(name)
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// External names go through cache and forward to Knot (UDP over UDP, TCP over TCP, CNAME
/// chains and NXDOMAIN as Knot wrote them); the cluster zone is still answered locally, by the
/// kernel over UDP and by the kubernetes plugin over TCP.
#[test]
fn external_names_are_forwarded_and_cluster_names_stay_local() {
    let chain = Chain::start("e2e-chain-fwd", false);
    let www = chain.ask(Client::Dig, &[], knot::WWW, "A");
    www.expect_addrs("A", &knot::WWW_A);
    assert!(
        www.has_flag("aa") && !www.has_flag("ra"),
        "Knot's flags as it set them (authoritative, no recursion):\n{}",
        www.out.text
    );
    assert!(
        (1..=CACHE_TTL).contains(&www.max_ttl()),
        "the zone's TTL {} is capped by the cache's {CACHE_TTL}:\n{}",
        knot::TTL,
        www.out.text
    );
    chain
        .ask(Client::Dig, &[], knot::WWW, "AAAA")
        .expect_addrs("AAAA", &[knot::WWW_AAAA]);
    assert_eq!(
        chain.knot_queries(),
        [(2, 0), (0, 0)],
        "policy sequential: both queries went to the first Knot over UDP"
    );

    // kdig over TCP: the agent asks Knot over TCP too.
    let mail = chain.ask(Client::Kdig, &["+tcp"], knot::MAIL.0, "A");
    mail.expect_addrs("A", &[knot::MAIL.1]);
    assert_eq!(
        chain.knot_queries()[0],
        (2, 1),
        "a TCP query is forwarded over TCP"
    );

    // A CNAME and its target, as Knot answers them.
    let alias = chain.ask(Client::Kdig, &[], knot::ALIAS, "A");
    assert_eq!(
        alias.data("CNAME"),
        strings(&[knot::WWW]),
        "{}",
        alias.out.text
    );
    alias.expect_addrs("A", &knot::WWW_A);

    // NXDOMAIN with Knot's SOA.
    let missing = chain.ask(Client::Dig, &[], "nosuch.example.org.", "A");
    assert_eq!(missing.status(), "NXDOMAIN", "{}", missing.out.text);
    assert!(
        missing
            .out
            .authority
            .iter()
            .any(|l| l.contains("SOA") && l.contains("hostmaster.example.org.")),
        "Knot's SOA in the authority section:\n{}",
        missing.out.text
    );

    // The cluster zone: the kernel over UDP, the kubernetes plugin over TCP, never Knot.
    let before = Metrics::scrape(&chain.topo).get("dns_agent_kernel_responses_total");
    let web = chain.ask(Client::Dig, &[], WEB.0, "A");
    web.expect_addrs("A", &[WEB.1]);
    assert_eq!(web.max_ttl(), CLUSTER_TTL, "{}", web.out.text);
    assert!(
        Metrics::scrape(&chain.topo).get("dns_agent_kernel_responses_total") > before,
        "the kernel answers the cluster name over UDP"
    );
    let web_tcp = chain.ask(Client::Kdig, &["+tcp"], WEB.0, "A");
    web_tcp.expect_addrs("A", &[WEB.1]);
    assert!(web_tcp.has_flag("aa"), "{}", web_tcp.out.text);
    let no_svc = chain.ask(
        Client::Dig,
        &["+tcp"],
        "nosuch.default.svc.cluster.local.",
        "A",
    );
    assert_eq!(no_svc.status(), "NXDOMAIN", "{}", no_svc.out.text);
    assert_eq!(
        chain.knot_queries(),
        [(4, 1), (0, 0)],
        "the cluster zone never reaches Knot (only alias and nosuch.example.org did)"
    );
    chain.stop();
}

/// glibc in the pod (search list, `ndots:5`): the search expansions of an external name get
/// NXDOMAIN from the cluster zone, then the absolute name is forwarded; a short service name
/// still resolves to the service address.
#[test]
fn glibc_search_list_reaches_the_upstream() {
    let chain = Chain::start("e2e-chain-glibc", false);
    // What glibc asks first: the name under each search domain, all in the cluster zone.
    for domain in [
        "default.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ] {
        let name = format!("www.example.org.{domain}.");
        let r = chain.ask(Client::Dig, &[], &name, "A");
        assert_eq!(r.status(), "NXDOMAIN", "{}", r.out.text);
    }
    assert_eq!(
        chain.knot_queries()[0],
        (0, 0),
        "expansions are not forwarded"
    );

    let (code, addrs) = chain.getent("www.example.org");
    let want: BTreeSet<IpAddr> = knot::WWW_A
        .iter()
        .map(|a| IpAddr::V4(*a))
        .chain([IpAddr::V6(knot::WWW_AAAA)])
        .collect();
    assert_eq!(code, Some(0), "getent ahosts www.example.org");
    assert_eq!(addrs, want, "getent ahosts www.example.org");
    let stats = chain.knots[0].stats();
    assert_eq!(
        (
            stats.get("query-type[A]").copied(),
            stats.get("query-type[AAAA]").copied()
        ),
        (Some(1), Some(1)),
        "Knot got the absolute name's A and AAAA once each: {stats:?}"
    );

    let (code, addrs) = chain.getent("web");
    assert_eq!(code, Some(0), "getent ahosts web");
    assert_eq!(
        addrs,
        BTreeSet::from([IpAddr::V4(WEB.1)]),
        "getent ahosts web"
    );

    // Not in the cluster zone, not in Knot's: not found (exit 2).
    let (code, addrs) = chain.getent("nosuch.example.org");
    assert_eq!(
        (code, addrs),
        (Some(2), BTreeSet::new()),
        "getent ahosts nosuch.example.org"
    );
    chain.stop();
}

/// A cached answer's TTL goes down by the time it spent in the cache, and the upstream is
/// asked once: the repeat is answered by the kernel (`DNS_CACHE`), as userspace's cache
/// answers it over TCP; with both upstreams stopped the cache still answers.
#[test]
fn cache_serves_repeats_with_decaying_ttl() {
    let mut chain = Chain::start("e2e-chain-cache", false);
    let first = chain.ask(Client::Dig, &[], knot::MAIL.0, "A");
    let first_done = Instant::now();
    first.expect_addrs("A", &[knot::MAIL.1]);
    let ttl1 = first.max_ttl();
    assert!((2..=CACHE_TTL).contains(&ttl1), "{}", first.out.text);
    assert_eq!(
        metric(&chain, "dns_agent_kernel_cache_entries"),
        1,
        "the answer was written to the kernel's cache"
    );
    assert!(metric(&chain, "dns_agent_kernel_cache_writes_total") >= 1);
    let hits_before = metric(&chain, "coredns_cache_hits_total");
    let from_bytes_before = metric(&chain, "dns_agent_userspace_cache_hits_from_bytes_total");
    let kernel_before = metric(&chain, "dns_agent_kernel_responses_total");

    thread::sleep(Duration::from_millis(2_100));
    let second_start = Instant::now();
    let second = chain.ask(Client::Dig, &[], knot::MAIL.0, "A");
    // The same question over TCP: userspace's cache, at the same time.
    let tcp = chain.ask(Client::Dig, &["+tcp"], knot::MAIL.0, "A");
    second.expect_addrs("A", &[knot::MAIL.1]);
    let elapsed = second_start.duration_since(first_done).as_secs() as u32;
    assert!(elapsed >= 2);
    assert!(
        second.max_ttl() <= ttl1 - elapsed,
        "TTL {} after {elapsed} s in the cache (first answer: {ttl1}):\n{}",
        second.max_ttl(),
        second.out.text
    );
    assert_eq!(
        chain.knot_queries(),
        [(1, 0), (0, 0)],
        "Knot saw the first query only"
    );
    assert_eq!(
        metric(&chain, "dns_agent_kernel_responses_total"),
        kernel_before + 1,
        "the repeat was answered by the kernel"
    );
    assert_eq!(
        metric(&chain, "dns_agent_userspace_cache_hits_from_bytes_total"),
        from_bytes_before,
        "not by userspace"
    );
    assert_eq!(
        metric(&chain, "coredns_cache_hits_total"),
        hits_before + 1,
        "the TCP query is userspace's cache hit"
    );
    // Kernel and userspace: the same flags, records and (within the second between the two
    // queries) TTL.
    assert_eq!(
        second.out.flags, tcp.out.flags,
        "{}\n{}",
        second.out.text, tcp.out.text
    );
    let strip = |r: &Reply| {
        r.answer
            .iter()
            .map(|(n, _, t, d)| (n.clone(), t.clone(), d.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&second),
        strip(&tcp),
        "{}\n{}",
        second.out.text,
        tcp.out.text
    );
    assert!(
        second.max_ttl() >= tcp.max_ttl() && second.max_ttl() <= tcp.max_ttl() + 1,
        "kernel TTL {} and userspace's {} a moment later:\n{}\n{}",
        second.max_ttl(),
        tcp.max_ttl(),
        second.out.text,
        tcp.out.text
    );

    // Nothing upstream any more: the cache alone answers, the TTL still going down.
    for k in &mut chain.knots {
        k.stop();
    }
    let third = chain.ask(Client::Dig, &[], knot::MAIL.0, "A");
    third.expect_addrs("A", &[knot::MAIL.1]);
    assert!(third.max_ttl() <= second.max_ttl(), "{}", third.out.text);
    chain.stop();
}

/// `serve_stale`: an expired answer is still served (TTL 0) while no upstream answers, where a
/// name never cached gets SERVFAIL.
#[test]
fn serve_stale_answers_when_every_upstream_is_down() {
    let mut chain = Chain::start("e2e-chain-stale", false);
    let fresh = chain.ask(Client::Dig, &[], knot::SHORT.0, "A");
    let cached_at = Instant::now();
    fresh.expect_addrs("A", &[knot::SHORT.1]);
    assert!(
        fresh.max_ttl() <= knot::SHORT_TTL,
        "the record's own TTL ({}) is below the cache's cap:\n{}",
        knot::SHORT_TTL,
        fresh.out.text
    );
    for k in &mut chain.knots {
        k.stop();
    }
    let uncached = chain.ask(Client::Dig, &["+time=6"], "n1.id.example.org.", "A");
    assert_eq!(
        uncached.status(),
        "SERVFAIL",
        "with both upstreams down a new name fails:\n{}",
        uncached.out.text
    );

    // The entry is kept for max(TTL, MINTTL); after that only serve_stale can answer. Ask
    // every 300 ms until past that: never a failure, and a stale answer at the end.
    let stale_before = metric(&chain, "coredns_cache_served_stale_total");
    let expiry = Duration::from_secs(CACHE_MIN_TTL.max(knot::SHORT_TTL.into()));
    let mut last = None;
    while cached_at.elapsed() < expiry + Duration::from_millis(700) {
        let r = chain.ask(Client::Dig, &[], knot::SHORT.0, "A");
        r.expect_addrs("A", &[knot::SHORT.1]);
        last = Some(r);
        thread::sleep(Duration::from_millis(300));
    }
    let last = last.expect("at least one query");
    assert_eq!(
        last.max_ttl(),
        0,
        "a stale answer has TTL 0:\n{}",
        last.out.text
    );
    assert!(
        metric(&chain, "coredns_cache_served_stale_total") > stale_before,
        "the last answers came from the expired entry"
    );
    chain.stop();
}

/// `policy sequential` with the first upstream stopped (refused at once) or silent (a timeout):
/// answers come from the second within one attempt's time, then straight from it while the
/// first is marked down; once the first is back its health check brings it back into use.
#[test]
fn forward_fails_over_to_the_second_upstream_and_back() {
    let mut chain = Chain::start("e2e-chain-failover", false);
    let [first, second] = chain.upstreams()[..] else {
        panic!("two upstreams")
    };
    // `<n>.id.example.org` answers the address of the Knot that answered; every name is new,
    // so the cache never answers.
    let mut n = 0;
    let mut who = |chain: &Chain| -> (Reply, Duration) {
        n += 1;
        let start = Instant::now();
        let r = chain.ask(
            Client::Dig,
            &["+time=6"],
            &format!("q{n}.{}", knot::ID_SUFFIX),
            "A",
        );
        (r, start.elapsed())
    };
    let (r, _) = who(&chain);
    r.expect_addrs("A", &[first]);

    chain.knots[0].stop();
    let (r, took) = who(&chain);
    r.expect_addrs("A", &[second]);
    assert!(
        took < Duration::from_millis(2_500),
        "failover took {took:?} (at most one attempt of 2 s)"
    );
    eprintln!("failover to the second upstream took {took:?}");
    // The first is now marked down (max_fails 1): straight to the second.
    for _ in 0..3 {
        let (r, took) = who(&chain);
        r.expect_addrs("A", &[second]);
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    chain.knots[0].restart(&chain.net);
    let back = Instant::now();
    loop {
        let (r, _) = who(&chain);
        assert_eq!(r.status(), "NOERROR", "{}", r.out.text);
        if r.data("A") == strings(&[first]) {
            eprintln!(
                "the first upstream answers again {:?} after its restart",
                back.elapsed()
            );
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(4),
            "the first upstream is not used again 4 s after it came back (health_check 500ms)"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // A silent upstream (frozen: no answer, no ICMP error) costs one attempt's time, 2 s.
    chain.knots[0].pause();
    let (r, took) = who(&chain);
    r.expect_addrs("A", &[second]);
    assert!(
        took < Duration::from_millis(3_000),
        "failover from a silent upstream took {took:?} (one attempt of 2 s)"
    );
    eprintln!("failover from a silent upstream took {took:?}");
    let (r, took) = who(&chain);
    r.expect_addrs("A", &[second]);
    assert!(took < Duration::from_millis(500), "marked down: {took:?}");
    chain.knots[0].resume();
    chain.stop();
}

/// A truncated UDP answer from Knot is fetched again over TCP: a client with a large EDNS
/// buffer gets all the records over UDP; a 512-byte client gets TC=1, then all over TCP.
#[test]
fn truncated_upstream_answers_are_retried_over_tcp() {
    let chain = Chain::start("e2e-chain-tc", false);
    let want = strings(&knot::big_addrs());
    let full = chain.ask(Client::Dig, &["+bufsize=4096"], knot::BIG, "A");
    assert_eq!(full.status(), "NOERROR", "{}", full.out.text);
    assert!(!full.has_flag("tc"), "{}", full.out.text);
    assert_eq!(
        full.data("A"),
        want,
        "all {} records over UDP",
        knot::BIG_COUNT
    );
    assert_eq!(
        chain.knot_queries()[0],
        (1, 1),
        "Knot answered UDP truncated (EDNS 1232), then the agent asked over TCP"
    );

    // The same (now cached) answer to clients with smaller buffers: TC=1.
    for opts in [&["+noedns"][..], &["+bufsize=1232"]] {
        let small = chain.ask(Client::Dig, opts, knot::BIG, "A");
        assert!(
            small.has_flag("tc"),
            "dig {opts:?}: the answer does not fit, TC=1:\n{}",
            small.out.text
        );
        assert!(small.answer.len() < knot::BIG_COUNT, "{}", small.out.text);
    }
    let kdig_small = chain.ask(Client::Kdig, &[], knot::BIG, "A");
    assert!(kdig_small.has_flag("tc"), "{}", kdig_small.out.text);
    for client in [Client::Dig, Client::Kdig] {
        let tcp = chain.ask(client, &["+tcp"], knot::BIG, "A");
        assert_eq!(tcp.data("A"), want, "{client:?} +tcp:\n{}", tcp.out.text);
    }
    chain.stop();
}

/// `reload`: a Corefile changed on disk is applied without a failed query; a broken one is
/// refused with its place, and the running configuration stays.
#[test]
fn reload_applies_a_new_corefile_and_keeps_the_old_one_when_broken() {
    let chain = Chain::start("e2e-chain-reload", true);
    let upstreams = chain.upstreams();
    let probe = |chain: &Chain| {
        chain
            .try_ask(Client::Dig, &[], "reloaded.test.", "A")
            .filter(|r| r.status() == "NOERROR")
            .map(|r| r.data("A"))
    };
    let missing = chain.ask(Client::Dig, &[], "reloaded.test.", "A");
    assert_eq!(
        missing.status(),
        "REFUSED",
        "forwarded to Knot, which refuses names outside its zone:\n{}",
        missing.out.text
    );

    // Queries in the background the whole time: the kernel (UDP) and the userspace chain
    // (TCP: kubernetes; UDP: cache and forward).
    let stop = Arc::new(AtomicBool::new(false));
    let pod = chain.topo.pod_ns().to_string();
    let server = format!("@{}", chain.topo.service_ip());
    let background = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut failures = Vec::new();
            let mut count = 0;
            let queries: [(&[&str], &str, &str); 3] = [
                (&[], WEB.0, "10.96.10.20"),
                (&["+tcp"], WEB.0, "10.96.10.20"),
                (&[], knot::MAIL.0, "192.0.2.20"),
            ];
            while !stop.load(Ordering::Relaxed) {
                for (opts, name, want) in queries {
                    let out = std::process::Command::new("ip")
                        .args([
                            "netns", "exec", &pod, "dig", "+short", "+tries=1", "+time=2",
                        ])
                        .arg(&server)
                        .args(opts)
                        .args([name, "A"])
                        .output()
                        .expect("dig");
                    count += 1;
                    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if text != want {
                        failures.push(format!("{name} {opts:?}: {text:?}"));
                    }
                }
            }
            (count, failures)
        })
    };

    chain.corefile.write(&corefile_text(&upstreams, true, true));
    let written = Instant::now();
    loop {
        if probe(&chain) == Some(strings(&[Ipv4Addr::new(10, 9, 9, 9)])) {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(6),
            "reloaded.test does not answer 6 s after the Corefile changed:\n{}",
            chain.agent().log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let applied_after = written.elapsed();

    // A broken Corefile: `cache 3o`; the error is at the token "3o" (column 11).
    let good = corefile_text(&upstreams, true, true);
    let broken = good.replace("    cache 30 {", "    cache 3o {");
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("cache 3o"))
        .expect("the cache line");
    let place = format!("{}:{line}:11", path_str(&chain.corefile.path()));
    let failed_before = metric(&chain, "coredns_reload_failed_total");
    chain.corefile.write(&broken);
    let written = Instant::now();
    while !chain.agent().log().contains(&place) {
        assert!(
            written.elapsed() < Duration::from_secs(6),
            "no reload error at {place} 6 s after the Corefile broke:\n{}",
            chain.agent().log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let log = chain.agent().log();
    let error = log
        .lines()
        .find(|l| l.contains(&place))
        .expect("the error line");
    assert!(
        error.contains("reload") && error.contains("cache") && error.contains("3o"),
        "the error names the reload, the plugin and the token: {error}"
    );
    assert_eq!(
        metric(&chain, "coredns_reload_failed_total"),
        failed_before + 1
    );
    // The previous configuration still serves.
    assert_eq!(
        probe(&chain),
        Some(strings(&[Ipv4Addr::new(10, 9, 9, 9)])),
        "the running Corefile stays after a broken one"
    );
    chain
        .ask(Client::Dig, &[], knot::WWW, "A")
        .expect_addrs("A", &knot::WWW_A);

    stop.store(true, Ordering::Relaxed);
    let (count, failures) = background.join().expect("the background queries");
    assert!(
        failures.is_empty(),
        "{} of {count} background queries failed during the reloads: {failures:#?}",
        failures.len()
    );
    assert!(count >= 30, "only {count} background queries");
    eprintln!(
        "reload applied after {applied_after:?}; {count} background queries; refused: {error}"
    );
    chain.stop();
}
