//! Builds the dns-ebpf object with Debian's Rust toolchain (shared by xtask and dns-agent's build.rs).
//!
//! std only: dns-agent's build script includes this file with `#[path]`. The eBPF crate is a
//! workspace of its own, compiled by `/usr/bin/cargo` + `/usr/bin/rustc` (Debian's rustc-web,
//! which ships a prebuilt `core` for `bpfel-unknown-none`) and linked by `bpf-linker`; see
//! ../shared/TOOLCHAIN.md. Everything the outer cargo exported to us is removed from the child's
//! environment so that it cannot leak rustup's compiler, flags or target directory into it.
#![allow(dead_code)]

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

/// Debian's compiler, with the BPF targets' prebuilt `core`.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Debian's cargo, matching `DEBIAN_RUSTC`.
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Where `libstd-rust-web-dev-bpf` puts the target's `core`.
pub const BPF_SYSROOT: &str = "/usr/lib/rustlib/bpfel-unknown-none";
/// The eBPF target.
pub const TARGET: &str = "bpfel-unknown-none";
/// File name of the built object (the crate's binary name).
pub const OBJECT_NAME: &str = "dns-ebpf";

/// Variables the outer build sets that must not reach the inner cargo, besides every
/// `CARGO_*` (see [`scrubbed`]).
const SCRUBBED: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTDOC",
    "RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTUP_TOOLCHAIN",
    "RUST_RECURSION_COUNT",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// `CARGO_*` variables the child may keep: where the registry cache is and how to reach it.
const KEPT_CARGO: &[&str] = &[
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
];

/// Whether `key` must be removed from the child's environment.
fn scrubbed(key: &str) -> bool {
    if key.starts_with("CARGO") {
        return !KEPT_CARGO.iter().any(|k| key.starts_with(k));
    }
    SCRUBBED.contains(&key)
}

/// Directory of the eBPF crate inside the repository.
pub fn crate_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("dns-ebpf")
}

/// Where the object lands.
pub fn object_path(workspace_root: &Path) -> PathBuf {
    target_dir(workspace_root)
        .join(TARGET)
        .join("release")
        .join(OBJECT_NAME)
}

fn target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("ebpf")
}

/// `$HOME/.cargo/bin`, where `cargo install bpf-linker` puts the linker.
fn cargo_bin() -> Option<PathBuf> {
    env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin"))
}

/// PATH for the child: Debian's toolchain first, then bpf-linker's directory, then the rest.
fn child_path() -> OsString {
    let mut dirs = vec![PathBuf::from("/usr/bin")];
    dirs.extend(cargo_bin());
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/bin"))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&child_path())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `Some(description)` of what is missing to build the eBPF object, `None` when all is there.
pub fn toolchain_missing() -> Option<String> {
    let mut missing = Vec::new();
    for (path, what) in [
        (DEBIAN_RUSTC, "Debian's rustc (package rustc-web)"),
        (DEBIAN_CARGO, "Debian's cargo (package cargo-web)"),
        (
            BPF_SYSROOT,
            "the BPF target's core (package libstd-rust-web-dev-bpf)",
        ),
    ] {
        if !Path::new(path).exists() {
            missing.push(format!("{path}: {what}"));
        }
    }
    if find_in_path("bpf-linker").is_none() {
        missing.push("bpf-linker: not in PATH nor ~/.cargo/bin".to_string());
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "eBPF toolchain incomplete ({}); run `cargo xtask setup`",
        missing.join("; ")
    ))
}

/// Builds dns-ebpf (release, `bpfel-unknown-none`) into `<root>/target/ebpf` and returns the
/// object's path. The error carries the build's output.
pub fn build(workspace_root: &Path) -> Result<PathBuf, String> {
    if let Some(missing) = toolchain_missing() {
        return Err(missing);
    }
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(crate_dir(workspace_root))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(target_dir(workspace_root));
    for (key, _) in env::vars_os() {
        if key.to_str().is_none_or(scrubbed) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PATH", child_path())
        .env("RUSTC", DEBIAN_RUSTC)
        // aya-ebpf uses one unstable feature; Debian's stable compiler allows it this way.
        .env("RUSTC_BOOTSTRAP", "1");
    let out = cmd
        .output()
        .map_err(|e| format!("running {DEBIAN_CARGO}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building dns-ebpf failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let obj = object_path(workspace_root);
    if !obj.is_file() {
        return Err(format!("dns-ebpf built but {} is missing", obj.display()));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::scrubbed;

    #[test]
    fn outer_cargo_settings_do_not_leak() {
        for key in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "RUSTUP_TOOLCHAIN",
        ] {
            assert!(scrubbed(key), "{key} must be removed");
        }
        for key in ["CARGO_HOME", "CARGO_NET_OFFLINE", "HOME", "PATH", "LANG"] {
            assert!(!scrubbed(key), "{key} must be kept");
        }
    }
}
