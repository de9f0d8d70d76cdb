//! `ipdrift run`: a pass every interval (with a little jitter), metrics and readiness
//! updated after each, until SIGINT or SIGTERM. Targets are written independently, so a
//! dead load balancer never holds back DNS repair. The loop never stops on an error.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder as _;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::desired::SourceSnapshot;
use crate::metrics::{ChangeLabels, GuardLabel, Metrics, SourceLabel, TargetLabel};
use crate::model::AddressKind;
use crate::plan::{GUARDS, PassReport};
use crate::reconcile::{Mode, PassOutcome, Reconciler};

/// Addresses of every instance as last seen, per source: (source, id, kind) → address.
type AddressMemory = BTreeMap<(String, String, AddressKind), IpAddr>;

/// Counts address changes against the previous pass and remembers the new addresses.
/// Only sources that listed successfully are compared; the first pass only records.
fn count_address_changes(
    memory: &mut AddressMemory,
    sources: &BTreeMap<String, SourceSnapshot>,
) -> BTreeMap<String, u64> {
    let mut changes = BTreeMap::new();
    for (source, snapshot) in sources {
        let SourceSnapshot::Listed(instances) = snapshot else {
            continue;
        };
        let count = changes.entry(source.clone()).or_insert(0);
        for instance in instances {
            for kind in [
                AddressKind::PublicIpv4,
                AddressKind::PrivateIpv4,
                AddressKind::Ipv6,
            ] {
                let Some(addr) = instance.address(kind) else {
                    continue;
                };
                let key = (source.clone(), instance.id.clone(), kind);
                if let Some(old) = memory.insert(key, addr)
                    && old != addr
                {
                    *count += 1;
                    tracing::info!(source = %source, instance = %instance.id, name = %instance.name, from = %old, to = %addr, "instance address changed");
                }
            }
        }
    }
    changes
}

/// Logs a pass's outcome with structured fields.
fn log_report(report: &PassReport) {
    for change in &report.plan.changes {
        match report.written.get(&change.target) {
            Some(Ok(())) => {
                tracing::info!(target_name = %change.target, op = change.op.as_str(), object = %change.object, from = change.from.as_deref().unwrap_or("-"), to = change.to.as_deref().unwrap_or("-"), "applied")
            }
            Some(Err(_)) => {
                tracing::warn!(target_name = %change.target, op = change.op.as_str(), object = %change.object, "not applied")
            }
            None => {
                tracing::info!(target_name = %change.target, op = change.op.as_str(), object = %change.object, "planned")
            }
        }
    }
    for refusal in &report.plan.refusals {
        tracing::warn!(guard = refusal.guard, target_name = %refusal.target, object = %refusal.object, reason = %refusal.reason, "refused by guard");
    }
    for problem in report.plan.unrepairable.iter().chain(&report.problems) {
        tracing::warn!(target_name = problem.target.as_deref().unwrap_or("-"), object = %problem.object, "{}", problem.message);
    }
    for error in &report.errors {
        tracing::error!(target_name = %error.target, "{}", error.message);
    }
    for f in &report.forecast {
        tracing::warn!(source = %f.source, instance = %f.instance, name = %f.name, code = %f.code, not_before = f.not_before, records = ?f.records, servers = ?f.servers, "scheduled maintenance will change this instance's addresses");
    }
    for (target, result) in &report.written {
        if let Err(message) = result {
            tracing::error!(target_name = %target, "{message}");
        }
    }
}

/// Updates every metric from one pass.
fn record_metrics(
    metrics: &Metrics,
    config: &Config,
    outcome: &PassOutcome,
    address_changes: &BTreeMap<String, u64>,
    elapsed: Duration,
) {
    let report = &outcome.report;
    metrics.reconcile_duration.observe(elapsed.as_secs_f64());
    for target in config.target_names() {
        let label = TargetLabel {
            target: target.clone(),
        };
        metrics
            .drift_objects
            .get_or_create(&label)
            .set(report.remaining_drift(&target) as i64);
        let read_failed = report.errors.iter().any(|e| e.target == target);
        metrics
            .target_up
            .get_or_create(&label)
            .set(i64::from(!read_failed));
        let write_failed = matches!(report.written.get(&target), Some(Err(_)));
        if read_failed || write_failed {
            metrics.errors.get_or_create(&label).inc();
        }
        if report.verify_failed.contains(&target) {
            metrics.verify_failures.get_or_create(&label).inc();
        }
    }
    for change in &report.plan.changes {
        if let Some(Ok(())) = report.written.get(&change.target) {
            let labels = ChangeLabels {
                target: change.target.clone(),
                op: change.op.as_str().to_string(),
            };
            metrics.changes.get_or_create(&labels).inc();
        }
    }
    for refusal in &report.plan.refusals {
        metrics
            .guard_refusals
            .get_or_create(&GuardLabel {
                guard: refusal.guard.to_string(),
            })
            .inc();
    }
    for (source, snapshot) in &outcome.sources {
        let label = TargetLabel {
            target: source.clone(),
        };
        match snapshot {
            SourceSnapshot::Listed(list) => {
                metrics
                    .instances
                    .get_or_create(&SourceLabel {
                        source: source.clone(),
                    })
                    .set(list.len() as i64);
                metrics.target_up.get_or_create(&label).set(1);
            }
            SourceSnapshot::Failed => {
                metrics.target_up.get_or_create(&label).set(0);
                metrics.errors.get_or_create(&label).inc();
            }
        }
    }
    for (source, count) in address_changes {
        metrics
            .address_changes
            .get_or_create(&SourceLabel {
                source: source.clone(),
            })
            .inc_by(*count);
    }
    if !report.failed() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        metrics.last_success.set(now.as_secs_f64());
    }
}

/// The interval plus up to 10 % jitter, so that several controllers do not pass in lockstep.
fn next_delay(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + rand::random::<f64>() * 0.1)
}

/// Per-target exponential backoff with jitter after failed passes (backon's schedule);
/// a success resets it.
#[derive(Default)]
struct Backoffs {
    targets: BTreeMap<String, (tokio::time::Instant, backon::ExponentialBackoff)>,
}

impl Backoffs {
    /// Targets still waiting, with the time left.
    fn resting(&self, now: tokio::time::Instant) -> BTreeMap<String, Duration> {
        self.targets
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(target, (until, _))| (target.clone(), *until - now))
            .collect()
    }

    /// Records a pass: failed targets wait longer each time, others start afresh.
    /// Targets that rested this pass keep their schedule.
    fn record(
        &mut self,
        report: &PassReport,
        targets: &[String],
        resting: &BTreeMap<String, Duration>,
        interval: Duration,
    ) {
        let now = tokio::time::Instant::now();
        for target in targets.iter().filter(|t| !resting.contains_key(*t)) {
            let failed = report.errors.iter().any(|e| &e.target == target)
                || matches!(report.written.get(target), Some(Err(_)));
            if !failed {
                self.targets.remove(target);
                continue;
            }
            let (until, schedule) = self.targets.entry(target.clone()).or_insert_with(|| {
                let schedule = backon::ExponentialBuilder::default()
                    .with_min_delay(interval)
                    .with_max_delay(MAX_BACKOFF.max(interval))
                    .with_factor(2.0)
                    .with_jitter()
                    .without_max_times()
                    .build();
                (now, schedule)
            });
            // The first failure retries at the next pass; later ones wait longer.
            if let Some(delay) = schedule.next() {
                *until = now + delay.saturating_sub(interval);
            }
        }
    }
}

/// The longest a failing target is left alone between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Re-reads the configuration on SIGHUP; `Err` carries a message for the log.
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Runs the controller until `shutdown` turns true. Each message on `reload` re-reads the
/// config with `load`: a valid one replaces the running one, an invalid one is logged and
/// the running one stays.
pub async fn run(
    config: Arc<Config>,
    shutdown: watch::Receiver<bool>,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    load: ConfigLoader,
) -> anyhow::Result<()> {
    let mut config = config;
    let mut reconciler = Reconciler::new(config.clone(), false)?;
    let sources: Vec<String> = config.inventories.iter().map(|i| i.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&config.target_names(), &sources, &GUARDS));
    let state = Arc::new(AdminState::new(metrics.clone(), ready_window(&config)));
    let server = admin::serve(config.controller.listen, state.clone(), shutdown.clone()).await?;
    tracing::info!(listen = %config.controller.listen, interval = %humantime::format_duration(config.controller.interval), config = %config.path.display(), "ipdrift controller started");

    let mut memory = AddressMemory::new();
    let mut backoffs = Backoffs::default();
    let mut shutdown_rx = shutdown.clone();
    loop {
        let started = tokio::time::Instant::now();
        let resting = backoffs.resting(started);
        let outcome = reconciler.pass_resting(Mode::Apply, &resting).await;
        let address_changes = count_address_changes(&mut memory, &outcome.sources);
        log_report(&outcome.report);
        record_metrics(
            &metrics,
            &config,
            &outcome,
            &address_changes,
            started.elapsed(),
        );
        backoffs.record(
            &outcome.report,
            &config.target_names(),
            &resting,
            config.controller.interval,
        );
        if !outcome.report.failed() {
            state.mark_success();
        }
        tokio::select! {
            _ = tokio::time::sleep(next_delay(config.controller.interval)) => {}
            Some(()) = reload.recv() => {
                match load().and_then(|new| {
                    let new = Arc::new(new);
                    Reconciler::new(new.clone(), false).map(|r| (new, r)).map_err(|e| format!("{e:#}"))
                }) {
                    Ok((new, new_reconciler)) => {
                        if new.controller.listen != config.controller.listen {
                            tracing::warn!(listen = %new.controller.listen, "controller.listen changed; it takes effect at the next restart");
                        }
                        config = new;
                        reconciler = new_reconciler;
                        backoffs = Backoffs::default();
                        state.set_ready_window(ready_window(&config));
                        tracing::info!(config = %config.path.display(), "configuration reloaded");
                    }
                    Err(message) => {
                        tracing::error!(config = %config.path.display(), "configuration not reloaded, the running one stays: {message}");
                    }
                }
            }
            _ = shutdown_rx.wait_for(|stop| *stop) => break,
        }
    }
    tracing::info!("ipdrift controller stopping");
    let _ = server.await;
    Ok(())
}

/// How old the last good pass may be for /readyz: three intervals and two timeouts.
fn ready_window(config: &Config) -> Duration {
    config.controller.interval * 3 + config.controller.timeout * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Instance, InstanceState};

    fn instance(id: &str, public: &str) -> Instance {
        Instance {
            id: id.into(),
            name: id.into(),
            state: InstanceState::Running,
            public_ipv4: Some(public.parse().unwrap()),
            private_ipv4: None,
            ipv6: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn address_changes_are_counted_per_source_from_the_second_pass() {
        let mut memory = AddressMemory::new();
        let first = BTreeMap::from([(
            "local".to_string(),
            SourceSnapshot::Listed(vec![
                instance("i-1", "192.0.2.1"),
                instance("i-2", "192.0.2.2"),
            ]),
        )]);
        assert_eq!(count_address_changes(&mut memory, &first)["local"], 0);
        let second = BTreeMap::from([(
            "local".to_string(),
            SourceSnapshot::Listed(vec![
                instance("i-1", "198.51.100.1"),
                instance("i-2", "192.0.2.2"),
            ]),
        )]);
        assert_eq!(count_address_changes(&mut memory, &second)["local"], 1);
        let failed = BTreeMap::from([("local".to_string(), SourceSnapshot::Failed)]);
        assert!(count_address_changes(&mut memory, &failed).is_empty());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = next_delay(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
    }
}
