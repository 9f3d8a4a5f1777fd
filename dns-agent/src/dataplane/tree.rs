//! Keeps `DNS_TREE` equal to the records' [`Records::kernel_tree`], and the apex's promise in
//! `DNS_SOA` (`FLAG_NEGATIVE`) true only while the whole tree is written: a node left out (a
//! full map, a hash collision) would make the kernel answer NXDOMAIN for names below it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aya::maps::{HashMap as BpfHashMap, MapData};
use dns_common::{
    records::NameKey,
    tree::{self, Node},
};

use super::{is_full, is_missing, names, DataplaneError};

/// `DNS_TREE` and what was written to it.
pub(super) struct Tree {
    map: BpfHashMap<MapData, NameKey, Node>,
    /// Name → (key, flags) of every node written.
    written: HashMap<String, (NameKey, u32)>,
    /// Key → name of every node written, to see a collision before writing over it.
    owners: HashMap<NameKey, String>,
    /// Nodes that could not be written (collision, full map, not a wire name): while any is
    /// left, the apex promises nothing. Tried again at every sync.
    missing: BTreeSet<String>,
}

/// What one tree sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeReport {
    pub written: usize,
    pub removed: usize,
    /// Nodes not in the map after the sync: the kernel answers no NXDOMAIN while any.
    pub missing: usize,
}

impl Tree {
    pub(super) fn new(map: BpfHashMap<MapData, NameKey, Node>) -> Self {
        Tree {
            map,
            written: HashMap::new(),
            owners: HashMap::new(),
            missing: BTreeSet::new(),
        }
    }

    /// Whether every node wanted is in the map.
    pub(super) fn whole(&self) -> bool {
        self.missing.is_empty()
    }

    /// Makes the map equal to `want` (name → flags).
    pub(super) fn sync(
        &mut self,
        want: &BTreeMap<String, u32>,
    ) -> Result<TreeReport, DataplaneError> {
        self.missing.retain(|n| want.contains_key(n));
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        let changes = gone
            .into_iter()
            .map(|n| (n, None))
            .chain(want.iter().map(|(n, f)| (n.clone(), Some(*f))));
        self.apply(changes)
    }

    /// Brings the listed nodes to what they should be now (`None`: not in the tree).
    pub(super) fn sync_nodes(
        &mut self,
        nodes: impl IntoIterator<Item = (String, Option<u32>)>,
    ) -> Result<TreeReport, DataplaneError> {
        self.apply(nodes)
    }

    fn apply(
        &mut self,
        nodes: impl IntoIterator<Item = (String, Option<u32>)>,
    ) -> Result<TreeReport, DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            name: tree::MAP_NAME,
            source,
        };
        let mut report = TreeReport::default();
        // Removals first: they make room and free keys.
        let (removes, writes): (Vec<_>, Vec<_>) =
            nodes.into_iter().partition(|(_, flags)| flags.is_none());
        for (name, _) in removes {
            self.missing.remove(&name);
            let Some((key, _)) = self.written.remove(&name) else {
                continue;
            };
            self.owners.remove(&key);
            match self.map.remove(&key) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(map_err(e)),
            }
            report.removed += 1;
        }
        for (name, flags) in writes {
            let Some(flags) = flags else { continue };
            if self.written.get(&name).is_some_and(|(_, f)| *f == flags) {
                continue;
            }
            let Ok((key, words)) = names::to_wire(&name).and_then(|w| names::key_of(&w)) else {
                self.missing.insert(name);
                continue;
            };
            if self.owners.get(&key).is_some_and(|owner| *owner != name) {
                self.missing.insert(name);
                continue;
            }
            let node = Node {
                name: words,
                flags,
                _pad: 0,
            };
            match self.map.insert(key, node, 0) {
                Ok(()) => {
                    self.missing.remove(&name);
                    self.owners.insert(key, name.clone());
                    self.written.insert(name, (key, flags));
                    report.written += 1;
                }
                Err(e) if is_full(&e) => {
                    self.missing.insert(name);
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        report.missing = self.missing.len();
        Ok(report)
    }
}
