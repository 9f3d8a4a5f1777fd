//! Computes the records of the zone from the cluster objects (the Kubernetes DNS spec 1.1.0 and
//! CoreDNS's `kubernetes` plugin where the spec is silent).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::service::{dashed, Endpoint, Port, ServiceEntry, Subset};
use super::settings::is_reverse;
use super::{Records, Settings, DNS_SCHEMA_VERSION};
use crate::cluster::{Cluster, ObjectKey};
use crate::records::PodMode;
use crate::snapshot::SERVICE_NAME_LABEL;

/// Longest owner name in wire format (RFC 1035).
const MAX_WIRE_NAME: usize = 255;

/// Records for `cluster` at serial `serial`, and a note for each object that could not get one.
///
/// - ClusterIP service: `<svc>.<ns>.svc.<zone>` A/AAAA = `spec.clusterIPs` by family (answered
///   even without endpoints, unless `ignore empty_service`).
/// - Headless service (`clusterIP: None`): A/AAAA of the served endpoints (`conditions.ready`
///   absent or true, every endpoint with `publishNotReadyAddresses`) of every EndpointSlice
///   labelled `kubernetes.io/service-name: <svc>`, de-duplicated; none → no record.
/// - Endpoint names `<label>.<svc>.<ns>.svc.<zone>` for the endpoints of every service
///   (CoreDNS serves them for ClusterIP services too).
/// - SRV `_<port>._<proto>.<svc>...` for named ports, bare `<svc>...` and endpoint names.
/// - ExternalName: CNAME. PTR for ClusterIPs, else endpoint addresses.
/// - `dns-version.<zone>` TXT, `ns.dns.<zone>` A/AAAA (kube-system/kube-dns, else `dns_ips`).
///
/// Addresses are sorted ascending (the answer order).
pub fn build(cluster: &Cluster, settings: &Settings, serial: u32) -> (Records, Vec<String>) {
    let mut b = Builder {
        settings,
        notes: Vec::new(),
        records: Records {
            zone: settings.primary_zone().to_owned(),
            zones: settings.zones.clone(),
            ttl: settings.ttl,
            serial,
            synced: true,
            a: BTreeMap::new(),
            aaaa: BTreeMap::new(),
            services: BTreeMap::new(),
            cname: BTreeMap::new(),
            ptr: BTreeMap::new(),
            txt: BTreeMap::new(),
            namespaces: BTreeSet::new(),
            empty_non_terminals: BTreeSet::new(),
            pods: settings.pods,
            pod_ips: BTreeMap::new(),
            fallthrough: settings.fallthrough.clone(),
        },
    };
    let forward: Vec<String> = settings
        .zones
        .iter()
        .filter(|z| !is_reverse(z))
        .cloned()
        .collect();

    b.records.namespaces = exposed_namespaces(cluster, settings);
    let mut strings = Strings::default();
    let subsets = if settings.noendpoints {
        BTreeMap::new()
    } else {
        subsets_by_service(cluster, settings, &mut strings)
    };

    // Reverse records: ClusterIPs first (they win), endpoints for addresses not taken.
    let mut ptr_svc: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut ptr_ep: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let primary = b.records.zone.clone();

    for (key, svc) in &cluster.services {
        if !b.records.namespaces.contains(&key.namespace) {
            continue;
        }
        if let Some(sel) = &settings.labels {
            if !sel.matches(svc.metadata.labels.as_ref()) {
                continue;
            }
        }
        let kind = service_kind(svc, &mut strings);
        let subsets = subsets.get(key).map(Vec::as_slice).unwrap_or_default();
        if let Kind::ClusterIp(ips, _) = &kind {
            let has_addresses = subsets.iter().any(|s| !s.endpoints.is_empty());
            if settings.ignore_empty_service && !has_addresses {
                continue;
            }
            for ip in ips {
                ptr_svc
                    .entry(*ip)
                    .or_insert_with(|| format!("{}.{}.svc.{primary}", key.name, key.namespace));
            }
        }
        if !matches!(kind, Kind::ExternalName(_)) {
            for s in subsets {
                for ep in &s.endpoints {
                    let target = format!(
                        "{}.{}.{}.svc.{primary}",
                        ep.label(),
                        key.name,
                        key.namespace
                    );
                    let list = ptr_ep.entry(ep.ip).or_default();
                    if !list.contains(&target) {
                        list.push(target);
                    }
                }
            }
        }
        for zone in &forward {
            b.service(key, &kind, subsets, zone);
        }
        let entry = match &kind {
            Kind::ClusterIp(ips, ports) => Some(ServiceEntry {
                cluster_ips: Some(ips.clone()),
                ports: ports.clone(),
                subsets: subsets.to_vec(),
            }),
            Kind::Headless => Some(ServiceEntry {
                cluster_ips: None,
                ports: Vec::new(),
                subsets: subsets.to_vec(),
            }),
            Kind::Ignored | Kind::ExternalName(_) => None,
        };
        if let Some(entry) = entry {
            let short = format!("{}.{}", key.name, key.namespace).to_ascii_lowercase();
            b.records.services.insert(short, entry);
        }
    }
    for (ip, target) in ptr_svc {
        ptr_ep.remove(&ip);
        b.records.ptr.insert(ip, vec![target]);
    }
    for (ip, targets) in ptr_ep {
        b.records.ptr.insert(ip, targets);
    }

    if settings.pods == PodMode::Verified {
        for (key, pod) in &cluster.pods {
            if !b.records.namespaces.contains(&key.namespace)
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let Some(status) = &pod.status else { continue };
            let ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref());
            for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
                b.records
                    .pod_ips
                    .entry(key.namespace.clone())
                    .or_default()
                    .insert(ip);
            }
        }
    }

    let dns_ips = dns_service_ips(cluster).unwrap_or_else(|| settings.dns_ips.clone());
    for zone in &forward {
        b.records.txt.insert(
            format!("dns-version.{zone}"),
            vec![DNS_SCHEMA_VERSION.to_owned()],
        );
        let ns = format!("ns.dns.{zone}");
        b.add_addresses(&ns, dns_ips.iter().copied());
        let ents = &mut b.records.empty_non_terminals;
        ents.insert(format!("dns.{zone}"));
        ents.insert(format!("svc.{zone}"));
        ents.insert(format!("pod.{zone}"));
        for ns in &b.records.namespaces {
            ents.insert(format!("{ns}.svc.{zone}"));
            if settings.pods != PodMode::Disabled {
                ents.insert(format!("{ns}.pod.{zone}"));
            }
        }
    }
    for set in b.records.a.values_mut() {
        set.1.sort_unstable();
        set.1.dedup();
    }
    for set in b.records.aaaa.values_mut() {
        set.1.sort_unstable();
        set.1.dedup();
    }
    (b.records, b.notes)
}

struct Builder<'a> {
    settings: &'a Settings,
    notes: Vec<String>,
    records: Records,
}

impl Builder<'_> {
    /// Whether `name` fits in a DNS message; notes it when not.
    fn fits(&mut self, what: &dyn std::fmt::Display, name: &str) -> bool {
        if name.len() + 1 > MAX_WIRE_NAME {
            self.notes.push(format!(
                "{what}: {name} is longer than 255 bytes, no record"
            ));
            return false;
        }
        true
    }

    fn add_addresses(&mut self, name: &str, ips: impl IntoIterator<Item = IpAddr>) {
        let ttl = self.settings.ttl;
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => self
                    .records
                    .a
                    .entry(name.to_owned())
                    .or_insert((ttl, Vec::new()))
                    .1
                    .push(v4),
                IpAddr::V6(v6) => self
                    .records
                    .aaaa
                    .entry(name.to_owned())
                    .or_insert((ttl, Vec::new()))
                    .1
                    .push(v6),
            }
        }
    }

    /// The A/AAAA and CNAME records of one service in `zone`: its own name, and the names of
    /// its endpoints (CoreDNS serves those for ClusterIP services too).
    fn service(&mut self, key: &ObjectKey, kind: &Kind, subsets: &[Subset], zone: &str) {
        let name = format!("{}.{}.svc.{zone}", key.name, key.namespace).to_ascii_lowercase();
        let what = format!("Service {key}");
        if !self.fits(&what, &name) {
            return;
        }
        let headless = match kind {
            Kind::Ignored => return,
            Kind::ExternalName(target) => {
                self.records.cname.insert(name, target.clone());
                return;
            }
            Kind::ClusterIp(ips, _) => {
                self.add_addresses(&name, ips.iter().copied());
                false
            }
            Kind::Headless => true,
        };
        for s in subsets {
            for ep in &s.endpoints {
                let ep_name = format!("{}.{name}", ep.label());
                if !self.fits(&what, &ep_name) {
                    continue;
                }
                self.add_addresses(&ep_name, [ep.ip]);
                if headless {
                    self.add_addresses(&name, [ep.ip]);
                }
            }
        }
    }
}

enum Kind {
    /// No address allocated (or malformed).
    Ignored,
    ClusterIp(Vec<IpAddr>, Vec<Port>),
    Headless,
    /// Lower-case FQDN target.
    ExternalName(String),
}

fn service_kind(svc: &Service, strings: &mut Strings) -> Kind {
    let Some(spec) = &svc.spec else {
        return Kind::Ignored;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        let Some(target) = spec.external_name.as_deref() else {
            return Kind::Ignored;
        };
        let target = target.trim_end_matches('.');
        // An IP is not a name: CoreDNS serves nothing for it.
        if target.is_empty() || target.parse::<IpAddr>().is_ok() {
            return Kind::Ignored;
        }
        return Kind::ExternalName(format!("{}.", target.to_ascii_lowercase()));
    }
    let cluster_ips: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    if cluster_ips.first() == Some(&"None") {
        return Kind::Headless;
    }
    let ips: Vec<IpAddr> = cluster_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        return Kind::Ignored;
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: strings.get(p.name.as_deref().unwrap_or_default()),
            protocol: strings.get(p.protocol.as_deref().unwrap_or("TCP")),
            port: p.port,
        })
        .collect();
    Kind::ClusterIp(ips, ports)
}

/// Namespaces that exist (Namespace objects; without `namespace_labels` also namespaces
/// holding Services) and are allowed by `namespaces` / `namespace_labels`.
fn exposed_namespaces(cluster: &Cluster, settings: &Settings) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, ns) in &cluster.namespaces {
        if let Some(sel) = &settings.namespace_labels {
            if !sel.matches(ns.metadata.labels.as_ref()) {
                continue;
            }
        }
        out.insert(name.clone());
    }
    if settings.namespace_labels.is_none() {
        out.extend(cluster.services.keys().map(|k| k.namespace.clone()));
    }
    out.retain(|ns| settings.namespace_allowed(ns));
    out
}

/// The served endpoints and ports of every slice, by (namespace, service name).
fn subsets_by_service(
    cluster: &Cluster,
    settings: &Settings,
    strings: &mut Strings,
) -> BTreeMap<ObjectKey, Vec<Subset>> {
    let mut by_service: BTreeMap<ObjectKey, Vec<Subset>> = BTreeMap::new();
    for (key, slice) in &cluster.endpoint_slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
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
        let svc_key = ObjectKey::new(key.namespace.clone(), service.clone());
        let publish_not_ready = cluster
            .services
            .get(&svc_key)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        by_service.entry(svc_key).or_default().push(subset(
            slice,
            publish_not_ready,
            settings.endpoint_pod_names,
            strings,
        ));
    }
    by_service
}

fn subset(
    slice: &EndpointSlice,
    publish_not_ready: bool,
    pod_names: bool,
    strings: &mut Strings,
) -> Subset {
    let mut endpoints = Vec::new();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        if !ready && !publish_not_ready {
            continue;
        }
        let pod = ep
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
            .and_then(|r| r.name.clone());
        for addr in &ep.addresses {
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            let name: Option<Box<str>> = match (&ep.hostname, &pod) {
                (Some(h), _) if !h.is_empty() => Some(h.to_ascii_lowercase().into()),
                (_, Some(p)) if pod_names && !p.is_empty() => Some(p.to_ascii_lowercase().into()),
                _ if dashed(addr) != dashed(&ip.to_string()) => Some(dashed(addr).into()),
                _ => None,
            };
            if !endpoints
                .iter()
                .any(|e: &Endpoint| e.ip == ip && e.name == name)
            {
                endpoints.push(Endpoint { ip, name });
            }
        }
    }
    let mut ports: Vec<Port> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: strings.get(p.name.as_deref().unwrap_or_default()),
            protocol: strings.get(p.protocol.as_deref().unwrap_or("TCP")),
            port: p.port.unwrap_or(-1),
        })
        .collect();
    if ports.is_empty() {
        ports.push(Port {
            name: strings.get(""),
            protocol: strings.get(""),
            port: -1,
        });
    }
    Subset { endpoints, ports }
}

/// Shares equal strings (port names and protocols) between the services that repeat them.
#[derive(Default)]
struct Strings(HashMap<Box<str>, Arc<str>>);

impl Strings {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(s.into(), Arc::clone(&shared));
        shared
    }
}

/// `kube-system/kube-dns`'s cluster IPs, when that Service exists with some.
fn dns_service_ips(cluster: &Cluster) -> Option<Vec<IpAddr>> {
    let svc = cluster
        .services
        .get(&ObjectKey::new("kube-system", "kube-dns"))?;
    match service_kind(svc, &mut Strings::default()) {
        Kind::ClusterIp(ips, _) if !ips.is_empty() => Some(ips),
        _ => None,
    }
}
