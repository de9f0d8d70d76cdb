//! `kind = "gcp_dns"`: a Google Cloud DNS managed zone, through the Cloud DNS API v1
//! (<https://cloud.google.com/dns/docs/reference/rest/v1>).
//!
//! - Reading lists the zone's record sets (`resourceRecordSets.list`, `maxResults=1000`,
//!   following `nextPageToken`; dns.resourceRecordSets.list) and picks the A/AAAA sets
//!   asked for; ownership records are the TXT sets named `_ipdrift.*`. A listing that fails
//!   on any page is an error, never an empty zone.
//! - Writing is one `changes.create` per batch (dns.changes.create), which Cloud DNS applies
//!   atomically: every `Replace` and `Delete` is a deletion of the record set exactly as it
//!   was read plus (for a replace) an addition; a `Create` is an addition of the set and,
//!   when the name has none yet, of its ownership TXT record. Cloud DNS refuses the whole
//!   change when a deletion no longer matches (412 conditionNotMet) or an addition exists
//!   already (409 alreadyExists): a concurrent edit is reported, never overwritten.
//! - With `wait = true`, `changes.get` is polled until the change is `done`, for at most
//!   the target's timeout.
//!
//! Errors name the target, the zone, the call and the role it needs (roles/dns.reader to
//! read, roles/dns.admin to write).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::gcp::{self, GcpAuth, GcpCredentials};
use crate::clients::http::{ApiClient, Call, HttpOptions, api_url};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::config::{Fragment, SecretAt};
use crate::dns::http_api::{quote_txt, unquote_txt};
use crate::dns::{
    DnsTarget, OWNERSHIP_LABEL, RecordChange, TargetKind, TargetSpec, ZoneContents, ownership_name,
};
use crate::inventory::gcp::is_project_id;
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};
use crate::validate;

/// The API's base URL unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://dns.googleapis.com";

/// The most record sets one page may hold.
const MAX_RESULTS: u32 = 1000;

/// The pause between two `changes.get` while waiting for `done`.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

const NEEDS_READ: &str =
    "the service account needs dns.resourceRecordSets.list on the zone, e.g. roles/dns.reader";
const NEEDS_WRITE: &str =
    "the service account needs dns.changes.create on the zone, e.g. roles/dns.admin";
const NEEDS_POLL: &str =
    "the service account needs dns.changes.get on the zone, e.g. roles/dns.reader";

pub const KIND: TargetKind = TargetKind {
    name: "gcp_dns",
    check,
};

/// A `kind = "gcp_dns"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpDnsConfig {
    pub project: String,
    /// The managed zone's name in the project (`managed_zone`), not its DNS name.
    pub managed_zone: String,
    /// After each change, poll until Cloud DNS reports it `done` (`wait`).
    pub wait: bool,
    pub auth: GcpAuth,
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGcpDns {
    project: Option<Spanned<String>>,
    managed_zone: Option<Spanned<String>>,
    wait: Option<bool>,
    credentials_file: Option<Spanned<String>>,
    metadata_host: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

/// A managed zone's name: 1–63 lower-case letters, digits and dashes, starting with a letter.
fn is_managed_zone(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawGcpDns = f.parse()?;
    let auth = gcp::check_auth(f, raw.credentials_file.as_ref(), raw.metadata_host.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let project = match &raw.project {
        None => {
            f.missing("project", "a gcp_dns target needs `project = \"my-project\"` (the project that holds the managed zone)");
            None
        }
        Some(p) if !is_project_id(p.get_ref()) => {
            f.error_at(
                p,
                "project",
                format!(
                    "{:?} is not a project id such as \"my-project-123\"",
                    p.get_ref()
                ),
            );
            None
        }
        Some(p) => Some(p.get_ref().clone()),
    };
    let managed_zone = match &raw.managed_zone {
        None => {
            f.missing("managed_zone", "a gcp_dns target needs `managed_zone = \"example-com\"` (the zone's name in Cloud DNS, as `gcloud dns managed-zones list` shows it)");
            None
        }
        Some(z) if !is_managed_zone(z.get_ref()) => {
            f.error_at(z, "managed_zone", format!("{:?} is not a managed zone name such as \"example-com\" (the name in Cloud DNS, not the DNS name)", z.get_ref()));
            None
        }
        Some(z) => Some(z.get_ref().clone()),
    };
    Some(Arc::new(GcpDnsConfig {
        project: project?,
        managed_zone: managed_zone?,
        wait: raw.wait.unwrap_or(false),
        auth: auth?,
        endpoint,
    }))
}

impl TargetSpec for GcpDnsConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let options = HttpOptions::new(timeout);
        let credentials =
            GcpCredentials::new(&self.auth, &format!("dns target {name:?}"), options)?;
        Ok(Box::new(GcpDnsTarget::new(
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

/// A record set as Cloud DNS reads and writes it (`ResourceRecordSet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rrset {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub rrdatas: Vec<String>,
    /// Geo, weighted or failover routing; ipdrift does not manage such sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_policy: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RrsetPage {
    #[serde(default)]
    rrsets: Vec<Rrset>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A `changes.create` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeBody {
    pub additions: Vec<Rrset>,
    pub deletions: Vec<Rrset>,
}

/// A `Change` as the API answers.
#[derive(Debug, Deserialize)]
struct ChangeAnswer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// One Cloud DNS managed zone.
pub struct GcpDnsTarget {
    name: String,
    zone: DnsName,
    config: GcpDnsConfig,
    credentials: GcpCredentials,
    api: ApiClient,
    /// The last listing, for deletions that must match the stored sets exactly.
    last_listing: Mutex<Option<Vec<Rrset>>>,
}

impl std::fmt::Debug for GcpDnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpDnsTarget")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("config", &self.config)
            .finish()
    }
}

impl GcpDnsTarget {
    pub fn new(
        name: String,
        zone: DnsName,
        config: GcpDnsConfig,
        credentials: GcpCredentials,
        options: HttpOptions,
    ) -> anyhow::Result<GcpDnsTarget> {
        let api = ApiClient::without_token(
            "Cloud DNS",
            format!(
                "dns target {name:?} (Cloud DNS zone {zone} = {}/{})",
                config.project, config.managed_zone
            ),
            options,
        )?
        .checking(gcp::CHECK);
        Ok(GcpDnsTarget {
            name,
            zone,
            config,
            credentials,
            api,
            last_listing: Mutex::new(None),
        })
    }

    fn zone_url(&self, rest: &[&str]) -> Url {
        let mut segments = vec![
            "dns",
            "v1",
            "projects",
            self.config.project.as_str(),
            "managedZones",
            self.config.managed_zone.as_str(),
        ];
        segments.extend_from_slice(rest);
        api_url(&self.config.endpoint, &segments)
    }

    fn who(&self) -> String {
        format!(
            "dns target {:?} (Cloud DNS zone {} = {}/{})",
            self.name, self.zone, self.config.project, self.config.managed_zone
        )
    }

    /// Every record set of the zone, page by page.
    async fn list_zone(&self) -> anyhow::Result<Vec<Rrset>> {
        self.credentials.authorize(&self.api).await?;
        let base = self.zone_url(&["rrsets"]);
        let page_url = |token: Option<&str>| {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("maxResults", &MAX_RESULTS.to_string());
            if let Some(token) = token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            url
        };
        let read = |body: RrsetPage, _: &Url| -> Result<Page<(String, Rrset)>, String> {
            Ok(Page {
                items: body
                    .rrsets
                    .into_iter()
                    .map(|r| (format!("{} {}", r.name.to_ascii_lowercase(), r.rtype), r))
                    .collect(),
                next: body
                    .next_page_token
                    .filter(|t| !t.is_empty())
                    .map(|t| NextPage::Url(page_url(Some(&t)))),
                total: None,
            })
        };
        let listing = Listing {
            noun: "record set",
            next_field: "nextPageToken",
            narrow: None,
            needs: NEEDS_READ,
            id: |item: &(String, Rrset)| item.0.as_str(),
        };
        let sets: Vec<Rrset> = self
            .api
            .list_pages(&listing, |_| page_url(None), read)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        *self
            .last_listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sets.clone());
        Ok(sets)
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.list_zone().await?;
        pick_rrsets(&listing, keys).map_err(|why| anyhow!("{}: {why}", self.who()))
    }

    async fn listing(&self) -> anyhow::Result<ZoneContents> {
        let listing = self.list_zone().await?;
        let rrsets = address_sets(&listing).map_err(|why| anyhow!("{}: {why}", self.who()))?;
        Ok(ZoneContents {
            ownership: ownership_records(&listing),
            rrsets: Some(rrsets),
            ..ZoneContents::default()
        })
    }

    async fn send_changes(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let known = self
            .last_listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let listing = match known {
            Some(listing) => listing,
            None => self.list_zone().await?,
        };
        let body = plan_change(changes, &self.zone, &listing)
            .map_err(|why| anyhow!("{}: {why}", self.who()))?;
        self.credentials.authorize(&self.api).await?;
        let what = format!(
            "changes.create ({} addition(s), {} deletion(s))",
            body.additions.len(),
            body.deletions.len()
        );
        let answer: ChangeAnswer = self
            .api
            .post_json(
                &self.zone_url(&["changes"]),
                &body,
                &Call::new(what, NEEDS_WRITE),
            )
            .await?;
        // What was read is stale now; the read-back lists afresh.
        *self
            .last_listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if !self.config.wait || answer.status.as_deref() == Some("done") {
            return Ok(());
        }
        let Some(id) = answer.id.filter(|id| !id.is_empty()) else {
            bail!(
                "{}: malformed response: changes.create answered no change id",
                self.who()
            );
        };
        let timeout = self.api.options().timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let call = Call::new(format!("changes.get {id}"), NEEDS_POLL).until(deadline);
            let change: ChangeAnswer = self
                .api
                .get_json(&self.zone_url(&["changes", &id]), &call)
                .await?;
            if change.status.as_deref() == Some("done") {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                bail!(
                    "{}: change {id} was accepted but Cloud DNS did not report it done within {}; it is still being applied. Raise controller.timeout, or set wait = false",
                    self.who(),
                    humantime::format_duration(timeout)
                );
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }
}

impl DnsTarget for GcpDnsTarget {
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
        Box::pin(self.send_changes(changes))
    }

    fn write_time_limit(&self, default: Duration) -> Duration {
        // A listing when none is known, the change, then the wait for `done`.
        if self.config.wait {
            default * 3
        } else {
            default * 2
        }
    }
}

fn same_name(listed: &str, name: &DnsName) -> bool {
    listed
        .trim_end_matches('.')
        .eq_ignore_ascii_case(name.as_str().trim_end_matches('.'))
}

/// The listed set of `key`, if any.
fn find<'l>(listing: &'l [Rrset], name: &DnsName, rtype: &str) -> Option<&'l Rrset> {
    listing
        .iter()
        .find(|r| r.rtype == rtype && same_name(&r.name, name))
}

/// A listed A/AAAA set as a [`RecordSet`]: a routing policy, a value that is not an
/// address of the type, or a missing TTL is an error naming the set.
fn record_set(key: &RecordKey, set: &Rrset) -> Result<RecordSet, String> {
    if set.routing_policy.is_some() {
        return Err(format!(
            "{key} has a routing policy (geo, weighted or failover), which ipdrift does not manage; remove the rule or make it a plain record set"
        ));
    }
    let addrs = set
        .rrdatas
        .iter()
        .map(|v| {
            v.parse::<IpAddr>()
                .ok()
                .filter(|a| key.rtype.matches(a))
                .ok_or_else(|| format!("{key} holds {v:?}, which is not an address of that type"))
        })
        .collect::<Result<BTreeSet<IpAddr>, String>>()?;
    let ttl = set.ttl.ok_or_else(|| format!("{key} has no TTL"))?;
    Ok(RecordSet {
        key: key.clone(),
        ttl,
        addrs,
    })
}

/// The record sets for `keys` in a zone listing.
fn pick_rrsets(listing: &[Rrset], keys: &[RecordKey]) -> Result<Vec<RecordSet>, String> {
    let wanted: BTreeSet<&RecordKey> = keys.iter().collect();
    let mut found = Vec::new();
    for key in wanted {
        if let Some(set) = find(listing, &key.name, key.rtype.as_str()) {
            found.push(record_set(key, set)?);
        }
    }
    Ok(found)
}

/// Every A and AAAA set of the listing whose name is valid; a set ipdrift cannot read as
/// plain addresses is left out here (it is refused when a rule names it).
fn address_sets(listing: &[Rrset]) -> Result<Vec<RecordSet>, String> {
    let mut sets = Vec::new();
    for set in listing {
        let rtype = match set.rtype.as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            _ => continue,
        };
        let Ok(name) = validate::dns_name(&set.name.to_ascii_lowercase()) else {
            continue;
        };
        let key = RecordKey { name, rtype };
        if let Ok(parsed) = record_set(&key, set) {
            sets.push(parsed);
        }
    }
    Ok(sets)
}

/// Managed name → ownership text, from the TXT sets named `_ipdrift.<name>`.
fn ownership_records(listing: &[Rrset]) -> BTreeMap<DnsName, String> {
    let mut ownership = BTreeMap::new();
    for set in listing.iter().filter(|s| s.rtype == "TXT") {
        let name = set.name.to_ascii_lowercase();
        let Some((label, managed)) = name.split_once('.') else {
            continue;
        };
        if label != OWNERSHIP_LABEL {
            continue;
        }
        let Ok(managed) = validate::dns_name(managed) else {
            continue;
        };
        let mut texts: Vec<String> = set.rrdatas.iter().map(|r| unquote_txt(r)).collect();
        texts.sort();
        ownership.insert(managed, texts.join("\n"));
    }
    ownership
}

fn rrset_of(set: &RecordSet) -> Rrset {
    Rrset {
        name: set.key.name.as_str().to_string(),
        rtype: set.key.rtype.as_str().to_string(),
        ttl: Some(set.ttl),
        rrdatas: set.addrs.iter().map(IpAddr::to_string).collect(),
        routing_policy: None,
    }
}

/// The one `changes.create` for `changes`, given the zone as last listed: deletions are
/// the stored sets exactly (Cloud DNS refuses a deletion that does not match), additions
/// the new sets and each new name's ownership record.
pub fn plan_change(
    changes: &[RecordChange],
    zone: &DnsName,
    listing: &[Rrset],
) -> Result<ChangeBody, String> {
    let mut body = ChangeBody::default();
    let mut seen = BTreeSet::new();
    let mut owners: BTreeMap<&DnsName, (&str, u32)> = BTreeMap::new();
    let mut deleted_names = BTreeSet::new();
    for change in changes {
        let key = change.key();
        if !seen.insert(key) {
            return Err(format!(
                "{key} is changed twice in one batch; the plan must hold one change per record set"
            ));
        }
        if !key.name.is_in_zone(zone) {
            return Err(format!(
                "refusing to send {key}: it is outside zone {zone} (check the record name or the target's zone)"
            ));
        }
        validate::dns_name(key.name.as_str())
            .map_err(|why| format!("refusing to send {key}: {why}"))?;
        let stored = find(listing, &key.name, key.rtype.as_str());
        match change {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. }
                if to.addrs.is_empty() =>
            {
                return Err(format!(
                    "refusing to send {key}: a record set needs at least one address"
                ));
            }
            RecordChange::Replace { from, to } => {
                // The set as stored; when it was not there at the read, one created
                // meanwhile makes the addition fail (409), which is what should happen.
                match (stored, from) {
                    (Some(set), _) => body.deletions.push(set.clone()),
                    (None, Some(from)) => body.deletions.push(rrset_of(from)),
                    (None, None) => {}
                }
                body.additions.push(rrset_of(to));
            }
            RecordChange::Create { to, owner, .. } => {
                body.additions.push(rrset_of(to));
                owners.entry(&key.name).or_insert((owner.as_str(), to.ttl));
            }
            RecordChange::Delete { from } => {
                body.deletions
                    .push(stored.cloned().unwrap_or_else(|| rrset_of(from)));
                deleted_names.insert(&key.name);
            }
        }
    }
    for (name, (owner, ttl)) in &owners {
        let ownership = ownership_name(name);
        match find(listing, &ownership, "TXT") {
            // Owned already (another type at the name): kept as it is.
            Some(set) if set.rrdatas.iter().any(|r| unquote_txt(r) == *owner) => {}
            Some(other) => {
                return Err(format!(
                    "not creating records at {name}: {ownership} holds {:?}, not this controller's ownership text",
                    other
                        .rrdatas
                        .iter()
                        .map(|r| unquote_txt(r))
                        .collect::<Vec<_>>()
                ));
            }
            None => body.additions.push(Rrset {
                name: ownership.as_str().to_string(),
                rtype: "TXT".into(),
                ttl: Some(*ttl),
                rrdatas: vec![quote_txt(owner)],
                routing_policy: None,
            }),
        }
    }
    for name in deleted_names
        .into_iter()
        .filter(|n| !owners.contains_key(n))
    {
        // The name keeps its ownership record while ipdrift still has another set there.
        let others_left = listing.iter().any(|r| {
            same_name(&r.name, name)
                && (r.rtype == "A" || r.rtype == "AAAA")
                && !body
                    .deletions
                    .iter()
                    .any(|d| d.rtype == r.rtype && same_name(&d.name, name))
        });
        if others_left {
            continue;
        }
        let ownership = ownership_name(name);
        let set = find(listing, &ownership, "TXT").ok_or_else(|| {
            format!("not deleting {name}: its ownership record {ownership} is gone since it was read, so ipdrift may no longer own it")
        })?;
        body.deletions.push(set.clone());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    fn set(text: &str, rtype: RecordType, ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: name(text),
                rtype,
            },
            ttl,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn listed(text: &str, rtype: &str, ttl: u32, values: &[&str]) -> Rrset {
        Rrset {
            name: text.into(),
            rtype: rtype.into(),
            ttl: Some(ttl),
            rrdatas: values.iter().map(|v| v.to_string()).collect(),
            routing_policy: None,
        }
    }

    /// A page shaped like the example of `resourceRecordSets.list` in the Cloud DNS reference.
    #[test]
    fn a_documented_page_reads_as_record_sets_and_ownership() {
        let page: RrsetPage = serde_json::from_str(r#"{
          "kind": "dns#resourceRecordSetsListResponse",
          "rrsets": [
            {"kind": "dns#resourceRecordSet", "name": "example.com.", "type": "SOA", "ttl": 21600, "rrdatas": ["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"]},
            {"kind": "dns#resourceRecordSet", "name": "www.example.com.", "type": "A", "ttl": 300, "rrdatas": ["192.0.2.2", "192.0.2.1"]},
            {"kind": "dns#resourceRecordSet", "name": "_ipdrift.web-01.example.com.", "type": "TXT", "ttl": 300, "rrdatas": ["\"heritage=ipdrift,owner=ipdrift\""]},
            {"kind": "dns#resourceRecordSet", "name": "geo.example.com.", "type": "A", "ttl": 300, "routingPolicy": {"geo": {"items": [{"location": "us-east1", "rrdatas": ["192.0.2.9"]}]}}}
          ],
          "nextPageToken": "CkEKP3d3dy5leGFtcGxlLmNvbS4"
        }"#).unwrap();
        assert_eq!(
            page.next_page_token.as_deref(),
            Some("CkEKP3d3dy5leGFtcGxlLmNvbS4")
        );
        let www = set("www.example.com.", RecordType::A, 0, &[]).key;
        assert_eq!(
            pick_rrsets(&page.rrsets, std::slice::from_ref(&www)).unwrap(),
            vec![set(
                "www.example.com.",
                RecordType::A,
                300,
                &["192.0.2.1", "192.0.2.2"]
            )]
        );
        let geo = set("geo.example.com.", RecordType::A, 0, &[]).key;
        assert!(
            pick_rrsets(&page.rrsets, &[geo])
                .unwrap_err()
                .contains("routing policy")
        );
        assert_eq!(
            ownership_records(&page.rrsets)[&name("web-01.example.com.")],
            "heritage=ipdrift,owner=ipdrift"
        );
        assert_eq!(
            address_sets(&page.rrsets).unwrap().len(),
            1,
            "the geo set is left out"
        );
    }

    #[test]
    fn one_change_deletes_what_is_stored_and_adds_sets_with_their_ownership() {
        let zone = name("example.com.");
        let owner = "heritage=ipdrift,owner=ipdrift".to_string();
        let listing = vec![
            listed("www.example.com.", "A", 300, &["192.0.2.1"]),
            listed("web-09.example.com.", "A", 60, &["198.51.100.9"]),
            listed(
                "_ipdrift.web-09.example.com.",
                "TXT",
                60,
                &["\"heritage=ipdrift,owner=ipdrift\""],
            ),
        ];
        let changes = vec![
            RecordChange::Replace {
                from: Some(set("www.example.com.", RecordType::A, 300, &["192.0.2.1"])),
                to: set("www.example.com.", RecordType::A, 300, &["192.0.2.8"]),
            },
            RecordChange::Create {
                to: set("web-03.example.com.", RecordType::A, 60, &["198.51.100.3"]),
                owner: owner.clone(),
                proxied: None,
            },
            RecordChange::Create {
                to: set(
                    "web-03.example.com.",
                    RecordType::Aaaa,
                    60,
                    &["2001:db8::3"],
                ),
                owner,
                proxied: None,
            },
            RecordChange::Delete {
                from: set("web-09.example.com.", RecordType::A, 60, &["198.51.100.9"]),
            },
        ];
        let body = plan_change(&changes, &zone, &listing).unwrap();
        let shown = |sets: &[Rrset]| {
            sets.iter()
                .map(|s| format!("{} {} {}", s.name, s.rtype, s.rrdatas.join(",")))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&body.deletions),
            [
                "www.example.com. A 192.0.2.1",
                "web-09.example.com. A 198.51.100.9",
                "_ipdrift.web-09.example.com. TXT \"heritage=ipdrift,owner=ipdrift\""
            ]
        );
        assert_eq!(
            shown(&body.additions),
            [
                "www.example.com. A 192.0.2.8",
                "web-03.example.com. A 198.51.100.3",
                "web-03.example.com. AAAA 2001:db8::3",
                "_ipdrift.web-03.example.com. TXT \"heritage=ipdrift,owner=ipdrift\""
            ]
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["additions"][0]["ttl"], 300);
        assert!(json["additions"][0].get("routingPolicy").is_none());
    }

    #[test]
    fn a_deletion_whose_ownership_vanished_is_refused() {
        let zone = name("example.com.");
        let listing = vec![listed("web-09.example.com.", "A", 60, &["198.51.100.9"])];
        let e = plan_change(
            &[RecordChange::Delete {
                from: set("web-09.example.com.", RecordType::A, 60, &["198.51.100.9"]),
            }],
            &zone,
            &listing,
        )
        .unwrap_err();
        assert!(e.contains("ownership record"), "{e}");
        let outside = RecordChange::Replace {
            from: None,
            to: set("www.example.org.", RecordType::A, 60, &["192.0.2.1"]),
        };
        assert!(
            plan_change(&[outside], &zone, &[])
                .unwrap_err()
                .contains("outside zone")
        );
    }
}
