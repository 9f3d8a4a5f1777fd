//! What the kernel's `DNS_TREE` holds (see `dns_common::tree`): the zone's names down to
//! `MAX_DEPTH` levels that exist or have names below them, each flagged complete (every name
//! userspace knows below it lies under one of its children in the tree) and empty (A and AAAA
//! questions are NODATA). The kernel answers NXDOMAIN only where these promises prove it.

use std::collections::BTreeMap;

use dns_common::tree::{FLAG_COMPLETE, FLAG_EMPTY, MAX_DEPTH, MAX_ZONE_LABELS};

use super::settings::is_reverse;
use super::{in_zone, qtype, Outcome, Rcode, Records, ServiceEntry};

impl Records {
    /// Whether the apex may promise completeness: userspace answers NXDOMAIN (not SERVFAIL,
    /// not the rest of the chain) for every name of the primary zone that no source names, and
    /// the kernel can find the zone in a question.
    pub fn negative_complete(&self) -> bool {
        let zone = self.zone.as_str();
        let labels = zone.trim_end_matches('.').split('.').count();
        let nested = self
            .zones
            .iter()
            .any(|z| z.as_str() != zone && in_zone(z, zone));
        let falls = match &self.fallthrough {
            None => false,
            Some(zones) if zones.is_empty() => true,
            Some(zones) => zones.iter().any(|z| in_zone(z, zone) || in_zone(zone, z)),
        };
        self.synced
            && zone != "."
            && !is_reverse(zone)
            && (1..=MAX_ZONE_LABELS).contains(&labels)
            && !nested
            && !falls
    }

    /// Whether A and AAAA questions of the apex are NODATA.
    pub fn apex_empty(&self) -> bool {
        self.addressless(&self.zone)
    }

    /// Every node of the tree: the names at depth 1 to `MAX_DEPTH` below the primary zone that
    /// are, or are above, a name userspace answers for, with their `FLAG_*` bits.
    pub fn kernel_tree(&self) -> BTreeMap<String, u32> {
        let zone = &self.zone;
        let services = self
            .services
            .iter()
            .filter(|(_, entry)| has_names(entry))
            .map(|(short, _)| format!("{short}.svc.{zone}"));
        let mut out = BTreeMap::new();
        let named = self
            .empty_non_terminals
            .iter()
            .chain(self.txt.keys())
            .chain(self.a.keys())
            .chain(self.aaaa.keys())
            .chain(self.cname.keys())
            .cloned()
            .chain(services)
            .chain(self.fixed_nodes());
        for name in named {
            for node in self.ancestors(&name) {
                if !out.contains_key(node) && self.reachable(node) {
                    out.insert(node.to_owned(), self.node_flags(node));
                }
            }
        }
        out
    }

    /// The tree's entry for `name` (depth 1 to `MAX_DEPTH` below the primary zone), `None` when
    /// the tree does not hold it: what [`Records::kernel_tree`] has for it, computed alone.
    pub fn kernel_tree_node(&self, name: &str) -> Option<u32> {
        let depth = self.depth(name).filter(|d| (1..=MAX_DEPTH).contains(d))?;
        if !self.reachable(name) {
            return None;
        }
        let held = self.fixed_nodes().any(|n| n == name)
            || self.empty_non_terminals.contains(name)
            || self.txt.contains_key(name)
            || self.a.contains_key(name)
            || self.aaaa.contains_key(name)
            || self.cname.contains_key(name)
            || self.has_service(name)
            || (depth < MAX_DEPTH && self.holds_below(name));
        held.then(|| self.node_flags(name))
    }

    /// The tree nodes a change of `name` (any name of the zone) may touch: its ancestors at
    /// depth 1 to `MAX_DEPTH`.
    pub fn tree_nodes_of<'a>(&self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.ancestors(name)
    }

    /// `name`'s suffixes at depth 1 to `MAX_DEPTH` below the primary zone, nearest the zone
    /// first (Kubernetes names hold no escaped dots).
    fn ancestors<'a>(&self, name: &'a str) -> impl Iterator<Item = &'a str> {
        let prefix = self.prefix(name).unwrap_or("");
        // Where each label of the prefix starts, the one next to the zone first.
        let starts = prefix
            .char_indices()
            .filter(|&(i, c)| c == '.' && i + 1 < prefix.len())
            .map(|(i, _)| i + 1);
        let mut starts: Vec<usize> = std::iter::once(0).chain(starts).collect();
        if prefix.is_empty() {
            starts.clear();
        }
        starts
            .into_iter()
            .rev()
            .take(MAX_DEPTH)
            .map(move |start| &name[start..])
    }

    /// Labels of `name` above the primary zone; `None` outside it or in a zone the kernel
    /// cannot answer negatively for.
    fn depth(&self, name: &str) -> Option<usize> {
        Some(self.prefix(name)?.matches('.').count())
    }

    /// `name` without the primary zone (`"www.default.svc."` for `www.default.svc.<zone>`);
    /// `None` outside the zone, or when the zone is the root or a reverse zone.
    fn prefix<'a>(&self, name: &'a str) -> Option<&'a str> {
        let zone = self.zone.as_str();
        if zone == "." || is_reverse(zone) || !in_zone(name, zone) {
            return None;
        }
        Some(&name[..name.len() - zone.len()])
    }

    /// Names the tree always holds: `pod`, `dns` and `hostmaster` below the zone. Names below
    /// `pod.<zone>` are made up from the question (pod addresses); userspace's encoder points
    /// the SOA's MNAME and RNAME into a question under `dns.<zone>` or `hostmaster.<zone>`,
    /// which the kernel's record cannot reproduce: none of the three is complete, so the kernel
    /// never answers below them.
    fn fixed_nodes(&self) -> impl Iterator<Item = String> + '_ {
        ["pod", "dns", "hostmaster"]
            .into_iter()
            .map(|l| format!("{l}.{}", self.zone))
    }

    /// Whether the kernel's walk can reach `name`: no `pod`/`dns`/`hostmaster` node above it.
    fn reachable(&self, name: &str) -> bool {
        !self
            .fixed_nodes()
            .any(|fixed| fixed != name && in_zone(name, &fixed))
    }

    fn node_flags(&self, name: &str) -> u32 {
        let fixed = self.fixed_nodes().any(|n| n == name);
        let depth = self.depth(name).unwrap_or(0);
        let mut flags = 0;
        if !fixed && depth < MAX_DEPTH {
            flags |= FLAG_COMPLETE;
        }
        // `pod.<zone>`'s own NODATA points nowhere into the question; see `fixed_nodes`.
        let pointed_into = fixed && !name.starts_with("pod.");
        if !pointed_into && self.addressless(name) {
            flags |= FLAG_EMPTY;
        }
        flags
    }

    /// Whether userspace answers both address questions of `name` NODATA.
    fn addressless(&self, name: &str) -> bool {
        [qtype::A, qtype::AAAA].into_iter().all(|t| {
            matches!(self.resolve(name, t), Outcome::Answer(r)
                if r.rcode == Rcode::NoError && r.answers.is_empty())
        })
    }

    /// Whether `name` is the name `<svc>.<ns>.svc.<zone>` of a served service with names.
    fn has_service(&self, name: &str) -> bool {
        name.strip_suffix(self.zone.as_str())
            .and_then(|rel| rel.strip_suffix(".svc."))
            .and_then(|short| self.services.get(short))
            .is_some_and(has_names)
    }

    /// Whether a name of a source lies strictly below `name` (at depth 1 or 2). Services and
    /// ExternalName CNAMEs live only in exposed namespaces, whose `<ns>.svc.<zone>` is an empty
    /// non-terminal: below `<ns>.svc.<zone>` and `svc.<zone>` that name stands for them.
    fn holds_below(&self, name: &str) -> bool {
        let suffix = format!(".{name}");
        self.empty_non_terminals
            .iter()
            .chain(self.txt.keys())
            .chain(self.a.keys())
            .chain(self.aaaa.keys())
            .chain(self.cname.keys())
            .any(|n| n.ends_with(&suffix))
    }
}

/// Whether a service has any name: a ClusterIP service always; a headless one through its
/// served endpoints (its own name, the endpoint names and every SRV name come from them).
fn has_names(entry: &ServiceEntry) -> bool {
    entry.cluster_ips.is_some() || entry.endpoints().next().is_some()
}
