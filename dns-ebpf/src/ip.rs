//! The IP layer behind one type: an IPv4 or an IPv6 header, for the service-address check, the
//! reply's header and the UDP pseudo-header sum (the same formula for both versions).

use dns_common::config::Config;

use crate::{
    eth::Proto,
    ipv4::{self, Ipv4},
    ipv6::{self, Ipv6},
    packet::Packet,
};

pub const IPPROTO_UDP: u8 = 17;
/// Time to live (hop limit) of every packet the programs send.
pub const REPLY_TTL: u8 = 64;

/// An accepted IP header carrying one whole UDP datagram.
#[derive(Clone, Copy)]
pub enum Ip {
    V4(Ipv4),
    V6(Ipv6),
}

impl Ip {
    /// Validates the header of protocol `proto` at `off` (what `eth::parse` found).
    #[inline(always)]
    pub fn parse<P: Packet>(p: &P, (proto, off): (Proto, usize)) -> Result<Ip, u32> {
        match proto {
            Proto::Ipv4 => Ok(Ip::V4(ipv4::parse(p, off)?)),
            Proto::Ipv6 => Ok(Ip::V6(ipv6::parse(p, off)?)),
        }
    }

    /// Offset of the IP header.
    #[inline(always)]
    pub fn off(&self) -> usize {
        match self {
            Ip::V4(h) => h.off,
            Ip::V6(h) => h.off,
        }
    }

    /// Header length: 20..=60 for IPv4, 40 for IPv6.
    #[inline(always)]
    pub fn hdr_len(&self) -> usize {
        match self {
            Ip::V4(h) => h.hdr_len,
            Ip::V6(_) => ipv6::HDR_LEN,
        }
    }

    /// Bytes after the header the header accounts for: the UDP datagram's length.
    #[inline(always)]
    pub fn payload_len(&self) -> usize {
        match self {
            Ip::V4(h) => h.tot_len - h.hdr_len,
            Ip::V6(h) => h.payload_len,
        }
    }

    /// Whether the destination is one of `cfg`'s service addresses of this version.
    #[inline(always)]
    pub fn to_service(&self, cfg: &Config) -> bool {
        match self {
            Ip::V4(h) => {
                for (i, &a) in cfg.service_ipv4_be.iter().enumerate() {
                    if i as u32 >= cfg.ipv4_count {
                        return false;
                    }
                    if a == h.daddr_be {
                        return true;
                    }
                }
                false
            }
            Ip::V6(h) => {
                for (i, a) in cfg.service_ipv6_be.iter().enumerate() {
                    if i as u32 >= cfg.ipv6_count {
                        return false;
                    }
                    if a[0] == h.daddr[0] && a[1] == h.daddr[1] {
                        return true;
                    }
                }
                false
            }
        }
    }

    /// Turns the header around for a reply whose UDP datagram is `udp_len` bytes (addresses
    /// swapped, lengths, TTL/hop limit 64, IPv4 header checksum); returns the addresses' share
    /// of the UDP pseudo-header sum (little-endian). The rest of the pseudo-header (protocol
    /// 17, the UDP length) sums the same for both versions.
    #[inline(always)]
    pub fn reply<P: Packet>(&self, p: &P, udp_len: usize) -> Result<u64, u32> {
        match self {
            Ip::V4(h) => ipv4::reply(p, h, h.hdr_len + udp_len),
            Ip::V6(h) => ipv6::reply(p, h, udp_len),
        }
    }

    /// Swaps source and destination addresses only.
    #[inline(always)]
    pub fn swap_addrs<P: Packet>(&self, p: &P) -> Result<(), u32> {
        match self {
            Ip::V4(h) => ipv4::swap_addrs(p, h),
            Ip::V6(h) => ipv6::swap_addrs(p, h),
        }
    }
}
