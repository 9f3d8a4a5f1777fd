//! Table-driven tests of record computation and name classification.

use super::*;
use crate::snapshot;

mod model;
mod tree;

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
        .a_map()
        .into_iter()
        .filter(|(n, _)| n.matches('.').count() == 5 && n.ends_with(".svc.cluster.local."))
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
    let db = &records.a_map()["db.demo.svc.cluster.local."].1;
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
    assert!(shared.load().services.is_empty());
    let old = shared.store(records_of(&svc(
        "default",
        "web",
        "  clusterIP: 10.96.10.20",
    )));
    assert_eq!(old.serial, 1);
    assert_eq!(shared.load().a_map().len(), 1);
}

mod incremental {
    //! Records changed object by object equal records built from scratch.

    use std::net::IpAddr;

    use super::*;
    use crate::cluster::{
        intern, Cluster, EndpointNames, EndpointObj, Labels, NamespaceObj, ObjectKey, PodObj,
        ServiceObj, Shape, SliceObj,
    };

    /// A small deterministic generator (no dependency for a test).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    const NAMESPACES: [&str; 3] = ["a", "b", "kube-system"];
    const SERVICES: [&str; 4] = ["web", "db", "kube-dns", "x"];

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Labels::from_map(Some(&map))
    }

    fn ip(rng: &mut Lcg, v6: bool) -> IpAddr {
        // Few distinct addresses, so that services share them (PTR owners pile up).
        let n = rng.next(6) as u8;
        if v6 {
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)])
        } else {
            IpAddr::from([10, 0, 0, n])
        }
    }

    fn service(rng: &mut Lcg) -> ServiceObj {
        let shape = match rng.next(5) {
            0 => Shape::Headless,
            1 => Shape::ExternalName(format!("t{}.example.", rng.next(3)).into()),
            2 => Shape::Ignored,
            _ => Shape::ClusterIp {
                ips: vec![ip(rng, false), ip(rng, true)].into(),
                ports: vec![crate::records::Port {
                    name: intern("http"),
                    protocol: intern("TCP"),
                    port: 80,
                }]
                .into(),
            },
        };
        ServiceObj {
            labels: if rng.next(2) == 0 {
                labels(&[("app", "web")])
            } else {
                Labels::default()
            },
            shape,
            publish_not_ready: rng.next(3) == 0,
        }
    }

    fn slice(rng: &mut Lcg) -> SliceObj {
        let n = rng.next(4);
        let endpoints = (0..n)
            .map(|_| EndpointObj {
                ip: {
                    let v6 = rng.next(4) == 0;
                    ip(rng, v6)
                },
                ready: rng.next(3) != 0,
                names: EndpointNames {
                    hostname: (rng.next(3) == 0).then(|| format!("h{}", rng.next(2)).into()),
                    pod: (rng.next(2) == 0).then(|| format!("pod-{}", rng.next(3)).into()),
                    written: None,
                }
                .boxed(),
            })
            .collect();
        SliceObj {
            service: Some(SERVICES[rng.next(4) as usize].into()),
            endpoints,
            ports: vec![crate::records::Port {
                name: intern("http"),
                protocol: intern("TCP"),
                port: 8080,
            }]
            .into(),
        }
    }

    /// One random change to `cluster`, noted in `changes` as the watchers note them.
    fn mutate(rng: &mut Lcg, cluster: &mut Cluster, changes: &mut Changes) {
        let ns = NAMESPACES[rng.next(3) as usize];
        match rng.next(8) {
            0 => {
                if rng.next(2) == 0 {
                    let obj = NamespaceObj {
                        labels: labels(&[("dns", if rng.next(2) == 0 { "on" } else { "off" })]),
                    };
                    cluster.insert_namespace(ns.to_owned(), obj);
                } else {
                    cluster.remove_namespace(ns);
                }
                changes.namespaces.insert(ns.to_owned());
            }
            1..=3 => {
                let key = ObjectKey::new(ns, SERVICES[rng.next(4) as usize]);
                if rng.next(4) == 0 {
                    cluster.remove_service(&key);
                } else {
                    let svc = service(rng);
                    cluster.insert_service(key.clone(), svc);
                }
                changes.services.insert(key);
            }
            4..=6 => {
                let key = ObjectKey::new(ns, format!("s{}", rng.next(5)));
                let old = if rng.next(4) == 0 {
                    cluster.remove_slice(&key)
                } else {
                    let new = slice(rng);
                    if let Some(svc) = &new.service {
                        changes.services.insert(ObjectKey::new(ns, &**svc));
                    }
                    cluster.insert_slice(key.clone(), new)
                };
                if let Some(svc) = old.and_then(|o| o.service) {
                    changes.services.insert(ObjectKey::new(ns, &*svc));
                }
            }
            _ => {
                let key = ObjectKey::new(ns, format!("p{}", rng.next(3)));
                if rng.next(3) == 0 {
                    cluster.remove_pod(&key);
                } else {
                    let pod = PodObj {
                        ips: vec![ip(rng, false)].into(),
                    };
                    cluster.insert_pod(key, pod);
                }
                changes.pods.insert(ns.to_owned());
            }
        }
    }

    fn check(settings: &Settings, seed: u64) {
        let mut rng = Lcg(seed);
        let mut cluster = Cluster::default();
        let (mut records, _) = build(&cluster, settings, 1);
        let mut a_count = records.a_count();
        for step in 0..400 {
            let mut changes = Changes::default();
            for _ in 0..=rng.next(3) {
                mutate(&mut rng, &mut cluster, &mut changes);
            }
            let before_a = records.a_map();
            let before_aaaa = records.aaaa_map();
            let applied = records.apply(&cluster, settings, &changes);
            let (fresh, _) = build(&cluster, settings, 1);
            assert!(
                records.same_content(&fresh),
                "seed {seed} step {step}: after {changes:?}\nincremental {records:#?}\nfull {fresh:#?}"
            );
            // The names handed to the kernel cover every A/AAAA difference.
            let (after_a, after_aaaa) = (fresh.a_map(), fresh.aaaa_map());
            for name in before_a.keys().chain(after_a.keys()) {
                if before_a.get(name) != after_a.get(name) {
                    assert!(
                        applied.names.contains(name),
                        "seed {seed} step {step}: {name}"
                    );
                }
            }
            for name in before_aaaa.keys().chain(after_aaaa.keys()) {
                if before_aaaa.get(name) != after_aaaa.get(name) {
                    assert!(
                        applied.names.contains(name),
                        "seed {seed} step {step}: {name}"
                    );
                }
            }
            if before_a != after_a || before_aaaa != after_aaaa {
                assert!(applied.changed, "seed {seed} step {step}");
            }
            a_count = a_count.saturating_add_signed(applied.a_delta);
            assert_eq!(a_count, fresh.a_count(), "seed {seed} step {step}");
        }
    }

    #[test]
    fn equal_to_a_full_build_under_random_changes() {
        let mut settings = settings();
        settings.dns_ips = vec!["10.96.0.10".parse().expect("ip")];
        for seed in 1..=5 {
            check(&settings, seed);
        }
    }

    #[test]
    fn equal_to_a_full_build_with_every_option() {
        let mut s = Settings::new("cluster.local", 30);
        s.zones.push("example.org.".into());
        s.zones.push("in-addr.arpa.".into());
        s.pods = PodMode::Verified;
        s.endpoint_pod_names = true;
        s.ignore_empty_service = true;
        s.labels = Some("app=web".parse().expect("selector"));
        check(&s, 11);
        let mut s = settings();
        s.namespace_labels = Some("dns=on".parse().expect("selector"));
        s.namespaces = ["a".to_owned(), "kube-system".to_owned()].into();
        check(&s, 12);
        let mut s = settings();
        s.noendpoints = true;
        check(&s, 13);
    }
}
