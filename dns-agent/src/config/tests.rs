use std::path::Path;

use super::*;
use crate::corefile;

fn plan_of(text: &str) -> Result<Plan, CorefileError> {
    let cf = corefile::parse("Corefile", text)?;
    plan(&cf, 53, Path::new("/etc/coredns"))
}

/// kubeadm's Corefile, as `manifests/configmap.yaml` holds it.
fn kubeadm() -> String {
    let yaml = include_str!("../../../manifests/configmap.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("configmap yaml");
    doc["data"]["Corefile"]
        .as_str()
        .expect("data.Corefile")
        .to_owned()
}

#[test]
fn the_kubeadm_corefile_plans() {
    let p = plan_of(&kubeadm()).expect("valid");
    assert_eq!(p.ports.keys().copied().collect::<Vec<_>>(), [53]);
    let block = &p.ports[&53][0];
    assert_eq!(block.zones, ["."]);
    let order: Vec<&str> = block
        .directives
        .iter()
        .map(|d| d.name.text.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "reload",
            "ready",
            "health",
            "prometheus",
            "errors",
            "loadbalance",
            "cache",
            "kubernetes",
            "loop",
            "forward"
        ],
        "plugin.cfg order, not the order of the lines"
    );
    assert_eq!(
        p.health,
        Some(Health {
            addr: "0.0.0.0:8080".parse().expect("addr"),
            lameduck: Duration::from_secs(5)
        })
    );
    assert_eq!(p.ready, Some("0.0.0.0:8181".parse().expect("addr")));
    assert_eq!(p.prometheus, Some("0.0.0.0:9153".parse().expect("addr")));
    assert_eq!(p.reload, Some((RELOAD_INTERVAL, RELOAD_JITTER)));
    let k = p.kubernetes.expect("kubernetes");
    assert_eq!(k.settings.ttl, 30);
    assert_eq!(
        k.settings.zones,
        ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]
    );
}

#[test]
fn the_embedded_corefile_is_kubeadms_with_the_flags() {
    let text = embedded("cluster.local", 30, "0.0.0.0:9153".parse().expect("addr"));
    let (ours, kubeadm) = (
        plan_of(&text).expect("valid"),
        plan_of(&kubeadm()).expect("valid"),
    );
    let names = |p: &Plan| -> Vec<String> {
        p.ports[&53][0]
            .directives
            .iter()
            .map(|d| d.name.text.clone())
            .collect()
    };
    assert_eq!(names(&ours), names(&kubeadm));
    assert_eq!(
        (
            &ours.kubernetes,
            &ours.health,
            &ours.ready,
            &ours.prometheus,
            &ours.reload
        ),
        (
            &kubeadm.kubernetes,
            &kubeadm.health,
            &kubeadm.ready,
            &kubeadm.prometheus,
            &kubeadm.reload
        )
    );
    let p = plan_of(&embedded(
        "Corp.Example.",
        7,
        "127.0.0.1:9999".parse().expect("addr"),
    ))
    .expect("valid");
    let k = p.kubernetes.expect("kubernetes");
    assert_eq!(
        (k.settings.zones[0].as_str(), k.settings.ttl),
        ("corp.example.", 7)
    );
    assert_eq!(p.prometheus, Some("127.0.0.1:9999".parse().expect("addr")));
}

#[test]
fn blocks_group_by_port_and_default_port() {
    let p = plan_of(
        "cluster.local example.org:1053 {\n kubernetes\n}\n.:53 {\n errors\n}\n10.0.0.0/8 {\n errors\n}\n",
    )
    .expect("valid");
    assert_eq!(p.ports.keys().copied().collect::<Vec<_>>(), [53, 1053]);
    let zones53: Vec<&str> = p.ports[&53]
        .iter()
        .flat_map(|b| b.zones.iter().map(String::as_str))
        .collect();
    assert_eq!(zones53, ["cluster.local.", ".", "10.in-addr.arpa."]);
    let k = p.kubernetes.expect("kubernetes");
    assert_eq!(
        k.settings.zones,
        ["cluster.local.", "example.org."],
        "the block's zones"
    );
}

#[test]
fn errors_name_the_place() {
    let cases = [
        (".:53 {\n bogus\n}\n", "Corefile:2:2: unknown directive \"bogus\": this agent has reload, ready, health, prometheus, errors, log, loadbalance, cache, rewrite, hosts, kubernetes, loop, forward"),
        (".:53 {\n cache\n errors\n cache 10\n}\n", "Corefile:4:2: cache appears twice in this server block (first at Corefile:2:2)"),
        (".:53 {\n kubernetes a.local\n}\nb.local {\n kubernetes b.local\n}\n", "Corefile:5:2: kubernetes: a second, different kubernetes block (the first is at Corefile:2:2): this agent serves one cluster"),
        (".:53 {\n health {\n  lameduck soon\n }\n}\n", "Corefile:3:12: health: lameduck: \"soon\" is not a duration such as 500ms, 5s, 1m30s"),
        (".:53 {\n ready 8181\n}\n", "Corefile:2:8: ready: address \"8181\": expected [HOST]:PORT such as :8080 or 127.0.0.1:8080"),
        (".:53 {\n reload 1s\n}\n", "Corefile:2:9: reload: the interval must be at least 2s"),
        (".:53 {\n ready :8181\n}\nexample.org {\n ready :8182\n}\n", "Corefile:5:2: ready: a different setting in another server block: one agent has one ready"),
        (".:53 {\n}\n.:53 {\n}\n", "Corefile:3:1: zone . on port 53 is already served by the block at Corefile:1:1"),
        (". {\n}\n.:53 {\n}\n", "Corefile:3:1: zone . on port 53 is served twice"),
    ];
    for (text, want) in cases {
        let got = plan_of(text).expect_err(text).to_string();
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn durations() {
    for (text, want) in [
        ("5s", Some(5_000)),
        ("500ms", Some(500)),
        ("1m30s", Some(90_000)),
        ("2h", Some(7_200_000)),
        ("1.5s", Some(1_500)),
        ("30", None),
        ("0", Some(0)),
        ("250us", Some(0)),
        ("", None),
        ("5x", None),
        ("s", None),
    ] {
        assert_eq!(
            parse_duration(text).map(|d| d.as_millis() as u64),
            want,
            "{text:?}"
        );
    }
}

/// Every ```corefile example of every plugin's README parses, plans and sets up.
#[tokio::test]
async fn every_readme_example_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plugin");
    let mut readmes: Vec<_> = std::fs::read_dir(&dir)
        .expect("plugin directory")
        .filter_map(Result::ok)
        .map(|e| e.path().join("README.md"))
        .filter(|p| p.exists())
        .collect();
    readmes.sort();
    let mut plugins_with_examples = Vec::new();
    let mut examples = 0;
    for readme in &readmes {
        let text = std::fs::read_to_string(readme).expect("README");
        let mut found = 0;
        for example in corefile::readme_examples(&text) {
            let origin = format!("{}#{}", readme.display(), found + 1);
            let cf = corefile::parse(&origin, example)
                .unwrap_or_else(|e| panic!("{origin}: {e}\n{example}"));
            let p = plan(&cf, 1053, &std::env::temp_dir())
                .unwrap_or_else(|e| panic!("{origin}: {e}\n{example}"));
            let settings = p
                .kubernetes
                .as_ref()
                .map_or_else(crate::records::Settings::default, |k| k.settings.clone());
            let records = SharedRecords::new(crate::records::Records::empty(&settings, 1));
            let metrics = Arc::new(Metrics::default());
            build(
                &p,
                &BuildCtx {
                    records,
                    metrics: &metrics,
                },
            )
            .unwrap_or_else(|e| panic!("{origin}: {e}\n{example}"));
            found += 1;
        }
        if found > 0 {
            plugins_with_examples.push(
                readme
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        examples += found;
    }
    assert!(
        examples >= readmes.len(),
        "{examples} examples in {} READMEs",
        readmes.len()
    );
    for readme in &readmes {
        let name = readme
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            plugins_with_examples.contains(&name),
            "{} has no ```corefile example",
            readme.display()
        );
    }
}

/// The Corefile of `manifests/configmap.yaml` (kubeadm's, unchanged) plans and sets up.
#[tokio::test]
async fn the_configmap_corefile_runs() {
    let cf = corefile::parse("configmap Corefile", &kubeadm()).expect("parses");
    let p = plan(&cf, 53, Path::new("/etc/dns-agent")).expect("plans");
    let k = p.kubernetes.clone().expect("kubernetes");
    assert_eq!(k.settings.ttl, 30);
    let records = SharedRecords::new(crate::records::Records::empty(&k.settings, 1));
    let metrics = Arc::new(Metrics::default());
    let routers = build(
        &p,
        &BuildCtx {
            records,
            metrics: &metrics,
        },
    )
    .expect("sets up");
    assert_eq!(routers.keys().copied().collect::<Vec<_>>(), [53]);
    // The chain holds every query plugin of the file, in plugin.cfg order.
    let chain: Vec<&str> = routers[&53].blocks()[0]
        .plugins
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(
        chain,
        [
            "prometheus",
            "errors",
            "loadbalance",
            "cache",
            "kubernetes",
            "loop",
            "forward"
        ]
    );
}

#[test]
fn the_kernel_may_deny_only_what_kubernetes_alone_answers() {
    let zone = "cluster.local.";
    let kubeadm = plan_of(&kubeadm()).expect("kubeadm's Corefile");
    assert!(kubeadm.kernel_may_deny(53, zone), "kubeadm's Corefile");
    for (what, text) in [
        (
            "hosts before kubernetes",
            ".:53 {\n hosts {\n  10.0.0.1 db.cluster.local\n  fallthrough\n }\n kubernetes cluster.local\n}\n",
        ),
        (
            "rewrite before kubernetes",
            ".:53 {\n rewrite name db.cluster.local web.default.svc.cluster.local\n kubernetes cluster.local\n}\n",
        ),
        (
            "a block below the zone",
            ".:53 {\n kubernetes cluster.local\n}\nfoo.cluster.local:53 {\n forward . 10.0.0.53\n}\n",
        ),
        (
            "a block for the zone itself",
            "cluster.local:53 {\n forward . 10.0.0.53\n}\n.:53 {\n kubernetes cluster.local\n}\n",
        ),
    ] {
        let plan = plan_of(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!plan.kernel_may_deny(53, zone), "{what}");
    }
    // Other ports and zones elsewhere do not matter.
    let elsewhere = plan_of(
        ".:53 {\n kubernetes cluster.local\n}\nexample.org:53 {\n forward . 10.0.0.53\n}\nfoo.cluster.local:5353 {\n forward . 10.0.0.53\n}\n",
    )
    .expect("Corefile");
    assert!(
        elsewhere.kernel_may_deny(53, zone),
        "blocks for other zones and ports"
    );
}
