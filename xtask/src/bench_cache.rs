//! `cargo xtask bench --cache`: the agent's userspace cache hits against Knot DNS 3.2 (one UDP worker) on the bench's harness.
//!
//! One topology (pod namespace → veth → node namespace, dnsperf in the pod) serves three set-ups
//! in turn, each on the service address: Knot DNS authoritative for `example.org.` with one UDP
//! worker; the agent (`--no-kernel`) with `cache` + `forward` to a second Knot on the node's
//! loopback (not on the measured path: it only sees the warm-up's misses); and the agent with
//! kubeadm's plugin set in front of the same upstream. Each server's own CPU comes from
//! `/proc/<pid>/stat` (utime + stime) and, exactly, from the sum of its threads' `schedstat`;
//! the machine-wide figure is the one `cargo xtask bench` prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::bench::{
    build_agent, clock_ticks, cpus, dnsperf_report, kernel_release, parse_dnsperf, path_str,
    wait_quiet, which, CpuSample, Dnsperf, WorkDir, METRICS_ADDR,
};
use crate::netns::{Process, Topology};

/// Options of `cargo xtask bench --cache`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench --cache",
    about = "Userspace cache hits of the agent against Knot DNS 3.2 with one UDP worker"
)]
pub struct CacheArgs {
    #[command(flatten)]
    pub dnsperf: crate::bench::DnsperfArgs,
    /// Rounds (each server started and measured once per round); the table shows the median
    /// of each figure.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Names in the test zone (`host-N.example.org. A`), all of them in the query file.
    #[arg(long, default_value_t = 1000)]
    pub names: u32,
    /// Use this agent binary instead of building `target/release/dns-agent`.
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// After the measured runs, one more run per server under `perf record -g -p <pid>`; the
    /// data goes to this directory and the top of `perf report --no-children` is printed.
    #[arg(long)]
    pub perf: Option<PathBuf>,
}

/// What answers on the service address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// Knot DNS, authoritative for the zone, one UDP worker.
    Knot,
    /// The agent, `cache` + `forward` to the upstream Knot.
    AgentCache,
    /// The agent, kubeadm's plugins in front: `errors`, `prometheus`, `loadbalance`, `cache`, `forward`.
    AgentKubeadm,
}

impl Server {
    const ALL: [Server; 3] = [Server::Knot, Server::AgentCache, Server::AgentKubeadm];

    fn label(self) -> &'static str {
        match self {
            Server::Knot => "Knot DNS 3.2, `udp-workers: 1`",
            Server::AgentCache => "dns-agent, `cache` + `forward` (all hits)",
            Server::AgentKubeadm => {
                "dns-agent, `errors prometheus loadbalance cache forward` (all hits)"
            }
        }
    }

    fn short(self) -> &'static str {
        match self {
            Server::Knot => "knot",
            Server::AgentCache => "agent-cache",
            Server::AgentKubeadm => "agent-kubeadm",
        }
    }

    /// The agent's Corefile for this set-up (`None` for Knot).
    fn corefile(self) -> Option<String> {
        let upstream = format!("{UPSTREAM_IP}:{UPSTREAM_PORT}");
        match self {
            Server::Knot => None,
            Server::AgentCache => Some(format!(". {{\n    cache 3600\n    forward . {upstream}\n}}\n")),
            Server::AgentKubeadm => Some(format!(
                ". {{\n    errors\n    prometheus :9153\n    loadbalance\n    cache 3600\n    forward . {upstream}\n}}\n"
            )),
        }
    }
}

/// Where the upstream Knot of the agent listens: the node namespace's loopback, off the veth.
const UPSTREAM_IP: &str = "127.0.0.1";
const UPSTREAM_PORT: u16 = 5300;
const ZONE: &str = "example.org.";

/// One measured dnsperf run.
#[derive(Debug, Clone, Copy)]
struct Run {
    perf: Dnsperf,
    /// Server process CPU (utime + stime, tick-sampled), ms per 1,000 answers.
    proc_ms_per_1k: f64,
    /// Server threads' exact run time (`schedstat`), ms per 1,000 answers.
    sched_ms_per_1k: f64,
    /// Whole machine (wall × CPUs − idle), ms per 1,000 answers.
    machine_ms_per_1k: f64,
    /// Cache hits and misses counted during the run (agent only).
    hits: Option<(u64, u64)>,
    idle_busy: f64,
}

/// The median figures of one server.
#[derive(Debug)]
struct Row {
    server: Server,
    runs: Vec<Run>,
    /// Cache hits and misses after the warm-up, before the measured runs (agent only).
    warm: Option<(u64, u64)>,
    threads: usize,
}

impl Row {
    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn qps(&self) -> f64 {
        self.median(|r| r.perf.qps)
    }
    fn proc_cpu(&self) -> f64 {
        self.median(|r| r.proc_ms_per_1k)
    }
    fn sched_cpu(&self) -> f64 {
        self.median(|r| r.sched_ms_per_1k)
    }
}

/// Entry point of `cargo xtask bench --cache [ARGS]`.
pub fn run(workspace_root: &Path, args: Vec<String>) -> Result<()> {
    let args = CacheArgs::try_parse_from(
        std::iter::once("cargo xtask bench --cache".to_string()).chain(args),
    )
    .unwrap_or_else(|e| e.exit());
    bench(workspace_root, &args)
}

fn bench(root: &Path, args: &CacheArgs) -> Result<()> {
    crate::require_root("bench --cache")?;
    let mut tools = vec!["dnsperf", "knotd", "dig", "curl", "ip"];
    if args.perf.is_some() {
        tools.push("perf");
    }
    for tool in tools {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed (run `cargo xtask setup`)");
        }
    }
    if args.names == 0 {
        bail!("--names must be at least 1");
    }
    let agent = match &args.agent {
        Some(a) => a.clone(),
        None => build_agent(root)?,
    };
    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let workdir = WorkDir::create()?;
    let workdir = workdir.path();
    let queries = workdir.join("queries.txt");
    let body: String = (0..args.names)
        .map(|i| format!("host-{i}.{ZONE} A\n"))
        .collect();
    std::fs::write(&queries, body).with_context(|| format!("writing {}", queries.display()))?;
    let zone_file = workdir.join("example.org.zone");
    std::fs::write(&zone_file, zone_text(args.names))
        .with_context(|| format!("writing {}", zone_file.display()))?;
    let probe_name = format!("host-0.{ZONE}");

    let topo =
        Topology::create_unique("bcache").context("creating the bench network namespaces")?;
    let service = topo.service_ip().to_string();
    let upstream = start_knot(
        &topo,
        workdir,
        "upstream",
        UPSTREAM_IP,
        UPSTREAM_PORT,
        &zone_file,
    )?;
    wait_answer(
        &topo,
        false,
        UPSTREAM_IP,
        UPSTREAM_PORT,
        &probe_name,
        "the upstream Knot",
        || None,
    )?;

    // Rounds: every server once per round, started afresh, so that whatever else slows the
    // machine down over the minutes of the bench weighs on each of them alike.
    let mut rows: Vec<Row> = Server::ALL
        .iter()
        .map(|&server| Row {
            server,
            runs: Vec::new(),
            warm: None,
            threads: 0,
        })
        .collect();
    let rounds = args.repeat.max(1);
    for round in 1..=rounds {
        for row in &mut rows {
            let server = row.server;
            eprintln!(
                "==> bench --cache, round {round}/{rounds}: {}",
                server.label()
            );
            let (proc, warm) = match server {
                Server::Knot => {
                    let p = start_knot(&topo, workdir, "measured", &service, 53, &zone_file)?;
                    wait_answer(&topo, true, &service, 53, &probe_name, "Knot", || None)?;
                    (p, None)
                }
                _ => {
                    let p = start_agent(&topo, &agent, workdir, server)?;
                    wait_answer(&topo, true, &service, 53, &probe_name, "the agent", || {
                        Some(workdir.join(format!("{}.log", server.short())))
                    })?;
                    let warm = warm_up(&topo, &service, &queries, args.names)?;
                    (p, Some(warm))
                }
            };
            let pid = proc.id();
            row.runs.push(measure(&topo, args, server, pid, &queries)?);
            row.warm = row.warm.or(warm);
            row.threads = thread_ids(pid).len();
            if round == rounds {
                if let Some(dir) = &args.perf {
                    profile(&topo, args, server, pid, &queries, dir)?;
                }
            }
            let out = proc.stop(Duration::from_secs(5));
            if let Ok(out) = out {
                if !out.status.success() {
                    eprintln!("warning: {} exited with {}", server.short(), out.status);
                }
            }
        }
    }
    drop(upstream);
    drop(topo);
    println!("{}", table(args, &rows));
    Ok(())
}

/// The zone: SOA, NS and `host-N A 10.1.x.y` for every N.
pub(crate) fn zone_text(names: u32) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL 3600\n@ SOA ns.{ZONE} hostmaster.{ZONE} 1 3600 900 604800 3600\n@ NS ns\nns A 192.0.2.1\n"
    );
    for i in 0..names {
        let _ = writeln!(z, "host-{i} A 10.1.{}.{}", (i >> 8) & 0xff, i & 0xff);
    }
    z
}

/// Starts `knotd` (foreground) in the node namespace on `addr@port`, authoritative for the zone,
/// one worker of each kind.
pub(crate) fn start_knot(
    topo: &Topology,
    workdir: &Path,
    name: &str,
    addr: &str,
    port: u16,
    zone_file: &Path,
) -> Result<Process> {
    let dir = workdir.join(format!("knot-{name}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let d = path_str(&dir)?;
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    pidfile: \"{d}/knot.pid\"\n    listen: {addr}@{port}\n    \
         udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\n\
         database:\n    storage: \"{d}\"\n\n\
         log:\n  - target: stderr\n    any: warning\n\n\
         zone:\n  - domain: {ZONE}\n    file: \"{}\"\n    zonefile-sync: -1\n    journal-content: none\n",
        path_str(zone_file)?
    );
    let conf_path = dir.join("knot.conf");
    std::fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
    let log = dir.join("knotd.log");
    let child = topo
        .command(topo.node_ns(), "knotd", &["-c", path_str(&conf_path)?])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?)
        .spawn()
        .context("starting knotd")?;
    Ok(Process::new(&format!("knotd ({name})"), child))
}

/// Starts the agent (`--no-kernel`) in the node namespace with the set-up's Corefile.
fn start_agent(topo: &Topology, agent: &Path, workdir: &Path, server: Server) -> Result<Process> {
    let corefile = workdir.join(format!("Corefile.{}", server.short()));
    std::fs::write(&corefile, server.corefile().unwrap_or_default())
        .with_context(|| format!("writing {}", corefile.display()))?;
    let log = workdir.join(format!("{}.log", server.short()));
    let service = topo.service_ip().to_string();
    let child = topo
        .command(
            topo.node_ns(),
            path_str(agent)?,
            &[
                "--no-kernel",
                "--service-ip",
                &service,
                "--corefile",
                path_str(&corefile)?,
                "--metrics-addr",
                METRICS_ADDR,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    Ok(Process::new("dns-agent", child))
}

/// Waits (up to 20 s) until `name A` at `addr:port` gets a NOERROR answer, asked from the pod
/// (`from_pod`) or from the node namespace.
pub(crate) fn wait_answer(
    topo: &Topology,
    from_pod: bool,
    addr: &str,
    port: u16,
    name: &str,
    who: &str,
    log: impl Fn() -> Option<PathBuf>,
) -> Result<()> {
    let server = format!("@{addr}");
    let port = port.to_string();
    let dig = [
        "+tries=1", "+time=1", "+short", &server, "-p", &port, name, "A",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = if from_pod {
            topo.exec_in_pod("dig", &dig)?
        } else {
            topo.exec_in_node("dig", &dig)?
        };
        if out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let text = log()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            bail!(
                "{who} did not answer {name} A at {addr}:{port} within 20 s: {}",
                text.trim()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Asks every name once (so the cache holds them all), then checks that a second pass is all hits.
/// Returns (hits, misses) after the warm-up.
fn warm_up(topo: &Topology, service: &str, queries: &Path, names: u32) -> Result<(u64, u64)> {
    for pass in 0..2 {
        let out = topo.exec_in_pod(
            "dnsperf",
            &[
                "-s",
                service,
                "-d",
                path_str(queries)?,
                "-n",
                "1",
                "-q",
                "50",
                "-t",
                "2",
            ],
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let perf = parse_dnsperf(&stdout)
            .with_context(|| format!("reading dnsperf's warm-up report:\n{stdout}"))?;
        if perf.completed < u64::from(names) {
            bail!(
                "warm-up pass {pass}: {} of {names} names answered:\n{stdout}",
                perf.completed
            );
        }
    }
    let (hits, misses) = cache_counters(topo)?;
    eprintln!("    warm-up: coredns_cache_hits_total {hits}, coredns_cache_misses_total {misses}");
    if misses > u64::from(names) {
        eprintln!(
            "    warning: {misses} misses for {names} names: some entries did not stay in the cache"
        );
    }
    Ok((hits, misses))
}

/// Sums of `coredns_cache_hits_total` and `coredns_cache_misses_total` over their labels.
fn cache_counters(topo: &Topology) -> Result<(u64, u64)> {
    let out = topo.exec_in_node("curl", &["-sf", &format!("http://{METRICS_ADDR}/metrics")])?;
    if !out.status.success() {
        bail!("cannot read the agent's metrics at {METRICS_ADDR}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sum = |metric: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let hits = sum("coredns_cache_hits_total");
    if !text.contains("coredns_cache_") {
        bail!("the agent's metrics have no coredns_cache_* counters");
    }
    Ok((hits, sum("coredns_cache_misses_total")))
}

/// Thread ids of process `pid`.
fn thread_ids(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU of process `pid`: (utime + stime in ms from /proc/<pid>/stat, sum of its threads'
/// exact run time in ms from /proc/<pid>/task/*/schedstat).
fn proc_cpu_ms(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .context("no utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .context("no stime")?;
    let ticks_ms = (utime + stime) as f64 * 1000.0 / clock_ticks() as f64;
    let mut sched_ns: u64 = 0;
    for tid in thread_ids(pid) {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) {
            sched_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok((ticks_ms, sched_ns as f64 / 1e6))
}

/// dnsperf's arguments for a measured run: the highest-rate settings of `cargo xtask bench`.
/// One dnsperf run at the highest rate, with the server's and the machine's CPU around it.
fn measure(
    topo: &Topology,
    args: &CacheArgs,
    server: Server,
    pid: u32,
    queries: &Path,
) -> Result<Run> {
    let service = topo.service_ip().to_string();
    let dp = args.dnsperf.command_args(&service, queries)?;
    let dp: Vec<&str> = dp.iter().map(String::as_str).collect();
    let idle_busy = wait_quiet()?;
    if idle_busy > 0.05 {
        eprintln!(
            "    warning: the machine was {:.0} % busy before this run; its CPU figures include that work",
            idle_busy * 100.0
        );
    }
    let is_agent = server != Server::Knot;
    let cache_before = if is_agent {
        Some(cache_counters(topo)?)
    } else {
        None
    };
    let proc_before = proc_cpu_ms(pid)?;
    let cpu_before = CpuSample::now()?;
    let out = topo
        .exec_in_pod("dnsperf", &dp)
        .context("running dnsperf")?;
    let cpu_after = CpuSample::now()?;
    let proc_after = proc_cpu_ms(pid)?;
    let cache_after = if is_agent {
        Some(cache_counters(topo)?)
    } else {
        None
    };
    let (stdout, perf) = dnsperf_report(&dp, &out, &format!("from {}", server.short()))?;
    if !stdout.contains("NOERROR") || stdout.contains("SERVFAIL") || stdout.contains("NXDOMAIN") {
        eprintln!("    warning: not every answer was NOERROR:\n{stdout}");
    }
    let per_1k = |ms: f64| ms / perf.completed as f64 * 1000.0;
    let (machine_ms, _) = cpu_after.busy_ms_since(&cpu_before);
    let proc_ms = proc_after.0 - proc_before.0;
    let sched_ms = proc_after.1 - proc_before.1;
    let hits = match (cache_before, cache_after) {
        (Some((h0, m0)), Some((h1, m1))) => Some((h1 - h0, m1 - m0)),
        _ => None,
    };
    eprintln!(
        "    {}: {:.0} answers/s, {} answers, avg latency {:.0} µs, server CPU {:.2} s (utime+stime) / {:.2} s (schedstat), machine busy {:.2} CPU-s{}",
        server.short(),
        perf.qps,
        perf.completed,
        perf.avg_latency_s * 1e6,
        proc_ms / 1000.0,
        sched_ms / 1000.0,
        machine_ms / 1000.0,
        hits.map_or(String::new(), |(h, m)| format!(
            ", cache hits {h}, misses {m} during the run"
        ))
    );
    if let Some((_, m)) = hits {
        if m > 0 {
            eprintln!("    warning: {m} cache misses during a measured run");
        }
    }
    Ok(Run {
        perf,
        proc_ms_per_1k: per_1k(proc_ms),
        sched_ms_per_1k: per_1k(sched_ms),
        machine_ms_per_1k: per_1k(machine_ms),
        hits,
        idle_busy,
    })
}

/// One more dnsperf run with `perf record -g -p <pid>` on the server; prints the top of the report.
fn profile(
    topo: &Topology,
    args: &CacheArgs,
    server: Server,
    pid: u32,
    queries: &Path,
    dir: &Path,
) -> Result<()> {
    let data = dir.join(format!("perf-{}.data", server.short()));
    let secs = args.dnsperf.duration.to_string();
    let mut rec = Command::new("perf")
        .args([
            "record",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
            path_str(&data)?,
            "--",
            "sleep",
            &secs,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    thread::sleep(Duration::from_millis(300));
    let service = topo.service_ip().to_string();
    let dp = args.dnsperf.command_args(&service, queries)?;
    let dp: Vec<&str> = dp.iter().map(String::as_str).collect();
    let out = topo.exec_in_pod("dnsperf", &dp)?;
    let status = rec.wait().context("waiting for perf record")?;
    if !status.success() {
        bail!("perf record on {} failed ({status})", server.short());
    }
    let perf = parse_dnsperf(&String::from_utf8_lossy(&out.stdout)).ok();
    let report = Command::new("perf")
        .args([
            "report",
            "-i",
            path_str(&data)?,
            "--no-children",
            "--stdio",
            "--percent-limit",
            "1",
            "-g",
            "none",
        ])
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&report.stdout);
    eprintln!(
        "==> perf report --no-children of {} ({}; {:.0} answers/s under perf):",
        server.short(),
        data.display(),
        perf.map_or(0.0, |p| p.qps)
    );
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(40)
    {
        eprintln!("{line}");
    }
    Ok(())
}

/// The Markdown report: one table, the verdict against the target, and how it was measured.
fn table(args: &CacheArgs, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| Server (on the service address) | Answers/s | Lost | Avg latency | Server CPU ms / 1,000 answers (utime+stime) | (schedstat) | Machine CPU ms / 1,000 answers | Server threads | Cache hits / misses in the runs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let hits = match r.runs.iter().map(|x| x.hits).collect::<Option<Vec<_>>>() {
            Some(v) => {
                let (h, m) = v.iter().fold((0, 0), |(a, b), (h, m)| (a + h, b + m));
                format!("{h} / {m}")
            }
            None => "—".to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} % | {:.0} µs | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.server.label(),
            r.qps(),
            r.median(|x| x.perf.lost_pct),
            r.median(|x| x.perf.avg_latency_s) * 1e6,
            r.proc_cpu(),
            r.sched_cpu(),
            r.median(|x| x.machine_ms_per_1k),
            r.threads,
            hits
        );
    }
    let _ = writeln!(s);
    if let Some(knot) = rows.iter().find(|r| r.server == Server::Knot) {
        for r in rows.iter().filter(|r| r.server != Server::Knot) {
            let qps_ok = r.qps() >= knot.qps();
            let cpu_ok = r.proc_cpu() <= knot.proc_cpu();
            let _ = writeln!(
                s,
                "{}: {:.2}× Knot's queries/s ({}), {:.2}× Knot's server CPU per answer ({}): target {}.",
                r.server.label(),
                r.qps() / knot.qps(),
                if qps_ok { "≥ met" } else { "≥ missed" },
                r.proc_cpu() / knot.proc_cpu(),
                if cpu_ok { "≤ met" } else { "≤ missed" },
                if qps_ok && cpu_ok { "**met**" } else { "**missed**" }
            );
        }
        for r in rows.iter().filter_map(|r| r.warm.map(|w| (r.server, w))) {
            let _ = writeln!(
                s,
                "\n{} after the warm-up: coredns_cache_hits_total {}, coredns_cache_misses_total {}.",
                r.0.label(),
                r.1 .0,
                r.1 .1
            );
        }
    }
    let _ = writeln!(s);
    let noisy = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(|x| x.idle_busy))
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "Median of {} rounds per line; in each round every server is started afresh and measured once, one after \
         the other (so that drifts of the machine weigh on all alike). dnsperf in the pod namespace, \
         {} s per run, `-c {} -T {} -q {} -t 1` (the highest-rate settings of `cargo xtask bench`), cycling over \
         {} names `host-N.{ZONE}` A; each server in the node namespace on the service address {}:53. \
         Knot DNS {} is authoritative for `{ZONE}` with `udp-workers: 1`, `tcp-workers: 1`, \
         `background-workers: 1`. The agent runs with `--no-kernel` and forwards to a second Knot on \
         {UPSTREAM_IP}:{UPSTREAM_PORT} in the node namespace, asked only during the warm-up (two passes over the \
         names before the measured runs). Server CPU is the process's utime + stime (/proc/<pid>/stat) over \
         answers; \"schedstat\" is the exact run time of its threads; machine CPU is the whole machine's busy time \
         (wall × CPUs − idle, dnsperf and softirq work included), as `cargo xtask bench` measures it.",
        args.repeat.max(1),
        args.dnsperf.duration,
        args.dnsperf.clients,
        args.dnsperf.threads,
        args.dnsperf.outstanding,
        args.names,
        crate::netns::SERVICE_IP,
        knot_version(),
    );
    let _ = writeln!(
        s,
        "\nMachine: {} CPUs, kernel {}; at most {:.0} % busy with other work in the second before a run.",
        cpus(),
        kernel_release(),
        noisy * 100.0
    );
    s
}

/// `knotd -V`'s version, e.g. `3.2.6`.
fn knot_version() -> String {
    Command::new("knotd")
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .last()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_holds_every_name() {
        let z = zone_text(300);
        assert!(z.contains("host-0 A 10.1.0.0\n"));
        assert!(z.contains("host-299 A 10.1.1.43\n"));
        assert_eq!(z.lines().filter(|l| l.starts_with("host-")).count(), 300);
    }

    #[test]
    fn corefiles_forward_to_the_upstream() {
        for s in [Server::AgentCache, Server::AgentKubeadm] {
            let c = s.corefile().expect("agent set-ups have a Corefile");
            assert!(
                c.contains("cache 3600") && c.contains("forward . 127.0.0.1:5300"),
                "{c}"
            );
        }
        assert!(Server::Knot.corefile().is_none());
    }
}
