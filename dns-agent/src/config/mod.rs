//! A Corefile made runnable: server blocks grouped by port, each block's plugins set up in the
//! fixed [`ORDER`], and the agent-wide settings some plugins carry (`kubernetes`, `health`,
//! `ready`, `prometheus`, `reload`).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::corefile::{Corefile, CorefileError, Directive, Pos, Token};
use crate::metrics::Metrics;
use crate::plugin::kubernetes::{self, KubernetesConfig};
use crate::plugin::{self, Block, Plugin, Router, Setup, ORDER};
use crate::records::SharedRecords;

/// The Corefile the agent runs without `--corefile`: kubeadm's (the kube-system/coredns
/// ConfigMap, as `manifests/configmap.yaml` holds it: the cache leaves the cluster zone alone,
/// whose answers change with the cluster), with the cluster domain, TTL and metrics address filled in from the flags, and
/// its port left to `--dns-port` (53 by default, as kubeadm's `.:53`).
pub fn embedded(zone: &str, ttl: u32, metrics: SocketAddr) -> String {
    let zone = zone.trim_end_matches('.');
    format!(
        ". {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {zone} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl {ttl}
    }}
    prometheus {metrics}
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {zone}
       disable denial {zone}
    }}
    loop
    reload
    loadbalance
}}
"
    )
}

/// `health [ADDRESS] { lameduck DURATION }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub addr: SocketAddr,
    pub lameduck: Duration,
}

/// One server block on one port, its directives in [`ORDER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    pub zones: Vec<String>,
    pub port: u16,
    pub directives: Vec<Directive>,
}

impl BlockPlan {
    /// Whether the block runs the plugin `name`.
    pub fn runs(&self, name: &str) -> bool {
        self.directives.iter().any(|d| d.name.text == name)
    }
}

/// What a Corefile asks for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The Corefile's directory: relative paths in plugin arguments are relative to it.
    pub dir: PathBuf,
    pub ports: BTreeMap<u16, Vec<BlockPlan>>,
    pub kubernetes: Option<KubernetesConfig>,
    pub health: Option<Health>,
    /// `ready [ADDRESS]`.
    pub ready: Option<SocketAddr>,
    /// `prometheus [ADDRESS]`.
    pub prometheus: Option<SocketAddr>,
    /// `reload [INTERVAL [JITTER]]`.
    pub reload: Option<(Duration, Duration)>,
}

/// Default addresses of CoreDNS's HTTP plugins.
pub const HEALTH_PORT: u16 = 8080;
pub const READY_PORT: u16 = 8181;
pub const PROMETHEUS_PORT: u16 = 9153;
/// `reload` defaults.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);
pub const RELOAD_JITTER: Duration = Duration::from_secs(15);

/// Directives that may appear more than once in a block.
const REPEATABLE: &[&str] = &["rewrite", "log"];

fn error(pos: &Pos, message: impl Into<String>) -> CorefileError {
    CorefileError {
        pos: pos.clone(),
        message: message.into(),
    }
}

impl Plan {
    /// Whether the kernel may answer NXDOMAIN (and NODATA for names without addresses) for
    /// `zone` (lower case, trailing dot) on `port` as the `kubernetes` plugin would: the block
    /// that runs it there has no plugin before it that answers or renames questions itself
    /// (`hosts`, `rewrite`), and no other block on the port serves `zone` or a zone below it
    /// (those questions go to that block).
    pub fn kernel_may_deny(&self, port: u16, zone: &str) -> bool {
        let Some(blocks) = self.ports.get(&port) else {
            return true;
        };
        blocks.iter().all(|b| {
            if b.runs("kubernetes") {
                !b.runs("hosts") && !b.runs("rewrite")
            } else {
                !b.zones.iter().any(|z| crate::records::in_zone(z, zone))
            }
        })
    }
}

/// Checks `corefile` and groups its blocks by port (`default_port` for keys without one).
pub fn plan(corefile: &Corefile, default_port: u16, dir: &Path) -> Result<Plan, CorefileError> {
    let mut plan = Plan {
        dir: dir.to_owned(),
        ports: BTreeMap::new(),
        kubernetes: None,
        health: None,
        ready: None,
        prometheus: None,
        reload: None,
    };
    let mut kubernetes_at: Option<Pos> = None;
    for block in &corefile.blocks {
        let mut seen: BTreeMap<&str, &Pos> = BTreeMap::new();
        for d in &block.directives {
            let name = d.name.text.as_str();
            if !ORDER.contains(&name) {
                return Err(error(
                    &d.name.pos,
                    format!(
                        "unknown directive {name:?}: this agent has {}",
                        ORDER.join(", ")
                    ),
                ));
            }
            if let Some(first) = seen.get(name) {
                if !REPEATABLE.contains(&name) {
                    return Err(error(
                        &d.name.pos,
                        format!("{name} appears twice in this server block (first at {first})"),
                    ));
                }
            }
            seen.insert(name, &d.name.pos);
        }
        let mut directives = block.directives.clone();
        directives.sort_by_key(|d| ORDER.iter().position(|n| *n == d.name.text));
        let block_zones: Vec<String> = block.keys.iter().flat_map(|k| k.zones.clone()).collect();
        for d in &directives {
            match d.name.text.as_str() {
                "kubernetes" => {
                    let config = kubernetes::config(d, &block_zones, dir)?;
                    if let Some(first) = &kubernetes_at {
                        if plan.kubernetes.as_ref() != Some(&config) {
                            return Err(error(
                                &d.name.pos,
                                format!("kubernetes: a second, different kubernetes block (the first is at {first}): this agent serves one cluster"),
                            ));
                        }
                    }
                    kubernetes_at = Some(d.name.pos.clone());
                    plan.kubernetes = Some(config);
                }
                "health" => {
                    let h = health(d)?;
                    same(&mut plan.health, h, d)?;
                }
                "ready" => {
                    let a = address(d, READY_PORT)?;
                    same(&mut plan.ready, a, d)?;
                }
                "prometheus" => {
                    let a = address(d, PROMETHEUS_PORT)?;
                    same(&mut plan.prometheus, a, d)?;
                }
                "reload" => {
                    let r = reload(d)?;
                    same(&mut plan.reload, r, d)?;
                }
                _ => {}
            }
        }
        for key in &block.keys {
            let port = key.port.unwrap_or(default_port);
            let blocks = plan.ports.entry(port).or_default();
            for zone in &key.zones {
                if blocks.iter().any(|b| b.zones.contains(zone)) {
                    return Err(error(
                        &key.pos,
                        format!("zone {zone} on port {port} is served twice"),
                    ));
                }
            }
            blocks.push(BlockPlan {
                zones: key.zones.clone(),
                port,
                directives: directives.clone(),
            });
        }
    }
    if plan.ports.is_empty() {
        return Err(error(
            &Pos {
                file: Arc::from("Corefile"),
                line: 0,
                col: 0,
            },
            "no server block",
        ));
    }
    Ok(plan)
}

/// The one setting several blocks may repeat identically.
fn same<T: PartialEq>(slot: &mut Option<T>, value: T, d: &Directive) -> Result<(), CorefileError> {
    match slot {
        Some(v) if *v != value => Err(error(
            &d.name.pos,
            format!(
                "{}: a different setting in another server block: one agent has one {}",
                d.name.text, d.name.text
            ),
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// `[ADDRESS]` of `health`, `ready`, `prometheus`: `:PORT` (every interface), `HOST:PORT`
/// (`localhost` is 127.0.0.1), `[V6]:PORT`; none is every interface on `default_port`.
fn address(d: &Directive, default_port: u16) -> Result<SocketAddr, CorefileError> {
    if d.block.is_some() && d.name.text != "health" {
        return Err(error(
            &d.name.pos,
            format!("{} takes no block", d.name.text),
        ));
    }
    match d.args.as_slice() {
        [] => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, default_port))),
        [a] => socket_addr(a, &d.name.text),
        [_, extra, ..] => Err(error(
            &extra.pos,
            format!("{}: expected at most one address", d.name.text),
        )),
    }
}

fn socket_addr(tok: &Token, plugin: &str) -> Result<SocketAddr, CorefileError> {
    let bad = || {
        error(
            &tok.pos,
            format!(
                "{plugin}: address {:?}: expected [HOST]:PORT such as :8080 or 127.0.0.1:8080",
                tok.text
            ),
        )
    };
    let (host, port) = tok.text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip: IpAddr = match host {
        "" => Ipv4Addr::UNSPECIFIED.into(),
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn health(d: &Directive) -> Result<Health, CorefileError> {
    let addr = address(d, HEALTH_PORT)?;
    let mut lameduck = Duration::ZERO;
    for opt in d.block_directives() {
        match (opt.name.text.as_str(), opt.args.as_slice()) {
            ("lameduck", [t]) => lameduck = duration(t, "health: lameduck")?,
            ("lameduck", _) => {
                return Err(error(
                    &opt.name.pos,
                    "health: lameduck: expected one duration such as 5s",
                ))
            }
            (other, _) => {
                return Err(error(
                    &opt.name.pos,
                    format!("health: unknown option {other:?} (only lameduck)"),
                ))
            }
        }
    }
    Ok(Health { addr, lameduck })
}

fn reload(d: &Directive) -> Result<(Duration, Duration), CorefileError> {
    if d.block.is_some() {
        return Err(error(&d.name.pos, "reload takes no block"));
    }
    let interval = match d.args.first() {
        Some(t) => duration(t, "reload: interval")?,
        None => RELOAD_INTERVAL,
    };
    let jitter = match d.args.get(1) {
        Some(t) => duration(t, "reload: jitter")?,
        None => RELOAD_JITTER.min(interval / 2),
    };
    if let Some(extra) = d.args.get(2) {
        return Err(error(
            &extra.pos,
            "reload: expected at most an interval and a jitter",
        ));
    }
    if interval < Duration::from_secs(2) {
        return Err(error(
            &d.args[0].pos,
            "reload: the interval must be at least 2s",
        ));
    }
    if jitter > interval / 2 {
        return Err(error(
            &d.args[1].pos,
            "reload: the jitter must be at most half the interval",
        ));
    }
    Ok((interval, jitter))
}

/// A Go-style duration at `tok`: `500ms`, `5s`, `1m30s`, `2h`, `0`.
pub fn duration(tok: &Token, what: &str) -> Result<Duration, CorefileError> {
    parse_duration(&tok.text).ok_or_else(|| {
        error(
            &tok.pos,
            format!(
                "{what}: {:?} is not a duration such as 500ms, 5s, 1m30s",
                tok.text
            ),
        )
    })
}

/// A Go-style duration: see [`crate::corefile::parse_duration`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::corefile::parse_duration(text)
}

/// What building the chains needs from the running agent.
pub struct BuildCtx<'a> {
    pub records: SharedRecords,
    pub metrics: &'a Arc<Metrics>,
}

/// The routers of every port: each block's plugins set up in order. Plugins that are not in
/// the query path (`health`, `ready`, `reload`) are run by the agent itself.
pub fn build(plan: &Plan, ctx: &BuildCtx<'_>) -> Result<BTreeMap<u16, Arc<Router>>, CorefileError> {
    let mut out = BTreeMap::new();
    for (port, blocks) in &plan.ports {
        let server = format!("dns://:{port}");
        let mut built = Vec::new();
        for b in blocks {
            let setup = Setup {
                zones: &b.zones,
                dir: &plan.dir,
                metrics: ctx.metrics,
                server: &server,
            };
            let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
            for d in &b.directives {
                if let Some(p) = setup_directive(d, &setup, ctx)? {
                    plugins.push(p);
                }
            }
            built.push(Block {
                zones: b.zones.clone(),
                plugins,
            });
        }
        out.insert(*port, Arc::new(Router::new(built)));
    }
    Ok(out)
}

/// The plugin of one directive, `None` for those the agent runs itself.
fn setup_directive(
    d: &Directive,
    setup: &Setup<'_>,
    ctx: &BuildCtx<'_>,
) -> Result<Option<Arc<dyn Plugin>>, CorefileError> {
    let plugin: Arc<dyn Plugin> = match d.name.text.as_str() {
        "health" | "ready" | "reload" => return Ok(None),
        "kubernetes" => Arc::new(plugin::kubernetes::Kubernetes::new(ctx.records.clone())),
        "prometheus" => plugin::prometheus::setup(d, setup)?,
        "cache" => plugin::cache::setup(d, setup)?,
        "errors" => plugin::errors::setup(d, setup)?,
        "log" => plugin::log::setup(d, setup)?,
        "forward" => plugin::forward::setup(d, setup)?,
        "hosts" => plugin::hosts::setup(d, setup)?,
        "loadbalance" => plugin::loadbalance::setup(d, setup)?,
        "loop" => plugin::loop_detect::setup(d, setup)?,
        "rewrite" => plugin::rewrite::setup(d, setup)?,
        other => {
            return Err(error(
                &d.name.pos,
                format!("{other}: not available in this build yet"),
            ))
        }
    };
    Ok(Some(plugin))
}
