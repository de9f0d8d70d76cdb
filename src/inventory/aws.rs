//! `kind = "aws"`: the EC2 instances of one region, with the official AWS SDK (feature
//! `aws`).
//!
//! - Listing: DescribeInstances with the configured `filters` pushed down, every page
//!   (ec2:DescribeInstances). A page that fails fails the listing: never a shorter list.
//! - Forewarning: DescribeInstanceStatus, every page (ec2:DescribeInstanceStatus), for the
//!   scheduled events AWS announces (instance-stop, instance-retirement, system-reboot,
//!   instance-reboot, system-maintenance). A stop or retirement gives an instance a new
//!   public address unless that address is an Elastic IP; the instances with such events
//!   are described once more to tell which.
//!
//! - Events: with `events_queue`, EC2 state-change notifications from EventBridge start a
//!   pass at once (see [`super::aws_events`]; sqs:ReceiveMessage, sqs:DeleteMessage).
//!
//! The SDK client is built on first use (its config loading is async), so building the
//! source stays synchronous and cheap.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    EventCode, Filter, Instance as Ec2Instance, InstanceStateName, InstanceStatus,
};
use serde::Deserialize;
use tokio::sync::OnceCell;
use toml::Spanned;

use super::aws_events::{self, EventQueue};
use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::aws::{AwsAccess, check_access, explain, sdk_config};
use crate::clients::http::HttpOptions;
use crate::clients::paging::MAX_PAGES;
use crate::config::Fragment;
use crate::forecast::ScheduledEvent;
use crate::model::{Instance, InstanceState};
use crate::trigger::{Trigger, Watch};

/// The most instances DescribeInstances returns per page.
const PAGE_SIZE: i32 = 1000;

pub const KIND: SourceKind = SourceKind { name: "aws", check };

/// A `kind = "aws"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub access: AwsAccess,
    /// EC2 filter name → values, sent with DescribeInstances (`filters`).
    pub filters: BTreeMap<String, Vec<String>>,
    /// The SQS queue EventBridge delivers the instances' state changes to (`events_queue`).
    pub events_queue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    filters: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    profile: Option<Spanned<String>>,
    events_queue: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawAws = f.parse()?;
    let Some(region) = &raw.region else {
        f.missing(
            "region",
            "an aws inventory needs `region = \"eu-west-1\"` (the region whose instances it lists)",
        );
        return None;
    };
    let access = check_access(
        f,
        Some(region),
        raw.endpoint.as_ref(),
        raw.profile.as_ref(),
        "",
    )?;
    let mut filters = BTreeMap::new();
    for (name, values) in raw.filters.iter().flat_map(|raw| raw.get_ref()) {
        let problem = if name.trim().is_empty() {
            Some("a filter name must not be empty".to_string())
        } else if values.is_empty() {
            Some(format!(
                "filter {name:?} has no values; give at least one, e.g. {{ \"tag:env\" = [\"prod\"] }}"
            ))
        } else if name
            .chars()
            .chain(values.iter().flat_map(|v| v.chars()))
            .any(char::is_control)
        {
            Some(format!("filter {name:?} holds control characters"))
        } else {
            None
        };
        match problem {
            Some(message) => {
                f.error_at(raw.filters.as_ref().expect("iterated"), "filters", message)
            }
            None => {
                filters.insert(name.clone(), values.clone());
            }
        }
    }
    let events_queue = match &raw.events_queue {
        None => None,
        Some(queue) => match aws_events::check_queue_url(queue.get_ref(), &access.region) {
            Ok(()) => Some(queue.get_ref().clone()),
            Err(message) => {
                f.error_at(queue, "events_queue", message);
                return None;
            }
        },
    };
    Some(Arc::new(AwsConfig {
        access,
        filters,
        events_queue,
    }))
}

impl SourceSpec for AwsConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let mut inventory = AwsInventory::new(
            name.to_string(),
            self.access.clone(),
            self.filters.clone(),
            HttpOptions::new(timeout),
        );
        inventory.events_queue = self.events_queue.clone();
        Ok(Box::new(inventory))
    }
}

/// What EC2 puts in `IpOwnerId` for a public address it assigned itself: such an address
/// is released on stop. An Elastic IP carries the owning account's id instead.
const AMAZON_OWNED: &str = "amazon";

/// Lists the EC2 instances of one region.
pub struct AwsInventory {
    name: String,
    access: AwsAccess,
    filters: BTreeMap<String, Vec<String>>,
    options: HttpOptions,
    client: OnceCell<Client>,
    events_queue: Option<String>,
}

impl std::fmt::Debug for AwsInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsInventory")
            .field("name", &self.name)
            .field("access", &self.access)
            .field("filters", &self.filters)
            .field("events_queue", &self.events_queue)
            .finish()
    }
}

impl AwsInventory {
    /// `options.timeout` limits each attempt of each call.
    pub fn new(
        name: String,
        access: AwsAccess,
        filters: BTreeMap<String, Vec<String>>,
        options: HttpOptions,
    ) -> AwsInventory {
        AwsInventory {
            name,
            access,
            filters,
            options,
            client: OnceCell::new(),
            events_queue: None,
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                Client::new(&sdk_config(&self.access, self.options.timeout).await)
            })
            .await
    }

    /// The start of every error: source, service, region.
    fn context(&self) -> String {
        format!(
            "inventory {:?}: EC2 in {}{}",
            self.name,
            self.access.region,
            self.access
                .endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        )
    }

    fn filters(&self) -> Vec<Filter> {
        self.filters
            .iter()
            .map(|(name, values)| {
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build()
            })
            .collect()
    }

    /// Every page of DescribeInstances with the configured filters, or of the instances
    /// `ids` when given.
    async fn describe(&self, ids: Option<Vec<String>>) -> anyhow::Result<Vec<Ec2Instance>> {
        let request = self.client().await.describe_instances();
        let request = match ids {
            // MaxResults may not be combined with instance ids.
            Some(ids) => request.set_instance_ids(Some(ids)),
            None => request
                .set_filters(Some(self.filters()))
                .max_results(PAGE_SIZE),
        };
        let mut pages = request.into_paginator().send();
        let mut instances = Vec::new();
        let mut page = 0;
        while let Some(result) = pages.next().await {
            page += 1;
            if page > MAX_PAGES {
                return Err(anyhow!(
                    "{}: the listing has more than {MAX_PAGES} pages; narrow it with `filters`",
                    self.context()
                ));
            }
            let output = result.map_err(|e| {
                anyhow!(
                    "{}: {}",
                    self.context(),
                    explain(
                        &e,
                        &format!("DescribeInstances page {page}"),
                        "ec2:DescribeInstances"
                    )
                )
            })?;
            for reservation in output.reservations() {
                instances.extend(reservation.instances().iter().cloned());
            }
        }
        Ok(instances)
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let listed = self.describe(None).await?;
        let mut ids = BTreeSet::new();
        let mut instances = Vec::with_capacity(listed.len());
        for ec2 in &listed {
            let instance = instance(ec2).map_err(|e| anyhow!("{}: {e}", self.context()))?;
            if !ids.insert(instance.id.clone()) {
                return Err(anyhow!(
                    "{}: instance {} was listed twice; the listing changed while it was read (the next pass reads it again)",
                    self.context(),
                    instance.id
                ));
            }
            instances.push(instance);
        }
        Ok(instances)
    }

    async fn events(&self) -> anyhow::Result<Vec<ScheduledEvent>> {
        let request = self
            .client()
            .await
            .describe_instance_status()
            .include_all_instances(true)
            .max_results(PAGE_SIZE);
        let mut pages = request.into_paginator().send();
        let mut statuses = Vec::new();
        let mut page = 0;
        while let Some(result) = pages.next().await {
            page += 1;
            if page > MAX_PAGES {
                return Err(anyhow!(
                    "{}: DescribeInstanceStatus has more than {MAX_PAGES} pages",
                    self.context()
                ));
            }
            let output = result.map_err(|e| {
                anyhow!(
                    "{}: {}",
                    self.context(),
                    explain(
                        &e,
                        &format!("DescribeInstanceStatus page {page}"),
                        "ec2:DescribeInstanceStatus"
                    )
                )
            })?;
            statuses.extend(output.instance_statuses().iter().cloned());
        }
        let announced = announced_events(&statuses);
        // Only stops and retirements can move addresses; only for those does it matter
        // whether the public address is an Elastic IP.
        let moving: BTreeSet<String> = announced
            .iter()
            .filter(|e| releases_public_address(&e.code))
            .map(|e| e.instance_id.clone())
            .collect();
        let released: BTreeSet<String> = if moving.is_empty() {
            BTreeSet::new()
        } else {
            self.describe(Some(moving.into_iter().collect()))
                .await?
                .iter()
                .filter(|i| has_releasable_public_address(i))
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect()
        };
        Ok(announced
            .into_iter()
            .map(|mut event| {
                event.changes_addresses =
                    releases_public_address(&event.code) && released.contains(&event.instance_id);
                event
            })
            .collect())
    }
}

impl Inventory for AwsInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        self.options.listing_limit()
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(self.list_all())
    }

    fn scheduled_events(&self) -> BoxFuture<'_, anyhow::Result<Vec<ScheduledEvent>>> {
        Box::pin(self.events())
    }

    fn watch(&self, trigger: Trigger) -> anyhow::Result<Option<Watch>> {
        let Some(queue_url) = &self.events_queue else {
            return Ok(None);
        };
        let queue = EventQueue {
            source: self.name.clone(),
            queue_url: queue_url.clone(),
            access: self.access.clone(),
            timeout: self.options.timeout,
        };
        Ok(Some(Watch::task(tokio::spawn(queue.consume(trigger)))))
    }
}

/// EC2's states: `shutting-down` is the way to `terminated`; a state EC2 adds later counts
/// as pending (not running, not gone).
fn state(name: Option<&InstanceStateName>) -> InstanceState {
    match name {
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated) => {
            InstanceState::Terminated
        }
        _ => InstanceState::Pending,
    }
}

/// An EC2 instance as ipdrift sees it. The `Name` tag is the name (the instance id when
/// it has none); every tag is kept; IPv6 is the primary network interface's (its primary
/// IPv6 address, else its first).
fn instance(ec2: &Ec2Instance) -> Result<Instance, String> {
    let id = ec2
        .instance_id()
        .filter(|id| !id.is_empty())
        .ok_or("malformed response: an instance without an InstanceId")?;
    let tags: BTreeMap<String, String> = ec2
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect();
    let name = tags
        .get("Name")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| id.to_string());
    let address = |what: &str, text: Option<&str>| -> Result<Option<Ipv4Addr>, String> {
        text.map(|t| {
            t.parse()
                .map_err(|_| format!("malformed response: instance {id} has {what} {t:?}"))
        })
        .transpose()
    };
    let ipv6 = primary_interface(ec2)
        .and_then(|eni| {
            let addrs = eni.ipv6_addresses();
            addrs
                .iter()
                .find(|a| a.is_primary_ipv6() == Some(true))
                .or_else(|| addrs.first())
                .and_then(|a| a.ipv6_address())
        })
        .map(|t| {
            t.parse::<Ipv6Addr>()
                .map_err(|_| format!("malformed response: instance {id} has IPv6 address {t:?}"))
        })
        .transpose()?;
    Ok(Instance {
        id: id.to_string(),
        name,
        state: state(ec2.state().and_then(|s| s.name())),
        public_ipv4: address("public address", ec2.public_ip_address())?,
        private_ipv4: address("private address", ec2.private_ip_address())?,
        ipv6,
        tags,
    })
}

/// The network interface at device index 0.
fn primary_interface(ec2: &Ec2Instance) -> Option<&aws_sdk_ec2::types::InstanceNetworkInterface> {
    ec2.network_interfaces()
        .iter()
        .find(|eni| eni.attachment().and_then(|a| a.device_index()) == Some(0))
}

/// Whether the instance has a public IPv4 address that a stop releases: one EC2 assigned
/// (`IpOwnerId` "amazon"), not an Elastic IP (`IpOwnerId` the owning account).
fn has_releasable_public_address(ec2: &Ec2Instance) -> bool {
    let Some(public) = ec2.public_ip_address() else {
        return false;
    };
    ec2.network_interfaces()
        .iter()
        .filter_map(|eni| eni.association())
        .find(|a| a.public_ip() == Some(public))
        // No association naming the address: nothing says it is an Elastic IP.
        .is_none_or(|a| a.ip_owner_id() == Some(AMAZON_OWNED))
}

/// Whether an event with this code stops the instance, which releases an EC2-assigned
/// public address (a retirement stops an EBS-backed instance, terminates another).
fn releases_public_address(code: &str) -> bool {
    code == EventCode::InstanceStop.as_str() || code == EventCode::InstanceRetirement.as_str()
}

/// The events still ahead in `statuses`, with `changes_addresses` false (see
/// [`AwsInventory::events`]). AWS keeps past events listed for a while with a description
/// starting `[Completed]` or `[Canceled]`; those, and events without a time, are left out.
fn announced_events(statuses: &[InstanceStatus]) -> Vec<ScheduledEvent> {
    let mut events = Vec::new();
    for status in statuses {
        let Some(instance_id) = status.instance_id() else {
            continue;
        };
        for event in status.events() {
            let description = event.description().unwrap_or("").to_string();
            let (Some(code), Some(not_before)) = (event.code(), event.not_before()) else {
                continue;
            };
            if description.starts_with("[Completed]") || description.starts_with("[Canceled]") {
                continue;
            }
            events.push(ScheduledEvent {
                instance_id: instance_id.to_string(),
                code: code.as_str().to_string(),
                not_before: u64::try_from(not_before.secs()).unwrap_or(0),
                description,
                changes_addresses: false,
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::primitives::DateTime;
    use aws_sdk_ec2::types::{
        InstanceIpv6Address, InstanceNetworkInterface, InstanceNetworkInterfaceAssociation,
        InstanceNetworkInterfaceAttachment, InstanceState as Ec2State, InstanceStatusEvent, Tag,
    };

    fn interface(
        index: i32,
        public: Option<(&str, &str)>,
        ipv6: &[(&str, bool)],
    ) -> InstanceNetworkInterface {
        let mut eni = InstanceNetworkInterface::builder().attachment(
            InstanceNetworkInterfaceAttachment::builder()
                .device_index(index)
                .build(),
        );
        if let Some((ip, owner)) = public {
            eni = eni.association(
                InstanceNetworkInterfaceAssociation::builder()
                    .public_ip(ip)
                    .ip_owner_id(owner)
                    .build(),
            );
        }
        for (addr, primary) in ipv6 {
            eni = eni.ipv6_addresses(
                InstanceIpv6Address::builder()
                    .ipv6_address(*addr)
                    .is_primary_ipv6(*primary)
                    .build(),
            );
        }
        eni.build()
    }

    fn web_01(owner: &str) -> Ec2Instance {
        Ec2Instance::builder()
            .instance_id("i-0123456789abcdef0")
            .state(Ec2State::builder().name(InstanceStateName::Running).build())
            .public_ip_address("198.51.100.7")
            .private_ip_address("10.0.1.11")
            .tags(Tag::builder().key("Name").value("web-01").build())
            .tags(Tag::builder().key("role").value("web").build())
            .tags(Tag::builder().key("empty").build())
            .network_interfaces(interface(1, None, &[("2001:db8::99", true)]))
            .network_interfaces(interface(
                0,
                Some(("198.51.100.7", owner)),
                &[("2001:db8::1", false), ("2001:db8::2", true)],
            ))
            .build()
    }

    #[test]
    fn an_ec2_instance_maps_to_an_instance() {
        let i = instance(&web_01("amazon")).unwrap();
        assert_eq!(i.id, "i-0123456789abcdef0");
        assert_eq!(i.name, "web-01");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("10.0.1.11".parse().unwrap()));
        assert_eq!(
            i.ipv6,
            Some("2001:db8::2".parse().unwrap()),
            "the primary ENI's primary IPv6"
        );
        assert_eq!(i.tags["role"], "web");
        assert_eq!(i.tags["Name"], "web-01");
        assert_eq!(i.tags["empty"], "");
    }

    #[test]
    fn an_instance_without_name_or_addresses_is_named_by_its_id() {
        let ec2 = Ec2Instance::builder()
            .instance_id("i-1")
            .state(Ec2State::builder().name(InstanceStateName::Stopped).build())
            .build();
        let i = instance(&ec2).unwrap();
        assert_eq!((i.name.as_str(), i.state), ("i-1", InstanceState::Stopped));
        assert_eq!((i.public_ipv4, i.private_ipv4, i.ipv6), (None, None, None));
        assert!(instance(&Ec2Instance::builder().build()).is_err());
        let bad = Ec2Instance::builder()
            .instance_id("i-2")
            .public_ip_address("300.1.1.1")
            .build();
        assert!(instance(&bad).unwrap_err().contains("300.1.1.1"));
    }

    #[test]
    fn ec2_states_map_to_instance_states() {
        use InstanceStateName as S;
        for (name, want) in [
            (S::Pending, InstanceState::Pending),
            (S::Running, InstanceState::Running),
            (S::Stopping, InstanceState::Stopping),
            (S::Stopped, InstanceState::Stopped),
            (S::ShuttingDown, InstanceState::Terminated),
            (S::Terminated, InstanceState::Terminated),
            (S::from("hibernating-someday"), InstanceState::Pending),
        ] {
            assert_eq!(state(Some(&name)), want, "{name:?}");
        }
        assert_eq!(state(None), InstanceState::Pending);
    }

    #[test]
    fn an_elastic_ip_is_not_released_by_a_stop() {
        assert!(has_releasable_public_address(&web_01("amazon")));
        assert!(!has_releasable_public_address(&web_01("123456789012")));
        let private_only = Ec2Instance::builder().instance_id("i-3").build();
        assert!(!has_releasable_public_address(&private_only));
    }

    fn status(id: &str, events: Vec<InstanceStatusEvent>) -> InstanceStatus {
        let mut s = InstanceStatus::builder().instance_id(id);
        for e in events {
            s = s.events(e);
        }
        s.build()
    }

    fn event(code: EventCode, description: &str, not_before: i64) -> InstanceStatusEvent {
        InstanceStatusEvent::builder()
            .instance_event_id("instance-event-0d59937288b749b32")
            .code(code)
            .description(description)
            .not_before(DateTime::from_secs(not_before))
            .build()
    }

    #[test]
    fn announced_events_skip_completed_and_canceled_ones() {
        let statuses = vec![
            status(
                "i-1",
                vec![
                    event(
                        EventCode::InstanceRetirement,
                        "The instance is running on degraded hardware",
                        1_800_000_000,
                    ),
                    event(
                        EventCode::SystemReboot,
                        "[Completed] Scheduled reboot",
                        1_700_000_000,
                    ),
                ],
            ),
            status(
                "i-2",
                vec![event(
                    EventCode::SystemMaintenance,
                    "[Canceled] Maintenance",
                    1_800_000_000,
                )],
            ),
            status(
                "i-3",
                vec![event(
                    EventCode::InstanceReboot,
                    "Scheduled reboot",
                    1_800_000_500,
                )],
            ),
        ];
        let events = announced_events(&statuses);
        assert_eq!(
            events,
            vec![
                ScheduledEvent {
                    instance_id: "i-1".into(),
                    code: "instance-retirement".into(),
                    not_before: 1_800_000_000,
                    description: "The instance is running on degraded hardware".into(),
                    changes_addresses: false,
                },
                ScheduledEvent {
                    instance_id: "i-3".into(),
                    code: "instance-reboot".into(),
                    not_before: 1_800_000_500,
                    description: "Scheduled reboot".into(),
                    changes_addresses: false,
                },
            ]
        );
    }

    #[test]
    fn only_stops_and_retirements_release_addresses() {
        for code in [EventCode::InstanceStop, EventCode::InstanceRetirement] {
            assert!(releases_public_address(code.as_str()), "{code:?}");
        }
        for code in [
            EventCode::InstanceReboot,
            EventCode::SystemReboot,
            EventCode::SystemMaintenance,
        ] {
            assert!(!releases_public_address(code.as_str()), "{code:?}");
        }
    }
}
