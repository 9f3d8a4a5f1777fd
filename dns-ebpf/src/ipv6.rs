//! IPv6: fixed-header validation (UDP directly behind it, payload length within the packet),
//! the reply's header and the addresses' share of the UDP pseudo-header sum.

use dns_common::stats;

use crate::{
    ip::{IPPROTO_UDP, REPLY_TTL},
    packet::{read, write, Packet},
};

/// Length of the fixed IPv6 header (RFC 8200).
pub const HDR_LEN: usize = 40;
/// Next-header value of a Fragment header.
const NEXT_FRAGMENT: u8 = 44;

/// Where the IPv6 header is and what the later stages need from it.
#[derive(Clone, Copy)]
pub struct Ipv6 {
    /// Offset of the IPv6 header in the packet.
    pub off: usize,
    /// Payload length from the header (the UDP datagram: no extension headers are accepted).
    pub payload_len: usize,
    /// Destination address as two native-endian words of its network-order bytes
    /// (`Config::service_ipv6_be`'s form).
    pub daddr: [u64; 2],
}

/// Whether `next` is an IPv6 extension header (RFC 8200 §4, the IANA list) other than Fragment:
/// Hop-by-Hop, Routing, Destination Options, AH, ESP, Mobility, HIP, Shim6, experimental.
#[inline(always)]
fn is_extension(next: u8) -> bool {
    matches!(next, 0 | 43 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// Validates the fixed IPv6 header at `off`: version 6, UDP as the next header (an extension
/// header or a fragment is left to the stack), a payload that fits in the packet, a source
/// that is not multicast.
#[inline(always)]
pub fn parse<P: Packet>(p: &P, off: usize) -> Result<Ipv6, u32> {
    // Little-endian words: [version, traffic class, flow label] [payload length, next, hops].
    let w: [u32; 2] = read(p, off)?;
    if w[0] & 0xf0 != 0x60 {
        return Err(stats::MALFORMED);
    }
    let [len_hi, len_lo, next, _hops] = w[1].to_ne_bytes();
    if next != IPPROTO_UDP {
        return Err(if next == NEXT_FRAGMENT {
            stats::FRAGMENT
        } else if is_extension(next) {
            stats::IPV6_EXT
        } else {
            stats::NOT_UDP
        });
    }
    // Zero would be a jumbogram, which needs a Hop-by-Hop header; bytes past the payload are
    // Ethernet padding.
    let payload_len = u16::from_be_bytes([len_hi, len_lo]) as usize;
    if payload_len < 8 || off + HDR_LEN + payload_len > p.len() {
        return Err(stats::MALFORMED);
    }
    // The stack drops a multicast source (RFC 4291 §2.7), so the kernel must not answer it
    // either: its first byte is ff.
    if read::<u16, P>(p, off + 8)?.to_ne_bytes()[0] == 0xff {
        return Err(stats::MALFORMED);
    }
    Ok(Ipv6 {
        off,
        payload_len,
        daddr: read(p, off + 24)?,
    })
}

/// Turns the header around: addresses swapped, payload length `payload_len`, hop limit 64;
/// version, traffic class and flow label kept. Returns the little-endian sum of both addresses
/// for the UDP pseudo-header. Read once, written once, summed from registers (see
/// `ipv4::reply`).
#[inline(always)]
pub fn reply<P: Packet>(p: &P, ip: &Ipv6, payload_len: usize) -> Result<u64, u32> {
    // Little-endian words: [ver tc flow] [len next hops] [saddr × 4] [daddr × 4].
    let w: [u32; 10] = read(p, ip.off)?;
    let w1 =
        (payload_len as u16).to_be() as u32 | (IPPROTO_UDP as u32) << 16 | (REPLY_TTL as u32) << 24;
    let mut sum = 0u64;
    let mut i = 2;
    while i < 10 {
        sum += w[i] as u64;
        i += 1;
    }
    write(
        p,
        ip.off,
        [w[0], w1, w[6], w[7], w[8], w[9], w[2], w[3], w[4], w[5]],
    )?;
    Ok(sum)
}

/// Swaps source and destination addresses only.
#[inline(always)]
pub fn swap_addrs<P: Packet>(p: &P, ip: &Ipv6) -> Result<(), u32> {
    let a: [u64; 4] = read(p, ip.off + 8)?;
    write(p, ip.off + 8, [a[2], a[3], a[0], a[1]])
}
