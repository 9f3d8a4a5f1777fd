//! `cargo xtask bench --getent`: glibc's resolver in a pod, the way every program in a
//! Kubernetes pod resolves an external name.
//!
//! The pod namespace has the `resolv.conf` kubelet writes (three search domains, `ndots:5`), so
//! `getent ahosts www.example.org` first asks A and AAAA of the name under each search domain
//! (six NXDOMAIN answers) before the name itself; `getent ahosts www.example.org.` (fully
//! qualified) asks only the last two. The agent runs kubeadm's Corefile with `forward` to a Knot
//! DNS authoritative for `example.org.` on the node's loopback, with its kernel path attached to
//! the node-side veth, and again with `--no-kernel`. Each batch runs one shell in the pod that
//! looks the name up N times; a third batch resolves `localhost` from `/etc/hosts` (no DNS), the
//! cost of starting `getent` itself. Batches of the three kinds alternate, so that the machine's
//! drift weighs on each alike.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::bench::{build_agent, path_str, which, WorkDir, METRICS_ADDR};
use crate::bench_cache::{start_knot, wait_answer};
use crate::netns::{Process, Topology};

/// Options of `cargo xtask bench --getent`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench --getent",
    about = "getent ahosts of an external name from a pod: search path against fully qualified"
)]
pub struct GetentArgs {
    /// Lookups per batch.
    #[arg(long, default_value_t = 200)]
    pub lookups: u32,
    /// Batches of each kind per mode; the table shows the median.
    #[arg(long, default_value_t = 5)]
    pub repeat: u32,
    /// Use this agent binary instead of building `target/release/dns-agent`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

const UPSTREAM_IP: &str = "127.0.0.1";
const UPSTREAM_PORT: u16 = 5300;
/// The name looked up (the zone file below has A and AAAA for it).
const NAME: &str = "www.example.org";

/// kubeadm's Corefile, forwarding to the Knot upstream (and metrics where the bench reads them).
fn kubeadm_corefile() -> String {
    format!(
        ".:53 {{\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        \
         pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }}\n    \
         prometheus {METRICS_ADDR}\n    forward . {UPSTREAM_IP}:{UPSTREAM_PORT}\n    cache 30\n    \
         loop\n    loadbalance\n}}\n"
    )
}

/// The kind of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `www.example.org`: the search path first.
    Search,
    /// `www.example.org.`: the name alone.
    Qualified,
    /// `localhost`: `/etc/hosts`, no DNS.
    Files,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Search, Kind::Qualified, Kind::Files];

    fn name(self) -> String {
        match self {
            Kind::Search => NAME.to_owned(),
            Kind::Qualified => format!("{NAME}."),
            Kind::Files => "localhost".to_owned(),
        }
    }
}

/// One batch: wall time per lookup, and the answers counted per lookup.
#[derive(Debug, Clone, Copy, Default)]
struct Batch {
    ms: f64,
    kernel: f64,
    userspace: f64,
}

pub fn run(workspace_root: &Path, args: Vec<String>) -> Result<()> {
    let args = GetentArgs::try_parse_from(
        std::iter::once("cargo xtask bench --getent".to_string()).chain(args),
    )
    .unwrap_or_else(|e| e.exit());
    bench(workspace_root, &args)
}

fn bench(root: &Path, args: &GetentArgs) -> Result<()> {
    crate::require_root("bench --getent")?;
    for tool in ["getent", "knotd", "dig", "curl", "ip", "sh"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed (run `cargo xtask setup`)");
        }
    }
    if args.lookups == 0 || args.repeat == 0 {
        bail!("--lookups and --repeat must be at least 1");
    }
    let agent = match &args.agent {
        Some(a) => a.clone(),
        None => build_agent(root)?,
    };
    let snapshot = root.join("dns-agent/snapshots/sample.yaml");
    let workdir = WorkDir::create()?;
    let workdir = workdir.path();
    let zone_file = workdir.join("example.org.zone");
    std::fs::write(
        &zone_file,
        "$ORIGIN example.org.\n$TTL 3600\n@ SOA ns hostmaster 1 3600 900 604800 3600\n@ NS ns\n\
         ns A 192.0.2.1\nwww A 192.0.2.80\nwww AAAA 2001:db8::80\n",
    )
    .with_context(|| format!("writing {}", zone_file.display()))?;
    let corefile = workdir.join("Corefile");
    std::fs::write(&corefile, kubeadm_corefile())
        .with_context(|| format!("writing {}", corefile.display()))?;

    let topo = Topology::create_unique("bgetent").context("creating the network namespaces")?;
    let service = topo.service_ip().to_string();
    let upstream = start_knot(
        &topo,
        workdir,
        "upstream",
        UPSTREAM_IP,
        UPSTREAM_PORT,
        &zone_file,
    )?;
    let qualified = format!("{NAME}.");
    wait_answer(
        &topo,
        false,
        UPSTREAM_IP,
        UPSTREAM_PORT,
        &qualified,
        "the upstream Knot",
        || None,
    )?;

    let mut table = Vec::new();
    for kernel in [true, false] {
        let label = if kernel { "kernel" } else { "no-kernel" };
        eprintln!("==> bench --getent: agent ({label})");
        let log = workdir.join(format!("agent-{label}.log"));
        let mut flags = vec![
            "--snapshot",
            path_str(&snapshot)?,
            "--corefile",
            path_str(&corefile)?,
            "--service-ip",
            &service,
        ];
        let node_if = topo.node_if().to_owned();
        if kernel {
            flags.extend(["--attach", &node_if]);
        } else {
            flags.push("--no-kernel");
        }
        let child = topo
            .command(topo.node_ns(), path_str(&agent)?, &flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .with_context(|| format!("creating {}", log.display()))?,
            )
            .spawn()
            .with_context(|| format!("starting {}", agent.display()))?;
        let proc = Process::new("dns-agent", child);
        wait_answer(&topo, true, &service, 53, &qualified, "the agent", || {
            Some(log.clone())
        })?;
        // Warm: the upstream answers are cached, every search-path answer known.
        for kind in Kind::ALL {
            batch(&topo, kind, 5)?;
        }
        let mut batches: Vec<Vec<Batch>> = vec![Vec::new(); Kind::ALL.len()];
        for _ in 0..args.repeat {
            for (i, kind) in Kind::ALL.into_iter().enumerate() {
                batches[i].push(batch(&topo, kind, args.lookups)?);
            }
        }
        let _ = proc.stop(Duration::from_secs(5));
        table.push((label, batches.into_iter().map(median).collect::<Vec<_>>()));
    }
    drop(upstream);
    drop(topo);
    println!("{}", report(args, &table));
    Ok(())
}

/// Runs `lookups` lookups of `kind` in one shell in the pod; per-lookup figures.
fn batch(topo: &Topology, kind: Kind, lookups: u32) -> Result<Batch> {
    let before = counters(topo)?;
    let script = format!(
        "i=0; while [ $i -lt {lookups} ]; do getent ahosts {} >/dev/null || exit 1; i=$((i+1)); done",
        kind.name()
    );
    let start = Instant::now();
    let out = topo
        .command(topo.pod_ns(), "sh", &["-c", &script])
        .output()
        .context("running getent in the pod")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "getent ahosts {} failed in the pod: {}",
            kind.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let after = counters(topo)?;
    let n = f64::from(lookups);
    Ok(Batch {
        ms: elapsed.as_secs_f64() * 1000.0 / n,
        kernel: (after.0 - before.0) as f64 / n,
        userspace: (after.1 - before.1) as f64 / n,
    })
}

/// (kernel answers, userspace answers) so far, from the agent's metrics.
fn counters(topo: &Topology) -> Result<(u64, u64)> {
    let out = topo
        .command(
            topo.node_ns(),
            "curl",
            &[
                "-sf",
                "--max-time",
                "2",
                &format!("http://{METRICS_ADDR}/metrics"),
            ],
        )
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("the agent's metrics did not answer at {METRICS_ADDR}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    Ok((
        sum("dns_agent_kernel_responses_total"),
        sum("dns_agent_userspace_responses_total"),
    ))
}

fn median(mut batches: Vec<Batch>) -> Batch {
    batches.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    batches[batches.len() / 2]
}

fn report(args: &GetentArgs, table: &[(&str, Vec<Batch>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| agent | lookup | ms per lookup | DNS part (ms, over /etc/hosts) | answers from the kernel / userspace per lookup |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: |");
    for (label, rows) in table {
        let files = rows[2].ms;
        for (kind, b) in Kind::ALL.iter().zip(rows) {
            let what = match kind {
                Kind::Search => format!("`getent ahosts {NAME}` (search path)"),
                Kind::Qualified => format!("`getent ahosts {NAME}.` (fully qualified)"),
                Kind::Files => "`getent ahosts localhost` (/etc/hosts)".to_owned(),
            };
            let dns = if *kind == Kind::Files {
                "—".to_owned()
            } else {
                format!("{:.3}", b.ms - files)
            };
            let _ = writeln!(
                s,
                "| {label} | {what} | {:.3} | {dns} | {:.1} / {:.1} |",
                b.ms, b.kernel, b.userspace
            );
        }
        let ratio = rows[0].ms / rows[1].ms;
        let dns_ratio = (rows[0].ms - files) / (rows[1].ms - files);
        let _ = writeln!(
            s,
            "| {label} | **search path / fully qualified** | **{ratio:.2}×** | {dns_ratio:.2}× | |"
        );
    }
    let _ = writeln!(
        s,
        "\nMedian of {} batches of {} lookups per line, batches of the three kinds alternating; \
         one `sh` in the pod namespace runs `getent` in a loop (Debian 12's glibc, the pod's \
         resolv.conf: `search default.svc.cluster.local svc.cluster.local cluster.local`, \
         `options ndots:5`). The agent runs kubeadm's Corefile forwarding to Knot DNS on the \
         node's loopback (`www.example.org` A and AAAA), cache warm.",
        args.repeat, args.lookups
    );
    s
}
