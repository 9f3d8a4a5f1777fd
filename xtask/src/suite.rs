//! `cargo xtask test`: set-up, builds, every test of the workspace, and the manifest check.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::{manifests, setup, sh};

/// Package name of the privileged end-to-end tests (directory `tests/`).
const E2E_PACKAGE: &str = "dns-agent-tests";

pub fn run(root: &Path) -> Result<()> {
    crate::require_root("test")?;
    setup::run(root)?;
    let obj = crate::build_ebpf(root)?;
    sh::step("build dns-agent (debug) for the end-to-end tests");
    sh::run(
        sh::cargo()
            .current_dir(root)
            .args(["build", "-p", "dns-agent"]),
    )?;
    let bin = crate::target_dir(root).join("debug").join("dns-agent");
    if !bin.exists() {
        bail!("{} was not built", bin.display());
    }

    let mut results: Vec<(&str, f64, Result<()>)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| {
        sh::step(name);
        let started = Instant::now();
        let r = f();
        if let Err(e) = &r {
            eprintln!("xtask: {name}: FAILED: {e:#}");
        }
        results.push((name, started.elapsed().as_secs_f64(), r));
    };
    let test = |extra: &[&str], threads: Option<&str>| {
        let mut cmd = sh::cargo();
        cmd.current_dir(root)
            .arg("test")
            .args(extra)
            .env("DNS_AGENT_BIN", &bin)
            .env("DNS_EBPF_OBJECT", &obj);
        if let Some(t) = threads {
            cmd.args(["--", "--test-threads", t]);
        }
        sh::run(&mut cmd)
    };
    step(
        "unit and integration tests (every crate but the end-to-end one)",
        &mut || test(&["--workspace", "--exclude", E2E_PACKAGE], None),
    );
    // One at a time: the end-to-end tests share the host's netfilter state and CPU budget.
    step("end-to-end tests (network namespaces, root)", &mut || {
        test(&["-p", E2E_PACKAGE], Some("1"))
    });
    step("manifests (kubernetes-validate --strict)", &mut || {
        manifests::validate(root)
    });

    eprintln!("\nxtask test summary:");
    let mut failed = 0;
    for (name, secs, r) in &results {
        let verdict = if r.is_ok() { "ok" } else { "FAILED" };
        eprintln!("  {verdict:<6} {secs:>7.1}s  {name}");
        failed += usize::from(r.is_err());
    }
    if failed > 0 {
        bail!("{failed} of {} test steps failed", results.len());
    }
    Ok(())
}
