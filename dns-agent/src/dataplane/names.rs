//! Turns the agent's records into `DNS_A`/`DNS_AAAA` entries: FQDN text → wire name → key and value.

use std::net::{Ipv4Addr, Ipv6Addr};

use dns_common::{
    name::{hash_words, pack_name, MAX_NAME_LEN},
    records::{ARecords, AaaaRecords, NameKey, FLAG_USERSPACE_ONLY, MAX_AAAA, MAX_ADDRS},
};

/// Why a name cannot be put in the kernel map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name {0:?} does not end with a dot (an FQDN is expected)")]
    NotFqdn(String),
    #[error("name {0:?} has an empty label or a label longer than 63 bytes")]
    BadLabel(String),
    #[error("name {0:?} is longer than 255 bytes in wire format")]
    TooLong(String),
}

/// Wire format of a fully qualified name in presentation form ("web.default.svc.cluster.local.").
/// Labels are taken as they are (no escapes); the root is ".".
pub fn to_wire(fqdn: &str) -> Result<Vec<u8>, NameError> {
    let Some(body) = fqdn.strip_suffix('.') else {
        return Err(NameError::NotFqdn(fqdn.to_string()));
    };
    let mut wire = Vec::with_capacity(fqdn.len() + 1);
    if !body.is_empty() {
        for label in body.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(NameError::BadLabel(fqdn.to_string()));
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
    }
    wire.push(0);
    if wire.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(fqdn.to_string()));
    }
    Ok(wire)
}

/// The map key and the stored (lower-cased, packed) name of a wire-format name.
pub fn key_of(wire: &[u8]) -> Result<(NameKey, [u64; 32]), NameError> {
    let words = pack_name(wire).ok_or_else(|| NameError::TooLong(format!("{wire:?}")))?;
    let len = wire.len() as u16;
    let key = NameKey {
        hash: hash_words(&words, len),
        len,
        _pad: [0; 6],
    };
    Ok((key, words))
}

/// The map value for `addrs` (kept in the given order). More than [`MAX_ADDRS`] addresses are
/// flagged [`FLAG_USERSPACE_ONLY`]: the kernel passes such queries to userspace.
pub fn value_of(words: [u64; 32], ttl: u32, addrs: &[Ipv4Addr]) -> ARecords {
    let mut value = ARecords {
        name: words,
        ttl,
        count: 0,
        flags: 0,
        addrs_be: [0; MAX_ADDRS],
    };
    if addrs.len() > MAX_ADDRS {
        value.flags = FLAG_USERSPACE_ONLY;
    }
    for (slot, addr) in value.addrs_be.iter_mut().zip(addrs) {
        *slot = u32::from_ne_bytes(addr.octets());
        value.count += 1;
    }
    value
}

/// The `DNS_AAAA` value for `addrs` (kept in the given order). More than [`MAX_AAAA`] addresses
/// are flagged [`FLAG_USERSPACE_ONLY`], as for A.
pub fn aaaa_value_of(words: [u64; 32], ttl: u32, addrs: &[Ipv6Addr]) -> AaaaRecords {
    let mut value = AaaaRecords {
        name: words,
        ttl,
        count: 0,
        flags: 0,
        addrs: [[0; 4]; MAX_AAAA],
    };
    if addrs.len() > MAX_AAAA {
        value.flags = FLAG_USERSPACE_ONLY;
    }
    for (slot, addr) in value.addrs.iter_mut().zip(addrs) {
        let o = addr.octets();
        for (word, bytes) in slot.iter_mut().zip(o.chunks_exact(4)) {
            *word = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        value.count += 1;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_of_names() {
        let cases: &[(&str, Result<&[u8], ()>)] = &[
            (".", Ok(b"\x00")),
            ("a.b.", Ok(b"\x01a\x01b\x00")),
            (
                "web.default.svc.cluster.local.",
                Ok(b"\x03web\x07default\x03svc\x07cluster\x05local\x00"),
            ),
            ("no-dot", Err(())),
            ("a..b.", Err(())),
            ("..", Err(())),
        ];
        for (name, want) in cases {
            let got = to_wire(name);
            assert_eq!(got.as_deref().map_err(|_| ()), *want, "{name}");
        }
        let long_label = format!("{}.", "x".repeat(64));
        assert!(matches!(to_wire(&long_label), Err(NameError::BadLabel(_))));
        // 4 labels of 63 bytes: 4 * 64 + 1 = 257 bytes.
        let too_long = format!("{0}.{0}.{0}.{0}.", "y".repeat(63));
        assert!(matches!(to_wire(&too_long), Err(NameError::TooLong(_))));
        // 3 * 64 + 62 + 1 = 255 bytes: the longest name.
        let longest = format!("{0}.{0}.{0}.{1}.", "y".repeat(63), "z".repeat(61));
        assert_eq!(to_wire(&longest).map(|w| w.len()), Ok(255));
    }

    #[test]
    fn key_ignores_case_and_value_keeps_order() {
        let (k1, w1) = key_of(b"\x03WEB\x05local\x00").expect("key");
        let (k2, w2) = key_of(b"\x03web\x05local\x00").expect("key");
        assert_eq!((k1, w1), (k2, w2));
        assert_eq!(k1.len, 11);
        let addrs = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)];
        let v = value_of(w1, 30, &addrs);
        assert_eq!((v.count, v.flags, v.ttl), (2, 0, 30));
        assert_eq!(v.addrs_be[0].to_ne_bytes(), [10, 0, 0, 2]);
        assert_eq!(v.addrs_be[1].to_ne_bytes(), [10, 0, 0, 1]);
        let many: Vec<Ipv4Addr> = (0..33u32).map(Ipv4Addr::from).collect();
        let v = value_of(w1, 5, &many);
        assert_eq!(
            (v.count as usize, v.flags),
            (MAX_ADDRS, FLAG_USERSPACE_ONLY)
        );
    }

    #[test]
    fn aaaa_value_keeps_order_and_wire_bytes() {
        let (_, w) = key_of(b"\x03web\x05local\x00").expect("key");
        let a1: Ipv6Addr = "fd00:10:96::1:2".parse().expect("addr");
        let a0: Ipv6Addr = "2001:db8::ff".parse().expect("addr");
        let v = aaaa_value_of(w, 30, &[a1, a0]);
        assert_eq!((v.count, v.flags, v.ttl), (2, 0, 30));
        let bytes =
            |slot: [u32; 4]| -> Vec<u8> { slot.iter().flat_map(|x| x.to_ne_bytes()).collect() };
        assert_eq!(bytes(v.addrs[0]), a1.octets());
        assert_eq!(bytes(v.addrs[1]), a0.octets());
        assert_eq!(v.addrs[2], [0; 4]);
        let many: Vec<Ipv6Addr> = (0..33u128).map(Ipv6Addr::from).collect();
        let v = aaaa_value_of(w, 5, &many);
        assert_eq!((v.count as usize, v.flags), (MAX_AAAA, FLAG_USERSPACE_ONLY));
    }
}
