//! Text and JSON renderings of a pass, for `diff` and `apply`. Pure.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Change, PassReport};
use crate::dns::secondaries::Served;

/// How a change ended, for `apply` output.
fn result_of(report: &PassReport, change: &Change) -> Option<&'static str> {
    report.written.get(&change.target).map(|r| match r {
        Ok(()) => "applied",
        Err(_) => "failed",
    })
}

/// The JSON document of `diff --output json` / `apply --output json`: one object with a
/// `changes` array of `{target, op, object, from, to}` (plus `result` after `apply`).
pub fn json(report: &PassReport) -> Value {
    let changes: Vec<Value> = report
        .plan
        .changes
        .iter()
        .map(|c| {
            let mut v = json!({
                "target": c.target,
                "op": c.op,
                "object": c.object,
                "from": c.from,
                "to": c.to,
            });
            if let Some(result) = result_of(report, c) {
                v["result"] = json!(result);
            }
            v
        })
        .collect();
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({"target": p.target, "object": p.object, "message": p.message}))
        .collect();
    let unrepairable: Vec<Value> = report
        .plan
        .unrepairable
        .iter()
        .map(|p| json!({"target": p.target, "object": p.object, "message": p.message}))
        .collect();
    let write_errors = report.written.iter().filter_map(|(target, r)| {
        r.as_ref()
            .err()
            .map(|m| json!({"target": target, "message": m}))
    });
    let errors: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({"target": e.target, "message": e.message}))
        .chain(write_errors)
        .collect();
    let secondaries: Vec<Value> = report
        .secondaries
        .iter()
        .flat_map(|(target, states)| states.iter().map(move |s| (target, s)))
        .map(|(target, s)| {
            let (state, seconds, serial) = match &s.state {
                Served::After(after) => ("served", Some(after.as_secs_f64()), None),
                Served::InSync => ("in_sync", None, None),
                Served::Lagging { waited, serial, .. } => {
                    ("lagging", Some(waited.as_secs_f64()), *serial)
                }
            };
            json!({
                "target": target,
                "secondary": s.addr.to_string(),
                "state": state,
                "seconds": seconds,
                "serial": serial,
                "primary_serial": s.primary_serial,
                "message": s.to_string(),
            })
        })
        .collect();
    json!({
        "in_sync": !report.plan.has_drift() && report.errors.is_empty(),
        "changes": changes,
        "refusals": report.plan.refusals,
        "unrepairable": unrepairable,
        "problems": problems,
        "errors": errors,
        "forecast": report.forecast,
        "maintenance": report.maintenance,
        "secondaries": secondaries,
    })
}

/// Human-readable rendering: one line per change, then refusals, problems and errors.
pub fn text(report: &PassReport) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    if plan.changes.is_empty() && plan.refusals.is_empty() && plan.unrepairable.is_empty() {
        if report.errors.is_empty() {
            out.push_str("in sync: nothing to change\n");
        } else {
            out.push_str("no changes planned for the targets that could be read\n");
        }
    }
    for c in &plan.changes {
        let from = c.from.as_deref().unwrap_or("(absent)");
        let to = c.to.as_deref().unwrap_or("(absent)");
        let _ = write!(
            out,
            "{:<8} {}: {}  {} -> {}",
            c.op.as_str(),
            c.target,
            c.object,
            from,
            to
        );
        if let Some(result) = result_of(report, c) {
            let _ = write!(out, "  [{result}]");
        }
        out.push('\n');
    }
    for r in &plan.refusals {
        let _ = writeln!(
            out,
            "refused  {}: {}  guard {}: {}",
            r.target, r.object, r.guard, r.reason
        );
    }
    for p in &plan.unrepairable {
        let _ = writeln!(
            out,
            "cannot   {}: {}  {}",
            p.target.as_deref().unwrap_or("-"),
            p.object,
            p.message
        );
    }
    for p in &report.problems {
        let _ = writeln!(
            out,
            "warning  {}{}: {}",
            p.target
                .as_deref()
                .map(|t| format!("{t}: "))
                .unwrap_or_default(),
            p.object,
            p.message
        );
    }
    for (target, states) in &report.secondaries {
        for s in states {
            match s.state {
                // A lagging secondary still serves the old records: a warning, not drift
                // (ipdrift cannot write to it; its primary is already right).
                Served::Lagging { .. } => {
                    let _ = writeln!(out, "warning  {target}: {s}");
                }
                Served::After(_) => {
                    let _ = writeln!(out, "served   {target}: {s}");
                }
                Served::InSync => {}
            }
        }
    }
    for e in &report.errors {
        let _ = writeln!(out, "error    {}: {}", e.target, e.message);
    }
    for f in &report.forecast {
        let mut affected: Vec<&str> = f
            .records
            .iter()
            .chain(&f.servers)
            .map(String::as_str)
            .collect();
        if affected.is_empty() {
            affected.push("nothing ipdrift manages");
        }
        let _ = writeln!(
            out,
            "forecast {} will change its addresses; prepared for from {}; depends on it: {}",
            f.event_text(),
            crate::forecast::unix_text(f.prepare_from),
            affected.join("; ")
        );
    }
    for m in &report.maintenance {
        let _ = writeln!(
            out,
            "maintenance {}: {}  {}: {}",
            m.target,
            m.object,
            m.step.as_str(),
            m.reason
        );
    }
    for (target, result) in &report.written {
        if let Err(message) = result {
            let _ = writeln!(out, "error    {target}: {message}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::dns::secondaries::Secondary;
    use crate::forecast::Forecast;
    use crate::plan::{Change, Op, Plan, Refusal, TargetError};

    fn report() -> PassReport {
        let change = Change {
            target: "ns1".into(),
            op: Op::Update,
            object: "www.example.com. A".into(),
            from: Some("192.0.2.1 ttl=60".into()),
            to: Some("192.0.2.2 ttl=60".into()),
            action: crate::plan::Action::Lb(crate::lb::ServerChange::Delete {
                key: crate::model::ServerKey {
                    backend: "b".into(),
                    server: "s".into(),
                },
            }),
            removes: 0,
        };
        PassReport {
            plan: Plan {
                changes: vec![change],
                refusals: vec![Refusal {
                    guard: "never-empty",
                    target: "lb-01".into(),
                    object: "web/web-01".into(),
                    reason: "last one".into(),
                }],
                unrepairable: vec![],
            },
            errors: vec![TargetError {
                target: "local".into(),
                message: "cannot read".into(),
            }],
            forecast: vec![Forecast {
                source: "aws".into(),
                instance: "i-1".into(),
                name: "web-01".into(),
                code: "instance-stop".into(),
                not_before: 1_800_000_000,
                description: "stop".into(),
                records: vec!["ns1: web-01.example.com. A".into()],
                servers: vec![],
                prepare_from: 1_800_000_000 - 600,
                record_keys: vec![],
                server_keys: vec![],
            }],
            maintenance: vec![crate::maintenance::Step {
                target: "ns1".into(),
                object: "web-01.example.com. A".into(),
                step: crate::maintenance::StepKind::TtlLowered,
                reason: "TTL 10 s instead of 60 s".into(),
            }],
            secondaries: BTreeMap::from([(
                "ns1".to_string(),
                vec![
                    Secondary {
                        addr: "127.0.0.1:5301".parse().unwrap(),
                        primary_serial: 7,
                        state: Served::Lagging {
                            waited: Duration::from_secs(2),
                            serial: Some(6),
                            why: "serial 6 (primary has 7)".into(),
                        },
                    },
                    Secondary {
                        addr: "127.0.0.1:5302".parse().unwrap(),
                        primary_serial: 7,
                        state: Served::After(Duration::from_millis(1500)),
                    },
                ],
            )]),
            ..PassReport::default()
        }
    }

    #[test]
    fn lagging_secondaries_are_warnings_in_text_and_json() {
        let report = report();
        let text = text(&report);
        assert!(
            text.contains("warning  ns1: secondary 127.0.0.1:5301 lagging: serial 6 (primary has 7) after 2s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "served   ns1: secondary 127.0.0.1:5302 served the change after 1s 500ms\n"
            ),
            "{text}"
        );
        let v = json(&report);
        let lagging = &v["secondaries"][0];
        assert_eq!(lagging["target"], "ns1");
        assert_eq!(lagging["secondary"], "127.0.0.1:5301");
        assert_eq!(lagging["state"], "lagging");
        assert_eq!(lagging["serial"], 6);
        assert_eq!(lagging["primary_serial"], 7);
        assert_eq!(lagging["seconds"], 2.0);
        assert_eq!(v["secondaries"][1]["state"], "served");
        assert_eq!(v["secondaries"][1]["seconds"], 1.5);
    }

    #[test]
    fn json_has_the_contracted_shape() {
        let v = json(&report());
        let change = &v["changes"][0];
        assert_eq!(change["target"], "ns1");
        assert_eq!(change["op"], "update");
        assert_eq!(change["object"], "www.example.com. A");
        assert_eq!(change["from"], "192.0.2.1 ttl=60");
        assert_eq!(change["to"], "192.0.2.2 ttl=60");
        assert!(
            change.get("result").is_none(),
            "no result before anything was written"
        );
        assert_eq!(v["refusals"][0]["guard"], "never-empty");
        assert_eq!(v["errors"][0]["target"], "local");
        assert_eq!(v["forecast"][0]["code"], "instance-stop");
        assert_eq!(v["forecast"][0]["prepare_from"], 1_800_000_000 - 600);
        assert_eq!(v["maintenance"][0]["step"], "ttl-lowered");
        assert_eq!(v["in_sync"], false);
    }

    #[test]
    fn text_names_every_part() {
        let text = text(&report());
        assert!(
            text.contains("update   ns1: www.example.com. A  192.0.2.1 ttl=60 -> 192.0.2.2 ttl=60"),
            "{text}"
        );
        assert!(
            text.contains("refused  lb-01: web/web-01  guard never-empty"),
            "{text}"
        );
        assert!(text.contains("error    local: cannot read"), "{text}");
        assert!(
            text.contains(
                "forecast instance-stop of web-01 (i-1, source aws) not before 2027-01-15T08:00:00Z will change its addresses; prepared for from 2027-01-15T07:50:00Z"
            ),
            "{text}"
        );
        assert!(
            text.contains("maintenance ns1: web-01.example.com. A  ttl-lowered: TTL 10 s"),
            "{text}"
        );
    }
}
