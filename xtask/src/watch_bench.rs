//! `cargo xtask bench --watch`: runs the watch-path bench (dns-agent/examples/watch_bench.rs) in release mode and prints its lines.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `cargo run --release -p dns-agent --example watch_bench -- ARGS` (as root: the example
/// attaches the kernel program in a private network namespace). `args` are the example's
/// options (`--services`, `--endpoints`, `--namespaces`, `--changes`, `--kernel`).
pub fn run(root: &Path, args: Vec<String>) -> Result<()> {
    crate::require_root("bench --watch")?;
    crate::sh::step("watch-path bench: initial sync and change latency (examples/watch_bench.rs)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The example prints its Markdown lines on stdout; cargo's progress goes to stderr.
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "run",
            "--release",
            "-p",
            "dns-agent",
            "--example",
            "watch_bench",
            "--",
        ])
        .args(&args)
        .status()
        .context("running cargo run --example watch_bench")?;
    if !status.success() {
        bail!("the watch-path bench failed ({status})");
    }
    Ok(())
}
