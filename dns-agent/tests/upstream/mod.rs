//! A real upstream for tests: Knot DNS (`knotd`) on a loopback port serving a test zone from a
//! temporary directory, killed (and its directory removed) on drop.

#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The zone every Knot upstream serves.
pub const ZONE: &str = "example.org.";
/// Names of the test zone and their addresses.
pub const WWW: (&str, Ipv4Addr) = ("www.example.org.", Ipv4Addr::new(192, 0, 2, 10));
pub const MAIL: (&str, Ipv4Addr) = ("mail.example.org.", Ipv4Addr::new(192, 0, 2, 20));
/// A name with [`BIG_COUNT`] A records: its answer is larger than 1232 bytes, so a UDP query
/// with EDNS size 1232 gets a truncated answer and the full one needs TCP.
pub const BIG: &str = "big.example.org.";
pub const BIG_COUNT: usize = 100;

/// A running `knotd`.
pub struct Knot {
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN example.org.\n$TTL 300\n\
         @ SOA ns.example.org. hostmaster.example.org. 1 3600 900 604800 300\n\
         @ NS ns.example.org.\n\
         ns A 192.0.2.1\n",
    );
    z.push_str(&format!("www A {}\n", WWW.1));
    z.push_str(&format!("mail A {}\n", MAIL.1));
    for i in 0..BIG_COUNT {
        z.push_str(&format!("big A 198.51.{}.{}\n", i / 250, i % 250 + 1));
    }
    z
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback UDP port");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// A loopback address where nothing listens: queries to it are refused at once.
pub fn dead_addr() -> SocketAddr {
    // Port 9 (discard) of a loopback address no test binds: nothing can start listening there
    // while a test runs, as a freed port of 127.0.0.1 could.
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 9))
}

impl Knot {
    /// Starts `knotd` and waits until it answers. Panics (saying how to install it) when
    /// `knotd` is missing.
    pub fn start() -> Knot {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("dns-agent-knot-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Knot directory");
        std::fs::write(dir.join("example.org.zone"), zone_text()).expect("write the zone");
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             log:\n  - target: stderr\n    any: warning\n\
             database:\n    storage: {d}\n\
             control:\n    listen: {d}/knot.sock\n\
             template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    journal-content: none\n\
             zone:\n  - domain: example.org\n",
            d = dir.display()
        );
        let conf_path = dir.join("knot.conf");
        std::fs::write(&conf_path, conf).expect("write knot.conf");
        let child = match Command::new("knotd")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                if e.kind() == ErrorKind::NotFound {
                    panic!(
                        "knotd (Knot DNS) is not installed: these tests need it as a real \
                         upstream; run `apt-get install knot` or `cargo xtask setup`"
                    );
                }
                panic!("cannot start knotd: {e}");
            }
        };
        let mut knot = Knot {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
            child,
        };
        knot.wait_ready();
        knot
    }

    /// Polls with SOA queries until Knot answers NOERROR (at most 10 s).
    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let query = soa_query();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "knotd exited at start ({status}); config in {}",
                    self.dir.display()
                );
            }
            let _ = sock.send_to(&query, self.addr);
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                // ID 0x5151, a response, RCODE NOERROR.
                if n >= 12 && buf[..2] == [0x51, 0x51] && buf[2] & 0x80 != 0 && buf[3] & 0x0f == 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("knotd did not answer on {} within 10 s", self.addr);
    }
}

/// `example.org. SOA?` with ID 0x5151.
fn soa_query() -> Vec<u8> {
    let mut q = vec![0x51, 0x51, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["example", "org"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    q
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
