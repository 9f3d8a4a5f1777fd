//! Map `DNS_SOA`: the SOA record of the cluster zone, which the kernel's negative answers carry
//! in their authority section exactly as userspace writes it.
//!
//! The record is rendered against the question: its owner is a compression pointer to the zone
//! as it ends the question's name, MNAME is `ns.dns.<zone>` and RNAME `hostmaster.<zone>`, each
//! its first labels and a pointer to the same place (what userspace's encoder makes of them).

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_SOA";
/// An `Array` with one entry, index 0.
pub const CAPACITY: u32 = 1;
/// The labels MNAME puts before the zone, wire form.
pub const MNAME_LABELS: [u8; 7] = *b"\x02ns\x03dns";
/// The label RNAME puts before the zone, wire form.
pub const RNAME_LABELS: [u8; 11] = *b"\x0ahostmaster";
/// Size of the SOA record in a negative answer: owner pointer, type, class, TTL, RDLENGTH (12),
/// then MNAME (9), RNAME (13) and the five numbers (20).
pub const RECORD_LEN: usize = 12 + MNAME_LABELS.len() + 2 + RNAME_LABELS.len() + 2 + 20;
const _: () = assert!(RECORD_LEN == 54);

/// Flag: the zone apex is complete (see `dns_common::tree`): the kernel may answer NXDOMAIN,
/// and NODATA for the names of `DNS_TREE` flagged empty. Cleared while userspace would answer
/// SERVFAIL (before the first complete list), when a `fallthrough` or a served zone below this
/// one could answer a name the tree does not hold, or when the tree could not be written whole.
pub const FLAG_NEGATIVE: u32 = 1;
/// Flag: A and AAAA questions of the apex itself are NODATA.
pub const FLAG_APEX_EMPTY: u32 = 2;

/// Value at index 0. All zero (as loaded): no zone, no negative answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Soa {
    /// Wire length of the zone's name, root label included; 0: no negative answers.
    pub zone_len: u32,
    /// TTL of the SOA record, network byte order.
    pub ttl_be: u32,
    /// SERIAL, REFRESH, RETRY, EXPIRE and MINIMUM, network byte order.
    pub numbers_be: [u32; 5],
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Labels of the zone's name, root excluded (1..=`tree::MAX_ZONE_LABELS` for NXDOMAIN).
    pub zone_labels: u32,
    /// Bumped by the agent after every change of the address maps and `DNS_TREE` is written
    /// whole: a negative answer the kernel remembers (`tree::Proven`) holds only while this is
    /// the generation it was proven in.
    pub generation: u32,
    /// The zone's lower-cased wire name, zero-padded little-endian words (`name::pack_name`).
    pub zone: [u64; crate::name::NAME_WORDS],
}
const _: () = assert!(core::mem::size_of::<Soa>() == 40 + 256);

impl Default for Soa {
    fn default() -> Self {
        bytemuck::Zeroable::zeroed()
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Soa {}
