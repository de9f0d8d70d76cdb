//! State kept across passes, and the events it yields: address changes since the last
//! listing, drift first seen and converged, errors starting and ending, new guard refusals,
//! changes written. Pure: the caller passes each pass's report and wall-clock times. It
//! never influences a plan; it feeds the audit log, metrics and notifications.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::{ChangeResult, Event, Record, elapsed, is_backing_off, seconds};
use crate::desired::SourceSnapshot;
use crate::dns::secondaries::Served;
use crate::maintenance::StepKind;
use crate::model::AddressKind;
use crate::plan::PassReport;

/// Drift of one target that is not repaired yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drift {
    /// Start of the pass that first saw it.
    since: OffsetDateTime,
    objects: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    since: OffsetDateTime,
    /// The last real error: a pass that rests, backing off, keeps it.
    message: String,
    /// Passes in which it was tried and failed.
    attempts: u32,
}

/// A source or target that ended the pass failed or still out of sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub target: String,
    /// Consecutive passes it has ended that way, this one included.
    pub passes: u32,
    /// The error, or which objects are still out of sync.
    pub reason: String,
}

/// What one pass changed in the tracked state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassEvents {
    /// For the audit log, in the order they happened.
    pub records: Vec<Record>,
    /// Instance addresses that changed since the previous listing, per source.
    pub address_changes: BTreeMap<String, u64>,
    /// Targets that converged this pass, and how long their drift lasted.
    pub converged: Vec<(String, Duration)>,
    pub failing: Vec<Failing>,
}

/// What the controller remembers between passes.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// Configured sources and targets.
    names: Vec<String>,
    /// (source, instance id, kind) → address, as last listed.
    addresses: BTreeMap<(String, String, AddressKind), IpAddr>,
    drift: BTreeMap<String, Drift>,
    failures: BTreeMap<String, Failure>,
    /// (guard, target, object) refused in the last pass that read the target.
    refusals: BTreeSet<(String, String, String)>,
    failing_passes: BTreeMap<String, u32>,
    /// (target, object) → what maintenance did to it in the last pass.
    maintenance: BTreeMap<(String, String), StepKind>,
}

/// How many objects a "still out of sync" reason names before it says "…".
const REASON_OBJECTS: usize = 5;

impl Tracker {
    /// `names`: every configured source and target.
    pub fn new(names: Vec<String>) -> Tracker {
        Tracker {
            names,
            ..Tracker::default()
        }
    }

    /// When the target's current drift was first seen; `None` when it is in sync.
    pub fn drift_started(&self, target: &str) -> Option<OffsetDateTime> {
        self.drift.get(target).map(|d| d.since)
    }

    /// The `pass` record that ends a pass's batch in the audit log.
    pub fn pass_record(
        &self,
        report: &PassReport,
        finished: OffsetDateTime,
        duration: Duration,
    ) -> Record {
        let errors = report.errors.len() + report.written.values().filter(|r| r.is_err()).count();
        Record {
            ts: finished,
            event: Event::Pass {
                duration_seconds: seconds(duration),
                drift_objects: self.names.iter().map(|n| report.remaining_drift(n)).sum(),
                errors,
            },
        }
    }

    /// Takes in one pass that started at `started` and finished at `finished`. Observations
    /// are stamped `started`, writes and their consequences `finished`.
    pub fn observe(
        &mut self,
        report: &PassReport,
        sources: &BTreeMap<String, SourceSnapshot>,
        started: OffsetDateTime,
        finished: OffsetDateTime,
    ) -> PassEvents {
        let mut out = PassEvents::default();
        let mut early = Vec::new();
        let mut late = Vec::new();
        out.address_changes = self.address_changes(sources, &mut early);

        let mut errors: BTreeMap<&str, &str> = BTreeMap::new();
        for (target, result) in &report.written {
            if let Err(message) = result {
                errors.insert(target, message);
            }
        }
        let read_failed: BTreeSet<&str> = report.errors.iter().map(|e| e.target.as_str()).collect();
        for error in &report.errors {
            errors.insert(&error.target, &error.message);
        }
        for (&target, &message) in &errors {
            // A failed read is an observation (pass start); a failed write happens at the end.
            let (stamp, bucket) = if read_failed.contains(target) {
                (started, &mut early)
            } else {
                (finished, &mut late)
            };
            match self.failures.get_mut(target) {
                // Resting: the failure goes on, and nothing was tried.
                Some(_) if is_backing_off(message) => {}
                Some(known) if known.message == message => {
                    known.attempts = known.attempts.saturating_add(1);
                }
                known => {
                    bucket.push(Event::TargetError {
                        target: target.to_string(),
                        message: message.to_string(),
                    });
                    let (since, attempts) = known.map_or((stamp, 0), |f| (f.since, f.attempts));
                    self.failures.insert(
                        target.to_string(),
                        Failure {
                            since,
                            message: message.to_string(),
                            // A restarted controller's first pass may rest: nothing tried.
                            attempts: attempts.saturating_add(u32::from(!is_backing_off(message))),
                        },
                    );
                }
            }
        }
        let recovered: Vec<String> = self
            .failures
            .keys()
            .filter(|t| !errors.contains_key(t.as_str()))
            .cloned()
            .collect();
        let mut recoveries = Vec::new();
        for target in recovered {
            let failure = self.failures.remove(&target).expect("listed above");
            recoveries.push(Event::TargetRecovered {
                target,
                down_seconds: seconds(elapsed(failure.since, finished)),
                failed_attempts: failure.attempts,
            });
        }

        let mut refusals = BTreeSet::new();
        for r in &report.plan.refusals {
            let key = (r.guard.to_string(), r.target.clone(), r.object.clone());
            if !self.refusals.contains(&key) {
                early.push(Event::GuardRefused {
                    guard: r.guard.to_string(),
                    target: r.target.clone(),
                    object: r.object.clone(),
                    reason: r.reason.clone(),
                });
            }
            refusals.insert(key);
        }
        // A target that could not be read keeps its refusals: they are not news when it is back.
        refusals.extend(
            self.refusals
                .iter()
                .filter(|(_, target, _)| read_failed.contains(target.as_str()))
                .cloned(),
        );
        self.refusals = refusals;

        let mut maintenance = BTreeMap::new();
        for step in &report.maintenance {
            let key = (step.target.clone(), step.object.clone());
            if self.maintenance.get(&key) != Some(&step.step) {
                late.push(Event::Maintenance {
                    target: step.target.clone(),
                    object: step.object.clone(),
                    step: step.step.as_str().to_string(),
                    reason: step.reason.clone(),
                });
            }
            maintenance.insert(key, step.step);
        }
        self.maintenance = maintenance;

        for change in &report.plan.changes {
            let Some(result) = report.written.get(&change.target) else {
                continue;
            };
            late.push(Event::Change {
                target: change.target.clone(),
                op: change.op.as_str().to_string(),
                object: change.object.clone(),
                from: change.from.clone(),
                to: change.to.clone(),
                result: match result {
                    Ok(()) => ChangeResult::Applied,
                    Err(_) => ChangeResult::Failed,
                },
            });
        }

        for (target, secondaries) in &report.secondaries {
            if !matches!(report.written.get(target), Some(Ok(()))) {
                continue;
            }
            for secondary in secondaries {
                let (seconds, lagging) = match &secondary.state {
                    Served::After(after) => (*after, None),
                    Served::Lagging { waited, why, .. } => (*waited, Some(why.clone())),
                    Served::InSync => continue,
                };
                late.push(Event::Propagation {
                    target: target.clone(),
                    secondary: secondary.addr,
                    seconds: super::seconds(seconds),
                    lagging,
                });
            }
        }

        let mut convergences = Vec::new();
        for target in self.names.clone() {
            if read_failed.contains(target.as_str()) || sources.contains_key(&target) {
                continue;
            }
            let (seen, remaining) = drift_objects(report, &target);
            let drift = self.drift.get(&target);
            let new: Vec<String> = seen
                .iter()
                .filter(|o| drift.is_none_or(|d| !d.objects.contains(*o)))
                .cloned()
                .collect();
            if !new.is_empty() {
                early.push(Event::DriftDetected {
                    target: target.clone(),
                    objects: new,
                });
            }
            let since = drift.map_or(started, |d| d.since);
            if remaining.is_empty() {
                if self.drift.remove(&target).is_some() || !seen.is_empty() {
                    let lasted = elapsed(since, finished);
                    convergences.push(Event::Converged {
                        target: target.clone(),
                        drift_seconds: seconds(lasted),
                    });
                    out.converged.push((target.clone(), lasted));
                }
            } else {
                self.drift.insert(
                    target.clone(),
                    Drift {
                        since,
                        objects: remaining,
                    },
                );
            }
        }

        for target in &self.names {
            let reason = match (errors.get(target.as_str()), self.drift.get(target)) {
                // Every error is a known failure by now: say the error a backoff rests from,
                // not its countdown.
                (Some(_), _) => self.failures.get(target).map(|f| f.message.clone()),
                (None, Some(drift)) => Some(still_out_of_sync(&drift.objects)),
                (None, None) => None,
            };
            match reason {
                Some(reason) => {
                    let passes = self.failing_passes.entry(target.clone()).or_default();
                    *passes += 1;
                    out.failing.push(Failing {
                        target: target.clone(),
                        passes: *passes,
                        reason,
                    });
                }
                None => {
                    self.failing_passes.remove(target);
                }
            }
        }

        let stamp =
            |ts, events: Vec<Event>| events.into_iter().map(move |event| Record { ts, event });
        out.records.extend(stamp(started, early));
        out.records.extend(stamp(finished, late));
        out.records.extend(stamp(finished, convergences));
        out.records.extend(stamp(finished, recoveries));
        out
    }

    /// Compares each listed instance's addresses with the previous listing and remembers
    /// them. Failed sources are skipped; the first listing only records.
    fn address_changes(
        &mut self,
        sources: &BTreeMap<String, SourceSnapshot>,
        events: &mut Vec<Event>,
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
                    if let Some(old) = self.addresses.insert(key, addr)
                        && old != addr
                    {
                        *count += 1;
                        events.push(Event::AddressChanged {
                            source: source.clone(),
                            instance: instance.id.clone(),
                            name: instance.name.clone(),
                            address: kind,
                            old,
                            new: addr,
                        });
                    }
                }
            }
        }
        changes
    }
}

/// The target's objects out of sync as the pass found them, and those still out of sync
/// after it (a change counts as repaired when its batch was written and read back).
fn drift_objects(report: &PassReport, target: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let plan = &report.plan;
    let changed: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| c.target == target)
        .map(|c| c.object.clone())
        .collect();
    let mut remaining: BTreeSet<String> = plan
        .refusals
        .iter()
        .filter(|r| r.target == target)
        .map(|r| r.object.clone())
        .chain(
            plan.unrepairable
                .iter()
                .filter(|p| p.target.as_deref() == Some(target))
                .map(|p| p.object.clone()),
        )
        .collect();
    let mut seen = remaining.clone();
    seen.extend(changed.iter().cloned());
    if !matches!(report.written.get(target), Some(Ok(()))) {
        remaining.extend(changed);
    }
    (seen, remaining)
}

fn still_out_of_sync(objects: &BTreeSet<String>) -> String {
    let mut shown: Vec<&str> = objects
        .iter()
        .take(REASON_OBJECTS)
        .map(String::as_str)
        .collect();
    if objects.len() > REASON_OBJECTS {
        shown.push("…");
    }
    format!(
        "{} object(s) still out of sync: {}",
        objects.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Problem;
    use crate::dns::RecordChange;
    use crate::model::{Instance, InstanceState, RecordKey, RecordSet, RecordType};
    use crate::plan::{Action, Change, Op, Plan, Refusal, TargetError};

    fn t(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_777_000_000 + seconds).unwrap()
    }

    fn instance(id: &str, public: &str) -> Instance {
        Instance {
            id: id.into(),
            name: format!("{id}-name"),
            state: InstanceState::Running,
            public_ipv4: Some(public.parse().unwrap()),
            private_ipv4: None,
            ipv6: None,
            tags: Default::default(),
        }
    }

    fn listed(instances: Vec<Instance>) -> BTreeMap<String, SourceSnapshot> {
        BTreeMap::from([("local".to_string(), SourceSnapshot::Listed(instances))])
    }

    fn change(target: &str, object: &str) -> Change {
        let set = RecordSet {
            key: RecordKey {
                name: crate::validate::dns_name("www.example.com.").unwrap(),
                rtype: RecordType::A,
            },
            ttl: 60,
            addrs: Default::default(),
        };
        Change {
            target: target.into(),
            op: Op::Update,
            object: object.into(),
            from: Some("192.0.2.1 ttl=60".into()),
            to: Some("198.51.100.1 ttl=60".into()),
            action: Action::Dns(RecordChange::Replace {
                from: None,
                to: set,
            }),
            removes: 0,
        }
    }

    fn events(out: &PassEvents) -> Vec<&Event> {
        out.records.iter().map(|r| &r.event).collect()
    }

    fn tracker() -> Tracker {
        Tracker::new(vec!["local".into(), "ns1".into(), "lb-01".into()])
    }

    #[test]
    fn address_changes_are_counted_per_source_from_the_second_listing() {
        let mut tracker = tracker();
        let report = PassReport::default();
        let first = listed(vec![
            instance("i-1", "192.0.2.1"),
            instance("i-2", "192.0.2.2"),
        ]);
        let out = tracker.observe(&report, &first, t(0), t(1));
        assert_eq!(out.address_changes["local"], 0);
        assert!(out.records.is_empty());
        let second = listed(vec![
            instance("i-1", "198.51.100.1"),
            instance("i-2", "192.0.2.2"),
        ]);
        let out = tracker.observe(&report, &second, t(10), t(11));
        assert_eq!(out.address_changes["local"], 1);
        assert_eq!(
            out.records,
            vec![Record {
                ts: t(10),
                event: Event::AddressChanged {
                    source: "local".into(),
                    instance: "i-1".into(),
                    name: "i-1-name".into(),
                    address: AddressKind::PublicIpv4,
                    old: "192.0.2.1".parse().unwrap(),
                    new: "198.51.100.1".parse().unwrap(),
                },
            }]
        );
        let failed = BTreeMap::from([("local".to_string(), SourceSnapshot::Failed)]);
        assert!(
            tracker
                .observe(&report, &failed, t(20), t(21))
                .address_changes
                .is_empty()
        );
    }

    #[test]
    fn each_secondary_after_a_write_is_recorded_served_or_lagging() {
        use crate::dns::secondaries::Secondary;
        let secondary = |port: u16, state| Secondary {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            primary_serial: 2,
            state,
        };
        let states = vec![
            secondary(5301, Served::After(Duration::from_millis(1200))),
            secondary(
                5302,
                Served::Lagging {
                    waited: Duration::from_secs(2),
                    serial: Some(1),
                    why: "serial 1 (primary has 2)".into(),
                },
            ),
        ];
        let report = PassReport {
            plan: Plan {
                changes: vec![change("ns1", "www.example.com. A")],
                ..Plan::default()
            },
            written: BTreeMap::from([("ns1".to_string(), Ok(()))]),
            secondaries: BTreeMap::from([("ns1".to_string(), states.clone())]),
            ..PassReport::default()
        };
        let out = tracker().observe(&report, &listed(vec![]), t(0), t(3));
        let propagation: Vec<_> = events(&out)
            .into_iter()
            .filter(|e| matches!(e, Event::Propagation { .. }))
            .collect();
        assert_eq!(
            propagation,
            vec![
                &Event::Propagation {
                    target: "ns1".into(),
                    secondary: "127.0.0.1:5301".parse().unwrap(),
                    seconds: 1.2,
                    lagging: None,
                },
                &Event::Propagation {
                    target: "ns1".into(),
                    secondary: "127.0.0.1:5302".parse().unwrap(),
                    seconds: 2.0,
                    lagging: Some("serial 1 (primary has 2)".into()),
                },
            ]
        );
        // Without a write (a read-only look), a lagging secondary is no audit event.
        let looked = PassReport {
            secondaries: BTreeMap::from([("ns1".to_string(), states)]),
            ..PassReport::default()
        };
        let out = tracker().observe(&looked, &listed(vec![]), t(10), t(11));
        assert!(
            !events(&out)
                .iter()
                .any(|e| matches!(e, Event::Propagation { .. }))
        );
    }

    #[test]
    fn drift_repaired_in_its_own_pass_is_detected_changed_and_converged() {
        let mut tracker = tracker();
        let report = PassReport {
            plan: Plan {
                changes: vec![change("ns1", "www.example.com. A")],
                ..Plan::default()
            },
            written: BTreeMap::from([("ns1".to_string(), Ok(()))]),
            ..PassReport::default()
        };
        let out = tracker.observe(&report, &listed(vec![]), t(0), t(2));
        let kinds: Vec<_> = out.records.iter().map(|r| (r.ts, &r.event)).collect();
        assert!(
            matches!(kinds[0], (ts, Event::DriftDetected { target, objects }) if ts == t(0) && target == "ns1" && objects.len() == 1)
        );
        assert!(
            matches!(kinds[1], (ts, Event::Change { result: ChangeResult::Applied, .. }) if ts == t(2))
        );
        assert!(
            matches!(kinds[2], (ts, Event::Converged { target, drift_seconds }) if ts == t(2) && target == "ns1" && *drift_seconds == 2.0)
        );
        assert_eq!(
            out.converged,
            vec![("ns1".to_string(), Duration::from_secs(2))]
        );
        assert_eq!(tracker.drift_started("ns1"), None);
        assert!(out.failing.is_empty());
    }

    #[test]
    fn failing_repairs_keep_the_drift_start_and_count_passes() {
        let mut tracker = tracker();
        let failing = PassReport {
            plan: Plan {
                changes: vec![change("ns1", "www.example.com. A")],
                ..Plan::default()
            },
            written: BTreeMap::from([("ns1".to_string(), Err("NOTAUTH".to_string()))]),
            ..PassReport::default()
        };
        let first = tracker.observe(&failing, &listed(vec![]), t(0), t(1));
        assert!(
            events(&first)
                .iter()
                .any(|e| matches!(e, Event::TargetError { target, .. } if target == "ns1"))
        );
        let second = tracker.observe(&failing, &listed(vec![]), t(10), t(11));
        // Same drift, same error: only the attempted change is news.
        assert!(
            matches!(
                events(&second)[..],
                [Event::Change {
                    result: ChangeResult::Failed,
                    ..
                }]
            ),
            "{second:?}"
        );
        assert_eq!(second.failing[0].passes, 2);
        assert_eq!(second.failing[0].reason, "NOTAUTH");
        assert_eq!(tracker.drift_started("ns1"), Some(t(0)));

        let fixed = PassReport {
            written: BTreeMap::from([("ns1".to_string(), Ok(()))]),
            ..failing
        };
        let third = tracker.observe(&fixed, &listed(vec![]), t(20), t(21));
        assert_eq!(
            third.converged,
            vec![("ns1".to_string(), Duration::from_secs(21))]
        );
        assert!(events(&third).iter().any(|e| matches!(e, Event::TargetRecovered { target, down_seconds, failed_attempts: 2 } if target == "ns1" && *down_seconds == 20.0)));
        assert!(third.failing.is_empty());
        assert_eq!(tracker.drift_started("ns1"), None);
    }

    #[test]
    fn passes_backing_off_are_no_new_error_and_recovery_counts_the_attempts() {
        let mut tracker = tracker();
        let failing = |message: &str| PassReport {
            errors: vec![TargetError {
                target: "ns1".into(),
                message: message.into(),
            }],
            ..PassReport::default()
        };
        let refused = "cannot connect to ns1 (127.0.0.1:53): Connection refused";
        let resting = |wait: u32| {
            failing(&format!(
                "not tried this pass: backing off after repeated failures, next attempt in {wait}s"
            ))
        };
        // What reconcile reports pass after pass while BIND is down.
        let passes = [
            failing(refused),
            resting(1),
            failing(refused),
            resting(4),
            resting(3),
            resting(2),
            resting(1),
            failing(refused),
        ];
        let mut written = Vec::new();
        for (n, report) in passes.iter().enumerate() {
            let at = 10 * n as i64;
            let out = tracker.observe(report, &listed(vec![]), t(at), t(at + 1));
            written.extend(out.records.into_iter().map(|r| r.event));
            // Notifications name the error, not a countdown.
            assert_eq!(out.failing[0].reason, refused, "pass {n}");
            assert_eq!(out.failing[0].passes, n as u32 + 1);
        }
        assert_eq!(
            written,
            vec![Event::TargetError {
                target: "ns1".into(),
                message: refused.into()
            }]
        );
        let out = tracker.observe(&PassReport::default(), &listed(vec![]), t(80), t(81));
        assert_eq!(
            events(&out),
            vec![&Event::TargetRecovered {
                target: "ns1".into(),
                down_seconds: 81.0,
                failed_attempts: 3,
            }]
        );

        // After a restart the first pass knows of no failure: its backoff is the news.
        let mut fresh = self::tracker();
        let out = fresh.observe(&resting(5), &listed(vec![]), t(0), t(1));
        assert!(
            matches!(&events(&out)[..], [Event::TargetError { message, .. }] if message.contains("backing off")),
            "{out:?}"
        );
        let out = fresh.observe(&failing(refused), &listed(vec![]), t(10), t(11));
        assert!(
            matches!(&events(&out)[..], [Event::TargetError { message, .. }] if message == refused),
            "{out:?}"
        );
    }

    #[test]
    fn unreadable_targets_keep_their_state_and_refusals_are_news_once() {
        let mut tracker = tracker();
        let refused = PassReport {
            plan: Plan {
                refusals: vec![Refusal {
                    guard: "never-empty",
                    target: "ns1".into(),
                    object: "www.example.com. A".into(),
                    reason: "keeping 192.0.2.1".into(),
                }],
                unrepairable: vec![Problem {
                    target: Some("lb-01".into()),
                    object: "web/web-03".into(),
                    message: "server web-03 is not in backend web".into(),
                }],
                ..Plan::default()
            },
            ..PassReport::default()
        };
        let first = tracker.observe(&refused, &listed(vec![]), t(0), t(1));
        assert_eq!(
            events(&first)
                .iter()
                .filter(|e| matches!(e, Event::GuardRefused { .. }))
                .count(),
            1
        );
        assert_eq!(tracker.drift_started("lb-01"), Some(t(0)));
        let unreadable = PassReport {
            errors: vec![TargetError {
                target: "ns1".into(),
                message: "timed out".into(),
            }],
            ..refused.clone()
        };
        let mut unreadable = unreadable;
        unreadable.plan.refusals.clear();
        let second = tracker.observe(&unreadable, &listed(vec![]), t(10), t(11));
        assert!(
            matches!(events(&second)[..], [Event::TargetError { .. }]),
            "{second:?}"
        );
        assert_eq!(tracker.drift_started("ns1"), Some(t(0)));
        let third = tracker.observe(&refused, &listed(vec![]), t(20), t(21));
        assert!(
            matches!(events(&third)[..], [Event::TargetRecovered { .. }]),
            "the refusal is not news again: {third:?}"
        );
        let reasons: Vec<_> = third
            .failing
            .iter()
            .map(|f| (f.target.as_str(), f.passes))
            .collect();
        assert_eq!(reasons, vec![("ns1", 3), ("lb-01", 3)]);
        assert!(third.failing[1].reason.contains("web/web-03"));
    }

    #[test]
    fn a_maintenance_step_is_recorded_when_it_starts_and_when_it_changes() {
        use crate::maintenance::{Step, StepKind};
        let mut tracker = tracker();
        let step = |kind| PassReport {
            maintenance: vec![Step {
                target: "ns1".into(),
                object: "www.example.com. A".into(),
                step: kind,
                reason: "for instance-stop of web-01".into(),
            }],
            ..PassReport::default()
        };
        let none = BTreeMap::new();
        let steps = |out: &PassEvents| -> Vec<String> {
            out.records
                .iter()
                .filter_map(|r| match &r.event {
                    Event::Maintenance { step, .. } => Some(step.clone()),
                    _ => None,
                })
                .collect()
        };
        let lowered = step(StepKind::TtlLowered);
        let out = tracker.observe(&lowered, &none, t(0), t(1));
        assert_eq!(steps(&out), vec!["ttl-lowered"]);
        assert!(steps(&tracker.observe(&lowered, &none, t(10), t(11))).is_empty());
        let held = step(StepKind::TtlHeld);
        assert_eq!(
            steps(&tracker.observe(&held, &none, t(20), t(21))),
            vec!["ttl-held"]
        );
        let restored = step(StepKind::TtlRestored);
        let out = tracker.observe(&restored, &none, t(30), t(31));
        assert_eq!(steps(&out), vec!["ttl-restored"]);
        assert_eq!(out.records[0].ts, t(31), "stamped with the writes");
        assert!(steps(&tracker.observe(&PassReport::default(), &none, t(40), t(41))).is_empty());
    }
}
