//! `kind = "azure_dns"`: an Azure DNS zone through Azure Resource Manager, API version
//! 2018-05-01 (<https://learn.microsoft.com/rest/api/dns/record-sets>).
//!
//! - Reading lists every record set of the zone (`Record Sets - List By Dns Zone`,
//!   `$top=1000`, the most a page may hold, following `nextLink`; needs
//!   Microsoft.Network/dnsZones/recordsets/read). A page that fails or does not parse fails
//!   the listing: never an empty zone. Ownership records are the TXT sets `_ipdrift.<name>`.
//! - Azure DNS has no batch call: every record set is its own resource, written atomically
//!   by one `PUT` (`Record Sets - Create Or Update`) or `DELETE`. A set that was read is
//!   written with `If-Match: <its etag>`, one that was not there with `If-None-Match: *`,
//!   so a change someone made since the read is answered 412 Precondition Failed and
//!   reported, never overwritten. A `PUT` sends the set's `metadata` back as it was read.
//! - An alias record set (`targetResource`) is reported and never overwritten.
//! - Before the first write, the whole batch is checked (names in the zone, no alias,
//!   ownership texts as expected); a write that fails stops the batch, and the error says how
//!   many went before it. The next pass reads the zone afresh.
//!
//! Errors name the target, the zone, the call and the role it needs (DNS Zone Contributor).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use reqwest::header::{IF_MATCH, IF_NONE_MATCH};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::azure::{
    self, AuthKeys, AzureAuth, AzureCredentials, DEFAULT_ENDPOINT, arm_url, check_scope,
};
use crate::clients::http::{ApiClient, Call, HttpOptions};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::config::{Fragment, SecretAt};
use crate::dns::http_api::{self, ListedSet, unquote_txt};
use crate::dns::{DnsTarget, RecordChange, TargetKind, TargetSpec, ZoneContents, ownership_name};
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};

pub const API_VERSION: &str = "2018-05-01";
/// The most record sets one page may hold (`$top` is 1–1000).
const TOP: u32 = 1000;

const NEEDS_READ: &str = "the identity needs Microsoft.Network/dnsZones/recordsets/read on the zone, e.g. the DNS Zone Contributor role (Reader is enough to read)";
const NEEDS_WRITE: &str = "the identity needs write and delete on the zone's A, AAAA and TXT record sets: the DNS Zone Contributor role on the zone";

pub const KIND: TargetKind = TargetKind {
    name: "azure_dns",
    check,
};

/// A `kind = "azure_dns"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDnsConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub auth: AzureAuth,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzureDns {
    subscription_id: Option<Spanned<String>>,
    resource_group: Option<Spanned<String>>,
    tenant_id: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    federated_token_file: Option<Spanned<String>>,
    authority: Option<Spanned<String>>,
    identity_endpoint: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawAzureDns = f.parse()?;
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
        true,
    );
    Some(Arc::new(AzureDnsConfig {
        subscription_id: subscription?,
        resource_group: group.flatten()?,
        auth: auth?,
        endpoint,
    }))
}

impl TargetSpec for AzureDnsConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let options = HttpOptions::new(timeout);
        let credentials =
            AzureCredentials::new(&self.auth, &format!("dns target {name:?}"), options)?;
        Ok(Box::new(AzureDnsTarget::new(
            name.to_string(),
            zone.clone(),
            self.clone(),
            credentials,
            options,
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        self.auth.secrets()
    }
}

/// A record set as Azure DNS lists it (`RecordSet`), the parts ipdrift reads.
#[derive(Debug, Clone, Deserialize)]
struct AzureRecordSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    properties: Properties,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Properties {
    #[serde(rename = "TTL", default)]
    ttl: Option<u32>,
    #[serde(default)]
    fqdn: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "targetResource", default)]
    target_resource: Option<SubResource>,
    #[serde(rename = "ARecords", default)]
    a_records: Vec<ARecord>,
    #[serde(rename = "AAAARecords", default)]
    aaaa_records: Vec<AaaaRecord>,
    #[serde(rename = "TXTRecords", default)]
    txt_records: Vec<TxtRecord>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SubResource {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ARecord {
    ipv4_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AaaaRecord {
    ipv6_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TxtRecord {
    #[serde(default)]
    value: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordSetPage {
    value: Vec<AzureRecordSet>,
    #[serde(default)]
    next_link: Option<String>,
}

/// One listed record set: its neutral form, and what a write must send back.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    set: ListedSet,
    etag: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The body of a `PUT`.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct PutBody {
    properties: PutProperties,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct PutProperties {
    #[serde(rename = "TTL")]
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "ARecords", skip_serializing_if = "Option::is_none")]
    a_records: Option<Vec<ARecord>>,
    #[serde(rename = "AAAARecords", skip_serializing_if = "Option::is_none")]
    aaaa_records: Option<Vec<AaaaRecord>>,
    #[serde(rename = "TXTRecords", skip_serializing_if = "Option::is_none")]
    txt_records: Option<Vec<TxtRecord>>,
}

/// The condition a write is sent under.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `If-Match: <etag>`: the set as it was read.
    Matches(String),
    /// `If-None-Match: *`: the set must not exist.
    Absent,
}

/// One call of a batch.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Put {
        rtype: &'static str,
        relative: String,
        body: PutBody,
        condition: Condition,
    },
    Delete {
        rtype: &'static str,
        relative: String,
        etag: String,
    },
}

impl Write {
    fn describe(&self) -> String {
        match self {
            Write::Put {
                rtype, relative, ..
            } => format!("PUT {rtype} record set {relative}"),
            Write::Delete {
                rtype, relative, ..
            } => format!("DELETE {rtype} record set {relative}"),
        }
    }
}

/// The record type's word from `Microsoft.Network/dnszones/A`.
fn type_of(arm_type: &str) -> &str {
    arm_type.rsplit('/').next().unwrap_or(arm_type)
}

/// A listed set's fully-qualified name: its `fqdn`, else its relative name in `zone`.
fn fqdn(set: &AzureRecordSet, zone: &DnsName) -> String {
    match &set.properties.fqdn {
        Some(fqdn) if !fqdn.is_empty() => fqdn.clone(),
        _ if set.name == "@" => zone.as_str().to_string(),
        _ => format!("{}.{}", set.name, zone.as_str()),
    }
}

fn listed(set: AzureRecordSet, zone: &DnsName) -> Listed {
    let rtype = type_of(&set.rtype).to_ascii_uppercase();
    let props = &set.properties;
    let values = match rtype.as_str() {
        "A" => props
            .a_records
            .iter()
            .map(|r| r.ipv4_address.clone())
            .collect(),
        "AAAA" => props
            .aaaa_records
            .iter()
            .map(|r| r.ipv6_address.clone())
            .collect(),
        // Each TXT record's strings make one text.
        "TXT" => props.txt_records.iter().map(|r| r.value.concat()).collect(),
        _ => Vec::new(),
    };
    let special = props
        .target_resource
        .as_ref()
        .and_then(|t| t.id.as_deref())
        .filter(|id| !id.is_empty())
        .map(|id| format!("is an alias record set (targetResource {id})"));
    Listed {
        set: ListedSet {
            name: fqdn(&set, zone),
            rtype,
            ttl: props.ttl.unwrap_or(0),
            values,
            special,
        },
        etag: set.etag.clone(),
        metadata: props.metadata.clone(),
    }
}

/// `name` relative to `zone`, as Azure DNS names record sets: `@` for the apex.
fn relative(name: &DnsName, zone: &DnsName) -> String {
    let name = name.as_str().trim_end_matches('.');
    let zone = zone.as_str().trim_end_matches('.');
    if name == zone {
        "@".into()
    } else {
        name.strip_suffix(&format!(".{zone}"))
            .unwrap_or(name)
            .to_string()
    }
}

fn find<'l>(listing: &'l [Listed], name: &DnsName, rtype: &str) -> Option<&'l Listed> {
    listing
        .iter()
        .find(|l| l.set.rtype == rtype && http_api::same_name(&l.set.name, name))
}

fn address_body(
    set: &RecordSet,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
) -> PutBody {
    let (a, aaaa) = match set.key.rtype {
        RecordType::A => (
            Some(
                set.addrs
                    .iter()
                    .map(|a| ARecord {
                        ipv4_address: a.to_string(),
                    })
                    .collect(),
            ),
            None,
        ),
        RecordType::Aaaa => (
            None,
            Some(
                set.addrs
                    .iter()
                    .map(|a| AaaaRecord {
                        ipv6_address: a.to_string(),
                    })
                    .collect(),
            ),
        ),
    };
    PutBody {
        properties: PutProperties {
            ttl: set.ttl,
            metadata,
            a_records: a,
            aaaa_records: aaaa,
            txt_records: None,
        },
    }
}

/// The calls for `changes`, given the zone as last listed, in the order they are sent:
/// the address sets, then ownership records created, then ownership records deleted.
/// Everything that would refuse the batch is found here, before anything is written.
fn plan_writes(
    changes: &[RecordChange],
    zone: &DnsName,
    listing: &[Listed],
) -> Result<Vec<Write>, String> {
    http_api::check_batch(changes, zone)?;
    let mut writes = Vec::new();
    for change in changes {
        let key = change.key();
        let rtype = key.rtype.as_str();
        let stored = find(listing, &key.name, rtype);
        if let Some(why) = stored.and_then(|s| s.set.special.as_ref()) {
            return Err(format!(
                "{key} {why}, which ipdrift does not overwrite; remove the rule or change the record by hand"
            ));
        }
        let rel = relative(&key.name, zone);
        match change {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => {
                let condition = match stored {
                    Some(Listed {
                        etag: Some(etag), ..
                    }) => Condition::Matches(etag.clone()),
                    Some(_) => {
                        return Err(format!(
                            "{key} was listed without an etag, so a concurrent change could not be detected; not written"
                        ));
                    }
                    None => Condition::Absent,
                };
                writes.push(Write::Put {
                    rtype,
                    relative: rel,
                    body: address_body(to, stored.and_then(|s| s.metadata.clone())),
                    condition,
                });
            }
            RecordChange::Delete { .. } => {
                // Gone already: nothing to delete.
                let Some(stored) = stored else { continue };
                let etag = stored
                    .etag
                    .clone()
                    .ok_or_else(|| format!("{key} was listed without an etag; not deleted"))?;
                writes.push(Write::Delete {
                    rtype,
                    relative: rel,
                    etag,
                });
            }
        }
    }
    let (created, disowned) = http_api::ownership_changes(changes);
    for (name, (owner, ttl)) in &created {
        let ownership = ownership_name(name);
        match find(listing, &ownership, "TXT") {
            // Owned already (another type at the name): kept as it is.
            Some(set) if set.set.values.iter().any(|v| unquote_txt(v) == *owner) => {}
            Some(other) => {
                return Err(format!(
                    "not creating records at {name}: {ownership} holds {:?}, not this controller's ownership text",
                    other.set.values
                ));
            }
            None => writes.push(Write::Put {
                rtype: "TXT",
                relative: relative(&ownership, zone),
                body: PutBody {
                    properties: PutProperties {
                        ttl: *ttl,
                        metadata: None,
                        a_records: None,
                        aaaa_records: None,
                        txt_records: Some(vec![TxtRecord {
                            value: vec![owner.clone()],
                        }]),
                    },
                },
                condition: Condition::Absent,
            }),
        }
    }
    for name in &disowned {
        // The name keeps its ownership record while ipdrift keeps another set there.
        let others_left = ["A", "AAAA"].iter().any(|rtype| {
            find(listing, name, rtype).is_some()
                && !changes.iter().any(|c| {
                    matches!(c, RecordChange::Delete { .. })
                        && &c.key().name == name
                        && c.key().rtype.as_str() == *rtype
                })
        });
        if others_left {
            continue;
        }
        let ownership = ownership_name(name);
        let set = find(listing, &ownership, "TXT").ok_or_else(|| {
            format!("not deleting {name}: its ownership record {ownership} is gone since it was read, so ipdrift may no longer own it")
        })?;
        let etag = set
            .etag
            .clone()
            .ok_or_else(|| format!("{ownership} was listed without an etag; not deleted"))?;
        writes.push(Write::Delete {
            rtype: "TXT",
            relative: relative(&ownership, zone),
            etag,
        });
    }
    Ok(writes)
}

/// One Azure DNS zone.
pub struct AzureDnsTarget {
    name: String,
    zone: DnsName,
    config: AzureDnsConfig,
    credentials: AzureCredentials,
    api: ApiClient,
    /// The last listing, for the etags the writes are conditional on.
    last_listing: Mutex<Option<Vec<Listed>>>,
}

impl std::fmt::Debug for AzureDnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDnsTarget")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl AzureDnsTarget {
    pub fn new(
        name: String,
        zone: DnsName,
        config: AzureDnsConfig,
        credentials: AzureCredentials,
        options: HttpOptions,
    ) -> anyhow::Result<AzureDnsTarget> {
        let who = who(&name, &zone, &config);
        let api = ApiClient::without_token("Azure DNS", who, options)?.checking(azure::CHECK);
        Ok(AzureDnsTarget {
            name,
            zone,
            config,
            credentials,
            api,
            last_listing: Mutex::new(None),
        })
    }

    fn zone_url(&self, rest: &[&str]) -> Url {
        let zone = self.zone.as_str().trim_end_matches('.');
        let mut segments = vec![
            "subscriptions",
            self.config.subscription_id.as_str(),
            "resourceGroups",
            self.config.resource_group.as_str(),
            "providers",
            "Microsoft.Network",
            "dnsZones",
            zone,
        ];
        segments.extend_from_slice(rest);
        arm_url(&self.config.endpoint, &segments, API_VERSION)
    }

    /// Every record set of the zone, page by page.
    async fn list_zone(&self) -> anyhow::Result<Vec<Listed>> {
        self.credentials.authorize(&self.api).await?;
        let mut first = self.zone_url(&["recordsets"]);
        first
            .query_pairs_mut()
            .append_pair("$top", &TOP.to_string());
        let endpoint = &self.config.endpoint;
        let zone = &self.zone;
        let read = |body: RecordSetPage, _: &Url| -> Result<Page<(String, Listed)>, String> {
            let next = match body.next_link.filter(|l| !l.is_empty()) {
                Some(link) => Some(NextPage::Url(azure::next_link(endpoint, &link)?)),
                None => None,
            };
            Ok(Page {
                items: body
                    .value
                    .into_iter()
                    .map(|s| {
                        let l = listed(s, zone);
                        (
                            format!("{} {}", l.set.name.to_ascii_lowercase(), l.set.rtype),
                            l,
                        )
                    })
                    .collect(),
                next,
                total: None,
            })
        };
        let listing = Listing {
            noun: "record set",
            next_field: "nextLink",
            narrow: None,
            needs: NEEDS_READ,
            id: |item: &(String, Listed)| item.0.as_str(),
        };
        let sets: Vec<Listed> = self
            .api
            .list_pages(&listing, |_| first.clone(), read)
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        *self
            .last_listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sets.clone());
        Ok(sets)
    }

    fn plain(listing: &[Listed]) -> Vec<ListedSet> {
        listing.iter().map(|l| l.set.clone()).collect()
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.list_zone().await?;
        http_api::pick_rrsets(&Self::plain(&listing), keys)
            .map_err(|why| anyhow!("{}: {why}", self.api_owner()))
    }

    async fn listing(&self) -> anyhow::Result<ZoneContents> {
        let listing = self.list_zone().await?;
        Ok(http_api::zone_contents(&Self::plain(&listing)))
    }

    fn api_owner(&self) -> String {
        who(&self.name, &self.zone, &self.config)
    }

    async fn send(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let known = self
            .last_listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let listing = match known {
            Some(listing) => listing,
            None => self.list_zone().await?,
        };
        let writes = plan_writes(changes, &self.zone, &listing)
            .map_err(|why| anyhow!("{}: {why}", self.api_owner()))?;
        self.credentials.authorize(&self.api).await?;
        for (done, write) in writes.iter().enumerate() {
            let result = match write {
                Write::Put {
                    rtype,
                    relative,
                    body,
                    condition,
                } => {
                    let call = match condition {
                        Condition::Matches(etag) => {
                            Call::new(write.describe(), NEEDS_WRITE).header(IF_MATCH, etag)
                        }
                        Condition::Absent => {
                            Call::new(write.describe(), NEEDS_WRITE).header(IF_NONE_MATCH, "*")
                        }
                    };
                    self.api
                        .put_json::<_, IgnoredAny>(&self.zone_url(&[rtype, relative]), body, &call)
                        .await
                        .map(|_| ())
                }
                Write::Delete {
                    rtype,
                    relative,
                    etag,
                } => {
                    let call = Call::new(write.describe(), NEEDS_WRITE).header(IF_MATCH, etag);
                    self.api
                        .delete::<IgnoredAny>(&self.zone_url(&[rtype, relative]), &call)
                        .await
                        .map(|_| ())
                }
            };
            if let Err(e) = result {
                return Err(if done == 0 {
                    e
                } else {
                    anyhow!(
                        "{e:#} ({done} of {} writes were made before it; the next pass reads the zone again)",
                        writes.len()
                    )
                });
            }
        }
        Ok(())
    }
}

fn who(name: &str, zone: &DnsName, config: &AzureDnsConfig) -> String {
    format!(
        "dns target {name:?} (Azure DNS zone {zone} in resource group {})",
        config.resource_group
    )
}

impl DnsTarget for AzureDnsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn zone(&self) -> &DnsName {
        &self.zone
    }

    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>> {
        Box::pin(self.read_rrsets(keys))
    }

    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>> {
        Box::pin(async move { Ok(self.listing().await?.ownership) })
    }

    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(self.listing())
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(changes))
    }

    /// One call per record set: a batch takes as many calls as it changes sets.
    fn write_time_limit(&self, default: Duration) -> Duration {
        default * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    fn set(text: &str, rtype: RecordType, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: name(text),
                rtype,
            },
            ttl: 300,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// A page shaped like the example of `Record Sets - List By Dns Zone`.
    const PAGE: &str = r#"{
      "value": [
        {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/SOA/@",
         "name": "@", "type": "Microsoft.Network/dnsZones/SOA", "etag": "00000000-0000-0000-0000-000000000001",
         "properties": {"TTL": 3600, "fqdn": "example.com.", "provisioningState": "Succeeded",
           "SOARecord": {"host": "ns1-01.azure-dns.com.", "email": "azuredns-hostmaster.microsoft.com", "serialNumber": 1, "refreshTime": 3600, "retryTime": 300, "expireTime": 2419200, "minimumTTL": 300}}},
        {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/A/www",
         "name": "www", "type": "Microsoft.Network/dnsZones/A", "etag": "etag-www",
         "properties": {"metadata": {"owner": "web-team"}, "TTL": 300, "fqdn": "www.example.com.", "provisioningState": "Succeeded",
           "ARecords": [{"ipv4Address": "192.0.2.2"}, {"ipv4Address": "192.0.2.1"}]}},
        {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/A/cdn",
         "name": "cdn", "type": "Microsoft.Network/dnsZones/A", "etag": "etag-cdn",
         "properties": {"TTL": 3600, "fqdn": "cdn.example.com.", "provisioningState": "Succeeded",
           "targetResource": {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/publicIPAddresses/pip"}, "ARecords": []}},
        {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/TXT/_ipdrift.web-01",
         "name": "_ipdrift.web-01", "type": "Microsoft.Network/dnsZones/TXT", "etag": "etag-own",
         "properties": {"TTL": 300, "fqdn": "_ipdrift.web-01.example.com.", "TXTRecords": [{"value": ["heritage=ipdrift,owner=ipdrift"]}]}},
        {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/AAAA/web-01",
         "name": "web-01", "type": "Microsoft.Network/dnsZones/AAAA", "etag": "etag-w6",
         "properties": {"TTL": 60, "AAAARecords": [{"ipv6Address": "2001:db8::1"}]}}
      ],
      "nextLink": "https://management.azure.com/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com/recordsets?api-version=2018-05-01&$top=1000&$skipToken=abc"
    }"#;

    fn listing() -> Vec<Listed> {
        let page: RecordSetPage = serde_json::from_str(PAGE).unwrap();
        assert!(page.next_link.is_some());
        page.value
            .into_iter()
            .map(|s| listed(s, &name("example.com.")))
            .collect()
    }

    #[test]
    fn a_documented_page_reads_as_record_sets_aliases_and_ownership() {
        let listing = listing();
        let plain = AzureDnsTarget::plain(&listing);
        let www = set("www.example.com.", RecordType::A, &[]).key;
        assert_eq!(
            http_api::pick_rrsets(&plain, std::slice::from_ref(&www)).unwrap(),
            vec![set(
                "www.example.com.",
                RecordType::A,
                &["192.0.2.1", "192.0.2.2"]
            )]
        );
        let cdn = set("cdn.example.com.", RecordType::A, &[]).key;
        let e = http_api::pick_rrsets(&plain, &[cdn]).unwrap_err();
        assert!(e.contains("alias record set"), "{e}");
        let contents = http_api::zone_contents(&plain);
        assert_eq!(
            contents.ownership[&name("web-01.example.com.")],
            "heritage=ipdrift,owner=ipdrift"
        );
        // No fqdn: the relative name in the zone.
        assert_eq!(listing[4].set.name, "web-01.example.com.");
        assert_eq!(relative(&name("example.com."), &name("example.com.")), "@");
        assert_eq!(
            relative(&name("_ipdrift.web-01.example.com."), &name("example.com.")),
            "_ipdrift.web-01"
        );
    }

    #[test]
    fn writes_are_conditional_on_the_etag_read_and_keep_metadata() {
        let zone = name("example.com.");
        let owner = "heritage=ipdrift,owner=ipdrift".to_string();
        let changes = vec![
            RecordChange::Replace {
                from: Some(set(
                    "www.example.com.",
                    RecordType::A,
                    &["192.0.2.1", "192.0.2.2"],
                )),
                to: set("www.example.com.", RecordType::A, &["192.0.2.8"]),
            },
            RecordChange::Create {
                to: set("web-03.example.com.", RecordType::A, &["198.51.100.3"]),
                owner: owner.clone(),
                proxied: None,
            },
            RecordChange::Delete {
                from: set("web-01.example.com.", RecordType::Aaaa, &["2001:db8::1"]),
            },
        ];
        let writes = plan_writes(&changes, &zone, &listing()).unwrap();
        let shown: Vec<String> = writes
            .iter()
            .map(|w| match w {
                Write::Put { condition, .. } => format!("{} {condition:?}", w.describe()),
                Write::Delete { etag, .. } => format!("{} {etag}", w.describe()),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "PUT A record set www Matches(\"etag-www\")",
                "PUT A record set web-03 Absent",
                "DELETE AAAA record set web-01 etag-w6",
                "PUT TXT record set _ipdrift.web-03 Absent",
                "DELETE TXT record set _ipdrift.web-01 etag-own",
            ]
        );
        let Write::Put { body, .. } = &writes[0] else {
            panic!()
        };
        let json = serde_json::to_value(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"properties": {"TTL": 300, "metadata": {"owner": "web-team"},
                               "ARecords": [{"ipv4Address": "192.0.2.8"}]}})
        );
    }

    #[test]
    fn aliases_foreign_ownership_and_vanished_ownership_refuse_the_whole_batch() {
        let zone = name("example.com.");
        let alias = RecordChange::Replace {
            from: None,
            to: set("cdn.example.com.", RecordType::A, &["192.0.2.1"]),
        };
        assert!(
            plan_writes(&[alias], &zone, &listing())
                .unwrap_err()
                .contains("alias")
        );
        let foreign = RecordChange::Create {
            to: set("web-01.example.com.", RecordType::A, &["192.0.2.1"]),
            owner: "heritage=ipdrift,owner=other".into(),
            proxied: None,
        };
        assert!(
            plan_writes(&[foreign], &zone, &listing())
                .unwrap_err()
                .contains("not this controller's")
        );
        let mut without_ownership = listing();
        without_ownership.retain(|l| l.set.rtype != "TXT");
        let delete = RecordChange::Delete {
            from: set("web-01.example.com.", RecordType::Aaaa, &["2001:db8::1"]),
        };
        assert!(
            plan_writes(&[delete], &zone, &without_ownership)
                .unwrap_err()
                .contains("ownership record")
        );
    }
}
