//! `rewrite`: the question name rewritten on the way in, the answer's names on the way back
//! (see `README.md` beside this file).

use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use regex::Regex;

use super::{Answer, Ctx, Next, Plugin, PluginError, Setup};
use crate::corefile::{CorefileError, Directive, Token};
use crate::server::answer::{lookup_key, Request};

tokio::task_local! {
    /// Set for the rest of the chain once a `stop` rule matched: later `rewrite`s stand aside.
    static STOPPED: bool;
}

/// How the question name is matched (all on the lower-case FQDN).
#[derive(Debug)]
enum Match {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(Regex),
}

/// What happens to the answer's owner names.
#[derive(Debug)]
enum Back {
    /// Names equal to the rewritten question become the client's question again.
    Question,
    /// The rule undone (`answer auto`).
    Auto,
    /// `answer name FROM TO`: names matching FROM become TO (with `{N}` groups).
    Name(Regex, String),
}

/// One `rewrite name` rule.
#[derive(Debug)]
pub struct Rewrite {
    stop: bool,
    matcher: Match,
    to: String,
    back: Back,
}

/// Fields of CoreDNS's rewrite this agent does not have.
const UNSUPPORTED: &[&str] = &["type", "class", "edns0", "ttl", "rcode", "cname"];
const MATCH_TYPES: &str = "exact, prefix, suffix, substring or regex";

/// Reads `rewrite [continue|stop] name [MATCH] FROM TO [answer auto|answer name FROM TO]`, or
/// the block form `rewrite [continue|stop] { name ...; answer ... }`.
pub fn setup(d: &Directive, _s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    let mut args: &[Token] = &d.args;
    let mut stop = true;
    if let Some(first) = args.first() {
        if matches!(first.text.as_str(), "continue" | "stop") {
            stop = first.text == "stop";
            args = &args[1..];
        }
    }
    let rule = match &d.block {
        None => {
            let Some((field, rest)) = args.split_first() else {
                return Err(CorefileError::new(
                    &d.name.pos,
                    "rewrite: expected a rule: name [exact|prefix|suffix|substring|regex] FROM TO",
                ));
            };
            check_field(field)?;
            rule(field, rest, stop)?
        }
        Some(block) => {
            if let Some(extra) = args.first() {
                return Err(CorefileError::new(
                    &extra.pos,
                    format!(
                        "rewrite: {:?}: with a block, expected only continue or stop before it",
                        extra.text
                    ),
                ));
            }
            block_rule(d, block, stop)?
        }
    };
    Ok(Arc::new(rule))
}

fn check_field(field: &Token) -> Result<(), CorefileError> {
    match field.text.as_str() {
        "name" => Ok(()),
        f if UNSUPPORTED.contains(&f) => Err(CorefileError::new(
            &field.pos,
            format!("rewrite: field {f:?} is not supported: this agent rewrites names only (rewrite name ...)"),
        )),
        f => Err(CorefileError::new(
            &field.pos,
            format!("rewrite: unknown field {f:?}: expected name"),
        )),
    }
}

/// The block form: one `name` line and at most one `answer` line.
fn block_rule(d: &Directive, block: &[Directive], stop: bool) -> Result<Rewrite, CorefileError> {
    let mut name: Option<&Directive> = None;
    let mut answer: Option<&Directive> = None;
    for line in block {
        let slot = match line.name.text.as_str() {
            "name" => &mut name,
            "answer" => &mut answer,
            other => {
                check_field(&line.name)?;
                return Err(CorefileError::new(
                    &line.name.pos,
                    format!("rewrite: {other:?} in a block: expected name or answer"),
                ));
            }
        };
        if slot.is_some() {
            return Err(CorefileError::new(
                &line.name.pos,
                format!(
                    "rewrite: a second {:?} line: a block holds one name rule (use several rewrite lines)",
                    line.name.text
                ),
            ));
        }
        *slot = Some(line);
    }
    let Some(name) = name else {
        return Err(CorefileError::new(
            &d.name.pos,
            "rewrite: the block has no name line: expected name [exact|prefix|suffix|substring|regex] FROM TO",
        ));
    };
    let mut args: Vec<Token> = name.args.clone();
    if let Some(answer) = answer {
        args.push(answer.name.clone());
        args.extend(answer.args.iter().cloned());
    }
    rule(&name.name, &args, stop)
}

/// The rule after the word `name`.
fn rule(field: &Token, args: &[Token], stop: bool) -> Result<Rewrite, CorefileError> {
    let (kind, args) = match args.first().map(|t| t.text.as_str()) {
        Some("exact" | "prefix" | "suffix" | "substring" | "regex") => {
            (args[0].text.as_str(), &args[1..])
        }
        _ => ("exact", args),
    };
    let (from, to, rest) = match args {
        [from, to, rest @ ..] => (from, to, rest),
        [only] => {
            return Err(CorefileError::new(
                &only.pos,
                format!(
                    "rewrite: name {kind} {:?}: expected FROM TO (the name to write is missing)",
                    only.text
                ),
            ))
        }
        [] => {
            return Err(CorefileError::new(
                &field.pos,
                format!("rewrite: name: expected [{MATCH_TYPES}] FROM TO"),
            ))
        }
    };
    let matcher = match kind {
        "exact" => Match::Exact(fqdn(&from.text)),
        "prefix" => Match::Prefix(from.text.to_ascii_lowercase()),
        "suffix" => Match::Suffix(fqdn(&from.text)),
        "substring" => Match::Substring(from.text.to_ascii_lowercase()),
        _ => Match::Regex(regex(from)?),
    };
    let to_text = match kind {
        "prefix" | "substring" => to.text.to_ascii_lowercase(),
        _ => fqdn(&to.text),
    };
    let back = match rest {
        [] => Back::Question,
        [a, auto] if a.text == "answer" && auto.text == "auto" => Back::Auto,
        [a, n, from, to] if a.text == "answer" && n.text == "name" => {
            Back::Name(regex(from)?, fqdn(&to.text))
        }
        [a, n, ..] if a.text == "answer" && n.text == "value" => return Err(CorefileError::new(
            &n.pos,
            "rewrite: answer value is not supported: expected answer auto or answer name FROM TO",
        )),
        [a, n, ..] if a.text == "answer" && n.text == "name" => {
            return Err(CorefileError::new(
                &n.pos,
                "rewrite: answer name: expected FROM TO (a regular expression and its replacement)",
            ))
        }
        [first, ..] => {
            return Err(CorefileError::new(
                &first.pos,
                format!(
                    "rewrite: {:?}: expected answer auto or answer name FROM TO after the rule",
                    first.text
                ),
            ))
        }
    };
    Ok(Rewrite {
        stop,
        matcher,
        to: to_text,
        back,
    })
}

fn regex(t: &Token) -> Result<Regex, CorefileError> {
    Regex::new(&t.text).map_err(|e| {
        CorefileError::new(
            &t.pos,
            format!("rewrite: regular expression {:?}: {e}", t.text),
        )
    })
}

/// Lower-case with a trailing dot.
fn fqdn(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// `template` with `{0}`, `{1}`... replaced by the groups of `caps`.
fn expand(template: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = template.to_owned();
    for (i, group) in caps.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), group.map_or("", |m| m.as_str()));
    }
    out
}

impl Rewrite {
    /// The new name for `name` (lower-case FQDN), `None` when the rule does not match.
    fn apply(&self, name: &str) -> Option<String> {
        match &self.matcher {
            Match::Exact(from) => (name == from).then(|| self.to.clone()),
            Match::Prefix(from) => name
                .strip_prefix(from.as_str())
                .map(|rest| format!("{}{rest}", self.to)),
            Match::Suffix(from) => name
                .strip_suffix(from.as_str())
                .map(|head| format!("{head}{}", self.to)),
            Match::Substring(from) => name
                .contains(from.as_str())
                .then(|| name.replacen(from.as_str(), &self.to, 1)),
            Match::Regex(re) => re.captures(name).map(|caps| expand(&self.to, &caps)),
        }
    }

    /// The rule undone on an answer name (lower-case FQDN), for `answer auto`.
    fn undo(&self, name: &str, rewritten: &str, original: &str) -> Option<String> {
        if name == rewritten {
            return Some(original.to_owned());
        }
        match &self.matcher {
            Match::Exact(_) | Match::Regex(_) => None,
            Match::Prefix(from) => name
                .strip_prefix(self.to.as_str())
                .map(|rest| format!("{from}{rest}")),
            Match::Suffix(from) => name
                .strip_suffix(self.to.as_str())
                .map(|head| format!("{head}{from}")),
            Match::Substring(from) => name
                .contains(self.to.as_str())
                .then(|| name.replacen(self.to.as_str(), from, 1)),
        }
    }

    /// The answer's owner names written back, and the question restored.
    fn write_back(&self, msg: &mut Message, rewritten: &str, original: &Name) {
        let original_key = lookup_key(original);
        for record in msg.answers_mut() {
            let key = lookup_key(record.name());
            let new = match &self.back {
                Back::Question => (key == rewritten).then(|| original_key.clone()),
                Back::Auto => self.undo(&key, rewritten, &original_key),
                Back::Name(re, to) => re.captures(&key).map(|caps| expand(to, &caps)),
            };
            let Some(new) = new else { continue };
            let name = if new == original_key {
                Some(original.clone())
            } else {
                Name::from_ascii(&new).ok()
            };
            if let Some(name) = name {
                record.set_name(name);
            }
        }
        for q in msg.queries_mut() {
            q.set_name(original.clone());
        }
    }
}

impl Plugin for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, mut req: Request, next: Next<'a>) -> Answer<'a> {
        Box::pin(async move {
            // Checked when polled: the scope of an outer `stop` covers the polling only.
            if STOPPED.try_with(|s| *s).unwrap_or(false) {
                return next.serve(ctx, req).await;
            }
            let Some(new) = self.apply(&req.key()) else {
                return next.serve(ctx, req).await;
            };
            let name = Name::from_ascii(&new).map_err(|e| {
                PluginError::new(
                    "rewrite",
                    format!("the rewritten name {new:?} is not a domain name: {e}"),
                )
            })?;
            let original = req.question.name().clone();
            req.question.set_name(name);
            let answer = async move { next.serve(ctx, req).await };
            let mut msg = if self.stop {
                STOPPED.scope(true, answer).await?
            } else {
                answer.await?
            };
            self.write_back(&mut msg, &new, &original);
            Ok(msg)
        })
    }
}

#[cfg(test)]
mod tests;
