//! Forewarning: which records and servers an announced maintenance will leave pointing at
//! a dead address. Pure. Sources that know about scheduled events (AWS, Azure, Google Cloud,
//! Linode) report them; an event that will give an instance a new address is matched against
//! the desired state: everything that points at one of the instance's current addresses
//! depends on it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::desired::{Desired, SourceSnapshot};
use crate::model::{AddressKind, RecordKey, ServerIntent, ServerKey};

/// An event a provider announced for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledEvent {
    pub instance_id: String,
    /// The provider's code, e.g. `instance-stop`, `instance-retirement`, `system-reboot`.
    pub code: String,
    /// Unix seconds: the event happens no earlier than this.
    pub not_before: u64,
    pub description: String,
    /// Whether the event gives the instance new addresses (a stop or retirement of an
    /// instance whose public address is not an Elastic IP).
    pub changes_addresses: bool,
}

/// One announced event that will change addresses, and what depends on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forecast {
    pub source: String,
    pub instance: String,
    pub name: String,
    pub code: String,
    pub not_before: u64,
    pub description: String,
    /// `target: name TYPE` of each record set that points at the instance.
    pub records: Vec<String>,
    /// `target: backend/server` of each server that points at the instance.
    pub servers: Vec<String>,
    /// Unix seconds: from when ipdrift prepares for it (`controller.maintenance_lead`
    /// before `not_before`): lowers the TTLs of `records`, drains `servers` if configured.
    pub prepare_from: u64,
    /// `records` as (target, key), for the preparations.
    #[serde(skip)]
    pub record_keys: Vec<(String, RecordKey)>,
    /// `servers` as (target, key).
    #[serde(skip)]
    pub server_keys: Vec<(String, ServerKey)>,
}

impl Forecast {
    /// `instance-stop of web-01 (i-1, source aws) not before 2027-01-15T08:00:00Z`.
    pub fn event_text(&self) -> String {
        format!(
            "{} of {} ({}, source {}) not before {}",
            self.code,
            self.name,
            self.instance,
            self.source,
            unix_text(self.not_before)
        )
    }

    /// Whether ipdrift prepares for it at `now` (Unix seconds).
    pub fn is_due(&self, now: u64) -> bool {
        now >= self.prepare_from
    }
}

/// Unix seconds as RFC 3339 UTC, e.g. `2027-01-15T08:00:00Z`.
pub fn unix_text(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

/// Forecasts for every address-changing event of a listed instance, each prepared for
/// `lead` before it.
pub fn forecast(
    desired: &Desired,
    sources: &BTreeMap<String, SourceSnapshot>,
    events: &BTreeMap<String, Vec<ScheduledEvent>>,
    lead: Duration,
) -> Vec<Forecast> {
    let mut out = Vec::new();
    for (source, source_events) in events {
        let Some(SourceSnapshot::Listed(instances)) = sources.get(source) else {
            continue;
        };
        for event in source_events.iter().filter(|e| e.changes_addresses) {
            let Some(instance) = instances.iter().find(|i| i.id == event.instance_id) else {
                continue;
            };
            let addrs: Vec<IpAddr> = [
                AddressKind::PublicIpv4,
                AddressKind::PrivateIpv4,
                AddressKind::Ipv6,
            ]
            .into_iter()
            .filter_map(|kind| instance.address(kind))
            .collect();
            let record_keys: Vec<(String, RecordKey)> = desired
                .records
                .iter()
                .flat_map(|(target, sets)| {
                    sets.values()
                        .filter(|set| set.addrs.iter().any(|a| addrs.contains(a)))
                        .map(move |set| (target.clone(), set.key.clone()))
                })
                .collect();
            let server_keys: Vec<(String, ServerKey)> = desired
                .servers
                .iter()
                .flat_map(|(target, servers)| {
                    servers
                        .values()
                        .filter(|s| matches!(s.intent, ServerIntent::Serve { addr, .. } if addrs.contains(&addr)))
                        .map(move |s| (target.clone(), s.key.clone()))
                })
                .collect();
            let lead = lead.as_secs();
            out.push(Forecast {
                source: source.clone(),
                instance: instance.id.clone(),
                name: instance.name.clone(),
                code: event.code.clone(),
                not_before: event.not_before,
                description: event.description.clone(),
                records: record_keys
                    .iter()
                    .map(|(target, key)| format!("{target}: {key}"))
                    .collect(),
                servers: server_keys
                    .iter()
                    .map(|(target, key)| format!("{target}: {key}"))
                    .collect(),
                prepare_from: event.not_before.saturating_sub(lead),
                record_keys,
                server_keys,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.not_before, &a.source, &a.instance).cmp(&(b.not_before, &b.source, &b.instance))
    });
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;
    use crate::desired::desired;
    use crate::model::{Instance, InstanceState};

    const LEAD: Duration = Duration::from_secs(600);

    const CONFIG: &str = r#"
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

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:9999"

[[haproxy.backend]]
name = "web"
address = "private_ipv4"
port = 80
server = "{name}"
"#;

    fn instance(id: &str, name: &str, public: [u8; 4], private: [u8; 4]) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            state: InstanceState::Running,
            public_ipv4: Some(public.into()),
            private_ipv4: Some(private.into()),
            ipv6: None,
            tags: Default::default(),
        }
    }

    fn event(id: &str, code: &str, changes_addresses: bool) -> ScheduledEvent {
        ScheduledEvent {
            instance_id: id.into(),
            code: code.into(),
            not_before: 1_800_000_000,
            description: "The instance is scheduled for retirement".into(),
            changes_addresses,
        }
    }

    #[test]
    fn an_address_changing_event_names_everything_that_points_at_the_instance() {
        let config = config::parse(CONFIG, Path::new("c.toml")).unwrap();
        let sources = BTreeMap::from([(
            "aws".to_string(),
            SourceSnapshot::Listed(vec![
                instance("i-1", "web-01", [192, 0, 2, 1], [10, 0, 0, 1]),
                instance("i-2", "web-02", [192, 0, 2, 2], [10, 0, 0, 2]),
            ]),
        )]);
        let want = desired(&config, &sources);
        let events = BTreeMap::from([(
            "aws".to_string(),
            vec![
                event("i-1", "instance-retirement", true),
                event("i-2", "system-reboot", false),
            ],
        )]);
        let forecasts = forecast(&want, &sources, &events, LEAD);
        assert_eq!(
            forecasts.len(),
            1,
            "a reboot keeps its addresses: {forecasts:?}"
        );
        let f = &forecasts[0];
        assert_eq!(
            (f.instance.as_str(), f.name.as_str(), f.code.as_str()),
            ("i-1", "web-01", "instance-retirement")
        );
        assert_eq!(f.records, vec!["ns1: web-01.example.com. A".to_string()]);
        assert_eq!(f.servers, vec!["lb-01: web/web-01".to_string()]);
        assert_eq!(f.prepare_from, 1_800_000_000 - 600);
        assert!(!f.is_due(1_800_000_000 - 601) && f.is_due(1_800_000_000 - 600));
        assert_eq!(
            f.event_text(),
            "instance-retirement of web-01 (i-1, source aws) not before 2027-01-15T08:00:00Z"
        );
    }

    #[test]
    fn events_of_unknown_instances_or_failed_sources_forecast_nothing() {
        let config = config::parse(CONFIG, Path::new("c.toml")).unwrap();
        let events =
            BTreeMap::from([("aws".to_string(), vec![event("i-9", "instance-stop", true)])]);
        let listed = BTreeMap::from([("aws".to_string(), SourceSnapshot::Listed(vec![]))]);
        assert!(forecast(&desired(&config, &listed), &listed, &events, LEAD).is_empty());
        let failed = BTreeMap::from([("aws".to_string(), SourceSnapshot::Failed)]);
        assert!(forecast(&desired(&config, &failed), &failed, &events, LEAD).is_empty());
    }
}
