//! `kind = "route53"`: an AWS Route 53 hosted zone, with the official AWS SDK (feature
//! `aws`).
//!
//! - Reading lists the zone's record sets (ListResourceRecordSets, every page) and picks
//!   the A/AAAA sets asked for; ownership records are the TXT sets named `_ipdrift.*`.
//! - Writing is one ChangeResourceRecordSets batch per call, which Route 53 applies
//!   atomically: a `Replace` is an UPSERT; a `Create` is an UPSERT of the set and of its
//!   ownership TXT record (UPSERT, not CREATE, so that it also works against moto, whose
//!   CREATE of an existing set adds a duplicate); a `Delete` is a DELETE of the set with
//!   its exact current values and of its ownership record with its exact current value,
//!   read just before — a record set whose ownership record vanished is not deleted.
//! - With `wait = true`, GetChange is polled until the change is INSYNC (served by every
//!   Route 53 name server), for at most the target's timeout.
//! - Without `zone_id`, the zone is looked up by name once (ListHostedZonesByName).
//!
//! Errors name the target, the zone, the call and the IAM permission it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use serde::Deserialize;
use tokio::sync::OnceCell;
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::aws::{AwsAccess, check_access, explain, sdk_config};
use crate::config::Fragment;
use crate::dns::http_api::{quote_txt, unquote_txt};
use crate::dns::{
    DnsTarget, OWNERSHIP_LABEL, RecordChange, TargetKind, TargetSpec, ownership_name,
};
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};
use crate::validate;

/// The most record sets ListResourceRecordSets returns per page.
const PAGE_SIZE: i32 = 300;

pub const KIND: TargetKind = TargetKind {
    name: "route53",
    check,
};

/// Route 53 is global; its API is signed for this region unless `region` says otherwise.
pub const DEFAULT_ROUTE53_REGION: &str = "us-east-1";

/// A `kind = "route53"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route53Config {
    pub access: AwsAccess,
    /// The hosted zone's id (`zone_id`); `None`: looked up by the zone's name.
    pub zone_id: Option<String>,
    /// After each change, poll until Route 53 reports it INSYNC (`wait`).
    pub wait: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute53 {
    zone_id: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    wait: Option<bool>,
    region: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawRoute53 = f.parse()?;
    let zone_id = match &raw.zone_id {
        None => None,
        Some(id) => {
            // The API hands ids out as `/hostedzone/Z…`; either form is accepted.
            let text = id.get_ref().trim();
            let bare = text.strip_prefix("/hostedzone/").unwrap_or(text);
            if bare.is_empty()
                || bare.len() > 32
                || !bare.chars().all(|ch| ch.is_ascii_alphanumeric())
            {
                f.error_at(
                    id,
                    "zone_id",
                    format!("{text:?} is not a hosted zone id such as \"Z0123456789ABCDEFGHIJ\" (letters and digits)"),
                );
                return None;
            }
            Some(bare.to_string())
        }
    };
    let access = check_access(
        f,
        raw.region.as_ref(),
        raw.endpoint.as_ref(),
        raw.profile.as_ref(),
        DEFAULT_ROUTE53_REGION,
    )?;
    Some(Arc::new(Route53Config {
        access,
        zone_id,
        wait: raw.wait.unwrap_or(false),
    }))
}

impl TargetSpec for Route53Config {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        Ok(Box::new(Route53Target::new(
            name.to_string(),
            zone.clone(),
            self.zone_id.clone(),
            self.access.clone(),
            self.wait,
            timeout,
        )))
    }
}

/// The most pages one zone listing may have: a guard against pagination that never ends.
const MAX_PAGES: u32 = 1000;

/// The longest pause between two GetChange calls while waiting for INSYNC.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One Route 53 hosted zone.
pub struct Route53Target {
    name: String,
    zone: DnsName,
    access: AwsAccess,
    /// From config, or looked up by the zone's name on first use.
    zone_id: OnceCell<String>,
    wait: bool,
    timeout: Duration,
    client: OnceCell<Client>,
}

impl std::fmt::Debug for Route53Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Target")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("zone_id", &self.zone_id.get())
            .field("access", &self.access)
            .field("wait", &self.wait)
            .finish()
    }
}

/// One zone listing: the record sets ipdrift reads, as Route 53 returns them.
type Listing = Vec<ResourceRecordSet>;

impl Route53Target {
    /// `zone_id` as in config (`None`: look it up by `zone`); `timeout` limits each attempt
    /// of each call, and the wait for INSYNC.
    pub fn new(
        name: String,
        zone: DnsName,
        zone_id: Option<String>,
        access: AwsAccess,
        wait: bool,
        timeout: Duration,
    ) -> Route53Target {
        Route53Target {
            name,
            zone,
            access,
            zone_id: OnceCell::new_with(zone_id),
            wait,
            timeout,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(&sdk_config(&self.access, self.timeout).await) })
            .await
    }

    /// `dns target "r53" (Route 53 zone example.com. Z123…)`: how errors name this target.
    fn who(&self) -> String {
        let id = self
            .zone_id
            .get()
            .map(|id| format!(" {id}"))
            .unwrap_or_default();
        let at = self
            .access
            .endpoint
            .as_ref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        format!(
            "dns target {:?} (Route 53 zone {}{id}{at})",
            self.name, self.zone
        )
    }

    async fn zone_id(&self) -> anyhow::Result<&str> {
        self.zone_id
            .get_or_try_init(|| self.look_up_zone())
            .await
            .map(String::as_str)
    }

    /// The id of the one hosted zone named like the target's zone.
    async fn look_up_zone(&self) -> anyhow::Result<String> {
        let output = self
            .client()
            .await
            .list_hosted_zones_by_name()
            .dns_name(self.zone.as_str())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{}: {}",
                    self.who(),
                    explain(
                        &e,
                        "looking the zone up (ListHostedZonesByName)",
                        "route53:ListHostedZonesByName"
                    )
                )
            })?;
        let ids: Vec<&str> = output
            .hosted_zones()
            .iter()
            .filter(|z| same_name(z.name(), self.zone.as_str()))
            .map(|z| bare_zone_id(z.id()))
            .collect();
        match ids.as_slice() {
            [id] => Ok(id.to_string()),
            [] => bail!(
                "{}: the account has no hosted zone named {}; check `zone` (and the credentials' account), or give `zone_id`",
                self.who(),
                self.zone
            ),
            several => bail!(
                "{}: {} hosted zones are named {} ({}), e.g. a public and a private one; say which with `zone_id`",
                self.who(),
                several.len(),
                self.zone,
                several.join(", ")
            ),
        }
    }

    /// Every record set of the zone, page by page.
    async fn list_zone(&self) -> anyhow::Result<Listing> {
        let zone_id = self.zone_id().await?;
        let client = self.client().await;
        let mut sets = Vec::new();
        let mut start: Option<(String, RrType, Option<String>)> = None;
        for page in 1..=MAX_PAGES {
            let mut request = client
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .max_items(PAGE_SIZE);
            if let Some((name, rtype, identifier)) = start.take() {
                request = request
                    .start_record_name(name)
                    .start_record_type(rtype)
                    .set_start_record_identifier(identifier);
            }
            let output = request.send().await.map_err(|e| {
                anyhow!(
                    "{}: {}",
                    self.who(),
                    explain(
                        &e,
                        &format!("ListResourceRecordSets page {page}"),
                        "route53:ListResourceRecordSets"
                    )
                )
            })?;
            sets.extend(output.resource_record_sets().iter().cloned());
            if !output.is_truncated() {
                return Ok(sets);
            }
            let (Some(name), Some(rtype)) = (output.next_record_name(), output.next_record_type())
            else {
                bail!(
                    "{}: malformed response: ListResourceRecordSets page {page} is truncated but names no next record",
                    self.who()
                );
            };
            start = Some((
                name.to_string(),
                rtype.clone(),
                output.next_record_identifier().map(str::to_string),
            ));
        }
        bail!(
            "{}: the zone listing has more than {MAX_PAGES} pages of {PAGE_SIZE} record sets",
            self.who()
        )
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.list_zone().await?;
        pick_rrsets(&listing, keys).map_err(|why| anyhow!("{}: {why}", self.who()))
    }

    async fn list_ownership(&self) -> anyhow::Result<BTreeMap<DnsName, String>> {
        Ok(ownership_records(&self.list_zone().await?))
    }

    async fn send_changes(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let planned =
            plan_batch(changes, &self.zone).map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let mut batch = planned.changes;
        if !planned.disowned.is_empty() {
            // Deleting the ownership record needs its exact current value.
            let owned = self.list_zone().await?;
            for name in &planned.disowned {
                let ownership = ownership_name(name);
                let current = owned
                    .iter()
                    .find(|s| *s.r#type() == RrType::Txt && same_name(s.name(), ownership.as_str()))
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: not deleting {name}: its ownership record {ownership} is gone since it was read, so ipdrift may no longer own it",
                            self.who()
                        )
                    })?;
                batch.insert(0, change(ChangeAction::Delete, current.clone()));
            }
        }
        let zone_id = self.zone_id().await?;
        let change_batch = ChangeBatch::builder()
            .comment(format!("ipdrift: {} change(s)", changes.len()))
            .set_changes(Some(batch))
            .build()
            .map_err(|e| anyhow!("{}: building the change batch: {e}", self.who()))?;
        let output = self
            .client()
            .await
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(change_batch)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{}: {}",
                    self.who(),
                    explain(
                        &e,
                        "ChangeResourceRecordSets",
                        "route53:ChangeResourceRecordSets"
                    )
                )
            })?;
        let Some(info) = output.change_info() else {
            bail!("{}: malformed response: no ChangeInfo", self.who());
        };
        if !self.wait || *info.status() == ChangeStatus::Insync {
            return Ok(());
        }
        let change_id = info.id().to_string();
        let client = self.client().await;
        let poll = || async {
            client
                .get_change()
                .id(&change_id)
                .send()
                .await
                .map(|o| {
                    o.change_info()
                        .is_some_and(|i| *i.status() == ChangeStatus::Insync)
                })
                .map_err(|e| {
                    anyhow!(
                        "{}: {}",
                        self.who(),
                        explain(&e, &format!("GetChange {change_id}"), "route53:GetChange")
                    )
                })
        };
        if wait_until_insync(poll, self.timeout, POLL_INTERVAL).await? {
            Ok(())
        } else {
            bail!(
                "{}: change {change_id} was accepted but Route 53 did not report it INSYNC within {}; it is still propagating. Raise controller.timeout, or set wait = false",
                self.who(),
                humantime::format_duration(self.timeout)
            )
        }
    }
}

impl DnsTarget for Route53Target {
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
        Box::pin(self.list_ownership())
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_changes(changes))
    }

    fn write_time_limit(&self, default: Duration) -> Duration {
        // The change, then the wait for INSYNC, each within the timeout.
        if self.wait { default * 2 } else { default }
    }
}

/// Polls `insync` every `interval` until it answers true or `limit` has passed (one last
/// poll at the end); false when the change never became INSYNC in time.
async fn wait_until_insync<F, Fut>(
    mut insync: F,
    limit: Duration,
    interval: Duration,
) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if insync().await? {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// `/hostedzone/Z123` → `Z123`.
fn bare_zone_id(id: &str) -> &str {
    id.strip_prefix("/hostedzone/").unwrap_or(id)
}

/// Whether a name as Route 53 returns it (lower-case unless escaped, trailing dot) is `name`.
fn same_name(route53: &str, name: &str) -> bool {
    let trimmed = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    trimmed(route53) == trimmed(name)
}

fn rr_type(rtype: RecordType) -> RrType {
    match rtype {
        RecordType::A => RrType::A,
        RecordType::Aaaa => RrType::Aaaa,
    }
}

/// The record sets for `keys` in a zone listing. A key whose record set ipdrift cannot
/// manage as a plain set of addresses — an alias, or one of several routing-policy sets
/// (weighted, latency, failover…) — is an error, not something to overwrite.
fn pick_rrsets(listing: &Listing, keys: &[RecordKey]) -> Result<Vec<RecordSet>, String> {
    let mut found = Vec::new();
    let wanted: BTreeSet<&RecordKey> = keys.iter().collect();
    for key in wanted {
        let rtype = rr_type(key.rtype);
        let sets: Vec<&ResourceRecordSet> = listing
            .iter()
            .filter(|s| *s.r#type() == rtype && same_name(s.name(), key.name.as_str()))
            .collect();
        let Some(set) = sets.first() else { continue };
        if set.alias_target().is_some() {
            return Err(format!(
                "{key} is an alias record, which ipdrift does not manage; remove the rule or make it a plain record"
            ));
        }
        if sets.len() > 1 || set.set_identifier().is_some() {
            return Err(format!(
                "{key} has a routing policy (set identifier {:?}), which ipdrift does not manage; remove the rule or make it a simple record",
                set.set_identifier().unwrap_or_default()
            ));
        }
        let addrs = set
            .resource_records()
            .iter()
            .map(|r| {
                r.value()
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|a| key.rtype.matches(a))
                    .ok_or_else(|| {
                        format!(
                            "{key} holds {:?}, which is not an address of that type",
                            r.value()
                        )
                    })
            })
            .collect::<Result<BTreeSet<IpAddr>, String>>()?;
        let ttl = set
            .ttl()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| format!("{key} has no valid TTL"))?;
        found.push(RecordSet {
            key: key.clone(),
            ttl,
            addrs,
        });
    }
    Ok(found)
}

/// Managed name → ownership text, from the TXT sets named `_ipdrift.<name>`. Each record's
/// quoted strings are joined; several records at one name are sorted and joined by
/// newlines, which matches no ownership text: ambiguous ownership counts as none (as for
/// RFC 2136).
fn ownership_records(listing: &Listing) -> BTreeMap<DnsName, String> {
    let mut ownership = BTreeMap::new();
    for set in listing.iter().filter(|s| *s.r#type() == RrType::Txt) {
        let name = set.name().to_ascii_lowercase();
        let Some((label, managed)) = name.split_once('.') else {
            continue;
        };
        if label != OWNERSHIP_LABEL.to_ascii_lowercase() {
            continue;
        }
        let Ok(managed) = validate::dns_name(managed) else {
            continue;
        };
        let mut texts: Vec<String> = set
            .resource_records()
            .iter()
            .map(|r| unquote_txt(r.value()))
            .collect();
        texts.sort();
        ownership.insert(managed, texts.join("\n"));
    }
    ownership
}

/// The changes of one batch, and the names whose ownership record must be deleted too
/// (their exact value is read before sending).
#[derive(Debug)]
struct PlannedBatch {
    changes: Vec<Change>,
    disowned: Vec<DnsName>,
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Change {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .expect("action and record set are given")
}

/// A record set of `name`, `rtype` and `ttl` holding `values`.
fn record_set(name: &DnsName, rtype: RrType, ttl: u32, values: Vec<String>) -> ResourceRecordSet {
    let records = values
        .into_iter()
        .map(|v| {
            ResourceRecord::builder()
                .value(v)
                .build()
                .expect("value is given")
        })
        .collect();
    ResourceRecordSet::builder()
        .name(name.as_str())
        .r#type(rtype)
        .ttl(i64::from(ttl))
        .set_resource_records(Some(records))
        .build()
        .expect("name and type are given")
}

fn address_set(set: &RecordSet) -> ResourceRecordSet {
    record_set(
        &set.key.name,
        rr_type(set.key.rtype),
        set.ttl,
        set.addrs.iter().map(IpAddr::to_string).collect(),
    )
}

/// The Route 53 changes for `changes`: deletions first, then upserts. Ownership is per name:
/// one UPSERT of `_ipdrift.<name>` however many types are created there, and no deletion
/// of it where another type is created in the same batch.
fn plan_batch(changes: &[RecordChange], zone: &DnsName) -> Result<PlannedBatch, String> {
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    let mut owners: BTreeMap<&DnsName, (&str, u32)> = BTreeMap::new();
    let mut deleted_names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for change_ in changes {
        let key = change_.key();
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
        match change_ {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. }
                if to.addrs.is_empty() =>
            {
                return Err(format!(
                    "refusing to send {key}: a record set needs at least one address"
                ));
            }
            RecordChange::Replace { to, .. } => {
                upserts.push(change(ChangeAction::Upsert, address_set(to)))
            }
            RecordChange::Create { to, owner, .. } => {
                upserts.push(change(ChangeAction::Upsert, address_set(to)));
                owners.entry(&key.name).or_insert((owner.as_str(), to.ttl));
            }
            RecordChange::Delete { from } => {
                deletes.push(change(ChangeAction::Delete, address_set(from)));
                deleted_names.insert(&key.name);
            }
        }
    }
    for (name, (owner, ttl)) in &owners {
        upserts.push(change(
            ChangeAction::Upsert,
            record_set(
                &ownership_name(name),
                RrType::Txt,
                *ttl,
                vec![quote_txt(owner)],
            ),
        ));
    }
    let disowned = deleted_names
        .into_iter()
        .filter(|name| !owners.contains_key(name))
        .cloned()
        .collect();
    deletes.extend(upserts);
    Ok(PlannedBatch {
        changes: deletes,
        disowned,
    })
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

    fn listed(text: &str, rtype: RrType, ttl: i64, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(text)
            .r#type(rtype)
            .ttl(ttl)
            .set_resource_records(Some(
                values
                    .iter()
                    .map(|v| ResourceRecord::builder().value(*v).build().unwrap())
                    .collect(),
            ))
            .build()
            .unwrap()
    }

    /// `ACTION name TYPE ttl values` of each change, for comparing batches.
    fn shown(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let s = c.resource_record_set().unwrap();
                let values: Vec<&str> = s.resource_records().iter().map(|r| r.value()).collect();
                format!(
                    "{} {} {} {} {}",
                    c.action().as_str(),
                    s.name(),
                    s.r#type().as_str(),
                    s.ttl().unwrap(),
                    values.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn a_listing_gives_the_asked_for_sets_and_the_ownership_records() {
        let listing = vec![
            listed(
                "example.com.",
                RrType::Soa,
                900,
                &["ns.example.com. hostmaster. 1 7200 900 1209600 86400"],
            ),
            listed(
                "www.example.com.",
                RrType::A,
                60,
                &["192.0.2.2", "192.0.2.1"],
            ),
            listed("www.example.com.", RrType::Aaaa, 300, &["2001:db8::1"]),
            listed(
                "_ipdrift.web-01.example.com.",
                RrType::Txt,
                60,
                &["\"heritage=ipdrift,owner=ipdrift\""],
            ),
            listed(
                "_ipdrift.web-02.example.com.",
                RrType::Txt,
                60,
                &["\"heritage=ipdrift,\" \"owner=b\"", "\"x\""],
            ),
            listed("static.example.com.", RrType::Txt, 60, &["\"hello\""]),
        ];
        let keys = vec![
            set("www.example.com.", RecordType::A, 0, &[]).key,
            set("web-01.example.com.", RecordType::A, 0, &[]).key,
        ];
        assert_eq!(
            pick_rrsets(&listing, &keys).unwrap(),
            vec![set(
                "www.example.com.",
                RecordType::A,
                60,
                &["192.0.2.1", "192.0.2.2"]
            )]
        );
        let ownership = ownership_records(&listing);
        assert_eq!(ownership.len(), 2);
        assert_eq!(
            ownership[&name("web-01.example.com.")],
            "heritage=ipdrift,owner=ipdrift"
        );
        assert_eq!(
            ownership[&name("web-02.example.com.")],
            "heritage=ipdrift,owner=b\nx",
            "strings joined, records sorted and joined by newlines"
        );
    }

    #[test]
    fn aliases_routing_policies_and_bad_values_are_errors() {
        let key = set("www.example.com.", RecordType::A, 0, &[]).key;
        let alias = ResourceRecordSet::builder()
            .name("www.example.com.")
            .r#type(RrType::A)
            .alias_target(
                aws_sdk_route53::types::AliasTarget::builder()
                    .hosted_zone_id("Z2FDTNDATAQYW2")
                    .dns_name("d111111abcdef8.cloudfront.net.")
                    .evaluate_target_health(false)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = pick_rrsets(&vec![alias], std::slice::from_ref(&key)).unwrap_err();
        assert!(e.contains("alias"), "{e}");
        let weighted = ResourceRecordSet::builder()
            .name("www.example.com.")
            .r#type(RrType::A)
            .set_identifier("blue")
            .weight(10)
            .ttl(60)
            .resource_records(
                ResourceRecord::builder()
                    .value("192.0.2.1")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = pick_rrsets(&vec![weighted], std::slice::from_ref(&key)).unwrap_err();
        assert!(e.contains("routing policy") && e.contains("blue"), "{e}");
        let wrong = listed("www.example.com.", RrType::A, 60, &["2001:db8::1"]);
        assert!(pick_rrsets(&vec![wrong], &[key]).is_err());
    }

    #[test]
    fn txt_values_are_quoted_and_unquoted() {
        assert_eq!(
            quote_txt("heritage=ipdrift,owner=a"),
            "\"heritage=ipdrift,owner=a\""
        );
        assert_eq!(quote_txt("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(
            unquote_txt(&quote_txt("say \"hi\" \\o/")),
            "say \"hi\" \\o/"
        );
        assert_eq!(unquote_txt("\"a b\" \"c\""), "a bc");
        assert_eq!(unquote_txt("plain"), "plain");
    }

    #[test]
    fn a_batch_upserts_deletes_exactly_and_owns_each_name_once() {
        let zone = name("example.com.");
        let owner = "heritage=ipdrift,owner=ipdrift".to_string();
        let create = |to| RecordChange::Create {
            to,
            owner: owner.clone(),
            proxied: None,
        };
        let changes = vec![
            RecordChange::Replace {
                from: Some(set("www.example.com.", RecordType::A, 60, &["192.0.2.1"])),
                to: set(
                    "www.example.com.",
                    RecordType::A,
                    60,
                    &["192.0.2.9", "192.0.2.8"],
                ),
            },
            create(set(
                "web-03.example.com.",
                RecordType::A,
                60,
                &["198.51.100.3"],
            )),
            create(set(
                "web-03.example.com.",
                RecordType::Aaaa,
                60,
                &["2001:db8::3"],
            )),
            RecordChange::Delete {
                from: set("web-09.example.com.", RecordType::A, 300, &["198.51.100.9"]),
            },
            RecordChange::Delete {
                from: set(
                    "web-04.example.com.",
                    RecordType::Aaaa,
                    60,
                    &["2001:db8::4"],
                ),
            },
            create(set(
                "web-04.example.com.",
                RecordType::A,
                60,
                &["198.51.100.4"],
            )),
        ];
        let batch = plan_batch(&changes, &zone).unwrap();
        assert_eq!(
            shown(&batch.changes),
            vec![
                "DELETE web-09.example.com. A 300 198.51.100.9",
                "DELETE web-04.example.com. AAAA 60 2001:db8::4",
                "UPSERT www.example.com. A 60 192.0.2.8,192.0.2.9",
                "UPSERT web-03.example.com. A 60 198.51.100.3",
                "UPSERT web-03.example.com. AAAA 60 2001:db8::3",
                "UPSERT web-04.example.com. A 60 198.51.100.4",
                "UPSERT _ipdrift.web-03.example.com. TXT 60 \"heritage=ipdrift,owner=ipdrift\"",
                "UPSERT _ipdrift.web-04.example.com. TXT 60 \"heritage=ipdrift,owner=ipdrift\"",
            ]
        );
        assert_eq!(
            batch.disowned,
            vec![name("web-09.example.com.")],
            "web-04 keeps its ownership record: its A record is created in the same batch"
        );
    }

    #[test]
    fn bad_batches_are_refused_before_sending() {
        let zone = name("example.com.");
        let replace = |to: RecordSet| RecordChange::Replace { from: None, to };
        let www = set("www.example.com.", RecordType::A, 60, &["192.0.2.1"]);
        let e = plan_batch(&[replace(www.clone()), replace(www)], &zone).unwrap_err();
        assert!(e.contains("changed twice"), "{e}");
        let outside = set("www.example.org.", RecordType::A, 60, &["192.0.2.1"]);
        let e = plan_batch(&[replace(outside)], &zone).unwrap_err();
        assert!(e.contains("outside zone example.com."), "{e}");
        let empty = set("www.example.com.", RecordType::A, 60, &[]);
        let e = plan_batch(&[replace(empty)], &zone).unwrap_err();
        assert!(e.contains("at least one address"), "{e}");
    }

    #[test]
    fn zone_names_and_ids_compare_as_route53_writes_them() {
        assert!(same_name("Example.COM.", "example.com."));
        assert!(same_name("example.com", "example.com."));
        assert!(!same_name("www.example.com.", "example.com."));
        assert_eq!(bare_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(bare_zone_id("Z123"), "Z123");
    }

    #[tokio::test]
    async fn waiting_polls_until_insync_or_the_limit() {
        let interval = Duration::from_millis(20);
        let polls = std::cell::Cell::new(0);
        let insync_on_third = || {
            polls.set(polls.get() + 1);
            let n = polls.get();
            async move { Ok(n >= 3) }
        };
        let limit = Duration::from_secs(10);
        assert!(
            wait_until_insync(insync_on_third, limit, interval)
                .await
                .unwrap()
        );
        assert_eq!(polls.get(), 3);

        let started = tokio::time::Instant::now();
        let never = || async { Ok(false) };
        let limit = Duration::from_millis(100);
        assert!(!wait_until_insync(never, limit, interval).await.unwrap());
        assert!(started.elapsed() >= limit);
        let failing = || async { Err(anyhow!("AccessDenied")) };
        assert!(wait_until_insync(failing, limit, interval).await.is_err());
    }
}
