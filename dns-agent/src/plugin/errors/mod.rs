//! `errors`: logs the errors of the chain after it and answers SERVFAIL for them (see
//! `README.md` beside this file).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::log::Level;
use hickory_proto::op::ResponseCode;
use regex::Regex;

use super::hosts::parse_duration;
use super::{Answer, Ctx, Next, Plugin, PluginError, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::server::answer::Request;

/// Where the lines go: the `log` crate in the agent, a collector in tests.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// The `log` crate, target `dns_agent::errors`.
pub fn log_sink() -> Sink {
    Arc::new(|level, line| ::log::log!(target: "dns_agent::errors", level, "{line}"))
}

/// One `consolidate` option: errors matching `re` counted into one line per period.
struct Consolidate {
    re: Regex,
    period: Duration,
    level: Level,
    show_first: bool,
    /// Matches in the current period (0: no period running).
    count: Mutex<u64>,
    timer: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Consolidate {
    /// Ends the period: the summary line, when there is something to sum up.
    fn flush(&self, sink: &Sink) {
        let count = std::mem::take(&mut *self.count.lock().unwrap_or_else(PoisonError::into_inner));
        let already = u64::from(self.show_first);
        if count > already {
            sink(
                self.level,
                &format!(
                    "plugin/errors: {count} errors like '{}' occurred in last {}",
                    self.re.as_str(),
                    go_duration(self.period)
                ),
            );
        }
    }
}

/// The plugin.
pub struct Errors {
    rules: Vec<Arc<Consolidate>>,
    sink: Sink,
}

impl Drop for Errors {
    fn drop(&mut self) {
        for rule in &self.rules {
            if let Some(t) = rule
                .timer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                t.abort();
            }
        }
    }
}

/// Reads `errors { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`.
pub fn setup(d: &Directive, _s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    Ok(Arc::new(parse(d, log_sink())?))
}

fn parse(d: &Directive, sink: Sink) -> Result<Errors, CorefileError> {
    if let Some(arg) = d.args.iter().find(|a| a.text != "stdout") {
        return Err(CorefileError::new(
            &arg.pos,
            format!("errors: unexpected argument {:?}: errors are logged to standard output (options go in a block)", arg.text),
        ));
    }
    let mut rules = Vec::new();
    for option in d.block_directives() {
        match option.name.text.as_str() {
            // Panics are not recovered into SERVFAIL here: nothing to trace.
            "stacktrace" => {}
            "consolidate" => {
                let args = &option.args;
                if args.len() < 2 {
                    return Err(CorefileError::new(
                        &option.name.pos,
                        "errors: consolidate: expected DURATION REGEXP [LEVEL] [show_first]",
                    ));
                }
                let period = parse_duration(&args[0].text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        CorefileError::new(
                            &args[0].pos,
                            format!("errors: consolidate duration {:?}: expected a duration such as 30s or 5m", args[0].text),
                        )
                    })?;
                let re = Regex::new(&args[1].text).map_err(|e| {
                    CorefileError::new(
                        &args[1].pos,
                        format!(
                            "errors: consolidate regular expression {:?}: {e}",
                            args[1].text
                        ),
                    )
                })?;
                let mut level = Level::Error;
                let mut show_first = false;
                for (i, t) in args[2..].iter().enumerate() {
                    match t.text.as_str() {
                        "warning" if i == 0 => level = Level::Warn,
                        "error" if i == 0 => level = Level::Error,
                        "info" if i == 0 => level = Level::Info,
                        "debug" if i == 0 => level = Level::Debug,
                        "show_first" if !show_first => show_first = true,
                        other => {
                            return Err(CorefileError::new(
                                &t.pos,
                                format!("errors: consolidate {other:?}: expected a level (warning, error, info, debug) then show_first"),
                            ))
                        }
                    }
                }
                rules.push(Arc::new(Consolidate {
                    re,
                    period,
                    level,
                    show_first,
                    count: Mutex::new(0),
                    timer: Mutex::new(None),
                }));
            }
            other => {
                return Err(CorefileError::new(
                    &option.name.pos,
                    format!("errors: unknown option {other:?}: expected consolidate or stacktrace"),
                ))
            }
        }
    }
    Ok(Errors { rules, sink })
}

impl Errors {
    /// Logs `err` for `req`, or counts it into its `consolidate` rule.
    fn report(&self, req: &Request, err: &PluginError) {
        let text = err.to_string();
        let line = format!(
            "plugin/errors: {} {} {}: {text}",
            req.header.id(),
            req.key(),
            req.question.query_type()
        );
        // Patterns see the message as the plugin wrote it (CoreDNS's `^read udp .*`).
        let Some(rule) = self.rules.iter().find(|r| r.re.is_match(&err.message)) else {
            (self.sink)(Level::Error, &line);
            return;
        };
        let first = {
            let mut count = rule.count.lock().unwrap_or_else(PoisonError::into_inner);
            *count += 1;
            *count == 1
        };
        if !first {
            return;
        }
        if rule.show_first {
            (self.sink)(rule.level, &line);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (rule_for_task, sink) = (Arc::clone(rule), Arc::clone(&self.sink));
            let task = handle.spawn(async move {
                tokio::time::sleep(rule_for_task.period).await;
                rule_for_task.flush(&sink);
            });
            *rule.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        }
    }
}

impl Plugin for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        Box::pin(async move {
            match next.serve(ctx, req.clone()).await {
                Ok(msg) => Ok(msg),
                Err(e) => {
                    self.report(&req, &e);
                    Ok(req.reply(ResponseCode::ServFail))
                }
            }
        })
    }
}

/// A duration as Go prints one (`30s`, `5m0s`, `1h0m0s`, `1.5s`, `20ms`), as CoreDNS's line has it.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1e3;
        return format!("{}ms", trim(&format!("{ms:.6}")));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let s = (secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let fixed = format!("{s:.9}");
    let s = trim(&fixed);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

fn trim(fixed: &str) -> &str {
    if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.')
    } else {
        fixed
    }
}

#[cfg(test)]
mod tests;
