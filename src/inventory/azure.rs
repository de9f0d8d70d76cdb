//! `kind = "azure"`: the virtual machines of one subscription (or one resource group of it),
//! from Azure Resource Manager's list calls — the authoritative API, not Resource Graph's
//! index, which can lag behind it by minutes after an address changes.
//!
//! - Listing, every page following `nextLink`, the four at once:
//!   `Microsoft.Compute/virtualMachines` (the VMs' model: name, tags, network interfaces),
//!   the same with `statusOnly=true` (each VM's instance view: power state, planned
//!   maintenance; Resource Manager serves it only for a whole subscription),
//!   `Microsoft.Network/networkInterfaces` and `Microsoft.Network/publicIPAddresses`, of the
//!   resource group when `resource_group` is set. An interface or public address a VM uses
//!   that the listing did not hold (in another resource group) is read by its id. A page
//!   that fails or does not parse, or a reference that cannot be read, fails the listing:
//!   never a shorter inventory. Needs Microsoft.Compute/virtualMachines/read,
//!   Microsoft.Network/networkInterfaces/read and publicIPAddresses/read (the Reader role).
//! - `tags` filters VMs here: the Compute API has no tag filter to push it down to.
//! - Forewarning: a VM's `instanceView.maintenanceRedeployStatus` (planned maintenance that
//!   restarts it on an updated host) becomes a scheduled event. It changes addresses when the
//!   VM holds a public IP address allocated `Dynamic`, which Azure may give anew when the VM
//!   comes back; Static ones (every Standard-SKU address) are kept.
//!
//! Mapping to [`Instance`]: `properties.vmId` → id, `name` → name, `tags` → tags; the primary
//! network interface's primary IPv4 configuration: `privateIPAddress` → `private_ipv4`, its
//! public IP address's `ipAddress` → `public_ipv4`; its first IPv6 configuration's public
//! address (else its `privateIPAddress`) → `ipv6`. Power state `running` → running,
//! `starting` → pending, `stopping` and `deallocating` → stopping, `stopped` and
//! `deallocated` → stopped; provisioning state `Deleting` → terminated; anything else pending.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tokio::time::Instant;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::azure::{
    self, AuthKeys, AzureAuth, AzureCredentials, DEFAULT_ENDPOINT, arm_url, check_scope,
};
use crate::clients::http::{ApiClient, Call, HttpOptions};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::config::{Fragment, SecretAt};
use crate::forecast::ScheduledEvent;
use crate::model::{Instance, InstanceState};

pub const COMPUTE_API: &str = "2024-07-01";
pub const NETWORK_API: &str = "2024-05-01";

pub const KIND: SourceKind = SourceKind {
    name: "azure",
    check,
};

const NEEDS: &str = "the identity needs Microsoft.Compute/virtualMachines/read, Microsoft.Network/networkInterfaces/read and Microsoft.Network/publicIPAddresses/read, e.g. the Reader role on the subscription or resource group";

/// A `kind = "azure"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    pub subscription_id: String,
    /// Only this resource group's VMs (`resource_group`); `None`: the whole subscription.
    pub resource_group: Option<String>,
    /// Only VMs with every one of these tags (`tags`); tag names match in any case.
    pub tags: BTreeMap<String, String>,
    pub auth: AzureAuth,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzure {
    subscription_id: Option<Spanned<String>>,
    resource_group: Option<Spanned<String>>,
    tags: Option<Spanned<BTreeMap<String, String>>>,
    tenant_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    federated_token_file: Option<Spanned<String>>,
    authority: Option<Spanned<String>>,
    identity_endpoint: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawAzure = f.parse()?;
    let auth = azure::check_auth(
        f,
        &AuthKeys {
            tenant_id: raw.tenant_id.as_ref(),
            client_id: raw.client_id.as_ref(),
            client_secret_env: raw.client_secret_env.as_ref(),
            client_secret_file: raw.client_secret_file.as_ref(),
            federated_token_file: raw.federated_token_file.as_ref(),
            authority: raw.authority.as_ref(),
            identity_endpoint: raw.identity_endpoint.as_ref(),
        },
    );
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let (subscription, group) = check_scope(
        f,
        raw.subscription_id.as_ref(),
        raw.resource_group.as_ref(),
        false,
    );
    let tags = match &raw.tags {
        Some(tags) if tags.get_ref().is_empty() => {
            f.error_at(
                tags,
                "tags",
                "must name at least one tag, e.g. { role = \"web\" }; leave it out to list every VM",
            );
            None
        }
        Some(tags) => Some(tags.get_ref().clone()),
        None => Some(BTreeMap::new()),
    };
    Some(Arc::new(AzureConfig {
        subscription_id: subscription?,
        resource_group: group?,
        tags: tags?,
        auth: auth?,
        endpoint,
    }))
}

impl SourceSpec for AzureConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let options = HttpOptions::new(timeout);
        let credentials =
            AzureCredentials::new(&self.auth, &format!("inventory {name:?}"), options)?;
        Ok(Box::new(AzureInventory::new(
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

/// One page of any ARM list call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmPage<T> {
    value: Vec<T>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Reference {
    #[serde(default)]
    id: String,
}

/// A VM's model, the parts ipdrift reads.
#[derive(Debug, Clone, Deserialize)]
struct Vm {
    id: String,
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    properties: VmProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmProperties {
    #[serde(default)]
    vm_id: Option<String>,
    #[serde(default)]
    provisioning_state: Option<String>,
    #[serde(default)]
    network_profile: Option<NetworkProfile>,
    #[serde(default)]
    instance_view: Option<InstanceView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkProfile {
    #[serde(default)]
    network_interfaces: Vec<NicReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct NicReference {
    id: String,
    #[serde(default)]
    properties: Option<Primary>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Primary {
    #[serde(default)]
    primary: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceView {
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    maintenance_redeploy_status: Option<MaintenanceRedeployStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct Status {
    code: String,
}

/// `MaintenanceRedeployStatus` of a VM's instance view.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaintenanceRedeployStatus {
    #[serde(default)]
    is_customer_initiated_maintenance_allowed: Option<bool>,
    #[serde(default)]
    pre_maintenance_window_start_time: Option<String>,
    #[serde(default)]
    pre_maintenance_window_end_time: Option<String>,
    #[serde(default)]
    maintenance_window_start_time: Option<String>,
    #[serde(default)]
    maintenance_window_end_time: Option<String>,
    #[serde(default)]
    last_operation_result_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Nic {
    id: String,
    #[serde(default)]
    properties: NicProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NicProperties {
    #[serde(default)]
    ip_configurations: Vec<IpConfiguration>,
}

#[derive(Debug, Clone, Deserialize)]
struct IpConfiguration {
    #[serde(default)]
    properties: IpConfigurationProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpConfigurationProperties {
    #[serde(default, rename = "privateIPAddress")]
    private_ip_address: Option<IpAddr>,
    #[serde(default, rename = "privateIPAddressVersion")]
    private_ip_address_version: Option<String>,
    #[serde(default)]
    primary: Option<bool>,
    #[serde(default, rename = "publicIPAddress")]
    public_ip_address: Option<Reference>,
}

#[derive(Debug, Clone, Deserialize)]
struct PublicIp {
    id: String,
    #[serde(default)]
    properties: PublicIpProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicIpProperties {
    #[serde(default)]
    ip_address: Option<IpAddr>,
    #[serde(default, rename = "publicIPAllocationMethod")]
    allocation: Option<String>,
}

/// Everything one pass read, joined by lower-cased ARM id (ARM ids are case-insensitive,
/// and references often differ in case from the resource's own id).
#[derive(Debug, Clone, Default)]
struct Fleet {
    vms: Vec<Vm>,
    views: BTreeMap<String, InstanceView>,
    nics: BTreeMap<String, Nic>,
    ips: BTreeMap<String, PublicIp>,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn state(vm: &Vm, view: Option<&InstanceView>) -> InstanceState {
    if vm
        .properties
        .provisioning_state
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Deleting"))
    {
        return InstanceState::Terminated;
    }
    let power = view.and_then(|v| {
        v.statuses
            .iter()
            .find_map(|s| s.code.strip_prefix("PowerState/"))
    });
    match power {
        Some("running") => InstanceState::Running,
        Some("stopping" | "deallocating") => InstanceState::Stopping,
        Some("stopped" | "deallocated") => InstanceState::Stopped,
        _ => InstanceState::Pending,
    }
}

/// The addresses of a VM and its public IP resources, from the primary interface.
struct Addresses<'f> {
    public_ipv4: Option<(Ipv4Addr, &'f PublicIp)>,
    private_ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    public_ipv6: Option<&'f PublicIp>,
}

impl Fleet {
    fn primary_nic(&self, vm: &Vm) -> Option<&Nic> {
        let refs = &vm.properties.network_profile.as_ref()?.network_interfaces;
        let chosen = refs
            .iter()
            .find(|r| r.properties.as_ref().and_then(|p| p.primary) == Some(true))
            .or_else(|| refs.first())?;
        self.nics.get(&key(&chosen.id))
    }

    fn public(&self, config: &IpConfigurationProperties) -> Option<&PublicIp> {
        let id = &config.public_ip_address.as_ref()?.id;
        self.ips.get(&key(id))
    }

    fn addresses(&self, vm: &Vm) -> Addresses<'_> {
        let mut out = Addresses {
            public_ipv4: None,
            private_ipv4: None,
            ipv6: None,
            public_ipv6: None,
        };
        let Some(nic) = self.primary_nic(vm) else {
            return out;
        };
        let is_v6 = |c: &IpConfigurationProperties| {
            c.private_ip_address_version.as_deref() == Some("IPv6")
                || matches!(c.private_ip_address, Some(IpAddr::V6(_)))
        };
        let mut v4: Vec<&IpConfigurationProperties> = nic
            .properties
            .ip_configurations
            .iter()
            .map(|c| &c.properties)
            .filter(|c| !is_v6(c))
            .collect();
        // The primary configuration first.
        v4.sort_by_key(|c| c.primary != Some(true));
        if let Some(first) = v4.first() {
            out.private_ipv4 = match first.private_ip_address {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            out.public_ipv4 = self
                .public(first)
                .and_then(|ip| match ip.properties.ip_address {
                    Some(IpAddr::V4(a)) => Some((a, ip)),
                    _ => None,
                });
        }
        if let Some(v6) = nic
            .properties
            .ip_configurations
            .iter()
            .map(|c| &c.properties)
            .find(|c| is_v6(c))
        {
            let public = self
                .public(v6)
                .and_then(|ip| match ip.properties.ip_address {
                    Some(IpAddr::V6(a)) => Some((a, ip)),
                    _ => None,
                });
            out.public_ipv6 = public.map(|(_, ip)| ip);
            out.ipv6 = public.map(|(a, _)| a).or(match v6.private_ip_address {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            });
        }
        out
    }

    fn instance(&self, vm: &Vm) -> Instance {
        let addresses = self.addresses(vm);
        Instance {
            id: instance_id(vm),
            name: vm.name.clone(),
            state: state(vm, self.views.get(&key(&vm.id))),
            public_ipv4: addresses.public_ipv4.map(|(a, _)| a),
            private_ipv4: addresses.private_ipv4,
            ipv6: addresses.ipv6,
            tags: vm.tags.clone(),
        }
    }

    /// The VM's public addresses allocated `Dynamic`: those a restart on another host may
    /// change.
    fn dynamic_public(&self, vm: &Vm) -> Vec<IpAddr> {
        let addresses = self.addresses(vm);
        [
            addresses.public_ipv4.map(|(_, ip)| ip),
            addresses.public_ipv6,
        ]
        .into_iter()
        .flatten()
        .filter(|ip| {
            ip.properties
                .allocation
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("Dynamic"))
        })
        .filter_map(|ip| ip.properties.ip_address)
        .collect()
    }
}

fn instance_id(vm: &Vm) -> String {
    vm.properties
        .vm_id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| key(&vm.id))
}

fn unix(text: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// The scheduled event of a VM's planned maintenance; `None` without one, once it is
/// completed, or without a window.
fn maintenance_event(fleet: &Fleet, vm: &Vm) -> Option<ScheduledEvent> {
    let m = fleet
        .views
        .get(&key(&vm.id))?
        .maintenance_redeploy_status
        .as_ref()?;
    if m.last_operation_result_code.as_deref() == Some("MaintenanceCompleted") {
        return None;
    }
    let start = m
        .maintenance_window_start_time
        .as_deref()
        .or(m.pre_maintenance_window_start_time.as_deref())?;
    let not_before = unix(start)?;
    let mut description =
        String::from("Azure planned maintenance: the VM is restarted on an updated host");
    if let (Some(from), Some(to)) = (
        &m.pre_maintenance_window_start_time,
        &m.pre_maintenance_window_end_time,
    ) {
        description.push_str(&format!("; self-service window {from} to {to}"));
    }
    if let Some(from) = &m.maintenance_window_start_time {
        description.push_str(&format!("; Azure starts it from {from}"));
        if let Some(to) = &m.maintenance_window_end_time {
            description.push_str(&format!(" to {to}"));
        }
    }
    if m.is_customer_initiated_maintenance_allowed == Some(true) {
        description.push_str("; can be started now (az vm perform-maintenance)");
    }
    let dynamic = fleet.dynamic_public(vm);
    if dynamic.is_empty() {
        description.push_str("; its addresses are static and kept");
    } else {
        let shown: Vec<String> = dynamic.iter().map(IpAddr::to_string).collect();
        description.push_str(&format!(
            "; its dynamic public IP address {} may change",
            shown.join(", ")
        ));
    }
    Some(ScheduledEvent {
        instance_id: instance_id(vm),
        code: "planned-maintenance".into(),
        not_before,
        description,
        changes_addresses: !dynamic.is_empty(),
    })
}

/// One listing, handed to at most one [`Inventory::list`] and one
/// [`Inventory::scheduled_events`] call of a pass, so that the API is asked once per pass.
struct Shared {
    fleet: Arc<Result<Fleet, String>>,
    at: Instant,
    listed: bool,
    forecast: bool,
}

/// Lists the VMs of one subscription or resource group.
pub struct AzureInventory {
    name: String,
    config: AzureConfig,
    credentials: AzureCredentials,
    api: ApiClient,
    shared: Mutex<Option<Shared>>,
}

impl std::fmt::Debug for AzureInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureInventory")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl AzureInventory {
    pub fn new(
        name: String,
        config: AzureConfig,
        credentials: AzureCredentials,
        options: HttpOptions,
    ) -> anyhow::Result<AzureInventory> {
        let api = ApiClient::without_token(
            "Azure Resource Manager",
            format!("inventory {name:?}"),
            options,
        )?
        .checking(azure::CHECK);
        Ok(AzureInventory {
            name,
            config,
            credentials,
            api,
            shared: Mutex::new(None),
        })
    }

    /// `…/subscriptions/{s}[/resourceGroups/{rg}]/providers/{provider}/{kind}`.
    fn list_url(&self, provider_kind: [&str; 2], api: &str, whole_subscription: bool) -> Url {
        let mut segments = vec!["subscriptions", self.config.subscription_id.as_str()];
        if let (Some(group), false) = (&self.config.resource_group, whole_subscription) {
            segments.extend(["resourceGroups", group.as_str()]);
        }
        segments.push("providers");
        segments.extend(provider_kind);
        arm_url(&self.config.endpoint, &segments, api)
    }

    /// Every item of an ARM listing, page by page.
    async fn list_arm<T: DeserializeOwned>(
        &self,
        first: Url,
        noun: &str,
        id: fn(&T) -> &str,
    ) -> anyhow::Result<Vec<T>> {
        let endpoint = &self.config.endpoint;
        let read = |body: ArmPage<T>, _: &Url| -> Result<Page<(String, T)>, String> {
            let next = match body.next_link.filter(|l| !l.is_empty()) {
                Some(link) => Some(NextPage::Url(azure::next_link(endpoint, &link)?)),
                None => None,
            };
            Ok(Page {
                items: body.value.into_iter().map(|t| (key(id(&t)), t)).collect(),
                next,
                total: None,
            })
        };
        let listing = Listing {
            noun,
            next_field: "nextLink",
            narrow: Some("resource_group"),
            needs: NEEDS,
            id: |item: &(String, T)| item.0.as_str(),
        };
        Ok(self
            .api
            .list_pages(&listing, |_| first.clone(), read)
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    /// One resource by its ARM id.
    async fn get_by_id<T: DeserializeOwned>(&self, id: &str, api: &str) -> anyhow::Result<T> {
        let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
        let url = arm_url(&self.config.endpoint, &segments, api);
        self.api
            .get_json(&url, &Call::new(format!("read {id}"), NEEDS))
            .await
    }

    async fn list_raw(&self) -> anyhow::Result<Fleet> {
        self.credentials.authorize(&self.api).await?;
        let compute = ["Microsoft.Compute", "virtualMachines"];
        let mut status_url = self.list_url(compute, COMPUTE_API, true);
        status_url
            .query_pairs_mut()
            .append_pair("statusOnly", "true");
        let (vms, views, nics, ips) = tokio::try_join!(
            self.list_arm::<Vm>(
                self.list_url(compute, COMPUTE_API, false),
                "virtual machine",
                |v| &v.id
            ),
            self.list_arm::<Vm>(status_url, "virtual machine status", |v| &v.id),
            self.list_arm::<Nic>(
                self.list_url(
                    ["Microsoft.Network", "networkInterfaces"],
                    NETWORK_API,
                    false
                ),
                "network interface",
                |n| &n.id
            ),
            self.list_arm::<PublicIp>(
                self.list_url(
                    ["Microsoft.Network", "publicIPAddresses"],
                    NETWORK_API,
                    false
                ),
                "public IP address",
                |p| &p.id
            ),
        )?;
        let tags = &self.config.tags;
        let vms: Vec<Vm> = vms
            .into_iter()
            .filter(|vm| {
                tags.iter().all(|(k, v)| {
                    vm.tags
                        .iter()
                        .any(|(tk, tv)| tk.eq_ignore_ascii_case(k) && tv == v)
                })
            })
            .collect();
        let mut fleet = Fleet {
            views: views
                .into_iter()
                .filter_map(|vm| Some((key(&vm.id), vm.properties.instance_view?)))
                .collect(),
            nics: nics.into_iter().map(|n| (key(&n.id), n)).collect(),
            ips: ips.into_iter().map(|p| (key(&p.id), p)).collect(),
            vms,
        };
        // What a VM uses but the listings did not hold (another resource group, or made
        // between two listings) is read by id; one that cannot be read fails the listing.
        let wanted_nics: BTreeSet<String> = fleet
            .vms
            .iter()
            .filter_map(|vm| vm.properties.network_profile.as_ref())
            .flat_map(|p| p.network_interfaces.iter().map(|r| r.id.clone()))
            .filter(|id| !fleet.nics.contains_key(&key(id)))
            .collect();
        for id in wanted_nics {
            let nic: Nic = self.get_by_id(&id, NETWORK_API).await?;
            fleet.nics.insert(key(&id), nic);
        }
        let wanted_ips: BTreeSet<String> = fleet
            .nics
            .values()
            .flat_map(|n| n.properties.ip_configurations.iter())
            .filter_map(|c| c.properties.public_ip_address.as_ref())
            .map(|r| r.id.clone())
            .filter(|id| !id.is_empty() && !fleet.ips.contains_key(&key(id)))
            .collect();
        for id in wanted_ips {
            let ip: PublicIp = self.get_by_id(&id, NETWORK_API).await?;
            fleet.ips.insert(key(&id), ip);
        }
        let mut ids = BTreeSet::new();
        for vm in &fleet.vms {
            if !ids.insert(instance_id(vm)) {
                return Err(anyhow!(
                    "inventory {:?}: Azure listed VM {} twice; the listing changed while it was read (the next pass reads it again)",
                    self.name,
                    instance_id(vm)
                ));
            }
        }
        Ok(fleet)
    }

    /// This pass's listing: the one the other call of the pass made, or a fresh one.
    async fn fleet(&self, for_forecast: bool) -> anyhow::Result<Fleet> {
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
                let fleet = shared.fleet.clone();
                if shared.listed && shared.forecast {
                    *slot = None;
                }
                return fleet.as_ref().clone().map_err(|e| anyhow!("{e}"));
            }
        }
        let fleet = Arc::new(self.list_raw().await.map_err(|e| format!("{e:#}")));
        *slot = Some(Shared {
            fleet: fleet.clone(),
            at: Instant::now(),
            listed: !for_forecast,
            forecast: for_forecast,
        });
        fleet.as_ref().clone().map_err(|e| anyhow!("{e}"))
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let fleet = self.fleet(false).await?;
        Ok(fleet.vms.iter().map(|vm| fleet.instance(vm)).collect())
    }

    async fn events(&self) -> anyhow::Result<Vec<ScheduledEvent>> {
        let fleet = self.fleet(true).await?;
        Ok(fleet
            .vms
            .iter()
            .filter_map(|vm| maintenance_event(&fleet, vm))
            .collect())
    }
}

impl Inventory for AzureInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        // The token, the four listings at once, then references read by id.
        self.api.options().listing_limit().saturating_mul(3)
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

    const SUB: &str =
        "/subscriptions/8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b/resourceGroups/web-rg/providers";

    /// Shaped like the examples of `Virtual Machines - List`, `Network Interfaces - List`
    /// and `Public IP Addresses - List` in the REST reference.
    fn fleet(allocation: &str, maintenance: bool) -> Fleet {
        let vm: Vm = serde_json::from_value(serde_json::json!({
            "id": format!("{SUB}/Microsoft.Compute/virtualMachines/web-01"), "name": "web-01",
            "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
            "tags": {"role": "web"},
            "properties": {"vmId": "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1", "provisioningState": "Succeeded",
              "hardwareProfile": {"vmSize": "Standard_B1s"},
              "networkProfile": {"networkInterfaces": [
                {"id": format!("{SUB}/Microsoft.Network/networkInterfaces/web-01-nic"), "properties": {"primary": true}}]}}
        }))
        .unwrap();
        let mut view = serde_json::json!({"statuses": [
            {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
            {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}]});
        if maintenance {
            view["maintenanceRedeployStatus"] = serde_json::json!({
                "isCustomerInitiatedMaintenanceAllowed": true,
                "preMaintenanceWindowStartTime": "2030-01-08T08:00:00Z", "preMaintenanceWindowEndTime": "2030-01-14T08:00:00Z",
                "maintenanceWindowStartTime": "2030-01-15T08:00:00Z", "maintenanceWindowEndTime": "2030-01-20T08:00:00Z",
                "lastOperationResultCode": "None"});
        }
        let nic: Nic = serde_json::from_value(serde_json::json!({
            "id": format!("{SUB}/Microsoft.Network/networkInterfaces/web-01-nic"), "name": "web-01-nic",
            "properties": {"provisioningState": "Succeeded", "primary": true,
              "virtualMachine": {"id": format!("{SUB}/Microsoft.Compute/virtualMachines/web-01")},
              "ipConfigurations": [
                {"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.0.4", "privateIPAllocationMethod": "Dynamic", "privateIPAddressVersion": "IPv4", "primary": true,
                  "subnet": {"id": "x"}, "publicIPAddress": {"id": format!("{SUB}/Microsoft.Network/publicIPAddresses/WEB-01-IP")}}},
                {"name": "ipconfig6", "properties": {"privateIPAddress": "fd00::4", "privateIPAddressVersion": "IPv6", "primary": false}}]}
        }))
        .unwrap();
        let ip: PublicIp = serde_json::from_value(serde_json::json!({
            "id": format!("{SUB}/Microsoft.Network/publicIPAddresses/web-01-ip"), "name": "web-01-ip",
            "sku": {"name": "Basic", "tier": "Regional"},
            "properties": {"ipAddress": "20.61.1.2", "publicIPAddressVersion": "IPv4", "publicIPAllocationMethod": allocation, "idleTimeoutInMinutes": 4}
        }))
        .unwrap();
        Fleet {
            views: BTreeMap::from([(key(&vm.id), serde_json::from_value(view).unwrap())]),
            nics: BTreeMap::from([(key(&nic.id), nic)]),
            ips: BTreeMap::from([(key(&ip.id), ip)]),
            vms: vec![vm],
        }
    }

    #[test]
    fn the_documented_vm_maps_to_an_instance_across_id_case() {
        let f = fleet("Static", false);
        let i = f.instance(&f.vms[0]);
        assert_eq!(i.id, "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1");
        assert_eq!(i.name, "web-01");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(
            i.public_ipv4,
            Some("20.61.1.2".parse().unwrap()),
            "WEB-01-IP is web-01-ip"
        );
        assert_eq!(i.private_ipv4, Some("10.0.0.4".parse().unwrap()));
        assert_eq!(i.ipv6, Some("fd00::4".parse().unwrap()));
        assert_eq!(i.tags["role"], "web");
    }

    #[test]
    fn power_states_map_to_states() {
        let f = fleet("Static", false);
        let vm = &f.vms[0];
        for (code, want) in [
            ("PowerState/starting", InstanceState::Pending),
            ("PowerState/running", InstanceState::Running),
            ("PowerState/stopping", InstanceState::Stopping),
            ("PowerState/deallocating", InstanceState::Stopping),
            ("PowerState/stopped", InstanceState::Stopped),
            ("PowerState/deallocated", InstanceState::Stopped),
            ("PowerState/unknown", InstanceState::Pending),
        ] {
            let view = InstanceView {
                statuses: vec![Status { code: code.into() }],
                maintenance_redeploy_status: None,
            };
            assert_eq!(state(vm, Some(&view)), want, "{code}");
        }
        assert_eq!(state(vm, None), InstanceState::Pending);
        let mut deleting = vm.clone();
        deleting.properties.provisioning_state = Some("Deleting".into());
        assert_eq!(state(&deleting, None), InstanceState::Terminated);
    }

    #[test]
    fn planned_maintenance_changes_a_dynamic_public_address_only() {
        let f = fleet("Dynamic", true);
        let event = maintenance_event(&f, &f.vms[0]).unwrap();
        assert_eq!(event.code, "planned-maintenance");
        assert_eq!(event.not_before, 1_894_694_400);
        assert!(event.changes_addresses);
        assert!(
            event.description.contains("20.61.1.2")
                && event.description.contains("perform-maintenance"),
            "{}",
            event.description
        );
        let f = fleet("Static", true);
        assert!(!maintenance_event(&f, &f.vms[0]).unwrap().changes_addresses);
        let f = fleet("Dynamic", false);
        assert!(maintenance_event(&f, &f.vms[0]).is_none());
        let mut f = fleet("Dynamic", true);
        let view = f.views.values_mut().next().unwrap();
        view.maintenance_redeploy_status
            .as_mut()
            .unwrap()
            .last_operation_result_code = Some("MaintenanceCompleted".into());
        assert!(maintenance_event(&f, &f.vms[0]).is_none());
    }
}
