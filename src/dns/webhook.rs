//! `kind = "webhook"`: any external-dns webhook provider, spoken to as external-dns's own
//! webhook client does (external-dns `docs/tutorials/webhook-provider.md` and
//! `provider/webhook`): every request carries `Accept` (and a body `Content-Type`)
//! `application/external.dns.webhook+json;version=1`.
//!
//! - Negotiation, once: `GET /` answers the provider's domain filter (`include` / `exclude`,
//!   `filters` in older providers). A zone, or a name to write, outside it is an error.
//! - Reading: `GET /records`, every endpoint of the provider; the target keeps those in its
//!   zone. An endpoint with a set identifier or provider-specific properties is a special
//!   that ipdrift does not overwrite.
//! - Writing: `POST /adjustendpoints` with the endpoints to be written, so the provider
//!   can normalise them (TTL, targets) as it will store them; then one `POST /records`
//!   with `{Create, UpdateOld, UpdateNew, Delete}`, answered 204. Ownership records are TXT
//!   endpoints `_ipdrift.<name>`.
//!
//! The protocol has no credentials: the provider is meant to listen on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::http::{ApiClient, Call, HttpOptions, api_url};
use crate::config::Fragment;
use crate::dns::http_api::{self, ListedSet};
use crate::dns::{DnsTarget, RecordChange, TargetKind, TargetSpec, ZoneContents, ownership_name};
use crate::model::{DnsName, RecordKey, RecordSet};
use crate::validate;

pub const KIND: TargetKind = TargetKind {
    name: "webhook",
    check,
};

/// The protocol's media type and version.
pub const MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";

/// What a refused request is told; the protocol has no credentials of its own.
const NEEDS: &str = "the protocol has no credentials; check what stands in front of the provider";

/// A `kind = "webhook"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The provider's base URL (`url`), e.g. `http://127.0.0.1:8888`.
    pub url: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawWebhook = f.parse()?;
    let Some(text) = &raw.url else {
        f.missing(
            "url",
            "the webhook provider's address is needed: add url = \"http://127.0.0.1:8888\"",
        );
        return None;
    };
    match validate::api_endpoint(text.get_ref()) {
        Ok(url) => Some(Arc::new(WebhookConfig { url })),
        Err(message) => {
            f.error_at(text, "url", message);
            None
        }
    }
}

impl TargetSpec for WebhookConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        Ok(Box::new(WebhookTarget::new(
            name,
            zone.clone(),
            &self.url,
            HttpOptions::new(timeout),
        )?))
    }
}

/// `endpoint.Endpoint` as external-dns serialises it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub dns_name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub record_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    #[serde(rename = "recordTTL", default, skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecific>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderSpecific {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `plan.Changes`: Go field names, as external-dns encodes them.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Changes {
    #[serde(default)]
    pub create: Vec<Endpoint>,
    #[serde(default)]
    pub update_old: Vec<Endpoint>,
    #[serde(default)]
    pub update_new: Vec<Endpoint>,
    #[serde(default)]
    pub delete: Vec<Endpoint>,
}

/// The answer to `GET /`: `endpoint.DomainFilter`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DomainFilter {
    #[serde(default)]
    include: Vec<String>,
    /// What providers built on older external-dns call `include`.
    #[serde(default)]
    filters: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

impl DomainFilter {
    /// Whether external-dns's filter matches `name`: inside an included domain (or no
    /// includes) and inside no excluded one.
    fn matches(&self, name: &DnsName) -> bool {
        let inside = |domain: &String| {
            let domain = domain.trim().trim_start_matches('.');
            validate::dns_name(domain).is_ok_and(|d| name.is_in_zone(&d))
        };
        let include: Vec<&String> = self.include.iter().chain(&self.filters).collect();
        (include.is_empty() || include.into_iter().any(inside)) && !self.exclude.iter().any(inside)
    }
}

/// One zone served by a webhook provider.
pub struct WebhookTarget {
    name: String,
    zone: DnsName,
    client: ApiClient,
    root: Url,
    records: Url,
    adjust: Url,
    filter: OnceCell<DomainFilter>,
}

impl WebhookTarget {
    pub fn new(
        name: &str,
        zone: DnsName,
        url: &Url,
        options: HttpOptions,
    ) -> anyhow::Result<WebhookTarget> {
        let owner = format!("dns target {name:?} (webhook provider at {url}, zone {zone})");
        let client =
            ApiClient::without_token("webhook provider", owner, options)?.media_type(MEDIA_TYPE);
        Ok(WebhookTarget {
            name: name.to_string(),
            zone,
            client,
            root: url.clone(),
            records: api_url(url, &["records"]),
            adjust: api_url(url, &["adjustendpoints"]),
            filter: OnceCell::new(),
        })
    }

    fn who(&self) -> String {
        format!(
            "dns target {:?} (webhook provider at {}, zone {})",
            self.name, self.root, self.zone
        )
    }

    /// The domain filter, negotiated once; the zone must lie inside it.
    async fn filter(&self) -> anyhow::Result<&DomainFilter> {
        self.filter
            .get_or_try_init(|| async {
                let filter: Option<DomainFilter> = self
                    .client
                    .get_json(&self.root, &Call::new("negotiation", NEEDS))
                    .await?;
                let filter = filter.unwrap_or_default();
                if !filter.matches(&self.zone) {
                    bail!(
                        "{}: the provider's domain filter (include {:?}, exclude {:?}) does not cover zone {}; configure the provider's domain filter or the target's zone",
                        self.who(),
                        filter.include.iter().chain(&filter.filters).collect::<Vec<_>>(),
                        filter.exclude,
                        self.zone
                    );
                }
                Ok(filter)
            })
            .await
    }

    async fn endpoints(&self) -> anyhow::Result<Vec<Endpoint>> {
        self.filter().await?;
        let all: Vec<Endpoint> = self
            .client
            .get_json(&self.records, &Call::new("records", NEEDS))
            .await?;
        Ok(all
            .into_iter()
            .filter(|e| validate::dns_name(&e.dns_name).is_ok_and(|n| n.is_in_zone(&self.zone)))
            .collect())
    }

    async fn list(&self) -> anyhow::Result<Vec<ListedSet>> {
        Ok(self.endpoints().await?.iter().map(listed).collect())
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.list().await?;
        http_api::pick_rrsets(&listing, keys).map_err(|why| anyhow!("{}: {why}", self.who()))
    }

    async fn send(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        http_api::check_batch(changes, &self.zone)
            .map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let filter = self.filter().await?;
        if let Some(outside) = changes.iter().find(|c| !filter.matches(&c.key().name)) {
            bail!(
                "{}: refusing to send {}: the provider's domain filter does not cover it",
                self.who(),
                outside.key()
            );
        }
        let mut batch = changes_for(changes);
        let (_, disowned) = http_api::ownership_changes(changes);
        if !disowned.is_empty() {
            // Deleting needs the ownership endpoint exactly as the provider holds it.
            let current = self.endpoints().await?;
            for name in &disowned {
                let ownership = ownership_name(name);
                let found = current
                    .iter()
                    .find(|e| e.record_type == "TXT" && http_api::same_name(&e.dns_name, &ownership))
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: not deleting {name}: its ownership record {ownership} is gone since it was read, so ipdrift may no longer own it",
                            self.who()
                        )
                    })?;
                batch.delete.push(found.clone());
            }
        }
        self.adjust(&mut batch.create).await?;
        self.adjust(&mut batch.update_new).await?;
        let call = Call::new(
            format!(
                "apply changes ({} create, {} update, {} delete)",
                batch.create.len(),
                batch.update_new.len(),
                batch.delete.len()
            ),
            NEEDS,
        );
        self.client
            .post_json::<_, ()>(&self.records, &batch, &call)
            .await
    }

    /// Replaces `endpoints` by what the provider's `/adjustendpoints` makes of them; an
    /// endpoint it drops is an error, not a silent skip.
    async fn adjust(&self, endpoints: &mut Vec<Endpoint>) -> anyhow::Result<()> {
        if endpoints.is_empty() {
            return Ok(());
        }
        let adjusted: Vec<Endpoint> = self
            .client
            .post_json(
                &self.adjust,
                endpoints,
                &Call::new("adjust endpoints", NEEDS),
            )
            .await?;
        for sent in endpoints.iter_mut() {
            let back = adjusted
                .iter()
                .find(|a| a.record_type == sent.record_type && a.dns_name.trim_end_matches('.').eq_ignore_ascii_case(sent.dns_name.trim_end_matches('.')))
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the provider's /adjustendpoints dropped {} {}: it will not manage that record",
                        self.who(),
                        sent.dns_name,
                        sent.record_type
                    )
                })?;
            *sent = back.clone();
        }
        Ok(())
    }
}

/// An endpoint in the neutral shape; set identifiers and provider-specific properties
/// make it special.
fn listed(e: &Endpoint) -> ListedSet {
    let special = if !e.set_identifier.is_empty() {
        Some(format!(
            "has set identifier {:?} (a routing policy)",
            e.set_identifier
        ))
    } else if !e.provider_specific.is_empty() {
        let names: Vec<&str> = e
            .provider_specific
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        Some(format!(
            "carries provider-specific properties ({})",
            names.join(", ")
        ))
    } else {
        None
    };
    ListedSet {
        name: e.dns_name.clone(),
        rtype: e.record_type.clone(),
        ttl: e.record_ttl.unwrap_or(0),
        values: e.targets.clone(),
        special,
    }
}

fn endpoint(name: &DnsName, record_type: &str, ttl: u32, targets: Vec<String>) -> Endpoint {
    Endpoint {
        dns_name: name.as_str().trim_end_matches('.').to_string(),
        targets,
        record_type: record_type.to_string(),
        set_identifier: String::new(),
        record_ttl: Some(ttl),
        labels: BTreeMap::new(),
        provider_specific: Vec::new(),
    }
}

fn address_endpoint(set: &RecordSet) -> Endpoint {
    endpoint(
        &set.key.name,
        set.key.rtype.as_str(),
        set.ttl,
        set.addrs.iter().map(ToString::to_string).collect(),
    )
}

/// The `plan.Changes` for `changes`, without the deletions of ownership records (their
/// exact endpoints come from the provider).
fn changes_for(changes: &[RecordChange]) -> Changes {
    let mut batch = Changes::default();
    for change in changes {
        match change {
            RecordChange::Replace {
                from: Some(from),
                to,
            } => {
                batch.update_old.push(address_endpoint(from));
                batch.update_new.push(address_endpoint(to));
            }
            RecordChange::Replace { from: None, to } | RecordChange::Create { to, .. } => {
                batch.create.push(address_endpoint(to))
            }
            RecordChange::Delete { from } => batch.delete.push(address_endpoint(from)),
        }
    }
    let (created, _) = http_api::ownership_changes(changes);
    for (name, (owner, ttl)) in &created {
        batch.create.push(endpoint(
            &ownership_name(name),
            "TXT",
            *ttl,
            vec![http_api::quote_txt(owner)],
        ));
    }
    batch
}

impl DnsTarget for WebhookTarget {
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
        Box::pin(async move { Ok(http_api::ownership_records(&self.list().await?)) })
    }

    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(async move { Ok(http_api::zone_contents(&self.list().await?)) })
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    #[test]
    fn domain_filters_match_as_external_dns_does() {
        let filter: DomainFilter = serde_json::from_str(
            r#"{"include":["example.com"],"exclude":["internal.example.com"]}"#,
        )
        .unwrap();
        assert!(filter.matches(&name("www.example.com.")));
        assert!(filter.matches(&name("example.com.")));
        assert!(!filter.matches(&name("db.internal.example.com.")));
        assert!(!filter.matches(&name("example.org.")));
        let old: DomainFilter = serde_json::from_str(r#"{"filters":["example.org"]}"#).unwrap();
        assert!(old.matches(&name("a.example.org.")) && !old.matches(&name("a.example.com.")));
        assert!(DomainFilter::default().matches(&name("anything.test.")));
    }

    #[test]
    fn changes_encode_with_go_field_names() {
        let set = |addr: &str| RecordSet {
            key: RecordKey {
                name: name("www.example.com."),
                rtype: crate::model::RecordType::A,
            },
            ttl: 60,
            addrs: [addr.parse().unwrap()].into(),
        };
        let batch = changes_for(&[RecordChange::Replace {
            from: Some(set("192.0.2.1")),
            to: set("192.0.2.2"),
        }]);
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            serde_json::json!({
                "Create": [], "Delete": [],
                "UpdateOld": [{"dnsName": "www.example.com", "targets": ["192.0.2.1"], "recordType": "A", "recordTTL": 60}],
                "UpdateNew": [{"dnsName": "www.example.com", "targets": ["192.0.2.2"], "recordType": "A", "recordTTL": 60}],
            })
        );
    }
}
