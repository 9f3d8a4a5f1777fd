//! UDP and TCP DNS listeners on every service address: the slow path that answers what the kernel
//! passes up.

pub mod answer;
mod batch;
pub mod wire;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use futures::FutureExt;

use crate::metrics::Metrics;
use crate::plugin::{Block, Router, SharedRouter};
use crate::records::SharedRecords;
use answer::Transport;

/// Most TCP client connections served at once; further ones are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 512;
/// Attempts at finding a port free for UDP and TCP on every address when port 0 is asked.
const FREE_PORT_ATTEMPTS: usize = 20;

/// Where and how to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// IPv4 and IPv6 addresses (an IPv6 socket is IPv6-only).
    pub addrs: Vec<IpAddr>,
    /// 0: a free port, the same for UDP and TCP on every address.
    pub port: u16,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
}

/// Why the listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {proto} {addr}: {source}{hint}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    #[error("cannot start the UDP listener on {addr}: {source}")]
    Thread {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("no service address to listen on (give --service-ip)")]
    NoAddress,
    #[error(
        "no free port for UDP and TCP on every service address after {FREE_PORT_ATTEMPTS} attempts"
    )]
    NoFreePort,
}

fn bind_error(proto: &'static str, addr: SocketAddr, source: io::Error) -> ServerError {
    let hint = match source.kind() {
        io::ErrorKind::AddrNotAvailable => {
            " (the address must be on an interface, e.g. `ip addr add IP/32 dev lo`, or for IPv6 \
             `ip addr add IP/128 dev lo nodad`)"
        }
        io::ErrorKind::PermissionDenied => " (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        io::ErrorKind::AddrInUse => {
            " (another DNS server is running there? pick another --dns-port)"
        }
        _ => "",
    };
    ServerError::Bind {
        proto,
        addr,
        source,
        hint,
    }
}

/// A socket of `addr`'s family and `kind`, IPv6-only for an IPv6 address (it never takes
/// IPv4-mapped traffic), non-blocking.
fn socket_for(addr: SocketAddr, kind: socket2::Type) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A UDP socket bound to `addr` (must run inside the runtime).
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket_for(addr, socket2::Type::DGRAM)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr`, with SO_REUSEADDR and a backlog of 1024 as tokio's `bind` gives.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket_for(addr, socket2::Type::STREAM)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Bound sockets, not yet serving.
pub struct DnsServer {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    port: u16,
    tcp_idle_timeout: Duration,
}

/// Running listeners; [`ServerHandle::stop`] ends them.
pub struct ServerHandle {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    udp: Vec<UdpListener>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address (on one common port when `port` is 0).
    pub async fn bind(cfg: &ServerConfig) -> Result<Self, ServerError> {
        if cfg.addrs.is_empty() {
            return Err(ServerError::NoAddress);
        }
        if cfg.port != 0 {
            return Self::bind_port(cfg, cfg.port).await;
        }
        for _ in 0..FREE_PORT_ATTEMPTS {
            let Some(first) = cfg.addrs.first() else {
                break;
            };
            let probe = UdpSocket::bind((*first, 0))
                .await
                .map_err(|e| bind_error("UDP", SocketAddr::from((*first, 0)), e))?;
            let port = probe
                .local_addr()
                .map_err(|e| bind_error("UDP", SocketAddr::from((*first, 0)), e))?
                .port();
            drop(probe);
            match Self::bind_port(cfg, port).await {
                Ok(server) => return Ok(server),
                Err(ServerError::Bind { source, .. })
                    if source.kind() == io::ErrorKind::AddrInUse =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Err(ServerError::NoFreePort)
    }

    async fn bind_port(cfg: &ServerConfig, port: u16) -> Result<Self, ServerError> {
        let mut udp = Vec::with_capacity(cfg.addrs.len());
        let mut tcp = Vec::with_capacity(cfg.addrs.len());
        for ip in &cfg.addrs {
            let addr = SocketAddr::from((*ip, port));
            udp.push(bind_udp(addr).map_err(|e| bind_error("UDP", addr, e))?);
            tcp.push(bind_tcp(addr).map_err(|e| bind_error("TCP", addr, e))?);
        }
        Ok(DnsServer {
            udp,
            tcp,
            port,
            tcp_idle_timeout: cfg.tcp_idle_timeout,
        })
    }

    /// The port every listener uses.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// One address per service IP (UDP and TCP share it).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Starts answering from `records` alone: one block for their zones, the `kubernetes`
    /// plugin as its whole chain.
    pub fn spawn(
        self,
        records: SharedRecords,
        metrics: Arc<Metrics>,
    ) -> Result<ServerHandle, ServerError> {
        let zones = records.load().zones.clone();
        let plugins: Vec<Arc<dyn crate::plugin::Plugin>> = vec![Arc::new(
            crate::plugin::kubernetes::Kubernetes::new(records),
        )];
        let router = Router::new(vec![Block { zones, plugins }]);
        self.serve(Arc::new(std::sync::RwLock::new(Arc::new(router))), metrics)
    }

    /// Starts answering through `router`'s server blocks (read anew for every query, so a
    /// replaced router takes over at once and queries in flight finish on the old one).
    /// Fails only when a UDP listener's thread cannot be created (nothing is left running).
    pub fn serve(
        self,
        router: SharedRouter,
        metrics: Arc<Metrics>,
    ) -> Result<ServerHandle, ServerError> {
        let (shutdown, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let runtime = tokio::runtime::Handle::current();
        let mut udp: Vec<UdpListener> = Vec::with_capacity(self.udp.len());
        for socket in self.udp {
            let addr = socket
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            match UdpListener::start(
                socket,
                Arc::clone(&router),
                Arc::clone(&metrics),
                runtime.clone(),
            ) {
                Ok(listener) => udp.push(listener),
                Err(source) => {
                    for started in &udp {
                        started.signal_stop();
                    }
                    return Err(ServerError::Thread { addr, source });
                }
            }
        }
        for listener in self.tcp {
            tasks.spawn(serve_tcp(
                listener,
                Arc::clone(&router),
                Arc::clone(&metrics),
                stopped.clone(),
                self.tcp_idle_timeout,
            ));
        }
        Ok(ServerHandle {
            shutdown,
            tasks,
            udp,
        })
    }
}

impl ServerHandle {
    /// Stops every listener, closes TCP connections, and waits until all tasks ended.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for udp in self.udp.drain(..) {
            udp.stop().await;
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for ServerHandle {
    /// A handle dropped without [`ServerHandle::stop`] still ends its UDP threads (its tasks
    /// end with their `JoinSet`).
    fn drop(&mut self) {
        for udp in &self.udp {
            udp.signal_stop();
        }
    }
}

/// How long a UDP listener's thread waits for a datagram before it looks whether it must stop
/// (stopping also wakes it at once).
const UDP_WAKE: Duration = Duration::from_millis(250);

/// One UDP listener: its own thread, blocked in `recvmmsg` until datagrams come, answering
/// what needs no waiting (cache hits from bytes, the cluster zone) in the batch it read and
/// sending the batch's answers in one `sendmmsg`; queries that wait (forwarded ones) go on as
/// tasks of `runtime` and send their answers themselves. No readiness polling, no wake-ups
/// between threads on the path of a hit.
struct UdpListener {
    socket: Arc<std::net::UdpSocket>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl UdpListener {
    fn start(
        socket: UdpSocket,
        router: SharedRouter,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
    ) -> io::Result<Self> {
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(UDP_WAKE))?;
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("udp {local}"))
            .spawn({
                let (socket, stop) = (Arc::clone(&socket), Arc::clone(&stop));
                move || serve_udp(&socket, local, &router, &metrics, &stop, &runtime)
            })?;
        Ok(UdpListener {
            socket,
            stop,
            thread,
        })
    }

    /// Tells the thread to stop and wakes it.
    fn signal_stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // A shut-down socket ends the wait in recvmmsg at once (Linux answers ENOTCONN for an
        // unconnected socket and shuts it down all the same).
        // SAFETY: the descriptor is open: `self.socket` holds it.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
    }

    /// Stops the thread and waits for it.
    async fn stop(self) {
        self.signal_stop();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn serve_udp(
    socket: &Arc<std::net::UdpSocket>,
    local: SocketAddr,
    router: &SharedRouter,
    metrics: &Arc<Metrics>,
    stop: &std::sync::atomic::AtomicBool,
    runtime: &tokio::runtime::Handle,
) {
    // Plugins answering inline may create sockets and timers, and spawn: on `runtime`.
    let _runtime = runtime.enter();
    let fd = socket.as_raw_fd();
    let mut batch = batch::RecvBatch::default();
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(batch::BATCH);
    // Response buffers of earlier batches, written again (no allocation per answer).
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(batch::BATCH);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match batch.recv(fd) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                log::debug!("UDP receive on {local}: {e}");
                continue;
            }
        }
        let r = current(router);
        for (query, peer) in batch.datagrams() {
            // A cache hit is written from bytes when it can be; else answered at once when no
            // plugin has to wait (the cluster zone), and sent with the batch; otherwise the
            // query goes on in its own task.
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            if let Some(rcode) = r.answer_wire(query, peer, &mut buf) {
                metrics.count_response(rcode);
                metrics.count_from_bytes();
                out.push((buf, peer));
                continue;
            }
            spare.push(buf);
            let query = query.to_vec();
            let r = Arc::clone(&r);
            let mut answer =
                Box::pin(async move { r.handle(&query, Transport::Udp, peer, local).await });
            match (&mut answer).now_or_never() {
                Some(Some(response)) => {
                    metrics.count_response(response.rcode);
                    out.push((response.bytes, peer));
                }
                Some(None) => {}
                None => {
                    let (m, s) = (Arc::clone(metrics), Arc::clone(socket));
                    runtime.spawn(async move {
                        let response = answer.await;
                        reply_udp(&s, &m, peer, response).await;
                    });
                }
            }
        }
        send_batch(socket, &out);
        spare.extend(
            out.drain(..)
                .map(|(bytes, _)| bytes)
                .take(batch::BATCH - spare.len().min(batch::BATCH)),
        );
    }
}

/// Sends `out` (one system call per batch, waiting for room in the socket's buffer); what
/// `sendmmsg` does not take is sent one by one. The buffers stay in `out` for reuse.
fn send_batch(socket: &std::net::UdpSocket, out: &[(Vec<u8>, SocketAddr)]) {
    if out.is_empty() {
        return;
    }
    let sent = batch::send(socket.as_raw_fd(), out).unwrap_or(0);
    for (bytes, peer) in out.iter().skip(sent) {
        if let Err(e) = socket.send_to(bytes, *peer) {
            log::debug!("UDP send to {peer}: {e}");
        }
    }
}

/// Sends the answer of a query that waited (from a task: never blocks; a full socket buffer
/// is waited out a few times, then the answer is dropped as UDP may).
async fn reply_udp(
    socket: &std::net::UdpSocket,
    metrics: &Metrics,
    peer: SocketAddr,
    response: Option<answer::Response>,
) {
    let Some(response) = response else {
        return;
    };
    metrics.count_response(response.rcode);
    for _ in 0..50 {
        match batch::send_now(socket.as_raw_fd(), &response.bytes, peer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => {
                log::debug!("UDP send to {peer}: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
    log::debug!("UDP send to {peer}: the socket's buffer stayed full, answer dropped");
}

/// The router to answer the next query with.
fn current(router: &SharedRouter) -> Arc<Router> {
    Arc::clone(
        &router
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

async fn serve_tcp(
    listener: TcpListener,
    router: SharedRouter,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
    idle: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                if conns.len() >= MAX_TCP_CONNECTIONS {
                    log::debug!(
                        "TCP: {MAX_TCP_CONNECTIONS} connections open, closing the one from {peer}"
                    );
                    continue;
                }
                let (router, metrics) = (Arc::clone(&router), Arc::clone(&metrics));
                conns.spawn(async move {
                    if let Err(e) = serve_connection(stream, &router, &metrics, idle).await {
                        log::debug!("TCP connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                log::warn!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    conns.shutdown().await;
}

/// Answers length-prefixed queries in order until the client closes, sends a zero length, or
/// stays idle for `idle`. Queries may be pipelined: each is answered as soon as it is read.
async fn serve_connection(
    stream: TcpStream,
    router: &SharedRouter,
    metrics: &Metrics,
    idle: Duration,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let mut stream = BufReader::new(stream);
    let mut query = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            let n = usize::from(u16::from_be_bytes(len));
            stream.read_exact(&mut query[..n]).await?;
            Ok::<usize, io::Error>(n)
        };
        let n = match tokio::time::timeout(idle, read).await {
            Err(_) => return Ok(()), // idle
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        let router = current(router);
        let Some(response) = router
            .handle(&query[..n], Transport::Tcp, peer, local)
            .await
        else {
            continue;
        };
        metrics.count_response(response.rcode);
        let Ok(len) = u16::try_from(response.bytes.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(2 + response.bytes.len());
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response.bytes);
        stream.get_mut().write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Records, SharedRecords};

    /// A server on a free port of 127.0.0.1 answering from empty records: its UDP address.
    async fn running() -> (SocketAddr, ServerHandle) {
        let cfg = ServerConfig {
            addrs: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            port: 0,
            tcp_idle_timeout: Duration::from_secs(5),
        };
        let server = DnsServer::bind(&cfg).await.expect("bind");
        let addr = server.local_addrs()[0];
        let records = SharedRecords::new(Records::empty(&Default::default(), 1));
        let handle = server
            .spawn(records, Arc::new(Metrics::default()))
            .expect("listeners start");
        (addr, handle)
    }

    #[tokio::test]
    async fn stopping_ends_the_udp_thread_and_frees_the_port() {
        let (addr, handle) = running().await;
        handle.stop().await;
        // The thread is gone with its socket: the port can be bound again.
        std::net::UdpSocket::bind(addr).expect("the UDP port is free after stop");
    }

    #[tokio::test]
    async fn a_dropped_handle_ends_its_udp_thread_too() {
        let (addr, handle) = running().await;
        drop(handle);
        // The thread lets go of the socket once it sees the stop; wait for that.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while let Err(e) = std::net::UdpSocket::bind(addr) {
            assert!(
                std::time::Instant::now() < deadline,
                "the UDP port stayed taken after the handle was dropped: {e}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A query to `server` over UDP from a socket of the same family: the response bytes.
    fn ask(server: SocketAddr, query: &[u8]) -> Vec<u8> {
        let local: SocketAddr = if server.is_ipv6() {
            "[::1]:0".parse().expect("addr")
        } else {
            "127.0.0.1:0".parse().expect("addr")
        };
        let sock = std::net::UdpSocket::bind(local).expect("client socket");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        sock.send_to(query, server).expect("send");
        let mut buf = [0u8; 512];
        let (n, from) = sock.recv_from(&mut buf).expect("an answer");
        assert_eq!(from, server, "answered from the service address");
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn ipv6_service_addresses_answer_as_ipv4_ones() {
        let cfg = ServerConfig {
            addrs: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            port: 0,
            tcp_idle_timeout: Duration::from_secs(5),
        };
        let server = DnsServer::bind(&cfg).await.expect("bind 127.0.0.1 and ::1");
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0].port(), addrs[1].port(), "one port for both");
        assert!(addrs[1].is_ipv6());
        let records = SharedRecords::new(Records::empty(&Default::default(), 1));
        let handle = server
            .spawn(records, Arc::new(Metrics::default()))
            .expect("listeners start");
        // A query of a name outside any zone: REFUSED, the same bytes over either family.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        let (v4, v6) = (addrs[0], addrs[1]);
        let over_v4 = tokio::task::spawn_blocking({
            let q = q.clone();
            move || ask(v4, &q)
        })
        .await
        .expect("v4 client");
        let over_v6 = tokio::task::spawn_blocking(move || ask(v6, &q))
            .await
            .expect("v6 client");
        assert_eq!(&over_v6[..2], &[0x12, 0x34]);
        assert_eq!(over_v4, over_v6, "the same answer over IPv4 and IPv6");
        // TCP too.
        std::net::TcpStream::connect(v6).expect("TCP over IPv6");
        handle.stop().await;
    }

    #[tokio::test]
    async fn an_ipv6_listener_is_ipv6_only() {
        let addr: SocketAddr = "[::]:0".parse().expect("addr");
        let socket = bind_udp(addr).expect("bind [::]:0");
        let fd = socket2::SockRef::from(&socket);
        assert!(fd.only_v6().expect("IPV6_V6ONLY"), "IPV6_V6ONLY set");
        let tcp = bind_tcp(addr).expect("bind [::]:0 TCP");
        assert!(socket2::SockRef::from(&tcp).only_v6().expect("IPV6_V6ONLY"));
    }
}
