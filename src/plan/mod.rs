//! Desired × observed → the ordered list of changes, plus what the guards withheld and what
//! cannot be repaired. Pure and deterministic: `diff`, `apply` and `run` all call [`plan`],
//! so they can never disagree.
//!
//! Guards (each refusal names one):
//! - `never-empty`: no record set is emptied, no backend left without a server in service;
//! - `source-unavailable`: while a source a rule depends on failed (or returned nothing
//!   after having had instances), nothing that depends on it is deleted or disabled;
//! - `max-remove-fraction`: removals above `controller.max_remove_fraction` of what a
//!   target manages are refused (`apply --force` overrides this one only).
//!
//! Updates that move addresses to running instances are never removals: an event that
//! changes every address at once (the seed outage) is repaired in full.

pub mod render;
pub mod reviewed;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::config::{HealthGate, ServerRemoval};
use crate::desired::{Desired, Problem, contested_record, contested_server};
use crate::dns::{Claim, RecordChange, claim, controller_ownership_text};
use crate::lb::ServerChange;
use crate::model::{
    DnsName, ObservedServer, Obstacle, Obstacles, RecordKey, RecordSet, ServerAdmin, ServerIntent,
    ServerKey, push_addr, push_decimal, socket_text,
};

/// What a change does, as shown in `diff` and counted in `ipdrift_changes_total{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A record set that does not exist yet, or a server added to a backend.
    Create,
    /// New addresses or TTL for a record set, new address or port for a server.
    Update,
    /// Put a server back into service (`state ready`).
    Enable,
    /// Take a server out of service (`state maint`).
    Disable,
    /// Delete a record set ipdrift owns, or a server (`del server`).
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Create, Op::Update, Op::Enable, Op::Disable, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Enable => "enable",
            Op::Disable => "disable",
            Op::Delete => "delete",
        }
    }
}

/// The write that carries out a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dns(RecordChange),
    Lb(ServerChange),
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
    /// How many records or servers this change takes away (for `max-remove-fraction`).
    #[serde(skip)]
    pub removes: usize,
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
pub const GUARD_SOURCE_UNAVAILABLE: &str = "source-unavailable";
pub const GUARD_MAX_REMOVE_FRACTION: &str = "max-remove-fraction";
pub const GUARD_OWNER_CONFLICT: &str = "owner-conflict";
/// Every guard, for metrics initialisation and documentation.
pub const GUARDS: [&str; 4] = [
    GUARD_NEVER_EMPTY,
    GUARD_SOURCE_UNAVAILABLE,
    GUARD_MAX_REMOVE_FRACTION,
    GUARD_OWNER_CONFLICT,
];

/// Settings that shape a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// `controller.max_remove_fraction`.
    pub max_remove_fraction: f64,
    /// `apply --force`: lifts `max-remove-fraction` (and nothing else).
    pub force: bool,
    /// `controller.owner_id`, written into and compared with ownership records.
    pub owner_id: String,
    /// [`crate::dns::inventory_fingerprint`] of the controller's sources, written beside it.
    pub inventory: String,
}

impl PlanOptions {
    fn claim(&self, text: &str) -> Claim {
        claim(text, &self.owner_id, &self.inventory)
    }
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            max_remove_fraction: crate::config::DEFAULT_MAX_REMOVE_FRACTION,
            force: false,
            owner_id: crate::config::DEFAULT_OWNER_ID.to_string(),
            inventory: crate::dns::inventory_fingerprint([]),
        }
    }
}

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
    /// DNS target → its ownership records (managed name → TXT text), for the targets
    /// where some rule needs them (`adopt = false`, `policy = "sync"`).
    pub ownership: BTreeMap<String, BTreeMap<DnsName, String>>,
    /// DNS target → the names its zone uses itself (SOA primary, name servers of the apex
    /// and of delegations, mail exchangers, SRV targets): never taken over by a rule.
    pub zone_own: BTreeMap<String, BTreeSet<DnsName>>,
    /// DNS target → the CNAMEs and delegations its read came across: names there cannot
    /// hold address records, and are reported instead of written.
    pub obstacles: BTreeMap<String, Obstacles>,
    pub servers: BTreeMap<String, Vec<ObservedServer>>,
    /// Instance endpoints that accepted a TCP connection from ipdrift this pass: servers
    /// behind a `health = "probe"` backend are put into service only once theirs did.
    pub reachable: BTreeSet<SocketAddr>,
}

fn addrs_text(set: &RecordSet) -> String {
    let mut text = String::new();
    write_addrs(&mut text, set);
    text
}

fn write_addrs(text: &mut String, set: &RecordSet) {
    for (i, addr) in set.addrs.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        push_addr(text, *addr);
    }
}

/// `addr,addr ttl=N`: two per changed record set, so made in one allocation.
fn record_text(set: &RecordSet) -> String {
    let mut text = String::with_capacity(16 * set.addrs.len() + 16);
    write_addrs(&mut text, set);
    text.push_str(" ttl=");
    push_decimal(&mut text, set.ttl);
    text
}

/// What a target reported, indexed by key for the planner's lookups: positions sorted by
/// key. The desired state is walked in key order, so [`SortedByKey::seek`] finds each key
/// by stepping forward (one comparison per key, where hashing long names cost several
/// hundred instructions); other lookups search. Sorting is nearly free when the target
/// listed them in order.
struct SortedByKey<'a, T, K: Ord> {
    items: &'a [T],
    order: Vec<usize>,
    key: fn(&T) -> &K,
    /// Where [`SortedByKey::seek`] goes on from: `order[..cursor]` are below the last key sought.
    cursor: usize,
}

impl<'a, T, K: Ord> SortedByKey<'a, T, K> {
    fn new(items: &'a [T], key: fn(&T) -> &K) -> Self {
        let mut order: Vec<usize> = (0..items.len()).collect();
        // Stable: among equal keys the first listed comes first.
        order.sort_by(|&a, &b| key(&items[a]).cmp(key(&items[b])));
        SortedByKey {
            items,
            order,
            key,
            cursor: 0,
        }
    }

    /// As [`SortedByKey::position`], for keys sought in ascending order (else it searches).
    fn seek(&mut self, wanted: &K) -> Option<usize> {
        if let Some(&last) = self.cursor.checked_sub(1).and_then(|c| self.order.get(c))
            && (self.key)(&self.items[last]) >= wanted
        {
            return self.position(wanted);
        }
        while let Some(&i) = self.order.get(self.cursor) {
            match (self.key)(&self.items[i]).cmp(wanted) {
                std::cmp::Ordering::Less => self.cursor += 1,
                std::cmp::Ordering::Equal => return Some(i),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// The position in `items` of the item with this key (the first, if several have it).
    fn position(&self, wanted: &K) -> Option<usize> {
        let first = self
            .order
            .partition_point(|&i| (self.key)(&self.items[i]) < wanted);
        self.order
            .get(first)
            .copied()
            .filter(|&i| (self.key)(&self.items[i]) == wanted)
    }

    fn get(&self, wanted: &K) -> Option<&'a T> {
        self.position(wanted).map(|i| &self.items[i])
    }
}

/// Plans every target that was observed.
pub fn plan(desired: &Desired, observed: &Observed, options: &PlanOptions) -> Plan {
    let mut out = Plan::default();
    for (target, current) in &observed.records {
        let zone = Zone {
            ownership: observed.ownership.get(target),
            own: observed.zone_own.get(target),
            obstacles: observed.obstacles.get(target),
        };
        let mut target_plan = plan_zone(target, desired, current, &zone, options);
        let managed = current.iter().map(|s| s.addrs.len()).sum();
        limit_removals(&mut target_plan, managed, options);
        merge(&mut out, target_plan);
    }
    for (target, current) in &observed.servers {
        let mut target_plan = plan_servers(target, desired, current, &observed.reachable);
        limit_removals(&mut target_plan, current.len(), options);
        merge(&mut out, target_plan);
    }
    // Known from the instances alone, so reported whether or not the target was read.
    out.unrepairable.extend(desired.conflicts.iter().cloned());
    out.changes
        .sort_by(|a, b| (&a.target, &a.object, a.op).cmp(&(&b.target, &b.object, b.op)));
    out.refusals.sort();
    out.unrepairable.sort();
    out
}

fn merge(out: &mut Plan, part: Plan) {
    // Moved, not copied, into an empty plan: the first target's changes are most of them.
    fn append<T>(to: &mut Vec<T>, from: Vec<T>) {
        if to.is_empty() {
            *to = from;
        } else {
            to.extend(from);
        }
    }
    append(&mut out.changes, part.changes);
    append(&mut out.refusals, part.refusals);
    append(&mut out.unrepairable, part.unrepairable);
}

/// Guard `max-remove-fraction`: when a target's changes would take away more than the
/// allowed fraction of what it manages, every removing change is withheld.
fn limit_removals(target_plan: &mut Plan, managed: usize, options: &PlanOptions) {
    let removed: usize = target_plan.changes.iter().map(|c| c.removes).sum();
    if removed == 0
        || options.force
        || removed as f64 <= options.max_remove_fraction * managed as f64
    {
        return;
    }
    let (withheld, kept): (Vec<Change>, Vec<Change>) =
        target_plan.changes.drain(..).partition(|c| c.removes > 0);
    target_plan.changes = kept;
    for change in withheld {
        target_plan.refusals.push(Refusal {
            guard: GUARD_MAX_REMOVE_FRACTION,
            reason: format!(
                "this pass would remove {removed} of the {managed} records/servers the target manages, above controller.max_remove_fraction = {}; check the inventory, or run `ipdrift apply --force` if it is intended",
                options.max_remove_fraction
            ),
            target: change.target,
            object: change.object,
        });
    }
}

/// What a read of one zone showed besides its RRsets.
struct Zone<'a> {
    ownership: Option<&'a BTreeMap<DnsName, String>>,
    /// The names the zone uses itself.
    own: Option<&'a BTreeSet<DnsName>>,
    obstacles: Option<&'a Obstacles>,
}

/// Why an address record set at a name cannot be written, in words for `diff`.
fn obstacle_text(name: &DnsName, obstacle: &Obstacle) -> String {
    match obstacle {
        Obstacle::Cname(target) => format!(
            "{name} holds a CNAME (to {target}), and a name with a CNAME can hold no other data (RFC 1034 §3.6.2); the server would refuse or ignore the write: remove the CNAME, or rename the instance or the rule"
        ),
        Obstacle::Delegation(cut) if cut == name => format!(
            "{name} is delegated (it has NS records in the zone), so its addresses are the delegated zone's, not this zone's (RFC 1034 §4.2.1): manage it in the zone {cut} on its own servers, or remove the delegation"
        ),
        Obstacle::Delegation(cut) => format!(
            "{name} lies below the delegation {cut} (NS records in the zone), so its addresses are the delegated zone's, not this zone's (RFC 1034 §4.2.1): manage it in the zone {cut} on its own servers, or remove the delegation"
        ),
    }
}

fn plan_zone(
    target: &str,
    desired: &Desired,
    current: &[RecordSet],
    zone: &Zone<'_>,
    options: &PlanOptions,
) -> Plan {
    let ownership = zone.ownership;
    let mut out = Plan::default();
    let ours = controller_ownership_text(&options.owner_id, &options.inventory);
    let owned_by_us = |name: &DnsName| {
        ownership
            .and_then(|o| o.get(name))
            .is_some_and(|text| options.claim(text) == Claim::Ours)
    };
    let mut current = SortedByKey::new(current, |set| &set.key);
    let wanted = desired.records.get(target);
    let not_adopted = desired.not_adopted.get(target);
    let wanted_count = wanted.map_or(0, BTreeMap::len);
    for (index, (key, want)) in wanted.into_iter().flatten().enumerate() {
        let have = current.seek(key).map(|i| &current.items[i]);
        if have == Some(want) {
            continue;
        }
        if out.changes.is_empty() {
            // At most one change per wanted set; in sync, nothing is reserved at all.
            out.changes.reserve(wanted_count - index);
        }
        if let Some(obstacle) = zone.obstacles.and_then(|o| o.at(&key.name)) {
            out.unrepairable.push(Problem {
                target: Some(target.to_string()),
                object: key.to_string(),
                message: obstacle_text(&key.name, &obstacle),
            });
            continue;
        }
        if zone.own.is_some_and(|names| names.contains(&key.name)) && !owned_by_us(&key.name) {
            out.unrepairable.push(Problem {
                target: Some(target.to_string()),
                object: key.to_string(),
                message: format!(
                    "{} is a name the zone uses itself (its SOA primary, a name server, a mail exchanger or an SRV target); no rule takes it over, whatever an instance is named: rename the instance or the rule",
                    key.name
                ),
            });
            continue;
        }
        let Some(have) = have else {
            out.changes.push(Change {
                target: target.to_string(),
                op: Op::Create,
                object: key.text(),
                from: None,
                to: Some(record_text(want)),
                action: Action::Dns(RecordChange::Create {
                    to: want.clone(),
                    owner: ours.clone(),
                    proxied: desired
                        .proxied
                        .get(target)
                        .and_then(|sets| sets.get(key))
                        .copied(),
                }),
                removes: 0,
            });
            continue;
        };
        if not_adopted.is_some_and(|keys| keys.contains(key)) && !owned_by_us(&key.name) {
            out.unrepairable.push(Problem {
                target: Some(target.to_string()),
                object: key.to_string(),
                message: format!(
                    "differs ({} instead of {}) but was not created by ipdrift and its rule says adopt = false; left alone",
                    record_text(have),
                    record_text(want)
                ),
            });
            continue;
        }
        // Only a set that shrinks removes records; new addresses in place of old are updates.
        out.changes.push(Change {
            target: target.to_string(),
            op: Op::Update,
            object: key.text(),
            from: Some(record_text(have)),
            to: Some(record_text(want)),
            action: Action::Dns(RecordChange::Replace {
                from: Some(have.clone()),
                to: want.clone(),
            }),
            removes: have.addrs.len().saturating_sub(want.addrs.len()),
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
    for key in orphans(target, desired, ownership, options) {
        let Some(have) = current.get(&key) else {
            continue;
        };
        let text = ownership
            .and_then(|o| o.get(&key.name))
            .map_or("", String::as_str);
        if let Claim::SameOwnerOtherInventory { inventory } = options.claim(text) {
            out.refusals.push(Refusal {
                guard: GUARD_OWNER_CONFLICT,
                target: target.to_string(),
                object: key.to_string(),
                reason: format!(
                    "no instance of this controller produces it, but it was created by another controller with the same owner_id {:?} and other inventory sources (fingerprint {inventory}, this one's {}); two controllers must not share an owner_id — give each its own",
                    options.owner_id, options.inventory
                ),
            });
            continue;
        }
        let rule = desired.sync_rules[target]
            .iter()
            .find(|r| r.rtype == key.rtype && r.template.matches(key.name.as_str()))
            .expect("orphans() only returns keys a sync rule matches");
        if !rule.failed_sources.is_empty() {
            out.refusals.push(Refusal {
                guard: GUARD_SOURCE_UNAVAILABLE,
                target: target.to_string(),
                object: key.to_string(),
                reason: format!(
                    "would be deleted (no instance produces it), but inventory source {} failed; nothing is deleted on missing data",
                    rule.failed_sources.join(", ")
                ),
            });
            continue;
        }
        out.changes.push(Change {
            target: target.to_string(),
            op: Op::Delete,
            object: key.to_string(),
            from: Some(record_text(have)),
            to: None,
            action: Action::Dns(RecordChange::Delete {
                from: (*have).clone(),
            }),
            removes: have.addrs.len(),
        });
    }
    out
}

/// Record sets owned by this controller (or by another with its `owner_id`: those are
/// refused, guard `owner-conflict`) that a `policy = "sync"` rule of `target` matches but
/// no instance produces any more: the candidates for deletion. The reconciler reads
/// them too, so that their current contents are known.
pub fn orphans(
    target: &str,
    desired: &Desired,
    ownership: Option<&BTreeMap<DnsName, String>>,
    options: &PlanOptions,
) -> Vec<RecordKey> {
    let (Some(rules), Some(ownership)) = (desired.sync_rules.get(target), ownership) else {
        return Vec::new();
    };
    let wanted = desired.records.get(target);
    let mut keys = BTreeSet::new();
    for (name, owner) in ownership {
        if options.claim(owner) == Claim::Foreign {
            continue;
        }
        for rule in rules.iter().filter(|r| r.template.matches(name.as_str())) {
            let key = RecordKey {
                name: name.clone(),
                rtype: rule.rtype,
            };
            let produced = wanted.is_some_and(|w| w.contains_key(&key));
            if !produced && !desired.contested.contains(&contested_record(target, &key)) {
                keys.insert(key);
            }
        }
    }
    keys.into_iter().collect()
}

/// Servers whose instance is gone from a (healthy) listing: matched by the backend's
/// template, not desired (`wanted[i]` is false for `current[i]`), not contested.
fn vanished<'a>(
    target: &str,
    desired: &Desired,
    current: &'a [ObservedServer],
    wanted: &[bool],
) -> Vec<&'a ObservedServer> {
    current
        .iter()
        .zip(wanted)
        .filter(|(s, wanted)| {
            !**wanted
                && desired
                    .backend_policy(target, &s.key.backend)
                    .is_some_and(|p| p.template.matches(&s.key.server))
                && !desired
                    .contested
                    .contains(&contested_server(target, &s.key))
        })
        .map(|(s, _)| s)
        .collect()
}

fn plan_servers(
    target: &str,
    desired: &Desired,
    current: &[ObservedServer],
    reachable: &BTreeSet<SocketAddr>,
) -> Plan {
    let mut out = Plan::default();
    let mut current_by_key = SortedByKey::new(current, |server| &server.key);
    // Which observed servers some desired server claims; the others may have vanished.
    let mut wanted = vec![false; current.len()];
    let mut removals: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    // Backend → servers in service (not in maintenance), counting those this plan enables.
    let mut in_service: BTreeMap<&str, usize> = BTreeMap::new();
    for server in current {
        if server.admin != ServerAdmin::Maint {
            *in_service.entry(&server.key.backend).or_default() += 1;
        }
    }
    let change = |op: Op,
                  key: &ServerKey,
                  from: Option<String>,
                  to: Option<String>,
                  action: ServerChange| Change {
        target: target.to_string(),
        op,
        object: key.text(),
        from,
        to,
        action: Action::Lb(action),
        removes: usize::from(matches!(op, Op::Disable | Op::Delete)),
    };
    let wanted_count = desired.servers.get(target).map_or(0, BTreeMap::len);
    let drained = desired.drained.get(target);
    for (index, (key, want)) in desired
        .servers
        .get(target)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let have = current_by_key.seek(key).map(|i| {
            wanted[i] = true;
            &current[i]
        });
        // Announced maintenance is due for its instance: no new connections.
        let draining = drained.is_some_and(|keys| keys.contains(key));
        let wanted_admin = if draining {
            ServerAdmin::Drain
        } else {
            ServerAdmin::Ready
        };
        let in_place = matches!(
            (want.intent, have),
            (ServerIntent::Serve { addr, port }, Some(have))
                if have.addr == Some(addr) && have.port == port && have.durable
                    && (have.admin == wanted_admin || (draining && have.admin == ServerAdmin::Maint))
        );
        if !in_place && out.changes.is_empty() {
            // About one change per server from here on, when addresses moved; in sync,
            // nothing is reserved at all.
            out.changes.reserve(wanted_count - index);
        }
        let Some(policy) = desired.backend_policy(target, &key.backend) else {
            continue;
        };
        match (want.intent, have) {
            (ServerIntent::Serve { addr, port }, None) => {
                let check = policy.health == HealthGate::Haproxy;
                out.changes.push(change(
                    Op::Create,
                    key,
                    None,
                    Some(socket_text(addr, port)),
                    ServerChange::Add {
                        key: key.clone(),
                        addr,
                        port,
                        check,
                    },
                ));
                if draining {
                    // Added in maintenance, it stays there until its maintenance is over.
                } else if !check && !reachable.contains(&SocketAddr::new(addr, port)) {
                    out.unrepairable
                        .push(awaiting_probe(target, key, addr, port));
                } else {
                    *in_service.entry(&key.backend).or_default() += 1;
                    out.changes.push(set_admin(
                        &change,
                        Op::Enable,
                        key,
                        ServerAdmin::Maint,
                        ServerAdmin::Ready,
                    ));
                }
            }
            (ServerIntent::Serve { addr, port }, Some(have)) => {
                if have.addr != Some(addr) || have.port != port || !have.durable {
                    let mut from = match have.addr {
                        Some(a) => socket_text(a, have.port),
                        None => format!("(no address):{}", have.port),
                    };
                    if !have.durable {
                        // Served now, but a restart would bring back what the file says.
                        from.push_str(" (not in the load balancer's config file)");
                    }
                    out.changes.push(change(
                        Op::Update,
                        key,
                        Some(from),
                        Some(socket_text(addr, port)),
                        ServerChange::SetAddr {
                            key: key.clone(),
                            addr,
                            port,
                        },
                    ));
                }
                let may_enable = policy.health == HealthGate::Haproxy
                    || reachable.contains(&SocketAddr::new(addr, port));
                if draining {
                    // Only a server in service is drained; one out of it stays out.
                    if have.admin == ServerAdmin::Ready {
                        let mut drain =
                            set_admin(&change, Op::Disable, key, have.admin, ServerAdmin::Drain);
                        // Announced by the provider, not a guess from missing data: the
                        // removal guards do not apply (maintenance keeps one server per
                        // backend in service itself).
                        drain.removes = 0;
                        out.changes.push(drain);
                    }
                } else if have.admin == ServerAdmin::Maint && !may_enable {
                    out.unrepairable
                        .push(awaiting_probe(target, key, addr, port));
                } else if have.admin != ServerAdmin::Ready {
                    // In maintenance, or draining while its instance runs: both are drift.
                    // A draining server is already counted as in service.
                    if have.admin == ServerAdmin::Maint {
                        *in_service.entry(&key.backend).or_default() += 1;
                    }
                    out.changes.push(set_admin(
                        &change,
                        Op::Enable,
                        key,
                        have.admin,
                        ServerAdmin::Ready,
                    ));
                }
            }
            (ServerIntent::Maint, Some(have)) => {
                removals.entry(&key.backend).or_default().extend(take_out(
                    have,
                    policy.remove,
                    &change,
                ));
            }
            (ServerIntent::Maint, None) => {}
        }
    }
    for have in vanished(target, desired, current, &wanted) {
        let policy = desired
            .backend_policy(target, &have.key.backend)
            .expect("vanished() checked it");
        let taken_out = take_out(have, policy.remove, &change);
        if policy.failed_sources.is_empty() {
            removals
                .entry(&have.key.backend)
                .or_default()
                .extend(taken_out);
        } else {
            out.refusals.extend(taken_out.into_iter().map(|c| Refusal {
                guard: GUARD_SOURCE_UNAVAILABLE,
                target: c.target,
                object: c.object,
                reason: format!(
                    "no listed instance has this server, but inventory source {} failed; nothing is taken out on missing data",
                    policy.failed_sources.join(", ")
                ),
            }));
        }
    }
    for (backend, changes) in removals {
        let disabling: BTreeSet<&str> = changes
            .iter()
            .filter(|c| c.op == Op::Disable)
            .map(|c| c.object.as_str())
            .collect();
        let left = in_service
            .get(backend)
            .copied()
            .unwrap_or(0)
            .saturating_sub(disabling.len());
        if left == 0 && !disabling.is_empty() {
            for change in changes {
                out.refusals.push(Refusal {
                    guard: GUARD_NEVER_EMPTY,
                    target: change.target,
                    object: change.object,
                    reason: format!("taking it out of service would leave backend {backend} with no server in service"),
                });
            }
        } else {
            out.changes.extend(changes);
        }
    }
    // A server missing from its backend with `add server` refused earlier shows up as
    // an error of the write; nothing here is unrepairable any more.
    out
}

/// A server that should take traffic but stays in maintenance until ipdrift's probe of its
/// instance succeeds: drift, reported every pass until then.
fn awaiting_probe(target: &str, key: &ServerKey, addr: IpAddr, port: u16) -> Problem {
    Problem {
        target: Some(target.to_string()),
        object: key.to_string(),
        message: format!(
            "kept in maintenance: {} does not accept connections yet (health = \"probe\"); it is put into service once it does",
            socket_text(addr, port)
        ),
    }
}

/// The change that puts server `key` from `from` into `to` (`state ready|drain|maint`).
fn set_admin(
    change: &impl Fn(Op, &ServerKey, Option<String>, Option<String>, ServerChange) -> Change,
    op: Op,
    key: &ServerKey,
    from: ServerAdmin,
    to: ServerAdmin,
) -> Change {
    change(
        op,
        key,
        Some(from.to_string()),
        Some(to.to_string()),
        ServerChange::SetAdmin {
            key: key.clone(),
            admin: to,
        },
    )
}

/// The changes that take `have` out of service: maintenance, then `del server` when the
/// backend says `remove = "delete"`.
fn take_out(
    have: &ObservedServer,
    remove: ServerRemoval,
    change: &impl Fn(Op, &ServerKey, Option<String>, Option<String>, ServerChange) -> Change,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let key = &have.key;
    if remove == ServerRemoval::Drain {
        // Already draining or in maintenance: nothing more to take away.
        if have.admin == ServerAdmin::Ready {
            changes.push(set_admin(
                change,
                Op::Disable,
                key,
                have.admin,
                ServerAdmin::Drain,
            ));
        }
        return changes;
    }
    if have.admin != ServerAdmin::Maint {
        changes.push(set_admin(
            change,
            Op::Disable,
            key,
            have.admin,
            ServerAdmin::Maint,
        ));
    }
    if remove == ServerRemoval::Delete {
        let from = have.addr.map(|a| socket_text(a, have.port));
        let mut delete = change(
            Op::Delete,
            key,
            from,
            None,
            ServerChange::Delete { key: key.clone() },
        );
        // Deleting a server already out of service takes nothing more away.
        if have.admin == ServerAdmin::Maint {
            delete.removes = 0;
        }
        changes.push(delete);
    }
    changes
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
    /// Targets whose write was accepted but did not read back.
    pub verify_failed: BTreeSet<String>,
    /// Announced maintenance that will change addresses, and what depends on them.
    pub forecast: Vec<crate::forecast::Forecast>,
    /// What maintenance does to record sets and servers this pass (lowered TTLs, drains,
    /// and their restoration).
    pub maintenance: Vec<crate::maintenance::Step>,
    /// DNS target → how its configured secondaries stood: after this pass's write of it,
    /// else as the pass began. Only targets with `secondaries`.
    pub secondaries: BTreeMap<String, Vec<crate::dns::secondaries::Secondary>>,
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
pub(crate) mod tests;
