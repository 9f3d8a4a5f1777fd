//! Network-namespace topologies (a node and a pod joined by a veth pair) that always tear down.
//!
//! Standard library only: `xtask` compiles this file too (`#[path]`), so it must not depend on
//! anything the test crate pulls in. Every command is run through `ip` (iproute2); an error names
//! the command that failed and what it printed.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The cluster DNS service address that pods query; put on the node's `lo`.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The cluster DNS service's IPv6 address (a dual-stack kube-dns ClusterIP): on the node's `lo`
/// too, next to [`SERVICE_IP`].
pub const SERVICE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0xa);

/// Search path and options a pod gets in `/etc/resolv.conf` (kubelet's `ClusterFirst` policy for
/// a pod in namespace `default`).
pub const POD_RESOLV_CONF: &str = "nameserver 10.96.0.10\n\
search default.svc.cluster.local svc.cluster.local cluster.local\n\
options ndots:5\n";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Two network namespaces, `<prefix>-node` and `<prefix>-pod`, joined by a veth pair.
///
/// The node side holds the service addresses (IPv4 and IPv6) on `lo`; the pod side routes
/// everything through the node, over IPv4 and IPv6, and has a Kubernetes-like `resolv.conf`.
/// IPv6 addresses are added `nodad`: usable at once, with no duplicate-address detection to wait
/// for. Dropping the value kills whatever still runs in
/// either namespace, deletes both (which destroys the veth pair) and removes the `resolv.conf`.
#[derive(Debug)]
pub struct Topology {
    node_ns: String,
    pod_ns: String,
    node_if: String,
    pod_if: String,
    node_addr: Ipv4Addr,
    pod_addr: Ipv4Addr,
    node_addr6: Ipv6Addr,
    pod_addr6: Ipv6Addr,
}

impl Topology {
    /// Creates the namespaces, the veth pair, addresses and routes, replacing any stale
    /// namespaces left with the same names by an earlier run.
    ///
    /// `prefix` must be a short name of letters, digits and `-` (at most 40 characters).
    pub fn create(prefix: &str) -> io::Result<Topology> {
        if prefix.is_empty()
            || prefix.len() > 40
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("topology prefix {prefix:?} must be 1-40 letters, digits or '-'"),
            ));
        }
        let short = short_name(prefix);
        let (node_addr, pod_addr) = subnet_for(prefix);
        let (node_addr6, pod_addr6) = subnet6_for(prefix);
        let topo = Topology {
            node_ns: format!("{prefix}-node"),
            pod_ns: format!("{prefix}-pod"),
            node_if: format!("{short}n"),
            pod_if: format!("{short}p"),
            node_addr,
            pod_addr,
            node_addr6,
            pod_addr6,
        };
        // From here on, `topo` is dropped (and so torn down) on any error.
        topo.remove_namespaces();
        topo.build()?;
        Ok(topo)
    }

    /// [`Topology::create`] with prefix `<base>-<pid of this process>`, so that several
    /// processes (test runs, benchmarks) can each have one at the same time. Namespaces left by
    /// earlier processes with the same base that are gone (killed before their guard ran) are
    /// removed first.
    pub fn create_unique(base: &str) -> io::Result<Topology> {
        remove_dead_owners(base);
        Topology::create(&format!("{base}-{}", std::process::id()))
    }

    fn build(&self) -> io::Result<()> {
        let (node, pod) = (self.node_ns.as_str(), self.pod_ns.as_str());
        run("ip", &["netns", "add", node])?;
        run("ip", &["netns", "add", pod])?;
        veth(node, &self.node_if, &self.pod_if, pod)?;
        let node_cidr = format!("{}/30", self.node_addr);
        let pod_cidr = format!("{}/30", self.pod_addr);
        let service = format!("{SERVICE_IP}/32");
        let node_addr = self.node_addr.to_string();
        let service6 = format!("{SERVICE_IP6}/128");
        let node_cidr6 = format!("{}/64", self.node_addr6);
        let pod_cidr6 = format!("{}/64", self.pod_addr6);
        let node_addr6 = self.node_addr6.to_string();
        let steps: [&[&str]; 12] = [
            &["-n", node, "link", "set", "lo", "up"],
            &["-n", pod, "link", "set", "lo", "up"],
            &["-n", node, "addr", "add", &service, "dev", "lo"],
            &["-n", node, "addr", "add", &node_cidr, "dev", &self.node_if],
            &["-n", pod, "addr", "add", &pod_cidr, "dev", &self.pod_if],
            &["-n", node, "link", "set", &self.node_if, "up"],
            &["-n", pod, "link", "set", &self.pod_if, "up"],
            &[
                "-n",
                pod,
                "route",
                "add",
                "default",
                "via",
                &node_addr,
                "dev",
                &self.pod_if,
            ],
            &["-n", node, "addr", "add", &service6, "dev", "lo", "nodad"],
            &[
                "-n",
                node,
                "addr",
                "add",
                &node_cidr6,
                "dev",
                &self.node_if,
                "nodad",
            ],
            &[
                "-n",
                pod,
                "addr",
                "add",
                &pod_cidr6,
                "dev",
                &self.pod_if,
                "nodad",
            ],
            &[
                "-n",
                pod,
                "-6",
                "route",
                "add",
                "default",
                "via",
                &node_addr6,
                "dev",
                &self.pod_if,
            ],
        ];
        for step in steps {
            run("ip", step)?;
        }
        let dir = self.resolv_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("resolv.conf"), POD_RESOLV_CONF)?;
        Ok(())
    }

    /// Name of the node namespace (`<prefix>-node`).
    pub fn node_ns(&self) -> &str {
        &self.node_ns
    }

    /// Name of the pod namespace (`<prefix>-pod`).
    pub fn pod_ns(&self) -> &str {
        &self.pod_ns
    }

    /// Node-side end of the veth pair (in the node namespace): where the agent attaches.
    pub fn node_if(&self) -> &str {
        &self.node_if
    }

    /// Pod-side end of the veth pair (in the pod namespace).
    pub fn pod_if(&self) -> &str {
        &self.pod_if
    }

    /// The DNS service address, local to the node namespace.
    pub fn service_ip(&self) -> Ipv4Addr {
        SERVICE_IP
    }

    /// The DNS service's IPv6 address, local to the node namespace.
    pub fn service_ip6(&self) -> Ipv6Addr {
        SERVICE_IP6
    }

    /// IPv6 address of the node end of the veth (the pod's IPv6 gateway).
    pub fn node_addr6(&self) -> Ipv6Addr {
        self.node_addr6
    }

    /// IPv6 address of the pod end of the veth.
    pub fn pod_addr6(&self) -> Ipv6Addr {
        self.pod_addr6
    }

    /// Address of the node end of the veth (the pod's gateway).
    pub fn node_addr(&self) -> Ipv4Addr {
        self.node_addr
    }

    /// Address of the pod end of the veth.
    pub fn pod_addr(&self) -> Ipv4Addr {
        self.pod_addr
    }

    /// Runs `cmd args...` in the node namespace and collects its output.
    pub fn exec_in_node(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        self.command(&self.node_ns, cmd, args).output()
    }

    /// Runs `cmd args...` in the pod namespace (with the pod's `resolv.conf`) and collects its output.
    pub fn exec_in_pod(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        self.command(&self.pod_ns, cmd, args).output()
    }

    /// Starts `cmd args...` in the node namespace, stdin closed, stdout and stderr piped.
    pub fn spawn_in_node(&self, cmd: &str, args: &[&str]) -> io::Result<Child> {
        self.command(&self.node_ns, cmd, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Starts `cmd args...` in the pod namespace, stdin closed, stdout and stderr piped.
    pub fn spawn_in_pod(&self, cmd: &str, args: &[&str]) -> io::Result<Child> {
        self.command(&self.pod_ns, cmd, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// A `Command` that runs `cmd args...` in namespace `ns`, for callers that want to set up
    /// stdio or the environment themselves. `ip netns exec` execs the program, so the child's pid
    /// is the program's own.
    pub fn command(&self, ns: &str, cmd: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, cmd]).args(args);
        c
    }

    /// Name of the upstream namespace [`Topology::add_upstream`] creates (`<prefix>-up`).
    fn upstream_ns(&self) -> String {
        let prefix = self.node_ns.strip_suffix("-node").unwrap_or(&self.node_ns);
        format!("{prefix}-up")
    }

    /// Adds a third namespace, `<prefix>-up`, joined to the node namespace by a second veth
    /// pair on a /28 of 10.201.0.0/16: the node end gets the first address, the upstream end
    /// `count` (1 to 13) addresses after it, for servers the node can reach (the pod cannot:
    /// the node does not forward). Dropping the returned guard, or the topology, deletes it.
    pub fn add_upstream(&self, count: usize) -> io::Result<UpstreamNet> {
        if !(1..=13).contains(&count) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an upstream namespace holds 1 to 13 addresses, not {count}"),
            ));
        }
        let base = self.node_if.strip_suffix('n').unwrap_or(&self.node_if);
        let prefix = self.node_ns.strip_suffix("-node").unwrap_or(&self.node_ns);
        let index = (fnv1a(prefix) % 4_096) as u32;
        let first = u32::from(Ipv4Addr::new(10, 201, 0, 0)) + index * 16 + 1;
        let net = UpstreamNet {
            ns: self.upstream_ns(),
            node_ns: self.node_ns.clone(),
            node_if: format!("{base}u"),
            up_if: format!("{base}s"),
            node_addr: Ipv4Addr::from(first),
            addrs: (1..=count as u32)
                .map(|i| Ipv4Addr::from(first + i))
                .collect(),
        };
        // From here on, `net` is dropped (and so torn down) on any error.
        net.remove();
        net.build()?;
        Ok(net)
    }

    fn resolv_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.pod_ns)
    }

    /// Kills what runs in our namespaces and deletes them; every step is best effort.
    fn remove_namespaces(&self) {
        // An upstream namespace (see `add_upstream`) goes first: it hangs off the node.
        let upstream = self.upstream_ns();
        for ns in [&upstream, &self.pod_ns, &self.node_ns] {
            if !PathBuf::from("/run/netns").join(ns).exists() {
                continue;
            }
            kill_namespace_processes(ns);
            // Deleting the namespace that holds either veth end destroys the pair.
            let _ = quiet("ip", &["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(self.resolv_dir());
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove_namespaces();
    }
}

/// The upstream namespace of a [`Topology`] (see [`Topology::add_upstream`]): a veth pair from
/// the node to `<prefix>-up`. Dropping the value kills whatever still runs there and deletes it
/// (which destroys the pair).
#[derive(Debug)]
pub struct UpstreamNet {
    ns: String,
    node_ns: String,
    node_if: String,
    up_if: String,
    node_addr: Ipv4Addr,
    addrs: Vec<Ipv4Addr>,
}

/// A veth pair created inside namespace `ns` (end `name`) with its peer (`peer`) moved straight
/// into `peer_ns`: the names never meet in the root namespace, so parallel topologies cannot
/// clash.
fn veth(ns: &str, name: &str, peer: &str, peer_ns: &str) -> io::Result<()> {
    run(
        "ip",
        &[
            "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns,
        ],
    )
    .map(drop)
}

impl UpstreamNet {
    fn build(&self) -> io::Result<()> {
        let (node, up) = (self.node_ns.as_str(), self.ns.as_str());
        run("ip", &["netns", "add", up])?;
        veth(node, &self.node_if, &self.up_if, up)?;
        let node_cidr = format!("{}/28", self.node_addr);
        run("ip", &["-n", up, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", node, "addr", "add", &node_cidr, "dev", &self.node_if],
        )?;
        for addr in &self.addrs {
            let cidr = format!("{addr}/28");
            run("ip", &["-n", up, "addr", "add", &cidr, "dev", &self.up_if])?;
        }
        run("ip", &["-n", node, "link", "set", &self.node_if, "up"])?;
        run("ip", &["-n", up, "link", "set", &self.up_if, "up"])?;
        Ok(())
    }

    /// Name of the namespace (`<prefix>-up`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The upstream end's addresses, in order.
    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    /// Address of the node end of the veth (where queries to the upstreams come from).
    pub fn node_addr(&self) -> Ipv4Addr {
        self.node_addr
    }

    /// A `Command` that runs `cmd args...` in the upstream namespace.
    pub fn command(&self, cmd: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, cmd]).args(args);
        c
    }

    /// Runs `cmd args...` in the upstream namespace and collects its output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        self.command(cmd, args).stdin(Stdio::null()).output()
    }

    fn remove(&self) {
        if PathBuf::from("/run/netns").join(&self.ns).exists() {
            kill_namespace_processes(&self.ns);
            let _ = quiet("ip", &["netns", "del", &self.ns]);
        }
    }
}

impl Drop for UpstreamNet {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A child process that is stopped when dropped: SIGTERM, up to five seconds to exit, then
/// SIGKILL, then reaped.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    name: String,
}

impl Process {
    /// Takes ownership of a started child; `name` appears in messages.
    pub fn new(name: &str, child: Child) -> Process {
        Process {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// Name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id of the child.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, e.g. to take its piped stdout or stderr.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// `Some(status)` once the child has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Err(io::Error::other(format!(
                "{} was already stopped",
                self.name
            ))),
        }
    }

    /// Stops the child now (SIGTERM, then SIGKILL after `grace`) and returns its output
    /// (whatever of stdout and stderr was piped and not taken).
    pub fn stop(mut self, grace: Duration) -> io::Result<Output> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other(format!("{} was already stopped", self.name)))?;
        terminate(&mut child, grace);
        child.wait_with_output()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
            let _ = child.wait();
        }
    }
}

/// Sends SIGTERM, waits up to `grace` for the child to exit, then SIGKILLs it. Does not reap.
fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = quiet("kill", &["-TERM", &child.id().to_string()]);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}

/// Deletes the namespaces `<base>-<pid>-node|pod|up` whose process `pid` no longer exists.
fn remove_dead_owners(base: &str) {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let head = format!("{base}-");
    for entry in entries.flatten() {
        let ns = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = ns.strip_prefix(&head) else {
            continue;
        };
        let Some(pid) = rest
            .strip_suffix("-node")
            .or_else(|| rest.strip_suffix("-pod"))
            .or_else(|| rest.strip_suffix("-up"))
        else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if PathBuf::from("/proc").join(pid).exists() {
            continue; // alive (or the pid was reused: leave it alone)
        }
        kill_namespace_processes(&ns);
        let _ = quiet("ip", &["netns", "del", &ns]);
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&ns));
    }
}

/// SIGKILLs every process that lives in namespace `ns` (left over by a crashed run).
fn kill_namespace_processes(ns: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if pids.is_empty() {
        return;
    }
    let mut args = vec!["-KILL".to_string()];
    args.extend(pids);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = quiet("kill", &refs);
    thread::sleep(Duration::from_millis(50));
}

/// Runs a command and turns a failure into an error naming the command and its stderr.
fn run(cmd: &str, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `{cmd}`: {e} (is iproute2 installed?)"),
            )
        })?;
    if !out.status.success() {
        let mut msg = format!("`{cmd} {}` failed ({})", args.join(" "), out.status);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            let _ = write!(msg, ": {}", stderr.trim());
        }
        return Err(io::Error::other(msg));
    }
    Ok(out)
}

/// Runs a command, discarding its output; for best-effort cleanup.
fn quiet(cmd: &str, args: &[&str]) -> io::Result<ExitStatus> {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// FNV-1a: a stable hash of the prefix (std's `DefaultHasher` is not guaranteed stable).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Interface base name: the prefix if it fits (leaving room for the `n`/`p` suffix), else its
/// head plus a hash so distinct long prefixes stay distinct.
fn short_name(prefix: &str) -> String {
    let room = MAX_IFNAME - 1;
    if prefix.len() <= room {
        return prefix.to_string();
    }
    let hash = format!("{:05x}", fnv1a(prefix) & 0xf_ffff);
    format!("{}{hash}", &prefix[..room - hash.len()])
}

/// A /30 inside 10.200.0.0/16 chosen by the prefix's hash: (node address, pod address).
/// The node's and the pod's IPv6 addresses: `::1` and `::2` of a /64 of fd00:200::/32 chosen
/// like [`subnet_for`]'s.
fn subnet6_for(prefix: &str) -> (Ipv6Addr, Ipv6Addr) {
    let index = (fnv1a(prefix) % 16_384) as u16;
    let net = |host| Ipv6Addr::new(0xfd00, 0x200, index, 0, 0, 0, 0, host);
    (net(1), net(2))
}

fn subnet_for(prefix: &str) -> (Ipv4Addr, Ipv4Addr) {
    let index = (fnv1a(prefix) % 16_384) as u32;
    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + index * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_differ() {
        let a = short_name("e2e-kernel-path-compare");
        let b = short_name("e2e-kernel-path-compare2");
        assert!(a.len() < MAX_IFNAME && b.len() < MAX_IFNAME, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(short_name("bench"), "bench");
    }

    #[test]
    fn subnets_are_aligned_and_inside_the_range() {
        for p in ["a", "bench", "e2e-answers", "e2e-bad-input"] {
            let (n, pod) = subnet_for(p);
            let o = n.octets();
            assert_eq!((o[0], o[1]), (10, 200), "{p}: {n}");
            assert_eq!(u32::from(n) % 4, 1, "{p}: {n}");
            assert_eq!(u32::from(pod), u32::from(n) + 1);
        }
        assert_ne!(subnet_for("e2e-answers"), subnet_for("e2e-bad-input"));
    }
}
