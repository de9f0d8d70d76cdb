use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::config;
use crate::desired::{SourceSnapshot, desired};
use crate::forecast::{ScheduledEvent, forecast};
use crate::model::{Instance, InstanceState, ObservedServer, RecordType};
use crate::plan::{Op, PlanOptions, plan};

const CONFIG: &str = r#"
[controller]
maintenance_ttl = 10
maintenance_lead = "10m"
maintenance_drain = true

[[inventory]]
name = "aws"
kind = "file"
path = "i.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:53"
zone = "example.com."
tsig = { key_file = "k" }

[[record]]
dns = "ns1"
name = "{name}.example.com."
address = "public_ipv4"
ttl = 60

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:9999"

[[haproxy.backend]]
name = "web"
address = "private_ipv4"
port = 80
server = "{name}"
"#;

const NOT_BEFORE: u64 = 1_800_000_000;
const LEAD: u64 = 600;

fn instance(n: u8, generation: u8) -> Instance {
    Instance {
        id: format!("i-{n}"),
        name: format!("web-0{n}"),
        state: InstanceState::Running,
        public_ipv4: Some([192, 0, 2 + generation, n].into()),
        private_ipv4: Some([10, generation, 0, n].into()),
        ipv6: None,
        tags: Default::default(),
    }
}

/// The fleet of two at `generation`, with an address-changing event for the instances in
/// `announced`; the desired state, the forecasts and the policy of [`CONFIG`].
struct Scene {
    want: Desired,
    forecasts: Vec<Forecast>,
    policy: MaintenancePolicy,
    config: Config,
}

fn scene(generation: u8, announced: &[u8]) -> Scene {
    let config = config::parse(CONFIG, Path::new("c.toml")).unwrap();
    let sources = BTreeMap::from([(
        "aws".to_string(),
        SourceSnapshot::Listed(vec![instance(1, generation), instance(2, generation)]),
    )]);
    let events = BTreeMap::from([(
        "aws".to_string(),
        announced
            .iter()
            .map(|n| ScheduledEvent {
                instance_id: format!("i-{n}"),
                code: "instance-stop".into(),
                not_before: NOT_BEFORE,
                description: "scheduled stop".into(),
                changes_addresses: true,
            })
            .collect(),
    )]);
    let policy = MaintenancePolicy::of(&config);
    let want = desired(&config, &sources);
    let forecasts = forecast(&want, &sources, &events, policy.lead);
    Scene {
        want,
        forecasts,
        policy,
        config,
    }
}

/// What the targets hold: every record and server of `generation`, with `ttl` and `admin`.
fn held(generation: u8, ttl: u32, admin: [ServerAdmin; 2]) -> Observed {
    let records = (1..=2)
        .map(|n| RecordSet {
            key: RecordKey {
                name: crate::model::DnsName(format!("web-0{n}.example.com.")),
                rtype: RecordType::A,
            },
            ttl,
            addrs: [IpAddr::from([192, 0, 2 + generation, n])].into(),
        })
        .collect();
    let servers = (1..=2u8)
        .map(|n| ObservedServer {
            key: ServerKey {
                backend: "web".into(),
                server: format!("web-0{n}"),
            },
            addr: Some(IpAddr::from([10, generation, 0, n])),
            port: 80,
            admin: admin[usize::from(n - 1)],
            durable: true,
        })
        .collect();
    Observed {
        records: BTreeMap::from([("ns1".to_string(), records)]),
        servers: BTreeMap::from([("lb-01".to_string(), servers)]),
        ..Observed::default()
    }
}

/// The steps by object (records before servers, whatever the targets' names).
fn kinds(steps: &[Step]) -> Vec<(&str, StepKind)> {
    let mut kinds: Vec<_> = steps.iter().map(|s| (s.object.as_str(), s.step)).collect();
    kinds.sort();
    kinds
}

/// The planned changes by object.
fn changes(plan: &Plan) -> Vec<(String, Op, String)> {
    let mut changes: Vec<_> = plan
        .changes
        .iter()
        .map(|c| (c.object.clone(), c.op, c.to.clone().unwrap_or_default()))
        .collect();
    changes.sort();
    changes
}

const READY: [ServerAdmin; 2] = [ServerAdmin::Ready, ServerAdmin::Ready];

#[test]
fn before_the_lead_nothing_changes_and_from_it_the_ttl_is_lowered_and_the_server_drained() {
    let before = NOT_BEFORE - LEAD - 1;
    let mut s = scene(0, &[1]);
    let observed = held(0, 60, READY);
    assert!(prepare(&mut s.want, &s.forecasts, &observed, before, &s.policy).is_empty());
    assert!(
        plan(&s.want, &observed, &PlanOptions::default())
            .changes
            .is_empty()
    );

    let steps = prepare(&mut s.want, &s.forecasts, &observed, before + 1, &s.policy);
    assert_eq!(
        kinds(&steps),
        vec![
            ("web-01.example.com. A", StepKind::TtlLowered),
            ("web/web-01", StepKind::Drained)
        ]
    );
    assert!(
        steps[0].reason.contains("instance-stop of web-01"),
        "{steps:?}"
    );
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert_eq!(
        changes(&planned),
        vec![
            (
                "web-01.example.com. A".to_string(),
                Op::Update,
                "192.0.2.1 ttl=10".to_string()
            ),
            ("web/web-01".to_string(), Op::Disable, "drain".to_string()),
        ]
    );
    assert!(planned.refusals.is_empty(), "{:?}", planned.refusals);
}

#[test]
fn once_lowered_and_drained_the_due_event_plans_nothing_more() {
    let mut s = scene(0, &[1]);
    let observed = {
        let mut o = held(0, 60, [ServerAdmin::Drain, ServerAdmin::Ready]);
        o.records.get_mut("ns1").unwrap()[0].ttl = 10;
        o
    };
    prepare(&mut s.want, &s.forecasts, &observed, NOT_BEFORE, &s.policy);
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert!(planned.changes.is_empty(), "{:?}", changes(&planned));
}

#[test]
fn after_the_event_the_new_address_is_written_with_the_low_ttl_then_the_ttl_and_service_return() {
    // The event is over (no forecast) and the instance has new addresses; the targets
    // still hold the old ones, at the maintenance TTL and draining.
    let mut s = scene(1, &[]);
    let mut observed = held(0, 60, [ServerAdmin::Drain, ServerAdmin::Ready]);
    observed.records.get_mut("ns1").unwrap()[0].ttl = 10;
    let steps = prepare(
        &mut s.want,
        &s.forecasts,
        &observed,
        NOT_BEFORE + 60,
        &s.policy,
    );
    assert_eq!(
        kinds(&steps),
        vec![
            ("web-01.example.com. A", StepKind::TtlHeld),
            ("web/web-01", StepKind::DrainHeld)
        ]
    );
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert_eq!(
        changes(&planned),
        vec![
            (
                "web-01.example.com. A".to_string(),
                Op::Update,
                "192.0.3.1 ttl=10".to_string()
            ),
            (
                "web-02.example.com. A".to_string(),
                Op::Update,
                "192.0.3.2 ttl=60".to_string()
            ),
            (
                "web/web-01".to_string(),
                Op::Update,
                "10.1.0.1:80".to_string()
            ),
            (
                "web/web-02".to_string(),
                Op::Update,
                "10.1.0.2:80".to_string()
            ),
        ],
        "the drained server gets its address and stays draining"
    );

    // The next pass finds the new addresses in place.
    let mut s = scene(1, &[]);
    let mut observed = held(1, 60, [ServerAdmin::Drain, ServerAdmin::Ready]);
    observed.records.get_mut("ns1").unwrap()[0].ttl = 10;
    let steps = prepare(
        &mut s.want,
        &s.forecasts,
        &observed,
        NOT_BEFORE + 70,
        &s.policy,
    );
    assert_eq!(
        kinds(&steps),
        vec![
            ("web-01.example.com. A", StepKind::TtlRestored),
            ("web/web-01", StepKind::ServiceRestored)
        ]
    );
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert_eq!(
        changes(&planned),
        vec![
            (
                "web-01.example.com. A".to_string(),
                Op::Update,
                "192.0.3.1 ttl=60".to_string()
            ),
            ("web/web-01".to_string(), Op::Enable, "ready".to_string()),
        ]
    );
}

#[test]
fn a_cancelled_event_restores_at_once() {
    // Lowered and drained for an event that is gone, addresses unchanged.
    let mut s = scene(0, &[]);
    let mut observed = held(0, 60, [ServerAdmin::Drain, ServerAdmin::Ready]);
    observed.records.get_mut("ns1").unwrap()[0].ttl = 10;
    prepare(
        &mut s.want,
        &s.forecasts,
        &observed,
        NOT_BEFORE - 5,
        &s.policy,
    );
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert_eq!(
        changes(&planned),
        vec![
            (
                "web-01.example.com. A".to_string(),
                Op::Update,
                "192.0.2.1 ttl=60".to_string()
            ),
            ("web/web-01".to_string(), Op::Enable, "ready".to_string()),
        ]
    );
}

#[test]
fn the_last_server_of_a_backend_is_never_drained_but_every_ttl_is_lowered() {
    let mut s = scene(0, &[1, 2]);
    let observed = held(0, 60, READY);
    let steps = prepare(&mut s.want, &s.forecasts, &observed, NOT_BEFORE, &s.policy);
    assert_eq!(
        kinds(&steps),
        vec![
            ("web-01.example.com. A", StepKind::TtlLowered),
            ("web-02.example.com. A", StepKind::TtlLowered),
            ("web/web-01", StepKind::DrainWithheld),
            ("web/web-02", StepKind::DrainWithheld),
        ]
    );
    assert!(
        steps
            .iter()
            .filter(|s| s.step == StepKind::DrainWithheld)
            .all(|s| s.reason.contains("never-empty")),
        "{steps:?}"
    );
    let planned = plan(&s.want, &observed, &PlanOptions::default());
    assert!(
        planned.changes.iter().all(|c| c.op == Op::Update),
        "{:?}",
        changes(&planned)
    );
}

#[test]
fn without_maintenance_drain_servers_are_left_alone() {
    let mut s = scene(0, &[1]);
    s.policy.drain = false;
    let observed = held(0, 60, [ServerAdmin::Drain, ServerAdmin::Ready]);
    let steps = prepare(&mut s.want, &s.forecasts, &observed, NOT_BEFORE, &s.policy);
    assert_eq!(
        kinds(&steps),
        vec![("web-01.example.com. A", StepKind::TtlLowered)]
    );
    assert!(s.want.drained.is_empty());
}

#[test]
fn a_record_whose_ttl_is_already_low_is_not_touched() {
    let mut s = scene(0, &[1]);
    s.policy.ttl = 60;
    let observed = held(0, 60, READY);
    let steps = prepare(&mut s.want, &s.forecasts, &observed, NOT_BEFORE, &s.policy);
    assert!(
        steps.iter().all(|s| s.step == StepKind::Drained),
        "{steps:?}"
    );
}

#[test]
fn the_default_lead_outlasts_twice_the_longest_ttl() {
    let s = scene(0, &[]);
    assert_eq!(s.policy.lead, Duration::from_secs(600), "configured");
    let mut config = s.config;
    config.controller.maintenance_lead = None;
    assert_eq!(
        MaintenancePolicy::of(&config).lead,
        MIN_DEFAULT_MAINTENANCE_LEAD
    );
    config.records[0].ttl = 3600;
    assert_eq!(
        MaintenancePolicy::of(&config).lead,
        Duration::from_secs(7200)
    );
}

#[test]
fn steps_of_objects_the_plan_cannot_change_are_dropped() {
    let mut steps = vec![Step {
        target: "ns1".into(),
        object: "web-01.example.com. A".into(),
        step: StepKind::TtlLowered,
        reason: String::new(),
    }];
    let mut blocked = Plan::default();
    blocked.unrepairable.push(crate::desired::Problem {
        target: Some("ns1".into()),
        object: "web-01.example.com. A".into(),
        message: "not adopted".into(),
    });
    drop_unplanned(&mut steps, &Plan::default());
    assert_eq!(steps.len(), 1);
    drop_unplanned(&mut steps, &blocked);
    assert!(steps.is_empty());
}
