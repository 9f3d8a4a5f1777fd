//! The Corefile language: structure, keys, quoting, environment, snippets, imports and errors.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

const KUBEADM: &str = "\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

/// A directive without positions, to compare trees.
#[derive(Debug, PartialEq, Eq)]
struct D {
    name: String,
    args: Vec<String>,
    block: Option<Vec<D>>,
}

fn d(name: &str, args: &[&str]) -> D {
    D {
        name: name.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        block: None,
    }
}

fn db(name: &str, args: &[&str], block: Vec<D>) -> D {
    D {
        block: Some(block),
        ..d(name, args)
    }
}

fn shape(directives: &[Directive]) -> Vec<D> {
    directives
        .iter()
        .map(|x| D {
            name: x.name.text.clone(),
            args: x.arg_texts().iter().map(|a| (*a).to_owned()).collect(),
            block: x.block.as_deref().map(shape),
        })
        .collect()
}

/// Environment, files and directories in memory.
#[derive(Default)]
struct Fake {
    env: BTreeMap<&'static str, &'static str>,
    files: BTreeMap<PathBuf, &'static str>,
}

impl Fake {
    fn file(mut self, path: &str, text: &'static str) -> Self {
        self.files.insert(PathBuf::from(path), text);
        self
    }

    fn var(mut self, name: &'static str, value: &'static str) -> Self {
        self.env.insert(name, value);
        self
    }

    fn parse(&self, text: &str) -> Result<Corefile, CorefileError> {
        parse_with_loader("Corefile", text, self)
    }

    fn ok(&self, text: &str) -> Corefile {
        self.parse(text)
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(&self, text: &str) -> String {
        match self.parse(text) {
            Ok(c) => panic!("{text:?} should fail, parsed to {c:?}"),
            Err(e) => e.to_string(),
        }
    }
}

impl Loader for Fake {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).map(|v| (*v).to_owned())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(&super::expand::normalize(path))
            .map(|t| (*t).to_owned())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .rev()
            .collect())
    }
}

fn ok(text: &str) -> Corefile {
    Fake::default().ok(text)
}

fn err(text: &str) -> String {
    Fake::default().err(text)
}

fn kubeadm_shape(cache: D) -> Vec<D> {
    vec![
        d("errors", &[]),
        db("health", &[], vec![d("lameduck", &["5s"])]),
        d("ready", &[]),
        db(
            "kubernetes",
            &["cluster.local", "in-addr.arpa", "ip6.arpa"],
            vec![
                d("pods", &["insecure"]),
                d("fallthrough", &["in-addr.arpa", "ip6.arpa"]),
                d("ttl", &["30"]),
            ],
        ),
        d("prometheus", &[":9153"]),
        db(
            "forward",
            &[".", "/etc/resolv.conf"],
            vec![d("max_concurrent", &["1000"])],
        ),
        cache,
        d("loop", &[]),
        d("reload", &[]),
        d("loadbalance", &[]),
    ]
}

fn pos(line: u32, col: u32) -> Pos {
    Pos {
        file: "Corefile".into(),
        line,
        col,
    }
}

#[test]
fn kubeadm_default() {
    let corefile = ok(KUBEADM);
    assert_eq!(corefile.blocks.len(), 1);
    let block = &corefile.blocks[0];
    assert_eq!(
        block.keys,
        vec![ServerKey {
            transport: Transport::Dns,
            zones: vec![".".to_owned()],
            port: Some(53),
            pos: pos(1, 1),
        }]
    );
    assert_eq!(block.pos, pos(1, 1));
    assert_eq!(shape(&block.directives), kubeadm_shape(d("cache", &["30"])));
    let health = block.directives_named("health").next().expect("health");
    assert_eq!(health.pos, pos(3, 5));
    assert_eq!(health.block_directives()[0].pos, pos(4, 8));
    assert_eq!(health.block_directives()[0].args[0].pos, pos(4, 17));
    let forward = block.directives_named("forward").next().expect("forward");
    assert_eq!(forward.arg_texts(), [".", "/etc/resolv.conf"]);
    assert!(!forward.args[0].quoted);
}

#[test]
fn kubeadm_configmap_manifest() {
    let manifest: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../manifests/configmap.yaml"))
            .expect("configmap.yaml is YAML");
    let text = manifest["data"]["Corefile"]
        .as_str()
        .expect("configmap.yaml has data.Corefile");
    let corefile = ok(text);
    assert_eq!(corefile.blocks.len(), 1);
    let cache = db(
        "cache",
        &["30"],
        vec![
            d("disable", &["success", "cluster.local"]),
            d("disable", &["denial", "cluster.local"]),
        ],
    );
    assert_eq!(shape(&corefile.blocks[0].directives), kubeadm_shape(cache));
}

#[test]
fn server_keys() {
    let s = |v: &[&str]| v.iter().map(|z| (*z).to_owned()).collect::<Vec<_>>();
    let cases: Vec<(&str, Vec<String>, Option<u16>)> = vec![
        (".", s(&["."]), None),
        (".:53", s(&["."]), Some(53)),
        ("dns://.:53", s(&["."]), Some(53)),
        ("DNS://.", s(&["."]), None),
        ("example.org", s(&["example.org."]), None),
        ("Example.ORG.", s(&["example.org."]), None),
        ("example.org:1053", s(&["example.org."]), Some(1053)),
        ("cluster.local:65535", s(&["cluster.local."]), Some(65535)),
        ("10.0.0.0/24", s(&["0.0.10.in-addr.arpa."]), None),
        ("10.0.0.0/16", s(&["0.10.in-addr.arpa."]), None),
        ("10.0.0.0/8", s(&["10.in-addr.arpa."]), None),
        ("10.1.2.3/8", s(&["10.in-addr.arpa."]), None),
        ("10.1.2.3/32", s(&["3.2.1.10.in-addr.arpa."]), None),
        ("0.0.0.0/0", s(&["in-addr.arpa."]), None),
        ("10.0.0.0/24:5353", s(&["0.0.10.in-addr.arpa."]), Some(5353)),
        (
            "172.16.0.0/14",
            s(&[
                "16.172.in-addr.arpa.",
                "17.172.in-addr.arpa.",
                "18.172.in-addr.arpa.",
                "19.172.in-addr.arpa.",
            ]),
            None,
        ),
        (
            "10.0.0.128/30",
            s(&[
                "128.0.0.10.in-addr.arpa.",
                "129.0.0.10.in-addr.arpa.",
                "130.0.0.10.in-addr.arpa.",
                "131.0.0.10.in-addr.arpa.",
            ]),
            None,
        ),
        (
            "fd00::/64",
            s(&["0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."]),
            None,
        ),
        ("fd00::/8", s(&["d.f.ip6.arpa."]), None),
        ("[fd00::/8]:53", s(&["d.f.ip6.arpa."]), Some(53)),
        ("fd00::/7", s(&["c.f.ip6.arpa.", "d.f.ip6.arpa."]), None),
        ("::/0", s(&["ip6.arpa."]), None),
    ];
    for (key, zones, port) in cases {
        let corefile = ok(&format!("{key} {{\n}}\n"));
        let got = &corefile.blocks[0].keys[0];
        assert_eq!((&got.zones, got.port), (&zones, port), "key {key}");
        assert_eq!(got.transport, Transport::Dns);
    }
    assert_eq!(ok("172.16.0.0/12 {\n}").blocks[0].keys[0].zones.len(), 16);
}

#[test]
fn several_keys_blocks_and_ports() {
    let corefile = ok("\
example.org example.net:1053, Example.COM,10.0.0.0/24 {
    whoami
}
example.org:1053 {
}
.:53 . {
}
a.example,
  b.example
{
    log
}
");
    // (first zone, port, line, column) of each key of each block.
    type Keys<'a> = Vec<Vec<(&'a str, Option<u16>, u32, u32)>>;
    let keys: Keys = corefile
        .blocks
        .iter()
        .map(|b| {
            b.keys
                .iter()
                .map(|k| (k.zones[0].as_str(), k.port, k.pos.line, k.pos.col))
                .collect()
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            vec![
                ("example.org.", None, 1, 1),
                ("example.net.", Some(1053), 1, 13),
                ("example.com.", None, 1, 31),
                ("0.0.10.in-addr.arpa.", None, 1, 43),
            ],
            vec![("example.org.", Some(1053), 4, 1)],
            vec![(".", Some(53), 6, 1), (".", None, 6, 6)],
            vec![("a.example.", None, 8, 1), ("b.example.", None, 9, 3)],
        ]
    );
    assert_eq!(
        shape(&corefile.blocks[0].directives),
        vec![d("whoami", &[])]
    );
    assert!(corefile.blocks[1].directives.is_empty());
    assert_eq!(shape(&corefile.blocks[3].directives), vec![d("log", &[])]);
}

#[test]
fn one_line_blocks_and_deep_nesting() {
    let corefile = ok("\
. { whoami }
example.org {
    health { lameduck 5s }
    a 1 {
        b 2 {
            c 3 {
            }
        }
        d
    }
}
");
    assert_eq!(
        shape(&corefile.blocks[0].directives),
        vec![d("whoami", &[])]
    );
    assert_eq!(
        shape(&corefile.blocks[1].directives),
        vec![
            db("health", &[], vec![d("lameduck", &["5s"])]),
            db(
                "a",
                &["1"],
                vec![db("b", &["2"], vec![db("c", &["3"], vec![])]), d("d", &[])]
            ),
        ]
    );
}

#[test]
fn comments_and_quotes() {
    let corefile = ok(r##"# a Corefile
. { # the root
    # a whole line
    log "{remote} - {type}"  # quoted, keeps spaces
    template "a \"b\" c\\d" e\f "#not a comment"
    x""y
    path"with quote"
    multi "line one
line two" after
    hosts#comment
}
"##);
    let directives = &corefile.blocks[0].directives;
    assert_eq!(
        shape(directives),
        vec![
            d("log", &["{remote} - {type}"]),
            d("template", &["a \"b\" c\\d", "e\\f", "#not a comment"]),
            d("x\"\"y", &[]),
            d("path\"with", &["quote\""]),
            d("multi", &["line one\nline two", "after"]),
            d("hosts", &[]),
        ]
    );
    let log = &directives[0];
    assert!(log.args[0].quoted);
    assert_eq!(log.args[0].pos, pos(4, 9));
    assert_eq!(directives[1].args[1].pos, pos(5, 29));
    assert!(!directives[1].args[1].quoted);
    assert_eq!(directives[4].args[1].pos, pos(9, 11));
    // A quoted brace is a word, not structure.
    let quoted = ok(". {\n    rewrite \"{\" \"}\"\n}");
    assert_eq!(
        shape(&quoted.blocks[0].directives),
        vec![d("rewrite", &["{", "}"])]
    );
}

#[test]
fn environment_variables() {
    let fake = Fake::default()
        .var("ZONE", "Cluster.Local")
        .var("PORT", "1053")
        .var("UPSTREAMS", "10.0.0.1 10.0.0.2")
        .var("TTL", "30");
    let corefile = fake.ok("\
{$ZONE}:{%PORT%} {
    forward . {$UPSTREAMS}
    cache {$TTL}s x{$UNSET}y {$UNSET}
    log \"{$UPSTREAMS}\" \"{$UNSET}\" {not_env} {$} {$UNCLOSED
}
");
    let block = &corefile.blocks[0];
    assert_eq!(block.keys[0].zones, ["cluster.local."]);
    assert_eq!(block.keys[0].port, Some(1053));
    assert_eq!(
        shape(&block.directives),
        vec![
            d("forward", &[".", "10.0.0.1", "10.0.0.2"]),
            d("cache", &["30s", "xy"]),
            d(
                "log",
                &["10.0.0.1 10.0.0.2", "", "{not_env}", "{$}", "{$UNCLOSED"]
            ),
        ]
    );
    assert_eq!(block.directives[0].args[2].pos, pos(2, 15));
}

#[test]
fn snippets() {
    let corefile = ok("\
(common) {
    errors
    cache 30
}
(nested) {
    import common
    log
}
(oneline) { whoami }
(server) {
    . {
        import common
    }
}
import server

example.org {
    import nested
    forward . 1.1.1.1 {
        import oneline
    }
    health { import oneline }
}
");
    assert_eq!(corefile.blocks.len(), 2);
    assert_eq!(corefile.blocks[0].keys[0].zones, ["."]);
    assert_eq!(corefile.blocks[0].pos, pos(11, 5));
    assert_eq!(
        shape(&corefile.blocks[0].directives),
        vec![d("errors", &[]), d("cache", &["30"])]
    );
    let block = &corefile.blocks[1];
    assert_eq!(
        shape(&block.directives),
        vec![
            d("errors", &[]),
            d("cache", &["30"]),
            d("log", &[]),
            db("forward", &[".", "1.1.1.1"], vec![d("whoami", &[])]),
            db("health", &[], vec![d("whoami", &[])]),
        ]
    );
    // Positions point at the snippet's own lines.
    assert_eq!(block.directives[0].pos, pos(2, 5));
    assert_eq!(block.directives[2].pos, pos(7, 5));
    assert_eq!(block.directives[3].block_directives()[0].pos, pos(9, 13));
}

#[test]
fn file_imports() {
    let fake = Fake::default()
        .file("/etc/coredns/zones.conf", "example.org {\n    whoami\n}\n")
        .file(
            "/etc/coredns/plugins/b.conf",
            "log\nimport ../common.conf\n",
        )
        .file("/etc/coredns/plugins/a.conf", "errors\n")
        .file("/etc/coredns/plugins/.hidden", "hidden\n")
        .file("/etc/coredns/plugins/c.txt", "text\n")
        .file(
            "/etc/coredns/common.conf",
            "cache 30 {\n    success 100\n}\n",
        )
        .file("/etc/coredns/snippets.conf", "(ready) {\n    ready\n}\n");
    let text = "\
import snippets.conf
import zones.conf
.:53 {
    import plugins/*.conf
    import ready
    import none/*.conf
    forward . /etc/resolv.conf {
        import /etc/coredns/plugins/a.conf
    }
}
";
    let corefile =
        parse_with_loader("/etc/coredns/Corefile", text, &fake).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(corefile.blocks.len(), 2);
    let zones = &corefile.blocks[0];
    assert_eq!(zones.keys[0].zones, ["example.org."]);
    assert_eq!(&*zones.pos.file, "/etc/coredns/zones.conf");
    assert_eq!(
        shape(&corefile.blocks[1].directives),
        vec![
            d("errors", &[]),
            d("log", &[]),
            db("cache", &["30"], vec![d("success", &["100"])]),
            d("ready", &[]),
            db(
                "forward",
                &[".", "/etc/resolv.conf"],
                vec![d("errors", &[])]
            ),
        ]
    );
    let cache = &corefile.blocks[1].directives[2];
    assert_eq!(
        cache.pos.to_string(),
        "/etc/coredns/plugins/../common.conf:1:1"
    );
}

#[test]
fn closures_and_files_on_disk() {
    let dir = std::env::temp_dir().join(format!("dns-agent-corefile-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).expect("temp dir");
    std::fs::write(dir.join("conf.d/1.conf"), "errors\n").expect("write");
    std::fs::write(dir.join("conf.d/2.conf"), "log\n").expect("write");
    std::fs::write(dir.join("Corefile"), ". {\n    import conf.d/*.conf\n}\n").expect("write");
    let corefile = parse_file(&dir.join("Corefile")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        shape(&corefile.blocks[0].directives),
        vec![d("errors", &[]), d("log", &[])]
    );
    let missing = parse_file(&dir.join("nope")).expect_err("missing file");
    assert!(
        missing.to_string().starts_with(&format!(
            "{}: cannot read the Corefile: ",
            dir.join("nope").display()
        )),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");

    let env = |name: &str| (name == "Z").then(|| "example.org".to_owned());
    let fs = |path: &Path| {
        if path == Path::new("dir/extra.conf") {
            Ok("cache\n".to_owned())
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    };
    let corefile = parse_with(
        "dir/Corefile",
        "{$Z} {\n    import extra.conf\n}",
        &env,
        &fs,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(corefile.blocks[0].keys[0].zones, ["example.org."]);
    assert_eq!(shape(&corefile.blocks[0].directives), vec![d("cache", &[])]);
}

#[test]
fn errors() {
    let cases: &[(&str, &str)] = &[
        ("", "Corefile:1:1: empty Corefile: no server block"),
        ("# nothing\n\n", "Corefile:1:1: empty Corefile: no server block"),
        ("(s) {\n  log\n}\n", "Corefile:1:1: empty Corefile: no server block"),
        (
            "# comment\n.:53\n    errors\n",
            "Corefile:3:5: expected '{' after the server keys",
        ),
        (".", "Corefile:1:0 (end of file): expected '{' after the server keys"),
        (". }", "Corefile:1:3: expected '{' after the server keys"),
        ("{\n}", "Corefile:1:1: expected server keys before '{'"),
        (". {\n}\n}\n", "Corefile:3:1: unexpected '}'"),
        (
            ". {\n    errors\n}\n. {\n    log\n}\n}\n",
            "Corefile:4:1: zone . on the default port is already served by the block at Corefile:1:1",
        ),
        (
            ".:53 {\n    errors\n    health {\n        lameduck 5s\n    }\n\n",
            "Corefile:6:0 (end of file): missing '}' to close the block opened at Corefile:1:1",
        ),
        (
            ".:53 {\n    health {\n        lameduck 5s\n}\n",
            "Corefile:4:0 (end of file): missing '}' to close the block opened at Corefile:1:1",
        ),
        (
            ".:53 {\n    cache {\n    errors\n",
            "Corefile:3:0 (end of file): missing '}' to close the block opened at Corefile:2:5",
        ),
        (". {\n  import foo\n}", "Corefile:2:3: import foo: no snippet or file named foo"),
        (".:5x3 {\n}", "Corefile:1:3: invalid port \"5x3\": expected a number from 1 to 65535"),
        (".:0 {\n}", "Corefile:1:3: invalid port \"0\": expected a number from 1 to 65535"),
        (
            "a.org, dns://b.org:65536 {\n}",
            "Corefile:1:20: invalid port \"65536\": expected a number from 1 to 65535",
        ),
        ("example.org: {\n}", "Corefile:1:13: invalid port \"\": expected a number from 1 to 65535"),
        (
            "tls://.:853 {\n}",
            "Corefile:1:1: unsupported transport \"tls://\": only dns:// (plain DNS over UDP and TCP) is served",
        ),
        (
            ". https://example.org {\n}",
            "Corefile:1:3: unsupported transport \"https://\": only dns:// (plain DNS over UDP and TCP) is served",
        ),
        (
            "grpc://. {\n}",
            "Corefile:1:1: unsupported transport \"grpc://\": only dns:// (plain DNS over UDP and TCP) is served",
        ),
        (
            ". {\n    log \"unterminated\n}\n",
            "Corefile:2:9: unterminated quoted string: missing the closing '\"'",
        ),
        (
            "example.org:53 {\n}\nexample.org:1053 {\n}\nEXAMPLE.org.:53 {\n}\n",
            "Corefile:5:1: zone example.org. on port 53 is already served by the block at Corefile:1:1",
        ),
        (
            "10.0.0.0/24 {\n}\n10.0.0.0/16, 10.0.0.0/23 {\n}\n",
            "Corefile:3:14: zone 0.0.10.in-addr.arpa. on the default port is already served by the block at Corefile:1:1",
        ),
        (
            ". . {\n}",
            "Corefile:1:3: zone . on the default port is already served by the block at Corefile:1:1",
        ),
        (". {\n    health\n    {\n    }\n}", "Corefile:3:5: '{' must be on the same line as the directive whose block it opens"),
        ("a, {\n}", "Corefile:1:4: expected another server key after ','"),
        (":53 {\n}", "Corefile:1:1: server key \":53\" has no zone: write '.' for the root zone"),
        ("exa\nmple.org {\n}", "Corefile:2:1: expected '{' after the server keys"),
        ("a..b {\n}", "Corefile:1:1: invalid zone \"a..b\": empty label"),
        ("(x) {\n}", "Corefile:1:1: empty Corefile: no server block"),
        ("foo(x) {\n}", "Corefile:1:1: invalid zone \"foo(x)\": only letters, digits, '-', '_' and '*' may appear in a zone"),
        ("10.0.0.0/33 {\n}", "Corefile:1:1: invalid network \"10.0.0.0/33\": prefix length \"33\": expected a number from 0 to 32"),
        ("10.0.0/8 {\n}", "Corefile:1:1: invalid network \"10.0.0/8\": \"10.0.0\" is not an IP address"),
        (". {\n    import\n}", "Corefile:2:5: import needs a snippet name or a file path"),
        (
            ". {\n    import a b\n}",
            "Corefile:2:14: import takes one snippet name or file path (arguments to snippets are not supported)",
        ),
        (". {\n    import a {\n    }\n}", "Corefile:2:14: import takes no block: expected the end of the line"),
        (
            "(a) {\n    import b\n}\n(b) {\n    import a\n}\n. {\n    import a\n}\n",
            "Corefile:5:5: import cycle: file Corefile -> snippet a -> snippet b -> snippet a",
        ),
        (
            "(a) {\n    import a\n}\n. {\n    import a\n}\n",
            "Corefile:2:5: import cycle: file Corefile -> snippet a -> snippet a",
        ),
        ("(a) {\n}\n(a) {\n}\n", "Corefile:3:1: snippet a is already defined at Corefile:1:1"),
        ("(a) {\n    log\n", "Corefile:2:0 (end of file): missing '}' to close the snippet opened at Corefile:1:1"),
        (
            ". {\n    import x/*/y.conf\n}",
            "Corefile:2:12: import x/*/y.conf: '*' is allowed only in the last path component",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "Corefile {text:?}");
    }
}

#[test]
fn import_errors_name_files() {
    let fake = Fake::default()
        .file("self.conf", "import self.conf\n")
        .file("a.conf", "import b.conf\n")
        .file("b.conf", "log\nimport a.conf\n")
        .file("broken.conf", "log {\n")
        .file("missing.conf", "import nothing.conf\n");
    let cases: &[(&str, &str)] = &[
        (
            ". {\n    import self.conf\n}",
            "self.conf:1:1: import cycle: file Corefile -> file self.conf -> file self.conf",
        ),
        (
            ". {\n    import a.conf\n}",
            "b.conf:2:1: import cycle: file Corefile -> file a.conf -> file b.conf -> file a.conf",
        ),
        (
            "import Corefile",
            "Corefile:1:1: import cycle: file Corefile -> file Corefile",
        ),
        (
            ". {\n    import missing.conf\n}",
            "missing.conf:1:1: import nothing.conf: no snippet or file named nothing.conf",
        ),
        (
            ". {\n    import broken.conf\n}\n",
            "Corefile:3:0 (end of file): missing '}' to close the block opened at Corefile:1:1",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&fake.err(text), want, "Corefile {text:?}");
    }
}
