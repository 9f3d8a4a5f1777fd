//! Map `DNS_CACHE`: answers of the userspace `cache` plugin (external names) the kernel repeats
//! until they expire, with the TTL decayed exactly as userspace decays it.
//!
//! An `LRU_HASH` keyed by the lower-cased question name's hash (the `DNS_A` hash) and QTYPE. The
//! value carries the full lower-cased name (a hash collision never answers another name), the
//! response's flag bytes, the expiry and the instant the TTL decays from (both CLOCK_MONOTONIC
//! nanoseconds, `bpf_ktime_get_ns`), one TTL and up to [`MAX_ADDRS`] addresses. The agent writes
//! an entry when its cache stores a response the kernel reproduces byte for byte (only address
//! records owned by the question name, through the pointer `C0 0C`) and deletes it when the
//! userspace entry is evicted or replaced. The kernel only reads.

use crate::name::NAME_WORDS;

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_CACHE";
/// Capacity (entries) in the object; the agent sets the capacity of its caches at load time.
pub const CAPACITY: u32 = 9984;
/// Most address records one entry holds.
pub const MAX_ADDRS: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CacheKey {
    /// `name::hash_words` of the lower-cased wire name (as `records::NameKey::hash`).
    pub hash: u64,
    /// Length of the wire name in bytes, root label included.
    pub len: u16,
    /// QTYPE, host byte order: 1 (A) or 28 (AAAA).
    pub qtype: u16,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<CacheKey>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CachedAnswer {
    /// The lower-cased wire name, zero-padded little-endian words (`name::pack_name`). Only a
    /// question spelled exactly so is answered (userspace's byte path needs the same).
    pub name: [u64; NAME_WORDS],
    /// CLOCK_MONOTONIC nanoseconds from which the entry is expired: never answered then.
    pub expires_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds the TTL decays from: the answer carries
    /// `ttl - (now - decay_from_ns) / 1e9` (whole seconds, saturating at 0).
    pub decay_from_ns: u64,
    /// TTL of every record at `decay_from_ns`, host byte order.
    pub ttl: u32,
    /// Address records in use (1..=`MAX_ADDRS`).
    pub count: u16,
    /// The response's two flag bytes as userspace's cache sends them (QR, AA, RA, AD, RCODE
    /// ...); the kernel replaces RD with the query's.
    pub flags: [u8; 2],
    /// The addresses in answer order: A uses the first word of each slot, AAAA all four (the
    /// 16 octets in wire order, read as native-endian words).
    pub addrs: [[u32; 4]; MAX_ADDRS],
}
const _: () = assert!(core::mem::size_of::<CachedAnswer>() == 256 + 24 + 16 * MAX_ADDRS);

#[cfg(feature = "user")]
unsafe impl aya::Pod for CacheKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CachedAnswer {}
