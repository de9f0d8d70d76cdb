//! DNS targets: where records are read from and written to. One file (or folder) per
//! provider, holding its config keys, their checks, its builder and its I/O; [`KINDS`]
//! lists them. The reconciler sees only the [`DnsTarget`] trait.
//!
//! Ownership: an RRset that ipdrift creates gets a TXT record at `_ipdrift.<name>` holding
//! [`ownership_text`] of the controller's `owner_id`. Only RRsets with ipdrift's ownership
//! record are ever deleted.

pub mod azure_dns;
pub mod cloudflare;
pub mod digitalocean_dns;
pub mod gcp_dns;
pub mod hetzner_dns;
pub mod http_api;
pub mod powerdns;
pub mod rfc2136;
#[cfg(feature = "aws")]
pub mod route53;
pub mod secondaries;
pub mod tsig;
pub mod webhook;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::config::{ConfigError, Fragment, SecretAt};
use crate::model::{DnsName, Obstacles, RecordKey, RecordSet};

/// Every kind of DNS target: `kind = "…"` in `[[dns]]`. Adding a kind is its file, one line
/// here, and its README section.
pub const KINDS: &[TargetKind] = &[
    rfc2136::KIND,
    ROUTE53,
    powerdns::KIND,
    webhook::KIND,
    cloudflare::KIND,
    digitalocean_dns::KIND,
    gcp_dns::KIND,
    azure_dns::KIND,
    hetzner_dns::KIND,
];

#[cfg(feature = "aws")]
const ROUTE53: TargetKind = route53::KIND;
#[cfg(not(feature = "aws"))]
const ROUTE53: TargetKind = TargetKind {
    name: "route53",
    check: |f| {
        f.kind_error(crate::config::checker::WITHOUT_AWS);
        None
    },
};

/// A kind of DNS target: its `kind` word and the check that turns its table (without
/// `name`, `kind` and `zone`, which every target has) into a [`TargetSpec`].
pub struct TargetKind {
    pub name: &'static str,
    pub check: fn(&mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>>,
}

/// A DNS target's validated settings: what its kind checked, and how to build it.
pub trait TargetSpec: Any + fmt::Debug + Send + Sync {
    /// Builds the target `name` for `zone`; reads its credentials. `timeout` is
    /// `controller.timeout`.
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>>;
    /// Reads the secrets [`Self::build`] needs, so that `check-config` reports a missing
    /// one where the config names it.
    fn read_secrets(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Where its secrets are (TSIG keys, API tokens).
    fn secrets(&self) -> Vec<SecretAt> {
        Vec::new()
    }
}

/// The label in front of a managed name that holds its ownership TXT record.
pub const OWNERSHIP_LABEL: &str = "_ipdrift";

/// `_ipdrift.<name>`.
pub fn ownership_name(name: &DnsName) -> DnsName {
    DnsName(format!("{OWNERSHIP_LABEL}.{}", name.as_str()))
}

/// The TXT text that marks a name as created by the controller `owner_id` (the form of
/// ipdrift 0.1, without the inventory fingerprint; still read as that controller's).
pub fn ownership_text(owner_id: &str) -> String {
    format!("heritage=ipdrift,owner={owner_id}")
}

/// The TXT text a controller writes: its `owner_id` and the fingerprint of its inventory
/// ([`inventory_fingerprint`]), so that a second controller configured with the same
/// `owner_id` but other sources can tell the record is not its own.
pub fn controller_ownership_text(owner_id: &str, inventory: &str) -> String {
    format!("heritage=ipdrift,owner={owner_id},inventory={inventory}")
}

/// A short, stable fingerprint of a controller's inventory sources (their kinds and names):
/// 16 hex digits of FNV-1a over `kind:name` sorted, joined by `+`.
pub fn inventory_fingerprint<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut parts: Vec<String> = sources
        .into_iter()
        .map(|(kind, name)| format!("{kind}:{name}"))
        .collect();
    parts.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.join("+").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Whose an ownership record is, as a controller with `owner_id` and `inventory` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This controller's (or an ipdrift 0.1 record of its `owner_id`).
    Ours,
    /// Written by a controller with the same `owner_id` but another inventory: two
    /// controllers share an `owner_id`. Never deleted.
    SameOwnerOtherInventory { inventory: String },
    /// Someone else's.
    Foreign,
}

/// Reads an ownership TXT text.
pub fn claim(text: &str, owner_id: &str, inventory: &str) -> Claim {
    let mut fields = text.split(',');
    if fields.next() != Some("heritage=ipdrift") {
        return Claim::Foreign;
    }
    let mut owner = None;
    let mut theirs = None;
    for field in fields {
        match field.split_once('=') {
            Some(("owner", v)) if owner.is_none() => owner = Some(v),
            Some(("inventory", v)) if theirs.is_none() => theirs = Some(v),
            // Anything else makes the text ambiguous: it counts as nobody's.
            _ => return Claim::Foreign,
        }
    }
    match (owner, theirs) {
        (Some(o), None) if o == owner_id => Claim::Ours,
        (Some(o), Some(i)) if o == owner_id && i == inventory => Claim::Ours,
        (Some(o), Some(i)) if o == owner_id => Claim::SameOwnerOtherInventory {
            inventory: i.to_string(),
        },
        _ => Claim::Foreign,
    }
}

/// One write to one RRset. Each change is applied atomically; a batch of them is written
/// together where it fits (one UPDATE message for RFC 2136).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// Replace an RRset that exists (or that someone else may create meanwhile): delete
    /// whatever is there, add `to`. No ownership record is written: ipdrift did not create it.
    Replace {
        from: Option<RecordSet>,
        to: RecordSet,
    },
    /// Create an RRset that does not exist, with its ownership TXT record (`owner` is the
    /// [`ownership_text`]). `proxied` is the rule's Cloudflare `proxied` (only cloudflare
    /// targets get one; `None`: the provider's default).
    Create {
        to: RecordSet,
        owner: String,
        proxied: Option<bool>,
    },
    /// Delete an RRset ipdrift owns, and its ownership TXT record.
    Delete { from: RecordSet },
}

impl RecordChange {
    pub fn key(&self) -> &RecordKey {
        match self {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => &to.key,
            RecordChange::Delete { from } => &from.key,
        }
    }
}

/// A zone that ipdrift reads and writes.
pub trait DnsTarget: Send + Sync {
    /// The target's name from config (`[[dns]] name`).
    fn name(&self) -> &str;
    /// The zone this target serves; every managed name lies inside it.
    fn zone(&self) -> &DnsName;
    /// Reads the current RRsets for `keys` straight from the authoritative source (never a
    /// cache). RRsets that do not exist are absent from the result.
    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>>;
    /// Every ownership record in the zone: the managed name (without the `_ipdrift.`
    /// label) → its TXT text. Needs a zone listing (AXFR for RFC 2136).
    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>>;
    /// Writes all `changes`, each RRset atomically: for RFC 2136 one UPDATE message, or as
    /// few as fit when one would exceed the DNS message size.
    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>>;
    /// [`Self::read`], with what the read showed about the names: which cannot hold
    /// address records (a CNAME, a delegation) and which the zone uses itself. The default
    /// shows nothing about them.
    fn read_zone<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<ZoneRead>> {
        Box::pin(async move {
            Ok(ZoneRead {
                rrsets: self.read(keys).await?,
                ..ZoneRead::default()
            })
        })
    }
    /// Every ownership record and, where the same listing carries them, every A and AAAA
    /// RRset of the zone, so that a pass that needs both lists the zone once. The default
    /// lists only the ownership records ([`Self::read_ownership`]).
    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(async move {
            Ok(ZoneContents {
                ownership: self.read_ownership().await?,
                ..ZoneContents::default()
            })
        })
    }

    /// Names inside the zone that the zone uses itself (its SOA primary, name servers,
    /// mail exchangers and SRV targets): no rule takes them over. Providers whose zones cannot hold such
    /// names, or cannot tell, return none.
    fn read_zone_own_names(&self) -> BoxFuture<'_, anyhow::Result<BTreeSet<DnsName>>> {
        Box::pin(async { Ok(BTreeSet::new()) })
    }

    /// Whether every [`Self::read_zone`] and [`Self::read_listing`] already carries all the
    /// names [`Self::read_zone_own_names`] would return (they read the whole zone), so that
    /// a pass need not ask for them separately.
    fn reads_carry_zone_own_names(&self) -> bool {
        false
    }

    /// How long writing one batch may take, given the controller's `timeout`.
    fn write_time_limit(&self, default: Duration) -> Duration {
        default
    }

    /// How the zone's secondaries stand ([`SecondaryCheck`]): a record is repaired for
    /// clients only once every server they may ask serves it. Targets without configured
    /// secondaries (the default) have none. `Err` when the primary's serial cannot be read.
    /// The target bounds its own queries by the controller's `timeout` (and a write's wait
    /// by its propagation timeout), so that one secondary that does not answer is reported
    /// as lagging rather than timing out the others.
    fn secondaries<'a>(
        &'a self,
        _check: SecondaryCheck<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<secondaries::Secondary>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// What [`DnsTarget::secondaries`] is asked.
#[derive(Debug, Clone, Copy)]
pub enum SecondaryCheck<'a> {
    /// Compare each secondary's SOA serial with the primary's, once.
    Now,
    /// Wait, up to the target's propagation timeout, until each secondary serves
    /// `changes`, written and verified on the primary; `ended` is when the write ended.
    Written {
        changes: &'a [RecordChange],
        ended: tokio::time::Instant,
    },
}

/// What one listing of a zone found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneContents {
    /// Managed name → ownership text, as [`DnsTarget::read_ownership`] returns it.
    pub ownership: BTreeMap<DnsName, String>,
    /// Every A and AAAA RRset of the zone when the listing carried them (a zone transfer
    /// does); `None` when the RRsets a pass needs must be [`DnsTarget::read`] separately.
    pub rrsets: Option<Vec<RecordSet>>,
    /// The zone's CNAMEs and delegations, where the listing carried them.
    pub obstacles: Obstacles,
    /// The names the zone uses itself that the listing showed (a zone transfer shows the
    /// SOA primary, every NS, MX and SRV target, and so the delegations' glue).
    pub zone_own: BTreeSet<DnsName>,
}

/// What one read of a zone's RRsets ([`DnsTarget::read_zone`]) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneRead {
    pub rrsets: Vec<RecordSet>,
    /// The CNAMEs and delegations the read came across.
    pub obstacles: Obstacles,
    /// Names the zone uses itself that the read came across.
    pub zone_own: BTreeSet<DnsName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_texts_are_ours_another_controllers_or_foreign() {
        let fp = inventory_fingerprint([("file", "local"), ("aws", "prod")]);
        assert_eq!(
            fp,
            inventory_fingerprint([("aws", "prod"), ("file", "local")]),
            "order does not matter"
        );
        assert_eq!(fp.len(), 16);
        assert_ne!(fp, inventory_fingerprint([("aws", "prod")]));
        assert_eq!(
            claim(&controller_ownership_text("a", &fp), "a", &fp),
            Claim::Ours
        );
        assert_eq!(
            claim(&ownership_text("a"), "a", &fp),
            Claim::Ours,
            "ipdrift 0.1's records"
        );
        assert_eq!(
            claim(&controller_ownership_text("a", "other"), "a", &fp),
            Claim::SameOwnerOtherInventory {
                inventory: "other".into()
            }
        );
        for foreign in [
            controller_ownership_text("b", &fp),
            "heritage=external-dns,owner=a".into(),
            "heritage=ipdrift,owner=a,owner=b".into(),
            "heritage=ipdrift,owner=a,x=1".into(),
            String::new(),
        ] {
            assert_eq!(claim(&foreign, "a", &fp), Claim::Foreign, "{foreign}");
        }
    }
}
