//! Builds the eBPF object (dns-ebpf) with Debian's toolchain and embeds it: `$OUT_DIR/dns-ebpf.o`.
//!
//! Without that toolchain the build still succeeds with an empty object and a warning; the
//! agent then refuses to start its kernel path and says what to do (`cargo xtask setup`, or
//! `--no-kernel`). A failing eBPF compile fails this build with the compiler's output.

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

use std::{env, fs, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    for watched in [
        "dns-ebpf/src",
        "dns-ebpf/Cargo.toml",
        "dns-ebpf/Cargo.lock",
        "dns-common/src",
        "dns-common/Cargo.toml",
        "xtask/src/ebpf_build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let dest = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("dns-ebpf.o");

    if let Some(missing) = ebpf_build::toolchain_missing() {
        println!("cargo:warning={missing}; the kernel fast path is left out of this build");
        return write(&dest, &[]);
    }
    match ebpf_build::build(&root) {
        Ok(obj) => match fs::read(&obj) {
            Ok(bytes) => write(&dest, &bytes),
            Err(e) => {
                eprintln!("reading {}: {e}", obj.display());
                ExitCode::FAILURE
            }
        },
        Err(output) => {
            eprintln!("{output}");
            ExitCode::FAILURE
        }
    }
}

fn write(dest: &PathBuf, bytes: &[u8]) -> ExitCode {
    match fs::write(dest, bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing {}: {e}", dest.display());
            ExitCode::FAILURE
        }
    }
}
