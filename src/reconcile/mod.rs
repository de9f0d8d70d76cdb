//! One pass: list every source and read every target concurrently → desire → plan → apply
//! per target → verify by reading back. Shared by `diff`, `apply` and `run`. The sources
//! and targets are trait objects built elsewhere: by [`build`] from a config, or fakes in
//! tests ([`Reconciler::from_parts`]).

pub mod build;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::future::join_all;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::{Config, HealthGate};
use crate::desired::{Desired, Problem, SourceSnapshot, desired};
use crate::dns::secondaries::Secondary;
use crate::dns::{DnsTarget, RecordChange, SecondaryCheck, ZoneRead, inventory_fingerprint};
use crate::forecast::{ScheduledEvent, forecast};
use crate::ha::{Fence, NotLeader};
use crate::inventory::Inventory;
use crate::lb::{LoadBalancer, ServerChange};
use crate::maintenance::{self, MaintenancePolicy};
use crate::model::{DnsName, ObservedServer, RecordKey, ServerAdmin, ServerIntent};
use crate::plan::reviewed::ReviewedPlan;
use crate::plan::{Action, Observed, PassReport, Plan, PlanOptions, TargetError, orphans, plan};
use crate::trigger::{Trigger, Watch};

/// How long ipdrift's own TCP probe of an instance endpoint may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Seconds since the Unix epoch (what announced events' `not_before` is).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a pass may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and plan only (`diff`).
    ReadOnly,
    /// Observe, plan, write, verify (`apply`, `run`).
    Apply,
}

/// The sources and targets of a config, as trait objects.
pub struct Parts {
    pub inventories: Vec<Box<dyn Inventory>>,
    pub dns: Vec<Box<dyn DnsTarget>>,
    pub load_balancers: Vec<Box<dyn LoadBalancer>>,
}

/// The sources and targets built from a config, and the little it remembers between
/// passes (instance counts, for the `source-unavailable` guard).
pub struct Reconciler {
    config: Arc<Config>,
    inventories: Vec<Box<dyn Inventory>>,
    dns: Vec<Box<dyn DnsTarget>>,
    load_balancers: Vec<Box<dyn LoadBalancer>>,
    options: PlanOptions,
    timeout: Duration,
    /// Instances each source listed last time it listed any.
    last_counts: Mutex<BTreeMap<String, usize>>,
    /// The current pass's network calls (passes of one reconciler never overlap).
    timings: Timings,
    /// Checked right before each target's write batch (`[ha]`: only the leader writes).
    fence: Fence,
    /// How announced maintenance is prepared for.
    maintenance: MaintenancePolicy,
    /// The current pass's secondaries after writes, by target ([`DnsTarget::secondaries`]).
    propagation: Mutex<BTreeMap<String, anyhow::Result<Vec<Secondary>>>>,
}

/// A pass's report plus what the sources listed, for state kept across passes.
pub struct PassOutcome {
    pub report: PassReport,
    pub sources: BTreeMap<String, SourceSnapshot>,
    /// Every network call of the pass, for the latency histograms and logs.
    pub timings: Vec<Timing>,
}

/// Whether a call read (a source listing, a target read or read-back) or wrote a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Read,
    Write,
}

/// How long one call to a source or target took, timeouts included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Source or target name.
    pub target: String,
    pub io: Io,
    pub duration: Duration,
}

/// Collects the timings of the calls a pass makes concurrently.
#[derive(Default)]
struct Timings(Mutex<Vec<Timing>>);

impl Timings {
    /// Awaits `call` and records how long it took.
    async fn time<T>(&self, target: &str, io: Io, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.0.lock().expect("lock").push(Timing {
            target: target.to_string(),
            io,
            duration: started.elapsed(),
        });
        result
    }

    /// The timings collected so far; the collection starts afresh.
    fn take(&self) -> Vec<Timing> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

impl Reconciler {
    /// Builds every source and target of `config` ([`build::parts`]), then the reconciler.
    /// Fails when a secret (TSIG key, API token) is missing. `force` lifts the
    /// `max-remove-fraction` guard (`apply --force`).
    pub fn new(config: Arc<Config>, force: bool) -> anyhow::Result<Reconciler> {
        let parts = build::parts(&config)?;
        Ok(Reconciler::from_parts(config, parts, force))
    }

    /// A reconciler over sources and targets built elsewhere (by [`build::parts`], or fakes
    /// in tests); their names are those of `config`'s sections.
    pub fn from_parts(config: Arc<Config>, parts: Parts, force: bool) -> Reconciler {
        let options = PlanOptions {
            max_remove_fraction: config.controller.max_remove_fraction,
            force,
            owner_id: config.controller.owner_id.clone(),
            inventory: inventory_fingerprint(
                config.inventories.iter().map(|i| (i.kind, i.name.as_str())),
            ),
        };
        Reconciler {
            timeout: config.controller.timeout,
            maintenance: MaintenancePolicy::of(&config),
            config,
            inventories: parts.inventories,
            dns: parts.dns,
            load_balancers: parts.load_balancers,
            options,
            last_counts: Mutex::new(BTreeMap::new()),
            timings: Timings::default(),
            fence: Fence::alone(),
            propagation: Mutex::default(),
        }
    }

    /// Writes only while `fence` holds: each batch is withheld when it does not, and must
    /// end before the lease behind it may lapse.
    pub fn with_fence(mut self, fence: Fence) -> Reconciler {
        self.fence = fence;
        self
    }

    /// Starts the watch of every source that has one (see [`Inventory::watch`]). A watch
    /// that cannot start is logged and left out: polling still finds the changes.
    pub fn watch(&self, trigger: &Trigger) -> Vec<Watch> {
        let mut watches = Vec::new();
        for inventory in &self.inventories {
            match inventory.watch(trigger.clone()) {
                Ok(Some(watch)) => watches.push(watch),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(
                        source = inventory.name(),
                        "{e:#}; its changes are found by polling only"
                    )
                }
            }
        }
        watches
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one pass over every target.
    pub async fn pass(&self, mode: Mode) -> PassOutcome {
        self.pass_resting(mode, &BTreeMap::new()).await
    }

    /// Runs one pass, leaving alone the targets in `resting` (target → time until its
    /// next attempt): they are backing off after failures and reported as such.
    pub async fn pass_resting(
        &self,
        mode: Mode,
        resting: &BTreeMap<String, Duration>,
    ) -> PassOutcome {
        self.pass_approved(mode, resting, |_| true).await
    }

    /// `apply --plan`: one pass that writes only when the plan made now is exactly
    /// `reviewed`. Returns what differs (nothing was written then), empty when it matched.
    pub async fn pass_as_reviewed(&self, reviewed: &ReviewedPlan) -> (PassOutcome, Vec<String>) {
        let mut differences = Vec::new();
        let outcome = self
            .pass_approved(Mode::Apply, &BTreeMap::new(), |plan| {
                differences = reviewed.differences(plan);
                differences.is_empty()
            })
            .await;
        (outcome, differences)
    }

    /// One pass whose writes happen only when `approve` accepts the plan.
    async fn pass_approved(
        &self,
        mode: Mode,
        resting: &BTreeMap<String, Duration>,
        approve: impl FnOnce(&Plan) -> bool,
    ) -> PassOutcome {
        let mut report = PassReport::default();
        let (sources, events) = self
            .list_sources(&mut report.errors, &mut report.problems)
            .await;
        let mut want = desired(&self.config, &sources);
        report.problems.extend(want.problems.iter().cloned());
        report.forecast = forecast(&want, &sources, &events, self.maintenance.lead);
        let (observed, secondaries) = tokio::join!(
            self.observe_targets(&want, resting, &mut report.errors),
            self.check_secondaries(resting)
        );
        report.maintenance = maintenance::prepare(
            &mut want,
            &report.forecast,
            &observed,
            unix_now(),
            &self.maintenance,
        );
        report.plan = plan(&want, &observed, &self.options);
        maintenance::drop_unplanned(&mut report.maintenance, &report.plan);
        if mode == Mode::Apply && approve(&report.plan) {
            for (target, outcome) in self.apply(&want, &observed, &report.plan).await {
                let Some((result, verify_failed)) = outcome else {
                    let planned = report.plan.changes.iter().filter(|c| c.target == target);
                    report.problems.push(Problem {
                        object: format!("{} change(s)", planned.count()),
                        target: Some(target),
                        message: NotLeader.to_string(),
                    });
                    continue;
                };
                if verify_failed {
                    report.verify_failed.insert(target.clone());
                }
                report.written.insert(target, result);
            }
        }
        let written = std::mem::take(&mut *self.propagation.lock().expect("lock"));
        for (target, result) in secondaries.into_iter().chain(written) {
            match result {
                Ok(states) if states.is_empty() => {}
                Ok(states) => {
                    report.secondaries.insert(target, states);
                }
                Err(e) => report.problems.push(Problem {
                    object: "secondaries".to_string(),
                    target: Some(target),
                    message: format!("cannot compare the secondaries with the primary: {e:#}"),
                }),
            }
        }
        report.errors.sort();
        PassOutcome {
            report,
            sources,
            timings: self.timings.take(),
        }
    }

    /// Compares each DNS target's secondaries with its primary, all concurrently: one SOA
    /// query each (see [`DnsTarget::secondaries`]).
    async fn check_secondaries(
        &self,
        resting: &BTreeMap<String, Duration>,
    ) -> Vec<(String, anyhow::Result<Vec<Secondary>>)> {
        join_all(
            self.dns
                .iter()
                .filter(|t| !resting.contains_key(t.name()))
                // The target bounds each of its queries (a secondary that does not
                // answer is reported as such, not as the whole check timing out).
                .map(|t| async move {
                    let checked = t.secondaries(SecondaryCheck::Now).await;
                    (t.name().to_string(), checked)
                }),
        )
        .await
    }

    /// Lists every source (and asks it for announced maintenance) concurrently.
    async fn list_sources(
        &self,
        errors: &mut Vec<TargetError>,
        problems: &mut Vec<Problem>,
    ) -> (
        BTreeMap<String, SourceSnapshot>,
        BTreeMap<String, Vec<ScheduledEvent>>,
    ) {
        let listings = join_all(self.inventories.iter().map(|inv| async move {
            let limit = inv.time_limit(self.timeout);
            let timed_out = || {
                anyhow!(
                    "inventory {:?} did not answer within {}",
                    inv.name(),
                    humantime::format_duration(limit)
                )
            };
            let (listed, events) = tokio::join!(
                self.timings
                    .time(inv.name(), Io::Read, timeout(limit, inv.list())),
                timeout(limit, inv.scheduled_events())
            );
            let listed = listed.unwrap_or_else(|_| Err(timed_out()));
            let events = events.unwrap_or_else(|_| Err(timed_out()));
            (inv.name().to_string(), listed, events)
        }))
        .await;
        let mut events = BTreeMap::new();
        let listings: Vec<_> = listings
            .into_iter()
            .map(|(name, listed, source_events)| {
                match source_events {
                    Ok(list) => {
                        events.insert(name.clone(), list);
                    }
                    // A source that cannot list is reported as such; its events add nothing.
                    Err(_) if listed.is_err() => {}
                    // Forewarning is lost for this pass; repairs are not affected.
                    Err(e) => problems.push(Problem {
                        target: None,
                        object: format!("inventory {name:?}"),
                        message: format!("scheduled events unavailable: {e:#}"),
                    }),
                }
                (name, listed)
            })
            .collect();
        let mut last_counts = self.last_counts.lock().expect("lock");
        let mut sources = BTreeMap::new();
        for (name, result) in listings {
            let snapshot = match result {
                Ok(list) if list.is_empty() && last_counts.get(&name).is_some_and(|n| *n > 0) => {
                    errors.push(TargetError {
                        target: name.clone(),
                        message: format!(
                            "inventory {name:?} listed no instances after listing {}; treated as unavailable (guard source-unavailable) until it lists some again or ipdrift is reloaded",
                            last_counts[&name]
                        ),
                    });
                    SourceSnapshot::Failed
                }
                Ok(list) => {
                    last_counts.insert(name.clone(), list.len());
                    SourceSnapshot::Listed(list)
                }
                Err(e) => {
                    errors.push(TargetError {
                        target: name.clone(),
                        message: format!("{e:#}"),
                    });
                    SourceSnapshot::Failed
                }
            };
            sources.insert(name, snapshot);
        }
        (sources, events)
    }

    async fn observe_targets(
        &self,
        want: &Desired,
        resting: &BTreeMap<String, Duration>,
        errors: &mut Vec<TargetError>,
    ) -> Observed {
        for (target, wait) in resting {
            errors.push(TargetError {
                target: target.clone(),
                message: format!(
                    "not tried this pass: backing off after repeated failures, next attempt in {}",
                    humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
                ),
            });
        }
        let dns_reads = join_all(
            self.dns
                .iter()
                .filter(|t| !resting.contains_key(t.name()))
                .map(|t| async move {
                    (
                        t.name().to_string(),
                        self.observe_zone(t.as_ref(), want).await,
                    )
                }),
        );
        let lb_reads = join_all(
            self.load_balancers
                .iter()
                .filter(|lb| !resting.contains_key(lb.name()))
                .map(|lb| async move { (lb.name().to_string(), self.read_lb(lb.as_ref()).await) }),
        );
        let (dns_results, lb_results) = tokio::join!(dns_reads, lb_reads);
        let mut observed = Observed::default();
        for (name, result) in dns_results {
            match result {
                Ok((read, ownership, mut zone_own)) => {
                    zone_own.extend(read.zone_own);
                    observed.zone_own.insert(name.clone(), zone_own);
                    observed.obstacles.insert(name.clone(), read.obstacles);
                    observed.records.insert(name.clone(), read.rrsets);
                    if let Some(ownership) = ownership {
                        observed.ownership.insert(name, ownership);
                    }
                }
                Err(e) => errors.push(TargetError {
                    target: name,
                    message: format!("{e:#}"),
                }),
            }
        }
        for (name, result) in lb_results {
            match result {
                Ok(servers) => {
                    observed.servers.insert(name, servers);
                }
                Err(e) => errors.push(TargetError {
                    target: name,
                    message: format!("{e:#}"),
                }),
            }
        }
        observed.reachable = probe(&self.probe_candidates(want, &observed)).await;
        observed
    }

    /// Reads a zone's managed RRsets and, when a rule needs them, its ownership records:
    /// then the zone is listed, and the RRsets are taken from that listing where it carries
    /// them (one AXFR for RFC 2136) or else read afterwards, since the ownership records
    /// decide which RRsets to read (those that `policy = "sync"` may delete).
    /// [`Self::observe_records`], and the names the zone uses itself, read side by side.
    async fn observe_zone(
        &self,
        target: &dyn DnsTarget,
        want: &Desired,
    ) -> anyhow::Result<(
        ZoneRead,
        Option<BTreeMap<DnsName, String>>,
        BTreeSet<DnsName>,
    )> {
        let wants_any = want
            .records
            .get(target.name())
            .is_some_and(|r| !r.is_empty());
        let zone_own = async {
            if !wants_any || target.reads_carry_zone_own_names() {
                return Ok(BTreeSet::new());
            }
            timeout(self.timeout, target.read_zone_own_names())
                .await
                .map_err(|_| {
                    anyhow!(
                        "DNS target {:?} did not say within {} which names its zone uses itself (SOA, NS, MX, SRV)",
                        target.name(),
                        humantime::format_duration(self.timeout)
                    )
                })?
        };
        let (records, zone_own) = tokio::join!(self.observe_records(target, want), zone_own);
        let (sets, ownership) = records?;
        Ok((sets, ownership, zone_own?))
    }

    async fn observe_records(
        &self,
        target: &dyn DnsTarget,
        want: &Desired,
    ) -> anyhow::Result<(ZoneRead, Option<BTreeMap<DnsName, String>>)> {
        let needs_ownership = want.sync_rules.contains_key(target.name())
            || want
                .not_adopted
                .get(target.name())
                .is_some_and(|k| !k.is_empty());
        let mut keys = keys_to_read(want, target.name());
        if !needs_ownership {
            return Ok((self.read_dns(target, &keys).await?, None));
        }
        let listing = self
            .timings
            .time(
                target.name(),
                Io::Read,
                timeout(self.timeout, target.read_listing()),
            )
            .await
            .map_err(|_| {
                anyhow!(
                    "no zone listing from DNS target {:?} within {}",
                    target.name(),
                    humantime::format_duration(self.timeout)
                )
            })??;
        keys.extend(orphans(
            target.name(),
            want,
            Some(&listing.ownership),
            &self.options,
        ));
        keys.sort();
        keys.dedup();
        let mut read = match listing.rrsets {
            Some(zone) => ZoneRead {
                rrsets: zone
                    .into_iter()
                    .filter(|rrset| keys.binary_search(&rrset.key).is_ok())
                    .collect(),
                ..ZoneRead::default()
            },
            None => self.read_dns(target, &keys).await?,
        };
        read.obstacles.extend(listing.obstacles);
        read.zone_own.extend(listing.zone_own);
        Ok((read, Some(listing.ownership)))
    }

    async fn read_dns(
        &self,
        target: &dyn DnsTarget,
        keys: &[RecordKey],
    ) -> anyhow::Result<ZoneRead> {
        self.timings
            .time(
                target.name(),
                Io::Read,
                timeout(self.timeout, target.read_zone(keys)),
            )
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer from DNS target {:?} within {}",
                    target.name(),
                    humantime::format_duration(self.timeout)
                )
            })?
    }

    async fn read_lb(&self, lb: &dyn LoadBalancer) -> anyhow::Result<Vec<ObservedServer>> {
        let backends = self.backends_of(lb.name());
        self.timings
            .time(
                lb.name(),
                Io::Read,
                timeout(self.timeout, lb.read(&backends)),
            )
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer from HAProxy {:?} within {}",
                    lb.name(),
                    humantime::format_duration(self.timeout)
                )
            })?
    }

    fn backends_of(&self, lb: &str) -> Vec<String> {
        let names: BTreeSet<String> = self
            .config
            .load_balancers
            .iter()
            .filter(|h| h.name == lb)
            .flat_map(|h| h.backends.iter().map(|b| b.name.clone()))
            .collect();
        names.into_iter().collect()
    }

    /// Endpoints of servers that ipdrift would put into service (added, or in maintenance)
    /// behind backends that rely on ipdrift's own probe.
    fn probe_candidates(&self, want: &Desired, observed: &Observed) -> BTreeSet<SocketAddr> {
        let mut endpoints = BTreeSet::new();
        for (lb, servers) in &observed.servers {
            let by_key: BTreeMap<_, _> = servers.iter().map(|s| (&s.key, s)).collect();
            for (key, server) in want.servers.get(lb).into_iter().flatten() {
                let ServerIntent::Serve { addr, port } = server.intent else {
                    continue;
                };
                let gated = want
                    .backend_policy(lb, &key.backend)
                    .is_some_and(|p| p.health == HealthGate::Probe);
                let out_of_service = by_key
                    .get(key)
                    .is_none_or(|s| s.admin == ServerAdmin::Maint);
                if gated && out_of_service {
                    endpoints.insert(SocketAddr::new(addr, port));
                }
            }
        }
        endpoints
    }

    /// Checks the fence right before a write batch: when the batch must end by.
    fn write_deadline(&self, limit: Duration) -> Result<WriteDeadline, NotLeader> {
        let timeout_at = Instant::now() + limit;
        Ok(match self.fence.check()? {
            Some(lease_ends) if lease_ends < timeout_at => WriteDeadline {
                at: lease_ends,
                lease: true,
            },
            _ => WriteDeadline {
                at: timeout_at,
                lease: false,
            },
        })
    }

    /// Writes each target's batch, independently and concurrently, then reads the target
    /// back and re-plans it: a change that does not read back is an error. A target whose
    /// batch the fence withheld has `None`.
    async fn apply(
        &self,
        want: &Desired,
        observed: &Observed,
        planned: &Plan,
    ) -> BTreeMap<String, Option<(Result<(), String>, bool)>> {
        let mut dns_batches: BTreeMap<&str, Vec<RecordChange>> = BTreeMap::new();
        let mut lb_batches: BTreeMap<&str, Vec<ServerChange>> = BTreeMap::new();
        for change in &planned.changes {
            match &change.action {
                Action::Dns(c) => dns_batches
                    .entry(&change.target)
                    .or_default()
                    .push(c.clone()),
                Action::Lb(c) => lb_batches
                    .entry(&change.target)
                    .or_default()
                    .push(c.clone()),
            }
        }
        let dns_writes = join_all(self.dns.iter().filter_map(|t| {
            let batch = dns_batches.get(t.name())?;
            Some(async move {
                let limit = t.write_time_limit(self.timeout);
                let Ok(deadline) = self.write_deadline(limit) else {
                    return (t.name().to_string(), None);
                };
                let result = async {
                    let unanswered = || {
                        format!(
                            "the update was not answered within {}",
                            humantime::format_duration(limit)
                        )
                    };
                    self.timings
                        .time(
                            t.name(),
                            Io::Write,
                            write_by(deadline, t.write(batch), unanswered),
                        )
                        .await?;
                    let ended = Instant::now();
                    let keys: Vec<RecordKey> = observed.records[t.name()]
                        .iter()
                        .map(|s| s.key.clone())
                        .chain(batch.iter().map(|c| c.key().clone()))
                        .collect();
                    let keys: Vec<RecordKey> = keys
                        .into_iter()
                        .chain(keys_to_read(want, t.name()))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let back = self
                        .read_dns(t.as_ref(), &keys)
                        .await
                        .context("reading back after the update")?;
                    let mut obstacles = back.obstacles;
                    if let Some(seen) = observed.obstacles.get(t.name()) {
                        obstacles.extend(seen.clone());
                    }
                    let mut after = Observed {
                        records: BTreeMap::from([(t.name().to_string(), back.rrsets)]),
                        obstacles: BTreeMap::from([(t.name().to_string(), obstacles)]),
                        ..Observed::default()
                    };
                    if let Some(ownership) = observed.ownership.get(t.name()) {
                        after
                            .ownership
                            .insert(t.name().to_string(), ownership.clone());
                    }
                    if let Some(names) = observed.zone_own.get(t.name()) {
                        after.zone_own.insert(t.name().to_string(), names.clone());
                    }
                    verify(&plan(want, &after, &self.options), batch.len())?;
                    // Repaired for clients once every secondary serves it too.
                    let check = SecondaryCheck::Written {
                        changes: batch,
                        ended,
                    };
                    let propagated = t.secondaries(check).await;
                    (self.propagation.lock().expect("lock"))
                        .insert(t.name().to_string(), propagated);
                    Ok(())
                }
                .await;
                (t.name().to_string(), Some(written_outcome(result)))
            })
        }));
        let lb_writes = join_all(self.load_balancers.iter().filter_map(|lb| {
            let batch = lb_batches.get(lb.name())?;
            Some(async move {
                let limit = lb.write_time_limit(self.timeout);
                let Ok(deadline) = self.write_deadline(limit) else {
                    return (lb.name().to_string(), None);
                };
                let result = async {
                    let unanswered = || {
                        format!(
                            "load balancer {} did not finish the write within {}",
                            lb.name(),
                            humantime::format_duration(limit)
                        )
                    };
                    self.timings
                        .time(
                            lb.name(),
                            Io::Write,
                            write_by(deadline, lb.write(batch), unanswered),
                        )
                        .await?;
                    let back = self
                        .read_lb(lb.as_ref())
                        .await
                        .context("reading back after the change")?;
                    let after = Observed {
                        servers: BTreeMap::from([(lb.name().to_string(), back)]),
                        reachable: observed.reachable.clone(),
                        ..Observed::default()
                    };
                    verify(&plan(want, &after, &self.options), batch.len())
                }
                .await;
                (lb.name().to_string(), Some(written_outcome(result)))
            })
        }));
        let (dns_results, lb_results) = tokio::join!(dns_writes, lb_writes);
        dns_results.into_iter().chain(lb_results).collect()
    }
}

/// When a write batch must end: after the timeout, or earlier when the leadership lease
/// may lapse first.
#[derive(Debug, Clone, Copy)]
struct WriteDeadline {
    at: Instant,
    /// The lease sets the deadline.
    lease: bool,
}

/// Awaits a write batch until `deadline`; past it the batch is abandoned, and the error
/// says why (`unanswered` for a plain timeout).
async fn write_by(
    deadline: WriteDeadline,
    write: impl Future<Output = anyhow::Result<()>>,
    unanswered: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match timeout_at(deadline.at, write).await {
        Ok(result) => result,
        Err(_) if deadline.lease => Err(anyhow!(
            "write abandoned: this controller's leadership lease could lapse before the batch finished; the next leader re-plans it"
        )),
        Err(_) => Err(anyhow!(unanswered())),
    }
}

/// Connects to each endpoint (concurrently, each within [`PROBE_TIMEOUT`]); returns those
/// that accepted.
async fn probe(endpoints: &BTreeSet<SocketAddr>) -> BTreeSet<SocketAddr> {
    let attempts = join_all(endpoints.iter().map(|addr| async move {
        let connected = timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
        matches!(connected, Ok(Ok(_))).then_some(*addr)
    }))
    .await;
    attempts.into_iter().flatten().collect()
}

/// After a write, the re-plan of the written target must not contain the written changes
/// again (refusals and gated enables may remain; they were not written).
fn verify(after: &Plan, written: usize) -> anyhow::Result<()> {
    if after.changes.is_empty() {
        return Ok(());
    }
    let objects: Vec<&str> = after.changes.iter().map(|c| c.object.as_str()).collect();
    Err(VerifyFailed(format!(
        "verify failed: after writing {written} change(s), {} did not read back: {}",
        objects.len(),
        objects.join(", ")
    ))
    .into())
}

/// A write that was accepted but does not read back (`ipdrift_verify_failures_total`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct VerifyFailed(String);

/// A target's write result for the report, and whether it failed verification.
fn written_outcome(result: anyhow::Result<()>) -> (Result<(), String>, bool) {
    match result {
        Ok(()) => (Ok(()), false),
        Err(e) => {
            let verify_failed = e.downcast_ref::<VerifyFailed>().is_some();
            (Err(format!("{e:#}")), verify_failed)
        }
    }
}

/// The RRsets to read from a DNS target: every desired one, plus fixed names whose rule
/// selected nothing (so that the never-empty guard can report them).
fn keys_to_read(want: &Desired, target: &str) -> Vec<RecordKey> {
    let mut keys: BTreeSet<RecordKey> = want
        .records
        .get(target)
        .into_iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    keys.extend(
        want.empty_records
            .get(target)
            .into_iter()
            .flatten()
            .cloned(),
    );
    keys.into_iter().collect()
}
