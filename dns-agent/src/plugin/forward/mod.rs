//! `forward`: sends the queries of a zone to upstream resolvers (see `README.md` beside this
//! file).

pub mod exchange;
pub mod setup;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::{Answer, Ctx, Next, Plugin, PluginError, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry::{self, Counter, Registry};
use crate::records::in_zone;
use crate::server::answer::{Request, Transport};
pub use setup::{Config, Policy};

/// How long one attempt on one upstream may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one query may take over all its attempts (CoreDNS's default timeout).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a health check query may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// A random number from the kernel (`getrandom`), for query IDs, names and the random policy.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    // Never expected on Linux; still unpredictable enough for IDs.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// One upstream and its health.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Consecutive failures (queries or health checks); reset by any answer.
    fails: AtomicU32,
    label: String,
    requests: Arc<Counter>,
    healthcheck_failures: Arc<Counter>,
}

impl Upstream {
    /// Consecutive failures so far.
    pub fn fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    fn failed(&self) {
        let _ = self
            .fails
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_add(1))
            });
    }

    fn answered(&self) {
        self.fails.store(0, Ordering::Relaxed);
    }
}

/// The upstreams and their shared state, also held by the health checker.
pub struct Upstreams {
    pub list: Vec<Upstream>,
    policy: Policy,
    /// Failures that mark an upstream down; `None`: never down.
    down_after: Option<u32>,
    round_robin: AtomicUsize,
    healthcheck_broken: Arc<Counter>,
}

impl Upstreams {
    /// Whether upstream `i` is marked down.
    pub fn is_down(&self, i: usize) -> bool {
        self.down_after
            .is_some_and(|max| self.list[i].fails() >= max)
    }

    /// The upstreams to try for one query, in order: the policy's order without those that
    /// are down; when all are down, one picked at random (health checking may be broken).
    pub fn order(&self) -> Vec<usize> {
        let n = self.list.len();
        let mut order: Vec<usize> = (0..n).collect();
        match self.policy {
            Policy::Sequential => {}
            Policy::RoundRobin => {
                let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
                order.rotate_left(start);
            }
            Policy::Random => {
                for i in (1..n).rev() {
                    let j = (random_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
            }
        }
        order.retain(|&i| !self.is_down(i));
        if order.is_empty() {
            self.healthcheck_broken.inc();
            order.push((random_u64() % n as u64) as usize);
        }
        order
    }
}

/// The `forward` plugin.
pub struct Forward {
    cfg: Config,
    upstreams: Arc<Upstreams>,
    in_flight: AtomicUsize,
    metrics: Arc<crate::metrics::Metrics>,
    max_concurrent_rejects: Arc<Counter>,
    /// The health checker, stopped when the plugin is dropped.
    health: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        if let Some(h) = &self.health {
            h.abort();
        }
    }
}

/// Decrements the in-flight count when a query ends (or its future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `forward FROM TO... { options }`.
pub fn setup(d: &Directive, s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    let cfg = setup::parse(d, s.dir)?;
    Ok(Arc::new(Forward::new(cfg, s.metrics)))
}

impl Forward {
    /// The plugin for `cfg`, its metrics in `metrics.registry`; starts the health checker when
    /// a Tokio runtime is running.
    pub fn new(cfg: Config, metrics: &Arc<crate::metrics::Metrics>) -> Self {
        let reg = &metrics.registry;
        let list = cfg
            .upstreams
            .iter()
            .map(|&addr| {
                let label = addr.to_string();
                Upstream {
                    addr,
                    fails: AtomicU32::new(0),
                    requests: reg.counter(
                        "coredns_forward_requests_total",
                        "Counter of requests made per upstream.",
                        &[("to", &label)],
                    ),
                    healthcheck_failures: reg.counter(
                        "coredns_forward_healthcheck_failures_total",
                        "Counter of the number of failed healthchecks.",
                        &[("to", &label)],
                    ),
                    label,
                }
            })
            .collect();
        let checks = cfg.max_fails > 0 && !cfg.health_check.is_zero();
        let upstreams = Arc::new(Upstreams {
            list,
            policy: cfg.policy,
            down_after: checks.then_some(cfg.max_fails),
            round_robin: AtomicUsize::new(0),
            healthcheck_broken: reg.counter(
                "coredns_forward_healthcheck_broken_total",
                "Counter of the number of complete failures of the healthchecks.",
                &[],
            ),
        });
        let health = match tokio::runtime::Handle::try_current() {
            Ok(rt) if checks => Some(rt.spawn(health_checker(
                Arc::clone(&upstreams),
                HealthCheck::of(&cfg),
            ))),
            _ => None,
        };
        Forward {
            max_concurrent_rejects: reg.counter(
                "coredns_forward_max_concurrent_rejects_total",
                "Counter of the number of queries rejected because the concurrent queries were at maximum.",
                &[],
            ),
            cfg,
            upstreams,
            in_flight: AtomicUsize::new(0),
            metrics: Arc::clone(metrics),
            health,
        }
    }

    /// The upstreams and their health.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Whether the query for `key` (lower-case FQDN) is forwarded.
    pub fn handles(&self, key: &str) -> bool {
        in_zone(key, &self.cfg.from) && !self.cfg.except.iter().any(|e| in_zone(key, e))
    }

    async fn forward(&self, req: &Request) -> Result<Message, PluginError> {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let _guard = InFlight(&self.in_flight);
        if self.cfg.max_concurrent.is_some_and(|max| n > max) {
            self.max_concurrent_rejects.inc();
            return Err(PluginError::new(
                "forward",
                "max concurrent queries reached",
            ));
        }
        let flags = exchange::Flags {
            recursion_desired: req.header.recursion_desired(),
            checking_disabled: req.header.checking_disabled(),
            authentic_data: req.header.authentic_data(),
            dnssec_ok: req.edns.is_some_and(|e| e.dnssec_ok),
        };
        let tcp_first =
            self.cfg.force_tcp || (req.transport == Transport::Tcp && !self.cfg.prefer_udp);
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let mut errors = Vec::new();
        for i in self.upstreams.order() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let up = &self.upstreams.list[i];
            match self
                .attempt(
                    up,
                    &req.question,
                    flags,
                    tcp_first,
                    left.min(ATTEMPT_TIMEOUT),
                )
                .await
            {
                Ok(mut answer) => {
                    up.answered();
                    answer.extensions_mut().take();
                    return Ok(answer);
                }
                Err(e) => {
                    up.failed();
                    errors.push(format!("{}: {e}", up.addr));
                }
            }
        }
        Err(PluginError::new(
            "forward",
            format!(
                "no answer from any upstream for {} {}: {}",
                req.question.name(),
                req.question.query_type(),
                errors.join("; ")
            ),
        ))
    }

    /// One attempt on one upstream: UDP (retried over TCP when the answer is truncated) or TCP.
    async fn attempt(
        &self,
        up: &Upstream,
        question: &Query,
        flags: exchange::Flags,
        tcp_first: bool,
        timeout: Duration,
    ) -> io::Result<Message> {
        let start = Instant::now();
        let mut tcp = tcp_first;
        loop {
            up.requests.inc();
            let query = exchange::query(question, flags);
            // The TCP retry of a truncated answer shares the attempt's time.
            let left = timeout.saturating_sub(start.elapsed());
            let result = if tcp {
                exchange::tcp(up.addr, &query, left).await
            } else {
                exchange::udp(up.addr, &query, left).await
            };
            let answer = result?;
            self.observe(up, &answer, start.elapsed());
            if answer.truncated() && !tcp && !self.cfg.force_tcp {
                tcp = true;
                continue;
            }
            return Ok(answer);
        }
    }

    fn observe(&self, up: &Upstream, answer: &Message, took: Duration) {
        let rcode = super::rcode_name(u16::from(answer.response_code()));
        let reg: &Registry = &self.metrics.registry;
        let labels = [("to", up.label.as_str()), ("rcode", rcode.as_str())];
        reg.counter(
            "coredns_forward_responses_total",
            "Counter of responses received per upstream.",
            &labels,
        )
        .inc();
        reg.histogram(
            "coredns_forward_request_duration_seconds",
            "Histogram of the time each request took.",
            &labels,
            &registry::time_buckets(),
        )
        .observe(took.as_secs_f64());
    }
}

impl Plugin for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        if !self.handles(&req.key()) {
            return next.serve(ctx, req);
        }
        Box::pin(async move { self.forward(&req).await })
    }
}

/// What the health checker asks and how.
#[derive(Clone, Debug)]
struct HealthCheck {
    interval: Duration,
    question: Query,
    recursion_desired: bool,
    tcp: bool,
}

impl HealthCheck {
    fn of(cfg: &Config) -> Self {
        let name = Name::from_ascii(&cfg.health_domain).unwrap_or_else(|_| Name::root());
        let mut question = Query::query(name, RecordType::NS);
        question.set_query_class(DNSClass::IN);
        HealthCheck {
            interval: cfg.health_check,
            question,
            recursion_desired: cfg.health_rec,
            tcp: cfg.force_tcp,
        }
    }

    /// Whether `addr` answers (any RCODE counts).
    async fn check(&self, addr: SocketAddr) -> bool {
        let flags = exchange::Flags {
            recursion_desired: self.recursion_desired,
            ..Default::default()
        };
        let query = exchange::query(&self.question, flags);
        let result = if self.tcp {
            exchange::tcp(addr, &query, HEALTH_TIMEOUT).await
        } else {
            exchange::udp(addr, &query, HEALTH_TIMEOUT).await
        };
        result.is_ok()
    }
}

/// Every interval, checks the upstreams that have failed since their last answer: an answer
/// clears their failures (up again), a failure adds one.
async fn health_checker(upstreams: Arc<Upstreams>, hc: HealthCheck) {
    let mut tick = tokio::time::interval(hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checks = upstreams
            .list
            .iter()
            .filter(|u| u.fails() > 0)
            .map(|u| async {
                if hc.check(u.addr).await {
                    u.answered();
                } else {
                    u.failed();
                    u.healthcheck_failures.inc();
                }
            });
        futures::future::join_all(checks).await;
    }
}

#[cfg(test)]
mod tests;
