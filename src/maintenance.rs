//! Acting before announced maintenance. Pure. From `controller.maintenance_lead` before an
//! event that will change an instance's addresses, the record sets pointing at it get
//! `controller.maintenance_ttl` (so that caching resolvers hold the old address for seconds,
//! not for the configured TTL), and with `controller.maintenance_drain` its load-balancer
//! servers are drained. Afterwards, once the new addresses are written and read back, the
//! configured TTL and service come back.
//!
//! Nothing is remembered between passes: what a target holds says it all. A record set
//! served with `maintenance_ttl` (below its configured TTL) and the wrong addresses is still
//! in its maintenance: it keeps the low TTL while its new addresses are written, and gets its
//! own TTL back in the pass that finds them in place; a drained server likewise. A restart of
//! ipdrift in the middle of a maintenance therefore carries on where it was, and an event
//! that is cancelled or moved beyond the lead restores at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, MIN_DEFAULT_MAINTENANCE_LEAD};
use crate::desired::Desired;
use crate::forecast::Forecast;
use crate::model::{RecordKey, RecordSet, ServerAdmin, ServerIntent, ServerKey};
use crate::plan::{Observed, Plan};

/// `controller.maintenance_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenancePolicy {
    /// The TTL of affected record sets while their maintenance lasts.
    pub ttl: u32,
    /// How long before an event's `not_before` the preparations start.
    pub lead: Duration,
    /// Whether affected load-balancer servers are drained.
    pub drain: bool,
}

impl MaintenancePolicy {
    /// The config's policy. Without `maintenance_lead`, the lead is twice the longest TTL of
    /// the config's record rules, and at least [`MIN_DEFAULT_MAINTENANCE_LEAD`]: resolvers
    /// must have dropped the old TTL's answers before the event.
    pub fn of(config: &Config) -> MaintenancePolicy {
        let controller = &config.controller;
        let longest_ttl = config.records.iter().map(|r| r.ttl).max().unwrap_or(0);
        let lead = controller.maintenance_lead.unwrap_or_else(|| {
            MIN_DEFAULT_MAINTENANCE_LEAD.max(Duration::from_secs(2 * u64::from(longest_ttl)))
        });
        MaintenancePolicy {
            ttl: controller.maintenance_ttl,
            lead,
            drain: controller.maintenance_drain,
        }
    }
}

/// What maintenance does to one record set or server this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Its TTL is `maintenance_ttl` while an event is due.
    TtlLowered,
    /// Still `maintenance_ttl` after the event: its new addresses are not in place yet.
    TtlHeld,
    /// Back to its configured TTL: the event is over and the new addresses read back.
    TtlRestored,
    /// Drained while an event is due.
    Drained,
    /// Still draining after the event: its new address is not in place yet.
    DrainHeld,
    /// Not drained: every server of its backend is affected, and one must take traffic
    /// (guard `never-empty`).
    DrainWithheld,
    /// Back in service: the event is over and its new address read back.
    ServiceRestored,
}

impl StepKind {
    pub const ALL: [StepKind; 7] = [
        StepKind::TtlLowered,
        StepKind::TtlHeld,
        StepKind::TtlRestored,
        StepKind::Drained,
        StepKind::DrainHeld,
        StepKind::DrainWithheld,
        StepKind::ServiceRestored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::TtlLowered => "ttl-lowered",
            StepKind::TtlHeld => "ttl-held",
            StepKind::TtlRestored => "ttl-restored",
            StepKind::Drained => "drained",
            StepKind::DrainHeld => "drain-held",
            StepKind::DrainWithheld => "drain-withheld",
            StepKind::ServiceRestored => "service-restored",
        }
    }

    /// Whether the object is in its maintenance (low TTL, or draining) after this pass.
    pub fn in_maintenance(self) -> bool {
        matches!(
            self,
            StepKind::TtlLowered | StepKind::TtlHeld | StepKind::Drained | StepKind::DrainHeld
        )
    }
}

/// One record set or server that maintenance shapes this pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Step {
    pub target: String,
    /// `name TYPE` or `backend/server`.
    pub object: String,
    pub step: StepKind,
    /// Why: the event, or what the step waits for.
    pub reason: String,
}

/// Shapes `desired` for the maintenance due at `now` (Unix seconds) and after it: lowers
/// TTLs and marks servers to drain, given what the targets hold (`observed`). Returns the
/// steps, sorted.
pub fn prepare(
    desired: &mut Desired,
    forecasts: &[Forecast],
    observed: &Observed,
    now: u64,
    policy: &MaintenancePolicy,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let due: Vec<&Forecast> = forecasts.iter().filter(|f| f.is_due(now)).collect();
    lower_ttls(desired, &due, observed, policy, &mut steps);
    if policy.drain {
        drain_servers(desired, &due, observed, &mut steps);
    }
    steps.sort();
    steps
}

fn lower_ttls(
    desired: &mut Desired,
    due: &[&Forecast],
    observed: &Observed,
    policy: &MaintenancePolicy,
    steps: &mut Vec<Step>,
) {
    let mut due_records: BTreeMap<(&str, &RecordKey), &Forecast> = BTreeMap::new();
    for f in due {
        for (target, key) in &f.record_keys {
            due_records.entry((target, key)).or_insert(f);
        }
    }
    for (target, sets) in &mut desired.records {
        // Only sets served with the maintenance TTL can be in a maintenance that is over:
        // usually none, so a converged fleet costs one comparison per observed set.
        let low: BTreeMap<&RecordKey, &RecordSet> = observed
            .records
            .get(target)
            .into_iter()
            .flatten()
            .filter(|have| have.ttl == policy.ttl)
            .map(|have| (&have.key, have))
            .collect();
        if low.is_empty() && !due_records.keys().any(|(t, _)| t == target) {
            continue;
        }
        for (key, want) in sets.iter_mut() {
            if want.ttl <= policy.ttl {
                continue;
            }
            let step = |step: StepKind, reason: String| Step {
                target: target.clone(),
                object: key.to_string(),
                step,
                reason,
            };
            if let Some(f) = due_records.get(&(target.as_str(), key)) {
                steps.push(step(
                    StepKind::TtlLowered,
                    format!(
                        "TTL {} s instead of {} s for {}",
                        policy.ttl,
                        want.ttl,
                        f.event_text()
                    ),
                ));
                want.ttl = policy.ttl;
            } else if let Some(have) = low.get(key) {
                if have.addrs == want.addrs {
                    steps.push(step(
                        StepKind::TtlRestored,
                        format!(
                            "TTL back to {} s: no maintenance is due and its addresses are in place",
                            want.ttl
                        ),
                    ));
                } else {
                    steps.push(step(
                        StepKind::TtlHeld,
                        format!(
                            "TTL kept at {} s until its new addresses are written and read back",
                            policy.ttl
                        ),
                    ));
                    want.ttl = policy.ttl;
                }
            }
        }
    }
}

fn drain_servers(
    desired: &mut Desired,
    due: &[&Forecast],
    observed: &Observed,
    steps: &mut Vec<Step>,
) {
    let mut due_servers: BTreeMap<(&str, &ServerKey), &Forecast> = BTreeMap::new();
    for f in due {
        for (target, key) in &f.server_keys {
            due_servers.entry((target, key)).or_insert(f);
        }
    }
    for (target, servers) in &desired.servers {
        let draining: BTreeMap<&ServerKey, _> = observed
            .servers
            .get(target)
            .into_iter()
            .flatten()
            .filter(|have| have.admin == ServerAdmin::Drain)
            .map(|have| (&have.key, have))
            .collect();
        let is_due = |key: &ServerKey| due_servers.contains_key(&(target.as_str(), key));
        if draining.is_empty() && !servers.keys().any(is_due) {
            continue;
        }
        // Backend → whether a server stays in service that no event affects.
        let mut spared: BTreeMap<&str, bool> = BTreeMap::new();
        for (key, want) in servers {
            let serves = matches!(want.intent, ServerIntent::Serve { .. }) && !is_due(key);
            *spared.entry(&key.backend).or_default() |= serves;
        }
        let mut drained = BTreeSet::new();
        for (key, want) in servers {
            let ServerIntent::Serve { addr, port } = want.intent else {
                continue;
            };
            let step = |step: StepKind, reason: String| Step {
                target: target.clone(),
                object: key.to_string(),
                step,
                reason,
            };
            if let Some(f) = due_servers.get(&(target.as_str(), key)) {
                if spared[key.backend.as_str()] {
                    steps.push(step(
                        StepKind::Drained,
                        format!("no new connections, for {}", f.event_text()),
                    ));
                    drained.insert(key.clone());
                } else {
                    steps.push(step(
                        StepKind::DrainWithheld,
                        format!(
                            "guard never-empty: every server of backend {} is affected by announced maintenance, so none is drained ({})",
                            key.backend,
                            f.event_text()
                        ),
                    ));
                }
            } else if let Some(have) = draining.get(key) {
                if have.addr == Some(addr) && have.port == port {
                    steps.push(step(
                        StepKind::ServiceRestored,
                        "back in service: no maintenance is due and its address is in place".into(),
                    ));
                } else {
                    steps.push(step(
                        StepKind::DrainHeld,
                        "kept draining until its new address is written and read back".into(),
                    ));
                    drained.insert(key.clone());
                }
            }
        }
        if !drained.is_empty() {
            desired.drained.insert(target.clone(), drained);
        }
    }
}

/// Drops the steps for objects the plan cannot change (not adopted, a name the zone uses, a
/// refusal): those are reported there, and nothing of the maintenance happens to them.
pub fn drop_unplanned(steps: &mut Vec<Step>, plan: &Plan) {
    let blocked: BTreeSet<(&str, &str)> = plan
        .unrepairable
        .iter()
        .filter_map(|p| Some((p.target.as_deref()?, p.object.as_str())))
        .chain(
            plan.refusals
                .iter()
                .map(|r| (r.target.as_str(), r.object.as_str())),
        )
        .collect();
    if !blocked.is_empty() {
        steps.retain(|s| !blocked.contains(&(s.target.as_str(), s.object.as_str())));
    }
}

#[cfg(test)]
mod tests;
