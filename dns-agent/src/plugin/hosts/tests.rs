//! The hosts plugin through `serve`, with a fake next plugin.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use hickory_proto::op::{Header, Query};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record};

use super::table::reverse_name;
use super::*;
use crate::corefile;
use crate::metrics::Metrics;
use crate::server::answer::Transport;

/// Answers REFUSED, so a test sees when the query went on.
struct Refuse;

impl Plugin for Refuse {
    fn name(&self) -> &'static str {
        "refuse"
    }

    fn serve<'a>(&'a self, _: &'a Ctx, req: Request, _: Next<'a>) -> Answer<'a> {
        let msg = req.reply(ResponseCode::Refused);
        Box::pin(async move { Ok(msg) })
    }
}

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

fn request(qname: &str, qtype: RecordType) -> Request {
    Request {
        header: Header::new(),
        question: Query::query(name(qname), qtype),
        edns: None,
        transport: Transport::Udp,
    }
}

struct Fixture {
    metrics: Arc<Metrics>,
    zones: Vec<String>,
}

impl Fixture {
    fn new(zones: &[&str]) -> Self {
        Fixture {
            metrics: Arc::new(Metrics::default()),
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
        }
    }

    fn setup(&self, dir: &Path, text: &str) -> Result<Arc<dyn Plugin>, CorefileError> {
        let file = corefile::parse("Corefile", text).expect("corefile parses");
        let d = &file.blocks[0].directives[0];
        let s = Setup {
            zones: &self.zones,
            dir,
            metrics: &self.metrics,
            server: "dns://:53",
        };
        setup(d, &s)
    }

    fn plugin(&self, dir: &Path, text: &str) -> Arc<dyn Plugin> {
        match self.setup(dir, text) {
            Ok(p) => p,
            Err(e) => panic!("setup of {text:?}: {e}"),
        }
    }

    fn error(&self, text: &str) -> String {
        match self.setup(Path::new("/nonexistent"), text) {
            Ok(_) => panic!("setup accepted {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        self.metrics.registry.render(&mut out);
        out
    }
}

fn ask(plugin: &Arc<dyn Plugin>, qname: &str, qtype: RecordType) -> Message {
    let chain: Vec<Arc<dyn Plugin>> = vec![Arc::clone(plugin), Arc::new(Refuse)];
    let ctx = Ctx {
        client: "127.0.0.1:5353".parse().expect("addr"),
        local: "127.0.0.1:53".parse().expect("addr"),
        zone: Arc::from("."),
        received: Instant::now(),
    };
    futures::executor::block_on(Next::chain(&chain).serve(&ctx, request(qname, qtype)))
        .expect("an answer")
}

fn a(owner: &str, ip: [u8; 4], ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn aaaa(owner: &str, ip: &str, ttl: u32) -> Record {
    let ip: Ipv6Addr = ip.parse().expect("v6");
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
}

fn ptr(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::PTR(PTR(name(target))))
}

/// A directory of its own under the system temp dir, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dns-agent-hosts-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).expect("write hosts file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HOSTS: &str = "\
# a comment line
127.0.0.1   localhost
10.0.0.1    web.example.org web   # trailing comment
10.0.0.2    WEB.example.org.
fd00::1     web.example.org
fe80::1%eth0 link.example.org
not-an-ip   bad.example.org
10.0.0.9
";

#[test]
fn parses_the_hosts_format() {
    let t = Table::parse(&[HOSTS], &[".".to_owned()], false);
    let web = name("web.example.org.");
    assert_eq!(
        t.records("web.example.org.", &web, RecordType::A, 60),
        vec![
            a("web.example.org.", [10, 0, 0, 1], 60),
            a("web.example.org.", [10, 0, 0, 2], 60)
        ]
    );
    assert_eq!(
        t.records("web.example.org.", &web, RecordType::AAAA, 60),
        vec![aaaa("web.example.org.", "fd00::1", 60)]
    );
    assert!(
        t.knows("web."),
        "a single-label name is made fully qualified"
    );
    assert!(t.knows("localhost."));
    assert!(t.knows("link.example.org."), "the IPv6 zone is ignored");
    assert!(!t.knows("bad.example.org."));
    // localhost, web x2 (+ web.), web v6, link.
    assert_eq!(t.len(), 6);
    let only = Table::parse(&[HOSTS], &["example.org.".to_owned()], false);
    assert!(
        !only.knows("localhost."),
        "names outside the zones are left out"
    );
    assert_eq!(
        reverse_name("10.0.0.1".parse().expect("ip")),
        "1.0.0.10.in-addr.arpa."
    );
    assert_eq!(
        reverse_name("fd00::1".parse().expect("ip")),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
    );
}

#[test]
fn answers_from_the_file_and_the_inline_entries() {
    let dir = TempDir::new("inline");
    dir.write("hosts", HOSTS);
    let f = Fixture::new(&["."]);
    let p = f.plugin(
        &dir.0,
        ".:53 {\n    hosts hosts {\n        10.0.0.3 web.example.org\n        10.1.1.1 inline.example.org\n        ttl 60\n    }\n}\n",
    );
    let msg = ask(&p, "Web.Example.org.", RecordType::A);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.authoritative());
    assert_eq!(
        msg.answers(),
        &[
            a("Web.Example.org.", [10, 0, 0, 1], 60),
            a("Web.Example.org.", [10, 0, 0, 2], 60),
            a("Web.Example.org.", [10, 0, 0, 3], 60),
        ]
    );
    let msg = ask(&p, "inline.example.org.", RecordType::A);
    assert_eq!(
        msg.answers(),
        &[a("inline.example.org.", [10, 1, 1, 1], 60)]
    );
    // The other family of a known name: NODATA.
    let msg = ask(&p, "inline.example.org.", RecordType::AAAA);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.answers().is_empty());
    let msg = ask(&p, "inline.example.org.", RecordType::MX);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.answers().is_empty());
    // Unknown without fallthrough: NXDOMAIN.
    let msg = ask(&p, "nowhere.example.org.", RecordType::A);
    assert_eq!(msg.response_code(), ResponseCode::NXDomain);
    assert!(msg.authoritative());
    let text = f.metrics_text();
    assert!(text.contains("coredns_hosts_entries 8\n"), "{text}");
    assert!(
        text.contains("coredns_hosts_reload_timestamp_seconds "),
        "{text}"
    );
}

#[test]
fn default_ttl_and_zone_arguments() {
    let dir = TempDir::new("zones");
    dir.write("hosts", HOSTS);
    let f = Fixture::new(&["."]);
    let p = f.plugin(&dir.0, ".:53 {\n    hosts hosts example.org\n}\n");
    let msg = ask(&p, "web.example.org.", RecordType::AAAA);
    assert_eq!(
        msg.answers(),
        &[aaaa("web.example.org.", "fd00::1", DEFAULT_TTL)]
    );
    // Outside the plugin's zones: on to the next plugin, even for a name of the file.
    assert_eq!(
        ask(&p, "localhost.", RecordType::A).response_code(),
        ResponseCode::Refused
    );
}

#[test]
fn fallthrough_hands_unknown_names_on() {
    let f = Fixture::new(&["."]);
    let p = f.plugin(
        Path::new("/nonexistent"),
        ".:53 {\n    hosts missing-file {\n        10.0.0.1 a.example.org\n        fallthrough example.org\n    }\n}\n",
    );
    assert_eq!(
        ask(&p, "b.example.org.", RecordType::A).response_code(),
        ResponseCode::Refused
    );
    assert_eq!(
        ask(&p, "b.example.net.", RecordType::A).response_code(),
        ResponseCode::NXDomain
    );
    // A known name with no record of the type is NODATA, not a fallthrough.
    let msg = ask(&p, "a.example.org.", RecordType::AAAA);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    let all = f.plugin(
        Path::new("/nonexistent"),
        ".:53 {\n    hosts missing-file {\n        fallthrough\n    }\n}\n",
    );
    assert_eq!(
        ask(&all, "b.example.net.", RecordType::A).response_code(),
        ResponseCode::Refused
    );
}

#[test]
fn reverse_records_unless_no_reverse() {
    let f = Fixture::new(&["example.org."]);
    let text = ".:53 {\n    hosts /nonexistent/hosts {\n        10.0.0.1 a.example.org b.example.org\n        fd00::1 a.example.org\n    }\n}\n";
    let p = f.plugin(Path::new("/"), text);
    let msg = ask(&p, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert!(msg.authoritative());
    assert_eq!(
        msg.answers(),
        &[
            ptr("1.0.0.10.in-addr.arpa.", "a.example.org.", DEFAULT_TTL),
            ptr("1.0.0.10.in-addr.arpa.", "b.example.org.", DEFAULT_TTL),
        ]
    );
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ask(&p, v6, RecordType::PTR).answers(),
        &[ptr(v6, "a.example.org.", DEFAULT_TTL)]
    );
    // Reverse names of addresses it does not have go on.
    assert_eq!(
        ask(&p, "2.0.0.10.in-addr.arpa.", RecordType::PTR).response_code(),
        ResponseCode::Refused
    );
    let no_reverse = f.plugin(
        Path::new("/"),
        ".:53 {\n    hosts /nonexistent/hosts {\n        10.0.0.1 a.example.org\n        no_reverse\n    }\n}\n",
    );
    assert_eq!(
        ask(&no_reverse, "1.0.0.10.in-addr.arpa.", RecordType::PTR).response_code(),
        ResponseCode::Refused
    );
}

#[test]
fn reload_picks_up_a_changed_file() {
    let dir = TempDir::new("reload");
    dir.write("hosts", "10.0.0.1 a.example.org\n");
    let f = Fixture::new(&["."]);
    let p = f.plugin(
        &dir.0,
        ".:53 {\n    hosts hosts {\n        reload 0\n    }\n}\n",
    );
    assert_eq!(ask(&p, "a.example.org.", RecordType::A).answers().len(), 1);
    let shared = Arc::new(Shared {
        file: dir.0.join("hosts"),
        origins: vec![".".to_owned()],
        inline: "10.9.9.9 inline.example.org\n".to_owned(),
        no_reverse: false,
        loaded: Mutex::new(None),
        table: RwLock::new(Arc::default()),
        entries: Arc::default(),
        reloaded: Arc::default(),
    });
    assert!(shared.reload_if_changed(), "the first look reads the file");
    assert!(!shared.reload_if_changed(), "nothing changed");
    dir.write("hosts", "10.0.0.1 a.example.org\n10.0.0.2 b.example.org\n");
    assert!(shared.reload_if_changed(), "the size changed");
    assert!(shared.table().knows("b.example.org."));
    assert!(shared.table().knows("inline.example.org."));
    assert_eq!(shared.entries.get(), 3.0);
    std::fs::remove_file(dir.0.join("hosts")).expect("remove");
    assert!(
        !shared.reload_if_changed(),
        "a vanished file keeps the entries"
    );
    assert!(shared.table().knows("b.example.org."));
}

#[tokio::test]
async fn the_reload_task_rereads_the_file() {
    let dir = TempDir::new("task");
    dir.write("hosts", "10.0.0.1 a.example.org\n");
    let f = Fixture::new(&["."]);
    let p = f.plugin(
        &dir.0,
        ".:53 {\n    hosts hosts {\n        reload 10ms\n    }\n}\n",
    );
    dir.write("hosts", "10.0.0.1 a.example.org\n10.0.0.2 b.example.org\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let chain: Vec<Arc<dyn Plugin>> = vec![Arc::clone(&p), Arc::new(Refuse)];
        let ctx = Ctx {
            client: "127.0.0.1:5353".parse().expect("addr"),
            local: "127.0.0.1:53".parse().expect("addr"),
            zone: Arc::from("."),
            received: Instant::now(),
        };
        let req = request("b.example.org.", RecordType::A);
        let msg = Next::chain(&chain).serve(&ctx, req).await.expect("answer");
        if msg.answers() == [a("b.example.org.", [10, 0, 0, 2], DEFAULT_TTL)] {
            break;
        }
        assert!(Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn setup_errors_point_at_the_token() {
    let f = Fixture::new(&["."]);
    assert_eq!(
        f.error(".:53 {\n    hosts {\n        ttl 0\n    }\n}\n"),
        "Corefile:3:13: hosts: ttl \"0\": expected seconds (1-65535)"
    );
    assert_eq!(
        f.error(".:53 {\n    hosts {\n        ttl\n    }\n}\n"),
        "Corefile:3:9: hosts: ttl: expected seconds (1-65535)"
    );
    assert_eq!(
        f.error(".:53 {\n    hosts {\n        reload 5x\n    }\n}\n"),
        "Corefile:3:16: hosts: reload \"5x\": expected a duration such as 5s or 1m (0 disables)"
    );
    assert_eq!(
        f.error(".:53 {\n    hosts {\n        no_reverse yes\n    }\n}\n"),
        "Corefile:3:20: hosts: no_reverse \"yes\": expected no argument"
    );
    assert_eq!(
        f.error(".:53 {\n    hosts {\n        10.0.0.1\n    }\n}\n"),
        "Corefile:3:9: hosts: inline entry \"10.0.0.1\": expected names after the address"
    );
    assert!(f
        .error(".:53 {\n    hosts {\n        bogus 1\n    }\n}\n")
        .starts_with("Corefile:3:9: hosts: unknown option \"bogus\""));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration(""), None);
}
