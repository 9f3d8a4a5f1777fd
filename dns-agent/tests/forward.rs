//! The `forward` plugin against a real upstream: Knot DNS on a loopback port serving
//! `example.org` (see `upstream/mod.rs`). Needs `knotd` (`apt-get install knot`).

mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns_agent::corefile;
use dns_agent::metrics::Metrics;
use dns_agent::plugin::{forward, Ctx, Next, Plugin, PluginError, Setup};
use dns_agent::server::answer::{self, Parsed, Request, Transport};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use upstream::Knot;

/// The `forward` plugin of `.:53 { forward example.org <to> { <options> } }`.
fn plugin(to: &[SocketAddr], options: &str, metrics: &Arc<Metrics>) -> Arc<dyn Plugin> {
    let to: Vec<String> = to.iter().map(ToString::to_string).collect();
    let text = format!(
        ".:53 {{\n forward example.org {} {{\n {options}\n }}\n}}",
        to.join(" ")
    );
    let cf = corefile::parse("Corefile", &text).expect("test Corefile parses");
    let zones = vec![".".to_owned()];
    let setup = Setup {
        zones: &zones,
        dir: Path::new("."),
        metrics,
        server: "dns://:53",
    };
    forward::setup(&cf.blocks[0].directives[0], &setup).expect("forward setup")
}

/// A query as the server would parse it off the wire.
fn request(name: &str, qtype: RecordType, edns_size: Option<u16>, transport: Transport) -> Request {
    let mut m = Message::new();
    m.set_id(777)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns_size {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    match answer::parse(&m.to_vec().unwrap(), transport) {
        Parsed::Query(req) => req,
        other => panic!("test query not parsed as a query: {other:?}"),
    }
}

async fn serve(p: &Arc<dyn Plugin>, req: Request) -> Result<Message, PluginError> {
    let ctx = Ctx {
        client: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:53".parse().unwrap(),
        zone: Arc::from("."),
        received: Instant::now(),
    };
    let chain = [Arc::clone(p)];
    Next::chain(&chain).serve(&ctx, req).await
}

fn a_records(m: &Message) -> Vec<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

fn metrics_text(m: &Metrics) -> String {
    let mut s = String::new();
    m.registry.render(&mut s);
    s
}

#[tokio::test]
async fn answers_come_from_the_upstream() {
    let knot = Knot::start();
    let metrics = Arc::new(Metrics::default());
    let p = plugin(&[knot.addr], "", &metrics);

    let m = serve(
        &p,
        request(upstream::WWW.0, RecordType::A, None, Transport::Udp),
    )
    .await
    .unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative(), "the upstream's AA flag is kept");
    assert_eq!(a_records(&m), vec![IpAddr::V4(upstream::WWW.1)]);
    assert!(m.extensions().is_none());

    let m = serve(
        &p,
        request("nope.example.org.", RecordType::A, None, Transport::Tcp),
    )
    .await
    .unwrap();
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);

    let text = metrics_text(&metrics);
    let to = knot.addr.to_string();
    for want in [
        format!("coredns_forward_requests_total{{to=\"{to}\"}} 2"),
        format!("coredns_forward_responses_total{{to=\"{to}\",rcode=\"NOERROR\"}} 1"),
        format!("coredns_forward_responses_total{{to=\"{to}\",rcode=\"NXDOMAIN\"}} 1"),
    ] {
        assert!(text.contains(&want), "{want} not in\n{text}");
    }
}

#[tokio::test]
async fn a_truncated_udp_answer_is_fetched_again_over_tcp() {
    let knot = Knot::start();
    let metrics = Arc::new(Metrics::default());
    let p = plugin(&[knot.addr], "", &metrics);
    let req = request(upstream::BIG, RecordType::A, Some(4096), Transport::Udp);
    let m = serve(&p, req.clone()).await.unwrap();
    assert!(!m.truncated());
    assert_eq!(a_records(&m).len(), upstream::BIG_COUNT);
    let text = metrics_text(&metrics);
    let want = format!("coredns_forward_requests_total{{to=\"{}\"}} 2", knot.addr);
    assert!(
        text.contains(&want),
        "one UDP and one TCP query: {want} not in\n{text}"
    );
    // The client asked for 4096 bytes: the whole answer fits.
    let r = answer::finish(&req, &m).unwrap();
    let wire = Message::from_vec(&r.bytes).unwrap();
    assert!(!wire.truncated());
    assert_eq!(wire.answers().len(), upstream::BIG_COUNT);
    // A client without EDNS gets it truncated, to come back over TCP.
    let req = request(upstream::BIG, RecordType::A, None, Transport::Udp);
    let m = serve(&p, req.clone()).await.unwrap();
    let wire = Message::from_vec(&answer::finish(&req, &m).unwrap().bytes).unwrap();
    assert!(wire.truncated());
}

#[tokio::test]
async fn a_dead_first_upstream_fails_over_to_the_next() {
    let knot = Knot::start();
    let metrics = Arc::new(Metrics::default());
    let dead = upstream::dead_addr();
    let p = plugin(
        &[dead, knot.addr],
        "policy sequential\n health_check 1h",
        &metrics,
    );
    for (name, ip) in [upstream::WWW, upstream::MAIL, upstream::WWW] {
        let start = Instant::now();
        let m = serve(&p, request(name, RecordType::A, None, Transport::Udp))
            .await
            .unwrap();
        assert_eq!(a_records(&m), vec![IpAddr::V4(ip)]);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    // Marked down after max_fails (2) failures, of queries or of the health check a failed
    // query starts (which of them comes second is a race): the third query went to Knot
    // directly, the dead upstream was asked at most twice.
    let text = metrics_text(&metrics);
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let to_dead = format!("{{to=\"{dead}\"}} ");
    let asked = value(&format!("coredns_forward_requests_total{to_dead}"));
    let probed = value(&format!(
        "coredns_forward_healthcheck_failures_total{to_dead}"
    ));
    assert!(
        (1..=2).contains(&asked) && asked + probed >= 2,
        "dead upstream asked {asked} times, {probed} failed health checks:\n{text}"
    );
    let want = format!("coredns_forward_requests_total{{to=\"{}\"}} 3", knot.addr);
    assert!(text.contains(&want), "{want} not in\n{text}");
}

#[tokio::test]
async fn servfail_when_every_upstream_is_dead() {
    let metrics = Arc::new(Metrics::default());
    let p = plugin(
        &[upstream::dead_addr(), upstream::dead_addr()],
        "",
        &metrics,
    );
    let start = Instant::now();
    let req = request(upstream::WWW.0, RecordType::A, None, Transport::Udp);
    let e = serve(&p, req).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(e.plugin, "forward");
    assert!(e.message.contains("no answer from any upstream"), "{e}");
    // The same with silent upstreams is bounded by the query timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = plugin(&[silent.local_addr().unwrap()], "", &metrics);
    let start = Instant::now();
    let req = request(upstream::WWW.0, RecordType::A, None, Transport::Udp);
    assert!(serve(&p, req).await.is_err());
    let took = start.elapsed();
    assert!(
        took >= forward::ATTEMPT_TIMEOUT && took <= forward::QUERY_TIMEOUT,
        "took {took:?}"
    );
}
