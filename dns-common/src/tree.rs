//! Map `DNS_TREE`: the names of the cluster zone's upper levels, so that the kernel can answer
//! NXDOMAIN for a name userspace does not know (the search-path expansions `ndots:5` produces,
//! `www.example.org.default.svc.cluster.local`, and unknown services) without guessing.
//!
//! The agent writes every name at depth 1 to [`MAX_DEPTH`] below the zone (`svc.<zone>`,
//! `<ns>.svc.<zone>`, `<svc>.<ns>.svc.<zone>`, ...) that is, or is an ancestor of, a name
//! userspace answers for. A node flagged [`FLAG_COMPLETE`] promises that every name below it
//! userspace knows lies under one of its children in the map; the zone apex makes the same
//! promise through `dns_common::soa::FLAG_NEGATIVE`. The kernel walks the question's
//! ancestors from the zone down: the first one missing under a complete parent proves the
//! question does not exist (NXDOMAIN with the zone's SOA). Any doubt (a parent not complete,
//! the walk deeper than [`MAX_DEPTH`]) passes the query to userspace.
//!
//! The key and the name check are those of `DNS_A` ([`crate::records::NameKey`]).

use crate::name::NAME_WORDS;

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_TREE";
/// `HashMap` capacity (names) in the object; the agent sets the same capacity as `DNS_A`'s at
/// load time (`--kernel-map-entries`). Created with `BPF_F_NO_PREALLOC`.
pub const CAPACITY: u32 = crate::records::CAPACITY;
/// Deepest level below the zone the kernel looks at (`<svc>.<ns>.svc.<zone>` is level 3).
pub const MAX_DEPTH: usize = 3;
/// Most labels a zone may have for the kernel to answer negatively: the question's last
/// `zone labels + MAX_DEPTH` label offsets are kept in one 64-bit word, a byte each.
pub const MAX_ZONE_LABELS: usize = 8 - MAX_DEPTH;

/// Node flag: every name below this one that exists lies under one of its children in the map.
pub const FLAG_COMPLETE: u32 = 1;
/// Node flag: the name exists and has no A, AAAA or CNAME record: both address questions are
/// NODATA with the zone's SOA.
pub const FLAG_EMPTY: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Node {
    /// The lower-cased wire name, zero-padded little-endian words (`name::pack_name`).
    pub name: [u64; NAME_WORDS],
    /// `FLAG_*` bits.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Node>() == 256 + 8);

#[cfg(feature = "user")]
unsafe impl aya::Pod for Node {}

/// Name of the kernel's own map of the negative answers it proved (`DNS_PROVEN`): an LRU keyed
/// like `DNS_A`, so that the next question for the same name (an application resolving the
/// same external name again through the search path) costs one lookup instead of the walk.
pub const PROVEN_MAP_NAME: &str = "DNS_PROVEN";
/// Entries of `DNS_PROVEN`.
pub const PROVEN_CAPACITY: u32 = 65_536;

/// A negative answer the kernel proved from the tree, valid while `DNS_SOA`'s generation is
/// still `generation` (the agent bumps it after every change).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Proven {
    /// The lower-cased wire name, zero-padded little-endian words (`name::pack_name`).
    pub name: [u64; NAME_WORDS],
    /// `DNS_SOA`'s generation when the walk began.
    pub generation: u32,
    /// The answer's RCODE: 3 (NXDOMAIN) or 0 (NODATA).
    pub rcode: u32,
}
const _: () = assert!(core::mem::size_of::<Proven>() == 256 + 8);
