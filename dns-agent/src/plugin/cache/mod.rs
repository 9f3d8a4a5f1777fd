//! `cache`: answers repeated questions from memory, TTLs decaying (see `README.md` beside this file).
//!
//! Two tables as CoreDNS has: success (NOERROR with data, referrals) and denial (NXDOMAIN,
//! NODATA, and SERVFAIL for the `servfail` duration). A key is the question's name
//! (lower-case), type and class with the query's DO and CD bits. An answer is stored as the
//! next plugin returned it; a hit copies its sections with every TTL lowered by the whole
//! seconds it has spent in the cache (capped at the cache TTL), and takes one shard lock.
//! Each entry also keeps its encoded response, from which plain UDP hits are answered without
//! decoding anything (`wire.rs`, called by [`crate::plugin::Router::answer_wire`]).

mod kernel;
mod setup;
mod store;
#[cfg(test)]
mod tests;
mod wire;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub use setup::{
    parse, parse_duration, Config, Prefetch, ServeStale, StaleMode, Tier, DEFAULT_CAPACITY,
    DEFAULT_DENIAL_TTL, DEFAULT_MIN_TTL, DEFAULT_SERVFAIL, DEFAULT_SUCCESS_TTL, MAX_SERVFAIL,
    MIN_CAPACITY,
};
use store::{Entry, Found, Policy, Store, ZoneMetrics};

use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry::{Counter, Registry};
use crate::server::answer::Request;
use crate::server::wire::WireQuery;
pub use kernel::{answer_of as kernel_answer_of, KernelCache, KernelLink};
pub use wire::{Rotate, WireHit};

/// The TTL of a denial that carries no SOA to take it from (CoreDNS's fail-safe TTL).
const NO_SOA_TTL: u32 = 5;

/// Builds the plugin from its directive.
pub fn setup(d: &Directive, s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    let config = parse(d, s.zones)?;
    Ok(Arc::new(Cache::new(
        config,
        &s.metrics.registry,
        s.server,
        Clock::system(),
    )))
}

/// Where the cache reads the time: the system's monotonic clock (CLOCK_MONOTONIC, the clock of
/// `Instant` and of the kernel's `bpf_ktime_get_ns`), or a hand-moved one in tests.
#[derive(Clone, Debug)]
pub struct Clock(ClockKind);

#[derive(Clone, Debug)]
enum ClockKind {
    /// CLOCK_MONOTONIC nanoseconds when the clock started.
    System(u64),
    Manual(Arc<AtomicU64>),
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Clock {
    pub fn system() -> Self {
        Clock(ClockKind::System(monotonic_ns()))
    }

    /// The CLOCK_MONOTONIC nanoseconds at which the clock read 0 (a manual clock: 0).
    pub fn epoch_ns(&self) -> u64 {
        match &self.0 {
            ClockKind::System(epoch) => *epoch,
            ClockKind::Manual(_) => 0,
        }
    }

    /// A clock that stands still at 0 until moved with [`ManualClock::advance`].
    pub fn manual() -> (Self, ManualClock) {
        let ms = Arc::new(AtomicU64::new(0));
        (Clock(ClockKind::Manual(Arc::clone(&ms))), ManualClock(ms))
    }

    /// Milliseconds since the clock started.
    fn now_ms(&self) -> u64 {
        match &self.0 {
            ClockKind::System(epoch) => monotonic_ns().saturating_sub(*epoch) / 1_000_000,
            ClockKind::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }
}

/// The hand of a [`Clock::manual`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
    }
}

/// What kind of answer a response is, for caching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Success,
    Denial,
    ServFail,
}

/// The per-zone counters that do not depend on the table.
struct ZoneCounters {
    requests: Arc<Counter>,
    misses: Arc<Counter>,
    prefetch: Arc<Counter>,
    drops: Arc<Counter>,
    served_stale: Arc<Counter>,
}

/// A zone as lower-case labels, compared from the root without allocating.
struct Zone {
    /// Labels from the root down.
    labels: Vec<Vec<u8>>,
}

impl Zone {
    fn new(text: &str) -> Self {
        Zone {
            labels: text
                .split('.')
                .filter(|l| !l.is_empty())
                .rev()
                .map(|l| l.as_bytes().to_ascii_lowercase())
                .collect(),
        }
    }

    fn contains(&self, name: &Name) -> bool {
        self.holds(name.iter())
    }

    /// Whether the name of these labels (first to last) is in the zone.
    fn holds<'l>(&self, labels: impl DoubleEndedIterator<Item = &'l [u8]>) -> bool {
        let mut labels = labels.rev();
        self.labels
            .iter()
            .all(|z| labels.next().is_some_and(|l| l.eq_ignore_ascii_case(z)))
    }
}

/// The longest zone's index in `zones` among those `holds` says hold the name.
fn zone_index(zones: &[Zone], holds: impl Fn(&Zone) -> bool) -> Option<u16> {
    let mut best: Option<(usize, usize)> = None;
    for (i, z) in zones.iter().enumerate() {
        if holds(z) && best.is_none_or(|(_, len)| z.labels.len() > len) {
            best = Some((i, z.labels.len()));
        }
    }
    best.and_then(|(i, _)| u16::try_from(i).ok())
}

/// The cache key: each label (length, lower-case bytes), then type, class and the DO/CD bits.
/// Built on the stack.
#[derive(Clone)]
struct Key {
    buf: [u8; 264],
    len: usize,
}

const KEY_DO: u8 = 1;
const KEY_CD: u8 = 2;

impl Key {
    fn new(q: &Query, flags: u8) -> Option<Key> {
        let mut key = Key {
            buf: [0; 264],
            len: 0,
        };
        for label in q.name().iter() {
            let end = key.len + 1 + label.len();
            let dst = key.buf.get_mut(key.len..end)?;
            dst[0] = label.len() as u8;
            for (d, s) in dst[1..].iter_mut().zip(label) {
                *d = s.to_ascii_lowercase();
            }
            key.len = end;
        }
        let tail = key.buf.get_mut(key.len..key.len + 5)?;
        tail[..2].copy_from_slice(&u16::from(q.query_type()).to_be_bytes());
        tail[2..4].copy_from_slice(&u16::from(q.query_class()).to_be_bytes());
        tail[4] = flags;
        key.len += 5;
        Some(key)
    }

    /// The key of a query read from its bytes: the same bytes as [`Key::of`] gives the
    /// decoded query (the name's length bytes are below `A`, lower-casing leaves them).
    fn of_wire(q: &WireQuery<'_>) -> Option<Key> {
        let mut key = Key {
            buf: [0; 264],
            len: 0,
        };
        let name = q.name();
        let labels = &name[..name.len() - 1];
        for (d, s) in key.buf.get_mut(..labels.len())?.iter_mut().zip(labels) {
            *d = s.to_ascii_lowercase();
        }
        key.len = labels.len();
        let mut flags = 0;
        if q.edns.is_some_and(|e| e.dnssec_ok) {
            flags |= KEY_DO;
        }
        if q.checking_disabled() {
            flags |= KEY_CD;
        }
        let tail = key.buf.get_mut(key.len..key.len + 5)?;
        tail[..2].copy_from_slice(&q.qtype.to_be_bytes());
        tail[2..4].copy_from_slice(&q.qclass.to_be_bytes());
        tail[4] = flags;
        key.len += 5;
        Some(key)
    }

    fn of(req: &Request) -> Option<Key> {
        let mut flags = 0;
        if req.edns.is_some_and(|e| e.dnssec_ok) {
            flags |= KEY_DO;
        }
        if req.header.checking_disabled() {
            flags |= KEY_CD;
        }
        Key::new(&req.question, flags)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn flags(&self) -> u8 {
        self.buf[self.len - 1]
    }
}

/// Where a query's answer lives in the cache, worked out once per query.
#[derive(Clone)]
struct Slot {
    key: Key,
    hash: u64,
    /// Index of the cache zone the name is under.
    zone: u16,
    /// `DISABLE_SUCCESS` / `DISABLE_DENIAL`: `disable` covers the name.
    disabled: u8,
}

const DISABLE_SUCCESS: u8 = 1;
const DISABLE_DENIAL: u8 = 2;

/// The state shared with background refreshes.
struct Inner {
    config: Config,
    zones: Vec<Zone>,
    disable_success: Vec<Zone>,
    disable_denial: Vec<Zone>,
    policy: Policy,
    success: Store,
    denial: Store,
    counters: Vec<ZoneCounters>,
    hasher: RandomState,
    clock: Clock,
    /// Where the success entries the kernel can repeat are written (set once, by the agent,
    /// for the caches of the port the kernel serves).
    kernel: OnceLock<KernelLink>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A cache that goes away (reload) takes its answers out of the kernel.
        if let Some(link) = self.kernel.get() {
            self.success.forget_kernel(link);
        }
    }
}

/// The `cache` plugin.
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// A cache with `config`, its metrics registered in `registry` under the `server` label,
    /// reading the time from `clock`.
    pub fn new(config: Config, registry: &Registry, server: &str, clock: Clock) -> Self {
        let zone_names = config.zones.clone();
        let table = |kind: &str, capacity: usize, seed: u64| {
            let zones = zone_names
                .iter()
                .map(|z| {
                    let l = [
                        ("server", server),
                        ("type", kind),
                        ("zone", z),
                        ("view", ""),
                    ];
                    ZoneMetrics::new(
                        registry.gauge(
                            "coredns_cache_entries",
                            "The number of elements in the cache.",
                            &l,
                        ),
                        registry.counter(
                            "coredns_cache_hits_total",
                            "The count of cache hits.",
                            &l,
                        ),
                        registry.counter(
                            "coredns_cache_evictions_total",
                            "The count of cache evictions.",
                            &l,
                        ),
                    )
                })
                .collect();
            Store::new(capacity, zones, seed)
        };
        let hasher = RandomState::new();
        let seed = hasher.hash_one(0u64);
        let success = table("success", config.success.capacity, seed);
        let denial = table("denial", config.denial.capacity, seed.rotate_left(32));
        let counters = zone_names
            .iter()
            .map(|z| {
                let l = [("server", server), ("zone", z.as_str()), ("view", "")];
                ZoneCounters {
                    requests: registry.counter(
                        "coredns_cache_requests_total",
                        "The count of cache requests.",
                        &l,
                    ),
                    misses: registry.counter(
                        "coredns_cache_misses_total",
                        "The count of cache misses. Uncacheable requests are not counted.",
                        &l,
                    ),
                    prefetch: registry.counter(
                        "coredns_cache_prefetch_total",
                        "The number of times the cache has prefetched a cached item.",
                        &l,
                    ),
                    drops: registry.counter(
                        "coredns_cache_drops_total",
                        "The number responses that are not cached, because the reply is malformed.",
                        &l,
                    ),
                    served_stale: registry.counter(
                        "coredns_cache_served_stale_total",
                        "The number of requests served from stale cache entries.",
                        &l,
                    ),
                }
            })
            .collect();
        let policy = Policy {
            prefetch_amount: config.prefetch.map_or(0, |p| p.amount),
            prefetch_window_ms: config.prefetch.map_or(0, |p| p.window.as_millis() as u64),
            prefetch_percentage: config.prefetch.map_or(0, |p| u64::from(p.percentage)),
            stale_window_ms: config.serve_stale.map(|s| s.window.as_millis() as u64),
            stale_refresh: config
                .serve_stale
                .is_some_and(|s| s.mode == StaleMode::Immediate),
        };
        let zones_of = |list: &[String]| list.iter().map(|z| Zone::new(z)).collect::<Vec<_>>();
        Cache {
            inner: Arc::new(Inner {
                zones: zones_of(&config.zones),
                disable_success: zones_of(&config.disable_success),
                disable_denial: zones_of(&config.disable_denial),
                policy,
                success,
                denial,
                counters,
                hasher,
                clock,
                config,
                kernel: OnceLock::new(),
            }),
        }
    }

    /// Lets the kernel answer this cache's success entries it can reproduce: from now on they
    /// are written to `link` when stored and deleted when they go. Not for a cache whose hits
    /// must be counted by `prefetch`, nor with `keepttl` (the kernel decays TTLs); returns
    /// whether the link was made (a cache is linked once).
    pub fn link_kernel(&self, link: KernelLink) -> bool {
        self.kernel_may_answer() && self.inner.kernel.set(link).is_ok()
    }

    /// Whether the kernel may repeat this cache's answers: no `prefetch` (it counts hits), no
    /// `keepttl` (the kernel decays TTLs).
    pub fn kernel_may_answer(&self) -> bool {
        self.answers_from_wire() && !self.inner.config.keepttl
    }

    /// Whether the kernel gets this cache's answers.
    pub fn is_kernel_linked(&self) -> bool {
        self.inner.kernel.get().is_some()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Entries held in the success and denial tables (expired ones included).
    pub fn len(&self) -> (usize, usize) {
        (self.inner.success.len(), self.inner.denial.len())
    }
}

impl Inner {
    /// Where the answer to `req` lives, or `None` when the cache must not look (another
    /// opcode, a zone transfer, a name outside the cache's zones).
    fn cacheable(&self, req: &Request) -> Option<Slot> {
        if req.header.op_code() != OpCode::Query
            || matches!(
                req.question.query_type(),
                RecordType::AXFR | RecordType::IXFR
            )
        {
            return None;
        }
        let name = req.question.name();
        let zone = zone_index(&self.zones, |z| z.contains(name))?;
        let key = Key::of(req)?;
        let hash = self.hasher.hash_one(key.bytes());
        let covered = |list: &[Zone], bit: u8| {
            if list.iter().any(|z| z.contains(name)) {
                bit
            } else {
                0
            }
        };
        let disabled = covered(&self.disable_success, DISABLE_SUCCESS)
            | covered(&self.disable_denial, DISABLE_DENIAL);
        Some(Slot {
            key,
            hash,
            zone,
            disabled,
        })
    }

    fn lookup(&self, hash: u64, key: &[u8], now_ms: u64) -> (Found, &Store) {
        match self.success.lookup(hash, key, now_ms, &self.policy) {
            Found::Miss => (
                self.denial.lookup(hash, key, now_ms, &self.policy),
                &self.denial,
            ),
            found => (found, &self.success),
        }
    }

    /// The answer to a query from `entry`: its flags and sections, TTLs lowered by the time
    /// spent in the cache (0 when stale, as received with `keepttl`).
    fn render(&self, entry: &Entry, now_ms: u64, req: Request, stale: bool) -> Message {
        let elapsed =
            u32::try_from(now_ms.saturating_sub(entry.stored_ms) / 1000).unwrap_or(u32::MAX);
        let cap = entry.ttl;
        let keep = self.config.keepttl;
        let ttl = |orig: u32| {
            if stale {
                0
            } else if keep {
                orig
            } else {
                orig.min(cap).saturating_sub(elapsed)
            }
        };
        let copy = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    let t = ttl(r.ttl());
                    r.set_ttl(t);
                    r
                })
                .collect::<Vec<_>>()
        };
        let mut msg = Message::new();
        let mut header = *entry.msg.header();
        header.set_id(req.header.id());
        msg.set_header(header);
        msg.add_query(req.question);
        msg.insert_answers(copy(entry.msg.answers()));
        msg.insert_name_servers(copy(entry.msg.name_servers()));
        msg.insert_additionals(copy(entry.msg.additionals()));
        msg
    }

    /// Stores the next plugin's answer to the query of `key` when it is cacheable; returns the
    /// answer for the client (TTLs capped at the cache TTL unless `keepttl`).
    fn store(&self, mut msg: Message, slot: &Slot, question: &Query) -> Message {
        if let Some((kind, ttl_ms)) = self.admit(&msg, slot) {
            let now_ms = self.clock.now_ms();
            let ttl = u32::try_from(ttl_ms / 1000).unwrap_or(u32::MAX);
            let kind_success = kind == Kind::Success;
            let mut entry = Entry {
                msg: msg.clone(),
                stored_ms: now_ms,
                ttl,
                wire: None,
                kernel: None,
            };
            entry.wire = wire::WireEntry::new(self, &entry, question);
            let link = self.kernel.get();
            if let (Some(link), Some(wire), true) = (link, &entry.wire, kind_success) {
                // Only the plain key: no DO, no CD bit (the kernel passes those queries).
                if slot.key.flags() == 0 {
                    entry.kernel =
                        kernel::answer_of(wire.bytes(), link.single_address_only).map(|mut v| {
                            let epoch = self.clock.epoch_ns();
                            v.decay_from_ns = epoch + now_ms * 1_000_000;
                            v.expires_ns = epoch + (now_ms + ttl_ms) * 1_000_000;
                            Box::new(v)
                        });
                }
            }
            let entry = Arc::new(entry);
            let (table, other, table_link, other_link) = if kind_success {
                (&self.success, &self.denial, link, None)
            } else {
                (&self.denial, &self.success, None, link)
            };
            other.remove(slot.hash, slot.key.bytes(), other_link);
            table.insert(
                slot.hash,
                slot.key.bytes(),
                entry,
                now_ms + ttl_ms,
                slot.zone,
                table_link,
            );
            if !self.config.keepttl {
                cap_ttls(&mut msg, ttl);
            }
        }
        msg
    }

    /// How `msg` is cached and for how long (ms), or `None` when it must not be.
    fn admit(&self, msg: &Message, slot: &Slot) -> Option<(Kind, u64)> {
        let kind = kind(msg)?;
        if let Some(q) = msg.queries().first() {
            let key = &slot.key;
            let same = Key::new(q, key.flags()).is_some_and(|k| k.bytes() == key.bytes());
            if !same || msg.queries().len() > 1 {
                if let Some(c) = self.counters.get(usize::from(slot.zone)) {
                    c.drops.inc();
                }
                return None;
            }
        }
        let disabled = |bit: u8| slot.disabled & bit != 0;
        let secs =
            |ttl: u32, tier: &Tier| u64::from(ttl.max(tier.min_ttl).min(tier.max_ttl)) * 1000;
        let ms = match kind {
            Kind::Success if !disabled(DISABLE_SUCCESS) => {
                secs(success_ttl(msg), &self.config.success)
            }
            Kind::Denial if !disabled(DISABLE_DENIAL) => secs(denial_ttl(msg), &self.config.denial),
            Kind::ServFail if !disabled(DISABLE_DENIAL) => self.config.servfail.as_millis() as u64,
            _ => return None,
        };
        (ms > 0).then_some((kind, ms))
    }

    /// Lets `key` be refreshed again after a refresh that brought nothing to store.
    fn refresh_done(&self, slot: &Slot) {
        self.success.refresh_done(slot.hash, slot.key.bytes());
        self.denial.refresh_done(slot.hash, slot.key.bytes());
    }
}

/// How a response is cached, or `None` when it is not.
fn kind(msg: &Message) -> Option<Kind> {
    if msg.truncated() || msg.op_code() != OpCode::Query {
        return None;
    }
    match msg.response_code() {
        ResponseCode::NoError => {
            let referral = msg.answers().is_empty()
                && msg
                    .name_servers()
                    .iter()
                    .any(|r| r.record_type() == RecordType::NS)
                && !msg
                    .name_servers()
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA);
            if !msg.answers().is_empty() || referral {
                Some(Kind::Success)
            } else {
                Some(Kind::Denial)
            }
        }
        ResponseCode::NXDomain => Some(Kind::Denial),
        ResponseCode::ServFail => Some(Kind::ServFail),
        _ => None,
    }
}

/// The smallest TTL of the records (OPT aside); `u32::MAX` when there are none.
fn success_ttl(msg: &Message) -> u32 {
    msg.answers()
        .iter()
        .chain(msg.name_servers())
        .chain(msg.additionals())
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(Record::ttl)
        .min()
        .unwrap_or(u32::MAX)
}

/// RFC 2308 §5: the smaller of the SOA's TTL and its MINIMUM field.
fn denial_ttl(msg: &Message) -> u32 {
    msg.name_servers()
        .iter()
        .find_map(|r| match r.data() {
            RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
            _ => None,
        })
        .unwrap_or(NO_SOA_TTL)
}

fn cap_ttls(msg: &mut Message, cap: u32) {
    let mut answers = msg.take_answers();
    let mut authority = msg.take_name_servers();
    let mut additional = msg.take_additionals();
    for r in answers
        .iter_mut()
        .chain(authority.iter_mut())
        .chain(additional.iter_mut())
    {
        if r.ttl() > cap {
            r.set_ttl(cap);
        }
    }
    msg.insert_answers(answers);
    msg.insert_name_servers(authority);
    msg.insert_additionals(additional);
}

impl Cache {
    /// Asks the rest of the chain again for `req` off the query's path and stores what comes
    /// back (what fails leaves the cached item as it is).
    fn refresh(&self, ctx: &Ctx, req: Request, next: Next<'_>, slot: &Slot) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.refresh_done(slot);
            return;
        };
        let inner = Arc::clone(&self.inner);
        // The task may outlive this query's borrow of the chain: it keeps its own handles.
        let plugins: Vec<Arc<dyn Plugin>> = next.rest.to_vec();
        let ctx = ctx.clone();
        let slot = slot.clone();
        runtime.spawn(async move {
            let question = req.question.clone();
            match Next::chain(&plugins).serve(&ctx, req).await {
                Ok(msg) if msg.response_code() != ResponseCode::ServFail => {
                    inner.store(msg, &slot, &question);
                }
                Ok(_) => inner.refresh_done(&slot),
                Err(e) => {
                    log::debug!("cache: refresh failed: {e}");
                    inner.refresh_done(&slot);
                }
            }
        });
    }
}

impl Plugin for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        let inner = &*self.inner;
        let Some(slot) = inner.cacheable(&req) else {
            return next.serve(ctx, req);
        };
        let zone = slot.zone;
        let counters = &inner.counters[usize::from(zone)];
        counters.requests.inc();
        let now_ms = inner.clock.now_ms();
        let (found, table) = inner.lookup(slot.hash, slot.key.bytes(), now_ms);
        match found {
            Found::Fresh { entry, refresh } => {
                if let Some(m) = table.zone_metrics(zone) {
                    m.hits.inc();
                }
                if refresh {
                    counters.prefetch.inc();
                    self.refresh(ctx, req.clone(), next, &slot);
                }
                let msg = inner.render(&entry, now_ms, req, false);
                Box::pin(async move { Ok(msg) })
            }
            Found::Stale { entry, refresh } => match inner.config.serve_stale {
                Some(ServeStale {
                    mode: StaleMode::Verify,
                    ..
                }) => {
                    counters.misses.inc();
                    Box::pin(async move {
                        let fallback = req.clone();
                        match next.serve(ctx, req).await {
                            Ok(msg) if msg.response_code() != ResponseCode::ServFail => {
                                Ok(inner.store(msg, &slot, &fallback.question))
                            }
                            other => {
                                if let Err(e) = other {
                                    log::debug!("cache: serving stale, next failed: {e}");
                                }
                                counters.served_stale.inc();
                                Ok(inner.render(&entry, inner.clock.now_ms(), fallback, true))
                            }
                        }
                    })
                }
                _ => {
                    counters.served_stale.inc();
                    if refresh {
                        self.refresh(ctx, req.clone(), next, &slot);
                    }
                    let msg = inner.render(&entry, now_ms, req, true);
                    Box::pin(async move { Ok(msg) })
                }
            },
            Found::Miss => {
                counters.misses.inc();
                Box::pin(async move {
                    let question = req.question.clone();
                    let msg: Message = next.serve(ctx, req).await?;
                    Ok(inner.store(msg, &slot, &question))
                })
            }
        }
    }
}
