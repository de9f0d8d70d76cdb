//! DNS targets: where records are read from and written to. One file per provider;
//! the reconciler sees only the [`DnsTarget`] trait.

pub mod rfc2136;
pub mod tsig;

use crate::BoxFuture;
use crate::model::{DnsName, RecordKey, RecordSet};

/// Replace one RRset: delete whatever is there (`from`, as last read) and add `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    pub from: Option<RecordSet>,
    pub to: RecordSet,
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
    /// Writes all `changes` as one batch (one UPDATE message for RFC 2136), atomically
    /// where the provider allows it.
    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>>;
}
