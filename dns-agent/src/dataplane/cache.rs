//! `DNS_CACHE`: the answers of the userspace caches the kernel repeats, written and deleted as
//! the caches store and drop them (the [`KernelCache`] the `cache` plugin writes through).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aya::maps::{HashMap as BpfHashMap, MapData};
use dns_common::cache::{CacheKey, CachedAnswer, MAP_NAME};

use super::{is_missing, names};
use crate::metrics::registry::{Counter, Gauge};
use crate::plugin::cache::KernelCache;

/// The map and what the agent wrote to it.
pub struct KernelAnswers {
    state: Mutex<State>,
    capacity: u32,
    metrics: OnceLock<(Arc<Gauge>, Arc<Counter>)>,
}

struct State {
    map: BpfHashMap<MapData, CacheKey, CachedAnswer>,
    /// Keys written and not deleted since (the kernel's LRU may have dropped some of them).
    written: HashSet<CacheKey>,
}

impl KernelAnswers {
    pub(super) fn new(map: BpfHashMap<MapData, CacheKey, CachedAnswer>, capacity: u32) -> Self {
        KernelAnswers {
            state: Mutex::new(State {
                map,
                written: HashSet::new(),
            }),
            capacity,
            metrics: OnceLock::new(),
        }
    }

    /// Reports the entries written (`dns_agent_kernel_cache_entries`) and the writes
    /// (`dns_agent_kernel_cache_writes_total`) in `registry`.
    pub fn report_to(&self, registry: &crate::metrics::registry::Registry) {
        let entries = registry.gauge(
            "dns_agent_kernel_cache_entries",
            "Answers of the userspace caches written to the kernel's DNS_CACHE map and not deleted since.",
            &[],
        );
        let writes = registry.counter(
            "dns_agent_kernel_cache_writes_total",
            "Answers of the userspace caches written to the kernel's DNS_CACHE map.",
            &[],
        );
        entries.set(self.written() as f64);
        let _ = self.metrics.set((entries, writes));
    }

    /// Capacity of the map (entries), as loaded.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Keys written and not deleted since.
    pub fn written(&self) -> usize {
        self.lock().written.len()
    }

    /// The entries the kernel map holds now, read back from it (tests, diagnostics).
    pub fn read_all(&self) -> Vec<(CacheKey, CachedAnswer)> {
        let state = self.lock();
        state.map.iter().filter_map(Result::ok).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(name: &[u8], qtype: u16) -> Option<CacheKey> {
        let (key, _) = names::key_of(name).ok()?;
        Some(CacheKey {
            hash: key.hash,
            len: key.len,
            qtype,
            _pad: [0; 4],
        })
    }

    fn report(&self, state: &State) {
        if let Some((g, _)) = self.metrics.get() {
            g.set(state.written.len() as f64);
        }
    }
}

impl KernelCache for KernelAnswers {
    fn put(&self, name: &[u8], qtype: u16, value: &CachedAnswer) -> bool {
        let Some(key) = Self::key(name, qtype) else {
            return false;
        };
        let mut state = self.lock();
        match state.map.insert(key, value, 0) {
            Ok(()) => {
                state.written.insert(key);
                if let Some((_, c)) = self.metrics.get() {
                    c.inc();
                }
                self.report(&state);
                true
            }
            Err(e) => {
                log::warn!("eBPF map {MAP_NAME}: writing a cached answer: {e}");
                false
            }
        }
    }

    fn remove(&self, name: &[u8], qtype: u16) {
        let Some(key) = Self::key(name, qtype) else {
            return;
        };
        let mut state = self.lock();
        match state.map.remove(&key) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => log::warn!("eBPF map {MAP_NAME}: deleting a cached answer: {e}"),
        }
        state.written.remove(&key);
        self.report(&state);
    }
}
