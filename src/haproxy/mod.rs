//! HAProxy load balancers through the runtime API: `protocol` is the pure part (command
//! builders that validate every argument, response parsers), `client` the socket I/O.

pub mod client;
pub mod protocol;

use crate::BoxFuture;
use crate::model::{ObservedServer, ServerAdmin, ServerKey};
use std::net::IpAddr;

/// One runtime-API change to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerChange {
    /// `set server B/S addr IP port P`
    SetAddr {
        key: ServerKey,
        addr: IpAddr,
        port: u16,
    },
    /// `set server B/S state ready|maint`
    SetAdmin { key: ServerKey, admin: ServerAdmin },
    /// `add server B/S IP:PORT [check]` (a dynamic server; HAProxy adds it in maintenance).
    /// With `check`, `enable health B/S` follows so HAProxy's own checks judge it.
    Add {
        key: ServerKey,
        addr: IpAddr,
        port: u16,
        check: bool,
    },
    /// `del server B/S` (the server must be in maintenance first).
    Delete { key: ServerKey },
}

impl ServerChange {
    /// Whether HAProxy ends its answer with an empty line. `add server` and `del server`
    /// errors (and `del server`'s success) do not, so those commands go on a connection of
    /// their own where the end of the answer is the end of the connection.
    pub fn answer_is_framed(&self) -> bool {
        matches!(
            self,
            ServerChange::SetAddr { .. } | ServerChange::SetAdmin { .. }
        )
    }
}

/// A load balancer that ipdrift reads and writes.
pub trait LoadBalancer: Send + Sync {
    /// The load balancer's name from config (`[[haproxy]] name`).
    fn name(&self) -> &str;
    /// Reads the servers of each of `backends` (one connection). A backend that does not
    /// exist is an error naming it.
    fn read<'a>(
        &'a self,
        backends: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<ObservedServer>>>;
    /// Sends all `changes` on one connection; any command HAProxy refuses is an error that
    /// quotes HAProxy's answer.
    fn write<'a>(&'a self, changes: &'a [ServerChange]) -> BoxFuture<'a, anyhow::Result<()>>;
}
