//! `ipdrift run`: a pass every interval (with a little jitter), and one soon after each
//! burst of triggers (a source's watch, `POST /reconcile`; see [`crate::trigger`]);
//! metrics, readiness, the audit log and notifications updated after each, until SIGINT
//! or SIGTERM. Targets are
//! written independently, so a dead load balancer never holds back DNS repair. The loop
//! never stops on an error, and never waits for a webhook. With `[ha]` only the elected
//! leader writes and notifies; the others pass read-only, so their metrics still say
//! what is out of sync, and take over when elected.

pub mod backoff;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::admin::{self, AdminState};
use crate::audit::tracker::{PassEvents, Tracker};
use crate::audit::{self, AuditLog, Event, Record};
use crate::config::{self, Config};
use crate::desired::SourceSnapshot;
use crate::dns::secondaries::Served;
use crate::ha::{Fence, Leadership};
use crate::metrics::{
    ChangeLabels, GuardLabel, Metrics, ScheduledEventLabels, SourceLabel, TargetLabel,
};
use crate::notify::{Notice, Notifier};
use crate::plan::{GUARDS, PassReport};
use crate::reconcile::{self, Io, Mode, Parts, PassOutcome, Reconciler, Timing};
use crate::trigger::{PassId, Triggers};
use backoff::Backoffs;

/// How long a pass under way when the controller is told to stop may take to end.
const STOP_DURING_PASS: Duration = Duration::from_millis(800);

/// How long queued notifications may still go out after SIGTERM.
const NOTIFY_GRACE: Duration = Duration::from_secs(2);

/// Seconds since the Unix epoch, for timestamp gauges.
fn unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// How long the target's batch took to write this pass, if it was written.
fn write_duration(timings: &[Timing], target: &str) -> Option<f64> {
    timings
        .iter()
        .find(|t| t.io == Io::Write && t.target == target)
        .map(|t| t.duration.as_secs_f64())
}

/// Logs a pass's outcome with structured fields (`target`, `object`, `from`, `to`,
/// `duration` in seconds), in text and JSON alike.
pub fn log_pass(outcome: &PassOutcome, events: &PassEvents, pass: PassId, elapsed: Duration) {
    let report = &outcome.report;
    for record in &events.records {
        if let Event::AddressChanged {
            source,
            instance,
            name,
            address,
            old,
            new,
        } = &record.event
        {
            tracing::info!(source = %source, instance = ?instance, name = ?name, address = address.as_str(), from = %old, to = %new, "instance address changed");
        }
        if let Event::Maintenance {
            target,
            object,
            step,
            reason,
        } = &record.event
        {
            tracing::info!(target = %target, object = %object, step = %step, "maintenance: {reason}");
        }
    }
    for change in &report.plan.changes {
        let from = change.from.as_deref().unwrap_or("-");
        let to = change.to.as_deref().unwrap_or("-");
        let op = change.op.as_str();
        match report.written.get(&change.target) {
            Some(Ok(())) => {
                let duration = write_duration(&outcome.timings, &change.target);
                tracing::info!(target = %change.target, op, object = %change.object, from, to, duration, "applied")
            }
            Some(Err(_)) => {
                tracing::warn!(target = %change.target, op, object = %change.object, from, to, "not applied")
            }
            None => {
                tracing::info!(target = %change.target, op, object = %change.object, from, to, "planned")
            }
        }
    }
    for refusal in &report.plan.refusals {
        tracing::warn!(guard = refusal.guard, target = %refusal.target, object = %refusal.object, reason = %refusal.reason, "refused by guard");
    }
    for problem in report.plan.unrepairable.iter().chain(&report.problems) {
        tracing::warn!(target = problem.target.as_deref().unwrap_or("-"), object = %problem.object, "{}", problem.message);
    }
    for error in &report.errors {
        tracing::error!(target = %error.target, "{}", error.message);
    }
    for (target, result) in &report.written {
        if let Err(message) = result {
            tracing::error!(target = %target, "{message}");
        }
    }
    for (target, secondaries) in &report.secondaries {
        for secondary in secondaries {
            match secondary.state {
                Served::Lagging { .. } => {
                    tracing::warn!(target = %target, secondary = %secondary.addr, "{secondary}")
                }
                Served::After(after) => {
                    tracing::info!(target = %target, secondary = %secondary.addr, duration = audit::seconds(after), "{secondary}")
                }
                Served::InSync => {}
            }
        }
    }
    for (target, lasted) in &events.converged {
        tracing::info!(target = %target, duration = audit::seconds(*lasted), "converged");
    }
    let duration = audit::seconds(elapsed);
    if events.records.is_empty() {
        tracing::debug!(pass, duration, "pass finished");
    } else {
        tracing::info!(pass, duration, "pass finished");
    }
}

/// Updates every metric from one pass.
fn record_metrics(
    metrics: &Metrics,
    config: &Config,
    outcome: &PassOutcome,
    events: &PassEvents,
    tracker: &Tracker,
    finished: OffsetDateTime,
    elapsed: Duration,
) {
    let report = &outcome.report;
    metrics.reconcile_duration.observe(elapsed.as_secs_f64());
    for target in config.target_names() {
        let label = TargetLabel {
            target: target.clone(),
        };
        let read_failed = report.errors.iter().any(|e| e.target == target);
        // A target that could not be read has unknown drift: NaN, never a reassuring 0.
        let drift = if read_failed {
            f64::NAN
        } else {
            report.remaining_drift(&target) as f64
        };
        metrics.drift_objects.get_or_create(&label).set(drift);
        metrics
            .drift_started
            .get_or_create(&label)
            .set(tracker.drift_started(&target).map_or(0.0, unix_seconds));
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
        let in_maintenance = report
            .maintenance
            .iter()
            .filter(|m| m.target == target && m.step.in_maintenance())
            .count();
        metrics
            .maintenance_objects
            .get_or_create(&label)
            .set(i64::try_from(in_maintenance).unwrap_or(i64::MAX));
        let secondaries = report
            .secondaries
            .get(&target)
            .map_or(&[][..], Vec::as_slice);
        let lagging = secondaries.iter().filter(|s| s.is_lagging()).count();
        metrics
            .secondaries_lagging
            .get_or_create(&label)
            .set(i64::try_from(lagging).unwrap_or(i64::MAX));
        // A write's propagation time is known once the last secondary served it.
        let served: Option<Vec<Duration>> = secondaries
            .iter()
            .map(|s| match s.state {
                Served::After(after) => Some(after),
                _ => None,
            })
            .collect();
        if let Some(last) = served.and_then(|times| times.into_iter().max()) {
            metrics
                .propagation
                .get_or_create(&label)
                .observe(last.as_secs_f64());
        }
    }
    // Events come and go: the family holds exactly the ones announced now.
    metrics.scheduled_events.clear();
    for f in &report.forecast {
        let labels = ScheduledEventLabels {
            source: f.source.clone(),
            instance: f.instance.clone(),
            code: f.code.clone(),
        };
        metrics
            .scheduled_events
            .get_or_create(&labels)
            .set(f.not_before as f64);
    }
    for timing in &outcome.timings {
        let family = match timing.io {
            Io::Read => &metrics.read_duration,
            Io::Write => &metrics.write_duration,
        };
        family
            .get_or_create(&TargetLabel {
                target: timing.target.clone(),
            })
            .observe(timing.duration.as_secs_f64());
    }
    for (_, lasted) in &events.converged {
        metrics.time_to_converge.observe(lasted.as_secs_f64());
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
    for (source, count) in &events.address_changes {
        metrics
            .address_changes
            .get_or_create(&SourceLabel {
                source: source.clone(),
            })
            .inc_by(*count);
    }
    if !report.failed() {
        metrics.last_success.set(unix_seconds(finished));
    }
}

/// Sources and targets, the names the tracker follows.
pub fn tracked_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.inventories.iter().map(|i| i.name.clone()).collect();
    names.extend(config.target_names());
    names
}

/// Appends a pass's records to the audit log, if one is configured; a failure is logged
/// and counted, never fatal: the repair matters more than its record.
fn write_audit(log: Option<&AuditLog>, records: &[Record], metrics: &Metrics) {
    let Some(log) = log else { return };
    if records.is_empty() {
        return;
    }
    if let Err(e) = log.append(records) {
        metrics.audit_log_errors.inc();
        tracing::error!(path = %log.path().display(), error = %e, "cannot append to the audit log");
    }
}

/// Sends the pass's notices: drift detected, repaired, new refusals, repair failing.
fn notify(notifier: &Notifier, events: &PassEvents, finished: OffsetDateTime) {
    for record in &events.records {
        if let Some(notice) = Notice::from_event(&record.event) {
            notifier.notify(record.ts, &notice);
        }
    }
    for failing in &events.failing {
        notifier.notify(
            finished,
            &Notice::RepairFailing {
                target: failing.target.clone(),
                passes: failing.passes,
                reason: failing.reason.clone(),
            },
        );
    }
}

/// Announced events already warned about and notified, so that each is told once.
type Announced = std::collections::BTreeSet<(String, String, String, u64)>;

/// Warns about (and notifies of) each newly announced address-changing event; forgets
/// events that are no longer announced.
fn announce_forecast(
    report: &PassReport,
    announced: &mut Announced,
    notifier: &Notifier,
    now: OffsetDateTime,
) {
    let key = |f: &crate::forecast::Forecast| {
        (
            f.source.clone(),
            f.instance.clone(),
            f.code.clone(),
            f.not_before,
        )
    };
    announced.retain(|k| report.forecast.iter().any(|f| &key(f) == k));
    for f in &report.forecast {
        if announced.insert(key(f)) {
            tracing::warn!(source = %f.source, instance = ?f.instance, name = ?f.name, code = ?f.code, not_before = f.not_before, records = ?f.records, servers = ?f.servers, "scheduled maintenance will change this instance's addresses");
            notifier.notify(now, &Notice::from(f));
        }
    }
}

/// When passes start: on a fixed grid, `origin + k × interval`, so a change waits at most
/// one interval plus one pass whatever the passes take. The origin is offset by up to 10 %
/// of the interval, drawn once, so that several controllers do not pass in lockstep. A pass
/// that overruns skips the ticks it missed rather than running passes back to back.
struct Schedule {
    origin: Instant,
    interval: Duration,
}

impl Schedule {
    /// A schedule whose first tick is one interval (plus the offset) after `now`, the
    /// start of a pass; `draw` (from [0, 1)) picks the offset.
    fn new(now: Instant, interval: Duration, draw: f64) -> Schedule {
        Schedule {
            origin: now + interval + interval.mul_f64(backoff::fraction(draw) * 0.1),
            interval,
        }
    }

    /// The first tick strictly after `now`.
    fn next_after(&self, now: Instant) -> Instant {
        if now < self.origin {
            return self.origin;
        }
        let elapsed = (now - self.origin).as_nanos();
        let step = self.interval.as_nanos().max(1);
        let ticks = elapsed / step + 1;
        self.origin + Duration::from_nanos(u64::try_from(ticks * step).unwrap_or(u64::MAX))
    }
}

/// Moves each target tried this pass along its backoff: a failure waits longer, a success
/// starts afresh. Targets that rested this pass keep their place.
fn record_backoffs(
    backoffs: &mut Backoffs<Instant>,
    report: &PassReport,
    targets: &[String],
    resting: &BTreeMap<String, Duration>,
    jitter: &mut Jitter,
) {
    let now = Instant::now();
    for target in targets.iter().filter(|t| !resting.contains_key(*t)) {
        let failed = report.errors.iter().any(|e| &e.target == target)
            || matches!(report.written.get(target), Some(Err(_)));
        if failed {
            backoffs.failed(target, now, jitter());
        } else {
            backoffs.succeeded(target);
        }
    }
}

/// Re-reads the configuration on SIGHUP; `Err` carries a message for the log.
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Builds the sources and targets of a config: [`reconcile::build::parts`], or fakes in
/// tests. Called at start and on each reload.
pub type Build = Box<dyn Fn(&Config) -> anyhow::Result<Parts> + Send + Sync>;

/// Random draws from [0, 1) for the offset of the pass schedule and the backoff jitter
/// (others count as 0).
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// What [`run`] is connected to besides its config.
pub struct Wiring {
    /// The admin server's socket, bound by the caller ([`admin::bind`]).
    pub listener: TcpListener,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Each message asks for a reload through `load`.
    pub reload: mpsc::Receiver<()>,
    pub load: ConfigLoader,
    pub build: Build,
    pub jitter: Jitter,
}

impl Wiring {
    /// Real sources and targets, random jitter.
    pub fn new(
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
        reload: mpsc::Receiver<()>,
        load: ConfigLoader,
    ) -> Wiring {
        Wiring {
            listener,
            shutdown,
            reload,
            load,
            build: Box::new(reconcile::build::parts),
            jitter: Box::new(rand::random::<f64>),
        }
    }
}

/// How old the last good pass may be for /readyz: three intervals and two timeouts.
fn ready_window(config: &Config) -> Duration {
    config.controller.interval * 3 + config.controller.timeout * 2
}

/// Runs the controller until `shutdown` turns true, serving /metrics on `listener`. Each
/// message on `reload` re-reads the config with `load`: a valid one replaces the running
/// one (the listen address, the audit log and the webhooks take effect at the next
/// restart), an invalid one is logged and the running one stays.
pub async fn run(config: Arc<Config>, wiring: Wiring) -> anyhow::Result<()> {
    let Wiring {
        listener,
        shutdown,
        mut reload,
        load,
        build,
        mut jitter,
    } = wiring;
    let mut config = config;
    let token = config
        .controller
        .read_reconcile_token()
        .map_err(anyhow::Error::msg)?;
    let reconciler = Reconciler::from_parts(config.clone(), build(&config)?, false);
    let sources: Vec<String> = config.inventories.iter().map(|i| i.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(&config.target_names(), &sources, &GUARDS));
    let instance = config
        .ha
        .as_ref()
        .map_or_else(config::default_instance, |ha| ha.instance_name());
    let leader_gauge = metrics.leader_gauge(&instance);
    let leadership = match &config.ha {
        Some(ha) => Some(Leadership::start(ha, leader_gauge)?),
        None => {
            leader_gauge.set(1);
            None
        }
    };
    let fence = leadership
        .as_ref()
        .map_or_else(Fence::alone, Leadership::fence);
    let mut reconciler = reconciler.with_fence(fence.clone());
    metrics
        .reconcile_interval
        .set(config.controller.interval.as_secs_f64());
    let audit_log = (config.controller.audit_log.clone())
        .map(|path| AuditLog::new(path).with_fsync(config.controller.audit_fsync));
    if let Some(log) = &audit_log {
        let started = Record {
            ts: audit::now(),
            event: Event::Started {
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        };
        log.append(&[started]).with_context(|| {
            format!(
                "cannot append to the audit log {}; fix controller.audit_log or the directory's permissions",
                log.path().display()
            )
        })?;
    }
    let notifier = Notifier::start(&config.notify, metrics.clone())?;
    let mut triggers = Triggers::new(config.controller.debounce, fence.clone());
    let mut watches = reconciler.watch(&triggers.trigger());
    let state = Arc::new(AdminState::new(
        metrics.clone(),
        ready_window(&config),
        triggers.trigger(),
    ));
    state.set_reconcile_token(token.as_deref());
    let listen = listener.local_addr().unwrap_or(config.controller.listen);
    let server = admin::serve(listener, state.clone(), shutdown.clone());
    tracing::info!(listen = %listen, interval = %humantime::format_duration(config.controller.interval), config = %config.path.display(), "ipdrift controller started");

    let mut tracker = Tracker::new(tracked_names(&config));
    let mut backoffs = Backoffs::new(config.controller.interval);
    let mut announced = Announced::new();
    let mut schedule = Schedule::new(Instant::now(), config.controller.interval, jitter());
    let mut first_pass = true;
    let mut shutdown_rx = shutdown.clone();
    loop {
        let (pass, causes) = triggers.start_pass();
        if !causes.is_empty() {
            let causes: Vec<String> = causes.iter().map(ToString::to_string).collect();
            tracing::info!(pass, trigger = %causes.join(", "), "pass triggered");
        }
        let started_at = audit::now();
        let started = Instant::now();
        let resting = backoffs.resting(started);
        // A follower observes; the fence is checked again right before each write batch.
        let mode = if fence.holds() {
            Mode::Apply
        } else {
            Mode::ReadOnly
        };
        let (outcome, stopping) = {
            let pass = reconciler.pass_resting(mode, &resting);
            tokio::pin!(pass);
            tokio::select! {
                outcome = &mut pass => (outcome, false),
                _ = shutdown_rx.wait_for(|stop| *stop) => {
                    // A slow source (an exec command, a hung API) must not hold the stop
                    // up: the pass gets a moment to end, then is abandoned (its commands
                    // are killed).
                    match tokio::time::timeout(STOP_DURING_PASS, &mut pass).await {
                        Ok(outcome) => (outcome, true),
                        Err(_) => {
                            tracing::warn!("stopping during a pass: abandoned it after {}; the next run repairs what it left", humantime::format_duration(STOP_DURING_PASS));
                            break;
                        }
                    }
                }
            }
        };
        let elapsed = started.elapsed();
        let finished_at = audit::now();
        let mut events =
            tracker.observe(&outcome.report, &outcome.sources, started_at, finished_at);
        log_pass(&outcome, &events, pass, elapsed);
        record_metrics(
            &metrics,
            &config,
            &outcome,
            &events,
            &tracker,
            finished_at,
            elapsed,
        );
        // Notifying is the leader's job: the others would repeat every notice.
        if mode == Mode::Apply {
            notify(&notifier, &events, finished_at);
            announce_forecast(&outcome.report, &mut announced, &notifier, finished_at);
        }
        // The first pass is always recorded: it tells a timeline what is still wrong after a restart.
        if !events.records.is_empty() || first_pass {
            events
                .records
                .push(tracker.pass_record(&outcome.report, finished_at, elapsed));
        }
        write_audit(audit_log.as_ref(), &events.records, &metrics);
        first_pass = false;
        record_backoffs(
            &mut backoffs,
            &outcome.report,
            &config.target_names(),
            &resting,
            &mut jitter,
        );
        if !outcome.report.failed() {
            state.mark_success();
        }
        triggers.finish_pass(pass);
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(schedule.next_after(Instant::now())) => {}
            // A newly elected leader repairs at once rather than after the interval.
            _ = fence.until_leader(), if mode == Mode::ReadOnly => {}
            () = triggers.burst() => {}
            Some(()) = reload.recv() => {
                match load().and_then(|new| {
                    let token = new.controller.read_reconcile_token()?;
                    let new = Arc::new(new);
                    build(&new)
                        .map(|parts| {
                            let r = Reconciler::from_parts(new.clone(), parts, false);
                            (new, r.with_fence(fence.clone()), token)
                        })
                        .map_err(|e| format!("{e:#}"))
                }) {
                    Ok((new, new_reconciler, token)) => {
                        if new.controller.listen != config.controller.listen
                            || new.controller.audit_log != config.controller.audit_log
                            || new.notify != config.notify
                            || new.ha != config.ha
                        {
                            tracing::warn!("controller.listen, controller.audit_log, [[notify]] and [ha] changes take effect at the next restart");
                        }
                        if tracked_names(&new) != tracked_names(&config) {
                            tracker = Tracker::new(tracked_names(&new));
                        }
                        config = new;
                        reconciler = new_reconciler;
                        // The new watches start before the old ones stop: no change is missed.
                        watches = reconciler.watch(&triggers.trigger());
                        triggers.set_debounce(config.controller.debounce);
                        state.set_reconcile_token(token.as_deref());
                        backoffs = Backoffs::new(config.controller.interval);
                        metrics.reconcile_interval.set(config.controller.interval.as_secs_f64());
                        schedule = Schedule::new(Instant::now(), config.controller.interval, jitter());
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
    // The watches ran until here: no trigger is wanted past the last pass.
    drop(watches);
    if let Some(leadership) = leadership {
        leadership.stop().await;
    }
    notifier.shutdown(NOTIFY_GRACE).await;
    let _ = server.await;
    Ok(())
}

/// Appends the records of a one-shot `apply` to the audit log, if one is configured. A
/// fresh tracker: drift found and repaired in this pass is recorded as detected, changed
/// and converged.
pub fn audit_one_pass(
    config: &Config,
    outcome: &PassOutcome,
    started: OffsetDateTime,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let Some(path) = &config.controller.audit_log else {
        return Ok(());
    };
    let finished = audit::now();
    let mut tracker = Tracker::new(tracked_names(config));
    let mut records = tracker
        .observe(&outcome.report, &outcome.sources, started, finished)
        .records;
    if records.is_empty() {
        return Ok(());
    }
    records.push(tracker.pass_record(&outcome.report, finished, elapsed));
    AuditLog::new(path.clone())
        .with_fsync(config.controller.audit_fsync)
        .append(&records)
        .with_context(|| format!("cannot append to the audit log {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_start_on_a_fixed_grid_offset_by_at_most_ten_percent() {
        let start = Instant::now();
        let interval = Duration::from_secs(10);
        for draw in [0.0, 0.3, 0.999, 1.0, 2.0, -1.0] {
            let schedule = Schedule::new(start, interval, draw);
            let offset = schedule.origin - start - interval;
            assert!(offset <= Duration::from_secs(1), "{offset:?}");
            // A quick pass: the next one starts at the first tick.
            assert_eq!(
                schedule.next_after(start + Duration::from_millis(50)),
                schedule.origin
            );
            // After that, ticks are one interval apart, whatever the pass took.
            let second = schedule.next_after(schedule.origin);
            assert_eq!(second - schedule.origin, interval);
            assert_eq!(
                schedule.next_after(second + Duration::from_secs(3)),
                second + interval
            );
            // An overrun skips the missed tick instead of running back to back.
            assert_eq!(
                schedule.next_after(second + Duration::from_secs(15)),
                second + interval * 2
            );
        }
    }
}
