//! DNS targets: where records are read from and written to. One file (or folder) per
//! provider, holding its config keys, their checks, its builder and its I/O; [`KINDS`]
//! lists them. The reconciler sees only the [`DnsTarget`] trait.
//!
//! Ownership: an RRset that ipdrift creates gets a TXT record at `_ipdrift.<name>` holding
//! [`ownership_text`] of the controller's `owner_id`. Only RRsets with ipdrift's ownership
//! record are ever deleted.

pub mod gcp_dns;
pub mod rfc2136;
#[cfg(feature = "aws")]
pub mod route53;
pub mod tsig;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::config::{ConfigError, Fragment, SecretAt};
use crate::model::{DnsName, RecordKey, RecordSet};

/// Every kind of DNS target: `kind = "…"` in `[[dns]]`. Adding a kind is its file, one line
/// here, and its README section.
pub const KINDS: &[TargetKind] = &[rfc2136::KIND, ROUTE53, gcp_dns::KIND];

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

/// The TXT text that marks a name as created by the controller `owner_id`.
pub fn ownership_text(owner_id: &str) -> String {
    format!("heritage=ipdrift,owner={owner_id}")
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
    /// [`ownership_text`]).
    Create { to: RecordSet, owner: String },
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
    /// Every ownership record and, where the same listing carries them, every A and AAAA
    /// RRset of the zone, so that a pass that needs both lists the zone once. The default
    /// lists only the ownership records ([`Self::read_ownership`]).
    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(async move {
            Ok(ZoneContents {
                ownership: self.read_ownership().await?,
                rrsets: None,
            })
        })
    }

    /// How long writing one batch may take, given the controller's `timeout`.
    fn write_time_limit(&self, default: Duration) -> Duration {
        default
    }
}

/// What one listing of a zone found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneContents {
    /// Managed name → ownership text, as [`DnsTarget::read_ownership`] returns it.
    pub ownership: BTreeMap<DnsName, String>,
    /// Every A and AAAA RRset of the zone when the listing carried them (a zone transfer
    /// does); `None` when the RRsets a pass needs must be [`DnsTarget::read`] separately.
    pub rrsets: Option<Vec<RecordSet>>,
}
