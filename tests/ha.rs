//! `[ha]` against a real etcd: two `ipdrift run --interval 1s` share one election with a
//! 2 s lease and watch one fleet (BIND + HAProxy). Only the leader writes; a killed leader
//! is replaced within the lease TTL plus one interval; without etcd nobody writes; a paused
//! leader does not write after it resumes until it wins the election again.
//!
//! Writes are counted on BIND's side: every UPDATE that changes the zone bumps the SOA
//! serial once, and named logs every UPDATE it approves, changing or not. Each drift below
//! is one UPDATE, so "no double writes" means both counters move by exactly the number of
//! drifts. The fail-over time is printed (`cargo nextest run --test ha --no-capture`).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::controller::Controller;
use support::etcd::Etcd;
use support::fleet::{Fleet, ZONE, describe};
use support::wait_until;

const LEASE_TTL: Duration = Duration::from_secs(2);
/// `Controller` runs `ipdrift run --interval 1s`.
const INTERVAL: Duration = Duration::from_secs(1);

/// Writes the fleet's config plus `[ha]` for `instance` next to it; returns its path.
fn ha_config(fleet: &Fleet, etcd: &Etcd, instance: &str) -> PathBuf {
    let base = std::fs::read_to_string(fleet.config_path()).unwrap();
    let path = fleet.dir.path().join(format!("ipdrift-{instance}.toml"));
    let ha = format!(
        "\n[ha]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nelection = \"ipdrift/test\"\nlease_ttl = \"{}s\"\ninstance = \"{instance}\"\n",
        etcd.endpoint(),
        LEASE_TTL.as_secs()
    );
    std::fs::write(&path, base + &ha).unwrap();
    path
}

/// `ipdrift_leader{instance}` of a controller, as it reports itself.
fn leader_gauge(controller: &Controller, instance: &str) -> Option<f64> {
    controller.metric(&format!("ipdrift_leader{{instance=\"{instance}\"}}"))
}

/// Two controllers of one election, named `a` and `b`.
struct Pair {
    a: Controller,
    b: Controller,
}

impl Pair {
    fn start(fleet: &Fleet, etcd: &Etcd) -> Pair {
        let pair = Pair {
            a: Controller::start_with(&ha_config(fleet, etcd, "a")),
            b: Controller::start_with(&ha_config(fleet, etcd, "b")),
        };
        pair.a.wait_ready();
        pair.b.wait_ready();
        pair
    }

    /// `(a's gauge, b's gauge)`.
    fn gauges(&self) -> (Option<f64>, Option<f64>) {
        (leader_gauge(&self.a, "a"), leader_gauge(&self.b, "b"))
    }

    /// Waits until exactly one leads; `true` when that is `a`.
    fn wait_for_one_leader(&self, within: Duration) -> bool {
        let mut gauges = (None, None);
        let one = wait_until(within, || {
            gauges = self.gauges();
            matches!(gauges, (Some(1.0), Some(0.0)) | (Some(0.0), Some(1.0)))
        });
        assert!(
            one,
            "not exactly one leader within {within:?}: {gauges:?}\n--- a\n{}\n--- b\n{}",
            self.a.log_text(),
            self.b.log_text()
        );
        gauges.0 == Some(1.0)
    }

    fn logs(&self) -> String {
        format!("--- a\n{}\n--- b\n{}", self.a.log_text(), self.b.log_text())
    }
}

/// The zone's SOA serial: every UPDATE that changed the zone bumped it once.
fn soa_serial(fleet: &Fleet) -> u64 {
    let soa = fleet.bind.query(ZONE, "SOA");
    soa.first()
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|serial| serial.parse().ok())
        .unwrap_or_else(|| panic!("no serial in {soa:?}"))
}

/// UPDATE messages named approved so far, changing the zone or not (its log says
/// `signer "ipdrift-key" approved` for each).
fn update_messages(fleet: &Fleet) -> usize {
    std::fs::read_to_string(fleet.bind.dir().join("named.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("approved"))
        .count()
}

/// BIND's write counters, to compare before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Writes {
    serial: u64,
    updates: usize,
}

impl Writes {
    fn now(fleet: &Fleet) -> Writes {
        Writes {
            serial: soa_serial(fleet),
            updates: update_messages(fleet),
        }
    }

    /// Asserts that exactly `n` UPDATEs reached BIND since `self`, each changing the zone.
    fn assert_exactly(self, fleet: &Fleet, n: u64, logs: &str) {
        let now = Writes::now(fleet);
        assert_eq!(
            (now.serial - self.serial, now.updates - self.updates),
            (n, n as usize),
            "(serial increments, UPDATE messages) since {self:?}\n{logs}"
        );
    }
}

/// `(changes written, write batches)` a controller has counted over every target.
fn written(controller: &Controller) -> (f64, f64) {
    let (_, _, body) = controller.get("/metrics").expect("/metrics answers");
    let sum = |prefix: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("ipdrift_changes_total{"),
        sum("ipdrift_target_write_duration_seconds_count{"),
    )
}

/// Indices of a controller's log events with `message`, in the order they were logged.
fn positions(controller: &Controller, message: &str) -> Vec<usize> {
    controller
        .log_events()
        .iter()
        .enumerate()
        .filter(|(_, e)| e["message"] == message)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn two_controllers_share_one_election_and_only_the_leader_writes() {
    let mut fleet = Fleet::start();
    let etcd = Etcd::start();
    let pair = Pair::start(&fleet, &etcd);
    let a_leads = pair.wait_for_one_leader(Duration::from_secs(10));
    let (leader, follower) = if a_leads {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    };
    let before = Writes::now(&fleet);

    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(10), || fleet.converged_at(2)),
        "not repaired\n{}",
        pair.logs()
    );
    // The follower has looked again since, and found nothing to do either.
    assert!(follower.wait_passes(2, Duration::from_secs(10)));
    assert!(leader.wait_passes(1, Duration::from_secs(10)));
    before.assert_exactly(&fleet, 1, &pair.logs());
    // 3 records in one UPDATE, 2 servers in one runtime-API session.
    assert_eq!(written(leader), (5.0, 2.0), "{}", pair.logs());
    assert_eq!(written(follower), (0.0, 0.0), "{}", pair.logs());
    assert_eq!(follower.count_messages("applied"), 0);

    // The follower observes: it serves metrics, is ready, and says it is in sync.
    assert_eq!(
        follower.metric("ipdrift_drift_objects{target=\"ns1\"}"),
        Some(0.0)
    );
    assert_eq!(follower.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(follower.get("/healthz").map(|r| r.0), Some(200));
    // `diff` works with either config, leader or not.
    for instance in ["a", "b"] {
        let out = support::fleet::ipdrift(&ha_config(&fleet, &etcd, instance), &["diff"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    }

    // A controller that stops hands the lease back: the other leads at once, not a TTL later.
    let Pair { a, b } = pair;
    let (stopping, remaining, name) = if a_leads { (a, b, "b") } else { (b, a, "a") };
    let handed_over = Instant::now();
    let (code, log) = stopping.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        wait_until(LEASE_TTL, || leader_gauge(&remaining, name) == Some(1.0)),
        "no hand-over on SIGTERM within {LEASE_TTL:?}\n{}",
        remaining.log_text()
    );
    eprintln!("hand-over on SIGTERM: {:?}", handed_over.elapsed());
}

#[test]
fn killing_the_leader_hands_over_within_the_lease_ttl_plus_one_interval() {
    let mut fleet = Fleet::start();
    let etcd = Etcd::start();
    let pair = Pair::start(&fleet, &etcd);
    let a_leads = pair.wait_for_one_leader(Duration::from_secs(10));
    let (leader, follower, follower_name) = if a_leads {
        (&pair.a, &pair.b, "b")
    } else {
        (&pair.b, &pair.a, "a")
    };
    let before = Writes::now(&fleet);

    leader.signal("-KILL");
    let killed = Instant::now();
    fleet.move_to(2);
    let repaired = wait_until(Duration::from_secs(10), || fleet.converged_at(2));
    let fail_over = killed.elapsed();
    assert!(repaired, "not repaired after the kill\n{}", pair.logs());
    eprintln!(
        "fail-over (SIGKILL of the leader to a new drift repaired, lease TTL {LEASE_TTL:?}, interval {INTERVAL:?}): {fail_over:?}"
    );
    // Polling DNS and HAProxy adds a little; a loaded machine a little more.
    let bound = LEASE_TTL + INTERVAL + Duration::from_millis(500);
    assert!(
        fail_over <= bound,
        "fail-over took {fail_over:?} > {bound:?}"
    );
    assert_eq!(leader_gauge(follower, follower_name), Some(1.0));
    before.assert_exactly(&fleet, 1, &pair.logs());
}

#[test]
fn without_etcd_nobody_writes_and_one_leader_returns_with_it() {
    let mut fleet = Fleet::start();
    let mut etcd = Etcd::start();
    let pair = Pair::start(&fleet, &etcd);
    pair.wait_for_one_leader(Duration::from_secs(10));
    let before = Writes::now(&fleet);

    etcd.stop();
    let stopped = Instant::now();
    let mut gauges = (None, None);
    assert!(
        wait_until(LEASE_TTL * 2, || {
            gauges = pair.gauges();
            gauges == (Some(0.0), Some(0.0))
        }),
        "still a leader without etcd: {gauges:?}\n{}",
        pair.logs()
    );
    let stepped_down = stopped.elapsed();
    eprintln!("the leader stepped down {stepped_down:?} after etcd stopped");
    assert!(stepped_down <= LEASE_TTL, "{stepped_down:?}");

    // Drift while nobody leads: seen by both, written by neither.
    fleet.move_to(2);
    assert!(pair.a.wait_passes(3, Duration::from_secs(10)));
    assert!(pair.b.wait_passes(1, Duration::from_secs(10)));
    // Seen once in a loaded full run (stop 22): say what DNS held and what both logged.
    assert!(
        fleet.dns_at(1),
        "DNS was written without a leader: www answers {:?}, serial {} (was {before:?})\n{}",
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        soa_serial(&fleet),
        pair.logs()
    );
    assert_eq!(fleet.haproxy_servers(), fleet.servers_at(1));
    before.assert_exactly(&fleet, 0, &pair.logs());
    for (controller, instance) in [(&pair.a, "a"), (&pair.b, "b")] {
        assert_eq!(leader_gauge(controller, instance), Some(0.0));
        assert_eq!(
            controller.metric("ipdrift_drift_objects{target=\"ns1\"}"),
            Some(3.0),
            "{instance} does not report the drift"
        );
        // Their read-only passes work, so they are ready.
        assert_eq!(controller.get("/readyz").map(|r| r.0), Some(200));
    }

    etcd.start_again();
    let a_leads = pair.wait_for_one_leader(Duration::from_secs(15));
    assert!(
        wait_until(Duration::from_secs(10), || fleet.converged_at(2)),
        "not repaired once etcd was back\n{}",
        pair.logs()
    );
    // Still one leader a few keep-alives later.
    for _ in 0..5 {
        std::thread::sleep(LEASE_TTL / 4);
        let gauges = pair.gauges();
        let expected = if a_leads {
            (Some(1.0), Some(0.0))
        } else {
            (Some(0.0), Some(1.0))
        };
        assert_eq!(gauges, expected, "{}", pair.logs());
    }
    before.assert_exactly(&fleet, 1, &pair.logs());
}

#[test]
fn a_paused_leader_does_not_write_after_resuming_until_it_wins_the_election_again() {
    let mut fleet = Fleet::start();
    let etcd = Etcd::start();
    let pair = Pair::start(&fleet, &etcd);
    let a_leads = pair.wait_for_one_leader(Duration::from_secs(10));
    let (first, second, second_name) = if a_leads {
        (&pair.a, &pair.b, "b")
    } else {
        (&pair.b, &pair.a, "a")
    };

    // The leader freezes past its lease; the other is elected, then freezes too, so that
    // nobody repairs the drift before the first one resumes and sees it.
    first.signal("-STOP");
    assert!(
        wait_until(LEASE_TTL * 3, || leader_gauge(second, second_name)
            == Some(1.0)),
        "the other controller was not elected\n{}",
        second.log_text()
    );
    second.signal("-STOP");
    let before = Writes::now(&fleet);
    fleet.move_to(2);
    first.signal("-CONT");
    let resumed_at = first.log_events().len();

    // It is elected again once the frozen leader's lease has lapsed, and only then repairs.
    assert!(
        wait_until(LEASE_TTL * 3, || fleet.converged_at(2)),
        "not repaired by the resumed controller\n{}",
        first.log_text()
    );
    let elected = positions(first, "became leader");
    let applied = positions(first, "applied");
    let planned: Vec<usize> = positions(first, "planned")
        .into_iter()
        .filter(|i| *i >= resumed_at)
        .collect();
    assert_eq!(elected.len(), 2, "{}", first.log_text());
    assert!(
        !planned.is_empty() && planned[0] < elected[1],
        "no pass saw the drift between resuming and the new election\n{}",
        first.log_text()
    );
    assert!(
        applied.iter().all(|i| *i > elected[1]),
        "wrote before it was elected again\n{}",
        first.log_text()
    );
    assert!(
        positions(first, "lost leadership")
            .first()
            .is_some_and(|lost| *lost < elected[1]),
        "{}",
        first.log_text()
    );

    // The other resumes as a follower and writes nothing either.
    second.signal("-CONT");
    assert!(second.wait_passes(2, Duration::from_secs(10)));
    assert_eq!(second.count_messages("applied"), 0, "{}", second.log_text());
    assert!(
        wait_until(LEASE_TTL, || pair.gauges()
            == if a_leads {
                (Some(1.0), Some(0.0))
            } else {
                (Some(0.0), Some(1.0))
            }),
        "{}",
        pair.logs()
    );
    before.assert_exactly(&fleet, 1, &pair.logs());
}
