//! `cargo xtask bench`: dnsperf from a pod namespace against the kernel path, a reflect baseline and userspace.
//!
//! For every mode the release agent runs in the node namespace of a fresh topology; dnsperf runs
//! in the pod namespace, once as fast as it can and once at a fixed rate. Around each run we take
//! the busy jiffies of the whole machine (`/proc/stat`) and the attached program's
//! `run_time_ns`/`run_cnt` (`kernel.bpf_stats_enabled`), and print one Markdown table.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::latency_probe::ProbeReport;
use crate::netns::{Process, Topology};

// The snapshot oracle of the end-to-end tests: which A names the sample holds.
#[allow(dead_code)]
#[path = "../../tests/src/expected.rs"]
mod expected;

/// Options of `cargo xtask bench`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench",
    about = "Measure the kernel path, the reflect baseline and userspace with dnsperf"
)]
pub struct BenchArgs {
    #[command(flatten)]
    pub dnsperf: DnsperfArgs,
    /// Queries per second of the fixed-rate runs (dnsperf -Q).
    #[arg(long, default_value_t = 50_000)]
    pub rate: u32,
    /// Runs per mode and load; the table shows the median of each figure.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Modes to measure, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Kernel, Mode::Reflect, Mode::Userspace])]
    pub modes: Vec<Mode>,
    /// Snapshot whose A names make the query file (default: dns-agent/snapshots/sample.yaml).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Use this agent binary instead of building `target/release/dns-agent`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Type asked for each name: `A` (positive answers), or `AAAA`, which the sample's
    /// IPv4-only names answer NODATA (the kernel's negative path).
    #[arg(long, default_value = "A", value_parser = ["A", "AAAA"])]
    pub qtype: String,
    /// Ask, instead of the snapshot's names, what `ndots:5` makes of external names: for each
    /// name N, `host-N.example.org.` under `default.svc.cluster.local.`, `svc.cluster.local.`
    /// and `cluster.local.` in turn, all NXDOMAIN (the kernel's tree walk, one to three
    /// lookups).
    #[arg(long)]
    pub expansions: bool,
    /// Ask external names instead (`host-N.example.org. A`, one per snapshot name), which the
    /// agent forwards to a Knot DNS on the node's loopback and caches (`cache` + `forward`):
    /// after one warm-up pass the kernel's cache of external answers (`DNS_CACHE`) answers them.
    #[arg(long, conflicts_with = "expansions")]
    pub external: bool,
    /// Send the queries over IPv6, to the service's IPv6 address (dnsperf -s fd00:96::a); the
    /// agent serves both addresses either way.
    #[arg(long)]
    pub ipv6: bool,
}

impl BenchArgs {
    /// The service address the queries go to: IPv4, or IPv6 with `--ipv6`.
    fn service(&self, topo: &Topology) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(topo.service_ip6())
        } else {
            IpAddr::V4(topo.service_ip())
        }
    }
}

/// How dnsperf runs, in this bench and in `bench --cache`.
#[derive(clap::Args, Debug, Clone)]
pub struct DnsperfArgs {
    /// Seconds each dnsperf run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// dnsperf clients (-c): distinct source ports.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// dnsperf threads (-T).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Queries dnsperf keeps outstanding at most (-q).
    #[arg(long, default_value_t = 400)]
    pub outstanding: u32,
}

impl DnsperfArgs {
    /// dnsperf's arguments for asking `service` the names of `queries` (at the highest rate).
    pub fn command_args(&self, service: &str, queries: &Path) -> Result<Vec<String>> {
        Ok([
            "-s",
            service,
            "-d",
            path_str(queries)?,
            "-l",
            &self.duration.to_string(),
            "-c",
            &self.clients.to_string(),
            "-T",
            &self.threads.to_string(),
            "-q",
            &self.outstanding.to_string(),
            "-t",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect())
    }
}

/// Which path answers the queries.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The kernel program answers (`--kernel-program answer`).
    Kernel,
    /// Baseline: a kernel program that sends each query back unchanged but for swapped
    /// addresses and ports (`--kernel-program reflect`).
    Reflect,
    /// The agent's userspace server answers (`--no-kernel`).
    Userspace,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel (answer)",
            Mode::Reflect => "kernel reflect (baseline)",
            Mode::Userspace => "userspace (`--no-kernel`)",
        }
    }

    fn agent_flags(self) -> &'static [&'static str] {
        match self {
            Mode::Kernel => &["--kernel-program", "answer"],
            Mode::Reflect => &["--kernel-program", "reflect"],
            Mode::Userspace => &["--no-kernel"],
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Kernel => "kernel",
            Mode::Reflect => "reflect",
            Mode::Userspace => "userspace",
        })
    }
}

/// Offered load of one dnsperf run.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// No `-Q`: as fast as dnsperf and the server go.
    Max,
    /// `-Q rate`.
    Fixed(u32),
}

/// One row of the result table.
#[derive(Debug)]
struct Row {
    mode: Mode,
    load: Load,
    perf: Dnsperf,
    cpu_ms_per_1k: f64,
    kernel_ns_per_packet: Option<f64>,
    kernel_share: Option<f64>,
    /// Share of the machine busy during the second before the run (other work skews CPU figures).
    idle_busy: f64,
    /// The latency probe's run at the same rate (fixed-rate rows only).
    probe: Option<ProbeReport>,
}

/// What dnsperf printed at the end of a run.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Dnsperf {
    pub(crate) sent: u64,
    pub(crate) completed: u64,
    pub(crate) lost_pct: f64,
    pub(crate) qps: f64,
    pub(crate) avg_latency_s: f64,
}

pub(crate) const METRICS_ADDR: &str = "127.0.0.1:9153";

/// UDP sockets (source ports) of the latency probe.
const PROBE_SOCKETS: usize = 8;

/// Entry point of `cargo xtask bench [ARGS]`.
pub fn run(workspace_root: &Path, args: Vec<String>) -> Result<()> {
    let args =
        BenchArgs::try_parse_from(std::iter::once("cargo xtask bench".to_string()).chain(args))
            .unwrap_or_else(|e| e.exit());
    bench(workspace_root, &args)
}

fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    crate::require_root("bench")?;
    for tool in ["dnsperf", "dig", "curl", "bpftool", "ip"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed (run `cargo xtask setup`)");
        }
    }
    let agent = match &args.agent {
        Some(a) => a.clone(),
        None => build_agent(root)?,
    };
    let snapshot = args
        .snapshot
        .clone()
        .unwrap_or_else(|| root.join("dns-agent/snapshots/sample.yaml"));
    let names = a_names(&snapshot)?;
    if names.is_empty() {
        bail!("{} holds no A names to query", snapshot.display());
    }
    let workdir = WorkDir::create()?;
    let workdir = workdir.path();
    let queries = workdir.join("queries.txt");
    const SEARCH: [&str; 3] = [
        "default.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
    ];
    let body: String = if args.external {
        (0..names.len())
            .map(|i| format!("host-{i}.example.org. {}\n", args.qtype))
            .collect()
    } else if args.expansions {
        (0..names.len())
            .map(|i| format!("host-{i}.example.org.{} {}\n", SEARCH[i % 3], args.qtype))
            .collect()
    } else {
        names
            .iter()
            .map(|n| format!("{n} {}\n", args.qtype))
            .collect()
    };
    std::fs::write(&queries, body).with_context(|| format!("writing {}", queries.display()))?;

    let _stats = BpfStats::enable()?;
    let topo = Topology::create_unique("bench").context("creating the bench network namespaces")?;
    // External names: an upstream and a Corefile that caches what it forwards there.
    let mut extra: Vec<String> = Vec::new();
    let _upstream = if args.external {
        let zone_file = workdir.join("example.org.zone");
        std::fs::write(
            &zone_file,
            crate::bench_cache::zone_text(names.len() as u32),
        )
        .with_context(|| format!("writing {}", zone_file.display()))?;
        let upstream = crate::bench_cache::start_knot(
            &topo,
            workdir,
            "upstream",
            "127.0.0.1",
            5300,
            &zone_file,
        )?;
        let corefile = workdir.join("Corefile");
        std::fs::write(
            &corefile,
            "cluster.local:53 {\n    kubernetes cluster.local\n}\n\
             .:53 {\n    cache 3600\n    forward . 127.0.0.1:5300\n}\n",
        )
        .with_context(|| format!("writing {}", corefile.display()))?;
        extra = vec!["--corefile".into(), path_str(&corefile)?.to_owned()];
        Some(upstream)
    } else {
        None
    };
    let mut rows = Vec::new();
    for &mode in &args.modes {
        eprintln!("==> bench: {mode}");
        let log = workdir.join(format!("agent-{mode}.log"));
        let agent_proc = start_agent(&topo, &agent, &snapshot, mode, &names[0], &log, &extra)?;
        if args.external {
            // One pass: every name forwarded once and cached (and written to the kernel).
            let service = args.service(&topo).to_string();
            let warm = topo.exec_in_pod(
                "dnsperf",
                &[
                    "-s",
                    &service,
                    "-d",
                    path_str(&queries)?,
                    "-n",
                    "1",
                    "-t",
                    "2",
                ],
            )?;
            if !warm.status.success() {
                bail!(
                    "the warm-up pass failed: {}",
                    String::from_utf8_lossy(&warm.stderr)
                );
            }
        }
        let prog = if mode == Mode::Userspace {
            None
        } else {
            Some(attached_prog(agent_proc.id())?)
        };
        for load in [Load::Max, Load::Fixed(args.rate)] {
            let mut runs = Vec::new();
            for _ in 0..args.repeat.max(1) {
                runs.push(measure(&topo, args, mode, load, &queries, prog)?);
            }
            rows.push(median_row(runs));
        }
        // The embedded Corefile's `health { lameduck 5s }` keeps it serving 5 s after SIGTERM.
        let out = agent_proc
            .stop(Duration::from_secs(10))
            .context("stopping the agent")?;
        if !out.status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!(
                "warning: the agent ({mode}) exited with {}: {}",
                out.status,
                text.trim()
            );
        }
    }
    drop(topo);
    println!("{}", table(args, &names, &rows));
    Ok(())
}

/// Combines repeated runs: the median of each figure (the largest background load).
fn median_row(mut runs: Vec<Row>) -> Row {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
        let some: Vec<f64> = v.into_iter().flatten().collect();
        (!some.is_empty()).then(|| median(some))
    }
    let qps = median(runs.iter().map(|r| r.perf.qps).collect());
    let lost_pct = median(runs.iter().map(|r| r.perf.lost_pct).collect());
    let avg_latency_s = median(runs.iter().map(|r| r.perf.avg_latency_s).collect());
    let cpu_ms_per_1k = median(runs.iter().map(|r| r.cpu_ms_per_1k).collect());
    let kernel_ns_per_packet = median_opt(runs.iter().map(|r| r.kernel_ns_per_packet).collect());
    let kernel_share = median_opt(runs.iter().map(|r| r.kernel_share).collect());
    let idle_busy = runs.iter().map(|r| r.idle_busy).fold(0.0, f64::max);
    let probes: Vec<ProbeReport> = runs.iter().filter_map(|r| r.probe).collect();
    let probe = (!probes.is_empty()).then(|| ProbeReport {
        sent: probes.iter().map(|p| p.sent).sum(),
        received: probes.iter().map(|p| p.received).sum(),
        lost: probes.iter().map(|p| p.lost).sum(),
        avg_ns: median(probes.iter().map(|p| p.avg_ns).collect()),
        p50_ns: median(probes.iter().map(|p| p.p50_ns as f64).collect()) as u64,
        p99_ns: median(probes.iter().map(|p| p.p99_ns as f64).collect()) as u64,
        min_ns: probes.iter().map(|p| p.min_ns).min().unwrap_or(0),
        max_ns: probes.iter().map(|p| p.max_ns).max().unwrap_or(0),
        late_sends: probes.iter().map(|p| p.late_sends).sum(),
        no_kernel_timestamp: probes.iter().map(|p| p.no_kernel_timestamp).sum(),
        negative: probes.iter().map(|p| p.negative).sum(),
    });
    let (sent, completed) = runs
        .iter()
        .fold((0, 0), |(s, c), r| (s + r.perf.sent, c + r.perf.completed));
    let first = runs.remove(0);
    Row {
        mode: first.mode,
        load: first.load,
        perf: Dnsperf {
            sent,
            completed,
            lost_pct,
            qps,
            avg_latency_s,
        },
        cpu_ms_per_1k,
        kernel_ns_per_packet,
        kernel_share,
        idle_busy,
        probe,
    }
}

/// Runs dnsperf once and takes the CPU and in-kernel figures around it.
fn measure(
    topo: &Topology,
    args: &BenchArgs,
    mode: Mode,
    load: Load,
    queries: &Path,
    prog: Option<u32>,
) -> Result<Row> {
    let service = args.service(topo).to_string();
    let mut dp = args.dnsperf.command_args(&service, queries)?;
    if let Load::Fixed(r) = load {
        dp.extend(["-Q".to_string(), r.to_string()]);
    }
    let dp: Vec<&str> = dp.iter().map(String::as_str).collect();
    let kernel_before = if mode == Mode::Kernel {
        Some(kernel_responses(topo)?)
    } else {
        None
    };
    let idle_busy = wait_quiet()?;
    if idle_busy > 0.05 {
        eprintln!(
            "    warning: the machine was {:.0} % busy before this run; its CPU figures include that work",
            idle_busy * 100.0
        );
    }
    if prog.is_some() {
        // Another process may have switched the statistics off since we turned them on.
        BpfStats::ensure()?;
    }
    let prog_before = prog.map(prog_stats).transpose()?;
    let cpu_before = CpuSample::now()?;
    let out = topo
        .exec_in_pod("dnsperf", &dp)
        .context("running dnsperf")?;
    let cpu_after = CpuSample::now()?;
    let prog_after = prog.map(prog_stats).transpose()?;
    let (_, perf) = dnsperf_report(&dp, &out, &format!("in mode {mode}"))?;
    let (cpu_ms, ticked_ms) = cpu_after.busy_ms_since(&cpu_before);
    eprintln!(
        "    {mode}, {}: {:.0} answers/s, {} answers, avg latency {:.1} µs, machine busy {:.2} CPU-s ({:.2} by tick sampling)",
        load_label(load),
        perf.qps,
        perf.completed,
        perf.avg_latency_s * 1e6,
        cpu_ms / 1000.0,
        ticked_ms / 1000.0
    );
    let kernel_ns_per_packet = match (prog_before, prog_after) {
        (Some((t0, c0)), Some((t1, c1))) if c1 > c0 => {
            if (c1 - c0) < perf.sent {
                eprintln!(
                    "    warning: the program ran {} times for {} queries sent: kernel.bpf_stats_enabled \
                     was off for part of the run (another process?)",
                    c1 - c0,
                    perf.sent
                );
            }
            Some((t1 - t0) as f64 / (c1 - c0) as f64)
        }
        _ => None,
    };
    if let Some(ns) = kernel_ns_per_packet {
        eprintln!(
            "    {mode}, {}: {ns:.0} ns per packet in the kernel",
            load_label(load)
        );
    }
    let kernel_share = match kernel_before {
        Some(before) => Some((kernel_responses(topo)? - before) as f64 / perf.completed as f64),
        None => None,
    };
    let probe = match load {
        Load::Fixed(rate) => Some(run_probe(topo, args, mode, rate, queries)?),
        Load::Max => None,
    };
    Ok(Row {
        mode,
        load,
        perf,
        cpu_ms_per_1k: cpu_ms / perf.completed as f64 * 1000.0,
        kernel_ns_per_packet,
        kernel_share,
        idle_busy,
        probe,
    })
}

/// Runs `xtask latency-probe` (this very binary) in the pod namespace at `rate` for the
/// duration of a dnsperf run, and reads its JSON line.
fn run_probe(
    topo: &Topology,
    args: &BenchArgs,
    mode: Mode,
    rate: u32,
    queries: &Path,
) -> Result<ProbeReport> {
    let exe = std::env::current_exe().context("locating the running xtask binary")?;
    let server = SocketAddr::new(args.service(topo), 53).to_string();
    let (rate_s, duration) = (rate.to_string(), args.dnsperf.duration.to_string());
    let sockets = PROBE_SOCKETS.to_string();
    let probe_args = [
        "latency-probe",
        "--server",
        &server,
        "--rate",
        &rate_s,
        "--duration",
        &duration,
        "--names-file",
        path_str(queries)?,
        "--sockets",
        &sockets,
    ];
    let out = topo
        .exec_in_pod(path_str(&exe)?, &probe_args)
        .context("running the latency probe")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the latency probe failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: ProbeReport = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("no report in the latency probe's output:\n{stdout}"))?;
    if report.received == 0 {
        bail!("the latency probe got no replies in mode {mode}: {report:?}");
    }
    eprintln!(
        "    {mode}, {rate} q/s probe: avg {:.2} µs, p50 {:.2} µs, p99 {:.2} µs, {} of {} replied, {} sends late",
        report.avg_ns / 1e3,
        report.p50_ns as f64 / 1e3,
        report.p99_ns as f64 / 1e3,
        report.received,
        report.sent,
        report.late_sends
    );
    if report.no_kernel_timestamp > 0 || report.negative > 0 {
        eprintln!(
            "    warning: {} replies had no kernel timestamp, {} were stamped before their query",
            report.no_kernel_timestamp, report.negative
        );
    }
    Ok(report)
}

/// Builds the release agent (its build script builds the eBPF object) and returns its path.
pub(crate) fn build_agent(root: &Path) -> Result<PathBuf> {
    eprintln!("==> build the release agent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "dns-agent"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("`cargo build --release -p dns-agent` failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("release/dns-agent");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}

/// Starts the agent in the node namespace and waits until a query from the pod gets a reply.
fn start_agent(
    topo: &Topology,
    agent: &Path,
    snapshot: &Path,
    mode: Mode,
    probe: &str,
    log: &Path,
    extra: &[String],
) -> Result<Process> {
    let service = topo.service_ip().to_string();
    let service6 = topo.service_ip6().to_string();
    let mut args = vec![
        "--snapshot",
        path_str(snapshot)?,
        "--attach",
        topo.node_if(),
        "--service-ip",
        &service,
        "--service-ip",
        &service6,
        "--metrics-addr",
        METRICS_ADDR,
    ];
    args.extend(mode.agent_flags());
    args.extend(extra.iter().map(String::as_str));
    let child = topo
        .command(topo.node_ns(), path_str(agent)?, &args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let log_text = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut proc = Process::new("dns-agent", child);
    let server = format!("@{service}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proc.try_wait()? {
            bail!(
                "the agent ({mode}) exited with {status} before answering: {}",
                log_text()
            );
        }
        // dig exits 0 once it got any reply, including the reflect program's echoed query.
        let out = topo.exec_in_pod("dig", &["+tries=1", "+time=1", &server, probe, "A"])?;
        let metrics_up = topo
            .exec_in_node("curl", &["-sf", &format!("http://{METRICS_ADDR}/metrics")])?
            .status
            .success();
        if out.status.success() && metrics_up {
            if mode != Mode::Kernel {
                return Ok(proc);
            }
            // The userspace server may answer before the kernel map is filled: wait until a
            // probe is counted as a kernel answer.
            let before = kernel_responses(topo)?;
            topo.exec_in_pod("dig", &["+tries=1", "+time=1", &server, probe, "A"])?;
            if kernel_responses(topo)? > before {
                return Ok(proc);
            }
        }
        if Instant::now() > deadline {
            drop(proc);
            bail!(
                "the agent ({mode}) did not answer {probe} within 20 s: {}",
                log_text()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Id of the program the agent (process `pid`) attached: the program of its one BPF link
/// (TCX or XDP), read from /proc/<pid>/fdinfo. `bpftool net show` of this bpftool does not list
/// TCX links, and this keeps other agents on the machine out of the figures.
fn attached_prog(pid: u32) -> Result<u32> {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut links = Vec::new();
    for entry in
        std::fs::read_dir(&fd_dir).with_context(|| format!("reading {}", fd_dir.display()))?
    {
        let entry = entry?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:bpf_link" {
            continue;
        }
        let info_path = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let info =
            std::fs::read_to_string(&info_path).with_context(|| format!("reading {info_path}"))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if let Some(id) = field("prog_id:").and_then(|v| v.parse::<u32>().ok()) {
            links.push((id, field("link_type:").unwrap_or_default()));
        }
    }
    match links.as_slice() {
        [(id, _)] => Ok(*id),
        [] => bail!("the agent (pid {pid}) holds no BPF link: is its program attached?"),
        _ => bail!("the agent (pid {pid}) holds several BPF links, cannot tell which to measure: {links:?}"),
    }
}

/// `(run_time_ns, run_cnt)` of program `id`; bpftool leaves both out while they are zero.
fn prog_stats(id: u32) -> Result<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("name") {
        bail!(
            "`bpftool prog show id {id}` failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |name: &str| -> u64 {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[0] == name)
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(0)
    };
    Ok((field("run_time_ns"), field("run_cnt")))
}

/// `dns_agent_kernel_responses_total` from the agent's metrics.
fn kernel_responses(topo: &Topology) -> Result<u64> {
    let out = topo.exec_in_node("curl", &["-sf", &format!("http://{METRICS_ADDR}/metrics")])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("dns_agent_kernel_responses_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("the metrics have no dns_agent_kernel_responses_total")
}

/// A reading of the machine's CPU time.
///
/// Busy time is measured as wall time × CPUs − idle time: with `NO_HZ_IDLE` the kernel measures
/// idle periods exactly, whereas the user/system columns of /proc/stat are sampled at each tick,
/// which misses work that a timer wakes up and that finishes before the next tick (a
/// rate-limited dnsperf does exactly that).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSample {
    at: Instant,
    /// idle + iowait, in USER_HZ ticks (from the exact idle clocks).
    idle: u64,
    /// user + nice + system + irq + softirq + steal, tick-sampled (for comparison).
    ticked_busy: u64,
}

impl CpuSample {
    pub(crate) fn now() -> Result<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let at = Instant::now();
        let line = stat.lines().next().context("/proc/stat is empty")?;
        let cols: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|c| c.parse().ok())
            .collect();
        if cols.len() < 8 {
            bail!("unexpected /proc/stat line: {line}");
        }
        // user nice system idle iowait irq softirq steal (guest time is already inside user).
        Ok(CpuSample {
            at,
            idle: cols[3] + cols[4],
            ticked_busy: cols[0] + cols[1] + cols[2] + cols[5] + cols[6] + cols[7],
        })
    }

    /// Busy CPU milliseconds of the whole machine since `earlier`: (exact, tick-sampled).
    pub(crate) fn busy_ms_since(&self, earlier: &CpuSample) -> (f64, f64) {
        let tick_ms = 1000.0 / clock_ticks() as f64;
        let wall_ms = self.at.duration_since(earlier.at).as_secs_f64() * 1000.0;
        let idle_ms = self.idle.saturating_sub(earlier.idle) as f64 * tick_ms;
        let exact = (wall_ms * cpus() as f64 - idle_ms).max(0.0);
        let ticked = self.ticked_busy.saturating_sub(earlier.ticked_busy) as f64 * tick_ms;
        (exact, ticked)
    }
}

/// Waits (up to 30 s) for the machine to be less than 10 % busy with other work; returns the
/// last background load seen.
pub(crate) fn wait_quiet() -> Result<f64> {
    let mut load = background_load()?;
    for _ in 0..30 {
        if load < 0.10 {
            break;
        }
        load = background_load()?;
    }
    Ok(load)
}

/// Share of all CPUs busy over one second (with the agent idle): the noise floor of the CPU figures.
fn background_load() -> Result<f64> {
    let before = CpuSample::now()?;
    thread::sleep(Duration::from_secs(1));
    let (busy_ms, _) = CpuSample::now()?.busy_ms_since(&before);
    Ok(busy_ms / (1000.0 * cpus() as f64))
}

/// Jiffies per second (`getconf CLK_TCK`, 100 on Linux).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A scratch directory (query file, agent logs) removed when dropped, errors included.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    pub(crate) fn create() -> Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("dns-agent-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(WorkDir(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Turns `kernel.bpf_stats_enabled` on and restores the previous value when dropped.
struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn ensure() -> Result<()> {
        std::fs::write(BPF_STATS, "1").with_context(|| format!("enabling {BPF_STATS}"))
    }

    fn enable() -> Result<BpfStats> {
        let previous =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("enabling {BPF_STATS}"))?;
        Ok(BpfStats {
            previous: previous.trim().to_string(),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "warning: could not restore {BPF_STATS} to {}: {e}",
                self.previous
            );
        }
    }
}

/// Reads the final statistics dnsperf prints.
/// dnsperf's report of a finished run (`out`, from the arguments `dp`): an error when dnsperf
/// failed, its report cannot be read, or no query was answered (`what` names the server).
pub(crate) fn dnsperf_report(
    dp: &[&str],
    out: &std::process::Output,
    what: &str,
) -> Result<(String, Dnsperf)> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "dnsperf {} failed ({}): {}{}",
            dp.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let perf =
        parse_dnsperf(&stdout).with_context(|| format!("reading dnsperf's report:\n{stdout}"))?;
    if perf.completed == 0 {
        bail!("dnsperf got no answers {what}:\n{stdout}");
    }
    Ok((stdout, perf))
}

pub(crate) fn parse_dnsperf(text: &str) -> Result<Dnsperf> {
    let value = |label: &str| -> Result<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no `{label}` line"))
    };
    let lost = value("Queries lost:")?;
    let lost_line = text
        .lines()
        .find(|l| l.trim().starts_with("Queries lost:"))
        .with_context(|| format!("no lost line, {lost}"))?;
    let lost_pct = lost_line
        .split('(')
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .context("cannot read the lost percentage")?;
    Ok(Dnsperf {
        sent: value("Queries sent:")?.parse()?,
        completed: value("Queries completed:")?.parse()?,
        lost_pct,
        qps: value("Queries per second:")?.parse()?,
        avg_latency_s: value("Average Latency (s):")?.parse()?,
    })
}

/// The Markdown report: one table plus how it was measured.
fn table(args: &BenchArgs, names: &[String], rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| Path | Offered load | Answers/s | Lost | Avg latency | probe avg | probe p99 | CPU ms / 1,000 answers | over reflect | In-kernel ns / packet |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let load = load_label(r.load);
        let ns = r
            .kernel_ns_per_packet
            .map_or("—".to_string(), |v| format!("{v:.0}"));
        let reflect = rows
            .iter()
            .find(|b| b.mode == Mode::Reflect && load_label(b.load) == load);
        let over = match reflect {
            Some(b) if r.mode != Mode::Reflect => {
                format!("{:+.1}", r.cpu_ms_per_1k - b.cpu_ms_per_1k)
            }
            _ => "—".to_string(),
        };
        let (probe_avg, probe_p99) = r.probe.map_or(("—".to_string(), "—".to_string()), |p| {
            (
                format!("{:.2} µs", p.avg_ns / 1e3),
                format!("{:.2} µs", p.p99_ns as f64 / 1e3),
            )
        });
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.2} % | {:.0} µs | {} | {} | {:.1} | {} | {} |",
            r.mode.label(),
            load,
            r.perf.qps,
            r.perf.lost_pct,
            r.perf.avg_latency_s * 1e6,
            probe_avg,
            probe_p99,
            r.cpu_ms_per_1k,
            over,
            ns
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Median of {} runs per line. dnsperf 2.10 in the pod namespace, {} s per run, `-c {} -T {} -q {} -t 1` (fixed rate adds `-Q {}`), \
         cycling over {}, asked type {} over {}; the agent in the node namespace, attached to the \
         node-side veth. CPU is the whole machine's busy time during the run (wall time × CPUs − idle \
         time from /proc/stat, whose idle clocks are exact, unlike its tick-sampled busy columns), \
         dnsperf included, over answered queries; in-kernel time is the attached program's `run_time_ns / run_cnt` with \
         `kernel.bpf_stats_enabled=1` (every packet the program saw). The reflect baseline sends each query \
         back unchanged (QR=0); dnsperf matches replies by ID only, so it counts those as answers. \
         \"over reflect\" is the CPU beyond that baseline at the same load: what answering costs, \
         with the client's and the veth's share taken out.",
        args.repeat.max(1),
        args.dnsperf.duration,
        args.dnsperf.clients,
        args.dnsperf.threads,
        args.dnsperf.outstanding,
        args.rate,
        if args.expansions {
            format!(
                "{} search-path expansions of external names (NXDOMAIN)",
                names.len()
            )
        } else if args.external {
            format!(
                "{} external names cached after one warm-up pass (`cache` + `forward` to Knot)",
                names.len()
            )
        } else {
            format!("{} A names of the sample snapshot", names.len())
        },
        args.qtype,
        if args.ipv6 { "IPv6" } else { "IPv4" }
    );
    let _ = writeln!(
        s,
        "\n\"probe avg\"/\"probe p99\": `xtask latency-probe` in the pod namespace right after each \
         fixed-rate dnsperf run, same rate and duration, queries paced on a deadline schedule over {} \
         source ports; latency is the reply's kernel receive timestamp (`SO_TIMESTAMPNS`) minus the \
         clock read right before its send, so it excludes the receiving thread's scheduling delay. \
         Echoed queries (reflect) count as replies.",
        PROBE_SOCKETS
    );
    if let Some(line) = latency_ratio_line(rows) {
        let _ = writeln!(s, "\n{line}");
    }
    for r in rows.iter().filter(|r| r.mode == Mode::Kernel) {
        if let Some(share) = r.kernel_share {
            let _ = writeln!(
                s,
                "\nKernel path, {}: {:.1} % of the {} answers were counted by `dns_agent_kernel_responses_total` ({} queries sent).",
                load_label(r.load),
                share * 100.0,
                r.perf.completed,
                r.perf.sent
            );
        }
    }
    let noisy = rows.iter().map(|r| r.idle_busy).fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "\nMachine: {} CPUs, kernel {}; at most {:.0} % busy with other work in the second before a run.",
        cpus(),
        kernel_release(),
        noisy * 100.0
    );
    s
}

/// Kernel path over reflect baseline, probe average latency at the fixed rate, against the
/// 1.3× target; `None` unless both modes were measured.
fn latency_ratio_line(rows: &[Row]) -> Option<String> {
    let probe_of = |mode: Mode| {
        rows.iter()
            .find(|r| r.mode == mode && matches!(r.load, Load::Fixed(_)))
            .and_then(|r| r.probe.map(|p| (r.load, p)))
    };
    let (load, kernel) = probe_of(Mode::Kernel)?;
    let (_, reflect) = probe_of(Mode::Reflect)?;
    if reflect.avg_ns <= 0.0 {
        return None;
    }
    let ratio = kernel.avg_ns / reflect.avg_ns;
    Some(format!(
        "Latency at {}: kernel avg {:.2} µs / reflect avg {:.2} µs = {ratio:.3}× (target ≤ {LATENCY_TARGET}×: {}).",
        load_label(load),
        kernel.avg_ns / 1e3,
        reflect.avg_ns / 1e3,
        if ratio <= LATENCY_TARGET { "met" } else { "missed" }
    ))
}

/// Average latency of the kernel path may be at most this multiple of the reflect baseline.
const LATENCY_TARGET: f64 = 1.3;

/// Every A name of the snapshot the kernel answers without EDNS (at most 32 addresses, within
/// 512 bytes), as FQDNs with a trailing dot.
fn a_names(snapshot: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(snapshot)
        .with_context(|| format!("reading {}", snapshot.display()))?;
    let records = expected::a_records(&text, "cluster.local")
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("reading {}", snapshot.display()))?;
    Ok(records
        .into_iter()
        .filter(|(name, addrs)| {
            addrs.len() <= 32 && 12 + name.len() + 1 + 4 + 16 * addrs.len() <= 512
        })
        .map(|(name, _)| name)
        .collect())
}

fn load_label(load: Load) -> String {
    match load {
        Load::Max => "highest".to_string(),
        Load::Fixed(q) => format!("{q} q/s"),
    }
}

pub(crate) fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

pub(crate) fn cpus() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dnsperf_report() {
        let report = "Statistics:\n\n  Queries sent:         2000\n  Queries completed:    1990 (99.50%)\n  \
                      Queries lost:         10 (0.50%)\n\n  Response codes:       NOERROR 1990 (100.00%)\n  \
                      Run time (s):         2.000117\n  Queries per second:   994.941503\n\n  \
                      Average Latency (s):  0.000072 (min 0.000005, max 0.003619)\n";
        let p = parse_dnsperf(report).expect("parse");
        assert_eq!((p.sent, p.completed), (2000, 1990));
        assert!((p.lost_pct - 0.5).abs() < 1e-9);
        assert!((p.qps - 994.941503).abs() < 1e-6);
        assert!((p.avg_latency_s - 0.000072).abs() < 1e-12);
    }
}
