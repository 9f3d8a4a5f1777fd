//! End-to-end: the agent in a node namespace answering real clients (dig, kdig, glibc) in a pod namespace.
//!
//! Needs root, iproute2, dig, kdig, curl and the agent binary (`DNS_AGENT_BIN`, set by
//! `cargo xtask test`). Every test builds its own namespaces (distinct prefixes), so they may run
//! in parallel; the guards tear everything down even when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dns_agent_tests::agent::{
    agent_bin, normalize, path_str, sample_path, Agent, ClientOutput, Metrics, DIG_ONCE,
    E2E_COREFILE, METRICS_ADDR,
};
use dns_agent_tests::expected::{self, ARecords, AaaaRecords};
use dns_agent_tests::netns::{Process, Topology};

const TTL: u32 = 5;
/// Most addresses the kernel program answers with (`ARecords::addrs_be`).
const KERNEL_MAX_ADDRS: usize = dns_common::records::MAX_ADDRS;

// ---------------------------------------------------------------------------------------------
// Fixtures: paths, the expected records, the agent process, metrics.

fn sample_records() -> ARecords {
    let path = sample_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    expected::a_records(&text, "cluster.local")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sample_aaaa_records() -> AaaaRecords {
    let path = sample_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    expected::aaaa_records(&text, "cluster.local")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether the kernel can answer `name` with `n` addresses without EDNS (512-byte limit).
fn kernel_answerable(name: &str, n: usize) -> bool {
    // header + question (wire name = len + 1 bytes) + n answers of 16 bytes.
    n <= KERNEL_MAX_ADDRS && 12 + name.len() + 1 + 4 + 16 * n <= 512
}

/// Every program attached to the node-side veth: XDP (`ip link`), TC filters (`tc filter`) and
/// TCX links (asked from the kernel: neither `tc` nor this bpftool lists them).
fn attached_programs(topo: &Topology) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["ingress", "egress"] {
        let tc = topo
            .exec_in_node("tc", &["filter", "show", "dev", topo.node_if(), dir])
            .expect("tc");
        let text = String::from_utf8_lossy(&tc.stdout);
        if !text.trim().is_empty() {
            found.push(format!("tc {dir}: {}", text.trim()));
        }
    }
    let link = topo
        .exec_in_node("ip", &["link", "show", "dev", topo.node_if()])
        .expect("ip link");
    let link_text = String::from_utf8_lossy(&link.stdout);
    assert!(link.status.success(), "{} is gone", topo.node_if());
    found.extend(
        link_text
            .lines()
            .filter(|l| l.contains("prog/xdp"))
            .map(|l| format!("xdp: {}", l.trim())),
    );
    found.extend(tcx_programs(topo));
    found
}

/// Names of the TCX programs on the node-side veth, queried from a thread moved into the node
/// namespace (a namespace switch only affects the calling thread, which then ends).
fn tcx_programs(topo: &Topology) -> Vec<String> {
    use std::os::fd::AsRawFd as _;

    use aya::programs::tc::{SchedClassifier, TcAttachType};

    let ns_path = Path::new("/run/netns").join(topo.node_ns());
    let iface = topo.node_if().to_string();
    thread::spawn(move || {
        let ns = File::open(&ns_path).unwrap_or_else(|e| panic!("{}: {e}", ns_path.display()));
        // SAFETY: setns on a valid namespace fd changes only this thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns {}: {}",
            ns_path.display(),
            std::io::Error::last_os_error()
        );
        let mut names = Vec::new();
        for at in [TcAttachType::Ingress, TcAttachType::Egress] {
            let (_, progs) = SchedClassifier::query_tcx(&iface, at)
                .unwrap_or_else(|e| panic!("querying TCX {at:?} on {iface}: {e}"));
            names.extend(
                progs
                    .iter()
                    .map(|p| format!("tcx {at:?}: {}", p.name_as_str().unwrap_or("?"))),
            );
        }
        names
    })
    .join()
    .expect("the TCX query thread panicked")
}

/// Asserts that nothing (XDP, TC or TCX) is attached to the node-side veth.
fn assert_detached(topo: &Topology, context: &str) {
    let found = attached_programs(topo);
    assert!(
        found.is_empty(),
        "{context}: programs left on {}: {found:?}",
        topo.node_if()
    );
}

/// Asserts that nothing answers on the service address any more: no agent, no kernel program
/// answering from a map left behind (the node's ICMP port-unreachable comes back).
fn assert_nothing_answers(topo: &Topology, context: &str) {
    let server = format!("@{}", topo.service_ip());
    let out = topo
        .exec_in_pod(
            "dig",
            &[
                "+tries=1",
                "+time=2",
                &server,
                "web.default.svc.cluster.local",
                "A",
            ],
        )
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("connection refused"),
        "{context}: something still answers on the service address:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// DNS clients and their output.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Dig,
    Kdig,
}

/// What a query must get.
#[derive(Clone, Debug)]
enum Expect {
    /// Answered by the kernel (when it runs) with these addresses (A or AAAA), in this order.
    Kernel(Vec<IpAddr>),
    /// Answered by the kernel (when it runs) NODATA: the name has addresses of the other type
    /// only, or none at all and is at most three labels above the zone (issue 5); NOERROR, no
    /// answer, the zone's SOA.
    KernelNoData,
    /// Answered by the kernel (when it runs) NXDOMAIN: the name, or its ancestor three labels
    /// above the zone, does not exist (issue 5); no answer, the zone's SOA.
    KernelNxDomain,
    /// Passed up by the kernel for `reason`, answered by userspace with `status`, `answers` records
    /// in the answer section and these extra header flags (e.g. "tc").
    Passed {
        reason: &'static str,
        status: &'static str,
        answers: usize,
        tc: bool,
    },
}

impl Expect {
    /// Whether the kernel answers the query (when it runs).
    fn answered_in_kernel(&self) -> bool {
        matches!(
            self,
            Expect::Kernel(_) | Expect::KernelNoData | Expect::KernelNxDomain
        )
    }
}

#[derive(Clone, Debug)]
struct Query {
    tool: Tool,
    name: String,
    qtype: &'static str,
    opts: Vec<&'static str>,
    expect: Expect,
}

impl Query {
    fn new(
        tool: Tool,
        name: &str,
        qtype: &'static str,
        opts: &[&'static str],
        expect: Expect,
    ) -> Query {
        Query {
            tool,
            name: name.to_string(),
            qtype,
            opts: opts.to_vec(),
            expect,
        }
    }

    fn describe(&self) -> String {
        let tool = if self.tool == Tool::Dig {
            "dig"
        } else {
            "kdig"
        };
        format!(
            "{tool} {} {} {}",
            self.name,
            self.qtype,
            self.opts.join(" ")
        )
    }

    fn edns(&self) -> bool {
        match self.tool {
            Tool::Dig => !self.opts.contains(&"+noedns"),
            Tool::Kdig => self
                .opts
                .iter()
                .any(|o| o.starts_with("+edns") || *o == "+dnssec" || o.starts_with("+bufsize")),
        }
    }

    /// Runs the query once (one UDP packet: no retries, no TCP fallback) from the pod.
    fn run(&self, topo: &Topology) -> Reply {
        self.run_to(topo, IpAddr::V4(topo.service_ip()))
    }

    /// [`Query::run`] to service address `service` (IPv6: `-6`, over IPv6).
    fn run_to(&self, topo: &Topology, service: IpAddr) -> Reply {
        let server = format!("@{service}");
        let mut args: Vec<&str> = match self.tool {
            Tool::Dig => [server.as_str()].into_iter().chain(DIG_ONCE).collect(),
            Tool::Kdig => vec![&server, "+retry=0", "+timeout=3", "+ignore", "+nostats"],
        };
        if service.is_ipv6() {
            args.push("-6");
        }
        args.extend(self.opts.iter().copied());
        args.extend([self.name.as_str(), self.qtype]);
        let cmd = if self.tool == Tool::Dig {
            "dig"
        } else {
            "kdig"
        };
        let out = topo
            .exec_in_pod(cmd, &args)
            .expect("running the DNS client");
        Reply::parse(self, &out)
    }
}

/// One client's view of a response.
#[derive(Clone, Debug, Default)]
struct Reply {
    text: String,
    status: String,
    flags: Vec<String>,
    question: Vec<String>,
    answer: Vec<Vec<String>>,
    authority: Vec<Vec<String>>,
    /// The OPT pseudo-section's lines, if any.
    opt: Vec<String>,
}

impl Reply {
    fn parse(q: &Query, out: &Output) -> Reply {
        let o = ClientOutput::parse(&q.describe(), out);
        Reply {
            answer: o.answer.iter().map(|l| fields(l)).collect(),
            authority: o.authority.iter().map(|l| fields(l)).collect(),
            text: o.text,
            status: o.status,
            flags: o.flags,
            question: o.question,
            opt: o.opt,
        }
    }

    /// The output with everything that may differ between two equal responses removed: the ID,
    /// timing and server lines (dig's and kdig's), and the SOA serial.
    fn normalized(&self) -> String {
        normalize(&self.text, &[";; Received", ";; Time", ";; From"])
    }
}

fn fields(l: &str) -> Vec<String> {
    l.split_whitespace().map(str::to_string).collect()
}

/// Checks one reply against what its query expects (either path).
fn check_reply(q: &Query, r: &Reply) {
    let what = q.describe();
    let has = |f: &str| r.flags.iter().any(|x| x == f);
    // Header rules shared by every answer inside the zone.
    assert!(has("qr"), "{what}: QR not set:\n{}", r.text);
    assert!(!has("ra") && !has("ad"), "{what}: RA/AD set:\n{}", r.text);
    assert_eq!(
        has("rd"),
        !q.opts.contains(&"+norec") && !q.opts.contains(&"+norecurse"),
        "{what}: RD not copied:\n{}",
        r.text
    );
    assert_eq!(
        has("cd"),
        q.opts.contains(&"+cd") || q.opts.contains(&"+cdflag"),
        "{what}: CD not copied:\n{}",
        r.text
    );
    // The question comes back as sent, case included (kdig prints names lower-cased, so only
    // dig's output can show the case).
    let mut qname = if q.name.ends_with('.') {
        q.name.clone()
    } else {
        format!("{}.", q.name)
    };
    if q.tool == Tool::Kdig {
        qname = qname.to_ascii_lowercase();
    }
    assert!(
        r.question.len() == 1 && fields(&r.question[0]).first() == Some(&qname),
        "{what}: question not echoed as sent ({qname}):\n{}",
        r.text
    );
    // OPT echoed iff the query had one, with DO copied, no options (no COOKIE, no NSID).
    if q.edns() {
        assert_eq!(
            r.opt.len(),
            1,
            "{what}: want exactly one OPT line (no options):\n{}",
            r.text
        );
        let opt = r.opt[0].to_ascii_lowercase();
        assert!(
            opt.contains("version: 0"),
            "{what}: EDNS version:\n{}",
            r.text
        );
        let want_do = q.opts.contains(&"+dnssec");
        let flags = opt
            .split("flags:")
            .nth(1)
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        assert_eq!(
            flags.split_whitespace().any(|f| f == "do"),
            want_do,
            "{what}: DO bit not copied:\n{}",
            r.text
        );
    } else {
        assert!(
            r.opt.is_empty(),
            "{what}: OPT in the reply to a query without one:\n{}",
            r.text
        );
    }
    match &q.expect {
        Expect::Kernel(addrs) => {
            assert_eq!(r.status, "NOERROR", "{what}:\n{}", r.text);
            assert!(
                has("aa") && !has("tc"),
                "{what}: want AA, no TC:\n{}",
                r.text
            );
            let got: Vec<IpAddr> = r
                .answer
                .iter()
                .map(|rr| {
                    assert!(
                        rr.len() == 5 && rr[2] == "IN" && rr[3] == q.qtype,
                        "{what}: not an {} record: {rr:?}",
                        q.qtype
                    );
                    assert_eq!(rr[0], qname, "{what}: owner name is not the question's");
                    assert_eq!(rr[1], TTL.to_string(), "{what}: TTL");
                    rr[4]
                        .parse()
                        .unwrap_or_else(|e| panic!("{what}: {}: {e}", rr[4]))
                })
                .collect();
            assert_eq!(&got, addrs, "{what}: answers (in order):\n{}", r.text);
            assert!(
                r.authority.is_empty(),
                "{what}: authority section:\n{}",
                r.text
            );
        }
        Expect::KernelNoData | Expect::KernelNxDomain => {
            let status = if matches!(q.expect, Expect::KernelNoData) {
                "NOERROR"
            } else {
                "NXDOMAIN"
            };
            assert_eq!(r.status, status, "{what}:\n{}", r.text);
            assert!(
                has("aa") && !has("tc") && r.answer.is_empty(),
                "{what}: want AA, no TC, no answer:\n{}",
                r.text
            );
            assert!(
                r.authority.len() == 1 && r.authority[0].get(3).map(String::as_str) == Some("SOA"),
                "{what}: want the zone SOA in authority:\n{}",
                r.text
            );
        }
        Expect::Passed {
            status,
            answers,
            tc,
            ..
        } => {
            assert_eq!(&r.status, status, "{what}:\n{}", r.text);
            assert_eq!(
                r.answer.len(),
                *answers,
                "{what}: answer count:\n{}",
                r.text
            );
            assert_eq!(has("tc"), *tc, "{what}: TC:\n{}", r.text);
            match *status {
                "REFUSED" => assert!(!has("aa"), "{what}: AA outside the zone:\n{}", r.text),
                // Answered by the server before any plugin, as CoreDNS does.
                "BADVERS" => assert!(!has("aa"), "{what}: AA on BADVERS:\n{}", r.text),
                _ => assert!(has("aa"), "{what}: no AA inside the zone:\n{}", r.text),
            }
            if (*status == "NXDOMAIN" || *answers == 0)
                && !matches!(*status, "REFUSED" | "BADVERS")
                && !*tc
            {
                assert!(
                    r.authority.len() == 1
                        && r.authority[0].get(3).map(String::as_str) == Some("SOA"),
                    "{what}: want the zone SOA in authority:\n{}",
                    r.text
                );
            }
        }
    }
}

/// A kernel answer with `addrs` (A or AAAA), in order.
fn kernel_expect<A: Copy + Into<IpAddr>>(addrs: &[A]) -> Expect {
    Expect::Kernel(addrs.iter().map(|&a| a.into()).collect())
}

/// Mixes the case of an ASCII name: every other letter upper-case.
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

/// The query set of the kernel/userspace comparison.
fn queries(records: &ARecords, aaaa: &AaaaRecords) -> Vec<Query> {
    use Tool::{Dig, Kdig};
    let (kernel, too_big): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|(name, addrs)| kernel_answerable(name, addrs.len()));
    assert!(
        kernel.len() >= 3,
        "the sample should hold several kernel-answerable names: {records:?}"
    );
    let mut qs = Vec::new();
    // Every kernel-answerable name, as dig sends it by default (EDNS with a COOKIE option).
    for (name, addrs) in &kernel {
        qs.push(Query::new(Dig, name, "A", &[], kernel_expect(addrs)));
    }
    // A ClusterIP name and a headless one with several addresses, in every variant.
    let single = kernel
        .iter()
        .find(|(_, a)| a.len() == 1)
        .expect("a name with one address");
    let multi = kernel
        .iter()
        .find(|(_, a)| a.len() > 1)
        .expect("a headless name with several addresses");
    for (name, addrs) in [single, multi] {
        let k = || kernel_expect(addrs);
        let mixed = mixed_case(name);
        for opts in [
            &["+noedns"][..],
            &["+dnssec"],
            &["+nocookie"],
            &["+norec"],
            &["+cd"],
            &["+bufsize=512"],
            &["+bufsize=4096", "+nsid"],
        ] {
            qs.push(Query::new(Dig, name, "A", opts, k()));
        }
        qs.push(Query::new(Dig, &mixed, "A", &[], k()));
        qs.push(Query::new(Dig, &mixed, "A", &["+noedns"], k()));
        qs.push(Query::new(
            Dig,
            name.trim_end_matches('.'),
            "A",
            &["+noedns"],
            k(),
        ));
        for opts in [
            &[][..],
            &["+edns"],
            &["+dnssec"],
            &["+norec"],
            &["+edns", "+nsid"],
        ] {
            qs.push(Query::new(Kdig, name, "A", opts, k()));
        }
        qs.push(Query::new(Kdig, &mixed, "A", &["+edns"], k()));
        // EDNS version 1: passed by the kernel, BADVERS from userspace (dig must not retry).
        for (tool, opts) in [
            (Dig, &["+edns=1", "+noednsnegotiation"][..]),
            (Kdig, &["+edns=1"]),
        ] {
            qs.push(Query::new(
                tool,
                name,
                "A",
                opts,
                Expect::Passed {
                    reason: "edns",
                    status: "BADVERS",
                    answers: 0,
                    tc: false,
                },
            ));
        }
        // AAAA (dual-stack services, issue 3): from the kernel when the name has AAAA
        // records, else NODATA from the kernel too (issue 5: the name is in DNS_A, flagged as
        // having no AAAA); in mixed case NODATA comes from userspace.
        for tool in [Dig, Kdig] {
            let expect = match aaaa.get(name.as_str()) {
                Some(v6) if !v6.is_empty() => kernel_expect(v6),
                _ => Expect::KernelNoData,
            };
            qs.push(Query::new(tool, name, "AAAA", &[], expect));
        }
        if aaaa.get(name.as_str()).is_none_or(Vec::is_empty) {
            qs.push(Query::new(
                Dig,
                &mixed,
                "AAAA",
                &[],
                Expect::Passed {
                    reason: "miss",
                    status: "NOERROR",
                    answers: 0,
                    tc: false,
                },
            ));
        }
        // Other types of an existing name from userspace: NODATA.
        for (tool, qtype, answers) in [(Dig, "TXT", 0), (Dig, "MX", 0)] {
            qs.push(Query::new(
                tool,
                name,
                qtype,
                &[],
                Expect::Passed {
                    reason: "qtype",
                    status: "NOERROR",
                    answers,
                    tc: false,
                },
            ));
        }
    }
    // Names the kernel does not hold.
    let miss = |status| Expect::Passed {
        reason: "miss",
        status,
        answers: 0,
        tc: false,
    };
    // Unknown names in lower case: NXDOMAIN from the kernel (its tree of the zone's upper
    // levels proves them absent; warming is a headless service with nothing ready, without
    // names); in another spelling from userspace.
    for name in [
        "nosuch.default.svc.cluster.local.",
        "warming.demo.svc.cluster.local.",
        "www.example.org.default.svc.cluster.local.",
        "www.example.org.svc.cluster.local.",
        "www.example.org.cluster.local.",
    ] {
        qs.push(Query::new(Dig, name, "A", &[], Expect::KernelNxDomain));
        qs.push(Query::new(Kdig, name, "AAAA", &[], Expect::KernelNxDomain));
    }
    qs.push(Query::new(
        Dig,
        "WEB.nosuchns.svc.cluster.local.",
        "A",
        &[],
        miss("NXDOMAIN"),
    ));
    // Below a service the kernel cannot tell (endpoint names are not in its tree).
    qs.push(Query::new(
        Kdig,
        "nosuch.web.default.svc.cluster.local.",
        "A",
        &[],
        miss("NXDOMAIN"),
    ));
    // ExternalName (issue 3): the CNAME from userspace.
    qs.push(Query::new(
        Dig,
        "search.demo.svc.cluster.local.",
        "A",
        &[],
        Expect::Passed {
            reason: "miss",
            status: "NOERROR",
            answers: 1,
            tc: false,
        },
    ));
    // Names without addresses of either type near the apex: NODATA from the kernel.
    qs.push(Query::new(
        Dig,
        "svc.cluster.local.",
        "A",
        &[],
        Expect::KernelNoData,
    ));
    qs.push(Query::new(
        Dig,
        "cluster.local.",
        "A",
        &["+noedns"],
        Expect::KernelNoData,
    ));
    qs.push(Query::new(Dig, "example.org.", "A", &[], miss("REFUSED")));
    qs.push(Query::new(
        Kdig,
        "kubernetes.io.",
        "A",
        &["+edns"],
        miss("REFUSED"),
    ));
    qs.push(Query::new(
        Dig,
        "cluster.local.",
        "SOA",
        &[],
        Expect::Passed {
            reason: "qtype",
            status: "NOERROR",
            answers: 1,
            tc: false,
        },
    ));
    // Too many addresses for the kernel (and for 512 bytes without EDNS).
    for (name, addrs) in &too_big {
        qs.push(Query::new(
            Dig,
            name,
            "A",
            &["+noedns"],
            Expect::Passed {
                reason: "too_big",
                status: "NOERROR",
                answers: 0,
                tc: true,
            },
        ));
        if 12 + name.len() + 5 + 16 * addrs.len() + 11 <= 1232 {
            qs.push(Query::new(
                Dig,
                name,
                "A",
                &["+bufsize=1232"],
                Expect::Passed {
                    reason: "too_big",
                    status: "NOERROR",
                    answers: addrs.len(),
                    tc: false,
                },
            ));
        }
    }
    qs
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn topology_pod_reaches_service_ip() {
    let node_ns;
    {
        let topo = Topology::create_unique("e2e-topo").expect("create topology");
        node_ns = topo.node_ns().to_string();
        // Nothing listens yet: the node's ICMP port-unreachable coming back proves both directions.
        let server = format!("@{}", topo.service_ip());
        let out = topo
            .exec_in_pod("dig", &["+tries=1", "+time=2", &server, "x."])
            .expect("run dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("connection refused"),
            "pod does not reach the service IP: {text}"
        );
        let resolv = topo.exec_in_pod("cat", &["/etc/resolv.conf"]).expect("cat");
        let resolv = String::from_utf8_lossy(&resolv.stdout);
        assert!(
            resolv.contains("search default.svc.cluster.local") && resolv.contains("ndots:5"),
            "{resolv}"
        );
    }
    assert!(
        !Path::new("/run/netns").join(&node_ns).exists(),
        "namespace left behind"
    );
}

#[test]
fn sample_snapshot_yields_the_documented_records() {
    let r = sample_records();
    let a = |s: &str| s.parse::<Ipv4Addr>().expect("address");
    assert_eq!(
        r.get("web.default.svc.cluster.local."),
        Some(&vec![a("10.96.10.20")])
    );
    assert_eq!(
        r.get("api.demo.svc.cluster.local."),
        Some(&vec![a("10.96.20.30")])
    );
    assert_eq!(
        r.get("db.demo.svc.cluster.local."),
        Some(&vec![a("10.244.1.11"), a("10.244.2.12"), a("10.244.3.14")])
    );
    assert!(!r.contains_key("warming.demo.svc.cluster.local."));
    assert!(!r.contains_key("search.demo.svc.cluster.local."));
    assert!(r
        .get("fanout.demo.svc.cluster.local.")
        .is_some_and(|v| v.len() > KERNEL_MAX_ADDRS));
}

/// The kernel answers A queries for known names (counted as kernel answers), passes everything
/// else to userspace (counted by reason), and userspace alone gives the same responses.
#[test]
fn kernel_and_userspace_answer_identically() {
    let records = sample_records();
    let qs = queries(&records, &sample_aaaa_records());
    let probe = (
        "web.default.svc.cluster.local.",
        "10.96.10.20".parse().expect("address"),
    );
    let topo = Topology::create_unique("e2e-paths").expect("create topology");

    // Kernel path.
    let agent = Agent::start(&topo, &[], probe);
    let attached = attached_programs(&topo);
    assert_eq!(
        attached.len(),
        1,
        "want one program on {} (auto mode: TC on a veth), got {attached:?}",
        topo.node_if()
    );
    let before = Metrics::scrape(&topo);
    let kernel_replies: Vec<Reply> = qs
        .iter()
        .map(|q| {
            let r = q.run(&topo);
            check_reply(q, &r);
            r
        })
        .collect();
    let after = Metrics::scrape(&topo);
    let kernel_sent = qs.iter().filter(|q| q.expect.answered_in_kernel()).count() as u64;
    assert_eq!(
        after.get("dns_agent_kernel_responses_total")
            - before.get("dns_agent_kernel_responses_total"),
        kernel_sent,
        "kernel answers: want exactly the {kernel_sent} kernel-answerable queries sent"
    );
    check_passed(&qs, &before, &after, "");
    // Over TCP (always userspace) the same questions get the kernel's UDP answers.
    for (q, kernel) in qs.iter().zip(&kernel_replies) {
        if q.tool != Tool::Dig || !q.opts.is_empty() || !q.expect.answered_in_kernel() {
            continue;
        }
        let mut tcp = q.clone();
        tcp.opts.push("+tcp");
        let r = tcp.run(&topo);
        assert_eq!(
            r.normalized(),
            kernel.normalized(),
            "{}: the TCP answer differs from the kernel's UDP answer",
            tcp.describe()
        );
    }
    agent.stop();
    assert_detached(&topo, "after SIGTERM");
    assert_nothing_answers(&topo, "after SIGTERM");

    // Userspace only: the same questions must get the same responses.
    let agent = Agent::start(&topo, &["--no-kernel"], probe);
    let before = Metrics::scrape(&topo);
    let mut mismatches = Vec::new();
    for (q, kernel) in qs.iter().zip(&kernel_replies) {
        let user = q.run(&topo);
        check_reply(q, &user);
        if user.normalized() != kernel.normalized() {
            mismatches.push(format!(
                "{}\n--- kernel path:\n{}\n--- userspace:\n{}",
                q.describe(),
                kernel.normalized(),
                user.normalized()
            ));
        }
    }
    let after = Metrics::scrape(&topo);
    assert_eq!(
        after.get("dns_agent_kernel_responses_total"),
        0,
        "--no-kernel but kernel answers counted"
    );
    assert_eq!(
        after.sum("dns_agent_userspace_responses_total")
            - before.sum("dns_agent_userspace_responses_total"),
        qs.len() as u64,
        "with --no-kernel userspace answers every query"
    );
    assert_detached(&topo, "with --no-kernel");
    agent.stop();
    assert!(
        mismatches.is_empty(),
        "{} responses differ between the paths:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// Over IPv6 (the service's IPv6 address, `dig -6`/`kdig -6`): the kernel answers what it
/// answers over IPv4 (A and AAAA, NODATA), counted as kernel answers that userspace never
/// sees; misses and everything else it passes reach userspace over IPv6 and are answered; and
/// every response is the one `--no-kernel` gives, and the one the same query gets over IPv4.
#[test]
fn ipv6_transport_kernel_and_userspace_answer_identically() {
    let records = sample_records();
    let qs = queries(&records, &sample_aaaa_records());
    let probe = (
        "web.default.svc.cluster.local.",
        "10.96.10.20".parse().expect("address"),
    );
    let topo = Topology::create_unique("e2e-ipv6").expect("create topology");
    let six = IpAddr::V6(topo.service_ip6());
    let four = IpAddr::V4(topo.service_ip());

    let agent = Agent::start(&topo, &[], probe);
    let before = Metrics::scrape(&topo);
    let kernel_replies: Vec<Reply> = qs
        .iter()
        .map(|q| {
            let r = q.run_to(&topo, six);
            check_reply(q, &r);
            r
        })
        .collect();
    let after = Metrics::scrape(&topo);
    let kernel_sent = qs.iter().filter(|q| q.expect.answered_in_kernel()).count() as u64;
    assert!(kernel_sent >= 10, "the IPv6 queries include kernel answers");
    assert_eq!(
        after.get("dns_agent_kernel_responses_total")
            - before.get("dns_agent_kernel_responses_total"),
        kernel_sent,
        "kernel answers over IPv6: want exactly the {kernel_sent} kernel-answerable queries"
    );
    let reasons = check_passed(&qs, &before, &after, " over IPv6");
    assert!(reasons.contains_key("miss"), "misses are asked too");
    // The kernel's answers over IPv6 are its answers over IPv4.
    let mut mismatches = Vec::new();
    for (q, six_reply) in qs.iter().zip(&kernel_replies) {
        if !q.expect.answered_in_kernel() {
            continue;
        }
        let over_v4 = q.run_to(&topo, four);
        if over_v4.normalized() != six_reply.normalized() {
            mismatches.push(format!(
                "{}\n--- over IPv6:\n{}\n--- over IPv4:\n{}",
                q.describe(),
                six_reply.normalized(),
                over_v4.normalized()
            ));
        }
    }
    agent.stop();
    assert!(
        mismatches.is_empty(),
        "{} kernel answers differ between IPv6 and IPv4:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );

    // Userspace only, over IPv6: the same responses.
    let agent = Agent::start(&topo, &["--no-kernel"], probe);
    let before = Metrics::scrape(&topo);
    for (q, kernel) in qs.iter().zip(&kernel_replies) {
        let user = q.run_to(&topo, six);
        check_reply(q, &user);
        if user.normalized() != kernel.normalized() {
            mismatches.push(format!(
                "{}\n--- kernel path:\n{}\n--- userspace:\n{}",
                q.describe(),
                kernel.normalized(),
                user.normalized()
            ));
        }
    }
    let after = Metrics::scrape(&topo);
    assert_eq!(
        after.sum("dns_agent_userspace_responses_total")
            - before.sum("dns_agent_userspace_responses_total"),
        qs.len() as u64,
        "with --no-kernel userspace answers every IPv6 query"
    );
    agent.stop();
    assert!(
        mismatches.is_empty(),
        "{} IPv6 responses differ between the paths:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// glibc in the pod resolves through the pod's resolv.conf (search list, ndots:5).
#[test]
fn glibc_resolves_service_names() {
    let topo = Topology::create_unique("e2e-glibc").expect("create topology");
    let probe = (
        "web.default.svc.cluster.local.",
        "10.96.10.20".parse().expect("address"),
    );
    let agent = Agent::start(&topo, &[], probe);
    let before = Metrics::scrape(&topo);
    for (query, want) in [
        ("web.default.svc.cluster.local", vec!["10.96.10.20"]),
        ("web", vec!["10.96.10.20"]),
        ("db.demo", vec!["10.244.1.11", "10.244.2.12", "10.244.3.14"]),
        // Dual-stack: glibc asks A and AAAA and gets both (issue 3).
        ("api.demo.svc", vec!["10.96.20.30", "fd00:10:96::2030"]),
    ] {
        let out = topo
            .exec_in_pod("getent", &["ahosts", query])
            .expect("getent");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "getent ahosts {query} failed ({}):\n{text}",
            out.status
        );
        let mut got: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("STREAM"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got, want, "getent ahosts {query}:\n{text}");
    }
    let out = topo
        .exec_in_pod("getent", &["ahosts", "nosuch"])
        .expect("getent");
    assert_eq!(
        out.status.code(),
        Some(2),
        "getent ahosts nosuch: want 2 (not found)"
    );
    let after = Metrics::scrape(&topo);
    assert!(
        after.get("dns_agent_kernel_responses_total")
            >= before.get("dns_agent_kernel_responses_total") + 4,
        "glibc's A queries should be answered by the kernel"
    );
    agent.stop();
}

/// Bad input: one line naming the problem, a non-zero exit, nothing left attached.
#[test]
fn bad_input_fails_cleanly() {
    let topo = Topology::create_unique("e2e-badin").expect("create topology");
    // Every case ends with a probe that expects the node's ICMP port-unreachable; the default
    // per-peer ICMP rate limit would swallow the later ones.
    let out = topo
        .exec_in_node("sysctl", &["-qw", "net.ipv4.icmp_ratelimit=0"])
        .expect("sysctl");
    assert!(out.status.success(), "sysctl icmp_ratelimit: {out:?}");
    let dir = std::env::temp_dir().join(format!("dns-agent-e2e-badin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad_yaml = dir.join("bad.yaml");
    std::fs::write(
        &bad_yaml,
        "apiVersion: v1\nkind: List\nitems: [ {kind: Service, \n",
    )
    .expect("write");
    let bad_yaml = path_str(&bad_yaml).to_string();
    let bad_object = dir.join("bad-object.yaml");
    std::fs::write(
        &bad_object,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
         spec: {clusterIP: 10.96.7.300, ports: [{port: 80}]}\n",
    )
    .expect("write");
    let bad_object = path_str(&bad_object).to_string();
    let sample = path_str(&sample_path()).to_string();
    let node_if = topo.node_if().to_string();
    let service = topo.service_ip().to_string();
    let base = |snapshot: &str, iface: &str, ip: &str| -> Vec<String> {
        [
            "--snapshot",
            snapshot,
            "--attach",
            iface,
            "--service-ip",
            ip,
            "--metrics-addr",
            METRICS_ADDR,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut two_ifaces = base(&sample, &node_if, &service);
    two_ifaces.extend(["--attach".to_string(), "nosuch0".to_string()]);
    let mut xdp_on_veth = base(&sample, &node_if, &service);
    xdp_on_veth.extend(["--attach-mode".to_string(), "xdp".to_string()]);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "missing snapshot",
            base("/nonexistent/snapshot.yaml", &node_if, &service),
            "/nonexistent/snapshot.yaml",
        ),
        (
            "malformed snapshot",
            base(&bad_yaml, &node_if, &service),
            &bad_yaml,
        ),
        (
            "unknown interface",
            base(&sample, "nosuch0", &service),
            "nosuch0",
        ),
        ("second interface unknown", two_ifaces, "nosuch0"),
        (
            "malformed object in the snapshot",
            base(&bad_object, &node_if, &service),
            "Service shop/web",
        ),
        ("forced XDP on a veth", xdp_on_veth, &node_if),
        (
            "bad service IP",
            base(&sample, &node_if, "10.96.0.300"),
            "10.96.0.300",
        ),
    ];
    for (what, args, named) in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = topo
            .command(topo.node_ns(), path_str(&agent_bin()), &refs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the agent");
        let mut proc = Process::new("dns-agent", child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while proc.try_wait().expect("polling the agent").is_none() {
            assert!(
                Instant::now() < deadline,
                "{what}: the agent is still running after 15 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let out = proc
            .stop(Duration::ZERO)
            .expect("collecting the agent's output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the agent exited with success:\n{stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: want one line on stderr, got:\n{stderr}"
        );
        assert!(
            lines[0].contains(named),
            "{what}: the message does not name {named}: {}",
            lines[0]
        );
        assert_detached(&topo, what);
        assert_nothing_answers(&topo, what);
        let pids = Command::new("ip")
            .args(["netns", "pids", topo.node_ns()])
            .output()
            .expect("ip netns pids");
        assert!(
            String::from_utf8_lossy(&pids.stdout).trim().is_empty(),
            "{what}: a process is left in the node namespace"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP reloads the snapshot: the kernel map follows by diff (changed, removed and added names)
/// without restarting the agent or detaching the program.
#[test]
fn sighup_reload_updates_the_kernel_map() {
    let sample = std::fs::read_to_string(sample_path()).expect("reading the sample");
    // web gets a new address, api is renamed to api2 (one name removed, one added).
    let changed = sample.replace("10.96.10.20", "10.96.10.21").replace(
        "    name: api\n    namespace: demo",
        "    name: api2\n    namespace: demo",
    );
    assert_ne!(
        changed, sample,
        "the sample changed shape: update this test's edits"
    );
    let old = expected::a_records(&sample, "cluster.local").expect("old records");
    let new = expected::a_records(&changed, "cluster.local").expect("new records");
    assert!(
        new.contains_key("api2.demo.svc.cluster.local.")
            && !new.contains_key("api.demo.svc.cluster.local."),
        "the rename did not take: {new:?}"
    );
    let dir = std::env::temp_dir().join(format!("dns-agent-e2e-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let snapshot = dir.join("snapshot.yaml");
    std::fs::write(&snapshot, &sample).expect("write snapshot");

    let topo = Topology::create_unique("e2e-reload").expect("create topology");
    let web = "web.default.svc.cluster.local.";
    let agent = Agent::start_with(
        &topo,
        &snapshot,
        &[],
        (web, "10.96.10.20".parse().expect("address")),
    );
    std::fs::write(&snapshot, &changed).expect("rewrite snapshot");
    let hup = Command::new("kill")
        .args(["-HUP", &agent.proc.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success(), "kill -HUP failed");
    let server = format!("@{}", topo.service_ip());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = topo
            .exec_in_pod("dig", &["+tries=1", "+time=1", "+short", &server, web, "A"])
            .expect("dig");
        if String::from_utf8_lossy(&out.stdout).trim() == "10.96.10.21" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web still not 10.96.10.21 10 s after SIGHUP:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        attached_programs(&topo).len(),
        1,
        "the program must stay attached across a reload"
    );

    let before = Metrics::scrape(&topo);
    let mut kernel_sent = 0;
    let mut missed = 0;
    for name in old.keys().chain(new.keys()) {
        let expect = match new.get(name) {
            Some(addrs) if kernel_answerable(name, addrs.len()) => {
                kernel_sent += 1;
                kernel_expect(addrs)
            }
            Some(_) => continue,
            None => {
                missed += 1;
                kernel_sent += 1;
                Expect::KernelNxDomain
            }
        };
        let q = Query::new(Tool::Dig, name, "A", &["+noedns"], expect);
        check_reply(&q, &q.run(&topo));
    }
    let after = Metrics::scrape(&topo);
    assert!(
        missed >= 1 && kernel_sent >= 3,
        "nothing to check: {missed} removed, {kernel_sent} kept"
    );
    assert_eq!(
        after.get("dns_agent_kernel_responses_total")
            - before.get("dns_agent_kernel_responses_total"),
        kernel_sent,
        "after the reload the kernel answers every current name"
    );
    assert_eq!(
        after.passed("miss") - before.passed("miss"),
        0,
        "removed names are NXDOMAIN from the kernel, not misses"
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `loadbalance` in the block that answers the zone the kernel rotates its answers, as
/// userspace does: every answer is the name's addresses rotated, each rotation appears, and all
/// of them come from the kernel.
#[test]
fn kernel_answers_rotate_under_loadbalance() {
    let records = sample_records();
    let (name, addrs) = records
        .iter()
        .filter(|(n, a)| a.len() >= 2 && kernel_answerable(n, a.len()))
        .max_by_key(|(_, a)| a.len())
        .map(|(n, a)| (n.clone(), a.clone()))
        .expect("a sample name with several addresses");
    let corefile =
        std::env::temp_dir().join(format!("dns-agent-e2e-lb-{}.Corefile", std::process::id()));
    std::fs::write(
        &corefile,
        E2E_COREFILE.replace(
            "        ttl 5\n    }\n",
            "        ttl 5\n    }\n    loadbalance\n",
        ),
    )
    .expect("writing the Corefile");
    assert!(
        std::fs::read_to_string(&corefile)
            .expect("Corefile")
            .contains("loadbalance"),
        "the Corefile runs loadbalance"
    );
    let topo = Topology::create_unique("e2e-lb").expect("create topology");
    let probe = (
        "web.default.svc.cluster.local.",
        "10.96.10.20".parse().expect("address"),
    );
    let agent = Agent::start_with_corefile(&topo, &corefile, &sample_path(), &[], probe);
    let server = format!("@{}", topo.service_ip());
    let before = Metrics::scrape(&topo);
    let asked = 4 * addrs.len();
    let mut seen = BTreeSet::new();
    for _ in 0..asked {
        let out = topo
            .exec_in_pod(
                "dig",
                &["+tries=1", "+time=2", "+short", &server, &name, "A"],
            )
            .expect("dig");
        let got: Vec<Ipv4Addr> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        let k = (0..addrs.len())
            .find(|k| (0..addrs.len()).all(|i| got.get(i) == Some(&addrs[(i + k) % addrs.len()])))
            .unwrap_or_else(|| panic!("{name}: {got:?} is not a rotation of {addrs:?}"));
        seen.insert(k);
    }
    let after = Metrics::scrape(&topo);
    agent.stop();
    let _ = std::fs::remove_file(&corefile);
    assert_eq!(
        after.get("dns_agent_kernel_responses_total")
            - before.get("dns_agent_kernel_responses_total"),
        asked as u64,
        "every answer from the kernel"
    );
    assert!(
        seen.len() >= 2,
        "{name}: the kernel's answers rotate (rotations seen: {seen:?})"
    );
}

/// The kernel passed each query expected to be passed, counted under its reason, and userspace
/// answered exactly those (`over`: the transport, for the messages). Returns the counts by
/// reason.
fn check_passed<'q>(
    qs: &'q [Query],
    before: &Metrics,
    after: &Metrics,
    over: &str,
) -> BTreeMap<&'q str, u64> {
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for q in qs {
        if let Expect::Passed { reason, .. } = q.expect {
            *reasons.entry(reason).or_default() += 1;
        }
    }
    for (reason, n) in &reasons {
        assert_eq!(
            after.passed(reason) - before.passed(reason),
            *n,
            "kernel_passed_total{{reason=\"{reason}\"}}{over}"
        );
    }
    let passed: u64 = reasons.values().sum();
    assert_eq!(
        after.sum("dns_agent_userspace_responses_total")
            - before.sum("dns_agent_userspace_responses_total"),
        passed,
        "userspace responses{over}: want exactly the {passed} passed queries, none the kernel answered"
    );
    reasons
}
