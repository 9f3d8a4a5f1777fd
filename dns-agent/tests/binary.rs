//! The dns-agent binary: one-line errors with a non-zero exit, and a clean exit on SIGTERM/SIGINT.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_dns-agent");

/// Agents on the embedded Corefile listen on :8080 (health) and :8181 (ready): one at a time.
fn one_agent_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn bad_flags_give_one_line_and_exit_2() {
    struct Case {
        args: &'static [&'static str],
        stderr: &'static str,
    }
    let cases = [
        Case { args: &["--bogus"], stderr: "dns-agent: unexpected argument '--bogus' found" },
        Case {
            args: &["--service-ip", "10.96.0.300"],
            stderr: "dns-agent: invalid value '10.96.0.300' for '--service-ip <IP>': invalid IP address syntax",
        },
        Case {
            args: &["--service-ip", "fd00::96::a"],
            stderr: "dns-agent: invalid value 'fd00::96::a' for '--service-ip <IP>': invalid IP address syntax",
        },
        Case {
            args: &["--attach", "nosuchif0"],
            stderr: "dns-agent: --attach \"nosuchif0\": no such network interface (see `ip link`)",
        },
        Case {
            args: &["--attach-mode", "bpf"],
            stderr: "dns-agent: invalid value 'bpf' for '--attach-mode <ATTACH_MODE>' [possible values: auto, xdp, tc]",
        },
    ];
    for case in cases {
        let out = Command::new(BIN)
            .args(case.args)
            .output()
            .expect("run dns-agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{:?}: {stderr}", case.args);
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            [case.stderr],
            "{:?}",
            case.args
        );
    }
}

#[test]
fn startup_errors_give_one_line_and_exit_1() {
    let out = Command::new(BIN)
        .args([
            "--snapshot",
            "/nonexistent/snapshot.yaml",
            "--dns-port",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "off")
        .output()
        .expect("run dns-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        ["dns-agent: cannot read snapshot /nonexistent/snapshot.yaml: No such file or directory (os error 2)"]
    );
}

/// Runs `cmd` to its end; kills it and fails when it is still running after 10 s.
fn exits_within(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dns-agent");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("poll").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after 10 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_broken_corefile_is_named_at_its_place_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("dns-agent-corefile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("Corefile");
    std::fs::write(&file, ".:53 {\n    errors\n    cache 3o\n}\n").expect("write Corefile");
    let out = exits_within(
        Command::new(BIN)
            .args([
                "--corefile",
                file.to_str().expect("utf-8"),
                "--dns-port",
                "0",
            ])
            .env("RUST_LOG", "off"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!("dns-agent: {}:3:11: cache:", file.display());
    assert!(
        stderr.starts_with(&want),
        "want {want:?}..., got {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::write(&file, ".:53 {\n    bogus\n").expect("write Corefile");
    let out = exits_within(
        Command::new(BIN)
            .args(["--corefile", file.to_str().expect("utf-8")])
            .env("RUST_LOG", "off"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("dns-agent: {}:", file.display()))
            && stderr.contains("missing '}'"),
        "{stderr}"
    );
}

#[test]
fn serves_until_sigterm_then_exits_0() {
    let _one = one_agent_at_a_time();
    for signal in ["-TERM", "-INT"] {
        let (mut child, lines, port) = spawn_agent(&[
            "--no-kernel",
            "--dns-port",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
        ]);
        let web = ["web", "default", "svc", "cluster", "local"];
        assert_eq!(query_a(port, &web), [[10, 96, 10, 20]]);

        let pid = child.id().to_string();
        let killed = Command::new("kill")
            .args([signal, pid.as_str()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "exit after {signal}");
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
    }
}

/// Starts the binary with `args` and returns it with its stderr lines and the DNS port it logged.
fn spawn_agent(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
    u16,
) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dns-agent");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let port: u16 = loop {
        let line = lines
            .next()
            .expect("a log line before exiting")
            .expect("read stderr");
        if let Some(addr) = line.split("on UDP and TCP ").nth(1) {
            break addr
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok())
                .expect("port in log");
        }
    };
    (child, lines, port)
}

/// The IPv4 addresses answered for `labels` (a raw A query over UDP).
fn query_a(port: u16, labels: &[&str]) -> Vec<[u8; 4]> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("socket");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in labels {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, (Ipv4Addr::LOCALHOST, port)).expect("send");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("an answer");
    let ancount = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
    (0..ancount)
        .map(|i| {
            let end = n - (ancount - 1 - i) * 16;
            [buf[end - 4], buf[end - 3], buf[end - 2], buf[end - 1]]
        })
        .collect()
}

#[test]
fn sighup_reloads_the_snapshot() {
    let _one = one_agent_at_a_time();
    let dir = std::env::temp_dir().join(format!("dns-agent-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("snap.yaml");
    let svc = |ip: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: {ip}\n")
    };
    std::fs::write(&file, svc("10.96.1.1")).expect("write snapshot");
    let path = file.to_str().expect("utf-8 path");
    let (mut child, mut lines, port) = spawn_agent(&[
        "--snapshot",
        path,
        "--dns-port",
        "0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let web = ["web", "default", "svc", "cluster", "local"];
    assert_eq!(query_a(port, &web), [[10, 96, 1, 1]]);

    let pid = child.id().to_string();
    for (content, want_log) in [
        (svc("10.96.2.2"), "SIGHUP: snapshot reloaded"),
        (
            "kind: [broken\n".to_owned(),
            "still serving the previous records",
        ),
    ] {
        std::fs::write(&file, content).expect("rewrite snapshot");
        assert!(Command::new("kill")
            .args(["-HUP", pid.as_str()])
            .status()
            .expect("kill")
            .success());
        let logged = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains(want_log));
        assert!(logged, "log line {want_log:?}");
        assert_eq!(query_a(port, &web), [[10, 96, 2, 2]]);
    }
    assert!(Command::new("kill")
        .args(["-TERM", pid.as_str()])
        .status()
        .expect("kill")
        .success());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
