//! The agent under test and what the privileged end-to-end tests read from it: paths of the
//! binary and its fixtures, the agent process in a node namespace, its metrics, dig's output.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{Process, Topology};

/// Where the agent serves its metrics (in the node namespace).
pub const METRICS_ADDR: &str = "127.0.0.1:9153";

/// The workspace root.
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The agent binary: `DNS_AGENT_BIN`, else the workspace's debug build.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DNS_AGENT_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DNS_AGENT_BIN={} does not exist", p.display());
        return p;
    }
    let p = workspace().join("target/debug/dns-agent");
    assert!(
        p.is_file(),
        "no agent binary: set DNS_AGENT_BIN or build it first (`cargo build -p dns-agent`); \
         `cargo xtask test` does both"
    );
    p
}

/// The sample snapshot (dns-agent/snapshots/sample.yaml).
pub fn sample_path() -> PathBuf {
    workspace().join("dns-agent/snapshots/sample.yaml")
}

/// The zone table's fixture (dns-agent/tests/fixtures/zone.yaml).
pub fn zone_fixture() -> PathBuf {
    workspace().join("dns-agent/tests/fixtures/zone.yaml")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
}

/// The Corefile of the end-to-end tests: the cluster zones with `kubernetes` alone, TTL 5, so
/// that names outside them are REFUSED and answers are comparable with the kernel's.
pub const E2E_COREFILE: &str = "cluster.local in-addr.arpa ip6.arpa {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
}
";

/// [`E2E_COREFILE`] written once per process; its path.
pub fn e2e_corefile() -> PathBuf {
    let path = std::env::temp_dir().join(format!("dns-agent-e2e-{}.Corefile", std::process::id()));
    if !path.exists() {
        std::fs::write(&path, E2E_COREFILE)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    path
}

/// The agent's command line on `topo`'s node side: `snapshot`, then `extra`. It serves both
/// service addresses, IPv4 and IPv6 (a dual-stack kube-dns).
pub fn agent_args(topo: &Topology, snapshot: &Path, extra: &[&str]) -> Vec<String> {
    agent_args_with(topo, &e2e_corefile(), snapshot, extra)
}

/// [`agent_args`] with another Corefile than [`E2E_COREFILE`].
pub fn agent_args_with(
    topo: &Topology,
    corefile: &Path,
    snapshot: &Path,
    extra: &[&str],
) -> Vec<String> {
    let service = topo.service_ip().to_string();
    let service6 = topo.service_ip6().to_string();
    let mut args: Vec<String> = [
        "--corefile",
        path_str(corefile),
        "--snapshot",
        path_str(snapshot),
        "--attach",
        topo.node_if(),
        "--service-ip",
        &service,
        "--service-ip",
        &service6,
        "--metrics-addr",
        METRICS_ADDR,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A running agent in the node namespace, stopped (SIGTERM) when dropped.
pub struct Agent {
    pub proc: Process,
    log: PathBuf,
    kernel: bool,
}

impl Agent {
    /// Starts the agent on `topo`'s node side with the sample snapshot and `extra` flags, and
    /// waits until it answers from the pod (and, with the kernel path, until the kernel does).
    pub fn start(topo: &Topology, extra: &[&str], probe: (&str, Ipv4Addr)) -> Agent {
        Agent::start_with(topo, &sample_path(), extra, probe)
    }

    /// [`Agent::start`] with another snapshot file. `probe` is a name of the snapshot and one
    /// of its addresses: ready means the pod gets that address for an A query of that name,
    /// the metrics answer and, unless `extra` has `--no-kernel`, a probe is counted as a
    /// kernel answer.
    pub fn start_with(
        topo: &Topology,
        snapshot: &Path,
        extra: &[&str],
        probe: (&str, Ipv4Addr),
    ) -> Agent {
        Agent::start_with_corefile(topo, &e2e_corefile(), snapshot, extra, probe)
    }

    /// [`Agent::start_with`] running `corefile` instead of [`E2E_COREFILE`] (its cluster zone
    /// must answer `probe`).
    pub fn start_with_corefile(
        topo: &Topology,
        corefile: &Path,
        snapshot: &Path,
        extra: &[&str],
        probe: (&str, Ipv4Addr),
    ) -> Agent {
        let log = std::env::temp_dir().join(format!(
            "dns-agent-e2e-{}-{}.log",
            topo.node_ns(),
            std::process::id()
        ));
        let args = agent_args_with(topo, corefile, snapshot, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = topo
            .command(topo.node_ns(), path_str(&agent_bin()), &refs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display())),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting the agent: {e}"));
        let mut agent = Agent {
            proc: Process::new("dns-agent", child),
            log,
            kernel: !extra.contains(&"--no-kernel"),
        };
        agent.wait_ready(topo, probe);
        agent
    }

    fn wait_ready(&mut self, topo: &Topology, (name, addr): (&str, Ipv4Addr)) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let server = format!("@{}", topo.service_ip());
        loop {
            if let Some(status) = self.proc.try_wait().expect("polling the agent") {
                panic!(
                    "the agent exited with {status} before answering:\n{}",
                    self.log()
                );
            }
            let out = topo
                .exec_in_pod(
                    "dig",
                    &["+tries=1", "+time=1", "+short", &server, name, "A"],
                )
                .expect("dig");
            let answered = String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == addr.to_string());
            if answered && scrape(topo).is_ok() {
                if !self.kernel {
                    return;
                }
                // The userspace server may come up before the kernel map is filled: wait until a
                // probe is counted as a kernel answer.
                let before = Metrics::scrape(topo).get("dns_agent_kernel_responses_total");
                topo.exec_in_pod("dig", &["+tries=1", "+time=1", &server, name, "A"])
                    .expect("dig");
                if Metrics::scrape(topo).get("dns_agent_kernel_responses_total") > before {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not answer {name} within 20 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the agent (SIGTERM) and checks that it exited cleanly.
    pub fn stop(self) {
        let log = self.log();
        let out = self
            .proc
            .stop(Duration::from_secs(10))
            .expect("stopping the agent");
        assert!(
            out.status.success(),
            "the agent exited with {} on SIGTERM:\n{log}",
            out.status
        );
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The metrics text, or curl's stderr when the endpoint does not answer (yet).
pub fn scrape(topo: &Topology) -> Result<String, String> {
    let out = topo
        .exec_in_node(
            "curl",
            &[
                "-sf",
                "--max-time",
                "2",
                &format!("http://{METRICS_ADDR}/metrics"),
            ],
        )
        .expect("curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Prometheus text from the agent, as `name{labels}` -> value.
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// Scrapes the agent's metrics; panics when the endpoint does not answer.
    pub fn scrape(topo: &Topology) -> Metrics {
        let text = scrape(topo).unwrap_or_else(|e| panic!("cannot scrape the metrics: {e}"));
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (key, value) = l.rsplit_once(' ')?;
                    Some((key.trim().to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of `key` (`name` or `name{labels}` exactly as exposed), 0 when absent.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).map_or(0, |v| *v as u64)
    }

    /// Sum of every series of metric `name`.
    pub fn sum(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| *v as u64)
            .sum()
    }

    /// `dns_agent_kernel_passed_total` for `reason`, 0 when absent.
    pub fn passed(&self, reason: &str) -> u64 {
        self.get(&format!(
            "dns_agent_kernel_passed_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Every `dns_agent_kernel_passed_total` series by reason.
    pub fn passed_by_reason(&self) -> BTreeMap<String, u64> {
        let head = "dns_agent_kernel_passed_total{reason=\"";
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let reason = k.strip_prefix(head)?.strip_suffix("\"}")?;
                Some((reason.to_string(), *v as u64))
            })
            .collect()
    }
}

/// dig's options for one query sent once (one UDP packet: no retries, no TCP fallback), its
/// output cut to the header comments and the sections [`ClientOutput::parse`] reads.
pub const DIG_ONCE: [&str; 9] = [
    "+tries=1",
    "+time=3",
    "+ignore",
    "+noall",
    "+comments",
    "+question",
    "+answer",
    "+authority",
    "+additional",
];

/// A DNS client's (dig's or kdig's) output of one response, cut into its sections; record lines
/// are kept as printed (comment lines in the record sections are dropped).
#[derive(Clone, Debug, Default)]
pub struct ClientOutput {
    pub text: String,
    pub status: String,
    pub flags: Vec<String>,
    pub question: Vec<String>,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    /// The OPT pseudo-section's lines, if any.
    pub opt: Vec<String>,
}

impl ClientOutput {
    /// Parses the client's output; panics (naming `what`) when it shows no response.
    pub fn parse(what: &str, out: &Output) -> ClientOutput {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("status:"),
            "{what}: no reply ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r = ClientOutput {
            text: text.clone(),
            ..ClientOutput::default()
        };
        let mut section = "";
        for line in text.lines() {
            let l = line.trim();
            if let Some(i) = l.find("status: ") {
                r.status = l[i + 8..]
                    .split([',', ';'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
            } else if l.to_ascii_lowercase().starts_with(";; flags:") {
                r.flags = l[9..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            } else if l.starts_with(";;")
                && l.ends_with(':')
                && (l.contains("SECTION") || l.contains(" DATA"))
            {
                section = if l.contains("PSEUDOSECTION") {
                    "opt"
                } else if l.contains("QUESTION") {
                    "question"
                } else if l.contains("ANSWER") {
                    "answer"
                } else if l.contains("AUTHORITY") {
                    "authority"
                } else if l.contains("ADDITIONAL") {
                    "additional"
                } else {
                    ""
                };
            } else if l.is_empty() {
                continue;
            } else {
                match section {
                    "opt" => r.opt.push(l.to_string()),
                    "question" => r
                        .question
                        .push(l.trim_start_matches(';').trim().to_string()),
                    "answer" if !l.starts_with(';') => r.answer.push(l.to_string()),
                    "authority" if !l.starts_with(';') => r.authority.push(l.to_string()),
                    "additional" if !l.starts_with(';') => r.additional.push(l.to_string()),
                    _ => {}
                }
            }
        }
        r
    }

    /// [`normalize`] of this output.
    pub fn normalized(&self, more_ignored: &[&str]) -> String {
        normalize(&self.text, more_ignored)
    }
}

/// A client's output without what may differ between two equal responses: the ID, the lines
/// starting with dig's `;; Query time`, `;; SERVER`, `;; WHEN`, `;; MSG SIZE` or one of
/// `more_ignored`, and the SOA serial (the time the agent loaded its records).
pub fn normalize(text: &str, more_ignored: &[&str]) -> String {
    text.lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && ![";; Query time", ";; SERVER", ";; WHEN", ";; MSG SIZE"]
                    .iter()
                    .chain(more_ignored)
                    .any(|p| l.starts_with(p))
        })
        .map(|l| {
            let mut l = l.to_string();
            if let Some(i) = l.find("id: ") {
                let end = l[i + 4..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(l.len(), |e| i + 4 + e);
                l.replace_range(i + 4..end, "<id>");
            }
            let mut f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 7 && f[3] == "SOA" && !l.starts_with(';') {
                f[6] = "<serial>";
                l = f.join(" ");
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}
