//! Prometheus metrics: the exposed names as constants, and the registry that `/metrics`
//! encodes (OpenMetrics text). Labelled families are initialised to zero for every
//! configured target and source, so that alerts see zeros rather than absent series. Label
//! values come from config (targets, sources, guards, ops) or small fixed sets, never from
//! addresses, so cardinality stays bounded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plan::Op;

pub const LAST_RECONCILE_SUCCESS_TIMESTAMP: &str =
    "ipdrift_last_reconcile_success_timestamp_seconds";
pub const RECONCILE_DURATION: &str = "ipdrift_reconcile_duration_seconds";
pub const DRIFT_OBJECTS: &str = "ipdrift_drift_objects";
pub const CHANGES_TOTAL: &str = "ipdrift_changes_total";
pub const ERRORS_TOTAL: &str = "ipdrift_errors_total";
pub const TARGET_UP: &str = "ipdrift_target_up";
pub const INSTANCES: &str = "ipdrift_instances";
pub const INSTANCE_ADDRESS_CHANGES_TOTAL: &str = "ipdrift_instance_address_changes_total";
pub const GUARD_REFUSALS_TOTAL: &str = "ipdrift_guard_refusals_total";
pub const VERIFY_FAILURES_TOTAL: &str = "ipdrift_verify_failures_total";
pub const BUILD_INFO: &str = "ipdrift_build_info";
pub const RECONCILE_INTERVAL: &str = "ipdrift_reconcile_interval_seconds";
pub const TIME_TO_CONVERGE: &str = "ipdrift_time_to_converge_seconds";
pub const DRIFT_STARTED_TIMESTAMP: &str = "ipdrift_drift_started_timestamp_seconds";
pub const TARGET_READ_DURATION: &str = "ipdrift_target_read_duration_seconds";
pub const TARGET_WRITE_DURATION: &str = "ipdrift_target_write_duration_seconds";
pub const SCHEDULED_EVENTS: &str = "ipdrift_scheduled_events";
pub const NOTIFICATIONS_TOTAL: &str = "ipdrift_notifications_total";
pub const AUDIT_LOG_ERRORS_TOTAL: &str = "ipdrift_audit_log_errors_total";
pub const LEADER: &str = "ipdrift_leader";
pub const MAINTENANCE_OBJECTS: &str = "ipdrift_maintenance_objects";
pub const PROPAGATION_SECONDS: &str = "ipdrift_propagation_seconds";
pub const SECONDARIES_LAGGING: &str = "ipdrift_secondaries_lagging";

/// Every metric family `/metrics` exposes, by its exposed name.
pub const ALL: [&str; 23] = [
    LAST_RECONCILE_SUCCESS_TIMESTAMP,
    RECONCILE_DURATION,
    DRIFT_OBJECTS,
    CHANGES_TOTAL,
    ERRORS_TOTAL,
    TARGET_UP,
    INSTANCES,
    INSTANCE_ADDRESS_CHANGES_TOTAL,
    GUARD_REFUSALS_TOTAL,
    VERIFY_FAILURES_TOTAL,
    BUILD_INFO,
    RECONCILE_INTERVAL,
    TIME_TO_CONVERGE,
    DRIFT_STARTED_TIMESTAMP,
    TARGET_READ_DURATION,
    TARGET_WRITE_DURATION,
    SCHEDULED_EVENTS,
    NOTIFICATIONS_TOTAL,
    AUDIT_LOG_ERRORS_TOTAL,
    LEADER,
    MAINTENANCE_OBJECTS,
    PROPAGATION_SECONDS,
    SECONDARIES_LAGGING,
];

/// Values of the `result` label of [`NOTIFICATIONS_TOTAL`].
pub const NOTIFICATION_RESULTS: [&str; 3] = ["sent", "failed", "dropped"];

/// The content type `/metrics` is served with.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub target: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabel {
    pub guard: String,
}

/// A provider's announced event (maintenance, reboot, migration) that will change an
/// instance's addresses. `code` is the provider's event type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduledEventLabels {
    pub source: String,
    pub instance: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// This controller's `ha.instance` name (the host name by default).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Every metric ipdrift exports.
pub struct Metrics {
    registry: Registry,
    pub last_success: Gauge<f64, AtomicU64>,
    pub reconcile_duration: Histogram,
    /// NaN while the target cannot be read: its drift is unknown, not zero.
    pub drift_objects: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    pub changes: Family<ChangeLabels, Counter>,
    pub errors: Family<TargetLabel, Counter>,
    pub target_up: Family<TargetLabel, Gauge>,
    pub instances: Family<SourceLabel, Gauge>,
    pub address_changes: Family<SourceLabel, Counter>,
    pub guard_refusals: Family<GuardLabel, Counter>,
    pub verify_failures: Family<TargetLabel, Counter>,
    pub reconcile_interval: Gauge<f64, AtomicU64>,
    pub time_to_converge: Histogram,
    pub drift_started: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    pub read_duration: Family<TargetLabel, Histogram, fn() -> Histogram>,
    pub write_duration: Family<TargetLabel, Histogram, fn() -> Histogram>,
    /// Empty until an inventory source reports scheduled events; the value is the Unix time
    /// the event starts.
    pub scheduled_events: Family<ScheduledEventLabels, Gauge<f64, AtomicU64>>,
    /// Record sets at `maintenance_ttl` and servers draining for announced maintenance.
    pub maintenance_objects: Family<TargetLabel, Gauge>,
    pub notifications: Family<ResultLabel, Counter>,
    pub audit_log_errors: Counter,
    /// One series, for this controller: see [`Metrics::leader_gauge`].
    leader: Family<InstanceLabel, Gauge>,
    pub propagation: Family<TargetLabel, Histogram, fn() -> Histogram>,
    pub secondaries_lagging: Family<TargetLabel, Gauge>,
}

/// Buckets for a write's propagation to the last secondary: 10 ms to about 80 s.
fn propagation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Buckets for one network call to a source or target: 1 ms to about 8 s.
fn io_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// Counters are registered without `_total`: the OpenMetrics encoder appends it.
fn counter_name(exposed: &str) -> &str {
    exposed.strip_suffix("_total").unwrap_or(exposed)
}

impl Metrics {
    /// Builds the registry with a zero series for each target, source and guard.
    pub fn new(targets: &[String], sources: &[String], guards: &[&str]) -> Metrics {
        let mut registry = Registry::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            LAST_RECONCILE_SUCCESS_TIMESTAMP,
            "Unix time of the last pass in which every source and target worked",
            last_success.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            RECONCILE_DURATION,
            "Duration of one reconcile pass (observe, plan, apply, verify)",
            reconcile_duration.clone(),
        );
        let drift_objects = Family::<TargetLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            DRIFT_OBJECTS,
            "Objects on the target that differ from the desired state, as of the last pass",
            drift_objects.clone(),
        );
        let changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            counter_name(CHANGES_TOTAL),
            "Changes written to targets, by operation",
            changes.clone(),
        );
        let errors = Family::<TargetLabel, Counter>::default();
        registry.register(
            counter_name(ERRORS_TOTAL),
            "Failed reads or writes, by source or target",
            errors.clone(),
        );
        let target_up = Family::<TargetLabel, Gauge>::default();
        registry.register(
            TARGET_UP,
            "1 when the last read of the target or source succeeded",
            target_up.clone(),
        );
        let instances = Family::<SourceLabel, Gauge>::default();
        registry.register(
            INSTANCES,
            "Instances listed by the source in the last successful listing",
            instances.clone(),
        );
        let address_changes = Family::<SourceLabel, Counter>::default();
        registry.register(
            counter_name(INSTANCE_ADDRESS_CHANGES_TOTAL),
            "Instance addresses seen to change between passes",
            address_changes.clone(),
        );
        let guard_refusals = Family::<GuardLabel, Counter>::default();
        registry.register(
            counter_name(GUARD_REFUSALS_TOTAL),
            "Changes withheld by a safety guard, by guard",
            guard_refusals.clone(),
        );
        let verify_failures = Family::<TargetLabel, Counter>::default();
        registry.register(
            counter_name(VERIFY_FAILURES_TOTAL),
            "Writes that were accepted but did not read back, by target",
            verify_failures.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            BUILD_INFO,
            "Always 1; labelled with the version",
            build_info.clone(),
        );
        let reconcile_interval = Gauge::<f64, AtomicU64>::default();
        registry.register(
            RECONCILE_INTERVAL,
            "Configured time between passes; alerts count missed intervals with it",
            reconcile_interval.clone(),
        );
        // From a quarter second (repaired within its own pass) to about an hour.
        let time_to_converge = Histogram::new(exponential_buckets(0.25, 2.0, 15));
        registry.register(
            TIME_TO_CONVERGE,
            "Time from the pass that first saw a target drift to the pass that verified it fixed",
            time_to_converge.clone(),
        );
        let drift_started = Family::<TargetLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            DRIFT_STARTED_TIMESTAMP,
            "Unix time the target's current drift was first seen; 0 when it is in sync",
            drift_started.clone(),
        );
        let read_duration =
            Family::<TargetLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                io_duration_histogram,
            );
        registry.register(
            TARGET_READ_DURATION,
            "Duration of one read of a target (or listing of a source), timeouts included",
            read_duration.clone(),
        );
        let write_duration =
            Family::<TargetLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                io_duration_histogram,
            );
        registry.register(
            TARGET_WRITE_DURATION,
            "Duration of one batch written to a target (before it is read back)",
            write_duration.clone(),
        );
        let scheduled_events = Family::<ScheduledEventLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            SCHEDULED_EVENTS,
            "Announced provider events that will change an instance's addresses; the value is the Unix time the event starts",
            scheduled_events.clone(),
        );
        let maintenance_objects = Family::<TargetLabel, Gauge>::default();
        registry.register(
            MAINTENANCE_OBJECTS,
            "Record sets at controller.maintenance_ttl and servers draining for announced maintenance, as of the last pass",
            maintenance_objects.clone(),
        );
        let notifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            counter_name(NOTIFICATIONS_TOTAL),
            "Webhook notifications: sent, failed after retries, or dropped because the queue was full",
            notifications.clone(),
        );
        for result in NOTIFICATION_RESULTS {
            let _ = notifications.get_or_create(&ResultLabel {
                result: result.to_string(),
            });
        }
        let audit_log_errors = Counter::default();
        registry.register(
            counter_name(AUDIT_LOG_ERRORS_TOTAL),
            "Passes whose events could not be appended to the audit log",
            audit_log_errors.clone(),
        );
        let leader = Family::<InstanceLabel, Gauge>::default();
        registry.register(
            LEADER,
            "1 while this controller holds the write lease (always, without [ha]); 0 while it only observes",
            leader.clone(),
        );
        let propagation = Family::<TargetLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            propagation_histogram,
        );
        registry.register(
            PROPAGATION_SECONDS,
            "Time from the end of a write to the last of the target's secondaries serving it (writes every secondary served in time)",
            propagation.clone(),
        );
        let secondaries_lagging = Family::<TargetLabel, Gauge>::default();
        registry.register(
            SECONDARIES_LAGGING,
            "Secondaries of the target that did not serve its primary's records, as of the last pass",
            secondaries_lagging.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);

        for target in targets {
            let label = TargetLabel {
                target: target.clone(),
            };
            let _ = drift_objects.get_or_create(&label);
            let _ = errors.get_or_create(&label);
            let _ = verify_failures.get_or_create(&label);
            let _ = target_up.get_or_create(&label);
            let _ = drift_started.get_or_create(&label);
            let _ = read_duration.get_or_create(&label);
            let _ = write_duration.get_or_create(&label);
            let _ = maintenance_objects.get_or_create(&label);
            let _ = propagation.get_or_create(&label);
            let _ = secondaries_lagging.get_or_create(&label);
            for op in Op::ALL {
                let _ = changes.get_or_create(&ChangeLabels {
                    target: target.clone(),
                    op: op.as_str().to_string(),
                });
            }
        }
        for source in sources {
            let label = SourceLabel {
                source: source.clone(),
            };
            let _ = instances.get_or_create(&label);
            let _ = address_changes.get_or_create(&label);
            let source_label = TargetLabel {
                target: source.clone(),
            };
            let _ = errors.get_or_create(&source_label);
            let _ = target_up.get_or_create(&source_label);
            let _ = read_duration.get_or_create(&source_label);
        }
        for guard in guards {
            let _ = guard_refusals.get_or_create(&GuardLabel {
                guard: guard.to_string(),
            });
        }
        Metrics {
            registry,
            last_success,
            reconcile_duration,
            drift_objects,
            changes,
            errors,
            target_up,
            instances,
            address_changes,
            guard_refusals,
            verify_failures,
            reconcile_interval,
            time_to_converge,
            drift_started,
            read_duration,
            write_duration,
            scheduled_events,
            maintenance_objects,
            notifications,
            audit_log_errors,
            leader,
            propagation,
            secondaries_lagging,
        }
    }

    /// The [`LEADER`] series of this controller, created at 0.
    pub fn leader_gauge(&self, instance: &str) -> Gauge {
        self.leader
            .get_or_create(&InstanceLabel {
                instance: instance.to_string(),
            })
            .clone()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_family_is_exposed_with_zero_series() {
        let m = Metrics::new(
            &["ns1".into(), "lb-01".into()],
            &["local".into()],
            &["never-empty"],
        );
        let _ = m.leader_gauge("host-a");
        let text = m.encode();
        // A family without series is not written at all: scheduled events appear only
        // once a source reports one.
        for name in ALL.iter().filter(|n| **n != SCHEDULED_EVENTS) {
            let family = counter_name(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{name} missing in\n{text}"
            );
        }
        assert!(text.contains("ipdrift_changes_total{target=\"lb-01\",op=\"update\"} 0"));
        assert!(text.contains("ipdrift_drift_objects{target=\"ns1\"} 0"));
        assert!(text.contains("ipdrift_instances{source=\"local\"} 0"));
        assert!(text.contains("ipdrift_drift_started_timestamp_seconds{target=\"lb-01\"} 0"));
        assert!(text.contains("ipdrift_target_read_duration_seconds_count{target=\"local\"} 0"));
        assert!(text.contains("ipdrift_target_write_duration_seconds_count{target=\"ns1\"} 0"));
        assert!(text.contains("ipdrift_notifications_total{result=\"dropped\"} 0"));
        assert!(text.contains("ipdrift_time_to_converge_seconds_count 0"));
        assert!(text.contains("ipdrift_leader{instance=\"host-a\"} 0"));
        assert!(text.contains("ipdrift_propagation_seconds_count{target=\"ns1\"} 0"));
        assert!(text.contains("ipdrift_secondaries_lagging{target=\"ns1\"} 0"));
        assert!(text.trim_end().ends_with("# EOF"));
        assert!(!text.contains(SCHEDULED_EVENTS));
        m.scheduled_events
            .get_or_create(&ScheduledEventLabels {
                source: "aws".into(),
                instance: "i-1".into(),
                code: "system-reboot".into(),
            })
            .set(1_777_000_000.0);
        assert!(m.encode().contains(
            "ipdrift_scheduled_events{source=\"aws\",instance=\"i-1\",code=\"system-reboot\"} 1777000000.0"
        ));
    }
}
