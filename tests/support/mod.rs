//! Test harness: starts real servers (BIND `named`, Knot `knotd`, PowerDNS `pdns_server`,
//! `haproxy`, `nginx`, `moto_server`, `etcd`) on free loopback ports in temporary directories, and
//! stops them when dropped; `fakes`: in-memory sources and targets for testing the pass and
//! the controller alone.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod authoritative;
pub mod bind;
pub mod controller;
pub mod etcd;
pub mod fakes;
pub mod fleet;
pub mod haproxy;
pub mod knot;
#[cfg(feature = "aws")]
pub mod moto;
pub mod nginx;
pub mod pdns;
pub mod webhook;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bind port 0, read it back, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a server binary; panics (never skips) with the install command when missing.
pub fn require_binary(name: &str, install: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let candidate = PathBuf::from(dir).join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed; install it with: {install} (scripts/test does this)");
}

/// The path of promtool; panics (never skips) with the install command when missing.
pub fn require_promtool() -> PathBuf {
    require_binary(
        "promtool",
        "scripts/install-deps (apt-get download prometheus; dpkg-deb -x prometheus_*.deb DIR; cp DIR/usr/bin/promtool /usr/local/bin/)",
    )
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Parses `text` with the strict OpenMetrics parser of Python's prometheus_client (promtool
/// 2.42 cannot judge OpenMetrics; see RECIPES.md). Returns the family names it found.
pub fn parse_openmetrics(text: &str) -> Vec<String> {
    use std::io::Write as _;
    let script = [
        "import sys",
        "from prometheus_client.openmetrics.parser import text_string_to_metric_families",
        "for family in text_string_to_metric_families(sys.stdin.read()):",
        "    print(family.name)",
    ]
    .join("\n");
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse OpenMetrics");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named") {
        panic!(
            "Python's prometheus_client is not installed; install it with: python3 -m pip install prometheus_client (scripts/test does this)"
        );
    }
    assert!(
        out.status.success(),
        "invalid OpenMetrics: {stderr}\n{text}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
