//! Fault injection while `ipdrift run --interval 1s` runs against real BIND and HAProxy on
//! loopback (and, for the guards, one-shot `apply`). Each fault is checked for "nothing
//! lost, repaired after the fault clears"; the time from the fault clearing to convergence
//! is printed (`cargo nextest run --test faults --no-capture` shows it).

mod support;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::controller::Controller;
use support::fleet::{
    Fleet, ServerState, WebServer, ZONE, describe, http_get, lb_public, web_instance, web_private,
    web_public,
};
use support::wait_until;

/// The hand-made record of the zone file that no rule manages.
const STATIC: (&str, &str) = ("static.example.test.", "192.0.2.99");
/// Long enough for a pass after a failing target's backoff (1 s interval, up to ~7 s
/// after three failures), short enough to keep each test well under 30 s.
const CONVERGE: Duration = Duration::from_secs(15);

/// Waits until the fleet has converged at generation `g` with every server in service,
/// prints the time since `cleared` and returns it.
fn recovery(
    fleet: &Fleet,
    controller: &Controller,
    g: u8,
    cleared: Instant,
    what: &str,
) -> Duration {
    let converged = wait_until(CONVERGE, || {
        fleet.converged_at(g) && fleet.server_states().iter().all(|s| !s.in_maint())
    });
    let t = cleared.elapsed();
    assert!(
        converged,
        "{what}: not converged at generation {g} within {CONVERGE:?}; servers {:?}\nlog:\n{}",
        fleet.server_states(),
        controller.log_text()
    );
    eprintln!("recovery after {what}: {t:?}");
    t
}

/// `(name, sorted answers)` for every record the fleet's zone holds for its instances,
/// plus the hand-made one.
fn dns_snapshot(fleet: &Fleet) -> Vec<(String, Vec<String>)> {
    let mut names = vec![format!("www.{ZONE}"), STATIC.0.to_string()];
    names.extend((1..=fleet.web_servers).map(|n| format!("web-0{n}.{ZONE}")));
    names
        .into_iter()
        .map(|name| {
            let answers = fleet.bind.query(&name, "A");
            (name, answers)
        })
        .collect()
}

fn assert_static_untouched(fleet: &Fleet) {
    assert_eq!(
        fleet.bind.query(STATIC.0, "A"),
        vec![STATIC.1],
        "the hand-made record must be untouched"
    );
}

/// Replaces `from` (which must occur) by `to` in the fleet's ipdrift.toml.
fn edit_config(fleet: &Fleet, from: &str, to: &str) {
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    assert!(
        config.contains(from),
        "{from:?} not in the config:\n{config}"
    );
    std::fs::write(fleet.config_path(), config.replace(from, to)).unwrap();
}

/// Log events at WARN or ERROR whose `field` contains `needle`.
fn complaints(controller: &Controller, field: &str, needle: &str) -> Vec<Value> {
    controller
        .log_events()
        .into_iter()
        .filter(|e| e["level"] == "WARN" || e["level"] == "ERROR")
        .filter(|e| e[field].as_str().is_some_and(|v| v.contains(needle)))
        .collect()
}

fn target_up(controller: &Controller, target: &str) -> Option<f64> {
    controller.metric(&format!("ipdrift_target_up{{target=\"{target}\"}}"))
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

/// The bodies of those of `requests` requests through HAProxy's frontend that answered 200.
fn frontend_bodies(fleet: &Fleet, requests: usize) -> Vec<String> {
    (0..requests)
        .filter_map(|_| http_get(fleet.haproxy.frontend_port()))
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect()
}

#[test]
fn bind_outage_dns_converges_after_restart_while_haproxy_is_repaired_meanwhile() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();

    fleet.bind.stop();
    let down = Instant::now();
    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.haproxy_servers()
            == fleet.servers_at(2)),
        "HAProxy not repaired while BIND is down: {:?}\nlog:\n{}",
        fleet.haproxy_servers(),
        controller.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "ns1")
            == Some(0.0)),
        "ns1 not reported down"
    );
    assert_eq!(target_up(&controller, "lb-01"), Some(1.0));
    assert!(
        !complaints(&controller, "target", "ns1").is_empty(),
        "no error logged for ns1:\n{}",
        controller.log_text()
    );

    fleet.bind.start();
    let cleared = Instant::now();
    let outage = cleared - down;
    recovery(
        &fleet,
        &controller,
        2,
        cleared,
        &format!("BIND restart (down {outage:?})"),
    );
    assert_static_untouched(&fleet);
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "ns1")
            == Some(1.0)),
        "ns1 not reported up again"
    );
    let (code, log) = controller.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn haproxy_crash_and_restart_from_its_config_runtime_changes_are_reapplied() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();
    // Runtime changes that haproxy.cfg does not have.
    fleet.move_to(2);
    recovery(&fleet, &controller, 2, Instant::now(), "a move (no fault)");

    fleet.haproxy.stop();
    let down = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "lb-01")
            == Some(0.0)),
        "lb-01 not reported down"
    );
    // DNS keeps being repaired while the load balancer is dead.
    fleet.move_to(3);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.dns_at(3)),
        "DNS not repaired while HAProxy is down:\n{}",
        controller.log_text()
    );

    // Back from haproxy.cfg: generation 1's addresses, every runtime change lost.
    fleet.haproxy.start_again();
    let cleared = Instant::now();
    let outage = cleared - down;
    recovery(
        &fleet,
        &controller,
        3,
        cleared,
        &format!("HAProxy restart (down {outage:?})"),
    );
    let bodies = frontend_bodies(&fleet, 4);
    assert!(
        bodies.len() == 4 && bodies.iter().all(|b| b.contains("gen 3")),
        "traffic through HAProxy: {bodies:?}"
    );
    assert_static_untouched(&fleet);
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "lb-01")
            == Some(1.0)),
        "lb-01 not reported up again"
    );
}

#[test]
fn a_wrong_tsig_key_reload_is_accepted_and_fails_dns_only_until_the_key_is_fixed() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();
    let good_config = std::fs::read_to_string(fleet.config_path()).unwrap();
    let wrong_secret = "c29tZS1vdGhlci1zZWNyZXQtdGhhdC1pcy13cm9uZw==";
    std::fs::write(
        fleet.dir.path().join("wrong.secret"),
        format!("{wrong_secret}\n"),
    )
    .unwrap();
    let key_line = good_config
        .lines()
        .find(|l| l.starts_with("tsig"))
        .unwrap()
        .to_string();
    edit_config(
        &fleet,
        &key_line,
        &format!(
            "tsig = {{ name = \"{}\", algorithm = \"hmac-sha256\", secret_file = \"wrong.secret\" }}",
            fleet.bind.key_name()
        ),
    );
    controller.sighup();
    assert!(
        wait_until(Duration::from_secs(5), || controller
            .count_messages("configuration reloaded")
            == 1),
        "a valid config with a wrong secret must be accepted:\n{}",
        controller.log_text()
    );

    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.haproxy_servers()
            == fleet.servers_at(2)),
        "HAProxy not repaired while the TSIG key is wrong:\n{}",
        controller.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            complaints(&controller, "target", "ns1").iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(fleet.bind.key_name()))
            })
        }),
        "no error for ns1 naming the key {}:\n{}",
        fleet.bind.key_name(),
        controller.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "ns1")
            == Some(0.0)),
        "ns1 not reported down"
    );
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(1)],
        "nothing may be written to DNS with a wrong key"
    );
    let log = controller.log_text();
    assert!(
        !log.contains(wrong_secret) && !log.contains(fleet.bind.secret_base64()),
        "a secret leaked into the log:\n{log}"
    );

    std::fs::write(fleet.config_path(), &good_config).unwrap();
    controller.sighup();
    let cleared = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || controller
            .count_messages("configuration reloaded")
            == 2),
        "the fixed config was not reloaded:\n{}",
        controller.log_text()
    );
    recovery(&fleet, &controller, 2, cleared, "TSIG key fixed + SIGHUP");
    assert_static_untouched(&fleet);
    assert!(
        wait_until(Duration::from_secs(5), || target_up(&controller, "ns1")
            == Some(1.0)),
        "ns1 not reported up again"
    );
}

#[test]
fn an_invalid_config_on_sighup_is_rejected_and_the_running_one_keeps_repairing() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();
    edit_config(
        &fleet,
        &format!("port = {}\n", fleet.web_port),
        "port = 99999\n",
    );
    controller.sighup();
    assert!(
        wait_until(Duration::from_secs(5), || !complaints(
            &controller,
            "message",
            "configuration not reloaded"
        )
        .is_empty()),
        "the invalid config was not rejected:\n{}",
        controller.log_text()
    );
    let rejection = complaints(&controller, "message", "configuration not reloaded")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        rejection.contains("ipdrift.toml:") && rejection.contains("99999"),
        "the rejection names the file, line and value: {rejection}"
    );
    assert_eq!(controller.count_messages("configuration reloaded"), 0);

    fleet.move_to(2);
    let moved = Instant::now();
    recovery(
        &fleet,
        &controller,
        2,
        moved,
        "a move after an invalid config was rejected",
    );
    assert_eq!(controller.get("/healthz").map(|r| r.0), Some(200));
    let (code, log) = controller.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// How to break instances.json.
#[derive(Debug, Clone, Copy)]
enum InventoryFault {
    /// A valid, empty list (`[]`).
    Emptied,
    /// Half of the file, written in place as a non-atomic writer would.
    Truncated,
    Missing,
}

#[test]
fn a_broken_inventory_loses_nothing_and_repair_resumes_when_it_is_restored() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();
    let refusals = || {
        controller
            .metric("ipdrift_guard_refusals_total{guard=\"source-unavailable\"}")
            .expect("the guard counter is exported")
    };
    for (fault, next) in [
        (InventoryFault::Emptied, 2),
        (InventoryFault::Truncated, 3),
        (InventoryFault::Missing, 4),
    ] {
        let dns_before = dns_snapshot(&fleet);
        let servers_before = fleet.server_states();
        assert!(servers_before.iter().all(|s| !s.in_maint()));
        let refused_before = refusals();
        match fault {
            InventoryFault::Emptied => std::fs::write(fleet.instances_path(), "[]\n").unwrap(),
            InventoryFault::Truncated => {
                let full = std::fs::read_to_string(fleet.instances_path()).unwrap();
                std::fs::write(fleet.instances_path(), &full[..full.len() / 2]).unwrap();
            }
            InventoryFault::Missing => std::fs::remove_file(fleet.instances_path()).unwrap(),
        }
        // Several whole passes with the fault: nothing changes at any point.
        let start = controller.passes();
        let mut changed: Option<String> = None;
        let passed = wait_until(Duration::from_secs(10), || {
            let dns = dns_snapshot(&fleet);
            let servers = fleet.server_states();
            if dns != dns_before || servers != servers_before {
                changed = Some(format!("DNS {dns:?}\nservers {servers:?}"));
                return true;
            }
            controller.passes() >= start + 3
        });
        assert!(
            changed.is_none(),
            "{fault:?} inventory changed something:\n{}\nbefore: {dns_before:?}\n{servers_before:?}\nlog:\n{}",
            changed.unwrap(),
            controller.log_text()
        );
        assert!(passed, "{fault:?}: passes stopped");
        assert_eq!(
            target_up(&controller, "local"),
            Some(0.0),
            "{fault:?}: the source is down"
        );
        assert!(
            refusals() > refused_before,
            "{fault:?}: guard source-unavailable counted nothing ({} → {})",
            refused_before,
            refusals()
        );
        assert!(
            !complaints(&controller, "target", "local").is_empty(),
            "{fault:?}: no error logged for the source"
        );

        fleet.move_to(next);
        let cleared = Instant::now();
        recovery(
            &fleet,
            &controller,
            next,
            cleared,
            &format!("{fault:?} inventory restored"),
        );
        assert_static_untouched(&fleet);
        assert!(
            wait_until(Duration::from_secs(5), || target_up(&controller, "local")
                == Some(1.0)),
            "{fault:?}: source not reported up again"
        );
    }
}

/// Instance names that would add commands to a runtime-API line if they were sent: each
/// would take web-02 out of service or cut its sessions.
const EVIL_NAMES: [&str; 3] = [
    "web-01;shutdown sessions server web/web-02",
    "web-05\nset server web/web-02 state maint",
    "web-02 state maint",
];

#[test]
fn an_injection_shaped_instance_name_is_rejected_alone_and_never_sent() {
    let mut fleet = Fleet::start();
    let controller = Controller::start(&fleet);
    controller.wait_ready();
    let evil_names = EVIL_NAMES;
    let with_evil = |fleet: &Fleet, g: u8| {
        let mut instances = fleet.instances_at(g);
        for (i, name) in evil_names.iter().enumerate() {
            instances.push(serde_json::json!({
                "id": format!("i-evil-{i}"), "name": name, "state": "running",
                "public_ipv4": format!("127.0.{g}.{}", 40 + i),
                "private_ipv4": format!("127.0.{g}.{}", 50 + i),
                "tags": {"role": "web"},
            }));
        }
        instances
    };
    let before = fleet.server_states();
    fleet.write_instances(&with_evil(&fleet, 1));
    let named = |name: &str, target: &str| {
        complaints(&controller, "object", &format!("{name:?}"))
            .iter()
            .any(|e| e["target"] == target)
    };
    assert!(
        wait_until(Duration::from_secs(10), || evil_names
            .iter()
            .all(|n| named(n, "lb-01") && named(n, "ns1"))),
        "each bad instance must be rejected with an error naming it:\n{}",
        controller.log_text()
    );
    assert!(controller.wait_passes(2, Duration::from_secs(10)));
    assert_eq!(
        fleet.server_states(),
        before,
        "nothing reached HAProxy:\n{}",
        controller.log_text()
    );

    // The other instances are still repaired while the bad ones are listed.
    fleet.move_web_servers_to(2);
    fleet.write_instances(&with_evil(&fleet, 2));
    let moved = Instant::now();
    recovery(
        &fleet,
        &controller,
        2,
        moved,
        "a move with bad instances listed",
    );
    let web_02 = fleet
        .server_states()
        .into_iter()
        .find(|s| s.name == "web-02")
        .unwrap();
    assert!(
        !web_02.in_maint() && web_02.op_state == 2,
        "web-02 must stay in service: {web_02:?}"
    );
    let mut bodies = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            bodies.extend(frontend_bodies(&fleet, 1));
            bodies.iter().any(|b| b == "web-02 gen 2")
        }),
        "web-02 serves no traffic through the frontend: {bodies:?}"
    );
    // Only the bad instances were rejected.
    let rejected: Vec<Value> = controller
        .log_events()
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("skipped"))
        })
        .collect();
    assert!(!rejected.is_empty());
    for event in &rejected {
        let object = event["object"].as_str().unwrap_or_default();
        assert!(
            evil_names
                .iter()
                .any(|n| object.contains(&format!("{n:?}"))),
            "an instance other than the bad ones was skipped: {event}"
        );
    }
}

#[test]
fn an_instance_name_with_a_newline_cannot_forge_a_log_line() {
    let fleet = Fleet::start();
    let forged = "ERROR ipdrift::controller: forged by an instance name";
    let evil = |g: u8| {
        let mut instances = fleet.instances_at(1);
        instances.push(serde_json::json!({
            "id": "i-evil", "name": format!("web-05\n{forged}"), "state": "running",
            "public_ipv4": format!("127.0.{g}.40"), "private_ipv4": format!("127.0.{g}.50"),
            "tags": {"role": "web"},
        }));
        instances
    };
    fleet.write_instances(&evil(1));
    let controller = Controller::start_text(&fleet);
    assert!(controller.wait_passes(1, Duration::from_secs(10)));
    // Its addresses change: "instance address changed" names it.
    fleet.write_instances(&evil(2));
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = controller.log_text();
            log.lines()
                .any(|l| l.contains("address changed") && l.contains("i-evil"))
        }),
        "the address change was not logged:\n{}",
        controller.log_text()
    );
    let (_, log) = controller.terminate();
    let not_an_event: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("20") || l.starts_with(forged))
        .collect();
    assert!(
        not_an_event.is_empty(),
        "an instance name forged log lines (every line must start with a timestamp): {not_an_event:#?}"
    );
}

/// A TCP listener on loopback that accepts connections and never answers.
struct SilentServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stop_flag) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(stream);
                }
            }
            for stream in held {
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        SilentServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_dns_server_that_never_answers_times_out_without_holding_back_the_rest() {
    let silent = SilentServer::start();
    let mut fleet = Fleet::start();
    edit_config(&fleet, "timeout = \"3s\"", "timeout = \"1s\"");
    let mut config = std::fs::read_to_string(fleet.config_path()).unwrap();
    config.push_str(&format!(
        r#"
[[dns]]
name = "slow"
kind = "rfc2136"
server = "127.0.0.1:{port}"
zone = "{ZONE}"
tsig = {{ key_file = "{key_file}" }}

[[record]]
dns = "slow"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
"#,
        port = silent.port,
        key_file = fleet.bind.key_file_path().display(),
    ));
    std::fs::write(fleet.config_path(), config).unwrap();
    let check = fleet.ipdrift(&["check-config"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));

    let controller = Controller::start(&fleet);
    assert!(
        controller.wait_passes(2, Duration::from_secs(10)),
        "passes do not finish:\n{}",
        controller.log_text()
    );
    fleet.move_to(2);
    let moved = Instant::now();
    recovery(
        &fleet,
        &controller,
        2,
        moved,
        "a move with a silent DNS server",
    );
    assert!(
        silent.accepted.load(Ordering::SeqCst) >= 1,
        "ipdrift never connected to the silent server"
    );
    assert_eq!(target_up(&controller, "slow"), Some(0.0));
    assert_eq!(target_up(&controller, "ns1"), Some(1.0));
    assert_eq!(target_up(&controller, "lb-01"), Some(1.0));
    let timeouts: Vec<Value> = complaints(&controller, "target", "slow")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("within 1s"))
        })
        .collect();
    assert!(
        !timeouts.is_empty(),
        "no error for `slow` saying it timed out after 1s:\n{}",
        controller.log_text()
    );
    // /metrics answers promptly throughout, whatever the passes are waiting for.
    for _ in 0..10 {
        let asked = Instant::now();
        let answer = controller.get("/metrics");
        assert_eq!(answer.map(|r| r.0), Some(200));
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "/metrics took {:?}",
            asked.elapsed()
        );
    }
    let sum = controller
        .metric("ipdrift_reconcile_duration_seconds_sum")
        .unwrap();
    let count = controller
        .metric("ipdrift_reconcile_duration_seconds_count")
        .unwrap();
    assert!(
        sum / count < 3.0,
        "a pass takes {:.2} s on average with a 1 s timeout",
        sum / count
    );
    eprintln!(
        "passes with a silent DNS target: {count} taking {:.2} s on average",
        sum / count
    );
}

/// The server named `name` in `states`.
fn pick<'a>(states: &'a [ServerState], name: &str) -> &'a ServerState {
    states
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no server {name} in {states:?}"))
}

#[test]
fn apply_refuses_taking_most_of_a_backend_out_until_forced() {
    let mut fleet = Fleet::with_web_servers(3);
    assert!(fleet.converged_at(1));
    let before = fleet.server_states();
    let mut instances = fleet.instances_at(1);
    for instance in &mut instances {
        if instance["name"] == "web-02" || instance["name"] == "web-03" {
            instance["state"] = "stopped".into();
        }
    }
    fleet.write_instances(&instances);
    fleet.webs.truncate(1);

    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    let mut refused: Vec<(String, String)> = plan["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["guard"].as_str().unwrap().to_string(),
                r["object"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        vec![
            ("max-remove-fraction".to_string(), "web/web-02".to_string()),
            ("max-remove-fraction".to_string(), "web/web-03".to_string()),
        ],
        "{plan:#}"
    );
    assert!(
        plan["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["target"] == "lb-01" && r["reason"].is_string()),
        "{plan:#}"
    );

    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(3), "{}", describe(&apply));
    assert!(
        describe(&apply).contains("max-remove-fraction"),
        "names the guard:\n{}",
        describe(&apply)
    );
    assert_eq!(fleet.server_states(), before, "HAProxy unchanged");

    let forced = fleet.ipdrift(&["apply", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    let after = fleet.server_states();
    assert!(pick(&after, "web-02").in_maint(), "{after:?}");
    assert!(pick(&after, "web-03").in_maint(), "{after:?}");
    assert!(!pick(&after, "web-01").in_maint(), "{after:?}");
    let bodies = frontend_bodies(&fleet, 3);
    assert!(
        bodies.len() == 3 && bodies.iter().all(|b| b == "web-01 gen 1"),
        "traffic goes to web-01 only: {bodies:?}"
    );
    let again = fleet.ipdrift(&["apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_static_untouched(&fleet);
}

#[test]
fn apply_adds_a_server_missing_from_haproxy_cfg_and_serves_it_once_it_answers() {
    let mut fleet = Fleet::start();
    let mut instances = fleet.instances_at(1);
    instances.push(web_instance(1, 3));
    fleet.write_instances(&instances);
    let endpoint = format!("{}:{}", web_private(1, 3), fleet.web_port);

    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let ops: Vec<(String, String)> = json_of(&apply)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["target"] == "lb-01")
        .map(|c| {
            (
                c["op"].as_str().unwrap().to_string(),
                c["object"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![("create".to_string(), "web/web-03".to_string())],
        "added, not yet enabled: nothing answers at {endpoint}"
    );
    let states = fleet.server_states();
    let web_03 = pick(&states, "web-03");
    assert_eq!(web_03.addr, endpoint);
    assert!(
        web_03.in_maint(),
        "not in service before it answers: {web_03:?}"
    );
    assert_eq!(
        fleet.bind.query(&format!("web-03.{ZONE}"), "A"),
        vec![web_public(1, 3)]
    );

    fleet.webs.push(WebServer::start(
        &web_private(1, 3),
        fleet.web_port,
        "web-03 gen 1",
    ));
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        json_of(&apply)["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["op"] == "enable" && c["object"] == "web/web-03"),
        "{}",
        describe(&apply)
    );
    let states = fleet.server_states();
    assert!(!pick(&states, "web-03").in_maint(), "{states:?}");
    let mut bodies = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            bodies.extend(frontend_bodies(&fleet, 1));
            bodies.iter().any(|b| b == "web-03 gen 1")
        }),
        "web-03 gets no traffic: {bodies:?}"
    );
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
}

#[test]
fn sync_deletes_the_records_ipdrift_created_and_never_hand_made_ones() {
    let mut fleet = Fleet::start();
    edit_config(
        &fleet,
        &format!("name = \"{{name}}.{ZONE}\"\n"),
        &format!("name = \"{{name}}.{ZONE}\"\npolicy = \"sync\"\n"),
    );
    let txt = |name: &str| fleet.bind.query(&format!("_ipdrift.{name}.{ZONE}"), "TXT");
    let a = |name: &str| fleet.bind.query(&format!("{name}.{ZONE}"), "A");
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(txt("web-01").is_empty(), "web-01 was made by hand");

    let mut instances = fleet.instances_at(1);
    instances.push(web_instance(1, 3));
    fleet.write_instances(&instances);
    fleet.webs.push(WebServer::start(
        &web_private(1, 3),
        fleet.web_port,
        "web-03 gen 1",
    ));
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(a("web-03"), vec![web_public(1, 3)]);
    let ownership = txt("web-03");
    assert!(
        ownership.len() == 1
            && ownership[0].starts_with("\"heritage=ipdrift,owner=ipdrift,inventory="),
        "{ownership:?}"
    );

    // Terminated: the record ipdrift created goes, with its ownership record.
    instances.last_mut().unwrap()["state"] = "terminated".into();
    fleet.write_instances(&instances);
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        json_of(&apply)["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["target"] == "ns1"
                && c["op"] == "delete"
                && c["object"] == format!("web-03.{ZONE} A")),
        "{}",
        describe(&apply)
    );
    assert!(a("web-03").is_empty(), "the owned record is deleted");
    assert!(txt("web-03").is_empty(), "its ownership record too");

    // Terminated: the hand-made record matching the template stays.
    instances
        .iter_mut()
        .find(|i| i["name"] == "web-01")
        .unwrap()["state"] = "terminated".into();
    fleet.write_instances(&instances);
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        !json_of(&apply)["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["target"] == "ns1"),
        "{}",
        describe(&apply)
    );
    assert_eq!(
        a("web-01"),
        vec![web_public(1, 1)],
        "a hand-made record is never deleted"
    );
    assert_eq!(a("web-02"), vec![web_public(1, 2)]);
    assert_static_untouched(&fleet);
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
}
