//! The answer: rewrites an accepted query in place into the response and computes its checksums.
//!
//! Checksums are summed over little-endian loads (RFC 1071 §2(B): byte order only swaps the
//! folded result, and storing it little-endian swaps it back), so wire bytes never need swapping.

use dns_common::{config, soa, soa::Soa, stats};

use crate::{
    dns::{Found, Query},
    eth,
    ip::Ip,
    packet::{read, write, Packet},
    rrset::Rrset,
    udp::Udp,
    DNS_CONFIG, DNS_SOA, DNS_TURN,
};

/// Size of the OPT record sent back (no options).
const OPT_LEN: usize = 11;
/// Response size limit without EDNS (RFC 1035).
const CLASSIC_UDP_SIZE: usize = 512;
/// RCODE of a positive answer or NODATA.
pub const NOERROR: u8 = 0;
/// RCODE of a name that does not exist.
pub const NXDOMAIN: u8 = 3;

/// Folds a little-endian one's-complement sum into 16 bits.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Sum of the two 32-bit halves of `w`: a 64-bit word added to a one's-complement sum.
#[inline(always)]
pub fn halves(w: u64) -> u64 {
    (w & 0xffff_ffff) + (w >> 32)
}

/// Turns the query into the answer for `found`, resizing the packet; the caller sends it back.
#[inline(always)]
pub fn reply<P: Packet, R: Rrset>(
    p: &mut P,
    ip: &Ip,
    udp: &Udp,
    q: &Query,
    found: &Found<R>,
) -> Result<(), u32> {
    // SAFETY: a map value pointer stays valid for the whole program run.
    let rec: &R = unsafe { &*found.rec };
    let n = rec.count();
    if rec.userspace_only() || n > R::MAX {
        return Err(stats::TOO_BIG);
    }
    if n == 0 {
        return Err(stats::MISS);
    }
    let sections = Sections {
        rcode: NOERROR,
        answers: n as u16,
        authority: 0,
        len: n * R::ANSWER_LEN,
        flags: None,
    };
    let first = if n > 1 { first_answer(n)? } else { 0 };
    respond(p, ip, udp, q, found.name_sum, sections, |p, off| {
        rec.write_answers(p, off, n, first)
    })
}

/// Where a positive answer of `n` (> 1) records starts: 0, or with `FLAG_ROTATE` one further
/// than the previous rotated answer on this CPU (`DNS_TURN`), as `loadbalance` rotates them.
#[inline(always)]
fn first_answer(n: usize) -> Result<usize, u32> {
    let cfg = DNS_CONFIG.get_ptr(0).ok_or(stats::HELPER_FAILED)?;
    // SAFETY: a map value pointer stays valid for the whole program run.
    if unsafe { (*cfg).flags } & config::FLAG_ROTATE == 0 {
        return Ok(0);
    }
    let turn = DNS_TURN.get_ptr_mut(0).ok_or(stats::HELPER_FAILED)?;
    // SAFETY: a per-CPU map value, valid for the whole run and written by no one else meanwhile.
    let t = unsafe {
        let t = *turn;
        *turn = t.wrapping_add(1);
        t
    };
    Ok((t % n as u64) as usize)
}

/// Turns the query into a negative answer with `rcode` (NODATA: `NOERROR`, or `NXDOMAIN`): no
/// answers, the zone's SOA (`DNS_SOA`) in the authority section. `name_sum` is the name's
/// checksum sum (it was sent in lower case).
#[inline(always)]
pub fn negative<P: Packet>(
    p: &mut P,
    ip: &Ip,
    udp: &Udp,
    q: &Query,
    name_sum: u64,
    rcode: u8,
) -> Result<(), u32> {
    let soa = DNS_SOA.get_ptr(0).ok_or(stats::MISS)?;
    // SAFETY: a map value pointer stays valid for the whole program run.
    let soa: &Soa = unsafe { &*soa };
    let zone_len = soa.zone_len as usize;
    // The agent flags only names in the zone; a zone longer than the name means no SOA yet.
    if zone_len == 0 || zone_len > q.name_len {
        return Err(stats::MISS);
    }
    // Where the zone starts in the message: the end of the question's name.
    let zone_at = (12 + q.name_len - zone_len) as u16;
    let sections = Sections {
        rcode,
        answers: 0,
        authority: 1,
        len: soa::RECORD_LEN,
        flags: None,
    };
    respond(p, ip, udp, q, name_sum, sections, |p, off| {
        write_soa(p, off, zone_at, soa)
    })
}

/// Writes the SOA record (see `dns_common::soa`) at `off`, its names pointing at `zone_at`;
/// returns the offset after it and its little-endian partial sum.
#[inline(always)]
fn write_soa<P: Packet>(p: &P, off: usize, zone_at: u16, soa: &Soa) -> Result<(usize, u64), u32> {
    let ptr = (0xc000 | zone_at).to_be_bytes();
    let ptr = u16::from_ne_bytes(ptr);
    let [p_hi, p_lo] = ptr.to_ne_bytes();
    let h = |a: u8, b: u8| u16::from_ne_bytes([a, b]);
    let ttl = soa.ttl_be;
    let n = &soa.numbers_be;
    let m = soa::MNAME_LABELS;
    let r = soa::RNAME_LABELS;
    let words: [u16; 27] = [
        ptr,
        h(0, 6),
        h(0, 1),
        ttl as u16,
        (ttl >> 16) as u16,
        h(0, 42),
        // MNAME: 02 n s 03 d n s, pointer; then RNAME's length byte.
        h(m[0], m[1]),
        h(m[2], m[3]),
        h(m[4], m[5]),
        h(m[6], p_hi),
        h(p_lo, r[0]),
        // RNAME: hostmaster, pointer.
        h(r[1], r[2]),
        h(r[3], r[4]),
        h(r[5], r[6]),
        h(r[7], r[8]),
        h(r[9], r[10]),
        ptr,
        n[0] as u16,
        (n[0] >> 16) as u16,
        n[1] as u16,
        (n[1] >> 16) as u16,
        n[2] as u16,
        (n[2] >> 16) as u16,
        n[3] as u16,
        (n[3] >> 16) as u16,
        n[4] as u16,
        (n[4] >> 16) as u16,
    ];
    write(p, off, words)?;
    let mut sum = 0u64;
    let mut i = 0;
    while i < 27 {
        sum += words[i] as u64;
        i += 1;
    }
    Ok((off + soa::RECORD_LEN, sum))
}

/// The sections a response carries after its question.
pub struct Sections {
    /// RCODE of the response (when `flags` is `None`).
    pub rcode: u8,
    pub answers: u16,
    pub authority: u16,
    /// Their length in bytes (even).
    pub len: usize,
    /// The header's two flag bytes (native-endian load of the wire bytes); `None`: QR AA, RD
    /// and CD copied, RCODE 0 (the cluster zone's answers).
    pub flags: Option<u16>,
}

/// Rewrites the query into a response with `sections` (written by `body` at the offset it is
/// given, returning the offset after them and their little-endian partial sum), AA set, the
/// question as sent (`name_sum`: its name's sum) and the OPT echoed; resizes the packet and
/// computes every checksum. The caller sends it back.
#[inline(always)]
pub fn respond<P: Packet>(
    p: &mut P,
    ip: &Ip,
    udp: &Udp,
    q: &Query,
    name_sum: u64,
    sections: Sections,
    body: impl FnOnce(&P, usize) -> Result<(usize, u64), u32>,
) -> Result<(), u32> {
    let opt_len = if q.has_opt { OPT_LEN } else { 0 };
    let tail_off = q.name_off + q.name_len;
    let dns_len = tail_off - q.dns_off + 4 + sections.len + opt_len;
    let limit = if q.has_opt && q.udp_size as usize > CLASSIC_UDP_SIZE {
        q.udp_size as usize
    } else {
        CLASSIC_UDP_SIZE
    };
    if dns_len > limit {
        return Err(stats::TOO_BIG);
    }
    let udp_len = 8 + dns_len;

    // The datagram ends the packet: the UDP header follows the IP header directly.
    p.set_len(udp.off + udp_len)?;
    // Every access below goes through `ptr_at` against the new packet bounds.

    // Nothing below reads back what it wrote (see `ipv4::reply`): each sum comes from registers.
    eth::swap_macs(p)?;
    let addr_sum = ip.reply(p, udp_len)?;
    let ports: [u16; 2] = read(p, udp.off)?;
    let udp_len_be = (udp_len as u16).to_be();
    // Ports, the pseudo-header (both addresses, protocol 17, UDP length: the same 16-bit sum
    // for IPv4's and IPv6's), then the UDP length field itself.
    let mut sum = ports[0] as u64 + ports[1] as u64 + addr_sum + 0x1100 + 2 * udp_len_be as u64;

    // Header: ID kept; QR AA, RD copied | CD copied, RCODE; QD 1, AN, NS, AR 0/1 (or the
    // flags given).
    let flags = match sections.flags {
        Some(flags) => flags,
        None => u16::from_ne_bytes([
            0x84 | (q.flags_hi & 0x01),
            (q.flags_lo & 0x10) | sections.rcode,
        ]),
    };
    let hdr = [
        q.id as u32 | (flags as u32) << 16,
        1u16.to_be() as u32 | (sections.answers.to_be() as u32) << 16,
        sections.authority.to_be() as u32 | ((q.has_opt as u16).to_be() as u32) << 16,
    ];
    write(p, q.dns_off, hdr)?;
    sum += hdr[0] as u64 + hdr[1] as u64 + hdr[2] as u64;
    // The question as sent; it starts at an even offset of the UDP datagram.
    sum += name_sum;

    // Everything after the name, summed as if it started at an even offset: QTYPE/QCLASS
    // (unchanged: 00 01 or 00 1C, then 00 01), the sections (each of even length), the OPT.
    let (off, body_sum) = body(p, tail_off + 4)?;

    let mut tail: u64 = q.qtype_be as u64 + 0x0100 + body_sum;
    if q.has_opt {
        let size = q.udp_size.to_be_bytes();
        let do_bit = if q.dnssec_ok { 0x80 } else { 0 };
        let w = u64::from_le_bytes([0, 0, 41, size[0], size[1], 0, 0, do_bit]);
        // The offset through a stack slot, as for the records (see `rrset`).
        let off = core::hint::black_box(off);
        write(p, off, w)?;
        // Flags low byte and RDLENGTH 0, as two overlapping 16-bit stores (see `dns::walk_name`
        // on one-byte accesses).
        write(p, off + 8, 0u16)?;
        write(p, off + 9, 0u16)?;
        tail += halves(w);
    }
    let mut tail = fold(tail);
    if q.name_len & 1 == 1 {
        // The tail really starts at an odd offset: every byte swaps its half of the word.
        tail = tail.swap_bytes();
    }
    sum += tail as u64;

    // A computed 0 is sent as all ones (0 means "no checksum", which IPv6 forbids).
    let mut csum = !fold(sum);
    if csum == 0 {
        csum = 0xffff;
    }
    // Ports swapped, length, checksum: the whole UDP header in one store.
    write(p, udp.off, [ports[1], ports[0], udp_len_be, csum])
}
