//! Command line flags (a contract: names never change) and their validation into a [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::dataplane::{AttachMode, KernelProgram};
use crate::k8s::ApiSource;

/// Most service addresses the kernel program matches (`DNS_CONFIG`).
pub const MAX_SERVICE_IPS: usize = dns_common::config::MAX_SERVICE_IPV4;
/// Most IPv6 service addresses the kernel program matches.
pub const MAX_SERVICE_IPV6S: usize = dns_common::config::MAX_SERVICE_IPV6;
/// Default capacity of `DNS_A` and `DNS_AAAA` (`--kernel-map-entries`): the object's own.
pub const DEFAULT_KERNEL_MAP_ENTRIES: u32 = dns_common::records::CAPACITY;
/// `--zone` when not given.
pub const DEFAULT_ZONE: &str = "cluster.local";
/// `--ttl` when not given: the TTL of kubeadm's Corefile.
pub const DEFAULT_EMBEDDED_TTL: u32 = 30;
/// How long an idle TCP client connection is kept open.
pub const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(10);

/// eBPF-accelerated DNS responder for the cluster zone of a Kubernetes node.
#[derive(Debug, Parser)]
#[command(name = "dns-agent", version, about)]
pub struct Cli {
    /// Kubernetes objects as `kubectl get -o yaml` prints them (multi-document YAML or a List).
    /// Without it the agent serves an embedded sample snapshot.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,

    /// Kubeconfig file whose current context names the API server to watch (Corefile
    /// `kubeconfig`). Without it, --apiserver and --snapshot, the agent watches the API server
    /// of the cluster it runs in when KUBERNETES_SERVICE_HOST is set.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// URL of the API server to watch (Corefile `apiserver`); with --kubeconfig it replaces the
    /// context's server, alone it is used without credentials (e.g. `kubectl proxy`).
    #[arg(long, value_name = "URL")]
    pub apiserver: Option<String>,

    /// Network interface to attach the kernel program to (repeatable).
    #[arg(long = "attach", value_name = "IFACE")]
    pub attach: Vec<String>,

    /// Service address to answer on, IPv4 or IPv6 (repeatable); 127.0.0.1 when none is given.
    #[arg(long = "service-ip", value_name = "IP")]
    pub service_ip: Vec<IpAddr>,

    /// UDP and TCP port to answer on.
    #[arg(long = "dns-port", value_name = "PORT", default_value_t = 53)]
    pub dns_port: u16,

    /// The cluster domain served by the embedded Corefile's `kubernetes` block [default:
    /// cluster.local]. With --corefile, set it in the Corefile.
    #[arg(long, value_name = "DOMAIN")]
    pub zone: Option<String>,

    /// TTL of the cluster records in the embedded Corefile, in seconds [default: 30, as
    /// kubeadm's Corefile]. With --corefile, set `ttl` in its `kubernetes` block.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u32>,

    /// The Corefile to run (CoreDNS syntax). Without it the agent runs an embedded Corefile
    /// equivalent to kubeadm's (`kubernetes` for --zone, `forward . /etc/resolv.conf`, cache,
    /// health on :8080, ready on :8181, prometheus on --metrics-addr).
    #[arg(long, value_name = "PATH")]
    pub corefile: Option<PathBuf>,

    /// Address of the Prometheus endpoint (GET /metrics).
    #[arg(
        long = "metrics-addr",
        value_name = "ADDR",
        default_value = "127.0.0.1:9153"
    )]
    pub metrics_addr: SocketAddr,

    /// Answer in userspace only: load and attach nothing in the kernel.
    #[arg(long = "no-kernel")]
    pub no_kernel: bool,

    /// How to attach the kernel program to each interface.
    #[arg(long = "attach-mode", value_enum, default_value_t = AttachModeArg::Auto)]
    pub attach_mode: AttachModeArg,

    /// Capacity of each kernel map (`DNS_A`, `DNS_AAAA`, `DNS_TREE`), in names. Memory follows
    /// the names stored; names beyond it are answered from userspace (and a tree that does not
    /// fit proves no NXDOMAIN).
    #[arg(
        long = "kernel-map-entries",
        value_name = "N",
        default_value_t = DEFAULT_KERNEL_MAP_ENTRIES
    )]
    pub kernel_map_entries: u32,

    /// Kernel program to load (benchmarks only: `reflect` only bounces queries back).
    #[arg(long = "kernel-program", value_enum, default_value_t = KernelProgramArg::Answer, hide = true)]
    pub kernel_program: KernelProgramArg,
}

/// `--attach-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachModeArg {
    Auto,
    Xdp,
    Tc,
}

/// `--kernel-program` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelProgramArg {
    Answer,
    Reflect,
}

impl From<AttachModeArg> for AttachMode {
    fn from(m: AttachModeArg) -> Self {
        match m {
            AttachModeArg::Auto => AttachMode::Auto,
            AttachModeArg::Xdp => AttachMode::Xdp,
            AttachModeArg::Tc => AttachMode::Tc,
        }
    }
}

impl From<KernelProgramArg> for KernelProgram {
    fn from(p: KernelProgramArg) -> Self {
        match p {
            KernelProgramArg::Answer => KernelProgram::Answer,
            KernelProgramArg::Reflect => KernelProgram::Reflect,
        }
    }
}

/// Where the cluster objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotSource {
    /// The sample compiled into the binary (`snapshots/sample.yaml`).
    Embedded,
    /// A file in `kubectl get -o yaml` format.
    File(PathBuf),
    /// YAML text held in memory; `origin` names it in error messages (tests, generated input).
    Text { origin: String, yaml: String },
}

/// Environment variable whose presence means the agent runs in a pod of the cluster.
pub const IN_CLUSTER_ENV: &str = "KUBERNETES_SERVICE_HOST";

/// The kernel side of the configuration; absent when the agent answers in userspace only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    pub interfaces: Vec<String>,
    pub mode: AttachModeArg,
    pub program: KernelProgramArg,
    /// Capacity of `DNS_A` and of `DNS_AAAA` (names each), at least 1.
    pub map_entries: u32,
}

/// Which Corefile the agent runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorefileSource {
    /// No Corefile: one server block for the cluster zones with the `kubernetes` plugin alone
    /// (names outside them are REFUSED), built from `zone` and `ttl`. Tests use it.
    None,
    /// The embedded kubeadm-equivalent Corefile, with `zone`, `ttl` and the metrics address.
    Embedded,
    /// A Corefile on disk (`--corefile`); `reload` watches it.
    File(PathBuf),
    /// Corefile text held in memory; `origin` names it in error messages.
    Text { origin: String, text: String },
}

/// Validated configuration of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub corefile: CorefileSource,
    pub snapshot: SnapshotSource,
    /// Watch this API server instead of serving `snapshot`.
    pub api: Option<ApiSource>,
    /// Lower-case, with a trailing dot: `cluster.local.`.
    pub zone: String,
    pub ttl: u32,
    /// Distinct addresses (IPv4 and IPv6), in the order given.
    pub service_ips: Vec<IpAddr>,
    /// 0 picks a free port (the same one on every address, UDP and TCP): for tests.
    pub dns_port: u16,
    /// `None` serves no metrics; port 0 picks a free port.
    pub metrics_addr: Option<SocketAddr>,
    pub kernel: Option<KernelConfig>,
    pub tcp_idle_timeout: Duration,
}

impl Config {
    /// A userspace-only agent on `service_ips` (port 0: a free one), without metrics, serving
    /// `snapshot` for `cluster.local.` with TTL 5. Tests adjust the public fields further.
    pub fn userspace(snapshot: SnapshotSource, service_ips: Vec<IpAddr>) -> Self {
        Config {
            corefile: CorefileSource::None,
            snapshot,
            api: None,
            zone: "cluster.local.".to_owned(),
            ttl: 5,
            service_ips,
            dns_port: 0,
            metrics_addr: None,
            kernel: None,
            tcp_idle_timeout: DEFAULT_TCP_IDLE,
        }
    }
}

/// A flag value that parses but cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--zone {zone:?} is not a domain name: {problem}")]
    Zone { zone: String, problem: &'static str },
    #[error("--ttl {0} is above 2147483647 (RFC 2181)")]
    Ttl(u32),
    #[error("--attach {iface:?}: {problem}")]
    Interface { iface: String, problem: String },
    #[error("--service-ip: at most {max} {family} addresses can be answered in the kernel, got {count} (add --no-kernel to serve more from userspace)")]
    TooManyServiceIps {
        family: &'static str,
        count: usize,
        max: usize,
    },
    #[error(
        "--dns-port 0 cannot be matched by the kernel program: pick a port or add --no-kernel"
    )]
    KernelPortZero,
    #[error("--snapshot cannot be combined with --{0}: serve either a snapshot or the API server")]
    SnapshotAndApi(&'static str),
    #[error("{0}")]
    ApiServer(String),
    #[error("--kernel-map-entries 0: the kernel maps need room for at least one name (default {DEFAULT_KERNEL_MAP_ENTRIES})")]
    KernelMapEntriesZero,
    #[error("--{0} sets the embedded Corefile: with --corefile, set it in the Corefile's kubernetes block")]
    CorefileAnd(&'static str),
}

impl Cli {
    /// Checks every value and builds the configuration. Interfaces are checked against
    /// `/sys/class/net`, so nothing is attached when one of them does not exist.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let in_cluster = std::env::var_os(IN_CLUSTER_ENV).is_some_and(|v| !v.is_empty());
        self.into_config_with(Path::new("/sys/class/net"), in_cluster)
    }

    fn into_config_with(
        self,
        sys_class_net: &Path,
        in_cluster: bool,
    ) -> Result<Config, ConfigError> {
        let api = self.api_source(in_cluster)?;
        if self.corefile.is_some() {
            if self.zone.is_some() {
                return Err(ConfigError::CorefileAnd("zone"));
            }
            if self.ttl.is_some() {
                return Err(ConfigError::CorefileAnd("ttl"));
            }
        }
        let zone = normalize_zone(self.zone.as_deref().unwrap_or(DEFAULT_ZONE))?;
        let ttl = self.ttl.unwrap_or(DEFAULT_EMBEDDED_TTL);
        if ttl > i32::MAX as u32 {
            return Err(ConfigError::Ttl(ttl));
        }
        if self.kernel_map_entries == 0 {
            return Err(ConfigError::KernelMapEntriesZero);
        }
        let mut service_ips: Vec<IpAddr> = Vec::new();
        for ip in self.service_ip {
            if !service_ips.contains(&ip) {
                service_ips.push(ip);
            }
        }
        if service_ips.is_empty() {
            service_ips.push(Ipv4Addr::LOCALHOST.into());
        }
        let kernel = if self.no_kernel {
            if !self.attach.is_empty() {
                log::warn!(
                    "--no-kernel given: ignoring --attach {}",
                    self.attach.join(", ")
                );
            }
            None
        } else if self.attach.is_empty() {
            None
        } else {
            let mut interfaces: Vec<String> = Vec::new();
            for iface in self.attach {
                check_interface(&iface, sys_class_net)?;
                if !interfaces.contains(&iface) {
                    interfaces.push(iface);
                }
            }
            let v4 = service_ips.iter().filter(|ip| ip.is_ipv4()).count();
            let v6 = service_ips.len() - v4;
            for (family, count, max) in [
                ("IPv4", v4, MAX_SERVICE_IPS),
                ("IPv6", v6, MAX_SERVICE_IPV6S),
            ] {
                if count > max {
                    return Err(ConfigError::TooManyServiceIps { family, count, max });
                }
            }
            if self.dns_port == 0 {
                return Err(ConfigError::KernelPortZero);
            }
            Some(KernelConfig {
                interfaces,
                mode: self.attach_mode,
                program: self.kernel_program,
                map_entries: self.kernel_map_entries,
            })
        };
        Ok(Config {
            corefile: match self.corefile {
                Some(path) => CorefileSource::File(path),
                None => CorefileSource::Embedded,
            },
            api,
            snapshot: match self.snapshot {
                Some(path) => SnapshotSource::File(path),
                None => SnapshotSource::Embedded,
            },
            zone,
            ttl,
            service_ips,
            dns_port: self.dns_port,
            metrics_addr: Some(self.metrics_addr),
            kernel,
            tcp_idle_timeout: DEFAULT_TCP_IDLE,
        })
    }
}

impl Cli {
    /// `--kubeconfig`/`--apiserver`, or the in-cluster configuration when neither they nor
    /// `--snapshot` are given and the agent runs in a pod.
    fn api_source(&self, in_cluster: bool) -> Result<Option<ApiSource>, ConfigError> {
        let given = self.kubeconfig.is_some() || self.apiserver.is_some();
        if self.snapshot.is_some() {
            if self.kubeconfig.is_some() {
                return Err(ConfigError::SnapshotAndApi("kubeconfig"));
            }
            if self.apiserver.is_some() {
                return Err(ConfigError::SnapshotAndApi("apiserver"));
            }
            return Ok(None);
        }
        if !given && !in_cluster {
            return Ok(None);
        }
        let source = ApiSource {
            kubeconfig: self.kubeconfig.clone(),
            apiserver: self.apiserver.clone(),
            ..Default::default()
        };
        crate::k8s::check(&source).map_err(|e| ConfigError::ApiServer(e.to_string()))?;
        Ok(Some(source))
    }
}

/// A clap error as one line for stderr (`invalid value '..' for '--dns-port <PORT>': ..`),
/// without the usage and the `--help` hint clap adds on further lines.
pub fn one_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    parts.join(" ")
}

/// Lower-cases `zone`, adds the trailing dot, and checks it is a host name of at most 253
/// characters whose labels are 1 to 63 letters, digits or hyphens.
pub fn normalize_zone(zone: &str) -> Result<String, ConfigError> {
    let bad = |problem| ConfigError::Zone {
        zone: zone.to_owned(),
        problem,
    };
    let trimmed = zone.strip_suffix('.').unwrap_or(zone);
    if trimmed.is_empty() {
        return Err(bad("the root zone cannot be served"));
    }
    if trimmed.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    Ok(format!("{}.", trimmed.to_ascii_lowercase()))
}

fn check_interface(iface: &str, sys_class_net: &Path) -> Result<(), ConfigError> {
    let bad = |problem: String| ConfigError::Interface {
        iface: iface.to_owned(),
        problem,
    };
    if iface.is_empty() || iface.len() > 15 {
        return Err(bad("interface names are 1 to 15 characters".to_owned()));
    }
    if iface.contains('/') || iface.contains(char::is_whitespace) || iface == "." || iface == ".." {
        return Err(bad("not a valid interface name".to_owned()));
    }
    if !sys_class_net.join(iface).exists() {
        return Err(bad("no such network interface (see `ip link`)".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["dns-agent"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| one_line(&e))?;
        cli.into_config_with(Path::new("/sys/class/net"), false)
            .map_err(|e| e.to_string())
    }

    fn parse_in_cluster(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["dns-agent"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| one_line(&e))?;
        cli.into_config_with(Path::new("/sys/class/net"), true)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn api_sources() {
        assert_eq!(
            parse(&[]).expect("defaults").api,
            None,
            "outside a pod: the sample"
        );
        let c = parse_in_cluster(&[]).expect("in a pod");
        assert_eq!(
            c.api,
            Some(ApiSource::default()),
            "in a pod: in-cluster config"
        );
        let c = parse_in_cluster(&["--snapshot", "/x.yaml"]).expect("snapshot in a pod");
        assert_eq!(c.api, None, "--snapshot wins over the pod's API server");
        let c = parse(&["--kubeconfig", "/k.yaml"]).expect("kubeconfig");
        assert_eq!(
            c.api,
            Some(ApiSource {
                kubeconfig: Some("/k.yaml".into()),
                apiserver: None,
                ..Default::default()
            })
        );
        let c =
            parse(&["--apiserver", "http://127.0.0.1:8001", "--kubeconfig", "/k"]).expect("both");
        assert_eq!(
            c.api,
            Some(ApiSource {
                kubeconfig: Some("/k".into()),
                apiserver: Some("http://127.0.0.1:8001".into()),
                ..Default::default()
            })
        );
        for (args, err) in [
            (
                &["--snapshot", "/x.yaml", "--apiserver", "http://a"][..],
                "--snapshot cannot be combined with --apiserver: serve either a snapshot or the API server",
            ),
            (
                &["--kubeconfig", "/k", "--snapshot", "/x.yaml"][..],
                "--snapshot cannot be combined with --kubeconfig: serve either a snapshot or the API server",
            ),
            (
                &["--apiserver", "ftp://a"][..],
                "--apiserver \"ftp://a\" is not a URL: the scheme must be http:// or https://",
            ),
            (
                &["--apiserver", "http://"][..],
                "--apiserver \"http://\" is not a URL: ",
            ),
        ] {
            let got = parse(args).expect_err(&format!("{args:?} must fail"));
            assert!(got.starts_with(err), "{args:?}: got {got:?}, want {err:?}");
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.snapshot, SnapshotSource::Embedded);
        assert_eq!(c.corefile, CorefileSource::Embedded);
        assert_eq!(c.zone, "cluster.local.");
        assert_eq!(c.ttl, 30, "kubeadm's TTL");
        assert_eq!(c.service_ips, vec![IpAddr::from(Ipv4Addr::LOCALHOST)]);
        assert_eq!(c.dns_port, 53);
        assert_eq!(
            c.metrics_addr,
            Some("127.0.0.1:9153".parse().expect("addr"))
        );
        assert_eq!(c.kernel, None, "no --attach: nothing to attach");
        let c = parse(&["--attach", "lo"]).expect("attach parses");
        assert_eq!(
            c.kernel.map(|k| k.map_entries),
            Some(1_048_576),
            "--kernel-map-entries defaults to 2^20"
        );
    }

    #[test]
    fn flags() {
        let c = parse(&[
            "--snapshot",
            "/x.yaml",
            "--attach",
            "lo",
            "--attach",
            "lo",
            "--service-ip",
            "10.96.0.10",
            "--service-ip",
            "169.254.20.10",
            "--service-ip",
            "10.96.0.10",
            "--service-ip",
            "FD00:96::A",
            "--service-ip",
            "fd00:96::a",
            "--dns-port",
            "5353",
            "--zone",
            "Cluster.Example.",
            "--ttl",
            "30",
            "--metrics-addr",
            "0.0.0.0:9999",
            "--attach-mode",
            "tc",
            "--kernel-program",
            "reflect",
            "--kernel-map-entries",
            "4096",
        ])
        .expect("flags parse");
        assert_eq!(c.snapshot, SnapshotSource::File("/x.yaml".into()));
        assert_eq!(c.zone, "cluster.example.");
        assert_eq!(c.ttl, 30);
        assert_eq!(
            c.service_ips,
            vec![
                IpAddr::from(Ipv4Addr::new(10, 96, 0, 10)),
                IpAddr::from(Ipv4Addr::new(169, 254, 20, 10)),
                "fd00:96::a".parse::<IpAddr>().expect("address"),
            ]
        );
        assert_eq!(c.dns_port, 5353);
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9999".parse().expect("addr")));
        assert_eq!(
            c.kernel,
            Some(KernelConfig {
                interfaces: vec!["lo".into()],
                mode: AttachModeArg::Tc,
                program: KernelProgramArg::Reflect,
                map_entries: 4096,
            })
        );
        let c = parse(&["--attach", "lo", "--no-kernel"]).expect("no-kernel parses");
        assert_eq!(c.kernel, None);
    }

    #[test]
    fn bad_values() {
        struct Case {
            args: &'static [&'static str],
            err: &'static str,
        }
        let cases = [
            Case {
                args: &["--service-ip", "10.96.0.300"],
                err: "invalid value '10.96.0.300' for '--service-ip <IP>': invalid IP address syntax",
            },
            Case {
                args: &["--service-ip", "fd00::96::1"],
                err: "invalid value 'fd00::96::1' for '--service-ip <IP>': invalid IP address syntax",
            },
            Case {
                args: &["--service-ip", "[fd00::1]"],
                err: "invalid value '[fd00::1]' for '--service-ip <IP>': invalid IP address syntax",
            },
            Case {
                args: &["--dns-port", "70000"],
                err: "invalid value '70000' for '--dns-port <PORT>': 70000 is not in 0..=65535",
            },
            Case {
                args: &["--attach-mode", "bogus"],
                err: "invalid value 'bogus' for '--attach-mode <ATTACH_MODE>' [possible values: auto, xdp, tc]",
            },
            Case {
                args: &["--metrics-addr", "localhost"],
                err: "invalid value 'localhost' for '--metrics-addr <ADDR>': invalid socket address syntax",
            },
            Case { args: &["--bogus"], err: "unexpected argument '--bogus' found" },
            Case {
                args: &["--attach", "nosuchif0"],
                err: "--attach \"nosuchif0\": no such network interface (see `ip link`)",
            },
            Case {
                args: &["--attach", "a/b"],
                err: "--attach \"a/b\": not a valid interface name",
            },
            Case {
                args: &["--attach", "averyveryverylongname"],
                err: "--attach \"averyveryverylongname\": interface names are 1 to 15 characters",
            },
            Case {
                args: &["--zone", "a..b"],
                err: "--zone \"a..b\" is not a domain name: empty label",
            },
            Case {
                args: &["--zone", "."],
                err: "--zone \".\" is not a domain name: the root zone cannot be served",
            },
            Case {
                args: &["--zone", "clu_ster.local"],
                err: "--zone \"clu_ster.local\" is not a domain name: only letters, digits, '-' and '.' are allowed",
            },
            Case {
                args: &["--attach", "lo", "--kernel-map-entries", "0"],
                err: "--kernel-map-entries 0: the kernel maps need room for at least one name (default 1048576)",
            },
            Case {
                args: &["--kernel-map-entries", "0"],
                err: "--kernel-map-entries 0: the kernel maps need room for at least one name",
            },
            Case {
                args: &["--kernel-map-entries", "-1"],
                err: "unexpected argument '-1' found",
            },
            Case { args: &["--ttl", "4294967295"], err: "--ttl 4294967295 is above 2147483647 (RFC 2181)" },
            Case { args: &["--corefile", "/etc/coredns/Corefile", "--zone", "a.local"], err: "--zone sets the embedded Corefile: with --corefile, set it in the Corefile's kubernetes block" },
            Case { args: &["--corefile", "/etc/coredns/Corefile", "--ttl", "5"], err: "--ttl sets the embedded Corefile: with --corefile, set it in the Corefile's kubernetes block" },
            Case {
                args: &["--attach", "lo", "--dns-port", "0"],
                err: "--dns-port 0 cannot be matched by the kernel program: pick a port or add --no-kernel",
            },
            Case {
                args: &[
                    "--attach", "lo", "--service-ip", "10.0.0.1", "--service-ip", "10.0.0.2",
                    "--service-ip", "10.0.0.3", "--service-ip", "10.0.0.4", "--service-ip",
                    "10.0.0.5", "--service-ip", "10.0.0.6", "--service-ip", "10.0.0.7",
                    "--service-ip", "10.0.0.8", "--service-ip", "10.0.0.9",
                ],
                err: "--service-ip: at most 8 IPv4 addresses can be answered in the kernel, got 9 (add --no-kernel to serve more from userspace)",
            },
            Case {
                args: &[
                    "--attach", "lo", "--service-ip", "fd00::1", "--service-ip", "fd00::2",
                    "--service-ip", "fd00::3", "--service-ip", "fd00::4", "--service-ip",
                    "fd00::5", "--service-ip", "fd00::6", "--service-ip", "fd00::7",
                    "--service-ip", "fd00::8", "--service-ip", "fd00::9", "--service-ip",
                    "10.0.0.1",
                ],
                err: "--service-ip: at most 8 IPv6 addresses can be answered in the kernel, got 9 (add --no-kernel to serve more from userspace)",
            },
        ];
        for case in cases {
            let err = parse(case.args).expect_err(&format!("{:?} must fail", case.args));
            assert!(
                !err.contains('\n'),
                "{:?}: one line, got {err:?}",
                case.args
            );
            assert!(
                err.starts_with(case.err),
                "{:?}: got {err:?}, want {:?}",
                case.args,
                case.err
            );
        }
    }
}
