//! The kernel fast path: loads the embedded eBPF object, attaches it, keeps its maps in sync.
//!
//! The only `unsafe` code of the agent lives in this module (interface ioctls in `iface`).
//! Interfaces are attached with XDP (native, else generic) or, on veths, with TC ingress: an
//! XDP_TX on a veth only reaches a peer that has an XDP program itself, while the TC program
//! redirects the answer out of the interface the query came in on.

mod iface;
mod names;
mod sync;

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray},
    programs::tc::SchedClassifierLinkId,
    programs::{tc, xdp::XdpLinkId, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf, EbpfError, EbpfLoader,
};
use dns_common::{
    config::{self, Config, MAX_SERVICE_IPV4},
    records::{self, ARecords, AaaaRecords, NameKey},
    stats,
};

pub use names::{to_wire, NameError};

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
    pub service_ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub mode: AttachMode,
    pub program: KernelProgram,
    /// Capacity of `DNS_A` and of `DNS_AAAA` (names each), set when the object is loaded; at
    /// least 1. [`records::CAPACITY`] is the object's own.
    pub map_entries: u32,
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
    #[error("{count} service addresses given, the kernel path matches at most {max}")]
    TooManyServiceIps { count: usize, max: usize },
    #[error("the kernel maps need room for at least one name (--kernel-map-entries 0)")]
    NoMapEntries,
}

/// What `sync_a` (or `sync_aaaa`) changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub inserted: usize,
    pub updated: usize,
    pub removed: usize,
    /// Names the kernel passes to userspace: more than 32 addresses, a key (hash) collision
    /// with another name, or not a valid wire name.
    pub userspace_only: usize,
    /// Of `userspace_only`: names left out of the map because another name has the same key.
    pub collisions: usize,
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
    /// What `records` holds, as last written by `sync_a`.
    written: HashMap<NameKey, sync::Stored>,
    /// What `aaaa` holds, as last written by `sync_aaaa`.
    written_aaaa: HashMap<NameKey, sync::Stored<AaaaRecords>>,
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
        if cfg.service_ips.len() > MAX_SERVICE_IPV4 {
            return Err(DataplaneError::TooManyServiceIps {
                count: cfg.service_ips.len(),
                max: MAX_SERVICE_IPV4,
            });
        }
        if cfg.map_entries == 0 {
            return Err(DataplaneError::NoMapEntries);
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
            .load(object)
            .map_err(DataplaneError::Load)?;
        write_config(&mut ebpf, cfg)?;
        let records = take_map(&mut ebpf, records::MAP_NAME)?;
        let aaaa = take_map(&mut ebpf, records::AAAA_MAP_NAME)?;
        let stats = take_map(&mut ebpf, stats::MAP_NAME)?;
        let mut dp = Dataplane {
            ebpf,
            links: Vec::new(),
            records,
            aaaa,
            stats,
            written: HashMap::new(),
            written_aaaa: HashMap::new(),
        };
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
    pub fn sync_a(
        &mut self,
        records: &BTreeMap<String, (u32, Vec<Ipv4Addr>)>,
    ) -> Result<SyncReport, DataplaneError> {
        apply(
            &mut self.records,
            &mut self.written,
            records,
            records::MAP_NAME,
        )
    }

    /// Makes `DNS_AAAA` equal to `records` by diff, exactly as [`Dataplane::sync_a`] does for
    /// `DNS_A` (same names, same collision and size rules, its own map).
    pub fn sync_aaaa(
        &mut self,
        records: &BTreeMap<String, (u32, Vec<Ipv6Addr>)>,
    ) -> Result<SyncReport, DataplaneError> {
        apply(
            &mut self.aaaa,
            &mut self.written_aaaa,
            records,
            records::AAAA_MAP_NAME,
        )
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

/// Writes the diff that makes `map` equal to `records` and records it in `written`.
fn apply<A: sync::MapAddr>(
    map: &mut BpfHashMap<MapData, NameKey, A::Value>,
    written: &mut HashMap<NameKey, sync::Stored<A::Value>>,
    records: &BTreeMap<String, (u32, Vec<A>)>,
    name: &'static str,
) -> Result<SyncReport, DataplaneError>
where
    A::Value: aya::Pod,
{
    let plan = sync::plan(written, records);
    let map_err = |source| DataplaneError::Map { name, source };
    for key in &plan.removes {
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(e)),
        }
        written.remove(key);
    }
    for key in plan.inserts.iter().chain(&plan.updates) {
        let Some(want) = plan.desired.get(key) else {
            continue;
        };
        map.insert(key, want.value, 0).map_err(map_err)?;
        written.insert(*key, want.clone());
    }
    Ok(SyncReport {
        inserted: plan.inserts.len(),
        updated: plan.updates.len(),
        removed: plan.removes.len(),
        userspace_only: plan.flagged + plan.collisions + plan.invalid,
        collisions: plan.collisions,
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

/// The `DNS_CONFIG` entry for these addresses and port.
pub fn config_value(service_ips: &[Ipv4Addr], port: u16) -> Config {
    let mut c = Config {
        service_ipv4_be: [0; MAX_SERVICE_IPV4],
        ipv4_count: 0,
        port_be: port.to_be(),
        _pad: 0,
    };
    for (slot, ip) in c.service_ipv4_be.iter_mut().zip(service_ips) {
        *slot = u32::from_ne_bytes(ip.octets());
        c.ipv4_count += 1;
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
    use super::*;

    fn cfg(interfaces: &[&str], mode: AttachMode) -> DataplaneConfig {
        DataplaneConfig {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            service_ips: vec![Ipv4Addr::new(127, 0, 0, 53)],
            port: 53,
            mode,
            program: KernelProgram::Answer,
            map_entries: records::CAPACITY,
        }
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

    #[test]
    fn unknown_interface_is_named() {
        private_netns();
        let err = Dataplane::start(&cfg(&["lo", "nope0"], AttachMode::Auto)).expect_err("no nope0");
        assert!(err.to_string().contains("nope0"), "{err}");
        let many = DataplaneConfig {
            service_ips: vec![Ipv4Addr::LOCALHOST; 9],
            ..cfg(&["lo"], AttachMode::Auto)
        };
        assert!(matches!(
            Dataplane::start(&many),
            Err(DataplaneError::TooManyServiceIps { count: 9, .. })
        ));
        let empty = DataplaneConfig {
            map_entries: 0,
            ..cfg(&["lo"], AttachMode::Auto)
        };
        let err = Dataplane::start(&empty).expect_err("no room");
        assert!(err.to_string().contains("--kernel-map-entries"), "{err}");
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
