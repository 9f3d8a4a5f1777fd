//! The kernel's copy of the cache: the success entries whose response the kernel program
//! reproduces byte for byte (address records of the asked type owned by the question name,
//! one TTL, nothing else) are written to its `DNS_CACHE` map with their expiry, and deleted
//! when the entry is evicted, replaced by one the kernel cannot repeat, or moves to the denial
//! table. The writes happen under the lock of the entry's shard, so the map follows the table
//! in the table's order.

use std::sync::Arc;

use dns_common::cache::{CachedAnswer, MAX_ADDRS};

use crate::server::wire::HEADER_LEN;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Where a cache writes the answers the kernel repeats (the agent's dataplane implements it).
pub trait KernelCache: Send + Sync {
    /// Writes `value` as the answer to `name` (wire form, lower case, root label included),
    /// `qtype`; returns whether it was written.
    fn put(&self, name: &[u8], qtype: u16, value: &CachedAnswer) -> bool;
    /// Deletes the answer to `name`, `qtype` (nothing when it is not there).
    fn remove(&self, name: &[u8], qtype: u16);
}

/// A cache's connection to the kernel.
#[derive(Clone)]
pub struct KernelLink {
    pub sink: Arc<dyn KernelCache>,
    /// `loadbalance` runs before the cache: the kernel does not rotate, so only answers with
    /// one address go there.
    pub single_address_only: bool,
}

impl KernelLink {
    /// Deletes the answer of the table key `key` (labels, type, class, flags).
    pub(super) fn remove_key(&self, key: &[u8]) {
        if let Some((name, qtype)) = name_of_key(key) {
            self.sink.remove(&name, qtype);
        }
    }

    /// Writes `value` under the table key `key`; whether it was written.
    pub(super) fn put_key(&self, key: &[u8], value: &CachedAnswer) -> bool {
        match name_of_key(key) {
            Some((name, qtype)) => self.sink.put(&name, qtype, value),
            None => false,
        }
    }
}

/// The wire name and QTYPE of a table key: its labels, type (2), class (2) and flags (1).
fn name_of_key(key: &[u8]) -> Option<(Vec<u8>, u16)> {
    let labels = key.get(..key.len().checked_sub(5)?)?;
    let qtype = u16::from_be_bytes([key[labels.len()], key[labels.len() + 1]]);
    let mut name = Vec::with_capacity(labels.len() + 1);
    name.extend_from_slice(labels);
    name.push(0);
    Some((name, qtype))
}

/// The kernel's entry for the response `msg` (what the byte path sends, ID 0, RD clear, no
/// OPT), times left 0; `None` when the kernel could not send exactly those bytes: not one
/// question of type A or AAAA, class IN, with a lower-case name of letters, digits, `-` and
/// `_`; not only 1..=`MAX_ADDRS` answers (one with `single_address_only`), each `C0 0C`, the
/// asked type, class IN, one TTL for all; any authority or additional record.
pub fn answer_of(msg: &[u8], single_address_only: bool) -> Option<CachedAnswer> {
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    if msg.len() < HEADER_LEN || count(4) != 1 || count(8) != 0 || count(10) != 0 {
        return None;
    }
    let n = usize::from(count(6));
    if n == 0 || n > MAX_ADDRS || (single_address_only && n > 1) {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            break;
        }
        let label = msg.get(at + 1..at + 1 + len)?;
        let plain =
            |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
        if len > 63 || !label.iter().all(plain) {
            return None;
        }
        at += 1 + len;
    }
    at += 1;
    let name = &msg[HEADER_LEN..at];
    let words = dns_common::name::pack_name(name)?;
    let fixed = msg.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    if u16::from_be_bytes([fixed[2], fixed[3]]) != CLASS_IN {
        return None;
    }
    let rdlen = match qtype {
        TYPE_A => 4,
        TYPE_AAAA => 16,
        _ => return None,
    };
    at += 4;
    let mut value = CachedAnswer {
        name: words,
        expires_ns: 0,
        decay_from_ns: 0,
        ttl: 0,
        count: n as u16,
        flags: [msg[2], msg[3]],
        addrs: [[0; 4]; MAX_ADDRS],
    };
    for i in 0..n {
        let rec = msg.get(at..at + 12 + rdlen)?;
        let be16 = |j: usize| u16::from_be_bytes([rec[j], rec[j + 1]]);
        let ttl = u32::from_be_bytes([rec[6], rec[7], rec[8], rec[9]]);
        if rec[..2] != [0xc0, 0x0c]
            || be16(2) != qtype
            || be16(4) != CLASS_IN
            || usize::from(be16(10)) != rdlen
            || (i > 0 && ttl != value.ttl)
        {
            return None;
        }
        value.ttl = ttl;
        for (w, chunk) in value.addrs[i].iter_mut().zip(rec[12..].chunks(4)) {
            *w = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        at += 12 + rdlen;
    }
    (at == msg.len()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as the byte path stores it: `answers` records of (owner bytes, type, TTL,
    /// rdata) after the question `www.example.org. A`.
    fn msg(an: &[(&[u8], u16, u32, &[u8])], ns: u16, ar: u16, qname: &[u8]) -> Vec<u8> {
        let mut m = vec![
            0,
            0,
            0x81,
            0x80,
            0,
            1,
            0,
            an.len() as u8,
            0,
            ns as u8,
            0,
            ar as u8,
        ];
        m.extend_from_slice(qname);
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, t, ttl, rdata) in an {
            m.extend_from_slice(owner);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    const WWW: &[u8] = b"\x03www\x07example\x03org\x00";
    const PTR: &[u8] = &[0xc0, 0x0c];

    #[test]
    fn what_the_kernel_repeats() {
        let one = msg(&[(PTR, 1, 30, &[192, 0, 2, 1])], 0, 0, WWW);
        let v = answer_of(&one, false).expect("one A record");
        assert_eq!((v.count, v.ttl, v.flags), (1, 30, [0x81, 0x80]));
        assert_eq!(v.addrs[0][0], u32::from_ne_bytes([192, 0, 2, 1]));
        let two = msg(
            &[(PTR, 1, 30, &[192, 0, 2, 1]), (PTR, 1, 30, &[192, 0, 2, 2])],
            0,
            0,
            WWW,
        );
        assert_eq!(answer_of(&two, false).map(|v| v.count), Some(2));
        assert!(
            answer_of(&two, true).is_none(),
            "loadbalance: one address only"
        );
        let cases: [(&str, Vec<u8>); 8] = [
            (
                "two TTLs",
                msg(
                    &[(PTR, 1, 30, &[192, 0, 2, 1]), (PTR, 1, 40, &[192, 0, 2, 2])],
                    0,
                    0,
                    WWW,
                ),
            ),
            (
                "a CNAME",
                msg(
                    &[
                        (PTR, 5, 30, b"\x03foo\xc0\x10"),
                        (PTR, 1, 30, &[1, 2, 3, 4]),
                    ],
                    0,
                    0,
                    WWW,
                ),
            ),
            (
                "an owner spelled out",
                msg(&[(WWW, 1, 30, &[192, 0, 2, 1])], 0, 0, WWW),
            ),
            ("an authority record", {
                let mut m = msg(&[(PTR, 1, 30, &[192, 0, 2, 1])], 1, 0, WWW);
                m.extend_from_slice(&[0xc0, 0x10, 0, 2, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 0x10]);
                m
            }),
            (
                "an additional record",
                msg(&[(PTR, 1, 30, &[1, 2, 3, 4])], 0, 1, WWW),
            ),
            ("no answer", msg(&[], 0, 0, WWW)),
            (
                "an upper-case name",
                msg(
                    &[(PTR, 1, 30, &[1, 2, 3, 4])],
                    0,
                    0,
                    b"\x03WWW\x07example\x03org\x00",
                ),
            ),
            (
                "a name with other bytes",
                msg(&[(PTR, 1, 30, &[1, 2, 3, 4])], 0, 0, b"\x03w*w\x00"),
            ),
        ];
        for (what, m) in cases {
            assert!(answer_of(&m, false).is_none(), "{what}");
        }
        let many: Vec<(&[u8], u16, u32, &[u8])> = (0..=MAX_ADDRS)
            .map(|_| (PTR, 1u16, 30u32, &[1u8, 2, 3, 4][..]))
            .collect();
        assert!(
            answer_of(&msg(&many, 0, 0, WWW), false).is_none(),
            "too many"
        );
        assert!(
            answer_of(&msg(&many[1..], 0, 0, WWW), false).is_some(),
            "as many as fit"
        );
        let v6 = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut aaaa = msg(&[(PTR, 28, 30, &v6)], 0, 0, WWW);
        // The question asks AAAA.
        let qtype_at = 12 + WWW.len();
        aaaa[qtype_at + 1] = 28;
        let v = answer_of(&aaaa, false).expect("one AAAA record");
        assert_eq!(
            v.addrs[0],
            [
                u32::from_ne_bytes([0x20, 1, 0x0d, 0xb8]),
                0,
                0,
                u32::from_ne_bytes([0, 0, 0, 1])
            ]
        );
        assert!(
            answer_of(&one[..one.len() - 1], false).is_none(),
            "cut short"
        );
    }
}
