//! The kernel cache: answers of userspace's `cache` plugin (`DNS_CACHE`) repeated until they
//! expire, each TTL decayed by the whole seconds since the entry was stored, as userspace does.
//!
//! A program of its own (`dns_cache_xdp`, `dns_cache_tc`), reached by a tail call from the main
//! programs when the cluster maps missed (`miss`): the main path's code is left exactly as it
//! was (its verification depends on how LLVM compiles its hash loop, which any code added
//! around it changes). It checks the packet again (the verifier knows nothing of the main
//! program's offsets) but takes over the name's words, hash and checksum sum the main program
//! left in `DNS_NAME` for this packet (`tree::Handoff`), and answers only a name sent in lower
//! case, without the DO or CD bit (userspace keys those answers apart; they stay there).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::LruHashMap,
};
use dns_common::{
    cache::{self, CacheKey, CachedAnswer},
    name::{MAX_NAME_LEN, NAME_WORDS},
    stats,
};

use crate::{
    answer::{self, halves, Sections},
    dns::{self, Query},
    eth,
    ip::Ip,
    packet::{opaque, write, Packet},
    DNS_NAME,
    udp::{self, Udp},
};

/// Answers the agent's caches hold (written and deleted by the agent; an LRU map so that it
/// never outgrows its capacity whatever the agent misses).
#[map]
pub static DNS_CACHE: LruHashMap<CacheKey, CachedAnswer> =
    LruHashMap::with_max_entries(cache::CAPACITY, 0);

const FLAG_CD: u8 = 0x10;
const NS_PER_SEC: u64 = 1_000_000_000;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// The cache program: the same checks as the main path, then the cache. `Err(miss)` when it
/// does not hold the answer (the main path found no cluster record either).
#[inline(always)]
pub fn try_answer<P: Packet>(p: &mut P) -> Result<(), u32> {
    let ip = Ip::parse(p, eth::parse(p)?)?;
    let udp = udp::parse(p, &ip)?;
    p.linearize()?;
    let q = dns::parse(p, &udp)?;
    if q.is_aaaa() {
        answer::<P, true>(p, &ip, &udp, &q)
    } else {
        answer::<P, false>(p, &ip, &udp, &q)
    }
}

/// Answers the query from `DNS_CACHE` when it holds the name as sent (lower case) and the type,
/// and the entry has not expired; `miss` otherwise. Called when the cluster maps missed.
#[inline(always)]
fn answer<P: Packet, const AAAA: bool>(
    p: &mut P,
    ip: &Ip,
    udp: &Udp,
    q: &Query,
) -> Result<(), u32> {
    // Userspace keys answers to the DO and CD bits apart; only the plain ones are here.
    if q.dnssec_ok || q.flags_lo & FLAG_CD != 0 {
        return Err(stats::MISS);
    }
    // The name as the main program loaded and hashed it just before tail-calling here (the
    // same packet on the same CPU: `tree::Handoff`).
    let scratch = DNS_NAME.get_ptr(0).ok_or(stats::MISS)?;
    // SAFETY: a per-CPU map value, valid for the whole run.
    let handoff = unsafe { &(*scratch).handoff };
    if handoff.lower != 1 {
        return Err(stats::MISS);
    }
    let key = CacheKey {
        hash: handoff.hash,
        len: q.name_len as u16,
        qtype: if AAAA { TYPE_AAAA } else { TYPE_A },
        _pad: [0; 4],
    };
    let name_sum = handoff.name_sum;
    let rec = DNS_CACHE.get_ptr(&key).ok_or(stats::MISS)?;
    // SAFETY: as above.
    let words = unsafe { (*scratch).proven.name.as_ptr() };
    if same_name(rec, words, q.name_len) == 0 {
        return Err(stats::MISS);
    }
    // Forgotten: its range depends on the name's length, and the checksum's `== 0` test would
    // make the verifier follow the answer once per length.
    let name_sum = opaque(name_sum)?;
    reply::<P, AAAA>(p, ip, udp, q, rec, name_sum)
}

// The two functions below are BPF-to-BPF calls that return a flag: the verifier leaves each
// with one state whatever the name's length (inlined, every length would be followed through
// the whole answer). Their loops run to a constant bound and stop at the last word, read back
// from the stack (volatile): LLVM then cannot turn them into loops that end on
// `offset == 8 * words`, which the verifier cannot bound.

/// 1 when the entry's name is the `name_len`-byte name whose words are at `base`, else 0.
#[inline(never)]
fn same_name(v: *const CachedAnswer, base: *const u64, name_len: usize) -> u64 {
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return 0;
    }
    let last = (name_len - 1) >> 3;
    // SAFETY: a map value pointer stays valid for the whole program run.
    let stored: &[u64; NAME_WORDS] = unsafe { &(*v).name };
    let mut diff = 0;
    let mut i = 0;
    while i < NAME_WORDS {
        // SAFETY: reading a local.
        if i > unsafe { core::ptr::read_volatile(&last) } {
            break;
        }
        // SAFETY: `i < NAME_WORDS`, inside the map value.
        diff |= stored[i] ^ unsafe { base.add(i).read() };
        i += 1;
    }
    (diff == 0) as u64
}

/// Turns the query into the cached answer: the stored flags (RD the query's), the records with
/// the decayed TTL; passes (`miss`) once the entry has expired.
#[inline(always)]
fn reply<P: Packet, const AAAA: bool>(
    p: &mut P,
    ip: &Ip,
    udp: &Udp,
    q: &Query,
    rec: *const CachedAnswer,
    name_sum: u64,
) -> Result<(), u32> {
    // SAFETY: a map value pointer stays valid for the whole program run.
    let v: &CachedAnswer = unsafe { &*rec };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if now >= v.expires_ns {
        return Err(stats::MISS);
    }
    let n = v.count as usize;
    if n == 0 || n > cache::MAX_ADDRS {
        return Err(stats::MISS);
    }
    let elapsed = now.saturating_sub(v.decay_from_ns) / NS_PER_SEC;
    let ttl = if elapsed >= v.ttl as u64 {
        0
    } else {
        v.ttl - elapsed as u32
    };
    let len = if AAAA { 28 } else { 16 };
    let flags = u16::from_ne_bytes([(v.flags[0] & !1) | (q.flags_hi & 1), v.flags[1]]);
    let sections = Sections {
        rcode: answer::NOERROR,
        answers: n as u16,
        authority: 0,
        len: n * len,
        flags: Some(flags),
    };
    answer::respond(p, ip, udp, q, name_sum, sections, move |p, off| {
        // SAFETY: as above.
        let v = unsafe { &*rec };
        if AAAA {
            write_aaaa(p, off, ttl, v, n)
        } else {
            write_a(p, off, ttl, v, n)
        }
    })
}

/// `C0 0C | 00 01 | 00 01 | TTL | 00 04 | address` for the first `n` addresses; the offset after
/// them and their little-endian partial sum.
#[inline(always)]
fn write_a<P: Packet>(
    p: &P,
    off: usize,
    ttl: u32,
    v: &CachedAnswer,
    n: usize,
) -> Result<(usize, u64), u32> {
    let ttl = ttl.to_be_bytes();
    let w0 = u64::from_le_bytes([0xc0, 0x0c, 0, 1, 0, 1, ttl[0], ttl[1]]);
    let w1_lo = u32::from_le_bytes([ttl[2], ttl[3], 0, 4]) as u64;
    let w0_sum = halves(w0);
    let mut off = off;
    let mut sum = 0;
    for a in v.addrs.iter().take(n) {
        let addr = a[0] as u64;
        write(p, off, [w0, w1_lo | addr << 32])?;
        sum += w0_sum + w1_lo + addr;
        off += 16;
    }
    Ok((off, sum))
}

/// `C0 0C | 00 1C | 00 01 | TTL | 00 10 | address` for the first `n` addresses.
#[inline(always)]
fn write_aaaa<P: Packet>(
    p: &P,
    off: usize,
    ttl: u32,
    v: &CachedAnswer,
    n: usize,
) -> Result<(usize, u64), u32> {
    let ttl = ttl.to_be_bytes();
    let w0 = u32::from_le_bytes([0xc0, 0x0c, 0, 28]);
    let w1 = u32::from_le_bytes([0, 1, ttl[0], ttl[1]]);
    let w2 = u32::from_le_bytes([ttl[2], ttl[3], 0, 16]);
    let head_sum = w0 as u64 + w1 as u64 + w2 as u64;
    let mut off = off;
    let mut sum = 0;
    for a in v.addrs.iter().take(n) {
        write(p, off, [w0, w1, w2, a[0], a[1], a[2], a[3]])?;
        sum += head_sum + a[0] as u64 + a[1] as u64 + a[2] as u64 + a[3] as u64;
        off += 28;
    }
    Ok((off, sum))
}
