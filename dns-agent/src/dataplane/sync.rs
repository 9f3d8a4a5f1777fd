//! The diff between what `DNS_A`/`DNS_AAAA` hold and what the records say they should hold (no I/O).
//!
//! What the maps hold is remembered as [`Written`]: per key, a fingerprint of the owner name and
//! one of the value bytes (16 bytes), not a copy of the 392-byte (776 for AAAA) value. Values are
//! built again from the records only for the keys that change.

use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap},
    hash::Hasher,
    net::{Ipv4Addr, Ipv6Addr},
};

use dns_common::records::{ARecords, AaaaRecords, NameKey, FLAG_USERSPACE_ONLY};

use super::names::{aaaa_value_of, key_of, to_wire, value_of};

/// An address type with a kernel map: how its records become that map's value.
pub trait MapAddr: Sized {
    /// The map value.
    type Value: bytemuck::Pod + std::fmt::Debug;
    /// The value for `addrs` (in order) under the packed name `words`, with `flags` (besides
    /// the userspace-only flag the addresses may call for).
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self], flags: u16) -> Self::Value;
    /// Whether the value tells the kernel to leave the name to userspace.
    fn userspace_only(value: &Self::Value) -> bool;
}

impl MapAddr for Ipv4Addr {
    type Value = ARecords;
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self], flags: u16) -> ARecords {
        let mut v = value_of(words, ttl, addrs);
        v.flags |= flags;
        v
    }
    fn userspace_only(value: &ARecords) -> bool {
        value.flags & FLAG_USERSPACE_ONLY != 0
    }
}

impl MapAddr for Ipv6Addr {
    type Value = AaaaRecords;
    fn value(words: [u64; 32], ttl: u32, addrs: &[Self], flags: u16) -> AaaaRecords {
        let mut v = aaaa_value_of(words, ttl, addrs);
        v.flags |= flags;
        v
    }
    fn userspace_only(value: &AaaaRecords) -> bool {
        value.flags & FLAG_USERSPACE_ONLY != 0
    }
}

/// What is remembered of one map entry: fingerprints of the name that owns the key and of the
/// value bytes written under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Print {
    /// [`name_print`] of the owner name.
    pub owner: u64,
    /// [`value_print`] of the value.
    pub value: u64,
}

/// What a map holds, as last written: its keys and their fingerprints.
pub type Written = HashMap<NameKey, Print>;

/// Fingerprint of an owner name (the name as given, case included).
pub fn name_print(name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(name.as_bytes());
    h.finish()
}

/// Fingerprint of a map value's bytes.
pub fn value_print<V: bytemuck::Pod>(value: &V) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytemuck::bytes_of(value));
    h.finish()
}

/// The name that should own a key, and its records.
#[derive(Debug)]
pub struct Want<'r, A> {
    pub name: &'r str,
    pub ttl: u32,
    pub addrs: &'r [A],
    /// Flags of the value besides userspace-only (`FLAG_NO_OTHER_TYPE`).
    pub flags: u16,
    /// What [`Written`] holds once the value is in the map.
    pub print: Print,
    /// The value tells the kernel to leave the name to userspace (too many addresses).
    pub flagged: bool,
}

impl<A: MapAddr> Want<'_, A> {
    /// The map value, built again from the name and the records (`None` only for a name that
    /// is not a valid wire name, which the planner never returns).
    pub fn value(&self) -> Option<A::Value> {
        let (_, words) = to_wire(self.name).and_then(|w| key_of(&w)).ok()?;
        Some(A::value(words, self.ttl, self.addrs, self.flags))
    }
}

/// The key of `name` and what it should hold, or `None` when `name` is not a valid wire name.
fn want_of<'r, A: MapAddr>(
    name: &'r str,
    ttl: u32,
    addrs: &'r [A],
    flags: u16,
) -> Option<(NameKey, Want<'r, A>)> {
    let (key, words) = to_wire(name).and_then(|w| key_of(&w)).ok()?;
    let value = A::value(words, ttl, addrs, flags);
    let want = Want {
        name,
        ttl,
        addrs,
        flags,
        print: Print {
            owner: name_print(name),
            value: value_print(&value),
        },
        flagged: A::userspace_only(&value),
    };
    Some((key, want))
}

/// What to change in the map, and what stays out of it.
#[derive(Debug)]
pub struct Plan<'r, A> {
    /// The wanted content of the keys looked at (every key for [`plan`]).
    pub desired: HashMap<NameKey, Want<'r, A>>,
    /// Keys to add, in name order.
    pub inserts: Vec<NameKey>,
    /// Keys whose value (or owner) changes, in name order.
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

impl<A> Default for Plan<'_, A> {
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

impl<A> Plan<'_, A> {
    /// Files `key` as an insert, an update or nothing, comparing what `desired` wants under it
    /// with what the map holds (`have`).
    fn classify(&mut self, key: NameKey, have: Option<&Print>) {
        let Some(want) = self.desired.get(&key) else {
            return;
        };
        if want.flagged {
            self.flagged += 1;
        }
        match have {
            None => self.inserts.push(key),
            Some(have) if *have != want.print => self.updates.push(key),
            Some(_) => {}
        }
    }
}

/// Plans the changes that make the map equal to `records`, given what was `written` before.
///
/// Names without addresses are left out (the kernel passes them; userspace answers NODATA).
/// When two names share a key, the one already in the map keeps it; otherwise the first in
/// name order does. The other is left to userspace and counted.
pub fn plan<'r, A: MapAddr>(
    written: &Written,
    records: &'r BTreeMap<String, (u32, Vec<A>)>,
) -> Plan<'r, A> {
    plan_with(written, records, |_| 0)
}

/// [`plan`] with `flags(name)` added to each name's value.
pub fn plan_with<'r, A: MapAddr>(
    written: &Written,
    records: &'r BTreeMap<String, (u32, Vec<A>)>,
    flags: impl Fn(&str) -> u16,
) -> Plan<'r, A> {
    let mut p = Plan::default();
    // Keys in the order of their first name, so that inserts follow name order.
    let mut order = Vec::new();
    for (name, (ttl, addrs)) in records {
        if addrs.is_empty() {
            continue;
        }
        let Some((key, want)) = want_of(name, *ttl, addrs, flags(name)) else {
            p.invalid += 1;
            continue;
        };
        match p.desired.entry(key) {
            Entry::Vacant(slot) => {
                order.push(key);
                slot.insert(want);
            }
            Entry::Occupied(mut slot) => {
                p.collisions += 1;
                if written.get(&key).map(|w| w.owner) == Some(want.print.owner) {
                    slot.insert(want);
                }
            }
        }
    }
    for key in order {
        p.classify(key, written.get(&key));
    }
    p.removes = written
        .keys()
        .filter(|k| !p.desired.contains_key(k))
        .copied()
        .collect();
    p
}

/// One listed name of [`plan_names`] and what it wants.
struct Listed<'r, A> {
    owner: u64,
    /// `None`: the name must not be in the map.
    want: Option<Want<'r, A>>,
}

/// Plans the changes for the listed `names` only, given what was `written` before: each name
/// whose records (`records.get(name)`, none or no address: not in the map) differ from what
/// its key holds is inserted, updated or deleted. Costs O(names), whatever the map's size.
///
/// The collision rule is the one of [`plan`] among the names looked at: a key held by a name
/// that is not listed stays as it is (the listed names wanting it are counted as collisions);
/// a key whose listed owner keeps records stays its; a key whose listed owner lost its records
/// goes to the first listed name wanting it, else is deleted. A name that is not listed and
/// was kept out by a collision with a deleted owner stays out until the next [`plan`] (full
/// sync) or until it is listed itself.
///
/// The counters (`flagged`, `collisions`, `invalid`) are about the listed names only.
pub fn plan_names<'r, 'n, A: MapAddr>(
    written: &Written,
    records: &'r BTreeMap<String, (u32, Vec<A>)>,
    names: impl IntoIterator<Item = &'n str>,
) -> Plan<'r, A> {
    plan_names_with(written, records, names, |_| 0)
}

/// [`plan_names`] with `flags(name)` added to each name's value.
pub fn plan_names_with<'r, 'n, A: MapAddr>(
    written: &Written,
    records: &'r BTreeMap<String, (u32, Vec<A>)>,
    names: impl IntoIterator<Item = &'n str>,
    flags: impl Fn(&str) -> u16,
) -> Plan<'r, A> {
    let mut p = Plan::default();
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    // Listed names by key, each group in name order; keys in the order of their first name.
    let mut groups: HashMap<NameKey, Vec<Listed<'r, A>>> = HashMap::new();
    let mut order = Vec::new();
    for name in names {
        let wanted = records
            .get_key_value(name)
            .filter(|(_, (_, addrs))| !addrs.is_empty());
        let (key, listed) = match wanted {
            Some((name, (ttl, addrs))) => {
                let Some((key, want)) = want_of(name, *ttl, addrs, flags(name)) else {
                    p.invalid += 1;
                    continue;
                };
                let owner = want.print.owner;
                let want = Some(want);
                (key, Listed { owner, want })
            }
            None => {
                // Not a wire name: it can never have been written.
                let Ok((key, _)) = to_wire(name).and_then(|w| key_of(&w)) else {
                    continue;
                };
                let owner = name_print(name);
                (key, Listed { owner, want: None })
            }
        };
        groups
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(listed);
    }
    for key in order {
        let Some(group) = groups.remove(&key) else {
            continue;
        };
        let have = written.get(&key);
        let wanting = group.iter().filter(|l| l.want.is_some()).count();
        let holder = have.and_then(|h| group.iter().position(|l| l.owner == h.owner));
        if have.is_some() && holder.is_none() {
            // Held by a name that is not listed: it stays.
            p.collisions += wanting;
            continue;
        }
        let keeper = holder
            .filter(|&i| group[i].want.is_some())
            .or_else(|| group.iter().position(|l| l.want.is_some()));
        match keeper {
            Some(i) => {
                p.collisions += wanting - 1;
                let mut group = group;
                if let Some(want) = group.swap_remove(i).want {
                    p.desired.insert(key, want);
                    p.classify(key, have);
                }
            }
            None if have.is_some() => p.removes.push(key),
            None => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    type AMap = BTreeMap<String, (u32, Vec<Ipv4Addr>)>;

    fn records(entries: &[(&str, u32, &[[u8; 4]])]) -> AMap {
        entries
            .iter()
            .map(|(n, ttl, a)| {
                let addrs = a.iter().map(|o| Ipv4Addr::from(*o)).collect();
                (n.to_string(), (*ttl, addrs))
            })
            .collect()
    }

    fn apply<A>(written: &mut Written, p: &Plan<A>) {
        for k in &p.removes {
            written.remove(k);
        }
        for k in p.inserts.iter().chain(&p.updates) {
            written.insert(*k, p.desired[k].print);
        }
    }

    fn key(name: &str) -> NameKey {
        to_wire(name).and_then(|w| key_of(&w)).expect("key").0
    }

    fn counts<A>(p: &Plan<A>) -> (usize, usize, usize) {
        (p.inserts.len(), p.updates.len(), p.removes.len())
    }

    /// The owner fingerprints in `written`, as a sorted list of names among `names`.
    fn owners(written: &Written, names: &[&str]) -> Vec<String> {
        let mut got: Vec<String> = names
            .iter()
            .filter(|n| written.values().any(|w| w.owner == name_print(n)))
            .map(|n| n.to_string())
            .collect();
        got.sort();
        got
    }

    #[test]
    fn a_written_entry_is_32_bytes() {
        // Key and fingerprints; hashbrown adds one control byte per slot.
        assert_eq!(std::mem::size_of::<(NameKey, Print)>(), 32);
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let mut written = Written::new();
        let r1 = records(&[
            ("a.svc.", 5, &[[10, 0, 0, 1]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
            ("c.svc.", 5, &[]),
            ("bad..", 5, &[[10, 0, 0, 3]]),
        ]);
        let p = plan(&written, &r1);
        assert_eq!(counts(&p), (2, 0, 0));
        assert_eq!((p.invalid, p.collisions, p.flagged), (1, 0, 0));
        apply(&mut written, &p);
        assert_eq!(written.len(), 2);

        let p = plan(&written, &r1);
        assert_eq!(counts(&p), (0, 0, 0));

        let r2 = records(&[
            ("a.svc.", 7, &[[10, 0, 0, 1]]),
            ("d.svc.", 5, &[[10, 0, 0, 4]]),
        ]);
        let p = plan(&written, &r2);
        assert_eq!(counts(&p), (1, 1, 1));
        apply(&mut written, &p);
        let all = ["a.svc.", "b.svc.", "c.svc.", "d.svc."];
        assert_eq!(owners(&written, &all), ["a.svc.", "d.svc."]);
    }

    #[test]
    fn fingerprints_see_every_change_of_the_value() {
        let base = records(&[("a.svc.", 5, &[[10, 0, 0, 1], [10, 0, 0, 2]])]);
        let mut written = Written::new();
        let p = plan(&written, &base);
        apply(&mut written, &p);
        let many: Vec<[u8; 4]> = (0..40u8).map(|i| [10, 0, 1, i]).collect();
        let cases: [(&str, AMap); 5] = [
            ("same records", base.clone()),
            (
                "ttl",
                records(&[("a.svc.", 6, &[[10, 0, 0, 1], [10, 0, 0, 2]])]),
            ),
            (
                "order",
                records(&[("a.svc.", 5, &[[10, 0, 0, 2], [10, 0, 0, 1]])]),
            ),
            (
                "one address less",
                records(&[("a.svc.", 5, &[[10, 0, 0, 1]])]),
            ),
            ("too many: flagged", records(&[("a.svc.", 5, &many)])),
        ];
        for (what, recs) in cases {
            let p = plan(&written, &recs);
            let want = usize::from(what != "same records");
            assert_eq!(counts(&p), (0, want, 0), "{what}");
            let value = p.desired[&key("a.svc.")].value().expect("value");
            assert_eq!(
                value_print(&value),
                p.desired[&key("a.svc.")].print.value,
                "{what}: the value built again is the one planned"
            );
        }
        // Same key, same value bytes (the kernel stores the lower-cased name), another owner.
        let twin = records(&[("A.svc.", 5, &[[10, 0, 0, 1], [10, 0, 0, 2]])]);
        let p = plan(&written, &twin);
        assert_eq!(counts(&p), (0, 1, 0), "a new owner is an update");
        assert_eq!(
            p.desired[&key("a.svc.")].print.value,
            written[&key("a.svc.")].value
        );
    }

    #[test]
    fn colliding_names_keep_the_stored_one() {
        let key_b = key("b.svc.");
        let (_, words_a) = key_of(b"\x01a\x03svc\x00").expect("key");
        let b = records(&[("b.svc.", 5, &[[10, 0, 0, 2]])]);
        let mut written = Written::new();
        let p = plan(&written, &b);
        apply(&mut written, &p);
        let stored_b = written[&key_b];
        // Same key for two names: "b.svc." and its upper-case twin (same key, same words).
        let both = records(&[
            ("B.svc.", 5, &[[10, 0, 0, 9]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
        ]);
        let p = plan(&written, &both);
        assert_eq!(p.collisions, 1);
        assert_eq!(
            p.desired[&key_b].name, "b.svc.",
            "the stored owner keeps the key"
        );
        assert_eq!(p.desired[&key_b].print, stored_b);
        assert_eq!(counts(&p), (0, 0, 0));

        // With nothing stored, the first name in order wins.
        let p = plan(&Written::new(), &both);
        assert_eq!(p.collisions, 1);
        assert_eq!(p.desired[&key_b].name, "B.svc.");

        // An entry under b's key written for another name ("a.svc.", as a real collision
        // would look) is replaced, not kept.
        let a_value = value_of(words_a, 5, &[Ipv4Addr::new(10, 0, 0, 1)]);
        written.insert(
            key_b,
            Print {
                owner: name_print("a.svc."),
                value: value_print(&a_value),
            },
        );
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
        let mut written = Written::new();
        let p = plan(&written, &r1);
        assert_eq!((p.inserts.len(), p.collisions, p.flagged), (3, 1, 1));
        apply(&mut written, &p);
        assert_eq!(written[&key("b.svc.")].owner, name_print("B.svc."));
        let mut r2 = r1.clone();
        r2.remove("a.svc.");
        r2.insert("b.svc.".to_string(), (9, vec![b]));
        let p = plan(&written, &r2);
        // "B.svc." keeps its key; "b.svc." changing does not touch it.
        assert_eq!(counts(&p), (0, 0, 1));
    }

    #[test]
    fn too_many_addresses_are_flagged() {
        let many: Vec<[u8; 4]> = (0..40u8).map(|i| [10, 0, 1, i]).collect();
        let big = records(&[("big.svc.", 5, &many)]);
        let p = plan(&Written::new(), &big);
        assert_eq!((p.flagged, p.inserts.len()), (1, 1));
    }

    #[test]
    fn inserts_follow_name_order() {
        let recs = records(&[
            ("c.svc.", 5, &[[10, 0, 0, 3]]),
            ("a.svc.", 5, &[[10, 0, 0, 1]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
        ]);
        let p = plan(&Written::new(), &recs);
        assert_eq!(p.inserts, [key("a.svc."), key("b.svc."), key("c.svc.")]);
        let p = plan_names(&Written::new(), &recs, ["c.svc.", "b.svc.", "a.svc."]);
        assert_eq!(p.inserts, [key("a.svc."), key("b.svc."), key("c.svc.")]);
    }

    #[test]
    fn listed_names_only() {
        let r1 = records(&[
            ("a.svc.", 5, &[[10, 0, 0, 1]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
            ("c.svc.", 5, &[[10, 0, 0, 3]]),
        ]);
        let mut written = Written::new();
        let p = plan(&written, &r1);
        apply(&mut written, &p);
        // a changes, b goes, c changes but is not listed, d comes, e was never there.
        let r2 = records(&[
            ("a.svc.", 9, &[[10, 0, 0, 1]]),
            ("c.svc.", 9, &[[10, 0, 0, 3]]),
            ("d.svc.", 5, &[[10, 0, 0, 4]]),
            ("e.svc.", 5, &[]),
        ]);
        let listed = [
            "a.svc.", "b.svc.", "d.svc.", "e.svc.", "f.svc.", "a.svc.", "bad..",
        ];
        let p = plan_names(&written, &r2, listed);
        assert_eq!(p.inserts, [key("d.svc.")]);
        assert_eq!(p.updates, [key("a.svc.")]);
        assert_eq!(p.removes, [key("b.svc.")]);
        assert_eq!((p.collisions, p.flagged, p.invalid), (0, 0, 0));
        let c_before = written[&key("c.svc.")];
        apply(&mut written, &p);
        assert_eq!(written[&key("c.svc.")], c_before, "c is not listed");
        // Listing nothing changes nothing; listing c catches up with it.
        assert_eq!(counts(&plan_names(&written, &r2, [])), (0, 0, 0));
        let p = plan_names(&written, &r2, ["c.svc."]);
        assert_eq!(counts(&p), (0, 1, 0));
        apply(&mut written, &p);
        assert_eq!(
            counts(&plan(&written, &r2)),
            (0, 0, 0),
            "same as a full sync"
        );
        // A listed name that is not a wire name is counted only when it has records.
        let bad = records(&[("bad..", 5, &[[10, 0, 0, 9]])]);
        assert_eq!(plan_names(&written, &bad, ["bad.."]).invalid, 1);
    }

    #[test]
    fn listed_names_follow_the_collision_rule() {
        // "B.svc." and "b.svc." share a key; "B.svc." holds it.
        let k = key("b.svc.");
        let both = records(&[
            ("B.svc.", 5, &[[10, 0, 0, 1]]),
            ("b.svc.", 5, &[[10, 0, 0, 2]]),
        ]);
        let mut written = Written::new();
        let p = plan(&written, &both);
        apply(&mut written, &p);
        let held = written[&k];
        assert_eq!(held.owner, name_print("B.svc."));

        // The holder is not listed: the listed twin is left out, whatever its records.
        let mut changed = both.clone();
        changed.insert("b.svc.".into(), (7, vec![Ipv4Addr::new(10, 0, 0, 7)]));
        let p = plan_names(&written, &changed, ["b.svc."]);
        assert_eq!((counts(&p), p.collisions), ((0, 0, 0), 1));
        // ... and losing its records does not delete the holder's key.
        let none = records(&[]);
        let p = plan_names(&written, &none, ["b.svc."]);
        assert_eq!((counts(&p), p.collisions), ((0, 0, 0), 0));

        // The holder is listed and keeps records: it keeps the key.
        let p = plan_names(&written, &changed, ["b.svc.", "B.svc."]);
        assert_eq!((counts(&p), p.collisions), ((0, 0, 0), 1));

        // The holder is listed and lost its records, the twin is listed: the twin takes over.
        let only_b = records(&[("b.svc.", 5, &[[10, 0, 0, 2]])]);
        let p = plan_names(&written, &only_b, ["B.svc.", "b.svc."]);
        assert_eq!((counts(&p), p.collisions), ((0, 1, 0), 0));
        assert_eq!(p.desired[&k].name, "b.svc.");

        // The holder is listed and lost its records, the twin is not listed: the key is
        // deleted and the twin stays out until a full sync (or until it is listed).
        let p = plan_names(&written, &only_b, ["B.svc."]);
        assert_eq!(p.removes, [k]);
        apply(&mut written, &p);
        assert_eq!(counts(&plan(&written, &only_b)), (1, 0, 0));

        // Nothing held, both listed: the first in name order wins, the other is counted.
        let p = plan_names(&Written::new(), &both, ["b.svc.", "B.svc."]);
        assert_eq!((p.inserts.clone(), p.collisions), (vec![k], 1));
        assert_eq!(p.desired[&k].name, "B.svc.");
    }

    #[test]
    fn listing_the_changed_names_gives_what_a_full_sync_gives() {
        // Record sets of growing and shrinking services; each step lists the names that
        // changed (as the watcher would) and the result must equal a full sync's.
        let step = |i: u32| -> AMap {
            (0..40u32)
                .filter(|n| (n + i) % 3 != 2)
                .map(|n| {
                    let addrs = (0..(n + i) % 4)
                        .map(|j| Ipv4Addr::new(10, 0, n as u8, j as u8))
                        .collect();
                    (format!("s{n}.ns.svc."), (5 + i % 2, addrs))
                })
                .collect()
        };
        let mut full = Written::new();
        let mut incremental = Written::new();
        let mut before = AMap::new();
        for i in 0..12 {
            let now = step(i);
            let changed: Vec<&str> = before
                .keys()
                .chain(now.keys())
                .filter(|n| before.get(*n) != now.get(*n))
                .map(String::as_str)
                .collect();
            let p = plan(&full, &now);
            apply(&mut full, &p);
            let p = plan_names(&incremental, &now, changed);
            apply(&mut incremental, &p);
            assert_eq!(incremental, full, "step {i}");
            before = now;
        }
        assert!(!full.is_empty());
    }
}
