//! `ipdrift explain NAME`: for a record name or a `backend/server`, which rule manages it,
//! which instances feed it, what it should hold and why, and what this pass would do to it
//! (a change, a guard's refusal, drift it cannot repair). Pure: built from one read-only
//! pass's report and what the sources listed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{BackendRule, Config, RecordRule, Selector};
use crate::desired::{Desired, SourceSnapshot};
use crate::model::{AddressKind, Instance, InstanceState, RecordKey, ServerIntent, ServerKey};
use crate::plan::PassReport;
use crate::validate;

/// Everything that manages one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub subject: String,
    /// One entry per rule (and target) that produces the subject; empty when none does.
    pub managed_by: Vec<Managed>,
}

/// One rule that produces the subject, and where that leaves it this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Managed {
    /// The DNS target or load balancer.
    pub target: String,
    /// `www.example.com. A` or `web/web-01`, as `diff` names it.
    pub object: String,
    /// The rule, as configured.
    pub rule: String,
    /// The instances the rule selects for this object, and whether each counts.
    pub instances: Vec<Feed>,
    /// What the object should hold, and why.
    pub should_hold: String,
    /// What this pass would do: in sync, a change, a refusal, unrepairable, or unknown.
    pub verdict: String,
    /// Warnings of this pass about the object or its instances.
    pub problems: Vec<String>,
    /// Announced maintenance that will change the object's addresses.
    pub forecast: Vec<String>,
}

/// One instance the rule selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feed {
    pub source: String,
    pub id: String,
    pub name: String,
    pub state: InstanceState,
    /// The address the rule takes from it, when it has one.
    pub address: Option<String>,
    /// Why it counts or does not.
    pub note: String,
}

/// Explains `subject`: `backend/server`, or a record name with an optional type
/// (`www.example.com`, `www.example.com. AAAA`).
pub fn explain(
    config: &Config,
    sources: &BTreeMap<String, SourceSnapshot>,
    want: &Desired,
    report: &PassReport,
    subject: &str,
) -> Explanation {
    let subject = subject.trim();
    let managed_by = match subject.split_once('/') {
        Some((backend, server)) => {
            let key = ServerKey {
                backend: backend.to_string(),
                server: server.to_string(),
            };
            explain_server(config, sources, want, report, &key)
        }
        None => explain_record(config, sources, want, report, subject),
    };
    Explanation {
        subject: subject.to_string(),
        managed_by,
    }
}

fn explain_record(
    config: &Config,
    sources: &BTreeMap<String, SourceSnapshot>,
    want: &Desired,
    report: &PassReport,
    subject: &str,
) -> Vec<Managed> {
    let (name, rtype) = match subject.rsplit_once(' ') {
        Some((name, t)) if t.eq_ignore_ascii_case("aaaa") || t.eq_ignore_ascii_case("a") => {
            (name.trim(), Some(t.to_ascii_uppercase()))
        }
        _ => (subject, None),
    };
    let Ok(name) = validate::dns_name(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, rule) in config.records.iter().enumerate() {
        let key = RecordKey {
            name: name.clone(),
            rtype: rule.address.record_type(),
        };
        if rtype.as_deref().is_some_and(|t| t != key.rtype.to_string()) {
            continue;
        }
        let feeding: Vec<(&str, &Instance)> = selected(&rule.select, sources)
            .filter(|(_, i)| {
                !rule.name.is_per_instance()
                    || validate::dns_name(&rule.name.render(i)).is_ok_and(|n| n == name)
            })
            .collect();
        let produces = if rule.name.is_per_instance() {
            !feeding.is_empty()
        } else {
            validate::dns_name(&rule.name.to_string()).is_ok_and(|n| n == name)
        };
        if !produces {
            continue;
        }
        let object = key.to_string();
        let should_hold = match want.records.get(&rule.dns).and_then(|z| z.get(&key)) {
            Some(set) => {
                let addrs: Vec<String> = set.addrs.iter().map(|a| a.to_string()).collect();
                format!("{} ttl={}: the {} of every running instance selected", addrs.join(","), set.ttl, rule.address.as_str())
            }
            None if want.empty_records.get(&rule.dns).is_some_and(|k| k.contains(&key)) => {
                "no running instance selected has the address: left as it is (a record set is never emptied)".into()
            }
            None => "nothing: no running instance produces it (a `policy = \"sync\"` rule deletes the record set if ipdrift created it; otherwise it is left as it is)".into(),
        };
        out.push(Managed {
            verdict: verdict(report, &rule.dns, &object),
            problems: problems(report, &rule.dns, &object, &feeding),
            forecast: forecast(report, &format!("{}: {object}", rule.dns)),
            instances: feeding
                .iter()
                .map(|(s, i)| feed(s, i, rule.address))
                .collect(),
            rule: record_rule_text(n, rule),
            target: rule.dns.clone(),
            object,
            should_hold,
        });
    }
    out
}

fn explain_server(
    config: &Config,
    sources: &BTreeMap<String, SourceSnapshot>,
    want: &Desired,
    report: &PassReport,
    key: &ServerKey,
) -> Vec<Managed> {
    let mut out = Vec::new();
    for lb in &config.load_balancers {
        for rule in lb.backends.iter().filter(|b| b.name == key.backend) {
            let feeding: Vec<(&str, &Instance)> = selected(&rule.select, sources)
                .filter(|(_, i)| rule.server.render(i) == key.server)
                .collect();
            if feeding.is_empty()
                && !want
                    .servers
                    .get(&lb.name)
                    .is_some_and(|s| s.contains_key(key))
            {
                continue;
            }
            let object = key.to_string();
            let should_hold = match want.servers.get(&lb.name).and_then(|s| s.get(key)) {
                Some(server) => match server.intent {
                    ServerIntent::Serve { addr, port } => format!(
                        "{}: in service at the {} of its running instance",
                        crate::model::socket_text(addr, port),
                        rule.address.as_str()
                    ),
                    ServerIntent::Maint => "in maintenance: its instance is not running".into(),
                },
                None => "nothing is set: no single running instance with the address renders to it (it is never taken out while an instance still claims it)".into(),
            };
            out.push(Managed {
                verdict: verdict(report, &lb.name, &object),
                problems: problems(report, &lb.name, &object, &feeding),
                forecast: forecast(report, &format!("{}: {object}", lb.name)),
                instances: feeding
                    .iter()
                    .map(|(s, i)| feed(s, i, rule.address))
                    .collect(),
                rule: backend_rule_text(lb.kind, &lb.name, rule),
                target: lb.name.clone(),
                object,
                should_hold,
            });
        }
    }
    out
}

fn selected<'a>(
    select: &'a Selector,
    sources: &'a BTreeMap<String, SourceSnapshot>,
) -> impl Iterator<Item = (&'a str, &'a Instance)> + 'a {
    sources
        .iter()
        .flat_map(move |(name, snapshot)| match snapshot {
            SourceSnapshot::Listed(list) => list
                .iter()
                .filter(move |i| select.matches(name, i))
                .map(move |i| (name.as_str(), i))
                .collect::<Vec<_>>(),
            SourceSnapshot::Failed => Vec::new(),
        })
}

fn feed(source: &str, instance: &Instance, kind: AddressKind) -> Feed {
    let address = instance.address(kind);
    let note = match (instance.state, address) {
        (InstanceState::Running, Some(_)) => "counts: running, with the address".to_string(),
        (InstanceState::Running, None) => {
            format!("does not count: running, but has no {}", kind.as_str())
        }
        (state, _) => format!("does not count: {}", state_text(state)),
    };
    Feed {
        source: source.to_string(),
        id: instance.id.clone(),
        name: instance.name.clone(),
        state: instance.state,
        address: address.map(|a| a.to_string()),
        note,
    }
}

fn state_text(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Pending => "pending",
        InstanceState::Running => "running",
        InstanceState::Stopping => "stopping",
        InstanceState::Stopped => "stopped",
        InstanceState::Terminated => "terminated",
    }
}

fn selector_text(select: &Selector) -> String {
    let mut parts: Vec<String> = select
        .tags
        .iter()
        .map(|(k, v)| format!("tag {k}={v}"))
        .collect();
    if let Some(source) = &select.source {
        parts.push(format!("source {source}"));
    }
    if parts.is_empty() {
        "every instance".into()
    } else {
        parts.join(", ")
    }
}

fn record_rule_text(index: usize, rule: &RecordRule) -> String {
    format!(
        "[[record]] #{}: dns {}, name {}, select {}, address {}, ttl {}{}",
        index + 1,
        rule.dns,
        rule.name,
        selector_text(&rule.select),
        rule.address.as_str(),
        rule.ttl,
        if rule.adopt { "" } else { ", adopt = false" }
    )
}

fn backend_rule_text(kind: &str, lb: &str, rule: &BackendRule) -> String {
    format!(
        "backend {} of {lb} ([[{kind}]]): select {}, address {}, port {}, server {}",
        rule.name,
        selector_text(&rule.select),
        rule.address.as_str(),
        rule.port,
        rule.server
    )
}

fn verdict(report: &PassReport, target: &str, object: &str) -> String {
    let plan = &report.plan;
    if let Some(c) = plan
        .changes
        .iter()
        .find(|c| c.target == target && c.object == object)
    {
        return format!(
            "{} planned: {} -> {}",
            c.op.as_str(),
            c.from.as_deref().unwrap_or("(absent)"),
            c.to.as_deref().unwrap_or("(absent)")
        );
    }
    if let Some(r) = plan
        .refusals
        .iter()
        .find(|r| r.target == target && r.object == object)
    {
        return format!("withheld by guard {}: {}", r.guard, r.reason);
    }
    if let Some(p) = plan
        .unrepairable
        .iter()
        .find(|p| p.target.as_deref() == Some(target) && p.object == object)
    {
        return format!("cannot be repaired: {}", p.message);
    }
    if let Some(e) = report.errors.iter().find(|e| e.target == target) {
        return format!("unknown: {target} could not be read: {}", e.message);
    }
    "in sync".into()
}

fn problems(
    report: &PassReport,
    target: &str,
    object: &str,
    feeding: &[(&str, &Instance)],
) -> Vec<String> {
    report
        .problems
        .iter()
        .filter(|p| {
            p.target.as_deref().is_none_or(|t| t == target)
                && (p.object == object
                    || feeding
                        .iter()
                        .any(|(_, i)| p.object.contains(&validate::printable(&i.id))))
        })
        .map(|p| format!("{}: {}", p.object, p.message))
        .collect()
}

fn forecast(report: &PassReport, entry: &str) -> Vec<String> {
    report
        .forecast
        .iter()
        .filter(|f| f.records.iter().chain(&f.servers).any(|e| e == entry))
        .map(|f| {
            let when = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(f.not_before),
            );
            format!(
                "{} of {} ({}) not before {when}: {}",
                f.code, f.name, f.instance, f.description
            )
        })
        .collect()
}

/// The text `explain` prints.
pub fn text(explanation: &Explanation) -> String {
    let mut out = String::new();
    if explanation.managed_by.is_empty() {
        let _ = writeln!(
            out,
            "{}: not managed by ipdrift: no [[record]] rule or backend produces it",
            explanation.subject
        );
        return out;
    }
    for m in &explanation.managed_by {
        let _ = writeln!(out, "{}: {}", m.target, m.object);
        let _ = writeln!(out, "  rule:         {}", m.rule);
        let _ = writeln!(out, "  should hold:  {}", m.should_hold);
        let _ = writeln!(out, "  this pass:    {}", m.verdict);
        if m.instances.is_empty() {
            let _ = writeln!(out, "  instances:    none selected");
        }
        for i in &m.instances {
            let _ = writeln!(
                out,
                "  instance:     {} ({}, source {}) {} {}: {}",
                validate::printable(&i.name),
                validate::printable(&i.id),
                i.source,
                state_text(i.state),
                i.address.as_deref().unwrap_or("-"),
                i.note
            );
        }
        for p in &m.problems {
            let _ = writeln!(out, "  warning:      {p}");
        }
        for f in &m.forecast {
            let _ = writeln!(out, "  forecast:     {f}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::desired;
    use crate::plan::tests::{config, converged, fleet, instance, listed};
    use crate::plan::{PlanOptions, plan};

    fn explained(
        instances: Vec<crate::model::Instance>,
        observed_gen: u8,
        subject: &str,
    ) -> Explanation {
        let config = config();
        let sources = listed(instances);
        let want = desired(&config, &sources);
        let report = PassReport {
            plan: plan(
                &want,
                &converged(fleet(observed_gen)),
                &PlanOptions::default(),
            ),
            ..PassReport::default()
        };
        explain(&config, &sources, &want, &report, subject)
    }

    #[test]
    fn a_fixed_name_shows_its_rule_its_instances_and_the_planned_update() {
        let e = explained(fleet(2), 1, "www.example.com");
        let [m] = e.managed_by.as_slice() else {
            panic!("one rule manages www: {e:#?}");
        };
        assert_eq!(m.target, "ns1");
        assert_eq!(m.object, "www.example.com. A");
        assert!(
            m.rule
                .starts_with("[[record]] #1: dns ns1, name www.example.com."),
            "{}",
            m.rule
        );
        assert!(m.rule.contains("tag role=lb"), "{}", m.rule);
        assert!(
            m.should_hold.starts_with("192.0.2.2 ttl="),
            "{}",
            m.should_hold
        );
        assert_eq!(
            m.verdict,
            "update planned: 192.0.2.1 ttl=60 -> 192.0.2.2 ttl=60"
        );
        assert_eq!(m.instances.len(), 1);
        assert_eq!(m.instances[0].name, "lb");
        assert!(m.instances[0].note.starts_with("counts"));
        let text = text(&e);
        assert!(text.contains("this pass:    update planned"), "{text}");
    }

    #[test]
    fn a_per_instance_name_is_found_through_its_template_and_is_in_sync() {
        let e = explained(fleet(1), 1, "WEB-01.example.com. A");
        let [m] = e.managed_by.as_slice() else {
            panic!("{e:#?}");
        };
        assert_eq!(m.object, "web-01.example.com. A");
        assert_eq!(m.verdict, "in sync");
        assert_eq!(m.instances[0].id, "i-web-01");
        assert!(
            explained(fleet(1), 1, "web-01.example.com AAAA")
                .managed_by
                .is_empty()
        );
    }

    #[test]
    fn a_server_of_a_stopped_instance_should_be_in_maintenance_and_names_the_guard_withholding_it()
    {
        let mut instances = fleet(1);
        instances[1] = instance(
            "web-01",
            "web",
            InstanceState::Stopped,
            [198, 51, 100, 1],
            [10, 0, 1, 11],
        );
        let e = explained(instances, 1, "web/web-01");
        let [m] = e.managed_by.as_slice() else {
            panic!("{e:#?}");
        };
        assert_eq!(m.target, "lb-01");
        assert!(
            m.rule.contains("backend web of lb-01 ([[haproxy]])"),
            "{}",
            m.rule
        );
        assert!(
            m.should_hold.starts_with("in maintenance"),
            "{}",
            m.should_hold
        );
        // One of two servers is above the default max_remove_fraction.
        assert!(
            m.verdict
                .starts_with("withheld by guard max-remove-fraction"),
            "{}",
            m.verdict
        );
        assert_eq!(m.instances[0].note, "does not count: stopped");
    }

    #[test]
    fn the_last_server_in_service_is_withheld_by_never_empty_and_says_so() {
        let stopped = || {
            fleet(1).into_iter().map(|mut i| {
                if i.name.starts_with("web") {
                    i.state = InstanceState::Stopped;
                }
                i
            })
        };
        let verdicts: Vec<String> = ["web/web-01", "web/web-02"]
            .iter()
            .flat_map(|s| explained(stopped().collect(), 1, s).managed_by)
            .map(|m| m.verdict)
            .collect();
        assert!(
            verdicts
                .iter()
                .any(|v| v.starts_with("withheld by guard never-empty")),
            "one of the two is the last in service: {verdicts:?}"
        );
    }

    #[test]
    fn what_no_rule_produces_is_not_managed() {
        for subject in [
            "static.example.com",
            "other/web-01",
            "web/web-09",
            "not a name!",
        ] {
            let e = explained(fleet(1), 1, subject);
            assert!(e.managed_by.is_empty(), "{subject}: {e:#?}");
            assert!(text(&e).contains("not managed by ipdrift"));
        }
    }
}
