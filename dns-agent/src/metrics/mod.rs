//! Prometheus text metrics: userspace counters (atomics), kernel counters read at scrape time, and
//! a minimal HTTP/1.1 server for `GET /metrics` and `GET /ready`.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod registry;

use dns_common::stats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Kernel counters, indexed by `dns_common::stats` reasons.
pub type KernelCounters = [u64; stats::COUNT as usize];

/// Reads the kernel counters at scrape time; `Err` carries why they could not be read.
pub type KernelStatsFn = Arc<dyn Fn() -> Result<KernelCounters, String> + Send + Sync>;

/// RCODEs counted by name; any other goes to `OTHER`.
const RCODES: [(u16, &str); 8] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
    (u16::MAX, "OTHER"),
];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST_HEAD: usize = 8192;

/// Counters the userspace side updates.
#[derive(Debug, Default)]
pub struct Metrics {
    responses: [AtomicU64; RCODES.len()],
    /// Of those, cache hits written from bytes (`Router::answer_wire`).
    from_bytes: AtomicU64,
    records_a: AtomicU64,
    kernel_attachments: AtomicU64,
    /// Whether the records are complete (`GET /ready`); false until [`Metrics::set_ready`].
    ready: AtomicBool,
    /// What the plugins register (CoreDNS's metric names), rendered after the agent's own.
    pub registry: registry::Registry,
}

impl Metrics {
    /// Counts one userspace response with this (12-bit) RCODE.
    pub fn count_response(&self, rcode: u16) {
        let i = RCODES
            .iter()
            .position(|(c, _)| *c == rcode)
            .unwrap_or(RCODES.len() - 1);
        self.responses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one userspace response that was a cache hit written from bytes (also counted
    /// by [`Metrics::count_response`]).
    pub fn count_from_bytes(&self) {
        self.from_bytes.fetch_add(1, Ordering::Relaxed);
    }

    /// Userspace responses counted so far with this RCODE name (`"NOERROR"`, ...).
    pub fn responses(&self, rcode: &str) -> u64 {
        RCODES
            .iter()
            .position(|(_, n)| *n == rcode)
            .map_or(0, |i| self.responses[i].load(Ordering::Relaxed))
    }

    pub fn set_records_a(&self, n: usize) {
        self.records_a.store(n as u64, Ordering::Relaxed);
    }

    /// Marks the agent ready (every source listed completely) or not: `GET /ready` answers 200
    /// or 503.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_kernel_attachments(&self, n: usize) {
        self.kernel_attachments.store(n as u64, Ordering::Relaxed);
    }

    /// The exposition text. `kernel` is `None` when no kernel program runs (its counters are 0).
    pub fn render(&self, kernel: Option<&KernelCounters>) -> String {
        let zero = [0u64; stats::COUNT as usize];
        let k = kernel.unwrap_or(&zero);
        let mut out = String::with_capacity(2048);
        single(
            &mut out,
            "dns_agent_kernel_responses_total",
            "counter",
            "Queries answered by the kernel program.",
            k[stats::ANSWERED as usize],
        );
        header(
            &mut out,
            "dns_agent_kernel_passed_total",
            "counter",
            "Packets the kernel program passed up the stack, by reason.",
        );
        for (i, reason) in stats::REASON_NAMES.iter().enumerate() {
            if i != stats::ANSWERED as usize {
                let _ = writeln!(
                    out,
                    "dns_agent_kernel_passed_total{{reason=\"{reason}\"}} {}",
                    k[i]
                );
            }
        }
        single(
            &mut out,
            "dns_agent_kernel_attachments",
            "gauge",
            "Interfaces the kernel program is attached to.",
            self.kernel_attachments.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "dns_agent_userspace_responses_total",
            "counter",
            "Responses sent by the userspace listeners, by RCODE.",
        );
        for (i, (_, name)) in RCODES.iter().enumerate() {
            let n = self.responses[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "dns_agent_userspace_responses_total{{rcode=\"{name}\"}} {n}"
            );
        }
        single(
            &mut out,
            "dns_agent_userspace_cache_hits_from_bytes_total",
            "counter",
            "Userspace responses that were cache hits written from their stored bytes, without decoding the query.",
            self.from_bytes.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "dns_agent_records",
            "gauge",
            "Records served, by type.",
        );
        let _ = writeln!(
            out,
            "dns_agent_records{{type=\"A\"}} {}",
            self.records_a.load(Ordering::Relaxed)
        );
        self.registry.render(&mut out);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric of one series without labels.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source} (change --metrics-addr)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The bound metrics endpoint.
pub struct MetricsServer {
    listener: TcpListener,
}

/// A running metrics endpoint; [`MetricsHandle::stop`] ends it.
pub struct MetricsHandle {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(MetricsServer { listener })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until stopped. `kernel` reads the kernel counters at each scrape.
    pub fn spawn(self, metrics: Arc<Metrics>, kernel: Option<KernelStatsFn>) -> MetricsHandle {
        let (shutdown, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = self.listener.accept() => {
                        while conns.try_join_next().is_some() {}
                        match accepted {
                            Ok((stream, _)) => {
                                let metrics = Arc::clone(&metrics);
                                let kernel = kernel.clone();
                                conns.spawn(async move {
                                    if let Err(e) = serve(stream, &metrics, kernel.as_ref()).await {
                                        log::debug!("metrics connection: {e}");
                                    }
                                });
                            }
                            Err(e) => {
                                log::warn!("metrics accept: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            }
            conns.shutdown().await;
        });
        MetricsHandle { shutdown, task }
    }
}

impl MetricsHandle {
    /// Stops accepting, closes open connections, and waits until every task ended.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// One request, one response, then the connection closes.
async fn serve(
    mut stream: TcpStream,
    metrics: &Metrics,
    kernel: Option<&KernelStatsFn>,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_REQUEST_HEAD {
                break;
            }
        }
        Ok::<(), io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read_head)
        .await
        .map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
        })??;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let counters = kernel.and_then(|read| match read() {
                Ok(c) => Some(c),
                Err(e) => {
                    log::warn!("cannot read kernel counters: {e}");
                    None
                }
            });
            ("200 OK", metrics.render(counters.as_ref()))
        }
        // The `health` plugin's endpoint: the process is up and serving.
        ("GET" | "HEAD", "/health") => ("200 OK", "OK".to_owned()),
        ("GET" | "HEAD", "/ready") if metrics.ready() => ("200 OK", "ready\n".to_owned()),
        ("GET" | "HEAD", "/ready") => (
            "503 Service Unavailable",
            "not ready: the cluster objects are not listed yet\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: the metrics are at /metrics, readiness at /ready, health at /health\n"
                .to_owned(),
        ),
        _ => ("405 Method Not Allowed", "only GET is served\n".to_owned()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_series() {
        let m = Metrics::default();
        m.count_response(0);
        m.count_response(0);
        m.count_response(3);
        m.count_response(16);
        m.count_response(9);
        m.set_records_a(6);
        m.count_from_bytes();
        let mut k = [0u64; stats::COUNT as usize];
        k[stats::ANSWERED as usize] = 42;
        k[stats::MISS as usize] = 7;
        let text = m.render(Some(&k));
        for line in [
            "dns_agent_kernel_responses_total 42",
            "dns_agent_kernel_passed_total{reason=\"miss\"} 7",
            "dns_agent_kernel_passed_total{reason=\"helper_failed\"} 0",
            "dns_agent_userspace_responses_total{rcode=\"NOERROR\"} 2",
            "dns_agent_userspace_responses_total{rcode=\"NXDOMAIN\"} 1",
            "dns_agent_userspace_responses_total{rcode=\"BADVERS\"} 1",
            "dns_agent_userspace_responses_total{rcode=\"OTHER\"} 1",
            "dns_agent_records{type=\"A\"} 6",
            "dns_agent_userspace_cache_hits_from_bytes_total 1",
            "# TYPE dns_agent_kernel_passed_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("reason=\"answered\""),
            "answered is the responses counter"
        );
        assert_eq!(m.responses("NOERROR"), 2);
    }
}
