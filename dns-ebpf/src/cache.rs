//! The kernel cache: answers of userspace's `cache` plugin (`DNS_CACHE`) repeated until they
//! expire, each TTL decayed by the whole seconds since the entry was stored, as userspace does.
//!
//! A program of its own (`dns_cache_xdp`, `dns_cache_tc`), reached by a tail call from the main
//! programs when the cluster maps missed (`miss`): the main path's code is left exactly as it
//! was (its verification depends on how LLVM compiles its hash loop, which any code added
//! around it changes). It checks the packet again, loads and hashes the name again, and
//! answers only a name sent in lower case, without the DO or CD bit (userspace keys those
//! answers apart; they stay there).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use dns_common::{
    cache::{self, CacheKey, CachedAnswer},
    name::{hash_finish, hash_start, hash_step, lower_word, MAX_NAME_LEN, NAME_WORDS},
    stats,
};

use crate::{
    answer::{self, halves, Sections},
    dns::{self, Query},
    eth,
    ip::Ip,
    packet::{opaque, write, Packet},
    udp::{self, Udp},
};

/// Answers the agent's caches hold (written and deleted by the agent; an LRU map so that it
/// never outgrows its capacity whatever the agent misses).
#[map]
pub static DNS_CACHE: LruHashMap<CacheKey, CachedAnswer> =
    LruHashMap::with_max_entries(cache::CAPACITY, 0);

/// The question's name, loaded again for the cache program (a per-CPU value rather than 256
/// bytes of stack).
#[map]
static DNS_CACHE_NAME: PerCpuArray<[u64; NAME_WORDS]> = PerCpuArray::with_max_entries(1, 0);

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
    let mut key = CacheKey {
        hash: 0,
        len: 0,
        qtype: if AAAA { TYPE_AAAA } else { TYPE_A },
        _pad: [0; 4],
    };
    let mut name_sum = 0u64;
    if load_name(p, q.name_off, q.name_len, &mut key, &mut name_sum) == 0 {
        return Err(stats::MISS);
    }
    let rec = DNS_CACHE.get_ptr(&key).ok_or(stats::MISS)?;
    if same_name(rec, q.name_len) == 0 {
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

/// Loads the name at `name_off` (`name_len` bytes) into `DNS_CACHE_NAME`, hashes it as
/// `dns::lookup` does (`name::hash_words` of the lower-cased words) into `key` and its
/// checksum sum into `name_sum`; 1 when it was sent in lower case, else 0.
#[inline(never)]
fn load_name<P: Packet>(
    p: &P,
    name_off: usize,
    name_len: usize,
    key: &mut CacheKey,
    name_sum: &mut u64,
) -> u64 {
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return 0;
    }
    let Some(buf) = DNS_CACHE_NAME.get_ptr_mut(0) else {
        return 0;
    };
    let base = buf as *mut u64;
    let last = (name_len - 1) >> 3;
    // The tail of the last word must read as zero (as `name::pack_name` pads).
    // SAFETY: `last < NAME_WORDS` because `name_len <= 255`; a per-CPU map value.
    unsafe { core::ptr::write_volatile(base.add(last), 0) };
    if p.load_bytes(name_off, base as *mut u8, name_len as u32)
        .is_err()
    {
        return 0;
    }
    let mut h = hash_start();
    let mut sum: u64 = 0;
    let mut upper: u64 = 0;
    let mut i = 0;
    while i < NAME_WORDS {
        // SAFETY: reading a local.
        if i > unsafe { core::ptr::read_volatile(&last) } {
            break;
        }
        // SAFETY: `i < NAME_WORDS`, inside the map value; words up to `last` were loaded.
        let w = unsafe { base.add(i).read() };
        sum += (w & 0xffff_ffff) + (w >> 32);
        let lw = lower_word(w);
        upper |= w ^ lw;
        h = hash_step(h, lw);
        i += 1;
    }
    key.hash = hash_finish(h, name_len as u16);
    key.len = name_len as u16;
    *name_sum = sum;
    (upper == 0) as u64
}

/// 1 when the entry's name is the one `load_name` loaded (`name_len` bytes), else 0.
#[inline(never)]
fn same_name(v: *const CachedAnswer, name_len: usize) -> u64 {
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return 0;
    }
    let Some(buf) = DNS_CACHE_NAME.get_ptr(0) else {
        return 0;
    };
    let base = buf as *const u64;
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
