//! The rewrite plugin through `serve`, with a fake next plugin that answers its question.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use hickory_proto::op::{Header, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use super::*;
use crate::corefile;
use crate::metrics::Metrics;
use crate::server::answer::Transport;

/// Answers A 10.0.0.1 for the name it is asked, and notes that name.
#[derive(Default)]
struct Echo {
    asked: Mutex<Vec<String>>,
}

impl Plugin for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let asked = req.question.name().to_ascii();
        self.asked.lock().expect("lock").push(asked);
        let mut msg = req.reply(ResponseCode::NoError);
        msg.add_answer(a(&req.question.name().to_ascii()));
        Box::pin(async move { Ok(msg) })
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

fn a(owner: &str) -> Record {
    Record::from_rdata(name(owner), 30, RData::A(A(Ipv4Addr::new(10, 0, 0, 1))))
}

fn setup_text(text: &str) -> Vec<Result<Arc<dyn Plugin>, CorefileError>> {
    let file = corefile::parse("Corefile", text).expect("corefile parses");
    let metrics = Arc::new(Metrics::default());
    let zones = [".".to_owned()];
    let s = Setup {
        zones: &zones,
        dir: std::path::Path::new("."),
        metrics: &metrics,
        server: "dns://:53",
    };
    file.blocks[0]
        .directives
        .iter()
        .map(|d| setup(d, &s))
        .collect()
}

/// The rewrite directives of `text` in order, then `Echo`.
fn chain(text: &str) -> (Vec<Arc<dyn Plugin>>, Arc<Echo>) {
    let echo = Arc::new(Echo::default());
    let mut plugins: Vec<Arc<dyn Plugin>> = setup_text(text)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("setup of {text:?}: {e}")))
        .collect();
    plugins.push(Arc::clone(&echo) as Arc<dyn Plugin>);
    (plugins, echo)
}

fn error(text: &str) -> String {
    match setup_text(text).remove(0) {
        Ok(_) => panic!("setup accepted {text:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asks `qname` A through the chain: the answer and the name `Echo` was asked.
fn ask(text: &str, qname: &str) -> (Message, String) {
    let (plugins, echo) = chain(text);
    let ctx = Ctx {
        client: "127.0.0.1:5353".parse().expect("addr"),
        local: "127.0.0.1:53".parse().expect("addr"),
        zone: Arc::from("."),
        received: Instant::now(),
    };
    let req = Request {
        header: Header::new(),
        question: Query::query(name(qname), RecordType::A),
        edns: None,
        transport: Transport::Udp,
    };
    let msg =
        futures::executor::block_on(Next::chain(&plugins).serve(&ctx, req)).expect("an answer");
    let asked = echo
        .asked
        .lock()
        .expect("lock")
        .pop()
        .expect("echo was asked");
    (msg, asked)
}

fn block(lines: &str) -> String {
    format!(".:53 {{\n{lines}}}\n")
}

#[test]
fn each_match_type() {
    let cases = [
        (
            "rewrite name old.example.org new.example.org",
            "old.example.org.",
            "new.example.org.",
        ),
        (
            "rewrite name exact old.example.org. new.example.org",
            "OLD.example.org.",
            "new.example.org.",
        ),
        (
            "rewrite name exact old.example.org new.example.org",
            "x.old.example.org.",
            "x.old.example.org.",
        ),
        (
            "rewrite name prefix old new",
            "old-web.example.org.",
            "new-web.example.org.",
        ),
        (
            "rewrite name suffix .example.org .svc.cluster.local",
            "web.example.org.",
            "web.svc.cluster.local.",
        ),
        (
            "rewrite name suffix example.org. cluster.local.",
            "web.example.net.",
            "web.example.net.",
        ),
        (
            "rewrite name substring internal svc",
            "web.internal.example.org.",
            "web.svc.example.org.",
        ),
        (
            r"rewrite name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul",
            "db-us-west-1.example.org.",
            "db.service.us-west-1.consul.",
        ),
    ];
    for (line, qname, asked) in cases {
        let (msg, got) = ask(&block(&format!("    {line}\n")), qname);
        assert_eq!(got, asked, "{line} on {qname}");
        // The client sees its own question, and an answer under its own name.
        assert_eq!(msg.queries()[0].name(), &name(qname), "{line}");
        assert_eq!(msg.answers(), &[a(qname)], "{line}");
    }
}

#[test]
fn answer_name_and_auto_write_the_answer_back() {
    let text = block(
        "    rewrite name regex (.*)\\.my\\.domain {1}.svc.cluster.local answer name (.*)\\.svc\\.cluster\\.local {1}.my.domain\n",
    );
    let (msg, asked) = ask(&text, "web.my.domain.");
    assert_eq!(asked, "web.svc.cluster.local.");
    assert_eq!(msg.answers(), &[a("web.my.domain.")]);

    let text = block("    rewrite name suffix .my.domain .svc.cluster.local answer auto\n");
    let (msg, asked) = ask(&text, "web.my.domain.");
    assert_eq!(asked, "web.svc.cluster.local.");
    assert_eq!(msg.answers(), &[a("web.my.domain.")]);

    // The block form says the same.
    let text = block(
        "    rewrite stop {\n        name regex (.*)\\.my\\.domain {1}.svc.cluster.local\n        answer name (.*)\\.svc\\.cluster\\.local {1}.my.domain\n    }\n",
    );
    let (msg, asked) = ask(&text, "db.my.domain.");
    assert_eq!(asked, "db.svc.cluster.local.");
    assert_eq!(msg.answers(), &[a("db.my.domain.")]);
}

#[test]
fn undo_of_each_rule_for_answer_auto() {
    let rule = |line: &str| -> Rewrite {
        let file = corefile::parse("Corefile", &block(&format!("    {line}\n"))).expect("parses");
        let d = &file.blocks[0].directives[0];
        super::rule(&d.name, &d.args, true).expect("rule")
    };
    let prefix = rule("name prefix old new answer auto");
    assert_eq!(
        prefix.undo("new-x.org.", "new-a.org.", "old-a.org."),
        Some("old-x.org.".into())
    );
    let substring = rule("name substring internal svc answer auto");
    assert_eq!(
        substring.undo("a.svc.org.", "b.svc.org.", "b.internal.org."),
        Some("a.internal.org.".into())
    );
    let exact = rule("name a.org b.org answer auto");
    assert_eq!(
        exact.undo("b.org.", "b.org.", "a.org."),
        Some("a.org.".into())
    );
    assert_eq!(exact.undo("c.org.", "b.org.", "a.org."), None);
}

#[test]
fn stop_ends_the_rules_and_continue_goes_on() {
    let two = |flow: &str| {
        block(&format!(
            "    rewrite {flow} name prefix a b\n    rewrite name suffix .org .net\n"
        ))
    };
    let (msg, asked) = ask(&two("stop"), "a.example.org.");
    assert_eq!(asked, "b.example.org.");
    assert_eq!(msg.answers(), &[a("a.example.org.")]);
    let (msg, asked) = ask(&two("continue"), "a.example.org.");
    assert_eq!(asked, "b.example.net.");
    assert_eq!(msg.answers(), &[a("a.example.org.")]);
    // stop is the default; a rule that does not match does not stop anything.
    let (_, asked) = ask(&two(""), "a.example.org.");
    assert_eq!(asked, "b.example.org.");
    let (_, asked) = ask(&two("stop"), "x.example.org.");
    assert_eq!(asked, "x.example.net.");
}

#[test]
fn regex_groups() {
    let text =
        block("    rewrite name regex ^(\\w+)\\.(\\w+)\\.example\\.org\\.$ {2}-{1}.example.org\n");
    let (msg, asked) = ask(&text, "web.prod.example.org.");
    assert_eq!(asked, "prod-web.example.org.");
    assert_eq!(msg.answers(), &[a("web.prod.example.org.")]);
    let (_, asked) = ask(&text, "example.org.");
    assert_eq!(asked, "example.org.");
}

#[test]
fn setup_errors_point_at_the_token() {
    assert_eq!(
        error(&block("    rewrite type ANY HINFO\n")),
        "Corefile:2:13: rewrite: field \"type\" is not supported: this agent rewrites names only (rewrite name ...)"
    );
    assert_eq!(
        error(&block("    rewrite continue ttl example.org 10\n")),
        "Corefile:2:22: rewrite: field \"ttl\" is not supported: this agent rewrites names only (rewrite name ...)"
    );
    assert_eq!(
        error(&block("    rewrite name regex (.*\\.org x.org\n"))
            .split(':')
            .take(4)
            .collect::<Vec<_>>(),
        ["Corefile", "2", "24", " rewrite"]
    );
    assert_eq!(
        error(&block("    rewrite name exact a.org\n")),
        "Corefile:2:24: rewrite: name exact \"a.org\": expected FROM TO (the name to write is missing)"
    );
    assert_eq!(
        error(&block("    rewrite name a.org b.org answer value x y\n")),
        "Corefile:2:37: rewrite: answer value is not supported: expected answer auto or answer name FROM TO"
    );
    assert_eq!(
        error(&block("    rewrite name a.org b.org extra\n")),
        "Corefile:2:30: rewrite: \"extra\": expected answer auto or answer name FROM TO after the rule"
    );
    assert_eq!(
        error(&block("    rewrite {\n        ttl a 1\n    }\n")),
        "Corefile:3:9: rewrite: field \"ttl\" is not supported: this agent rewrites names only (rewrite name ...)"
    );
    assert_eq!(
        error(&block("    rewrite {\n        name a b\n        name c d\n    }\n")),
        "Corefile:4:9: rewrite: a second \"name\" line: a block holds one name rule (use several rewrite lines)"
    );
    assert_eq!(
        error(&block(
            "    rewrite name a b {\n        answer auto\n    }\n"
        )),
        "Corefile:2:13: rewrite: \"name\": with a block, expected only continue or stop before it"
    );
}
