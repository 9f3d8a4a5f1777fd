//! Reads a `forward` directive into a [`Config`]: every bad value is an error at its token.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::corefile::{CorefileError, Directive, Pos, Token};
use crate::server::answer::lookup_key;

/// CoreDNS's limit on the number of upstreams of one `forward`.
pub const MAX_UPSTREAMS: usize = 15;

/// How the upstreams are ordered for each query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

/// A `forward` directive, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The zone forwarded: lower-case FQDN.
    pub from: String,
    /// Names under `from` that are not forwarded (lower-case FQDNs).
    pub except: Vec<String>,
    pub upstreams: Vec<SocketAddr>,
    pub force_tcp: bool,
    pub prefer_udp: bool,
    /// Accepted for compatibility: connections are not kept (see README).
    pub expire: Duration,
    /// Consecutive failures that mark an upstream down; 0: never.
    pub max_fails: u32,
    /// Interval of the health checks of failing upstreams; zero: no checks.
    pub health_check: Duration,
    /// Whether the health check query asks for recursion.
    pub health_rec: bool,
    /// The name the health check asks `NS` of (FQDN).
    pub health_domain: String,
    pub policy: Policy,
    /// Queries in flight above which new ones fail at once; `None`: no limit.
    pub max_concurrent: Option<usize>,
}

impl Config {
    fn new(from: String) -> Self {
        Config {
            from,
            except: Vec::new(),
            upstreams: Vec::new(),
            force_tcp: false,
            prefer_udp: false,
            expire: Duration::from_secs(10),
            max_fails: 2,
            health_check: Duration::from_millis(500),
            health_rec: true,
            health_domain: ".".to_owned(),
            policy: Policy::Random,
            max_concurrent: None,
        }
    }
}

fn err(pos: &Pos, message: impl Into<String>) -> CorefileError {
    CorefileError::new(pos, format!("forward: {}", message.into()))
}

/// Parses the directive; `dir` is where relative resolv.conf paths are looked up.
pub fn parse(d: &Directive, dir: &Path) -> Result<Config, CorefileError> {
    let Some((from, to)) = d.args.split_first() else {
        return Err(err(
            &d.pos,
            "missing FROM and TO: expected `forward FROM TO...`",
        ));
    };
    let mut cfg = Config::new(domain(from, "FROM")?);
    if to.is_empty() {
        return Err(err(
            &d.pos,
            "missing TO: expected at least one upstream (IP, IP:port, dns://IP or a resolv.conf file)",
        ));
    }
    for t in to {
        for addr in upstreams(t, dir)? {
            if cfg.upstreams.len() == MAX_UPSTREAMS {
                return Err(err(
                    &t.pos,
                    format!("too many upstreams: at most {MAX_UPSTREAMS}"),
                ));
            }
            cfg.upstreams.push(addr);
        }
    }
    for opt in d.block_directives() {
        option(&mut cfg, opt)?;
    }
    Ok(cfg)
}

fn option(cfg: &mut Config, opt: &Directive) -> Result<(), CorefileError> {
    let name = opt.name.text.as_str();
    let args = &opt.args;
    let count = |n: usize, what: &str| -> Result<(), CorefileError> {
        if args.len() == n {
            return Ok(());
        }
        let pos = args.get(n).map_or(&opt.pos, |t| &t.pos);
        Err(err(pos, format!("{name}: expected {what}")))
    };
    match name {
        "except" => {
            if args.is_empty() {
                return Err(err(&opt.pos, "except: expected at least one domain name"));
            }
            for t in args {
                cfg.except.push(domain(t, "except")?);
            }
        }
        "force_tcp" => {
            count(0, "no arguments")?;
            cfg.force_tcp = true;
        }
        "prefer_udp" => {
            count(0, "no arguments")?;
            cfg.prefer_udp = true;
        }
        "expire" => {
            count(1, "one DURATION (e.g. 10s)")?;
            cfg.expire = duration(&args[0], "expire")?;
        }
        "max_fails" => {
            count(1, "one INTEGER")?;
            cfg.max_fails = args[0].text.parse().map_err(|_| {
                err(
                    &args[0].pos,
                    format!(
                        "max_fails {:?}: expected an integer (0-{})",
                        args[0].text,
                        u32::MAX
                    ),
                )
            })?;
        }
        "health_check" => {
            let Some((first, rest)) = args.split_first() else {
                return Err(err(
                    &opt.pos,
                    "health_check: expected DURATION [no_rec] [domain FQDN]",
                ));
            };
            cfg.health_check = duration(first, "health_check")?;
            let mut rest = rest.iter();
            while let Some(t) = rest.next() {
                match t.text.as_str() {
                    "no_rec" => cfg.health_rec = false,
                    "domain" => {
                        let Some(name) = rest.next() else {
                            return Err(err(&t.pos, "health_check: domain: expected an FQDN"));
                        };
                        cfg.health_domain = domain(name, "health_check domain")?;
                    }
                    other => {
                        return Err(err(
                            &t.pos,
                            format!("health_check: unknown argument {other:?}: expected no_rec or domain FQDN"),
                        ))
                    }
                }
            }
        }
        "policy" => {
            count(1, "one of random, round_robin, sequential")?;
            cfg.policy = match args[0].text.as_str() {
                "random" => Policy::Random,
                "round_robin" => Policy::RoundRobin,
                "sequential" => Policy::Sequential,
                other => {
                    return Err(err(
                        &args[0].pos,
                        format!("policy {other:?}: expected random, round_robin or sequential"),
                    ))
                }
            };
        }
        "max_concurrent" => {
            count(1, "one INTEGER")?;
            let n: usize = args[0].text.parse().map_err(|_| {
                err(
                    &args[0].pos,
                    format!(
                        "max_concurrent {:?}: expected a non-negative integer",
                        args[0].text
                    ),
                )
            })?;
            cfg.max_concurrent = (n > 0).then_some(n);
        }
        "tls" | "tls_servername" => {
            return Err(err(
                &opt.pos,
                format!("{name}: DNS over TLS is not supported by this agent"),
            ))
        }
        other => {
            return Err(err(
                &opt.pos,
                format!(
                    "unknown option {other:?}: expected except, force_tcp, prefer_udp, expire, \
                     max_fails, health_check, policy or max_concurrent"
                ),
            ))
        }
    }
    if opt.block.is_some() {
        return Err(err(&opt.pos, format!("{name}: takes no block")));
    }
    Ok(())
}

/// A domain name as a lower-case FQDN.
fn domain(t: &Token, what: &str) -> Result<String, CorefileError> {
    let bad = || {
        err(
            &t.pos,
            format!("{what} {:?}: expected a domain name", t.text),
        )
    };
    if t.text.is_empty() || t.text.contains('/') || t.text.contains(':') {
        return Err(bad());
    }
    let name = Name::from_ascii(&t.text).map_err(|_| bad())?;
    Ok(lookup_key(&name))
}

/// The upstreams one TO token stands for: an address, or the nameservers of a resolv.conf.
fn upstreams(t: &Token, dir: &Path) -> Result<Vec<SocketAddr>, CorefileError> {
    let text = t.text.as_str();
    if let Some((scheme, _)) = text.split_once("://") {
        if scheme != "dns" {
            return Err(err(
                &t.pos,
                format!(
                    "upstream {text:?}: {scheme}:// is not supported (only plain DNS: IP, IP:port or dns://IP[:port])"
                ),
            ));
        }
    }
    let addr_text = text.strip_prefix("dns://").unwrap_or(text);
    if let Some(addr) = address(addr_text) {
        if addr.port() == 0 {
            return Err(err(&t.pos, format!("upstream {text:?}: port 0")));
        }
        return Ok(vec![addr]);
    }
    if addr_text.len() != text.len() {
        return Err(err(
            &t.pos,
            format!("upstream {text:?}: expected dns://IP or dns://IP:port"),
        ));
    }
    let path = dir.join(text);
    let conf = std::fs::read_to_string(&path).map_err(|e| {
        err(
            &t.pos,
            format!(
                "upstream {text:?}: not an IP address, IP:port or readable resolv.conf file ({}: {e})",
                path.display()
            ),
        )
    })?;
    let addrs = resolv_conf(&conf);
    if addrs.is_empty() {
        return Err(err(
            &t.pos,
            format!(
                "upstream {text:?}: no usable nameserver line in {}",
                path.display()
            ),
        ));
    }
    Ok(addrs)
}

/// `IP`, `IP:port`, `[IPv6]` or `[IPv6]:port`; port 53 when left out.
fn address(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// The `nameserver` addresses of a resolv.conf (others, such as scoped IPv6, are skipped).
fn resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|ip| match ip.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, 53)),
            Err(_) => {
                log::warn!("forward: skipping resolv.conf nameserver {ip:?}: not an IP address");
                None
            }
        })
        .collect()
}

/// A Go-style duration: see [`crate::corefile::parse_duration`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::corefile::parse_duration(s)
}

fn duration(t: &Token, what: &str) -> Result<Duration, CorefileError> {
    parse_duration(&t.text).ok_or_else(|| {
        err(
            &t.pos,
            format!(
                "{what} {:?}: expected a duration such as 500ms, 10s or 1m",
                t.text
            ),
        )
    })
}
