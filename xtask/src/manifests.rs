//! Offline validation of the Kubernetes manifests in `manifests/` with `kubernetes-validate --strict`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{setup, sh};

/// Kubernetes version the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.32.0";

/// Every `*.yaml` file under `manifests/`, sorted.
fn files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("manifests");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("no manifests found in {}", dir.display());
    }
    Ok(out)
}

/// Validates every manifest strictly (unknown fields are errors).
pub fn validate(root: &Path) -> Result<()> {
    let bin = setup::kubernetes_validate_bin();
    let mut cmd = sh::cmd(
        &bin.to_string_lossy(),
        ["--strict", "-k", KUBERNETES_VERSION],
    );
    cmd.args(files(root)?);
    sh::run(&mut cmd)
}
