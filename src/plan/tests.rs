use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::{self, Config};
use crate::desired::{SourceSnapshot, desired};
use crate::model::{Instance, InstanceState, ObservedServer};

const CONFIG: &str = r#"
[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:53"
zone = "example.com."
tsig = { key_file = "k" }

[[record]]
dns = "ns1"
name = "www.example.com."
select = { tags = { role = "lb" } }
address = "public_ipv4"

[[record]]
dns = "ns1"
name = "{name}.example.com."
select = { tags = { role = "web" } }
address = "public_ipv4"

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:9999"

[[haproxy.backend]]
name = "web"
select = { tags = { role = "web" } }
address = "private_ipv4"
port = 80
server = "{name}"
"#;

fn config() -> Config {
    config::parse(CONFIG, Path::new("ipdrift.toml")).unwrap()
}

fn instance(
    name: &str,
    role: &str,
    state: InstanceState,
    public: [u8; 4],
    private: [u8; 4],
) -> Instance {
    Instance {
        id: format!("i-{name}"),
        name: name.into(),
        state,
        public_ipv4: Some(Ipv4Addr::from(public)),
        private_ipv4: Some(Ipv4Addr::from(private)),
        ipv6: None,
        tags: BTreeMap::from([("role".to_string(), role.to_string())]),
    }
}

fn listed(instances: Vec<Instance>) -> BTreeMap<String, SourceSnapshot> {
    BTreeMap::from([("local".to_string(), SourceSnapshot::Listed(instances))])
}

/// The seed's fleet: one load balancer, two web servers, all running.
fn fleet(generation: u8) -> Vec<Instance> {
    vec![
        instance(
            "lb",
            "lb",
            InstanceState::Running,
            [192, 0, 2, generation],
            [10, 0, generation, 1],
        ),
        instance(
            "web-01",
            "web",
            InstanceState::Running,
            [198, 51, 100, generation],
            [10, 0, generation, 11],
        ),
        instance(
            "web-02",
            "web",
            InstanceState::Running,
            [203, 0, 113, generation],
            [10, 0, generation, 12],
        ),
    ]
}

/// What the targets say after `plan` was written: the effect of every change.
fn written(observed: &Observed, plan: &Plan) -> Observed {
    let mut after = observed.clone();
    for change in &plan.changes {
        match &change.action {
            Action::Dns(c) => {
                let zone = after.records.get_mut(&change.target).unwrap();
                zone.retain(|s| s.key != c.to.key);
                zone.push(c.to.clone());
            }
            Action::Haproxy(c) => {
                let servers = after.servers.get_mut(&change.target).unwrap();
                match c {
                    ServerChange::SetAddr { key, addr, port } => {
                        let s = servers.iter_mut().find(|s| &s.key == key).unwrap();
                        s.addr = Some(*addr);
                        s.port = *port;
                    }
                    ServerChange::SetAdmin { key, admin } => {
                        servers.iter_mut().find(|s| &s.key == key).unwrap().admin = *admin;
                    }
                }
            }
        }
    }
    after
}

/// Targets exactly as the given fleet would have them.
fn converged(instances: Vec<Instance>) -> Observed {
    let want = desired(&config(), &listed(instances));
    let records = want.records["ns1"].values().cloned().collect();
    let servers = want.servers["lb-01"]
        .values()
        .map(|d| match d.intent {
            ServerIntent::Serve { addr, port } => ObservedServer {
                key: d.key.clone(),
                addr: Some(addr),
                port,
                admin: ServerAdmin::Ready,
            },
            ServerIntent::Maint => ObservedServer {
                key: d.key.clone(),
                addr: None,
                port: 80,
                admin: ServerAdmin::Maint,
            },
        })
        .collect();
    Observed {
        records: BTreeMap::from([("ns1".to_string(), records)]),
        servers: BTreeMap::from([("lb-01".to_string(), servers)]),
    }
}

#[test]
fn a_converged_system_plans_nothing() {
    let observed = converged(fleet(1));
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed);
    assert_eq!(p, Plan::default());
}

/// (target, op, object, from, to) of a change.
type ChangeSummary = (String, Op, String, Option<String>, Option<String>);

#[test]
fn the_seed_outage_is_repaired_in_one_plan() {
    let observed = converged(fleet(1));
    let want = desired(&config(), &listed(fleet(2)));
    let p = plan(&want, &observed);
    let summary: Vec<ChangeSummary> = p
        .changes
        .iter()
        .map(|c| {
            (
                c.target.clone(),
                c.op,
                c.object.clone(),
                c.from.clone(),
                c.to.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "lb-01".into(),
                Op::Update,
                "web/web-01".into(),
                Some("10.0.1.11:80".into()),
                Some("10.0.2.11:80".into())
            ),
            (
                "lb-01".into(),
                Op::Update,
                "web/web-02".into(),
                Some("10.0.1.12:80".into()),
                Some("10.0.2.12:80".into())
            ),
            (
                "ns1".into(),
                Op::Update,
                "web-01.example.com. A".into(),
                Some("198.51.100.1 ttl=60".into()),
                Some("198.51.100.2 ttl=60".into())
            ),
            (
                "ns1".into(),
                Op::Update,
                "web-02.example.com. A".into(),
                Some("203.0.113.1 ttl=60".into()),
                Some("203.0.113.2 ttl=60".into())
            ),
            (
                "ns1".into(),
                Op::Update,
                "www.example.com. A".into(),
                Some("192.0.2.1 ttl=60".into()),
                Some("192.0.2.2 ttl=60".into())
            ),
        ]
    );
    assert!(p.refusals.is_empty() && p.unrepairable.is_empty());
    assert_eq!(plan(&want, &written(&observed, &p)), Plan::default());
}

#[test]
fn a_record_is_never_emptied() {
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances[0].state = InstanceState::Stopped;
    let p = plan(&desired(&config(), &listed(instances)), &observed);
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.refusals.len(), 1);
    assert_eq!(p.refusals[0].guard, GUARD_NEVER_EMPTY);
    assert_eq!(p.refusals[0].object, "www.example.com. A");
    assert_eq!(p.drift_objects("ns1"), 1);
}

#[test]
fn a_stopped_server_goes_to_maintenance_but_never_the_last_one() {
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances[1].state = InstanceState::Stopped;
    let p = plan(&desired(&config(), &listed(instances.clone())), &observed);
    let disables: Vec<&Change> = p.changes.iter().filter(|c| c.op == Op::Disable).collect();
    assert_eq!(disables.len(), 1);
    assert_eq!(disables[0].object, "web/web-01");

    instances[2].state = InstanceState::Terminated;
    let p = plan(&desired(&config(), &listed(instances)), &observed);
    assert!(
        p.changes.iter().all(|c| c.op != Op::Disable),
        "{:?}",
        p.changes
    );
    assert_eq!(p.refusals.len(), 2);
}

#[test]
fn a_server_missing_from_its_backend_is_unrepairable_drift() {
    let mut observed = converged(fleet(1));
    observed
        .servers
        .get_mut("lb-01")
        .unwrap()
        .retain(|s| s.key.server != "web-02");
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed);
    assert!(p.changes.is_empty());
    assert_eq!(p.unrepairable.len(), 1);
    assert!(
        p.unrepairable[0].message.contains("haproxy.cfg"),
        "{:?}",
        p.unrepairable
    );
    assert!(p.has_drift());
}

#[test]
fn a_failed_source_plans_nothing_that_depends_on_it() {
    let observed = converged(fleet(1));
    let sources = BTreeMap::from([("local".to_string(), SourceSnapshot::Failed)]);
    let want = desired(&config(), &sources);
    let p = plan(&want, &observed);
    assert_eq!(p, Plan::default());
    assert!(
        want.problems.iter().any(|p| p.message.contains("failed")),
        "{:?}",
        want.problems
    );
}

#[test]
fn hostile_instance_names_are_skipped_with_a_problem() {
    let mut instances = fleet(1);
    instances[1].name = "web-01;shutdown sessions server web/web-02".into();
    let want = desired(&config(), &listed(instances));
    assert!(want.servers["lb-01"].keys().all(|k| k.server == "web-02"));
    assert!(
        want.records["ns1"]
            .keys()
            .all(|k| !k.name.as_str().contains("shutdown"))
    );
    let named: Vec<&str> = want.problems.iter().map(|p| p.object.as_str()).collect();
    assert!(
        named.iter().all(|o| o.contains("shutdown")) && named.len() == 2,
        "{named:?}"
    );
}

#[test]
fn a_server_in_maintenance_for_a_running_instance_is_enabled() {
    let mut observed = converged(fleet(1));
    observed.servers.get_mut("lb-01").unwrap()[0].admin = ServerAdmin::Maint;
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        (p.changes[0].op, p.changes[0].object.as_str()),
        (Op::Enable, "web/web-01")
    );
}

fn arb_state() -> impl Strategy<Value = InstanceState> {
    prop_oneof![
        Just(InstanceState::Pending),
        Just(InstanceState::Running),
        Just(InstanceState::Running),
        Just(InstanceState::Stopped),
        Just(InstanceState::Terminated),
    ]
}

fn arb_fleet() -> impl Strategy<Value = Vec<Instance>> {
    prop::collection::vec(
        (0u8..6, prop::bool::ANY, arb_state(), 1u8..4, 1u8..4),
        0..10,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (n, lb, state, a, b))| {
                let mut inst = instance(
                    &format!("web-{n}"),
                    if lb { "lb" } else { "web" },
                    state,
                    [192, 0, 2, a],
                    [10, 0, 0, b],
                );
                inst.id = format!("i-{i}");
                inst
            })
            .collect()
    })
}

proptest! {
    /// Writing a plan and planning again yields nothing: the plan is complete and idempotent.
    #[test]
    fn a_written_plan_converges(before in arb_fleet(), after in arb_fleet()) {
        let mut observed = converged(before);
        // Servers named by the new fleet must exist in the backend (haproxy.cfg lists them).
        for n in 0..6 {
            let key = ServerKey { backend: "web".into(), server: format!("web-{n}") };
            let servers = observed.servers.get_mut("lb-01").unwrap();
            if !servers.iter().any(|s| s.key == key) {
                servers.push(ObservedServer { key, addr: Some(IpAddr::from([10, 9, 9, 9])), port: 80, admin: ServerAdmin::Ready });
            }
        }
        let want = desired(&config(), &listed(after));
        let first = plan(&want, &observed);
        let second = plan(&want, &written(&observed, &first));
        prop_assert!(second.changes.is_empty(), "{:?}", second.changes);
        prop_assert_eq!(&second.refusals, &first.refusals);
    }

    /// No plan empties a record set or takes the last server of a backend out of service.
    #[test]
    fn a_plan_never_removes_the_last_address(before in arb_fleet(), after in arb_fleet()) {
        let observed = converged(before);
        let p = plan(&desired(&config(), &listed(after)), &observed);
        for change in &p.changes {
            if let Action::Dns(c) = &change.action {
                prop_assert!(!c.to.addrs.is_empty());
            }
        }
        let after_write = written(&observed, &p);
        let before_ready = observed.servers["lb-01"].iter().filter(|s| s.admin != ServerAdmin::Maint).count();
        let after_ready = after_write.servers["lb-01"].iter().filter(|s| s.admin != ServerAdmin::Maint).count();
        prop_assert!(before_ready == 0 || after_ready > 0);
    }
}
