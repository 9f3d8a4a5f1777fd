//! DNS: query acceptance checks, the question-name walk, EDNS OPT parsing and the record lookup.

use dns_common::{
    name::{hash_finish, hash_start, hash_step, lower_word, MAX_NAME_LEN, NAME_WORDS},
    records::NameKey,
    stats,
};

use crate::{
    packet::{opaque2, read, Packet},
    rrset::Rrset,
    udp::Udp,
};

const HDR_LEN: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// Largest offset of the DNS header: Ethernet, 802.1Q tag, IPv4 with options, UDP (IPv6's
/// fixed header is shorter than the longest IPv4 one).
const MAX_DNS_OFF: usize = 18 + 60 + 8;
/// Most labels a 255-byte name can hold, root excluded.
const MAX_LABELS: usize = 127;
/// Most EDNS options looked at in one OPT record; more are left to userspace.
const MAX_OPTIONS: usize = 16;

/// An accepted question: class IN, type A or AAAA, at most an EDNS(0) OPT besides.
#[derive(Clone, Copy)]
pub struct Query {
    /// Offset of the DNS header in the packet.
    pub dns_off: usize,
    /// Message ID as sent (wire byte order).
    pub id: u16,
    /// Offset of the question name.
    pub name_off: usize,
    /// Wire length of the name, root label included (1..=255).
    pub name_len: usize,
    /// Labels of the name, root excluded.
    pub labels: usize,
    /// Offsets in the name of its last eight labels (root excluded), a byte each: the last
    /// label's in the low byte.
    pub label_starts: u64,
    /// First flags byte of the query (QR, opcode, AA, TC, RD).
    pub flags_hi: u8,
    /// Second flags byte of the query (RA, Z, AD, CD, RCODE).
    pub flags_lo: u8,
    /// Whether the query carried an OPT record.
    pub has_opt: bool,
    /// Requestor's UDP payload size from the OPT record.
    pub udp_size: u16,
    /// DO bit of the OPT record.
    pub dnssec_ok: bool,
    /// QTYPE as sent (wire byte order): A or AAAA.
    pub qtype_be: u16,
}

impl Query {
    /// Whether the question asks for AAAA records (else A).
    #[inline(always)]
    pub fn is_aaaa(&self) -> bool {
        self.qtype_be == TYPE_AAAA.to_be()
    }
}

/// Checks the message is a standard single-question query for an A or AAAA record in class IN.
#[inline(always)]
pub fn parse<P: Packet>(p: &P, udp: &Udp) -> Result<Query, u32> {
    let dns_off = udp.off + 8;
    let end = udp.off + udp.len;
    if udp.len < 8 + HDR_LEN {
        return Err(stats::MALFORMED);
    }
    // ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
    let hdr: [u16; 6] = read(p, dns_off)?;
    let [flags_hi, flags_lo] = hdr[1].to_ne_bytes();
    // QR must be clear and the opcode QUERY (0).
    if flags_hi & 0xf8 != 0 || u16::from_be(hdr[2]) != 1 || hdr[3] != 0 || hdr[4] != 0 {
        return Err(stats::NOT_QUERY);
    }
    let arcount = u16::from_be(hdr[5]);
    if arcount > 1 {
        return Err(stats::EDNS);
    }

    let (name_len, labels, label_starts) = walk_name(p, dns_off + HDR_LEN)?;
    // Forget how the walk got here (every label count would be verified apart otherwise),
    // then bound again what later offsets need.
    let (v, label_starts) = opaque2(
        (labels as u64) << 32 | (dns_off as u64) << 16 | name_len as u64,
        label_starts,
    )?;
    let (labels, dns_off, name_len) = (
        (v >> 32) as usize & 0xff,
        (v >> 16) as usize & 0xffff,
        (v & 0xffff) as usize,
    );
    if dns_off > MAX_DNS_OFF || name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(stats::MALFORMED);
    }
    let name_off = dns_off + HDR_LEN;
    let rest = name_off + name_len + 4;
    if rest > end {
        return Err(stats::MALFORMED);
    }
    let qtype_qclass: [u16; 2] = read(p, name_off + name_len)?;

    let mut q = Query {
        dns_off,
        id: hdr[0],
        name_off,
        name_len,
        labels,
        label_starts,
        flags_hi,
        flags_lo,
        has_opt: false,
        udp_size: 0,
        dnssec_ok: false,
        qtype_be: qtype_qclass[0],
    };
    if arcount == 1 {
        parse_opt(p, rest, end, &mut q)?;
    } else if rest != end {
        return Err(stats::MALFORMED);
    }

    if u16::from_be(qtype_qclass[1]) != CLASS_IN {
        return Err(stats::NOT_CLASS_IN);
    }
    if qtype_qclass[0] != TYPE_A.to_be() && qtype_qclass[0] != TYPE_AAAA.to_be() {
        return Err(stats::QTYPE);
    }
    Ok(q)
}

/// Walks the uncompressed question name by label-length jumps; returns its wire length, its
/// number of labels and the offsets of the last eight (`Query::label_starts`).
#[inline(always)]
fn walk_name<P: Packet>(p: &P, name_off: usize) -> Result<(usize, usize, u64), u32> {
    // Bytes of labels before the root label.
    let mut n: usize = 0;
    let mut starts: u64 = 0;
    let mut i = 0;
    while i <= MAX_LABELS {
        // Two bytes, not one: the verifier gives no range to the `>=` comparison LLVM makes
        // of a one-byte bounds check. A name is always followed by QTYPE, so this never fails
        // on a well-formed question.
        let len = read::<u16, P>(p, name_off + n)?.to_ne_bytes()[0] as usize;
        if len == 0 {
            return Ok((n + 1, i, starts));
        }
        // Compression pointers (0xc0) and extended label types are not accepted here.
        if len > 63 {
            return Err(stats::MALFORMED);
        }
        starts = starts << 8 | n as u64;
        n += len + 1;
        if n >= MAX_NAME_LEN {
            return Err(stats::MALFORMED);
        }
        i += 1;
    }
    Err(stats::MALFORMED)
}

/// Parses the one additional record, which must be an EDNS(0) OPT ending the message.
#[inline(always)]
fn parse_opt<P: Packet>(p: &P, off: usize, end: usize, q: &mut Query) -> Result<(), u32> {
    // Root name, then TYPE, CLASS (UDP size), extended RCODE + version, flags, RDLENGTH.
    let root = read::<u16, P>(p, off)?.to_ne_bytes()[0];
    let f: [u16; 5] = read(p, off + 1)?;
    let [_ext_rcode, version] = f[2].to_ne_bytes();
    if root != 0 || u16::from_be(f[0]) != TYPE_OPT || version != 0 {
        return Err(stats::EDNS);
    }
    let rdlen = u16::from_be(f[4]) as usize;
    if off + 11 + rdlen != end {
        return Err(stats::MALFORMED);
    }
    // The options must tile RDATA exactly (code, length, data).
    let mut pos = off + 11;
    let mut i = 0;
    while i < MAX_OPTIONS {
        if pos == end {
            break;
        }
        if pos + 4 > end {
            return Err(stats::EDNS);
        }
        let opt_len: u16 = read(p, pos + 2)?;
        pos += 4 + u16::from_be(opt_len) as usize;
        if pos > end {
            return Err(stats::EDNS);
        }
        i += 1;
    }
    if pos != end {
        return Err(stats::EDNS);
    }
    q.has_opt = true;
    q.udp_size = u16::from_be(f[1]);
    q.dnssec_ok = f[3].to_ne_bytes()[0] & 0x80 != 0;
    Ok(())
}

/// A name found in the map of the asked type.
pub struct Found<R> {
    pub rec: *const R,
    /// Little-endian one's-complement partial sum of the name as sent (original case).
    pub name_sum: u64,
}

/// What the maps say about the question.
pub enum Lookup<R> {
    /// The name's records of the asked type.
    Records(Found<R>),
    /// The name exists with records of the other address type only: NODATA. Only for a
    /// name sent in lower case (the SOA's pointers then reproduce userspace's compression).
    NoData { name_sum: u64 },
    /// Neither map holds the name, sent in lower case: `DNS_TREE` may know it does not exist.
    /// `key`: the name's key, as the maps have it.
    Absent { name_sum: u64, key: NameKey },
}

/// Loads `len` (1..=255) bytes of the question's name from `at` into the words at `base` as
/// `dns_common::name::pack_name` lays them out (zero-padded); returns how many words hold them.
#[inline(always)]
pub fn load_name<P: Packet>(p: &P, at: usize, len: usize, base: *mut u64) -> Result<usize, u32> {
    // Checked and computed in 64 bits: LLVM otherwise checks a 32-bit copy and computes with
    // the register the verifier knows nothing about.
    if len == 0 || len > MAX_NAME_LEN {
        return Err(stats::MALFORMED);
    }
    // Index of the last word, 0..=31 (written so the verifier sees that range).
    let last = (len - 1) >> 3;
    // Only the first `last + 1` words are used. The helper fills `len` bytes of them; the rest
    // of the last word must read as zero (as `pack_name` pads), so it is zeroed first.
    // SAFETY: `last < NAME_WORDS` because `len <= 255`; the caller's buffer holds NAME_WORDS.
    unsafe { core::ptr::write_volatile(base.add(last), 0) };
    p.load_bytes(at, base as *mut u8, len as u32)?;
    Ok(last + 1)
}

/// The `DNS_A`/`DNS_AAAA`/`DNS_TREE` key of the `nwords` words of a `len`-byte name at `base`
/// (already lower-case): exactly `dns_common::name::hash_words`.
#[inline(always)]
pub fn key_of(base: *const u64, nwords: usize, len: usize) -> NameKey {
    let mut h = hash_start();
    let mut i = 0;
    while i < NAME_WORDS && i < nwords {
        // SAFETY: words below `nwords` were written by `load_name`.
        h = hash_step(h, unsafe { base.add(i).read() });
        i += 1;
    }
    bytemuck::cast([hash_finish(h, len as u16), len as u64])
}

/// Loads the name into the buffer at `base` (`NAME_WORDS` words), lower-cases and hashes it a
/// word at a time (exactly `dns_common::name::hash_words`), looks it up in the map of the asked
/// type `R` and verifies the stored name word by word; on a miss, looks for it in the map of
/// the other type `O` flagged as having no records of type `R`.
///
#[inline(always)]
pub fn lookup<P: Packet, R: Rrset, O: Rrset>(
    p: &P,
    q: &Query,
    scratch: *mut crate::tree::Scratch,
) -> Result<Lookup<R>, u32> {
    // SAFETY: a per-CPU map value, valid for the whole run.
    let base = unsafe { (*scratch).proven.name.as_mut_ptr() };
    let nwords = load_name(p, q.name_off, q.name_len, base)?;
    let len = q.name_len as u32;
    let mut h = hash_start();
    let mut name_sum: u64 = 0;
    // Bits lower-casing changed: 0 when the name came in lower case.
    let mut upper: u64 = 0;
    let mut i = 0;
    while i < NAME_WORDS && i < nwords {
        // SAFETY: words below `nwords` were written by the helper and the zero store above.
        let w = unsafe { base.add(i).read() };
        name_sum += (w & 0xffff_ffff) + (w >> 32);
        let lw = lower_word(w);
        upper |= w ^ lw;
        // SAFETY: as above, inside the buffer.
        unsafe { base.add(i).write(lw) };
        h = hash_step(h, lw);
        i += 1;
    }
    // `NameKey { hash, len, _pad: 0 }` as two words: no 6-byte memset for the padding.
    let key: NameKey = bytemuck::cast([hash_finish(h, len as u16), len as u64]);
    // SAFETY: as above.
    unsafe {
        (*scratch).handoff = crate::tree::Handoff {
            hash: key.hash,
            name_sum,
            lower: (upper == 0) as u64,
        };
    }
    if let Some(rec) = R::map().get_ptr(&key) {
        // SAFETY: a map value pointer stays valid for the whole program run.
        if same_name(unsafe { (*rec).name() }, base, nwords) {
            return Ok(Lookup::Records(Found { rec, name_sum }));
        }
    }
    if upper != 0 {
        return Err(stats::MISS);
    }
    if let Some(other) = O::map().get_ptr(&key) {
        // SAFETY: as above.
        let other = unsafe { &*other };
        if same_name(other.name(), base, nwords) {
            if !other.no_other_type() {
                return Err(stats::MISS);
            }
            return Ok(Lookup::NoData { name_sum });
        }
    }
    // Not in either map (perhaps left out of a full map): only `DNS_TREE` can say more.
    Ok(Lookup::Absent { name_sum, key })
}

/// Whether the first `nwords` words of `stored` are those at `base`.
#[inline(always)]
pub fn same_name(stored: &[u64; NAME_WORDS], base: *const u64, nwords: usize) -> bool {
    // No early exit: a mismatch is a hash collision, rare, and one way out of the loop (not
    // one per word) keeps the verifier's work linear in the name's length.
    let mut diff = 0;
    let mut i = 0;
    while i < NAME_WORDS && i < nwords {
        // SAFETY: `i < nwords`: words the caller wrote.
        diff |= stored[i] ^ unsafe { base.add(i).read() };
        i += 1;
    }
    diff == 0
}
