//! `cargo xtask test`: set-up, builds, every test of the workspace, and the manifest check.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

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

    let totals = std::cell::Cell::new(Counts::default());
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
        let counts = run_counting(&mut cmd)?;
        totals.set(totals.get().add(counts));
        Ok(())
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
    // The plain closing line CI reads: every test cargo ran, summed over the crates.
    let t = totals.get();
    println!(
        "tests: {} passed, {} failed, {} skipped",
        t.passed, t.failed, t.ignored
    );
    if failed > 0 {
        bail!("{failed} of {} test steps failed", results.len());
    }
    Ok(())
}

/// Test counts of `cargo test` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn add(self, o: Counts) -> Counts {
        Counts {
            passed: self.passed + o.passed,
            failed: self.failed + o.failed,
            ignored: self.ignored + o.ignored,
        }
    }

    /// Counts of one libtest summary line (`test result: ok. 3 passed; 0 failed; 1 ignored; …`).
    fn parse(line: &str) -> Option<Counts> {
        let rest = line.strip_prefix("test result: ")?;
        let mut c = Counts::default();
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => c.passed = n,
                "failed" => c.failed = n,
                "ignored" => c.ignored = n,
                _ => {}
            }
        }
        Some(c)
    }
}

/// Runs `cmd` like [`sh::run`], passing its stdout through while adding up libtest's summary
/// lines. A failing run fails even when some of its counts were read.
fn run_counting(cmd: &mut Command) -> Result<Counts> {
    let shown = sh::line(cmd);
    eprintln!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let mut counts = Counts::default();
    if let Some(out) = child.stdout.take() {
        let stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the test output")?;
            if let Some(c) = Counts::parse(&line) {
                counts = counts.add(c);
            }
            let mut lock = stdout.lock();
            let _ = writeln!(lock, "{line}");
            let _ = lock.flush();
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn libtest_summary_lines() {
        let c = Counts::parse(
            "test result: ok. 28 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.24s",
        );
        assert_eq!(
            c,
            Some(Counts {
                passed: 28,
                failed: 0,
                ignored: 2
            })
        );
        let c = Counts::parse("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.03s");
        assert_eq!(
            c,
            Some(Counts {
                passed: 3,
                failed: 1,
                ignored: 0
            })
        );
        assert_eq!(Counts::parse("running 5 tests"), None);
        assert_eq!(Counts::parse("test foo ... ok"), None);
    }
}
