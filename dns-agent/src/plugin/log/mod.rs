//! `log`: one line per query in CoreDNS's log format (see `README.md` beside this file).

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};

use super::{Answer, Ctx, Next, Plugin, Setup};
use crate::corefile::{CorefileError, Directive};
use crate::records::in_zone;
use crate::server::answer::{self, Request, Transport};

/// CoreDNS's Common Log Format.
pub const COMMON: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";
/// The common format with the query's opcode.
pub const COMBINED: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration} \"{>opcode}\"";

tokio::task_local! {
    /// Set while an outer `log` logs this query: inner ones stand aside (one line per query).
    static LOGGED: bool;
}

/// Where the lines go: info level, target `dns_agent::query`, in the agent; a collector in tests.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

pub fn log_sink() -> Sink {
    Arc::new(|line| ::log::info!(target: "dns_agent::query", "{line}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Remote,
    Port,
    Local,
    Id,
    Opcode,
    Type,
    Class,
    Name,
    Proto,
    Size,
    Do,
    Bufsize,
    Rcode,
    Rflags,
    Rsize,
    Duration,
}

const SUCCESS: u8 = 1;
const DENIAL: u8 = 2;
const ERROR: u8 = 4;
const ALL: u8 = SUCCESS | DENIAL | ERROR;

/// The plugin.
pub struct Log {
    names: Vec<String>,
    format: Vec<Part>,
    classes: u8,
    sink: Sink,
}

/// Reads `log [NAMES...] [FORMAT] { class CLASSES... }`.
pub fn setup(d: &Directive, _s: &Setup<'_>) -> Result<Arc<dyn Plugin>, CorefileError> {
    Ok(Arc::new(parse(d, log_sink())?))
}

fn parse(d: &Directive, sink: Sink) -> Result<Log, CorefileError> {
    let mut args: &[crate::corefile::Token] = &d.args;
    let mut format = COMMON.to_owned();
    if let Some((last, names)) = args.split_last() {
        if last.text.contains('{') {
            format = last
                .text
                .replace("{common}", COMMON)
                .replace("{combined}", COMBINED);
            args = names;
        }
    }
    let mut names: Vec<String> = args.iter().map(|t| fqdn(&t.text)).collect();
    if names.is_empty() {
        names.push(".".to_owned());
    }
    let mut classes = 0;
    for option in d.block_directives() {
        if option.name.text != "class" {
            return Err(CorefileError::new(
                &option.name.pos,
                format!("log: unknown option {:?}: expected class", option.name.text),
            ));
        }
        if option.args.is_empty() {
            return Err(CorefileError::new(
                &option.name.pos,
                "log: class: expected success, denial, error or all",
            ));
        }
        for c in &option.args {
            classes |= match c.text.as_str() {
                "success" => SUCCESS,
                "denial" => DENIAL,
                "error" => ERROR,
                "all" => ALL,
                other => {
                    return Err(CorefileError::new(
                        &c.pos,
                        format!("log: class {other:?}: expected success, denial, error or all"),
                    ))
                }
            };
        }
    }
    Ok(Log {
        names,
        format: compile(&format),
        classes: if classes == 0 { ALL } else { classes },
        sink,
    })
}

fn fqdn(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// The format as literal text and placeholders; unknown placeholders print `-`.
fn compile(format: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let key = &rest[open + 1..open + close];
        let part = match key {
            "remote" => Part::Remote,
            "port" => Part::Port,
            "local" => Part::Local,
            ">id" => Part::Id,
            ">opcode" => Part::Opcode,
            "type" => Part::Type,
            "class" => Part::Class,
            "name" => Part::Name,
            "proto" => Part::Proto,
            "size" => Part::Size,
            ">do" => Part::Do,
            ">bufsize" => Part::Bufsize,
            "rcode" => Part::Rcode,
            ">rflags" => Part::Rflags,
            "rsize" => Part::Rsize,
            "duration" => Part::Duration,
            _ => Part::Text("-".to_owned()),
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// The header flags of an encoded response, CoreDNS's way: `qr,aa,rd,ra`.
fn flags(bytes: &[u8]) -> String {
    let (Some(&hi), Some(&lo)) = (bytes.get(2), bytes.get(3)) else {
        return "-".to_owned();
    };
    let set = [
        (hi & 0x80 != 0, "qr"),
        (hi & 0x04 != 0, "aa"),
        (hi & 0x02 != 0, "tc"),
        (hi & 0x01 != 0, "rd"),
        (lo & 0x80 != 0, "ra"),
        (lo & 0x40 != 0, "z"),
        (lo & 0x20 != 0, "ad"),
        (lo & 0x10 != 0, "cd"),
    ];
    set.iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| *f)
        .collect::<Vec<_>>()
        .join(",")
}

/// The size of the query as sent: header, question, and an OPT record without options.
fn query_size(req: &Request) -> usize {
    let name: usize = req
        .question
        .name()
        .iter()
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + 1;
    12 + name + 4 + if req.edns.is_some() { 11 } else { 0 }
}

/// Which class a response is in.
fn class_of(msg: &Message) -> u8 {
    match msg.response_code() {
        ResponseCode::NoError if !msg.answers().is_empty() => SUCCESS,
        ResponseCode::NoError | ResponseCode::NXDomain => DENIAL,
        _ => ERROR,
    }
}

impl Log {
    /// The line for `req` answered with `msg` after `took`.
    fn line(&self, ctx: &Ctx, req: &Request, msg: &Message, took: Duration) -> String {
        let wire = answer::finish(req, msg);
        let mut out = String::with_capacity(128);
        for part in &self.format {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Remote => match ctx.client.ip() {
                    std::net::IpAddr::V4(ip) => out.push_str(&ip.to_string()),
                    std::net::IpAddr::V6(ip) => out.push_str(&format!("[{ip}]")),
                },
                Part::Port => out.push_str(&ctx.client.port().to_string()),
                Part::Local => out.push_str(&ctx.local.ip().to_string()),
                Part::Id => out.push_str(&req.header.id().to_string()),
                Part::Opcode => out.push_str(&u8::from(req.header.op_code()).to_string()),
                Part::Type => out.push_str(&req.question.query_type().to_string()),
                Part::Class => out.push_str(&req.question.query_class().to_string()),
                Part::Name => out.push_str(&req.key()),
                Part::Proto => out.push_str(match req.transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                }),
                Part::Size => out.push_str(&query_size(req).to_string()),
                Part::Do => out.push_str(if req.edns.is_some_and(|e| e.dnssec_ok) {
                    "true"
                } else {
                    "false"
                }),
                Part::Bufsize => out.push_str(&req.size_limit().to_string()),
                Part::Rcode => out.push_str(&super::rcode_name(
                    wire.as_ref()
                        .map_or(u16::from(msg.response_code()), |w| w.rcode),
                )),
                Part::Rflags => {
                    out.push_str(&wire.as_ref().map_or("-".to_owned(), |w| flags(&w.bytes)))
                }
                Part::Rsize => {
                    out.push_str(&wire.as_ref().map_or(0, |w| w.bytes.len()).to_string())
                }
                Part::Duration => out.push_str(&format!("{}s", took.as_secs_f64())),
            }
        }
        out
    }
}

impl Plugin for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn serve<'a>(&'a self, ctx: &'a Ctx, req: Request, next: Next<'a>) -> Answer<'a> {
        Box::pin(async move {
            let key = req.key();
            let ours = !LOGGED.try_with(|l| *l).unwrap_or(false)
                && self.names.iter().any(|z| in_zone(&key, z));
            if !ours {
                return next.serve(ctx, req).await;
            }
            let asked = req.clone();
            let result = LOGGED
                .scope(true, async move { next.serve(ctx, req).await })
                .await;
            let servfail;
            let msg = match &result {
                Ok(msg) => msg,
                Err(_) => {
                    servfail = asked.reply(ResponseCode::ServFail);
                    &servfail
                }
            };
            if self.classes & class_of(msg) != 0 {
                (self.sink)(&self.line(ctx, &asked, msg, ctx.received.elapsed()));
            }
            result
        })
    }
}

#[cfg(test)]
mod tests;
