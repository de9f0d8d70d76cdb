//! `ipdrift timeline` on recorded audit logs, run as the real binary, with insta snapshots
//! of each output format. `seed-outage.audit.jsonl` was recorded by `scripts/demo`
//! (KEEP_AUDIT_LOG=…); `failing-repair.audit.jsonl` has failed writes, a guard refusal, a
//! restart, a line cut short, and an incident still open at the end;
//! `bind-outage.audit.jsonl` was recorded by ipdrift 0.1 in the BIND outage test below
//! (KEEP_AUDIT_LOG=…): DNS unreadable for 11 s while every address changed, the backoff
//! countdown written as a new error every pass. The audit log's writer
//! is tested on a really full disk: a small tmpfs the test mounts (it needs root, as CI has).

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ipdrift::audit::{AuditLog, Event, Fsync, Record};

use serde_json::Value;
use support::controller::Controller;
use support::fleet::{Fleet, describe};
use support::wait_until;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `ipdrift timeline --audit-log FIXTURE ARGS…`, with a config path that does not exist:
/// a given log needs no config.
fn timeline(log: &str, args: &[&str]) -> Output {
    timeline_of(&fixture(log), args)
}

fn timeline_of(log: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipdrift"))
        .args([
            "--config",
            "/nonexistent/ipdrift.toml",
            "timeline",
            "--audit-log",
        ])
        .arg(log)
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

/// The truthful numbers: the names were wrong from the pass that saw their new addresses
/// (06:24:56.417) until the repair (06:25:07.436), 11 s, not the 26 ms of the repairing pass;
/// one error seen twice, the six backoff countdowns no error at all.
#[test]
fn a_bind_outage_recorded_by_ipdrift_0_1_as_text() {
    let text = stdout_of("bind-outage.audit.jsonl", &[]);
    assert!(
        text.contains("Impact:           5 name(s)/server(s) wrong, the longest for 11s 19ms\n")
            && text.contains("Target errors:    1\n")
            && !text.contains("backing off"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn a_bind_outage_recorded_by_ipdrift_0_1_as_markdown() {
    insta::assert_snapshot!(stdout_of(
        "bind-outage.audit.jsonl",
        &["--output", "markdown"]
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

/// A tmpfs of 64 KiB mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a disk for real: it mounts a 64 KiB tmpfs, which needs root (or CAP_SYS_ADMIN); run it as root, as CI does ({})",
            describe(&out)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = [0u8; 4096];
        loop {
            match filler.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                    break;
                }
            }
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A pass of about 5 KiB of events (more than a page), stamped `minute`:00.
fn pass_records(minute: u32) -> Vec<Record> {
    let ts = time::OffsetDateTime::parse(
        &format!("2026-05-01T10:{minute:02}:00Z"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let mut records: Vec<Record> = (1..=48)
        .map(|n| Record {
            ts,
            event: Event::DriftDetected {
                target: "ns1".into(),
                objects: vec![format!("web-{n:02}.example.test. A")],
            },
        })
        .collect();
    records.push(Record {
        ts,
        event: Event::Pass {
            duration_seconds: 0.01,
            drift_objects: 48,
            errors: 0,
        },
    });
    records
}

/// No line holds more than one record.
fn assert_nothing_glued(log: &Path) {
    let bytes = std::fs::read(log).unwrap();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let starts = line.windows(6).filter(|w| w == b"{\"ts\":").count();
        assert!(
            starts <= 1,
            "line {} holds {starts} records: {}",
            n + 1,
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn on_a_full_disk_records_are_written_whole_or_not_at_all_and_the_next_one_reads_back() {
    let disk = SmallDisk::mount();
    let path = disk.path().join("audit.jsonl");
    for fsync in [Fsync::Pass, Fsync::Record, Fsync::Never] {
        let log = AuditLog::new(path.clone()).with_fsync(fsync);
        log.append(&pass_records(0)).unwrap();
        disk.fill();
        let before = std::fs::read(&path).unwrap();
        // The last page of the log has room for part of the batch, not all of it.
        let e = log.append(&pass_records(1)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
        // Part of a record did reach the disk, and was cut off again.
        assert!(
            e.to_string().contains("not written")
                && e.to_string()
                    .contains("the partly written record was removed"),
            "{e}"
        );
        let after = std::fs::read(&path).unwrap();
        if fsync == Fsync::Record {
            // Whole records went out one by one until the disk was full; none was cut.
            assert!(after.starts_with(&before) && after.ends_with(b"\n"));
        } else {
            assert_eq!(
                after, before,
                "{fsync:?}: the cut batch was not undone: {e}"
            );
        }
        disk.free();
        log.append(&pass_records(2)).unwrap();
        assert_nothing_glued(&path);
        let parsed = log.read().unwrap();
        assert!(parsed.skipped.is_empty(), "{fsync:?}: {:?}", parsed.skipped);
        assert_eq!(parsed.records.last(), pass_records(2).last(), "{fsync:?}");
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_tail_cut_short_by_a_full_disk_is_ended_on_open_and_timeline_reads_the_next_record() {
    let disk = SmallDisk::mount();
    let path = disk.path().join("audit.jsonl");
    let log = AuditLog::new(path.clone());
    log.append(&pass_records(0)).unwrap();
    disk.fill();
    // What ipdrift 0.1 did: one write_all, cut short by the full disk, left as it was.
    let mut batch = Vec::new();
    for record in pass_records(1) {
        serde_json::to_writer(&mut batch, &record).unwrap();
        batch.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let e = file.write_all(&batch).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
    let cut = std::fs::read(&path).unwrap();
    assert!(
        !cut.ends_with(b"\n"),
        "the disk did not cut the write short"
    );
    disk.free();

    let next = Record {
        ts: time::OffsetDateTime::parse(
            "2026-05-01T10:05:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap(),
        event: Event::TargetError {
            target: "ns1".into(),
            message: "the next record".into(),
        },
    };
    log.append(std::slice::from_ref(&next)).unwrap();
    assert_nothing_glued(&path);
    let out = timeline_of(&path, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = &value["incidents"][0]["entries"];
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "the next record"),
        "{value:#}"
    );
    assert_eq!(value["skipped_line_count"], 1, "{value:#}");
    let text = String::from_utf8(timeline_of(&path, &[]).stdout).unwrap();
    assert!(
        text.contains("1 line(s) of the audit log could not be read and were skipped"),
        "{text}"
    );
}

/// Parses an RFC 3339 time from a JSON value.
fn time_of(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// BIND is down for a while (several passes, the failing target backing off) while every
/// address changes; HAProxy is repaired at once, DNS when BIND is back. The timeline must
/// measure each name's impact from the first pass that saw its new address to the verified
/// repair, not from the pass that could read the zone again, and count the outage as one
/// error, however many passes it lasted. KEEP_AUDIT_LOG=PATH keeps the log.
#[test]
fn a_bind_outage_while_addresses_changed_is_measured_from_the_new_address_to_the_repair() {
    let mut fleet = Fleet::start();
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    std::fs::write(
        fleet.config_path(),
        config.replacen(
            "[controller]\n",
            "[controller]\naudit_log = \"audit.jsonl\"\n",
            1,
        ),
    )
    .unwrap();
    let controller = Controller::start(&fleet);
    controller.wait_ready();

    fleet.bind.stop();
    let down = Instant::now();
    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.haproxy_servers()
            == fleet.servers_at(2)),
        "HAProxy not repaired while BIND is down:\n{}",
        controller.log_text()
    );
    // Long enough for several passes and a few backoff steps (1 s, 2 s, 4 s …).
    std::thread::sleep(Duration::from_secs(9).saturating_sub(down.elapsed()));
    fleet.bind.start();
    let outage = down.elapsed();
    assert!(
        wait_until(Duration::from_secs(20), || fleet.converged_at(2)),
        "DNS not repaired after BIND came back:\n{}",
        controller.log_text()
    );
    // The pass that repaired DNS has written its events when its metrics say so.
    assert!(
        wait_until(Duration::from_secs(5), || controller
            .metric("ipdrift_drift_objects{target=\"ns1\"}")
            == Some(0.0)),
        "ns1 still drifting"
    );
    let (code, log) = controller.terminate();
    assert_eq!(code, Some(0), "{log}");

    let audit = fleet.dir.path().join("audit.jsonl");
    if let Some(keep) = std::env::var_os("KEEP_AUDIT_LOG") {
        std::fs::copy(&audit, keep).unwrap();
    }
    let out = timeline_of(&audit, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let incidents = value["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{value:#}");
    let incident = &incidents[0];
    let entries = incident["entries"].as_array().unwrap();
    let first_seen = |address: String| {
        entries
            .iter()
            .find(|e| e["event"] == "address_changed" && e["new"] == address.as_str())
            .map(|e| time_of(&e["ts"]))
            .unwrap_or_else(|| panic!("no address change to {address}: {value:#}"))
    };
    let applied = |object: &str| {
        entries
            .iter()
            .find(|e| e["event"] == "change" && e["object"] == object && e["result"] == "applied")
            .map(|e| time_of(&e["ts"]))
            .unwrap_or_else(|| panic!("no applied change of {object}: {value:#}"))
    };
    let impact = incident["impact"].as_array().unwrap();
    let www = format!("www.{} A", support::fleet::ZONE);
    let row = impact
        .iter()
        .find(|i| i["target"] == "ns1" && i["object"] == www.as_str())
        .unwrap_or_else(|| panic!("no impact row for {www}: {value:#}"));
    let since = first_seen(support::fleet::lb_public(2));
    assert_eq!(time_of(&row["wrong_since"]), since, "{row:#}");
    assert_eq!(time_of(&row["fixed_at"]), applied(&www), "{row:#}");
    assert_eq!(row["fix"], "repaired");
    let wrong_for = time_of(&row["fixed_at"]) - since;
    // It was wrong for about the outage (less the pass that saw the change), not for the
    // few milliseconds of the pass that repaired it.
    assert!(
        wrong_for >= outage.saturating_sub(Duration::from_secs(3)),
        "{www} wrong for {wrong_for} during an outage of {outage:?}: {row:#}"
    );
    // One error for the whole outage, with how often it was seen.
    let errors: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"] == "target_error" && e["target"] == "ns1")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        !errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("backing off"),
        "{errors:#?}"
    );
    assert_eq!(incident["summary"]["target_errors"], 1, "{value:#}");
    let recovered = entries
        .iter()
        .find(|e| e["event"] == "target_recovered" && e["target"] == "ns1")
        .unwrap_or_else(|| panic!("ns1 never recovered: {value:#}"));
    let attempts = recovered["failed_attempts"].as_u64().unwrap();
    // Tried at once, then after 1 s, 2 s, 4 s … of backoff: a few attempts, not every pass.
    assert!(
        (2..8).contains(&attempts),
        "{attempts} failed attempts in {outage:?}: {recovered:#}"
    );
    let text = String::from_utf8(timeline_of(&audit, &[]).stdout).unwrap();
    assert!(
        text.contains("Target errors:    1\n")
            && text.contains(&format!(", {attempts} failed attempt(s)\n")),
        "{text}"
    );
}
