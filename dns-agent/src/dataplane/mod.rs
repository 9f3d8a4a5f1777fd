//! Placeholder for the kernel path (the kernel helper replaces this file): same API, never starts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// How to attach the kernel program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Xdp,
    Tc,
}

/// Which kernel program to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelProgram {
    Answer,
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
}

/// Why the kernel path failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("kernel path not built yet: run with --no-kernel")]
    NotBuilt,
}

/// What `sync_a` changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub inserted: usize,
    pub updated: usize,
    pub removed: usize,
    pub userspace_only: usize,
}

/// The loaded and attached kernel program (never constructed by this placeholder).
#[derive(Debug)]
pub struct Dataplane {
    _private: (),
}

impl Dataplane {
    pub fn start(_cfg: &DataplaneConfig) -> Result<Self, DataplaneError> {
        Err(DataplaneError::NotBuilt)
    }

    pub fn sync_a(
        &mut self,
        _records: &BTreeMap<String, (u32, Vec<Ipv4Addr>)>,
    ) -> Result<SyncReport, DataplaneError> {
        Err(DataplaneError::NotBuilt)
    }

    pub fn stats(&self) -> Result<[u64; dns_common::stats::COUNT as usize], DataplaneError> {
        Err(DataplaneError::NotBuilt)
    }

    pub fn attachments(&self) -> Vec<(String, &'static str)> {
        Vec::new()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {}
}
