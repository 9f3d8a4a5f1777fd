//! Map `DNS_STATS`: per-CPU counters of what the kernel program did with each packet.

/// Name of the map in the eBPF object (a `PerCpuArray<u64>` indexed by reason).
pub const MAP_NAME: &str = "DNS_STATS";

/// The packet was answered in the kernel.
pub const ANSWERED: u32 = 0;
/// Neither IPv4 nor IPv6 (other EtherTypes, more than one VLAN tag).
pub const NOT_IP: u32 = 1;
/// IPv4 fragment, or an IPv6 packet with a Fragment header.
pub const FRAGMENT: u32 = 2;
/// Not UDP (for IPv6: a next header that is neither UDP nor an extension header).
pub const NOT_UDP: u32 = 3;
/// UDP, but not to a configured service address and port.
pub const NOT_SERVICE: u32 = 4;
/// Truncated or inconsistent headers, lengths or question name; a wrong IPv4 header checksum;
/// a UDP checksum of zero over IPv6 (the stack drops those).
pub const MALFORMED: u32 = 5;
/// Not a standard query: QR set, opcode not QUERY, or section counts other than one question.
pub const NOT_QUERY: u32 = 6;
/// An additional record that is not a well-formed EDNS(0) OPT, or an EDNS version other than 0.
pub const EDNS: u32 = 7;
/// Class other than IN.
pub const NOT_CLASS_IN: u32 = 8;
/// Query type the kernel does not answer.
pub const QTYPE: u32 = 9;
/// Name not in the map.
pub const MISS: u32 = 10;
/// The answer would not fit the client's limit (512 bytes, or the EDNS size), or the name has
/// more addresses than the kernel holds.
pub const TOO_BIG: u32 = 11;
/// A kernel helper failed (growing the packet, redirecting).
pub const HELPER_FAILED: u32 = 12;
/// IPv6 with extension headers (Hop-by-Hop, Routing, Destination Options, ...) before UDP.
pub const IPV6_EXT: u32 = 13;

/// Number of counters (the map's capacity).
pub const COUNT: u32 = 14;

/// Label value of each counter in the agent's metrics, indexed by reason.
pub const REASON_NAMES: [&str; COUNT as usize] = [
    "answered",
    // The metric label operators know (named before IPv6 was answered): neither IPv4 nor IPv6.
    "not_ipv4",
    "fragment",
    "not_udp",
    "not_service",
    "malformed",
    "not_query",
    "edns",
    "not_class_in",
    "qtype",
    "miss",
    "too_big",
    "helper_failed",
    "ipv6_ext",
];
