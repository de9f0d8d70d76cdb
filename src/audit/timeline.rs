//! Audit records → incidents, in the shape of a postmortem: when addresses changed, when
//! drift was detected, each repair, when everything converged, and which names and servers
//! were wrong for how long. Pure; [`super::render`] prints the result.
//!
//! A name or server is wrong from the first pass that saw the new address it needed (the
//! address in its repair that was not there before), or else from the pass that found it
//! wrong, until the repair was verified: a target that could not be read while addresses
//! changed was wrong all along, not only in the pass that could read it again. An error
//! that repeats while the target keeps failing is one error seen several times, and a pass
//! that only rests the target, backing off, is no error at all.
//!
//! An incident opens with the first address change, drift, refusal, error or change while
//! none is open. It closes at the end of a pass (a `pass` event) after which no target is
//! drifting or failing. A `started` event means the controller lost its memory: what was
//! open is forgotten, and the next pass re-detects whatever is still wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ChangeResult, Event, Record, addresses_in, elapsed, is_backing_off};
use crate::maintenance::StepKind;

/// The incidents of a log that overlap the requested window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    pub incidents: Vec<Incident>,
    /// Lines of the log that were skipped as unreadable (see [`super::Parsed`]).
    pub skipped_lines: Vec<usize>,
    /// How many: a timeline never drops a line silently.
    pub skipped_line_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything converged (or recovered) again.
    Resolved,
    /// Still drifting or failing at the end of the log.
    Ongoing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// The first pass that saw drift.
    #[serde(with = "time::serde::rfc3339::option")]
    pub detected: Option<OffsetDateTime>,
    /// When the last target converged or recovered; for an ongoing incident, the last event.
    #[serde(with = "time::serde::rfc3339")]
    pub ended: OffsetDateTime,
    #[serde(serialize_with = "as_seconds")]
    pub duration: Duration,
    pub summary: Summary,
    pub entries: Vec<Entry>,
    /// Every object that was wrong, in the order it was found.
    pub impact: Vec<Impact>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub address_changes: usize,
    /// Instances whose addresses changed (ids).
    pub instances: BTreeSet<String>,
    pub targets: BTreeSet<String>,
    pub repairs_applied: usize,
    pub repairs_failed: usize,
    pub guard_refusals: usize,
    /// Distinct errors: one that repeats while its target keeps failing counts once.
    pub target_errors: usize,
}

/// One line of the timeline: an event, possibly repeated (failed attempts collapse).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    #[serde(flatten)]
    pub event: Event,
    /// How many times it happened; more than 1 only for repeated failed changes and errors.
    pub times: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub last: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fix {
    /// A change was written and read back.
    Repaired,
    /// It came back in sync without a change from ipdrift (instances changed again, or
    /// someone fixed it by hand).
    Resolved,
    /// The controller restarted before it saw the end.
    Unknown,
    /// Still wrong at the end of the log.
    Open,
}

/// A name or server that was wrong, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    pub target: String,
    pub object: String,
    /// The first pass that saw the new address its repair wrote, or, when the log has no such
    /// address change, the pass that found it wrong.
    #[serde(with = "time::serde::rfc3339")]
    pub wrong_since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fixed_at: Option<OffsetDateTime>,
    pub fix: Fix,
    /// What it said while wrong, and what it says now (the last change written or tried).
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Impact {
    /// How long it was wrong; up to `end` when not fixed.
    pub fn wrong_for(&self, end: OffsetDateTime) -> Duration {
        elapsed(self.wrong_since, self.fixed_at.unwrap_or(end))
    }
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_millis() as f64 / 1000.0)
}

/// Parses `--since` / `--until`: an RFC 3339 time (`2026-05-01T10:00:00Z`, any offset) or a
/// duration before `now` (`2h`, `30m`, `1day`).
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => time::Duration::try_from(ago)
            .ok()
            .and_then(|ago| now.checked_sub(ago))
            .ok_or_else(|| {
                format!(
                    "{text:?} ago is further back than times go (the year -9999); give a shorter duration or an RFC 3339 time"
                )
            }),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (e.g. 2026-05-01T10:00:00Z) nor a duration ago (e.g. 2h, 30m)"
        )),
    }
}

/// An address change: when it was first seen, the old address and the new one.
type AddressChange = (OffsetDateTime, IpAddr, IpAddr);

/// An incident being assembled.
struct Open {
    incident: Incident,
    drifting: BTreeSet<String>,
    failing: BTreeSet<String>,
    addresses: Vec<AddressChange>,
    /// Target → the entries of the errors it has had since it last worked.
    errors: BTreeMap<String, Vec<usize>>,
    /// (target, object) in an announced maintenance (low TTL, draining): the incident
    /// lasts until each is restored.
    in_maintenance: BTreeSet<(String, String)>,
}

impl Open {
    fn new(ts: OffsetDateTime) -> Open {
        Open {
            incident: Incident {
                status: Status::Ongoing,
                started: ts,
                detected: None,
                ended: ts,
                duration: Duration::ZERO,
                summary: Summary::default(),
                entries: Vec::new(),
                impact: Vec::new(),
            },
            drifting: BTreeSet::new(),
            failing: BTreeSet::new(),
            addresses: Vec::new(),
            errors: BTreeMap::new(),
            in_maintenance: BTreeSet::new(),
        }
    }

    fn is_quiet(&self) -> bool {
        self.drifting.is_empty() && self.failing.is_empty() && self.in_maintenance.is_empty()
    }

    /// The latest row for an object that is not fixed yet.
    fn open_row(&mut self, target: &str, object: &str) -> Option<&mut Impact> {
        self.incident
            .impact
            .iter_mut()
            .rev()
            .find(|i| i.target == target && i.object == object && i.fixed_at.is_none())
    }

    fn add(&mut self, record: &Record) {
        let ts = record.ts;
        let inc = &mut self.incident;
        inc.ended = ts;
        let summary = &mut inc.summary;
        match &record.event {
            Event::Started { .. } => {
                self.drifting.clear();
                self.failing.clear();
                self.errors.clear();
                self.in_maintenance.clear();
                for row in &mut inc.impact {
                    if row.fixed_at.is_none() {
                        row.fix = Fix::Unknown;
                    }
                }
            }
            Event::AddressChanged {
                instance, old, new, ..
            } => {
                summary.address_changes += 1;
                summary.instances.insert(instance.clone());
                self.addresses.push((ts, *old, *new));
            }
            Event::DriftDetected { target, objects } => {
                inc.detected.get_or_insert(ts);
                summary.targets.insert(target.clone());
                self.drifting.insert(target.clone());
                for object in objects {
                    // Seen again after a restart: still the same wrong object.
                    if let Some(row) = self.open_row(target, object) {
                        row.fix = Fix::Open;
                    } else {
                        self.incident.impact.push(Impact {
                            target: target.clone(),
                            object: object.clone(),
                            wrong_since: ts,
                            fixed_at: None,
                            fix: Fix::Open,
                            from: None,
                            to: None,
                        });
                    }
                }
            }
            Event::Change {
                target,
                object,
                from,
                to,
                result,
                ..
            } => {
                summary.targets.insert(target.clone());
                match result {
                    ChangeResult::Applied => summary.repairs_applied += 1,
                    ChangeResult::Failed => summary.repairs_failed += 1,
                }
                if self.open_row(target, object).is_none() {
                    self.incident.impact.push(Impact {
                        target: target.clone(),
                        object: object.clone(),
                        wrong_since: ts,
                        fixed_at: None,
                        fix: Fix::Open,
                        from: None,
                        to: None,
                    });
                }
                let row = self.open_row(target, object).expect("pushed above");
                // A server's address and its state are two changes of one object: keep the
                // first "from" and the last "to".
                if row.from.is_none() {
                    row.from = from.clone();
                }
                row.to = to.clone();
                if *result == ChangeResult::Applied {
                    row.fixed_at = Some(ts);
                    row.fix = Fix::Repaired;
                }
                if *result == ChangeResult::Failed
                    && let Some(entry) = self.incident.entries.iter_mut().rev().find(|e| {
                        matches!(
                            &e.event,
                            Event::Change {
                                result: ChangeResult::Failed,
                                ..
                            }
                        ) && e.event == record.event
                    })
                {
                    entry.times = entry.times.saturating_add(1);
                    entry.last = ts;
                    return;
                }
            }
            Event::GuardRefused { target, .. } => {
                summary.guard_refusals += 1;
                summary.targets.insert(target.clone());
            }
            Event::TargetError { target, message } => {
                // A countdown of the backoff from a failure already seen (ipdrift 0.1 wrote
                // one every pass).
                if is_backing_off(message) && self.failing.contains(target) {
                    return;
                }
                self.failing.insert(target.clone());
                let seen = self.errors.entry(target.clone()).or_default();
                if let Some(&index) = seen.iter().find(|&&i| inc.entries[i].event == record.event) {
                    let entry = &mut inc.entries[index];
                    entry.times = entry.times.saturating_add(1);
                    entry.last = ts;
                    return;
                }
                seen.push(inc.entries.len());
                summary.target_errors += 1;
            }
            Event::TargetRecovered { target, .. } => {
                self.failing.remove(target);
                self.errors.remove(target);
            }
            // Part of the story of the change before it; no state of the incident's.
            Event::Propagation { .. } => {}
            Event::Converged { target, .. } => {
                self.drifting.remove(target);
                for row in &mut inc.impact {
                    if row.target == *target && row.fixed_at.is_none() {
                        row.fixed_at = Some(ts);
                        row.fix = Fix::Resolved;
                    }
                }
            }
            Event::Maintenance {
                target,
                object,
                step,
                ..
            } => {
                summary.targets.insert(target.clone());
                let key = (target.clone(), object.clone());
                if StepKind::ALL
                    .iter()
                    .any(|k| k.as_str() == step && k.in_maintenance())
                {
                    self.in_maintenance.insert(key);
                } else {
                    self.in_maintenance.remove(&key);
                }
            }
            Event::Pass { .. } => return,
        }
        self.incident.entries.push(Entry {
            ts,
            event: record.event.clone(),
            times: 1,
            last: ts,
        });
    }

    fn finish(mut self, status: Status) -> Incident {
        let inc = &mut self.incident;
        inc.status = status;
        inc.duration = elapsed(inc.started, inc.ended);
        // Rows are in the order they were found: an object wrong twice starts again after
        // its first fix, not at the address change that the first one was about.
        let mut fixed: BTreeMap<(String, String), OffsetDateTime> = BTreeMap::new();
        for row in &mut inc.impact {
            let key = (row.target.clone(), row.object.clone());
            let after = fixed.get(&key).copied().unwrap_or(inc.started);
            if let Some(seen) = address_first_seen(&self.addresses, row, after) {
                row.wrong_since = row.wrong_since.min(seen);
            }
            if let Some(at) = row.fixed_at {
                fixed.insert(key, at);
            }
        }
        inc.impact.sort_by(|a, b| {
            (a.wrong_since, &a.target, &a.object).cmp(&(b.wrong_since, &b.target, &b.object))
        });
        self.incident
    }
}

/// When the first address change that `row`'s repair is about was seen, from `after` on
/// and no later than the row was found: a change to an address its repair wrote, or from
/// one it took away.
fn address_first_seen(
    changes: &[AddressChange],
    row: &Impact,
    after: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let from = addresses_in(row.from.as_deref());
    let to = addresses_in(row.to.as_deref());
    changes
        .iter()
        .filter(|(ts, _, _)| (after..=row.wrong_since).contains(ts))
        .filter(|(_, old, new)| {
            (to.contains(new) && !from.contains(new)) || (from.contains(old) && !to.contains(old))
        })
        .map(|(ts, _, _)| *ts)
        .min()
}

/// Whether an event opens an incident when none is open.
fn opens_incident(event: &Event) -> bool {
    matches!(
        event,
        Event::AddressChanged { .. }
            | Event::DriftDetected { .. }
            | Event::Change { .. }
            | Event::GuardRefused { .. }
            | Event::TargetError { .. }
            | Event::Maintenance { .. }
    )
}

/// Builds the incidents of `records` (sorted by time) that overlap `[since, until]`.
pub fn build(
    records: &[Record],
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    skipped_lines: Vec<usize>,
) -> Timeline {
    let mut incidents = Vec::new();
    let mut open: Option<Open> = None;
    for record in records {
        match (&mut open, &record.event) {
            (Some(current), Event::Pass { .. }) => {
                if current.is_quiet() {
                    incidents.push(open.take().expect("matched").finish(Status::Resolved));
                }
            }
            (Some(current), _) => current.add(record),
            (None, event) if opens_incident(event) => {
                let mut current = Open::new(record.ts);
                current.add(record);
                open = Some(current);
            }
            (None, _) => {}
        }
    }
    if let Some(current) = open {
        let status = if current.is_quiet() {
            Status::Resolved
        } else {
            Status::Ongoing
        };
        incidents.push(current.finish(status));
    }
    incidents
        .retain(|i| since.is_none_or(|s| i.ended >= s) && until.is_none_or(|u| i.started <= u));
    Timeline {
        since,
        until,
        incidents,
        skipped_line_count: skipped_lines.len(),
        skipped_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parse;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    /// Two passes of a DNS target that failed once, then a quiet restart.
    const LOG: &str = r#"
{"ts":"2026-05-01T10:00:00Z","event":"started","version":"0.1.0"}
{"ts":"2026-05-01T10:00:00.5Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
{"ts":"2026-05-01T10:01:00Z","event":"address_changed","source":"local","instance":"i-lb","name":"lb","address":"public_ipv4","old":"192.0.2.1","new":"198.51.100.1"}
{"ts":"2026-05-01T10:01:00Z","event":"drift_detected","target":"ns1","objects":["www.example.com. A"]}
{"ts":"2026-05-01T10:01:00.2Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=60","to":"198.51.100.1 ttl=60","result":"failed"}
{"ts":"2026-05-01T10:01:00.2Z","event":"target_error","target":"ns1","message":"UPDATE refused: NOTAUTH"}
{"ts":"2026-05-01T10:01:00.2Z","event":"pass","duration_seconds":0.2,"drift_objects":1,"errors":1}
{"ts":"2026-05-01T10:01:10.2Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=60","to":"198.51.100.1 ttl=60","result":"failed"}
{"ts":"2026-05-01T10:01:10.2Z","event":"pass","duration_seconds":0.2,"drift_objects":1,"errors":1}
{"ts":"2026-05-01T10:01:20.3Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=60","to":"198.51.100.1 ttl=60","result":"applied"}
{"ts":"2026-05-01T10:01:20.3Z","event":"converged","target":"ns1","drift_seconds":20.3}
{"ts":"2026-05-01T10:01:20.3Z","event":"target_recovered","target":"ns1","down_seconds":20.1}
{"ts":"2026-05-01T10:01:20.3Z","event":"pass","duration_seconds":0.3,"drift_objects":0,"errors":0}
{"ts":"2026-05-01T11:00:00Z","event":"drift_detected","target":"lb-01","objects":["web/web-03"]}
{"ts":"2026-05-01T11:00:00.1Z","event":"pass","duration_seconds":0.1,"drift_objects":1,"errors":0}
{"ts":"2026-05-01T11:05:00Z","event":"started","version":"0.1.0"}
{"ts":"2026-05-01T11:05:00.1Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
"#;

    #[test]
    fn an_incident_runs_from_the_address_change_to_the_last_convergence() {
        let parsed = parse(LOG.as_bytes());
        let timeline = build(&parsed.records, None, None, parsed.skipped);
        assert_eq!(timeline.incidents.len(), 2);
        let first = &timeline.incidents[0];
        assert_eq!(first.status, Status::Resolved);
        assert_eq!(first.started, at("2026-05-01T10:01:00Z"));
        assert_eq!(first.detected, Some(at("2026-05-01T10:01:00Z")));
        assert_eq!(first.ended, at("2026-05-01T10:01:20.3Z"));
        assert_eq!(first.duration, Duration::from_millis(20_300));
        assert_eq!(first.summary.repairs_failed, 2);
        assert_eq!(first.summary.repairs_applied, 1);
        assert_eq!(first.summary.target_errors, 1);
        // The two failed attempts collapse into one entry.
        let failed = first
            .entries
            .iter()
            .find(|e| {
                matches!(
                    e.event,
                    Event::Change {
                        result: ChangeResult::Failed,
                        ..
                    }
                )
            })
            .unwrap();
        assert_eq!(
            (failed.times, failed.last),
            (2, at("2026-05-01T10:01:10.2Z"))
        );
        assert_eq!(first.entries.len(), 7);
        assert_eq!(first.impact.len(), 1);
        let www = &first.impact[0];
        assert_eq!(www.fix, Fix::Repaired);
        assert_eq!(www.wrong_for(first.ended), Duration::from_millis(20_300));
        assert_eq!(www.to.as_deref(), Some("198.51.100.1 ttl=60"));
    }

    #[test]
    fn a_restart_forgets_what_was_open_and_the_next_quiet_pass_closes_it() {
        let parsed = parse(LOG.as_bytes());
        let timeline = build(&parsed.records, None, None, vec![]);
        let second = &timeline.incidents[1];
        assert_eq!(second.status, Status::Resolved);
        assert_eq!(second.ended, at("2026-05-01T11:05:00Z"));
        assert_eq!(second.impact[0].fix, Fix::Unknown);

        let mut again = parsed.records.clone();
        let restart = again.len() - 1;
        again.insert(
            restart,
            crate::audit::Record {
                ts: at("2026-05-01T11:05:00Z"),
                event: Event::DriftDetected {
                    target: "lb-01".into(),
                    objects: vec!["web/web-03".into()],
                },
            },
        );
        let ongoing = &build(&again, None, None, vec![]).incidents[1];
        assert_eq!(ongoing.status, Status::Ongoing);
        assert_eq!(ongoing.impact.len(), 1);
        assert_eq!(ongoing.impact[0].fix, Fix::Open);
        assert!(matches!(
            second.entries.last().unwrap().event,
            Event::Started { .. }
        ));
    }

    #[test]
    fn a_maintenance_is_one_incident_from_the_lowered_ttl_to_its_restoration() {
        let log = r#"
{"ts":"2026-05-01T10:00:00Z","event":"maintenance","target":"ns1","object":"www.example.com. A","step":"ttl-lowered","reason":"TTL 10 s instead of 60 s for instance-stop of lb"}
{"ts":"2026-05-01T10:00:00Z","event":"drift_detected","target":"ns1","objects":["www.example.com. A"]}
{"ts":"2026-05-01T10:00:00.1Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=60","to":"192.0.2.1 ttl=10","result":"applied"}
{"ts":"2026-05-01T10:00:00.1Z","event":"converged","target":"ns1","drift_seconds":0.1}
{"ts":"2026-05-01T10:00:00.1Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
{"ts":"2026-05-01T10:05:00Z","event":"address_changed","source":"local","instance":"i-lb","name":"lb","address":"public_ipv4","old":"192.0.2.1","new":"198.51.100.1"}
{"ts":"2026-05-01T10:05:00Z","event":"drift_detected","target":"ns1","objects":["www.example.com. A"]}
{"ts":"2026-05-01T10:05:00.1Z","event":"maintenance","target":"ns1","object":"www.example.com. A","step":"ttl-held","reason":"TTL kept at 10 s"}
{"ts":"2026-05-01T10:05:00.1Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=10","to":"198.51.100.1 ttl=10","result":"applied"}
{"ts":"2026-05-01T10:05:00.1Z","event":"converged","target":"ns1","drift_seconds":0.1}
{"ts":"2026-05-01T10:05:00.1Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
{"ts":"2026-05-01T10:05:10.1Z","event":"maintenance","target":"ns1","object":"www.example.com. A","step":"ttl-restored","reason":"TTL back to 60 s"}
{"ts":"2026-05-01T10:05:10.1Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"198.51.100.1 ttl=10","to":"198.51.100.1 ttl=60","result":"applied"}
{"ts":"2026-05-01T10:05:10.1Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
{"ts":"2026-05-01T11:00:00Z","event":"drift_detected","target":"lb-01","objects":["web/web-03"]}
"#;
        let parsed = parse(log.as_bytes());
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let timeline = build(&parsed.records, None, None, vec![]);
        assert_eq!(timeline.incidents.len(), 2, "{timeline:?}");
        let maintenance = &timeline.incidents[0];
        assert_eq!(maintenance.status, Status::Resolved);
        assert_eq!(maintenance.started, at("2026-05-01T10:00:00Z"));
        assert_eq!(maintenance.ended, at("2026-05-01T10:05:10.1Z"));
        let text = crate::audit::render::text(&timeline);
        for said in [
            "ns1: maintenance ttl-lowered www.example.com. A: TTL 10 s instead of 60 s",
            "ns1: maintenance ttl-restored www.example.com. A",
        ] {
            assert!(text.contains(said), "{said}: {text}");
        }
    }

    #[test]
    fn an_unfinished_incident_is_ongoing() {
        let cut: String = LOG.lines().take(10).collect::<Vec<_>>().join("\n");
        let parsed = parse(cut.as_bytes());
        let timeline = build(&parsed.records, None, None, vec![]);
        let only = &timeline.incidents[0];
        assert_eq!(only.status, Status::Ongoing);
        assert_eq!(only.impact[0].fix, Fix::Open);
        assert_eq!(only.ended, at("2026-05-01T10:01:10.2Z"));
    }

    #[test]
    fn the_window_keeps_incidents_that_overlap_it() {
        let parsed = parse(LOG.as_bytes());
        let count = |since: &str, until: &str| {
            build(&parsed.records, Some(at(since)), Some(at(until)), vec![])
                .incidents
                .len()
        };
        assert_eq!(count("2026-05-01T10:01:10Z", "2026-05-01T10:01:11Z"), 1);
        assert_eq!(count("2026-05-01T10:30:00Z", "2026-05-01T10:40:00Z"), 0);
        assert_eq!(count("2026-05-01T09:00:00Z", "2026-05-01T12:00:00Z"), 2);
    }

    /// ns1 cannot be read while the lb's address changes twice; each repair is measured from
    /// the pass that saw the address it wrote.
    const FLAPPING: &str = r#"
{"ts":"2026-05-01T10:00:00Z","event":"address_changed","source":"local","instance":"i-lb","name":"lb","address":"public_ipv4","old":"192.0.2.1","new":"198.51.100.1"}
{"ts":"2026-05-01T10:00:00Z","event":"target_error","target":"ns1","message":"no answer"}
{"ts":"2026-05-01T10:00:00Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":1}
{"ts":"2026-05-01T10:00:10Z","event":"target_error","target":"ns1","message":"not tried this pass: backing off after repeated failures, next attempt in 9s"}
{"ts":"2026-05-01T10:00:20Z","event":"target_error","target":"ns1","message":"no answer"}
{"ts":"2026-05-01T10:00:30Z","event":"drift_detected","target":"ns1","objects":["www.example.com. A"]}
{"ts":"2026-05-01T10:00:30.1Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"192.0.2.1 ttl=60","to":"198.51.100.1 ttl=60","result":"applied"}
{"ts":"2026-05-01T10:00:30.1Z","event":"target_recovered","target":"ns1","down_seconds":30.1,"failed_attempts":2}
{"ts":"2026-05-01T10:00:40Z","event":"address_changed","source":"local","instance":"i-lb","name":"lb","address":"public_ipv4","old":"198.51.100.1","new":"192.0.2.1"}
{"ts":"2026-05-01T10:00:40Z","event":"target_error","target":"ns1","message":"no answer"}
{"ts":"2026-05-01T10:01:00Z","event":"drift_detected","target":"ns1","objects":["www.example.com. A"]}
{"ts":"2026-05-01T10:01:00.1Z","event":"change","target":"ns1","op":"update","object":"www.example.com. A","from":"198.51.100.1 ttl=60","to":"192.0.2.1 ttl=60","result":"applied"}
{"ts":"2026-05-01T10:01:00.1Z","event":"converged","target":"ns1","drift_seconds":0.1}
{"ts":"2026-05-01T10:01:00.1Z","event":"target_recovered","target":"ns1","down_seconds":20.1,"failed_attempts":1}
{"ts":"2026-05-01T10:01:00.1Z","event":"pass","duration_seconds":0.1,"drift_objects":0,"errors":0}
"#;

    #[test]
    fn impact_runs_from_the_pass_that_saw_the_new_address_to_the_repair() {
        let parsed = parse(FLAPPING.as_bytes());
        let incident = &build(&parsed.records, None, None, vec![]).incidents[0];
        let rows: Vec<_> = incident
            .impact
            .iter()
            .map(|i| (i.wrong_since, i.fixed_at, i.fix))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    at("2026-05-01T10:00:00Z"),
                    Some(at("2026-05-01T10:00:30.1Z")),
                    Fix::Repaired
                ),
                // Wrong again from the second change, not from the first.
                (
                    at("2026-05-01T10:00:40Z"),
                    Some(at("2026-05-01T10:01:00.1Z")),
                    Fix::Repaired
                ),
            ]
        );
    }

    #[test]
    fn an_error_repeated_while_failing_is_one_error_and_a_backoff_none() {
        let parsed = parse(FLAPPING.as_bytes());
        let incident = &build(&parsed.records, None, None, vec![]).incidents[0];
        let errors: Vec<_> = incident
            .entries
            .iter()
            .filter(|e| matches!(e.event, Event::TargetError { .. }))
            .map(|e| (e.ts, e.times, e.last))
            .collect();
        // The first outage: one error seen twice, its backoff no error; the second outage,
        // after ns1 worked again, is a new one.
        assert_eq!(
            errors,
            vec![
                (at("2026-05-01T10:00:00Z"), 2, at("2026-05-01T10:00:20Z")),
                (at("2026-05-01T10:00:40Z"), 1, at("2026-05-01T10:00:40Z")),
            ]
        );
        assert_eq!(incident.summary.target_errors, 2);
    }

    #[test]
    fn since_and_until_accept_rfc3339_or_a_duration_ago() {
        let now = at("2026-05-01T12:00:00Z");
        assert_eq!(parse_time("2h", now), Ok(at("2026-05-01T10:00:00Z")));
        assert_eq!(parse_time("90s", now), Ok(at("2026-05-01T11:58:30Z")));
        assert_eq!(
            parse_time("2026-05-01T12:00:00+02:00", now),
            Ok(at("2026-05-01T10:00:00Z"))
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
        // Found by the audit_log fuzz target: a duration reaching before the calendar panicked.
        assert!(
            parse_time("2417355years", now)
                .unwrap_err()
                .contains("further back than times go")
        );
        assert!(parse_time("584942417355years", now).is_err());
    }
}
