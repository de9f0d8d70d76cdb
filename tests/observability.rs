//! Observability of a live `ipdrift run` during the seed outage, against real BIND and
//! HAProxy: what /metrics says before, during and after (every scrape parsed by a strict
//! OpenMetrics parser), the audit log and the timeline made from it, structured logs, and
//! webhooks — including one that never answers.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::controller::{Controller, metric_in};
use support::fleet::{self, Fleet, describe, write_atomically};
use support::webhook::{Hanging, Receiver};
use support::{parse_openmetrics, wait_until};

/// Adds `controller.audit_log = "audit.jsonl"` and `notify` sections to the fleet's config.
fn configure(fleet: &Fleet, notify: &[(&str, &str)]) {
    let mut config = std::fs::read_to_string(fleet.config_path()).unwrap();
    config = config.replacen(
        "[controller]\n",
        "[controller]\naudit_log = \"audit.jsonl\"\n",
        1,
    );
    for (url, kind) in notify {
        config.push_str(&format!(
            "\n[[notify]]\nurl = \"{url}\"\nkind = \"{kind}\"\nfailing_passes = 2\ntimeout = \"1s\"\n"
        ));
    }
    std::fs::write(fleet.config_path(), config).unwrap();
}

/// A third web server appears in the inventory with nothing listening at its address:
/// ipdrift adds its server to HAProxy but keeps it in maintenance, waiting for the probe, so
/// lb-01 stays out of sync (DNS gets its record).
fn add_unknown_web_server(fleet: &Fleet, g: u8) {
    let mut instances: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fleet.instances_path()).unwrap()).unwrap();
    instances.push(
        json!({"id": "i-web-03", "name": "web-03", "state": "running",
        "public_ipv4": fleet::web_public(g, 3), "private_ipv4": fleet::web_private(g, 3),
        "tags": {"role": "web"}}),
    );
    write_atomically(
        &fleet.instances_path(),
        &serde_json::to_string(&instances).unwrap(),
    );
}

/// Scrapes /metrics, checks it with the strict OpenMetrics parser, returns the text.
fn scrape(controller: &Controller) -> String {
    let (status, headers, body) = controller.get("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    parse_openmetrics(&body);
    body
}

fn value(body: &str, series: &str) -> f64 {
    metric_in(body, series).unwrap_or_else(|| panic!("{series} missing from\n{body}"))
}

/// Polls scrapes (each parsed strictly) until `check` holds.
fn wait_for_metrics(controller: &Controller, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = scrape(controller);
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}; last scrape:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_audit_log_timeline_and_logs_follow_the_seed_outage() {
    let mut fleet = Fleet::start();
    configure(&fleet, &[]);
    let controller = Controller::start(&fleet);
    controller.wait_ready();

    // Converged at generation 1: zeros everywhere, reads timed, nothing written.
    let before = scrape(&controller);
    for target in ["ns1", "lb-01"] {
        let label = format!("{{target=\"{target}\"}}");
        assert_eq!(
            value(&before, &format!("ipdrift_drift_objects{label}")),
            0.0
        );
        assert_eq!(
            value(
                &before,
                &format!("ipdrift_drift_started_timestamp_seconds{label}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &before,
                &format!("ipdrift_target_write_duration_seconds_count{label}")
            ),
            0.0
        );
        assert!(
            value(
                &before,
                &format!("ipdrift_target_read_duration_seconds_count{label}")
            ) >= 1.0
        );
    }
    assert!(
        value(
            &before,
            "ipdrift_target_read_duration_seconds_count{target=\"local\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(&before, "ipdrift_time_to_converge_seconds_count"),
        0.0
    );
    assert_eq!(value(&before, "ipdrift_reconcile_interval_seconds"), 1.0);
    assert_eq!(
        value(
            &before,
            "ipdrift_instance_address_changes_total{source=\"local\"}"
        ),
        0.0
    );

    // The outage: every address changes; one pass repairs it.
    fleet.move_to(2);
    let after = wait_for_metrics(&controller, "the repair is not counted", |m| {
        metric_in(m, "ipdrift_time_to_converge_seconds_count") == Some(2.0)
    });
    assert!(fleet.converged_at(2));
    assert_eq!(
        value(
            &after,
            "ipdrift_instance_address_changes_total{source=\"local\"}"
        ),
        6.0
    );
    assert_eq!(
        value(
            &after,
            "ipdrift_changes_total{target=\"ns1\",op=\"update\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "ipdrift_changes_total{target=\"lb-01\",op=\"update\"}"
        ),
        2.0
    );
    // Both targets were seen drifting and verified repaired within the same pass.
    let converge_sum = value(&after, "ipdrift_time_to_converge_seconds_sum");
    assert!(converge_sum > 0.0 && converge_sum < 6.0, "{converge_sum}");
    for target in ["ns1", "lb-01"] {
        let label = format!("{{target=\"{target}\"}}");
        assert_eq!(
            value(
                &after,
                &format!("ipdrift_drift_started_timestamp_seconds{label}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &after,
                &format!("ipdrift_target_write_duration_seconds_count{label}")
            ),
            1.0
        );
        assert_eq!(value(&after, &format!("ipdrift_drift_objects{label}")), 0.0);
    }

    // Drift ipdrift cannot repair: drift start is set and stays while it lasts.
    add_unknown_web_server(&fleet, 2);
    let stuck = wait_for_metrics(&controller, "lb-01 drift not reported", |m| {
        metric_in(m, "ipdrift_drift_objects{target=\"lb-01\"}") == Some(1.0)
    });
    let started = value(
        &stuck,
        "ipdrift_drift_started_timestamp_seconds{target=\"lb-01\"}",
    );
    assert!(
        (unix_now() - started).abs() < 10.0,
        "drift started at {started}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let later = scrape(&controller);
    assert_eq!(
        value(
            &later,
            "ipdrift_drift_started_timestamp_seconds{target=\"lb-01\"}"
        ),
        started,
        "the start of an ongoing drift does not move"
    );
    assert_eq!(
        value(
            &later,
            "ipdrift_drift_started_timestamp_seconds{target=\"ns1\"}"
        ),
        0.0
    );
    // ns1 got web-03's record in the pass that saw it: one more convergence.
    assert_eq!(value(&later, "ipdrift_time_to_converge_seconds_count"), 3.0);

    // The instance goes away again: lb-01 converges without a change.
    fleet.move_to(2);
    let resolved = wait_for_metrics(&controller, "lb-01 never converged", |m| {
        metric_in(
            m,
            "ipdrift_drift_started_timestamp_seconds{target=\"lb-01\"}",
        ) == Some(0.0)
    });
    assert_eq!(
        value(&resolved, "ipdrift_time_to_converge_seconds_count"),
        4.0
    );
    assert!(value(&resolved, "ipdrift_time_to_converge_seconds_sum") - converge_sum >= 2.0);

    let (code, stderr) = controller.terminate();
    assert_eq!(code, Some(0), "{stderr}");

    // Structured logs: target, object, from, to, duration.
    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let applied: Vec<&Value> = logs.iter().filter(|v| v["message"] == "applied").collect();
    assert!(applied.len() >= 6, "{stderr}");
    for line in &applied {
        assert!(
            line["target"] == "ns1" || line["target"] == "lb-01",
            "{line}"
        );
        assert!(
            line["object"].is_string() && line["from"].is_string() && line["to"].is_string(),
            "{line}"
        );
        assert!(
            line["duration"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
    }
    assert!(
        logs.iter()
            .any(|v| v["message"] == "instance address changed"
                && v["from"] == fleet::lb_public(1)
                && v["to"] == fleet::lb_public(2))
    );
    assert!(
        logs.iter()
            .any(|v| v["message"] == "converged" && v["duration"].is_f64())
    );

    // The audit log: one JSON object per line, no secret.
    let audit_path = fleet.dir.path().join("audit.jsonl");
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert!(
        !audit.contains(fleet.bind.secret_base64()),
        "the TSIG secret leaked"
    );
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events[0]["event"], "started");
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    // web-03 appearing and going away are not address changes of a known instance.
    assert_eq!(count("address_changed"), 6, "{audit}");
    // web-03: its record is created and its server added (kept in maintenance: nothing
    // answers at its address, so it awaits the probe until it goes away).
    assert_eq!(count("change"), 5 + 2, "{audit}");
    assert_eq!(count("converged"), 4, "{audit}");
    for event in &events {
        assert!(
            event["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{event}"
        );
    }
    let www = events
        .iter()
        .find(|e| e["event"] == "change" && e["object"] == "www.example.test. A")
        .unwrap();
    assert_eq!(www["target"], "ns1");
    assert_eq!(www["result"], "applied");
    assert!(www["from"].as_str().unwrap().contains(&fleet::lb_public(1)));
    assert!(www["to"].as_str().unwrap().contains(&fleet::lb_public(2)));
    let moved = events
        .iter()
        .find(|e| e["event"] == "address_changed" && e["instance"] == "i-lb")
        .unwrap();
    assert_eq!(
        (moved["source"].as_str(), moved["old"].as_str()),
        (Some("local"), Some(fleet::lb_public(1).as_str()))
    );

    // The timeline from the configured audit log.
    let out = fleet.ipdrift(&["timeline", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let timeline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let incidents = timeline["incidents"].as_array().unwrap();
    // The outage, and web-03 that haproxy.cfg does not know.
    assert_eq!(incidents.len(), 2, "{timeline:#}");
    let outage = &incidents[0];
    assert_eq!(outage["status"], "resolved");
    assert_eq!(outage["summary"]["address_changes"], 6);
    assert_eq!(outage["summary"]["repairs_applied"], 5);
    let impact = outage["impact"].as_array().unwrap();
    assert_eq!(
        impact.len(),
        5,
        "www, web-01, web-02 and two servers: {impact:#?}"
    );
    assert!(impact.iter().all(|i| i["fix"] == "repaired"));
    assert!(outage["duration"].as_f64().unwrap() < 6.0);
    let stuck = &incidents[1];
    assert!(
        stuck["impact"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["object"] == "web/web-03"
                && (i["fix"] == "resolved" || i["fix"] == "repaired")),
        "{stuck:#}"
    );

    let out = fleet.ipdrift(&[
        "timeline",
        "--audit-log",
        audit_path.to_str().unwrap(),
        "--output",
        "markdown",
        "--since",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let markdown = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "# ipdrift incident timeline",
        "## Incident 1: ",
        "addresses changed, resolved in",
        "| Drift detected |",
        "| Converged |",
        "### Timeline",
        "ns1: update www.example.test. A",
        "### Impact",
        "| lb-01 | web/web-01 |",
    ] {
        assert!(
            markdown.contains(needle),
            "{needle:?} missing from\n{markdown}"
        );
    }
    let none = fleet.ipdrift(&["timeline", "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        String::from_utf8_lossy(&none.stdout),
        "No incidents in until 2000-01-01T00:00:00.000Z.\n"
    );
}

#[test]
fn webhooks_hear_of_drift_and_repair_and_a_hanging_one_slows_nothing() {
    let mut fleet = Fleet::start();
    let receiver = Receiver::start();
    let hanging = Hanging::start();
    configure(&fleet, &[(&hanging.url, "slack"), (&receiver.url, "json")]);
    let controller = Controller::start(&fleet);
    controller.wait_ready();

    fleet.move_to(2);
    let changed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || fleet.converged_at(2)),
        "not repaired"
    );
    assert!(
        changed.elapsed() < Duration::from_secs(4),
        "repair took {:?}",
        changed.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(5), || receiver
            .bodies()
            .iter()
            .filter(|b| b["event"] == "repaired")
            .count()
            == 2),
        "{:?}",
        receiver.bodies()
    );
    let bodies = receiver.bodies();
    let detected: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["event"] == "drift_detected")
        .collect();
    assert_eq!(detected.len(), 2, "{bodies:?}");
    let dns = detected.iter().find(|b| b["target"] == "ns1").unwrap();
    assert_eq!(dns["objects"].as_array().unwrap().len(), 3);
    assert!(dns["ts"].as_str().unwrap().ends_with('Z'));
    assert!(
        dns["text"]
            .as_str()
            .unwrap()
            .starts_with("ipdrift: drift detected on ns1")
    );
    assert!(hanging.connections() >= 1, "the hanging webhook was tried");

    // Drift that cannot be repaired: "repair failing" after 2 passes, once.
    add_unknown_web_server(&fleet, 2);
    let passes_before = controller
        .metric("ipdrift_reconcile_duration_seconds_count")
        .unwrap();
    let watch = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || receiver
            .bodies()
            .iter()
            .any(|b| b["event"] == "repair_failing")),
        "{:?}",
        receiver.bodies()
    );
    std::thread::sleep(Duration::from_secs(3));
    let failing: Vec<Value> = receiver
        .bodies()
        .into_iter()
        .filter(|b| b["event"] == "repair_failing")
        .collect();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["target"], "lb-01");
    assert_eq!(failing[0]["passes"], 2);
    assert!(
        failing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("web/web-03")
    );
    // Passes kept their 1 s rhythm while the hanging webhook held its queue.
    let passes = controller
        .metric("ipdrift_reconcile_duration_seconds_count")
        .unwrap()
        - passes_before;
    let expected = watch.elapsed().as_secs_f64() / 1.1;
    assert!(
        passes >= expected - 2.0,
        "{passes} passes in {:?}",
        watch.elapsed()
    );

    let (code, stderr) = controller.terminate_within(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    // A timed-out attempt is retried on a new connection.
    assert!(
        hanging.connections() >= 2,
        "no retry against the hanging webhook"
    );
    for secret in ["secret-token", &hanging.url] {
        assert!(
            !stderr.contains(secret),
            "a webhook URL leaked into the log:\n{stderr}"
        );
    }
    let audit = std::fs::read_to_string(fleet.dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains("secret-token") && !audit.contains(&hanging.url));
}

#[test]
fn apply_appends_its_repair_to_the_audit_log_and_timeline_needs_a_log() {
    let mut fleet = Fleet::start();
    let out = fleet.ipdrift(&["timeline"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        describe(&out).contains("controller.audit_log") && describe(&out).contains("--audit-log"),
        "{}",
        describe(&out)
    );

    configure(&fleet, &[]);
    fleet.move_to(2);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let again = fleet.ipdrift(&["apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));

    let audit = std::fs::read_to_string(fleet.dir.path().join("audit.jsonl")).unwrap();
    let kinds: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // One pass: both targets drift, five changes, both converge; the quiet second apply
    // writes nothing.
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("drift_detected"), 2, "{audit}");
    assert_eq!(count("change"), 5, "{audit}");
    assert_eq!(count("converged"), 2, "{audit}");
    assert_eq!(count("pass"), 1, "{audit}");
    assert_eq!(kinds.last().map(String::as_str), Some("pass"));

    let out = fleet.ipdrift(&["timeline", "--output", "text"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Incident 1: ") && text.contains("drift, resolved in"),
        "{text}"
    );
    assert!(
        text.contains("Repairs:          5 applied, 0 failed attempt(s)"),
        "{text}"
    );
}
