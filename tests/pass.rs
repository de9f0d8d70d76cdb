//! One reconcile pass over in-memory fakes of the sources and targets
//! (tests/support/fakes.rs), with tokio's clock paused: failures stay with their target, a
//! failed source removes nothing, a write that does not read back is a verify failure, a
//! slow call times out at `controller.timeout` without real waiting, and a converged
//! system gets no writes.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipdrift::config::Config;
use ipdrift::model::ServerAdmin;
use ipdrift::plan::{GUARD_SOURCE_UNAVAILABLE, Op, PassReport};
use ipdrift::reconcile::{Io, Mode, Reconciler};
use support::fakes::{self, FakeDns, FakeInventory, FakeLb, instance};

/// Two zones (one with `policy = "sync"`, which may delete) and a load balancer, all fed by
/// one source. The addresses in the config are never dialled: the fakes stand in.
const CONFIG: &str = r#"
[controller]
timeout = "3s"

[[inventory]]
name = "cloud"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:1"
zone = "example.test."
tsig = { key_file = "unused.key" }

[[dns]]
name = "ns2"
kind = "rfc2136"
server = "127.0.0.1:1"
zone = "other.test."
tsig = { key_file = "unused.key" }

[[record]]
dns = "ns1"
name = "{name}.example.test."
select = { tags = { role = "web" } }
address = "public_ipv4"

[[record]]
dns = "ns2"
name = "{name}.other.test."
select = { tags = { role = "web" } }
address = "public_ipv4"
policy = "sync"

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:1"

[[haproxy.backend]]
name = "web"
select = { tags = { role = "web" } }
address = "private_ipv4"
port = 80
server = "{name}"
health = "haproxy"
"#;

const WEBS: [&str; 3] = ["web-01", "web-02", "web-03"];

/// Three web instances at their new addresses; DNS empty; HAProxy still pointing at the
/// old ones.
struct World {
    config: Arc<Config>,
    cloud: FakeInventory,
    ns1: FakeDns,
    ns2: FakeDns,
    lb: FakeLb,
}

impl World {
    fn new() -> World {
        let config = ipdrift::config::parse(CONFIG, Path::new("/nonexistent/ipdrift.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let lb = FakeLb::new("lb-01", &["web"]);
        for (n, web) in WEBS.iter().enumerate() {
            lb.set_server(
                "web",
                web,
                &format!("10.9.9.{}", n + 1),
                80,
                ServerAdmin::Ready,
            );
        }
        World {
            config: Arc::new(config),
            cloud: FakeInventory::new("cloud", webs(&WEBS)),
            ns1: FakeDns::new("ns1", "example.test."),
            ns2: FakeDns::new("ns2", "other.test."),
            lb,
        }
    }

    /// A reconciler over the fakes, as `run` or `apply` would build it (nothing remembered).
    fn reconciler(&self) -> Reconciler {
        let parts = fakes::parts(&[&self.cloud], &[&self.ns1, &self.ns2], &[&self.lb]);
        Reconciler::from_parts(self.config.clone(), parts, false)
    }

    /// Whether every target says what the instances `names` (as [`webs`] makes them) want.
    fn converged(&self, names: &[&str]) -> bool {
        names.iter().all(|name| {
            let (public, private) = addresses(name);
            let public = vec![public.parse::<std::net::IpAddr>().unwrap()];
            let server = self.lb.server("web", name);
            self.ns1.a(&format!("{name}.example.test.")) == public
                && self.ns2.a(&format!("{name}.other.test.")) == public
                && server.is_some_and(|s| {
                    s.addr == Some(private.parse().unwrap())
                        && s.port == 80
                        && s.admin == ServerAdmin::Ready
                })
        })
    }

    /// Write batches attempted on all targets so far.
    fn write_calls(&self) -> usize {
        self.ns1.write_calls() + self.ns2.write_calls() + self.lb.write_calls()
    }
}

/// `web-0N` → (192.0.2.N, 10.0.0.N).
fn addresses(name: &str) -> (String, String) {
    let n = name.trim_start_matches("web-0");
    (format!("192.0.2.{n}"), format!("10.0.0.{n}"))
}

fn webs(names: &[&str]) -> Vec<ipdrift::model::Instance> {
    names
        .iter()
        .map(|name| {
            let (public, private) = addresses(name);
            instance(&format!("i-{name}"), name, "web", &public, &private)
        })
        .collect()
}

fn error_of<'a>(report: &'a PassReport, target: &str) -> Option<&'a str> {
    report
        .errors
        .iter()
        .find(|e| e.target == target)
        .map(|e| e.message.as_str())
}

#[tokio::test(start_paused = true)]
async fn a_target_whose_write_fails_does_not_block_the_others() {
    let world = World::new();
    world.ns1.fail_writes("REFUSED by the fake");
    let report = world.reconciler().pass(Mode::Apply).await.report;

    let ns1 = report.written.get("ns1").expect("ns1 was written");
    assert!(
        ns1.as_ref()
            .is_err_and(|e| e.contains("REFUSED by the fake")),
        "{ns1:?}"
    );
    assert_eq!(report.written.get("ns2"), Some(&Ok(())));
    assert_eq!(report.written.get("lb-01"), Some(&Ok(())));
    assert!(world.ns1.rrsets().is_empty());
    assert!(
        WEBS.iter()
            .all(|w| world.ns2.a(&format!("{w}.other.test.")).len() == 1)
    );
    assert_eq!(
        world.lb.server("web", "web-02").unwrap().addr,
        Some("10.0.0.2".parse().unwrap())
    );
    // Not a verify failure: the write itself failed.
    assert!(
        report.verify_failed.is_empty(),
        "{:?}",
        report.verify_failed
    );
}

#[tokio::test(start_paused = true)]
async fn a_target_that_cannot_be_read_gets_no_writes_and_holds_back_nothing() {
    let world = World::new();
    world.ns2.fail_reads("SERVFAIL from the fake");
    world.lb.fail_reads("connection refused by the fake");
    let report = world.reconciler().pass(Mode::Apply).await.report;

    assert!(error_of(&report, "ns2").is_some_and(|e| e.contains("SERVFAIL from the fake")));
    assert!(error_of(&report, "lb-01").is_some_and(|e| e.contains("connection refused")));
    assert_eq!(world.ns2.write_calls(), 0);
    assert_eq!(world.lb.write_calls(), 0);
    assert_eq!(report.written.get("ns1"), Some(&Ok(())));
    assert_eq!(
        world.ns1.a("web-03.example.test."),
        ["192.0.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(report.plan.changes.iter().all(|c| c.target == "ns1"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_suspiciously_empty_source_gives_no_deletions_or_disables() {
    let world = World::new();
    let reconciler = world.reconciler();
    reconciler.pass(Mode::Apply).await;
    assert!(world.converged(&WEBS));

    // The check can fail: had the source said web-03 is gone, the pass would remove it.
    world.cloud.set_instances(webs(&WEBS[..2]));
    let gone = reconciler.pass(Mode::ReadOnly).await.report;
    let removals: Vec<(&str, Op, &str)> = gone
        .plan
        .changes
        .iter()
        .map(|c| (c.target.as_str(), c.op, c.object.as_str()))
        .collect();
    assert!(
        removals.contains(&("ns2", Op::Delete, "web-03.other.test. A"))
            && removals.contains(&("lb-01", Op::Disable, "web/web-03")),
        "{removals:?}"
    );

    let writes = world.write_calls();
    world.cloud.fail("HTTP 503 from the fake");
    let failed = reconciler.pass(Mode::Apply).await.report;
    assert!(error_of(&failed, "cloud").is_some_and(|e| e.contains("HTTP 503 from the fake")));
    assert!(failed.plan.changes.is_empty(), "{:?}", failed.plan.changes);
    assert_eq!(world.write_calls(), writes);
    assert!(world.converged(&WEBS));

    // A source that had instances and now lists none is not believed either.
    world.cloud.recover();
    world.cloud.set_instances(Vec::new());
    let empty = reconciler.pass(Mode::Apply).await.report;
    assert!(
        error_of(&empty, "cloud").is_some_and(|e| e.contains(GUARD_SOURCE_UNAVAILABLE)),
        "{:?}",
        empty.errors
    );
    assert!(empty.plan.changes.is_empty(), "{:?}", empty.plan.changes);
    assert_eq!(world.write_calls(), writes);
    assert!(world.converged(&WEBS));
}

#[tokio::test(start_paused = true)]
async fn a_write_that_does_not_read_back_is_reported_as_a_verify_failure() {
    let world = World::new();
    world.ns1.lose_writes();
    let report = world.reconciler().pass(Mode::Apply).await.report;

    assert_eq!(
        report.verify_failed.iter().collect::<Vec<_>>(),
        ["ns1"],
        "only the target whose write was lost"
    );
    let ns1 = report.written["ns1"].as_ref().unwrap_err();
    assert!(
        ns1.starts_with("verify failed: after writing 3 change(s), 3 did not read back: "),
        "{ns1}"
    );
    assert!(ns1.contains("web-02.example.test."), "{ns1}");
    assert_eq!(world.ns1.batches().len(), 1, "the batch was sent once");
    assert!(report.failed());
    assert_eq!(report.written.get("ns2"), Some(&Ok(())));
    assert_eq!(report.written.get("lb-01"), Some(&Ok(())));
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_times_out_at_the_configured_timeout_without_real_waiting() {
    let world = World::new();
    world.cloud.slow(Duration::from_secs(3600));
    let wall = std::time::Instant::now();
    let outcome = world.reconciler().pass(Mode::Apply).await;
    let wall = wall.elapsed();

    let report = &outcome.report;
    assert_eq!(
        error_of(report, "cloud"),
        Some("inventory \"cloud\" did not answer within 3s")
    );
    let listing = outcome
        .timings
        .iter()
        .find(|t| t.target == "cloud" && t.io == Io::Read)
        .expect("the listing is timed");
    assert!(
        listing.duration >= Duration::from_secs(3)
            && listing.duration < Duration::from_millis(3100),
        "{:?}",
        listing.duration
    );
    // On tokio's paused clock the 3 s pass, not on the wall clock.
    assert!(wall < Duration::from_secs(3), "{wall:?}");
    assert_eq!(
        world.write_calls(),
        0,
        "nothing is known, nothing is written"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dns_target_that_never_answers_times_out_and_the_others_are_repaired() {
    let world = World::new();
    world.ns2.slow_reads(Duration::from_secs(3600));
    let report = world.reconciler().pass(Mode::Apply).await.report;

    assert_eq!(
        error_of(&report, "ns2"),
        Some("no zone listing from DNS target \"ns2\" within 3s")
    );
    assert_eq!(world.ns2.write_calls(), 0);
    assert_eq!(report.written.get("ns1"), Some(&Ok(())));
    assert_eq!(report.written.get("lb-01"), Some(&Ok(())));
    assert_eq!(
        world.lb.server("web", "web-01").unwrap().addr,
        Some("10.0.0.1".parse().unwrap())
    );
}

#[tokio::test(start_paused = true)]
async fn a_fresh_reconciler_over_converged_fakes_writes_nothing() {
    let world = World::new();
    let first = world.reconciler();
    let repaired = first.pass(Mode::Apply).await.report;
    assert!(!repaired.failed(), "{repaired:?}");
    assert!(world.converged(&WEBS));
    let writes = world.write_calls();
    assert_eq!(writes, 3, "one batch per target");

    let again = first.pass(Mode::Apply).await.report;
    assert!(!again.plan.has_drift(), "{:?}", again.plan);

    // Level-triggered: a new process (nothing remembered) plans the same nothing.
    let fresh = world.reconciler().pass(Mode::Apply).await.report;
    assert!(!fresh.plan.has_drift(), "{:?}", fresh.plan);
    assert!(!fresh.failed(), "{fresh:?}");
    assert!(fresh.written.is_empty());
    assert_eq!(world.write_calls(), writes);
}
