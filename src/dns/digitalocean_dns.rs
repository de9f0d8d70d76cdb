//! `kind = "digitalocean_dns"`: a domain in DigitalOcean's DNS through its v2 API
//! (<https://docs.digitalocean.com/reference/api/digitalocean/#tag/Domain-Records>).
//!
//! - Reading lists every domain record (`GET /v2/domains/{domain}/records`, every page via
//!   `links.pages.next`, counted against `meta.total`); records come one by one, with names
//!   relative to the domain (`@` for the apex), and are grouped here into record sets.
//! - Writing has no batch call: each change is one call per record — `PUT` of an existing
//!   record to a new address or TTL, `POST` of a new one, then `DELETE`s last, so a record set
//!   is never empty between calls. A pass is therefore not atomic: a failure midway leaves
//!   the calls made so far, which the next pass reads and completes.
//! - Rate limit: 5 000 requests an hour, 250 a minute; `clients/http` keeps to the
//!   `ratelimit-remaining`/`ratelimit-reset` headers and honours `Retry-After`.
//!
//! Errors name the target, the domain, the call and the token scope (`domain:read`, or
//! `domain:create`, `domain:update`, `domain:delete`) — never the token.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
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
use crate::inventory::digitalocean::{DEFAULT_ENDPOINT, next_page};
use crate::model::{DnsName, RecordKey, RecordSet};

pub const KIND: TargetKind = TargetKind {
    name: "digitalocean_dns",
    check,
};

/// Records per page: the API's maximum.
const PER_PAGE: u32 = 200;

const READ: &str = "the token needs the domain:read scope";
const WRITE: &str = "the token needs the domain:create, domain:update and domain:delete scopes";

/// A `kind = "digitalocean_dns"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitalOceanDnsConfig {
    pub token: SecretAt,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigitalOceanDns {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawDigitalOceanDns = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    Some(Arc::new(DigitalOceanDnsConfig {
        token: token?,
        endpoint,
    }))
}

impl TargetSpec for DigitalOceanDnsConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let token =
            Token::load(&self.token.secret).map_err(|e| anyhow!("dns target {name:?}.{e}"))?;
        Ok(Box::new(DigitalOceanDnsTarget::new(
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

/// A domain record as listed.
#[derive(Debug, Clone, Deserialize)]
struct DomainRecord {
    id: u64,
    /// `id` as text, for the listing's check that no record is listed twice.
    #[serde(skip)]
    id_text: String,
    #[serde(rename = "type")]
    rtype: String,
    name: String,
    data: String,
    ttl: u32,
}

#[derive(Debug, Deserialize)]
struct RecordsPage {
    domain_records: Vec<DomainRecord>,
    links: Option<Links>,
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Links {
    pages: Option<Pages>,
}

#[derive(Debug, Deserialize)]
struct Pages {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    total: u64,
}

/// A record to create, or the new data and TTL of one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
struct RecordBody {
    #[serde(rename = "type")]
    rtype: &'static str,
    name: String,
    data: String,
    ttl: u32,
}

/// One call of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Put { id: u64, body: RecordBody },
    Post(RecordBody),
    Delete { id: u64, what: String },
}

/// One DigitalOcean domain.
pub struct DigitalOceanDnsTarget {
    name: String,
    zone: DnsName,
    client: ApiClient,
    records: Url,
}

impl DigitalOceanDnsTarget {
    pub fn new(
        name: &str,
        zone: DnsName,
        endpoint: &Url,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<Self> {
        let domain = zone.as_str().trim_end_matches('.').to_string();
        let owner = format!("dns target {name:?} (DigitalOcean domain {domain})");
        Ok(DigitalOceanDnsTarget {
            name: name.to_string(),
            client: ApiClient::new("DigitalOcean", owner, token, options)?,
            records: api_url(endpoint, &["v2", "domains", &domain, "records"]),
            zone,
        })
    }

    fn who(&self) -> String {
        format!(
            "dns target {:?} (DigitalOcean domain {})",
            self.name, self.zone
        )
    }

    /// Every record of the domain, every page, or an error.
    async fn list_records(&self) -> anyhow::Result<Vec<DomainRecord>> {
        let listing = Listing {
            noun: "domain record",
            next_field: "links.pages.next",
            narrow: None,
            needs: READ,
            id: |r: &DomainRecord| r.id_text.as_str(),
        };
        let read = |body: RecordsPage, url: &Url| {
            let next = match body
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .filter(|n| !n.is_empty())
            {
                None => None,
                Some(link) => Some(NextPage::Number(
                    next_page(url, &link)
                        .ok_or_else(|| format!("links.pages.next {link:?} names no page"))?,
                )),
            };
            let items = body
                .domain_records
                .into_iter()
                .map(|r| DomainRecord {
                    id_text: r.id.to_string(),
                    ..r
                })
                .collect();
            Ok(Page {
                items,
                next,
                total: body.meta.map(|m| m.total),
            })
        };
        self.client
            .list_pages(
                &listing,
                |page| page_url(&self.records, PER_PAGE, page, None),
                read,
            )
            .await
    }

    async fn listing(&self) -> anyhow::Result<Vec<ListedSet>> {
        Ok(grouped(&self.zone, &self.list_records().await?))
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.listing().await?;
        http_api::pick_rrsets(&listing, keys).map_err(|why| anyhow!("{}: {why}", self.who()))
    }

    async fn send(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        http_api::check_batch(changes, &self.zone)
            .map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let records = self.list_records().await?;
        let steps = steps(&self.zone, changes, &records);
        let total = steps.len();
        for (n, step) in steps.into_iter().enumerate() {
            let progress = format!("call {} of {total}", n + 1);
            let failed = |e: anyhow::Error| {
                anyhow!(
                    "{e:#} ({progress}; the calls before it were made, the next pass completes the rest)"
                )
            };
            match step {
                Step::Put { id, body } => {
                    let url = api_url(&self.records, &[&id.to_string()]);
                    let call = Call::new(
                        format!("update of {} {} (record {id})", body.name, body.rtype),
                        WRITE,
                    );
                    self.client
                        .put_json::<_, serde_json::Value>(&url, &body, &call)
                        .await
                        .map_err(failed)?;
                }
                Step::Post(body) => {
                    let call = Call::new(format!("create of {} {}", body.name, body.rtype), WRITE);
                    self.client
                        .post_json::<_, serde_json::Value>(&self.records, &body, &call)
                        .await
                        .map_err(failed)?;
                }
                Step::Delete { id, what } => {
                    let url = api_url(&self.records, &[&id.to_string()]);
                    let call = Call::new(format!("delete of {what} (record {id})"), WRITE);
                    self.client
                        .delete::<()>(&url, &call)
                        .await
                        .map_err(failed)?;
                }
            }
        }
        Ok(())
    }
}

/// The record's full name: `@` is the apex, other names are relative to the domain.
fn full_name(zone: &DnsName, relative: &str) -> String {
    if relative == "@" || relative.is_empty() {
        zone.as_str().to_string()
    } else {
        format!("{}.{}", relative.trim_end_matches('.'), zone.as_str())
    }
}

/// A name as the API writes it: relative to the domain, `@` for the apex.
fn relative_name(zone: &DnsName, name: &DnsName) -> String {
    if name == zone {
        return "@".into();
    }
    name.as_str()
        .strip_suffix(zone.as_str())
        .map(|s| s.trim_end_matches('.').to_string())
        .unwrap_or_else(|| name.as_str().to_string())
}

fn grouped(zone: &DnsName, records: &[DomainRecord]) -> Vec<ListedSet> {
    let mut sets: BTreeMap<(String, String), ListedSet> = BTreeMap::new();
    for r in records {
        let name = full_name(zone, &r.name);
        let set = sets
            .entry((name.to_ascii_lowercase(), r.rtype.to_ascii_uppercase()))
            .or_insert_with(|| ListedSet {
                name: name.clone(),
                rtype: r.rtype.to_ascii_uppercase(),
                ttl: r.ttl,
                values: Vec::new(),
                special: None,
            });
        set.values.push(r.data.clone());
        set.ttl = set.ttl.min(r.ttl);
    }
    sets.into_values().collect()
}

fn records_at<'r>(
    zone: &DnsName,
    records: &'r [DomainRecord],
    name: &DnsName,
    rtype: &str,
) -> Vec<&'r DomainRecord> {
    records
        .iter()
        .filter(|r| {
            r.rtype.eq_ignore_ascii_case(rtype)
                && http_api::same_name(&full_name(zone, &r.name), name)
        })
        .collect()
}

/// The calls for `changes` given the domain's `records`: per record set, records whose
/// address stays are kept (or their TTL put), the others put to a new address while any
/// is left, new addresses posted; the deletes of every set and ownership record come last.
fn steps(zone: &DnsName, changes: &[RecordChange], records: &[DomainRecord]) -> Vec<Step> {
    let mut early = Vec::new();
    let mut late = Vec::new();
    for change in changes {
        let key = change.key();
        let rtype = key.rtype.as_str();
        let name = relative_name(zone, &key.name);
        let (to, ttl): (BTreeSet<IpAddr>, u32) = match change {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => {
                (to.addrs.clone(), to.ttl)
            }
            RecordChange::Delete { .. } => (BTreeSet::new(), 0),
        };
        let current = records_at(zone, records, &key.name, rtype);
        let mut new: Vec<IpAddr> = to
            .iter()
            .filter(|a| {
                !current
                    .iter()
                    .any(|r| r.data.parse::<IpAddr>().ok() == Some(**a))
            })
            .copied()
            .collect();
        let body = |addr: IpAddr| RecordBody {
            rtype,
            name: name.clone(),
            data: addr.to_string(),
            ttl,
        };
        for r in &current {
            match r.data.parse::<IpAddr>().ok().filter(|a| to.contains(a)) {
                Some(kept) if r.ttl != ttl => early.push(Step::Put {
                    id: r.id,
                    body: body(kept),
                }),
                Some(_) => {}
                None => match new.pop() {
                    Some(addr) => early.push(Step::Put {
                        id: r.id,
                        body: body(addr),
                    }),
                    None => late.push(Step::Delete {
                        id: r.id,
                        what: format!("{key} {}", r.data),
                    }),
                },
            }
        }
        early.extend(new.into_iter().map(|addr| Step::Post(body(addr))));
    }
    let (created, disowned) = http_api::ownership_changes(changes);
    for (name, (text, ttl)) in created {
        early.push(Step::Post(RecordBody {
            rtype: "TXT",
            name: relative_name(zone, &ownership_name(&name)),
            data: text,
            ttl,
        }));
    }
    for name in disowned {
        let owner = ownership_name(&name);
        for r in records_at(zone, records, &owner, "TXT") {
            late.push(Step::Delete {
                id: r.id,
                what: format!("{owner} TXT"),
            });
        }
    }
    early.extend(late);
    early
}

impl DnsTarget for DigitalOceanDnsTarget {
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

    /// One call per record: a batch takes as many calls as it has records.
    fn write_time_limit(&self, default: Duration) -> Duration {
        default * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn zone() -> DnsName {
        validate::dns_name("example.com.").unwrap()
    }

    fn record(id: u64, rtype: &str, name: &str, data: &str) -> DomainRecord {
        DomainRecord {
            id,
            id_text: id.to_string(),
            rtype: rtype.into(),
            name: name.into(),
            data: data.into(),
            ttl: 60,
        }
    }

    fn set(name: &str, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: validate::dns_name(name).unwrap(),
                rtype: crate::model::RecordType::A,
            },
            ttl: 60,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn relative_names_map_to_full_names_and_back() {
        assert_eq!(full_name(&zone(), "@"), "example.com.");
        assert_eq!(full_name(&zone(), "www"), "www.example.com.");
        assert_eq!(relative_name(&zone(), &zone()), "@");
        assert_eq!(
            relative_name(
                &zone(),
                &validate::dns_name("_ipdrift.www.example.com.").unwrap()
            ),
            "_ipdrift.www"
        );
    }

    #[test]
    fn an_update_puts_records_in_place_and_deletes_only_what_is_left_over_last() {
        let records = vec![
            record(1, "A", "www", "192.0.2.1"),
            record(2, "A", "www", "192.0.2.2"),
            record(3, "A", "static", "192.0.2.99"),
        ];
        let change = RecordChange::Replace {
            from: None,
            to: set("www.example.com.", &["198.51.100.1"]),
        };
        let steps = steps(&zone(), &[change], &records);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(
            matches!(&steps[0], Step::Put { id: _, body } if body.data == "198.51.100.1" && body.name == "www")
        );
        assert!(
            matches!(&steps[1], Step::Delete { .. }),
            "the delete comes last: {steps:?}"
        );
    }

    #[test]
    fn a_create_posts_its_addresses_and_its_ownership_record() {
        let change = RecordChange::Create {
            to: set("web-03.example.com.", &["192.0.2.3"]),
            owner: "heritage=ipdrift,owner=x".into(),
            proxied: None,
        };
        let steps = steps(&zone(), &[change], &[]);
        assert_eq!(
            steps,
            vec![
                Step::Post(RecordBody {
                    rtype: "A",
                    name: "web-03".into(),
                    data: "192.0.2.3".into(),
                    ttl: 60
                }),
                Step::Post(RecordBody {
                    rtype: "TXT",
                    name: "_ipdrift.web-03".into(),
                    data: "heritage=ipdrift,owner=x".into(),
                    ttl: 60
                }),
            ]
        );
    }

    #[test]
    fn a_delete_removes_the_set_and_its_ownership_record() {
        let records = vec![
            record(7, "A", "web-03", "192.0.2.3"),
            record(8, "TXT", "_ipdrift.web-03", "heritage=ipdrift,owner=x"),
        ];
        let change = RecordChange::Delete {
            from: set("web-03.example.com.", &["192.0.2.3"]),
        };
        let ids: Vec<u64> = steps(&zone(), &[change], &records)
            .iter()
            .map(|s| match s {
                Step::Delete { id, .. } => *id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![7, 8]);
    }

    #[test]
    fn listings_group_records_into_sets_with_full_names() {
        let listing = grouped(
            &zone(),
            &[
                record(1, "A", "www", "192.0.2.1"),
                record(2, "A", "www", "192.0.2.2"),
                record(3, "TXT", "_ipdrift.www", "heritage=ipdrift,owner=x"),
            ],
        );
        let contents = http_api::zone_contents(&listing);
        let rrsets = contents.rrsets.unwrap();
        assert_eq!(rrsets.len(), 1);
        assert_eq!(rrsets[0].addrs.len(), 2);
        assert_eq!(
            contents.ownership[&validate::dns_name("www.example.com.").unwrap()],
            "heritage=ipdrift,owner=x"
        );
    }
}
