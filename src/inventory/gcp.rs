//! `kind = "gcp"`: Compute Engine instances of one project, from the Compute Engine API
//! (<https://cloud.google.com/compute/docs/reference/rest/v1/instances>).
//!
//! - Listing: `instances.aggregatedList` (every zone) or `instances.list` for each of
//!   `zones`, `maxResults=500`, the configured `filter` pushed down, following
//!   `nextPageToken`. A page that fails, a zone the API reports unreachable (`unreachables`,
//!   or a scope's `UNREACHABLE` warning) or a malformed page fails the listing: never a
//!   shorter list. Needs `compute.instances.list` (roles/compute.viewer).
//! - Forewarning: an instance's `upcomingMaintenance` (type, window, whether it can be
//!   rescheduled, status) becomes a scheduled event. It changes addresses when the instance
//!   is stopped for it (`scheduling.onHostMaintenance = TERMINATE`) and holds an ephemeral
//!   external address, which a stop releases; live migration (`MIGRATE`) keeps every address,
//!   and a static (reserved) external address survives a stop. Which external addresses are
//!   static is read with `addresses.aggregatedList` (compute.addresses.list), only when
//!   such an event is announced.
//!
//! Mapping to [`Instance`]: `id` → id, `name` → name, `labels` → tags; the first network
//! interface's `networkIP` → `private_ipv4`, its first access config's `natIP` →
//! `public_ipv4`, its first IPv6 access config's `externalIpv6` (else its internal
//! `ipv6Address`) → `ipv6`. `status` `RUNNING` → running; `PROVISIONING`, `STAGING`,
//! `REPAIRING` (and anything new) → pending; `STOPPING`, `SUSPENDING` → stopping;
//! `TERMINATED` (Compute Engine's word for stopped), `SUSPENDED` → stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tokio::time::Instant;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::gcp::{self, GcpAuth, GcpCredentials};
use crate::clients::http::{ApiClient, HttpOptions, api_url};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::config::{Fragment, SecretAt};
use crate::forecast::ScheduledEvent;
use crate::model::{Instance, InstanceState};

/// The API's base URL unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";

/// The most instances one page may hold (the API's maximum).
const MAX_RESULTS: u32 = 500;

pub const KIND: SourceKind = SourceKind { name: "gcp", check };

/// What a refused listing is told it needs.
const NEEDS_LIST: &str =
    "the service account needs compute.instances.list on the project, e.g. roles/compute.viewer";
const NEEDS_ADDRESSES: &str =
    "the service account needs compute.addresses.list on the project, e.g. roles/compute.viewer";

/// A `kind = "gcp"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpConfig {
    pub project: String,
    /// Only these zones (`zones`); empty: every zone, by aggregatedList.
    pub zones: Vec<String>,
    /// The API's filter expression (`filter`), e.g. `labels.role = web`.
    pub filter: Option<String>,
    pub auth: GcpAuth,
    /// The API's base URL (`endpoint`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGcp {
    project: Option<Spanned<String>>,
    zones: Option<Spanned<Vec<String>>>,
    filter: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
    metadata_host: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

/// A project id (`my-project-123`), or a domain-scoped one (`example.com:my-project`).
pub fn is_project_id(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'))
}

fn is_zone(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawGcp = f.parse()?;
    let auth = gcp::check_auth(f, raw.credentials_file.as_ref(), raw.metadata_host.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let project = match &raw.project {
        None => {
            f.missing(
                "project",
                "a gcp inventory needs `project = \"my-project\"` (the project whose instances it lists)",
            );
            None
        }
        Some(p) if !is_project_id(p.get_ref()) => {
            f.error_at(
                p,
                "project",
                format!("{:?} is not a project id such as \"my-project-123\" (lower-case letters, digits, '-')", p.get_ref()),
            );
            None
        }
        Some(p) => Some(p.get_ref().clone()),
    };
    let mut zones = Vec::new();
    if let Some(list) = &raw.zones {
        if list.get_ref().is_empty() {
            f.error_at(list, "zones", "must name at least one zone, e.g. [\"europe-west1-b\"]; leave it out to list every zone");
        }
        for zone in list.get_ref() {
            if is_zone(zone) {
                zones.push(zone.clone());
            } else {
                f.error_at(
                    list,
                    "zones",
                    format!("{zone:?} is not a zone such as \"europe-west1-b\""),
                );
            }
        }
    }
    let filter = raw.filter.as_ref().and_then(|text| {
        let value = text.get_ref().trim();
        if value.is_empty() || value.chars().any(char::is_control) {
            f.error_at(text, "filter", "must be a Compute Engine filter expression such as \"labels.role = web\"; leave it out to list every instance");
            None
        } else {
            Some(value.to_string())
        }
    });
    Some(Arc::new(GcpConfig {
        project: project?,
        zones,
        filter,
        auth: auth?,
        endpoint,
    }))
}

impl SourceSpec for GcpConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let options = HttpOptions::new(timeout);
        let owner = format!("inventory {name:?}");
        let credentials = GcpCredentials::new(&self.auth, &owner, options)?;
        Ok(Box::new(GcpInventory::new(
            name.to_string(),
            self.clone(),
            credentials,
            options,
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        self.auth.secrets()
    }
}

/// One page of `instances.list` or `instances.aggregatedList`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstancePage {
    /// A list (`instances.list`), or scope → instances (`aggregatedList`).
    #[serde(default)]
    items: Option<Items>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    unreachables: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Items {
    List(Vec<GceInstance>),
    Scopes(BTreeMap<String, ScopedList>),
}

#[derive(Debug, Deserialize)]
struct ScopedList {
    #[serde(default)]
    instances: Vec<GceInstance>,
    #[serde(default)]
    warning: Option<Warning>,
}

#[derive(Debug, Deserialize)]
struct Warning {
    code: String,
    #[serde(default)]
    message: String,
}

/// The part of a Compute Engine instance resource ipdrift reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GceInstance {
    id: String,
    name: String,
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    network_interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    scheduling: Option<Scheduling>,
    #[serde(default)]
    upcoming_maintenance: Option<UpcomingMaintenance>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkInterface {
    #[serde(default)]
    #[serde(rename = "networkIP")]
    network_ip: Option<Ipv4Addr>,
    #[serde(default)]
    ipv6_address: Option<Ipv6Addr>,
    #[serde(default)]
    access_configs: Vec<AccessConfig>,
    #[serde(default)]
    ipv6_access_configs: Vec<AccessConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessConfig {
    #[serde(default, rename = "natIP")]
    nat_ip: Option<Ipv4Addr>,
    #[serde(default)]
    external_ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scheduling {
    #[serde(default)]
    on_host_maintenance: Option<String>,
}

/// `upcomingMaintenance` of an instance (Compute Engine API `UpcomingMaintenance`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpcomingMaintenance {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    window_start_time: Option<String>,
    #[serde(default)]
    window_end_time: Option<String>,
    #[serde(default)]
    latest_window_start_time: Option<String>,
    #[serde(default)]
    can_reschedule: Option<bool>,
    #[serde(default)]
    maintenance_status: Option<String>,
}

/// One page of `addresses.aggregatedList`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressPage {
    #[serde(default)]
    items: BTreeMap<String, AddressScope>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddressScope {
    #[serde(default)]
    addresses: Vec<StaticAddress>,
}

#[derive(Debug, Deserialize)]
struct StaticAddress {
    address: IpAddr,
}

fn state(status: &str) -> InstanceState {
    match status {
        "RUNNING" => InstanceState::Running,
        "STOPPING" | "SUSPENDING" => InstanceState::Stopping,
        // TERMINATED is a stopped instance that can be started again; a deleted one is
        // not listed at all.
        "TERMINATED" | "SUSPENDED" => InstanceState::Stopped,
        _ => InstanceState::Pending,
    }
}

impl GceInstance {
    fn nic0(&self) -> Option<&NetworkInterface> {
        self.network_interfaces.first()
    }

    fn public_ipv4(&self) -> Option<Ipv4Addr> {
        self.nic0()?.access_configs.iter().find_map(|a| a.nat_ip)
    }

    fn external_ipv6(&self) -> Option<Ipv6Addr> {
        self.nic0()?
            .ipv6_access_configs
            .iter()
            .find_map(|a| a.external_ipv6)
    }

    fn instance(&self) -> Instance {
        Instance {
            id: self.id.clone(),
            name: self.name.clone(),
            state: state(&self.status),
            public_ipv4: self.public_ipv4(),
            private_ipv4: self.nic0().and_then(|n| n.network_ip),
            ipv6: self
                .external_ipv6()
                .or_else(|| self.nic0().and_then(|n| n.ipv6_address)),
            tags: self.labels.clone(),
        }
    }

    /// The external addresses a stop would release unless they are static.
    fn external_addresses(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = Vec::new();
        addrs.extend(self.public_ipv4().map(IpAddr::V4));
        addrs.extend(self.external_ipv6().map(IpAddr::V6));
        addrs
    }

    /// Whether the instance is stopped, not live-migrated, for host maintenance. An
    /// instance without the setting migrates (the API's default for standard VMs).
    fn stops_for_maintenance(&self) -> bool {
        self.scheduling
            .as_ref()
            .and_then(|s| s.on_host_maintenance.as_deref())
            == Some("TERMINATE")
    }
}

fn unix(text: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// The scheduled event of an instance's upcoming maintenance, with `changes_addresses`
/// from [`GceInstance::stops_for_maintenance`] and whether an external address is not
/// among `static_addresses`. `None` without maintenance or without a window start.
fn maintenance_event(
    instance: &GceInstance,
    static_addresses: &BTreeSet<IpAddr>,
) -> Option<ScheduledEvent> {
    let m = instance.upcoming_maintenance.as_ref()?;
    let start = m
        .window_start_time
        .as_deref()
        .or(m.latest_window_start_time.as_deref())?;
    let not_before = unix(start)?;
    let kind = m.kind.as_deref().unwrap_or("UNKNOWN_TYPE");
    let code = format!(
        "{}-maintenance",
        kind.to_ascii_lowercase().replace('_', "-")
    );
    let stops = instance.stops_for_maintenance();
    let ephemeral: Vec<String> = instance
        .external_addresses()
        .into_iter()
        .filter(|a| !static_addresses.contains(a))
        .map(|a| a.to_string())
        .collect();
    let mut description = format!(
        "Compute Engine {kind} host maintenance ({}), window {start}",
        m.maintenance_status.as_deref().unwrap_or("PENDING")
    );
    if let Some(end) = &m.window_end_time {
        description.push_str(&format!(" to {end}"));
    }
    if let Some(latest) = &m.latest_window_start_time {
        description.push_str(&format!(", starting by {latest} at the latest"));
    }
    if stops {
        description.push_str("; onHostMaintenance TERMINATE: the instance is stopped");
        if ephemeral.is_empty() {
            description.push_str(", its external addresses are static and kept");
        } else {
            description.push_str(&format!(
                ", its ephemeral external address {} is released",
                ephemeral.join(", ")
            ));
        }
    } else {
        description.push_str("; onHostMaintenance MIGRATE: live migration keeps its addresses");
    }
    if m.can_reschedule == Some(true) {
        description.push_str("; can be started now (gcloud compute instances perform-maintenance)");
    }
    Some(ScheduledEvent {
        instance_id: instance.id.clone(),
        code,
        not_before,
        description,
        changes_addresses: stops && !ephemeral.is_empty(),
    })
}

/// One listing, handed to at most one [`Inventory::list`] and one
/// [`Inventory::scheduled_events`] call: a pass asks both at once, and both read the same
/// instances, so the API is asked once per pass.
struct Shared {
    listing: Arc<Result<Vec<GceInstance>, String>>,
    at: Instant,
    listed: bool,
    forecast: bool,
}

/// Lists the instances of one project.
pub struct GcpInventory {
    name: String,
    config: GcpConfig,
    credentials: GcpCredentials,
    api: ApiClient,
    shared: Mutex<Option<Shared>>,
}

impl std::fmt::Debug for GcpInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpInventory")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl GcpInventory {
    pub fn new(
        name: String,
        config: GcpConfig,
        credentials: GcpCredentials,
        options: HttpOptions,
    ) -> anyhow::Result<GcpInventory> {
        let api =
            ApiClient::without_token("Compute Engine", format!("inventory {name:?}"), options)?
                .checking(gcp::CHECK);
        Ok(GcpInventory {
            name,
            config,
            credentials,
            api,
            shared: Mutex::new(None),
        })
    }

    fn project_url(&self, rest: &[&str]) -> Url {
        let mut segments = vec!["compute", "v1", "projects", self.config.project.as_str()];
        segments.extend_from_slice(rest);
        api_url(&self.config.endpoint, &segments)
    }

    /// `base` with `maxResults`, the filter and the page token.
    fn page_url(base: &Url, filter: Option<&str>, token: Option<&str>) -> Url {
        let mut url = base.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("maxResults", &MAX_RESULTS.to_string());
            if let Some(filter) = filter {
                query.append_pair("filter", filter);
            }
            if let Some(token) = token {
                query.append_pair("pageToken", token);
            }
        }
        url
    }

    /// Every instance of the configured zones (every zone without `zones`).
    async fn list_raw(&self) -> anyhow::Result<Vec<GceInstance>> {
        self.credentials.authorize(&self.api).await?;
        let bases: Vec<Url> = if self.config.zones.is_empty() {
            vec![self.project_url(&["aggregated", "instances"])]
        } else {
            self.config
                .zones
                .iter()
                .map(|zone| self.project_url(&["zones", zone, "instances"]))
                .collect()
        };
        let listing = Listing {
            noun: "instance",
            next_field: "nextPageToken",
            narrow: Some("filter"),
            needs: NEEDS_LIST,
            id: |i: &GceInstance| i.id.as_str(),
        };
        let filter = self.config.filter.as_deref();
        let mut all = Vec::new();
        for base in &bases {
            let read = |body: InstancePage, _: &Url| -> Result<Page<GceInstance>, String> {
                if !body.unreachables.is_empty() {
                    return Err(format!(
                        "partial listing: {} unreachable; the next pass reads it again",
                        body.unreachables.join(", ")
                    ));
                }
                let items = match body.items {
                    None => Vec::new(),
                    Some(Items::List(list)) => list,
                    Some(Items::Scopes(scopes)) => {
                        let mut items = Vec::new();
                        for (scope, list) in scopes {
                            if let Some(w) =
                                list.warning.as_ref().filter(|w| w.code == "UNREACHABLE")
                            {
                                return Err(format!(
                                    "partial listing: {scope} is unreachable ({}); the next pass reads it again",
                                    w.message
                                ));
                            }
                            items.extend(list.instances);
                        }
                        items
                    }
                };
                let next = body
                    .next_page_token
                    .filter(|t| !t.is_empty())
                    .map(|t| NextPage::Url(Self::page_url(base, filter, Some(&t))));
                Ok(Page {
                    items,
                    next,
                    total: None,
                })
            };
            all.extend(
                self.api
                    .list_pages(&listing, |_| Self::page_url(base, filter, None), read)
                    .await?,
            );
        }
        let mut ids = BTreeSet::new();
        for instance in &all {
            if !ids.insert(instance.id.as_str()) {
                return Err(anyhow!(
                    "inventory {:?}: Compute Engine listed instance {} twice; the listing changed while it was read (the next pass reads it again)",
                    self.name,
                    instance.id
                ));
            }
        }
        Ok(all)
    }

    /// This pass's listing: the one the other call of the pass made, or a fresh one.
    async fn listing(&self, for_forecast: bool) -> anyhow::Result<Arc<Vec<GceInstance>>> {
        let mut slot = self.shared.lock().await;
        let limit = self.api.options().listing_limit();
        if let Some(shared) = slot.as_mut() {
            let taken = if for_forecast {
                &mut shared.forecast
            } else {
                &mut shared.listed
            };
            if !*taken && shared.at.elapsed() < limit {
                *taken = true;
                let listing = shared.listing.clone();
                if shared.listed && shared.forecast {
                    *slot = None;
                }
                return unshared(&listing);
            }
        }
        let listing = Arc::new(self.list_raw().await.map_err(|e| format!("{e:#}")));
        *slot = Some(Shared {
            listing: listing.clone(),
            at: Instant::now(),
            listed: !for_forecast,
            forecast: for_forecast,
        });
        unshared(&listing)
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        Ok(self
            .listing(false)
            .await?
            .iter()
            .map(GceInstance::instance)
            .collect())
    }

    /// The static external addresses of the project.
    async fn static_addresses(&self) -> anyhow::Result<BTreeSet<IpAddr>> {
        self.credentials.authorize(&self.api).await?;
        let base = self.project_url(&["aggregated", "addresses"]);
        let listing = Listing {
            noun: "address",
            next_field: "nextPageToken",
            narrow: None,
            needs: NEEDS_ADDRESSES,
            id: |a: &String| a.as_str(),
        };
        let read = |body: AddressPage, _: &Url| -> Result<Page<String>, String> {
            Ok(Page {
                items: body
                    .items
                    .into_values()
                    .flat_map(|s| s.addresses)
                    .map(|a| a.address.to_string())
                    .collect(),
                next: body
                    .next_page_token
                    .filter(|t| !t.is_empty())
                    .map(|t| NextPage::Url(Self::page_url(&base, None, Some(&t)))),
                total: None,
            })
        };
        let addresses = self
            .api
            .list_pages(&listing, |_| Self::page_url(&base, None, None), read)
            .await?;
        Ok(addresses.iter().filter_map(|a| a.parse().ok()).collect())
    }

    async fn events(&self) -> anyhow::Result<Vec<ScheduledEvent>> {
        let listing = self.listing(true).await?;
        let stopping: Vec<&GceInstance> = listing
            .iter()
            .filter(|i| i.upcoming_maintenance.is_some() && i.stops_for_maintenance())
            .filter(|i| !i.external_addresses().is_empty())
            .collect();
        let static_addresses = if stopping.is_empty() {
            BTreeSet::new()
        } else {
            self.static_addresses().await?
        };
        Ok(listing
            .iter()
            .filter_map(|i| maintenance_event(i, &static_addresses))
            .collect())
    }
}

/// A shared listing's result as this call's own.
fn unshared(
    listing: &Arc<Result<Vec<GceInstance>, String>>,
) -> anyhow::Result<Arc<Vec<GceInstance>>> {
    match listing.as_ref() {
        Ok(list) => Ok(Arc::new(list.clone())),
        Err(e) => Err(anyhow!("{e}")),
    }
}

impl Inventory for GcpInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        // The token, then every zone's pages.
        self.api
            .options()
            .listing_limit()
            .saturating_mul(u32::try_from(self.config.zones.len().max(1) + 1).unwrap_or(u32::MAX))
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(self.list_all())
    }

    fn scheduled_events(&self) -> BoxFuture<'_, anyhow::Result<Vec<ScheduledEvent>>> {
        Box::pin(self.events())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance shaped like the example in the Compute Engine reference (`instances.get`).
    const DOCUMENTED: &str = r#"{
      "kind": "compute#instance", "id": "4567890123456789012", "creationTimestamp": "2026-01-10T02:03:04.000-08:00",
      "name": "web-01", "tags": {"fingerprint": "42WmSpB8rSM="},
      "machineType": "https://www.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/machineTypes/e2-small",
      "status": "RUNNING", "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/europe-west1-b",
      "canIpForward": false,
      "networkInterfaces": [{
        "kind": "compute#networkInterface",
        "network": "https://www.googleapis.com/compute/v1/projects/p/global/networks/default",
        "subnetwork": "https://www.googleapis.com/compute/v1/projects/p/regions/europe-west1/subnetworks/default",
        "networkIP": "10.132.0.2", "name": "nic0", "stackType": "IPV4_IPV6",
        "accessConfigs": [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": "34.76.1.2", "networkTier": "PREMIUM"}],
        "ipv6AccessConfigs": [{"kind": "compute#accessConfig", "type": "DIRECT_IPV6", "name": "external-ipv6", "externalIpv6": "2600:1900:4010:1::", "externalIpv6PrefixLength": 96, "networkTier": "PREMIUM"}],
        "fingerprint": "abc="
      }],
      "labels": {"role": "web", "env": "prod"},
      "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": true, "preemptible": false, "provisioningModel": "STANDARD"},
      "upcomingMaintenance": {"type": "SCHEDULED", "canReschedule": true, "windowStartTime": "2030-01-15T08:00:00Z", "windowEndTime": "2030-01-15T12:00:00Z", "latestWindowStartTime": "2030-01-16T08:00:00Z", "maintenanceStatus": "PENDING"}
    }"#;

    fn documented() -> GceInstance {
        serde_json::from_str(DOCUMENTED).unwrap()
    }

    #[test]
    fn the_documented_instance_maps_to_an_instance() {
        let i = documented().instance();
        assert_eq!(i.id, "4567890123456789012");
        assert_eq!(i.name, "web-01");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("34.76.1.2".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("10.132.0.2".parse().unwrap()));
        assert_eq!(i.ipv6, Some("2600:1900:4010:1::".parse().unwrap()));
        assert_eq!(i.tags["role"], "web");
    }

    #[test]
    fn statuses_map_to_states() {
        for (status, want) in [
            ("PROVISIONING", InstanceState::Pending),
            ("STAGING", InstanceState::Pending),
            ("RUNNING", InstanceState::Running),
            ("STOPPING", InstanceState::Stopping),
            ("SUSPENDING", InstanceState::Stopping),
            ("SUSPENDED", InstanceState::Stopped),
            ("TERMINATED", InstanceState::Stopped),
            ("REPAIRING", InstanceState::Pending),
            ("SOMETHING_NEW", InstanceState::Pending),
        ] {
            assert_eq!(state(status), want, "{status}");
        }
    }

    #[test]
    fn maintenance_that_stops_an_instance_with_an_ephemeral_address_changes_it() {
        let event = maintenance_event(&documented(), &BTreeSet::new()).unwrap();
        assert_eq!(event.code, "scheduled-maintenance");
        assert_eq!(event.not_before, 1_894_694_400);
        assert!(event.changes_addresses);
        assert!(
            event.description.contains("34.76.1.2"),
            "{}",
            event.description
        );
        assert!(event.description.contains("perform-maintenance"));

        // A static address survives the stop.
        let statics: BTreeSet<IpAddr> = [
            "34.76.1.2".parse().unwrap(),
            "2600:1900:4010:1::".parse().unwrap(),
        ]
        .into();
        assert!(
            !maintenance_event(&documented(), &statics)
                .unwrap()
                .changes_addresses
        );

        // Live migration keeps every address.
        let mut migrating = documented();
        migrating.scheduling = Some(Scheduling {
            on_host_maintenance: Some("MIGRATE".into()),
        });
        let event = maintenance_event(&migrating, &BTreeSet::new()).unwrap();
        assert!(!event.changes_addresses && event.description.contains("live migration"));
        migrating.scheduling = None;
        assert!(
            !maintenance_event(&migrating, &BTreeSet::new())
                .unwrap()
                .changes_addresses
        );

        // No public address: nothing a stop releases.
        let mut private = documented();
        private.network_interfaces[0].access_configs.clear();
        private.network_interfaces[0].ipv6_access_configs.clear();
        assert!(
            !maintenance_event(&private, &BTreeSet::new())
                .unwrap()
                .changes_addresses
        );

        let mut none = documented();
        none.upcoming_maintenance = None;
        assert!(maintenance_event(&none, &BTreeSet::new()).is_none());
    }

    #[test]
    fn project_ids_and_zones_are_checked() {
        assert!(is_project_id("my-project-123"));
        assert!(is_project_id("example.com:my-project"));
        assert!(!is_project_id("My Project"));
        assert!(!is_project_id(""));
        assert!(is_zone("europe-west1-b"));
        assert!(!is_zone("europe/west1"));
    }
}
