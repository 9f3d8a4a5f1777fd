//! Map `DNS_A`: the A records the kernel answers, keyed by a hash of the lower-cased name.
//!
//! The key is small and fixed (hash + length), so a lookup costs the same for a 20-byte and a
//! 250-byte name. The value carries the full lower-cased name and the kernel compares it word by
//! word with the question before answering: a hash collision can never return another name's
//! records. Two names that collide cannot both be in the map; the agent keeps the first and leaves
//! the other to userspace, which answers it the same way.
//!
//! AAAA records live in a map of their own, `DNS_AAAA` (module [`aaaa`]), with the same key.

use crate::name::NAME_WORDS;

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_A";
/// `HashMap` capacity (names) in the object; the agent may set another at load time
/// (`--kernel-map-entries`). The map is created with `BPF_F_NO_PREALLOC`, so kernel memory
/// follows the names stored, not this bound.
pub const CAPACITY: u32 = 1_048_576;
/// Most addresses one entry holds.
pub const MAX_ADDRS: usize = 32;

/// Value flag: the name exists but the kernel must not answer it (more addresses than
/// [`MAX_ADDRS`]); the packet is passed to userspace and counted as `too_big`.
pub const FLAG_USERSPACE_ONLY: u16 = 1;
/// Value flag: the name has no records of the other address type (AAAA for a `DNS_A` value, A
/// for a `DNS_AAAA` value) and lies in the zone of `DNS_SOA`: the kernel answers a question
/// for that type NODATA with the zone's SOA, as userspace does. Set by the agent from the
/// records, not from what the other map holds.
pub const FLAG_NO_OTHER_TYPE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NameKey {
    /// `name::hash_words` of the lower-cased wire name.
    pub hash: u64,
    /// Length of the wire name in bytes, root label included.
    pub len: u16,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<NameKey>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ARecords {
    /// The lower-cased wire name, zero-padded little-endian words (`name::pack_name`).
    pub name: [u64; NAME_WORDS],
    /// TTL of every record, host byte order.
    pub ttl: u32,
    /// Addresses in use in `addrs_be`, in answer order.
    pub count: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// IPv4 addresses, network byte order.
    pub addrs_be: [u32; MAX_ADDRS],
}
const _: () = assert!(core::mem::size_of::<ARecords>() == 256 + 8 + 4 * MAX_ADDRS);

#[cfg(feature = "user")]
unsafe impl aya::Pod for NameKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ARecords {}

pub use aaaa::{AaaaRecords, CAPACITY as AAAA_CAPACITY, MAP_NAME as AAAA_MAP_NAME, MAX_AAAA};

pub mod aaaa {
    //! Map `DNS_AAAA`: the AAAA records the kernel answers, a twin of `DNS_A`.
    //!
    //! ABI choice: a map of its own per record type, with the same key ([`NameKey`], the same
    //! name hash) and a value whose first fields (`name`, `ttl`, `count`, `flags`) have exactly
    //! the layout of [`ARecords`](super::ARecords). The kernel dispatches on QTYPE with one
    //! comparison, then looks up only the map of that type; the A path and its value stay as
    //! they were, and a name with only A (or only AAAA) records costs no memory in the other map.
    //! Collisions are handled per map, as for `DNS_A`.

    use crate::name::NAME_WORDS;

    /// Name of the map in the eBPF object.
    pub const MAP_NAME: &str = "DNS_AAAA";
    /// `HashMap` capacity (names) in the object, as for `DNS_A`.
    pub const CAPACITY: u32 = super::CAPACITY;
    /// Most addresses one entry holds.
    pub const MAX_AAAA: usize = 32;
    /// Value flag: the name has more than [`MAX_AAAA`] addresses; the kernel passes the packet
    /// to userspace and counts it as `too_big`.
    pub const FLAG_USERSPACE_ONLY: u16 = super::FLAG_USERSPACE_ONLY;
    /// Value flag: the name has no A records (see [`super::FLAG_NO_OTHER_TYPE`]).
    pub const FLAG_NO_OTHER_TYPE: u16 = super::FLAG_NO_OTHER_TYPE;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
    pub struct AaaaRecords {
        /// The lower-cased wire name, zero-padded little-endian words (`name::pack_name`).
        pub name: [u64; NAME_WORDS],
        /// TTL of every record, host byte order.
        pub ttl: u32,
        /// Addresses in use in `addrs`, in answer order.
        pub count: u16,
        /// `FLAG_*` bits.
        pub flags: u16,
        /// IPv6 addresses: the 16 octets in wire order, read as four native-endian words
        /// (`u32::from_ne_bytes` of each group of four octets).
        pub addrs: [[u32; 4]; MAX_AAAA],
    }
    const _: () = assert!(core::mem::size_of::<AaaaRecords>() == 256 + 8 + 16 * MAX_AAAA);
    // The common prefix with `ARecords` (the kernel compares names through either).
    const _: () = assert!(core::mem::offset_of!(AaaaRecords, ttl) == 256);
    const _: () = assert!(core::mem::offset_of!(super::ARecords, ttl) == 256);
    const _: () = assert!(core::mem::offset_of!(AaaaRecords, addrs) == 264);

    #[cfg(feature = "user")]
    unsafe impl aya::Pod for AaaaRecords {}
}
