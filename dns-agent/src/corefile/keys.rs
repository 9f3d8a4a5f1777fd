//! Server keys: `[dns://]zone-or-network[:port]` into a transport, normalized zones and a port.

use std::net::IpAddr;

use super::{CorefileError, Pos, ServerKey, Transport};

/// Parses one key (no commas) written at `pos`.
pub(super) fn parse_key(text: &str, pos: &Pos) -> Result<ServerKey, CorefileError> {
    let at = |offset: &str| Pos {
        col: pos.col + u32::try_from(offset.chars().count()).unwrap_or(0),
        ..pos.clone()
    };
    let (transport, rest, mut offset) = match text.find("://") {
        Some(i) if text[..i].eq_ignore_ascii_case("dns") => (Transport::Dns, &text[i + 3..], i + 3),
        Some(i) => {
            return Err(CorefileError::new(
                pos,
                format!(
                    "unsupported transport \"{}://\": only dns:// (plain DNS over UDP and TCP) \
                     is served",
                    &text[..i]
                ),
            ))
        }
        None => (Transport::Dns, text, 0),
    };
    // `[host]:port` for IPv6; a host with several colons and no brackets has no port.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err(CorefileError::new(
                pos,
                format!("server key {text:?}: missing ']'"),
            ));
        };
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some((port, offset + end + 3)),
            None if after.is_empty() => None,
            None => {
                return Err(CorefileError::new(
                    &at(&text[..offset + end + 2]),
                    format!("server key {text:?}: expected ':port' after ']'"),
                ))
            }
        };
        offset += 1;
        (&inner[..end], port)
    } else if rest.matches(':').count() == 1 {
        let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
        (host, Some((port, offset + host.len() + 1)))
    } else {
        (rest, None)
    };
    let port = match port {
        None => None,
        Some((port, port_offset)) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                return Err(CorefileError::new(
                    &at(&text[..port_offset]),
                    format!("invalid port {port:?}: expected a number from 1 to 65535"),
                ))
            }
        },
    };
    let host_pos = at(&text[..offset]);
    if host.is_empty() {
        return Err(CorefileError::new(
            &host_pos,
            format!("server key {text:?} has no zone: write '.' for the root zone"),
        ));
    }
    let zones = if host.contains('/') {
        reverse_zones(host).map_err(|why| {
            CorefileError::new(&host_pos, format!("invalid network {host:?}: {why}"))
        })?
    } else {
        vec![normalize_zone(host).map_err(|why| {
            CorefileError::new(&host_pos, format!("invalid zone {host:?}: {why}"))
        })?]
    };
    Ok(ServerKey {
        transport,
        zones,
        port,
        pos: pos.clone(),
    })
}

/// A domain name as a zone: lower case, with a trailing dot.
pub(super) fn normalize_zone(name: &str) -> Result<String, &'static str> {
    if name == "." {
        return Ok(".".to_owned());
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*');
        if !label.chars().all(valid) {
            return Err("only letters, digits, '-', '_' and '*' may appear in a zone");
        }
    }
    Ok(name + ".")
}

/// The reverse zones covering a network. A prefix length between boundaries (8 bits for IPv4,
/// 4 for IPv6) gives every zone at the next boundary inside the network.
pub(super) fn reverse_zones(network: &str) -> Result<Vec<String>, String> {
    let (addr, len) = network.split_once('/').unwrap_or((network, ""));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let (bits, step, value, suffix) = match addr {
        IpAddr::V4(a) => (32u32, 8u32, u128::from(u32::from(a)), "in-addr.arpa."),
        IpAddr::V6(a) => (128, 4, u128::from(a), "ip6.arpa."),
    };
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= bits)
        .ok_or_else(|| format!("prefix length {len:?}: expected a number from 0 to {bits}"))?;
    let keep = |l: u32| {
        if l == 0 {
            0
        } else {
            (u128::MAX >> (128 - l)) << (bits - l)
        }
    };
    let boundary = len.div_ceil(step) * step;
    let base = value & keep(len);
    let mut zones = Vec::new();
    for i in 0..(1u128 << (boundary - len)) {
        let net = base | i.checked_shl(bits - boundary).unwrap_or(0);
        let mut labels: Vec<String> = (0..boundary / step)
            .map(|k| {
                let part = (net >> (bits - step * (k + 1))) & ((1 << step) - 1);
                if step == 8 {
                    part.to_string()
                } else {
                    format!("{part:x}")
                }
            })
            .collect();
        labels.reverse();
        labels.push(suffix.to_owned());
        zones.push(labels.join("."));
    }
    Ok(zones)
}
