//! The errors plugin through `serve`, with a failing next plugin and a collecting sink.

use std::str::FromStr;
use std::time::Instant;

use hickory_proto::op::{Header, Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::corefile;
use crate::server::answer::Transport;

/// Fails every query with the message it holds (or answers when it holds none).
struct Fail(Option<&'static str>);

impl Plugin for Fail {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let out = match self.0 {
            Some(m) => Err(PluginError::new("forward", m)),
            None => Ok(req.reply(ResponseCode::NoError)),
        };
        Box::pin(async move { out })
    }
}

type Lines = Arc<Mutex<Vec<(Level, String)>>>;

fn errors(text: &str) -> (Arc<Errors>, Lines) {
    let lines: Lines = Arc::default();
    let sink_lines = Arc::clone(&lines);
    let sink: Sink = Arc::new(move |level, line| {
        sink_lines
            .lock()
            .expect("lock")
            .push((level, line.to_owned()));
    });
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    match parse(&file.blocks[0].directives[0], sink) {
        Ok(e) => (Arc::new(e), lines),
        Err(e) => panic!("setup of {text:?}: {e}"),
    }
}

fn error(text: &str) -> String {
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    match parse(&file.blocks[0].directives[0], log_sink()) {
        Ok(_) => panic!("setup accepted {text:?}"),
        Err(e) => e.to_string(),
    }
}

async fn ask(plugin: &Arc<Errors>, fail: Option<&'static str>) -> Message {
    let chain: Vec<Arc<dyn Plugin>> =
        vec![Arc::clone(plugin) as Arc<dyn Plugin>, Arc::new(Fail(fail))];
    let ctx = Ctx {
        client: "127.0.0.1:5353".parse().expect("addr"),
        local: "127.0.0.1:53".parse().expect("addr"),
        zone: Arc::from("."),
        received: Instant::now(),
    };
    let mut header = Header::new();
    header.set_id(2);
    let req = Request {
        header,
        question: Query::query(Name::from_str("Example.org.").expect("name"), RecordType::A),
        edns: None,
        transport: Transport::Udp,
    };
    Next::chain(&chain)
        .serve(&ctx, req)
        .await
        .expect("errors answers")
}

#[tokio::test]
async fn logs_the_error_and_answers_servfail() {
    let (p, lines) = errors(".:53 {\n    errors\n}\n");
    let msg = ask(&p, Some("no healthy upstream")).await;
    assert_eq!(msg.response_code(), ResponseCode::ServFail);
    assert_eq!(msg.queries().len(), 1);
    assert_eq!(
        *lines.lock().expect("lock"),
        [(
            Level::Error,
            "plugin/errors: 2 example.org. A: plugin/forward: no healthy upstream".to_owned()
        )]
    );
    let msg = ask(&p, None).await;
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert_eq!(
        lines.lock().expect("lock").len(),
        1,
        "answers are not logged"
    );
}

#[tokio::test]
async fn consolidate_counts_matching_errors() {
    let (p, lines) = errors(
        ".:53 {\n    errors {\n        consolidate 5m \"timeout$\" warning\n        consolidate 30s ^no\n    }\n}\n",
    );
    for _ in 0..3 {
        ask(&p, Some("read udp 10.0.0.1:53: i/o timeout")).await;
    }
    ask(&p, Some("no healthy upstream")).await;
    ask(&p, Some("something else")).await;
    assert_eq!(
        *lines.lock().expect("lock"),
        [(
            Level::Error,
            "plugin/errors: 2 example.org. A: plugin/forward: something else".to_owned()
        )],
        "matching errors wait for the end of their period"
    );
    lines.lock().expect("lock").clear();
    p.rules[0].flush(&p.sink);
    p.rules[1].flush(&p.sink);
    p.rules[1].flush(&p.sink);
    assert_eq!(
        *lines.lock().expect("lock"),
        [
            (
                Level::Warn,
                "plugin/errors: 3 errors like 'timeout$' occurred in last 5m0s".to_owned()
            ),
            (
                Level::Error,
                "plugin/errors: 1 errors like '^no' occurred in last 30s".to_owned()
            ),
        ],
        "one line per period, none for an empty one"
    );
}

#[tokio::test]
async fn show_first_and_the_period_timer() {
    let (p, lines) = errors(
        ".:53 {\n    errors {\n        consolidate 20ms timeout info show_first\n    }\n}\n",
    );
    ask(&p, Some("i/o timeout")).await;
    ask(&p, Some("i/o timeout")).await;
    assert_eq!(
        *lines.lock().expect("lock"),
        [(
            Level::Info,
            "plugin/errors: 2 example.org. A: plugin/forward: i/o timeout".to_owned()
        )]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines.lock().expect("lock").len() < 2 {
        assert!(Instant::now() < deadline, "no summary after the period");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        lines.lock().expect("lock")[1],
        (
            Level::Info,
            "plugin/errors: 2 errors like 'timeout' occurred in last 20ms".to_owned()
        )
    );
}

#[test]
fn setup_errors_point_at_the_token() {
    assert_eq!(
        error(".:53 {\n    errors {\n        consolidate 5x x\n    }\n}\n"),
        "Corefile:3:21: errors: consolidate duration \"5x\": expected a duration such as 30s or 5m"
    );
    assert_eq!(
        error(".:53 {\n    errors {\n        consolidate 5m\n    }\n}\n"),
        "Corefile:3:9: errors: consolidate: expected DURATION REGEXP [LEVEL] [show_first]"
    );
    assert!(
        error(".:53 {\n    errors {\n        consolidate 5m (x\n    }\n}\n")
            .starts_with("Corefile:3:24: errors: consolidate regular expression \"(x\"")
    );
    assert_eq!(
        error(".:53 {\n    errors {\n        consolidate 5m x loud\n    }\n}\n"),
        "Corefile:3:26: errors: consolidate \"loud\": expected a level (warning, error, info, debug) then show_first"
    );
    assert_eq!(
        error(".:53 {\n    errors {\n        verbose\n    }\n}\n"),
        "Corefile:3:9: errors: unknown option \"verbose\": expected consolidate or stacktrace"
    );
    assert!(error(".:53 {\n    errors /var/log/x\n}\n")
        .starts_with("Corefile:2:12: errors: unexpected argument"));
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
}
