//! Passes that start before the interval is up: a replaced inventory file (watched) and
//! `POST /reconcile`, against real BIND and HAProxy with the real binary at a 10 s
//! interval, so that only a trigger can explain a repair within a second or two.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::controller::Controller;
use support::fleet::{Fleet, describe};
use support::wait_until;

/// Well within the 10 s interval, and far more than a triggered pass needs.
const SOON: Duration = Duration::from_secs(3);

/// `METHOD path` on the admin listener, with `Authorization: Bearer TOKEN` if given:
/// (status, body).
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Changes the fleet's ipdrift.toml: `after` gets `line` added below it.
fn add_config_line(fleet: &Fleet, after: &str, line: &str) {
    let path = fleet.config_path();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(after), "{after:?} not in the fleet's config");
    fs::write(&path, text.replacen(after, &format!("{after}\n{line}"), 1)).unwrap();
}

#[test]
fn a_replaced_inventory_file_is_repaired_within_moments_at_a_10s_interval() {
    let mut fleet = Fleet::start();
    let controller = Controller::start_every(&fleet.config_path(), "10s");
    controller.wait_ready();
    let mut took = Vec::new();
    for generation in 2..=6 {
        let changed = Instant::now();
        // move_to writes instances.json by rename, as a careful producer does.
        fleet.move_to(generation);
        let repaired = wait_until(SOON, || fleet.converged_at(generation));
        took.push(changed.elapsed());
        assert!(
            repaired,
            "generation {generation} not repaired within {SOON:?}; log:\n{}",
            controller.log_text()
        );
    }
    eprintln!("change to repair (including the test's DNS and HAProxy reads): {took:?}");
    assert!(
        controller.log_text().contains("pass triggered"),
        "the log says why a pass started:\n{}",
        controller.log_text()
    );
}

#[test]
fn with_watch_false_only_the_interval_or_a_request_starts_a_pass() {
    let mut fleet = Fleet::start();
    add_config_line(&fleet, "path = \"instances.json\"", "watch = false");
    let token = "s3cr3t-Reconcile+Token/42";
    fs::write(
        fleet.dir.path().join("reconcile.token"),
        format!("{token}\n"),
    )
    .unwrap();
    add_config_line(
        &fleet,
        "timeout = \"3s\"",
        "reconcile_token_file = \"reconcile.token\"",
    );
    let check = fleet.ipdrift(&["check-config"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));

    let controller = Controller::start_every(&fleet.config_path(), "10s");
    controller.wait_ready();
    fleet.move_to(2);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !fleet.converged_at(2),
        "nothing watches the file, and the interval is 10 s"
    );

    assert_eq!(request(controller.port, "POST", "/reconcile", None).0, 401);
    assert_eq!(
        request(controller.port, "POST", "/reconcile", Some("wrong")).0,
        401
    );
    assert_eq!(
        request(controller.port, "GET", "/reconcile", Some(token)).0,
        405
    );
    assert!(!fleet.converged_at(2), "a refused request starts no pass");

    let (status, body) = request(controller.port, "POST", "/reconcile", Some(token));
    assert_eq!(status, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON body");
    assert!(answer["pass"].as_u64().is_some_and(|n| n >= 2), "{answer}");
    assert!(
        wait_until(SOON, || fleet.converged_at(2)),
        "POST /reconcile repaired nothing; log:\n{}",
        controller.log_text()
    );
    assert!(
        !controller.log_text().contains(token),
        "the token is never logged"
    );
}

#[test]
fn post_reconcile_without_a_configured_token_is_open_and_numbers_the_pass() {
    let fleet = Fleet::start();
    let controller = Controller::start_every(&fleet.config_path(), "10s");
    controller.wait_ready();
    let (status, body) = request(controller.port, "POST", "/reconcile", None);
    assert_eq!(status, 202, "{body}");
    let first: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert!(controller.wait_passes(1, SOON), "{}", controller.log_text());
    let (_, body) = request(controller.port, "POST", "/reconcile", None);
    let second: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert!(
        second["pass"].as_u64() > first["pass"].as_u64(),
        "a later request is served by a later pass: {first} then {second}"
    );
}
