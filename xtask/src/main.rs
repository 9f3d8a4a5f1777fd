//! `cargo xtask`: set-up, eBPF build, demo, tests and benchmarks of dns-agent in one tool.

mod bench;
mod bench_cache;
mod bench_getent;
mod demo;
mod ebpf_build;
mod fuzz_kernel;
mod latency_probe;
mod manifests;
mod setup;
mod sh;
mod signals;
mod suite;
mod watch_bench;

// The demo topology is shared with the end-to-end tests; the file is std-only on purpose.
#[allow(dead_code)]
#[path = "../../tests/src/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test dns-agent",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the project needs (Debian packages, bpf-linker, kubernetes-validate).
    /// Idempotent: installs only what is missing.
    Setup,
    /// Build the eBPF programs (dns-ebpf) and print the object's path.
    BuildEbpf,
    /// Set up, build, and run the agent in a demo node/pod network-namespace pair until Ctrl-C.
    Run(demo::RunArgs),
    /// Set up, build, and run every test of the workspace (unit, end-to-end, manifests).
    Test,
    /// Measure the kernel path, a reflect baseline and userspace with dnsperf (see `bench --help`).
    /// With `--watch`: the watch path instead (initial sync of 100,000 services, change latency;
    /// options `--services`, `--endpoints`, `--namespaces`, `--changes`, `--kernel attach|load|off`).
    /// With `--cache`: the agent's userspace cache hits against Knot DNS with one UDP worker.
    /// With `--getent`: `getent ahosts www.example.org` from a pod (search path, `ndots:5`)
    /// against the same lookup fully qualified (options `--lookups`, `--repeat`).
    #[command(disable_help_flag = true)]
    Bench {
        /// Options of the benchmark driver.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Random and mutated packets through the kernel programs (`BPF_PROG_TEST_RUN`): nothing
    /// but a well-formed query is answered, every answer is userspace's (`--packets`, `--seed`).
    FuzzKernel(fuzz_kernel::FuzzArgs),
    /// Internal: paced DNS latency probe with kernel receive timestamps (`bench` runs it in the
    /// pod namespace).
    #[command(hide = true)]
    LatencyProbe(latency_probe::ProbeArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    let started = Instant::now();
    let result = match cli.cmd {
        Cmd::Setup => setup::run(&root),
        Cmd::BuildEbpf => build_ebpf(&root).map(|obj| println!("{}", obj.display())),
        Cmd::Run(args) => demo::run(&root, &args),
        Cmd::Test => suite::run(&root),
        Cmd::Bench { args } if args.iter().any(|a| a == "--watch") => {
            watch_bench::run(&root, args.into_iter().filter(|a| a != "--watch").collect())
        }
        Cmd::Bench { args } if args.iter().any(|a| a == "--getent") => bench_getent::run(
            &root,
            args.into_iter().filter(|a| a != "--getent").collect(),
        ),
        Cmd::Bench { args } if args.iter().any(|a| a == "--cache") => {
            bench_cache::run(&root, args.into_iter().filter(|a| a != "--cache").collect())
        }
        Cmd::Bench { args } => bench::run(&root, args),
        Cmd::FuzzKernel(args) => fuzz_kernel::run(&root, &args),
        Cmd::LatencyProbe(args) => return latency_probe::run(&args),
    };
    if result.is_ok() {
        eprintln!("xtask: done in {:.1}s", started.elapsed().as_secs_f64());
    }
    result
}

/// The repository root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Builds the eBPF object with the kernel helper's builder, after checking the toolchain.
pub fn build_ebpf(root: &Path) -> Result<PathBuf> {
    if let Some(missing) = ebpf_build::toolchain_missing() {
        bail!("{missing}");
    }
    sh::step("build the eBPF programs (dns-ebpf)");
    let obj = ebpf_build::build(root).map_err(anyhow::Error::msg)?;
    eprintln!("xtask: eBPF object: {}", obj.display());
    Ok(obj)
}

/// Fails with a clear message unless running as root (apt, namespaces and BPF all need it).
pub fn require_root(what: &str) -> Result<()> {
    if !signals::is_root() {
        bail!("`cargo xtask {what}` must run as root (it installs packages, creates network namespaces and loads eBPF programs)");
    }
    Ok(())
}

/// Cargo's target directory (`$CARGO_TARGET_DIR`, else `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
