//! dns-agent: answers the cluster zone from userspace and keeps the kernel fast path in sync.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod corefile;
pub mod dataplane;
pub mod k8s;
pub mod metrics;
pub mod plugin;
pub mod records;
pub mod server;
pub mod snapshot;
