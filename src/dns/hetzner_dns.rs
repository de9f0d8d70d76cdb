//! `kind = "hetzner_dns"`: a primary zone in Hetzner's DNS through the Hetzner Cloud API's
//! Zones and Zone RRSets (<https://docs.hetzner.cloud/reference/cloud#zone-rrsets>), the
//! API Hetzner documents for DNS since DNS moved into the Cloud Console in 2025; the old
//! `dns.hetzner.com` API is being shut down and is not spoken.
//!
//! - Reading lists every RRset (`GET /v1/zones/{zone}/rrsets?per_page=50`, every page via
//!   `meta.pagination.next_page`, counted against `total_entries`). Names are relative to
//!   the zone, `@` for the apex. An RRset without a TTL of its own has the zone's default,
//!   read with `GET /v1/zones/{zone}` only when the listing holds such an RRset. An RRset
//!   with change protection is reported, never overwritten.
//! - Writing: the API has no call that changes several RRsets at once, so each changed
//!   RRset is one call — `POST …/rrsets/{name}/{type}/actions/set_records` for one that
//!   exists (plus `…/actions/change_ttl` when its TTL changes), `POST …/rrsets` for a new one
//!   (with its ownership TXT RRset, another `POST`), `DELETE …/rrsets/{name}/{type}` last.
//!   Each call is atomic for its RRset; a batch is not: a failure midway leaves the calls
//!   made so far, which the next pass reads and completes. The calls start actions; the
//!   write ends when every action succeeded (`GET /v1/actions?id=…`, up to 25 ids a call),
//!   and an action that failed is an error naming its RRset.
//! - Rate limit: 3 600 requests an hour per project; `clients/http` keeps to the
//!   `ratelimit-remaining`/`ratelimit-reset` headers and honours `Retry-After`.
//!
//! Errors name the target, the zone, the call and the token permission (Read, or Read &
//! Write) — never the token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::http::{ApiClient, Call, HttpOptions, api_url};
use crate::clients::paging::{Listing, NextPage, Page, page_url};
use crate::clients::token::Token;
use crate::config::secret_keys::API_TOKEN;
use crate::config::{Fragment, SecretAt};
use crate::dns::http_api::{self, ListedSet};
use crate::dns::{DnsTarget, RecordChange, TargetKind, TargetSpec, ZoneContents, ownership_name};
use crate::inventory::hetzner::DEFAULT_ENDPOINT;
use crate::model::{DnsName, RecordKey, RecordSet};

pub const KIND: TargetKind = TargetKind {
    name: "hetzner_dns",
    check,
};

/// RRsets per page: the API's maximum.
const PER_PAGE: u32 = 50;

/// Action ids asked for in one `GET /v1/actions`.
const ACTIONS_PER_CALL: usize = 25;

/// Between two looks at running actions.
const ACTION_POLL: Duration = Duration::from_millis(250);

const READ: &str = "the token needs Read permission on the project that holds the zone";
const WRITE: &str = "the token needs Read & Write permission on the project that holds the zone (a Read token cannot change records)";

/// A `kind = "hetzner_dns"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HetznerDnsConfig {
    pub token: SecretAt,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHetznerDns {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawHetznerDns = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    Some(Arc::new(HetznerDnsConfig {
        token: token?,
        endpoint,
    }))
}

impl TargetSpec for HetznerDnsConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let token =
            Token::load(&self.token.secret).map_err(|e| anyhow!("dns target {name:?}.{e}"))?;
        Ok(Box::new(HetznerDnsTarget::new(
            name,
            zone.clone(),
            &self.endpoint,
            token,
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.token.clone()]
    }
}

/// An RRset as listed.
#[derive(Debug, Clone, Deserialize)]
struct RRSet {
    /// `www/A`.
    id: String,
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    /// `null`: the zone's default TTL.
    #[serde(default)]
    ttl: Option<u32>,
    records: Vec<Record>,
    #[serde(default)]
    protection: Protection,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Protection {
    #[serde(default)]
    change: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    value: String,
}

#[derive(Debug, Deserialize)]
struct RRSetPage {
    rrsets: Vec<RRSet>,
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    pagination: Pagination,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u32>,
    #[serde(default)]
    total_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ZoneAnswer {
    zone: Zone,
}

#[derive(Debug, Deserialize)]
struct Zone {
    ttl: u32,
}

/// The action a write started.
#[derive(Debug, Clone, Deserialize)]
struct Action {
    id: u64,
    status: String,
    #[serde(default)]
    error: Option<ActionError>,
}

#[derive(Debug, Clone, Deserialize)]
struct ActionError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ActionAnswer {
    action: Action,
}

#[derive(Debug, Deserialize)]
struct ActionsAnswer {
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    ttl: u32,
    records: Vec<Record>,
}

/// One call of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `POST …/rrsets`.
    Create {
        name: String,
        rtype: &'static str,
        ttl: u32,
        values: Vec<String>,
    },
    /// `POST …/rrsets/{name}/{type}/actions/set_records`.
    SetRecords {
        name: String,
        rtype: &'static str,
        values: Vec<String>,
    },
    /// `POST …/rrsets/{name}/{type}/actions/change_ttl`.
    ChangeTtl {
        name: String,
        rtype: &'static str,
        ttl: u32,
    },
    /// `DELETE …/rrsets/{name}/{type}`.
    Delete { name: String, rtype: &'static str },
}

impl Step {
    fn what(&self) -> String {
        match self {
            Step::Create { name, rtype, .. } => format!("create of RRset {name}/{rtype}"),
            Step::SetRecords { name, rtype, .. } => format!("set_records of RRset {name}/{rtype}"),
            Step::ChangeTtl { name, rtype, .. } => format!("change_ttl of RRset {name}/{rtype}"),
            Step::Delete { name, rtype } => format!("delete of RRset {name}/{rtype}"),
        }
    }
}

/// A name as the API writes it: relative to the zone, `@` for the apex, lower case.
fn relative_name(zone: &DnsName, name: &DnsName) -> String {
    if name == zone {
        return "@".into();
    }
    name.as_str()
        .strip_suffix(zone.as_str())
        .map(|s| s.trim_end_matches('.').to_string())
        .unwrap_or_else(|| name.as_str().to_string())
        .to_ascii_lowercase()
}

/// The RRset's full name: `@` is the apex, other names are relative to the zone.
fn full_name(zone: &DnsName, relative: &str) -> String {
    if relative == "@" || relative.is_empty() {
        zone.as_str().to_string()
    } else {
        format!("{}.{}", relative.trim_end_matches('.'), zone.as_str())
    }
}

/// The listing in the shared shape; `default_ttl` for RRsets without a TTL of their own.
fn listed(zone: &DnsName, rrsets: &[RRSet], default_ttl: u32) -> Vec<ListedSet> {
    rrsets
        .iter()
        .map(|r| ListedSet {
            name: full_name(zone, &r.name),
            rtype: r.rtype.to_ascii_uppercase(),
            ttl: r.ttl.unwrap_or(default_ttl),
            values: r.records.iter().map(|v| v.value.clone()).collect(),
            special: r
                .protection
                .change
                .then(|| "has change protection in Hetzner DNS (protection.change)".to_string()),
        })
        .collect()
}

/// The calls for `changes`: writes first, deletes last, so that no RRset a rule needs is
/// gone while the batch runs.
fn steps(zone: &DnsName, changes: &[RecordChange]) -> Vec<Step> {
    let mut early = Vec::new();
    let mut late = Vec::new();
    let values = |to: &RecordSet| to.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    for change in changes {
        let key = change.key();
        let name = relative_name(zone, &key.name);
        let rtype = key.rtype.as_str();
        match change {
            RecordChange::Replace {
                from: Some(from),
                to,
            } => {
                if from.addrs != to.addrs {
                    early.push(Step::SetRecords {
                        name: name.clone(),
                        rtype,
                        values: values(to),
                    });
                }
                if from.ttl != to.ttl {
                    early.push(Step::ChangeTtl {
                        name,
                        rtype,
                        ttl: to.ttl,
                    });
                }
            }
            RecordChange::Replace { from: None, to } | RecordChange::Create { to, .. } => {
                early.push(Step::Create {
                    name,
                    rtype,
                    ttl: to.ttl,
                    values: values(to),
                });
            }
            RecordChange::Delete { .. } => late.push(Step::Delete { name, rtype }),
        }
    }
    let (created, disowned) = http_api::ownership_changes(changes);
    for (name, (text, ttl)) in created {
        early.push(Step::Create {
            name: relative_name(zone, &ownership_name(&name)),
            rtype: "TXT",
            ttl,
            values: vec![http_api::quote_txt(&text)],
        });
    }
    for name in disowned {
        late.push(Step::Delete {
            name: relative_name(zone, &ownership_name(&name)),
            rtype: "TXT",
        });
    }
    early.extend(late);
    early
}

/// One Hetzner DNS zone.
pub struct HetznerDnsTarget {
    name: String,
    zone: DnsName,
    client: ApiClient,
    zone_url: Url,
    rrsets: Url,
    actions: Url,
}

impl HetznerDnsTarget {
    pub fn new(
        name: &str,
        zone: DnsName,
        endpoint: &Url,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<Self> {
        let zone_name = zone.as_str().trim_end_matches('.').to_ascii_lowercase();
        let owner = format!("dns target {name:?} (Hetzner DNS zone {zone_name})");
        Ok(HetznerDnsTarget {
            name: name.to_string(),
            client: ApiClient::new("Hetzner DNS", owner, token, options)?,
            zone_url: api_url(endpoint, &["v1", "zones", &zone_name]),
            rrsets: api_url(endpoint, &["v1", "zones", &zone_name, "rrsets"]),
            actions: api_url(endpoint, &["v1", "actions"]),
            zone,
        })
    }

    fn who(&self) -> String {
        format!(
            "dns target {:?} (Hetzner DNS zone {})",
            self.name, self.zone
        )
    }

    /// Every RRset of the zone, every page, or an error.
    async fn list_rrsets(&self) -> anyhow::Result<Vec<RRSet>> {
        let listing = Listing {
            noun: "RRset",
            next_field: "meta.pagination.next_page",
            narrow: None,
            needs: READ,
            id: |r: &RRSet| r.id.as_str(),
        };
        let read = |body: RRSetPage, _: &Url| {
            let pagination = body.meta.map(|m| m.pagination);
            Ok(Page {
                items: body.rrsets,
                next: pagination
                    .as_ref()
                    .and_then(|p| p.next_page)
                    .map(NextPage::Number),
                total: pagination.and_then(|p| p.total_entries),
            })
        };
        self.client
            .list_pages(
                &listing,
                |page| page_url(&self.rrsets, PER_PAGE, page, None),
                read,
            )
            .await
    }

    async fn listing(&self) -> anyhow::Result<Vec<ListedSet>> {
        let rrsets = self.list_rrsets().await?;
        let default_ttl = if rrsets.iter().any(|r| r.ttl.is_none()) {
            let call = Call::new("zone (for its default TTL)", READ);
            let answer: ZoneAnswer = self.client.get_json(&self.zone_url, &call).await?;
            answer.zone.ttl
        } else {
            0
        };
        Ok(listed(&self.zone, &rrsets, default_ttl))
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.listing().await?;
        http_api::pick_rrsets(&listing, keys).map_err(|why| anyhow!("{}: {why}", self.who()))
    }

    fn rrset_url(&self, name: &str, rtype: &str, action: Option<&str>) -> Url {
        match action {
            None => api_url(&self.rrsets, &[name, rtype]),
            Some(action) => api_url(&self.rrsets, &[name, rtype, "actions", action]),
        }
    }

    /// Makes one call; the action it started.
    async fn call(&self, step: &Step) -> anyhow::Result<Action> {
        let call = Call::new(step.what(), WRITE);
        let records = |values: &[String]| {
            values
                .iter()
                .map(|v| Record { value: v.clone() })
                .collect::<Vec<_>>()
        };
        let answer: ActionAnswer = match step {
            Step::Create {
                name,
                rtype,
                ttl,
                values,
            } => {
                let body = CreateBody {
                    name: name.clone(),
                    rtype,
                    ttl: *ttl,
                    records: records(values),
                };
                self.client.post_json(&self.rrsets, &body, &call).await?
            }
            Step::SetRecords {
                name,
                rtype,
                values,
            } => {
                let body = serde_json::json!({ "records": records(values) });
                let url = self.rrset_url(name, rtype, Some("set_records"));
                self.client.post_json(&url, &body, &call).await?
            }
            Step::ChangeTtl { name, rtype, ttl } => {
                let body = serde_json::json!({ "ttl": ttl });
                let url = self.rrset_url(name, rtype, Some("change_ttl"));
                self.client.post_json(&url, &body, &call).await?
            }
            Step::Delete { name, rtype } => {
                let url = self.rrset_url(name, rtype, None);
                self.client.delete(&url, &call).await?
            }
        };
        Ok(answer.action)
    }

    /// Waits until every action in `running` (id → what started it) is done; an action
    /// that failed is an error.
    async fn wait_for(&self, mut running: BTreeMap<u64, String>) -> anyhow::Result<()> {
        while !running.is_empty() {
            tokio::time::sleep(ACTION_POLL).await;
            let ids: Vec<u64> = running.keys().copied().collect();
            for chunk in ids.chunks(ACTIONS_PER_CALL) {
                let mut url = self.actions.clone();
                url.query_pairs_mut()
                    .extend_pairs(chunk.iter().map(|id| ("id", id.to_string())));
                let call = Call::new(format!("state of {} action(s)", chunk.len()), READ);
                let answer: ActionsAnswer = self.client.get_json(&url, &call).await?;
                for action in answer.actions {
                    self.settle(&action, &mut running)?;
                }
            }
        }
        Ok(())
    }

    /// Takes a finished action off `running`; a failed one is an error.
    fn settle(&self, action: &Action, running: &mut BTreeMap<u64, String>) -> anyhow::Result<()> {
        match action.status.as_str() {
            "running" => Ok(()),
            "success" => {
                running.remove(&action.id);
                Ok(())
            }
            _ => {
                let what = running.remove(&action.id).unwrap_or_default();
                let why = action
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_else(|| action.status.clone());
                Err(anyhow!(
                    "{}: the {what} failed (action {}: {why}); the next pass reads the zone again",
                    self.who(),
                    action.id
                ))
            }
        }
    }

    async fn send(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        http_api::check_batch(changes, &self.zone)
            .map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let steps = steps(&self.zone, changes);
        let total = steps.len();
        let mut running = BTreeMap::new();
        for (n, step) in steps.iter().enumerate() {
            let action = self.call(step).await.map_err(|e| {
                anyhow!(
                    "{e:#} (call {} of {total}; the calls before it were made, the next pass completes the rest)",
                    n + 1
                )
            })?;
            running.insert(action.id, step.what());
            self.settle(&action, &mut running)?;
        }
        self.wait_for(running).await
    }
}

impl DnsTarget for HetznerDnsTarget {
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
        Box::pin(async { Ok(http_api::ownership_records(&self.listing().await?)) })
    }

    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(async { Ok(http_api::zone_contents(&self.listing().await?)) })
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(changes))
    }

    /// One call per changed RRset, then the actions' wait.
    fn write_time_limit(&self, default: Duration) -> Duration {
        default * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecordType;
    use crate::validate;

    fn zone() -> DnsName {
        validate::dns_name("example.com.").unwrap()
    }

    fn set(name: &str, ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: validate::dns_name(name).unwrap(),
                rtype: RecordType::A,
            },
            ttl,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// A page shaped like the API reference's example (List RRSets).
    const DOCUMENTED: &str = r#"{
      "rrsets": [
        {"id": "www/A", "name": "www", "type": "A", "ttl": 3600, "labels": {"key": "value"},
         "protection": {"change": false},
         "records": [{"value": "198.51.100.1", "comment": "My web server at Hetzner Cloud."}], "zone": 42},
        {"id": "@/A", "name": "@", "type": "A", "ttl": null, "labels": {},
         "protection": {"change": true}, "records": [{"value": "198.51.100.9", "comment": ""}], "zone": 42},
        {"id": "_ipdrift.www/TXT", "name": "_ipdrift.www", "type": "TXT", "ttl": 300, "labels": {},
         "protection": {"change": false}, "records": [{"value": "\"heritage=ipdrift,owner=x\"", "comment": ""}], "zone": 42}
      ],
      "meta": {"pagination": {"page": 1, "per_page": 25, "previous_page": null, "next_page": 2, "last_page": 2, "total_entries": 30}}
    }"#;

    #[test]
    fn the_documented_page_maps_to_sets_with_protection_and_default_ttls() {
        let page: RRSetPage = serde_json::from_str(DOCUMENTED).unwrap();
        let pagination = page.meta.as_ref().unwrap();
        assert_eq!(pagination.pagination.next_page, Some(2));
        let listing = listed(&zone(), &page.rrsets, 7200);
        assert_eq!(listing[0].name, "www.example.com.");
        assert_eq!(listing[0].ttl, 3600);
        assert_eq!(listing[1].name, "example.com.");
        assert_eq!(listing[1].ttl, 7200, "null: the zone's default");
        assert!(
            listing[1]
                .special
                .as_deref()
                .unwrap()
                .contains("protection")
        );
        let contents = http_api::zone_contents(&listing);
        assert_eq!(
            contents.ownership[&validate::dns_name("www.example.com.").unwrap()],
            "heritage=ipdrift,owner=x"
        );
        let apex = RecordKey {
            name: zone(),
            rtype: RecordType::A,
        };
        let e = http_api::pick_rrsets(&listing, &[apex]).unwrap_err();
        assert!(e.contains("does not overwrite"), "{e}");
    }

    #[test]
    fn an_update_sets_records_and_only_a_changed_ttl_is_sent() {
        let steps = steps(
            &zone(),
            &[
                RecordChange::Replace {
                    from: Some(set("www.example.com.", 300, &["192.0.2.1"])),
                    to: set("www.example.com.", 300, &["198.51.100.1", "198.51.100.2"]),
                },
                RecordChange::Replace {
                    from: Some(set("web.example.com.", 300, &["192.0.2.5"])),
                    to: set("web.example.com.", 60, &["192.0.2.5"]),
                },
            ],
        );
        assert_eq!(
            steps,
            vec![
                Step::SetRecords {
                    name: "www".into(),
                    rtype: "A",
                    values: vec!["198.51.100.1".into(), "198.51.100.2".into()]
                },
                Step::ChangeTtl {
                    name: "web".into(),
                    rtype: "A",
                    ttl: 60
                },
            ]
        );
    }

    #[test]
    fn creates_carry_ownership_and_deletes_come_last_with_theirs() {
        let steps = steps(
            &zone(),
            &[
                RecordChange::Delete {
                    from: set("old.example.com.", 60, &["192.0.2.9"]),
                },
                RecordChange::Create {
                    to: set("new.example.com.", 60, &["192.0.2.3"]),
                    owner: "heritage=ipdrift,owner=x".into(),
                    proxied: None,
                },
            ],
        );
        assert_eq!(
            steps,
            vec![
                Step::Create {
                    name: "new".into(),
                    rtype: "A",
                    ttl: 60,
                    values: vec!["192.0.2.3".into()]
                },
                Step::Create {
                    name: "_ipdrift.new".into(),
                    rtype: "TXT",
                    ttl: 60,
                    values: vec!["\"heritage=ipdrift,owner=x\"".into()]
                },
                Step::Delete {
                    name: "old".into(),
                    rtype: "A"
                },
                Step::Delete {
                    name: "_ipdrift.old".into(),
                    rtype: "TXT"
                },
            ]
        );
    }

    #[test]
    fn names_are_relative_and_urls_name_the_rrset() {
        assert_eq!(relative_name(&zone(), &zone()), "@");
        assert_eq!(
            relative_name(&zone(), &validate::dns_name("WWW.example.com.").unwrap()),
            "www"
        );
        let target = HetznerDnsTarget::new(
            "hz",
            zone(),
            &Url::parse(DEFAULT_ENDPOINT).unwrap(),
            Token::new("t").unwrap(),
            HttpOptions::new(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(
            target.rrset_url("@", "A", Some("set_records")).as_str(),
            "https://api.hetzner.cloud/v1/zones/example.com/rrsets/@/A/actions/set_records"
        );
    }
}
