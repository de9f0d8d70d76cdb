//! Matching record sets and servers to instances.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Proposal, ProposedBackend, ProposedRecord, ProposedSelect};
use crate::dns::OWNERSHIP_LABEL;
use crate::model::{
    AddressKind, DnsName, Instance, InstanceState, ObservedServer, RecordSet, RecordType,
};
use crate::validate;

/// What is there: every source's instances, every zone's address record sets, every
/// load balancer's servers.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub sources: BTreeMap<String, Vec<Instance>>,
    /// DNS target → its zone and its A and AAAA record sets.
    pub zones: BTreeMap<String, (DnsName, Vec<RecordSet>)>,
    /// Load balancer → its servers, in every backend.
    pub servers: BTreeMap<String, Vec<ObservedServer>>,
}

/// One instance, with the source that listed it.
#[derive(Debug, Clone, Copy)]
struct Listed<'a> {
    source: &'a str,
    instance: &'a Instance,
}

impl Listed<'_> {
    fn label(&self) -> String {
        format!(
            "{} ({})",
            validate::printable(&self.instance.name),
            validate::printable(&self.instance.id)
        )
    }
}

const KINDS_A: [AddressKind; 2] = [AddressKind::PublicIpv4, AddressKind::PrivateIpv4];
const KINDS_AAAA: [AddressKind; 1] = [AddressKind::Ipv6];

fn kinds_of(rtype: RecordType) -> &'static [AddressKind] {
    match rtype {
        RecordType::A => &KINDS_A,
        RecordType::Aaaa => &KINDS_AAAA,
    }
}

/// Matches everything in `world` and proposes the rules that reproduce it.
pub fn propose(world: &World) -> Proposal {
    let instances: Vec<Listed> = world
        .sources
        .iter()
        .flat_map(|(source, list)| list.iter().map(move |instance| Listed { source, instance }))
        .collect();
    let mut out = Proposal::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for (dns, (zone, sets)) in &world.zones {
        propose_records(dns, zone, sets, &instances, &mut out, &mut used);
    }
    for (lb, servers) in &world.servers {
        propose_backends(lb, servers, &instances, &mut out, &mut used);
    }
    for listed in &instances {
        if !used.contains(listed.instance.id.as_str()) {
            out.unexplained.push(format!(
                "instance {} of source {}: no record set or server points at it",
                listed.label(),
                listed.source
            ));
        }
    }
    out
}

/// A group of record sets that one rule would produce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RecordGroup {
    name: String,
    address: AddressKind,
    ttl: u32,
}

fn propose_records<'a>(
    dns: &str,
    zone: &DnsName,
    sets: &[RecordSet],
    instances: &[Listed<'a>],
    out: &mut Proposal,
    used: &mut BTreeSet<&'a str>,
) {
    // Template groups: `{name}.<rest>` → (record text, instance) for each set it explains.
    let mut templated: BTreeMap<RecordGroup, Vec<(String, Listed<'a>)>> = BTreeMap::new();
    for set in sets {
        let owner = set.key.name.as_str();
        if owner.split('.').next() == Some(OWNERSHIP_LABEL) {
            continue;
        }
        let shown = format!("{} {}", set.key, addrs_text(&set.addrs));
        if let Some((listed, address, drifted)) = by_name(set, instances) {
            let rest = &owner[listed.instance.name.len()..];
            let group = RecordGroup {
                name: format!("{{name}}{rest}"),
                address,
                ttl: set.ttl,
            };
            if drifted {
                out.drifted.push(format!(
                    "{dns}: {shown}: named after instance {} whose {} is {}; the rule will repair it",
                    listed.label(),
                    address.as_str(),
                    listed.instance.address(address).map_or("-".into(), |a| a.to_string())
                ));
            }
            templated.entry(group).or_default().push((shown, listed));
            continue;
        }
        match by_address(set, instances) {
            Ok((address, matched)) => {
                let group: Vec<Listed<'a>> = matched;
                let candidates = |l: &Listed| {
                    l.instance.state == InstanceState::Running
                        && l.instance.address(address).is_some()
                };
                match selector_for(&group, instances, candidates) {
                    Some(select) => {
                        used.extend(group.iter().map(|l| l.instance.id.as_str()));
                        let matched = group
                            .iter()
                            .map(|l| {
                                format!(
                                    "{} = {} of {}",
                                    l.instance.address(address).map_or("-".into(), |a| a.to_string()),
                                    address.as_str(),
                                    l.label()
                                )
                            })
                            .collect();
                        out.records.push(ProposedRecord {
                            dns: dns.to_string(),
                            name: owner.to_string(),
                            select,
                            address,
                            ttl: set.ttl,
                            matched,
                        });
                    }
                    None => out.unexplained.push(format!(
                        "{dns}: {shown}: its addresses are those of {}, but no tag selects exactly them; tag them alike and run init again",
                        labels(&group)
                    )),
                }
            }
            Err(why) => out.unexplained.push(format!("{dns}: {shown}: {why}")),
        }
    }
    for (group, members) in templated {
        let listed: Vec<Listed<'a>> = members.iter().map(|(_, l)| *l).collect();
        let address = group.address;
        let candidates = |l: &Listed| {
            l.instance.state == InstanceState::Running && l.instance.address(address).is_some()
        };
        match selector_for(&listed, instances, candidates) {
            Some(select) => {
                used.extend(listed.iter().map(|l| l.instance.id.as_str()));
                out.records.push(ProposedRecord {
                    dns: dns.to_string(),
                    name: group.name,
                    select,
                    address,
                    ttl: group.ttl,
                    matched: members
                        .iter()
                        .map(|(shown, l)| format!("{shown} = {}", l.label()))
                        .collect(),
                });
            }
            None => {
                for (shown, l) in &members {
                    out.unexplained.push(format!(
                        "{dns}: {shown}: named after {}, but no tag selects exactly the instances of `{}` in zone {zone}; tag them alike and run init again",
                        l.label(),
                        group.name
                    ));
                }
            }
        }
    }
}

/// The one running instance a record set is named after (`<instance name>.<rest>`), the
/// address kind the set holds of it, and whether the set's addresses already drifted.
fn by_name<'a>(
    set: &RecordSet,
    instances: &[Listed<'a>],
) -> Option<(Listed<'a>, AddressKind, bool)> {
    let owner = set.key.name.as_str();
    let named: Vec<&Listed<'a>> = instances
        .iter()
        .filter(|l| {
            let name = l.instance.name.to_ascii_lowercase();
            !name.is_empty()
                && !name.contains('.')
                && owner
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .collect();
    let [listed] = named.as_slice() else {
        return None;
    };
    let kinds = kinds_of(set.key.rtype);
    let exact = kinds.iter().find(|k| {
        listed
            .instance
            .address(**k)
            .is_some_and(|a| set.addrs.len() == 1 && set.addrs.contains(&a))
    });
    match exact {
        Some(kind) => Some((**listed, *kind, false)),
        None => {
            let kind = kinds
                .iter()
                .find(|k| listed.instance.address(**k).is_some())?;
            Some((**listed, *kind, true))
        }
    }
}

/// The instances whose addresses of one kind make up `set` exactly.
fn by_address<'a>(
    set: &RecordSet,
    instances: &[Listed<'a>],
) -> Result<(AddressKind, Vec<Listed<'a>>), String> {
    let mut unknown: Vec<IpAddr> = Vec::new();
    for kind in kinds_of(set.key.rtype) {
        let matched: Vec<Listed<'a>> = instances
            .iter()
            .filter(|l| {
                l.instance
                    .address(*kind)
                    .is_some_and(|a| set.addrs.contains(&a))
            })
            .copied()
            .collect();
        let covered: BTreeSet<IpAddr> = matched
            .iter()
            .filter_map(|l| l.instance.address(*kind))
            .collect();
        if !matched.is_empty() && covered.len() == set.addrs.len() {
            if let Some(stopped) = matched
                .iter()
                .find(|l| l.instance.state != InstanceState::Running)
            {
                return Err(format!(
                    "holds the address of {}, which is not running; a rule would drop it",
                    stopped.label()
                ));
            }
            return Ok((*kind, matched));
        }
        unknown = set
            .addrs
            .iter()
            .filter(|a| !covered.contains(a))
            .copied()
            .collect();
    }
    let unknown: Vec<String> = unknown.iter().map(|a| a.to_string()).collect();
    Err(format!(
        "address {} is no instance's (another system's record, or an address that already drifted: write its rule by hand)",
        unknown.join(", ")
    ))
}

/// The servers one backend rule explains: address kind, port and name template.
type ServerGroup = (AddressKind, u16, String);

fn propose_backends<'a>(
    lb: &str,
    servers: &[ObservedServer],
    instances: &[Listed<'a>],
    out: &mut Proposal,
    used: &mut BTreeSet<&'a str>,
) {
    let mut by_backend: BTreeMap<&str, Vec<&ObservedServer>> = BTreeMap::new();
    for server in servers {
        by_backend
            .entry(&server.key.backend)
            .or_default()
            .push(server);
    }
    for (backend, servers) in by_backend {
        // (address kind, port, server template) → the servers and instances it explains.
        let mut groups: BTreeMap<ServerGroup, Vec<(&ObservedServer, Listed<'a>)>> = BTreeMap::new();
        let mut strays = Vec::new();
        let mut renamed = Vec::new();
        for server in &servers {
            match server_match(server, instances) {
                Some((listed, kind, template)) => groups
                    .entry((kind, server.port, template))
                    .or_default()
                    .push((server, listed)),
                None => match server_by_name(server, instances) {
                    Some(listed) => renamed.push((*server, listed)),
                    None => strays.push(*server),
                },
            }
        }
        // Servers whose address drifted, matched by name: they join the group their port
        // and name fit, else the backend's usual address kind (private first) is assumed.
        for (server, listed) in renamed {
            let fitting = groups
                .keys()
                .find(|(_, port, template)| *port == server.port && template == "{name}")
                .cloned();
            let key = fitting.unwrap_or_else(|| {
                let kind = [
                    AddressKind::PrivateIpv4,
                    AddressKind::PublicIpv4,
                    AddressKind::Ipv6,
                ]
                .into_iter()
                .find(|k| listed.instance.address(*k).is_some())
                .unwrap_or(AddressKind::PrivateIpv4);
                (kind, server.port, "{name}".to_string())
            });
            out.drifted.push(format!(
                "{lb}: {}: named after instance {} but at {}; the rule will point it at the instance's {}",
                server.key,
                listed.label(),
                server.addr.map_or("(no address)".into(), |a| crate::model::socket_text(a, server.port)),
                key.0.as_str()
            ));
            groups.entry(key).or_default().push((server, listed));
        }
        let Some(((address, port, template), members)) =
            groups.iter().max_by_key(|(_, members)| members.len())
        else {
            for stray in strays {
                out.unexplained.push(format!(
                    "{lb}: {}: {} is no instance's address; backend {backend} is left unmanaged",
                    stray.key,
                    stray
                        .addr
                        .map_or("(no address)".into(), |a| crate::model::socket_text(
                            a, stray.port
                        ))
                ));
            }
            continue;
        };
        let listed: Vec<Listed<'a>> = members.iter().map(|(_, l)| *l).collect();
        let Some(select) = selector_for(&listed, instances, |_| true) else {
            out.unexplained.push(format!(
                "{lb}: backend {backend}: its servers are {}, but no tag selects exactly them; tag them alike and run init again",
                labels(&listed)
            ));
            continue;
        };
        used.extend(listed.iter().map(|l| l.instance.id.as_str()));
        let managed = crate::template::NameTemplate::parse(template).ok();
        for ((_, _, other), others) in groups
            .iter()
            .filter(|(key, _)| key.2 != *template || key.0 != *address || key.1 != *port)
        {
            for (server, _) in others {
                out.unexplained.push(format!(
                    "{lb}: {}: follows `{other}`, not the backend's `{template}`",
                    server.key
                ));
            }
        }
        for stray in strays {
            let taken_out = managed
                .as_ref()
                .is_some_and(|t| t.matches(&stray.key.server));
            out.unexplained.push(format!(
                "{lb}: {}: {} is no instance's address{}",
                stray.key,
                stray.addr.map_or("(no address)".into(), |a| crate::model::socket_text(a, stray.port)),
                if taken_out {
                    format!("; its name fits `{template}`, so ipdrift would take it out of service: rename it or move it to another backend")
                } else {
                    String::new()
                }
            ));
        }
        for (server, listed) in members {
            if listed.instance.state != InstanceState::Running {
                out.drifted.push(format!(
                    "{lb}: {}: its instance {} is not running; the rule will take it out of service",
                    server.key,
                    listed.label()
                ));
            }
        }
        out.backends
            .entry(lb.to_string())
            .or_default()
            .push(ProposedBackend {
                name: backend.to_string(),
                select,
                address: *address,
                port: *port,
                server: template.clone(),
                matched: members
                    .iter()
                    .map(|(server, l)| {
                        format!(
                            "{} = {} of {}",
                            server.key,
                            server
                                .addr
                                .map_or("-".into(), |a| crate::model::socket_text(a, server.port)),
                            l.label()
                        )
                    })
                    .collect(),
            });
    }
}

/// The instance whose address a server has, the address kind, and the template its name
/// follows (`{name}` with what surrounds it, or `{id}`).
fn server_match<'a>(
    server: &ObservedServer,
    instances: &[Listed<'a>],
) -> Option<(Listed<'a>, AddressKind, String)> {
    let addr = server.addr?;
    let mut found = instances.iter().flat_map(|l| {
        [
            AddressKind::PublicIpv4,
            AddressKind::PrivateIpv4,
            AddressKind::Ipv6,
        ]
        .into_iter()
        .filter(move |k| l.instance.address(*k) == Some(addr))
        .map(move |k| (*l, k))
    });
    let (listed, kind) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let name = server.key.server.as_str();
    let template =
        if !listed.instance.name.is_empty() && name.contains(listed.instance.name.as_str()) {
            name.replacen(listed.instance.name.as_str(), "{name}", 1)
        } else if name == listed.instance.id {
            "{id}".to_string()
        } else {
            return None;
        };
    Some((listed, kind, template))
}

/// The one instance whose name is the server's.
fn server_by_name<'a>(server: &ObservedServer, instances: &[Listed<'a>]) -> Option<Listed<'a>> {
    let named: Vec<&Listed<'a>> = instances
        .iter()
        .filter(|l| l.instance.name == server.key.server)
        .collect();
    match named.as_slice() {
        [only] => Some(**only),
        _ => None,
    }
}

/// The narrowest selector (no tags, then one tag, then two; with the source when all
/// come from one) whose selection among `instances` (those `counts`) is exactly `group`.
fn selector_for(
    group: &[Listed],
    instances: &[Listed],
    counts: impl Fn(&Listed) -> bool,
) -> Option<ProposedSelect> {
    let wanted: BTreeSet<(&str, &str)> = group
        .iter()
        .map(|l| (l.source, l.instance.id.as_str()))
        .collect();
    let common: Vec<(&String, &String)> = match group.first() {
        None => return None,
        Some(first) => first
            .instance
            .tags
            .iter()
            .filter(|(k, v)| group.iter().all(|l| l.instance.tags.get(*k) == Some(*v)))
            .collect(),
    };
    let sources: BTreeSet<&str> = group.iter().map(|l| l.source).collect();
    let source_options: Vec<Option<String>> = match sources.iter().next() {
        Some(only) if sources.len() == 1 => vec![None, Some(only.to_string())],
        _ => vec![None],
    };
    let mut tag_sets: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    tag_sets.extend(
        common
            .iter()
            .map(|(k, v)| BTreeMap::from([((*k).clone(), (*v).clone())])),
    );
    for (i, a) in common.iter().enumerate() {
        for b in &common[i + 1..] {
            tag_sets.push(BTreeMap::from([
                ((*a.0).clone(), (*a.1).clone()),
                ((*b.0).clone(), (*b.1).clone()),
            ]));
        }
    }
    for source in &source_options {
        for tags in &tag_sets {
            let selected: BTreeSet<(&str, &str)> = instances
                .iter()
                .filter(|l| source.as_deref().is_none_or(|s| s == l.source))
                .filter(|l| tags.iter().all(|(k, v)| l.instance.tags.get(k) == Some(v)))
                .filter(|l| counts(l))
                .map(|l| (l.source, l.instance.id.as_str()))
                .collect();
            if selected == wanted {
                return Some(ProposedSelect {
                    tags: tags.clone(),
                    source: source.clone(),
                });
            }
        }
    }
    None
}

fn labels(group: &[Listed]) -> String {
    group
        .iter()
        .map(Listed::label)
        .collect::<Vec<_>>()
        .join(", ")
}

fn addrs_text(addrs: &BTreeSet<IpAddr>) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RecordKey, ServerAdmin, ServerKey};

    fn instance(id: &str, name: &str, role: &str, public: &str, private: &str) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            state: InstanceState::Running,
            public_ipv4: Some(public.parse().unwrap()),
            private_ipv4: Some(private.parse().unwrap()),
            ipv6: None,
            tags: BTreeMap::from([("role".into(), role.into()), ("env".into(), "prod".into())]),
        }
    }

    fn set(name: &str, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: DnsName(name.into()),
                rtype: RecordType::A,
            },
            ttl: 300,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn world(
        instances: Vec<Instance>,
        sets: Vec<RecordSet>,
        servers: Vec<ObservedServer>,
    ) -> World {
        World {
            sources: BTreeMap::from([("cloud".into(), instances)]),
            zones: BTreeMap::from([("ns1".into(), (DnsName("example.com.".into()), sets))]),
            servers: BTreeMap::from([("lb".into(), servers)]),
        }
    }

    fn server(name: &str, addr: &str, port: u16) -> ObservedServer {
        ObservedServer {
            key: ServerKey {
                backend: "app".into(),
                server: name.into(),
            },
            addr: Some(addr.parse().unwrap()),
            port,
            admin: ServerAdmin::Ready,
            durable: true,
        }
    }

    fn fleet() -> Vec<Instance> {
        vec![
            instance("i-1", "Web-01", "web", "192.0.2.1", "10.0.0.1"),
            instance("i-2", "web-02", "web", "192.0.2.2", "10.0.0.2"),
            instance("i-3", "db", "db", "192.0.2.3", "10.0.0.3"),
        ]
    }

    #[test]
    fn a_name_holding_several_instances_gets_a_fixed_rule_with_the_narrowest_selector() {
        let p = propose(&world(
            fleet(),
            vec![set("app.example.com.", &["192.0.2.1", "192.0.2.2"])],
            vec![],
        ));
        let [rule] = p.records.as_slice() else {
            panic!("{p:#?}");
        };
        assert_eq!(rule.name, "app.example.com.");
        assert_eq!(
            rule.select.tags,
            BTreeMap::from([("role".to_string(), "web".to_string())])
        );
        assert_eq!(rule.select.source, None);
        assert_eq!(rule.address, AddressKind::PublicIpv4);
        assert_eq!(rule.ttl, 300);
        assert_eq!(rule.matched.len(), 2);
        assert!(
            p.unexplained.iter().any(|u| u.contains("\"db\" (\"i-3\")")),
            "{p:#?}"
        );
    }

    #[test]
    fn names_that_follow_instance_names_become_one_template_rule() {
        let sets = vec![
            set("web-01.example.com.", &["10.0.0.1"]),
            set("web-02.example.com.", &["10.0.0.2"]),
        ];
        let p = propose(&world(fleet(), sets, vec![]));
        let [rule] = p.records.as_slice() else {
            panic!("{p:#?}");
        };
        assert_eq!(rule.name, "{name}.example.com.");
        assert_eq!(rule.address, AddressKind::PrivateIpv4);
        assert!(p.drifted.is_empty(), "{p:#?}");
    }

    #[test]
    fn a_record_only_some_of_a_tag_hold_is_listed_not_guessed() {
        let p = propose(&world(
            fleet(),
            vec![set("web-01.example.com.", &["192.0.2.1"])],
            vec![],
        ));
        assert!(p.records.is_empty(), "{p:#?}");
        assert!(
            p.unexplained
                .iter()
                .any(|u| u.contains("no tag selects exactly")),
            "{p:#?}"
        );
    }

    #[test]
    fn servers_give_a_backend_with_their_port_and_name_template() {
        let servers = vec![
            server("app-web-02", "10.0.0.2", 8080),
            server("app-Web-01", "10.0.0.1", 8080),
        ];
        let p = propose(&world(fleet(), vec![], servers));
        let [backend] = p.backends["lb"].as_slice() else {
            panic!("{p:#?}");
        };
        assert_eq!(backend.name, "app");
        assert_eq!(backend.server, "app-{name}");
        assert_eq!(backend.port, 8080);
        assert_eq!(backend.address, AddressKind::PrivateIpv4);
    }

    #[test]
    fn hostile_names_never_leave_a_comment() {
        let mut instances = fleet();
        instances[2].name = "db\n[[record]]\nname = \"evil\"".into();
        let p = propose(&world(instances, vec![], vec![]));
        let text = crate::init::render("", &[], &p);
        assert!(!text.lines().any(|l| l.starts_with("[[record]]")), "{text}");
    }
}
