//! Load balancers: where backend servers are read from and written to. One file (or folder)
//! per kind; the reconciler, the planner and the desired state see only the kind-neutral
//! [`LoadBalancer`] trait and [`ServerChange`].
//!
//! Kinds: [`haproxy`] (the runtime API: `protocol` is pure, `client` the socket I/O) and
//! [`nginx`] (a file of upstream blocks, validated with `nginx -t` and reloaded: `render` is
//! pure, `client` the files and processes).

pub mod haproxy;
pub mod nginx;

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::config::{BackendRule, Fragment};
use crate::model::{ObservedServer, ServerAdmin, ServerKey};

/// Every kind of load balancer, each configured in a table of its own (`[[haproxy]]`,
/// `[[nginx]]`).
/// Adding a kind is its file, one line here, and its README section.
pub const KINDS: &[LbKind] = &[haproxy::KIND, nginx::KIND];

/// A kind of load balancer: the name of its table and the check that turns one (without
/// `name`) into the backends it manages and a [`LbSpec`].
pub struct LbKind {
    pub section: &'static str,
    /// The key of its backends' tables (`backend` for `[[haproxy.backend]]`).
    pub backends: &'static str,
    #[allow(clippy::type_complexity)]
    pub check: fn(&mut Fragment<'_, '_>) -> Option<(Vec<BackendRule>, Arc<dyn LbSpec>)>,
}

/// A load balancer's validated settings: what its kind checked, and how to build it.
pub trait LbSpec: Any + fmt::Debug + Send + Sync {
    /// Builds the load balancer `name`; `timeout` is `controller.timeout`.
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn LoadBalancer>>;
}

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
    /// How long one write may take, given the controller's `timeout` (HAProxy: one
    /// exchange; nginx: validating, reloading and checking the reload, or rolling back).
    fn write_time_limit(&self, timeout: Duration) -> Duration {
        timeout
    }
    /// The names of all its backends, for `ipdrift init`.
    fn list_backends(&self) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            anyhow::bail!(
                "load balancer {:?} cannot list its backends; write its backends by hand",
                self.name()
            )
        })
    }
}
