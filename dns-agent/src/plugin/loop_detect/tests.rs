//! Tests of the loop detector.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use super::*;
use crate::corefile;
use crate::metrics::Metrics;
use crate::plugin::forward::Forward;
use crate::plugin::{Block, Router, Setup};
use crate::server::answer::Transport;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn recorder() -> (OnLoop, Arc<Mutex<Vec<LoopReport>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reports);
    (
        Box::new(move |rep| r.lock().unwrap().push(rep.clone())),
        reports,
    )
}

fn setup_text(text: &str, server: &str) -> Result<Arc<dyn Plugin>, String> {
    let cf = corefile::parse("Corefile", text).unwrap();
    let metrics = Arc::new(Metrics::default());
    let zones = vec!["example.org.".to_owned()];
    let s = Setup {
        zones: &zones,
        dir: std::path::Path::new("."),
        metrics: &metrics,
        server,
    };
    setup(&cf.blocks[0].directives[0], &s).map_err(|e| e.to_string())
}

#[test]
fn setup_takes_no_arguments() {
    assert!(setup_text("example.org {\n loop\n}", "dns://:1").is_ok());
    assert_eq!(
        setup_text("example.org {\n loop 5\n}", "dns://:1")
            .err()
            .unwrap(),
        "Corefile:2:7: loop: unexpected argument \"5\": loop takes no arguments"
    );
    assert_eq!(
        setup_text("example.org {\n loop {\n }\n}", "dns://:1")
            .err()
            .unwrap(),
        "Corefile:2:2: loop: takes no block"
    );
}

#[test]
fn probe_names_are_random_under_the_zone() {
    let (cb, _) = recorder();
    let d = Detector::new("example.org.", cb);
    assert!(d.qname().ends_with(".example.org."), "{}", d.qname());
    let labels: Vec<&str> = d.qname().split('.').collect();
    assert!(labels[0].parse::<u64>().is_ok() && labels[1].parse::<u64>().is_ok());
    let (cb, _) = recorder();
    let root = Detector::new(".", cb);
    assert_eq!(root.qname().matches('.').count(), 2, "{}", root.qname());
    let (cb, _) = recorder();
    assert_ne!(root.qname(), Detector::new(".", cb).qname());
}

#[test]
fn the_third_sighting_is_a_loop() {
    let (cb, reports) = recorder();
    let d = Detector::new(".", cb);
    let q = d.qname().to_owned();
    let (c, l) = (addr("127.0.0.1:5353"), addr("127.0.0.1:53"));
    // Other names and types do not count.
    assert!(!d.sight("other.", RecordType::HINFO, c, l));
    assert!(!d.sight(&q, RecordType::A, c, l));
    assert!(d.sight(&q, RecordType::HINFO, c, l));
    assert!(d.sight(&q, RecordType::HINFO, c, l));
    assert!(reports.lock().unwrap().is_empty());
    assert!(d.sight(&q, RecordType::HINFO, c, l));
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].to_string(),
        format!(
            "Loop (127.0.0.1:5353 -> 127.0.0.1:53) detected for zone \".\", see \
             https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {q}\""
        )
    );
    // Once disabled (the probe was answered), nothing counts.
    let (cb, reports) = recorder();
    let d = Detector::new(".", cb);
    d.disable();
    let q = d.qname().to_owned();
    for _ in 0..5 {
        assert!(!d.sight(&q, RecordType::HINFO, c, l));
    }
    assert!(reports.lock().unwrap().is_empty());
}

/// Serves `router` on UDP `addr` (port 0: a free loopback port), one task per query.
async fn serve_udp(router: Arc<Router>, addr: SocketAddr) -> SocketAddr {
    let sock = Arc::new(UdpSocket::bind(addr).await.unwrap());
    let local = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let bytes = buf[..n].to_vec();
            let (sock, router) = (Arc::clone(&sock), Arc::clone(&router));
            tokio::spawn(async move {
                if let Some(r) = router.handle(&bytes, Transport::Udp, from, local).await {
                    let _ = sock.send_to(&r.bytes, from).await;
                }
            });
        }
    });
    local
}

/// A UDP port that answers every query with NXDOMAIN.
async fn nxdomain_upstream() -> SocketAddr {
    struct Nx;
    impl Plugin for Nx {
        fn name(&self) -> &'static str {
            "nx"
        }
        fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
            Box::pin(async move { Ok(req.reply(ResponseCode::NXDomain)) })
        }
    }
    serve_udp(
        Arc::new(Router::new(vec![Block {
            zones: vec![".".to_owned()],
            plugins: vec![Arc::new(Nx)],
        }])),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
}

/// A server whose chain is `loop` then `forward . <upstream>`; `upstream` `None` forwards to
/// the server itself.
async fn server(upstream: Option<SocketAddr>, detector: Arc<Detector>) -> SocketAddr {
    // The forwarder needs the port before the server exists: bind, learn it, close, rebind.
    let port = {
        let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.local_addr().unwrap()
    };
    let to = upstream.unwrap_or(port);
    let metrics = Arc::new(Metrics::default());
    let text = format!(".:53 {{\n forward . {to} {{\n max_fails 0\n }}\n}}");
    let cf = corefile::parse("Corefile", &text).unwrap();
    let cfg = crate::plugin::forward::setup::parse(
        &cf.blocks[0].directives[0],
        std::path::Path::new("."),
    )
    .unwrap();
    let router = Arc::new(Router::new(vec![Block {
        zones: vec![".".to_owned()],
        plugins: vec![
            Arc::new(Loop::new(detector)),
            Arc::new(Forward::new(cfg, &metrics)),
        ],
    }]));
    serve_udp(router, port).await
}

#[tokio::test]
async fn a_server_forwarding_to_itself_is_a_loop() {
    let (cb, reports) = recorder();
    let detector = Arc::new(Detector::new(".", cb));
    let local = server(None, Arc::clone(&detector)).await;
    let d = Arc::clone(&detector);
    let probing = tokio::spawn(async move { d.probe(local).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while reports.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no loop found");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probing.abort();
    let r = reports.lock().unwrap()[0].clone();
    assert_eq!(r.zone, ".");
    assert_eq!(r.local, local);
    assert_eq!(r.qname, detector.qname());
}

#[tokio::test]
async fn a_server_with_a_real_upstream_is_no_loop() {
    let (cb, reports) = recorder();
    let detector = Arc::new(Detector::new(".", cb));
    let upstream = nxdomain_upstream().await;
    // An unspecified listener address is probed through loopback.
    let local = server(Some(upstream), Arc::clone(&detector)).await;
    // Answered at once, then sightings count for LINGER more.
    let start = Instant::now();
    detector
        .probe(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), local.port()))
        .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(detector.is_disabled());
    assert_eq!(detector.seen(), 1);
    assert!(reports.lock().unwrap().is_empty());
}

#[tokio::test]
async fn probe_starts_the_detectors_of_one_server() {
    let label = format!("dns://:test-{}", random_u64());
    let plugin = setup_text("example.org {\n loop\n}", &label).unwrap();
    assert_eq!(probe("dns://:other", addr("127.0.0.1:9")), 0);
    // Port 9 (discard) is closed on loopback: the probe gets no answer and keeps trying.
    assert_eq!(probe(&label, addr("127.0.0.1:9")), 1);
    assert_eq!(
        probe(&label, addr("127.0.0.1:9")),
        0,
        "each detector is probed once"
    );
    drop(plugin);
    let label2 = format!("dns://:test-{}", random_u64());
    drop(setup_text("example.org {\n loop\n}", &label2).unwrap());
    assert_eq!(
        probe(&label2, addr("127.0.0.1:9")),
        0,
        "dropped plugins are forgotten"
    );
}

/// The ```corefile examples of the README.
fn readme_examples() -> Vec<corefile::Corefile> {
    corefile::readme_examples(include_str!("README.md"))
        .into_iter()
        .map(|text| corefile::parse("README.md", text).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

#[test]
fn readme_examples_parse_and_set_up() {
    let examples = readme_examples();
    assert_eq!(examples.len(), 1);
    for cf in examples {
        let d = cf.blocks[0]
            .directives_named("loop")
            .next()
            .expect("a loop line");
        let metrics = Arc::new(Metrics::default());
        let zones = vec![".".to_owned()];
        let s = Setup {
            zones: &zones,
            dir: std::path::Path::new("."),
            metrics: &metrics,
            server: "dns://:readme",
        };
        setup(d, &s).unwrap();
    }
}
