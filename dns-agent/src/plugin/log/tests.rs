//! The log plugin: the exact line of a known exchange, and the filters through `serve`.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use hickory_proto::op::{Header, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::corefile;
use crate::plugin::PluginError;
use crate::server::answer::Edns;

/// Answers A 10.0.0.1 under `ok.`, NXDOMAIN under `nx.`, fails under `fail.`.
struct Zone;

impl Plugin for Zone {
    fn name(&self) -> &'static str {
        "zone"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let key = req.key();
        let out = if key.ends_with("ok.") {
            let mut msg = req.reply(ResponseCode::NoError);
            msg.set_authoritative(true);
            msg.add_answer(Record::from_rdata(
                req.question.name().clone(),
                30,
                RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
            ));
            Ok(msg)
        } else if key.ends_with("nx.") {
            Ok(req.reply(ResponseCode::NXDomain))
        } else {
            Err(PluginError::new("zone", "broken"))
        };
        Box::pin(async move { out })
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn log(text: &str) -> (Vec<Arc<dyn Plugin>>, Lines) {
    let lines: Lines = Arc::default();
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    let mut chain: Vec<Arc<dyn Plugin>> = Vec::new();
    for d in &file.blocks[0].directives {
        let sink_lines = Arc::clone(&lines);
        let sink: Sink =
            Arc::new(move |line| sink_lines.lock().expect("lock").push(line.to_owned()));
        match parse(d, sink) {
            Ok(p) => chain.push(Arc::new(p)),
            Err(e) => panic!("setup of {text:?}: {e}"),
        }
    }
    chain.push(Arc::new(Zone));
    (chain, lines)
}

fn error(text: &str) -> String {
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    match parse(&file.blocks[0].directives[0], log_sink()) {
        Ok(_) => panic!("setup accepted {text:?}"),
        Err(e) => e.to_string(),
    }
}

fn ctx() -> Ctx {
    Ctx {
        client: "10.0.0.7:40212".parse().expect("addr"),
        local: "10.0.0.10:53".parse().expect("addr"),
        zone: Arc::from("."),
        received: Instant::now(),
    }
}

fn request(qname: &str) -> Request {
    let mut header = Header::new();
    header.set_id(4321);
    header.set_recursion_desired(true);
    Request {
        header,
        question: Query::query(Name::from_str(qname).expect("name"), RecordType::A),
        edns: Some(Edns {
            udp_size: 1232,
            dnssec_ok: true,
        }),
        transport: Transport::Udp,
    }
}

fn ask(chain: &[Arc<dyn Plugin>], qname: &str) -> Result<Message, PluginError> {
    let ctx = ctx();
    futures::executor::block_on(Next::chain(chain).serve(&ctx, request(qname)))
}

#[test]
fn the_common_log_format_line() {
    let (chain, _) = log(".:53 {\n    log\n}\n");
    let req = request("Www.Example.ok.");
    let msg = futures::executor::block_on(chain[1].serve(&ctx(), req.clone(), Next::chain(&[])))
        .expect("answer");
    let plugin = parse(
        &corefile::parse("Corefile", ".:53 {\n    log\n}\n")
            .expect("parses")
            .blocks[0]
            .directives[0],
        log_sink(),
    )
    .expect("setup");
    // Query: 12 + 16 (name) + 4 + 11 (OPT) = 43 bytes; response: the same + a 16-byte answer.
    assert_eq!(
        plugin.line(&ctx(), &req, &msg, Duration::from_micros(1250)),
        "10.0.0.7:40212 - 4321 \"A IN www.example.ok. udp 43 true 1232\" NOERROR qr,aa,rd 59 0.00125s"
    );
    let custom = parse(
        &corefile::parse(
            "Corefile",
            ".:53 {\n    log . \"{combined} {local} {nope}\"\n}\n",
        )
        .expect("parses")
        .blocks[0]
            .directives[0],
        log_sink(),
    )
    .expect("setup");
    assert_eq!(
        custom.line(&ctx(), &req, &msg, Duration::from_millis(2)),
        "10.0.0.7:40212 - 4321 \"A IN www.example.ok. udp 43 true 1232\" NOERROR qr,aa,rd 59 0.002s \"0\" 10.0.0.10 -"
    );
}

#[test]
fn one_line_per_query_through_serve() {
    let (chain, lines) = log(".:53 {\n    log\n}\n");
    ask(&chain, "a.ok.").expect("answer");
    assert!(
        ask(&chain, "a.fail.").is_err(),
        "the error goes on to errors"
    );
    let lines = lines.lock().expect("lock");
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with(
            "10.0.0.7:40212 - 4321 \"A IN a.ok. udp 33 true 1232\" NOERROR qr,aa,rd 49 "
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("\" SERVFAIL qr,rd "), "{}", lines[1]);
}

#[test]
fn names_and_classes_filter() {
    let (chain, lines) =
        log(".:53 {\n    log example.ok nx {\n        class denial error\n    }\n}\n");
    ask(&chain, "www.example.ok.").expect("answer");
    ask(&chain, "other.ok.").expect("answer");
    ask(&chain, "www.nx.").expect("answer");
    let _ = ask(&chain, "www.fail.");
    let got = lines.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("www.nx. udp") && got[0].contains(" NXDOMAIN "),
        "{}",
        got[0]
    );

    // Two log lines: a query both cover is logged once.
    let (chain, lines) = log(".:53 {\n    log\n    log ok\n}\n");
    ask(&chain, "a.ok.").expect("answer");
    assert_eq!(lines.lock().expect("lock").len(), 1);
}

#[test]
fn setup_errors_point_at_the_token() {
    assert_eq!(
        error(".:53 {\n    log {\n        class loud\n    }\n}\n"),
        "Corefile:3:15: log: class \"loud\": expected success, denial, error or all"
    );
    assert_eq!(
        error(".:53 {\n    log {\n        format x\n    }\n}\n"),
        "Corefile:3:9: log: unknown option \"format\": expected class"
    );
    assert_eq!(
        error(".:53 {\n    log {\n        class\n    }\n}\n"),
        "Corefile:3:9: log: class: expected success, denial, error or all"
    );
}
