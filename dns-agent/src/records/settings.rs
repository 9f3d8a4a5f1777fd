//! The options of the Corefile `kubernetes` block that shape the records, and label selectors.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::cluster::Labels;

/// Largest `ttl` the `kubernetes` plugin accepts.
pub const MAX_TTL: u32 = 3600;
/// The `ttl` when none is given.
pub const DEFAULT_TTL: u32 = 5;

/// A setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("ttl {0} is out of range: give a value from 0 to 3600")]
    Ttl(u32),
    #[error("no zone given: the kubernetes block needs at least one zone")]
    NoZone,
    #[error("zone {0:?} is not a domain name: give it as `cluster.local` or `cluster.local.`")]
    Zone(String),
    #[error("fallthrough zone {0:?} is not a domain name")]
    FallthroughZone(String),
    #[error("label selector {selector:?}: {reason}")]
    Selector { selector: String, reason: String },
    #[error("pods mode {0:?} is unknown: give insecure, verified or disabled")]
    Pods(String),
}

/// How `<a-b-c-d>.<ns>.pod.<zone>` is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodMode {
    /// No pod records (NXDOMAIN), CoreDNS's default.
    #[default]
    Disabled,
    /// The address in the name, without checking that such a pod exists.
    Insecure,
    /// Only when a pod with that address exists in that namespace.
    Verified,
}

impl FromStr for PodMode {
    type Err = SettingsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disabled" => Ok(PodMode::Disabled),
            "insecure" => Ok(PodMode::Insecure),
            "verified" => Ok(PodMode::Verified),
            other => Err(SettingsError::Pods(other.to_owned())),
        }
    }
}

/// What the records are computed with: the `kubernetes` block's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Zones served, lower-case with a trailing dot; the first forward zone is the primary
    /// one. Reverse zones (`in-addr.arpa.`, `ip6.arpa.` or below) serve PTR records.
    pub zones: Vec<String>,
    /// TTL of every record (0-3600, default 5).
    pub ttl: u32,
    /// `namespaces`: only these are exposed; empty exposes all.
    pub namespaces: BTreeSet<String>,
    /// `labels`: only Services (and their EndpointSlices) matching are exposed.
    pub labels: Option<LabelSelector>,
    /// `namespace_labels`: only namespaces whose Namespace object matches are exposed.
    pub namespace_labels: Option<LabelSelector>,
    /// `pods insecure|verified|disabled`.
    pub pods: PodMode,
    /// `endpoint_pod_names`: endpoints without a hostname are named after their pod.
    pub endpoint_pod_names: bool,
    /// `fallthrough [zones]`: `None` off; `Some(empty)` every zone; else these zones.
    /// A name that would be NXDOMAIN there goes to the rest of the chain instead.
    pub fallthrough: Option<Vec<String>>,
    /// `ignore empty_service`: ClusterIP services without endpoint addresses are NXDOMAIN.
    pub ignore_empty_service: bool,
    /// `noendpoints`: no endpoint records at all (headless services and endpoint names).
    pub noendpoints: bool,
    /// Addresses of `ns.dns.<zone>` when the cluster has no `kube-system/kube-dns` Service:
    /// the service IPs the agent answers on.
    pub dns_ips: Vec<IpAddr>,
}

impl Default for Settings {
    /// `kubernetes cluster.local in-addr.arpa ip6.arpa { fallthrough in-addr.arpa ip6.arpa }`:
    /// the block kubeadm writes.
    fn default() -> Self {
        Settings {
            zones: vec![
                "cluster.local.".to_owned(),
                "in-addr.arpa.".to_owned(),
                "ip6.arpa.".to_owned(),
            ],
            ttl: DEFAULT_TTL,
            namespaces: BTreeSet::new(),
            labels: None,
            namespace_labels: None,
            pods: PodMode::Disabled,
            endpoint_pod_names: false,
            fallthrough: Some(vec!["in-addr.arpa.".to_owned(), "ip6.arpa.".to_owned()]),
            ignore_empty_service: false,
            noendpoints: false,
            dns_ips: Vec::new(),
        }
    }
}

impl Settings {
    /// The default block with `zone` as the forward zone and `ttl` (the `--zone` and `--ttl`
    /// flags): reverse zones served, falling through when they have no record.
    pub fn new(zone: &str, ttl: u32) -> Self {
        let mut s = Settings {
            ttl,
            ..Settings::default()
        };
        s.zones[0] = normalize_zone(zone);
        s
    }

    /// Checks ranges and names; what `build` assumes.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.ttl > MAX_TTL {
            return Err(SettingsError::Ttl(self.ttl));
        }
        if self.zones.is_empty() {
            return Err(SettingsError::NoZone);
        }
        for z in &self.zones {
            if !valid_name(z) {
                return Err(SettingsError::Zone(z.clone()));
            }
        }
        for z in self.fallthrough.iter().flatten() {
            if !valid_name(z) {
                return Err(SettingsError::FallthroughZone(z.clone()));
            }
        }
        Ok(())
    }

    /// The primary zone: the first one that is not a reverse zone (else the first).
    pub fn primary_zone(&self) -> &str {
        self.zones
            .iter()
            .find(|z| !is_reverse(z))
            .or(self.zones.first())
            .map_or(".", String::as_str)
    }

    /// Whether `ns` may be served (the `namespaces` option).
    pub fn namespace_allowed(&self, ns: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.contains(ns)
    }
}

/// `Cluster.Local` → `cluster.local.`.
pub fn normalize_zone(zone: &str) -> String {
    let mut z = zone.trim().to_ascii_lowercase();
    if !z.ends_with('.') {
        z.push('.');
    }
    z
}

/// Whether `zone` is `in-addr.arpa.`, `ip6.arpa.` or below one of them.
pub fn is_reverse(zone: &str) -> bool {
    super::in_zone(zone, "in-addr.arpa.") || super::in_zone(zone, "ip6.arpa.")
}

fn valid_name(name: &str) -> bool {
    if name == "." {
        return true;
    }
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    name.len() <= 254
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// A Kubernetes label selector in its string form: comma-separated requirements
/// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement (an empty selector matches everything).
    pub fn matches(&self, labels: &Labels) -> bool {
        let get = |k: &str| labels.get(k);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LabelSelector {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| SettingsError::Selector {
            selector: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(err("empty requirement (stray comma)"));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(label_key(key.trim()).ok_or_else(|| err("bad key after !"))?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(
                    label_key(k.trim()).ok_or_else(|| err("bad key before !="))?,
                    label_value(v.trim()).ok_or_else(|| err("bad value after !="))?,
                )
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(
                    label_key(k.trim()).ok_or_else(|| err("bad key before ="))?,
                    label_value(v.trim()).ok_or_else(|| err("bad value after ="))?,
                )
            } else if let Some((k, rest)) = set_op(part, " notin ") {
                Requirement::NotIn(
                    label_key(k).ok_or_else(|| err("bad key before notin"))?,
                    value_set(rest).ok_or_else(|| err("notin needs (v1,v2,...)"))?,
                )
            } else if let Some((k, rest)) = set_op(part, " in ") {
                Requirement::In(
                    label_key(k).ok_or_else(|| err("bad key before in"))?,
                    value_set(rest).ok_or_else(|| err("in needs (v1,v2,...)"))?,
                )
            } else {
                Requirement::Exists(label_key(part).ok_or_else(|| err("bad label key"))?)
            };
            requirements.push(req);
        }
        Ok(LabelSelector {
            text: text.to_owned(),
            requirements,
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn set_op<'a>(part: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let (k, rest) = part.split_once(op)?;
    Some((k.trim(), rest.trim()))
}

fn value_set(text: &str) -> Option<BTreeSet<String>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|v| label_value(v.trim())).collect()
}

fn label_key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    ok.then(|| k.to_owned())
}

fn label_value(v: &str) -> Option<String> {
    let ok = v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| v.to_owned())
}
