//! The pure core at fleet sizes from 100 to 100 000 instances: deriving the desired state
//! (instances × rules) and planning it against what the targets report, both when every
//! target is in sync and when every address changed (the seed outage).
//!
//! Each instance yields one DNS record set (`{name}.example.test.`) and one HAProxy server
//! (`web/{name}`). Target: 10 000 instances derived and planned in under 20 ms on one core,
//! growing linearly. Run with
//! `cargo bench --bench desired_and_plan -- --warm-up-time 1 --measurement-time 3`.
//!
//! Instruction counts, stable on a shared machine: `IPDRIFT_BENCH_ONE_PASS=N` makes the
//! binary run desired + plan once for N instances with every address changed, in
//! [`one_pass`], and exit; under
//! `valgrind --tool=callgrind --toggle-collect=*one_pass*` only that call is counted.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ipdrift::config::{self, Config};
use ipdrift::desired::{Desired, SourceSnapshot, desired};
use ipdrift::model::{Instance, InstanceState, ObservedServer, ServerAdmin, ServerIntent};
use ipdrift::plan::{Observed, PlanOptions, plan};

/// The allocator the binary uses (feature `mimalloc`), so that the numbers are ipdrift's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FLEET_SIZES: [u32; 4] = [100, 1_000, 10_000, 100_000];

const CONFIG: &str = r#"
[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:53"
zone = "example.test."
tsig = { name = "ipdrift-key", algorithm = "hmac-sha256", secret_env = "IPDRIFT_BENCH_TSIG" }

[[record]]
dns = "ns1"
name = "{name}.example.test."
select = { tags = { role = "web" } }
address = "public_ipv4"

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:9999"

[[haproxy.backend]]
name = "web"
select = { tags = { role = "web" } }
address = "private_ipv4"
port = 8080
server = "{name}"
"#;

/// Generation `generation` of a fleet of `count` web servers: instance `i` has the public
/// address 100.64.0.0 + i and the private address 10.0.0.0 + i, shifted by 2^21 per
/// generation, so every generation gives every instance new addresses.
fn fleet(count: u32, generation: u32) -> Vec<Instance> {
    let shift = generation << 21;
    (0..count)
        .map(|i| Instance {
            id: format!("i-{i:08x}"),
            name: format!("web-{i:06}"),
            state: InstanceState::Running,
            public_ipv4: Some(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(100, 64, 0, 0)) + shift + i,
            )),
            private_ipv4: Some(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 0, 0, 0)) + shift + i,
            )),
            ipv6: None,
            tags: BTreeMap::from([("role".to_string(), "web".to_string())]),
        })
        .collect()
}

fn sources(instances: Vec<Instance>) -> BTreeMap<String, SourceSnapshot> {
    BTreeMap::from([("local".to_string(), SourceSnapshot::Listed(instances))])
}

/// What the targets report when they hold exactly `want`: the state after a converged pass.
fn observed_as(want: &Desired) -> Observed {
    let records = want
        .records
        .iter()
        .map(|(target, sets)| (target.clone(), sets.values().cloned().collect()))
        .collect();
    let servers = want
        .servers
        .iter()
        .map(|(lb, servers)| {
            let observed = servers
                .values()
                .map(|server| {
                    let ServerIntent::Serve { addr, port } = server.intent else {
                        unreachable!("every benchmark instance runs");
                    };
                    ObservedServer {
                        key: server.key.clone(),
                        addr: Some(addr),
                        port,
                        admin: ServerAdmin::Ready,
                        durable: true,
                    }
                })
                .collect();
            (lb.clone(), observed)
        })
        .collect();
    Observed {
        records,
        servers,
        ..Observed::default()
    }
}

fn config() -> Config {
    config::parse(CONFIG, Path::new("ipdrift.toml")).expect("the benchmark config is valid")
}

/// Every record and server planned for `count` instances whose addresses all changed.
fn assert_all_changed(want: &Desired, stale: &Observed, count: u32) {
    let changes = plan(want, stale, &PlanOptions::default()).changes.len();
    assert_eq!(
        changes,
        2 * count as usize,
        "one record and one server each"
    );
}

fn bench_fleet_sizes(c: &mut Criterion) {
    let config = config();
    let options = PlanOptions::default();
    let mut group = c.benchmark_group("core");
    for &count in &FLEET_SIZES {
        let current = sources(fleet(count, 1));
        let want = desired(&config, &current);
        assert!(want.problems.is_empty(), "{:?}", want.problems.first());
        let in_sync = observed_as(&want);
        let stale = observed_as(&desired(&config, &sources(fleet(count, 0))));
        assert!(plan(&want, &in_sync, &options).changes.is_empty());
        assert_all_changed(&want, &stale, count);

        group.throughput(Throughput::Elements(u64::from(count)));
        // Criterion's minimum of 10 samples at 100 000 instances already takes seconds.
        group.sample_size(if count >= 10_000 { 10 } else { 50 });
        group.bench_with_input(BenchmarkId::new("desired", count), &current, |b, s| {
            b.iter(|| desired(&config, black_box(s)))
        });
        group.bench_with_input(BenchmarkId::new("plan_in_sync", count), &in_sync, |b, o| {
            b.iter(|| plan(&want, black_box(o), &options))
        });
        group.bench_with_input(
            BenchmarkId::new("plan_all_changed", count),
            &stale,
            |b, o| b.iter(|| plan(&want, black_box(o), &options)),
        );
        // What a pass computes between reading and writing: the 20 ms target.
        group.bench_with_input(
            BenchmarkId::new("desired_and_plan_all_changed", count),
            &(current, stale),
            |b, (s, o)| b.iter(|| plan(&desired(&config, black_box(s)), black_box(o), &options)),
        );
    }
    group.finish();
}

/// What a pass computes between reading and writing, once: the unit callgrind counts.
#[inline(never)]
fn one_pass(
    config: &Config,
    current: &BTreeMap<String, SourceSnapshot>,
    stale: &Observed,
) -> usize {
    let options = PlanOptions::default();
    plan(&desired(config, current), stale, &options)
        .changes
        .len()
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_fleet_sizes
}

fn main() {
    if let Ok(count) = std::env::var("IPDRIFT_BENCH_ONE_PASS") {
        let count: u32 = count.parse().expect("IPDRIFT_BENCH_ONE_PASS=N instances");
        let config = config();
        let current = sources(fleet(count, 1));
        let stale = observed_as(&desired(&config, &sources(fleet(count, 0))));
        let changes = one_pass(&config, black_box(&current), black_box(&stale));
        assert_eq!(changes, 2 * count as usize);
        println!("{count} instances: {changes} changes");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
