//! Byte-exact tests of dns_xdp and dns_tc through BPF_PROG_TEST_RUN: crafted queries in, the
//! exact response (or the untouched packet and the right pass counter) out. Needs root.

#[path = "kernel_answers/packets.rs"]
mod packets;

use std::os::fd::AsFd;

use aya::{
    maps::{Array, HashMap, PerCpuArray},
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use dns_agent::dataplane::EBPF_OBJECT;
use dns_agent_tests::test_run::{test_run, TestRun};
use dns_common::{
    config::Config,
    name::{hash_words, pack_name},
    records::{ARecords, AaaaRecords, NameKey, FLAG_USERSPACE_ONLY, MAX_AAAA, MAX_ADDRS},
    stats,
};
use packets::*;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

const WEB: &str = "web.default.svc.cluster.local.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    Tc,
    ReflectXdp,
    ReflectTc,
}

/// The answering programs, which every case runs through.
const PROGS: [Prog; 2] = [Prog::Xdp, Prog::Tc];
const ALL: [Prog; 4] = [Prog::Xdp, Prog::Tc, Prog::ReflectXdp, Prog::ReflectTc];

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Xdp => "dns_xdp",
            Prog::Tc => "dns_tc",
            Prog::ReflectXdp => "reflect_xdp",
            Prog::ReflectTc => "reflect_tc",
        }
    }
    fn is_xdp(self) -> bool {
        matches!(self, Prog::Xdp | Prog::ReflectXdp)
    }
    fn answered(self) -> u32 {
        if self.is_xdp() {
            XDP_TX
        } else {
            TC_ACT_REDIRECT
        }
    }
    fn passed(self) -> u32 {
        if self.is_xdp() {
            XDP_PASS
        } else {
            TC_ACT_OK
        }
    }
}

/// The object loaded with its own maps (one per test, so tests can run in parallel).
struct Kernel {
    ebpf: Ebpf,
}

fn key_of(name: &str) -> (NameKey, [u64; 32]) {
    let w = wire(&name.to_ascii_lowercase());
    let words = pack_name(&w).expect("name fits");
    let key = NameKey {
        hash: hash_words(&words, w.len() as u16),
        len: w.len() as u16,
        _pad: [0; 6],
    };
    (key, words)
}

fn value(words: [u64; 32], ttl: u32, addrs: &[[u8; 4]]) -> ARecords {
    let mut v = ARecords {
        name: words,
        ttl,
        count: addrs.len().min(MAX_ADDRS) as u16,
        flags: 0,
        addrs_be: [0; MAX_ADDRS],
    };
    for (slot, a) in v.addrs_be.iter_mut().zip(addrs) {
        *slot = u32::from_ne_bytes(*a);
    }
    v
}

fn aaaa_value(words: [u64; 32], ttl: u32, addrs: &[[u8; 16]]) -> AaaaRecords {
    let mut v = AaaaRecords {
        name: words,
        ttl,
        count: addrs.len().min(MAX_AAAA) as u16,
        flags: 0,
        addrs: [[0; 4]; MAX_AAAA],
    };
    for (slot, a) in v.addrs.iter_mut().zip(addrs) {
        for (w, b) in slot.iter_mut().zip(a.chunks(4)) {
            *w = u32::from_ne_bytes(b.try_into().expect("4 bytes"));
        }
    }
    v
}

impl Kernel {
    fn new() -> Self {
        assert!(
            !EBPF_OBJECT.is_empty(),
            "dns-agent was built without the eBPF object: run `cargo xtask setup`"
        );
        let mut ebpf = Ebpf::load(EBPF_OBJECT).expect("load the eBPF object (root needed)");
        for prog in ALL {
            let p = ebpf.program_mut(prog.name()).expect("program in object");
            if prog.is_xdp() {
                <&mut Xdp>::try_from(p).expect("xdp").load()
            } else {
                <&mut SchedClassifier>::try_from(p).expect("tc").load()
            }
            .unwrap_or_else(|e| panic!("verifier refused {}: {e}", prog.name()));
        }
        let mut config = Config {
            ipv4_count: 2,
            ipv6_count: 2,
            port_be: DNS_PORT.to_be(),
            ..Config::default()
        };
        config.service_ipv4_be[0] = u32::from_ne_bytes(OTHER_SERVICE_IP);
        config.service_ipv4_be[1] = u32::from_ne_bytes(SERVICE_IP);
        config.service_ipv6_be[0] = Config::ipv6_words(OTHER_SERVICE_IP6);
        config.service_ipv6_be[1] = Config::ipv6_words(SERVICE_IP6);
        let mut cfg: Array<_, Config> =
            Array::try_from(ebpf.map_mut("DNS_CONFIG").expect("DNS_CONFIG")).expect("array");
        cfg.set(0, config, 0).expect("write DNS_CONFIG");
        Kernel { ebpf }
    }

    fn insert(&mut self, key: NameKey, v: ARecords) {
        let mut map: HashMap<_, NameKey, ARecords> =
            HashMap::try_from(self.ebpf.map_mut("DNS_A").expect("DNS_A")).expect("hash map");
        map.insert(key, v, 0).expect("insert");
    }

    fn insert_aaaa(&mut self, key: NameKey, v: AaaaRecords) {
        let mut map: HashMap<_, NameKey, AaaaRecords> =
            HashMap::try_from(self.ebpf.map_mut("DNS_AAAA").expect("DNS_AAAA")).expect("hash map");
        map.insert(key, v, 0).expect("insert");
    }

    fn add_aaaa(&mut self, name: &str, ttl: u32, addrs: &[[u8; 16]]) {
        let (key, words) = key_of(name);
        self.insert_aaaa(key, aaaa_value(words, ttl, addrs));
    }

    fn add(&mut self, name: &str, ttl: u32, addrs: &[[u8; 4]]) {
        let (key, words) = key_of(name);
        self.insert(key, value(words, ttl, addrs));
    }

    fn stats(&self) -> Vec<u64> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("DNS_STATS").expect("DNS_STATS")).expect("array");
        (0..stats::COUNT)
            .map(|i| map.get(&i, 0).expect("read stats").iter().sum())
            .collect()
    }

    fn run(&mut self, prog: Prog, packet: &[u8]) -> TestRun {
        let p = self.ebpf.program(prog.name()).expect("program");
        let fd = if prog.is_xdp() {
            <&Xdp>::try_from(p).expect("xdp").fd().expect("loaded")
        } else {
            <&SchedClassifier>::try_from(p)
                .expect("tc")
                .fd()
                .expect("loaded")
        };
        test_run(fd.as_fd(), packet, 1)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {}: {e}", prog.name()))
    }

    /// Runs `packet` through both answering programs and checks the verdict, the bytes and
    /// that only the `reason` counter moved (by one per run).
    fn expect(&mut self, case: &str, packet: &[u8], reason: u32, want: &[u8]) {
        self.expect_from(&PROGS, case, packet, reason, want);
    }

    fn expect_from(&mut self, progs: &[Prog], case: &str, packet: &[u8], reason: u32, want: &[u8]) {
        for &prog in progs {
            let before = self.stats();
            let got = self.run(prog, packet);
            let after = self.stats();
            let verdict = if reason == stats::ANSWERED {
                prog.answered()
            } else {
                prog.passed()
            };
            assert_eq!(
                got.retval,
                verdict,
                "{case} via {prog:?}: verdict (counters moved: {:?})",
                moved(&before, &after)
            );
            assert_eq!(
                Hex(&got.data),
                Hex(want),
                "{case} via {prog:?}: packet bytes"
            );
            let mut want_delta = vec![0u64; stats::COUNT as usize];
            want_delta[reason as usize] = 1;
            let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            assert_eq!(
                delta,
                want_delta,
                "{case} via {prog:?}: counters (want +1 on {})",
                stats::REASON_NAMES[reason as usize]
            );
        }
    }

    fn expect_answer(&mut self, case: &str, frame: &Frame, want: Vec<u8>) {
        self.expect(case, &frame.bytes(), stats::ANSWERED, &want);
    }

    fn expect_pass(&mut self, case: &str, frame: &Frame, reason: u32) {
        let packet = frame.bytes();
        self.expect(case, &packet, reason, &packet);
    }
}

fn moved(before: &[u64], after: &[u64]) -> Vec<&'static str> {
    (0..before.len())
        .filter(|&i| before[i] != after[i])
        .map(|i| stats::REASON_NAMES[i])
        .collect()
}

/// Bytes compared and printed as hex rows with offsets, so a mismatch is readable.
#[derive(PartialEq, Eq)]
struct Hex<'a>(&'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} bytes", self.0.len())?;
        for (i, row) in self.0.chunks(16).enumerate() {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(f, "{:04x}: {}", i * 16, hex.join(" "))?;
        }
        Ok(())
    }
}

fn addrs(n: u8) -> Vec<[u8; 4]> {
    (1..=n).map(|i| [10, 96, 7, i]).collect()
}

/// `n` IPv6 addresses, fd00:10:96::7:1 and up; bytes chosen so every checksum lane moves.
fn addrs6(n: u8) -> Vec<[u8; 16]> {
    (1..=n)
        .map(|i| {
            let mut a = [
                0xfd, 0, 0, 0x10, 0, 0x96, 0, 0, 0xab, 0xcd, 0, 0, 0, 0x07, 0xff, 0,
            ];
            a[15] = i;
            a
        })
        .collect()
}

/// A name of `len` wire bytes (`len` >= 2), 63-byte labels then the remainder.
fn name_of_wire_len(len: usize) -> String {
    let mut left = len - 1;
    let mut labels = Vec::new();
    let mut c = b'a';
    while left > 0 {
        let l = (left - 1).min(63);
        assert!(l > 0, "cannot make a {len}-byte name");
        labels.push(String::from_utf8(vec![c; l]).expect("ascii"));
        left -= l + 1;
        c += 1;
    }
    labels.join(".") + "."
}

#[test]
fn answers_are_byte_exact() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    let several = "ab.default.svc.cluster.local.";
    k.add(several, 30, &addrs(5));
    let long = name_of_wire_len(221);
    assert_eq!(wire(&long).len(), 221);
    k.add(&long, 5, &[[10, 96, 9, 9], [10, 96, 9, 10]]);
    let full = "full.default.svc.cluster.local.";
    k.add(full, 7, &addrs(32));

    let q = Query::a(WEB);
    k.expect_answer(
        "plain",
        &Frame::query(q.bytes()),
        Frame::query(q.bytes()).reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let q = Query::a("WeB.DeFault.SVC.cluster.LOCAL.");
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "mixed case echoed",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let mut q = Query::a(WEB);
    q.flags = CD | AD; // RD clear, CD copied, AD cleared
    let mut opt = Opt::new(1232);
    opt.flags = DO;
    opt.options = vec![(10, vec![0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])];
    let q = q.with_opt(opt);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "OPT with DO and a COOKIE",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let q = Query::a(WEB).with_opt(Opt::new(512));
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "OPT without options",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let q = Query::a(WEB);
    let mut f = Frame::query(q.bytes());
    f.vlans = vec![0x2064];
    k.expect_answer(
        "802.1Q tag kept",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let mut f = Frame::query(q.bytes());
    f.ip_options = vec![0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];
    f.tos = 0x10;
    k.expect_answer(
        "IP options kept",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );

    let q = Query::a(several);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "five addresses, even-length name",
        &f,
        f.reply(q.answer(30, &addrs(5))),
    );

    let q = Query::a(&long.to_uppercase()).with_opt(Opt::new(4096));
    let f = Frame::query(q.bytes());
    let a = [[10, 96, 9, 9], [10, 96, 9, 10]];
    k.expect_answer("221-byte name", &f, f.reply(q.answer(5, &a)));

    let q = Query::a(full).with_opt(Opt::new(1232));
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "32 addresses with EDNS",
        &f,
        f.reply(q.answer(7, &addrs(32))),
    );

    for csum in [UdpCsum::Zero, UdpCsum::Partial] {
        let q = Query::a(WEB);
        let mut f = Frame::query(q.bytes());
        if let L4::Udp { csum: c, .. } = &mut f.l4 {
            *c = csum;
        }
        k.expect_answer(
            &format!("query UDP checksum {csum:?}"),
            &f,
            f.reply(q.answer(5, &[[10, 96, 3, 4]])),
        );
    }

    let q = Query::a(WEB);
    let mut f = Frame::query(q.bytes());
    f.trailer = vec![0; 9];
    f.dst_ip = OTHER_SERVICE_IP;
    k.expect_answer(
        "padded frame, second service address",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4]])),
    );
}

#[test]
fn everything_else_passes_untouched() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    let q = Query::a(WEB);
    let dns = q.bytes();
    let base = Frame::query(dns.clone());

    // not_ipv4 (neither IPv4 nor IPv6)
    let mut f = base.clone();
    f.ethertype = 0x0806;
    k.expect_pass("ARP EtherType", &f, stats::NOT_IP);
    let mut f = base.clone();
    f.vlans = vec![100, 200];
    k.expect_pass("two VLAN tags", &f, stats::NOT_IP);
    let mut f = base.clone();
    f.ethertype = 0x86dd;
    k.expect_pass("IPv4 under the IPv6 EtherType", &f, stats::MALFORMED);

    // fragment
    let mut f = base.clone();
    f.frag = 0x2000;
    k.expect_pass("more fragments", &f, stats::FRAGMENT);
    let mut f = base.clone();
    f.frag = 0x0010;
    k.expect_pass("fragment offset", &f, stats::FRAGMENT);

    // not_udp
    let mut f = base.clone();
    f.proto = 6;
    f.l4 = L4::Raw([&[0x9c, 0xbb, 0, 53][..], &[0; 16], &dns].concat());
    k.expect_pass("TCP", &f, stats::NOT_UDP);

    // not_service
    let mut f = base.clone();
    f.dst_ip = [10, 96, 0, 11];
    k.expect_pass("other address", &f, stats::NOT_SERVICE);
    let mut f = base.clone();
    if let L4::Udp { dport, .. } = &mut f.l4 {
        *dport = 5353;
    }
    k.expect_pass("other port", &f, stats::NOT_SERVICE);

    // malformed
    k.expect_pass(
        "DNS header cut short",
        &Frame::query(dns[..11].to_vec()),
        stats::MALFORMED,
    );
    let mut ptr = header(7, RD, 1, 0, 0, 0);
    ptr.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    k.expect_pass(
        "compressed question name",
        &Frame::query(ptr),
        stats::MALFORMED,
    );
    let mut f = base.clone();
    f.tot_len = Some((20 + 8 + dns.len() + 10) as u16);
    k.expect_pass("IP total length past the frame", &f, stats::MALFORMED);
    let mut f = base.clone();
    if let L4::Udp { len, .. } = &mut f.l4 {
        *len = Some((8 + dns.len() - 2) as u16);
    }
    k.expect_pass("UDP length short of the IP payload", &f, stats::MALFORMED);
    k.expect_pass(
        "bytes after the question",
        &Frame::query([&dns[..], &[0, 0]].concat()),
        stats::MALFORMED,
    );
    k.expect_pass(
        "name without its root label",
        &Frame::query(dns[..12 + q.qname.len() - 1].to_vec()),
        stats::MALFORMED,
    );
    k.expect_pass(
        "no QTYPE/QCLASS",
        &Frame::query(dns[..12 + q.qname.len()].to_vec()),
        stats::MALFORMED,
    );
    let mut bad_label = header(7, RD, 1, 0, 0, 0);
    bad_label.extend_from_slice(&[0x40]);
    bad_label.extend_from_slice(&[b'x'; 64]);
    bad_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    k.expect_pass("64-byte label", &Frame::query(bad_label), stats::MALFORMED);
    let mut opt_cut = Query::a(WEB).with_opt(Opt::new(1232)).bytes();
    opt_cut.truncate(opt_cut.len() - 1);
    k.expect_pass("OPT cut short", &Frame::query(opt_cut), stats::MALFORMED);
    let mut too_long = header(7, RD, 1, 0, 0, 0);
    for _ in 0..5 {
        too_long.push(60);
        too_long.extend_from_slice(&[b'y'; 60]);
    }
    too_long.extend_from_slice(&[0, 0, 1, 0, 1]);
    k.expect_pass(
        "name over 255 bytes",
        &Frame::query(too_long),
        stats::MALFORMED,
    );

    // not_query
    let with_header = |flags: u16, counts: [u16; 4]| {
        let mut m = header(q.id, flags, counts[0], counts[1], counts[2], counts[3]);
        m.extend_from_slice(&q.question());
        Frame::query(m)
    };
    k.expect_pass(
        "QR set",
        &with_header(0x8000 | RD, [1, 0, 0, 0]),
        stats::NOT_QUERY,
    );
    k.expect_pass(
        "opcode NOTIFY",
        &with_header(4 << 11, [1, 0, 0, 0]),
        stats::NOT_QUERY,
    );
    k.expect_pass(
        "QDCOUNT 0",
        &with_header(RD, [0, 0, 0, 0]),
        stats::NOT_QUERY,
    );
    k.expect_pass(
        "QDCOUNT 2",
        &with_header(RD, [2, 0, 0, 0]),
        stats::NOT_QUERY,
    );
    k.expect_pass(
        "ANCOUNT 1",
        &with_header(RD, [1, 1, 0, 0]),
        stats::NOT_QUERY,
    );
    k.expect_pass(
        "NSCOUNT 1",
        &with_header(RD, [1, 0, 1, 0]),
        stats::NOT_QUERY,
    );

    // edns
    let mut v1 = Opt::new(1232);
    v1.version = 1;
    k.expect_pass(
        "EDNS version 1",
        &Frame::query(Query::a(WEB).with_opt(v1).bytes()),
        stats::EDNS,
    );
    let mut two = header(q.id, RD, 1, 0, 0, 2);
    two.extend_from_slice(&q.question());
    two.extend_from_slice(&Opt::new(1232).bytes());
    two.extend_from_slice(&Opt::new(1232).bytes());
    k.expect_pass("ARCOUNT 2", &Frame::query(two), stats::EDNS);
    let mut not_opt = header(q.id, RD, 1, 0, 0, 1);
    not_opt.extend_from_slice(&q.question());
    not_opt.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]);
    k.expect_pass("additional A record", &Frame::query(not_opt), stats::EDNS);
    let mut named = header(q.id, RD, 1, 0, 0, 1);
    named.extend_from_slice(&q.question());
    named.extend_from_slice(&[1, b'x']);
    named.extend_from_slice(&Opt::new(1232).bytes()[..]);
    k.expect_pass("OPT with an owner name", &Frame::query(named), stats::EDNS);
    let mut bad_opts = Query::a(WEB).with_opt(Opt::new(1232)).bytes();
    let n = bad_opts.len();
    bad_opts[n - 2..].copy_from_slice(&6u16.to_be_bytes()); // RDLENGTH 6
    bad_opts.extend_from_slice(&[0, 10, 0, 8, 1, 2]); // option claims 8 bytes, has 2
    k.expect_pass(
        "options overrun RDATA",
        &Frame::query(bad_opts),
        stats::EDNS,
    );

    // not_class_in, qtype
    let mut ch = Query::a(WEB);
    ch.qclass = 3;
    k.expect_pass("class CH", &Frame::query(ch.bytes()), stats::NOT_CLASS_IN);
    for qtype in [255u16, 5, 2, 16, 33] {
        let mut t = Query::a(WEB);
        t.qtype = qtype;
        k.expect_pass(
            &format!("qtype {qtype}"),
            &Frame::query(t.bytes()),
            stats::QTYPE,
        );
    }

    // miss
    k.expect_pass(
        "AAAA for a name that only has A records",
        &Frame::query(Query::aaaa(WEB).bytes()),
        stats::MISS,
    );
    k.expect_pass(
        "unknown name",
        &Frame::query(Query::a("nope.default.svc.cluster.local.").bytes()),
        stats::MISS,
    );
    k.expect_pass(
        "parent of a known name",
        &Frame::query(Query::a("default.svc.cluster.local.").bytes()),
        stats::MISS,
    );

    // too_big
    let big = "big.default.svc.cluster.local.";
    let (key, words) = key_of(big);
    let mut flagged = value(words, 5, &addrs(32));
    flagged.flags = FLAG_USERSPACE_ONLY;
    k.insert(key, flagged);
    k.expect_pass(
        "more addresses than the kernel holds",
        &Frame::query(Query::a(big).with_opt(Opt::new(4096)).bytes()),
        stats::TOO_BIG,
    );
    let long = name_of_wire_len(221);
    k.add(&long, 5, &addrs(20));
    // 12 + 221 + 4 + 20 * 16 = 557 bytes.
    k.expect_pass(
        "over 512 bytes without EDNS",
        &Frame::query(Query::a(&long).bytes()),
        stats::TOO_BIG,
    );
    k.expect_pass(
        "over the client's EDNS size",
        &Frame::query(Query::a(&long).with_opt(Opt::new(560)).bytes()),
        stats::TOO_BIG,
    );
    // The same fits an EDNS size of 568 (557 + 11 for the OPT).
    let q = Query::a(&long).with_opt(Opt::new(568));
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "exactly the client's EDNS size",
        &f,
        f.reply(q.answer(5, &addrs(20))),
    );
}

#[test]
fn hash_collision_is_a_miss() {
    let mut k = Kernel::new();
    let asked = "db.prod.svc.cluster.local.";
    let stored = "web.prod.svc.cluster.local.";
    // Under the key of `asked`, a value holding another name: what a hash collision looks like.
    let (key, _) = key_of(asked);
    let (_, other_words) = key_of(stored);
    k.insert(key, value(other_words, 5, &[[10, 96, 5, 5]]));
    k.expect_pass(
        "colliding key, different stored name",
        &Frame::query(Query::a(asked).bytes()),
        stats::MISS,
    );
    // The same key with the right name answers.
    let (_, words) = key_of(asked);
    k.insert(key, value(words, 5, &[[10, 96, 5, 5]]));
    let q = Query::a(asked);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "same key, right name",
        &f,
        f.reply(q.answer(5, &[[10, 96, 5, 5]])),
    );
}

#[test]
fn reference_checksums_verify() {
    // The reference builder itself: a correct checksum sums to zero over the datagram.
    let q = Query::a(WEB);
    let f = Frame::query(q.bytes());
    let bytes = f.bytes();
    assert_eq!(checksum(&[&bytes[14..34]]), 0, "IPv4 header");
    let udp = &bytes[34..];
    let mut pseudo = bytes[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP");
}

#[test]
fn reflect_swaps_addresses_and_ports_only() {
    let mut k = Kernel::new();
    let reflect = [Prog::ReflectXdp, Prog::ReflectTc];
    for (case, csum, vlans) in [
        ("plain", UdpCsum::Correct, vec![]),
        ("partial checksum, VLAN", UdpCsum::Partial, vec![7]),
    ] {
        let mut f = Frame::query(Query::a(WEB).bytes());
        f.vlans = vlans;
        if let L4::Udp { csum: c, .. } = &mut f.l4 {
            *c = csum;
        }
        let mut back = f.clone();
        back.src_mac = f.dst_mac;
        back.dst_mac = f.src_mac;
        back.src_ip = f.dst_ip;
        back.dst_ip = f.src_ip;
        if let L4::Udp { sport, dport, .. } = &mut back.l4 {
            std::mem::swap(sport, dport);
        }
        // Both checksums cover the swapped fields symmetrically: same bytes everywhere else.
        k.expect_from(&reflect, case, &f.bytes(), stats::ANSWERED, &back.bytes());
    }
    let mut f = Frame::query(Query::a(WEB).bytes());
    f.dst_ip = [10, 96, 0, 11];
    let packet = f.bytes();
    k.expect_from(
        &reflect,
        "not a service address",
        &packet,
        stats::NOT_SERVICE,
        &packet,
    );
}

const SIX: [u8; 16] = [
    0xfd, 0x00, 0x00, 0x10, 0x00, 0x96, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x04,
];

#[test]
fn aaaa_answers_are_byte_exact() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    k.add_aaaa(WEB, 5, &[SIX]);
    let several = "ab.default.svc.cluster.local.";
    k.add_aaaa(several, 30, &addrs6(5));
    let long = name_of_wire_len(221);
    let two = [SIX, addrs6(1)[0]];
    k.add_aaaa(&long, 5, &two);
    let full = "full.default.svc.cluster.local.";
    k.add_aaaa(full, 7, &addrs6(32));
    let sixteen = "sixteen.default.svc.cluster.local.";
    k.add_aaaa(sixteen, 3600, &addrs6(16));

    let q = Query::aaaa(WEB);
    let f = Frame::query(q.bytes());
    k.expect_answer("plain AAAA", &f, f.reply(q.answer_aaaa(5, &[SIX])));
    // The A map still answers A for the same name.
    let q = Query::a(WEB);
    let f = Frame::query(q.bytes());
    k.expect_answer("A beside AAAA", &f, f.reply(q.answer(5, &[[10, 96, 3, 4]])));

    let q = Query::aaaa("WeB.DeFault.SVC.cluster.LOCAL.");
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "AAAA mixed case echoed",
        &f,
        f.reply(q.answer_aaaa(5, &[SIX])),
    );

    let mut q = Query::aaaa(WEB);
    q.flags = CD | AD;
    let mut opt = Opt::new(1232);
    opt.flags = DO;
    opt.options = vec![(10, vec![0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])];
    let q = q.with_opt(opt);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "AAAA, OPT with DO and a COOKIE",
        &f,
        f.reply(q.answer_aaaa(5, &[SIX])),
    );

    let q = Query::aaaa(WEB);
    let mut f = Frame::query(q.bytes());
    f.vlans = vec![0x2064];
    f.ip_options = vec![0x94, 0x04, 0x00, 0x00];
    k.expect_answer(
        "AAAA, 802.1Q tag and IP options kept",
        &f,
        f.reply(q.answer_aaaa(5, &[SIX])),
    );

    let q = Query::aaaa(several);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "five AAAA, even-length name, stored order",
        &f,
        f.reply(q.answer_aaaa(30, &addrs6(5))),
    );

    let q = Query::aaaa(&long.to_uppercase()).with_opt(Opt::new(4096));
    let f = Frame::query(q.bytes());
    k.expect_answer("AAAA, 221-byte name", &f, f.reply(q.answer_aaaa(5, &two)));

    let q = Query::aaaa(full).with_opt(Opt::new(1232));
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "32 AAAA with EDNS",
        &f,
        f.reply(q.answer_aaaa(7, &addrs6(32))),
    );

    // 12 + 35 + 4 + 16 * 28 = 499 bytes: fits 512 without EDNS.
    let q = Query::aaaa(sixteen);
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "16 AAAA without EDNS",
        &f,
        f.reply(q.answer_aaaa(3600, &addrs6(16))),
    );

    for csum in [UdpCsum::Zero, UdpCsum::Partial] {
        let q = Query::aaaa(WEB);
        let mut f = Frame::query(q.bytes());
        if let L4::Udp { csum: c, .. } = &mut f.l4 {
            *c = csum;
        }
        f.trailer = vec![0; 9];
        f.dst_ip = OTHER_SERVICE_IP;
        k.expect_answer(
            &format!("AAAA, query UDP checksum {csum:?}, padded, second address"),
            &f,
            f.reply(q.answer_aaaa(5, &[SIX])),
        );
    }
}

#[test]
fn aaaa_passes_what_the_kernel_does_not_answer() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    let v6only = "v6.default.svc.cluster.local.";
    k.add_aaaa(v6only, 5, &[SIX]);

    k.expect_pass(
        "AAAA for a name only in DNS_A",
        &Frame::query(Query::aaaa(WEB).bytes()),
        stats::MISS,
    );
    k.expect_pass(
        "A for a name only in DNS_AAAA",
        &Frame::query(Query::a(v6only).bytes()),
        stats::MISS,
    );
    k.expect_pass(
        "AAAA for an unknown name",
        &Frame::query(Query::aaaa("nope.default.svc.cluster.local.").bytes()),
        stats::MISS,
    );
    let mut ch = Query::aaaa(v6only);
    ch.qclass = 3;
    k.expect_pass(
        "AAAA class CH",
        &Frame::query(ch.bytes()),
        stats::NOT_CLASS_IN,
    );

    // Hash collision: the AAAA map's value holds another name.
    let asked = "db.prod.svc.cluster.local.";
    let (key, _) = key_of(asked);
    let (_, other_words) = key_of(v6only);
    k.insert_aaaa(key, aaaa_value(other_words, 5, &[SIX]));
    k.expect_pass(
        "AAAA colliding key, different stored name",
        &Frame::query(Query::aaaa(asked).bytes()),
        stats::MISS,
    );
    let (_, words) = key_of(asked);
    k.insert_aaaa(key, aaaa_value(words, 5, &[]));
    k.expect_pass(
        "AAAA entry without addresses",
        &Frame::query(Query::aaaa(asked).bytes()),
        stats::MISS,
    );

    // too_big
    let big = "big.default.svc.cluster.local.";
    let (key, words) = key_of(big);
    let mut flagged = aaaa_value(words, 5, &addrs6(32));
    flagged.flags = FLAG_USERSPACE_ONLY;
    k.insert_aaaa(key, flagged);
    k.expect_pass(
        "more AAAA than the kernel holds",
        &Frame::query(Query::aaaa(big).with_opt(Opt::new(4096)).bytes()),
        stats::TOO_BIG,
    );
    let seventeen = "seventeen.default.svc.cluster.local.";
    k.add_aaaa(seventeen, 5, &addrs6(17));
    // 12 + 37 + 4 + 17 * 28 = 529 bytes.
    k.expect_pass(
        "17 AAAA over 512 bytes without EDNS",
        &Frame::query(Query::aaaa(seventeen).bytes()),
        stats::TOO_BIG,
    );
    k.expect_pass(
        "17 AAAA over the client's EDNS size",
        &Frame::query(Query::aaaa(seventeen).with_opt(Opt::new(539)).bytes()),
        stats::TOO_BIG,
    );
    // 529 + 11 for the OPT.
    let q = Query::aaaa(seventeen).with_opt(Opt::new(540));
    let f = Frame::query(q.bytes());
    k.expect_answer(
        "17 AAAA at exactly the client's EDNS size",
        &f,
        f.reply(q.answer_aaaa(5, &addrs6(17))),
    );
}

/// Queries over IPv6: the same DNS bytes as over IPv4, in an IPv6 frame sent back with the
/// addresses swapped, hop limit 64, the payload length and a full UDP checksum; to either
/// configured IPv6 address, behind a VLAN tag, with a partial (offload) checksum, with padding.
#[test]
fn ipv6_answers_are_byte_exact() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4], [10, 96, 3, 5]]);
    k.add_aaaa(WEB, 7, &addrs6(3));
    let q = Query::a(WEB);
    let f = Frame::query6(q.bytes());
    k.expect_answer(
        "A over IPv6",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4], [10, 96, 3, 5]])),
    );
    let q6 = Query::aaaa(WEB).with_opt(Opt::new(1232));
    let f = Frame::query6(q6.bytes());
    k.expect_answer(
        "AAAA over IPv6, EDNS",
        &f,
        f.reply(q6.answer_aaaa(7, &addrs6(3))),
    );

    let mut f = Frame::query6(q.bytes());
    f.ip6_mut().dst = OTHER_SERVICE_IP6;
    k.expect_answer(
        "the other IPv6 service address",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4], [10, 96, 3, 5]])),
    );
    let mut f = Frame::query6(q.bytes());
    f.vlans = vec![0x0064];
    f.ip6_mut().traffic_class = 0xb8;
    k.expect_answer(
        "VLAN tag, traffic class kept",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4], [10, 96, 3, 5]])),
    );
    let mut f = Frame::query6(q.bytes());
    if let L4::Udp { csum, .. } = &mut f.l4 {
        *csum = UdpCsum::Partial;
    }
    f.trailer = vec![0; 6];
    k.expect_answer(
        "partial checksum, padding",
        &f,
        f.reply(q.answer(5, &[[10, 96, 3, 4], [10, 96, 3, 5]])),
    );
    // Names of odd and even lengths move the checksum's byte lanes.
    for len in [30usize, 31, 254, 255] {
        let name = name_of_wire_len(len);
        k.add(&name, 9, &[[192, 0, 2, 1]]);
        let q = Query::a(&name);
        let f = Frame::query6(q.bytes());
        k.expect_answer(
            &format!("{len}-byte name"),
            &f,
            f.reply(q.answer(9, &[[192, 0, 2, 1]])),
        );
    }
    // The DNS bytes are the IPv4 answer's (NODATA over IPv6: kernel_equivalence.rs).
    let q = Query::aaaa(WEB).with_opt(Opt {
        flags: DO,
        ..Opt::new(4096)
    });
    let over_v4 = k.run(Prog::Xdp, &Frame::query(q.bytes()).bytes());
    let over_v6 = k.run(Prog::Xdp, &Frame::query6(q.bytes()).bytes());
    assert_eq!((over_v4.retval, over_v6.retval), (XDP_TX, XDP_TX));
    assert_eq!(
        Hex(&over_v4.data[42..]),
        Hex(&over_v6.data[62..]),
        "the same DNS bytes over IPv4 and IPv6"
    );
}

/// The UDP checksum the kernel computes over IPv6 is never sent as 0: a datagram whose sum
/// comes to 0 carries 0xffff.
#[test]
fn ipv6_checksum_zero_is_sent_as_all_ones() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    // Pick the client port so the answer's checksum comes to 0 (searched with the reference).
    let q = Query::a(WEB);
    let want_dns = q.answer(5, &[[10, 96, 3, 4]]);
    let port = (1024..=u16::MAX)
        .find(|&p| {
            let mut f = Frame::query6(q.bytes());
            if let L4::Udp { sport, .. } = &mut f.l4 {
                *sport = p;
            }
            let r = f.reply(want_dns.clone());
            r[60..62] == [0xff, 0xff]
        })
        .expect("a port whose answer sums to zero");
    let mut f = Frame::query6(q.bytes());
    if let L4::Udp { sport, .. } = &mut f.l4 {
        *sport = port;
    }
    k.expect_answer("checksum 0 sent as 0xffff", &f, f.reply(want_dns));
}

/// What the kernel leaves to the stack over IPv6, each under its reason.
#[test]
fn ipv6_everything_else_passes_untouched() {
    let mut k = Kernel::new();
    k.add(WEB, 5, &[[10, 96, 3, 4]]);
    let dns = Query::a(WEB).bytes();
    let base = Frame::query6(dns.clone());
    let udp_len = 8 + dns.len();

    // Extension headers: Hop-by-Hop (PadN), Destination Options, Routing; a Fragment header.
    for (case, next, ext) in [
        ("hop-by-hop options", 0u8, vec![17, 0, 1, 4, 0, 0, 0, 0]),
        ("destination options", 60, vec![17, 0, 1, 4, 0, 0, 0, 0]),
        ("routing header", 43, vec![17, 0, 0, 0, 0, 0, 0, 0]),
    ] {
        let mut f = base.clone();
        f.ip6_mut().next = next;
        f.ip6_mut().ext = ext;
        k.expect_pass(case, &f, stats::IPV6_EXT);
    }
    let mut f = base.clone();
    f.ip6_mut().next = 44;
    f.ip6_mut().ext = vec![17, 0, 0, 0, 0, 0, 0x12, 0x34];
    k.expect_pass("fragment header", &f, stats::FRAGMENT);

    let mut f = base.clone();
    f.ip6_mut().next = 58;
    f.l4 = L4::Raw(vec![128, 0, 0, 0, 0, 1, 0, 1]);
    k.expect_pass("ICMPv6", &f, stats::NOT_UDP);
    let mut f = base.clone();
    f.ip6_mut().next = 6;
    f.l4 = L4::Raw([&[0x9c, 0xbb, 0, 53][..], &[0; 16], &dns].concat());
    k.expect_pass("TCP", &f, stats::NOT_UDP);

    let mut f = base.clone();
    f.ip6_mut().dst[15] = 0x0b;
    k.expect_pass("other IPv6 address", &f, stats::NOT_SERVICE);
    let mut f = base.clone();
    let mut mapped = [0u8; 16];
    mapped[10..12].copy_from_slice(&[0xff, 0xff]);
    mapped[12..].copy_from_slice(&SERVICE_IP);
    f.ip6_mut().dst = mapped;
    k.expect_pass("IPv4-mapped service address", &f, stats::NOT_SERVICE);
    let mut f = base.clone();
    if let L4::Udp { dport, .. } = &mut f.l4 {
        *dport = 5353;
    }
    k.expect_pass("other port", &f, stats::NOT_SERVICE);

    let mut f = base.clone();
    if let L4::Udp { csum, .. } = &mut f.l4 {
        *csum = UdpCsum::Zero;
    }
    k.expect_pass("UDP checksum 0 (the stack drops it)", &f, stats::MALFORMED);
    let mut f = base.clone();
    f.ip6_mut().payload_len = Some((udp_len + 1) as u16);
    k.expect_pass("payload length past the frame", &f, stats::MALFORMED);
    let mut f = base.clone();
    f.ip6_mut().payload_len = Some((udp_len - 2) as u16);
    k.expect_pass(
        "payload length short of the UDP length",
        &f,
        stats::MALFORMED,
    );
    let mut f = base.clone();
    f.ip6_mut().payload_len = Some(0);
    k.expect_pass("payload length 0 (a jumbogram)", &f, stats::MALFORMED);
    let mut f = base.clone();
    if let L4::Udp { len, .. } = &mut f.l4 {
        *len = Some((udp_len - 2) as u16);
    }
    k.expect_pass("UDP length short of the payload", &f, stats::MALFORMED);
    let mut f = base.clone();
    f.ethertype = 0x0800;
    k.expect_pass("IPv6 under the IPv4 EtherType", &f, stats::MALFORMED);
    let mut f = base.clone();
    f.ip6_mut().src = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    k.expect_pass("a multicast source", &f, stats::MALFORMED);

    // The DNS checks are the IPv4 path's: a response, a compressed name.
    let mut r = Query::a(WEB);
    r.flags |= 0x8000;
    k.expect_pass("a response", &Frame::query6(r.bytes()), stats::NOT_QUERY);
    let mut ptr = header(7, RD, 1, 0, 0, 0);
    ptr.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    k.expect_pass(
        "compressed question name",
        &Frame::query6(ptr),
        stats::MALFORMED,
    );
    k.expect_pass(
        "unknown name",
        &Frame::query6(Query::a("nope.default.svc.cluster.local.").bytes()),
        stats::MISS,
    );
}

/// The reflect baselines turn IPv6 datagrams around too (the bench ceiling over IPv6).
#[test]
fn reflect_swaps_ipv6_addresses_and_ports_only() {
    let mut k = Kernel::new();
    let reflect = [Prog::ReflectXdp, Prog::ReflectTc];
    let f = Frame::query6(Query::a(WEB).bytes());
    let mut back = f.clone();
    back.src_mac = f.dst_mac;
    back.dst_mac = f.src_mac;
    let h = back.ip6_mut();
    std::mem::swap(&mut h.src, &mut h.dst);
    if let L4::Udp { sport, dport, .. } = &mut back.l4 {
        std::mem::swap(sport, dport);
    }
    k.expect_from(&reflect, "IPv6", &f.bytes(), stats::ANSWERED, &back.bytes());
    let mut f = Frame::query6(Query::a(WEB).bytes());
    f.ip6_mut().dst[15] = 0x0b;
    let packet = f.bytes();
    k.expect_from(
        &reflect,
        "not a service address",
        &packet,
        stats::NOT_SERVICE,
        &packet,
    );
}
