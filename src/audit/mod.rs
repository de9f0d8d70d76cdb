//! The audit log: append-only JSON lines of everything the controller observed and changed
//! (`controller.audit_log`). [`tracker`] derives the events from consecutive passes,
//! [`timeline`] turns a log back into incidents and [`render`] prints them; those three are
//! pure. This file holds the event schema and the file I/O.
//!
//! Every line is one [`Record`]: `{"ts": "<RFC 3339 UTC>", "event": "<kind>", …fields}`.
//! The events of one pass are appended with a single `write(2)` on a file opened with
//! `O_APPEND`, so concurrent writers (`run` and a manual `apply`) never interleave lines.
//! Records are written whole: a write cut short (a full disk) is undone, and a tail left
//! without its newline (a crash mid-write, or an undo that could not be done) is ended
//! before the next record, so that record is never glued onto it. [`Fsync`] says when the
//! file is flushed to disk. The reader skips and counts every line it cannot read (not
//! UTF-8, not JSON, an unknown event) and keeps the rest.
//! Nothing secret goes in: events carry names, addresses and error messages, which never
//! contain TSIG secrets or webhook URLs.

pub mod render;
pub mod timeline;
pub mod tracker;

use std::collections::BTreeSet;
use std::io::{Seek as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
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
    /// when the message changes, not every pass, nor for the passes it rests, backing off).
    TargetError { target: String, message: String },
    /// A source or target that failed works again.
    TargetRecovered {
        target: String,
        down_seconds: f64,
        /// Passes in which it was tried and failed; the passes it rested, backing off, do
        /// not count. 0 in logs of ipdrift 0.1, which did not count them.
        #[serde(default)]
        failed_attempts: u32,
    },
    /// After a write, how one of the target's secondaries (`secondaries`) served it:
    /// `seconds` after the write ended, or, with `lagging` saying how it is behind, not
    /// within the `seconds` ipdrift waited.
    Propagation {
        target: String,
        secondary: SocketAddr,
        seconds: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lagging: Option<String>,
    },
    /// Every object of the target is in sync again.
    Converged { target: String, drift_seconds: f64 },
    /// Announced maintenance shapes an object otherwise than in the pass before: its TTL
    /// lowered, held or restored, a server drained or back in service
    /// ([`crate::maintenance::StepKind`]'s names).
    Maintenance {
        target: String,
        object: String,
        step: String,
        reason: String,
    },
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

/// How reconcile's error for a target it left alone this pass begins ("not tried this pass:
/// backing off after repeated failures, next attempt in 4s"). Such a pass is no new error:
/// the failure before it goes on, and only its countdown changes.
const BACKING_OFF: &str = "not tried this pass: backing off";

/// Whether a target error only says that the target is backing off (see [`BACKING_OFF`]).
fn is_backing_off(message: &str) -> bool {
    message.starts_with(BACKING_OFF)
}

/// The IP addresses a change's `from` or `to` text names: `192.0.2.1,192.0.2.2 ttl=60` for
/// an RRset, `192.0.2.1:8080` or `[2001:db8::1]:8080` (with a state, maybe) for a server.
fn addresses_in(text: Option<&str>) -> BTreeSet<IpAddr> {
    text.unwrap_or_default()
        .split([',', ' '])
        .filter_map(|word| {
            word.parse::<IpAddr>()
                .ok()
                .or_else(|| word.parse::<SocketAddr>().ok().map(|s| s.ip()))
        })
        .collect()
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

/// When the audit log is flushed to disk (`controller.audit_fsync`). A record is in the
/// file as soon as its write returns, whatever the policy: the policy only says how much a
/// power loss or a kernel crash can take away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsync {
    /// After each pass's records (the default): a crash loses at most the pass in flight, for
    /// one `fdatasync` per pass that wrote anything.
    #[default]
    Pass,
    /// After every record, before the next is written: the slowest.
    Record,
    /// Never: the kernel writes the file back when it chooses (typically within 30 s).
    Never,
}

impl Fsync {
    /// Parses a `controller.audit_fsync` value (pure); the error names the allowed values.
    pub fn parse(text: &str) -> Result<Fsync, String> {
        match text {
            "pass" => Ok(Fsync::Pass),
            "record" => Ok(Fsync::Record),
            "never" => Ok(Fsync::Never),
            _ => Err(format!(
                "{text:?} is not an fsync policy; use \"pass\" (fsync once per pass, the default), \"record\" (after every record) or \"never\" (leave it to the OS)"
            )),
        }
    }
}

/// The audit log file. Opened for each batch, so a log rotated away is followed at once.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    fsync: Fsync,
}

impl AuditLog {
    /// A log flushed once per pass; see [`AuditLog::with_fsync`].
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog {
            path,
            fsync: Fsync::default(),
        }
    }

    pub fn with_fsync(self, fsync: Fsync) -> AuditLog {
        AuditLog { fsync, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` as JSON lines on an `O_APPEND` descriptor, creating the file (mode
    /// 0640) when missing: all in one write, or one write per record with [`Fsync::Record`].
    /// A write that fails part-way is undone, so the file never holds part of a record
    /// written here; the records not written are lost, and the error says so.
    pub fn append(&self, records: &[Record]) -> std::io::Result<()> {
        let mut lines = Vec::with_capacity(records.len());
        for record in records {
            let mut line = serde_json::to_vec(record)?;
            line.push(b'\n');
            lines.push(line);
        }
        let created = !self.path.exists();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&self.path)?;
        if created && self.fsync != Fsync::Never {
            // The new file's directory entry must reach the disk too.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        // A tail without its newline is part of a record: end it (it becomes one skipped
        // line) rather than glue the next record onto it.
        let mut pending: Vec<u8> = if ends_cut_short(&file)? {
            b"\n".to_vec()
        } else {
            Vec::new()
        };
        let total = lines.len();
        for (index, line) in lines.into_iter().enumerate() {
            pending.extend_from_slice(&line);
            if self.fsync != Fsync::Record && index + 1 < total {
                continue;
            }
            write_whole(&mut file, &pending).map_err(|e| {
                // One write per record, or one for all of them.
                let lost = if self.fsync == Fsync::Record {
                    total - index
                } else {
                    total
                };
                std::io::Error::new(
                    e.kind(),
                    format!("{e}; {lost} of {total} record(s) not written"),
                )
            })?;
            pending.clear();
            if self.fsync == Fsync::Record {
                file.sync_data()?;
            }
        }
        if self.fsync == Fsync::Pass {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Reads every record; see [`parse`].
    pub fn read(&self) -> std::io::Result<Parsed> {
        Ok(parse(&std::fs::read(&self.path)?))
    }
}

/// Whether the file's last byte is not a newline: something was cut short there.
fn ends_cut_short(file: &std::fs::File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.read_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// Writes all of `bytes` at the end of `file` (opened `O_APPEND`), or none: when a write is
/// cut short (`ENOSPC`, `EFBIG`, a quota) the bytes already written are cut off again, as
/// long as nothing was appended after them. Otherwise they stay, and the next append ends
/// them with a newline.
fn write_whole(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => {
                return Err(undo(
                    file,
                    written,
                    std::io::Error::from(std::io::ErrorKind::WriteZero),
                ));
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(undo(file, written, e)),
        }
    }
    Ok(())
}

/// Cuts off the `written` bytes of a failed write; gives back `cause`, saying whether the
/// file could be restored.
fn undo(file: &mut std::fs::File, written: usize, cause: std::io::Error) -> std::io::Error {
    if written == 0 {
        return cause;
    }
    let kind = cause.kind();
    let restored = (|| {
        // With O_APPEND the offset is the end of what this write put there.
        let end = file.stream_position()?;
        if file.metadata()?.len() != end {
            return Ok(false);
        }
        file.set_len(end - written as u64)?;
        Ok::<_, std::io::Error>(true)
    })();
    let what = match restored {
        Ok(true) => "the partly written record was removed".to_string(),
        Ok(false) => "a partly written record is left (another writer appended after it; the next append ends it with a newline)".to_string(),
        Err(e) => format!("a partly written record is left and could not be removed ({e}); the next append ends it with a newline"),
    };
    std::io::Error::new(kind, format!("{cause}; {what}"))
}

/// The records of a log, and the line numbers it could not understand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub records: Vec<Record>,
    /// 1-based numbers of lines that are not a known event (not UTF-8, not JSON — a line cut
    /// short by a full disk or a crash —, a newer ipdrift's events): skipped, so one bad line
    /// never hides the rest.
    pub skipped: Vec<usize>,
}

/// Where every record starts: serde writes `ts` first.
const RECORD_START: &[u8] = b"{\"ts\":";

/// Parses audit log bytes (pure). Blank lines are ignored; records are sorted by time
/// (stable), since several processes may append to the same log. A line that does not
/// parse but holds a whole record after its start (a record glued onto a line cut short,
/// as earlier versions could leave on a full disk) is skipped and that record kept.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => parsed.records.push(record),
            Err(_) => {
                parsed.skipped.push(index + 1);
                if let Some(record) = glued_record(line) {
                    parsed.records.push(record);
                }
            }
        }
    }
    parsed.records.sort_by_key(|r| r.ts);
    parsed
}

/// The first whole record that starts after the beginning of `line`, if any.
fn glued_record(line: &[u8]) -> Option<Record> {
    (1..line.len())
        .filter(|&at| line[at..].starts_with(RECORD_START))
        .find_map(|at| serde_json::from_slice(&line[at..]).ok())
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
        assert_eq!(parse(line.as_bytes()).records, vec![record]);
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
        let parsed = parse(text.as_bytes());
        assert_eq!(parsed.skipped, vec![4, 5]);
        let kinds: Vec<_> = parsed.records.iter().map(|r| r.ts.second()).collect();
        assert_eq!(kinds, vec![1, 5]);
    }

    fn pass(n: usize) -> Record {
        Record {
            ts: at("2026-05-01T10:00:00Z"),
            event: Event::Pass {
                duration_seconds: 0.5,
                drift_objects: n,
                errors: 0,
            },
        }
    }

    #[test]
    fn a_tail_cut_short_is_ended_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        log.append(&[pass(1)]).unwrap();
        // A crash in the middle of a write left half a record.
        let whole = std::fs::read(log.path()).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap();
        file.write_all(&whole[..whole.len() / 2]).unwrap();
        for fsync in [Fsync::Pass, Fsync::Record, Fsync::Never] {
            log.clone()
                .with_fsync(fsync)
                .append(&[pass(2), pass(3)])
                .unwrap();
        }
        let text = String::from_utf8(std::fs::read(log.path()).unwrap()).unwrap();
        assert_eq!(text.lines().count(), 8, "{text}");
        let parsed = log.read().unwrap();
        assert_eq!(parsed.skipped, vec![2], "{text}");
        let passes = [1, 2, 3, 2, 3, 2, 3].map(pass).to_vec();
        assert_eq!(parsed.records, passes);
    }

    #[test]
    fn lines_not_utf8_or_not_json_are_skipped_and_counted_and_the_rest_kept() {
        let good = serde_json::to_vec(&pass(1)).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(b"\n{\"ts\":\"2026-05-01T10:00:01Z\",\"event\":\"target_error\",\"target\":\"ns\xff1\",\"message\":\"x\"}\n");
        bytes.extend_from_slice(b"\xc3\x28 garbage\n");
        bytes.extend_from_slice(&good);
        bytes.extend_from_slice(b"\r\n");
        let parsed = parse(&bytes);
        assert_eq!(parsed.skipped, vec![2, 3]);
        assert_eq!(parsed.records, vec![pass(1), pass(1)]);
    }

    #[test]
    fn a_record_glued_onto_a_cut_line_is_recovered_and_the_line_counted() {
        let good = serde_json::to_string(&pass(7)).unwrap();
        let cut = &serde_json::to_string(&pass(6)).unwrap()[..30];
        // Two cuts in a row, then a whole record, on one line; a multi-byte character cut in
        // half in the first.
        let mut bytes =
            b"{\"ts\":\"2026-05-01T10:00:00Z\",\"event\":\"target_error\",\"target\":\"\xe2\x86"
                .to_vec();
        bytes.extend_from_slice(cut.as_bytes());
        bytes.extend_from_slice(good.as_bytes());
        bytes.push(b'\n');
        let parsed = parse(&bytes);
        assert_eq!(parsed.skipped, vec![1]);
        assert_eq!(parsed.records, vec![pass(7)]);
    }

    #[test]
    fn the_fsync_policy_parses_and_its_error_names_the_choices() {
        assert_eq!(Fsync::parse("pass"), Ok(Fsync::Pass));
        assert_eq!(Fsync::parse("record"), Ok(Fsync::Record));
        assert_eq!(Fsync::parse("never"), Ok(Fsync::Never));
        assert_eq!(Fsync::default(), Fsync::Pass);
        let e = Fsync::parse("always").unwrap_err();
        for word in ["\"always\"", "\"pass\"", "\"record\"", "\"never\""] {
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn changes_name_their_addresses_in_either_shape() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(
            addresses_in(Some("192.0.2.1,2001:db8::7 ttl=60")),
            BTreeSet::from([ip("192.0.2.1"), ip("2001:db8::7")])
        );
        assert_eq!(
            addresses_in(Some("[2001:db8::1]:8080 ready")),
            BTreeSet::from([ip("2001:db8::1")])
        );
        assert_eq!(
            addresses_in(Some("192.0.2.9:8080")),
            BTreeSet::from([ip("192.0.2.9")])
        );
        assert!(addresses_in(None).is_empty());
        assert!(addresses_in(Some("owner=ipdrift ttl=60")).is_empty());
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
