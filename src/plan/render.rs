//! Text and JSON renderings of a pass, for `diff` and `apply`. Pure.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Change, PassReport};

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
    json!({
        "in_sync": !report.plan.has_drift() && report.errors.is_empty(),
        "changes": changes,
        "refusals": report.plan.refusals,
        "unrepairable": unrepairable,
        "problems": problems,
        "errors": errors,
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
    for e in &report.errors {
        let _ = writeln!(out, "error    {}: {}", e.target, e.message);
    }
    for (target, result) in &report.written {
        if let Err(message) = result {
            let _ = writeln!(out, "error    {target}: {message}");
        }
    }
    out
}
