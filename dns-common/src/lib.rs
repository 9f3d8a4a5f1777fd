//! The ABI between the kernel programs (dns-ebpf) and the agent: map names, capacities, key and
//! value layouts, statistics reasons, and the name hash both sides must compute identically.
#![no_std]

pub mod cache;
pub mod config;
pub mod name;
pub mod records;
pub mod soa;
pub mod stats;
pub mod tree;
