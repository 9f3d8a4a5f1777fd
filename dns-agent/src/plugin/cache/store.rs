//! The sharded table of one cache (success or denial): lookups, inserts, random eviction.
//!
//! Keys are already hashed (SipHash with a per-process key) by the caller; the table keeps the
//! key bytes too and compares them, so a hash collision is a miss, never a wrong answer.
//! Each shard is a slab (`Vec<Item>`) with an index from hash to slot, behind its own mutex.
//! When a shard is full, four random slots are sampled and the one that expires first goes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hickory_proto::op::Message;

use dns_common::cache::CachedAnswer;

use super::kernel::KernelLink;
use crate::metrics::registry::{Counter, Gauge};

/// Most shards a table is split into (CoreDNS's 256).
const MAX_SHARDS: usize = 256;
/// Fewest entries per shard before the table uses fewer shards.
const MIN_SHARD_CAPACITY: usize = 4;
/// Slots looked at to choose the one to evict.
const EVICTION_SAMPLE: usize = 4;
/// A refresh that has not come back after this long may be started again.
const REFRESH_TIMEOUT_MS: u64 = 10_000;

/// A cached answer as received, shared between the table and the answers being built from it.
#[derive(Debug)]
pub struct Entry {
    pub msg: Message,
    /// When it was stored (milliseconds of the cache's clock).
    pub stored_ms: u64,
    /// The TTL it is cached for (seconds): record TTLs are capped at it.
    pub ttl: u32,
    /// The response as bytes, for hits answered without decoding.
    pub wire: Option<super::wire::WireEntry>,
    /// What the kernel answers for it (`DNS_CACHE`), when the cache is linked to the kernel and
    /// the kernel reproduces the response.
    pub kernel: Option<Box<CachedAnswer>>,
}

/// What a lookup decides about one key.
pub enum Found {
    Miss,
    /// Still valid; `refresh`: popular and about to expire (the caller refreshes it).
    Fresh {
        entry: Arc<Entry>,
        refresh: bool,
    },
    /// Expired less than the serve_stale window ago; `refresh`: this caller is the one to
    /// refresh it (no other refresh is under way).
    Stale {
        entry: Arc<Entry>,
        refresh: bool,
    },
}

/// What a lookup needs to know about the cache's policy.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Hits within the window that make an item popular; 0: no prefetch.
    pub prefetch_amount: u32,
    pub prefetch_window_ms: u64,
    pub prefetch_percentage: u64,
    /// How long after expiry an item is still served; `None`: not at all.
    pub stale_window_ms: Option<u64>,
    /// Whether serving a stale item starts a refresh (`immediate`).
    pub stale_refresh: bool,
}

/// The metrics of one cache zone of one table.
pub struct ZoneMetrics {
    pub entries: Arc<Gauge>,
    pub hits: Arc<Counter>,
    pub evictions: Arc<Counter>,
    count: AtomicI64,
}

impl ZoneMetrics {
    pub fn new(entries: Arc<Gauge>, hits: Arc<Counter>, evictions: Arc<Counter>) -> Self {
        ZoneMetrics {
            entries,
            hits,
            evictions,
            count: AtomicI64::new(0),
        }
    }

    fn add(&self, n: i64) {
        let now = self.count.fetch_add(n, Ordering::Relaxed) + n;
        self.entries.set(now as f64);
    }
}

struct Item {
    hash: u64,
    key: Box<[u8]>,
    entry: Arc<Entry>,
    expires_ms: u64,
    hits: u32,
    last_hit_ms: u64,
    refreshing_since: Option<u64>,
    /// Index of the cache zone it counts under.
    zone: u16,
    /// Whether its answer was written to the kernel's map (deleted there when it goes).
    in_kernel: bool,
}

impl Item {
    fn may_refresh(&self, now_ms: u64) -> bool {
        self.refreshing_since
            .is_none_or(|t| now_ms.saturating_sub(t) >= REFRESH_TIMEOUT_MS)
    }
}

/// The hashes are already random: the index uses them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    index: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    slots: Vec<Item>,
    rng: u64,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let &i = self.index.get(&hash)?;
        (*self.slots[i].key == *key).then_some(i)
    }

    fn random(&mut self) -> usize {
        // xorshift64: cheap, good enough to pick victims.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % self.slots.len() as u64) as usize
    }

    /// Removes slot `i`, keeping the index right for the slot moved into its place.
    fn remove(&mut self, i: usize) -> Item {
        let item = self.slots.swap_remove(i);
        self.index.remove(&item.hash);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.hash, i);
        }
        item
    }
}

/// One cache's table.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    mask: usize,
    shard_capacity: usize,
    zones: Vec<ZoneMetrics>,
}

impl Store {
    /// A table of at most `capacity` entries (rounded down to a multiple of the shard count),
    /// with the metrics of each cache zone.
    pub fn new(capacity: usize, zones: Vec<ZoneMetrics>, seed: u64) -> Self {
        let mut shards = 1;
        while shards * 2 <= MAX_SHARDS && capacity / (shards * 2) >= MIN_SHARD_CAPACITY {
            shards *= 2;
        }
        let shard_capacity = (capacity / shards).max(1);
        Store {
            shards: (0..shards)
                .map(|i| {
                    Mutex::new(Shard {
                        rng: (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
                        ..Shard::default()
                    })
                })
                .collect(),
            mask: shards - 1,
            shard_capacity,
            zones,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The index uses the low bits: pick the shard with others.
        self.shards[(hash >> 40) as usize & self.mask]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn zone_metrics(&self, zone: u16) -> Option<&ZoneMetrics> {
        self.zones.get(usize::from(zone))
    }

    /// Looks `key` up at `now_ms`, counting the hit for prefetch and deciding on refreshes.
    pub fn lookup(&self, hash: u64, key: &[u8], now_ms: u64, policy: &Policy) -> Found {
        let mut shard = self.shard(hash);
        let Some(i) = shard.find(hash, key) else {
            return Found::Miss;
        };
        let item = &mut shard.slots[i];
        if now_ms < item.expires_ms {
            let mut refresh = false;
            if policy.prefetch_amount > 0 {
                if now_ms.saturating_sub(item.last_hit_ms) >= policy.prefetch_window_ms {
                    item.hits = 1;
                } else {
                    item.hits = item.hits.saturating_add(1);
                }
                item.last_hit_ms = now_ms;
                // CoreDNS's threshold: the percentage of the original TTL, rounded up, so an
                // item is refreshed at the latest in its last second.
                let threshold = (policy.prefetch_percentage * u64::from(item.entry.ttl))
                    .div_ceil(100)
                    .max(1);
                let remaining = (item.expires_ms - now_ms) / 1000;
                if item.hits >= policy.prefetch_amount
                    && remaining < threshold
                    && item.may_refresh(now_ms)
                {
                    item.refreshing_since = Some(now_ms);
                    refresh = true;
                }
            }
            return Found::Fresh {
                entry: Arc::clone(&item.entry),
                refresh,
            };
        }
        match policy.stale_window_ms {
            Some(window) if now_ms - item.expires_ms < window => {
                let refresh = policy.stale_refresh && item.may_refresh(now_ms);
                if refresh {
                    item.refreshing_since = Some(now_ms);
                }
                Found::Stale {
                    entry: Arc::clone(&item.entry),
                    refresh,
                }
            }
            _ => Found::Miss,
        }
    }

    /// Looks `key` up at `now_ms` without counting anything: `None` when the lookup would be
    /// a miss, `Some(f(entry))` when fresh, `Some(None)` when only stale (`stale_window_ms`).
    /// `f` runs under the shard's lock.
    pub fn peek<R>(
        &self,
        hash: u64,
        key: &[u8],
        now_ms: u64,
        stale_window_ms: Option<u64>,
        f: impl FnOnce(&Entry) -> Option<R>,
    ) -> Option<Option<R>> {
        let shard = self.shard(hash);
        let item = &shard.slots[shard.find(hash, key)?];
        if now_ms < item.expires_ms {
            return Some(f(&item.entry));
        }
        match stale_window_ms {
            Some(window) if now_ms - item.expires_ms < window => Some(None),
            _ => None,
        }
    }

    /// Stores `entry` under `key` until `expires_ms`, replacing what was there (whose hit
    /// count it keeps); evicts an entry when the shard is full. With `kernel`, the kernel's map
    /// follows: the entry's kernel answer written (or the old one deleted), the evicted
    /// entry's deleted, under the shard's lock.
    pub fn insert(
        &self,
        hash: u64,
        key: &[u8],
        entry: Arc<Entry>,
        expires_ms: u64,
        zone: u16,
        kernel: Option<&KernelLink>,
    ) {
        let mut shard = self.shard(hash);
        if let Some(i) = shard.find(hash, key) {
            let item = &mut shard.slots[i];
            let old_zone = item.zone;
            item.in_kernel = sync_kernel(kernel, key, &entry, item.in_kernel);
            item.entry = entry;
            item.expires_ms = expires_ms;
            item.refreshing_since = None;
            item.zone = zone;
            drop(shard);
            if old_zone != zone {
                self.count(old_zone, -1);
                self.count(zone, 1);
            }
            return;
        }
        if let Some(i) = shard.index.get(&hash).copied() {
            // A different key with the same hash: the newer one wins.
            let old = shard.remove(i);
            forget_kernel(kernel, &old);
            self.count(old.zone, -1);
        }
        let mut evicted = None;
        if shard.slots.len() >= self.shard_capacity {
            let mut victim = shard.random();
            for _ in 1..EVICTION_SAMPLE {
                let other = shard.random();
                if shard.slots[other].expires_ms < shard.slots[victim].expires_ms {
                    victim = other;
                }
            }
            let old = shard.remove(victim);
            forget_kernel(kernel, &old);
            evicted = Some(old.zone);
        }
        let stored_ms = entry.stored_ms;
        let in_kernel = sync_kernel(kernel, key, &entry, false);
        let slot = shard.slots.len();
        shard.slots.push(Item {
            hash,
            key: key.into(),
            entry,
            expires_ms,
            hits: 0,
            last_hit_ms: stored_ms,
            refreshing_since: None,
            zone,
            in_kernel,
        });
        shard.index.insert(hash, slot);
        drop(shard);
        if let Some(z) = evicted {
            self.count(z, -1);
            if let Some(m) = self.zone_metrics(z) {
                m.evictions.inc();
            }
        }
        self.count(zone, 1);
    }

    /// Drops `key` (it is now cached in the other table), and its kernel answer.
    pub fn remove(&self, hash: u64, key: &[u8], kernel: Option<&KernelLink>) {
        let mut shard = self.shard(hash);
        if let Some(i) = shard.find(hash, key) {
            let old = shard.remove(i);
            forget_kernel(kernel, &old);
            drop(shard);
            self.count(old.zone, -1);
        }
    }

    /// Lets `key` be refreshed again (its refresh failed).
    pub fn refresh_done(&self, hash: u64, key: &[u8]) {
        let mut shard = self.shard(hash);
        if let Some(i) = shard.find(hash, key) {
            shard.slots[i].refreshing_since = None;
        }
    }

    /// Entries held, expired ones included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len())
            .sum()
    }

    fn count(&self, zone: u16, n: i64) {
        if let Some(m) = self.zone_metrics(zone) {
            m.add(n);
        }
    }

    /// Deletes from the kernel every answer this table wrote there (the cache is going away).
    pub fn forget_kernel(&self, kernel: &KernelLink) {
        for shard in &*self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for item in &mut shard.slots {
                if item.in_kernel {
                    kernel.remove_key(&item.key);
                    item.in_kernel = false;
                }
            }
        }
    }
}

/// Brings the kernel's answer for `key` in line with `entry`: writes the entry's, or deletes
/// the one written before (`was`). Returns whether the kernel holds the key now.
fn sync_kernel(kernel: Option<&KernelLink>, key: &[u8], entry: &Entry, was: bool) -> bool {
    let Some(kernel) = kernel else {
        return false;
    };
    match &entry.kernel {
        Some(value) => {
            kernel.put_key(key, value) || {
                // Not written (the map refused it): make sure no older answer stays.
                if was {
                    kernel.remove_key(key);
                }
                false
            }
        }
        None => {
            if was {
                kernel.remove_key(key);
            }
            false
        }
    }
}

/// Deletes the kernel's answer of an item leaving the table.
fn forget_kernel(kernel: Option<&KernelLink>, item: &Item) {
    if let (Some(kernel), true) = (kernel, item.in_kernel) {
        kernel.remove_key(&item.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            msg: Message::new(),
            stored_ms: 0,
            ttl: 60,
            wire: None,
            kernel: None,
        })
    }

    const POLICY: Policy = Policy {
        prefetch_amount: 0,
        prefetch_window_ms: 0,
        prefetch_percentage: 0,
        stale_window_ms: None,
        stale_refresh: false,
    };

    #[test]
    fn shards_as_coredns_sizes_them() {
        for (capacity, shards, per_shard) in [
            (9984, 256, 39),
            (1024, 256, 4),
            (5000, 256, 19),
            (100, 16, 6),
            (7, 1, 7),
            (1, 1, 1),
        ] {
            let s = Store::new(capacity, Vec::new(), 1);
            assert_eq!(
                (s.shards.len(), s.shard_capacity),
                (shards, per_shard),
                "{capacity}"
            );
        }
    }

    #[test]
    fn a_hash_collision_is_a_miss_never_the_other_answer() {
        let s = Store::new(16, Vec::new(), 1);
        s.insert(42, b"one", entry(), 60_000, 0, None);
        assert!(matches!(s.lookup(42, b"two", 0, &POLICY), Found::Miss));
        s.insert(42, b"two", entry(), 60_000, 0, None);
        assert!(matches!(s.lookup(42, b"one", 0, &POLICY), Found::Miss));
        assert!(matches!(
            s.lookup(42, b"two", 0, &POLICY),
            Found::Fresh { .. }
        ));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn removal_keeps_the_index_of_the_moved_slot() {
        let s = Store::new(7, Vec::new(), 1);
        for h in 0..5u64 {
            s.insert(h, &h.to_be_bytes(), entry(), 60_000, 0, None);
        }
        s.remove(1, &1u64.to_be_bytes(), None);
        for h in [0u64, 2, 3, 4] {
            assert!(
                matches!(
                    s.lookup(h, &h.to_be_bytes(), 0, &POLICY),
                    Found::Fresh { .. }
                ),
                "{h}"
            );
        }
        assert_eq!(s.len(), 4);
    }
}
