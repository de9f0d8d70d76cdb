//! `[controller]`: how often and how carefully the controller works. Every key has a default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::secret_keys::{SecretAt, SecretKeys};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_REMOVE_FRACTION: f64 = 0.34;
pub const DEFAULT_OWNER_ID: &str = "ipdrift";
/// How long a burst of triggers is gathered into one pass: a file replaced by rename, a
/// batch of queued events, takes far less; a pass takes a few milliseconds more.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(20);
/// The longest `controller.debounce`: beyond it a trigger would be little faster than
/// polling.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(60);
/// The TTL of the record sets an announced maintenance will change, from `lead` before it
/// until their new addresses are verified: what a caching resolver may serve stale.
pub const DEFAULT_MAINTENANCE_TTL: u32 = 10;
/// The shortest default `controller.maintenance_lead`; longer when the records' TTLs are.
pub const MIN_DEFAULT_MAINTENANCE_LEAD: Duration = Duration::from_secs(300);

/// Where the bearer token of `POST /reconcile` is (`reconcile_token_file` or
/// `reconcile_token_env`).
pub const RECONCILE_TOKEN: SecretKeys<'static> = SecretKeys {
    file_key: "reconcile_token_file",
    env_key: "reconcile_token_env",
    missing_key: "reconcile_token_file",
    needs: "POST /reconcile needs a token: add reconcile_token_file = \"path\" or reconcile_token_env = \"VAR\"",
    at_parse: true,
};

#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Time between passes of `ipdrift run`.
    pub interval: Duration,
    /// Address of the /metrics /healthz /readyz server.
    pub listen: SocketAddr,
    /// Limit for each network call (a source listing, a DNS exchange, a runtime-API session).
    pub timeout: Duration,
    /// Removals above this fraction of what a target manages are refused (guard
    /// `max-remove-fraction`; `apply --force` overrides it).
    pub max_remove_fraction: f64,
    /// Written into the ownership TXT record of every RRset this controller creates.
    pub owner_id: String,
    /// Where `run` and `apply` append the audit log (JSON lines); `None`: no audit log.
    pub audit_log: Option<PathBuf>,
    /// When the audit log is flushed to disk.
    pub audit_fsync: crate::audit::Fsync,
    /// How long the triggers of a burst are gathered before their pass starts.
    pub debounce: Duration,
    /// The bearer token `POST /reconcile` requires; `None`: none.
    pub reconcile_token: Option<SecretAt>,
    /// The TTL of the record sets an announced maintenance affects, while it is due.
    pub maintenance_ttl: u32,
    /// How long before an event's `not_before` the TTLs are lowered (and servers drained);
    /// `None`: long enough for the records' own TTLs to expire (see
    /// [`crate::maintenance::MaintenancePolicy::of`]).
    pub maintenance_lead: Option<Duration>,
    /// Whether the load-balancer servers an announced maintenance affects are drained.
    pub maintenance_drain: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    interval: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_remove_fraction: Option<Spanned<f64>>,
    owner_id: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    audit_fsync: Option<Spanned<String>>,
    debounce: Option<Spanned<String>>,
    reconcile_token_file: Option<Spanned<String>>,
    reconcile_token_env: Option<Spanned<String>>,
    maintenance_ttl: Option<Spanned<i64>>,
    #[serde(alias = "lead")]
    maintenance_lead: Option<Spanned<String>>,
    maintenance_drain: Option<bool>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("default listen address")
}

/// The shortest `controller.interval` (and `run --interval`): below it a pass could not
/// even read a target, and the schedule would spin.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// `run --interval`: a duration within the bounds `controller.interval` has.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "the interval must be at least {}",
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    if interval > super::checker::MAX_DURATION {
        return Err("the interval must be shorter than a century".into());
    }
    Ok(interval)
}

pub(super) fn check(c: &mut Checker<'_>, raw: Option<&Spanned<RawController>>) -> ControllerConfig {
    let raw = raw.map(Spanned::get_ref);
    let interval_text = raw.and_then(|r| r.interval.clone());
    let mut interval = c.duration(&interval_text, "controller.interval", DEFAULT_INTERVAL);
    if let Some(text) = &interval_text
        && interval < MIN_INTERVAL
    {
        c.error(
            text,
            "controller.interval",
            format!(
                "{:?} is shorter than {}; write e.g. \"1s\"",
                text.get_ref(),
                humantime::format_duration(MIN_INTERVAL)
            ),
        );
        interval = DEFAULT_INTERVAL;
    }
    let timeout = c.duration(
        &raw.and_then(|r| r.timeout.clone()),
        "controller.timeout",
        DEFAULT_TIMEOUT,
    );
    let listen = match raw.and_then(|r| r.listen.as_ref()) {
        None => default_listen(),
        Some(text) => text.get_ref().parse().unwrap_or_else(|_| {
            c.error(
                text,
                "controller.listen",
                format!(
                    "{:?} is not an IP:port address, e.g. \"127.0.0.1:9808\"",
                    text.get_ref()
                ),
            );
            default_listen()
        }),
    };
    let max_remove_fraction = match raw.and_then(|r| r.max_remove_fraction.as_ref()) {
        None => DEFAULT_MAX_REMOVE_FRACTION,
        Some(f) if *f.get_ref() > 0.0 && *f.get_ref() <= 1.0 => *f.get_ref(),
        Some(f) => {
            c.error(
                f,
                "controller.max_remove_fraction",
                format!(
                    "{} is out of range; use a fraction above 0 and at most 1, e.g. 0.34",
                    f.get_ref()
                ),
            );
            DEFAULT_MAX_REMOVE_FRACTION
        }
    };
    let owner_id = match raw.and_then(|r| r.owner_id.as_ref()) {
        None => DEFAULT_OWNER_ID.to_string(),
        Some(id) => {
            if !super::ha::is_plain_name(id.get_ref(), 64, &['-', '_', '.']) {
                c.error(
                    id,
                    "controller.owner_id",
                    "use 1–64 letters, digits, '-', '_' or '.'",
                );
            }
            id.get_ref().clone()
        }
    };
    let audit_log = raw
        .and_then(|r| r.audit_log.as_ref())
        .map(|path| c.resolve_path(path.get_ref()));
    let audit_fsync = match raw.and_then(|r| r.audit_fsync.as_ref()) {
        None => crate::audit::Fsync::default(),
        Some(text) => crate::audit::Fsync::parse(text.get_ref()).unwrap_or_else(|why| {
            c.error(text, "controller.audit_fsync", why);
            crate::audit::Fsync::default()
        }),
    };
    let debounce_text = raw.and_then(|r| r.debounce.clone());
    let mut debounce = c.duration(&debounce_text, "controller.debounce", DEFAULT_DEBOUNCE);
    if let Some(text) = &debounce_text
        && debounce > MAX_DEBOUNCE
    {
        c.error(
            text,
            "controller.debounce",
            format!(
                "{:?} is longer than {}; write e.g. \"20ms\"",
                text.get_ref(),
                humantime::format_duration(MAX_DEBOUNCE)
            ),
        );
        debounce = DEFAULT_DEBOUNCE;
    }
    // Optional: only a key that is there is checked.
    let (token_file, token_env) = (
        raw.and_then(|r| r.reconcile_token_file.as_ref()),
        raw.and_then(|r| r.reconcile_token_env.as_ref()),
    );
    let reconcile_token = match token_file.or(token_env) {
        None => None,
        Some(at) => {
            let line = c.line_at(at.span().start);
            RECONCILE_TOKEN.check(c, "controller", token_file, token_env, line)
        }
    };
    let maintenance_ttl = match raw.and_then(|r| r.maintenance_ttl.as_ref()) {
        None => DEFAULT_MAINTENANCE_TTL,
        Some(ttl) => match u32::try_from(*ttl.get_ref()) {
            Ok(t) if (1..=86_400).contains(&t) => t,
            _ => {
                c.error(
                    ttl,
                    "controller.maintenance_ttl",
                    format!(
                        "{} is out of range; use seconds from 1 to 86400, e.g. {DEFAULT_MAINTENANCE_TTL}",
                        ttl.get_ref()
                    ),
                );
                DEFAULT_MAINTENANCE_TTL
            }
        },
    };
    let maintenance_lead = raw
        .and_then(|r| r.maintenance_lead.clone())
        .map(|text| c.duration(&Some(text), "controller.maintenance_lead", Duration::ZERO));
    ControllerConfig {
        maintenance_ttl,
        maintenance_lead,
        maintenance_drain: raw.and_then(|r| r.maintenance_drain).unwrap_or(false),
        interval,
        listen,
        timeout,
        max_remove_fraction,
        owner_id,
        audit_log,
        audit_fsync,
        debounce,
        reconcile_token,
    }
}
