//! The record model of the cluster zone (pure, no I/O): what exists and how a name is classified.

mod build;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

pub use build::build;

/// A records by owner name: lower-case FQDN with a trailing dot → (TTL, ascending addresses).
/// This is the map handed to `Dataplane::sync_a`.
pub type AMap = BTreeMap<String, (u32, Vec<Ipv4Addr>)>;

/// SOA timers (RFC 1912 values CoreDNS's kubernetes plugin also uses); minimum is the TTL.
pub const SOA_REFRESH: u32 = 7200;
pub const SOA_RETRY: u32 = 1800;
pub const SOA_EXPIRE: u32 = 86400;

/// What is computed from the records settings and the cluster objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Lower-case with a trailing dot (`cluster.local.`).
    pub zone: String,
    pub ttl: u32,
}

/// Every record of the zone at one point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    /// Lower-case with a trailing dot (`cluster.local.`).
    pub zone: String,
    /// TTL of every record and SOA minimum.
    pub ttl: u32,
    /// SOA serial: unix time of the last change.
    pub serial: u32,
    pub a: AMap,
    /// Known namespaces (Namespace objects, and namespaces holding Services).
    pub namespaces: BTreeSet<String>,
    /// Names without records of their own that exist because names below them do:
    /// `svc.<zone>` and `<ns>.svc.<zone>` for each known namespace. They answer NODATA.
    pub empty_non_terminals: BTreeSet<String>,
}

/// What the zone holds at a name (lower-case FQDN with a trailing dot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not in the zone: the server refuses it.
    OutOfZone,
    /// The zone apex: SOA and NS.
    Apex,
    /// A records.
    A { ttl: u32, addrs: &'a [Ipv4Addr] },
    /// Exists without records (NODATA for every type).
    EmptyNonTerminal,
    /// In the zone, does not exist.
    NxDomain,
}

impl Records {
    /// The zone with no objects.
    pub fn empty(settings: &Settings, serial: u32) -> Self {
        build(&crate::cluster::Cluster::default(), settings, serial).0
    }

    /// Classifies `name`, which must be lower-case with a trailing dot.
    pub fn lookup(&self, name: &str) -> Lookup<'_> {
        if name == self.zone {
            return Lookup::Apex;
        }
        match name.strip_suffix(self.zone.as_str()) {
            Some(prefix) if prefix.ends_with('.') => {}
            _ => return Lookup::OutOfZone,
        }
        if let Some((ttl, addrs)) = self.a.get(name) {
            return Lookup::A { ttl: *ttl, addrs };
        }
        if self.empty_non_terminals.contains(name) {
            Lookup::EmptyNonTerminal
        } else {
            Lookup::NxDomain
        }
    }

    /// The SOA MNAME: `ns.dns.<zone>`.
    pub fn soa_mname(&self) -> String {
        format!("ns.dns.{}", self.zone)
    }

    /// The SOA RNAME: `hostmaster.<zone>`.
    pub fn soa_rname(&self) -> String {
        format!("hostmaster.{}", self.zone)
    }

    /// Whether `other` serves the same answers (everything but the serial is equal).
    pub fn same_content(&self, other: &Records) -> bool {
        self.zone == other.zone
            && self.ttl == other.ttl
            && self.a == other.a
            && self.empty_non_terminals == other.empty_non_terminals
    }
}

/// The serial for `new` replacing `prev` at unix time `now`: unchanged when nothing changed,
/// else `now`, and always above the previous serial so that it only grows.
pub fn next_serial(prev: &Records, new: &Records, now: u32) -> u32 {
    if prev.same_content(new) {
        prev.serial
    } else {
        now.max(prev.serial.wrapping_add(1))
    }
}

/// The records the servers answer from, replaceable at run time. Readers take a cheap
/// snapshot (`Arc`) and never wait for a writer longer than a pointer swap.
#[derive(Clone, Debug)]
pub struct SharedRecords(Arc<RwLock<Arc<Records>>>);

impl SharedRecords {
    pub fn new(records: Records) -> Self {
        SharedRecords(Arc::new(RwLock::new(Arc::new(records))))
    }

    /// The current records.
    pub fn load(&self) -> Arc<Records> {
        let guard = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Replaces the records; returns the previous ones.
    pub fn store(&self, records: Records) -> Arc<Records> {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *guard, Arc::new(records))
    }
}

#[cfg(test)]
mod tests;
