//! `cargo xtask setup`: installs what is missing (Debian packages, bpf-linker, kubernetes-validate).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::sh;

/// Debian packages: Debian's Rust with the prebuilt BPF `core`, LLVM 22 for bpf-linker, the eBPF
/// tools, DNS clients and load generators, and the network tools of the demo and the tests.
pub const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "clang-22",
    "bpftool",
    "dnsutils",
    "knot-dnsutils",
    "knot",
    "dnsperf",
    "iproute2",
    "nftables",
    "conntrack",
    "iptables",
    "curl",
    "procps",
    // For the virtualenv that holds kubernetes-validate.
    "python3-venv",
];

/// bpf-linker version that matches Debian's LLVM 22 and rustc 1.96.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Virtualenv holding `kubernetes-validate` (outside the repository, so fresh clones reuse it).
pub const VENV: &str = "/opt/dns-agent-tools/venv";

/// Runs every step; each one says whether it installed something or skipped.
pub fn run(_root: &Path) -> Result<()> {
    crate::require_root("setup")?;
    apt()?;
    bpf_linker()?;
    kubernetes_validate()?;
    Ok(())
}

fn apt() -> Result<()> {
    sh::step("Debian packages");
    let missing = missing_packages();
    if missing.is_empty() {
        eprintln!("skipped: all {} packages are installed", APT_PACKAGES.len());
        return Ok(());
    }
    eprintln!("missing: {}", missing.join(" "));
    sh::run(sh::cmd("apt-get", ["-q", "update"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    // -q and no pty for dpkg: no progress bars in CI logs.
    let mut install = sh::cmd("apt-get", ["-q", "-o", "Dpkg::Use-Pty=0", "install", "-y"]);
    install
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    sh::run(&mut install)?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    eprintln!("installed: {}", missing.join(" "));
    Ok(())
}

/// Packages of [`APT_PACKAGES`] that dpkg does not report as installed.
fn missing_packages() -> Vec<String> {
    let mut query = sh::cmd(
        "dpkg-query",
        ["-W", "-f", "${Package} ${db:Status-Status}\n"],
    );
    query.args(APT_PACKAGES);
    let installed: BTreeSet<String> = sh::probe(&mut query)
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(_, status)| *status == "installed")
                .map(|(name, _)| name.to_string())
                .collect()
        })
        .unwrap_or_default();
    APT_PACKAGES
        .iter()
        .filter(|p| !installed.contains(**p))
        .map(|p| p.to_string())
        .collect()
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin"))
}

/// The `bpf-linker --version` line of the first bpf-linker found on PATH or in the cargo bin dir.
fn bpf_linker_version() -> Option<String> {
    let mut candidates = vec![PathBuf::from("bpf-linker")];
    if let Some(dir) = cargo_bin_dir() {
        candidates.push(dir.join("bpf-linker"));
    }
    candidates.iter().find_map(|bin| {
        let out = sh::probe(std::process::Command::new(bin).arg("--version"))?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
}

fn bpf_linker() -> Result<()> {
    sh::step(&format!("bpf-linker {BPF_LINKER_VERSION}"));
    match bpf_linker_version() {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {
            eprintln!("skipped: {v} is installed");
            return Ok(());
        }
        Some(v) => eprintln!("found {v}, installing {BPF_LINKER_VERSION}"),
        None => eprintln!("not found, installing"),
    }
    let mut install = sh::cargo();
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        // Without these the build script looks for LLVM in /usr and fails to link -lLLVM.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX);
    sh::run(&mut install)?;
    match bpf_linker_version() {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {
            eprintln!("installed: {v}");
            Ok(())
        }
        other => bail!("bpf-linker still not usable after install (found {other:?})"),
    }
}

/// Path of the `kubernetes-validate` script in [`VENV`].
pub fn kubernetes_validate_bin() -> PathBuf {
    Path::new(VENV).join("bin").join("kubernetes-validate")
}

fn kubernetes_validate() -> Result<()> {
    sh::step("kubernetes-validate (PyPI, in a virtualenv)");
    let bin = kubernetes_validate_bin();
    let works = |bin: &Path| {
        sh::probe(std::process::Command::new(bin).arg("--version"))
            .is_some_and(|o| o.status.success())
    };
    if works(&bin) {
        eprintln!("skipped: {} works", bin.display());
        return Ok(());
    }
    // Debian's python3 (python3-venv above), not whatever python3 comes first on PATH.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    sh::run(&mut sh::cmd(python, ["-m", "venv", "--clear", VENV]))?;
    let pip = Path::new(VENV).join("bin").join("pip");
    sh::run(&mut sh::cmd(
        &pip.to_string_lossy(),
        ["install", "--quiet", "kubernetes-validate"],
    ))?;
    if !works(&bin) {
        bail!("{} does not run after installing it", bin.display());
    }
    eprintln!("installed: {}", bin.display());
    Ok(())
}
