//! `ipdrift run` as a long-running process against real BIND and HAProxy: it repairs a
//! change within about one interval, serves /metrics /healthz /readyz, survives a HAProxy
//! restart, and stops cleanly on SIGTERM. And the run loop alone, in process over in-memory
//! fakes with tokio's clock paused: per-target backoff, verify failures in /metrics.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipdrift::controller::{self, Wiring};
use ipdrift::model::ServerAdmin;
use support::controller::{Controller, metric_in};
use support::fakes::{self, FakeDns, FakeInventory, FakeLb, instance};
use support::fleet::Fleet;
use support::{parse_openmetrics, wait_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};

#[test]
fn run_repairs_the_outage_within_about_one_interval_and_reports_it() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    assert!(
        wait_until(Duration::from_secs(10), || controller
            .get("/readyz")
            .is_some_and(|r| r.0 == 200)),
        "/readyz never became ready"
    );
    assert_eq!(controller.get("/healthz").map(|r| r.0), Some(200));

    let (status, headers, body) = controller.get("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    let families = parse_openmetrics(&body);
    for family in [
        "ipdrift_last_reconcile_success_timestamp_seconds",
        "ipdrift_reconcile_duration_seconds",
        "ipdrift_drift_objects",
        "ipdrift_changes",
        "ipdrift_errors",
        "ipdrift_target_up",
        "ipdrift_instances",
        "ipdrift_instance_address_changes",
        "ipdrift_build_info",
    ] {
        assert!(
            families.iter().any(|f| f == family),
            "{family} missing from {families:?}"
        );
    }
    assert_eq!(
        controller.metric("ipdrift_target_up{target=\"ns1\"}"),
        Some(1.0)
    );
    assert_eq!(
        controller.metric("ipdrift_target_up{target=\"lb-01\"}"),
        Some(1.0)
    );
    assert_eq!(
        controller.metric("ipdrift_instances{source=\"local\"}"),
        Some(3.0)
    );
    assert_eq!(
        controller.metric("ipdrift_changes_total{target=\"ns1\",op=\"update\"}"),
        Some(0.0)
    );

    fleet.move_to(2);
    let changed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || fleet.converged_at(2)),
        "not repaired; servers: {:?}",
        fleet.haproxy_servers()
    );
    let repair = changed.elapsed();
    // One interval (1 s + 10 % jitter) plus a pass; generous for a loaded machine.
    assert!(repair < Duration::from_secs(4), "repair took {repair:?}");
    assert!(
        wait_until(Duration::from_secs(5), || controller
            .metric("ipdrift_changes_total{target=\"ns1\",op=\"update\"}")
            == Some(3.0)),
        "ns1 updates not counted"
    );
    assert_eq!(
        controller.metric("ipdrift_changes_total{target=\"lb-01\",op=\"update\"}"),
        Some(2.0)
    );
    assert_eq!(
        controller.metric("ipdrift_instance_address_changes_total{source=\"local\"}"),
        Some(6.0)
    );
    assert_eq!(
        controller.metric("ipdrift_drift_objects{target=\"ns1\"}"),
        Some(0.0)
    );

    // A restart of HAProxy drops every runtime change; the next pass puts them back.
    fleet.haproxy.restart();
    assert!(
        wait_until(Duration::from_secs(10), || fleet.converged_at(2)),
        "not repaired after a haproxy restart: {:?}",
        fleet.haproxy_servers()
    );

    let (code, stderr) = controller.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    let applied: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "applied")
        .collect();
    assert!(
        applied.len() >= 5,
        "structured 'applied' log lines: {stderr}"
    );
    assert!(applied.iter().all(|v| v["target"].is_string()
        && v["target"] != "ipdrift::controller"
        && v["object"].is_string()
        && v["to"].is_string()));
}

#[test]
fn a_dead_load_balancer_does_not_stop_dns_repair_and_shows_in_metrics() {
    let mut fleet = Fleet::start();
    fleet.write_config("tcp:127.0.0.1:1");
    let controller = Controller::start(&fleet);
    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(10), || fleet
            .bind
            .query("www.example.test.", "A")
            == vec!["127.0.2.1"]),
        "DNS not repaired while HAProxy is unreachable"
    );
    assert!(
        wait_until(Duration::from_secs(5), || controller
            .metric("ipdrift_errors_total{target=\"lb-01\"}")
            .is_some_and(|v| v >= 1.0)),
        "errors not counted"
    );
    assert_eq!(
        controller.metric("ipdrift_target_up{target=\"lb-01\"}"),
        Some(0.0)
    );
    assert_eq!(
        controller.metric("ipdrift_target_up{target=\"ns1\"}"),
        Some(1.0)
    );
    assert!(
        controller
            .metric("ipdrift_drift_objects{target=\"lb-01\"}")
            .is_some_and(f64::is_nan),
        "drift of a target that cannot be read is unknown (NaN), not 0"
    );
    assert_eq!(
        controller.get("/readyz").map(|r| r.0),
        Some(503),
        "not ready while a target fails"
    );
    let (code, _) = controller.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn run_reports_a_listen_address_in_use_and_exits_1() {
    // Held for the whole test: the port cannot be taken by anyone else meanwhile.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("instances.json"), "[]").unwrap();
    let config = dir.path().join("ipdrift.toml");
    std::fs::write(
        &config,
        "[[inventory]]\nname = \"local\"\nkind = \"file\"\npath = \"instances.json\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipdrift"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--listen"])
        .arg(addr.to_string())
        .env_remove("RUST_LOG")
        .env_remove("IPDRIFT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ipdrift run");
    let exited = wait_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "ipdrift run kept running on a taken port: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "ipdrift: cannot listen on {addr} for /metrics; change controller.listen or free the port: "
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

/// One source, one zone, one load balancer; the addresses are never dialled.
const FAKE_CONFIG: &str = r#"
[controller]
interval = "1s"
timeout = "1s"

[[inventory]]
name = "cloud"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:1"
zone = "example.test."
tsig = { key_file = "unused.key" }

[[record]]
dns = "ns1"
name = "{name}.example.test."
select = { tags = { role = "web" } }
address = "public_ipv4"

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:1"

[[haproxy.backend]]
name = "web"
select = { tags = { role = "web" } }
address = "private_ipv4"
port = 80
server = "{name}"
health = "haproxy"
"#;

/// Two web instances; DNS empty; HAProxy at old addresses.
fn fakes() -> (FakeInventory, FakeDns, FakeLb) {
    let cloud = FakeInventory::new(
        "cloud",
        vec![
            instance("i-1", "web-01", "web", "192.0.2.1", "10.0.0.1"),
            instance("i-2", "web-02", "web", "192.0.2.2", "10.0.0.2"),
        ],
    );
    let lb = FakeLb::new("lb-01", &["web"]);
    lb.set_server("web", "web-01", "10.9.9.1", 80, ServerAdmin::Ready);
    lb.set_server("web", "web-02", "10.9.9.2", 80, ServerAdmin::Ready);
    (cloud, FakeDns::new("ns1", "example.test."), lb)
}

/// The wiring of `run` over the fakes: the admin server on a port-0 listener, no jitter, no
/// reloads. Also the stop switch and the admin address.
async fn wiring(
    cloud: &FakeInventory,
    ns1: &FakeDns,
    lb: &FakeLb,
) -> (Wiring, watch::Sender<bool>, SocketAddr, mpsc::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let (reload_tx, reload) = mpsc::channel(1);
    let (cloud, ns1, lb) = (cloud.clone(), ns1.clone(), lb.clone());
    let wiring = Wiring {
        listener,
        shutdown,
        reload,
        load: Box::new(|| Err("not reloaded in this test".to_string())),
        build: Box::new(move |_| Ok(fakes::parts(&[&cloud], &[&ns1], &[&lb]))),
        jitter: Box::new(|| 0.0),
    };
    (wiring, stop, addr, reload_tx)
}

fn fake_config() -> Arc<ipdrift::config::Config> {
    let config = ipdrift::config::parse(FAKE_CONFIG, Path::new("/nonexistent/ipdrift.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(config)
}

/// The whole seconds after `t0` at which calls started, one entry per second (a pass's
/// read-back after its write falls in the same second as its read).
fn seconds(calls: &[tokio::time::Instant], t0: tokio::time::Instant) -> Vec<u64> {
    let mut seconds: Vec<u64> = calls
        .iter()
        .map(|at| {
            let s = (*at - t0).as_secs_f64();
            assert!((s - s.round()).abs() < 0.02, "a call off the grid at {s} s");
            s.round() as u64
        })
        .collect();
    seconds.dedup();
    seconds
}

/// `GET path` from the admin server: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_string());
    (status, body)
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_backs_off_alone_and_a_success_resets_its_backoff() {
    let (cloud, ns1, lb) = fakes();
    ns1.fail_reads("SERVFAIL from the fake");
    let (wiring, stop, _, _reload) = wiring(&cloud, &ns1, &lb).await;
    let t0 = tokio::time::Instant::now();
    let test = async {
        tokio::time::sleep_until(t0 + Duration::from_millis(30_500)).await;
        // No jitter: retried at the next pass twice, then 1, 3, 7, 15 s skipped.
        assert_eq!(seconds(&ns1.reads(), t0), [0, 1, 2, 5, 12, 27]);
        // The load balancer and the source are tried every pass meanwhile.
        let every_pass: Vec<u64> = (0..=30).collect();
        assert_eq!(seconds(&lb.reads(), t0), every_pass);
        assert_eq!(seconds(&cloud.lists(), t0), every_pass);

        ns1.recover();
        tokio::time::sleep_until(t0 + Duration::from_millis(62_500)).await;
        // Next attempt after 31 s more; it works, so the target is back on every pass.
        assert_eq!(seconds(&ns1.reads(), t0)[6..], [58, 59, 60, 61, 62]);
        assert_eq!(ns1.write_calls(), 1);
        assert_eq!(
            ns1.a("web-02.example.test."),
            ["192.0.2.2".parse::<std::net::IpAddr>().unwrap()]
        );
        stop.send(true).unwrap();
    };
    let (result, ()) = tokio::join!(controller::run(fake_config(), wiring), test);
    result.unwrap();
}

#[tokio::test(start_paused = true)]
async fn verify_failures_are_counted_and_served_on_the_listener_run_was_given() {
    let (cloud, ns1, lb) = fakes();
    ns1.lose_writes();
    let (wiring, stop, addr, _reload) = wiring(&cloud, &ns1, &lb).await;
    let t0 = tokio::time::Instant::now();
    let test = async {
        // Passes at 0 s and 1 s: ns1's write is lost both times.
        tokio::time::sleep_until(t0 + Duration::from_millis(1500)).await;
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let series = |target: &str| {
            metric_in(
                &body,
                &format!("ipdrift_verify_failures_total{{target=\"{target}\"}}"),
            )
        };
        assert!(series("ns1").is_some_and(|n| n >= 2.0), "{body}");
        assert_eq!(series("lb-01"), Some(0.0), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);

        ns1.recover();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            ns1.a("web-01.example.test."),
            ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(get(addr, "/readyz").await.0, 200);
        stop.send(true).unwrap();
    };
    let (result, ()) = tokio::join!(controller::run(fake_config(), wiring), test);
    result.unwrap();
    // Stopped with run: nothing listens on its port any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
