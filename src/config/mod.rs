//! The TOML configuration: text → spans → validated, typed [`Config`].
//!
//! - this module is the driver: it splits the document into its sections and hands each
//!   `[[inventory]]`, `[[dns]]` and load-balancer table to its kind, found in the wing's list
//!   ([`crate::inventory::KINDS`], [`crate::dns::KINDS`], [`crate::lb::KINDS`]);
//! - [`checker`]: the shared checker (file:line:field errors, a kind's [`checker::Fragment`]
//!   with its spans, durations, choices);
//! - [`controller`], [`rules`] (`[[record]]` and the load balancers' backends), [`ha`],
//!   [`notify`]: the sections every kind shares;
//! - [`secret_keys`]: the keys that name where a secret is, checked without reading them;
//! - [`secrets`]: the one part that reads files and the environment.
//!
//! Everything but [`secrets`] is pure. The kinds import the checker, never this driver.

pub mod checker;
pub mod controller;
pub mod ha;
pub mod notify;
pub mod rules;
pub mod secret_keys;
pub mod secrets;

use std::any::Any;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use checker::{Checker, ConfigError, ConfigErrors, Fragment};
pub use controller::{
    ControllerConfig, DEFAULT_INTERVAL, DEFAULT_LISTEN, DEFAULT_MAINTENANCE_TTL,
    DEFAULT_MAX_REMOVE_FRACTION, DEFAULT_OWNER_ID, DEFAULT_TIMEOUT, MIN_DEFAULT_MAINTENANCE_LEAD,
};
pub use ha::{DEFAULT_LEASE_TTL, EtcdAuth, EtcdSecrets, EtcdTls, HaConfig, MIN_LEASE_TTL};
pub use notify::{
    DEFAULT_FAILING_PASSES, DEFAULT_NOTIFY_TIMEOUT, NotifyConfig, NotifyKind, WebhookUrl,
};
pub use rules::{
    BackendRule, DEFAULT_TTL, HealthGate, RecordPolicy, RecordRule, Selector, ServerRemoval,
};
pub use secret_keys::{SecretAt, SecretRef};
pub use secrets::{default_instance, load};

use crate::dns::TargetSpec;
use crate::inventory::SourceSpec;
use crate::lb::LbSpec;
use crate::model::DnsName;
use crate::validate;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths inside were resolved against its directory.
    pub path: PathBuf,
    pub controller: ControllerConfig,
    pub inventories: Vec<InventoryConfig>,
    pub dns: Vec<DnsConfig>,
    pub records: Vec<RecordRule>,
    /// Every load balancer, whatever its kind (`[[haproxy]]`, …), in file order per kind.
    pub load_balancers: Vec<LbConfig>,
    pub notify: Vec<NotifyConfig>,
    /// `[ha]`: several controllers elect one writer through etcd; `None` runs alone.
    pub ha: Option<HaConfig>,
}

/// An `[[inventory]]`: its name and its kind's validated settings.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub name: String,
    /// The `kind` key, e.g. `file`.
    pub kind: &'static str,
    pub spec: Arc<dyn SourceSpec>,
}

/// A `[[dns]]` target.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub name: String,
    pub zone: DnsName,
    pub kind: &'static str,
    pub spec: Arc<dyn TargetSpec>,
}

/// A load balancer: the backends it manages and its kind's settings.
#[derive(Debug, Clone)]
pub struct LbConfig {
    pub name: String,
    /// The table it came from, e.g. `haproxy` for `[[haproxy]]`.
    pub kind: &'static str,
    pub backends: Vec<BackendRule>,
    pub spec: Arc<dyn LbSpec>,
}

/// The settings of a kind as its own type, e.g. `inventory.settings::<FileConfig>()`.
fn downcast<T: 'static>(spec: &dyn Any) -> Option<&T> {
    spec.downcast_ref()
}

impl InventoryConfig {
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        downcast(&*self.spec as &dyn Any)
    }
}

impl DnsConfig {
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        downcast(&*self.spec as &dyn Any)
    }
}

impl LbConfig {
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        downcast(&*self.spec as &dyn Any)
    }
}

impl Config {
    /// Names of every target (DNS, then load balancers), the values of the `target` label.
    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dns.iter().map(|d| d.name.clone()).collect();
        names.extend(self.load_balancers.iter().map(|h| h.name.clone()));
        names
    }

    /// Every secret the config names, with the table that names it: what a deployment must
    /// provide (files to mount, variables to set).
    pub fn secrets(&self) -> Vec<SecretAt> {
        let mut all: Vec<SecretAt> = self
            .inventories
            .iter()
            .flat_map(|i| i.spec.secrets())
            .collect();
        all.extend(self.dns.iter().flat_map(|d| d.spec.secrets()));
        all.extend(self.ha.iter().flat_map(HaConfig::secrets));
        all.extend(self.controller.reconcile_token.clone());
        all
    }
}

/// The top-level keys besides the kinds' tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    controller: Option<Spanned<controller::RawController>>,
    #[serde(default)]
    record: Vec<Spanned<rules::RawRecord>>,
    #[serde(default)]
    notify: Vec<Spanned<notify::RawNotify>>,
    ha: Option<Spanned<ha::RawHa>>,
}

/// `name` and `kind` of an `[[inventory]]`; the rest is the kind's.
#[derive(Deserialize)]
struct SourceHeader {
    name: Spanned<String>,
    kind: Spanned<String>,
}

/// `name`, `kind` and `zone` of a `[[dns]]`.
#[derive(Deserialize)]
struct TargetHeader {
    name: Spanned<String>,
    kind: Spanned<String>,
    zone: Spanned<String>,
}

/// `name` of a load balancer's table.
#[derive(Deserialize)]
struct LbHeader {
    name: Spanned<String>,
}

/// Parses and validates config text (pure: no file or network access). `path` is used for
/// error messages and to resolve relative paths.
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker::new(source, path);
    let document = match DeTable::parse(source) {
        Ok(document) => document,
        Err(e) => {
            c.toml_error(&e, "");
            return Err(ConfigErrors(c.errors));
        }
    };
    let span = document.span();
    let mut top = document.into_inner();
    let inventory_tables = take_tables(&mut c, &mut top, "inventory");
    let dns_tables = take_tables(&mut c, &mut top, "dns");
    let lb_tables: Vec<_> = crate::lb::KINDS
        .iter()
        .map(|kind| (kind, take_tables(&mut c, &mut top, kind.section)))
        .collect();
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(Spanned::new(span, top)))
        .map_err(|e| c.toml_error(&e, ""))
        .ok();

    let controller = controller::check(&mut c, raw.as_ref().and_then(|r| r.controller.as_ref()));
    let inventories = check_inventories(&mut c, inventory_tables);
    let dns = check_dns(&mut c, dns_tables);
    let records = match &raw {
        Some(raw) => rules::check_records(&mut c, &raw.record, &dns),
        None => Vec::new(),
    };
    let mut target_names = c.dns_names.clone();
    let mut load_balancers = Vec::new();
    for (kind, tables) in lb_tables {
        for table in tables {
            load_balancers.extend(check_lb(&mut c, kind, table, &mut target_names));
        }
    }
    let notify = raw
        .as_ref()
        .map(|raw| {
            raw.notify
                .iter()
                .enumerate()
                .filter_map(|(index, n)| notify::check(&mut c, n.get_ref(), index + 1))
                .collect()
        })
        .unwrap_or_default();
    let ha = raw
        .as_ref()
        .and_then(|raw| raw.ha.as_ref())
        .and_then(|ha| ha::check(&mut c, ha));

    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            controller,
            inventories,
            dns,
            records,
            load_balancers,
            notify,
            ha,
        })
    } else {
        Err(ConfigErrors(c.errors))
    }
}

/// Takes `key` (an array of tables such as `[[inventory]]`) out of the document.
fn take_tables<'a>(
    c: &mut Checker<'_>,
    top: &mut DeTable<'a>,
    key: &str,
) -> Vec<(std::ops::Range<usize>, DeTable<'a>)> {
    let Some(value) = top.remove(key) else {
        return Vec::new();
    };
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        c.error(
            &Spanned::new(span, ()),
            key,
            format!("must be an array of tables: write [[{key}]] above each one"),
        );
        return Vec::new();
    };
    let mut tables = Vec::new();
    for item in items {
        let span = item.span();
        match item.into_inner() {
            DeValue::Table(table) => tables.push((span, table)),
            _ => c.error(
                &Spanned::new(span, ()),
                key,
                format!("each [[{key}]] must be a table"),
            ),
        }
    }
    tables
}

/// The keys the driver reads (`name`, `kind`, …) out of a kind's table, as `H`.
fn header<'a, H: Deserialize<'a>>(
    c: &mut Checker<'_>,
    span: &std::ops::Range<usize>,
    table: &mut DeTable<'a>,
    field: &str,
) -> Option<H> {
    let mut header = DeTable::new();
    for key in checker::fields_of::<H>() {
        if let Some((k, v)) = table.remove_entry(*key) {
            header.insert(k, v);
        }
    }
    let value = Spanned::new(span.clone(), DeValue::Table(header));
    H::deserialize(toml::de::ValueDeserializer::from(value))
        .map_err(|e| c.toml_error(&e, field))
        .ok()
}

fn check_inventories<'a>(
    c: &mut Checker<'a>,
    tables: Vec<(std::ops::Range<usize>, DeTable<'a>)>,
) -> Vec<InventoryConfig> {
    if tables.is_empty() {
        c.error_at_line(
            None,
            "inventory",
            "at least one [[inventory]] source is required",
        );
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (span, mut table) in tables {
        let Some(h) = header::<SourceHeader>(c, &span, &mut table, "inventory") else {
            continue;
        };
        c.unique(&mut seen, &h.name, "inventory");
        c.sources.insert(h.name.get_ref().clone());
        let field = format!("inventory \"{}\"", h.name.get_ref());
        let Some(kind) = crate::inventory::KINDS
            .iter()
            .find(|k| k.name == h.kind.get_ref())
        else {
            let names: Vec<&str> = crate::inventory::KINDS.iter().map(|k| k.name).collect();
            c.error(
                &h.kind,
                format!("{field}.kind"),
                format!(
                    "unknown inventory kind {:?}; supported: {}",
                    h.kind.get_ref(),
                    names.join(", ")
                ),
            );
            continue;
        };
        let what = format!("a {} inventory", kind.name);
        let mut fragment = Fragment::new(c, field, what, span, table);
        fragment.kind_span = h.kind.span();
        if let Some(spec) = (kind.check)(&mut fragment) {
            out.push(InventoryConfig {
                name: h.name.into_inner(),
                kind: kind.name,
                spec,
            });
        }
    }
    out
}

fn check_dns<'a>(
    c: &mut Checker<'a>,
    tables: Vec<(std::ops::Range<usize>, DeTable<'a>)>,
) -> Vec<DnsConfig> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (span, mut table) in tables {
        let Some(h) = header::<TargetHeader>(c, &span, &mut table, "dns") else {
            continue;
        };
        c.unique(&mut seen, &h.name, "dns");
        c.dns_names.insert(h.name.get_ref().clone());
        let field = format!("dns \"{}\"", h.name.get_ref());
        let zone = validate::dns_name(h.zone.get_ref())
            .map_err(|e| c.error(&h.zone, format!("{field}.zone"), e.0))
            .ok();
        let Some(kind) = crate::dns::KINDS
            .iter()
            .find(|k| k.name == h.kind.get_ref())
        else {
            let names: Vec<&str> = crate::dns::KINDS.iter().map(|k| k.name).collect();
            c.error(
                &h.kind,
                format!("{field}.kind"),
                format!(
                    "unknown dns kind {:?}; supported: {}",
                    h.kind.get_ref(),
                    names.join(", ")
                ),
            );
            continue;
        };
        let what = format!("a {} target", kind.name);
        let mut fragment = Fragment::new(c, field, what, span, table);
        fragment.kind_span = h.kind.span();
        if let (Some(spec), Some(zone)) = ((kind.check)(&mut fragment), zone) {
            out.push(DnsConfig {
                name: h.name.into_inner(),
                zone,
                kind: kind.name,
                spec,
            });
        }
    }
    out
}

fn check_lb<'a>(
    c: &mut Checker<'a>,
    kind: &crate::lb::LbKind,
    (span, mut table): (std::ops::Range<usize>, DeTable<'a>),
    target_names: &mut BTreeSet<String>,
) -> Option<LbConfig> {
    let h = header::<LbHeader>(c, &span, &mut table, kind.section)?;
    c.unique(target_names, &h.name, kind.section);
    let field = format!("{} \"{}\"", kind.section, h.name.get_ref());
    let what = format!("a [[{}]] table", kind.section);
    let mut fragment = Fragment::new(c, field, what, span, table);
    let (backends, spec) = (kind.check)(&mut fragment)?;
    Some(LbConfig {
        name: h.name.into_inner(),
        kind: kind.section,
        backends,
        spec,
    })
}

#[cfg(test)]
mod tests;
