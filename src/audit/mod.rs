//! The audit log: append-only JSON lines of everything the controller observed and changed
//! (`controller.audit_log`). [`tracker`] derives the events from consecutive passes,
//! [`timeline`] turns a log back into incidents and [`render`] prints them; those three are
//! pure. This file holds the event schema and the file I/O.
//!
//! Every line is one [`Record`]: `{"ts": "<RFC 3339 UTC>", "event": "<kind>", …fields}`.
//! The events of one pass are appended with a single `write(2)` on a file opened with
//! `O_APPEND`, so concurrent writers (`run` and a manual `apply`) never interleave lines.
//! Nothing secret goes in: events carry names, addresses and error messages, which never
//! contain TSIG secrets or webhook URLs.

pub mod render;
pub mod timeline;
pub mod tracker;

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::AddressKind;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When it was observed (pass start) or done (pass end), UTC, millisecond precision.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened. Serialized with `"event": "<snake_case name>"` next to the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `ipdrift run` started: state from before (drift, errors) is no longer known.
    Started { version: String },
    /// An inventory source reports a new address for an instance.
    AddressChanged {
        source: String,
        /// The instance id.
        instance: String,
        /// The instance name.
        name: String,
        address: AddressKind,
        old: IpAddr,
        new: IpAddr,
    },
    /// Objects of a target were first seen out of sync (only the newly drifting ones).
    DriftDetected {
        target: String,
        objects: Vec<String>,
    },
    /// A change written to a target: `applied` when the batch was written and read back.
    Change {
        target: String,
        op: String,
        object: String,
        from: Option<String>,
        to: Option<String>,
        result: ChangeResult,
    },
    /// A safety guard withheld a change (written when the refusal starts, not every pass).
    GuardRefused {
        guard: String,
        target: String,
        object: String,
        reason: String,
    },
    /// A source or target could not be read or written (written when it starts failing and
    /// when the message changes, not every pass).
    TargetError { target: String, message: String },
    /// A source or target that failed works again.
    TargetRecovered { target: String, down_seconds: f64 },
    /// Every object of the target is in sync again.
    Converged { target: String, drift_seconds: f64 },
    /// Ends the events of one pass (and is written after the first pass of every run).
    Pass {
        duration_seconds: f64,
        /// Objects still out of sync after the pass, over all targets.
        drift_objects: usize,
        /// Sources and targets that failed in the pass.
        errors: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeResult {
    Applied,
    Failed,
}

/// The current time, UTC, truncated to milliseconds (what the log keeps).
pub fn now() -> OffsetDateTime {
    truncate_to_millis(OffsetDateTime::now_utc())
}

pub fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .expect("a whole number of milliseconds is a valid nanosecond value")
}

/// `later - earlier` as a std duration (zero when the clock went backwards).
pub fn elapsed(earlier: OffsetDateTime, later: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or_default()
}

/// Seconds with millisecond precision, as the log writes durations.
pub fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// The audit log file. Opened for each batch, so a log rotated away is followed at once.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` as JSON lines with one write on an `O_APPEND` descriptor, creating
    /// the file (mode 0640) when missing.
    pub fn append(&self, records: &[Record]) -> std::io::Result<()> {
        let mut batch = Vec::new();
        for record in records {
            serde_json::to_writer(&mut batch, record)?;
            batch.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)?;
        file.write_all(&batch)?;
        file.flush()
    }

    /// Reads every record; see [`parse`].
    pub fn read(&self) -> std::io::Result<Parsed> {
        Ok(parse(&std::fs::read_to_string(&self.path)?))
    }
}

/// The records of a log, and the line numbers it could not understand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub records: Vec<Record>,
    /// 1-based numbers of lines that are not a known event (a newer ipdrift's events, a
    /// line cut short by a crash): skipped, so one bad line never hides the rest.
    pub skipped: Vec<usize>,
}

/// Parses audit log text (pure). Blank lines are ignored; records are sorted by time
/// (stable), since several processes may append to the same log.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => parsed.records.push(record),
            Err(_) => parsed.skipped.push(index + 1),
        }
    }
    parsed.records.sort_by_key(|r| r.ts);
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn records_are_flat_json_lines_with_rfc3339_utc_times() {
        let record = Record {
            ts: at("2026-05-01T10:00:02.125Z"),
            event: Event::Change {
                target: "ns1".into(),
                op: "update".into(),
                object: "www.example.com. A".into(),
                from: Some("192.0.2.10 ttl=60".into()),
                to: Some("198.51.100.7 ttl=60".into()),
                result: ChangeResult::Applied,
            },
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(
            line,
            r#"{"ts":"2026-05-01T10:00:02.125Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.10 ttl=60","to":"198.51.100.7 ttl=60","result":"applied"}"#
        );
        assert_eq!(parse(&line).records, vec![record]);
    }

    #[test]
    fn appends_with_o_append_and_keeps_earlier_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        let record = |n: usize| Record {
            ts: at("2026-05-01T10:00:00Z"),
            event: Event::Pass {
                duration_seconds: 0.5,
                drift_objects: n,
                errors: 0,
            },
        };
        log.append(&[record(1), record(2)]).unwrap();
        // Another writer appends in between: nothing is overwritten.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"not\": \"an event\"}\n")
            .unwrap();
        log.append(&[record(3)]).unwrap();
        let parsed = log.read().unwrap();
        assert_eq!(parsed.records, vec![record(1), record(2), record(3)]);
        assert_eq!(parsed.skipped, vec![3]);
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn parse_sorts_by_time_and_skips_unknown_and_cut_lines() {
        let text = "{\"ts\":\"2026-05-01T10:00:05Z\",\"event\":\"started\",\"version\":\"0.1.0\"}\n\n\
                    {\"ts\":\"2026-05-01T10:00:01Z\",\"event\":\"target_recovered\",\"target\":\"ns1\",\"down_seconds\":3.0}\n\
                    {\"ts\":\"2026-05-01T10:00:06Z\",\"event\":\"scheduled_event\",\"instance\":\"i-1\"}\n\
                    {\"ts\":\"2026-05-01T10:00:07Z\",\"event\":\"conv";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![4, 5]);
        let kinds: Vec<_> = parsed.records.iter().map(|r| r.ts.second()).collect();
        assert_eq!(kinds, vec![1, 5]);
    }

    #[test]
    fn times_are_kept_to_the_millisecond() {
        let t = truncate_to_millis(at("2026-05-01T10:00:02.123456789Z"));
        assert_eq!(t, at("2026-05-01T10:00:02.123Z"));
        assert_eq!(
            elapsed(t, at("2026-05-01T10:00:03.5Z")),
            Duration::from_millis(1377)
        );
        assert_eq!(elapsed(at("2026-05-01T10:00:03Z"), t), Duration::ZERO);
        assert_eq!(seconds(Duration::from_micros(1_234_567)), 1.234);
    }
}
