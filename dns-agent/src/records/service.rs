//! One service as SRV answers need it, and the SRV records CoreDNS computes from it (pure).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::{Srv, SrvSet};

/// A served endpoint address of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Its DNS label when it is not the dashed form of `ip`: hostname, else pod name
    /// (`endpoint_pod_names`), else the address as written if not canonical.
    pub name: Option<Box<str>>,
}

impl Endpoint {
    /// Its DNS label: hostname, else pod name (`endpoint_pod_names`), else the dashed IP.
    pub fn label(&self) -> Cow<'_, str> {
        match &self.name {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(dashed(&self.ip.to_string())),
        }
    }
}

/// The endpoint label CoreDNS derives from an address: dots (IPv4) or colons (IPv6) become
/// dashes, as written in the object (`fd00::5` → `fd00--5`).
pub fn dashed(addr: &str) -> String {
    addr.to_ascii_lowercase().replace(['.', ':'], "-")
}

/// A port as an EndpointSlice or a Service lists it. `port` is -1 for a slice without ports
/// (CoreDNS counts such entries when weighting SRV records, then drops them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Shared between the ports that carry the same name (large clusters repeat a few).
    pub name: Arc<str>,
    pub protocol: Arc<str>,
    pub port: i32,
}

/// One EndpointSlice's contribution: its served endpoints times its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subset {
    pub endpoints: Box<[Endpoint]>,
    pub ports: Box<[Port]>,
}

/// What an SRV question selects below a service name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrvQuery<'a> {
    /// `<svc>.<ns>.svc.<zone>`: every port.
    Bare,
    /// `_<port>._<proto>.<svc>...`: that named port.
    Port { name: &'a str, protocol: &'a str },
    /// `<endpoint>.<svc>...`: every port of that endpoint.
    Endpoint(&'a str),
}

/// A served service (ExternalName ones live in `Records::cname`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `None`: headless; else the cluster IPs (both families, ascending).
    pub cluster_ips: Option<Box<[IpAddr]>>,
    /// The Service's ports (ClusterIP services answer SRV from these).
    pub ports: Box<[Port]>,
    /// Endpoints (headless services and endpoint names answer SRV from these).
    pub subsets: Box<[Subset]>,
}

impl ServiceEntry {
    /// The addresses of the service's own name, ascending: its cluster IPs, or for a headless
    /// service every served endpoint address.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = match &self.cluster_ips {
            Some(ips) => ips.to_vec(),
            None => self.endpoints().map(|e| e.ip).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The addresses of the endpoint name `label` below the service, ascending.
    pub fn endpoint_addresses(&self, label: &str) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .endpoints()
            .filter(|e| e.label() == label)
            .map(|e| e.ip)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The distinct endpoint labels, in order.
    pub fn endpoint_labels(&self) -> BTreeSet<Cow<'_, str>> {
        self.endpoints().map(Endpoint::label).collect()
    }

    /// Every served endpoint of every slice, in slice order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        self.subsets.iter().flat_map(|s| s.endpoints.iter())
    }

    /// The SRV records for `query` below the service named `fqdn` (lower-case): priority 0,
    /// weight ⌊100 / entries⌋ (entries counted before de-duplication, port-less ones too),
    /// records de-duplicated by (target, port), additional addresses by (target, address).
    /// `None` when no entry matches (NXDOMAIN for a port or endpoint name).
    pub fn srv(&self, fqdn: &str, query: SrvQuery<'_>) -> Option<SrvSet> {
        let port_ok = |p: &Port| match query {
            SrvQuery::Port { name, protocol } => {
                p.name.eq_ignore_ascii_case(name) && p.protocol.eq_ignore_ascii_case(protocol)
            }
            _ => true,
        };
        let mut entries: Vec<(String, i32, IpAddr)> = Vec::new();
        match (&self.cluster_ips, query) {
            (Some(ips), SrvQuery::Bare | SrvQuery::Port { .. }) => {
                for p in self.ports.iter().filter(|p| port_ok(p)) {
                    for ip in ips {
                        entries.push((fqdn.to_owned(), p.port, *ip));
                    }
                }
            }
            _ => {
                for s in &self.subsets {
                    for ep in &s.endpoints {
                        let label = ep.label();
                        if matches!(query, SrvQuery::Endpoint(l) if l != label) {
                            continue;
                        }
                        let target = format!("{label}.{fqdn}");
                        for p in s.ports.iter().filter(|p| port_ok(p)) {
                            entries.push((target.clone(), p.port, ep.ip));
                        }
                    }
                }
            }
        }
        if entries.is_empty() {
            return None;
        }
        let weight = u16::try_from(100 / entries.len()).unwrap_or(0);
        let mut set = SrvSet::default();
        let mut seen_srv = HashSet::new();
        let mut seen_addr = HashSet::new();
        for (target, port, ip) in &entries {
            let Ok(port) = u16::try_from(*port) else {
                continue;
            };
            if seen_srv.insert((target.as_str(), port)) {
                set.records.push(Srv {
                    priority: 0,
                    weight,
                    port,
                    target: target.clone(),
                });
            }
            if seen_addr.insert((target.as_str(), *ip)) {
                set.additional.push((target.clone(), *ip));
            }
        }
        Some(set)
    }
}
