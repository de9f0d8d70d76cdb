//! Load balancers: where backend servers are read from and written to. One file (or folder)
//! per kind; the reconciler, the planner and the desired state see only the kind-neutral
//! [`LoadBalancer`] trait and [`ServerChange`].
//!
//! Kinds: [`haproxy`] (the runtime API: `protocol` is pure, `client` the socket I/O).

pub mod haproxy;

use crate::BoxFuture;
use crate::model::{ObservedServer, ServerAdmin, ServerKey};
use std::net::IpAddr;

/// One change to a backend server, whatever the load balancer's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerChange {
    /// Point the server at a new address and port.
    SetAddr {
        key: ServerKey,
        addr: IpAddr,
        port: u16,
    },
    /// Enable (`Ready`), drain (`Drain`: no new connections) or disable (`Maint`) it.
    SetAdmin { key: ServerKey, admin: ServerAdmin },
    /// Add a server; it starts out of service. With `check`, the load balancer's own health
    /// checks judge it (`health = "haproxy"`).
    Add {
        key: ServerKey,
        addr: IpAddr,
        port: u16,
        check: bool,
    },
    /// Remove the server (it is taken out of service first).
    Delete { key: ServerKey },
}

/// A load balancer that ipdrift reads and writes.
pub trait LoadBalancer: Send + Sync {
    /// The load balancer's name from config (e.g. `[[haproxy]] name`).
    fn name(&self) -> &str;
    /// Reads the servers of each of `backends`. A backend that does not exist is an error
    /// naming it.
    fn read<'a>(
        &'a self,
        backends: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<ObservedServer>>>;
    /// Applies all `changes` (HAProxy: on as few connections as its answers allow); any
    /// change the load balancer refuses is an error that quotes its answer.
    fn write<'a>(&'a self, changes: &'a [ServerChange]) -> BoxFuture<'a, anyhow::Result<()>>;
}
