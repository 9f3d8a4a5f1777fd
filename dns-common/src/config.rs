//! Map `DNS_CONFIG`: which destination addresses and port the kernel program answers for.

/// Name of the map in the eBPF object.
pub const MAP_NAME: &str = "DNS_CONFIG";
/// An `Array` with one entry, index 0.
pub const CAPACITY: u32 = 1;
/// Most IPv4 service addresses the kernel matches.
pub const MAX_SERVICE_IPV4: usize = 8;

/// Value at index 0. An all-zero entry matches nothing, so a freshly loaded program passes
/// every packet until the agent has written its configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Config {
    /// IPv4 destination addresses answered (network byte order); the first `ipv4_count` count.
    pub service_ipv4_be: [u32; MAX_SERVICE_IPV4],
    /// How many entries of `service_ipv4_be` are in use.
    pub ipv4_count: u32,
    /// UDP destination port answered, network byte order (53).
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<Config>() == 40);

#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
