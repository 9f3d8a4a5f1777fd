//! Computes the records of the zone from the cluster objects (the Kubernetes DNS spec 1.1.0 and
//! CoreDNS's `kubernetes` plugin where the spec is silent), whole or one service at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::addresses::{by_family, fits};
use super::service::{Endpoint, ServiceEntry, Subset};
use super::{PtrOwner, Records, Settings, DNS_SCHEMA_VERSION};
use crate::cluster::{Cluster, ObjectKey, ServiceObj, Shape, SliceObj};
use crate::records::PodMode;

/// What changed in a cluster since the records were last computed from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Recompute everything (a complete list replaced a kind).
    pub full: bool,
    /// Services whose object or EndpointSlices changed.
    pub services: BTreeSet<ObjectKey>,
    /// Namespaces whose object changed (or that may have gained or lost their last service).
    pub namespaces: BTreeSet<String>,
    /// Namespaces whose pods changed.
    pub pods: BTreeSet<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.full && self.services.is_empty() && self.namespaces.is_empty() && self.pods.is_empty()
    }

    /// Adds `other`'s changes to these.
    pub fn merge(&mut self, other: Changes) {
        self.full |= other.full;
        self.services.extend(other.services);
        self.namespaces.extend(other.namespaces);
        self.pods.extend(other.pods);
    }
}

/// What applying changes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether any answer may differ (the serial moves only then).
    pub changed: bool,
    /// Names whose A/AAAA records may have changed: what the kernel maps must look at again.
    pub names: BTreeSet<String>,
    /// Objects that could not get a record (too long a name), one line each.
    pub notes: Vec<String>,
    /// Change in the number of names with A records.
    pub a_delta: isize,
}

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
    let mut records = Records {
        zone: settings.primary_zone().to_owned(),
        zones: settings.zones.clone(),
        ttl: settings.ttl,
        serial,
        synced: true,
        a: BTreeMap::new(),
        aaaa: BTreeMap::new(),
        services: HashMap::new(),
        cname: BTreeMap::new(),
        ptr: BTreeMap::new(),
        txt: BTreeMap::new(),
        namespaces: BTreeSet::new(),
        empty_non_terminals: BTreeSet::new(),
        pods: settings.pods,
        pod_ips: BTreeMap::new(),
        fallthrough: settings.fallthrough.clone(),
    };
    let forward: Vec<String> = records.forward_zones().map(str::to_owned).collect();
    for zone in &forward {
        records.txt.insert(
            format!("dns-version.{zone}"),
            vec![DNS_SCHEMA_VERSION.to_owned()],
        );
        let ents = &mut records.empty_non_terminals;
        ents.insert(format!("dns.{zone}"));
        ents.insert(format!("svc.{zone}"));
        ents.insert(format!("pod.{zone}"));
    }
    // Namespaces, then every service in one pass; the PTR owners are sorted once and the map
    // built in bulk (dense nodes: a map built insert by insert is half empty).
    let candidates: BTreeSet<&str> = cluster
        .namespaces
        .keys()
        .map(String::as_str)
        .chain(cluster.services.keys().map(|k| k.namespace.as_str()))
        .collect();
    for ns in candidates {
        if exposed(cluster, settings, ns) {
            records.set_exposed(ns, true, settings);
        }
    }
    let mut notes = Vec::new();
    let mut services = HashMap::with_capacity(cluster.services.len());
    let mut owners: Vec<(IpAddr, PtrOwner)> = Vec::new();
    let slices = cluster.slices_by_service();
    for (key, svc) in &cluster.services {
        if !served(&records, settings, key, svc) {
            continue;
        }
        let short = short_name(key);
        if let Shape::ExternalName(target) = &svc.shape {
            for zone in &forward {
                let name = format!("{short}.svc.{zone}");
                if fits(&name) {
                    records.cname.insert(name, target.to_string());
                }
            }
            continue;
        }
        let of = slices
            .get(&(key.namespace.as_str(), key.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(entry) = service_entry(of.iter().copied(), settings, svc) {
            notes.extend(length_notes(key, &short, &entry, &forward));
            let short: Arc<str> = short.into();
            owners.extend(ptr_owners(&short, &entry));
            services.insert(short, entry);
        }
    }
    records.services = services;
    owners.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.order().cmp(&y.order())));
    let mut ptr: Vec<(IpAddr, Box<[PtrOwner]>)> = Vec::new();
    let mut owners = owners.into_iter().peekable();
    while let Some((ip, first)) = owners.next() {
        let mut list = vec![first];
        while let Some((_, o)) = owners.next_if(|(next, _)| *next == ip) {
            list.push(o);
        }
        ptr.push((ip, list.into_boxed_slice()));
    }
    records.ptr = ptr.into_iter().collect();
    let mut applied = Applied::default();
    records.update_dns_ips(cluster, settings, &mut applied);
    if settings.pods == PodMode::Verified {
        let namespaces: Vec<String> = records.namespaces.iter().cloned().collect();
        for ns in namespaces {
            records.update_pods(cluster, &ns, &mut applied);
        }
    }
    (records, notes)
}

/// `<svc>.<ns>`, lower-case: how [`Records::services`] keys a service.
fn short_name(key: &ObjectKey) -> String {
    format!("{}.{}", key.name, key.namespace).to_ascii_lowercase()
}

/// Whether `svc` is served: its namespace is exposed and it matches the `labels` selector.
fn served(records: &Records, settings: &Settings, key: &ObjectKey, svc: &ServiceObj) -> bool {
    records.namespaces.contains(&key.namespace)
        && settings
            .labels
            .as_ref()
            .is_none_or(|sel| sel.matches(&svc.labels))
}

/// A note for each forward zone where the service's name, or one of its endpoint names, is
/// too long for DNS (those names get no record).
fn length_notes(
    key: &ObjectKey,
    short: &str,
    entry: &ServiceEntry,
    forward: &[String],
) -> Vec<String> {
    let longest_label = entry
        .endpoints()
        .map(|e| e.label().len())
        .max()
        .unwrap_or(0);
    let mut notes = Vec::new();
    for zone in forward {
        let fqdn = format!("{short}.svc.{zone}");
        if !fits(&fqdn) {
            notes.push(format!(
                "Service {key}: {fqdn} is longer than 255 bytes, no record"
            ));
        } else if longest_label > 0
            && fqdn.len() + longest_label + 1 >= super::addresses::MAX_WIRE_NAME
        {
            notes.push(format!(
                "Service {key}: an endpoint name below {fqdn} is longer than 255 bytes, no record"
            ));
        }
    }
    notes
}

/// The PTR owners of a service entry: its cluster IPs, then its endpoints (de-duplicated).
fn ptr_owners(short: &Arc<str>, entry: &ServiceEntry) -> Vec<(IpAddr, PtrOwner)> {
    let mut owners: Vec<(IpAddr, PtrOwner)> = Vec::new();
    for ip in entry.cluster_ips.iter().flat_map(|ips| ips.iter()) {
        owners.push((
            *ip,
            PtrOwner {
                service: Arc::clone(short),
                cluster_ip: true,
                label: None,
            },
        ));
    }
    for ep in entry.endpoints() {
        let owner = PtrOwner {
            service: Arc::clone(short),
            cluster_ip: false,
            label: ep.name.clone(),
        };
        if !owners.iter().any(|(ip, o)| *ip == ep.ip && *o == owner) {
            owners.push((ep.ip, owner));
        }
    }
    owners
}

impl Records {
    /// Brings the records up to date with `cluster` after `changes`, touching only what they
    /// name (and the services of a namespace that appeared or went away).
    pub fn apply(&mut self, cluster: &Cluster, settings: &Settings, changes: &Changes) -> Applied {
        let mut out = Applied::default();
        let mut services = changes.services.clone();
        let mut pods = changes.pods.clone();
        let namespaces: BTreeSet<&str> = changes
            .namespaces
            .iter()
            .map(String::as_str)
            .chain(changes.services.iter().map(|k| k.namespace.as_str()))
            .collect();
        for ns in namespaces {
            let exposed = exposed(cluster, settings, ns);
            if exposed == self.namespaces.contains(ns) {
                continue;
            }
            out.changed = true;
            self.set_exposed(ns, exposed, settings);
            services.extend(cluster.services_in(ns).map(|(k, _)| k.clone()));
            // Entries of services already gone from the cluster but still served.
            let suffix = format!(".{ns}");
            services.extend(
                self.services
                    .keys()
                    .filter_map(|short| short.strip_suffix(suffix.as_str()))
                    .filter(|svc| !svc.contains('.'))
                    .map(|svc| ObjectKey::new(ns, svc)),
            );
            pods.insert(ns.to_owned());
        }
        for key in &services {
            self.update_service(cluster, settings, key, &mut out);
        }
        if changes.full || services.contains(&ObjectKey::new("kube-system", "kube-dns")) {
            self.update_dns_ips(cluster, settings, &mut out);
        }
        if settings.pods == PodMode::Verified {
            let all: Vec<String>;
            let pods: &BTreeSet<String> = if changes.full {
                all = self.namespaces.iter().cloned().collect();
                &all.into_iter().chain(pods.iter().cloned()).collect()
            } else {
                &pods
            };
            for ns in pods {
                self.update_pods(cluster, ns, &mut out);
            }
        }
        out
    }

    /// Serves namespace `ns` (its `<ns>.svc` and `<ns>.pod` names exist) or stops serving it.
    fn set_exposed(&mut self, ns: &str, exposed: bool, settings: &Settings) {
        let forward: Vec<String> = self.forward_zones().map(str::to_owned).collect();
        for zone in forward {
            let names = [format!("{ns}.svc.{zone}"), format!("{ns}.pod.{zone}")];
            for (i, name) in names.into_iter().enumerate() {
                let wanted = exposed && (i == 0 || settings.pods != PodMode::Disabled);
                if wanted {
                    self.empty_non_terminals.insert(name);
                } else {
                    self.empty_non_terminals.remove(&name);
                }
            }
        }
        if exposed {
            self.namespaces.insert(ns.to_owned());
        } else {
            self.namespaces.remove(ns);
        }
    }

    /// Replaces one service's entry (or ExternalName CNAME) by what `cluster` says now.
    fn update_service(
        &mut self,
        cluster: &Cluster,
        settings: &Settings,
        key: &ObjectKey,
        out: &mut Applied,
    ) {
        let short = short_name(key);
        let forward: Vec<String> = self.forward_zones().map(str::to_owned).collect();
        let svc = cluster
            .services
            .get(key)
            .filter(|svc| served(self, settings, key, svc));

        // The CNAMEs of an ExternalName service.
        let target = match svc.map(|s| &s.shape) {
            Some(Shape::ExternalName(t)) => Some(t.to_string()),
            _ => None,
        };
        for zone in &forward {
            let name = format!("{short}.svc.{zone}");
            let want = target.as_ref().filter(|_| fits(&name));
            if self.cname.get(&name) != want {
                out.changed = true;
                match want {
                    Some(t) => {
                        self.cname.insert(name, t.clone());
                    }
                    None => {
                        self.cname.remove(&name);
                    }
                }
            }
        }

        let entry = svc.and_then(|svc| service_entry(cluster.slices_of(key), settings, svc));
        let old = self.services.get(short.as_str());
        if old == entry.as_ref() {
            return;
        }
        out.changed = true;
        if let Some(old) = self.services.remove(short.as_str()) {
            let records = self.entry_records(&short, &old);
            out.a_delta -= a_names(&records);
            out.names.extend(records.into_iter().map(|(n, _)| n));
            self.ptr_remove(&short, &old);
        }
        if let Some(entry) = entry {
            let records = self.entry_records(&short, &entry);
            out.notes
                .extend(length_notes(key, &short, &entry, &forward));
            out.a_delta += a_names(&records);
            out.names.extend(records.into_iter().map(|(n, _)| n));
            let short: Arc<str> = short.into();
            self.ptr_add(&short, &entry);
            self.services.insert(short, entry);
        }
    }

    /// Adds the PTR owners of a service entry.
    fn ptr_add(&mut self, short: &Arc<str>, entry: &ServiceEntry) {
        for (ip, owner) in ptr_owners(short, entry) {
            let list = match self.ptr.remove(&ip) {
                None => Box::new([owner]) as Box<[PtrOwner]>,
                Some(list) => {
                    let mut list = list.into_vec();
                    let at = list.partition_point(|o| o.order() <= owner.order());
                    list.insert(at, owner);
                    list.into_boxed_slice()
                }
            };
            self.ptr.insert(ip, list);
        }
    }

    /// Removes the PTR owners of a service entry.
    fn ptr_remove(&mut self, short: &str, entry: &ServiceEntry) {
        let ips = entry
            .cluster_ips
            .iter()
            .flat_map(|ips| ips.iter().copied())
            .chain(entry.endpoints().map(|e| e.ip));
        for ip in ips {
            let Some(list) = self.ptr.get_mut(&ip) else {
                continue;
            };
            if !list.iter().any(|o| &*o.service == short) {
                continue;
            }
            let kept: Box<[PtrOwner]> = list
                .iter()
                .filter(|o| &*o.service != short)
                .cloned()
                .collect();
            if kept.is_empty() {
                self.ptr.remove(&ip);
            } else {
                *list = kept;
            }
        }
    }

    /// `ns.dns.<zone>`: the addresses of kube-system/kube-dns, else `dns_ips`.
    fn update_dns_ips(&mut self, cluster: &Cluster, settings: &Settings, out: &mut Applied) {
        let ips = dns_service_ips(cluster).unwrap_or_else(|| settings.dns_ips.clone());
        let forward: Vec<String> = self.forward_zones().map(str::to_owned).collect();
        for zone in forward {
            let name = format!("ns.dns.{zone}");
            let (mut v4, mut v6) = by_family(ips.iter().copied());
            v4.sort_unstable();
            v4.dedup();
            v6.sort_unstable();
            v6.dedup();
            let (a, aaaa) = (
                (!v4.is_empty()).then_some((self.ttl, v4)),
                (!v6.is_empty()).then_some((self.ttl, v6)),
            );
            if self.a.get(&name) != a.as_ref() || self.aaaa.get(&name) != aaaa.as_ref() {
                out.changed = true;
                out.names.insert(name.clone());
                out.a_delta += isize::from(a.is_some()) - isize::from(self.a.contains_key(&name));
                match a {
                    Some(v) => self.a.insert(name.clone(), v),
                    None => self.a.remove(&name),
                };
                match aaaa {
                    Some(v) => self.aaaa.insert(name, v),
                    None => self.aaaa.remove(&name),
                };
            }
        }
    }

    /// The pod addresses of namespace `ns` (`pods verified`).
    fn update_pods(&mut self, cluster: &Cluster, ns: &str, out: &mut Applied) {
        let ips: BTreeSet<IpAddr> = if self.namespaces.contains(ns) {
            cluster
                .pods_in(ns)
                .flat_map(|p| p.ips.iter().copied())
                .collect()
        } else {
            BTreeSet::new()
        };
        if self.pod_ips.get(ns).cloned().unwrap_or_default() == ips {
            return;
        }
        out.changed = true;
        if ips.is_empty() {
            self.pod_ips.remove(ns);
        } else {
            self.pod_ips.insert(ns.to_owned(), ips);
        }
    }
}

/// Whether namespace `ns` is served: it exists (a Namespace object; without
/// `namespace_labels` also a namespace holding Services) and `namespaces` /
/// `namespace_labels` allow it.
fn exposed(cluster: &Cluster, settings: &Settings, ns: &str) -> bool {
    if !settings.namespace_allowed(ns) {
        return false;
    }
    match &settings.namespace_labels {
        Some(sel) => cluster
            .namespaces
            .get(ns)
            .is_some_and(|n| sel.matches(&n.labels)),
        None => cluster.namespaces.contains_key(ns) || cluster.services_in(ns).next().is_some(),
    }
}

/// The entry of a ClusterIP or headless service; `None` for other kinds and for a ClusterIP
/// service without endpoints under `ignore empty_service`.
fn service_entry<'a>(
    slices: impl Iterator<Item = &'a SliceObj>,
    settings: &Settings,
    svc: &ServiceObj,
) -> Option<ServiceEntry> {
    let subsets: Box<[Subset]> = if settings.noendpoints {
        Box::default()
    } else {
        slices
            .map(|s| subset(s, svc.publish_not_ready, settings.endpoint_pod_names))
            .collect()
    };
    match &svc.shape {
        Shape::ClusterIp { ips, ports } => {
            let has_addresses = subsets.iter().any(|s| !s.endpoints.is_empty());
            if settings.ignore_empty_service && !has_addresses {
                return None;
            }
            let mut ips = ips.to_vec();
            ips.sort_unstable();
            ips.dedup();
            Some(ServiceEntry {
                cluster_ips: Some(ips.into()),
                ports: ports.clone(),
                subsets,
            })
        }
        Shape::Headless => Some(ServiceEntry {
            cluster_ips: None,
            ports: Box::default(),
            subsets,
        }),
        Shape::Ignored | Shape::ExternalName(_) => None,
    }
}

/// One slice's served endpoints (ready ones, every one with `publishNotReadyAddresses`),
/// de-duplicated, and its ports.
fn subset(slice: &SliceObj, publish_not_ready: bool, pod_names: bool) -> Subset {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for ep in slice.endpoints.iter() {
        if !ep.ready && !publish_not_ready {
            continue;
        }
        let name = ep
            .hostname()
            .or_else(|| ep.pod().filter(|_| pod_names))
            .or_else(|| ep.written())
            .map(Box::from);
        if !endpoints.iter().any(|e| e.ip == ep.ip && e.name == name) {
            endpoints.push(Endpoint { ip: ep.ip, name });
        }
    }
    Subset {
        endpoints: endpoints.into(),
        ports: slice.ports.clone(),
    }
}

/// `kube-system/kube-dns`'s cluster IPs, when that Service exists with some.
fn dns_service_ips(cluster: &Cluster) -> Option<Vec<IpAddr>> {
    let svc = cluster
        .services
        .get(&ObjectKey::new("kube-system", "kube-dns"))?;
    match &svc.shape {
        Shape::ClusterIp { ips, .. } if !ips.is_empty() => Some(ips.to_vec()),
        _ => None,
    }
}

/// How many of `records` have IPv4 addresses.
fn a_names(records: &[(String, Vec<IpAddr>)]) -> isize {
    let n = records
        .iter()
        .filter(|(_, ips)| ips.iter().any(IpAddr::is_ipv4))
        .count();
    isize::try_from(n).unwrap_or(isize::MAX)
}
