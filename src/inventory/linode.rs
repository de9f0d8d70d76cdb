//! `kind = "linode"`: Linodes from the Linode (Akamai Cloud) API v4,
//! `GET /v4/linode/instances?page_size=500[&page=N]`, with `X-Filter: {"tags": T}` when a
//! `tag` is configured, following `page` up to `pages`.
//!
//! Mapping to [`Instance`]: `id` → id (as text), `label` → name. `ipv4` lists public and
//! private addresses together: the first address in a private range (RFC 1918, which holds
//! Linode's private 192.168.128.0/17) → `private_ipv4`, the first other one →
//! `public_ipv4`. `ipv6` is the SLAAC address with its prefix (`2600:3c03::1/128`) → `ipv6`
//! (`null` without IPv6). Tags are plain strings: `"key:value"` → tag `key` = `value`, a bare
//! `"web"` → `web` = `""` (the alphabetically first value of a key counts). `status`
//! `running` → running; `offline`, `stopped`, `billing_suspension` → stopped;
//! `shutting_down` → stopping; `deleting` → terminated; `booting`, `rebooting`,
//! `provisioning`, `migrating`, `rebuilding`, `cloning`, `restoring`, `resizing` (and
//! anything new) → pending.
//!
//! Forewarning: `GET /v4/account/maintenance` (every page) lists the maintenance Akamai
//! announced for the account's Linodes. Each pending, scheduled or started one of entity
//! type `linode` becomes a scheduled event. A cold migration may move the Linode to another
//! region (the only move that changes its addresses, e.g. when a data center is retired),
//! and the maintenance object does not say where it goes: it is forecast as changing
//! addresses. Reboots, power off/on, live and warm migrations keep every address.
//!
//! A page that fails after its retries, a malformed page, a rejected token or pages that do
//! not add up to `results` is an error for the pass, never a shorter list.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderName;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::http::{ApiClient, HttpOptions, api_url};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::clients::token::Token;
use crate::config::secret_keys::API_TOKEN;
use crate::config::{Fragment, SecretAt};
use crate::forecast::ScheduledEvent;
use crate::model::{Instance, InstanceState};

/// The API's base URL unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://api.linode.com";

pub const KIND: SourceKind = SourceKind {
    name: "linode",
    check,
};

/// The most items the API returns per page.
const PAGE_SIZE: u32 = 500;

/// What a refused listing is told it needs.
const NEEDS_LINODES: &str = "the token needs the Linodes: Read Only scope (linodes:read_only)";
const NEEDS_MAINTENANCE: &str =
    "the token needs the Account: Read Only scope (account:read_only) for the maintenance list";

/// A `kind = "linode"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinodeConfig {
    /// `token_env` or `token_file`; read by [`Token::load`] when the source is built.
    pub token: SecretAt,
    /// Only Linodes with this tag (`tag`, sent in `X-Filter`).
    pub tag: Option<String>,
    /// The API's base URL (`endpoint`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinode {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawLinode = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let tag = raw.tag.map(|tag| {
        let text = tag.get_ref();
        // Linode's tags are 3–50 characters.
        if !(3..=50).contains(&text.chars().count()) || text.chars().any(char::is_control) {
            f.error_at(
                &tag,
                "tag",
                format!("{text:?} is not a Linode tag: use 3–50 characters, e.g. \"role:web\""),
            );
        }
        tag.into_inner()
    });
    Some(Arc::new(LinodeConfig {
        token: token?,
        tag,
        endpoint,
    }))
}

impl SourceSpec for LinodeConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let token = Token::load(&self.token.secret)
            .map_err(|e| anyhow::anyhow!("inventory {name:?}.{e}"))?;
        Ok(Box::new(LinodeInventory::new(
            name.to_string(),
            &self.endpoint,
            token,
            self.tag.clone(),
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.token.clone()]
    }
}

/// One page of a Linode API listing: `{"data": […], "page": 1, "pages": 3, "results": 1200}`.
#[derive(Debug, Deserialize)]
struct ListPage<T> {
    data: Vec<T>,
    page: u32,
    pages: u32,
    results: u64,
}

impl<T> ListPage<T> {
    fn into_page<U>(self, map: impl FnMut(T) -> Result<U, String>) -> Result<Page<U>, String> {
        Ok(Page {
            items: self.data.into_iter().map(map).collect::<Result<_, _>>()?,
            next: (self.page < self.pages).then(|| NextPage::Number(self.page + 1)),
            total: Some(self.results),
        })
    }
}

#[derive(Debug, Deserialize)]
struct Linode {
    id: u64,
    label: String,
    status: String,
    #[serde(default)]
    ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// One entry of `GET /v4/account/maintenance`.
#[derive(Debug, Deserialize)]
struct Maintenance {
    entity: Entity,
    #[serde(default)]
    status: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    start_time: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Entity {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: String,
}

fn state(status: &str) -> InstanceState {
    match status {
        "running" => InstanceState::Running,
        "offline" | "stopped" | "billing_suspension" => InstanceState::Stopped,
        "shutting_down" => InstanceState::Stopping,
        "deleting" => InstanceState::Terminated,
        // booting, rebooting, provisioning, migrating, rebuilding, cloning, restoring,
        // resizing, and anything Linode adds later: not running, not gone.
        _ => InstanceState::Pending,
    }
}

/// `["env:prod", "web"]` → `{env: prod, web: ""}`; of two values for a key the
/// alphabetically first counts, so the result does not depend on the API's order.
fn tags(list: &[String]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&String> = list.iter().collect();
    sorted.sort();
    let mut tags = BTreeMap::new();
    for tag in sorted {
        let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
        tags.entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
    tags
}

fn instance(linode: Linode) -> Result<Instance, String> {
    let ipv6 = match linode.ipv6.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let addr = text.split_once('/').map_or(text, |(addr, _)| addr);
            Some(addr.parse::<Ipv6Addr>().map_err(|_| {
                format!(
                    "Linode {} has ipv6 {text:?}, not an IPv6 address",
                    linode.id
                )
            })?)
        }
    };
    Ok(Instance {
        id: linode.id.to_string(),
        state: state(&linode.status),
        public_ipv4: linode.ipv4.iter().copied().find(|a| !a.is_private()),
        private_ipv4: linode.ipv4.iter().copied().find(Ipv4Addr::is_private),
        ipv6,
        tags: tags(&linode.tags),
        name: linode.label,
    })
}

/// A time as the API writes it: `2020-07-09T00:01:01` (UTC, no offset), or RFC 3339.
fn unix(text: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// The scheduled event of an announced maintenance; `None` for one that is over, that is
/// not for a Linode, or that has no time.
fn maintenance_event(m: &Maintenance) -> Result<Option<ScheduledEvent>, String> {
    if m.entity.kind != "linode"
        || matches!(m.status.as_str(), "completed" | "canceled" | "cancelled")
    {
        return Ok(None);
    }
    let id = match &m.entity.id {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => return Err("a maintenance for a Linode has no entity.id".into()),
    };
    let Some(at) = [&m.not_before, &m.start_time, &m.when]
        .into_iter()
        .flatten()
        .find_map(|t| unix(t))
    else {
        return Ok(None);
    };
    let kind = if m.kind.is_empty() {
        "maintenance"
    } else {
        &m.kind
    };
    let changes_addresses = kind == "cold_migration";
    let mut description = format!("{} ({})", kind.replace('_', " "), m.status);
    if let Some(reason) = m.reason.as_deref().filter(|r| !r.is_empty()) {
        description.push_str(": ");
        description.push_str(reason);
    }
    if changes_addresses {
        description.push_str(
            "; a cold migration to another region gives the Linode new addresses (the API does not say whether it leaves the region)",
        );
    }
    Ok(Some(ScheduledEvent {
        instance_id: id,
        code: kind.replace('_', "-"),
        not_before: at,
        description,
        changes_addresses,
    }))
}

/// Lists Linodes, optionally only those with one tag.
pub struct LinodeInventory {
    name: String,
    api: ApiClient,
    instances: Url,
    maintenance: Url,
    tag: Option<String>,
}

impl fmt::Debug for LinodeInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinodeInventory")
            .field("name", &self.name)
            .field("instances", &self.instances.as_str())
            .field("tag", &self.tag)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `base?page_size=500[&page=N]`.
fn page_url(base: &Url, page: u32) -> Url {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("page_size", &PAGE_SIZE.to_string());
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
    }
    url
}

impl LinodeInventory {
    /// `endpoint` is the API's base URL ([`DEFAULT_ENDPOINT`]); `tag` is sent in `X-Filter`.
    pub fn new(
        name: String,
        endpoint: &Url,
        token: Token,
        tag: Option<String>,
        options: HttpOptions,
    ) -> anyhow::Result<LinodeInventory> {
        Ok(LinodeInventory {
            api: ApiClient::new("Linode", format!("inventory {name:?}"), token, options)?,
            instances: api_url(endpoint, &["v4", "linode", "instances"]),
            maintenance: api_url(endpoint, &["v4", "account", "maintenance"]),
            name,
            tag,
        })
    }

    /// `{"tags": "role:web"}`: Linodes that carry the tag.
    fn filter(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| serde_json::json!({ "tags": tag }).to_string())
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let listing = Listing {
            noun: "Linode",
            next_field: "page/pages",
            narrow: Some("tag"),
            needs: NEEDS_LINODES,
            id: |i: &Instance| i.id.as_str(),
        };
        let filter = self.filter();
        let header = filter
            .as_deref()
            .map(|f| (HeaderName::from_static("x-filter"), f));
        self.api
            .list_pages_with(
                &listing,
                header,
                |page| page_url(&self.instances, page),
                |body: ListPage<Linode>, _: &Url| body.into_page(instance),
            )
            .await
    }

    async fn events(&self) -> anyhow::Result<Vec<ScheduledEvent>> {
        let listing = Listing {
            noun: "maintenance",
            next_field: "page/pages",
            narrow: None,
            needs: NEEDS_MAINTENANCE,
            // Entries have no id of their own; the index keeps them distinct.
            id: |(index, _): &(String, Option<ScheduledEvent>)| index.as_str(),
        };
        let mut seen = 0usize;
        let read = |body: ListPage<Maintenance>, _: &Url| {
            body.into_page(|m| {
                seen += 1;
                Ok((seen.to_string(), maintenance_event(&m)?))
            })
        };
        let entries = self
            .api
            .list_pages(&listing, |page| page_url(&self.maintenance, page), read)
            .await?;
        Ok(entries.into_iter().filter_map(|(_, e)| e).collect())
    }
}

impl Inventory for LinodeInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        self.api.options().listing_limit()
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

    /// A Linode shaped like the example in the API reference (List Linodes).
    const DOCUMENTED: &str = r#"{
      "data": [{
        "alerts": {"cpu": 180, "io": 10000, "network_in": 10, "network_out": 10, "transfer_quota": 80},
        "backups": {"available": true, "enabled": true, "last_successful": "2018-01-01T00:01:01", "schedule": {"day": "Saturday", "window": "W22"}},
        "capabilities": [], "created": "2018-01-01T00:01:01", "disk_encryption": "disabled",
        "group": "Linode-Group", "has_user_data": true, "host_uuid": "3a3ddd59d9a78bb8de041391075df44de62bfec8",
        "hypervisor": "kvm", "id": 123, "image": "linode/debian10",
        "ipv4": ["203.0.113.1", "192.168.133.234"], "ipv6": "c001:d00d::1337/128",
        "label": "linode123", "lke_cluster_id": null, "placement_group": null,
        "region": "us-east", "site_type": "core",
        "specs": {"disk": 81920, "gpus": 0, "memory": 4096, "transfer": 4000, "vcpus": 2},
        "status": "running", "tags": ["example tag", "role:web"], "type": "g6-standard-1",
        "updated": "2018-01-01T00:01:01", "watchdog_enabled": true
      }],
      "page": 1, "pages": 3, "results": 1001
    }"#;

    #[test]
    fn the_documented_page_maps_to_instances() {
        let page: ListPage<Linode> = serde_json::from_str(DOCUMENTED).unwrap();
        let page = page.into_page(instance).unwrap();
        assert_eq!(
            (page.next, page.total),
            (Some(NextPage::Number(2)), Some(1001))
        );
        let i = &page.items[0];
        assert_eq!(i.id, "123");
        assert_eq!(i.name, "linode123");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("203.0.113.1".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("192.168.133.234".parse().unwrap()));
        assert_eq!(i.ipv6, Some("c001:d00d::1337".parse().unwrap()));
        assert_eq!(i.tags["role"], "web");
        assert_eq!(i.tags["example tag"], "");
    }

    #[test]
    fn the_last_page_has_no_next_and_odd_addresses_are_sorted_out() {
        let page: ListPage<Linode> = serde_json::from_str(
            r#"{"data":[{"id":7,"label":"v6","status":"offline","ipv4":[],"ipv6":"2600:3c03::f03c:91ff:fe24:3a2f/128","tags":[]},
                        {"id":8,"label":"private","status":"booting","ipv4":["192.168.200.1"],"ipv6":null,"tags":[]}],
                "page":3,"pages":3,"results":2}"#,
        )
        .unwrap();
        let page = page.into_page(instance).unwrap();
        assert_eq!(page.next, None);
        let (v6, private) = (&page.items[0], &page.items[1]);
        assert_eq!((v6.public_ipv4, v6.private_ipv4), (None, None));
        assert_eq!(
            v6.ipv6,
            Some("2600:3c03::f03c:91ff:fe24:3a2f".parse().unwrap())
        );
        assert_eq!(v6.state, InstanceState::Stopped);
        assert_eq!(private.public_ipv4, None);
        assert_eq!(private.private_ipv4, Some("192.168.200.1".parse().unwrap()));
        assert_eq!(private.state, InstanceState::Pending);

        let bad: ListPage<Linode> = serde_json::from_str(
            r#"{"data":[{"id":9,"label":"x","status":"running","ipv4":[],"ipv6":"not-an-address/64"}],"page":1,"pages":1,"results":1}"#,
        )
        .unwrap();
        assert!(
            bad.into_page(instance)
                .unwrap_err()
                .contains("Linode 9 has ipv6")
        );
    }

    #[test]
    fn statuses_map_as_documented() {
        for (status, want) in [
            ("running", InstanceState::Running),
            ("offline", InstanceState::Stopped),
            ("stopped", InstanceState::Stopped),
            ("billing_suspension", InstanceState::Stopped),
            ("shutting_down", InstanceState::Stopping),
            ("deleting", InstanceState::Terminated),
            ("booting", InstanceState::Pending),
            ("rebooting", InstanceState::Pending),
            ("provisioning", InstanceState::Pending),
            ("migrating", InstanceState::Pending),
            ("rebuilding", InstanceState::Pending),
            ("cloning", InstanceState::Pending),
            ("restoring", InstanceState::Pending),
            ("resizing", InstanceState::Pending),
            ("brand_new", InstanceState::Pending),
        ] {
            assert_eq!(state(status), want, "{status}");
        }
    }

    fn maintenance(json: &str) -> Maintenance {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn announced_maintenance_becomes_events() {
        // Shaped like the API reference's example (List maintenances).
        let cold = maintenance(
            r#"{"body": "Scheduled upgrade to faster NVMe hardware.", "entity": {"id": 1234, "label": "demo-linode", "type": "linode", "url": "https://api.linode.com/v4/linode/instances/1234"},
                "label": "Scheduled upgrade to faster NVMe hardware", "message": "Scheduled upgrade to faster NVMe hardware.",
                "reason": "This maintenance will allow us to update the BIOS on the host's motherboard.",
                "status": "pending", "type": "cold_migration", "when": "2030-01-15T08:00:00"}"#,
        );
        let event = maintenance_event(&cold).unwrap().unwrap();
        assert_eq!(event.instance_id, "1234");
        assert_eq!(event.code, "cold-migration");
        assert_eq!(event.not_before, 1_894_694_400);
        assert!(event.changes_addresses);
        assert!(event.description.contains("BIOS"), "{}", event.description);

        let reboot = maintenance(
            r#"{"entity": {"id": 1234, "type": "linode"}, "status": "scheduled", "type": "reboot",
                "not_before": "2030-01-15T08:00:00Z", "start_time": "2030-01-15T09:00:00Z", "when": "2030-01-15T09:00:00"}"#,
        );
        let event = maintenance_event(&reboot).unwrap().unwrap();
        assert!(!event.changes_addresses);
        assert_eq!(event.not_before, 1_894_694_400, "not_before first");

        for over in ["completed", "canceled"] {
            let done = maintenance(&format!(
                r#"{{"entity": {{"id": 1, "type": "linode"}}, "status": "{over}", "type": "cold_migration", "when": "2030-01-15T08:00:00"}}"#
            ));
            assert_eq!(maintenance_event(&done).unwrap(), None, "{over}");
        }
        let volume = maintenance(
            r#"{"entity": {"id": 1, "type": "volume"}, "status": "pending", "type": "cold_migration", "when": "2030-01-15T08:00:00"}"#,
        );
        assert_eq!(maintenance_event(&volume).unwrap(), None);
        let no_id = maintenance(
            r#"{"entity": {"type": "linode"}, "status": "pending", "type": "reboot", "when": "2030-01-15T08:00:00"}"#,
        );
        assert!(maintenance_event(&no_id).is_err());
    }

    #[test]
    fn page_urls_and_the_filter() {
        let source = LinodeInventory::new(
            "li".into(),
            &Url::parse(DEFAULT_ENDPOINT).unwrap(),
            Token::new("t0123").unwrap(),
            Some("role:web".into()),
            HttpOptions::new(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(
            page_url(&source.instances, 1).as_str(),
            "https://api.linode.com/v4/linode/instances?page_size=500"
        );
        assert_eq!(
            page_url(&source.maintenance, 2).as_str(),
            "https://api.linode.com/v4/account/maintenance?page_size=500&page=2"
        );
        assert_eq!(source.filter().unwrap(), r#"{"tags":"role:web"}"#);
        assert!(!format!("{source:?}").contains("t0123"));
    }
}
