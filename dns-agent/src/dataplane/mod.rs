//! The kernel fast path: loads the embedded eBPF object, attaches it, keeps its maps in sync.
//!
//! Nearly all `unsafe` code of the agent lives in this module (interface ioctls in `iface`);
//! the one other call is `malloc_trim` after a full rebuild (`app`).
//! Interfaces are attached with XDP (native, else generic) or, on veths, with TC ingress: an
//! XDP_TX on a veth only reaches a peer that has an XDP program itself, while the TC program
//! redirects the answer out of the interface the query came in on.

mod cache;
mod iface;
mod names;
mod sync;
mod tree;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, ProgramArray},
    programs::tc::SchedClassifierLinkId,
    programs::{tc, xdp::XdpLinkId, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf, EbpfError, EbpfLoader,
};
use dns_common::{
    config::{self, Config, MAX_SERVICE_IPV4, MAX_SERVICE_IPV6},
    records::{self, ARecords, AaaaRecords, NameKey, FLAG_NO_OTHER_TYPE},
    soa::{self, Soa},
    stats,
};

pub use cache::KernelAnswers;
pub use names::{to_wire, NameError};
pub use tree::TreeReport;

use crate::records::{AMap, AaaaMap, Records};

/// The eBPF object built from dns-ebpf by build.rs (empty when the toolchain was missing).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns-ebpf.o"));

/// Program names in the object.
pub mod programs {
    /// XDP answerer.
    pub const DNS_XDP: &str = "dns_xdp";
    /// TC ingress answerer.
    pub const DNS_TC: &str = "dns_tc";
    /// XDP bench baseline: swaps addresses and ports and sends the packet back.
    pub const REFLECT_XDP: &str = "reflect_xdp";
    /// TC twin of `REFLECT_XDP`.
    pub const REFLECT_TC: &str = "reflect_tc";
    /// XDP: the kernel cache (`DNS_CACHE`), tail-called by `dns_xdp` on a miss (slot 0 of
    /// `DNS_NEXT_XDP`).
    pub const DNS_CACHE_XDP: &str = "dns_cache_xdp";
    /// TC twin of `DNS_CACHE_XDP`, tail-called by `dns_tc` (slot 0 of `DNS_NEXT_TC`).
    pub const DNS_CACHE_TC: &str = "dns_cache_tc";
    /// The program array `dns_xdp` tail-calls through (one type per array).
    pub const NEXT_XDP_MAP: &str = "DNS_NEXT_XDP";
    /// The program array `dns_tc` tail-calls through.
    pub const NEXT_TC_MAP: &str = "DNS_NEXT_TC";
}

/// How to attach the kernel program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TC ingress on veths, XDP elsewhere (native, else generic).
    Auto,
    /// XDP everywhere (native, else generic).
    Xdp,
    /// TC ingress everywhere.
    Tc,
}

/// Which kernel program to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelProgram {
    /// Answers A and AAAA queries from `DNS_A` and `DNS_AAAA`.
    Answer,
    /// Bench baseline: only swaps addresses and ports of queries and sends them back.
    Reflect,
}

/// What to load and where to attach it.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    pub interfaces: Vec<String>,
    /// IPv4 and IPv6 service addresses (at most [`MAX_SERVICE_IPV4`] and [`MAX_SERVICE_IPV6`]).
    pub service_ips: Vec<IpAddr>,
    pub port: u16,
    pub mode: AttachMode,
    pub program: KernelProgram,
    /// Capacity of `DNS_A` and of `DNS_AAAA` (names each), set when the object is loaded; at
    /// least 1. [`records::CAPACITY`] is the object's own.
    pub map_entries: u32,
    /// Capacity of `DNS_CACHE` (cached answers), at least 1: the success capacity of the
    /// caches whose answers the kernel repeats. [`dns_common::cache::CAPACITY`] is the
    /// object's own.
    pub cache_entries: u32,
}

/// Why the kernel path failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "this binary carries no eBPF object (the eBPF toolchain was missing when it was built): \
         run `cargo xtask setup` and rebuild, or run with --no-kernel"
    )]
    NotBuilt,
    #[error("loading the eBPF object failed (are we root, with a BPF-enabled kernel?)")]
    Load(#[source] EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no program {0}: rebuild dns-ebpf")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}: rebuild dns-ebpf")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("interface {0} does not exist (check --attach)")]
    NoSuchInterface(String),
    #[error("attaching {program} to interface {iface} failed: {source}")]
    Attach {
        iface: String,
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "interface {0} is a veth: with --attach-mode xdp its answers would be lost (XDP_TX on a \
         veth only reaches a peer that runs an XDP program); use --attach-mode tc or auto"
    )]
    XdpOnVeth(String),
    #[error("{count} {family} service addresses given, the kernel path matches at most {max}")]
    TooManyServiceIps {
        family: &'static str,
        count: usize,
        max: usize,
    },
    #[error("the kernel maps need room for at least one name (--kernel-map-entries 0)")]
    NoMapEntries,
    #[error(
        "the kernel cache map {} needs room for at least one answer (capacity 0)",
        dns_common::cache::MAP_NAME
    )]
    NoCacheEntries,
}

/// What `sync_a` (or `sync_aaaa`, or their `_names` twins) changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub inserted: usize,
    pub updated: usize,
    pub removed: usize,
    /// Names the kernel passes to userspace: more than 32 addresses, a key (hash) collision
    /// with another name, not a valid wire name, or no room left in the map.
    pub userspace_only: usize,
    /// Of `userspace_only`: names left out of the map because another name has the same key.
    pub collisions: usize,
    /// Of `userspace_only`: names left out of the map because it is full. They are not
    /// remembered as written, so every later sync that looks at them tries again.
    pub full: usize,
}

impl SyncReport {
    /// One line for the log when names did not fit in `map` (of `capacity` names), naming the
    /// flag that makes room; `None` when everything fitted.
    pub fn full_warning(&self, map: &str, capacity: u32) -> Option<String> {
        (self.full > 0).then(|| {
            format!(
                "{map} is full ({capacity} entries): {} names are answered from userspace \
                 only; raise --kernel-map-entries",
                self.full
            )
        })
    }
}

/// One attachment, kept to detach it.
#[derive(Debug)]
enum Link {
    Xdp(&'static str, XdpLinkId),
    Tc(&'static str, SchedClassifierLinkId),
}

/// The loaded and attached kernel program.
pub struct Dataplane {
    ebpf: Ebpf,
    links: Vec<(String, Link)>,
    records: BpfHashMap<MapData, NameKey, ARecords>,
    aaaa: BpfHashMap<MapData, NameKey, AaaaRecords>,
    stats: PerCpuArray<MapData, u64>,
    soa: Array<MapData, Soa>,
    /// What `soa` holds, once written.
    soa_value: Option<Soa>,
    /// The zone `soa` holds the SOA of: names under it may be answered NODATA by the kernel.
    soa_zone: Option<NoDataZone>,
    /// `DNS_TREE`: the zone's upper levels, for NXDOMAIN.
    tree: tree::Tree,
    /// Whether the server's configuration lets the kernel answer negatively at all
    /// ([`Dataplane::set_negative_allowed`]).
    negative_allowed: bool,
    /// Capacity of `records` and of `aaaa` (names each).
    map_entries: u32,
    /// What `records` holds, as last written by `sync_a`/`sync_a_names`.
    written: sync::Written,
    /// What `aaaa` holds, as last written by `sync_aaaa`/`sync_aaaa_names`.
    written_aaaa: sync::Written,
    /// `DNS_CACHE`, shared with the caches that write to it.
    cache: Arc<KernelAnswers>,
    /// `DNS_NEXT_XDP` and `DNS_NEXT_TC`, held so that their slots stay (the kernel empties a
    /// program array when the last user-space reference to it goes).
    next: [ProgramArray<MapData>; 2],
}

impl Dataplane {
    /// Loads the embedded object, writes `DNS_CONFIG`, attaches to every interface. On any
    /// error, detaches whatever it already attached and returns an error naming the
    /// interface/address.
    pub fn start(cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        Self::start_with_object(EBPF_OBJECT, cfg)
    }

    /// [`Dataplane::start`] with another object (tests).
    pub fn start_with_object(object: &[u8], cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        if object.is_empty() {
            return Err(DataplaneError::NotBuilt);
        }
        let v4 = cfg.service_ips.iter().filter(|ip| ip.is_ipv4()).count();
        let v6 = cfg.service_ips.len() - v4;
        for (family, count, max) in [
            ("IPv4", v4, MAX_SERVICE_IPV4),
            ("IPv6", v6, MAX_SERVICE_IPV6),
        ] {
            if count > max {
                return Err(DataplaneError::TooManyServiceIps { family, count, max });
            }
        }
        if cfg.map_entries == 0 {
            return Err(DataplaneError::NoMapEntries);
        }
        if cfg.cache_entries == 0 {
            return Err(DataplaneError::NoCacheEntries);
        }
        for name in &cfg.interfaces {
            if iface::index(name).is_none() {
                return Err(DataplaneError::NoSuchInterface(name.clone()));
            }
            if cfg.mode == AttachMode::Xdp && iface::is_veth(name) {
                return Err(DataplaneError::XdpOnVeth(name.clone()));
            }
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(records::MAP_NAME, cfg.map_entries)
            .map_max_entries(records::AAAA_MAP_NAME, cfg.map_entries)
            .map_max_entries(dns_common::tree::MAP_NAME, cfg.map_entries)
            .map_max_entries(dns_common::cache::MAP_NAME, cfg.cache_entries)
            .load(object)
            .map_err(DataplaneError::Load)?;
        write_config(&mut ebpf, cfg)?;
        let records = take_map(&mut ebpf, records::MAP_NAME)?;
        let aaaa = take_map(&mut ebpf, records::AAAA_MAP_NAME)?;
        let stats = take_map(&mut ebpf, stats::MAP_NAME)?;
        let soa = take_map(&mut ebpf, soa::MAP_NAME)?;
        let tree = tree::Tree::new(take_map(&mut ebpf, dns_common::tree::MAP_NAME)?);
        let cache = Arc::new(KernelAnswers::new(
            take_map(&mut ebpf, dns_common::cache::MAP_NAME)?,
            cfg.cache_entries,
        ));
        let next = [
            take_map(&mut ebpf, programs::NEXT_XDP_MAP)?,
            take_map(&mut ebpf, programs::NEXT_TC_MAP)?,
        ];
        let mut dp = Dataplane {
            ebpf,
            links: Vec::new(),
            records,
            aaaa,
            stats,
            soa,
            soa_value: None,
            soa_zone: None,
            tree,
            negative_allowed: true,
            map_entries: cfg.map_entries,
            written: sync::Written::new(),
            written_aaaa: sync::Written::new(),
            cache,
            next,
        };
        if cfg.program == KernelProgram::Answer {
            dp.load_cache_programs()?;
        }
        // On error `dp` is dropped, which detaches what was attached so far.
        for name in &cfg.interfaces {
            dp.attach(name, cfg)?;
        }
        Ok(dp)
    }

    fn attach(&mut self, name: &str, cfg: &DataplaneConfig) -> Result<(), DataplaneError> {
        let use_tc = match cfg.mode {
            AttachMode::Tc => true,
            AttachMode::Xdp => false,
            AttachMode::Auto => iface::is_veth(name),
        };
        let link = if use_tc {
            let prog = match cfg.program {
                KernelProgram::Answer => programs::DNS_TC,
                KernelProgram::Reflect => programs::REFLECT_TC,
            };
            let p: &mut SchedClassifier = self.program(prog)?;
            // With TCX (Linux >= 6.6) no qdisc is needed; before, netlink attach needs clsact.
            // It may already be there: any real problem shows up in the attach below.
            let _ = tc::qdisc_add_clsact(name);
            let id = p
                .attach(name, TcAttachType::Ingress)
                .map_err(|source| attach_error(name, prog, source))?;
            Link::Tc(prog, id)
        } else {
            let prog = match cfg.program {
                KernelProgram::Answer => programs::DNS_XDP,
                KernelProgram::Reflect => programs::REFLECT_XDP,
            };
            let p: &mut Xdp = self.program(prog)?;
            let id = match p.attach(name, XdpMode::Driver) {
                Ok(id) => id,
                // No native XDP in this driver: the generic (skb) hook works everywhere.
                Err(_) => p
                    .attach(name, XdpMode::Skb)
                    .map_err(|source| attach_error(name, prog, source))?,
            };
            Link::Xdp(prog, id)
        };
        log::info!("kernel program {} attached to {name}", link_program(&link));
        self.links.push((name.to_string(), link));
        Ok(())
    }

    /// Loads the cache programs and puts them in `DNS_NEXT_XDP` and `DNS_NEXT_TC`, where the
    /// answerers tail-call them on a miss.
    fn load_cache_programs(&mut self) -> Result<(), DataplaneError> {
        let slots = [
            (0, programs::DNS_CACHE_XDP, programs::NEXT_XDP_MAP),
            (1, programs::DNS_CACHE_TC, programs::NEXT_TC_MAP),
        ];
        for (slot, name, map) in slots {
            self.program_fd(name)?;
            let fd = self
                .ebpf
                .program(name)
                .ok_or(DataplaneError::MissingProgram(name))?
                .fd()
                .map_err(|source| DataplaneError::Program { name, source })?
                .try_clone()
                .map_err(|e| DataplaneError::Program {
                    name,
                    source: ProgramError::IOError(e),
                })?;
            self.next[slot]
                .set(0, &fd, 0)
                .map_err(|source| DataplaneError::Map { name: map, source })?;
        }
        Ok(())
    }

    /// The descriptor of the program `name` (one of [`programs`]), loaded on first use: to run
    /// it on packets (`BPF_PROG_TEST_RUN`) against the maps this dataplane writes, attached or
    /// not.
    pub fn program_fd(
        &mut self,
        name: &'static str,
    ) -> Result<std::os::fd::BorrowedFd<'_>, DataplaneError> {
        if name == programs::DNS_TC
            || name == programs::REFLECT_TC
            || name == programs::DNS_CACHE_TC
        {
            self.program::<SchedClassifier>(name)?;
        } else {
            self.program::<Xdp>(name)?;
        }
        let prog = self
            .ebpf
            .program(name)
            .ok_or(DataplaneError::MissingProgram(name))?;
        let fd = prog
            .fd()
            .map_err(|source| DataplaneError::Program { name, source })?;
        Ok(std::os::fd::AsFd::as_fd(fd))
    }

    /// Whether the kernel rotates the addresses of its positive answers, one further per
    /// answer on each CPU (`config::FLAG_ROTATE`): on when the block that answers the zone runs
    /// `loadbalance`, which rotates them in userspace.
    pub fn set_rotation(&mut self, rotate: bool) -> Result<(), DataplaneError> {
        let map_err = |source| DataplaneError::Map {
            name: config::MAP_NAME,
            source,
        };
        let map = self
            .ebpf
            .map_mut(config::MAP_NAME)
            .ok_or(DataplaneError::MissingMap(config::MAP_NAME))?;
        let mut array: Array<&mut MapData, Config> = Array::try_from(map).map_err(map_err)?;
        let mut value = array.get(&0, 0).map_err(map_err)?;
        if rotate {
            value.flags |= config::FLAG_ROTATE;
        } else {
            value.flags &= !config::FLAG_ROTATE;
        }
        array.set(0, value, 0).map_err(map_err)
    }

    /// How many instructions the verifier went through to accept the program `name` (loaded
    /// on first use); `None` when the kernel does not say.
    pub fn verified_instructions(
        &mut self,
        name: &'static str,
    ) -> Result<Option<u32>, DataplaneError> {
        self.program_fd(name)?;
        let prog = self
            .ebpf
            .program(name)
            .ok_or(DataplaneError::MissingProgram(name))?;
        let info = prog
            .info()
            .map_err(|source| DataplaneError::Program { name, source })?;
        Ok(info.verified_instruction_count())
    }

    /// The program `name`, loaded into the kernel on first use.
    fn program<T>(&mut self, name: &'static str) -> Result<&mut T, DataplaneError>
    where
        T: Loadable,
        for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingProgram(name))?;
        let p: &mut T = prog
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })?;
        if !p.is_loaded() {
            p.load_program()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(p)
    }

    /// Makes `DNS_A` equal to `records` by diff (insert/update/delete only what changed).
    /// Names are lower-case FQDNs with a trailing dot ("web.default.svc.cluster.local.").
    ///
    /// Names that do not fit in a full map are left to userspace (`SyncReport::full`, logged
    /// as a warning) and tried again at the next sync; any other map error is returned.
    pub fn sync_a(&mut self, records: &AMap) -> Result<SyncReport, DataplaneError> {
        let plan = sync::plan(&self.written, records);
        self.apply_a(plan)
    }

    /// Brings the listed `names` of `DNS_A` in line with `records` and touches nothing else:
    /// each is inserted, updated or deleted (absent from `records` or without addresses) as
    /// [`Dataplane::sync_a`] would, at a cost that follows the number of names listed, not
    /// the size of the map. The report counts the listed names only.
    ///
    /// Collisions follow the rule of `sync_a` among the names listed; a key held by a name
    /// that is not listed is left alone. When a listed name that held a key loses its
    /// records and the name colliding with it is not listed, the key is deleted and that name
    /// stays userspace-only until the next `sync_a` (or until it is listed). So do names left
    /// out because the map was full.
    pub fn sync_a_names<'a>(
        &mut self,
        records: &AMap,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<SyncReport, DataplaneError> {
        let plan = sync::plan_names(&self.written, records, names);
        self.apply_a(plan)
    }

    /// Makes `DNS_AAAA` equal to `records` by diff, exactly as [`Dataplane::sync_a`] does for
    /// `DNS_A` (same names, same collision and size rules, its own map).
    pub fn sync_aaaa(&mut self, records: &AaaaMap) -> Result<SyncReport, DataplaneError> {
        let plan = sync::plan(&self.written_aaaa, records);
        self.apply_aaaa(plan)
    }

    /// [`Dataplane::sync_a_names`] for `DNS_AAAA`.
    pub fn sync_aaaa_names<'a>(
        &mut self,
        records: &AaaaMap,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<SyncReport, DataplaneError> {
        let plan = sync::plan_names(&self.written_aaaa, records, names);
        self.apply_aaaa(plan)
    }

    /// Writes the SOA of `zone` (lower-case, trailing dot) that the kernel's NODATA answers
    /// carry: `ttl` for the record, then SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM. Written
    /// again whenever the serial moves; until first written the kernel sends no NODATA. The
    /// NXDOMAIN promise (`sync_tree`) is kept while the zone stays the same.
    pub fn set_soa(
        &mut self,
        zone: &str,
        ttl: u32,
        numbers: [u32; 5],
    ) -> Result<(), DataplaneError> {
        let invalid = || DataplaneError::Map {
            name: soa::MAP_NAME,
            source: MapError::InvalidName {
                name: zone.to_owned(),
            },
        };
        let wire = to_wire(zone).map_err(|_| invalid())?;
        let (_, words) = names::key_of(&wire).map_err(|_| invalid())?;
        let same_zone = self.soa_value.is_some_and(|v| v.zone == words);
        let value = Soa {
            zone_len: wire.len() as u32,
            ttl_be: ttl.to_be(),
            numbers_be: numbers.map(u32::to_be),
            flags: if same_zone {
                self.soa_value.map_or(0, |v| v.flags)
            } else {
                0
            },
            zone_labels: zone
                .trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty())
                .count() as u32,
            generation: self.soa_value.map_or(0, |v| v.generation),
            zone: words,
        };
        self.write_soa(value)?;
        self.soa_zone = Some(NoDataZone::new(zone));
        Ok(())
    }

    fn write_soa(&mut self, value: Soa) -> Result<(), DataplaneError> {
        self.soa
            .set(0, value, 0)
            .map_err(|source| DataplaneError::Map {
                name: soa::MAP_NAME,
                source,
            })?;
        self.soa_value = Some(value);
        Ok(())
    }

    /// Sets the SOA's `FLAG_*` bits (after [`Dataplane::set_soa`]).
    fn set_soa_flags(&mut self, flags: u32) -> Result<(), DataplaneError> {
        match self.soa_value {
            Some(v) if v.flags != flags => self.write_soa(Soa { flags, ..v }),
            _ => Ok(()),
        }
    }

    /// Writes `records` to the kernel: the SOA of their zone ([`Dataplane::set_soa_of`]), then
    /// every A and AAAA name ([`Dataplane::sync_addresses`]), then the zone's tree
    /// ([`Dataplane::sync_tree`]).
    pub fn sync_records(
        &mut self,
        records: &Records,
    ) -> Result<(SyncReport, SyncReport), DataplaneError> {
        self.set_soa_of(records)?;
        let reports = self.sync_addresses(&records.a_map(), &records.aaaa_map())?;
        self.sync_tree(records)?;
        Ok(reports)
    }

    /// Makes `DNS_TREE` equal to `records`' [`Records::kernel_tree`] and lets the kernel answer
    /// NXDOMAIN (`FLAG_NEGATIVE`) only when the records allow it
    /// ([`Records::negative_complete`]) and the whole tree is in the map. Call after
    /// [`Dataplane::set_soa_of`] with the same records.
    pub fn sync_tree(&mut self, records: &Records) -> Result<TreeReport, DataplaneError> {
        self.sync_tree_with(records, |tree| tree.sync(&records.kernel_tree()))
    }

    /// [`Dataplane::sync_tree`] for the tree nodes above the listed names only (the names
    /// of a change, as for [`Dataplane::sync_addresses_names`]).
    pub fn sync_tree_names<'a>(
        &mut self,
        records: &Records,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<TreeReport, DataplaneError> {
        let nodes: std::collections::BTreeSet<&str> = names
            .into_iter()
            .flat_map(|n| records.tree_nodes_of(n))
            .collect();
        self.sync_tree_with(records, |tree| {
            tree.sync_nodes(
                nodes
                    .into_iter()
                    .map(|n| (n.to_owned(), records.kernel_tree_node(n))),
            )
        })
    }

    /// Whether the kernel may answer negatively from `DNS_TREE` at all: false when the server
    /// block that answers the zone could answer a name the records do not hold (see
    /// `config::Plan::kernel_may_deny`). Takes effect at the next tree sync.
    pub fn set_negative_allowed(&mut self, allowed: bool) {
        self.negative_allowed = allowed;
    }

    fn sync_tree_with(
        &mut self,
        records: &Records,
        sync: impl FnOnce(&mut tree::Tree) -> Result<TreeReport, DataplaneError>,
    ) -> Result<TreeReport, DataplaneError> {
        let allowed = self.negative_allowed && records.negative_complete();
        let flags = |whole: bool| {
            if allowed && whole {
                soa::FLAG_NEGATIVE
                    | if records.apex_empty() {
                        soa::FLAG_APEX_EMPTY
                    } else {
                        0
                    }
            } else {
                0
            }
        };
        // The promise is withdrawn before the tree changes and given again after.
        let before = self.soa_value.map_or(0, |v| v.flags);
        self.set_soa_flags(before & flags(self.tree.whole()))?;
        let report = sync(&mut self.tree)?;
        if report.missing > 0 {
            log::warn!(
                "{}: {} names of the zone could not be written (map full or a hash                  collision): the kernel answers no NXDOMAIN until they are; raise                  --kernel-map-entries",
                dns_common::tree::MAP_NAME,
                report.missing
            );
        }
        self.set_soa_flags(flags(self.tree.whole()))?;
        // Every negative answer the kernel remembers was proven before this change: forgotten.
        if let Some(v) = self.soa_value {
            self.write_soa(Soa {
                generation: v.generation.wrapping_add(1),
                ..v
            })?;
        }
        Ok(report)
    }

    /// [`Dataplane::set_soa`] with the SOA userspace answers for `records`' zone.
    pub fn set_soa_of(&mut self, records: &Records) -> Result<(), DataplaneError> {
        let numbers = [
            records.serial,
            crate::records::SOA_REFRESH,
            crate::records::SOA_RETRY,
            crate::records::SOA_EXPIRE,
            records.ttl,
        ];
        self.set_soa(&records.zone, records.soa_ttl(), numbers)
    }

    /// Makes `DNS_A` and `DNS_AAAA` equal to the records' A and AAAA names (as
    /// [`Dataplane::sync_a`] and [`Dataplane::sync_aaaa`]), each value flagged
    /// `FLAG_NO_OTHER_TYPE` when the name has no address of the other type and lies in the
    /// zone of [`Dataplane::set_soa`]: the kernel then answers that type NODATA.
    pub fn sync_addresses(
        &mut self,
        a: &AMap,
        aaaa: &AaaaMap,
    ) -> Result<(SyncReport, SyncReport), DataplaneError> {
        let zone = self.soa_zone.clone();
        let plan = sync::plan_with(&self.written, a, |n| no_other(zone.as_ref(), n, aaaa));
        let a_report = self.apply_a(plan)?;
        let plan = sync::plan_with(&self.written_aaaa, aaaa, |n| no_other(zone.as_ref(), n, a));
        Ok((a_report, self.apply_aaaa(plan)?))
    }

    /// [`Dataplane::sync_addresses`] for the listed `names` only (as
    /// [`Dataplane::sync_a_names`]); `a` and `aaaa` must hold every listed name's addresses.
    pub fn sync_addresses_names<'a>(
        &mut self,
        a: &AMap,
        aaaa: &AaaaMap,
        names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(SyncReport, SyncReport), DataplaneError> {
        let zone = self.soa_zone.clone();
        let plan = sync::plan_names_with(&self.written, a, names.clone(), |n| {
            no_other(zone.as_ref(), n, aaaa)
        });
        let a_report = self.apply_a(plan)?;
        let plan = sync::plan_names_with(&self.written_aaaa, aaaa, names, |n| {
            no_other(zone.as_ref(), n, a)
        });
        Ok((a_report, self.apply_aaaa(plan)?))
    }

    fn apply_a(&mut self, plan: sync::Plan<'_, Ipv4Addr>) -> Result<SyncReport, DataplaneError> {
        let report = apply(
            &mut self.records,
            &mut self.written,
            plan,
            records::MAP_NAME,
        )?;
        warn_if_full(&report, records::MAP_NAME, self.map_entries);
        Ok(report)
    }

    fn apply_aaaa(&mut self, plan: sync::Plan<'_, Ipv6Addr>) -> Result<SyncReport, DataplaneError> {
        let report = apply(
            &mut self.aaaa,
            &mut self.written_aaaa,
            plan,
            records::AAAA_MAP_NAME,
        )?;
        warn_if_full(&report, records::AAAA_MAP_NAME, self.map_entries);
        Ok(report)
    }

    /// `DNS_CACHE`: where the caches write the answers the kernel repeats.
    pub fn kernel_cache(&self) -> Arc<KernelAnswers> {
        Arc::clone(&self.cache)
    }

    /// Capacity of `DNS_A` and of `DNS_AAAA` (names each), as loaded.
    pub fn map_entries(&self) -> u32 {
        self.map_entries
    }

    /// Per-reason counters summed over CPUs, indexed by `dns_common::stats` constants.
    pub fn stats(&self) -> Result<[u64; stats::COUNT as usize], DataplaneError> {
        let mut out = [0u64; stats::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = self
                .stats
                .get(&(i as u32), 0)
                .map_err(|source| DataplaneError::Map {
                    name: stats::MAP_NAME,
                    source,
                })?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    /// Where the program is attached, and how ("xdp" or "tc").
    pub fn attachments(&self) -> Vec<(String, &'static str)> {
        self.links
            .iter()
            .map(|(name, link)| {
                let kind = match link {
                    Link::Xdp(..) => "xdp",
                    Link::Tc(..) => "tc",
                };
                (name.clone(), kind)
            })
            .collect()
    }
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("attachments", &self.attachments())
            .field("names", &self.written.len())
            .field("aaaa_names", &self.written_aaaa.len())
            .finish()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        for (name, link) in self.links.drain(..).rev() {
            let res = match link {
                Link::Xdp(prog, id) => self
                    .ebpf
                    .program_mut(prog)
                    .and_then(|p| <&mut Xdp>::try_from(p).ok())
                    .map(|p| p.detach(id)),
                Link::Tc(prog, id) => self
                    .ebpf
                    .program_mut(prog)
                    .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
                    .map(|p| p.detach(id)),
            };
            match res {
                Some(Ok(())) => log::info!("kernel program detached from {name}"),
                // Dropping `ebpf` right after closes the link anyway.
                Some(Err(e)) => log::warn!("detaching from {name}: {e}"),
                None => log::warn!("detaching from {name}: program gone"),
            }
        }
    }
}

/// Program types this module attaches.
trait Loadable {
    fn is_loaded(&self) -> bool;
    fn load_program(&mut self) -> Result<(), ProgramError>;
}

impl Loadable for Xdp {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl Loadable for SchedClassifier {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

fn link_program(link: &Link) -> &'static str {
    match link {
        Link::Xdp(p, _) | Link::Tc(p, _) => p,
    }
}

fn attach_error(iface: &str, program: &'static str, source: ProgramError) -> DataplaneError {
    DataplaneError::Attach {
        iface: iface.to_string(),
        program,
        source,
    }
}

fn warn_if_full(report: &SyncReport, map: &str, capacity: u32) {
    if let Some(line) = report.full_warning(map, capacity) {
        log::warn!("{line}");
    }
}

/// Whether an update that adds a key failed because the map has no room left: a full
/// `BPF_F_NO_PREALLOC` hash map answers E2BIG (kernel 6.18, tried); ENOSPC and ENOMEM are
/// taken the same way.
fn is_full(e: &MapError) -> bool {
    matches!(
        e,
        MapError::SyscallError(aya::sys::SyscallError { io_error, .. })
            if matches!(io_error.raw_os_error(), Some(libc::E2BIG | libc::ENOSPC | libc::ENOMEM))
    )
}

/// Whether a delete failed only because the key was not there.
fn is_missing(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(aya::sys::SyscallError { io_error, .. }) => {
            io_error.raw_os_error() == Some(libc::ENOENT)
        }
        _ => false,
    }
}

/// Writes `plan` to `map` and records what was written in `written`: deletes first (they make
/// room), then updates, then inserts in name order. Once an insert finds the map full, the
/// remaining inserts are counted as full without a syscall each (nothing else adds keys).
fn apply<A: sync::MapAddr>(
    map: &mut BpfHashMap<MapData, NameKey, A::Value>,
    written: &mut sync::Written,
    plan: sync::Plan<'_, A>,
    name: &'static str,
) -> Result<SyncReport, DataplaneError>
where
    A::Value: aya::Pod,
{
    let map_err = |source| DataplaneError::Map { name, source };
    for key in &plan.removes {
        match map.remove(key) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(map_err(e)),
        }
        written.remove(key);
    }
    let mut updated = 0;
    for key in &plan.updates {
        let Some((want, value)) = plan.desired.get(key).and_then(|w| Some((w, w.value()?))) else {
            continue;
        };
        map.insert(key, value, 0).map_err(map_err)?;
        written.insert(*key, want.print);
        updated += 1;
    }
    let (mut inserted, mut full) = (0, 0);
    for key in &plan.inserts {
        let Some((want, value)) = plan.desired.get(key).and_then(|w| Some((w, w.value()?))) else {
            continue;
        };
        if full > 0 {
            full += 1;
            continue;
        }
        match map.insert(key, value, 0) {
            Ok(()) => {
                written.insert(*key, want.print);
                inserted += 1;
            }
            Err(e) if is_full(&e) => full += 1,
            Err(e) => return Err(map_err(e)),
        }
    }
    Ok(SyncReport {
        inserted,
        updated,
        removed: plan.removes.len(),
        userspace_only: plan.flagged + plan.collisions + plan.invalid + full,
        collisions: plan.collisions,
        full,
    })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(map).map_err(|source| DataplaneError::Map { name, source })
}

/// The zone of the kernel's NODATA answers and the two subtrees left out of them: names under
/// `dns.<zone>` or `hostmaster.<zone>`, into which userspace's encoder points the SOA's MNAME
/// (`ns.dns.<zone>`) or RNAME (`hostmaster.<zone>`) where the kernel's record always points at
/// the zone; userspace answers those.
#[derive(Clone, Debug)]
struct NoDataZone {
    zone: String,
    dns: String,
    hostmaster: String,
}

impl NoDataZone {
    /// For `zone`, lower-case with a trailing dot.
    fn new(zone: &str) -> Self {
        NoDataZone {
            zone: zone.to_owned(),
            dns: format!("dns.{zone}"),
            hostmaster: format!("hostmaster.{zone}"),
        }
    }

    fn holds(&self, name: &str) -> bool {
        use crate::records::in_zone;
        in_zone(name, &self.zone) && !in_zone(name, &self.dns) && !in_zone(name, &self.hostmaster)
    }
}

/// `FLAG_NO_OTHER_TYPE` for `name` when `zone` holds it and it has no address in `other`.
fn no_other<A>(
    zone: Option<&NoDataZone>,
    name: &str,
    other: &std::collections::BTreeMap<String, (u32, Vec<A>)>,
) -> u16 {
    let has_other = other.get(name).is_some_and(|(_, addrs)| !addrs.is_empty());
    if zone.is_some_and(|z| z.holds(name)) && !has_other {
        FLAG_NO_OTHER_TYPE
    } else {
        0
    }
}

/// The `DNS_CONFIG` entry for these addresses and port: the IPv4 and the IPv6 ones each in the
/// order given; addresses past a family's room are left out (`start` refuses them before).
pub fn config_value(service_ips: &[IpAddr], port: u16) -> Config {
    let mut c = Config {
        port_be: port.to_be(),
        ..Config::default()
    };
    for ip in service_ips {
        match ip {
            IpAddr::V4(ip) => {
                if let Some(slot) = c.service_ipv4_be.get_mut(c.ipv4_count as usize) {
                    *slot = u32::from_ne_bytes(ip.octets());
                    c.ipv4_count += 1;
                }
            }
            IpAddr::V6(ip) => {
                if let Some(slot) = c.service_ipv6_be.get_mut(c.ipv6_count as usize) {
                    *slot = Config::ipv6_words(ip.octets());
                    c.ipv6_count += 1;
                }
            }
        }
    }
    c
}

fn write_config(ebpf: &mut Ebpf, cfg: &DataplaneConfig) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(config::MAP_NAME)
        .ok_or(DataplaneError::MissingMap(config::MAP_NAME))?;
    let mut array: Array<&mut MapData, Config> =
        Array::try_from(map).map_err(|source| DataplaneError::Map {
            name: config::MAP_NAME,
            source,
        })?;
    array
        .set(0, config_value(&cfg.service_ips, cfg.port), 0)
        .map_err(|source| DataplaneError::Map {
            name: config::MAP_NAME,
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn cfg(interfaces: &[&str], mode: AttachMode) -> DataplaneConfig {
        DataplaneConfig {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            service_ips: vec![Ipv4Addr::new(127, 0, 0, 53).into()],
            port: 53,
            mode,
            program: KernelProgram::Answer,
            map_entries: records::CAPACITY,
            cache_entries: dns_common::cache::CAPACITY,
        }
    }

    #[test]
    fn config_value_holds_both_families_in_order() {
        let ips: Vec<IpAddr> = ["10.96.0.10", "fd00:96::a", "169.254.20.10", "::1"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        let c = config_value(&ips, 53);
        assert_eq!(c.port_be, 53u16.to_be());
        assert_eq!((c.ipv4_count, c.ipv6_count), (2, 2));
        assert_eq!(c.service_ipv4_be[0], u32::from_ne_bytes([10, 96, 0, 10]));
        assert_eq!(c.service_ipv4_be[1], u32::from_ne_bytes([169, 254, 20, 10]));
        // The words are the address's bytes as they lie in the packet.
        let words = c.service_ipv6_be[0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(bytes, "fd00:96::a".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            c.service_ipv6_be[1],
            Config::ipv6_words(Ipv6Addr::LOCALHOST.octets())
        );
        assert_eq!(c.service_ipv6_be[2], [0, 0]);
        // No addresses: nothing matches (both counts 0), as the all-zero value at load.
        let none = config_value(&[], 53);
        assert_eq!((none.ipv4_count, none.ipv6_count), (0, 0));
        // Past a family's room, the rest of it is left out.
        let many: Vec<IpAddr> = (1..=10u16)
            .map(|i| IpAddr::from(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)))
            .collect();
        assert_eq!(
            config_value(&many, 53).ipv6_count as usize,
            MAX_SERVICE_IPV6
        );
    }

    /// Moves this test's thread into a network namespace of its own, so that attaching to its
    /// `lo` cannot disturb anything else running on the machine. Needs root.
    fn private_netns() {
        // SAFETY: unshare only changes this thread's namespace membership.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
    }

    // Needs root and the built object, like every user of the kernel path.
    #[test]
    fn starts_syncs_and_detaches_on_loopback() {
        assert!(
            !EBPF_OBJECT.is_empty(),
            "build the eBPF object (cargo xtask setup)"
        );
        private_netns();
        let mut dp = Dataplane::start(&cfg(&["lo"], AttachMode::Auto)).expect("start on lo");
        assert_eq!(dp.attachments(), vec![("lo".to_string(), "xdp")]);
        let mut recs = BTreeMap::new();
        recs.insert(
            "web.default.svc.cluster.local.".to_string(),
            (5, vec![Ipv4Addr::new(10, 0, 0, 1)]),
        );
        recs.insert("x.svc.".to_string(), (5, vec![]));
        let r = dp.sync_a(&recs).expect("sync");
        assert_eq!(
            (r.inserted, r.updated, r.removed, r.userspace_only),
            (1, 0, 0, 0)
        );
        assert_eq!(dp.records.keys().count(), 1);
        recs.clear();
        let r = dp.sync_a(&recs).expect("sync");
        assert_eq!((r.inserted, r.removed), (0, 1));
        assert_eq!(dp.records.keys().count(), 0);
        let mut six = BTreeMap::new();
        six.insert(
            "web.default.svc.cluster.local.".to_string(),
            (5, vec!["fd00:10:96::a".parse::<Ipv6Addr>().expect("addr")]),
        );
        let r = dp.sync_aaaa(&six).expect("sync aaaa");
        assert_eq!((r.inserted, r.updated, r.removed), (1, 0, 0));
        assert_eq!(dp.aaaa.keys().count(), 1);
        assert_eq!(dp.records.keys().count(), 0, "AAAA stays out of DNS_A");
        six.clear();
        let r = dp.sync_aaaa(&six).expect("sync aaaa");
        assert_eq!((r.inserted, r.removed), (0, 1));
        assert_eq!(dp.aaaa.keys().count(), 0);
        assert_eq!(dp.stats().expect("stats").len(), stats::COUNT as usize);
        drop(dp);
        // Detached: a second start on the same interface attaches again.
        let dp = Dataplane::start(&cfg(&["lo"], AttachMode::Tc)).expect("start again");
        assert_eq!(dp.attachments(), vec![("lo".to_string(), "tc")]);
    }

    fn a_records(entries: &[(&str, u32, [u8; 4])]) -> AMap {
        entries
            .iter()
            .map(|(n, ttl, a)| (n.to_string(), (*ttl, vec![Ipv4Addr::from(*a)])))
            .collect()
    }

    /// What `DNS_A` holds for `name`: its TTL and addresses, `None` when it is not there.
    fn read_a(dp: &Dataplane, name: &str) -> Option<(u32, Vec<Ipv4Addr>)> {
        let (key, words) = to_wire(name)
            .and_then(|w| names::key_of(&w))
            .expect("valid name");
        match dp.records.get(&key, 0) {
            Ok(v) => {
                assert_eq!(v.name, words, "{name}: the stored name is the one asked");
                let addrs = v.addrs_be[..v.count as usize]
                    .iter()
                    .map(|a| Ipv4Addr::from(a.to_ne_bytes()))
                    .collect();
                Some((v.ttl, addrs))
            }
            Err(MapError::KeyNotFound) => None,
            Err(e) => panic!("reading {name} from DNS_A: {e}"),
        }
    }

    #[test]
    fn a_full_map_leaves_names_to_userspace() {
        private_netns();
        let small = DataplaneConfig {
            map_entries: 4,
            ..cfg(&["lo"], AttachMode::Auto)
        };
        let mut dp = Dataplane::start(&small).expect("start with 4 entries");
        assert_eq!(dp.map_entries(), 4);
        let names = ["a.svc.", "b.svc.", "c.svc.", "d.svc.", "e.svc.", "f.svc."];
        let mut recs = AMap::new();
        for (i, n) in names.iter().enumerate() {
            recs.insert(
                n.to_string(),
                (5, vec![Ipv4Addr::new(10, 0, 0, i as u8 + 1)]),
            );
        }
        let r = dp.sync_a(&recs).expect("a full map is not an error");
        assert_eq!(
            (r.inserted, r.full, r.userspace_only, r.collisions),
            (4, 2, 2, 0)
        );
        assert_eq!(
            r.full_warning(records::MAP_NAME, dp.map_entries())
                .as_deref(),
            Some(
                "DNS_A is full (4 entries): 2 names are answered from userspace only; \
                 raise --kernel-map-entries"
            )
        );
        // The first names in order are in, with their records; the others are not.
        for (i, n) in names.iter().enumerate() {
            let want = (i < 4).then(|| (5, vec![Ipv4Addr::new(10, 0, 0, i as u8 + 1)]));
            assert_eq!(read_a(&dp, n), want, "{n}");
        }
        assert_eq!(dp.records.keys().count(), 4);
        // Unchanged, the left-out names are tried again and still do not fit.
        let r = dp.sync_a(&recs).expect("sync again");
        assert_eq!((r.inserted, r.updated, r.full), (0, 0, 2));
        // Two names gone: the two left out fit now.
        recs.remove("a.svc.");
        recs.remove("b.svc.");
        let r = dp.sync_a(&recs).expect("sync after removals");
        assert_eq!(
            (r.removed, r.inserted, r.full, r.userspace_only),
            (2, 2, 0, 0)
        );
        assert_eq!(r.full_warning(records::MAP_NAME, 4), None);
        for n in &names[2..] {
            assert!(read_a(&dp, n).is_some(), "{n} is in the map");
        }
        assert_eq!(read_a(&dp, "a.svc."), None);
        // DNS_AAAA has the same capacity and the same behaviour.
        let six: AaaaMap = names
            .iter()
            .map(|n| (n.to_string(), (5, vec![Ipv6Addr::LOCALHOST])))
            .collect();
        let r = dp.sync_aaaa(&six).expect("aaaa");
        assert_eq!((r.inserted, r.full), (4, 2));
        assert!(r
            .full_warning(records::AAAA_MAP_NAME, dp.map_entries())
            .is_some_and(|w| w.starts_with("DNS_AAAA is full (4 entries): 2 names")));
    }

    #[test]
    fn sync_names_touches_only_the_listed_names() {
        private_netns();
        let mut dp = Dataplane::start(&cfg(&["lo"], AttachMode::Auto)).expect("start");
        let r1 = a_records(&[
            ("a.svc.", 5, [10, 0, 0, 1]),
            ("b.svc.", 5, [10, 0, 0, 2]),
            ("c.svc.", 5, [10, 0, 0, 3]),
        ]);
        dp.sync_a(&r1).expect("full sync");
        // a changes, b goes, c changes but is not listed, d comes.
        let r2 = a_records(&[
            ("a.svc.", 9, [10, 0, 1, 1]),
            ("c.svc.", 9, [10, 0, 1, 3]),
            ("d.svc.", 5, [10, 0, 0, 4]),
        ]);
        let r = dp
            .sync_a_names(&r2, ["d.svc.", "a.svc.", "b.svc."])
            .expect("sync names");
        assert_eq!(
            (r.inserted, r.updated, r.removed, r.userspace_only),
            (1, 1, 1, 0)
        );
        assert_eq!(
            read_a(&dp, "a.svc."),
            Some((9, vec![Ipv4Addr::new(10, 0, 1, 1)]))
        );
        assert_eq!(read_a(&dp, "b.svc."), None);
        assert_eq!(
            read_a(&dp, "c.svc."),
            Some((5, vec![Ipv4Addr::new(10, 0, 0, 3)])),
            "c is not listed: untouched"
        );
        assert_eq!(
            read_a(&dp, "d.svc."),
            Some((5, vec![Ipv4Addr::new(10, 0, 0, 4)]))
        );
        // Listing them again changes nothing; a full sync then only catches up with c.
        let r = dp
            .sync_a_names(&r2, ["a.svc.", "b.svc.", "d.svc."])
            .expect("again");
        assert_eq!((r.inserted, r.updated, r.removed), (0, 0, 0));
        let r = dp.sync_a(&r2).expect("full sync");
        assert_eq!((r.inserted, r.updated, r.removed), (0, 1, 0));
        assert_eq!(dp.records.keys().count(), 3);

        let mut six = AaaaMap::new();
        six.insert("a.svc.".into(), (5, vec![Ipv6Addr::LOCALHOST]));
        let r = dp.sync_aaaa_names(&six, ["a.svc."]).expect("aaaa insert");
        assert_eq!((r.inserted, r.removed), (1, 0));
        six.clear();
        let r = dp.sync_aaaa_names(&six, ["a.svc."]).expect("aaaa delete");
        assert_eq!((r.inserted, r.removed), (0, 1));
        assert_eq!(dp.aaaa.keys().count(), 0);
    }

    #[test]
    fn unknown_interface_is_named() {
        private_netns();
        let err = Dataplane::start(&cfg(&["lo", "nope0"], AttachMode::Auto)).expect_err("no nope0");
        assert!(err.to_string().contains("nope0"), "{err}");
        let many = DataplaneConfig {
            service_ips: vec![IpAddr::from(Ipv4Addr::LOCALHOST); 9],
            ..cfg(&["lo"], AttachMode::Auto)
        };
        assert!(matches!(
            Dataplane::start(&many),
            Err(DataplaneError::TooManyServiceIps { count: 9, .. })
        ));
        let many6 = DataplaneConfig {
            service_ips: (1..=9u16)
                .map(|i| IpAddr::from(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)))
                .chain([IpAddr::from(Ipv4Addr::LOCALHOST)])
                .collect(),
            ..cfg(&["lo"], AttachMode::Auto)
        };
        let err = Dataplane::start(&many6).expect_err("nine IPv6 addresses");
        assert!(
            err.to_string().contains("9 IPv6 service addresses"),
            "{err}"
        );
        let empty = DataplaneConfig {
            map_entries: 0,
            ..cfg(&["lo"], AttachMode::Auto)
        };
        let err = Dataplane::start(&empty).expect_err("no room");
        assert!(err.to_string().contains("--kernel-map-entries"), "{err}");
        let no_cache = DataplaneConfig {
            cache_entries: 0,
            ..cfg(&["lo"], AttachMode::Auto)
        };
        let err = Dataplane::start(&no_cache).expect_err("no room");
        assert!(err.to_string().contains("DNS_CACHE"), "{err}");
    }

    /// The smallest kernel cache (a Corefile without a cache the kernel can repeat) loads, and
    /// the cache programs sit in their program arrays.
    #[test]
    fn one_entry_kernel_cache_loads_with_its_programs() {
        private_netns();
        let one = DataplaneConfig {
            cache_entries: 1,
            ..cfg(&[], AttachMode::Auto)
        };
        let dp = Dataplane::start(&one).expect("start with one cache entry");
        assert_eq!(dp.kernel_cache().capacity(), 1);
        for next in &dp.next {
            assert_eq!(
                next.indices().filter_map(Result::ok).collect::<Vec<_>>(),
                [0]
            );
        }
    }

    #[test]
    fn xdp_on_a_veth_is_refused_before_anything_is_loaded() {
        private_netns();
        // `ip` runs in this thread's namespace: children inherit the forking thread's.
        let out = std::process::Command::new("ip")
            .args(["link", "add", "xv0", "type", "veth", "peer", "name", "xv1"])
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip link add: {out:?}");
        let err = Dataplane::start(&cfg(&["xv0"], AttachMode::Xdp)).expect_err("xdp on veth");
        assert!(
            matches!(&err, DataplaneError::XdpOnVeth(i) if i == "xv0"),
            "{err}"
        );
        assert!(err.to_string().contains("--attach-mode tc"), "{err}");
        let dp = Dataplane::start(&cfg(&["xv0"], AttachMode::Auto)).expect("auto on veth");
        assert_eq!(dp.attachments(), vec![("xv0".to_string(), "tc")]);
    }
}
