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

/// Value at index 0. All zero (as loaded): no zone, no negative answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Soa {
    /// Wire length of the zone's name, root label included; 0: no negative answers.
    pub zone_len: u32,
    /// TTL of the SOA record, network byte order.
    pub ttl_be: u32,
    /// SERIAL, REFRESH, RETRY, EXPIRE and MINIMUM, network byte order.
    pub numbers_be: [u32; 5],
}
const _: () = assert!(core::mem::size_of::<Soa>() == 28);

#[cfg(feature = "user")]
unsafe impl aya::Pod for Soa {}
