//! The A and AAAA records a snapshot should yield, computed from the YAML independently of the agent (a test oracle).
//!
//! Needs only `std` and `serde_yaml`: `xtask bench` compiles this file too (`#[path]`) to build
//! its query file. Rules (issue 2): a ClusterIP service gives `<svc>.<ns>.svc.<zone>.` its IPv4
//! `spec.clusterIPs` (or `spec.clusterIP`); a headless one the ready IPv4 addresses of the
//! EndpointSlices labelled `kubernetes.io/service-name: <svc>` in its namespace, deduplicated and
//! sorted; ExternalName services and headless ones without a ready address give nothing.
//! AAAA (issue 3): the same with the IPv6 entries and `addressType: IPv6` slices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize as _;
use serde_yaml::Value;

/// Lower-case FQDN with a trailing dot -> addresses in ascending order.
pub type ARecords = BTreeMap<String, Vec<Ipv4Addr>>;

/// Computes the A records of `yaml` (multi-document YAML and/or `List`s) for `zone`
/// (e.g. `cluster.local`). Objects that are not Services or EndpointSlices are ignored.
pub fn a_records(yaml: &str, zone: &str) -> Result<ARecords, String> {
    address_records(yaml, zone, "IPv4")
}

/// Lower-case FQDN with a trailing dot -> IPv6 addresses in ascending order.
pub type AaaaRecords = BTreeMap<String, Vec<Ipv6Addr>>;

/// Computes the AAAA records of the service names of `yaml` for `zone`, like [`a_records`].
pub fn aaaa_records(yaml: &str, zone: &str) -> Result<AaaaRecords, String> {
    address_records(yaml, zone, "IPv6")
}

fn address_records<T: FromStr + Ord + Clone>(
    yaml: &str,
    zone: &str,
    address_type: &str,
) -> Result<BTreeMap<String, Vec<T>>, String> {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        if str_at(&value, &["kind"]) == Some("List") {
            if let Some(Value::Sequence(items)) = value.get("items") {
                objects.extend(items.iter().cloned());
            }
        } else if !value.is_null() {
            objects.push(value);
        }
    }
    let mut out = BTreeMap::new();
    for svc in objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("Service"))
    {
        let name = str_at(svc, &["metadata", "name"]).ok_or("a Service has no metadata.name")?;
        let ns = namespace(svc);
        if str_at(svc, &["spec", "type"]) == Some("ExternalName") {
            continue;
        }
        let fqdn = format!("{name}.{ns}.svc.{zone}.").to_ascii_lowercase();
        let mut addrs = BTreeSet::new();
        if str_at(svc, &["spec", "clusterIP"]) == Some("None") {
            for slice in objects.iter().filter(|o| {
                str_at(o, &["kind"]) == Some("EndpointSlice")
                    && namespace(o) == ns
                    && str_at(o, &["metadata", "labels", "kubernetes.io/service-name"])
                        == Some(name)
                    && str_at(o, &["addressType"]) == Some(address_type)
            }) {
                let Some(Value::Sequence(endpoints)) = slice.get("endpoints") else {
                    continue;
                };
                for ep in endpoints {
                    // conditions.ready absent or null counts as ready.
                    let ready = !matches!(
                        ep.get("conditions").and_then(|c| c.get("ready")),
                        Some(Value::Bool(false))
                    );
                    if !ready {
                        continue;
                    }
                    if let Some(Value::Sequence(list)) = ep.get("addresses") {
                        addrs.extend(list.iter().filter_map(|a| a.as_str()?.parse::<T>().ok()));
                    }
                }
            }
        } else {
            match svc.get("spec").and_then(|s| s.get("clusterIPs")) {
                Some(Value::Sequence(list)) if !list.is_empty() => {
                    addrs.extend(list.iter().filter_map(|a| a.as_str()?.parse::<T>().ok()));
                }
                _ => {
                    if let Some(ip) =
                        str_at(svc, &["spec", "clusterIP"]).and_then(|s| s.parse().ok())
                    {
                        addrs.insert(ip);
                    }
                }
            }
        }
        if !addrs.is_empty() {
            out.insert(fqdn, addrs.into_iter().collect());
        }
    }
    Ok(out)
}

/// Whether `service` of `namespace` is headless in `yaml` (to pick test names of each kind).
pub fn is_headless(yaml: &str, fqdn: &str) -> bool {
    let lower = fqdn.to_ascii_lowercase();
    let mut parts = lower.split('.');
    let (Some(svc), Some(ns)) = (parts.next(), parts.next()) else {
        return false;
    };
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| Value::deserialize(d).ok())
        .flat_map(|v| match (str_at(&v, &["kind"]), v.get("items")) {
            (Some("List"), Some(Value::Sequence(items))) => items.clone(),
            _ => vec![v],
        })
        .any(|o| {
            str_at(&o, &["kind"]) == Some("Service")
                && str_at(&o, &["metadata", "name"]) == Some(svc)
                && namespace(&o) == ns
                && str_at(&o, &["spec", "clusterIP"]) == Some("None")
        })
}

fn namespace(o: &Value) -> &str {
    str_at(o, &["metadata", "namespace"]).unwrap_or("default")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ip_headless_and_skipped_services() {
        let yaml = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec: {clusterIP: 10.96.0.20, clusterIPs: [10.96.0.20, "fd00::20"]}
- apiVersion: v1
  kind: Service
  metadata: {name: db}
  spec: {clusterIP: None}
- apiVersion: v1
  kind: Service
  metadata: {name: ext, namespace: default}
  spec: {type: ExternalName, externalName: example.org}
- apiVersion: v1
  kind: Service
  metadata: {name: empty, namespace: default}
  spec: {clusterIP: None}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints:
- addresses: [10.1.0.9]
- addresses: [10.1.0.3]
  conditions: {ready: true}
- addresses: [10.1.0.4]
  conditions: {ready: false}
- addresses: [10.1.0.3]
"#;
        let recs = a_records(yaml, "cluster.local.").expect("parse");
        let want: ARecords = [
            (
                "db.default.svc.cluster.local.".to_string(),
                vec![Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 9)],
            ),
            (
                "web.default.svc.cluster.local.".to_string(),
                vec![Ipv4Addr::new(10, 96, 0, 20)],
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(recs, want);
        assert!(is_headless(yaml, "Db.default.svc.cluster.local."));
        assert!(!is_headless(yaml, "web.default.svc.cluster.local."));
    }
}
