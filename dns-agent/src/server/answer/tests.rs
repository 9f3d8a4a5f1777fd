//! Byte-level and table-driven tests of the response builder.

use hickory_proto::op::Message;

use super::*;
use crate::records::{build, Settings};
use crate::snapshot;

fn sample() -> Records {
    let loaded = snapshot::parse("sample", snapshot::EMBEDDED).unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings::new("cluster.local", 5);
    build(&loaded.cluster, &settings, 1_700_000_000).0
}

/// Wire form of a dotted name (no compression).
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// An OPT record for a query: UDP size, the 32-bit TTL field, raw options.
struct OptSpec {
    udp: u16,
    ttl: u32,
    options: Vec<u8>,
}

fn opt_rr(o: &OptSpec) -> Vec<u8> {
    let mut out = vec![0, 0, 41];
    out.extend_from_slice(&o.udp.to_be_bytes());
    out.extend_from_slice(&o.ttl.to_be_bytes());
    out.extend_from_slice(&(o.options.len() as u16).to_be_bytes());
    out.extend_from_slice(&o.options);
    out
}

/// A query: `flags` is the 16-bit flags word, then one question, then an optional OPT.
fn query(
    id: u16,
    flags: u16,
    name: &str,
    qtype: u16,
    qclass: u16,
    opt: Option<&OptSpec>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    out.extend_from_slice(&wire_name(name));
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    if let Some(o) = opt {
        out.extend_from_slice(&opt_rr(o));
    }
    out
}

const RD: u16 = 0x0100;
const CD: u16 = 0x0010;
const AD: u16 = 0x0020;
const Z: u16 = 0x0040;
const A_: u16 = 1;
const IN: u16 = 1;

fn udp(q: &[u8]) -> Response {
    respond(q, &sample(), Transport::Udp).expect("a response")
}

#[test]
fn hit_bytes_are_exactly_the_contract() {
    // dig-like query: RD, AD set by dig, CD, Z, mixed case, OPT 1232 with DO and a COOKIE option.
    let cookie = [0u8, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let opt = OptSpec {
        udp: 1232,
        ttl: 0x0000_8000,
        options: cookie.to_vec(),
    };
    let name = "Web.DEFAULT.svc.Cluster.local.";
    let q = query(0xbeef, RD | CD | AD | Z, name, A_, IN, Some(&opt));
    let r = udp(&q);
    let mut want = vec![0xbe, 0xef, 0x85, 0x10, 0, 1, 0, 1, 0, 0, 0, 1];
    let question_end = 12 + wire_name(name).len() + 4;
    want.extend_from_slice(&q[12..question_end]);
    want.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 96, 10, 20]);
    want.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    assert_eq!(r.bytes, want);
    assert_eq!(r.rcode, 0);

    // Without OPT, RD and CD clear: no additional, flags 84 00.
    let q = query(7, 0, "db.demo.svc.cluster.local.", A_, IN, None);
    let r = udp(&q);
    let mut want = vec![0, 7, 0x84, 0x00, 0, 1, 0, 3, 0, 0, 0, 0];
    want.extend_from_slice(&q[12..]);
    for last in [[10, 244, 1, 11], [10, 244, 2, 12], [10, 244, 3, 14]] {
        want.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        want.extend_from_slice(&last);
    }
    assert_eq!(r.bytes, want);

    // A client UDP size below 512 is echoed as sent; DO clear stays clear.
    let opt = OptSpec {
        udp: 100,
        ttl: 0,
        options: vec![],
    };
    let r = udp(&query(
        1,
        RD,
        "web.default.svc.cluster.local.",
        A_,
        IN,
        Some(&opt),
    ));
    assert_eq!(
        &r.bytes[r.bytes.len() - 11..],
        &[0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn badvers_sets_the_extended_rcode() {
    let opt = OptSpec {
        udp: 4096,
        ttl: 0x0001_8000,
        options: vec![],
    };
    let q = query(9, RD, "web.default.svc.cluster.local.", A_, IN, Some(&opt));
    let r = udp(&q);
    assert_eq!(r.rcode, 16);
    // Answered by the server before any plugin (as CoreDNS does): not authoritative.
    let mut want = vec![0, 9, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    want.extend_from_slice(&q[12..q.len() - 11]);
    want.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 1, 0, 0x80, 0, 0, 0]);
    assert_eq!(r.bytes, want);
}

#[test]
fn truncation_keeps_question_and_opt_only() {
    let name = "fanout.demo.svc.cluster.local.";
    let q = query(3, RD, name, A_, IN, None);
    let r = udp(&q);
    let mut want = vec![0, 3, 0x87, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&q[12..]);
    assert_eq!(r.bytes, want, "40 addresses do not fit 512 bytes");

    let opt = OptSpec {
        udp: 600,
        ttl: 0,
        options: vec![],
    };
    let q = query(4, 0, name, A_, IN, Some(&opt));
    let r = udp(&q);
    let mut want = vec![0, 4, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    want.extend_from_slice(&q[12..]);
    assert_eq!(r.bytes, want, "nor the client's 600");

    let opt = OptSpec {
        udp: 1232,
        ttl: 0,
        options: vec![],
    };
    let r = udp(&query(5, 0, name, A_, IN, Some(&opt)));
    assert_eq!(r.bytes[2] & 0x02, 0, "1232 is enough");
    assert_eq!(u16::from_be_bytes([r.bytes[6], r.bytes[7]]), 40);

    let r = respond(&query(6, 0, name, A_, IN, None), &sample(), Transport::Tcp).expect("response");
    assert_eq!(r.bytes[2] & 0x02, 0, "TCP is not limited to 512");
    assert_eq!(u16::from_be_bytes([r.bytes[6], r.bytes[7]]), 40);
}

#[test]
fn nothing_is_sent_back_for_responses_and_runts() {
    let mut q = query(1, 0, "web.default.svc.cluster.local.", A_, IN, None);
    q[2] |= 0x80;
    assert_eq!(respond(&q, &sample(), Transport::Udp), None);
    assert_eq!(respond(&[0, 1, 0], &sample(), Transport::Udp), None);
}

/// One decoded answer, as text: `name ttl TYPE rdata`.
fn rr_text(r: &Record) -> String {
    format!("{} {} {} {}", r.name(), r.ttl(), r.record_type(), r.data())
}

#[test]
fn rcodes_and_sections() {
    struct Case {
        name: &'static str,
        query: Vec<u8>,
        rcode: u16,
        aa: bool,
        answers: &'static [&'static str],
        authority: &'static [&'static str],
    }
    const SOA: &str = "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5";
    let q = |name: &str, qtype: u16| query(0x1234, RD, name, qtype, IN, None);
    let mut two_questions = q("web.default.svc.cluster.local.", A_);
    two_questions[5] = 2;
    let mut with_answer = q("web.default.svc.cluster.local.", A_);
    with_answer[7] = 1;
    let mut two_opts = query(1, 0, "web.default.svc.cluster.local.", A_, IN, None);
    two_opts[11] = 2;
    for _ in 0..2 {
        two_opts.extend_from_slice(&opt_rr(&OptSpec {
            udp: 1232,
            ttl: 0,
            options: vec![],
        }));
    }
    let mut notify = q("cluster.local.", 6);
    notify[2] |= 4 << 3;
    let cases = vec![
        Case {
            name: "A hit",
            query: q("kube-dns.kube-system.svc.cluster.local.", A_),
            rcode: 0,
            aa: true,
            answers: &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
            authority: &[],
        },
        Case {
            name: "dual-stack service: only its IPv4",
            query: q("api.demo.svc.cluster.local.", A_),
            rcode: 0,
            aa: true,
            answers: &["api.demo.svc.cluster.local. 5 A 10.96.20.30"],
            authority: &[],
        },
        Case {
            name: "ANY on an A name",
            query: q("web.default.svc.cluster.local.", 255),
            rcode: 0,
            aa: true,
            answers: &["web.default.svc.cluster.local. 5 A 10.96.10.20"],
            authority: &[],
        },
        Case {
            name: "AAAA on an A name: NODATA",
            query: q("web.default.svc.cluster.local.", 28),
            rcode: 0,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "unknown service: NXDOMAIN",
            query: q("nope.default.svc.cluster.local.", A_),
            rcode: 3,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "headless without ready endpoints: NXDOMAIN",
            query: q("warming.demo.svc.cluster.local.", A_),
            rcode: 3,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "namespace: empty non-terminal",
            query: q("demo.svc.cluster.local.", A_),
            rcode: 0,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "svc: empty non-terminal",
            query: q("svc.cluster.local.", A_),
            rcode: 0,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "unknown namespace: NXDOMAIN",
            query: q("nons.svc.cluster.local.", A_),
            rcode: 3,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "apex SOA",
            query: q("cluster.local.", 6),
            rcode: 0,
            aa: true,
            answers: &[SOA],
            authority: &[],
        },
        Case {
            name: "apex NS",
            query: q("cluster.local.", 2),
            rcode: 0,
            aa: true,
            answers: &["cluster.local. 5 NS ns.dns.cluster.local."],
            authority: &[],
        },
        Case {
            name: "apex A: NODATA",
            query: q("cluster.local.", A_),
            rcode: 0,
            aa: true,
            answers: &[],
            authority: &[SOA],
        },
        Case {
            name: "outside the zone: REFUSED without AA",
            query: q("example.com.", A_),
            rcode: 5,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "a suffix that is not a label boundary",
            query: q("xcluster.local.", A_),
            rcode: 5,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "class CH: REFUSED",
            query: query(1, 0, "version.bind.", 16, 3, None),
            rcode: 5,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "AXFR: REFUSED",
            query: q("cluster.local.", 252),
            rcode: 5,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "two questions: FORMERR",
            query: two_questions,
            rcode: 1,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "an answer in a query: FORMERR",
            query: with_answer,
            rcode: 1,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "two OPT records: FORMERR",
            query: two_opts,
            rcode: 1,
            aa: false,
            answers: &[],
            authority: &[],
        },
        Case {
            name: "NOTIFY: NOTIMP",
            query: notify,
            rcode: 4,
            aa: false,
            answers: &[],
            authority: &[],
        },
    ];
    for case in cases {
        let r = respond(&case.query, &sample(), Transport::Udp)
            .unwrap_or_else(|| panic!("case {:?}: no response", case.name));
        assert_eq!(r.rcode, case.rcode, "case {:?}: rcode", case.name);
        let m = Message::from_vec(&r.bytes).unwrap_or_else(|e| panic!("case {:?}: {e}", case.name));
        assert_eq!(
            m.id(),
            u16::from_be_bytes([case.query[0], case.query[1]]),
            "case {:?}",
            case.name
        );
        assert_eq!(m.authoritative(), case.aa, "case {:?}: AA", case.name);
        assert!(!m.recursion_available(), "case {:?}: RA", case.name);
        let answers: Vec<String> = m.answers().iter().map(rr_text).collect();
        let authority: Vec<String> = m.name_servers().iter().map(rr_text).collect();
        assert_eq!(answers, case.answers, "case {:?}: answers", case.name);
        assert_eq!(authority, case.authority, "case {:?}: authority", case.name);
    }
}

#[test]
fn lookup_key_lowercases_and_escapes() {
    let n = Name::from_ascii("Web.Default.SVC.cluster.local.").expect("name");
    assert_eq!(lookup_key(&n), "web.default.svc.cluster.local.");
    let n = Name::from_labels(vec![&b"a.b"[..], &b"c\x01"[..]]).expect("name");
    assert_eq!(lookup_key(&n), "a\\046b.c\\001.");
    assert_eq!(lookup_key(&Name::root()), ".");
}
