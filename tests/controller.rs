//! `ipdrift run` as a long-running process against real BIND and HAProxy: it repairs a
//! change within about one interval, serves /metrics /healthz /readyz, survives a HAProxy
//! restart, and stops cleanly on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use support::controller::Controller;
use support::fleet::Fleet;
use support::{parse_openmetrics, wait_until};

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
    assert!(
        applied.iter().all(|v| v["target_name"].is_string()
            && v["object"].is_string()
            && v["to"].is_string())
    );
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
    assert_eq!(
        controller.get("/readyz").map(|r| r.0),
        Some(503),
        "not ready while a target fails"
    );
    let (code, _) = controller.terminate();
    assert_eq!(code, Some(0));
}
