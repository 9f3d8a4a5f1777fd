//! `cargo xtask latency-probe` (hidden): a paced DNS latency probe with kernel receive timestamps.
//!
//! dnsperf reports latency in whole microseconds, too coarse to compare two paths that both take
//! a few. This probe sends A queries at a fixed rate from a sender thread that follows a tight
//! deadline schedule, round-robin over several UDP sockets (source ports), and receives on
//! another thread. Each query's latency is the kernel's receive timestamp of its reply
//! (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`) minus a `CLOCK_REALTIME` reading taken right before the
//! query's `send`: how late the receiving thread gets scheduled does not count. Replies are
//! matched by (socket, ID); a query echoed back unchanged (QR=0, the reflect baseline) counts as
//! a reply. The result is one JSON line on stdout.
//!
//! `cargo xtask bench` runs it inside the pod namespace.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Options of `cargo xtask latency-probe`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// DNS server to query.
    #[arg(long)]
    pub server: SocketAddr,
    /// Queries per second.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u32,
    /// Seconds to send for.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// File of names to query, cycled over: one per line, the first word of each line
    /// (dnsperf's `name A` format works).
    #[arg(long)]
    pub names_file: PathBuf,
    /// UDP sockets (source ports) the queries go out on, round-robin.
    #[arg(long, default_value_t = 8)]
    pub sockets: usize,
    /// Milliseconds to keep receiving after the last query.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
}

/// What the probe prints (one JSON line).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub avg_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Queries sent more than one interval after their deadline (the sender fell behind).
    pub late_sends: u64,
    /// Replies without a kernel timestamp (timed with the clock when read instead).
    pub no_kernel_timestamp: u64,
    /// Replies timestamped before their query was sent (clock trouble; left out of the figures).
    pub negative: u64,
}

/// Entry point of `cargo xtask latency-probe`.
pub fn run(args: &ProbeArgs) -> Result<()> {
    let report = probe(args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn probe(args: &ProbeArgs) -> Result<ProbeReport> {
    if args.rate == 0 || args.sockets == 0 || args.sockets > 256 {
        bail!("--rate must be positive and --sockets within 1..=256");
    }
    let text = std::fs::read_to_string(&args.names_file)
        .with_context(|| format!("reading {}", args.names_file.display()))?;
    let queries: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !n.starts_with(';') && !n.starts_with('#'))
        .map(query_template)
        .collect::<Result<_>>()?;
    if queries.is_empty() {
        bail!("{} holds no names", args.names_file.display());
    }

    let bind: SocketAddr = if args.server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let mut sockets = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let s = UdpSocket::bind(bind).context("binding a UDP socket")?;
        s.connect(args.server)
            .with_context(|| format!("connecting to {}", args.server))?;
        set_int_opt(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .context("setting SO_TIMESTAMPNS")?;
        // Room for a burst of replies if the receiving thread is descheduled for a while.
        let _ = set_int_opt(&s, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        sockets.push(s);
    }
    let sockets = Arc::new(sockets);
    let table = Arc::new(Outstanding::new(args.sockets));
    let done = Arc::new(AtomicBool::new(false));

    let total = args.rate as u64 * args.duration;
    let receiver = {
        let (sockets, table, done) = (sockets.clone(), table.clone(), done.clone());
        let capacity = total as usize;
        thread::Builder::new()
            .name("probe-recv".into())
            .spawn(move || receive(&sockets, &table, &done, capacity))?
    };

    // Sender: query i is due at start + i / rate, goes out on socket i mod n with ID
    // (i / n) mod 2^16.
    let n = args.sockets as u64;
    let interval_ns = 1_000_000_000 / args.rate as u64;
    let mut buf = [0u8; 512];
    let mut late_sends = 0u64;
    let mut sent = 0u64;
    let start = Instant::now();
    for i in 0..total {
        let due = deadline_ns(i, args.rate);
        let mut now = start.elapsed().as_nanos() as u64;
        while now < due {
            if due - now > 200_000 {
                thread::sleep(Duration::from_nanos(due - now - 100_000));
            } else {
                std::hint::spin_loop();
            }
            now = start.elapsed().as_nanos() as u64;
        }
        if now - due > interval_ns {
            late_sends += 1;
        }
        let sock = (i % n) as usize;
        let id = (i / n) as u16;
        let q = &queries[(i % queries.len() as u64) as usize];
        buf[..q.len()].copy_from_slice(q);
        buf[..2].copy_from_slice(&id.to_be_bytes());
        let t = realtime_ns();
        table.record(sock, id, t);
        match sockets[sock].send(&buf[..q.len()]) {
            Ok(_) => sent += 1,
            Err(_) => {
                table.take(sock, id);
            }
        }
    }
    thread::sleep(Duration::from_millis(args.drain_ms));
    done.store(true, Ordering::Relaxed);
    let rx = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiving thread panicked"))??;

    let mut lat = rx.latencies;
    lat.sort_unstable();
    let received = lat.len() as u64 + rx.negative;
    let avg_ns = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len() as f64
    };
    Ok(ProbeReport {
        sent,
        received,
        lost: sent.saturating_sub(received),
        avg_ns,
        p50_ns: percentile(&lat, 50.0),
        p99_ns: percentile(&lat, 99.0),
        min_ns: lat.first().copied().unwrap_or(0),
        max_ns: lat.last().copied().unwrap_or(0),
        late_sends,
        no_kernel_timestamp: rx.no_kernel_timestamp,
        negative: rx.negative,
    })
}

struct Received {
    latencies: Vec<u64>,
    no_kernel_timestamp: u64,
    negative: u64,
}

/// Receiving thread: polls every socket, drains the readable ones and matches their replies.
fn receive(
    sockets: &[UdpSocket],
    table: &Outstanding,
    done: &AtomicBool,
    capacity: usize,
) -> Result<Received> {
    let mut out = Received {
        latencies: Vec::with_capacity(capacity),
        no_kernel_timestamp: 0,
        negative: 0,
    };
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 4096];
    while !done.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("poll");
        }
        for (sock, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            while let Some((len, ts)) = recv_timestamped(pfd.fd, &mut buf)? {
                let Some(id) = reply_id(&buf[..len]) else {
                    continue;
                };
                let Some(sent) = table.take(sock, id) else {
                    continue;
                };
                let at = match ts {
                    Some(t) => t,
                    None => {
                        out.no_kernel_timestamp += 1;
                        realtime_ns()
                    }
                };
                match at.checked_sub(sent) {
                    Some(l) => out.latencies.push(l),
                    None => out.negative += 1,
                }
            }
        }
    }
    Ok(out)
}

/// One `recvmsg` without waiting: the datagram's length and its kernel receive timestamp
/// (ns since the epoch), or `None` once the socket is drained.
fn recv_timestamped(fd: libc::c_int, buf: &mut [u8]) -> Result<Option<(usize, Option<u64>)>> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes valid buffers of the stated lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
            // A connected UDP socket reports ICMP errors (port unreachable) here.
            std::io::ErrorKind::ConnectionRefused => Ok(Some((0, None))),
            _ => Err(err).context("recvmsg"),
        };
    }
    let mut ts = None;
    // SAFETY: the CMSG_* walk stays within `msg_control`/`msg_controllen` set by the kernel.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let spec: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                ts = Some(spec.tv_sec as u64 * 1_000_000_000 + spec.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some((n as usize, ts)))
}

fn set_int_opt(
    s: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// `CLOCK_REALTIME` in ns since the epoch (the clock `SO_TIMESTAMPNS` stamps with).
fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Send times of the queries in flight, by (socket, ID); 0 marks a free slot. Shared by the
/// sending and the receiving thread.
struct Outstanding {
    slots: Vec<AtomicU64>,
}

impl Outstanding {
    fn new(sockets: usize) -> Outstanding {
        Outstanding {
            slots: (0..sockets * 65536).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, sock: usize, id: u16) -> &AtomicU64 {
        &self.slots[sock * 65536 + id as usize]
    }

    /// Notes that query `id` leaves on socket `sock` at `sent_ns` (non-zero); a query still
    /// unanswered in that slot (sent 65,536 queries ago) is forgotten: it counts as lost.
    fn record(&self, sock: usize, id: u16, sent_ns: u64) {
        self.slot(sock, id).store(sent_ns.max(1), Ordering::Release);
    }

    /// The send time of query `id` on `sock` if it is in flight, which it no longer is after
    /// this (a duplicate reply matches nothing).
    fn take(&self, sock: usize, id: u16) -> Option<u64> {
        match self.slot(sock, id).swap(0, Ordering::AcqRel) {
            0 => None,
            t => Some(t),
        }
    }
}

/// When query `i` is due, in ns after the start, at `rate` queries per second: computed from
/// `i` each time, so rounding never accumulates.
fn deadline_ns(i: u64, rate: u32) -> u64 {
    (i as u128 * 1_000_000_000 / rate as u128) as u64
}

/// Nearest-rank percentile `p` (0-100) of sorted `values`; 0 when there are none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A query for `name` type A class IN, recursion desired, ID 0 (the sender fills it in).
fn query_template(name: &str) -> Result<Vec<u8>> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            bail!("bad name {name:?}");
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    if q.len() > 512 {
        bail!("name {name:?} is too long");
    }
    Ok(q)
}

/// The ID of a datagram that can be a reply to one of our queries: a DNS header with one
/// question. Either QR value is accepted, since the reflect baseline echoes queries (QR=0).
fn reply_id(msg: &[u8]) -> Option<u16> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    Some(u16::from_be_bytes([msg[0], msg[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_socket_and_id_once() {
        let t = Outstanding::new(8);
        t.record(3, 0xbeef, 1_000);
        t.record(4, 0xbeef, 2_000);
        assert_eq!(t.take(2, 0xbeef), None, "other socket");
        assert_eq!(t.take(3, 0xbeee), None, "other ID");
        assert_eq!(t.take(3, 0xbeef), Some(1_000));
        assert_eq!(t.take(3, 0xbeef), None, "duplicate reply");
        assert_eq!(t.take(4, 0xbeef), Some(2_000));
        // A reused slot holds the newer query.
        t.record(7, 65535, 5);
        t.record(7, 65535, 9);
        assert_eq!(t.take(7, 65535), Some(9));
    }

    #[test]
    fn percentiles_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
    }

    #[test]
    fn pacing_schedule() {
        assert_eq!(deadline_ns(0, 50_000), 0);
        assert_eq!(deadline_ns(1, 50_000), 20_000);
        assert_eq!(deadline_ns(50_000, 50_000), 1_000_000_000);
        // No drift where the interval is not a whole number of ns.
        assert_eq!(deadline_ns(1, 3), 333_333_333);
        assert_eq!(deadline_ns(3, 3), 1_000_000_000);
        assert_eq!(deadline_ns(3_000_000, 3), 1_000_000_000_000_000);
        for i in 1..1000 {
            assert!(deadline_ns(i, 7_001) > deadline_ns(i - 1, 7_001));
        }
    }

    #[test]
    fn query_and_reply_ids() {
        let q = query_template("a.b.svc.cluster.local.").unwrap();
        assert_eq!(&q[..12], &[0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..16], &[1, b'a', 1, b'b']);
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        let mut echoed = q.clone();
        echoed[..2].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(reply_id(&echoed), Some(0x1234), "QR=0 echo");
        echoed[2] |= 0x80;
        assert_eq!(reply_id(&echoed), Some(0x1234), "QR=1 answer");
        assert_eq!(reply_id(&echoed[..11]), None);
        assert!(query_template("a..b").is_err());
    }

    #[test]
    fn report_round_trips_as_json() {
        let r = ProbeReport {
            sent: 10,
            received: 9,
            lost: 1,
            avg_ns: 4321.5,
            p50_ns: 4000,
            p99_ns: 9000,
            ..Default::default()
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ProbeReport>(&line).unwrap(), r);
    }
}
