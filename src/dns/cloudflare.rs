//! `kind = "cloudflare"`: a Cloudflare zone through its v4 API
//! (<https://developers.cloudflare.com/api/resources/dns/subresources/records/>).
//!
//! - The zone's id is `zone_id`, or looked up once by name (`GET /zones?name=`).
//! - Reading lists every DNS record (`GET /zones/{id}/dns_records`, every page, checked
//!   against `result_info.total_count`); Cloudflare lists records one by one, grouped here
//!   into record sets.
//! - Writing lists the zone again for the records' ids, then sends one
//!   `POST /zones/{id}/dns_records/batch` — deletes, patches, posts — which Cloudflare
//!   executes in one database transaction. An update patches `content` and `ttl` only, so
//!   every other field of the record (`proxied`, comment, tags) is kept; created records
//!   are proxied as their rule's `proxied` says (not proxied without it).
//! - A record set with a proxied record is reported and never overwritten — its TTL and
//!   answers are Cloudflare's, not the record's — unless ipdrift created it (its
//!   `_ipdrift.<name>` ownership record is there): then a rule with `proxied = true` made
//!   it so, and its origin addresses are kept up to date like any other.
//!
//! Errors name the target, the zone, the call, and the token permission (`Zone.DNS Read`
//! or `Zone.DNS Edit`) — never the token.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::http::{ApiClient, Call, HttpOptions, api_url};
use crate::clients::paging::{Listing, NextPage, Page, page_url};
use crate::clients::token::Token;
use crate::config::secret_keys::API_TOKEN;
use crate::config::{Fragment, SecretAt};
use crate::dns::http_api::{self, ListedSet};
use crate::dns::{DnsTarget, RecordChange, TargetKind, TargetSpec, ZoneContents, ownership_name};
use crate::model::{DnsName, RecordKey, RecordSet};

pub const KIND: TargetKind = TargetKind {
    name: "cloudflare",
    check,
};

/// The API's base URL unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://api.cloudflare.com/client/v4";

/// Records per page asked for; Cloudflare's documented maximum for DNS records is far
/// higher, so a zone of a few thousand records is one page.
const PER_PAGE: u32 = 5000;

const READ: &str = "the token must allow Zone.DNS Read for the zone";
const EDIT: &str = "the token must allow Zone.DNS Edit for the zone";
const ZONE_READ: &str = "the token must allow Zone.Zone Read, or give zone_id";

/// A `kind = "cloudflare"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareConfig {
    pub token: SecretAt,
    /// `zone_id`; `None`: looked up by the zone's name.
    pub zone_id: Option<String>,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloudflare {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    zone_id: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawCloudflare = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let zone_id = match &raw.zone_id {
        None => None,
        Some(id) => {
            let text = id.get_ref().trim();
            if text.len() != 32 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
                f.error_at(
                    id,
                    "zone_id",
                    "must be the zone's id, 32 hex digits (the dashboard's zone overview shows it)",
                );
                return None;
            }
            Some(text.to_ascii_lowercase())
        }
    };
    Some(Arc::new(CloudflareConfig {
        token: token?,
        zone_id,
        endpoint,
    }))
}

impl TargetSpec for CloudflareConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let token =
            Token::load(&self.token.secret).map_err(|e| anyhow!("dns target {name:?}.{e}"))?;
        Ok(Box::new(CloudflareTarget::new(
            name,
            zone.clone(),
            self,
            token,
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.token.clone()]
    }
}

/// Cloudflare's envelope around every answer.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    page: u32,
    total_pages: u32,
    total_count: u64,
}

#[derive(Debug, Deserialize)]
struct ZoneEntry {
    id: String,
    name: String,
}

/// A DNS record as listed.
#[derive(Debug, Clone, Deserialize)]
struct DnsRecord {
    id: String,
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    content: String,
    #[serde(default)]
    proxied: bool,
    ttl: u32,
}

#[derive(Debug, Default, Serialize)]
struct Batch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deletes: Vec<Id>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patches: Vec<Patch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    posts: Vec<Post>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Id {
    id: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Patch {
    id: String,
    content: String,
    ttl: u32,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Post {
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    content: String,
    ttl: u32,
    proxied: bool,
}

fn failed(errors: &[ApiError]) -> String {
    let shown: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    format!("Cloudflare answered success: false ({})", shown.join("; "))
}

/// One Cloudflare zone.
pub struct CloudflareTarget {
    name: String,
    zone: DnsName,
    client: ApiClient,
    endpoint: Url,
    zone_id: OnceCell<String>,
}

impl CloudflareTarget {
    pub fn new(
        name: &str,
        zone: DnsName,
        config: &CloudflareConfig,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<CloudflareTarget> {
        let owner = format!("dns target {name:?} (Cloudflare zone {zone})");
        Ok(CloudflareTarget {
            name: name.to_string(),
            zone,
            client: ApiClient::new("Cloudflare", owner, token, options)?,
            endpoint: config.endpoint.clone(),
            zone_id: OnceCell::new_with(config.zone_id.clone()),
        })
    }

    fn who(&self) -> String {
        format!("dns target {:?} (Cloudflare zone {})", self.name, self.zone)
    }

    async fn zone_id(&self) -> anyhow::Result<&str> {
        self.zone_id
            .get_or_try_init(|| async {
                let mut url = api_url(&self.endpoint, &["zones"]);
                url.query_pairs_mut()
                    .append_pair("name", self.zone.as_str().trim_end_matches('.'));
                let answer: Envelope<Vec<ZoneEntry>> = self
                    .client
                    .get_json(&url, &Call::new("zone lookup", ZONE_READ))
                    .await?;
                if !answer.success {
                    bail!("{}: zone lookup: {}", self.who(), failed(&answer.errors));
                }
                let ids: Vec<String> = answer
                    .result
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|z| http_api::same_name(&z.name, &self.zone))
                    .map(|z| z.id)
                    .collect();
                match ids.as_slice() {
                    [id] => Ok(id.clone()),
                    [] => bail!(
                        "{}: the token sees no zone named {}; check `zone` and the token's zone resources, or give `zone_id`",
                        self.who(),
                        self.zone
                    ),
                    _ => bail!(
                        "{}: several zones are named {}; say which with `zone_id`",
                        self.who(),
                        self.zone
                    ),
                }
            })
            .await
            .map(String::as_str)
    }

    /// Every DNS record of the zone, every page, or an error.
    async fn records(&self) -> anyhow::Result<Vec<DnsRecord>> {
        let zone_id = self.zone_id().await?;
        let base = api_url(&self.endpoint, &["zones", zone_id, "dns_records"]);
        let listing = Listing {
            noun: "DNS record",
            next_field: "result_info.page",
            narrow: None,
            needs: READ,
            id: |r: &DnsRecord| r.id.as_str(),
        };
        self.client
            .list_pages(
                &listing,
                |page| page_url(&base, PER_PAGE, page, None),
                |answer: Envelope<Vec<DnsRecord>>, _| {
                    if !answer.success {
                        return Err(failed(&answer.errors));
                    }
                    let info = answer.result_info.ok_or(
                        "the page has no result_info, so whether more pages follow is unknown",
                    )?;
                    let items = answer.result.ok_or("the page has no result")?;
                    Ok(Page {
                        items,
                        next: (info.page < info.total_pages)
                            .then(|| NextPage::Number(info.page + 1)),
                        total: Some(info.total_count),
                    })
                },
            )
            .await
    }

    async fn list(&self) -> anyhow::Result<Vec<ListedSet>> {
        Ok(grouped(&self.records().await?))
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
        let records = self.records().await?;
        let batch = batch(changes, &records).map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let zone_id = self.zone_id().await?;
        let url = api_url(&self.endpoint, &["zones", zone_id, "dns_records", "batch"]);
        let call = Call::new(
            format!(
                "batch ({} delete, {} patch, {} post)",
                batch.deletes.len(),
                batch.patches.len(),
                batch.posts.len()
            ),
            EDIT,
        );
        let answer: Envelope<serde_json::Value> =
            self.client.post_json(&url, &batch, &call).await?;
        if !answer.success {
            bail!("{}: batch: {}", self.who(), failed(&answer.errors));
        }
        Ok(())
    }
}

/// Whether ipdrift created the record set at `name`: an ownership record of ipdrift's is
/// there (which controller's, the plan's guards decide).
fn created_by_ipdrift(records: &[DnsRecord], name: &str) -> bool {
    let Ok(name) = crate::validate::dns_name(name) else {
        return false;
    };
    at(records, &ownership_name(&name), "TXT")
        .iter()
        .any(|r| http_api::unquote_txt(&r.content).starts_with("heritage=ipdrift,"))
}

/// Records grouped into record sets; a set with a proxied record that ipdrift did not
/// create is special.
fn grouped(records: &[DnsRecord]) -> Vec<ListedSet> {
    let mut sets: BTreeMap<(String, String), ListedSet> = BTreeMap::new();
    for r in records {
        let key = (
            r.name.trim_end_matches('.').to_ascii_lowercase(),
            r.rtype.to_ascii_uppercase(),
        );
        let set = sets.entry(key).or_insert_with(|| ListedSet {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            ttl: r.ttl,
            values: Vec::new(),
            special: None,
        });
        set.values.push(r.content.clone());
        set.ttl = set.ttl.min(r.ttl);
        if r.proxied && !created_by_ipdrift(records, &r.name) {
            set.special = Some("is proxied by Cloudflare".into());
        }
    }
    sets.into_values().collect()
}

/// The records of `records` at `name` of type `rtype`.
fn at<'r>(records: &'r [DnsRecord], name: &DnsName, rtype: &str) -> Vec<&'r DnsRecord> {
    records
        .iter()
        .filter(|r| r.rtype.eq_ignore_ascii_case(rtype) && http_api::same_name(&r.name, name))
        .collect()
}

/// The batch for `changes` given the zone's current `records`: each set's records are
/// kept where their address stays, patched to a new address where one is left, deleted
/// where none is, and new addresses posted.
fn batch(changes: &[RecordChange], records: &[DnsRecord]) -> Result<Batch, String> {
    let mut out = Batch::default();
    for change in changes {
        let key = change.key();
        let rtype = key.rtype.as_str();
        let current = at(records, &key.name, rtype);
        if current.iter().any(|r| r.proxied) && !created_by_ipdrift(records, key.name.as_str()) {
            return Err(format!(
                "{key} is proxied by Cloudflare now, which ipdrift does not overwrite"
            ));
        }
        let (to, ttl): (BTreeSet<IpAddr>, u32) = match change {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => {
                (to.addrs.clone(), to.ttl)
            }
            RecordChange::Delete { .. } => (BTreeSet::new(), 0),
        };
        let proxied = match change {
            RecordChange::Create { proxied, .. } => proxied.unwrap_or(false),
            RecordChange::Replace { .. } | RecordChange::Delete { .. } => false,
        };
        let mut left: Vec<IpAddr> = to
            .iter()
            .filter(|a| {
                !current
                    .iter()
                    .any(|r| r.content.parse::<IpAddr>().ok() == Some(**a))
            })
            .copied()
            .collect();
        for r in &current {
            let keeps = r.content.parse::<IpAddr>().is_ok_and(|a| to.contains(&a));
            if keeps && r.ttl == ttl {
                continue;
            }
            if keeps {
                out.patches.push(Patch {
                    id: r.id.clone(),
                    content: r.content.clone(),
                    ttl,
                });
            } else if let Some(addr) = left.pop() {
                out.patches.push(Patch {
                    id: r.id.clone(),
                    content: addr.to_string(),
                    ttl,
                });
            } else {
                out.deletes.push(Id { id: r.id.clone() });
            }
        }
        for addr in left {
            out.posts.push(Post {
                name: key.name.as_str().trim_end_matches('.').to_string(),
                rtype,
                content: addr.to_string(),
                ttl,
                proxied,
            });
        }
    }
    let (created, disowned) = http_api::ownership_changes(changes);
    for (name, (owner, ttl)) in &created {
        let ownership = ownership_name(name);
        if at(records, &ownership, "TXT").is_empty() {
            out.posts.push(Post {
                name: ownership.as_str().trim_end_matches('.').to_string(),
                rtype: "TXT",
                content: http_api::quote_txt(owner),
                ttl: *ttl,
                proxied: false,
            });
        }
    }
    for name in &disowned {
        let ownership = at(records, &ownership_name(name), "TXT");
        if ownership.is_empty() {
            return Err(format!(
                "not deleting {name}: its ownership record is gone since it was read, so ipdrift may no longer own it"
            ));
        }
        out.deletes
            .extend(ownership.into_iter().map(|r| Id { id: r.id.clone() }));
    }
    Ok(out)
}

impl DnsTarget for CloudflareTarget {
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
    use crate::model::RecordType;
    use crate::validate;

    fn record(id: &str, name: &str, content: &str, proxied: bool) -> DnsRecord {
        DnsRecord {
            id: id.into(),
            name: name.into(),
            rtype: "A".into(),
            content: content.into(),
            proxied,
            ttl: 300,
        }
    }

    fn set(addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: validate::dns_name("www.example.com").unwrap(),
                rtype: RecordType::A,
            },
            ttl: 300,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_replace_patches_kept_ids_deletes_extras_and_posts_the_rest() {
        let records = vec![
            record("a1", "www.example.com", "192.0.2.1", false),
            record("a2", "www.example.com", "192.0.2.2", false),
        ];
        let shrink = batch(
            &[RecordChange::Replace {
                from: None,
                to: set(&["192.0.2.9"]),
            }],
            &records,
        )
        .unwrap();
        assert_eq!(shrink.patches.len(), 1);
        assert_eq!(shrink.patches[0].content, "192.0.2.9");
        assert_eq!(shrink.deletes.len(), 1);
        assert!(shrink.posts.is_empty());
        let grow = batch(
            &[RecordChange::Replace {
                from: None,
                to: set(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
            }],
            &records,
        )
        .unwrap();
        assert!(grow.patches.is_empty() && grow.deletes.is_empty());
        assert_eq!(grow.posts.len(), 1);
        assert!(!grow.posts[0].proxied);
    }

    #[test]
    fn proxied_records_are_special_and_never_overwritten() {
        let records = vec![record("a1", "www.example.com", "192.0.2.1", true)];
        assert!(grouped(&records)[0].special.is_some());
        let e = batch(
            &[RecordChange::Replace {
                from: None,
                to: set(&["192.0.2.9"]),
            }],
            &records,
        )
        .unwrap_err();
        assert!(e.contains("proxied"), "{e}");
    }

    #[test]
    fn a_rule_s_proxied_reaches_created_records_and_keeps_them_managed() {
        let create = RecordChange::Create {
            to: RecordSet {
                ttl: 1,
                ..set(&["192.0.2.1"])
            },
            owner: "heritage=ipdrift,owner=a".into(),
            proxied: Some(true),
        };
        let posts = batch(&[create], &[]).unwrap().posts;
        assert_eq!(posts.len(), 2);
        assert!(posts[0].proxied && posts[0].rtype == "A" && posts[0].ttl == 1);
        assert!(!posts[1].proxied && posts[1].rtype == "TXT", "{posts:?}");

        // Created by ipdrift, proxied by its rule: read and repaired like any other.
        let mut records = vec![record("a1", "www.example.com", "192.0.2.1", true)];
        records.push(DnsRecord {
            rtype: "TXT".into(),
            ..record(
                "t1",
                "_ipdrift.www.example.com",
                "\"heritage=ipdrift,owner=a\"",
                false,
            )
        });
        assert!(grouped(&records).iter().all(|s| s.special.is_none()));
        let repair = batch(
            &[RecordChange::Replace {
                from: None,
                to: set(&["192.0.2.9"]),
            }],
            &records,
        )
        .unwrap();
        assert_eq!(repair.patches[0].content, "192.0.2.9");
    }
}
