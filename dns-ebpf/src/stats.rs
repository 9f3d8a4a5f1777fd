//! `DNS_STATS`: per-CPU packet counters by reason (the only map the programs write).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use dns_common::stats;

#[map]
pub static DNS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Adds one to the counter of `reason` on this CPU.
#[inline(always)]
pub fn count(reason: u32) {
    if let Some(c) = DNS_STATS.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe { *c += 1 };
    }
}
