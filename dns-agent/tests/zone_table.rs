//! The zone as a table: (qname, qtype) → (rcode, answer, authority, additional, TTL) over
//! tests/fixtures/zone.yaml, asked over real UDP and TCP sockets on 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dns_agent::app::App;
use dns_agent::cli::{Config, SnapshotSource};
use dns_agent::metrics::Metrics;
use dns_agent::records::{self, PodMode, Records, Settings, SharedRecords};
use dns_agent::server::{DnsServer, ServerConfig};
use dns_agent::snapshot;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(3);

/// One question and everything its answer must hold. Records are in presentation form
/// `owner TTL TYPE data`; `SERIAL` stands for the zone's serial.
struct Case {
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

const SOA: &str =
    "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5";
const SOA4: &str =
    "in-addr.arpa. 5 SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5";
const SOA6: &str = "ip6.arpa. 5 SOA ns.dns.ip6.arpa. hostmaster.ip6.arpa. SERIAL 7200 1800 86400 5";

use RecordType::{A, AAAA, ANY, CNAME, MX, NS, PTR, SRV, TXT};
const NOERROR: ResponseCode = ResponseCode::NoError;
const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;
const REFUSED: ResponseCode = ResponseCode::Refused;
const SERVFAIL: ResponseCode = ResponseCode::ServFail;

/// An answer: records only.
const fn ok(qname: &'static str, qtype: RecordType, answer: &'static [&'static str]) -> Case {
    Case {
        qname,
        qtype,
        rcode: NOERROR,
        answer,
        authority: &[],
        additional: &[],
    }
}

/// An answer with an additional section.
const fn ok_add(
    qname: &'static str,
    qtype: RecordType,
    answer: &'static [&'static str],
    additional: &'static [&'static str],
) -> Case {
    Case {
        qname,
        qtype,
        rcode: NOERROR,
        answer,
        authority: &[],
        additional,
    }
}

/// The name exists, not with this type: NOERROR, the zone's SOA.
const fn nodata(qname: &'static str, qtype: RecordType) -> Case {
    Case {
        qname,
        qtype,
        rcode: NOERROR,
        answer: &[],
        authority: &[SOA],
        additional: &[],
    }
}

const fn nxdomain(qname: &'static str, qtype: RecordType) -> Case {
    Case {
        qname,
        qtype,
        rcode: NXDOMAIN,
        answer: &[],
        authority: &[SOA],
        additional: &[],
    }
}

/// Not in a served zone: REFUSED.
const fn fallen(qname: &'static str, qtype: RecordType) -> Case {
    Case {
        qname,
        qtype,
        rcode: SERVFAIL,
        answer: &[],
        authority: &[],
        additional: &[],
    }
}

const fn refused(qname: &'static str, qtype: RecordType) -> Case {
    Case {
        qname,
        qtype,
        rcode: REFUSED,
        answer: &[],
        authority: &[],
        additional: &[],
    }
}

const V6_DUAL: &str = "0.3.0.0.0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.";
const V6_DB: &str = "4.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.";

/// The fixture with the default settings (`--zone cluster.local --ttl 5`).
fn table() -> Vec<Case> {
    vec![
        // The apex, its NS glue and the schema version.
        ok("cluster.local.", RecordType::SOA, &[SOA]),
        ok_add(
            "cluster.local.",
            NS,
            &["cluster.local. 5 NS ns.dns.cluster.local."],
            &["ns.dns.cluster.local. 5 A 10.96.0.10"],
        ),
        ok_add(
            "cluster.local.",
            ANY,
            &[SOA, "cluster.local. 5 NS ns.dns.cluster.local."],
            &["ns.dns.cluster.local. 5 A 10.96.0.10"],
        ),
        nodata("cluster.local.", A),
        nodata("cluster.local.", AAAA),
        ok("ns.dns.cluster.local.", A, &["ns.dns.cluster.local. 5 A 10.96.0.10"]),
        nodata("ns.dns.cluster.local.", AAAA),
        nodata("dns.cluster.local.", A),
        nxdomain("x.dns.cluster.local.", A),
        ok(
            "dns-version.cluster.local.",
            TXT,
            &["dns-version.cluster.local. 5 TXT 1.1.0"],
        ),
        nodata("dns-version.cluster.local.", A),
        nxdomain("x.dns-version.cluster.local.", TXT),
        // ClusterIP services, both families, other types.
        ok(
            "kubernetes.default.svc.cluster.local.",
            A,
            &["kubernetes.default.svc.cluster.local. 5 A 10.96.0.1"],
        ),
        ok(
            "kube-dns.kube-system.svc.cluster.local.",
            A,
            &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
        ),
        ok("web.demo.svc.cluster.local.", A, &["web.demo.svc.cluster.local. 5 A 10.96.10.20"]),
        nodata("web.demo.svc.cluster.local.", AAAA),
        nodata("web.demo.svc.cluster.local.", TXT),
        nodata("web.demo.svc.cluster.local.", MX),
        nodata("web.demo.svc.cluster.local.", CNAME),
        nodata("web.demo.svc.cluster.local.", PTR),
        ok("web.demo.svc.cluster.local.", ANY, &["web.demo.svc.cluster.local. 5 A 10.96.10.20"]),
        ok("WEB.Demo.SVC.cluster.LOCAL.", A, &["WEB.Demo.SVC.cluster.LOCAL. 5 A 10.96.10.20"]),
        ok(
            "dual.demo.svc.cluster.local.",
            A,
            &["dual.demo.svc.cluster.local. 5 A 10.96.20.30"],
        ),
        ok(
            "dual.demo.svc.cluster.local.",
            AAAA,
            &["dual.demo.svc.cluster.local. 5 AAAA fd00:10:96::20:30"],
        ),
        nodata("v6only.demo.svc.cluster.local.", A),
        ok(
            "v6only.demo.svc.cluster.local.",
            AAAA,
            &["v6only.demo.svc.cluster.local. 5 AAAA fd00:10:96::99"],
        ),
        nodata("v6only.demo.svc.cluster.local.", SRV),
        // Endpoint names of a ClusterIP service (CoreDNS serves them).
        ok(
            "10-244-1-5.web.demo.svc.cluster.local.",
            A,
            &["10-244-1-5.web.demo.svc.cluster.local. 5 A 10.244.1.5"],
        ),
        ok(
            "10-244-2-6.web.demo.svc.cluster.local.",
            A,
            &["10-244-2-6.web.demo.svc.cluster.local. 5 A 10.244.2.6"],
        ),
        nxdomain("web-1.web.demo.svc.cluster.local.", A),
        // Headless: ready endpoints of every slice, de-duplicated; endpoint names.
        ok(
            "db.demo.svc.cluster.local.",
            A,
            &[
                "db.demo.svc.cluster.local. 5 A 10.244.1.11",
                "db.demo.svc.cluster.local. 5 A 10.244.2.12",
                "db.demo.svc.cluster.local. 5 A 10.244.3.14",
            ],
        ),
        ok(
            "db.demo.svc.cluster.local.",
            AAAA,
            &["db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14"],
        ),
        ok(
            "db-0.db.demo.svc.cluster.local.",
            A,
            &["db-0.db.demo.svc.cluster.local. 5 A 10.244.1.11"],
        ),
        nodata("db-0.db.demo.svc.cluster.local.", AAAA),
        ok(
            "10-244-2-12.db.demo.svc.cluster.local.",
            A,
            &["10-244-2-12.db.demo.svc.cluster.local. 5 A 10.244.2.12"],
        ),
        ok(
            "10-244-3-14.db.demo.svc.cluster.local.",
            A,
            &["10-244-3-14.db.demo.svc.cluster.local. 5 A 10.244.3.14"],
        ),
        ok(
            "fd00-10-244--14.db.demo.svc.cluster.local.",
            AAAA,
            &["fd00-10-244--14.db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14"],
        ),
        nxdomain("10-244-1-13.db.demo.svc.cluster.local.", A),
        nxdomain("db-1.db.demo.svc.cluster.local.", A),
        nxdomain("10-244-1-11.db.demo.svc.cluster.local.", A),
        nxdomain("warming.demo.svc.cluster.local.", A),
        nxdomain("warming.demo.svc.cluster.local.", AAAA),
        nxdomain("warming.demo.svc.cluster.local.", SRV),
        ok("pnr.demo.svc.cluster.local.", A, &["pnr.demo.svc.cluster.local. 5 A 10.244.5.5"]),
        ok(
            "10-244-5-5.pnr.demo.svc.cluster.local.",
            A,
            &["10-244-5-5.pnr.demo.svc.cluster.local. 5 A 10.244.5.5"],
        ),
        ok(
            "noports.demo.svc.cluster.local.",
            A,
            &["noports.demo.svc.cluster.local. 5 A 10.244.6.6"],
        ),
        nodata("noports.demo.svc.cluster.local.", SRV),
        // SRV: named ports, bare names, endpoint names; weights and de-duplication.
        ok_add(
            "_http._tcp.web.demo.svc.cluster.local.",
            SRV,
            &["_http._tcp.web.demo.svc.cluster.local. 5 SRV 0 100 80 web.demo.svc.cluster.local."],
            &["web.demo.svc.cluster.local. 5 A 10.96.10.20"],
        ),
        ok_add(
            "web.demo.svc.cluster.local.",
            SRV,
            &["web.demo.svc.cluster.local. 5 SRV 0 100 80 web.demo.svc.cluster.local."],
            &["web.demo.svc.cluster.local. 5 A 10.96.10.20"],
        ),
        ok_add(
            "_HTTP._Tcp.Web.demo.svc.cluster.local.",
            SRV,
            &["_HTTP._Tcp.Web.demo.svc.cluster.local. 5 SRV 0 100 80 web.demo.svc.cluster.local."],
            &["web.demo.svc.cluster.local. 5 A 10.96.10.20"],
        ),
        ok_add(
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            SRV,
            &["_https._tcp.kubernetes.default.svc.cluster.local. 5 SRV 0 100 443 kubernetes.default.svc.cluster.local."],
            &["kubernetes.default.svc.cluster.local. 5 A 10.96.0.1"],
        ),
        ok_add(
            "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
            SRV,
            &["_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local."],
            &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
        ),
        ok_add(
            "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.",
            SRV,
            &["_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local. 5 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local."],
            &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
        ),
        // Two ports, same number: weight 50 each, then one record per (target, port).
        ok_add(
            "kube-dns.kube-system.svc.cluster.local.",
            SRV,
            &["kube-dns.kube-system.svc.cluster.local. 5 SRV 0 50 53 kube-dns.kube-system.svc.cluster.local."],
            &["kube-dns.kube-system.svc.cluster.local. 5 A 10.96.0.10"],
        ),
        nxdomain("_dns._tcp.kube-dns.kube-system.svc.cluster.local.", SRV),
        ok_add(
            "_http._tcp.dual.demo.svc.cluster.local.",
            SRV,
            &["_http._tcp.dual.demo.svc.cluster.local. 5 SRV 0 50 80 dual.demo.svc.cluster.local."],
            &[
                "dual.demo.svc.cluster.local. 5 A 10.96.20.30",
                "dual.demo.svc.cluster.local. 5 AAAA fd00:10:96::20:30",
            ],
        ),
        ok_add(
            "dual.demo.svc.cluster.local.",
            SRV,
            &[
                "dual.demo.svc.cluster.local. 5 SRV 0 25 80 dual.demo.svc.cluster.local.",
                "dual.demo.svc.cluster.local. 5 SRV 0 25 53 dual.demo.svc.cluster.local.",
            ],
            &[
                "dual.demo.svc.cluster.local. 5 A 10.96.20.30",
                "dual.demo.svc.cluster.local. 5 AAAA fd00:10:96::20:30",
            ],
        ),
        ok_add(
            "_postgres._tcp.db.demo.svc.cluster.local.",
            SRV,
            &[
                "_postgres._tcp.db.demo.svc.cluster.local. 5 SRV 0 20 5432 db-0.db.demo.svc.cluster.local.",
                "_postgres._tcp.db.demo.svc.cluster.local. 5 SRV 0 20 5432 10-244-2-12.db.demo.svc.cluster.local.",
                "_postgres._tcp.db.demo.svc.cluster.local. 5 SRV 0 20 5432 10-244-3-14.db.demo.svc.cluster.local.",
                "_postgres._tcp.db.demo.svc.cluster.local. 5 SRV 0 20 5432 fd00-10-244--14.db.demo.svc.cluster.local.",
            ],
            &[
                "db-0.db.demo.svc.cluster.local. 5 A 10.244.1.11",
                "10-244-2-12.db.demo.svc.cluster.local. 5 A 10.244.2.12",
                "10-244-3-14.db.demo.svc.cluster.local. 5 A 10.244.3.14",
                "fd00-10-244--14.db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14",
            ],
        ),
        ok_add(
            "db.demo.svc.cluster.local.",
            SRV,
            &[
                "db.demo.svc.cluster.local. 5 SRV 0 20 5432 db-0.db.demo.svc.cluster.local.",
                "db.demo.svc.cluster.local. 5 SRV 0 20 5432 10-244-2-12.db.demo.svc.cluster.local.",
                "db.demo.svc.cluster.local. 5 SRV 0 20 5432 10-244-3-14.db.demo.svc.cluster.local.",
                "db.demo.svc.cluster.local. 5 SRV 0 20 5432 fd00-10-244--14.db.demo.svc.cluster.local.",
            ],
            &[
                "db-0.db.demo.svc.cluster.local. 5 A 10.244.1.11",
                "10-244-2-12.db.demo.svc.cluster.local. 5 A 10.244.2.12",
                "10-244-3-14.db.demo.svc.cluster.local. 5 A 10.244.3.14",
                "fd00-10-244--14.db.demo.svc.cluster.local. 5 AAAA fd00:10:244::14",
            ],
        ),
        ok_add(
            "db-0.db.demo.svc.cluster.local.",
            SRV,
            &["db-0.db.demo.svc.cluster.local. 5 SRV 0 100 5432 db-0.db.demo.svc.cluster.local."],
            &["db-0.db.demo.svc.cluster.local. 5 A 10.244.1.11"],
        ),
        nxdomain("_postgres._udp.db.demo.svc.cluster.local.", SRV),
        nxdomain("_http._tcp.db.demo.svc.cluster.local.", SRV),
        nxdomain("_http._tcp.nope.demo.svc.cluster.local.", SRV),
        nodata("_http._tcp.web.demo.svc.cluster.local.", A),
        // ExternalName: CNAME; in-zone targets resolved after it, others left to the chain.
        ok(
            "search.demo.svc.cluster.local.",
            A,
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "search.demo.svc.cluster.local.",
            AAAA,
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "search.demo.svc.cluster.local.",
            CNAME,
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "search.demo.svc.cluster.local.",
            TXT,
            &["search.demo.svc.cluster.local. 5 CNAME www.example.com."],
        ),
        ok(
            "search.demo.svc.cluster.local.",
            SRV,
            &["search.demo.svc.cluster.local. 5 SRV 0 100 0 www.example.com."],
        ),
        ok(
            "alias.demo.svc.cluster.local.",
            A,
            &[
                "alias.demo.svc.cluster.local. 5 CNAME web.demo.svc.cluster.local.",
                "web.demo.svc.cluster.local. 5 A 10.96.10.20",
            ],
        ),
        ok(
            "alias.demo.svc.cluster.local.",
            AAAA,
            &["alias.demo.svc.cluster.local. 5 CNAME web.demo.svc.cluster.local."],
        ),
        nxdomain("x.search.demo.svc.cluster.local.", A),
        // PTR for cluster IPs and endpoint addresses, both families.
        ok(
            "1.0.96.10.in-addr.arpa.",
            PTR,
            &["1.0.96.10.in-addr.arpa. 5 PTR kubernetes.default.svc.cluster.local."],
        ),
        ok(
            "10.0.96.10.in-addr.arpa.",
            PTR,
            &["10.0.96.10.in-addr.arpa. 5 PTR kube-dns.kube-system.svc.cluster.local."],
        ),
        ok(
            "20.10.96.10.In-Addr.Arpa.",
            PTR,
            &["20.10.96.10.In-Addr.Arpa. 5 PTR web.demo.svc.cluster.local."],
        ),
        ok(
            "5.1.244.10.in-addr.arpa.",
            PTR,
            &["5.1.244.10.in-addr.arpa. 5 PTR 10-244-1-5.web.demo.svc.cluster.local."],
        ),
        ok(
            "11.1.244.10.in-addr.arpa.",
            PTR,
            &["11.1.244.10.in-addr.arpa. 5 PTR db-0.db.demo.svc.cluster.local."],
        ),
        ok(
            "12.2.244.10.in-addr.arpa.",
            PTR,
            &["12.2.244.10.in-addr.arpa. 5 PTR 10-244-2-12.db.demo.svc.cluster.local."],
        ),
        ok(V6_DUAL, PTR, &[concat!("0.3.0.0.0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.", " 5 PTR dual.demo.svc.cluster.local.")]),
        ok(V6_DB, PTR, &[concat!("4.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.", " 5 PTR fd00-10-244--14.db.demo.svc.cluster.local.")]),
        Case {
            qname: "1.0.96.10.in-addr.arpa.",
            qtype: A,
            rcode: NOERROR,
            answer: &[],
            authority: &[SOA4],
            additional: &[],
        },
        Case {
            qname: V6_DB,
            qtype: AAAA,
            rcode: NOERROR,
            answer: &[],
            authority: &[SOA6],
            additional: &[],
        },
        ok("in-addr.arpa.", RecordType::SOA, &[SOA4]),
        // `fallthrough in-addr.arpa`: unknown addresses go to the next plugin; with none
        // after `kubernetes` in this server, SERVFAIL (CoreDNS: "no next plugin found").
        fallen("9.9.9.9.in-addr.arpa.", PTR),
        fallen("13.1.244.10.in-addr.arpa.", PTR),
        fallen("4.4.244.10.in-addr.arpa.", PTR),
        // Intermediate names, unknown namespaces and services, search-path expansions.
        nodata("svc.cluster.local.", A),
        nodata("demo.svc.cluster.local.", A),
        nodata("empty.svc.cluster.local.", A),
        nodata("kube-system.svc.cluster.local.", SRV),
        nodata("pod.cluster.local.", A),
        nxdomain("nons.svc.cluster.local.", A),
        nxdomain("nope.demo.svc.cluster.local.", A),
        nxdomain("nope.demo.svc.cluster.local.", AAAA),
        nxdomain("nope.nons.svc.cluster.local.", A),
        nxdomain("web.empty.svc.cluster.local.", A),
        nxdomain("10-244-1-5.demo.pod.cluster.local.", A),
        nxdomain("demo.pod.cluster.local.", A),
        nxdomain("www.example.com.demo.svc.cluster.local.", A),
        nxdomain("www.example.com.svc.cluster.local.", A),
        nxdomain("www.example.com.cluster.local.", A),
        nxdomain("web.demo.svc.cluster.local.demo.svc.cluster.local.", A),
        nxdomain("x.web.demo.svc.cluster.local.", A),
        nxdomain("a.b.web.demo.svc.cluster.local.", A),
        nxdomain("web.demo.cluster.local.", A),
        nxdomain("Nope.Demo.Svc.Cluster.Local.", A),
        refused("local.", A),
        refused("example.com.", A),
        refused("xcluster.local.", A),
        refused("cluster.local.example.com.", A),
    ]
}

/// Pod records in `insecure` and `verified` mode (settings the CLI does not set yet).
fn pod_table(mode: PodMode) -> Vec<Case> {
    let verified = mode == PodMode::Verified;
    let mut cases = vec![
        ok(
            "10-244-1-5.demo.pod.cluster.local.",
            A,
            &["10-244-1-5.demo.pod.cluster.local. 5 A 10.244.1.5"],
        ),
        nodata("10-244-1-5.demo.pod.cluster.local.", AAAA),
        nodata("demo.pod.cluster.local.", A),
        nxdomain("10-244-1-5.nons.pod.cluster.local.", A),
        nxdomain("not-an-ip.demo.pod.cluster.local.", A),
        nxdomain("x.10-244-1-5.demo.pod.cluster.local.", A),
    ];
    if verified {
        cases.push(nxdomain("10-9-9-9.demo.pod.cluster.local.", A));
        cases.push(nxdomain("10-244-1-5.default.pod.cluster.local.", A));
    } else {
        cases.push(ok(
            "10-9-9-9.demo.pod.cluster.local.",
            A,
            &["10-9-9-9.demo.pod.cluster.local. 5 A 10.9.9.9"],
        ));
        cases.push(ok(
            "fd00--9.Demo.pod.cluster.local.",
            AAAA,
            &["fd00--9.Demo.pod.cluster.local. 5 AAAA fd00::9"],
        ));
    }
    cases
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zone.yaml")
}

fn query(id: u16, qname: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    let name = Name::from_ascii(qname).unwrap_or_else(|e| panic!("{qname}: {e}"));
    m.add_query(Query::query(name, qtype));
    m.to_vec().unwrap_or_else(|e| panic!("encode {qname}: {e}"))
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("client socket");
    sock.send_to(q, server).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .expect("recv");
    buf.truncate(n);
    buf
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .expect("TCP connect in time")
        .expect("connect");
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    stream.write_all(&framed).await.expect("send");
    let mut len = [0u8; 2];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut len))
        .await
        .expect("TCP answer in time")
        .expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.expect("message");
    buf
}

fn show(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let data = r.data().to_string();
            // hickory quotes TXT strings inconsistently across versions: compare bare text.
            let data = data.trim_matches('"').to_owned();
            format!("{} {} {} {}", r.name(), r.ttl(), r.record_type(), data)
        })
        .collect()
}

/// Asks every case over UDP and TCP and checks every section; reports all failures at once.
async fn run(server: SocketAddr, serial: u32, cases: &[Case]) {
    let fill = |v: &[&str]| -> Vec<String> {
        v.iter()
            .map(|s| s.replace("SERIAL", &serial.to_string()))
            .collect()
    };
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let id = 0x4000 + i as u16;
        let q = query(id, case.qname, case.qtype);
        for (transport, bytes) in [
            ("udp", ask_udp(server, &q).await),
            ("tcp", ask_tcp(server, &q).await),
        ] {
            let m = Message::from_vec(&bytes)
                .unwrap_or_else(|e| panic!("{} {}: undecodable: {e}", case.qname, case.qtype));
            let got = (
                m.response_code(),
                show(m.answers()),
                show(m.name_servers()),
                show(m.additionals()),
            );
            let want = (
                case.rcode,
                fill(case.answer),
                fill(case.authority),
                fill(case.additional),
            );
            // Authoritative answers come from the zone; REFUSED and the SERVFAIL of a
            // fallthrough with no next plugin do not.
            let ours =
                case.rcode != REFUSED && !(case.rcode == SERVFAIL && case.authority.is_empty());
            let aa_ok = m.authoritative() == ours;
            let q_ok = m.id() == id
                && m.queries().len() == 1
                && m.queries()[0].name().to_string() == case.qname;
            if got != want || !aa_ok || !q_ok {
                failures.push(format!(
                    "{} {} over {transport}:\n  want {want:?}\n  got  {got:?} aa={} question ok={q_ok}",
                    case.qname,
                    case.qtype,
                    m.authoritative()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_zone_as_a_table_over_real_sockets() {
    let cases = table();
    assert!(cases.len() >= 80, "the table has {} cases", cases.len());
    let config = Config::userspace(
        SnapshotSource::File(fixture()),
        vec![Ipv4Addr::LOCALHOST.into()],
    );
    let app = App::start(config)
        .await
        .unwrap_or_else(|e| panic!("agent start: {e}"));
    let serial = app.records().load().serial;
    run(app.dns_addrs()[0], serial, &cases).await;
    app.stop().await;
}

/// Serves `records` on a free port of 127.0.0.1 with the agent's own listeners.
async fn serve(records: Records) -> (dns_agent::server::ServerHandle, SocketAddr) {
    let cfg = ServerConfig {
        addrs: vec![Ipv4Addr::LOCALHOST.into()],
        port: 0,
        tcp_idle_timeout: Duration::from_secs(5),
    };
    let server = DnsServer::bind(&cfg)
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = server.local_addrs()[0];
    let handle = server
        .spawn(SharedRecords::new(records), Arc::new(Metrics::default()))
        .expect("listeners start");
    (handle, addr)
}

fn fixture_records(settings: &Settings) -> Records {
    let text = std::fs::read_to_string(fixture()).expect("fixture");
    let loaded = snapshot::parse("zone.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    records::build(&loaded.cluster, settings, 1_700_000_000).0
}

#[tokio::test]
async fn pod_records_in_each_mode() {
    for mode in [PodMode::Insecure, PodMode::Verified] {
        let mut settings = Settings::new("cluster.local", 5);
        settings.pods = mode;
        let (handle, addr) = serve(fixture_records(&settings)).await;
        run(addr, 1_700_000_000, &pod_table(mode)).await;
        handle.stop().await;
    }
}

#[tokio::test]
async fn before_the_first_list_nxdomain_is_servfail() {
    let mut records = fixture_records(&Settings::new("cluster.local", 5));
    records.synced = false;
    let (handle, addr) = serve(records).await;
    let cases = [
        Case {
            qname: "nope.demo.svc.cluster.local.",
            qtype: A,
            rcode: SERVFAIL,
            answer: &[],
            authority: &[SOA],
            additional: &[],
        },
        ok(
            "web.demo.svc.cluster.local.",
            A,
            &["web.demo.svc.cluster.local. 5 A 10.96.10.20"],
        ),
        nodata("web.demo.svc.cluster.local.", AAAA),
        refused("example.com.", A),
    ];
    run(addr, 1_700_000_000, &cases).await;
    handle.stop().await;
}
