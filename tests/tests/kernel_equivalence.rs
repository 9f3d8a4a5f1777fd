//! The kernel and userspace give the same answer to the same question: the kernel programs
//! (`dns_xdp`, `dns_tc`) run through `BPF_PROG_TEST_RUN` against the maps the agent's own
//! dataplane writes from the zone fixture, and every response they send must be byte for byte
//! the one userspace's records give for the query as sent; every packet they pass must leave
//! unchanged. Then the same on random and mutated packets (`cargo xtask fuzz-kernel` runs the
//! long form): nothing that is not a well-formed query to the service is ever answered.
//! Needs root.

// Shared with kernel_answers.rs, which uses more of it.
#[allow(dead_code)]
#[path = "kernel_answers/packets.rs"]
mod packets;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use dns_agent::dataplane::{
    programs, AttachMode, Dataplane, DataplaneConfig, KernelProgram, EBPF_OBJECT,
};
use dns_agent::records::{self, Records, Settings};
use dns_agent::server::answer::{self, Parsed, Transport};
use dns_agent::snapshot;
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
            service_ips: vec![Ipv4Addr::from(SERVICE_IP)],
            port: DNS_PORT,
            mode: AttachMode::Auto,
            program: KernelProgram::Answer,
            map_entries: 4096,
            cache_entries: 16,
        };
        let mut dp = Dataplane::start_with_object(EBPF_OBJECT, &cfg)
            .unwrap_or_else(|e| panic!("loading the kernel program (root needed): {e}"));
        let (a, aaaa) = dp
            .sync_records(&records)
            .expect("DNS_SOA, DNS_A, DNS_AAAA written");
        assert!(a.full == 0 && aaaa.full == 0, "the maps hold every name");
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

/// Where the IPv4 header starts: after the Ethernet header and at most one 802.1Q tag (what
/// the kernel accepts).
fn ip_offset(frame: &[u8]) -> Option<usize> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    match ethertype {
        0x0800 => Some(14),
        0x8100 if u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]) == 0x0800 => Some(18),
        _ => None,
    }
}

/// Internet checksum over `data` (0 when the sum is correct, for a header holding its own).
fn ones_sum(parts: &[&[u8]]) -> u16 {
    checksum(parts)
}

/// The DNS message of a UDP datagram in `frame` (per the UDP length), without judging it.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = ip_offset(frame)?;
    let ihl = usize::from(frame.get(ip)? & 0x0f) * 4;
    let udp = ip + ihl;
    let len = usize::from(u16::from_be_bytes([
        *frame.get(udp + 4)?,
        *frame.get(udp + 5)?,
    ]));
    frame.get(udp + 8..udp + len)
}

/// The DNS query of `frame` when the frame is one the node's stack would deliver to the DNS
/// service and the query one userspace answers as a query; else why not.
fn well_formed_query(frame: &[u8]) -> Result<&[u8], &'static str> {
    let ip = ip_offset(frame).ok_or("not IPv4 over Ethernet")?;
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
    let udp = &frame[ip + ihl..ip + tot_len];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if u16::from_be_bytes([udp[2], udp[3]]) != DNS_PORT {
        return Err("not to the DNS port");
    }
    if udp_len < 8 || udp_len > udp.len() {
        return Err("UDP length past the IPv4 payload");
    }
    let dns = &udp[8..udp_len];
    match answer::parse(dns, Transport::Udp) {
        Parsed::Query(_) => Ok(dns),
        _ => Err("not a query userspace answers as one"),
    }
}

/// The reply goes back where the query came from, with correct IPv4 and UDP checksums.
fn check_reply_headers(query: &[u8], reply: &[u8]) {
    let (qi, ri) = (
        ip_offset(query).expect("IPv4"),
        ip_offset(reply).expect("IPv4"),
    );
    assert_eq!(reply[..6], query[6..12], "to the client's MAC");
    assert_eq!(reply[6..12], query[..6], "from the node's MAC");
    let (q, r) = (&query[qi..], &reply[ri..]);
    assert_eq!(r[12..16], q[16..20], "from the service address");
    assert_eq!(r[16..20], q[12..16], "to the client");
    let ihl = usize::from(r[0] & 0x0f) * 4;
    assert_eq!(ones_sum(&[&r[..ihl]]), 0, "IPv4 header checksum");
    let tot_len = usize::from(u16::from_be_bytes([r[2], r[3]]));
    assert_eq!(ri + tot_len, reply.len(), "no bytes past the IPv4 packet");
    let udp = &r[ihl..tot_len];
    let qudp = &q[usize::from(q[0] & 0x0f) * 4..];
    assert_eq!(
        (&udp[0..2], &udp[2..4]),
        (&qudp[2..4], &qudp[0..2]),
        "ports swapped"
    );
    let mut pseudo = r[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
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
    let mut by_name = std::collections::BTreeSet::new();
    for (name, qtype) in &questions {
        for dns in queries(name, *qtype) {
            let frame = Frame::query(dns).bytes();
            for prog in PROGS {
                asked += 1;
                if h.check(prog, &frame) {
                    answered += 1;
                    by_name.insert((name.to_ascii_lowercase(), *qtype));
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
    let missing: Vec<_> = expected.difference(&by_name).collect();
    assert!(
        missing.is_empty(),
        "never answered in the kernel: {missing:?}"
    );
    eprintln!("{answered} of {asked} queries answered in the kernel, all as userspace does");

    // A change moves the serial: the kernel's SOA follows once the agent writes it again.
    let name = a
        .keys()
        .find(|n| !aaaa.contains_key(*n) && !soa_names(n))
        .expect("an IPv4-only name")
        .clone();
    let frame = Frame::query(Query::aaaa(&name).bytes()).bytes();
    h.records.serial += 3600;
    h.dp.set_soa_of(&h.records).expect("DNS_SOA written");
    for prog in PROGS {
        assert!(h.check(prog, &frame), "{name} AAAA: NODATA from the kernel");
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

/// xorshift64*: the same packets for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One packet made from `seeds`: a DNS message mutated and framed correctly, a frame with
/// raw header damage, or random bytes.
fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut dns = seeds[rng.below(seeds.len())].clone();
    let kind = rng.below(10);
    if kind < 6 {
        for _ in 0..1 + rng.below(3) {
            match rng.below(5) {
                0 if !dns.is_empty() => {
                    let i = rng.below(dns.len());
                    dns[i] = rng.next() as u8;
                }
                1 if !dns.is_empty() => {
                    let i = rng.below(dns.len());
                    dns[i] ^= 1 << rng.below(8);
                }
                2 => dns.truncate(rng.below(dns.len() + 1)),
                3 => dns.extend((0..rng.below(12)).map(|_| rng.next() as u8)),
                _ if !dns.is_empty() => {
                    // A plausible header value: counts, flags.
                    let i = rng.below(dns.len().min(12));
                    dns[i] = [0, 1, 2, 0x80, 0x81, 0xff][rng.below(6)];
                }
                _ => {}
            }
        }
        let mut frame = Frame::query(dns);
        match rng.below(8) {
            0 => frame.vlans = vec![0x0064],
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
    let mut frame = Frame::query(dns).bytes();
    if kind < 9 {
        // Damage in the headers (or anywhere), left unrepaired.
        for _ in 0..1 + rng.below(2) {
            let within = if rng.below(2) == 0 { 42 } else { 4096 };
            let i = rng.below(frame.len().min(within));
            frame[i] ^= 1 << rng.below(8);
        }
        if rng.below(4) == 0 {
            frame.truncate(rng.below(frame.len() + 1));
        }
        return frame;
    }
    let len = rng.below(120);
    frame.truncate(42.min(frame.len()));
    frame.extend((0..len).map(|_| rng.next() as u8));
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
    let mut answered = 0usize;
    for i in 0..packets {
        let frame = mutant(&mut rng, &seeds);
        if frame.len() < 14 {
            continue;
        }
        // The TC test run refuses an IPv4 frame shorter than an IPv4 header: XDP takes those.
        let prog = if frame.len() < 34 {
            programs::DNS_XDP
        } else {
            PROGS[i % 2]
        };
        answered += usize::from(h.check(prog, &frame));
    }
    eprintln!(
        "{packets} packets (seed {seed}): {answered} answered in the kernel, each as userspace; \
         the rest passed untouched"
    );
    assert!(
        answered > packets / 100,
        "the mutations still reach answers"
    );
}
