//! Reads the `cache` directive into a [`Config`]: every bad token is an error at its position.

use std::time::Duration;

use hickory_proto::rr::Name;

use crate::corefile::{CorefileError, Directive, Pos, Token};

/// Largest TTL CoreDNS caches successful answers for, unless told otherwise.
pub const DEFAULT_SUCCESS_TTL: u32 = 3600;
/// Largest TTL CoreDNS caches denials (NXDOMAIN, NODATA) for, unless told otherwise.
pub const DEFAULT_DENIAL_TTL: u32 = 1800;
/// Smallest TTL an answer is cached for, unless told otherwise.
pub const DEFAULT_MIN_TTL: u32 = 5;
/// Entries per cache (success, denial) unless told otherwise: CoreDNS's 256 shards of 39.
pub const DEFAULT_CAPACITY: usize = 9984;
/// Smallest capacity `setup` accepts; a smaller CAPACITY is raised to it (as CoreDNS does).
pub const MIN_CAPACITY: usize = 1024;
/// How long SERVFAIL is cached unless told otherwise.
pub const DEFAULT_SERVFAIL: Duration = Duration::from_secs(5);
/// The longest `servfail` DURATION allowed.
pub const MAX_SERVFAIL: Duration = Duration::from_secs(300);

/// Capacity and TTL bounds of one cache (success or denial).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Entries before eviction starts.
    pub capacity: usize,
    /// The longest an answer is kept (seconds).
    pub max_ttl: u32,
    /// The shortest an answer is kept (seconds); `max_ttl` wins when it is smaller.
    pub min_ttl: u32,
}

/// `prefetch AMOUNT DURATION PERCENTAGE%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefetch {
    /// Hits, with no gap of `window` or more between them, that make an item popular.
    pub amount: u32,
    pub window: Duration,
    /// Refresh once the remaining TTL is at most this share (10-90) of the original.
    pub percentage: u8,
}

/// `serve_stale DURATION MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeStale {
    /// How long after expiry an item may still be served.
    pub window: Duration,
    pub mode: StaleMode,
}

/// When a stale item is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleMode {
    /// At once (TTL 0), refreshing it in the background.
    Immediate,
    /// Only when asking the next plugin fails (an error or SERVFAIL).
    Verify,
}

/// Everything the `cache` directive says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Names under these zones are cached (lower-case, trailing dot).
    pub zones: Vec<String>,
    pub success: Tier,
    pub denial: Tier,
    pub prefetch: Option<Prefetch>,
    pub serve_stale: Option<ServeStale>,
    /// How long SERVFAIL answers are cached; zero disables it.
    pub servfail: Duration,
    /// Successful answers under these zones are not cached.
    pub disable_success: Vec<String>,
    /// Denials under these zones are not cached.
    pub disable_denial: Vec<String>,
    /// Answer with the TTLs as received instead of decreasing them.
    pub keepttl: bool,
}

impl Config {
    /// CoreDNS's defaults for a cache of `zones`.
    pub fn new(zones: Vec<String>) -> Self {
        Config {
            zones,
            success: Tier {
                capacity: DEFAULT_CAPACITY,
                max_ttl: DEFAULT_SUCCESS_TTL,
                min_ttl: DEFAULT_MIN_TTL,
            },
            denial: Tier {
                capacity: DEFAULT_CAPACITY,
                max_ttl: DEFAULT_DENIAL_TTL,
                min_ttl: DEFAULT_MIN_TTL,
            },
            prefetch: None,
            serve_stale: None,
            servfail: DEFAULT_SERVFAIL,
            disable_success: Vec::new(),
            disable_denial: Vec::new(),
            keepttl: false,
        }
    }
}

const OPTIONS: &str = "success, denial, prefetch, serve_stale, servfail, disable or keepttl";

fn err(pos: &Pos, message: String) -> CorefileError {
    CorefileError::new(pos, format!("cache: {message}"))
}

/// Reads `cache [TTL] [ZONES...] { ... }`; `block_zones` are the server block's zones, the
/// default ZONES.
pub fn parse(d: &Directive, block_zones: &[String]) -> Result<Config, CorefileError> {
    let mut args = d.args.as_slice();
    let mut ttl = None;
    if let Some(first) = args.first() {
        if looks_numeric(&first.text) {
            ttl = Some(seconds(first, "TTL", 1)?);
            args = &args[1..];
        }
    }
    let cache_zones = if args.is_empty() {
        block_zones.to_vec()
    } else {
        zones(args)?
    };
    let mut config = Config::new(cache_zones);
    if let Some(ttl) = ttl {
        config.success.max_ttl = ttl;
        config.denial.max_ttl = ttl;
    }
    for option in d.block_directives() {
        if option.block.is_some() {
            return Err(err(
                &option.pos,
                format!("{}: unexpected block", option.name.text),
            ));
        }
        let name = option.name.text.as_str();
        match name {
            "success" => config.success = tier(option, config.success)?,
            "denial" => config.denial = tier(option, config.denial)?,
            "prefetch" => config.prefetch = Some(prefetch(option)?),
            "serve_stale" => config.serve_stale = Some(serve_stale(option)?),
            "servfail" => config.servfail = servfail(option)?,
            "disable" => {
                let (first, rest) = option.args.split_first().ok_or_else(|| {
                    err(&option.pos, "disable: expected success or denial".into())
                })?;
                let list = if rest.is_empty() {
                    config.zones.clone()
                } else {
                    zones(rest)?
                };
                match first.text.as_str() {
                    "success" => config.disable_success.extend(list),
                    "denial" => config.disable_denial.extend(list),
                    other => {
                        return Err(err(
                            &first.pos,
                            format!("disable {other:?}: expected success or denial"),
                        ))
                    }
                }
            }
            "keepttl" => {
                if let Some(extra) = option.args.first() {
                    return Err(err(
                        &extra.pos,
                        format!("keepttl {:?}: expected no arguments", extra.text),
                    ));
                }
                config.keepttl = true;
            }
            other => {
                return Err(err(
                    &option.pos,
                    format!("unknown option {other:?} (expected {OPTIONS})"),
                ))
            }
        }
    }
    Ok(config)
}

/// A first argument that is meant as a TTL rather than a zone: digits (or a sign) with no dot.
fn looks_numeric(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') && !text.contains('.')
}

fn seconds(t: &Token, what: &str, min: u32) -> Result<u32, CorefileError> {
    match t.text.parse::<u32>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(err(
            &t.pos,
            format!("{what} {:?}: expected seconds ({min}-{})", t.text, u32::MAX),
        )),
    }
}

fn zones(args: &[Token]) -> Result<Vec<String>, CorefileError> {
    args.iter().map(zone).collect()
}

/// A zone as the cache compares it: lower-case with a trailing dot.
fn zone(t: &Token) -> Result<String, CorefileError> {
    let bad = || err(&t.pos, format!("zone {:?}: expected a domain name", t.text));
    if t.text.is_empty() || t.text.contains(['/', ':', ' ']) {
        return Err(bad());
    }
    let name = Name::from_ascii(&t.text).map_err(|_| bad())?;
    let mut text = name.to_lowercase().to_ascii();
    if !text.ends_with('.') {
        text.push('.');
    }
    Ok(text)
}

/// `success|denial CAPACITY [TTL] [MINTTL]`.
fn tier(option: &Directive, mut tier: Tier) -> Result<Tier, CorefileError> {
    let name = &option.name.text;
    let args = &option.args;
    let Some(capacity) = args.first() else {
        return Err(err(
            &option.pos,
            format!("{name}: expected CAPACITY [TTL] [MINTTL]"),
        ));
    };
    tier.capacity = match capacity.text.parse::<usize>() {
        Ok(c) if c > 0 => c.max(MIN_CAPACITY),
        _ => {
            return Err(err(
                &capacity.pos,
                format!(
                    "{name} CAPACITY {:?}: expected a positive number of entries",
                    capacity.text
                ),
            ))
        }
    };
    if let Some(ttl) = args.get(1) {
        tier.max_ttl = seconds(ttl, &format!("{name} TTL"), 1)?;
    }
    if let Some(min) = args.get(2) {
        tier.min_ttl = seconds(min, &format!("{name} MINTTL"), 0)?;
    }
    if let Some(extra) = args.get(3) {
        return Err(err(
            &extra.pos,
            format!(
                "{name} {:?}: too many arguments (expected CAPACITY [TTL] [MINTTL])",
                extra.text
            ),
        ));
    }
    Ok(tier)
}

/// `prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`.
fn prefetch(option: &Directive) -> Result<Prefetch, CorefileError> {
    let args = &option.args;
    let Some(amount) = args.first() else {
        return Err(err(
            &option.pos,
            "prefetch: expected AMOUNT [[DURATION] [PERCENTAGE%]]".into(),
        ));
    };
    let mut p = Prefetch {
        amount: match amount.text.parse::<u32>() {
            Ok(a) if a > 0 => a,
            _ => {
                return Err(err(
                    &amount.pos,
                    format!(
                        "prefetch AMOUNT {:?}: expected a positive number",
                        amount.text
                    ),
                ))
            }
        },
        window: Duration::from_secs(60),
        percentage: 10,
    };
    let mut rest = &args[1..];
    if let Some(t) = rest.first().filter(|t| !t.text.ends_with('%')) {
        p.window = match parse_duration(&t.text) {
            Some(d) if !d.is_zero() => d,
            _ => {
                return Err(err(
                    &t.pos,
                    format!(
                        "prefetch DURATION {:?}: expected a positive duration like 30s or 1m",
                        t.text
                    ),
                ))
            }
        };
        rest = &rest[1..];
    }
    if let Some(t) = rest.first() {
        let pct = t
            .text
            .strip_suffix('%')
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| (10..=90).contains(n));
        p.percentage = pct.ok_or_else(|| {
            err(
                &t.pos,
                format!(
                    "prefetch PERCENTAGE {:?}: expected 10% to 90% (the % sign is required)",
                    t.text
                ),
            )
        })?;
        rest = &rest[1..];
    }
    if let Some(extra) = rest.first() {
        return Err(err(
            &extra.pos,
            format!(
                "prefetch {:?}: too many arguments (expected AMOUNT [[DURATION] [PERCENTAGE%]])",
                extra.text
            ),
        ));
    }
    Ok(p)
}

/// `serve_stale [DURATION] [immediate|verify]`.
fn serve_stale(option: &Directive) -> Result<ServeStale, CorefileError> {
    let mut s = ServeStale {
        window: Duration::from_secs(3600),
        mode: StaleMode::Immediate,
    };
    let args = &option.args;
    if let Some(t) = args.first() {
        s.window = parse_duration(&t.text).ok_or_else(|| {
            err(
                &t.pos,
                format!(
                    "serve_stale DURATION {:?}: expected a duration like 30s or 1h",
                    t.text
                ),
            )
        })?;
    }
    if let Some(t) = args.get(1) {
        s.mode = match t.text.as_str() {
            "immediate" => StaleMode::Immediate,
            "verify" => StaleMode::Verify,
            other => {
                return Err(err(
                    &t.pos,
                    format!("serve_stale REFRESH_MODE {other:?}: expected immediate or verify"),
                ))
            }
        };
    }
    if let Some(extra) = args.get(2) {
        return Err(err(
            &extra.pos,
            format!(
                "serve_stale {:?}: too many arguments (expected [DURATION] [immediate|verify])",
                extra.text
            ),
        ));
    }
    Ok(s)
}

/// `servfail DURATION` (0 disables, at most 5m).
fn servfail(option: &Directive) -> Result<Duration, CorefileError> {
    let Some(t) = option.args.first() else {
        return Err(err(&option.pos, "servfail: expected DURATION".into()));
    };
    let d = match parse_duration(&t.text) {
        Some(d) if d <= MAX_SERVFAIL => d,
        Some(_) => {
            return Err(err(
                &t.pos,
                format!("servfail DURATION {:?}: expected at most 5m", t.text),
            ))
        }
        None => {
            return Err(err(
                &t.pos,
                format!(
                    "servfail DURATION {:?}: expected a duration like 5s",
                    t.text
                ),
            ))
        }
    };
    if let Some(extra) = option.args.get(1) {
        return Err(err(
            &extra.pos,
            format!(
                "servfail {:?}: too many arguments (expected DURATION)",
                extra.text
            ),
        ));
    }
    Ok(d)
}

/// A Go-style duration: see [`crate::corefile::parse_duration`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::corefile::parse_duration(text)
}
