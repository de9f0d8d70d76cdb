//! Instances × config rules → the DNS record sets and backend servers that should exist.
//! Pure. Untrusted instance data (names, addresses) is validated here, and an instance that
//! fails validation is left out with a problem that names it — it never reaches a target.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::{
    BackendRule, Config, HealthGate, RecordPolicy, RecordRule, Selector, ServerRemoval,
};
use crate::model::{
    DesiredServer, Instance, InstanceState, RecordKey, RecordSet, RecordType, ServerIntent,
    ServerKey,
};
use crate::template::NameTemplate;
use crate::validate;

/// What one inventory source returned in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSnapshot {
    Listed(Vec<Instance>),
    /// The source failed; nothing that depends on it may be planned.
    Failed,
}

/// Something that keeps a part of the desired state from being computed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The target the problem belongs to, when there is one.
    pub target: Option<String>,
    /// What is affected: a record, a server, an instance.
    pub object: String,
    pub message: String,
}

/// The desired state of every target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// DNS target name → record sets that should exist there.
    pub records: BTreeMap<String, BTreeMap<RecordKey, RecordSet>>,
    /// Load balancer name → backend servers.
    pub servers: BTreeMap<String, BTreeMap<ServerKey, DesiredServer>>,
    /// Load balancer name → servers that should drain rather than serve: announced
    /// maintenance is due for their instances ([`crate::maintenance`]). Empty from
    /// [`desired`].
    pub drained: BTreeMap<String, BTreeSet<ServerKey>>,
    /// Fixed-name record sets that selected no address: left as they are (never emptied).
    pub empty_records: BTreeMap<String, BTreeSet<RecordKey>>,
    /// Record sets whose rule says `adopt = false`: updated only when ipdrift owns them.
    pub not_adopted: BTreeMap<String, BTreeSet<RecordKey>>,
    /// Record sets whose rule sets Cloudflare's `proxied`: what a created one gets.
    pub proxied: BTreeMap<String, BTreeMap<RecordKey, bool>>,
    /// DNS target → per-instance rules with `policy = "sync"`, which may delete what they
    /// no longer produce.
    pub sync_rules: BTreeMap<String, Vec<SyncRule>>,
    /// Load balancer → how each managed backend treats servers that lost their instance.
    pub backends: BTreeMap<String, Vec<BackendPolicy>>,
    /// Objects that some instance still claims but that were skipped (conflicting
    /// names): never deleted or disabled, whatever the rules say.
    pub contested: BTreeSet<String>,
    /// Objects the rules and instances contradict each other about (two running
    /// instances with one name, two rules with different contents): nothing is written to
    /// them, and they are drift (`diff` exits 2) until the conflict is resolved.
    pub conflicts: Vec<Problem>,
    pub problems: Vec<Problem>,
}

/// A per-instance record rule that deletes RRsets it owns and no longer produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRule {
    pub template: NameTemplate,
    pub rtype: RecordType,
    /// Inventory sources the rule depends on that failed this pass: while any did,
    /// nothing may be deleted (guard `source-unavailable`).
    pub failed_sources: Vec<String>,
}

/// A managed backend: its server-name template and what happens to servers without a
/// running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPolicy {
    pub backend: String,
    pub template: NameTemplate,
    pub remove: ServerRemoval,
    pub health: HealthGate,
    /// As in [`SyncRule::failed_sources`]: servers whose instance is not listed are not
    /// taken out while a source failed.
    pub failed_sources: Vec<String>,
}

impl Desired {
    /// The policy of `backend` on load balancer `lb`.
    pub fn backend_policy(&self, lb: &str, backend: &str) -> Option<&BackendPolicy> {
        self.backends.get(lb)?.iter().find(|b| b.backend == backend)
    }
}

impl Selector {
    pub(crate) fn matches(&self, source: &str, instance: &Instance) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self
                .tags
                .iter()
                .all(|(k, v)| instance.tags.get(k) == Some(v))
    }

    /// Names of the failed sources this selector depends on.
    fn failed_sources<'a>(&self, sources: &'a BTreeMap<String, SourceSnapshot>) -> Vec<&'a str> {
        sources
            .iter()
            .filter(|(name, snap)| {
                matches!(snap, SourceSnapshot::Failed)
                    && self.source.as_deref().is_none_or(|s| s == name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    fn selected<'a>(
        &'a self,
        sources: &'a BTreeMap<String, SourceSnapshot>,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        sources
            .iter()
            .filter_map(|(name, snap)| match snap {
                SourceSnapshot::Listed(list) => Some((name, list)),
                SourceSnapshot::Failed => None,
            })
            .flat_map(move |(name, list)| list.iter().filter(move |i| self.matches(name, i)))
    }
}

/// Computes the desired state of every configured target.
pub fn desired(config: &Config, sources: &BTreeMap<String, SourceSnapshot>) -> Desired {
    let mut out = Desired::default();
    for dns in &config.dns {
        out.records.entry(dns.name.clone()).or_default();
    }
    for rule in &config.records {
        desire_records(rule, sources, &mut out);
        if rule.policy == RecordPolicy::Sync && rule.name.is_per_instance() {
            let failed_sources = rule.select.failed_sources(sources);
            out.sync_rules
                .entry(rule.dns.clone())
                .or_default()
                .push(SyncRule {
                    template: rule.name.clone(),
                    rtype: rule.address.record_type(),
                    failed_sources: failed_sources.into_iter().map(String::from).collect(),
                });
        }
    }
    for lb in &config.load_balancers {
        let mut servers = BTreeMap::new();
        let mut problems = Vec::new();
        let mut contested = BTreeSet::new();
        let mut conflicts = Vec::new();
        for backend in &lb.backends {
            desire_backend(
                &lb.name,
                backend,
                sources,
                &mut servers,
                &mut problems,
                &mut contested,
                &mut conflicts,
            );
            let failed_sources = backend.select.failed_sources(sources);
            out.backends
                .entry(lb.name.clone())
                .or_default()
                .push(BackendPolicy {
                    backend: backend.name.clone(),
                    template: backend.server.clone(),
                    remove: backend.remove,
                    health: backend.health,
                    failed_sources: failed_sources.into_iter().map(String::from).collect(),
                });
        }
        out.servers.insert(lb.name.clone(), servers);
        out.problems.extend(problems);
        out.contested.extend(contested);
        out.conflicts.extend(conflicts);
    }
    out.problems.sort();
    out.conflicts.sort();
    out
}

/// How many instances the sources listed: room enough for what one rule selects.
fn listed(sources: &BTreeMap<String, SourceSnapshot>) -> usize {
    sources
        .values()
        .map(|snapshot| match snapshot {
            SourceSnapshot::Listed(list) => list.len(),
            SourceSnapshot::Failed => 0,
        })
        .sum()
}

fn instance_label(instance: &Instance) -> String {
    format!(
        "instance {} ({})",
        validate::printable(&instance.name),
        validate::printable(&instance.id)
    )
}

fn desire_records(
    rule: &RecordRule,
    sources: &BTreeMap<String, SourceSnapshot>,
    out: &mut Desired,
) {
    let added = desire_rule_records(rule, sources, out);
    if let Some(proxied) = rule.proxied {
        out.proxied
            .entry(rule.dns.clone())
            .or_default()
            .extend(added.iter().map(|k| (k.clone(), proxied)));
    }
    if !rule.adopt {
        out.not_adopted
            .entry(rule.dns.clone())
            .or_default()
            .extend(added);
    }
}

/// Adds the rule's record sets to `out`; returns the keys it added that no earlier rule
/// had, when the rule's `proxied` or `adopt = false` needs them (else none, to save the copies).
fn desire_rule_records(
    rule: &RecordRule,
    sources: &BTreeMap<String, SourceSnapshot>,
    out: &mut Desired,
) -> Vec<RecordKey> {
    let track_added = rule.proxied.is_some() || !rule.adopt;
    let mut added = Vec::new();
    let rtype = rule.address.record_type();
    let failed = rule.select.failed_sources(sources);
    let running = rule
        .select
        .selected(sources)
        .filter(|i| i.state == InstanceState::Running);

    if !rule.name.is_per_instance() {
        let name = validate::dns_name(&rule.name.to_string()).expect("validated in config");
        let key = RecordKey { name, rtype };
        if !failed.is_empty() {
            out.problems.push(Problem {
                target: Some(rule.dns.clone()),
                object: key.to_string(),
                message: format!(
                    "not planned: inventory source {} failed, so the full address set is unknown; left as it is",
                    failed.join(", ")
                ),
            });
            return added;
        }
        let mut addrs = BTreeSet::new();
        for instance in running {
            match instance.address(rule.address).map(validate::target_addr) {
                Some(Ok(addr)) => {
                    addrs.insert(addr);
                }
                Some(Err(e)) => out.problems.push(Problem {
                    target: Some(rule.dns.clone()),
                    object: instance_label(instance),
                    message: e.0,
                }),
                None => {}
            }
        }
        if addrs.is_empty() {
            out.empty_records
                .entry(rule.dns.clone())
                .or_default()
                .insert(key);
        } else {
            let zone = out.records.entry(rule.dns.clone()).or_default();
            let set = RecordSet {
                key,
                ttl: rule.ttl,
                addrs,
            };
            let key = track_added.then(|| set.key.clone());
            if insert_record(zone, &mut out.conflicts, &rule.dns, set) {
                added.extend(key);
            }
        }
        return added;
    }

    // Per-instance records: each depends only on its own instance, so a failed source
    // elsewhere does not hold them back. Sorted by name, then grouped: a name rendered
    // by more than one running instance is contested.
    let mut rendered: Vec<(RecordKey, &Instance, IpAddr)> = Vec::with_capacity(listed(sources));
    for instance in running {
        let Some(addr) = instance.address(rule.address) else {
            continue;
        };
        let text = rule.name.render(instance);
        let checked = validate::dns_name(&text)
            .and_then(|name| {
                if rule.check_names {
                    validate::host_name(&name)?;
                }
                Ok(name)
            })
            .and_then(|name| validate::target_addr(addr).map(|addr| (name, addr)));
        match checked {
            Ok((name, addr)) => rendered.push((RecordKey { name, rtype }, instance, addr)),
            Err(e) => out.problems.push(Problem {
                target: Some(rule.dns.clone()),
                object: instance_label(instance),
                message: format!("skipped: {}", e.0),
            }),
        }
    }
    // Stable: a contested name lists its instances in the sources' order.
    rendered.sort_by(|a, b| a.0.cmp(&b.0));
    let mut singles = Vec::with_capacity(rendered.len());
    let mut rendered = rendered.into_iter().peekable();
    while let Some((key, instance, addr)) = rendered.next() {
        let mut twins = Vec::new();
        while let Some(twin) = rendered.next_if(|(next, ..)| *next == key) {
            twins.push(twin.1);
        }
        if twins.is_empty() {
            singles.push(RecordSet {
                key,
                ttl: rule.ttl,
                addrs: BTreeSet::from([addr]),
            });
        } else {
            let names: Vec<String> = std::iter::once(instance)
                .chain(twins)
                .map(instance_label)
                .collect();
            out.contested.insert(contested_record(&rule.dns, &key));
            out.conflicts.push(Problem {
                target: Some(rule.dns.clone()),
                object: key.to_string(),
                message: format!(
                    "skipped: {} running instances render to this name ({}); make names unique or use {{id}}",
                    names.len(),
                    names.join(", ")
                ),
            });
        }
    }
    let zone = out.records.entry(rule.dns.clone()).or_default();
    if zone.is_empty() {
        // The first rule of its target (the common case): nothing to conflict with, and
        // the sets are sorted and unique, so the map is built in one go.
        if track_added {
            added.extend(singles.iter().map(|set| set.key.clone()));
        }
        *zone = singles
            .into_iter()
            .map(|set| (set.key.clone(), set))
            .collect();
    } else {
        for set in singles {
            let key = track_added.then(|| set.key.clone());
            if insert_record(zone, &mut out.conflicts, &rule.dns, set) {
                added.extend(key);
            }
        }
    }
    added
}

/// Adds a record set to its zone; a second rule producing the same RRset with other data is
/// a conflict. True when the set is new in the zone.
fn insert_record(
    zone: &mut BTreeMap<RecordKey, RecordSet>,
    conflicts: &mut Vec<Problem>,
    dns: &str,
    set: RecordSet,
) -> bool {
    match zone.get(&set.key) {
        Some(existing) if existing != &set => {
            conflicts.push(Problem {
                target: Some(dns.to_string()),
                object: set.key.to_string(),
                message: "skipped: two [[record]] rules produce this record set with different contents; make them select different names".into(),
            });
            zone.remove(&set.key);
            false
        }
        Some(_) => false,
        None => {
            zone.insert(set.key.clone(), set);
            true
        }
    }
}

/// The [`Desired::contested`] entry of a record set.
pub fn contested_record(dns: &str, key: &RecordKey) -> String {
    format!("{dns}: {key}")
}

/// The [`Desired::contested`] entry of a server.
pub fn contested_server(lb: &str, key: &ServerKey) -> String {
    format!("{lb}: {key}")
}

fn desire_backend(
    lb: &str,
    rule: &BackendRule,
    sources: &BTreeMap<String, SourceSnapshot>,
    servers: &mut BTreeMap<ServerKey, DesiredServer>,
    problems: &mut Vec<Problem>,
    contested: &mut BTreeSet<String>,
    conflicts: &mut Vec<Problem>,
) {
    // (server name, instance, intent) of every instance that renders to a server; sorted
    // by name, then grouped.
    let mut candidates: Vec<(String, &Instance, ServerIntent)> =
        Vec::with_capacity(listed(sources));
    let key_of = |server: String| ServerKey {
        backend: rule.name.clone(),
        server,
    };
    for instance in rule.select.selected(sources) {
        let server = rule.server.render(instance);
        if let Err(e) = validate::haproxy_name(&server) {
            problems.push(Problem {
                target: Some(lb.to_string()),
                object: instance_label(instance),
                message: format!("skipped: server name: {}", e.0),
            });
            continue;
        }
        let intent = match (
            instance.state,
            instance.address(rule.address).map(validate::target_addr),
        ) {
            (InstanceState::Running, Some(Ok(addr))) => ServerIntent::Serve {
                addr,
                port: rule.port,
            },
            (InstanceState::Running, Some(Err(e))) => {
                problems.push(Problem {
                    target: Some(lb.to_string()),
                    object: instance_label(instance),
                    message: format!("skipped: {}", e.0),
                });
                contested.insert(contested_server(lb, &key_of(server)));
                continue;
            }
            // Running without the wanted address, or still starting: nothing to set, but
            // its server must not be taken out as if the instance were gone.
            (InstanceState::Running | InstanceState::Pending, _) => {
                contested.insert(contested_server(lb, &key_of(server)));
                continue;
            }
            (InstanceState::Stopping | InstanceState::Stopped | InstanceState::Terminated, _) => {
                ServerIntent::Maint
            }
        };
        candidates.push((server, instance, intent));
    }
    // Stable: a contested name lists its instances in the sources' order.
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    let mut wanted = Vec::with_capacity(candidates.len());
    let mut candidates = candidates.into_iter().peekable();
    while let Some((server, instance, intent)) = candidates.next() {
        let mut twins = Vec::new();
        while let Some((_, twin, intent)) = candidates.next_if(|(next, ..)| *next == server) {
            twins.push((twin, intent));
        }
        let key = key_of(server);
        // A stopped or terminated twin (common: clouds keep terminated instances listed for
        // a while) never outvotes a running instance of the same name.
        let serving = || {
            std::iter::once((instance, intent))
                .chain(twins.iter().copied())
                .filter(|(_, intent)| matches!(intent, ServerIntent::Serve { .. }))
        };
        let mut first_two = serving();
        let intent = match (first_two.next(), first_two.next()) {
            (None, _) => ServerIntent::Maint,
            (Some((_, intent)), None) => intent,
            (Some(_), Some(_)) => {
                let names: Vec<String> = serving().map(|(i, _)| instance_label(i)).collect();
                contested.insert(contested_server(lb, &key));
                conflicts.push(Problem {
                    target: Some(lb.to_string()),
                    object: key.to_string(),
                    message: format!(
                        "skipped: {} running instances render to this server name ({}); make names unique or use {{id}}",
                        names.len(),
                        names.join(", ")
                    ),
                });
                continue;
            }
        };
        wanted.push(DesiredServer { key, intent });
    }
    if servers.is_empty() {
        // As for record sets: sorted and unique, so built in one go.
        *servers = wanted
            .into_iter()
            .map(|server| (server.key.clone(), server))
            .collect();
    } else {
        servers.extend(
            wanted
                .into_iter()
                .map(|server| (server.key.clone(), server)),
        );
    }
}
