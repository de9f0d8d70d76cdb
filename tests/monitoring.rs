//! The alert rules and the Grafana dashboard in deploy/: promtool checks and unit-tests the
//! rules, and every metric either of them names is one the real binary exports.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::controller::Controller;
use support::fleet::describe;
use support::{free_port, parse_openmetrics, require_promtool, wait_until};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const RULES: &str = "deploy/prometheus/ipdrift-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/ipdrift-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/ipdrift.json";

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = Command::new(require_promtool())
        .args(["check", "rules"])
        .arg(repo(RULES))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let all = describe(&out);
    assert!(all.contains("SUCCESS: 13 rules found"), "{all}");
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let out = Command::new(require_promtool())
        .args(["test", "rules"])
        .arg(repo(RULE_TESTS))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn the_alerts_cover_what_operators_must_hear_about() {
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    for alert in [
        "IpdriftMaintenanceUnderway",
        "IpdriftMaintenanceHeldLong",
        "IpdriftDriftNotRepaired",
        "IpdriftNoSuccessfulPass",
        "IpdriftTargetDown",
        "IpdriftGuardRefusing",
        "IpdriftScheduledEventAhead",
        "IpdriftAbsent",
        "IpdriftNoLeader",
        "IpdriftSeveralLeaders",
        "IpdriftSecondaryLagging",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
        let tests = std::fs::read_to_string(repo(RULE_TESTS)).unwrap();
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool unit test"
        );
    }
}

/// Sample names `/metrics` of the real binary can carry: each family's samples by its type,
/// plus families that have no series yet (scheduled events) under their own name.
fn exported_sample_names() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("instances.json"), "[]").unwrap();
    std::fs::write(
        dir.path().join("key.conf"),
        "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"; };\n",
    )
    .unwrap();
    // Targets that do not answer: enough for every labelled family to have series.
    let config = format!(
        "[controller]\ntimeout = \"1s\"\n\n[[inventory]]\nname = \"local\"\nkind = \"file\"\npath = \"instances.json\"\n\n\
         [[dns]]\nname = \"ns1\"\nkind = \"rfc2136\"\nserver = \"127.0.0.1:{}\"\nzone = \"example.test.\"\ntsig = {{ key_file = \"key.conf\" }}\n\n\
         [[haproxy]]\nname = \"lb-01\"\nruntime_api = \"tcp:127.0.0.1:1\"\n",
        free_port()
    );
    let path = dir.path().join("ipdrift.toml");
    std::fs::write(&path, config).unwrap();
    let controller = Controller::start_with(&path);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || controller
            .metric("ipdrift_reconcile_duration_seconds_count")
            .is_some_and(|n| n >= 1.0)),
        "no pass finished"
    );
    let (_, _, body) = controller.get("/metrics").unwrap();
    parse_openmetrics(&body);
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').unwrap();
        let samples: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_count", "_sum"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(samples.iter().map(|s| format!("{family}{s}")));
    }
    for family in ipdrift::metrics::ALL {
        let declared = family.strip_suffix("_total").unwrap_or(family);
        if !body.contains(&format!("# TYPE {declared} ")) {
            assert_eq!(
                family,
                ipdrift::metrics::SCHEDULED_EVENTS,
                "only scheduled events may be missing from a scrape"
            );
            names.insert(family.to_string());
        }
    }
    names
}

/// Every `ipdrift_…` token in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("ipdrift_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every PromQL query of the dashboard: panel targets, variables and annotations.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    ("query", serde_json::Value::String(q)) if q.contains('(') => {
                        out.push(q.clone())
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_and_alerts_name_only_metrics_the_binary_exports() {
    let exported = exported_sample_names();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap())
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{queries:?}");
    for query in &queries {
        let names = metric_names_in(query);
        assert!(
            !names.is_empty(),
            "a query without an ipdrift metric: {query}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "dashboard query names {name}, which ipdrift does not export: {query}\nexported: {exported:?}"
            );
        }
    }
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    for name in metric_names_in(&rules) {
        assert!(
            exported.contains(&name),
            "alert rules name {name}, which ipdrift does not export"
        );
    }
}

#[test]
fn the_dashboard_has_the_panels_the_readme_describes() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    // Line breaks inside a paragraph render as spaces.
    let readme = std::fs::read_to_string(repo("README.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() > 0);
        if panel["type"] != "row" {
            assert!(
                readme.contains(&format!("**{}**", panel["title"].as_str().unwrap())),
                "README does not describe the panel {}",
                panel["title"]
            );
        }
    }
    for wanted in [
        "Drift by target",
        "Changes applied",
        "Time to converge",
        "Target up",
        "Scheduled events",
        "Secondaries lagging",
    ] {
        assert!(titles.contains(&wanted), "{wanted} missing from {titles:?}");
    }
}
