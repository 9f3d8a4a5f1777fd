//! Knot DNS (`knotd`) as a real upstream inside a network namespace: a test zone, its config and
//! control socket in a temporary directory; stopped (and the directory removed) on drop.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{Process, UpstreamNet};

/// The zone every instance serves.
pub const ZONE: &str = "example.org.";
/// TTL of the zone's records (except [`SHORT`]).
pub const TTL: u32 = 300;
/// A name with two A records and one AAAA record.
pub const WWW: &str = "www.example.org.";
pub const WWW_A: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
pub const WWW_AAAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const MAIL: (&str, Ipv4Addr) = ("mail.example.org.", Ipv4Addr::new(192, 0, 2, 20));
/// A CNAME to [`WWW`].
pub const ALIAS: &str = "alias.example.org.";
/// A name whose A record has TTL [`SHORT_TTL`].
pub const SHORT: (&str, Ipv4Addr) = ("short.example.org.", Ipv4Addr::new(192, 0, 2, 30));
pub const SHORT_TTL: u32 = 2;
/// A name with [`BIG_COUNT`] A records (`198.51.100.1`...): about 1.6 kB, more than a UDP
/// answer of 1232 bytes (or 512) holds.
pub const BIG: &str = "big.example.org.";
pub const BIG_COUNT: usize = 100;
/// Every name under this one (`<anything>.id.example.org.`) has one A record: the address of
/// the instance that answers, so a test can tell the instances apart, with names no cache has.
pub const ID_SUFFIX: &str = "id.example.org.";

/// The addresses of [`BIG`], in zone order.
pub fn big_addrs() -> Vec<Ipv4Addr> {
    (1..=BIG_COUNT as u8)
        .map(|i| Ipv4Addr::new(198, 51, 100, i))
        .collect()
}

/// The zone file of the instance listening on `addr`.
fn zone_text(addr: Ipv4Addr) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}\n$TTL {TTL}\n\
         @ SOA ns hostmaster 1 3600 900 604800 300\n\
         @ NS ns\n\
         ns A 192.0.2.1\n\
         alias CNAME www\n\
         short {SHORT_TTL} A {}\n\
         mail A {}\n\
         www AAAA {WWW_AAAA}\n\
         *.id A {addr}\n",
        SHORT.1, MAIL.1
    );
    for a in WWW_A {
        z.push_str(&format!("www A {a}\n"));
    }
    for a in big_addrs() {
        z.push_str(&format!("big A {a}\n"));
    }
    z
}

/// One `knotd` listening on port 53 of one address of an [`UpstreamNet`].
pub struct Knot {
    addr: Ipv4Addr,
    ns: String,
    dir: PathBuf,
    proc: Option<Process>,
    /// The counters when it became ready (its readiness probes), subtracted by `stats`.
    base: BTreeMap<String, u64>,
}

impl Knot {
    /// Writes the zone and the config for `addr` (one of `net`'s addresses), starts `knotd` in
    /// `net`'s namespace and waits until it answers. Panics (saying how to install it) when
    /// `knotd` is missing.
    pub fn start(net: &UpstreamNet, addr: Ipv4Addr) -> Knot {
        assert!(
            net.addrs().contains(&addr),
            "{addr} is not an address of {}",
            net.ns()
        );
        let dir = std::env::temp_dir().join(format!("dns-agent-knot-{}-{addr}", net.ns()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut knot = Knot {
            addr,
            ns: net.ns().to_string(),
            dir,
            proc: None,
            base: BTreeMap::new(),
        };
        std::fs::write(knot.dir.join("example.org.zone"), zone_text(addr))
            .unwrap_or_else(|e| panic!("writing the zone: {e}"));
        let d = knot.dir.display();
        // Info level: the log says what Knot did when a test fails. mod-stats counts the
        // queries of the zone by transport and type (`Knot::stats`).
        let conf = format!(
            "server:\n    listen: {addr}@53\n    rundir: {d}\n    udp-workers: 1\n    \
             tcp-workers: 1\n    background-workers: 1\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: {d}\n\
             control:\n    listen: {d}/knot.sock\n\
             template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    \
             journal-content: none\n\
             mod-stats:\n  - id: tests\n    query-type: on\n\
             zone:\n  - domain: example.org\n    module: mod-stats/tests\n"
        );
        std::fs::write(knot.dir.join("knot.conf"), conf)
            .unwrap_or_else(|e| panic!("writing knot.conf: {e}"));
        knot.spawn(net);
        knot
    }

    fn spawn(&mut self, net: &UpstreamNet) {
        assert_eq!(net.ns(), self.ns, "restarted in another namespace");
        let conf = self.dir.join("knot.conf");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("knotd.log"))
            .unwrap_or_else(|e| panic!("creating knotd.log: {e}"));
        let child = net
            .command("knotd", &["-c", crate::agent::path_str(&conf)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} knotd: {e}", self.ns));
        self.proc = Some(Process::new("knotd", child));
        self.base.clear();
        self.wait_ready(net);
        self.base = self.stats();
    }

    /// Polls with `kdig` from the upstream namespace until the zone's SOA comes back (10 s).
    fn wait_ready(&mut self, net: &UpstreamNet) {
        let server = format!("@{}", self.addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let proc = self.proc.as_mut().expect("knotd was started");
            if let Some(status) = proc.try_wait().expect("polling knotd") {
                if !knotd_installed() {
                    panic!(
                        "knotd (Knot DNS) is not installed: these tests need it as a real \
                         upstream; run `apt-get install knot` or `cargo xtask setup`"
                    );
                }
                panic!("knotd exited at start ({status}):\n{}", self.log());
            }
            let out = net
                .exec(
                    "kdig",
                    &["+time=1", "+retry=0", "+short", &server, ZONE, "SOA"],
                )
                .expect("kdig");
            if out.status.success() && !out.stdout.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "knotd did not answer on {} within 10 s:\n{}",
                self.addr,
                self.log()
            );
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// The address it listens on (port 53, UDP and TCP).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Stops `knotd` (SIGTERM, waited for); the zone and config stay for [`Knot::restart`].
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            // A paused knotd would only act on SIGTERM once continued.
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &proc.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = proc.stop(Duration::from_secs(5));
        }
    }

    /// Starts the stopped `knotd` again with the same zone and waits until it answers.
    pub fn restart(&mut self, net: &UpstreamNet) {
        assert!(self.proc.is_none(), "knotd on {} still runs", self.addr);
        self.spawn(net);
    }

    /// Freezes `knotd` (SIGSTOP): queries are neither answered nor refused, as with an
    /// upstream that went silent. [`Knot::resume`] undoes it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused `knotd` run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .proc
            .as_ref()
            .unwrap_or_else(|| panic!("knotd on {} is stopped", self.addr))
            .id()
            .to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {pid}: {status}");
    }

    /// Whether `knotd` runs.
    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    /// The zone's query counters (`mod-stats`, read with `knotc zone-stats`) since `knotd`
    /// (re)started and answered its readiness probes, e.g. `request-protocol[udp4]`,
    /// `query-type[A]`; counters at 0 are absent.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let sock = self.dir.join("knot.sock");
        let out = std::process::Command::new("knotc")
            .args([
                "-s",
                crate::agent::path_str(&sock),
                "zone-stats",
                "example.org",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("knotc");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "knotc zone-stats on {} failed ({}): {text}{}",
            self.addr,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // `[example.org.] mod-stats.request-protocol[udp4] = 1`
        text.lines()
            .filter_map(|l| {
                let (key, value) = l.split_once(" = ")?;
                let key = key.split_once("mod-stats.")?.1;
                let value: u64 = value.trim().parse().ok()?;
                let since = value - self.base.get(key).copied().unwrap_or(0);
                (since > 0).then(|| (key.to_string(), since))
            })
            .collect()
    }

    /// Queries of the zone received over UDP and over TCP (IPv4), as [`Knot::stats`] counts.
    pub fn queries(&self) -> (u64, u64) {
        let s = self.stats();
        let get = |k: &str| s.get(k).copied().unwrap_or(0);
        (get("request-protocol[udp4]"), get("request-protocol[tcp4]"))
    }

    /// What `knotd` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("knotd.log")).unwrap_or_default()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn knotd_installed() -> bool {
    match std::process::Command::new("knotd")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::NotFound,
    }
}
