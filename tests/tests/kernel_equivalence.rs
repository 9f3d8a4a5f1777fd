//! The kernel and userspace give the same answer to the same question: the kernel programs
//! (`dns_xdp`, `dns_tc`) run through `BPF_PROG_TEST_RUN` against the maps the agent's own
//! dataplane writes from the zone fixture, and every response they send must be byte for byte
//! the one userspace's records give for the query as sent; every packet they pass must leave
//! unchanged. Every question goes over IPv4 and over IPv6. Then the same on random and mutated
//! packets of both versions (`cargo xtask fuzz-kernel` runs the long form): nothing that is not
//! a well-formed query to the service is ever answered.
//! Needs root.

// Shared with kernel_answers.rs, which uses more of it.
#[allow(dead_code)]
#[path = "kernel_answers/packets.rs"]
mod packets;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use dns_agent::dataplane::{
    programs, AttachMode, Dataplane, DataplaneConfig, KernelProgram, EBPF_OBJECT,
};
use dns_agent::records::{self, Records, Settings};
use dns_agent::server::answer::{self, Parsed, Transport};
use dns_agent::snapshot;
use dns_agent_tests::rng::Rng;
use dns_agent_tests::test_run::test_run;
use packets::*;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const PROGS: [&str; 2] = [programs::DNS_XDP, programs::DNS_TC];

/// The zone fixture's records, written to kernel maps by the agent's dataplane.
struct Harness {
    records: Records,
    dp: Dataplane,
}

impl Harness {
    fn new() -> Self {
        Self::with_entries(4096)
    }

    /// The fixture in maps of `map_entries` names each.
    fn with_entries(map_entries: u32) -> Self {
        let fixture =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dns-agent/tests/fixtures/zone.yaml");
        let text = std::fs::read_to_string(&fixture).expect("zone fixture");
        let loaded = snapshot::parse("zone.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        let (records, _) = records::build(
            &loaded.cluster,
            &Settings::new("cluster.local", 5),
            1_700_000_000,
        );
        let cfg = DataplaneConfig {
            interfaces: Vec::new(),
            service_ips: vec![
                Ipv4Addr::from(SERVICE_IP).into(),
                Ipv6Addr::from(SERVICE_IP6).into(),
            ],
            port: DNS_PORT,
            mode: AttachMode::Auto,
            program: KernelProgram::Answer,
            map_entries,
            cache_entries: 16,
        };
        let mut dp = Dataplane::start_with_object(EBPF_OBJECT, &cfg)
            .unwrap_or_else(|e| panic!("loading the kernel program (root needed): {e}"));
        let (a, aaaa) = dp
            .sync_records(&records)
            .expect("DNS_SOA, DNS_A, DNS_AAAA written");
        assert!(
            map_entries < 4096 || (a.full == 0 && aaaa.full == 0),
            "the maps hold every name"
        );
        Harness { records, dp }
    }

    /// Runs `frame` through `prog` and checks it against userspace: an answer must be
    /// userspace's response to the query as sent, in a frame sent back to the client with
    /// correct checksums; anything else must leave the packet as it came. Returns whether the
    /// kernel answered.
    fn check(&mut self, prog: &'static str, frame: &[u8]) -> bool {
        let fd = self.dp.program_fd(prog).expect("program loaded");
        let out = test_run(fd, frame, 1).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN of {prog} on {} bytes: {e}: {frame:02x?}",
                frame.len()
            )
        });
        let (answered, passed) = if prog == programs::DNS_XDP {
            (XDP_TX, XDP_PASS)
        } else {
            (TC_ACT_REDIRECT, TC_ACT_OK)
        };
        if out.retval == passed {
            assert_eq!(out.data, frame, "{prog} passed a packet it changed");
            return false;
        }
        assert_eq!(out.retval, answered, "{prog}: unexpected verdict");
        let query = well_formed_query(frame).unwrap_or_else(|why| {
            panic!("{prog} answered what is not a well-formed query ({why}): {frame:02x?}")
        });
        let want = answer::respond(query, &self.records, Transport::Udp)
            .expect("userspace answers a well-formed query");
        let sent = udp_payload(&out.data).expect("the answer is a UDP datagram");
        assert_eq!(
            sent,
            &want.bytes[..],
            "{prog}: the kernel's answer differs from userspace's for {query:02x?}"
        );
        check_reply_headers(frame, &out.data);
        true
    }
}

/// Where the IP header starts and its version (4 or 6, per the EtherType): after the Ethernet
/// header and at most one 802.1Q tag (what the kernel accepts).
fn ip_offset(frame: &[u8]) -> Option<(usize, u8)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (ethertype, off) = if ethertype == 0x8100 {
        (u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]), 18)
    } else {
        (ethertype, 14)
    };
    match ethertype {
        0x0800 => Some((off, 4)),
        0x86dd => Some((off, 6)),
        _ => None,
    }
}

/// Internet checksum over `data` (0 when the sum is correct, for a header holding its own).
fn ones_sum(parts: &[&[u8]]) -> u16 {
    checksum(parts)
}

/// The DNS message of a UDP datagram in `frame` (per the UDP length), without judging it.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let (ip, version) = ip_offset(frame)?;
    let udp = if version == 6 {
        ip + 40
    } else {
        ip + usize::from(frame.get(ip)? & 0x0f) * 4
    };
    let len = usize::from(u16::from_be_bytes([
        *frame.get(udp + 4)?,
        *frame.get(udp + 5)?,
    ]));
    frame.get(udp + 8..udp + len)
}

/// The DNS query of `frame` when the frame is one the node's stack would deliver to the DNS
/// service and the query one userspace answers as a query; else why not.
fn well_formed_query(frame: &[u8]) -> Result<&[u8], &'static str> {
    let (ip, version) = ip_offset(frame).ok_or("not IPv4 or IPv6 over Ethernet")?;
    let udp = if version == 6 {
        well_formed_ipv6(frame, ip)?
    } else {
        well_formed_ipv4(frame, ip)?
    };
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if u16::from_be_bytes([udp[2], udp[3]]) != DNS_PORT {
        return Err("not to the DNS port");
    }
    if udp_len < 8 || udp_len > udp.len() {
        return Err("UDP length past the IP payload");
    }
    let dns = &udp[8..udp_len];
    match answer::parse(dns, Transport::Udp) {
        Parsed::Query(_) => Ok(dns),
        _ => Err("not a query userspace answers as one"),
    }
}

/// The UDP datagram of an IPv4 packet at `ip` the stack would deliver to the service address.
fn well_formed_ipv4(frame: &[u8], ip: usize) -> Result<&[u8], &'static str> {
    let h = frame.get(ip..ip + 20).ok_or("short IPv4 header")?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return Err("bad IPv4 version or header length");
    }
    let header = frame.get(ip..ip + ihl).ok_or("short IPv4 options")?;
    if ones_sum(&[header]) != 0 {
        return Err("bad IPv4 header checksum");
    }
    let tot_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ip + tot_len > frame.len() || tot_len < ihl + 8 {
        return Err("IPv4 total length past the frame");
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err("a fragment");
    }
    if h[9] != 17 || h[16..20] != SERVICE_IP {
        return Err("not UDP to the service address");
    }
    Ok(&frame[ip + ihl..ip + tot_len])
}

/// The UDP datagram of an IPv6 packet at `ip` the stack would deliver to the service address
/// (UDP right behind the fixed header: extension headers are the stack's to walk).
fn well_formed_ipv6(frame: &[u8], ip: usize) -> Result<&[u8], &'static str> {
    let h = frame.get(ip..ip + 40).ok_or("short IPv6 header")?;
    if h[0] >> 4 != 6 {
        return Err("bad IPv6 version");
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if payload_len < 8 || ip + 40 + payload_len > frame.len() {
        return Err("IPv6 payload length past the frame, or a jumbogram");
    }
    if h[6] != 17 || h[24..40] != SERVICE_IP6 {
        return Err("not UDP (directly) to the IPv6 service address");
    }
    if h[8] == 0xff {
        return Err("a multicast source (dropped by the stack)");
    }
    let udp = &frame[ip + 40..ip + 40 + payload_len];
    if udp[6..8] == [0, 0] {
        return Err("UDP checksum 0 over IPv6 (dropped by the stack)");
    }
    Ok(udp)
}

/// The reply goes back where the query came from, with correct IP and UDP checksums.
fn check_reply_headers(query: &[u8], reply: &[u8]) {
    let ((qi, qv), (ri, rv)) = (ip_offset(query).expect("IP"), ip_offset(reply).expect("IP"));
    assert_eq!(qv, rv, "the reply's IP version is the query's");
    assert_eq!(reply[..6], query[6..12], "to the client's MAC");
    assert_eq!(reply[6..12], query[..6], "from the node's MAC");
    let (q, r) = (&query[qi..], &reply[ri..]);
    let (udp, qudp, pseudo) = if rv == 6 {
        assert_eq!(r[..4], q[..4], "version, traffic class and flow label kept");
        assert_eq!(r[8..24], q[24..40], "from the service address");
        assert_eq!(r[24..40], q[8..24], "to the client");
        assert_eq!((r[6], r[7]), (17, 64), "next header UDP, hop limit 64");
        let payload_len = usize::from(u16::from_be_bytes([r[4], r[5]]));
        assert_eq!(
            ri + 40 + payload_len,
            reply.len(),
            "no bytes past the IPv6 packet"
        );
        let udp = &r[40..];
        assert_ne!(udp[6..8], [0, 0], "the UDP checksum is mandatory over IPv6");
        let mut pseudo = r[8..40].to_vec();
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        (udp, &q[40..], pseudo)
    } else {
        assert_eq!(r[12..16], q[16..20], "from the service address");
        assert_eq!(r[16..20], q[12..16], "to the client");
        let ihl = usize::from(r[0] & 0x0f) * 4;
        assert_eq!(ones_sum(&[&r[..ihl]]), 0, "IPv4 header checksum");
        let tot_len = usize::from(u16::from_be_bytes([r[2], r[3]]));
        assert_eq!(ri + tot_len, reply.len(), "no bytes past the IPv4 packet");
        let udp = &r[ihl..tot_len];
        let mut pseudo = r[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        (udp, &q[usize::from(q[0] & 0x0f) * 4..], pseudo)
    };
    assert_eq!(
        (&udp[0..2], &udp[2..4]),
        (&qudp[2..4], &qudp[0..2]),
        "ports swapped"
    );
    assert_eq!(ones_sum(&[&pseudo, udp]), 0, "UDP checksum");
}

/// Every name of the records, as asked: A and AAAA (what the kernel may answer) and other
/// types, in other spellings, under search-list suffixes, and names that do not exist.
fn questions(records: &Records) -> Vec<(String, u16)> {
    let mut names: Vec<String> = records
        .a_map()
        .keys()
        .chain(records.aaaa_map().keys())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in &names {
        let upper: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for variant in [
            name.clone(),
            upper,
            format!("{name}default.svc.cluster.local."),
            format!("nope.{name}"),
        ] {
            for qtype in [1u16, 28, 33, 16, 255] {
                out.push((variant.clone(), qtype));
            }
        }
    }
    for name in ["cluster.local.", "svc.cluster.local.", "example.org.", "."] {
        out.push((name.to_owned(), 1));
    }
    for name in negative_names(records) {
        for qtype in [1u16, 28, 16] {
            out.push((name.clone(), qtype));
        }
    }
    out
}

/// Names the zone's tree proves absent or empty, and neighbours it must leave to userspace:
/// the `ndots:5` search-path expansions of an external name under every namespace, unknown
/// services and namespaces, the zone's intermediate names, names below `pod.`, `dns.` and
/// `hostmaster.`, below a service, and in mixed case.
fn negative_names(records: &Records) -> Vec<String> {
    let mut out = vec![
        "cluster.local.".to_owned(),
        "svc.cluster.local.".to_owned(),
        "www.example.org.svc.cluster.local.".to_owned(),
        "www.example.org.cluster.local.".to_owned(),
        "nosuch.cluster.local.".to_owned(),
        "nosuchns.svc.cluster.local.".to_owned(),
        "web.nosuchns.svc.cluster.local.".to_owned(),
        "a.b.c.d.e.f.svc.cluster.local.".to_owned(),
        "dns-version.cluster.local.".to_owned(),
        "x.dns-version.cluster.local.".to_owned(),
        "pod.cluster.local.".to_owned(),
        "x.pod.cluster.local.".to_owned(),
        "10-1-2-3.default.pod.cluster.local.".to_owned(),
        "dns.cluster.local.".to_owned(),
        "x.dns.cluster.local.".to_owned(),
        "hostmaster.cluster.local.".to_owned(),
        "x.hostmaster.cluster.local.".to_owned(),
        "WWW.Example.Org.Cluster.Local.".to_owned(),
        "www.example.org.CLUSTER.local.".to_owned(),
    ];
    for ns in &records.namespaces {
        out.push(format!("{ns}.svc.cluster.local."));
        out.push(format!("www.example.org.{ns}.svc.cluster.local."));
        out.push(format!("nosuch.{ns}.svc.cluster.local."));
    }
    for short in records.services.keys() {
        out.push(format!("nosuch.{short}.svc.cluster.local."));
        out.push(format!("{short}.svc.cluster.local.svc.cluster.local."));
    }
    out
}

/// The queries of one question: header flags and EDNS as clients send them.
fn queries(name: &str, qtype: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let cookie = Opt {
        options: vec![(10, vec![7; 8])],
        ..Opt::new(1232)
    };
    let dnssec = Opt {
        flags: DO,
        ..Opt::new(4096)
    };
    for (i, flags) in [RD, 0, RD | CD, RD | AD].into_iter().enumerate() {
        for opt in [
            None,
            Some(Opt::new(1232)),
            Some(cookie.clone()),
            Some(dnssec.clone()),
        ] {
            let q = Query {
                id: 0x1000 + i as u16,
                flags,
                qtype,
                opt,
                ..Query::a(name)
            };
            out.push(q.bytes());
        }
    }
    out
}

#[test]
fn every_kernel_answer_is_userspaces_answer_byte_for_byte() {
    let mut h = Harness::new();
    let questions = questions(&h.records);
    let (mut answered, mut asked) = (0usize, 0usize);
    // What was answered in the kernel, over IPv4 and over IPv6.
    let mut by_name = [
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    ];
    for (name, qtype) in &questions {
        for dns in queries(name, *qtype) {
            let frames = [
                Frame::query(dns.clone()).bytes(),
                Frame::query6(dns).bytes(),
            ];
            for (family, frame) in frames.iter().enumerate() {
                for prog in PROGS {
                    asked += 1;
                    if h.check(prog, frame) {
                        answered += 1;
                        by_name[family].insert((name.to_ascii_lowercase(), *qtype));
                    }
                }
            }
        }
    }
    // Every A and AAAA name of the maps was answered in the kernel, in some spelling; and so
    // was the other type of a name that has only one (NODATA), but under `dns.<zone>` and
    // `hostmaster.<zone>` (the SOA's names compress into those).
    let (a, aaaa) = (h.records.a_map(), h.records.aaaa_map());
    let soa_names =
        |n: &str| n.ends_with("dns.cluster.local.") || n.ends_with("hostmaster.cluster.local.");
    let expected: std::collections::BTreeSet<(String, u16)> = a
        .keys()
        .map(|n| (n.clone(), 1))
        .chain(aaaa.keys().map(|n| (n.clone(), 28)))
        .chain(
            a.keys()
                .filter(|n| !aaaa.contains_key(*n) && !soa_names(n))
                .map(|n| (n.clone(), 28)),
        )
        .chain(
            aaaa.keys()
                .filter(|n| !a.contains_key(*n) && !soa_names(n))
                .map(|n| (n.clone(), 1)),
        )
        .collect();
    assert!(
        expected.len() > a.len() + aaaa.len(),
        "the fixture has names of one address type only"
    );
    // The negative answers the zone's tree proves (issue 5): NXDOMAIN for every search-path
    // expansion and unknown name in lower case, NODATA for the intermediate names.
    let mut proven: Vec<String> = h
        .records
        .namespaces
        .iter()
        .flat_map(|ns| {
            [
                format!("{ns}.svc.cluster.local."),
                format!("www.example.org.{ns}.svc.cluster.local."),
                format!("nosuch.{ns}.svc.cluster.local."),
            ]
        })
        .collect();
    proven.extend(
        [
            "cluster.local.",
            "svc.cluster.local.",
            "pod.cluster.local.",
            "dns-version.cluster.local.",
            "x.dns-version.cluster.local.",
            "www.example.org.svc.cluster.local.",
            "www.example.org.cluster.local.",
            "nosuchns.svc.cluster.local.",
            "web.nosuchns.svc.cluster.local.",
            "a.b.c.d.e.f.svc.cluster.local.",
        ]
        .map(String::from),
    );
    for (family, by_name) in ["IPv4", "IPv6"].iter().zip(&by_name) {
        let missing: Vec<_> = expected.difference(by_name).collect();
        assert!(
            missing.is_empty(),
            "never answered in the kernel over {family}: {missing:?}"
        );
        let unproven: Vec<_> = proven
            .iter()
            .flat_map(|n| [(n.clone(), 1u16), (n.clone(), 28)])
            .filter(|q| !by_name.contains(q))
            .collect();
        assert!(
            unproven.is_empty(),
            "negative answers never given by the kernel over {family}: {unproven:?}"
        );
        // And never below `pod.` or a service, or at or below `dns.` and `hostmaster.` but for
        // their address records.
        let below_service = |n: &str| {
            n.strip_prefix("nosuch.")
                // `<svc>.<ns>.svc.cluster.local.`
                .filter(|service| {
                    service.ends_with(".svc.cluster.local.") && service.matches('.').count() == 5
                })
                .is_some_and(|service| {
                    matches!(h.records.resolve(service, 255),
                        records::Outcome::Answer(r) if r.rcode == records::Rcode::NoError)
                })
        };
        let left: Vec<_> = by_name
            .iter()
            .filter(|(n, _)| !a.contains_key(n) && !aaaa.contains_key(n))
            .filter(|(n, _)| {
                n.ends_with(".pod.cluster.local.")
                    || n.ends_with("dns.cluster.local.")
                    || n.ends_with("hostmaster.cluster.local.")
                    || below_service(n)
            })
            .collect();
        assert!(
            left.is_empty(),
            "answered in the kernel over {family}: {left:?}"
        );
    }
    eprintln!("{answered} of {asked} queries answered in the kernel, all as userspace does");

    // A change moves the serial: the kernel's SOA follows once the agent writes it again.
    let name = a
        .keys()
        .find(|n| !aaaa.contains_key(*n) && !soa_names(n))
        .expect("an IPv4-only name")
        .clone();
    let frame = Frame::query(Query::aaaa(&name).bytes()).bytes();
    let frame6 = Frame::query6(Query::aaaa(&name).bytes()).bytes();
    h.records.serial += 3600;
    h.dp.set_soa_of(&h.records).expect("DNS_SOA written");
    for prog in PROGS {
        assert!(h.check(prog, &frame), "{name} AAAA: NODATA from the kernel");
        assert!(
            h.check(prog, &frame6),
            "{name} AAAA over IPv6: NODATA from the kernel"
        );
    }
}

/// The NODATA flag follows the records: a name that gains AAAA records is answered with them
/// (its `DNS_A` value loses the flag with the same incremental sync), and NODATA again once
/// they are gone.
#[test]
fn nodata_follows_a_name_gaining_and_losing_the_other_type() {
    let mut h = Harness::new();
    let (a, mut aaaa) = (h.records.a_map(), h.records.aaaa_map());
    let name = a
        .keys()
        .find(|n| !aaaa.contains_key(*n) && n.ends_with(".svc.cluster.local."))
        .expect("an IPv4-only service name")
        .clone();
    let frame = Frame::query(Query::aaaa(&name).bytes()).bytes();
    let counts = |h: &mut Harness| {
        let fd = h.dp.program_fd(programs::DNS_XDP).expect("program");
        let out = test_run(fd, &frame, 1).expect("test run");
        assert_eq!(out.retval, XDP_TX, "{name} AAAA answered in the kernel");
        let dns = udp_payload(&out.data).expect("a datagram").to_vec();
        (
            u16::from_be_bytes([dns[6], dns[7]]),
            u16::from_be_bytes([dns[8], dns[9]]),
        )
    };
    assert_eq!(counts(&mut h), (0, 1), "NODATA: no answer, the SOA");
    let v6: std::net::Ipv6Addr = "fd00::10".parse().expect("address");
    aaaa.insert(name.clone(), (5, vec![v6]));
    h.dp.sync_addresses_names(&a, &aaaa, [name.as_str()])
        .expect("incremental sync");
    assert_eq!(counts(&mut h), (1, 0), "the new AAAA record");
    aaaa.remove(&name);
    h.dp.sync_addresses_names(&a, &aaaa, [name.as_str()])
        .expect("incremental sync");
    assert_eq!(counts(&mut h), (0, 1), "NODATA again");
    // And the other way round: A asked for a name that now has AAAA only.
    let mut a_only_gone = a.clone();
    a_only_gone.remove(&name);
    aaaa.insert(name.clone(), (5, vec![v6]));
    h.dp.sync_addresses_names(&a_only_gone, &aaaa, [name.as_str()])
        .expect("incremental sync");
    let frame_a = Frame::query(Query::a(&name).bytes()).bytes();
    let fd = h.dp.program_fd(programs::DNS_XDP).expect("program");
    let out = test_run(fd, &frame_a, 1).expect("test run");
    let dns = udp_payload(&out.data).expect("a datagram");
    assert_eq!(
        (
            out.retval,
            u16::from_be_bytes([dns[6], dns[7]]),
            u16::from_be_bytes([dns[8], dns[9]])
        ),
        (XDP_TX, 0, 1),
        "A of an IPv6-only name: NODATA"
    );
}

/// With `loadbalance` in the zone's block the kernel rotates the addresses of its answers as
/// userspace does: every answer is userspace's with its records rotated left, one further per
/// answer, over every rotation; without it, always userspace's order.
#[test]
fn answers_rotate_when_the_block_runs_loadbalance() {
    let mut h = Harness::new();
    // A name with several AAAA records (the fixture's have one), written as the agent writes.
    let multi = "multi.dns-version.cluster.local.";
    let v6: Vec<std::net::Ipv6Addr> = ["fd00::1", "fd00::2", "fd00::3"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    h.records.aaaa.insert(multi.to_owned(), (h.records.ttl, v6));
    let (a, aaaa) = (h.records.a_map(), h.records.aaaa_map());
    h.dp.sync_addresses_names(&a, &aaaa, [multi])
        .expect("incremental sync");
    let pick = |m: Vec<(&String, usize)>| {
        m.into_iter()
            .filter(|(n, count)| *count >= 2 && n.len() < 60)
            .max_by_key(|(_, count)| *count)
            .map(|(n, count)| (n.clone(), count))
    };
    let (v4, n4) =
        pick(a.iter().map(|(n, (_, v))| (n, v.len())).collect()).expect("a name with several A");
    let (v6, n6) = pick(aaaa.iter().map(|(n, (_, v))| (n, v.len())).collect())
        .expect("a name with several AAAA");
    for rotate in [true, false] {
        h.dp.set_rotation(rotate).expect("DNS_CONFIG written");
        for (name, n, query, rr_len) in [
            (&v4, n4, Query::a(&v4), 16),
            (&v6, n6, Query::aaaa(&v6), 28),
        ] {
            let dns = query.bytes();
            let want = answer::respond(&dns, &h.records, Transport::Udp)
                .expect("userspace answers")
                .bytes;
            let records_at = 12 + name.len() + 1 + 4;
            let fd = h.dp.program_fd(programs::DNS_XDP).expect("program");
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..4 * n {
                let out = test_run(fd, &Frame::query(dns.clone()).bytes(), 1).expect("test run");
                assert_eq!(out.retval, XDP_TX, "{name}: answered in the kernel");
                let got = udp_payload(&out.data).expect("a datagram");
                assert_eq!(got.len(), want.len(), "{name}: answer length");
                assert_eq!(
                    got[..records_at],
                    want[..records_at],
                    "{name}: header and question"
                );
                let rotation = (0..n).find(|k| {
                    (0..n).all(|i| {
                        let from = records_at + ((i + k) % n) * rr_len;
                        let to = records_at + i * rr_len;
                        got[to..to + rr_len] == want[from..from + rr_len]
                    })
                });
                let k = rotation.unwrap_or_else(|| {
                    panic!("{name}: not a rotation of userspace's answer: {got:02x?}")
                });
                seen.insert(k);
            }
            if rotate {
                assert_eq!(seen.len(), n, "{name}: every rotation in {} answers", 4 * n);
            } else {
                assert_eq!(
                    seen,
                    [0].into(),
                    "{name}: userspace's order without loadbalance"
                );
            }
        }
    }
}

/// The rcode of the kernel's answer to `name` A, `None` when it passes the query.
fn kernel_rcode(h: &mut Harness, name: &str) -> Option<u8> {
    let frame = Frame::query(Query::a(name).bytes()).bytes();
    if !h.check(programs::DNS_XDP, &frame) {
        return None;
    }
    let fd = h.dp.program_fd(programs::DNS_XDP).expect("program");
    let out = test_run(fd, &frame, 1).expect("test run");
    Some(udp_payload(&out.data).expect("a datagram")[3] & 0x0f)
}

/// The tree follows the records through incremental syncs: a service that goes away is
/// NXDOMAIN from the kernel at once, and answered again when it comes back; while userspace
/// would answer SERVFAIL (no complete list yet) the kernel proves nothing.
#[test]
fn nxdomain_follows_services_going_and_coming() {
    let mut h = Harness::new();
    let short = h
        .records
        .services
        .iter()
        .find(|(_, e)| e.cluster_ips.is_some())
        .map(|(k, _)| k.clone())
        .expect("a ClusterIP service");
    let name = format!("{short}.svc.cluster.local.");
    let sync = |h: &mut Harness| {
        let (a, aaaa) = h.records.address_maps_of([name.as_str()]);
        h.dp.sync_addresses_names(&a, &aaaa, [name.as_str()])
            .expect("address sync");
        h.dp.sync_tree_names(&h.records, [name.as_str()])
            .expect("tree sync");
    };
    assert_eq!(kernel_rcode(&mut h, &name), Some(0), "{name}: the service");
    let entry = h.records.services.remove(&*short).expect("entry");
    sync(&mut h);
    assert_eq!(
        kernel_rcode(&mut h, &name),
        Some(3),
        "{name}: gone, NXDOMAIN"
    );
    h.records.services.insert(short.clone(), entry);
    sync(&mut h);
    assert_eq!(kernel_rcode(&mut h, &name), Some(0), "{name}: back");

    // The kernel remembers what it proved (`DNS_PROVEN`) only until the next change: a
    // namespace that appears turns its remembered NXDOMAIN into NODATA at once.
    let newns = "newns.svc.cluster.local.";
    for _ in 0..3 {
        assert_eq!(
            kernel_rcode(&mut h, newns),
            Some(3),
            "{newns}: no such namespace"
        );
    }
    h.records.namespaces.insert("newns".to_owned());
    h.records.empty_non_terminals.insert(newns.to_owned());
    h.dp.sync_tree_names(&h.records, [newns])
        .expect("tree sync");
    assert_eq!(
        kernel_rcode(&mut h, newns),
        Some(0),
        "{newns}: NODATA once it exists"
    );
    h.records.namespaces.remove("newns");
    h.records.empty_non_terminals.remove(newns);
    h.dp.sync_tree_names(&h.records, [newns])
        .expect("tree sync");
    assert_eq!(kernel_rcode(&mut h, newns), Some(3), "{newns}: gone again");

    let nosuch = "nosuch.default.svc.cluster.local.";
    assert_eq!(kernel_rcode(&mut h, nosuch), Some(3), "{nosuch}");
    h.records.synced = false;
    h.dp.sync_tree_names(&h.records, []).expect("tree sync");
    assert_eq!(
        kernel_rcode(&mut h, nosuch),
        None,
        "{nosuch}: SERVFAIL is userspace's"
    );
    h.records.synced = true;
    h.dp.sync_tree(&h.records).expect("tree sync");
    assert_eq!(kernel_rcode(&mut h, nosuch), Some(3), "{nosuch} again");
    // A Corefile where another plugin could answer names of the zone: no NXDOMAIN at all.
    h.dp.set_negative_allowed(false);
    h.dp.sync_tree(&h.records).expect("tree sync");
    assert_eq!(
        kernel_rcode(&mut h, nosuch),
        None,
        "{nosuch}: not the kernel's to deny"
    );
    h.dp.set_negative_allowed(true);
    h.dp.sync_tree(&h.records).expect("tree sync");
    assert_eq!(
        kernel_rcode(&mut h, nosuch),
        Some(3),
        "{nosuch} once allowed"
    );
}

/// A tree that does not fit in its map proves nothing: the kernel answers no NXDOMAIN.
#[test]
fn a_tree_left_incomplete_proves_nothing() {
    let probe = Harness::new();
    let nodes = probe.records.kernel_tree().len() as u32;
    drop(probe);
    let mut h = Harness::with_entries(nodes - 1);
    let report = h.dp.sync_tree(&h.records).expect("tree sync");
    assert_eq!(report.missing, 1, "one node left out: {report:?}");
    for name in ["nosuch.cluster.local.", "nosuch.default.svc.cluster.local."] {
        assert_eq!(kernel_rcode(&mut h, name), None, "{name}: passed");
    }
}

/// A frame for `dns` over IPv6 or IPv4.
fn framed(dns: Vec<u8>, v6: bool) -> Frame {
    if v6 {
        Frame::query6(dns)
    } else {
        Frame::query(dns)
    }
}

/// Damage to an IPv6 frame's headers, framed correctly otherwise: extension headers before the
/// UDP header, a fragment, payload lengths that lie, another destination, no UDP checksum.
fn ipv6_damage(rng: &mut Rng, frame: &mut Frame) {
    let udp_len = match &frame.l4 {
        L4::Udp { payload, .. } => 8 + payload.len() as u16,
        L4::Raw(b) => b.len() as u16,
    };
    let h = frame.ip6_mut();
    match rng.below(9) {
        0 => {
            h.next = [0, 43, 60, 51, 135][rng.below(5)];
            h.ext = vec![17, 0, 1, 4, 0, 0, 0, 0];
        }
        1 => {
            h.next = 44;
            h.ext = vec![17, 0, 0, 0, 0, 0, 0, rng.next_u64() as u8];
        }
        2 => h.payload_len = Some(udp_len.wrapping_add(1 + rng.below(8) as u16)),
        3 => h.payload_len = Some(udp_len.saturating_sub(1 + rng.below(8) as u16)),
        4 => h.payload_len = Some(rng.next_u64() as u16),
        5 => {
            let i = rng.below(16);
            h.dst[i] ^= 1 << rng.below(8);
        }
        6 if rng.below(2) == 0 => h.src[0] = 0xff,
        6 => h.next = [6, 58, 59, 16][rng.below(4)],
        7 => {
            if let L4::Udp { csum, .. } = &mut frame.l4 {
                *csum = UdpCsum::Zero;
            }
        }
        _ => frame.trailer = vec![0; rng.below(20)],
    }
}

/// One packet made from `seeds`: a DNS message mutated and framed correctly (over IPv4 or
/// IPv6), a frame with raw header damage, or random bytes.
fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut dns = seeds[rng.below(seeds.len())].clone();
    let v6 = rng.below(2) == 0;
    let kind = rng.below(10);
    if kind < 6 {
        for _ in 0..1 + rng.below(3) {
            match rng.below(5) {
                0 if !dns.is_empty() => {
                    let i = rng.below(dns.len());
                    dns[i] = rng.next_u64() as u8;
                }
                1 if !dns.is_empty() => {
                    let i = rng.below(dns.len());
                    dns[i] ^= 1 << rng.below(8);
                }
                2 => dns.truncate(rng.below(dns.len() + 1)),
                3 => dns.extend((0..rng.below(12)).map(|_| rng.next_u64() as u8)),
                _ if !dns.is_empty() => {
                    // A plausible header value: counts, flags.
                    let i = rng.below(dns.len().min(12));
                    dns[i] = [0, 1, 2, 0x80, 0x81, 0xff][rng.below(6)];
                }
                _ => {}
            }
        }
        let mut frame = framed(dns, v6);
        match rng.below(8) {
            0 => frame.vlans = vec![0x0064],
            1 if v6 => ipv6_damage(rng, &mut frame),
            1 => frame.ip_options = vec![1, 1, 1, 0],
            2 => {
                if let L4::Udp { csum, .. } = &mut frame.l4 {
                    *csum = UdpCsum::Partial;
                }
            }
            _ => {}
        }
        return frame.bytes();
    }
    let mut frame = framed(dns, v6);
    if v6 && kind < 7 {
        // Well-framed IPv6 with its own kinds of damage.
        ipv6_damage(rng, &mut frame);
        return frame.bytes();
    }
    let mut frame = frame.bytes();
    // Ethernet, IP and UDP headers.
    let headers = if v6 { 62 } else { 42 };
    if kind < 9 {
        // Damage in the headers (or anywhere), left unrepaired.
        for _ in 0..1 + rng.below(2) {
            let within = if rng.below(2) == 0 { headers } else { 4096 };
            let i = rng.below(frame.len().min(within));
            frame[i] ^= 1 << rng.below(8);
        }
        if rng.below(4) == 0 {
            frame.truncate(rng.below(frame.len() + 1));
        }
        return frame;
    }
    let len = rng.below(120);
    frame.truncate(headers.min(frame.len()));
    frame.extend((0..len).map(|_| rng.next_u64() as u8));
    frame
}

/// Random and mutated packets: `KERNEL_FUZZ_PACKETS` of them (default 200,000: the short
/// pass CI runs), from `KERNEL_FUZZ_SEED`.
#[test]
fn mutated_and_random_packets_are_answered_as_userspace_or_passed_untouched() {
    let packets: usize = std::env::var("KERNEL_FUZZ_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("KERNEL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_d15c_a11e_d00d);
    let mut h = Harness::new();
    let seeds: Vec<Vec<u8>> = questions(&h.records)
        .iter()
        .filter(|(_, t)| matches!(t, 1 | 28))
        .flat_map(|(n, t)| queries(n, *t))
        .collect();
    let mut rng = Rng(seed | 1);
    let (mut answered, mut answered6) = (0usize, 0usize);
    for i in 0..packets {
        let frame = mutant(&mut rng, &seeds);
        if frame.len() < 14 {
            continue;
        }
        // The TC test run refuses an IPv4 (IPv6) frame shorter than an IPv4 (IPv6) header: XDP
        // takes those.
        let min_tc = if frame[12..14] == [0x86, 0xdd] {
            54
        } else {
            34
        };
        let prog = if frame.len() < min_tc {
            programs::DNS_XDP
        } else {
            PROGS[i % 2]
        };
        let yes = h.check(prog, &frame);
        answered += usize::from(yes);
        answered6 += usize::from(yes && min_tc == 54);
    }
    eprintln!(
        "{packets} packets (seed {seed}): {answered} answered in the kernel ({answered6} over \
         IPv6), each as userspace; the rest passed untouched"
    );
    assert!(
        answered6 > packets / 400 && answered - answered6 > packets / 400,
        "the mutations reach answers over both IP versions"
    );
    assert!(
        answered > packets / 100,
        "the mutations still reach answers"
    );
}

/// The programs leave the verifier room to grow: every way through them is verified apart
/// unless the code makes the ways look alike again (see `packet::opaque` in dns-ebpf), and a
/// change that multiplies them (a loop whose exits stay distinct) shows here long before it
/// makes the programs unloadable at the verifier's limit of 1,000,000 instructions.
#[test]
fn the_verifier_has_room_to_spare() {
    const BUDGET: u32 = 400_000;
    let mut h = Harness::new();
    for prog in PROGS {
        let verified =
            h.dp.verified_instructions(prog)
                .expect("program loaded")
                .expect("the kernel reports verified instructions");
        eprintln!("{prog}: {verified} instructions verified");
        assert!(
            verified <= BUDGET,
            "{prog}: {verified} instructions verified, more than the budget of {BUDGET}"
        );
    }
}
