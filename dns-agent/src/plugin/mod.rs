//! The plugin chain: every query the kernel leaves to userspace runs through the plugins of the
//! server block that serves its name, in the fixed order of [`ORDER`] (as CoreDNS's
//! `plugin.cfg`), each one answering it or handing it to the next.

pub mod cache;
pub mod errors;
pub mod forward;
pub mod hosts;
pub mod kubernetes;
pub mod loadbalance;
pub mod log;
pub mod loop_detect;
pub mod prometheus;
pub mod rewrite;
#[cfg(test)]
mod wire_tests;

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use hickory_proto::op::{Message, ResponseCode};

use crate::server::answer::{self, Parsed, Request, Response, Transport};
use crate::server::wire::WireQuery;

/// The order plugins run in, whatever the order of their lines in the Corefile: the order of
/// CoreDNS's `plugin.cfg` restricted to the plugins this agent has.
pub const ORDER: &[&str] = &[
    "reload",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "loadbalance",
    "cache",
    "rewrite",
    "hosts",
    "kubernetes",
    "loop",
    "forward",
];

/// What a plugin (or the chain after it) makes of a query.
pub type Answer<'a> = BoxFuture<'a, Result<Message, PluginError>>;

/// One plugin of a server block's chain (`Any`: the router recognises the plugins a cache hit
/// answered from bytes passes through).
pub trait Plugin: Any + Send + Sync {
    /// Its Corefile name.
    fn name(&self) -> &'static str;

    /// Answers `req`, or hands it (changed or not) to `next` and returns what comes back
    /// (changed or not).
    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a>;
}

/// What a plugin's `setup` gets besides its Corefile directive.
pub struct Setup<'a> {
    /// The server block's zones (lower-case, trailing dot).
    pub zones: &'a [String],
    /// The directory of the Corefile: relative file names in arguments are relative to it.
    pub dir: &'a std::path::Path,
    /// Where metrics are registered (`metrics.registry`).
    pub metrics: &'a Arc<crate::metrics::Metrics>,
    /// The server label of the block's metrics, CoreDNS's form: `dns://:53`.
    pub server: &'a str,
}

/// Why a query got no answer from a plugin: the client gets SERVFAIL, `errors` logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub plugin: &'static str,
    pub message: String,
}

impl PluginError {
    pub fn new(plugin: &'static str, message: impl Into<String>) -> Self {
        PluginError {
            plugin,
            message: message.into(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin/{}: {}", self.plugin, self.message)
    }
}

impl std::error::Error for PluginError {}

/// What a plugin knows about a query besides the query itself.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub client: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// The server block's zone that matched the question (lower-case, trailing dot).
    pub zone: Arc<str>,
    /// When the query was received.
    pub received: Instant,
}

/// The plugins after the current one.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Plugin>],
}

impl<'a> Next<'a> {
    /// The whole chain.
    pub fn chain(plugins: &'a [Arc<dyn Plugin>]) -> Self {
        Next { rest: plugins }
    }

    /// Runs the rest of the chain. Past the last plugin there is no answer: SERVFAIL (the
    /// error names the plugin that handed the query on).
    pub fn serve(self, ctx: &'a Ctx, req: Request) -> Answer<'a> {
        match self.rest.split_first() {
            Some((plugin, rest)) => plugin.serve(ctx, req, Next { rest }),
            None => Box::pin(async { Err(PluginError::new("chain", "no next plugin found")) }),
        }
    }

    /// Whether a plugin follows.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// One server block as it runs: its zones and its plugins in [`ORDER`].
pub struct Block {
    /// Lower-case FQDNs with a trailing dot.
    pub zones: Vec<String>,
    pub plugins: Vec<Arc<dyn Plugin>>,
}

/// The router a listener answers through, replaceable while it runs (`reload`).
pub type SharedRouter = Arc<std::sync::RwLock<Arc<Router>>>;

/// The server blocks of one listening port: picks the block of the most specific zone for
/// each query and runs its chain.
pub struct Router {
    blocks: Vec<Block>,
    /// For each block, how a cache hit is answered from bytes, when it can be.
    wire: Vec<Option<WirePlan>>,
    /// Every (zone, block index), longest zone first: the first that holds a name wins.
    zones: Vec<(Arc<str>, usize)>,
}

impl Router {
    pub fn new(blocks: Vec<Block>) -> Self {
        let mut zones: Vec<(Arc<str>, usize)> = blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.zones.iter().map(move |z| (Arc::from(z.as_str()), i)))
            .collect();
        zones.sort_by_key(|(z, _)| std::cmp::Reverse(z.len()));
        let wire = blocks.iter().map(WirePlan::of).collect();
        Router {
            blocks,
            wire,
            zones,
        }
    }

    /// The server blocks, in Corefile order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The block serving `key` (lower-case FQDN) and the zone that matched: the longest zone
    /// of any block that holds the name.
    pub fn block_for(&self, key: &str) -> Option<(&Block, &str)> {
        self.zone_for(key).map(|(b, z)| (b, &**z))
    }

    fn zone_for(&self, key: &str) -> Option<(&Block, &Arc<str>)> {
        self.matching_zone(key).map(|(z, i)| (&self.blocks[i], z))
    }

    /// The longest zone holding `key` and the index of its block.
    fn matching_zone(&self, key: &str) -> Option<(&Arc<str>, usize)> {
        self.zones
            .iter()
            .find(|(z, _)| crate::records::in_zone(key, z))
            .map(|(z, i)| (z, *i))
    }

    /// The caches whose answers the kernel may repeat: those a hit from bytes reaches (see
    /// [`WirePlan`]) and that allow it ([`cache::Cache::kernel_may_answer`]), each with whether
    /// `loadbalance` runs before it.
    pub fn kernel_caches(&self) -> Vec<(Arc<cache::Cache>, bool)> {
        self.wire
            .iter()
            .flatten()
            .filter(|plan| plan.cache.kernel_may_answer())
            .map(|plan| (Arc::clone(&plan.cache), plan.loadbalance.is_some()))
            .collect()
    }

    /// Links the caches of [`Router::kernel_caches`] to the kernel's map `sink`; with
    /// `loadbalance` before the cache only answers with one address go there (the kernel does
    /// not rotate). Returns how many caches were linked.
    pub fn link_kernel_cache(&self, sink: &Arc<dyn cache::KernelCache>) -> usize {
        self.kernel_caches()
            .into_iter()
            .filter(|(cache, single)| {
                cache.link_kernel(cache::KernelLink {
                    sink: Arc::clone(sink),
                    single_address_only: *single,
                })
            })
            .count()
    }

    /// Writes the response to a UDP query to `out` when it is a cache hit the block's chain
    /// lets through unchanged, read and written as bytes (see [`WirePlan`]): its RCODE. `None`
    /// (nothing written, nothing counted) when the query must go through [`Router::handle`].
    pub fn answer_wire(&self, query: &[u8], client: SocketAddr, out: &mut Vec<u8>) -> Option<u16> {
        let q = WireQuery::parse(query)?;
        let mut buf = [0u8; 256];
        let key = q.zone_key(&mut buf)?;
        let (zone, i) = self.matching_zone(key)?;
        let plan = self.wire[i].as_ref()?;
        let received = Instant::now();
        let start = out.len();
        let hit = plan.cache.hit_wire(&q, plan.loadbalance.is_some(), out)?;
        if let Some(lb) = &plan.loadbalance {
            hit.rotate.apply(&mut out[start..], || lb.next_turn());
        }
        if let Some(p) = &plan.prometheus {
            let question = prometheus::Question {
                zone,
                transport: Transport::Udp,
                ipv4_client: client.is_ipv4(),
                qtype: q.qtype.into(),
            };
            p.count_answered(&question, hit.rcode, received);
        }
        Some(hit.rcode)
    }

    /// The response to one received message, or `None` when nothing must be sent back.
    pub async fn handle(
        &self,
        bytes: &[u8],
        transport: Transport,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Option<Response> {
        let req = match answer::parse(bytes, transport) {
            Parsed::Drop => return None,
            Parsed::Answered(r) => return Some(r),
            Parsed::Query(req) => req,
        };
        let key = req.key();
        let Some((block, zone)) = self.zone_for(&key) else {
            // No server block for this name: REFUSED, as CoreDNS answers.
            return answer::finish_owned(&req, req.reply(ResponseCode::Refused));
        };
        let ctx = Ctx {
            client,
            local,
            zone: Arc::clone(zone),
            received: Instant::now(),
        };
        let msg = match Next::chain(&block.plugins).serve(&ctx, req.clone()).await {
            Ok(msg) => msg,
            Err(e) => {
                ::log::debug!("{e}");
                req.reply(ResponseCode::ServFail)
            }
        };
        answer::finish_owned(&req, msg)
    }
}

/// How a block answers a cache hit from bytes: its chain up to `cache` holds only plugins
/// that let a cached answer through unchanged (`errors`), rotate it (`loadbalance`) or count
/// it (`prometheus`), which [`Router::answer_wire`] does as they would.
struct WirePlan {
    prometheus: Option<Arc<prometheus::Prometheus>>,
    loadbalance: Option<Arc<loadbalance::LoadBalance>>,
    cache: Arc<cache::Cache>,
}

impl WirePlan {
    fn of(block: &Block) -> Option<Self> {
        let (mut prometheus, mut loadbalance) = (None, None);
        for plugin in &block.plugins {
            let any: Arc<dyn Any + Send + Sync> = Arc::clone(plugin) as _;
            let any = match any.downcast::<cache::Cache>() {
                Ok(cache) => {
                    return cache.answers_from_wire().then_some(WirePlan {
                        prometheus,
                        loadbalance,
                        cache,
                    })
                }
                Err(any) => any,
            };
            let any = match any.downcast::<prometheus::Prometheus>() {
                Ok(p) => {
                    prometheus = Some(p);
                    continue;
                }
                Err(any) => any,
            };
            match any.downcast::<loadbalance::LoadBalance>() {
                Ok(lb) => loadbalance = Some(lb),
                Err(any) => {
                    any.downcast::<errors::Errors>().ok()?;
                }
            }
        }
        None
    }
}

/// CoreDNS's name of an RCODE (`NOERROR`, `NXDOMAIN`, ..., `RCODE<n>` for the rest): the
/// `rcode` label of the metrics and the log line.
pub fn rcode_name(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        other => return format!("RCODE{other}"),
    };
    name.to_owned()
}
