//! The A/AAAA records of the zone, computed from the service entries: per name for an answer,
//! per service for a kernel map change, all of them for a full kernel map sync.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::settings::is_reverse;
use super::{AMap, AaaaMap, Records, ServiceEntry};

/// Longest owner name in wire format (RFC 1035).
pub const MAX_WIRE_NAME: usize = 255;

/// Whether the presentation-form FQDN `name` fits in a DNS message.
pub fn fits(name: &str) -> bool {
    // The wire form is one byte longer than the dotted form (the leading length byte).
    name.len() < MAX_WIRE_NAME
}

impl Records {
    /// The forward zones (not `in-addr.arpa.`/`ip6.arpa.`).
    pub fn forward_zones(&self) -> impl Iterator<Item = &str> + '_ {
        self.zones
            .iter()
            .map(String::as_str)
            .filter(|z| !is_reverse(z))
    }

    /// The A and AAAA records of `name` (lower-case FQDN), addresses ascending.
    pub fn addresses_of(&self, name: &str) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
        let (mut v4, mut v6) = by_family(self.service_name_addresses(name));
        if let Some((_, a)) = self.a.get(name) {
            v4.splice(0..0, a.iter().copied());
        }
        if let Some((_, a)) = self.aaaa.get(name) {
            v6.splice(0..0, a.iter().copied());
        }
        (v4, v6)
    }

    /// Addresses of a service name `<svc>.<ns>.svc.<zone>` or an endpoint name
    /// `<endpoint>.<svc>.<ns>.svc.<zone>`.
    fn service_name_addresses(&self, name: &str) -> Vec<IpAddr> {
        if !fits(name) {
            return Vec::new();
        }
        let Some(zone) = self.zone_of(name).filter(|z| !is_reverse(z)) else {
            return Vec::new();
        };
        let Some(rel) = name
            .strip_suffix(zone)
            .and_then(|r| r.strip_suffix(".svc."))
        else {
            return Vec::new();
        };
        let Some((rest, ns)) = rel.rsplit_once('.') else {
            return Vec::new();
        };
        let (endpoint, svc) = match rest.rsplit_once('.') {
            Some((ep, svc)) => (Some(ep), svc),
            None => (None, rest),
        };
        let Some(entry) = self.services.get(format!("{svc}.{ns}").as_str()) else {
            return Vec::new();
        };
        match endpoint {
            None => entry.addresses(),
            Some(label) => entry.endpoint_addresses(label),
        }
    }

    /// Every name a service entry gives addresses to, in every forward zone, with them
    /// (ascending): its own name and its endpoints' names. Names too long for DNS are left out.
    pub fn entry_records(&self, short: &str, entry: &ServiceEntry) -> Vec<(String, Vec<IpAddr>)> {
        let mut by_label: BTreeMap<Cow<'_, str>, Vec<IpAddr>> = BTreeMap::new();
        for ep in entry.endpoints() {
            by_label.entry(ep.label()).or_default().push(ep.ip);
        }
        let own = entry.addresses();
        let mut out = Vec::new();
        for zone in self.forward_zones() {
            let fqdn = format!("{short}.svc.{zone}");
            if !fits(&fqdn) {
                continue;
            }
            if !own.is_empty() {
                out.push((fqdn.clone(), own.clone()));
            }
            for (label, ips) in &by_label {
                let name = format!("{label}.{fqdn}");
                if fits(&name) {
                    let mut ips = ips.clone();
                    ips.sort_unstable();
                    ips.dedup();
                    out.push((name, ips));
                }
            }
        }
        out
    }

    /// Every A record of the zone (what `DNS_A` holds when fully synced).
    pub fn a_map(&self) -> AMap {
        let (a, _) = self.address_maps(true, false);
        a
    }

    /// Every AAAA record of the zone (what `DNS_AAAA` holds when fully synced).
    pub fn aaaa_map(&self) -> AaaaMap {
        let (_, aaaa) = self.address_maps(false, true);
        aaaa
    }

    /// Number of names with A records.
    pub fn a_count(&self) -> usize {
        let own = self.a.len();
        own + self
            .services
            .iter()
            .map(|(short, e)| {
                self.entry_records(short, e)
                    .iter()
                    .filter(|(_, ips)| ips.iter().any(IpAddr::is_ipv4))
                    .count()
            })
            .sum::<usize>()
    }

    fn address_maps(&self, want_a: bool, want_aaaa: bool) -> (AMap, AaaaMap) {
        let mut a = if want_a { self.a.clone() } else { AMap::new() };
        let mut aaaa = if want_aaaa {
            self.aaaa.clone()
        } else {
            AaaaMap::new()
        };
        for (short, entry) in &self.services {
            for (name, ips) in self.entry_records(short, entry) {
                split_into(&mut a, &mut aaaa, name, &ips, self.ttl, want_a, want_aaaa);
            }
        }
        (a, aaaa)
    }

    /// The A and AAAA records of `names` (absent: none), for a kernel map change.
    pub fn address_maps_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> (AMap, AaaaMap) {
        let mut a = AMap::new();
        let mut aaaa = AaaaMap::new();
        for name in names {
            let (v4, v6) = self.addresses_of(name);
            if !v4.is_empty() {
                a.insert(name.to_owned(), (self.ttl, v4));
            }
            if !v6.is_empty() {
                aaaa.insert(name.to_owned(), (self.ttl, v6));
            }
        }
        (a, aaaa)
    }
}

fn split_into(
    a: &mut AMap,
    aaaa: &mut AaaaMap,
    name: String,
    ips: &[IpAddr],
    ttl: u32,
    want_a: bool,
    want_aaaa: bool,
) {
    let (v4, v6) = by_family(ips.iter().copied());
    if want_a && !v4.is_empty() {
        a.insert(name.clone(), (ttl, v4));
    }
    if want_aaaa && !v6.is_empty() {
        aaaa.insert(name, (ttl, v6));
    }
}

/// `ips` split into IPv4 and IPv6, each in the given order.
pub fn by_family(ips: impl IntoIterator<Item = IpAddr>) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in ips {
        match ip {
            IpAddr::V4(a) => v4.push(a),
            IpAddr::V6(a) => v6.push(a),
        }
    }
    (v4, v6)
}
