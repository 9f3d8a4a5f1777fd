//! The hosts table: /etc/hosts lines in, name → addresses and reverse name → names out (pure).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::in_zone;

/// Names (lower-case FQDNs) and their addresses in file order, and the reverse names of the
/// addresses with the names they stand for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    v4: HashMap<String, Vec<Ipv4Addr>>,
    v6: HashMap<String, Vec<Ipv6Addr>>,
    ptr: HashMap<String, Vec<String>>,
    /// Distinct (name, address) pairs.
    len: usize,
}

/// Lower-case with a trailing dot.
pub fn normalize(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// The address of a hosts line: IPv4 or IPv6, an IPv6 zone (`%eth0`) ignored.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let addr = text.split_once('%').map_or(text, |(a, _)| a);
    addr.parse().ok()
}

/// `d.c.b.a.in-addr.arpa.` or the 32 nibbles under `ip6.arpa.`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

impl Table {
    /// The table of `texts` (hosts-file contents, read in order; later lines add to earlier
    /// ones), keeping only names under one of `origins`.
    pub fn parse(texts: &[&str], origins: &[String], no_reverse: bool) -> Table {
        let mut t = Table::default();
        for text in texts {
            for line in text.lines() {
                let line = line.split_once('#').map_or(line, |(l, _)| l);
                let mut fields = line.split_whitespace();
                let Some(ip) = fields.next().and_then(parse_ip) else {
                    continue;
                };
                for name in fields {
                    let name = normalize(name);
                    if !origins.iter().any(|z| in_zone(&name, z)) {
                        continue;
                    }
                    t.add(name, ip, no_reverse);
                }
            }
        }
        t
    }

    fn add(&mut self, name: String, ip: IpAddr, no_reverse: bool) {
        let added = match ip {
            IpAddr::V4(v4) => push_new(self.v4.entry(name.clone()).or_default(), v4),
            IpAddr::V6(v6) => push_new(self.v6.entry(name.clone()).or_default(), v6),
        };
        if !added {
            return;
        }
        self.len += 1;
        if !no_reverse {
            push_new(self.ptr.entry(reverse_name(ip)).or_default(), name);
        }
    }

    /// Distinct (name, address) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `name` (lower-case FQDN) has any record here, of whatever type.
    pub fn knows(&self, name: &str) -> bool {
        self.v4.contains_key(name) || self.v6.contains_key(name) || self.ptr.contains_key(name)
    }

    /// The records of type `qtype` for `key` (lower-case FQDN) with `owner` as their name
    /// (empty when the name has only others).
    pub fn records(&self, key: &str, owner: &Name, qtype: RecordType, ttl: u32) -> Vec<Record> {
        let rdata: Vec<RData> = match qtype {
            RecordType::A => self
                .v4
                .get(key)
                .map(|v| v.iter().map(|ip| RData::A(A(*ip))).collect())
                .unwrap_or_default(),
            RecordType::AAAA => self
                .v6
                .get(key)
                .map(|v| v.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect())
                .unwrap_or_default(),
            RecordType::PTR => self
                .ptr
                .get(key)
                .map(|v| {
                    v.iter()
                        .filter_map(|n| Name::from_ascii(n).ok())
                        .map(|n| RData::PTR(PTR(n)))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        rdata
            .into_iter()
            .map(|r| Record::from_rdata(owner.clone(), ttl, r))
            .collect()
    }
}

fn push_new<T: PartialEq>(v: &mut Vec<T>, item: T) -> bool {
    if v.contains(&item) {
        return false;
    }
    v.push(item);
    true
}
