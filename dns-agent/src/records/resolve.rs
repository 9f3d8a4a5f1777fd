//! The answer to one question from the records (pure): rcode, answer and additional records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::settings::is_reverse;
use super::{in_zone, PodMode, Records, SrvQuery, SrvSet};

/// Query types the model knows (RFC 1035, 3596, 2782).
pub mod qtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const ANY: u16 = 255;
}

/// Most CNAME hops followed inside the zone (CoreDNS stops at 8 too).
const MAX_CNAME_CHAIN: usize = 8;

/// The response code of an authoritative answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    /// A would-be NXDOMAIN before the first complete list of a live source.
    ServFail,
}

/// What the server does with a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not in a served zone, or a would-be NXDOMAIN in a `fallthrough` zone: the rest of the
    /// chain answers it (the next plugin; REFUSED when no server block holds the name).
    NotOurs,
    Answer(Resolution),
}

/// An authoritative answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub rcode: Rcode,
    /// The zone whose SOA goes to the authority section when `answers` is empty.
    pub zone: String,
    pub answers: Vec<Rr>,
    pub additional: Vec<Rr>,
}

/// One resource record of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    /// `None`: the question's name as the client spelled it; else a lower-case FQDN.
    pub owner: Option<String>,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ns(String),
    Ptr(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt(String),
    /// The SOA of this zone.
    Soa(String),
}

impl Records {
    /// The answer to (`name`, `qtype`); `name` lower-case with a trailing dot.
    pub fn resolve(&self, name: &str, qtype: u16) -> Outcome {
        let Some(zone) = self.zone_of(name) else {
            return Outcome::NotOurs;
        };
        let mut res = Resolution {
            rcode: Rcode::NoError,
            zone: zone.to_owned(),
            answers: Vec::new(),
            additional: Vec::new(),
        };
        let ttl = self.ttl;
        let exists;
        if name == zone {
            exists = true;
            let soa = Rr {
                owner: None,
                ttl: self.soa_ttl(),
                data: RData::Soa(zone.to_owned()),
            };
            let ns = Rr {
                owner: None,
                ttl,
                data: RData::Ns(Self::soa_mname_of(zone)),
            };
            if matches!(qtype, qtype::SOA | qtype::ANY) {
                res.answers.push(soa);
            }
            if matches!(qtype, qtype::NS | qtype::ANY) {
                res.answers.push(ns);
                let glue = Self::soa_mname_of(zone);
                self.push_addresses(&glue, &mut res.additional, true, true);
            }
        } else if is_reverse(zone) {
            let ptrs = reverse_address(name).and_then(|ip| self.ptr_targets(ip));
            exists = ptrs.is_some();
            if matches!(qtype, qtype::PTR | qtype::ANY) {
                for target in ptrs.into_iter().flatten() {
                    res.answers.push(Rr {
                        owner: None,
                        ttl,
                        data: RData::Ptr(target),
                    });
                }
            }
        } else if let Some(pod) = self.pod_address(name, zone) {
            exists = pod.is_some();
            match pod {
                Some(IpAddr::V4(v4)) if matches!(qtype, qtype::A | qtype::ANY) => {
                    res.answers.push(Rr {
                        owner: None,
                        ttl,
                        data: RData::A(v4),
                    });
                }
                Some(IpAddr::V6(v6)) if matches!(qtype, qtype::AAAA | qtype::ANY) => {
                    res.answers.push(Rr {
                        owner: None,
                        ttl,
                        data: RData::Aaaa(v6),
                    });
                }
                _ => {}
            }
        } else {
            let srv = self.srv_at(name, zone);
            let (v4, v6) = self.addresses_of(name);
            exists = !v4.is_empty()
                || !v6.is_empty()
                || srv.is_some()
                || self.cname.contains_key(name)
                || self.txt.contains_key(name)
                || self.empty_non_terminals.contains(name);
            if let Some(target) = self.cname.get(name) {
                if matches!(qtype, qtype::SRV) {
                    // CoreDNS answers SRV at an ExternalName with the target, port 0.
                    res.answers.push(Rr {
                        owner: None,
                        ttl,
                        data: RData::Srv {
                            priority: 0,
                            weight: 100,
                            port: 0,
                            target: target.clone(),
                        },
                    });
                } else {
                    res.answers.push(Rr {
                        owner: None,
                        ttl,
                        data: RData::Cname(target.clone()),
                    });
                    if matches!(qtype, qtype::A | qtype::AAAA) {
                        self.chase(target, qtype, &mut res.answers);
                    }
                }
            } else {
                let (a, aaaa) = (
                    matches!(qtype, qtype::A | qtype::ANY),
                    matches!(qtype, qtype::AAAA | qtype::ANY),
                );
                if a || aaaa {
                    let mut found = Vec::new();
                    self.push_addresses(name, &mut found, a, aaaa);
                    res.answers
                        .extend(found.into_iter().map(|rr| Rr { owner: None, ..rr }));
                }
                if let (Some(set), qtype::SRV) = (&srv, qtype) {
                    self.push_srv(set, &mut res);
                }
                if matches!(qtype, qtype::TXT | qtype::ANY) {
                    for t in self.txt.get(name).into_iter().flatten() {
                        res.answers.push(Rr {
                            owner: None,
                            ttl,
                            data: RData::Txt(t.clone()),
                        });
                    }
                }
            }
        }
        if !exists {
            if self.falls_through(name) {
                return Outcome::NotOurs;
            }
            res.rcode = if self.synced {
                Rcode::NxDomain
            } else {
                Rcode::ServFail
            };
        }
        Outcome::Answer(res)
    }

    /// The SOA record's TTL: the zone TTL, at most [`super::SOA_MAX_TTL`].
    pub fn soa_ttl(&self) -> u32 {
        self.ttl.min(super::SOA_MAX_TTL)
    }

    /// Whether a would-be NXDOMAIN for `name` goes to the rest of the chain.
    fn falls_through(&self, name: &str) -> bool {
        match &self.fallthrough {
            None => false,
            Some(zones) if zones.is_empty() => true,
            Some(zones) => zones.iter().any(|z| in_zone(name, z)),
        }
    }

    /// A/AAAA records of `name` (owner `name`).
    fn push_addresses(&self, name: &str, out: &mut Vec<Rr>, a: bool, aaaa: bool) {
        let (v4, v6) = self.addresses_of(name);
        let ttl = self.ttl;
        if a {
            out.extend(v4.into_iter().map(|ip| Rr {
                owner: Some(name.to_owned()),
                ttl,
                data: RData::A(ip),
            }));
        }
        if aaaa {
            out.extend(v6.into_iter().map(|ip| Rr {
                owner: Some(name.to_owned()),
                ttl,
                data: RData::Aaaa(ip),
            }));
        }
    }

    /// The PTR targets of `ip`: the first service (by namespace, then name) with it as a
    /// cluster IP, else every endpoint name with it; `None` when nothing has it.
    pub fn ptr_targets(&self, ip: IpAddr) -> Option<Vec<String>> {
        let owners = self.ptr.get(&ip)?;
        let zone = &self.zone;
        if let Some(o) = owners.iter().find(|o| o.cluster_ip) {
            return Some(vec![format!("{}.svc.{zone}", o.service)]);
        }
        let mut out: Vec<String> = Vec::new();
        for o in owners.iter() {
            let label = match &o.label {
                Some(l) => l.to_string(),
                None => super::dashed(&ip.to_string()),
            };
            let target = format!("{label}.{}.svc.{zone}", o.service);
            if !out.contains(&target) {
                out.push(target);
            }
        }
        Some(out)
    }

    /// The SRV records at `name` in forward `zone`, computed from the service below it:
    /// `<svc>.<ns>.svc.<zone>`, `_<port>._<proto>.<svc>...` or `<endpoint>.<svc>...`.
    fn srv_at(&self, name: &str, zone: &str) -> Option<SrvSet> {
        let rel = name.strip_suffix(zone)?.strip_suffix(".svc.")?;
        let labels: Vec<&str> = rel.split('.').collect();
        let (query, svc, ns) = match labels.as_slice() {
            [svc, ns] => (SrvQuery::Bare, *svc, *ns),
            [ep, svc, ns] => (SrvQuery::Endpoint(ep), *svc, *ns),
            [port, proto, svc, ns] => (
                SrvQuery::Port {
                    name: port.strip_prefix('_')?,
                    protocol: proto.strip_prefix('_')?,
                },
                *svc,
                *ns,
            ),
            _ => return None,
        };
        let entry = self.services.get(format!("{svc}.{ns}").as_str())?;
        let fqdn = format!("{svc}.{ns}.svc.{zone}");
        entry.srv(&fqdn, query)
    }

    fn push_srv(&self, set: &SrvSet, res: &mut Resolution) {
        for s in &set.records {
            res.answers.push(Rr {
                owner: None,
                ttl: self.ttl,
                data: RData::Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.clone(),
                },
            });
        }
        for (target, ip) in &set.additional {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(*v4),
                IpAddr::V6(v6) => RData::Aaaa(*v6),
            };
            res.additional.push(Rr {
                owner: Some(target.clone()),
                ttl: self.ttl,
                data,
            });
        }
    }

    /// Appends the in-zone resolution of a CNAME `target` (more CNAMEs, then addresses).
    /// Out-of-zone targets are resolved by the rest of the chain (the `kubernetes` plugin).
    fn chase(&self, target: &str, qtype: u16, out: &mut Vec<Rr>) {
        let mut current = target.to_owned();
        for _ in 0..MAX_CNAME_CHAIN {
            match self.zone_of(&current) {
                Some(z) if !is_reverse(z) => {}
                _ => return,
            }
            if let Some(next) = self.cname.get(&current) {
                out.push(Rr {
                    owner: Some(current.clone()),
                    ttl: self.ttl,
                    data: RData::Cname(next.clone()),
                });
                current = next.clone();
                continue;
            }
            self.push_addresses(&current, out, qtype == qtype::A, qtype == qtype::AAAA);
            return;
        }
    }

    /// For `<x>.<ns>.pod.<zone>`: `Some(Some(ip))` when it resolves under the pod mode,
    /// `Some(None)` when it is a pod name that does not; `None` when it is no pod name.
    fn pod_address(&self, name: &str, zone: &str) -> Option<Option<IpAddr>> {
        let prefix = name.strip_suffix(zone)?.strip_suffix(".pod.")?;
        let (label, ns) = prefix.split_once('.')?;
        if ns.contains('.') {
            return Some(None);
        }
        if self.pods == PodMode::Disabled || !self.namespaces.contains(ns) {
            return Some(None);
        }
        let text = if label.matches('-').count() == 3 && !label.contains("--") {
            label.replace('-', ".")
        } else {
            label.replace('-', ":")
        };
        let Ok(ip) = text.parse::<IpAddr>() else {
            return Some(None);
        };
        match self.pods {
            PodMode::Insecure => Some(Some(ip)),
            PodMode::Verified => Some(
                self.pod_ips
                    .get(ns)
                    .is_some_and(|ips| ips.contains(&ip))
                    .then_some(ip),
            ),
            PodMode::Disabled => Some(None),
        }
    }
}

/// The address a reverse name stands for: four decimal labels under `in-addr.arpa.` or 32
/// nibbles under `ip6.arpa.`; `None` for anything else (a partial or malformed name).
pub fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rel) = name.strip_suffix(".in-addr.arpa.") {
        let mut octets = [0u8; 4];
        let labels: Vec<&str> = rel.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        for (i, l) in labels.iter().rev().enumerate() {
            if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                return None;
            }
            octets[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rel = name.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<&str> = rel.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for n in nibbles.iter().rev() {
        if n.len() != 1 {
            return None;
        }
        value = (value << 4) | u128::from(u8::from_str_radix(n, 16).ok()?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}
