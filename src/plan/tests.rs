use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::{self, Config};
use crate::desired::{SourceSnapshot, desired};
use crate::model::{Instance, InstanceState, ObservedServer};

pub(crate) const CONFIG: &str = r#"
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

pub(crate) fn config() -> Config {
    config::parse(CONFIG, Path::new("ipdrift.toml")).unwrap()
}

/// The default options, with the fraction guard off unless a test is about it.
fn opts() -> PlanOptions {
    PlanOptions {
        max_remove_fraction: 1.0,
        ..PlanOptions::default()
    }
}

pub(crate) fn instance(
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

pub(crate) fn listed(instances: Vec<Instance>) -> BTreeMap<String, SourceSnapshot> {
    BTreeMap::from([("local".to_string(), SourceSnapshot::Listed(instances))])
}

/// The seed's fleet: one load balancer, two web servers, all running.
pub(crate) fn fleet(generation: u8) -> Vec<Instance> {
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
                zone.retain(|s| &s.key != c.key());
                let ownership = after.ownership.entry(change.target.clone()).or_default();
                match c {
                    RecordChange::Replace { to, .. } => zone.push(to.clone()),
                    RecordChange::Create { to, owner, .. } => {
                        zone.push(to.clone());
                        ownership.insert(to.key.name.clone(), owner.clone());
                    }
                    RecordChange::Delete { from } => {
                        ownership.remove(&from.key.name);
                    }
                }
            }
            Action::Lb(c) => {
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
                    ServerChange::Add {
                        key, addr, port, ..
                    } => servers.push(ObservedServer {
                        key: key.clone(),
                        addr: Some(*addr),
                        port: *port,
                        admin: ServerAdmin::Maint,
                        durable: true,
                    }),
                    ServerChange::Delete { key } => servers.retain(|s| &s.key != key),
                }
            }
        }
    }
    after
}

/// Targets exactly as the given fleet would have them.
pub(crate) fn converged(instances: Vec<Instance>) -> Observed {
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
                durable: true,
            },
            ServerIntent::Maint => ObservedServer {
                key: d.key.clone(),
                addr: None,
                port: 80,
                admin: ServerAdmin::Maint,
                durable: true,
            },
        })
        .collect();
    Observed {
        records: BTreeMap::from([("ns1".to_string(), records)]),
        servers: BTreeMap::from([("lb-01".to_string(), servers)]),
        ..Observed::default()
    }
}

#[test]
fn a_converged_system_plans_nothing() {
    let observed = converged(fleet(1));
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed, &opts());
    assert_eq!(p, Plan::default());
}

/// (target, op, object, from, to) of a change.
type ChangeSummary = (String, Op, String, Option<String>, Option<String>);

#[test]
fn the_seed_outage_is_repaired_in_one_plan() {
    let observed = converged(fleet(1));
    let want = desired(&config(), &listed(fleet(2)));
    let p = plan(&want, &observed, &opts());
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
    assert_eq!(
        plan(&want, &written(&observed, &p), &opts()),
        Plan::default()
    );
}

#[test]
fn a_record_is_never_emptied() {
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances[0].state = InstanceState::Stopped;
    let p = plan(&desired(&config(), &listed(instances)), &observed, &opts());
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
    let p = plan(
        &desired(&config(), &listed(instances.clone())),
        &observed,
        &opts(),
    );
    let disables: Vec<&Change> = p.changes.iter().filter(|c| c.op == Op::Disable).collect();
    assert_eq!(disables.len(), 1);
    assert_eq!(disables[0].object, "web/web-01");

    instances[2].state = InstanceState::Terminated;
    let p = plan(&desired(&config(), &listed(instances)), &observed, &opts());
    assert!(
        p.changes.iter().all(|c| c.op != Op::Disable),
        "{:?}",
        p.changes
    );
    assert_eq!(p.refusals.len(), 2);
}

#[test]
fn a_server_missing_from_its_backend_is_added_and_enabled_once_it_answers() {
    let mut observed = converged(fleet(1));
    observed
        .servers
        .get_mut("lb-01")
        .unwrap()
        .retain(|s| s.key.server != "web-02");
    let want = desired(&config(), &listed(fleet(1)));
    let p = plan(&want, &observed, &opts());
    let ops: Vec<(Op, &str)> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![(Op::Create, "web/web-02")],
        "not enabled before the probe answered"
    );

    observed.reachable.insert("10.0.1.12:80".parse().unwrap());
    let p = plan(&want, &observed, &opts());
    let ops: Vec<(Op, &str)> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![(Op::Create, "web/web-02"), (Op::Enable, "web/web-02")]
    );
    assert_eq!(
        plan(&want, &written(&observed, &p), &opts()).changes,
        vec![]
    );
}

#[test]
fn a_server_whose_instance_vanished_goes_to_maintenance_or_is_deleted_or_drained() {
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances.retain(|i| i.name != "web-02");
    let p = plan(
        &desired(&config(), &listed(instances.clone())),
        &observed,
        &opts(),
    );
    let ops: Vec<(Op, &str)> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str()))
        .collect();
    assert_eq!(ops, vec![(Op::Disable, "web/web-02")]);

    let deleting = config::parse(
        &CONFIG.replace(
            "server = \"{name}\"",
            "server = \"{name}\"\nremove = \"delete\"",
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    let p = plan(
        &desired(&deleting, &listed(instances.clone())),
        &observed,
        &opts(),
    );
    let ops: Vec<(Op, &str)> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![(Op::Disable, "web/web-02"), (Op::Delete, "web/web-02")]
    );

    let draining = config::parse(
        &CONFIG.replace(
            "server = \"{name}\"",
            "server = \"{name}\"\nremove = \"drain\"",
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    let p = plan(
        &desired(&draining, &listed(instances.clone())),
        &observed,
        &opts(),
    );
    let summary: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str(), c.to.as_deref()))
        .collect();
    assert_eq!(summary, vec![(Op::Disable, "web/web-02", Some("drain"))]);
    let mut drained = observed.clone();
    drained.servers.get_mut("lb-01").unwrap()[1].admin = ServerAdmin::Drain;
    let p = plan(&desired(&draining, &listed(instances)), &drained, &opts());
    assert!(
        p.changes.is_empty(),
        "a drained server stays drained: {:?}",
        p.changes
    );
}

#[test]
fn removals_above_the_fraction_are_refused_unless_forced() {
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances[1].state = InstanceState::Stopped;
    let strict = PlanOptions {
        max_remove_fraction: 0.34,
        ..PlanOptions::default()
    };
    let p = plan(
        &desired(&config(), &listed(instances.clone())),
        &observed,
        &strict,
    );
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.refusals.len(), 1);
    assert_eq!(p.refusals[0].guard, GUARD_MAX_REMOVE_FRACTION);
    assert!(
        p.refusals[0].reason.contains("--force"),
        "{}",
        p.refusals[0].reason
    );

    let forced = PlanOptions {
        force: true,
        ..strict.clone()
    };
    let p = plan(&desired(&config(), &listed(instances)), &observed, &forced);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].op, Op::Disable);

    // Moving every address is not a removal: the seed outage passes the strictest guard.
    let p = plan(
        &desired(&config(), &listed(fleet(2))),
        &observed,
        &PlanOptions {
            max_remove_fraction: 0.01,
            ..strict
        },
    );
    assert_eq!(p.changes.len(), 5);
    assert!(p.refusals.is_empty());
}

#[test]
fn nothing_is_taken_out_while_a_source_failed() {
    let two_sources = CONFIG.replace(
        "[[dns]]",
        "[[inventory]]\nname = \"other\"\nkind = \"file\"\npath = \"other.json\"\n\n[[dns]]",
    );
    let config = config::parse(&two_sources, Path::new("c.toml")).unwrap();
    let observed = converged(fleet(1));
    let mut instances = fleet(1);
    instances.retain(|i| i.name != "web-02");
    let mut sources = listed(instances);
    sources.insert("other".into(), SourceSnapshot::Failed);
    let p = plan(&desired(&config, &sources), &observed, &opts());
    assert!(
        p.changes.iter().all(|c| c.op != Op::Disable),
        "{:?}",
        p.changes
    );
    assert_eq!(p.refusals.len(), 1, "{:?}", p.refusals);
    assert_eq!(p.refusals[0].guard, GUARD_SOURCE_UNAVAILABLE);
    assert_eq!(p.refusals[0].object, "web/web-02");
}

#[test]
fn created_records_are_owned_and_only_owned_orphans_are_deleted() {
    let sync = config::parse(
        &CONFIG.replace(
            "name = \"{name}.example.com.\"",
            "name = \"{name}.example.com.\"\npolicy = \"sync\"",
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    let mut observed = converged(fleet(1));
    observed
        .records
        .get_mut("ns1")
        .unwrap()
        .retain(|s| !s.key.name.as_str().starts_with("web-"));
    observed.ownership.insert("ns1".into(), BTreeMap::new());
    let want = desired(&sync, &listed(fleet(1)));
    let p = plan(&want, &observed, &opts());
    let creates: Vec<&Change> = p.changes.iter().filter(|c| c.op == Op::Create).collect();
    assert_eq!(creates.len(), 2);
    assert!(
        matches!(&creates[0].action, Action::Dns(RecordChange::Create { owner, .. }) if *owner == crate::dns::controller_ownership_text("ipdrift", &opts().inventory))
    );
    let after = written(&observed, &p);

    // web-02 is terminated: its owned record goes; a hand-made one of the same shape stays.
    let mut after = after;
    let hand_made = RecordSet {
        key: RecordKey {
            name: crate::validate::dns_name("old.example.com.").unwrap(),
            rtype: crate::model::RecordType::A,
        },
        ttl: 60,
        addrs: [IpAddr::from([192, 0, 2, 200])].into(),
    };
    after.records.get_mut("ns1").unwrap().push(hand_made);
    let mut instances = fleet(1);
    instances[2].state = InstanceState::Terminated;
    let want = desired(&sync, &listed(instances));
    let p = plan(&want, &after, &opts());
    let deletes: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.op == Op::Delete)
        .map(|c| c.object.as_str())
        .collect();
    assert_eq!(deletes, vec!["web-02.example.com. A"]);
    assert_eq!(plan(&want, &written(&after, &p), &opts()).changes, vec![]);
}

#[test]
fn adopt_false_leaves_records_someone_else_made() {
    let shy = config::parse(
        &CONFIG.replace(
            "name = \"www.example.com.\"",
            "name = \"www.example.com.\"\nadopt = false",
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    let mut observed = converged(fleet(1));
    observed.ownership.insert("ns1".into(), BTreeMap::new());
    let p = plan(&desired(&shy, &listed(fleet(2))), &observed, &opts());
    assert!(p.changes.iter().all(|c| c.object != "www.example.com. A"));
    assert!(
        p.unrepairable
            .iter()
            .any(|u| u.object == "www.example.com. A" && u.message.contains("adopt = false"))
    );
    // Once ipdrift owns it (it created it), it is updated as usual.
    let www = crate::validate::dns_name("www.example.com.").unwrap();
    observed
        .ownership
        .get_mut("ns1")
        .unwrap()
        .insert(www, "heritage=ipdrift,owner=ipdrift".into());
    let p = plan(&desired(&shy, &listed(fleet(2))), &observed, &opts());
    assert!(
        p.changes
            .iter()
            .any(|c| c.object == "www.example.com. A" && c.op == Op::Update)
    );
}

#[test]
fn a_failed_source_plans_nothing_that_depends_on_it() {
    let observed = converged(fleet(1));
    let sources = BTreeMap::from([("local".to_string(), SourceSnapshot::Failed)]);
    let want = desired(&config(), &sources);
    let p = plan(&want, &observed, &opts());
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    // Every server looks gone, but the source failed: each removal is refused by name.
    assert_eq!(p.refusals.len(), 2, "{:?}", p.refusals);
    assert!(
        p.refusals
            .iter()
            .all(|r| r.guard == GUARD_SOURCE_UNAVAILABLE)
    );
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
    let want = desired(&config(), &listed(fleet(1)));
    assert!(
        plan(&want, &observed, &opts()).changes.is_empty(),
        "not before the probe answered"
    );
    observed.reachable.insert("10.0.1.11:80".parse().unwrap());
    let p = plan(&want, &observed, &opts());
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
                servers.push(ObservedServer { key, addr: Some(IpAddr::from([10, 9, 9, 9])), port: 80, admin: ServerAdmin::Ready, durable: true });
            }
        }
        let want = desired(&config(), &listed(after));
        let first = plan(&want, &observed, &opts());
        let second = plan(&want, &written(&observed, &first), &opts());
        prop_assert!(second.changes.is_empty(), "{:?}", second.changes);
        prop_assert_eq!(&second.refusals, &first.refusals);
    }

    /// No plan empties a record set or takes the last server of a backend out of service.
    #[test]
    fn a_plan_never_removes_the_last_address(before in arb_fleet(), after in arb_fleet()) {
        let observed = converged(before);
        let p = plan(&desired(&config(), &listed(after)), &observed, &opts());
        for change in &p.changes {
            if let Action::Dns(RecordChange::Replace { to, .. } | RecordChange::Create { to, .. }) = &change.action {
                prop_assert!(!to.addrs.is_empty());
            }
        }
        let after_write = written(&observed, &p);
        let before_ready = observed.servers["lb-01"].iter().filter(|s| s.admin != ServerAdmin::Maint).count();
        let after_ready = after_write.servers["lb-01"].iter().filter(|s| s.admin != ServerAdmin::Maint).count();
        prop_assert!(before_ready == 0 || after_ready > 0);
    }
}

#[test]
fn a_draining_server_of_a_running_instance_is_drift_and_is_enabled() {
    let mut observed = converged(fleet(1));
    observed.servers.get_mut("lb-01").unwrap()[0].admin = ServerAdmin::Drain;
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed, &opts());
    let summary: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str(), c.from.as_deref()))
        .collect();
    assert_eq!(summary, vec![(Op::Enable, "web/web-01", Some("drain"))]);
}

#[test]
fn a_server_its_load_balancers_config_file_disagrees_with_is_drift_rewritten_in_place() {
    let mut observed = converged(fleet(1));
    let server = &mut observed.servers.get_mut("lb-01").unwrap()[0];
    server.durable = false;
    let serving = socket_text(server.addr.unwrap(), server.port);
    let p = plan(&desired(&config(), &listed(fleet(1))), &observed, &opts());
    let summary: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.op, c.object.as_str(), c.from.clone(), c.to.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![(
            Op::Update,
            "web/web-01",
            Some(format!(
                "{serving} (not in the load balancer's config file)"
            )),
            Some(serving.clone())
        )],
        "the same address again, so that the load balancer writes its file"
    );
}

#[test]
fn two_running_instances_with_one_name_are_drift_not_in_sync() {
    let mut instances = fleet(1);
    let mut twin = instances[1].clone();
    twin.id = "i-web-01-twin".into();
    twin.public_ipv4 = Some(Ipv4Addr::new(198, 51, 100, 77));
    instances.push(twin);
    let observed = converged(fleet(1));
    let p = plan(&desired(&config(), &listed(instances)), &observed, &opts());
    assert!(
        p.changes.is_empty(),
        "nothing is written to a contested name: {p:#?}"
    );
    assert!(p.has_drift(), "a contested name is not in sync");
    let objects: Vec<&str> = p.unrepairable.iter().map(|u| u.object.as_str()).collect();
    assert_eq!(
        objects,
        vec!["web/web-01", "web-01.example.com. A"],
        "{p:#?}"
    );
    assert!(
        p.unrepairable[0]
            .message
            .contains("render to this server name")
    );
    assert_eq!(p.drift_objects("ns1"), 1);
}

#[test]
fn a_second_controller_with_the_same_owner_id_never_deletes_the_firsts_records() {
    let sync = config::parse(
        &CONFIG.replace(
            "name = \"{name}.example.com.\"\nselect",
            "name = \"{name}.example.com.\"\npolicy = \"sync\"\nselect",
        ),
        Path::new("ipdrift.toml"),
    )
    .unwrap();
    let mut observed = converged(fleet(1));
    let other = crate::dns::controller_ownership_text("ipdrift", "0123456789abcdef");
    let legacy = crate::dns::ownership_text("ipdrift");
    let mut orphan = |name: &str, text: &str| {
        let key = RecordKey {
            name: crate::model::DnsName(format!("{name}.example.com.")),
            rtype: crate::model::RecordType::A,
        };
        observed.records.get_mut("ns1").unwrap().push(RecordSet {
            key: key.clone(),
            ttl: 60,
            addrs: BTreeSet::from([IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200))]),
        });
        observed
            .ownership
            .entry("ns1".into())
            .or_default()
            .insert(key.name, text.to_string());
    };
    orphan("web-09", &other);
    orphan("web-08", &legacy);
    let p = plan(&desired(&sync, &listed(fleet(1))), &observed, &opts());
    let deleted: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.op == Op::Delete)
        .map(|c| c.object.as_str())
        .collect();
    assert_eq!(
        deleted,
        vec!["web-08.example.com. A"],
        "a 0.1 record of this owner_id is still ours: {p:#?}"
    );
    let [refusal] = p.refusals.as_slice() else {
        panic!("{p:#?}");
    };
    assert_eq!(refusal.guard, GUARD_OWNER_CONFLICT);
    assert_eq!(refusal.object, "web-09.example.com. A");
    assert!(
        refusal.reason.contains("must not share an owner_id"),
        "{}",
        refusal.reason
    );
}

#[test]
fn a_name_the_zone_uses_itself_is_never_taken_over() {
    let mut instances = fleet(1);
    instances[1].name = "ns1".into();
    let mut observed = converged(fleet(1));
    let ns1 = crate::model::DnsName("ns1.example.com.".into());
    observed.records.get_mut("ns1").unwrap().push(RecordSet {
        key: RecordKey {
            name: ns1.clone(),
            rtype: crate::model::RecordType::A,
        },
        ttl: 60,
        addrs: BTreeSet::from([IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))]),
    });
    observed
        .zone_own
        .insert("ns1".into(), BTreeSet::from([ns1]));
    let p = plan(&desired(&config(), &listed(instances)), &observed, &opts());
    assert!(
        !p.changes.iter().any(|c| c.object == "ns1.example.com. A"),
        "{p:#?}"
    );
    assert!(
        p.unrepairable
            .iter()
            .any(|u| u.object == "ns1.example.com. A"
                && u.message.contains("a name the zone uses itself"))
    );
}

proptest! {
    /// The planner's index finds what a linear scan finds, whether keys are sought in
    /// ascending order (the walk) or not (the search), with duplicates and gaps.
    #[test]
    fn the_sorted_index_finds_what_a_scan_finds(
        items in proptest::collection::vec(0u8..40, 0..60),
        sought in proptest::collection::vec(0u8..48, 0..60),
        ascending in any::<bool>(),
    ) {
        let mut sought = sought;
        if ascending {
            sought.sort_unstable();
        }
        let mut index = super::SortedByKey::new(&items, |item| item);
        for wanted in &sought {
            let first = items.iter().position(|item| item == wanted);
            prop_assert_eq!(index.position(wanted), first);
            prop_assert_eq!(index.seek(wanted).map(|i| items[i]), first.map(|i| items[i]));
        }
    }
}

#[test]
fn a_name_at_a_cname_or_a_delegation_is_unrepairable_and_the_rest_of_the_zone_repaired() {
    let mut instances = fleet(2);
    instances.push(instance(
        "alias",
        "web",
        InstanceState::Running,
        [198, 51, 100, 50],
        [10, 0, 2, 50],
    ));
    instances.push(instance(
        "sub",
        "web",
        InstanceState::Running,
        [198, 51, 100, 51],
        [10, 0, 2, 51],
    ));
    let mut observed = converged(fleet(1));
    let name = |text: &str| crate::model::DnsName(text.into());
    observed.obstacles.insert(
        "ns1".into(),
        Obstacles {
            cnames: BTreeMap::from([(name("alias.example.com."), name("www.example.com."))]),
            cuts: BTreeSet::from([name("sub.example.com.")]),
        },
    );
    let p = plan(&desired(&config(), &listed(instances)), &observed, &opts());
    let written: BTreeSet<&str> = p
        .changes
        .iter()
        .filter(|c| c.target == "ns1")
        .map(|c| c.object.as_str())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from([
            "www.example.com. A",
            "web-01.example.com. A",
            "web-02.example.com. A"
        ]),
        "{p:#?}"
    );
    let cannot: BTreeMap<&str, &str> = p
        .unrepairable
        .iter()
        .map(|u| (u.object.as_str(), u.message.as_str()))
        .collect();
    assert!(
        cannot["alias.example.com. A"]
            .starts_with("alias.example.com. holds a CNAME (to www.example.com.)"),
        "{cannot:#?}"
    );
    assert!(
        cannot["sub.example.com. A"].starts_with("sub.example.com. is delegated"),
        "{cannot:#?}"
    );
    assert!(p.has_drift());
    assert_eq!(p.drift_objects("ns1"), 5);
}

#[test]
fn names_below_a_delegation_are_obstructed_but_not_names_beside_it() {
    let name = |text: &str| crate::model::DnsName(text.into());
    let obstacles = Obstacles {
        cnames: BTreeMap::new(),
        cuts: BTreeSet::from([name("sub.example.com.")]),
    };
    assert_eq!(
        obstacles.at(&name("x.y.sub.example.com.")),
        Some(Obstacle::Delegation(name("sub.example.com.")))
    );
    assert_eq!(obstacles.at(&name("xsub.example.com.")), None);
    assert_eq!(obstacles.at(&name("example.com.")), None);
}
