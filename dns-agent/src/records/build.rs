//! Computes the records of the zone from the cluster objects (the Kubernetes DNS spec, A part).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

use super::{Records, Settings};
use crate::cluster::{Cluster, ObjectKey};
use crate::snapshot::SERVICE_NAME_LABEL;

/// Longest owner name in wire format (RFC 1035).
const MAX_WIRE_NAME: usize = 255;

/// Records for `cluster` at serial `serial`, and a note for each object that could not get one.
///
/// - ClusterIP service: `<svc>.<ns>.svc.<zone>` A = the IPv4 entries of `spec.clusterIPs`
///   (or `spec.clusterIP` when that list is empty).
/// - Headless service (`clusterIP: None`): A = the IPv4 addresses of the ready endpoints
///   (`conditions.ready` absent counts as ready) of every EndpointSlice labelled
///   `kubernetes.io/service-name: <svc>` in its namespace; no ready endpoint, no record.
/// - ExternalName services are not served yet.
///
/// Addresses are deduplicated and sorted ascending (the answer order).
pub fn build(cluster: &Cluster, settings: &Settings, serial: u32) -> (Records, Vec<String>) {
    let mut notes = Vec::new();
    let headless = ready_ipv4_by_service(cluster);

    let mut a = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = cluster.namespaces.keys().cloned().collect();
    for (key, svc) in &cluster.services {
        namespaces.insert(key.namespace.clone());
        let addrs = match service_addresses(svc) {
            ServiceAddresses::Ignored => continue,
            ServiceAddresses::ClusterIp(addrs) => addrs,
            ServiceAddresses::Headless => headless.get(key).cloned().unwrap_or_default(),
        };
        if addrs.is_empty() {
            continue;
        }
        let name =
            format!("{}.{}.svc.{}", key.name, key.namespace, settings.zone).to_ascii_lowercase();
        if name.len() + 1 > MAX_WIRE_NAME {
            notes.push(format!(
                "Service {key}: {name} is longer than 255 bytes, no record"
            ));
            continue;
        }
        a.insert(name, (settings.ttl, addrs.into_iter().collect()));
    }

    let svc = format!("svc.{}", settings.zone);
    let mut empty_non_terminals = BTreeSet::new();
    for ns in &namespaces {
        empty_non_terminals.insert(format!("{ns}.{svc}").to_ascii_lowercase());
    }
    empty_non_terminals.insert(svc);

    let records = Records {
        zone: settings.zone.clone(),
        ttl: settings.ttl,
        serial,
        a,
        namespaces,
        empty_non_terminals,
    };
    (records, notes)
}

enum ServiceAddresses {
    /// ExternalName, or no address allocated.
    Ignored,
    ClusterIp(BTreeSet<Ipv4Addr>),
    Headless,
}

fn service_addresses(svc: &Service) -> ServiceAddresses {
    let Some(spec) = &svc.spec else {
        return ServiceAddresses::Ignored;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return ServiceAddresses::Ignored;
    }
    let cluster_ips: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    if cluster_ips.first() == Some(&"None") {
        return ServiceAddresses::Headless;
    }
    ServiceAddresses::ClusterIp(
        cluster_ips
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
    )
}

/// Ready IPv4 endpoint addresses per (namespace, service name), over all linked slices.
fn ready_ipv4_by_service(cluster: &Cluster) -> BTreeMap<ObjectKey, BTreeSet<Ipv4Addr>> {
    let mut by_service: BTreeMap<ObjectKey, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for (key, slice) in &cluster.endpoint_slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ready = slice
            .endpoints
            .iter()
            .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|ep| ep.addresses.iter())
            .filter_map(|addr| addr.parse::<Ipv4Addr>().ok());
        by_service
            .entry(ObjectKey::new(key.namespace.clone(), service.clone()))
            .or_default()
            .extend(ready);
    }
    by_service
}
