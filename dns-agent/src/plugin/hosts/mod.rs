//! `hosts`: answers from an /etc/hosts-style file and inline entries (see `README.md` beside
//! this file).

mod table;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive, Token};
use crate::metrics::registry::Gauge;
use crate::records::in_zone;
use crate::server::answer::Request;

pub use table::Table;

/// TTL of the answers when the block sets none (CoreDNS's default).
pub const DEFAULT_TTL: u32 = 3600;
/// How often the file is checked for a change when the block sets no `reload`.
pub const DEFAULT_RELOAD: Duration = Duration::from_secs(5);

/// A file's modification time and size, `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

/// What the plugin answers from, shared with the reload task.
struct Shared {
    /// The hosts file (absolute or relative to the Corefile's directory, already joined).
    file: PathBuf,
    /// Names outside these zones are not taken from the file or the block.
    origins: Vec<String>,
    /// The lines of the block, kept to merge with each new read of the file.
    inline: String,
    no_reverse: bool,
    /// The file's stamp at the last look (`None`: never looked).
    loaded: Mutex<Option<Stamp>>,
    table: RwLock<Arc<Table>>,
    entries: Arc<Gauge>,
    reloaded: Arc<Gauge>,
}

impl Shared {
    /// Reads the file again when its modification time or size changed (or it was never
    /// read); returns whether the table was rebuilt. A file that cannot be read is logged
    /// once and changes nothing (the first time: the table has the inline entries only).
    fn reload_if_changed(&self) -> bool {
        let stamp: Stamp = std::fs::metadata(&self.file)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == Some(stamp) {
            return false;
        }
        let text = match stamp {
            Some(_) => std::fs::read_to_string(&self.file).map_err(|e| e.to_string()),
            None => Err("no such file".to_owned()),
        };
        match text {
            Ok(text) => {
                *loaded = Some(stamp);
                self.install(Table::parse(
                    &[&text, &self.inline],
                    &self.origins,
                    self.no_reverse,
                ));
                true
            }
            Err(e) => {
                ::log::warn!(
                    "plugin/hosts: cannot read {}: {e}; serving {}",
                    self.file.display(),
                    if loaded.is_some() {
                        "the entries read before"
                    } else {
                        "the inline entries"
                    }
                );
                let first = loaded.is_none();
                *loaded = Some(None);
                if first {
                    self.install(Table::parse(
                        &[&self.inline],
                        &self.origins,
                        self.no_reverse,
                    ));
                }
                first
            }
        }
    }

    fn install(&self, table: Table) {
        self.entries.set(table.len() as f64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.reloaded.set(now);
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Aborts the reload task when the plugin goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which names go on to the next plugin when the table does not know them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fallthrough {
    Never,
    /// Empty: every name.
    Zones(Vec<String>),
}

impl Fallthrough {
    fn through(&self, name: &str) -> bool {
        match self {
            Fallthrough::Never => false,
            Fallthrough::Zones(z) => z.is_empty() || z.iter().any(|z| in_zone(name, z)),
        }
    }
}

/// The plugin: A, AAAA and PTR answers for the names of the table.
pub struct Hosts {
    shared: Arc<Shared>,
    ttl: u32,
    fallthrough: Fallthrough,
    _reload: Option<AbortOnDrop>,
}

/// Reads `hosts [FILE [ZONES...]] { ... }` (see the README) and reads the file once.
pub fn setup(d: &Directive, s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    let mut args = d.args.iter();
    let file = match args.next() {
        Some(t) => s.dir.join(&t.text),
        None => PathBuf::from("/etc/hosts"),
    };
    let origins: Vec<String> = match args.as_slice() {
        [] => s.zones.to_vec(),
        zones => zones.iter().map(zone).collect::<Result<_, _>>()?,
    };
    let mut ttl = DEFAULT_TTL;
    let mut no_reverse = false;
    let mut reload = DEFAULT_RELOAD;
    let mut fallthrough = Fallthrough::Never;
    let mut inline = String::new();
    for option in d.block_directives() {
        let name = &option.name;
        match name.text.as_str() {
            "ttl" => {
                let [t] = exactly_one(option, "seconds (1-65535)")?;
                ttl = match t.text.parse::<u32>() {
                    Ok(v) if (1..=65535).contains(&v) => v,
                    _ => {
                        return Err(CorefileError::new(
                            &t.pos,
                            format!("hosts: ttl {:?}: expected seconds (1-65535)", t.text),
                        ))
                    }
                };
            }
            "no_reverse" => {
                if let Some(extra) = option.args.first() {
                    return Err(CorefileError::new(
                        &extra.pos,
                        format!("hosts: no_reverse {:?}: expected no argument", extra.text),
                    ));
                }
                no_reverse = true;
            }
            "reload" => {
                let [t] = exactly_one(option, "a duration such as 5s (0 disables)")?;
                reload = parse_duration(&t.text).ok_or_else(|| {
                    CorefileError::new(
                        &t.pos,
                        format!(
                            "hosts: reload {:?}: expected a duration such as 5s or 1m (0 disables)",
                            t.text
                        ),
                    )
                })?;
            }
            "fallthrough" => {
                let zones = option.args.iter().map(zone).collect::<Result<_, _>>()?;
                fallthrough = Fallthrough::Zones(zones);
            }
            _ if table::parse_ip(&name.text).is_some() => {
                if option.args.is_empty() {
                    return Err(CorefileError::new(
                        &name.pos,
                        format!(
                            "hosts: inline entry {:?}: expected names after the address",
                            name.text
                        ),
                    ));
                }
                if let Some(block) = &option.block {
                    let pos = block.first().map_or(&name.pos, |b| &b.name.pos);
                    return Err(CorefileError::new(
                        pos,
                        "hosts: inline entry: expected IP NAMES... on one line, not a block",
                    ));
                }
                inline.push_str(&name.text);
                for a in &option.args {
                    inline.push(' ');
                    inline.push_str(&a.text);
                }
                inline.push('\n');
            }
            other => {
                return Err(CorefileError::new(
                    &name.pos,
                    format!(
                        "hosts: unknown option {other:?}: expected ttl, no_reverse, reload, fallthrough or an inline entry (IP NAMES...)"
                    ),
                ))
            }
        }
    }
    let registry = &s.metrics.registry;
    let shared = Arc::new(Shared {
        file,
        origins,
        inline,
        no_reverse,
        loaded: Mutex::new(None),
        table: RwLock::new(Arc::new(Table::default())),
        entries: registry.gauge(
            "coredns_hosts_entries",
            "The combined number of entries in hosts and Corefile.",
            &[],
        ),
        reloaded: registry.gauge(
            "coredns_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
            &[],
        ),
    });
    shared.reload_if_changed();
    let reload = spawn_reload(&shared, reload);
    Ok(Arc::new(Hosts {
        shared,
        ttl,
        fallthrough,
        _reload: reload,
    }))
}

/// Starts the task that checks the file every `every` (none when 0 or without a runtime).
fn spawn_reload(shared: &Arc<Shared>, every: Duration) -> Option<AbortOnDrop> {
    if every.is_zero() {
        return None;
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let shared = Arc::clone(shared);
    Some(AbortOnDrop(handle.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let shared = Arc::clone(&shared);
            // Reading a file blocks: keep it off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || shared.reload_if_changed()).await;
        }
    })))
}

fn exactly_one<'a>(option: &'a Directive, expected: &str) -> Result<[&'a Token; 1], CorefileError> {
    match option.args.as_slice() {
        [t] => Ok([t]),
        [] => Err(CorefileError::new(
            &option.name.pos,
            format!("hosts: {}: expected {expected}", option.name.text),
        )),
        [_, extra, ..] => Err(CorefileError::new(
            &extra.pos,
            format!(
                "hosts: {} {:?}: expected only {expected}",
                option.name.text, extra.text
            ),
        )),
    }
}

/// A zone argument: lower-case with a trailing dot.
fn zone(t: &Token) -> Result<String, CorefileError> {
    let z = table::normalize(&t.text);
    if z.starts_with('.') && z != "." || z.contains("..") {
        return Err(CorefileError::new(
            &t.pos,
            format!("hosts: zone {:?}: expected a domain name", t.text),
        ));
    }
    Ok(z)
}

/// A Go-style duration: see [`crate::corefile::parse_duration`].
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    crate::corefile::parse_duration(text)
}

impl Hosts {
    /// The answer from the table, or `None` when the query goes on to the next plugin.
    fn answer(&self, req: &Request) -> Option<Message> {
        let qname = req.key();
        let qtype = req.question.query_type();
        let in_origins = self.shared.origins.iter().any(|z| in_zone(&qname, z));
        let table = self.shared.table();
        let known = table.knows(&qname);
        let ours = in_origins || (qtype == RecordType::PTR && known);
        if !ours {
            // Reverse names need not be in the zones, but only those of the table are ours.
            return None;
        }
        if !known {
            if self.fallthrough.through(&qname) {
                return None;
            }
            let mut msg = req.reply(ResponseCode::NXDomain);
            msg.set_authoritative(true);
            return Some(msg);
        }
        let mut msg = req.reply(ResponseCode::NoError);
        msg.set_authoritative(true);
        msg.insert_answers(table.records(&qname, req.question.name(), qtype, self.ttl));
        Some(msg)
    }
}

impl Plugin for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        match self.answer(&req) {
            Some(msg) => Box::pin(async move { Ok(msg) }),
            None => next.serve(ctx, req),
        }
    }
}

#[cfg(test)]
mod tests;
