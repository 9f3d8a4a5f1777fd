//! End-to-end: every A/AAAA case of the zone table (dns-agent/tests/zone_table.rs) asked with dig from a pod netns through the kernel path, then userspace only.
//!
//! Needs root, iproute2, dig, curl and the agent binary (`DNS_AGENT_BIN`, else the workspace's
//! debug build). The fixture is dns-agent/tests/fixtures/zone.yaml; the expected answers below
//! are the A/AAAA rows of the userspace table, in the same presentation form.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Output;

use dns_agent_tests::agent::{normalize, zone_fixture, Agent, ClientOutput, Metrics, DIG_ONCE};
use dns_agent_tests::netns::Topology;

/// Most addresses the kernel program answers with.
const KERNEL_MAX_ADDRS: usize = dns_common::records::MAX_ADDRS;

/// Pass reasons of packets that are not DNS queries to the service: the veth also carries IPv6
/// neighbour discovery and the like, which the kernel program passes as `not_udp` (ICMPv6), and
/// MLD reports, which come behind a Hop-by-Hop header (`ipv6_ext`).
const NOT_DNS: [&str; 4] = ["not_ipv4", "not_udp", "not_service", "ipv6_ext"];

const SOA: &str =
    "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5";
const SOA4: &str =
    "in-addr.arpa. 5 SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5";
const SOA6: &str = "ip6.arpa. 5 SOA ns.dns.ip6.arpa. hostmaster.ip6.arpa. SERIAL 7200 1800 86400 5";
const V6_DB: &str = "4.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.";

/// One A/AAAA question of the table and its expected response: records in presentation form
/// `owner TTL TYPE data`, `SERIAL` standing for the zone's serial.
struct Case {
    qname: &'static str,
    qtype: &'static str,
    rcode: &'static str,
    answer: Vec<&'static str>,
    authority: Vec<&'static str>,
}

fn ok(qname: &'static str, qtype: &'static str, answer: &[&'static str]) -> Case {
    Case {
        qname,
        qtype,
        rcode: "NOERROR",
        answer: answer.to_vec(),
        authority: Vec::new(),
    }
}

fn nodata(qname: &'static str, qtype: &'static str) -> Case {
    Case {
        qname,
        qtype,
        rcode: "NOERROR",
        answer: Vec::new(),
        authority: vec![SOA],
    }
}

fn nxdomain(qname: &'static str, qtype: &'static str) -> Case {
    Case {
        qname,
        qtype,
        rcode: "NXDOMAIN",
        answer: Vec::new(),
        authority: vec![SOA],
    }
}

fn refused(qname: &'static str, qtype: &'static str) -> Case {
    Case {
        qname,
        qtype,
        rcode: "REFUSED",
        answer: Vec::new(),
        authority: Vec::new(),
    }
}

/// The A and AAAA rows of `zone_table.rs`'s `table()` (default settings: zone cluster.local,
/// TTL 5, pods disabled).
fn cases() -> Vec<Case> {
    vec![
        // The apex and the ns.dns glue.
        nodata("cluster.local.", "A"),
        nodata("cluster.local.", "AAAA"),
        ok(
            "ns.dns.cluster.local.",
            "A",
            &["ns.dns.cluster.local. 5 A 10.96.0.10"],
        ),
        nodata("ns.dns.cluster.local.", "AAAA"),
        nodata("dns.cluster.local.", "A"),
        nxdomain("x.dns.cluster.local.", "A"),
        nodata("dns-version.cluster.local.", "A"),
        // ClusterIP services: v4, dual-stack, v6-only, mixed case.
        ok(
            "kubernetes.default.svc.cluster.local.",
            "A",
            &["kubernetes.default.svc.cluster.local. 5 A 10.96.0.1"],
        ),
        ok(
            "kube-dns.kube-system.svc.cluster.local.",
            "A",
            &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
        ),
        ok(
            "web.demo.svc.cluster.local.",
            "A",
            &["web.demo.svc.cluster.local. 5 A 10.96.10.20"],
        ),
        nodata("web.demo.svc.cluster.local.", "AAAA"),
        ok(
            "WEB.Demo.SVC.cluster.LOCAL.",
            "A",
            &["WEB.Demo.SVC.cluster.LOCAL. 5 A 10.96.10.20"],
        ),
        ok(
            "dual.demo.svc.cluster.local.",
            "A",
            &["dual.demo.svc.cluster.local. 5 A 10.96.20.30"],
        ),
        ok(
            "dual.demo.svc.cluster.local.",
            "AAAA",
            &["dual.demo.svc.cluster.local. 5 AAAA fd00:10:96::20:30"],
        ),
        nodata("v6only.demo.svc.cluster.local.", "A"),
        ok(
            "v6only.demo.svc.cluster.local.",
            "AAAA",
            &["v6only.demo.svc.cluster.local. 5 AAAA fd00:10:96::99"],
        ),
        // Endpoint names of a ClusterIP service.
        ok(
            "10-244-1-5.web.demo.svc.cluster.local.",
            "A",
            &["10-244-1-5.web.demo.svc.cluster.local. 5 A 10.244.1.5"],
        ),
        ok(
            "10-244-2-6.web.demo.svc.cluster.local.",
            "A",
            &["10-244-2-6.web.demo.svc.cluster.local. 5 A 10.244.2.6"],
        ),
        nxdomain("web-1.web.demo.svc.cluster.local.", "A"),
        // Headless services and their endpoint names.
        ok(
            "db.demo.svc.cluster.local.",
            "A",
            &[
                "db.demo.svc.cluster.local. 5 A 10.244.1.11",
                "db.demo.svc.cluster.local. 5 A 10.244.2.12",
                "db.demo.svc.cluster.local. 5 A 10.244.3.14",
            ],
        ),
        ok(
            "db.demo.svc.cluster.local.",
            "AAAA",
            &["db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14"],
        ),
        ok(
            "db-0.db.demo.svc.cluster.local.",
            "A",
            &["db-0.db.demo.svc.cluster.local. 5 A 10.244.1.11"],
        ),
        nodata("db-0.db.demo.svc.cluster.local.", "AAAA"),
        ok(
            "10-244-2-12.db.demo.svc.cluster.local.",
            "A",
            &["10-244-2-12.db.demo.svc.cluster.local. 5 A 10.244.2.12"],
        ),
        ok(
            "10-244-3-14.db.demo.svc.cluster.local.",
            "A",
            &["10-244-3-14.db.demo.svc.cluster.local. 5 A 10.244.3.14"],
        ),
        ok(
            "fd00-10-244--14.db.demo.svc.cluster.local.",
            "AAAA",
            &["fd00-10-244--14.db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14"],
        ),
        nxdomain("10-244-1-13.db.demo.svc.cluster.local.", "A"),
        nxdomain("db-1.db.demo.svc.cluster.local.", "A"),
        nxdomain("10-244-1-11.db.demo.svc.cluster.local.", "A"),
        nxdomain("warming.demo.svc.cluster.local.", "A"),
        nxdomain("warming.demo.svc.cluster.local.", "AAAA"),
        ok(
            "pnr.demo.svc.cluster.local.",
            "A",
            &["pnr.demo.svc.cluster.local. 5 A 10.244.5.5"],
        ),
        ok(
            "10-244-5-5.pnr.demo.svc.cluster.local.",
            "A",
            &["10-244-5-5.pnr.demo.svc.cluster.local. 5 A 10.244.5.5"],
        ),
        ok(
            "noports.demo.svc.cluster.local.",
            "A",
            &["noports.demo.svc.cluster.local. 5 A 10.244.6.6"],
        ),
        nodata("_http._tcp.web.demo.svc.cluster.local.", "A"),
        // ExternalName: the CNAME (and the in-zone target) from userspace.
        ok(
            "search.demo.svc.cluster.local.",
            "A",
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "search.demo.svc.cluster.local.",
            "AAAA",
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "alias.demo.svc.cluster.local.",
            "A",
            &[
                "alias.demo.svc.cluster.local. 5 CNAME web.demo.svc.cluster.local.",
                "web.demo.svc.cluster.local. 5 A 10.96.10.20",
            ],
        ),
        ok(
            "alias.demo.svc.cluster.local.",
            "AAAA",
            &["alias.demo.svc.cluster.local. 5 CNAME web.demo.svc.cluster.local."],
        ),
        nxdomain("x.search.demo.svc.cluster.local.", "A"),
        // Reverse zones: address types are NODATA there.
        Case {
            qname: "1.0.96.10.in-addr.arpa.",
            qtype: "A",
            rcode: "NOERROR",
            answer: Vec::new(),
            authority: vec![SOA4],
        },
        Case {
            qname: V6_DB,
            qtype: "AAAA",
            rcode: "NOERROR",
            answer: Vec::new(),
            authority: vec![SOA6],
        },
        // Intermediate names, unknown namespaces and services, search-path expansions.
        nodata("svc.cluster.local.", "A"),
        nodata("demo.svc.cluster.local.", "A"),
        nodata("empty.svc.cluster.local.", "A"),
        nodata("pod.cluster.local.", "A"),
        nxdomain("nons.svc.cluster.local.", "A"),
        nxdomain("nope.demo.svc.cluster.local.", "A"),
        nxdomain("nope.demo.svc.cluster.local.", "AAAA"),
        nxdomain("nope.nons.svc.cluster.local.", "A"),
        nxdomain("web.empty.svc.cluster.local.", "A"),
        nxdomain("10-244-1-5.demo.pod.cluster.local.", "A"),
        nxdomain("demo.pod.cluster.local.", "A"),
        nxdomain("www.example.com.demo.svc.cluster.local.", "A"),
        nxdomain("www.example.com.svc.cluster.local.", "A"),
        nxdomain("www.example.com.cluster.local.", "A"),
        nxdomain("web.demo.svc.cluster.local.demo.svc.cluster.local.", "A"),
        nxdomain("x.web.demo.svc.cluster.local.", "A"),
        nxdomain("a.b.web.demo.svc.cluster.local.", "A"),
        nxdomain("web.demo.cluster.local.", "A"),
        nxdomain("Nope.Demo.Svc.Cluster.Local.", "A"),
        // Not ours.
        refused("local.", "A"),
        refused("example.com.", "A"),
        refused("xcluster.local.", "A"),
        refused("cluster.local.example.com.", "A"),
    ]
}

impl Case {
    /// Whether the kernel answers this case: a positive answer made only of `qtype` records at
    /// the question's name, few enough addresses, fitting 512 bytes (the limit without EDNS,
    /// and below any EDNS size dig offers).
    fn kernel_answers(&self) -> bool {
        let n = self.answer.len();
        n > 0
            && n <= KERNEL_MAX_ADDRS
            && self.answer.iter().all(|rr| {
                let f: Vec<&str> = rr.split_whitespace().collect();
                f.len() == 4 && f[0] == self.qname && f[2] == self.qtype
            })
            && 12 + self.qname.len() + 1 + 4 + n * if self.qtype == "A" { 16 } else { 28 } <= 512
    }

    /// Whether the kernel answers this case NODATA (issue 5): A or AAAA asked, no answer, and
    /// the name (in lower case, not under `dns.` or `hostmaster.` of the zone, whose names
    /// the SOA compresses into) has addresses of the other type in `cases`.
    fn kernel_nodata(&self, cases: &[Case]) -> bool {
        let other = match self.qtype {
            "A" => "AAAA",
            "AAAA" => "A",
            _ => return false,
        };
        self.rcode == "NOERROR"
            && self.answer.is_empty()
            && self.qname == self.qname.to_ascii_lowercase()
            && !self.qname.ends_with("dns.cluster.local.")
            && !self.qname.ends_with("hostmaster.cluster.local.")
            && cases.iter().any(|c| {
                c.qname == self.qname
                    && c.qtype == other
                    && c.answer.iter().any(|rr| {
                        let f: Vec<&str> = rr.split_whitespace().collect();
                        f.len() == 4 && f[0] == self.qname && f[2] == other
                    })
            })
    }

    /// Whether the kernel proves this case's negative answer from the zone's upper levels
    /// (issue 5): an A or AAAA question in lower case, in the zone but not below `pod.`
    /// (names made up from the question), not at or below `dns.` or `hostmaster.` (the SOA
    /// compresses into them); NXDOMAIN when the name, or its ancestor three labels above the zone, does not
    /// exist (the kernel looks no deeper), NODATA for an existing name at most three labels
    /// above the zone with no address of either type. Existence comes from the table: a name
    /// exists when a case asks it and gets NOERROR.
    fn kernel_negative(&self, cases: &[Case]) -> bool {
        const ZONE: &str = ".cluster.local.";
        let Some(rel) = self.qname.strip_suffix(ZONE) else {
            return self.qname == "cluster.local." && self.nodata_everywhere(cases);
        };
        let labels: Vec<&str> = rel.split('.').collect();
        let top = *labels.last().expect("split yields a label");
        let below_pod = top == "pod" && labels.len() > 1;
        if !matches!(self.qtype, "A" | "AAAA")
            || self.qname != self.qname.to_ascii_lowercase()
            || below_pod
            || ["dns", "hostmaster"].contains(&top)
        {
            return false;
        }
        let exists = |name: &str| {
            cases
                .iter()
                .any(|c| c.qname == name && c.rcode == "NOERROR")
        };
        match self.rcode {
            "NXDOMAIN" => {
                labels.len() <= 3 || {
                    let level3 = labels[labels.len() - 3..].join(".") + ZONE;
                    !exists(&level3)
                }
            }
            "NOERROR" => labels.len() <= 3 && self.nodata_everywhere(cases),
            _ => false,
        }
    }

    /// Whether this name answers no address of either type (NODATA for A and for AAAA).
    fn nodata_everywhere(&self, cases: &[Case]) -> bool {
        self.rcode == "NOERROR"
            && cases
                .iter()
                .filter(|c| c.qname == self.qname && matches!(c.qtype, "A" | "AAAA"))
                .all(|c| c.rcode == "NOERROR" && c.answer.is_empty())
    }

    /// Whether the kernel answers this case: positive, NODATA or NXDOMAIN.
    fn answered_by_kernel(&self, cases: &[Case]) -> bool {
        self.kernel_answers() || self.kernel_nodata(cases) || self.kernel_negative(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// The agent, its metrics, dig.

/// dig's view of one response.
#[derive(Debug)]
struct Reply {
    text: String,
    status: String,
    flags: Vec<String>,
    question: Vec<String>,
    /// Records as `owner TTL TYPE data` (class IN dropped), like the table.
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    opt: Vec<String>,
}

/// Runs `dig` once (one UDP packet: no retries, no TCP fallback) from the pod.
fn dig(topo: &Topology, qname: &str, qtype: &str, edns: bool) -> Reply {
    let server = format!("@{}", topo.service_ip());
    let mut args: Vec<&str> = [server.as_str()].into_iter().chain(DIG_ONCE).collect();
    if !edns {
        args.push("+noedns");
    }
    args.extend([qname, qtype]);
    let out = topo.exec_in_pod("dig", &args).expect("running dig");
    parse(&format!("dig {qname} {qtype} edns={edns}"), &out)
}

fn parse(what: &str, out: &Output) -> Reply {
    let o = ClientOutput::parse(what, out);
    let record = |l: &String| -> String {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(
            f.len() >= 5 && f[2] == "IN",
            "{what}: unexpected record line {l:?}"
        );
        let mut kept = vec![f[0], f[1]];
        kept.extend_from_slice(&f[3..]);
        kept.join(" ")
    };
    Reply {
        answer: o.answer.iter().map(record).collect(),
        authority: o.authority.iter().map(record).collect(),
        additional: o.additional.iter().map(record).collect(),
        text: o.text,
        status: o.status,
        flags: o.flags,
        question: o.question,
        opt: o.opt,
    }
}

impl Reply {
    /// The output without what may differ between two equal responses: the ID, timing and
    /// server lines, and the SOA serial (the time the agent loaded its records).
    fn normalized(&self) -> String {
        normalize(&self.text, &[])
    }

    /// The SOA serial in the authority section, if any.
    fn serial(&self) -> Option<String> {
        self.authority.iter().find_map(|rr| {
            let f: Vec<&str> = rr.split_whitespace().collect();
            (f.len() == 10 && f[2] == "SOA").then(|| f[5].to_string())
        })
    }
}

/// What is wrong with `r` as the response to `case` (empty: nothing). `serial` replaces
/// `SERIAL` in the expectation.
fn check(case: &Case, edns: bool, r: &Reply, serial: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let has = |f: &str| r.flags.iter().any(|x| x == f);
    let fill =
        |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.replace("SERIAL", serial)).collect() };
    if r.status != case.rcode {
        bad.push(format!("rcode {} (want {})", r.status, case.rcode));
    }
    if r.answer != fill(&case.answer) {
        bad.push(format!("answer {:?} (want {:?})", r.answer, case.answer));
    }
    if r.authority != fill(&case.authority) {
        bad.push(format!(
            "authority {:?} (want {:?} with serial {serial})",
            r.authority, case.authority
        ));
    }
    if !r.additional.is_empty() {
        bad.push(format!("additional {:?} (want none)", r.additional));
    }
    if !has("qr") || has("tc") || has("ra") || !has("rd") {
        bad.push(format!("flags {:?} (want qr rd, no tc/ra)", r.flags));
    }
    if has("aa") != (case.rcode != "REFUSED") {
        bad.push(format!("flags {:?}: AA iff inside the zone", r.flags));
    }
    let q = r
        .question
        .first()
        .map(|q| q.split_whitespace().collect::<Vec<_>>());
    if r.question.len() != 1 || q != Some(vec![case.qname, "IN", case.qtype]) {
        bad.push(format!("question {:?} not echoed as sent", r.question));
    }
    if r.opt.len() != usize::from(edns) {
        bad.push(format!(
            "OPT lines {:?} (want {})",
            r.opt,
            usize::from(edns)
        ));
    }
    bad
}

// ---------------------------------------------------------------------------------------------

/// Every A/AAAA case of the zone table from a pod, with and without EDNS: the kernel answers
/// exactly the positive ones it can hold and the NODATA ones of names with addresses of the
/// other type, passes the rest, and userspace alone answers the same.
#[test]
fn zone_address_cases_through_the_kernel_path() {
    let cases = cases();
    let from_kernel = cases
        .iter()
        .filter(|c| c.answered_by_kernel(&cases))
        .count();
    assert!(
        cases.iter().any(|c| c.kernel_nodata(&cases)),
        "the case list has NODATA cases the kernel answers"
    );
    assert!(
        cases
            .iter()
            .any(|c| c.rcode == "NXDOMAIN" && c.kernel_negative(&cases)),
        "the case list has NXDOMAIN cases the kernel answers"
    );
    assert!(
        from_kernel >= 15 && cases.len() - from_kernel >= 20,
        "the case list lost its shape: {from_kernel} kernel cases of {}",
        cases.len()
    );
    let topo = Topology::create_unique("e2e-zone").expect("create topology");
    let probe = ("web.demo.svc.cluster.local.", Ipv4Addr::new(10, 96, 10, 20));

    // Kernel path.
    let agent = Agent::start_with(&topo, &zone_fixture(), &[], probe);
    let before = Metrics::scrape(&topo);
    let mut serial: Option<String> = None;
    let mut kernel_replies = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        for edns in [true, false] {
            let r = dig(&topo, case.qname, case.qtype, edns);
            // Every negative answer carries the same SOA; its serial is the load time.
            if serial.is_none() {
                serial = r.serial();
            }
            let bad = check(case, edns, &r, serial.as_deref().unwrap_or("SERIAL"));
            if !bad.is_empty() {
                failures.push(format!(
                    "{} {} edns={edns} (kernel path): {}\n{}",
                    case.qname,
                    case.qtype,
                    bad.join("; "),
                    r.text
                ));
            }
            kernel_replies.push(r);
        }
    }
    let after = Metrics::scrape(&topo);
    agent.stop();
    assert!(
        failures.is_empty(),
        "{} of {} responses differ from the table:\n{}",
        failures.len(),
        2 * cases.len(),
        failures.join("\n")
    );
    let want_kernel = 2 * from_kernel as u64;
    let want_passed = 2 * (cases.len() - from_kernel) as u64;
    assert_eq!(
        after.get("dns_agent_kernel_responses_total")
            - before.get("dns_agent_kernel_responses_total"),
        want_kernel,
        "kernel answers: want exactly the {want_kernel} A/AAAA queries it holds (positive or NODATA)"
    );
    let (pb, pa) = (before.passed_by_reason(), after.passed_by_reason());
    let passed: BTreeMap<&str, u64> = pa
        .iter()
        .map(|(reason, n)| (reason.as_str(), n - pb.get(reason).copied().unwrap_or(0)))
        .filter(|(reason, n)| *n > 0 && !NOT_DNS.contains(reason))
        .collect();
    // Every other question is a name (or a type of it) the maps do not hold.
    assert_eq!(
        passed,
        BTreeMap::from([("miss", want_passed)]),
        "kernel_passed_total deltas by reason"
    );
    assert_eq!(
        after.sum("dns_agent_userspace_responses_total")
            - before.sum("dns_agent_userspace_responses_total"),
        want_passed,
        "userspace responses: want exactly the {want_passed} passed queries"
    );

    // Userspace only: every response equal but for the ID and the SOA serial.
    let agent = Agent::start_with(&topo, &zone_fixture(), &["--no-kernel"], probe);
    let mut mismatches = Vec::new();
    let mut replies = kernel_replies.iter();
    for case in &cases {
        for edns in [true, false] {
            let kernel = replies.next().expect("one kernel reply per query");
            let user = dig(&topo, case.qname, case.qtype, edns);
            if user.normalized() != kernel.normalized() {
                mismatches.push(format!(
                    "{} {} edns={edns} (kernel: {})\n--- kernel path:\n{}\n--- userspace:\n{}",
                    case.qname,
                    case.qtype,
                    case.answered_by_kernel(&cases),
                    kernel.text,
                    user.text
                ));
            }
        }
    }
    let after = Metrics::scrape(&topo);
    assert_eq!(
        after.get("dns_agent_kernel_responses_total"),
        0,
        "--no-kernel but kernel answers counted"
    );
    agent.stop();
    assert!(
        mismatches.is_empty(),
        "{} responses differ between the kernel path and userspace:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}
