//! Placeholder for the eBPF build (the kernel helper replaces this file with the real one).

use std::path::{Path, PathBuf};

/// Builds dns-ebpf and returns the object's path.
pub fn build(_workspace_root: &Path) -> Result<PathBuf, String> {
    Err("not yet".to_string())
}

/// `Some(what is missing)` when the eBPF toolchain is incomplete.
pub fn toolchain_missing() -> Option<String> {
    None
}
