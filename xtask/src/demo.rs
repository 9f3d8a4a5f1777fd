//! `cargo xtask run`: the agent on the sample snapshot in a node/pod network-namespace pair.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::netns::{Process, Topology};
use crate::{setup, sh, signals};

/// Prefix of the demo namespaces (`dnsdemo-node`, `dnsdemo-pod`).
const PREFIX: &str = "dnsdemo";
/// A name the sample snapshot holds.
const DEMO_NAME: &str = "web.default.svc.cluster.local";
/// How long the agent may take to answer its first query.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct RunArgs {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Extra dns-agent flags, after `--` (e.g. `cargo xtask run -- --attach-mode tc`).
    #[arg(last = true, value_name = "AGENT_ARGS")]
    pub agent_args: Vec<String>,
}

pub fn run(root: &Path, args: &RunArgs) -> Result<()> {
    crate::require_root("run")?;
    setup::run(root)?;
    crate::build_ebpf(root)?;
    sh::step("build dns-agent (release)");
    sh::run(
        sh::cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "dns-agent"]),
    )?;
    let bin = crate::target_dir(root).join("release").join("dns-agent");
    let snapshot = root.join("dns-agent").join("snapshots").join("sample.yaml");
    if !snapshot.exists() {
        bail!("sample snapshot {} is missing", snapshot.display());
    }

    signals::catch_stop();
    sh::step(&format!("create namespaces {PREFIX}-node and {PREFIX}-pod"));
    // Declared before the agent so that it is dropped (torn down) after the agent stopped.
    let topo = Topology::create(PREFIX).context("cannot create the demo topology")?;
    eprintln!(
        "node {} ({} {}, service {} and {} on lo) <-> pod {} ({} {})",
        topo.node_ns(),
        topo.node_if(),
        topo.node_addr(),
        topo.service_ip(),
        topo.service_ip6(),
        topo.pod_ns(),
        topo.pod_if(),
        topo.pod_addr()
    );

    let service_ip = topo.service_ip().to_string();
    let mut agent_args: Vec<String> = vec![
        "--snapshot".into(),
        snapshot.to_string_lossy().into_owned(),
        "--attach".into(),
        topo.node_if().to_string(),
        "--service-ip".into(),
        service_ip.clone(),
        "--service-ip".into(),
        topo.service_ip6().to_string(),
    ];
    agent_args.extend(args.agent_args.iter().cloned());
    let refs: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let mut cmd = topo.command(topo.node_ns(), &bin.to_string_lossy(), &refs);
    // Own process group: Ctrl-C reaches xtask only, which then stops the agent in order.
    cmd.process_group(0).stdin(Stdio::null());
    sh::step("start dns-agent in the node namespace");
    eprintln!("$ {}", sh::line(&cmd));
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut agent = Process::new("dns-agent", child);

    if !wait_ready(&topo, &mut agent)? {
        return stop(agent, topo);
    }
    show(&topo);

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    match deadline {
        Some(_) => eprintln!("\nRunning for {}s.", args.duration.unwrap_or(0)),
        None => eprintln!("\nRunning; press Ctrl-C to stop the agent and remove the namespaces."),
    }
    loop {
        if signals::stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(status) = agent.try_wait()? {
            drop(topo);
            bail!("dns-agent exited on its own ({status})");
        }
        thread::sleep(Duration::from_millis(200));
    }
    stop(agent, topo)
}

/// Waits until the agent answers a query from the pod. `Ok(false)` if Ctrl-C came first.
fn wait_ready(topo: &Topology, agent: &mut Process) -> Result<bool> {
    let started = Instant::now();
    loop {
        if signals::stop_requested() {
            return Ok(false);
        }
        if let Some(status) = agent.try_wait()? {
            bail!("dns-agent exited before answering ({status}); its messages are above");
        }
        // dig exits 0 on any reply, whatever the RCODE; 9 when nothing came back.
        let probe = topo.exec_in_pod("dig", &["+time=1", "+tries=1", "+short", DEMO_NAME])?;
        if probe.status.success() {
            eprintln!(
                "xtask: agent answered after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(true);
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("dns-agent did not answer {DEMO_NAME} within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Queries once through the pod and shows the answer, the agent's metrics and what to try.
fn show(topo: &Topology) {
    let (node, pod) = (topo.node_ns(), topo.pod_ns());
    println!("\n$ ip netns exec {pod} dig {DEMO_NAME}");
    print_output(topo.exec_in_pod("dig", &[DEMO_NAME]));
    println!("$ ip netns exec {node} curl -s 127.0.0.1:9153/metrics | grep '^dns_agent'");
    match topo.exec_in_node(
        "curl",
        &["-s", "--max-time", "2", "http://127.0.0.1:9153/metrics"],
    ) {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            for l in text.lines().filter(|l| l.starts_with("dns_agent")) {
                println!("{l}");
            }
        }
        Err(e) => println!("(curl failed: {e})"),
    }
    let tries: [(&str, &str, &str); 6] = [
        (
            pod,
            "dig web.default.svc.cluster.local",
            "answered by the kernel program",
        ),
        (
            pod,
            "dig -6 @fd00:96::a web.default.svc.cluster.local AAAA",
            "over IPv6, by the kernel too",
        ),
        (pod, "dig +search web", "the pod's search list (ndots:5)"),
        (
            pod,
            "getent ahosts web",
            "glibc, with the pod's resolv.conf",
        ),
        (
            pod,
            "dig missing.default.svc.cluster.local",
            "NXDOMAIN, from userspace",
        ),
        (
            node,
            "curl 127.0.0.1:9153/metrics",
            "counters, by path and reason",
        ),
    ];
    println!("\nTry, from another terminal:");
    for (ns, cmd, what) in tries {
        let line = format!("ip netns exec {ns} {cmd}");
        println!("  {line:<62} # {what}");
    }
}

fn print_output(out: std::io::Result<Output>) {
    match out {
        Ok(out) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Err(e) => println!("(failed: {e})"),
    }
}

/// Stops the agent (SIGTERM, then SIGKILL after 15 s: the embedded Corefile's `health` has a
/// 5 s lame duck) and removes the namespaces.
fn stop(agent: Process, topo: Topology) -> Result<()> {
    sh::step("stop dns-agent and remove the namespaces (after its 5 s lame duck)");
    let result = agent.stop(Duration::from_secs(15));
    drop(topo);
    let out = result.map_err(|e| anyhow!("cannot stop dns-agent: {e}"))?;
    eprintln!("dns-agent stopped ({}); namespaces removed", out.status);
    Ok(())
}
