//! The rules every kind shares: `[[record]]` (which record sets a DNS target should hold)
//! and the backends of a load balancer (which servers it should have), with their checks.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use super::DnsConfig;
use super::checker::Checker;
use crate::model::AddressKind;
use crate::template::NameTemplate;
use crate::validate;

pub const DEFAULT_TTL: u32 = 60;

/// Which instances a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Every tag must be present with this value.
    pub tags: BTreeMap<String, String>,
    /// Only instances from this inventory source; `None` means every source.
    pub source: Option<String>,
}

/// A `[[record]]`: one RRset (fixed name) or one RRset per instance (template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRule {
    pub dns: String,
    pub name: NameTemplate,
    pub select: Selector,
    pub address: AddressKind,
    pub ttl: u32,
    pub policy: RecordPolicy,
    /// Update RRsets the rule names that someone else created (the default: the config is
    /// the statement of intent). `false` leaves them alone.
    pub adopt: bool,
    /// Owner names must be host names (RFC 952/1123: letters, digits, hyphens), as servers
    /// with check-names (BIND's default) demand of A and AAAA owners; `check_names = false`
    /// lets names with `_` through.
    pub check_names: bool,
    /// Cloudflare's `proxied` for the record sets the rule creates (`proxied`); only
    /// cloudflare targets take it. `None`: Cloudflare's default (not proxied).
    pub proxied: Option<bool>,
}

/// Whether a rule may delete what it no longer selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPolicy {
    /// Create and update, never delete (the default).
    UpsertOnly,
    /// Also delete RRsets this controller created (ownership record) that the rule no
    /// longer produces, e.g. the record of a terminated instance.
    Sync,
}

/// What happens to the server of an instance that is gone or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRemoval {
    /// Put it in maintenance (the default): nothing is lost, it can come back.
    Maint,
    /// Put it in maintenance, then delete it (servers from haproxy.cfg come back on reload).
    Delete,
    /// Drain it: no new connections, those it holds finish (HAProxy `state drain`; nginx
    /// writes it `down` and its old workers finish their connections).
    Drain,
}

/// Who decides that a newly added or re-enabled server may take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthGate {
    /// ipdrift connects to instance:port itself; the server is enabled once that works.
    Probe,
    /// The server is added with `check` and enabled at once; the load balancer's own health
    /// checks decide.
    Haproxy,
}

/// A backend of a load balancer (`[[haproxy.backend]]`): one server per selected instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRule {
    pub name: String,
    pub select: Selector,
    pub address: AddressKind,
    pub port: u16,
    pub server: NameTemplate,
    pub remove: ServerRemoval,
    pub health: HealthGate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelect {
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    dns: Spanned<String>,
    name: Spanned<String>,
    select: Option<Spanned<RawSelect>>,
    address: Spanned<String>,
    ttl: Option<Spanned<i64>>,
    policy: Option<Spanned<String>>,
    adopt: Option<bool>,
    check_names: Option<bool>,
    proxied: Option<Spanned<bool>>,
}

/// The keys of one backend, as a load-balancer kind's serde struct embeds them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    name: Spanned<String>,
    select: Option<Spanned<RawSelect>>,
    address: Spanned<String>,
    port: Spanned<i64>,
    server: Option<Spanned<String>>,
    remove: Option<Spanned<String>>,
    health: Option<Spanned<String>>,
}

impl RawBackend {
    /// The backend's name as written, for a kind's own checks of it.
    pub fn name(&self) -> &Spanned<String> {
        &self.name
    }
}

const POLICIES: [(&str, RecordPolicy); 2] = [
    ("upsert-only", RecordPolicy::UpsertOnly),
    ("sync", RecordPolicy::Sync),
];
const REMOVALS: [(&str, ServerRemoval); 3] = [
    ("maint", ServerRemoval::Maint),
    ("drain", ServerRemoval::Drain),
    ("delete", ServerRemoval::Delete),
];
const HEALTH_GATES: [(&str, HealthGate); 2] = [
    ("probe", HealthGate::Probe),
    ("haproxy", HealthGate::Haproxy),
];

pub(super) fn check_records(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawRecord>],
    dns: &[DnsConfig],
) -> Vec<RecordRule> {
    let mut fixed_records = BTreeSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(index, rec)| {
            check_record(
                c,
                rec.get_ref(),
                &format!("record[{index}]"),
                dns,
                &mut fixed_records,
            )
        })
        .collect()
}

fn check_ttl(c: &mut Checker<'_>, ttl: &Option<Spanned<i64>>, field: &str) -> u32 {
    let Some(t) = ttl else { return DEFAULT_TTL };
    match u32::try_from(*t.get_ref()) {
        Ok(ttl) if ttl <= i32::MAX as u32 => ttl,
        _ => {
            c.error(
                t,
                format!("{field}.ttl"),
                format!("{} is out of range; use 0–2147483647 seconds", t.get_ref()),
            );
            DEFAULT_TTL
        }
    }
}

fn check_record(
    c: &mut Checker<'_>,
    r: &RawRecord,
    field: &str,
    dns: &[DnsConfig],
    fixed_records: &mut BTreeSet<(String, crate::model::DnsName, crate::model::RecordType)>,
) -> Option<RecordRule> {
    let address = c.address_kind(&r.address, &format!("{field}.address"));
    let select = c.selector(&r.select, &format!("{field}.select"));
    let mut ttl = check_ttl(c, &r.ttl, field);
    // A proxied record's TTL is Cloudflare's "automatic", written 1.
    if r.proxied.as_ref().is_some_and(|p| *p.get_ref()) {
        match &r.ttl {
            None => ttl = 1,
            Some(t) if *t.get_ref() != 1 => c.error(
                t,
                format!("{field}.ttl"),
                "a proxied record's TTL is Cloudflare's automatic one: leave ttl out (or write ttl = 1)",
            ),
            Some(_) => {}
        }
    }
    let target = dns.iter().find(|d| &d.name == r.dns.get_ref());
    let zone = target.map(|d| d.zone.clone());
    if let (Some(proxied), Some(target)) = (&r.proxied, target)
        && target.kind != crate::dns::cloudflare::KIND.name
    {
        c.error(
            proxied,
            format!("{field}.proxied"),
            format!(
                "only cloudflare targets take `proxied`; dns target {:?} is kind {:?}: remove the key",
                target.name, target.kind
            ),
        );
    }
    if zone.is_none() && !c.dns_names.contains(r.dns.get_ref()) {
        c.error(
            &r.dns,
            format!("{field}.dns"),
            format!("no [[dns]] target is named {:?}", r.dns.get_ref()),
        );
    }
    let name = c.template(&r.name, &format!("{field}.name"))?;
    // Check the template's literal parts by rendering it with a harmless sample.
    match validate::dns_name(&name.render_with("sample", "sample")) {
        Err(e) => c.error(&r.name, format!("{field}.name"), e.0),
        Ok(rendered) => {
            if r.check_names != Some(false)
                && let Err(e) = validate::host_name(&rendered)
            {
                c.error(
                    &r.name,
                    format!("{field}.name"),
                    format!(
                        "{}; set check_names = false on the rule if the DNS server accepts it",
                        e.0
                    ),
                );
            }
            if let Some(zone) = &zone
                && !rendered.is_in_zone(zone)
            {
                c.error(
                    &r.name,
                    format!("{field}.name"),
                    format!(
                        "{} is not inside zone {zone} of dns target {:?}",
                        r.name.get_ref(),
                        r.dns.get_ref()
                    ),
                );
            }
            if !name.is_per_instance()
                && !fixed_records.insert((
                    r.dns.get_ref().clone(),
                    rendered.clone(),
                    address.record_type(),
                ))
            {
                c.error(
                    &r.name,
                    format!("{field}.name"),
                    format!(
                        "{rendered} {} is already managed by another [[record]]; merge the two rules",
                        address.record_type()
                    ),
                );
            }
        }
    }
    let policy = c.choice_or(
        &r.policy,
        &format!("{field}.policy"),
        "policy",
        &POLICIES,
        RecordPolicy::UpsertOnly,
    );
    Some(RecordRule {
        dns: r.dns.get_ref().clone(),
        name,
        select,
        address,
        ttl,
        policy,
        adopt: r.adopt.unwrap_or(true),
        check_names: r.check_names.unwrap_or(true),
        proxied: r.proxied.as_ref().map(|p| *p.get_ref()),
    })
}

/// How a kind names its backends' tables: the key (`backend` for `[[haproxy.backend]]`,
/// `upstream` for `[[nginx.upstream]]`) and the server template when `server` is left out
/// (`None`: the key is required).
#[derive(Debug, Clone, Copy)]
pub struct BackendTables {
    pub key: &'static str,
    pub default_server: Option<&'static str>,
}

/// The backends of one load balancer (`field` names it, e.g. `haproxy "lb-01"`).
pub fn check_backends(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawBackend>],
    field: &str,
    tables: BackendTables,
) -> Vec<BackendRule> {
    let mut names = BTreeSet::new();
    raw.iter()
        .filter_map(|be| {
            let b = be.get_ref();
            let field = format!("{field}.{} \"{}\"", tables.key, b.name.get_ref());
            if !names.insert(b.name.get_ref().clone()) {
                c.error(
                    &b.name,
                    format!("{field}.name"),
                    format!(
                        "this {} is configured twice in the same load balancer; merge the two",
                        tables.key
                    ),
                );
            }
            let server = match (&b.server, tables.default_server) {
                (Some(server), _) => server.clone(),
                (None, Some(default)) => Spanned::new(b.name.span(), default.to_string()),
                (None, None) => {
                    c.error(
                        be,
                        format!("{field}.server"),
                        "missing key `server`: the server name in that backend, usually \"{name}\"",
                    );
                    return None;
                }
            };
            check_backend(c, b, &server, &field)
        })
        .collect()
}

fn check_backend(
    c: &mut Checker<'_>,
    b: &RawBackend,
    server: &Spanned<String>,
    field: &str,
) -> Option<BackendRule> {
    if let Err(e) = validate::haproxy_name(b.name.get_ref()) {
        c.error(&b.name, format!("{field}.name"), e.0);
    }
    let address = c.address_kind(&b.address, &format!("{field}.address"));
    let select = c.selector(&b.select, &format!("{field}.select"));
    let port = validate::port(*b.port.get_ref())
        .map_err(|e| c.error(&b.port, format!("{field}.port"), e.0))
        .ok()?;
    let template = c.template(server, &format!("{field}.server"))?;
    if let Err(e) = validate::haproxy_name(&template.render_with("sample", "sample")) {
        c.error(server, format!("{field}.server"), e.0);
    }
    let remove = c.choice_or(
        &b.remove,
        &format!("{field}.remove"),
        "removal",
        &REMOVALS,
        ServerRemoval::Maint,
    );
    let health = c.choice_or(
        &b.health,
        &format!("{field}.health"),
        "health gate",
        &HEALTH_GATES,
        HealthGate::Probe,
    );
    Some(BackendRule {
        name: b.name.get_ref().clone(),
        select,
        address,
        port,
        server: template,
        remove,
        health,
    })
}
