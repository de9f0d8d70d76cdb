//! One pass: observe every source and target concurrently → desire → plan → apply per
//! target → verify by reading back. Shared by `diff`, `apply` and `run`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::future::join_all;
use tokio::time::{Instant, timeout};

use crate::config::{Config, DnsKind, InventoryKind};
use crate::desired::{Desired, SourceSnapshot, desired};
use crate::dns::rfc2136::Rfc2136Target;
use crate::dns::{DnsTarget, RecordChange};
use crate::haproxy::client::HaproxyClient;
use crate::haproxy::{LoadBalancer, ServerChange};
use crate::inventory::Inventory;
use crate::inventory::file::FileInventory;
use crate::model::RecordKey;
use crate::plan::{Action, Observed, PassReport, TargetError, plan};

/// Whether a pass may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and plan only (`diff`).
    ReadOnly,
    /// Observe, plan, write, verify (`apply`, `run`).
    Apply,
}

/// The sources and targets built from a config.
pub struct Reconciler {
    config: Arc<Config>,
    inventories: Vec<Box<dyn Inventory>>,
    dns: Vec<Box<dyn DnsTarget>>,
    load_balancers: Vec<Box<dyn LoadBalancer>>,
    timeout: Duration,
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

    fn into_vec(self) -> Vec<Timing> {
        self.0.into_inner().expect("lock")
    }
}

impl Reconciler {
    /// Builds every source and target. Reads the TSIG secrets; fails when one is missing.
    pub fn new(config: Arc<Config>) -> anyhow::Result<Reconciler> {
        let keys = config.load_keys().map_err(|e| anyhow!("{e}"))?;
        let timeout = config.controller.timeout;
        let inventories = config
            .inventories
            .iter()
            .map(|inv| -> Box<dyn Inventory> {
                match &inv.kind {
                    InventoryKind::File { path } => {
                        Box::new(FileInventory::new(inv.name.clone(), path.clone()))
                    }
                }
            })
            .collect();
        let dns = config
            .dns
            .iter()
            .map(|d| -> Box<dyn DnsTarget> {
                match &d.kind {
                    DnsKind::Rfc2136 { server, .. } => Box::new(Rfc2136Target::new(
                        d.name.clone(),
                        *server,
                        d.zone.clone(),
                        keys[&d.name].clone(),
                        timeout,
                    )),
                }
            })
            .collect();
        let load_balancers = config
            .haproxy
            .iter()
            .map(|h| -> Box<dyn LoadBalancer> {
                Box::new(HaproxyClient::new(
                    h.name.clone(),
                    h.runtime_api.clone(),
                    timeout,
                ))
            })
            .collect();
        Ok(Reconciler {
            config,
            inventories,
            dns,
            load_balancers,
            timeout,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one pass.
    pub async fn pass(&self, mode: Mode) -> PassOutcome {
        let timings = Timings::default();
        let mut report = PassReport::default();
        let sources = self.list_sources(&mut report.errors, &timings).await;
        let want = desired(&self.config, &sources);
        report.problems = want.problems.clone();
        let observed = self
            .observe_targets(&want, &mut report.errors, &timings)
            .await;
        report.plan = plan(&want, &observed);
        if mode == Mode::Apply {
            report.written = self.apply(&want, &report, &timings).await;
        }
        report.errors.sort();
        PassOutcome {
            report,
            sources,
            timings: timings.into_vec(),
        }
    }

    async fn list_sources(
        &self,
        errors: &mut Vec<TargetError>,
        timings: &Timings,
    ) -> BTreeMap<String, SourceSnapshot> {
        let listings = join_all(self.inventories.iter().map(|inv| async move {
            let listing = timings.time(inv.name(), Io::Read, timeout(self.timeout, inv.list()));
            let result = match listing.await {
                Ok(result) => result,
                Err(_) => Err(anyhow!(
                    "inventory {:?} did not answer within {}",
                    inv.name(),
                    humantime::format_duration(self.timeout)
                )),
            };
            (inv.name().to_string(), result)
        }))
        .await;
        let mut sources = BTreeMap::new();
        for (name, result) in listings {
            let snapshot = match result {
                Ok(list) => SourceSnapshot::Listed(list),
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
        sources
    }

    async fn observe_targets(
        &self,
        want: &Desired,
        errors: &mut Vec<TargetError>,
        timings: &Timings,
    ) -> Observed {
        let dns_reads = join_all(self.dns.iter().map(|t| async move {
            let keys = keys_to_read(want, t.name());
            (
                t.name().to_string(),
                self.read_dns(t.as_ref(), &keys, timings).await,
            )
        }));
        let lb_reads = join_all(self.load_balancers.iter().map(|lb| async move {
            (
                lb.name().to_string(),
                self.read_lb(lb.as_ref(), timings).await,
            )
        }));
        let (dns_results, lb_results) = tokio::join!(dns_reads, lb_reads);
        let mut observed = Observed::default();
        for (name, result) in dns_results {
            match result {
                Ok(sets) => {
                    observed.records.insert(name, sets);
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
        observed
    }

    async fn read_dns(
        &self,
        target: &dyn DnsTarget,
        keys: &[RecordKey],
        timings: &Timings,
    ) -> anyhow::Result<Vec<crate::model::RecordSet>> {
        timings
            .time(
                target.name(),
                Io::Read,
                timeout(self.timeout, target.read(keys)),
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

    async fn read_lb(
        &self,
        lb: &dyn LoadBalancer,
        timings: &Timings,
    ) -> anyhow::Result<Vec<crate::model::ObservedServer>> {
        let backends = self.backends_of(lb.name());
        timings
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
            .haproxy
            .iter()
            .filter(|h| h.name == lb)
            .flat_map(|h| h.backends.iter().map(|b| b.name.clone()))
            .collect();
        names.into_iter().collect()
    }

    /// Writes each target's batch, independently and concurrently, then reads the target
    /// back and re-plans it: a change that does not read back is an error.
    async fn apply(
        &self,
        want: &Desired,
        report: &PassReport,
        timings: &Timings,
    ) -> BTreeMap<String, Result<(), String>> {
        let mut dns_batches: BTreeMap<&str, Vec<RecordChange>> = BTreeMap::new();
        let mut lb_batches: BTreeMap<&str, Vec<ServerChange>> = BTreeMap::new();
        for change in &report.plan.changes {
            match &change.action {
                Action::Dns(c) => dns_batches
                    .entry(&change.target)
                    .or_default()
                    .push(c.clone()),
                Action::Haproxy(c) => lb_batches
                    .entry(&change.target)
                    .or_default()
                    .push(c.clone()),
            }
        }
        let dns_writes = join_all(self.dns.iter().filter_map(|t| {
            let batch = dns_batches.get(t.name())?;
            Some(async move {
                let result = async {
                    let write = timeout(self.timeout, t.write(batch));
                    timings
                        .time(t.name(), Io::Write, write)
                        .await
                        .map_err(|_| {
                            anyhow!(
                                "the update was not answered within {}",
                                humantime::format_duration(self.timeout)
                            )
                        })??;
                    let keys = keys_to_read(want, t.name());
                    let back = self
                        .read_dns(t.as_ref(), &keys, timings)
                        .await
                        .context("reading back after the update")?;
                    let observed = Observed {
                        records: BTreeMap::from([(t.name().to_string(), back)]),
                        ..Observed::default()
                    };
                    verify(&plan(want, &observed))
                }
                .await;
                (
                    t.name().to_string(),
                    result.map_err(|e: anyhow::Error| format!("{e:#}")),
                )
            })
        }));
        let lb_writes = join_all(self.load_balancers.iter().filter_map(|lb| {
            let batch = lb_batches.get(lb.name())?;
            Some(async move {
                let result = async {
                    let write = timeout(self.timeout, lb.write(batch));
                    timings
                        .time(lb.name(), Io::Write, write)
                        .await
                        .map_err(|_| {
                            anyhow!(
                                "HAProxy did not answer within {}",
                                humantime::format_duration(self.timeout)
                            )
                        })??;
                    let back = self
                        .read_lb(lb.as_ref(), timings)
                        .await
                        .context("reading back after the change")?;
                    let observed = Observed {
                        servers: BTreeMap::from([(lb.name().to_string(), back)]),
                        ..Observed::default()
                    };
                    verify(&plan(want, &observed))
                }
                .await;
                (
                    lb.name().to_string(),
                    result.map_err(|e: anyhow::Error| format!("{e:#}")),
                )
            })
        }));
        let (dns_results, lb_results) = tokio::join!(dns_writes, lb_writes);
        dns_results.into_iter().chain(lb_results).collect()
    }
}

/// After a write, the re-plan of the written target must contain no changes.
fn verify(after: &crate::plan::Plan) -> anyhow::Result<()> {
    if after.changes.is_empty() {
        return Ok(());
    }
    let objects: Vec<&str> = after.changes.iter().map(|c| c.object.as_str()).collect();
    Err(anyhow!(
        "verify failed: {} change(s) did not read back: {}",
        objects.len(),
        objects.join(", ")
    ))
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
