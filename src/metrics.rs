//! Prometheus metrics: the exposed names as constants, and the registry that `/metrics`
//! encodes (OpenMetrics text). Labelled families are initialised to zero for every
//! configured target and source, so that alerts see zeros rather than absent series.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Every metric ipdrift exports.
pub struct Metrics {
    registry: Registry,
    pub last_success: Gauge<f64, AtomicU64>,
    pub reconcile_duration: Histogram,
    pub drift_objects: Family<TargetLabel, Gauge>,
    pub changes: Family<ChangeLabels, Counter>,
    pub errors: Family<TargetLabel, Counter>,
    pub target_up: Family<TargetLabel, Gauge>,
    pub instances: Family<SourceLabel, Gauge>,
    pub address_changes: Family<SourceLabel, Counter>,
    pub guard_refusals: Family<GuardLabel, Counter>,
    pub verify_failures: Family<TargetLabel, Counter>,
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
        let drift_objects = Family::<TargetLabel, Gauge>::default();
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
            let _ = errors.get_or_create(&TargetLabel {
                target: source.clone(),
            });
            let _ = target_up.get_or_create(&TargetLabel {
                target: source.clone(),
            });
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
        }
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
        let text = m.encode();
        for name in [
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
        ] {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing in\n{text}"
            );
        }
        assert!(text.contains("ipdrift_changes_total{target=\"lb-01\",op=\"update\"} 0"));
        assert!(text.contains("ipdrift_drift_objects{target=\"ns1\"} 0"));
        assert!(text.contains("ipdrift_instances{source=\"local\"} 0"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
