//! Table-driven tests of record computation and name classification.

use super::*;
use crate::snapshot;

mod model;

fn settings() -> Settings {
    Settings::new("cluster.local", 5)
}

fn records_of(yaml: &str) -> Records {
    records_with(yaml, &settings())
}

fn records_with(yaml: &str, settings: &Settings) -> Records {
    let loaded = snapshot::parse("test.yaml", yaml).unwrap_or_else(|e| panic!("snapshot: {e}"));
    build(&loaded.cluster, settings, 1_700_000_000).0
}

/// The A records of service names (`<svc>.<ns>.svc.cluster.local.`), endpoint names left out.
fn service_a(records: &Records) -> AMap {
    records
        .a
        .iter()
        .filter(|(n, _)| n.matches('.').count() == 5 && n.ends_with(".svc.cluster.local."))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn svc(ns: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}\n")
}

fn slice(ns: &str, name: &str, service: &str, address_type: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: {address_type}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {service}\nendpoints:\n{endpoints}\n"
    )
}

#[test]
fn a_records() {
    struct Case {
        name: &'static str,
        yaml: String,
        want: Vec<(&'static str, Vec<&'static str>)>,
    }
    let cases = vec![
        Case {
            name: "clusterIP only",
            yaml: svc("default", "web", "  clusterIP: 10.96.10.20"),
            want: vec![("web.default.svc.cluster.local.", vec!["10.96.10.20"])],
        },
        Case {
            name: "clusterIPs IPv4 entries, IPv6 dropped, sorted",
            yaml: svc(
                "demo",
                "api",
                "  clusterIP: fd00::1\n  clusterIPs: [fd00::1, 10.96.20.31]\n  ipFamilies: [IPv6, IPv4]",
            ),
            want: vec![("api.demo.svc.cluster.local.", vec!["10.96.20.31"])],
        },
        Case {
            name: "IPv6-only service has no A record",
            yaml: svc("demo", "v6", "  clusterIP: fd00::1\n  clusterIPs: [fd00::1]"),
            want: vec![],
        },
        Case {
            name: "no clusterIP allocated",
            yaml: svc("demo", "pending", "  type: ClusterIP"),
            want: vec![],
        },
        Case {
            name: "ExternalName ignored",
            yaml: svc("demo", "ext", "  type: ExternalName\n  externalName: example.com"),
            want: vec![],
        },
        Case {
            name: "headless: ready and ready-nil endpoints, deduplicated across slices, sorted",
            yaml: svc("demo", "db", "  clusterIP: None\n  clusterIPs: [None]")
                + &slice(
                    "demo",
                    "db-1",
                    "db",
                    "IPv4",
                    "- addresses: [10.244.2.12]\n  conditions: {}\n- addresses: [10.244.1.11]\n  conditions: {ready: true}\n- addresses: [10.244.1.13]\n  conditions: {ready: false}\n- addresses: [10.244.9.9]",
                )
                + &slice(
                    "demo",
                    "db-2",
                    "db",
                    "IPv4",
                    "- addresses: [10.244.1.11]\n  conditions: {ready: true}\n- addresses: [10.244.3.14, 10.244.3.15]",
                ),
            want: vec![(
                "db.demo.svc.cluster.local.",
                vec!["10.244.1.11", "10.244.2.12", "10.244.3.14", "10.244.3.15", "10.244.9.9"],
            )],
        },
        Case {
            name: "headless: IPv6 slices, other services' and other namespaces' slices ignored",
            yaml: svc("demo", "db", "  clusterIP: None")
                + &slice("demo", "db-v6", "db", "IPv6", "- addresses: ['fd00::5']")
                + &slice("demo", "other", "web", "IPv4", "- addresses: [10.1.1.1]")
                + &slice("prod", "db-x", "db", "IPv4", "- addresses: [10.2.2.2]")
                + &slice("demo", "db-ok", "db", "IPv4", "- addresses: [10.3.3.3]"),
            want: vec![("db.demo.svc.cluster.local.", vec!["10.3.3.3"])],
        },
        Case {
            name: "headless without ready endpoints has no record",
            yaml: svc("demo", "warming", "  clusterIP: None")
                + &slice("demo", "w-1", "warming", "IPv4", "- addresses: [10.4.4.4]\n  conditions: {ready: false}"),
            want: vec![],
        },
        Case {
            name: "several services and namespaces",
            yaml: svc("default", "kubernetes", "  clusterIP: 10.96.0.1")
                + &svc("kube-system", "kube-dns", "  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10]"),
            want: vec![
                ("kube-dns.kube-system.svc.cluster.local.", vec!["10.96.0.10"]),
                ("kubernetes.default.svc.cluster.local.", vec!["10.96.0.1"]),
            ],
        },
    ];
    for case in cases {
        let records = records_of(&case.yaml);
        let want: AMap = case
            .want
            .iter()
            .map(|(name, addrs)| {
                let addrs = addrs
                    .iter()
                    .map(|a| a.parse().expect("test address"))
                    .collect();
                (name.to_string(), (5, addrs))
            })
            .collect();
        assert_eq!(service_a(&records), want, "case {:?}", case.name);
    }
}

#[test]
fn sample_snapshot_records() {
    let records = records_of(snapshot::EMBEDDED);
    let a = service_a(&records);
    let got: Vec<(&str, usize)> = a.iter().map(|(n, (_, a))| (n.as_str(), a.len())).collect();
    assert_eq!(
        got,
        vec![
            ("api.demo.svc.cluster.local.", 1),
            ("db.demo.svc.cluster.local.", 3),
            ("fanout.demo.svc.cluster.local.", 40),
            ("kube-dns.kube-system.svc.cluster.local.", 1),
            ("kubernetes.default.svc.cluster.local.", 1),
            ("web.default.svc.cluster.local.", 1),
        ]
    );
    let db = &records.a["db.demo.svc.cluster.local."].1;
    let want: Vec<Ipv4Addr> = ["10.244.1.11", "10.244.2.12", "10.244.3.14"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    assert_eq!(db, &want);
    assert_eq!(
        records
            .namespaces
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        vec!["default", "demo", "kube-system"]
    );
}

#[test]
fn serial_only_moves_on_change() {
    let old = records_of(&svc("default", "web", "  clusterIP: 10.96.10.20"));
    let same = records_of(&svc("default", "web", "  clusterIP: 10.96.10.20"));
    let changed = records_of(&svc("default", "web", "  clusterIP: 10.96.10.21"));
    assert_eq!(next_serial(&old, &same, 1_800_000_000), old.serial);
    assert_eq!(next_serial(&old, &changed, 1_800_000_000), 1_800_000_000);
    // A clock behind the last serial still makes it grow.
    assert_eq!(next_serial(&old, &changed, 5), old.serial + 1);
}

#[test]
fn shared_records_swap() {
    let shared = SharedRecords::new(Records::empty(&settings(), 1));
    let before = shared.load();
    assert!(before.a.is_empty());
    let old = shared.store(records_of(&svc(
        "default",
        "web",
        "  clusterIP: 10.96.10.20",
    )));
    assert_eq!(old.serial, 1);
    assert_eq!(shared.load().a.len(), 1);
    assert!(
        before.a.is_empty(),
        "a reader's snapshot does not change under it"
    );
}
