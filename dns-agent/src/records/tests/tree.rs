//! The kernel's tree of the zone (`Records::kernel_tree`): what it proves is what userspace
//! answers, and a node computed alone is the node of the whole tree.

use std::collections::BTreeMap;

use dns_common::tree::{FLAG_COMPLETE, FLAG_EMPTY, MAX_DEPTH};

use super::super::*;
use crate::snapshot;

const ZONE_FIXTURE: &str = include_str!("../../../tests/fixtures/zone.yaml");

fn fixture(settings: &Settings) -> Records {
    let loaded = snapshot::parse("zone.yaml", ZONE_FIXTURE).unwrap_or_else(|e| panic!("{e}"));
    build(&loaded.cluster, settings, 1_700_000_000).0
}

/// What the kernel's walk (dns-ebpf `tree::negative`) concludes for `name`, lower case:
/// `Some(true)` NXDOMAIN, `Some(false)` NODATA, `None` nothing proven.
fn walk(records: &Records, tree: &BTreeMap<String, u32>, name: &str) -> Option<bool> {
    if !records.negative_complete() || !in_zone(name, &records.zone) {
        return None;
    }
    let prefix = &name[..name.len() - records.zone.len()];
    let labels: Vec<&str> = prefix.split_terminator('.').collect();
    if labels.is_empty() {
        return records.apex_empty().then_some(false);
    }
    for depth in 1..=MAX_DEPTH.min(labels.len()) {
        let ancestor = labels[labels.len() - depth..].join(".") + "." + &records.zone;
        match tree.get(&ancestor) {
            None => return Some(true),
            Some(flags) if depth == labels.len() => {
                return (flags & FLAG_EMPTY != 0).then_some(false)
            }
            Some(flags) if flags & FLAG_COMPLETE == 0 => return None,
            Some(_) => {}
        }
    }
    None
}

/// Names to ask: every name the records know, their parents and children, search-path
/// expansions of them and of external names, made-up names at every depth.
fn names(records: &Records) -> Vec<String> {
    let zone = &records.zone;
    let mut known: Vec<String> = records
        .a_map()
        .into_keys()
        .chain(records.aaaa_map().into_keys())
        .chain(records.empty_non_terminals.iter().cloned())
        .chain(records.txt.keys().cloned())
        .chain(records.cname.keys().cloned())
        .chain(records.services.keys().map(|s| format!("{s}.svc.{zone}")))
        .collect();
    known.push(zone.clone());
    let mut out = Vec::new();
    for name in &known {
        out.push(name.clone());
        out.push(format!("nosuch.{name}"));
        out.push(format!("a.b.{name}"));
        out.push(format!("_http._tcp.{name}"));
        if let Some((_, parent)) = name.split_once('.') {
            out.push(parent.to_owned());
            out.push(format!("nosuch.{parent}"));
        }
        for search in ["default.svc.", "svc.", ""] {
            out.push(format!("{name}{search}{zone}"));
        }
    }
    for external in ["www.example.org.", "a.b.c.d.e.f.", "x."] {
        for ns in records.namespaces.iter().map(|n| format!("{n}.svc.")) {
            out.push(format!("{external}{ns}{zone}"));
        }
        for search in ["svc.", "", "pod.", "dns.", "hostmaster.", "default.pod."] {
            out.push(format!("{external}{search}{zone}"));
        }
    }
    out.sort();
    out.dedup();
    out.retain(|n| n.len() < 250);
    out
}

fn check_sound(records: &Records) -> (usize, usize) {
    let tree = records.kernel_tree();
    let (mut nx, mut nodata) = (0, 0);
    for name in names(records) {
        let Some(nxdomain) = walk(records, &tree, &name) else {
            continue;
        };
        for qtype in [qtype::A, qtype::AAAA] {
            let Outcome::Answer(r) = records.resolve(&name, qtype) else {
                panic!("{name} {qtype}: the tree proves an answer, userspace has none");
            };
            if nxdomain {
                assert_eq!(
                    r.rcode,
                    Rcode::NxDomain,
                    "{name} {qtype}: tree says NXDOMAIN"
                );
            } else {
                assert_eq!(r.rcode, Rcode::NoError, "{name} {qtype}: tree says NODATA");
                assert!(
                    r.answers.is_empty(),
                    "{name} {qtype}: tree says NODATA: {r:?}"
                );
            }
        }
        if nxdomain {
            nx += 1;
        } else {
            nodata += 1;
        }
    }
    (nx, nodata)
}

#[test]
fn the_tree_proves_only_what_userspace_answers() {
    for pods in [PodMode::Disabled, PodMode::Insecure, PodMode::Verified] {
        let settings = Settings {
            pods,
            ..Settings::new("cluster.local", 5)
        };
        let records = fixture(&settings);
        assert!(
            records.negative_complete(),
            "kubeadm's block may prove NXDOMAIN"
        );
        let (nx, nodata) = check_sound(&records);
        assert!(
            nx > 50 && nodata > 5,
            "{pods:?}: {nx} NXDOMAIN, {nodata} NODATA proven"
        );
    }
}

#[test]
fn nothing_is_proven_where_userspace_would_not_answer_nxdomain() {
    let fallthrough_all = Settings {
        fallthrough: Some(Vec::new()),
        ..Settings::new("cluster.local", 5)
    };
    let fallthrough_zone = Settings {
        fallthrough: Some(vec!["svc.cluster.local.".to_owned()]),
        ..Settings::new("cluster.local", 5)
    };
    let mut nested = Settings::new("cluster.local", 5);
    nested.zones.push("inner.cluster.local.".to_owned());
    for (what, settings) in [
        ("fallthrough", fallthrough_all),
        ("fallthrough below the zone", fallthrough_zone),
        ("a zone below the zone", nested),
    ] {
        assert!(!fixture(&settings).negative_complete(), "{what}");
    }
    let mut unsynced = fixture(&Settings::new("cluster.local", 5));
    unsynced.synced = false;
    assert!(
        !unsynced.negative_complete(),
        "before the first complete list"
    );
    let deep = fixture(&Settings::new("a.b.c.d.e.f", 5));
    assert!(
        !deep.negative_complete(),
        "more zone labels than the kernel keeps"
    );
}

#[test]
fn a_node_computed_alone_is_the_node_of_the_whole_tree() {
    let records = fixture(&Settings::new("cluster.local", 5));
    let tree = records.kernel_tree();
    assert!(tree.len() > 10, "{tree:?}");
    for (name, flags) in &tree {
        assert_eq!(records.kernel_tree_node(name), Some(*flags), "{name}");
    }
    for name in names(&records) {
        for node in records.tree_nodes_of(&name) {
            assert_eq!(
                records.kernel_tree_node(node),
                tree.get(node).copied(),
                "{node} (above {name})"
            );
        }
    }
    // The fixed nodes: `pod.` answers NODATA but is never complete; `dns.` and `hostmaster.`
    // neither.
    let pod = tree.get("pod.cluster.local.").copied();
    assert_eq!(pod, Some(FLAG_EMPTY), "pod.cluster.local.");
    for fixed in ["dns.cluster.local.", "hostmaster.cluster.local."] {
        assert_eq!(tree.get(fixed).copied(), Some(0), "{fixed}");
    }
    assert_eq!(
        tree.get("svc.cluster.local.").copied(),
        Some(FLAG_COMPLETE | FLAG_EMPTY),
        "svc.cluster.local."
    );
}
