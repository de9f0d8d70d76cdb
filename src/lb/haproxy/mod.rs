//! `[[haproxy]]`: HAProxy through its runtime API. This file holds its keys, their checks
//! and its builder; [`protocol`] is the pure part (command builders that validate every
//! argument, response parsers), [`client`] the socket I/O.

pub mod client;
pub mod config_file;
pub mod protocol;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use self::client::HaproxyClient;
use self::protocol::RuntimeApi;
use crate::config::rules::{BackendTables, RawBackend, check_backends};
use crate::config::{BackendRule, Fragment};
use crate::lb::{LbKind, LbSpec, LoadBalancer};

pub const KIND: LbKind = LbKind {
    section: "haproxy",
    backends: "backend",
    check,
};

/// A `[[haproxy]]`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    /// `runtime_api`: `unix:/path` (relative to the config's directory) or `ipv4@IP:PORT`.
    pub runtime_api: RuntimeApi,
    /// `config`: the haproxy.cfg whose `server` lines ipdrift keeps in line with the
    /// runtime, so that a restart serves the same; `None` leaves the file alone.
    pub config_file: Option<PathBuf>,
    /// `haproxy`: the binary that checks a rewritten file (`haproxy -c -f FILE`).
    pub binary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    runtime_api: Spanned<String>,
    config: Option<Spanned<String>>,
    haproxy: Option<Spanned<String>>,
    #[serde(default)]
    backend: Vec<Spanned<RawBackend>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<(Vec<BackendRule>, Arc<dyn LbSpec>)> {
    let raw: RawHaproxy = f.parse()?;
    let runtime_api = match RuntimeApi::parse(raw.runtime_api.get_ref()) {
        Ok(RuntimeApi::Unix(path)) if path.is_relative() => Some(RuntimeApi::Unix(
            f.checker.resolve_path(&path.to_string_lossy()),
        )),
        Ok(api) => Some(api),
        Err(e) => {
            f.error_at(&raw.runtime_api, "runtime_api", e.0);
            None
        }
    };
    let config_file = raw
        .config
        .as_ref()
        .map(|path| f.checker.resolve_path(path.get_ref()));
    let binary = match &raw.haproxy {
        Some(binary) if binary.get_ref().trim().is_empty() => {
            f.error_at(binary, "haproxy", "the haproxy binary must not be empty");
            None
        }
        Some(binary) => Some(binary.get_ref().clone()),
        None => Some("haproxy".to_string()),
    };
    let field = f.field.clone();
    let tables = BackendTables {
        key: KIND.backends,
        default_server: None,
    };
    let backends = check_backends(f.checker, &raw.backend, &field, tables);
    Some((
        backends,
        Arc::new(HaproxyConfig {
            runtime_api: runtime_api?,
            config_file,
            binary: binary?,
        }),
    ))
}

impl LbSpec for HaproxyConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn LoadBalancer>> {
        let client = HaproxyClient::new(name.to_string(), self.runtime_api.clone(), timeout);
        Ok(Box::new(match &self.config_file {
            Some(path) => client.keeping_config_file(path.clone(), self.binary.clone()),
            None => client,
        }))
    }
}
