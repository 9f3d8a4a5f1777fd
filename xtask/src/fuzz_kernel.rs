//! `cargo xtask fuzz-kernel`: millions of random and mutated packets through the kernel programs
//! (`BPF_PROG_TEST_RUN`), each answer compared with userspace's. The work is the test
//! `tests/tests/kernel_equivalence.rs` (CI runs its short pass); this runs it long, optimised.

use std::path::Path;

use anyhow::Result;
use clap::Parser;

use crate::sh;

/// Options of `cargo xtask fuzz-kernel`.
#[derive(Parser, Debug, Clone)]
pub struct FuzzArgs {
    /// Packets to run through the programs (XDP and TC alternately).
    #[arg(long, default_value_t = 5_000_000)]
    pub packets: u64,
    /// Seed of the packet generator: the same seed makes the same packets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    crate::require_root("fuzz-kernel")?;
    let obj = crate::build_ebpf(root)?;
    sh::step(&format!(
        "{} packets from seed {} through dns_xdp and dns_tc, each answer against userspace's",
        args.packets, args.seed
    ));
    sh::run(
        sh::cargo()
            .current_dir(root)
            .args([
                "test",
                "--release",
                "-p",
                "dns-agent-tests",
                "--test",
                "kernel_equivalence",
                "mutated_and_random_packets",
                "--",
                "--nocapture",
            ])
            .env("DNS_EBPF_OBJECT", &obj)
            .env("KERNEL_FUZZ_PACKETS", args.packets.to_string())
            .env("KERNEL_FUZZ_SEED", args.seed.to_string()),
    )
}
