//! Map `DNS_CONFIG`: which destination addresses and port the kernel program answers for.

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_CONFIG";
/// An `Array` with one entry, index 0.
pub const CAPACITY: u32 = 1;
/// Most IPv4 service addresses the kernel matches.
pub const MAX_SERVICE_IPV4: usize = 8;
/// Most IPv6 service addresses the kernel matches.
pub const MAX_SERVICE_IPV6: usize = 8;
/// Flag: rotate the addresses of every positive answer, one further per answer on each CPU
/// (the block that answers the zone runs `loadbalance`, which rotates them in userspace).
pub const FLAG_ROTATE: u16 = 1;

/// Value at index 0. An all-zero entry matches nothing (both counts are 0), so a freshly loaded
/// program passes every packet until the agent has written its configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Config {
    /// IPv4 destination addresses answered (network byte order); the first `ipv4_count` count.
    pub service_ipv4_be: [u32; MAX_SERVICE_IPV4],
    /// How many entries of `service_ipv4_be` are in use.
    pub ipv4_count: u32,
    /// UDP destination port answered, network byte order (53).
    pub port_be: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// IPv6 destination addresses answered: each address's 16 bytes in network order, held as
    /// two native-endian words (what two 8-byte loads of the packet give); the first
    /// `ipv6_count` count.
    pub service_ipv6_be: [[u64; 2]; MAX_SERVICE_IPV6],
    /// How many entries of `service_ipv6_be` are in use.
    pub ipv6_count: u32,
    pub _pad6: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 176);

impl Config {
    /// The words of `service_ipv6_be` for an address's 16 network-order bytes.
    pub const fn ipv6_words(octets: [u8; 16]) -> [u64; 2] {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            lo[i] = octets[i];
            hi[i] = octets[8 + i];
            i += 1;
        }
        [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
