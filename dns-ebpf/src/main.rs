//! dns-ebpf: the XDP and TC programs that answer A and AAAA queries, over IPv4 or IPv6, from
//! `DNS_A` and `DNS_AAAA` (NODATA with `DNS_SOA`'s record for a name that has only the other
//! type, NXDOMAIN for one `DNS_TREE` proves absent), and external names from `DNS_CACHE` (what
//! the agent's `cache` plugin holds) until they expire.
#![no_std]
#![no_main]

mod answer;
mod cache;
mod dns;
mod eth;
mod ip;
mod ipv4;
mod ipv6;
mod packet;
mod rrset;
mod stats;
mod tree;
mod udp;

use aya_ebpf::{
    bindings::{xdp_action, BPF_F_NO_PREALLOC, TC_ACT_OK},
    helpers::generated::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    programs::{TcContext, XdpContext},
};
use dns_common::{config, records, soa};

use crate::{
    ip::Ip,
    packet::{Packet, Tc, Xdp},
};

/// Which addresses and port to answer for (written by the agent).
#[map]
pub static DNS_CONFIG: Array<config::Config> = Array::with_max_entries(config::CAPACITY, 0);

/// The A records, keyed by name hash (written by the agent). Not preallocated: memory follows
/// the number of names, and only userspace inserts.
#[map]
pub static DNS_A: HashMap<records::NameKey, records::ARecords> =
    HashMap::with_max_entries(records::CAPACITY, BPF_F_NO_PREALLOC);

/// The AAAA records, same key as `DNS_A` (written by the agent).
#[map]
pub static DNS_AAAA: HashMap<records::NameKey, records::AaaaRecords> =
    HashMap::with_max_entries(records::AAAA_CAPACITY, BPF_F_NO_PREALLOC);

/// The zone's SOA, for negative answers (written by the agent).
#[map]
pub static DNS_SOA: Array<soa::Soa> = Array::with_max_entries(soa::CAPACITY, 0);

/// Answers rotated so far on each CPU (`config::FLAG_ROTATE`), the program's own.
#[map]
pub static DNS_TURN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The question's name as loaded and lower-cased (inside the entry `DNS_PROVEN` may get), and
/// room for one of its suffixes (`tree`), per CPU (the program's own).
#[map]
pub static DNS_NAME: PerCpuArray<tree::Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The negative answers the kernel proved (see `dns_common::tree::Proven`), its own.
#[map]
pub static DNS_PROVEN: LruHashMap<records::NameKey, dns_common::tree::Proven> =
    LruHashMap::with_max_entries(dns_common::tree::PROVEN_CAPACITY, 0);

/// The zone's upper levels, for NXDOMAIN (written by the agent), same key as `DNS_A`.
#[map]
pub static DNS_TREE: HashMap<records::NameKey, dns_common::tree::Node> =
    HashMap::with_max_entries(dns_common::tree::CAPACITY, BPF_F_NO_PREALLOC);

/// The program a query `dns_xdp`'s cluster maps miss goes on to: `dns_cache_xdp` in slot 0
/// (written by the agent; a program array holds programs of one type). Empty: passed.
#[map]
pub static DNS_NEXT_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// `dns_tc`'s twin of `DNS_NEXT_XDP`: `dns_cache_tc` in slot 0.
#[map]
pub static DNS_NEXT_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Answers A and AAAA queries for known names with `XDP_TX`; passes everything else untouched.
#[xdp]
pub fn dns_xdp(ctx: XdpContext) -> u32 {
    let mut p = Xdp(ctx);
    let res = try_answer(&mut p);
    if res == Err(dns_common::stats::MISS) {
        // SAFETY: a tail call into a program of the same type; on failure it returns here.
        unsafe { DNS_NEXT_XDP.tail_call(&p.0, 0) };
    }
    xdp_verdict(res)
}

/// TC ingress twin of `dns_xdp`: the answer leaves through the interface the query came in on.
#[classifier]
pub fn dns_tc(ctx: TcContext) -> i32 {
    let mut p = Tc(ctx);
    let res = try_answer(&mut p);
    if res == Err(dns_common::stats::MISS) {
        // SAFETY: as in `dns_xdp`.
        unsafe { DNS_NEXT_TC.tail_call(&p.0, 0) };
    }
    tc_verdict(&p, res)
}

/// The kernel cache (`DNS_CACHE`) for a query the cluster maps missed, reached by a tail call
/// from `dns_xdp`: answered with `XDP_TX`, or passed (counted as `miss`, as it came).
#[xdp]
pub fn dns_cache_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict(cache::try_answer(&mut Xdp(ctx)))
}

/// TC twin of `dns_cache_xdp`, reached from `dns_tc`.
#[classifier]
pub fn dns_cache_tc(ctx: TcContext) -> i32 {
    let mut p = Tc(ctx);
    let res = cache::try_answer(&mut p);
    tc_verdict(&p, res)
}

/// Bench baseline: sends any UDP datagram for a service address (IPv4 or IPv6) straight back.
#[xdp]
pub fn reflect_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict(try_reflect(&mut Xdp(ctx)))
}

/// TC twin of `reflect_xdp`.
#[classifier]
pub fn reflect_tc(ctx: TcContext) -> i32 {
    let mut p = Tc(ctx);
    let res = try_reflect(&mut p);
    tc_verdict(&p, res)
}

/// The shared fast path: parse, look up, rewrite. `Err` carries the `stats` reason to pass.
#[inline(always)]
fn try_answer<P: Packet>(p: &mut P) -> Result<(), u32> {
    let ip = Ip::parse(p, eth::parse(p)?)?;
    let udp = udp::parse(p, &ip)?;
    // Only now, for a query to us: pulling every packet of a pod's traffic into the head
    // (a TCP GSO packet is 64 KiB) would cost far more than it saves.
    p.linearize()?;
    let q = dns::parse(p, &udp)?;
    // The name's words, shared by every lookup: in map memory, not on the 512-byte stack.
    let scratch = DNS_NAME
        .get_ptr_mut(0)
        .ok_or(dns_common::stats::HELPER_FAILED)?;
    // One comparison, then the map of the asked type (and, on a miss, the other type's, for
    // a name that has only those: NODATA; then the zone's tree: NXDOMAIN).
    // (name sum, the key when the tree must decide) of a negative answer.
    let (name_sum, absent) = if q.is_aaaa() {
        match dns::lookup::<P, records::AaaaRecords, records::ARecords>(p, &q, scratch)? {
            dns::Lookup::Records(found) => return answer::reply(p, &ip, &udp, &q, &found),
            dns::Lookup::NoData { name_sum } => (name_sum, None),
            dns::Lookup::Absent { name_sum, key } => (name_sum, Some(key)),
        }
    } else {
        match dns::lookup::<P, records::ARecords, records::AaaaRecords>(p, &q, scratch)? {
            dns::Lookup::Records(found) => return answer::reply(p, &ip, &udp, &q, &found),
            dns::Lookup::NoData { name_sum } => (name_sum, None),
            dns::Lookup::Absent { name_sum, key } => (name_sum, Some(key)),
        }
    };
    let rcode = match absent {
        Some(key) => match tree::negative(p, &q, scratch, &key)? {
            tree::Negative::NxDomain => answer::NXDOMAIN,
            tree::Negative::NoData => answer::NOERROR,
        },
        None => answer::NOERROR,
    };
    answer::negative(p, &ip, &udp, &q, name_sum, rcode)
}

/// Swaps addresses and ports of a datagram for a service address, nothing else (the UDP
/// checksum stays valid: the sum is symmetric).
#[inline(always)]
fn try_reflect<P: Packet>(p: &mut P) -> Result<(), u32> {
    let ip = Ip::parse(p, eth::parse(p)?)?;
    let udp = udp::parse(p, &ip)?;
    p.linearize()?;
    eth::swap_macs(p)?;
    ip.swap_addrs(p)?;
    udp::swap_ports(p, &udp)?;
    Ok(())
}

#[inline(always)]
fn xdp_verdict(res: Result<(), u32>) -> u32 {
    match res {
        Ok(()) => {
            stats::count(dns_common::stats::ANSWERED);
            xdp_action::XDP_TX
        }
        Err(reason) => {
            stats::count(reason);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn tc_verdict(p: &Tc, res: Result<(), u32>) -> i32 {
    match res {
        Ok(()) => {
            stats::count(dns_common::stats::ANSWERED);
            // SAFETY: plain helper call; with flags 0 it returns TC_ACT_REDIRECT.
            unsafe { bpf_redirect(p.ifindex(), 0) as i32 }
        }
        Err(reason) => {
            stats::count(reason);
            TC_ACT_OK as i32
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
