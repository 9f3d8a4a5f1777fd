//! The diff between what `DNS_A`/`DNS_AAAA` hold and what the records say they should hold (no I/O).

use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
};

use dns_common::records::{ARecords, AaaaRecords, NameKey, FLAG_USERSPACE_ONLY};

use super::names::{aaaa_value_of, key_of, to_wire, value_of};

/// An address type with a kernel map: how its records become that map's value.
pub trait MapAddr: Sized {
    /// The map value.
    type Value: Clone + PartialEq + std::fmt::Debug;
    /// The value for `addrs` (in order) under the packed name `words`.
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self]) -> Self::Value;
    /// Whether the value tells the kernel to leave the name to userspace.
    fn userspace_only(value: &Self::Value) -> bool;
}

impl MapAddr for Ipv4Addr {
    type Value = ARecords;
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self]) -> ARecords {
        value_of(words, ttl, addrs)
    }
    fn userspace_only(value: &ARecords) -> bool {
        value.flags & FLAG_USERSPACE_ONLY != 0
    }
}

impl MapAddr for Ipv6Addr {
    type Value = AaaaRecords;
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self]) -> AaaaRecords {
        aaaa_value_of(words, ttl, addrs)
    }
    fn userspace_only(value: &AaaaRecords) -> bool {
        value.flags & FLAG_USERSPACE_ONLY != 0
    }
}

/// One map entry and the name it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored<V = ARecords> {
    pub name: String,
    pub value: V,
}

/// What to change in the map, and what stays out of it.
#[derive(Debug)]
pub struct Plan<V = ARecords> {
    /// The map's wanted content.
    pub desired: HashMap<NameKey, Stored<V>>,
    /// Keys to add.
    pub inserts: Vec<NameKey>,
    /// Keys whose value (or owner) changes.
    pub updates: Vec<NameKey>,
    /// Keys to delete.
    pub removes: Vec<NameKey>,
    /// Names in the map flagged userspace-only (too many addresses).
    pub flagged: usize,
    /// Names left out because another name has the same key (hash and length).
    pub collisions: usize,
    /// Names left out because they are not valid wire names.
    pub invalid: usize,
}

impl<V> Default for Plan<V> {
    fn default() -> Self {
        Plan {
            desired: HashMap::new(),
            inserts: Vec::new(),
            updates: Vec::new(),
            removes: Vec::new(),
            flagged: 0,
            collisions: 0,
            invalid: 0,
        }
    }
}

/// Plans the changes that make the map equal to `records`, given what was `written` before.
///
/// Names without addresses are left out (the kernel passes them; userspace answers NODATA).
/// When two names share a key, the one already in the map keeps it; otherwise the first in
/// name order does. The other is left to userspace and counted.
pub fn plan<A: MapAddr>(
    written: &HashMap<NameKey, Stored<A::Value>>,
    records: &BTreeMap<String, (u32, Vec<A>)>,
) -> Plan<A::Value> {
    let mut p = Plan::default();
    for (name, (ttl, addrs)) in records {
        if addrs.is_empty() {
            continue;
        }
        let Ok((key, words)) = to_wire(name).and_then(|w| key_of(&w)) else {
            p.invalid += 1;
            continue;
        };
        let stored = Stored {
            name: name.clone(),
            value: A::value(words, *ttl, addrs),
        };
        match p.desired.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(stored);
            }
            Entry::Occupied(mut slot) => {
                p.collisions += 1;
                let owner = written.get(&key).map(|s| s.name.as_str());
                if owner == Some(name.as_str()) {
                    slot.insert(stored);
                }
            }
        }
    }
    for (key, want) in &p.desired {
        if A::userspace_only(&want.value) {
            p.flagged += 1;
        }
        match written.get(key) {
            None => p.inserts.push(*key),
            Some(have) if have != want => p.updates.push(*key),
            Some(_) => {}
        }
    }
    p.removes = written
        .keys()
        .filter(|k| !p.desired.contains_key(k))
        .copied()
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(entries: &[(&str, u32, &[[u8; 4]])]) -> BTreeMap<String, (u32, Vec<Ipv4Addr>)> {
        entries
            .iter()
            .map(|(n, ttl, a)| {
                let addrs = a.iter().map(|o| Ipv4Addr::from(*o)).collect();
                (n.to_string(), (*ttl, addrs))
            })
            .collect()
    }

    fn apply(written: &mut HashMap<NameKey, Stored>, p: &Plan) {
        for k in &p.removes {
            written.remove(k);
        }
        for k in p.inserts.iter().chain(&p.updates) {
            written.insert(*k, p.desired[k].clone());
        }
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let mut written = HashMap::new();
        let r1 = records(&[
            ("a.svc.", 5, &[[10, 0, 0, 1]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
            ("c.svc.", 5, &[]),
            ("bad..", 5, &[[10, 0, 0, 3]]),
        ]);
        let p = plan(&written, &r1);
        assert_eq!(
            (p.inserts.len(), p.updates.len(), p.removes.len()),
            (2, 0, 0)
        );
        assert_eq!((p.invalid, p.collisions, p.flagged), (1, 0, 0));
        apply(&mut written, &p);
        assert_eq!(written.len(), 2);

        let p = plan(&written, &r1);
        assert_eq!(
            (p.inserts.len(), p.updates.len(), p.removes.len()),
            (0, 0, 0)
        );

        let r2 = records(&[
            ("a.svc.", 7, &[[10, 0, 0, 1]]),
            ("d.svc.", 5, &[[10, 0, 0, 4]]),
        ]);
        let p = plan(&written, &r2);
        assert_eq!(
            (p.inserts.len(), p.updates.len(), p.removes.len()),
            (1, 1, 1)
        );
        apply(&mut written, &p);
        let mut names: Vec<_> = written.values().map(|s| s.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a.svc.", "d.svc."]);
    }

    #[test]
    fn colliding_names_keep_the_stored_one() {
        let (key_b, _) = key_of(b"\x01b\x03svc\x00").expect("key");
        let (_, words_a) = key_of(b"\x01a\x03svc\x00").expect("key");
        // Pretend "a.svc." already sits under b's key (as a real collision would look).
        let mut written = HashMap::new();
        let b = records(&[("b.svc.", 5, &[[10, 0, 0, 2]])]);
        let p = plan(&written, &b);
        apply(&mut written, &p);
        let stored_b = written[&key_b].clone();
        written.insert(
            key_b,
            Stored {
                name: "a.svc.".into(),
                value: super::super::names::value_of(words_a, 5, &[Ipv4Addr::new(10, 0, 0, 1)]),
            },
        );
        // Same key computed for two names: simulate with a map whose key function collides by
        // asking the planner for both "b.svc." and its upper-case twin (same key, same words).
        let both = records(&[
            ("B.svc.", 5, &[[10, 0, 0, 9]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
        ]);
        let mut written2 = HashMap::new();
        written2.insert(key_b, stored_b.clone());
        let p = plan(&written2, &both);
        assert_eq!(p.collisions, 1);
        assert_eq!(
            p.desired[&key_b], stored_b,
            "the stored owner keeps the key"
        );
        assert!(p.updates.is_empty() && p.inserts.is_empty());

        // With nothing stored, the first name in order wins.
        let p = plan(&HashMap::new(), &both);
        assert_eq!(p.collisions, 1);
        assert_eq!(p.desired[&key_b].name, "B.svc.");

        // The entry stored under b's key with another name is replaced, not kept.
        let p = plan(&written, &b);
        assert_eq!(p.updates, vec![key_b]);
    }

    #[test]
    fn aaaa_plans_like_a() {
        let a: Ipv6Addr = "fd00::1".parse().expect("addr");
        let b: Ipv6Addr = "fd00::2".parse().expect("addr");
        let many: Vec<Ipv6Addr> = (0..40u128).map(Ipv6Addr::from).collect();
        let r1: BTreeMap<String, (u32, Vec<Ipv6Addr>)> = [
            ("a.svc.".to_string(), (5, vec![a])),
            ("B.svc.".to_string(), (5, vec![a])),
            ("b.svc.".to_string(), (5, vec![b])),
            ("big.svc.".to_string(), (5, many)),
            ("none.svc.".to_string(), (5, vec![])),
        ]
        .into();
        let mut written: HashMap<NameKey, Stored<AaaaRecords>> = HashMap::new();
        let p = plan(&written, &r1);
        assert_eq!((p.inserts.len(), p.collisions, p.flagged), (3, 1, 1));
        for k in &p.inserts {
            written.insert(*k, p.desired[k].clone());
        }
        let (key_b, _) = key_of(b"\x01b\x03svc\x00").expect("key");
        assert_eq!(written[&key_b].name, "B.svc.");
        let mut r2 = r1.clone();
        r2.remove("a.svc.");
        r2.insert("b.svc.".to_string(), (9, vec![b]));
        let p = plan(&written, &r2);
        // "B.svc." keeps its key; "b.svc." changing does not touch it.
        assert_eq!(
            (p.inserts.len(), p.updates.len(), p.removes.len()),
            (0, 0, 1)
        );
    }

    #[test]
    fn too_many_addresses_are_flagged() {
        let many: Vec<[u8; 4]> = (0..40u8).map(|i| [10, 0, 1, i]).collect();
        let p = plan(&HashMap::new(), &records(&[("big.svc.", 5, &many)]));
        assert_eq!((p.flagged, p.inserts.len()), (1, 1));
    }
}
