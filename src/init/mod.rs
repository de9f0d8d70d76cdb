//! `ipdrift init`: writes the `[[record]]` rules and the backends of a config from what is
//! already there. Record sets and servers are matched to instances by address (and, where
//! addresses already drifted, by name); what cannot be explained is listed, never guessed.
//! Pure: [`propose`] matches, [`render`] writes the TOML.

mod propose;
mod render;

pub use propose::{World, propose};
pub use render::{LbTable, render};

use std::collections::BTreeMap;

use crate::model::AddressKind;

/// An instance selector, as a rule's `select` says it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProposedSelect {
    pub tags: BTreeMap<String, String>,
    pub source: Option<String>,
}

/// A `[[record]]` rule to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedRecord {
    pub dns: String,
    /// A fixed name (`www.example.com.`) or a template (`{name}.example.com.`).
    pub name: String,
    pub select: ProposedSelect,
    pub address: AddressKind,
    pub ttl: u32,
    /// What it matched, for the comment above it.
    pub matched: Vec<String>,
}

/// A backend to write under its load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedBackend {
    pub name: String,
    pub select: ProposedSelect,
    pub address: AddressKind,
    pub port: u16,
    /// The server-name template (`{name}`, `{id}`, `web-{name}`).
    pub server: String,
    pub matched: Vec<String>,
}

/// What `init` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proposal {
    pub records: Vec<ProposedRecord>,
    /// Load balancer name → its backends.
    pub backends: BTreeMap<String, Vec<ProposedBackend>>,
    /// Record sets, servers and instances nothing explains: listed, not guessed.
    pub unexplained: Vec<String>,
    /// Objects matched by name whose addresses already differ from the instance's.
    pub drifted: Vec<String>,
}
