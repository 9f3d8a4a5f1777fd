//! IPv4: header validation (options allowed, no fragments, checksum verified), address swap and
//! header checksum.

use dns_common::stats;

use crate::{
    ip::{IPPROTO_UDP, REPLY_TTL},
    packet::{opaque, read, write, Packet},
};

/// The fixed part of the IPv4 header (RFC 791), as laid out on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check: u16,
    pub saddr_be: u32,
    pub daddr_be: u32,
}

/// Where the IPv4 header is and what the later stages need from it.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    /// Offset of the IPv4 header in the packet.
    pub off: usize,
    /// Header length in bytes, options included (20..=60).
    pub hdr_len: usize,
    /// Total length from the header.
    pub tot_len: usize,
    pub daddr_be: u32,
}

/// Validates the IPv4 header at `off` and checks it carries a whole (unfragmented) UDP datagram.
#[inline(always)]
pub fn parse<P: Packet>(p: &P, off: usize) -> Result<Ipv4, u32> {
    let h: Ipv4Hdr = read(p, off)?;
    if h.ver_ihl >> 4 != 4 {
        return Err(stats::MALFORMED);
    }
    let hdr_len = ((h.ver_ihl & 0x0f) as usize) * 4;
    if hdr_len < 20 {
        return Err(stats::MALFORMED);
    }
    if h.protocol != IPPROTO_UDP {
        return Err(stats::NOT_UDP);
    }
    // More-fragments flag or a fragment offset.
    if u16::from_be(h.frag_off_be) & 0x3fff != 0 {
        return Err(stats::FRAGMENT);
    }
    let tot_len = u16::from_be(h.tot_len_be) as usize;
    if tot_len < hdr_len + 8 || off + tot_len > p.len() {
        return Err(stats::MALFORMED);
    }
    // The header checksum, options included: the stack would drop a header that fails it, so
    // the kernel must not answer it either (the UDP checksum cannot be checked: a pod's
    // datagrams come with it left to offload).
    let w: [u32; 5] = read(p, off)?;
    let mut sum = w[0] as u64 + w[1] as u64 + w[2] as u64 + w[3] as u64 + w[4] as u64;
    let mut i = 5;
    while i < 15 {
        if i * 4 >= hdr_len {
            break;
        }
        sum += read::<u32, P>(p, off + i * 4)? as u64;
        i += 1;
    }
    if crate::answer::fold(sum) != 0xffff {
        return Err(stats::MALFORMED);
    }
    // The loop left the verifier one state per header length, each verified apart through
    // the whole program: forgotten (and bounded again), the rest is verified once.
    let hdr_len = opaque(hdr_len as u64)? as usize;
    if !(20..=60).contains(&hdr_len) {
        return Err(stats::MALFORMED);
    }
    Ok(Ipv4 {
        off,
        hdr_len,
        tot_len,
        daddr_be: h.daddr_be,
    })
}

/// Turns the header around: addresses swapped, new total length, fresh TTL, checksum recomputed
/// from scratch over the whole header (options included). Returns the little-endian sum of both
/// addresses, which the UDP pseudo-header needs.
///
/// The fixed header is read once as five words and written back as five words, and the checksum
/// is summed from those registers: reading back what was just stored in narrower pieces (a byte
/// of TTL, a half-word of length) would stall on store-to-load forwarding.
#[inline(always)]
pub fn reply<P: Packet>(p: &P, ip: &Ipv4, tot_len: usize) -> Result<u64, u32> {
    // Little-endian words: [ver_ihl tos tot_len] [id frag_off] [ttl protocol check] [saddr] [daddr].
    let w: [u32; 5] = read(p, ip.off)?;
    let w0 = (w[0] & 0xffff) | ((tot_len as u16).to_be() as u32) << 16;
    let w2 = (w[2] & 0xff00) | REPLY_TTL as u32;
    let addrs = w[3] as u64 + w[4] as u64;
    // Little-endian sum of the header's 32-bit words (see answer::fold for why that works).
    let mut sum = w0 as u64 + w[1] as u64 + w2 as u64 + addrs;
    // Options are left as they are: summed straight from the packet.
    let mut i = 5;
    while i < 15 {
        if i * 4 >= ip.hdr_len {
            break;
        }
        sum += read::<u32, P>(p, ip.off + i * 4)? as u64;
        i += 1;
    }
    let check = !crate::answer::fold(sum) as u32;
    write(p, ip.off, [w0, w[1], w2 | check << 16, w[4], w[3]])?;
    Ok(addrs)
}

/// Swaps source and destination addresses only (checksum unchanged: the sum is symmetric).
#[inline(always)]
pub fn swap_addrs<P: Packet>(p: &P, ip: &Ipv4) -> Result<(), u32> {
    let s: u32 = read(p, ip.off + 12)?;
    let d: u32 = read(p, ip.off + 16)?;
    write(p, ip.off + 12, d)?;
    write(p, ip.off + 16, s)
}
