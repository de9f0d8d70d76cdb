//! Desired × observed → the ordered list of changes, plus what the guards withheld and what
//! cannot be repaired. Pure and deterministic: `diff`, `apply` and `run` all call [`plan`],
//! so they can never disagree.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::{Desired, Problem};
use crate::dns::RecordChange;
use crate::haproxy::ServerChange;
use crate::model::{
    ObservedServer, RecordKey, RecordSet, ServerAdmin, ServerIntent, ServerKey, socket_text,
};

/// What a change does, as shown in `diff` and counted in `ipdrift_changes_total{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A record set that does not exist yet.
    Create,
    /// New addresses or TTL for a record set, new address or port for a server.
    Update,
    /// Put a server back into service (`state ready`).
    Enable,
    /// Take a server out of service (`state maint`).
    Disable,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Create, Op::Update, Op::Enable, Op::Disable];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Enable => "enable",
            Op::Disable => "disable",
        }
    }
}

/// The write that carries out a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dns(RecordChange),
    Haproxy(ServerChange),
}

/// One planned change, in the shape `diff --output json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub target: String,
    pub op: Op,
    pub object: String,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(skip)]
    pub action: Action,
}

/// A change a guard withheld.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Refusal {
    /// The guard's name, e.g. `never-empty`.
    pub guard: &'static str,
    pub target: String,
    pub object: String,
    pub reason: String,
}

pub const GUARD_NEVER_EMPTY: &str = "never-empty";

/// Everything one pass would do and could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
    /// Drift that ipdrift cannot repair (yet), e.g. a server missing from its backend.
    pub unrepairable: Vec<Problem>,
}

impl Plan {
    /// Objects out of sync on `target`: planned, withheld or unrepairable.
    pub fn drift_objects(&self, target: &str) -> usize {
        self.changes.iter().filter(|c| c.target == target).count()
            + self.refusals.iter().filter(|r| r.target == target).count()
            + self
                .unrepairable
                .iter()
                .filter(|p| p.target.as_deref() == Some(target))
                .count()
    }

    pub fn has_drift(&self) -> bool {
        !(self.changes.is_empty() && self.refusals.is_empty() && self.unrepairable.is_empty())
    }
}

/// What was read from the targets this pass. Targets whose read failed are absent and get
/// no plan at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub records: BTreeMap<String, Vec<RecordSet>>,
    pub servers: BTreeMap<String, Vec<ObservedServer>>,
}

fn addrs_text(set: &RecordSet) -> String {
    let addrs: Vec<String> = set.addrs.iter().map(|a| a.to_string()).collect();
    addrs.join(",")
}

fn record_text(set: &RecordSet) -> String {
    format!("{} ttl={}", addrs_text(set), set.ttl)
}

/// Plans every target that was observed.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut out = Plan::default();
    for (target, current) in &observed.records {
        plan_zone(target, desired, current, &mut out);
    }
    for (target, current) in &observed.servers {
        plan_servers(target, desired, current, &mut out);
    }
    out.changes
        .sort_by(|a, b| (&a.target, &a.object, a.op).cmp(&(&b.target, &b.object, b.op)));
    out.refusals.sort();
    out.unrepairable.sort();
    out
}

fn plan_zone(target: &str, desired: &Desired, current: &[RecordSet], out: &mut Plan) {
    let current: BTreeMap<&RecordKey, &RecordSet> = current.iter().map(|s| (&s.key, s)).collect();
    for (key, want) in desired.records.get(target).into_iter().flatten() {
        let have = current.get(key).copied();
        if have == Some(want) {
            continue;
        }
        // Only the TTL differs and the addresses agree: still an update, shown as such.
        out.changes.push(Change {
            target: target.to_string(),
            op: if have.is_some() {
                Op::Update
            } else {
                Op::Create
            },
            object: key.to_string(),
            from: have.map(record_text),
            to: Some(record_text(want)),
            action: Action::Dns(RecordChange {
                from: have.cloned(),
                to: want.clone(),
            }),
        });
    }
    for key in desired.empty_records.get(target).into_iter().flatten() {
        if let Some(have) = current.get(key) {
            out.refusals.push(Refusal {
                guard: GUARD_NEVER_EMPTY,
                target: target.to_string(),
                object: key.to_string(),
                reason: format!(
                    "no running instance selected by the rule has an address for it; keeping {}",
                    addrs_text(have)
                ),
            });
        }
    }
}

fn plan_servers(target: &str, desired: &Desired, current: &[ObservedServer], out: &mut Plan) {
    let current_by_key: BTreeMap<&ServerKey, &ObservedServer> =
        current.iter().map(|s| (&s.key, s)).collect();
    let mut disables: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    let mut enabled_after: BTreeMap<&str, BTreeSet<&ServerKey>> = BTreeMap::new();
    for server in current {
        if server.admin != ServerAdmin::Maint {
            enabled_after
                .entry(&server.key.backend)
                .or_default()
                .insert(&server.key);
        }
    }
    for (key, want) in desired.servers.get(target).into_iter().flatten() {
        let Some(have) = current_by_key.get(key) else {
            if matches!(want.intent, ServerIntent::Serve { .. }) {
                out.unrepairable.push(Problem {
                    target: Some(target.to_string()),
                    object: key.to_string(),
                    message: format!(
                        "server {} is not in backend {}; add a `server {} …` line (or a server-template) to haproxy.cfg",
                        key.server, key.backend, key.server
                    ),
                });
            }
            continue;
        };
        match want.intent {
            ServerIntent::Serve { addr, port } => {
                if have.addr != Some(addr) || have.port != port {
                    out.changes.push(Change {
                        target: target.to_string(),
                        op: Op::Update,
                        object: key.to_string(),
                        from: Some(match have.addr {
                            Some(a) => socket_text(a, have.port),
                            None => format!("(no address):{}", have.port),
                        }),
                        to: Some(socket_text(addr, port)),
                        action: Action::Haproxy(ServerChange::SetAddr {
                            key: key.clone(),
                            addr,
                            port,
                        }),
                    });
                }
                if have.admin == ServerAdmin::Maint {
                    enabled_after.entry(&key.backend).or_default().insert(key);
                    out.changes.push(Change {
                        target: target.to_string(),
                        op: Op::Enable,
                        object: key.to_string(),
                        from: Some(ServerAdmin::Maint.to_string()),
                        to: Some(ServerAdmin::Ready.to_string()),
                        action: Action::Haproxy(ServerChange::SetAdmin {
                            key: key.clone(),
                            admin: ServerAdmin::Ready,
                        }),
                    });
                }
            }
            ServerIntent::Maint => {
                if have.admin != ServerAdmin::Maint {
                    disables.entry(&key.backend).or_default().push(Change {
                        target: target.to_string(),
                        op: Op::Disable,
                        object: key.to_string(),
                        from: Some(have.admin.to_string()),
                        to: Some(ServerAdmin::Maint.to_string()),
                        action: Action::Haproxy(ServerChange::SetAdmin {
                            key: key.clone(),
                            admin: ServerAdmin::Maint,
                        }),
                    });
                }
            }
        }
    }
    for (backend, changes) in disables {
        let enabled = enabled_after.get(backend).map_or(0, |s| s.len());
        if changes.len() >= enabled {
            for change in changes {
                out.refusals.push(Refusal {
                    guard: GUARD_NEVER_EMPTY,
                    target: change.target,
                    object: change.object,
                    reason: format!(
                        "taking it out of service would leave backend {backend} with no server in service"
                    ),
                });
            }
        } else {
            out.changes.extend(changes);
        }
    }
}

/// A source or target that could not be read or written this pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TargetError {
    /// Inventory source or target name.
    pub target: String,
    pub message: String,
}

/// Everything one pass saw, planned and did; `diff` and `apply` print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub plan: Plan,
    /// Instances or rules left out of the desired state (invalid names, failed sources…).
    pub problems: Vec<Problem>,
    pub errors: Vec<TargetError>,
    /// Targets written this pass: `Ok` when the batch was written and read back.
    pub written: BTreeMap<String, Result<(), String>>,
}

impl PassReport {
    /// True when something was refused by a guard (`apply` exits 3).
    pub fn refused(&self) -> bool {
        !self.plan.refusals.is_empty()
    }

    /// Objects on `target` still out of sync after this pass: what the plan found, less the
    /// changes that were written and read back.
    pub fn remaining_drift(&self, target: &str) -> usize {
        let repaired = match self.written.get(target) {
            Some(Ok(())) => self
                .plan
                .changes
                .iter()
                .filter(|c| c.target == target)
                .count(),
            _ => 0,
        };
        self.plan.drift_objects(target) - repaired
    }

    /// True when some source or target failed, or a write did not succeed.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.written.values().any(|r| r.is_err())
    }
}

#[cfg(test)]
mod tests;
