//! `ipdrift timeline` on recorded audit logs, run as the real binary, with insta snapshots
//! of each output format. `seed-outage.audit.jsonl` was recorded by `scripts/demo`
//! (KEEP_AUDIT_LOG=…); `failing-repair.audit.jsonl` has failed writes, a guard refusal, a
//! restart, a line cut short, and an incident still open at the end.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::fleet::describe;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `ipdrift timeline --audit-log FIXTURE ARGS…`, with a config path that does not exist:
/// a given log needs no config.
fn timeline(log: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipdrift"))
        .args([
            "--config",
            "/nonexistent/ipdrift.toml",
            "timeline",
            "--audit-log",
        ])
        .arg(fixture(log))
        .args(args)
        .env_remove("IPDRIFT_CONFIG")
        .output()
        .expect("run ipdrift timeline")
}

fn stdout_of(log: &str, args: &[&str]) -> String {
    let out = timeline(log, args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_seed_outage_as_markdown() {
    insta::assert_snapshot!(stdout_of(
        "seed-outage.audit.jsonl",
        &["--output", "markdown"]
    ));
}

#[test]
fn the_seed_outage_as_text() {
    insta::assert_snapshot!(stdout_of("seed-outage.audit.jsonl", &[]));
}

#[test]
fn the_seed_outage_as_json() {
    let text = stdout_of("seed-outage.audit.jsonl", &["--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    insta::assert_snapshot!(serde_json::to_string_pretty(&value).unwrap());
}

#[test]
fn failed_repairs_refusals_and_a_restart_as_markdown() {
    insta::assert_snapshot!(stdout_of(
        "failing-repair.audit.jsonl",
        &["--output", "markdown"]
    ));
}

#[test]
fn failed_repairs_refusals_and_a_restart_as_text() {
    insta::assert_snapshot!(stdout_of(
        "failing-repair.audit.jsonl",
        &["--output", "text"]
    ));
}

#[test]
fn the_window_selects_incidents() {
    let only_first = stdout_of(
        "failing-repair.audit.jsonl",
        &[
            "--since",
            "2026-05-01T10:01:05Z",
            "--until",
            "2026-05-01T12:01:05+02:00",
            "--output",
            "json",
        ],
    );
    let value: serde_json::Value = serde_json::from_str(&only_first).unwrap();
    let incidents = value["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{value:#}");
    assert_eq!(incidents[0]["started"], "2026-05-01T10:01:00Z");
    // A duration ago: these incidents are long past.
    let recent = stdout_of("failing-repair.audit.jsonl", &["--since", "2h"]);
    assert!(recent.starts_with("No incidents in since "), "{recent}");
}

#[test]
fn bad_arguments_and_missing_logs_say_what_to_do() {
    let out = timeline("failing-repair.audit.jsonl", &["--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
    let out = timeline("no-such.audit.jsonl", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such.audit.jsonl") && err.contains("--audit-log"),
        "{err}"
    );
}
