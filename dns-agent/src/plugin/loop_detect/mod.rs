//! `loop` (module `loop_detect`): finds forwarding loops by sending a probe query to our own
//! server and counting how often it comes back (see `README.md` beside this file).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use hickory_proto::op::Query;
use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::forward::{exchange, random_u64};
use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::server::answer::{lookup_key, Request};

/// Sightings of the probe above which there is a loop (CoreDNS: more than twice).
pub const MAX_SIGHTINGS: u32 = 2;
/// How long the probe is retried while it gets no answer.
pub const PROBE_FOR: Duration = Duration::from_secs(30);
/// How long after the probe's answer sightings still count.
pub const LINGER: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_RETRY: Duration = Duration::from_secs(1);

/// A detected loop: what is logged before the process exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopReport {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub zone: String,
    /// The probe's name (FQDN).
    pub qname: String,
}

impl fmt::Display for LoopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Loop ({} -> {}) detected for zone {:?}, see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
            self.client, self.local, self.zone, self.qname
        )
    }
}

/// What happens when a loop is found.
pub type OnLoop = Box<dyn Fn(&LoopReport) + Send + Sync>;

/// The default [`OnLoop`]: log and exit with status 1, as CoreDNS does.
pub fn exit_on_loop() -> OnLoop {
    Box::new(|report| {
        log::error!("plugin/loop: {report}");
        std::process::exit(1);
    })
}

/// Counts the sightings of one probe name and calls `on_loop` when it is seen too often.
pub struct Detector {
    zone: String,
    /// The probe's name, lower-case FQDN (our key form).
    qname: String,
    seen: AtomicU32,
    disabled: AtomicBool,
    on_loop: OnLoop,
}

impl Detector {
    /// A detector for `zone` with a random probe name `<random>.<random>.<zone>`.
    pub fn new(zone: &str, on_loop: OnLoop) -> Self {
        let zone = if zone.ends_with('.') {
            zone.to_owned()
        } else {
            format!("{zone}.")
        };
        let qname = if zone == "." {
            format!("{}.{}.", random_u64(), random_u64())
        } else {
            format!("{}.{}.{zone}", random_u64(), random_u64())
        };
        Detector {
            zone,
            qname,
            seen: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
            on_loop,
        }
    }

    /// The probe's name (FQDN).
    pub fn qname(&self) -> &str {
        &self.qname
    }

    /// Times the probe was seen since the last reset.
    pub fn seen(&self) -> u32 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Whether detection has ended (the probe was answered, or given up).
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
    }

    /// Looks at one query (its key, type, client and listener); calls `on_loop` when this is
    /// the probe seen more than [`MAX_SIGHTINGS`] times. Returns whether it was the probe.
    pub fn sight(
        &self,
        key: &str,
        qtype: RecordType,
        client: SocketAddr,
        local: SocketAddr,
    ) -> bool {
        if self.is_disabled() || qtype != RecordType::HINFO || key != self.qname {
            return false;
        }
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if seen > MAX_SIGHTINGS {
            (self.on_loop)(&LoopReport {
                client,
                local,
                zone: self.zone.clone(),
                qname: self.qname.clone(),
            });
        }
        true
    }

    /// Sends the probe to `addr` (an unspecified IP becomes loopback) until it gets an answer
    /// or [`PROBE_FOR`] has passed; sightings count until [`LINGER`] after that answer.
    /// A query that gets no answer resets the count (as CoreDNS does).
    pub async fn probe(&self, addr: SocketAddr) {
        let addr = reachable(addr);
        let Ok(name) = Name::from_ascii(&self.qname) else {
            self.disable();
            return;
        };
        let mut question = Query::query(name, RecordType::HINFO);
        question.set_query_class(DNSClass::IN);
        let flags = exchange::Flags {
            recursion_desired: true,
            ..Default::default()
        };
        let end = Instant::now() + PROBE_FOR;
        while Instant::now() < end && !self.is_disabled() {
            let query = exchange::query(&question, flags);
            match exchange::udp(addr, &query, PROBE_TIMEOUT).await {
                Ok(_) => {
                    tokio::time::sleep(LINGER).await;
                    break;
                }
                Err(e) => {
                    log::debug!("plugin/loop: probe {} to {addr}: {e}", self.qname);
                    self.seen.store(0, Ordering::Relaxed);
                    tokio::time::sleep(PROBE_RETRY).await;
                }
            }
        }
        self.disable();
    }
}

/// `addr` with an unspecified IP replaced by loopback (a listener on all addresses).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The `loop` plugin: counts the probe on its way down the chain.
pub struct Loop {
    detector: Arc<Detector>,
}

impl Loop {
    pub fn new(detector: Arc<Detector>) -> Self {
        Loop { detector }
    }

    pub fn detector(&self) -> &Arc<Detector> {
        &self.detector
    }
}

impl Plugin for Loop {
    fn name(&self) -> &'static str {
        "loop"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        if !self.detector.is_disabled() {
            let key = lookup_key(req.question.name());
            self.detector
                .sight(&key, req.question.query_type(), ctx.client, ctx.local);
        }
        next.serve(ctx, req)
    }
}

/// The detectors made by `setup` and not yet probed, with their server label.
static PENDING: Mutex<Vec<(String, Weak<Detector>)>> = Mutex::new(Vec::new());

/// `loop` (no arguments): detects loops for the block's first zone. Its probe is sent by
/// [`probe`] once the server listens.
pub fn setup(d: &Directive, s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    if let Some(t) = d.args.first() {
        return Err(CorefileError::new(
            &t.pos,
            format!(
                "loop: unexpected argument {:?}: loop takes no arguments",
                t.text
            ),
        ));
    }
    if d.block.is_some() {
        return Err(CorefileError::new(&d.pos, "loop: takes no block"));
    }
    let zone = s.zones.first().map_or(".", String::as_str);
    let detector = Arc::new(Detector::new(zone, exit_on_loop()));
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    // Plugins set up but dropped unprobed (a failed reload, a check run) are forgotten.
    pending.retain(|(_, weak)| weak.strong_count() > 0);
    pending.push((s.server.to_owned(), Arc::downgrade(&detector)));
    Ok(Arc::new(Loop::new(detector)))
}

/// Starts the probes of the `loop` plugins set up for server `server` (the `Setup::server`
/// label, e.g. `dns://:53`) towards `addr`, the address it now listens on (an unspecified IP
/// is sent to loopback). Call it once the listeners are bound, inside a Tokio runtime, after
/// every (re)load; each detector is probed once. Returns how many probes were started.
pub fn probe(server: &str, addr: SocketAddr) -> usize {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let mut started = 0;
    pending.retain(|(label, weak)| {
        let Some(detector) = weak.upgrade() else {
            return false;
        };
        if label != server {
            return true;
        }
        started += 1;
        tokio::spawn(async move { detector.probe(addr).await });
        false
    });
    started
}

#[cfg(test)]
mod tests;
