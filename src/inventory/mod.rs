//! Inventory sources: where instances and their addresses come from. One file per kind,
//! holding its config keys, their checks, its builder and its I/O; [`KINDS`] lists them.
//! The reconciler sees only the [`Inventory`] trait. A source that fails returns an error —
//! never an empty list — so that nothing is planned on unknown state.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod aws_events;
pub mod azure;
pub mod digitalocean;
pub mod exec;
pub mod file;
pub mod gcp;
pub mod hetzner;
pub mod linode;
pub mod openstack;

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::BoxFuture;
use crate::config::{Fragment, SecretAt};
use crate::forecast::ScheduledEvent;
use crate::model::Instance;
use crate::trigger::{Trigger, Watch};

/// Every kind of source: `kind = "…"` in `[[inventory]]`. Adding a kind is its file, one
/// line here, and its README section.
pub const KINDS: &[SourceKind] = &[
    file::KIND,
    exec::KIND,
    digitalocean::KIND,
    hetzner::KIND,
    linode::KIND,
    openstack::KIND,
    gcp::KIND,
    azure::KIND,
    AWS,
];

#[cfg(feature = "aws")]
const AWS: SourceKind = aws::KIND;
#[cfg(not(feature = "aws"))]
const AWS: SourceKind = SourceKind {
    name: "aws",
    check: |f| {
        f.kind_error(crate::config::checker::WITHOUT_AWS);
        None
    },
};

/// A kind of source: its `kind` word and the check that turns its table into a [`SourceSpec`].
pub struct SourceKind {
    pub name: &'static str,
    /// Checks the table (errors go to the fragment's checker); `None` when it is invalid.
    pub check: fn(&mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>>,
}

/// A source's validated settings: what its kind checked, and how to build it.
pub trait SourceSpec: Any + fmt::Debug + Send + Sync {
    /// Builds the source `name`; reads its credentials. `timeout` is `controller.timeout`.
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>>;
    /// Where its secrets are (API tokens).
    fn secrets(&self) -> Vec<SecretAt> {
        Vec::new()
    }
}

/// A source of instances.
pub trait Inventory: Send + Sync {
    /// The source's name from config (`[[inventory]] name`).
    fn name(&self) -> &str;
    /// Lists every instance the source knows, in any state.
    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>>;
    /// Maintenance the provider announced for the source's instances (for forewarning).
    /// Sources that cannot know return none.
    fn scheduled_events(&self) -> BoxFuture<'_, anyhow::Result<Vec<ScheduledEvent>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// How long a listing may take, given the controller's `timeout`.
    fn time_limit(&self, default: Duration) -> Duration {
        default
    }
    /// Starts telling `trigger` when the source's instances may have changed (its file was
    /// replaced, an event arrived on its queue), for a source that can and is set up to;
    /// dropping the [`Watch`] stops it. `run` polls regardless: a watch only makes a repair
    /// sooner, and one that fails to start leaves polling.
    fn watch(&self, trigger: Trigger) -> anyhow::Result<Option<Watch>> {
        let _ = trigger;
        Ok(None)
    }
}

/// Parses the file-source JSON (also what `exec` sources print): an array of instances.
/// Pure. Duplicate ids are an error: they would make the desired state ambiguous.
pub fn parse_instances(text: &str) -> Result<Vec<Instance>, String> {
    let instances: Vec<Instance> = serde_json::from_str(text).map_err(|e| {
        if text.trim().is_empty() {
            "the file is empty; expected a JSON array of instances (`[]` for none)".to_string()
        } else {
            format!("line {} column {}: {e}", e.line(), e.column())
        }
    })?;
    let mut ids = BTreeSet::new();
    for instance in &instances {
        if !ids.insert(instance.id.as_str()) {
            return Err(format!("instance id {:?} appears twice", instance.id));
        }
    }
    Ok(instances)
}

/// An event as the file-source JSON announces it, in an instance's `events` array.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedEvent {
    code: String,
    /// RFC 3339, e.g. `2027-01-15T08:00:00Z`.
    not_before: String,
    #[serde(default)]
    description: String,
    /// Listed because it matters: by default it gives the instance new addresses.
    #[serde(default = "changes_addresses_by_default")]
    changes_addresses: bool,
}

fn changes_addresses_by_default() -> bool {
    true
}

/// What [`parse_events`] reads of an instance: its id and events, nothing else.
#[derive(Deserialize)]
struct EventsOf {
    id: String,
    #[serde(default)]
    events: Vec<ListedEvent>,
}

/// The maintenance the file-source JSON announces: each instance's optional `events`, e.g.
/// `"events": [{"code": "instance-stop", "not_before": "2027-01-15T08:00:00Z"}]`. Pure. A
/// malformed event fails only the forewarning, never the listing.
pub fn parse_events(text: &str) -> Result<Vec<ScheduledEvent>, String> {
    let listed: Vec<EventsOf> = serde_json::from_str(text)
        .map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))?;
    let mut events = Vec::new();
    for instance in listed {
        for (i, event) in instance.events.into_iter().enumerate() {
            let not_before = humantime::parse_rfc3339_weak(&event.not_before)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .ok_or_else(|| {
                    format!(
                        "instance {:?}: events[{i}].not_before {:?} is not an RFC 3339 time; write e.g. \"2027-01-15T08:00:00Z\"",
                        instance.id, event.not_before
                    )
                })?;
            if event.code.trim().is_empty() {
                return Err(format!(
                    "instance {:?}: events[{i}].code is empty; write e.g. \"instance-stop\"",
                    instance.id
                ));
            }
            events.push(ScheduledEvent {
                instance_id: instance.id.clone(),
                code: event.code,
                not_before: not_before.as_secs(),
                description: event.description,
                changes_addresses: event.changes_addresses,
            });
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceState;

    #[test]
    fn announced_events_are_read_with_their_instance_and_time() {
        let text = r#"[{"id":"i-1","name":"web-01","state":"running",
              "events":[{"code":"instance-stop","not_before":"2027-01-15T08:00:00Z","description":"scheduled stop"},
                        {"code":"system-reboot","not_before":"2027-01-16T08:00:00Z","changes_addresses":false}]},
             {"id":"i-2","name":"web-02","state":"running"}]"#;
        let events = parse_events(text).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].instance_id, "i-1");
        assert_eq!(events[0].not_before, 1_800_000_000);
        assert!(events[0].changes_addresses && !events[1].changes_addresses);
        assert_eq!(events[0].description, "scheduled stop");
        // The instances themselves parse as before: `events` is not an instance field.
        assert_eq!(parse_instances(text).unwrap().len(), 2);
    }

    #[test]
    fn malformed_events_name_the_instance_and_the_fix() {
        let at = |event: &str| {
            parse_events(&format!(
                r#"[{{"id":"i-1","name":"a","state":"running","events":[{event}]}}]"#
            ))
            .unwrap_err()
        };
        let bad_time = at(r#"{"code":"instance-stop","not_before":"tomorrow"}"#);
        assert!(
            bad_time.contains("\"i-1\"") && bad_time.contains("events[0].not_before"),
            "{bad_time}"
        );
        assert!(
            at(r#"{"code":" ","not_before":"2027-01-15T08:00:00Z"}"#).contains("code is empty")
        );
        assert!(
            at(r#"{"code":"x","not_before":"2027-01-15T08:00:00Z","notbefore":1}"#)
                .contains("unknown field")
        );
        assert!(at(r#"{"not_before":"2027-01-15T08:00:00Z"}"#).contains("missing field"));
    }

    #[test]
    fn parses_instances_with_optional_addresses() {
        let list = parse_instances(
            r#"[{"id":"i-1","name":"web-01","state":"running","public_ipv4":"192.0.2.1",
                 "private_ipv4":"10.0.0.1","ipv6":"2001:db8::1","tags":{"role":"web"}},
                {"id":"i-2","name":"web-02","state":"stopped"}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].public_ipv4, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(list[0].tags["role"], "web");
        assert_eq!(list[1].state, InstanceState::Stopped);
        assert_eq!(list[1].public_ipv4, None);
    }

    #[test]
    fn malformed_input_is_an_error_not_an_empty_list() {
        assert!(parse_instances("").unwrap_err().contains("empty"));
        assert!(
            parse_instances("[{\"id\":\"i-1\"")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_instances(r#"[{"id":"i-1","name":"a","state":"exploded"}]"#).is_err());
        assert!(
            parse_instances(
                r#"[{"id":"i-1","name":"a","state":"running","public_ipv4":"300.1.1.1"}]"#
            )
            .is_err()
        );
        assert!(parse_instances(r#"{"id":"i-1"}"#).is_err());
        let dup = r#"[{"id":"i-1","name":"a","state":"running"},{"id":"i-1","name":"b","state":"running"}]"#;
        assert!(parse_instances(dup).unwrap_err().contains("twice"));
        assert_eq!(parse_instances("[]").unwrap(), vec![]);
    }
}
