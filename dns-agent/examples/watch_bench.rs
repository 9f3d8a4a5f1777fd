//! Watch-path bench (`cargo xtask bench --watch`): initial sync of a large cluster and the latency of new services.
//!
//! The fake API server of the tests runs in a child process (this program with `--serve-api`),
//! so the resident memory read from `/proc/self/status` is the agent's alone. As root the
//! program first moves into a fresh network namespace, where the kernel program may be
//! attached to `lo` without touching the machine.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use dns_agent::app::App;
use dns_agent::cli::{
    AttachModeArg, Config, KernelConfig, KernelProgramArg, SnapshotSource,
    DEFAULT_KERNEL_MAP_ENTRIES,
};
use dns_agent::k8s::ApiSource;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Options of the watch-path bench.
#[derive(Parser, Debug)]
#[command(
    name = "watch_bench",
    about = "Initial sync and change latency of the watch path"
)]
struct Args {
    /// Services in the API before the agent starts (half ClusterIP, half headless).
    #[arg(long, default_value_t = 100_000)]
    services: u32,
    /// Endpoint addresses, spread over the headless services' EndpointSlices.
    #[arg(long, default_value_t = 200_000)]
    endpoints: u32,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 100)]
    namespaces: u32,
    /// Services created one at a time after the initial sync.
    #[arg(long, default_value_t = 1_000)]
    changes: u32,
    /// Kernel path: `attach` (program on `lo` of a private network namespace), `load` (maps
    /// filled, nothing attached: answers from userspace) or `off`.
    #[arg(long, value_enum, default_value_t = KernelArg::Attach)]
    kernel: KernelArg,
    /// Seconds to wait for the agent to be ready before giving up.
    #[arg(long, default_value_t = 120)]
    ready_timeout: u64,
    /// Internal: serve the fake API server (the child process).
    #[arg(long, hide = true)]
    serve_api: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KernelArg {
    Attach,
    Load,
    Off,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The agent's warnings and errors (a failed kernel map sync among them) on stderr.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if args.serve_api {
        return serve_api(&args);
    }
    if args.kernel == KernelArg::Attach {
        private_netns()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(bench(&args))
}

// ---- the child: the fake API server, fed on stdin ----

fn serve_api(args: &Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let started = Instant::now();
    let api = rt.block_on(apiserver::FakeApi::start());
    for ns in 0..args.namespaces {
        api.apply(namespace(&format!("ns-{ns}")));
    }
    let headless = args.services / 2;
    let clusterip = args.services - headless;
    let per = if headless == 0 {
        0
    } else {
        args.endpoints.div_ceil(headless)
    };
    let mut addr = 0u32;
    for i in 0..clusterip {
        let ns = format!("ns-{}", i % args.namespaces);
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 10 + i);
        api.apply(service(&ns, &format!("svc-{i}"), &ip.to_string()));
    }
    for i in 0..headless {
        let ns = format!("ns-{}", i % args.namespaces);
        let name = format!("hl-{i}");
        api.apply(service(&ns, &name, "None"));
        let n = per.min(args.endpoints - addr);
        let addrs: Vec<String> = (0..n)
            .map(|k| {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 1 + addr + k).to_string()
            })
            .collect();
        addr += n;
        api.apply(endpoint_slice(&ns, &format!("{name}-abcde"), &name, &addrs));
    }
    // The history is not needed: watches start from the lists' resourceVersion.
    api.expire();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "url {} {:.3}",
        api.url(),
        started.elapsed().as_secs_f64()
    )?;
    out.flush()?;
    drop(out);
    // `svc NS NAME IP` per line; the end of stdin ends the server.
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["svc", ns, name, ip] => api.apply(service(ns, name, ip)),
            _ => bail!("fake API server: unknown command {line:?}"),
        }
    }
    Ok(())
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}})
}

fn endpoint_slice(ns: &str, name: &str, svc: &str, addrs: &[String]) -> Value {
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

// ---- the parent: the agent and the measurements ----

/// A private network namespace with `lo` up (before any thread exists, so all inherit it).
fn private_netns() -> Result<()> {
    // SAFETY: plain syscall; no other thread exists yet.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET): {} (run as root, or use --kernel load|off)",
            std::io::Error::last_os_error()
        );
    }
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running `ip link set lo up`")?;
    if !status.success() {
        bail!("`ip link set lo up` failed ({status})");
    }
    Ok(())
}

struct ApiChild {
    child: Child,
    stdin: ChildStdin,
    url: String,
    load_secs: f64,
}

impl Drop for ApiChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_api(args: &Args) -> Result<ApiChild> {
    let exe = std::env::current_exe().context("this program's path")?;
    let mut child = Command::new(exe)
        .args([
            "--serve-api",
            "--services",
            &args.services.to_string(),
            "--endpoints",
            &args.endpoints.to_string(),
            "--namespaces",
            &args.namespaces.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the fake API server")?;
    let stdin = child.stdin.take().context("child stdin")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the fake API server's address")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let (url, load_secs) = match f.as_slice() {
        ["url", url, secs] => (url.to_string(), secs.parse().unwrap_or(0.0)),
        _ => bail!("the fake API server said {line:?}"),
    };
    Ok(ApiChild {
        child,
        stdin,
        url,
        load_secs,
    })
}

/// (VmRSS, VmHWM) in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn bench(args: &Args) -> Result<()> {
    if args.namespaces == 0 {
        bail!("--namespaces must be at least 1");
    }
    let mut api = spawn_api(args)?;
    let (rss_before, _) = memory();

    let mut c = Config::userspace(SnapshotSource::Embedded, vec![Ipv4Addr::LOCALHOST.into()]);
    c.metrics_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    c.api = Some(ApiSource {
        kubeconfig: None,
        apiserver: Some(api.url.clone()),
        ..Default::default()
    });
    c.kernel = match args.kernel {
        KernelArg::Off => None,
        KernelArg::Load => Some(KernelConfig {
            interfaces: Vec::new(),
            mode: AttachModeArg::Tc,
            program: KernelProgramArg::Answer,
            map_entries: DEFAULT_KERNEL_MAP_ENTRIES,
        }),
        KernelArg::Attach => Some(KernelConfig {
            interfaces: vec!["lo".into()],
            mode: AttachModeArg::Tc,
            program: KernelProgramArg::Answer,
            map_entries: DEFAULT_KERNEL_MAP_ENTRIES,
        }),
    };

    let t0 = Instant::now();
    let app = App::start(c).await.context("agent start")?;
    let metrics = app.metrics();
    while !metrics.ready() {
        if t0.elapsed() > Duration::from_secs(args.ready_timeout) {
            bail!(
                "the agent is not ready {} s after its start (see its errors above)",
                args.ready_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sync = t0.elapsed();
    let (rss, hwm) = memory();
    let ready_http = http_get(&app, "/ready").await?;
    if !ready_http.starts_with("HTTP/1.1 200") {
        bail!("/ready: {}", ready_http.lines().next().unwrap_or(""));
    }
    let a_records = app.records().load().a_count();
    let (code, got) = resolve(&app, "svc-0.ns-0.svc.cluster.local.").await?;
    if code != ResponseCode::NoError || got != [Ipv4Addr::new(10, 96, 0, 10)] {
        bail!("svc-0.ns-0 after the sync: {code:?} {got:?}");
    }

    let where_ = match args.kernel {
        KernelArg::Attach => "kernel maps filled, program attached to lo (private netns)",
        KernelArg::Load => "kernel maps filled, program not attached",
        KernelArg::Off => "userspace records only",
    };
    println!("### Watch path: initial sync ({where_})");
    println!();
    println!(
        "- cluster: {} services ({} ClusterIP, {} headless) in {} namespaces, {} endpoint addresses in {} EndpointSlices; {} A names built",
        args.services,
        args.services - args.services / 2,
        args.services / 2,
        args.namespaces,
        args.endpoints,
        args.services / 2,
        a_records
    );
    println!(
        "- fake API server loaded in {:.2} s (child process, not counted below)",
        api.load_secs
    );
    println!(
        "- App::start to ready (every kind listed, records built, {}): **{:.2} s**",
        if args.kernel == KernelArg::Off {
            "userspace records swapped in"
        } else {
            "kernel DNS_A/DNS_AAAA maps synced, then userspace"
        },
        sync.as_secs_f64()
    );
    println!(
        "- agent memory after the sync: VmRSS **{rss:.1} MB**, VmHWM **{hwm:.1} MB** (process before App::start: {rss_before:.1} MB)"
    );

    // ---- change latency ----
    let kernel_before = kernel_responses(&app).await?;
    let mut lat = Vec::with_capacity(args.changes as usize);
    let mut queries = 0u64;
    for i in 0..args.changes {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + 1 + i);
        let name = format!("new-{i}");
        let fqdn = format!("{name}.ns-0.svc.cluster.local.");
        let t = Instant::now();
        writeln!(api.stdin, "svc ns-0 {name} {ip}").context("writing to the fake API server")?;
        api.stdin.flush()?;
        loop {
            queries += 1;
            let (code, got) = resolve(&app, &fqdn).await?;
            if code == ResponseCode::NoError && got == [ip] {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("{fqdn}: still {code:?} {got:?} after 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let kernel_mid = kernel_responses(&app).await?;
    // Every new name once more: how many the kernel answers now.
    for i in 0..args.changes {
        let fqdn = format!("new-{i}.ns-0.svc.cluster.local.");
        resolve(&app, &fqdn).await?;
    }
    let kernel_after = kernel_responses(&app).await?;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let idx = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        lat.get(idx).copied().unwrap_or(0.0)
    };
    println!();
    println!(
        "### Watch path: change latency ({} services created one at a time)",
        args.changes
    );
    println!();
    println!(
        "- from the write to the fake API server to the first correct UDP A answer (polled every ~0.2 ms): p50 **{:.2} ms**, p99 **{:.2} ms**, max **{:.2} ms**",
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    match args.kernel {
        KernelArg::Attach => println!(
            "- answered by the kernel program: {} of {} polling queries; afterwards {} of {} new names (the kernel map is written before userspace, so each name was in the map when first answered)",
            kernel_mid - kernel_before,
            queries,
            kernel_after - kernel_mid,
            args.changes
        ),
        KernelArg::Load => println!("- answers from userspace (program not attached); the kernel map is written before userspace"),
        KernelArg::Off => println!("- userspace only"),
    }
    let (rss, hwm) = memory();
    println!("- agent memory at the end: VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB");
    app.stop().await;
    drop(api);
    Ok(())
}

/// (RCODE, sorted A addresses) for `name` A over UDP.
async fn resolve(app: &App, name: &str) -> Result<(ResponseCode, Vec<Ipv4Addr>)> {
    let mut msg = Message::new();
    msg.set_id(0x5151)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    msg.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let bytes = msg.to_vec()?;
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let server = app.dns_addrs()[0];
    for _ in 0..20 {
        sock.send_to(&bytes, server).await?;
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
        {
            let resp = Message::from_vec(&buf[..n])?;
            let mut addrs: Vec<Ipv4Addr> = resp
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            addrs.sort();
            return Ok((resp.response_code(), addrs));
        }
    }
    bail!("no answer for {name} from {server}")
}

/// The response to `GET path` on the metrics listener (head and body).
async fn http_get(app: &App, path: &str) -> Result<String> {
    let addr = app.metrics_addr().context("metrics listener")?;
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn kernel_responses(app: &App) -> Result<u64> {
    let text = http_get(app, "/metrics").await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("dns_agent_kernel_responses_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
