//! Text, JSON and Markdown renderings of a [`Timeline`]. Pure. The Markdown is meant to be
//! pasted into a postmortem: a summary table, the timeline and the impact per incident.

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use super::timeline::{Entry, Fix, Impact, Incident, Status, Timeline};
use super::{ChangeResult, Event};
use crate::model::AddressKind;

/// What the times mean, said once per output.
const TIMES_NOTE: &str = "Times are UTC and say when ipdrift observed each event: an address changes up to one controller interval before the pass that sees it.";

/// The JSON document of `timeline --output json`.
pub fn json(timeline: &Timeline) -> serde_json::Value {
    serde_json::to_value(timeline).expect("a timeline always serializes")
}

/// RFC 3339 with milliseconds, e.g. `2026-05-01T10:00:02.000Z`, so that times line up.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        t.date(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `HH:MM:SS.mmm`, with the date in front when it is not the incident's first day.
fn clock(t: OffsetDateTime, day: OffsetDateTime) -> String {
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    if t.date() == day.date() {
        time
    } else {
        format!("{} {time}", t.date())
    }
}

/// A duration in ms precision, e.g. `2s 67ms`, `0s`.
fn span(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

/// Seconds from the log as [`span`] does; a number no duration can be (negative, too big:
/// a log edited or damaged) is shown as it is.
fn span_of_seconds(seconds: f64) -> String {
    Duration::try_from_secs_f64(seconds)
        .map_or_else(|_| format!("{seconds:?} s (not a duration)"), span)
}

fn address_name(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::PublicIpv4 => "public IPv4",
        AddressKind::PrivateIpv4 => "private IPv4",
        AddressKind::Ipv6 => "IPv6",
    }
}

/// One sentence for a timeline entry.
pub fn describe(entry: &Entry, start: OffsetDateTime) -> String {
    match &entry.event {
        Event::Started { version } => {
            format!("ipdrift {version} (re)started; what it knew before is forgotten")
        }
        Event::AddressChanged {
            source,
            instance,
            name,
            address,
            old,
            new,
        } => format!(
            "{source}: instance {name} ({instance}) {} changed {old} → {new}",
            address_name(*address)
        ),
        Event::DriftDetected { target, objects } => format!(
            "{target}: drift detected on {} object(s): {}",
            objects.len(),
            objects.join(", ")
        ),
        Event::Change {
            target,
            op,
            object,
            from,
            to,
            result,
        } => {
            let mut text = format!(
                "{target}: {op} {object}: {} → {}",
                from.as_deref().unwrap_or("(absent)"),
                to.as_deref().unwrap_or("(absent)")
            );
            match result {
                ChangeResult::Applied => text.push_str(" — applied and verified"),
                ChangeResult::Failed if entry.times > 1 => {
                    let _ = write!(
                        text,
                        " — FAILED {} times, last at +{}",
                        entry.times,
                        span(super::elapsed(start, entry.last))
                    );
                }
                ChangeResult::Failed => text.push_str(" — FAILED"),
            }
            text
        }
        Event::GuardRefused {
            guard,
            target,
            object,
            reason,
        } => format!("{target}: guard {guard} refused to change {object}: {reason}"),
        Event::TargetError { target, message } if entry.times > 1 => format!(
            "{target}: error: {message} — seen {} times, last at +{}",
            entry.times,
            span(super::elapsed(start, entry.last))
        ),
        Event::TargetError { target, message } => format!("{target}: error: {message}"),
        Event::TargetRecovered {
            target,
            down_seconds,
            failed_attempts,
        } => {
            let mut text = format!(
                "{target}: working again after {}",
                span_of_seconds(*down_seconds)
            );
            if *failed_attempts > 0 {
                let _ = write!(text, ", {failed_attempts} failed attempt(s)");
            }
            text
        }
        Event::Propagation {
            target,
            secondary,
            seconds,
            lagging: None,
        } => format!(
            "{target}: secondary {secondary} served the change after {}",
            span_of_seconds(*seconds)
        ),
        Event::Propagation {
            target,
            secondary,
            seconds,
            lagging: Some(why),
        } => format!(
            "{target}: secondary {secondary} LAGGING: {why}, still after {}",
            span_of_seconds(*seconds)
        ),
        Event::Converged {
            target,
            drift_seconds,
        } => format!(
            "{target}: converged — in sync again, {} after the drift was seen",
            span_of_seconds(*drift_seconds)
        ),
        Event::Maintenance {
            target,
            object,
            step,
            reason,
        } => format!("{target}: maintenance {step} {object}: {reason}"),
        Event::Pass { .. } => "pass finished".to_string(),
    }
}

fn status_text(incident: &Incident) -> String {
    match incident.status {
        Status::Resolved => format!("resolved in {}", span(incident.duration)),
        Status::Ongoing => format!(
            "ONGOING at the end of the log ({} so far)",
            span(incident.duration)
        ),
    }
}

fn title(incident: &Incident) -> String {
    let start = incident.started;
    let cause = if incident.summary.address_changes > 0 {
        "addresses changed"
    } else if incident.detected.is_some() {
        "drift"
    } else {
        "target errors"
    };
    format!(
        "{} {:02}:{:02}:{:02} UTC: {cause}, {}",
        start.date(),
        start.hour(),
        start.minute(),
        start.second(),
        status_text(incident)
    )
}

/// Summary rows: (label, value).
fn summary_rows(incident: &Incident) -> Vec<(&'static str, String)> {
    let s = &incident.summary;
    let start = incident.started;
    let mut rows = vec![("Started", rfc3339(start))];
    if let Some(detected) = incident.detected {
        rows.push((
            "Drift detected",
            format!(
                "{} (+{})",
                rfc3339(detected),
                span(super::elapsed(start, detected))
            ),
        ));
    }
    let end_label = match incident.status {
        Status::Resolved => "Converged",
        Status::Ongoing => "Last event",
    };
    rows.push((
        end_label,
        format!("{} (+{})", rfc3339(incident.ended), span(incident.duration)),
    ));
    rows.push(("Duration", status_text(incident)));
    rows.push((
        "Address changes",
        format!(
            "{} on {} instance(s){}",
            s.address_changes,
            s.instances.len(),
            list_suffix(&s.instances)
        ),
    ));
    rows.push((
        "Targets affected",
        if s.targets.is_empty() {
            "none".to_string()
        } else {
            s.targets.iter().cloned().collect::<Vec<_>>().join(", ")
        },
    ));
    rows.push((
        "Repairs",
        format!(
            "{} applied, {} failed attempt(s)",
            s.repairs_applied, s.repairs_failed
        ),
    ));
    rows.push(("Guard refusals", s.guard_refusals.to_string()));
    rows.push(("Target errors", s.target_errors.to_string()));
    let wrong = incident.impact.len();
    let longest = incident
        .impact
        .iter()
        .map(|i| i.wrong_for(incident.ended))
        .max()
        .unwrap_or_default();
    rows.push((
        "Impact",
        if wrong == 0 {
            "no managed name or server was wrong".to_string()
        } else {
            format!(
                "{wrong} name(s)/server(s) wrong, the longest for {}",
                span(longest)
            )
        },
    ));
    rows
}

fn list_suffix(items: &std::collections::BTreeSet<String>) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            items.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

fn fix_text(impact: &Impact) -> &'static str {
    match impact.fix {
        Fix::Repaired => "repaired",
        Fix::Resolved => "back in sync without a change",
        Fix::Unknown => "unknown (controller restarted)",
        Fix::Open => "STILL WRONG",
    }
}

fn fixed_at_text(impact: &Impact, start: OffsetDateTime) -> String {
    impact
        .fixed_at
        .map_or_else(|| "-".to_string(), |t| clock(t, start))
}

/// How many skipped line numbers the text and Markdown name (JSON has them all).
const SKIPPED_SHOWN: usize = 20;

fn skipped_note(timeline: &Timeline) -> Option<String> {
    (timeline.skipped_line_count > 0).then(|| {
        let mut lines: Vec<String> = timeline
            .skipped_lines
            .iter()
            .take(SKIPPED_SHOWN)
            .map(ToString::to_string)
            .collect();
        if timeline.skipped_line_count > SKIPPED_SHOWN {
            lines.push("…".to_string());
        }
        format!(
            "{} line(s) of the audit log could not be read and were skipped (not UTF-8, not JSON — cut short by a crash or a full disk — or an event this version does not know): {}",
            timeline.skipped_line_count,
            lines.join(", ")
        )
    })
}

fn window_text(timeline: &Timeline) -> String {
    match (timeline.since, timeline.until) {
        (None, None) => "the whole audit log".to_string(),
        (Some(s), None) => format!("since {}", rfc3339(s)),
        (None, Some(u)) => format!("until {}", rfc3339(u)),
        (Some(s), Some(u)) => format!("{} to {}", rfc3339(s), rfc3339(u)),
    }
}

/// Plain text for a terminal.
pub fn text(timeline: &Timeline) -> String {
    let mut out = String::new();
    if timeline.incidents.is_empty() {
        let _ = writeln!(out, "No incidents in {}.", window_text(timeline));
    }
    for (n, incident) in timeline.incidents.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let start = incident.started;
        let _ = writeln!(out, "Incident {}: {}", n + 1, title(incident));
        for (label, value) in summary_rows(incident) {
            let _ = writeln!(out, "  {:<17} {value}", format!("{label}:"));
        }
        let _ = writeln!(out, "  Timeline (UTC):");
        for entry in &incident.entries {
            let _ = writeln!(
                out,
                "    {}  +{:<10} {}",
                clock(entry.ts, start),
                span(super::elapsed(start, entry.ts)),
                describe(entry, start)
            );
        }
        if !incident.impact.is_empty() {
            let _ = writeln!(out, "  Impact:");
            for impact in &incident.impact {
                let _ = writeln!(
                    out,
                    "    {}: {}  wrong from {} until {} ({}), {}{}",
                    impact.target,
                    impact.object,
                    clock(impact.wrong_since, start),
                    fixed_at_text(impact, start),
                    span(impact.wrong_for(incident.ended)),
                    fix_text(impact),
                    was_now(impact, " ")
                );
            }
        }
    }
    if !timeline.incidents.is_empty() {
        let _ = writeln!(out, "\n{TIMES_NOTE}");
    }
    if let Some(note) = skipped_note(timeline) {
        let _ = writeln!(out, "\nNote: {note}");
    }
    out
}

fn was_now(impact: &Impact, lead: &str) -> String {
    match (&impact.from, &impact.to) {
        (None, None) => String::new(),
        (from, to) => format!(
            "{lead}{} → {}",
            from.as_deref().unwrap_or("(absent)"),
            to.as_deref().unwrap_or("(absent)")
        ),
    }
}

/// A table cell: pipes escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown for a postmortem document.
pub fn markdown(timeline: &Timeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# ipdrift incident timeline\n");
    let _ = writeln!(
        out,
        "{} incident(s) in {}. {TIMES_NOTE}",
        timeline.incidents.len(),
        window_text(timeline)
    );
    for (n, incident) in timeline.incidents.iter().enumerate() {
        let start = incident.started;
        let _ = writeln!(out, "\n## Incident {}: {}\n", n + 1, title(incident));
        let _ = writeln!(out, "| | |\n|---|---|");
        for (label, value) in summary_rows(incident) {
            let _ = writeln!(out, "| {label} | {} |", cell(&value));
        }
        let _ = writeln!(out, "\n### Timeline\n");
        let _ = writeln!(out, "| Time (UTC) | Since start | Event |\n|---|---|---|");
        for entry in &incident.entries {
            let _ = writeln!(
                out,
                "| {} | +{} | {} |",
                clock(entry.ts, start),
                span(super::elapsed(start, entry.ts)),
                cell(&describe(entry, start))
            );
        }
        let _ = writeln!(out, "\n### Impact\n");
        if incident.impact.is_empty() {
            let _ = writeln!(out, "No managed name or server was wrong.");
            continue;
        }
        let _ = writeln!(
            out,
            "| Target | Name or server | Wrong from | Until | Wrong for | Outcome | Was | Now |\n|---|---|---|---|---|---|---|---|"
        );
        for impact in &incident.impact {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&impact.target),
                cell(&impact.object),
                clock(impact.wrong_since, start),
                fixed_at_text(impact, start),
                span(impact.wrong_for(incident.ended)),
                fix_text(impact),
                cell(impact.from.as_deref().unwrap_or("-")),
                cell(impact.to.as_deref().unwrap_or("-"))
            );
        }
    }
    if let Some(note) = skipped_note(timeline) {
        let _ = writeln!(out, "\n> Note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::timeline::build;

    fn timeline(log: &str) -> Timeline {
        let parsed = crate::audit::parse(log.as_bytes());
        build(&parsed.records, None, None, parsed.skipped)
    }

    #[test]
    fn markdown_escapes_pipes_in_cells_and_notes_skipped_lines() {
        let md = markdown(&timeline(
            "{\"ts\":\"2026-05-01T10:00:00Z\",\"event\":\"target_error\",\"target\":\"lb-01\",\"message\":\"HAProxy said: a|b\"}\nnot json\n",
        ));
        assert!(md.contains("lb-01: error: HAProxy said: a\\|b"), "{md}");
        assert!(
            md.contains("## Incident 1: 2026-05-01 10:00:00 UTC: target errors, ONGOING"),
            "{md}"
        );
        assert!(
            md.contains("> Note: 1 line(s) of the audit log could not be read and were skipped")
                && md.ends_with("does not know): 2\n"),
            "{md}"
        );
    }

    #[test]
    fn every_output_says_how_many_lines_were_skipped() {
        let mut log = b"{\"ts\":\"2026-05-01T10:00:00Z\",\"event\":\"target_error\",\"target\":\"ns1\",\"message\":\"x\"}\n".to_vec();
        for n in 0..25 {
            log.extend_from_slice(if n % 2 == 0 {
                b"\xff\xfe\n"
            } else {
                b"{\"ts\n"
            });
        }
        let parsed = crate::audit::parse(&log);
        let timeline = build(&parsed.records, None, None, parsed.skipped);
        let shown = format!(
            "25 line(s) of the audit log could not be read and were skipped (not UTF-8, not JSON — cut short by a crash or a full disk — or an event this version does not know): {}, …",
            (2..=21)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let text = text(&timeline);
        assert!(text.contains(&format!("\nNote: {shown}\n")), "{text}");
        let md = markdown(&timeline);
        assert!(md.contains(&format!("\n> Note: {shown}\n")), "{md}");
        let json = json(&timeline);
        assert_eq!(json["skipped_line_count"], 25);
        assert_eq!(json["skipped_lines"].as_array().unwrap().len(), 25);
        assert_eq!(json["incidents"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn durations_no_duration_can_be_are_shown_as_written() {
        let text = text(&timeline(
            "{\"ts\":\"2026-05-01T10:00:00Z\",\"event\":\"target_error\",\"target\":\"ns1\",\"message\":\"m\"}\n\
             {\"ts\":\"2026-05-01T10:00:01Z\",\"event\":\"converged\",\"target\":\"ns1\",\"drift_seconds\":1e300}\n\
             {\"ts\":\"2026-05-01T10:00:02Z\",\"event\":\"target_recovered\",\"target\":\"ns1\",\"down_seconds\":-1}\n",
        ));
        assert!(
            text.contains("in sync again, 1e300 s (not a duration) after"),
            "{text}"
        );
        assert!(
            text.contains("working again after -1.0 s (not a duration)"),
            "{text}"
        );
        assert_eq!(
            span(Duration::MAX),
            "584542046years 1month 2days 15h 52m 15s 615ms"
        );
    }

    #[test]
    fn an_empty_log_has_no_incidents() {
        assert_eq!(
            text(&timeline("")),
            "No incidents in the whole audit log.\n"
        );
        assert!(markdown(&timeline("")).contains("0 incident(s)"));
        assert_eq!(json(&timeline(""))["incidents"], serde_json::json!([]));
    }
}
