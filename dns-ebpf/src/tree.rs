//! Negative answers from `DNS_TREE` (see `dns_common::tree`): does the question's name exist?

use dns_common::{
    name::NAME_WORDS,
    records::NameKey,
    soa::{self, Soa},
    stats,
    tree::{self, Node, Proven},
};

use crate::{
    dns::{key_of, load_name, same_name, Query},
    packet::Packet,
    DNS_PROVEN, DNS_SOA, DNS_TREE,
};

/// The per-CPU memory of the lookups (`DNS_NAME`): the question's name inside the entry
/// `DNS_PROVEN` may get, then the suffix the walk looks up.
#[repr(C)]
pub struct Scratch {
    pub proven: Proven,
    pub suffix: [u64; NAME_WORDS],
    /// What the cache program (tail-called on a miss, same CPU, same packet) takes over
    /// instead of loading and hashing the name again.
    pub handoff: Handoff,
}

/// The name as `dns::lookup` left it (its words are in `Scratch::proven.name`).
#[repr(C)]
pub struct Handoff {
    /// `NameKey::hash` of the name.
    pub hash: u64,
    /// The name's checksum sum as sent.
    pub name_sum: u64,
    /// 1 when the name was sent in lower case.
    pub lower: u64,
}

/// What the tree proves about a name neither address map holds.
pub enum Negative {
    /// The name does not exist: NXDOMAIN.
    NxDomain,
    /// The name exists without address records: NODATA.
    NoData,
}

/// What the tree proves about the question (sent in lower case, in neither address map, its
/// words in `scratch.proven.name`, `key` its key): remembered in `DNS_PROVEN` for the
/// generation of `DNS_SOA` it was proven in, walked otherwise. `Err(MISS)`: nothing proven,
/// userspace answers.
#[inline(always)]
pub fn negative<P: Packet>(
    p: &P,
    q: &Query,
    scratch: *mut Scratch,
    key: &NameKey,
) -> Result<Negative, u32> {
    let soa = DNS_SOA.get_ptr(0).ok_or(stats::MISS)?;
    // SAFETY: a map value pointer stays valid for the whole program run.
    let soa: &Soa = unsafe { &*soa };
    if soa.flags & soa::FLAG_NEGATIVE == 0 {
        return Err(stats::MISS);
    }
    // Read once, before anything the walk reads: an entry proven against a tree the agent was
    // changing meanwhile carries the generation it is about to leave.
    // SAFETY: inside the map value.
    let generation = unsafe { core::ptr::read_volatile(&soa.generation) };
    // Names that cannot end with the zone (external names on their way to the cache) leave
    // before any lookup.
    let zone = zone_at(q, soa)?;
    // SAFETY: a per-CPU map value, valid for the whole run.
    let base = unsafe { (*scratch).proven.name.as_mut_ptr() };
    let nwords = core::hint::black_box(((q.name_len - 1) >> 3) + 1);
    if let Some(known) = DNS_PROVEN.get_ptr(key) {
        // SAFETY: as above.
        let known: &Proven = unsafe { &*known };
        if known.generation == generation && same_name(&known.name, base, nwords) {
            return Ok(if known.rcode == 0 {
                Negative::NoData
            } else {
                Negative::NxDomain
            });
        }
    }
    let proven = walk(p, q, soa, zone, base)?;
    // SAFETY: as above; the name words are already in place.
    unsafe {
        (*scratch).proven.generation = generation;
        (*scratch).proven.rcode = match proven {
            Negative::NxDomain => 3,
            Negative::NoData => 0,
        };
        let _ = DNS_PROVEN.insert(key, &(*scratch).proven, 0);
    }
    Ok(proven)
}

/// (labels of the zone, where the zone would start in the name) when the name's last labels
/// can be the zone's: as many bytes, starting at a label. `Err(MISS)` otherwise.
#[inline(always)]
fn zone_at(q: &Query, soa: &Soa) -> Result<(usize, usize), u32> {
    let zone_labels = soa.zone_labels as usize;
    let zone_len = soa.zone_len as usize;
    if zone_labels == 0
        || zone_labels > tree::MAX_ZONE_LABELS
        || zone_len == 0
        || zone_len > q.name_len
        || q.labels < zone_labels
    {
        return Err(stats::MISS);
    }
    // The zone must begin at one of the name's labels: its first label is the name's
    // `zone_labels`-th from the end.
    let zone_start = (q.label_starts >> (8 * (zone_labels - 1))) as usize & 0xff;
    if zone_start + zone_len != q.name_len {
        return Err(stats::MISS);
    }
    Ok((zone_labels, zone_start))
}

/// The walk itself, from the zone down (`zone` from `zone_at`).
#[inline(always)]
fn walk<P: Packet>(
    p: &P,
    q: &Query,
    soa: &Soa,
    (zone_labels, zone_start): (usize, usize),
    base: *mut u64,
) -> Result<Negative, u32> {
    let above = q.labels - zone_labels;
    if above == 0 {
        if soa.flags & soa::FLAG_APEX_EMPTY == 0 || !zone_matches(p, q, soa, zone_start, base)? {
            return Err(stats::MISS);
        }
        return Ok(Negative::NoData);
    }
    let mut depth = 1;
    while depth <= tree::MAX_DEPTH {
        let start = (q.label_starts >> (8 * (zone_labels + depth - 1))) as usize & 0xff;
        match find(p, q, start, base)? {
            None => {
                // Not one of the zone's names: is the name in the zone at all?
                if depth == 1 && !zone_matches(p, q, soa, zone_start, base)? {
                    return Err(stats::MISS);
                }
                return Ok(Negative::NxDomain);
            }
            Some(flags) => {
                if depth == above {
                    if flags & tree::FLAG_EMPTY == 0 {
                        return Err(stats::MISS);
                    }
                    return Ok(Negative::NoData);
                }
                if flags & tree::FLAG_COMPLETE == 0 {
                    return Err(stats::MISS);
                }
            }
        }
        depth += 1;
    }
    Err(stats::MISS)
}

/// The flags of the name's suffix starting `start` bytes in, if `DNS_TREE` holds it.
///
/// A function of its own in the program (a BPF-to-BPF call): inlined three times, its locals
/// would take the stack past the verifier's 512 bytes.
#[inline(never)]
fn find<P: Packet>(p: &P, q: &Query, start: usize, base: *mut u64) -> Result<Option<u32>, u32> {
    if start >= q.name_len {
        return Err(stats::MISS);
    }
    // LLVM knows from the comparison above that the length is in range and would drop
    // `load_name`'s checks; the verifier does not know it, and needs them.
    let len = core::hint::black_box(q.name_len - start);
    // The suffix goes after the name (`Scratch`), which stays for `DNS_PROVEN`.
    // SAFETY: `base` is `Scratch::proven.name`; `Scratch::suffix` follows one word later.
    let base = unsafe { base.add(NAME_WORDS + 1) };
    let nwords = load_name(p, q.name_off + start, len, base)?;
    // Unknown to LLVM, which would otherwise end the loops below on `!=` a count it knows is
    // at most `NAME_WORDS`, a loop the verifier cannot bound.
    let nwords = core::hint::black_box(nwords);
    let Some(node) = DNS_TREE.get_ptr(&key_of(base, nwords, len)) else {
        return Ok(None);
    };
    // SAFETY: a map value pointer stays valid for the whole program run.
    let node: &Node = unsafe { &*node };
    // Another name with the same hash: the agent never writes two, so this one is absent.
    if !same_name(&node.name, base, nwords) {
        return Ok(None);
    }
    Ok(Some(node.flags))
}

/// Whether the name's last `zone_len` bytes, from `zone_start`, are the zone's name.
#[inline(always)]
fn zone_matches<P: Packet>(
    p: &P,
    q: &Query,
    soa: &Soa,
    zone_start: usize,
    base: *mut u64,
) -> Result<bool, u32> {
    let len = core::hint::black_box(soa.zone_len as usize);
    // SAFETY: as in `find`.
    let base = unsafe { base.add(NAME_WORDS + 1) };
    let nwords = load_name(p, q.name_off + zone_start, len, base)?;
    Ok(same_name(&soa.zone, base, core::hint::black_box(nwords)))
}
