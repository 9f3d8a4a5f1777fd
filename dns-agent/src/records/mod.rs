//! The record model of the cluster zone (pure, no I/O): what exists, and the answer to a question.

mod addresses;
mod build;
mod resolve;
mod service;
pub mod settings;
mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use build::{build, Applied, Changes};
pub use resolve::{qtype, Outcome, RData, Rcode, Resolution, Rr};
pub use service::{dashed, Endpoint, Port, ServiceEntry, SrvQuery, Subset};
pub use settings::{LabelSelector, PodMode, Settings, SettingsError};

/// A records by owner name: lower-case FQDN with a trailing dot → (TTL, ascending addresses).
/// This is the map handed to `Dataplane::sync_a`.
pub type AMap = BTreeMap<String, (u32, Vec<Ipv4Addr>)>;

/// AAAA records by owner name, like [`AMap`]: the source of the kernel's `DNS_AAAA`.
pub type AaaaMap = BTreeMap<String, (u32, Vec<Ipv6Addr>)>;

/// SOA timers (RFC 1912 values CoreDNS's kubernetes plugin also uses); minimum is the TTL.
pub const SOA_REFRESH: u32 = 7200;
pub const SOA_RETRY: u32 = 1800;
pub const SOA_EXPIRE: u32 = 86400;
/// The SOA record's own TTL is the zone TTL capped at this (CoreDNS does the same).
pub const SOA_MAX_TTL: u32 = 300;
/// The TXT data of `dns-version.<zone>`: the version of the specification implemented.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// One SRV record (priority, weight and port as CoreDNS computes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower-case FQDN.
    pub target: String,
}

/// The SRV records at one name and the addresses of their targets (the additional section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SrvSet {
    pub records: Vec<Srv>,
    /// (target, address), de-duplicated, in the order CoreDNS lists them.
    pub additional: Vec<(String, IpAddr)>,
}

/// Who a PTR record at an address points to: a service's cluster IP, or one of its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtrOwner {
    /// The service's `<svc>.<ns>` (lower-case), as keyed in [`Records::services`].
    pub service: Arc<str>,
    /// True for a cluster IP (`<svc>.<ns>.svc.<zone>`), false for an endpoint.
    pub cluster_ip: bool,
    /// An endpoint's label when it is not the dashed address ([`Endpoint::name`]).
    pub label: Option<Box<str>>,
}

impl PtrOwner {
    /// (namespace, service): the order owners are kept in.
    pub(crate) fn order(&self) -> (bool, &str, &str) {
        let (svc, ns) = self.service.split_once('.').unwrap_or((&self.service, ""));
        (!self.cluster_ip, ns, svc)
    }
}

/// Every record of the zone at one point in time.
///
/// Services are kept once, as [`ServiceEntry`]s: the A/AAAA records of their names and of
/// their endpoints' names, their SRV records and PTR targets are computed from them per
/// question (and per kernel map sync), never stored name by name, so that a large cluster
/// stays small and one changed service is one entry to replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    /// The primary zone, lower-case with a trailing dot (`cluster.local.`): PTR targets use it.
    pub zone: String,
    /// Every zone served (forward and reverse), lower-case with a trailing dot.
    pub zones: Vec<String>,
    /// TTL of every record and SOA minimum.
    pub ttl: u32,
    /// SOA serial: unix time of the last change.
    pub serial: u32,
    /// False while a live source has not completed its first list: answers that would be
    /// NXDOMAIN are SERVFAIL. Snapshots are complete, so `build` sets it true.
    pub synced: bool,
    /// A records of names outside services (`ns.dns.<zone>`).
    pub a: AMap,
    /// AAAA records of names outside services.
    pub aaaa: AaaaMap,
    /// Served ClusterIP and headless services by `<svc>.<ns>` (lower-case).
    pub services: HashMap<Arc<str>, ServiceEntry>,
    /// CNAME target (lower-case FQDN) by owner: ExternalName services.
    pub cname: BTreeMap<String, String>,
    /// Who the PTR records of an address point to, cluster IPs first, then by namespace and
    /// service.
    pub ptr: BTreeMap<IpAddr, Box<[PtrOwner]>>,
    /// TXT strings by owner (`dns-version.<zone>`).
    pub txt: BTreeMap<String, Vec<String>>,
    /// Exposed namespaces (known to exist and allowed by the settings).
    pub namespaces: BTreeSet<String>,
    /// Names without records of their own that exist because names below them do:
    /// `svc.<zone>`, `<ns>.svc.<zone>`, `pod.<zone>`, `dns.<zone>`, ... They answer NODATA.
    pub empty_non_terminals: BTreeSet<String>,
    pub pods: PodMode,
    /// Pod addresses by namespace (filled only in `pods verified` mode).
    pub pod_ips: BTreeMap<String, BTreeSet<IpAddr>>,
    /// `None`: no fallthrough; `Some(empty)`: every zone; else these zones (and below).
    pub fallthrough: Option<Vec<String>>,
}

impl Records {
    /// The zone with no objects, complete (synced).
    pub fn empty(settings: &Settings, serial: u32) -> Self {
        build(&crate::cluster::Cluster::default(), settings, serial).0
    }

    /// The zone with no objects as a live source has it before its first complete list:
    /// not synced, so what would be NXDOMAIN is SERVFAIL.
    pub fn unsynced(settings: &Settings, serial: u32) -> Self {
        let mut records = Self::empty(settings, serial);
        records.synced = false;
        records
    }

    /// The longest served zone that holds `name` (lower-case with a trailing dot).
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        self.zones
            .iter()
            .filter(|z| in_zone(name, z))
            .max_by_key(|z| z.len())
            .map(String::as_str)
    }

    /// The SOA MNAME of `zone`: `ns.dns.<zone>`.
    pub fn soa_mname_of(zone: &str) -> String {
        format!("ns.dns.{zone}")
    }

    /// The SOA RNAME of `zone`: `hostmaster.<zone>`.
    pub fn soa_rname_of(zone: &str) -> String {
        format!("hostmaster.{zone}")
    }

    /// The SOA MNAME of the primary zone.
    pub fn soa_mname(&self) -> String {
        Self::soa_mname_of(&self.zone)
    }

    /// The SOA RNAME of the primary zone.
    pub fn soa_rname(&self) -> String {
        Self::soa_rname_of(&self.zone)
    }

    /// Whether `other` serves the same answers (everything but the serial is equal).
    pub fn same_content(&self, other: &Records) -> bool {
        self.zone == other.zone
            && self.zones == other.zones
            && self.ttl == other.ttl
            && self.synced == other.synced
            && self.a == other.a
            && self.aaaa == other.aaaa
            && self.services == other.services
            && self.cname == other.cname
            && self.ptr == other.ptr
            && self.txt == other.txt
            && self.namespaces == other.namespaces
            && self.empty_non_terminals == other.empty_non_terminals
            && self.pods == other.pods
            && self.pod_ips == other.pod_ips
            && self.fallthrough == other.fallthrough
    }
}

/// Whether `name` is `zone` or below it (both lower-case with a trailing dot).
pub fn in_zone(name: &str, zone: &str) -> bool {
    if zone == "." {
        return true;
    }
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|prefix| prefix.ends_with('.'))
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

/// The records the servers answer from, changed at run time. Readers hold the lock for one
/// answer; a writer replaces them whole (`store`) or changes a few services in place (`write`),
/// which takes microseconds however large the zone is.
#[derive(Clone, Debug)]
pub struct SharedRecords(Arc<RwLock<Records>>);

impl SharedRecords {
    pub fn new(records: Records) -> Self {
        SharedRecords(Arc::new(RwLock::new(records)))
    }

    /// The current records, read-locked: hold it for one answer, not across an `.await`.
    pub fn load(&self) -> RwLockReadGuard<'_, Records> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The records, write-locked: readers wait until the guard is dropped.
    pub fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the records; returns the previous ones.
    pub fn store(&self, records: Records) -> Records {
        std::mem::replace(&mut *self.write(), records)
    }
}

#[cfg(test)]
mod tests;
