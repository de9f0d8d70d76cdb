//! The TOML configuration: serde schema → validated, typed [`Config`]. Parsing and
//! validation are pure ([`parse`]); reading the file and the TSIG secrets is done by
//! [`load`] and [`TsigConfig::load_key`]. Every error names the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

use crate::dns::tsig::{TsigAlgorithm, TsigKey, parse_key_file};
use crate::inventory::http::{check_endpoint, looks_like_a_token};
use crate::inventory::{digitalocean, hetzner};
use crate::lb::haproxy::protocol::RuntimeApi;
use crate::model::{AddressKind, DnsName};
use crate::template::NameTemplate;
use crate::validate;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TTL: u32 = 60;
pub const DEFAULT_MAX_REMOVE_FRACTION: f64 = 0.34;
pub const DEFAULT_OWNER_ID: &str = "ipdrift";
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_FAILING_PASSES: u32 = 3;
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// etcd leases last whole seconds; etcd itself grants at least 1.5 election timeouts (2 s
/// with its defaults), and ipdrift goes by what it grants.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths inside were resolved against its directory.
    pub path: PathBuf,
    pub controller: ControllerConfig,
    pub inventories: Vec<InventoryConfig>,
    pub dns: Vec<DnsConfig>,
    pub records: Vec<RecordRule>,
    pub haproxy: Vec<HaproxyConfig>,
    pub notify: Vec<NotifyConfig>,
    /// `[ha]`: several controllers elect one writer through etcd; `None` runs alone.
    pub ha: Option<HaConfig>,
}

/// `[ha]`: leader election on etcd. Only the leader writes; the others observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// etcd client URLs, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// The election's name (a key prefix in etcd); every controller of one fleet uses the same.
    pub election: String,
    /// TTL of the lease that backs the leadership, in whole seconds.
    pub lease_ttl: Duration,
    /// This controller's name: the election value and the `instance` label of `ipdrift_leader`.
    pub instance: String,
    pub tls: Option<EtcdTls>,
    pub auth: Option<EtcdAuth>,
}

/// TLS to etcd: the CA that signed its certificate, and a client certificate if etcd asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    /// `(cert_file, key_file)`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// etcd user authentication; the password is read by [`HaConfig::load_secrets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub user: String,
    pub password: SecretRef,
}

/// What [`HaConfig::load_secrets`] read: PEM files and the password. `Debug` hides them.
pub struct EtcdSecrets {
    pub ca_pem: Option<Vec<u8>>,
    /// `(certificate PEM, key PEM)`.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// `(user, password)`.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for EtcdSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSecrets")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("identity_pem", &self.identity_pem.is_some())
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

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
}

/// A `[[notify]]` webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    pub url: WebhookUrl,
    pub kind: NotifyKind,
    /// Send "repair failing" when a target has failed (or stayed out of sync) this many
    /// passes in a row.
    pub failing_passes: u32,
    /// Limit for one delivery attempt.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// A Slack incoming webhook: `{"text": "…"}`.
    Slack,
    /// The notice as a JSON object.
    Json,
}

/// A webhook URL. Treated as a secret (Slack's carry a token): its `Debug` shows only the
/// scheme and host, and it never appears in logs, errors or the audit log.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Accepts an `http://` or `https://` URL with a host. The error does not quote it.
    pub fn parse(text: &str) -> Result<WebhookUrl, &'static str> {
        match reqwest::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(WebhookUrl(text.to_string()))
            }
            _ => Err("not an http:// or https:// URL with a host"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = reqwest::Url::parse(&self.0)
            .ok()
            .and_then(|u| Some(format!("{}://{}/…", u.scheme(), u.host_str()?)))
            .unwrap_or_else(|| "…".to_string());
        write!(f, "WebhookUrl({host})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    pub name: String,
    pub kind: InventoryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryKind {
    /// A JSON array of instances, re-read every pass.
    File { path: PathBuf },
    /// A command that prints that JSON array on stdout; run in the config's directory.
    Exec {
        command: Vec<String>,
        timeout: Duration,
        dir: PathBuf,
    },
    /// DigitalOcean Droplets, from the API. The token is read by
    /// [`crate::inventory::http::Token::load`] when the source is built.
    DigitalOcean {
        /// `token_env` or `token_file`.
        token: SecretRef,
        /// Only Droplets with this tag (`tag_name`).
        tag: Option<String>,
        /// The API's base URL (`endpoint`, default [`digitalocean::DEFAULT_ENDPOINT`]).
        endpoint: Url,
    },
    /// Hetzner Cloud servers, from the API.
    Hetzner {
        /// `token_env` or `token_file`.
        token: SecretRef,
        /// Only servers this label selector matches (`label_selector`).
        label_selector: Option<String>,
        /// The API's base URL (`endpoint`, default [`hetzner::DEFAULT_ENDPOINT`]).
        endpoint: Url,
    },
    /// EC2 instances of one region, from the AWS API (feature `aws`).
    Aws {
        access: AwsAccess,
        /// EC2 filter name → values, sent with DescribeInstances (`filters`).
        filters: BTreeMap<String, Vec<String>>,
    },
}

/// How to reach an AWS API. Credentials come from the SDK's standard chain (environment,
/// `profile`, instance role, web identity) when the source or target is first used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAccess {
    /// The region whose API is called and that requests are signed for.
    pub region: String,
    /// Another endpoint than AWS's own: a compatible API, or a test server.
    pub endpoint: Option<Url>,
    /// A profile of the shared AWS config and credentials files.
    pub profile: Option<String>,
}

/// Route 53 is global; its API is signed for this region unless `region` says otherwise.
pub const DEFAULT_ROUTE53_REGION: &str = "us-east-1";

/// How long an `exec` source's command may run (`timeout`), unless the config says otherwise.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub name: String,
    pub zone: DnsName,
    pub kind: DnsKind,
}

#[derive(Debug, Clone)]
pub enum DnsKind {
    /// RFC 2136 dynamic updates signed with TSIG.
    Rfc2136 {
        server: SocketAddr,
        tsig: TsigConfig,
    },
    /// An AWS Route 53 hosted zone (feature `aws`).
    Route53 {
        access: AwsAccess,
        /// The hosted zone's id (`zone_id`); `None`: looked up by the zone's name.
        zone_id: Option<String>,
        /// After each change, poll until Route 53 reports it INSYNC (`wait`).
        wait: bool,
    },
}

/// Where a TSIG key comes from. The secret itself is read only by [`TsigConfig::load_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigConfig {
    pub source: TsigSource,
    /// Location of the `tsig` key in the config, for error messages.
    location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsigSource {
    /// A `key "NAME" { algorithm …; secret "…"; };` file as written by `tsig-keygen`.
    KeyFile(PathBuf),
    /// Name and algorithm in the config, the base64 secret in a file or an environment variable.
    Secret {
        name: String,
        algorithm: TsigAlgorithm,
        secret: SecretRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

/// Which instances a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Every tag must be present with this value.
    pub tags: BTreeMap<String, String>,
    /// Only instances from this inventory source; `None` means every source.
    pub source: Option<String>,
}

/// A `[[record]]`: one RRset (fixed name) or one RRset per instance (template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRule {
    pub dns: String,
    pub name: NameTemplate,
    pub select: Selector,
    pub address: AddressKind,
    pub ttl: u32,
    pub policy: RecordPolicy,
    /// Update RRsets the rule names that someone else created (the default: the config is
    /// the statement of intent). `false` leaves them alone.
    pub adopt: bool,
}

/// Whether a rule may delete what it no longer selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPolicy {
    /// Create and update, never delete (the default).
    UpsertOnly,
    /// Also delete RRsets this controller created (ownership record) that the rule no
    /// longer produces, e.g. the record of a terminated instance.
    Sync,
}

/// What happens to the server of an instance that is gone or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRemoval {
    /// Put it in maintenance (the default): nothing is lost, it can come back.
    Maint,
    /// Put it in maintenance, then `del server` (servers from haproxy.cfg come back on reload).
    Delete,
}

/// Who decides that a newly added or re-enabled server may take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthGate {
    /// ipdrift connects to instance:port itself; the server is enabled once that works.
    Probe,
    /// The server is added with `check` and enabled at once; HAProxy's health checks decide.
    Haproxy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub name: String,
    pub runtime_api: RuntimeApi,
    pub backends: Vec<BackendRule>,
}

/// A `[[haproxy.backend]]`: the servers of one backend, one per selected instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRule {
    pub name: String,
    pub select: Selector,
    pub address: AddressKind,
    pub port: u16,
    pub server: NameTemplate,
    pub remove: ServerRemoval,
    pub health: HealthGate,
}

impl Config {
    /// Names of every target (DNS and HAProxy), the values of the `target` metric label.
    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dns.iter().map(|d| d.name.clone()).collect();
        names.extend(self.haproxy.iter().map(|h| h.name.clone()));
        names
    }

    /// Reads every TSIG secret; the errors say which target and what to fix.
    pub fn load_keys(&self) -> Result<BTreeMap<String, TsigKey>, ConfigErrors> {
        let mut keys = BTreeMap::new();
        let mut errors = Vec::new();
        for dns in &self.dns {
            let tsig = match &dns.kind {
                DnsKind::Rfc2136 { tsig, .. } => tsig,
                DnsKind::Route53 { .. } => continue,
            };
            match tsig.load_key() {
                Ok(key) => {
                    keys.insert(dns.name.clone(), key);
                }
                Err(message) => errors.push(ConfigError {
                    path: self.path.clone(),
                    line: Some(tsig.location.line),
                    field: format!("dns \"{}\".tsig", dns.name),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(keys)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl HaConfig {
    /// Reads the TLS files and the password. Errors name the file or variable, never a secret.
    pub fn load_secrets(&self) -> Result<EtcdSecrets, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("ha.{what}: cannot read {}: {e}", path.display()))
        };
        let ca_pem = self
            .tls
            .as_ref()
            .map(|tls| read(&tls.ca_file, "ca_file"))
            .transpose()?;
        let identity_pem = match self.tls.as_ref().and_then(|tls| tls.identity.as_ref()) {
            Some((cert, key)) => Some((read(cert, "cert_file")?, read(key, "key_file")?)),
            None => None,
        };
        let credentials = match &self.auth {
            None => None,
            Some(auth) => {
                let password = match &auth.password {
                    SecretRef::File(path) => std::fs::read_to_string(path).map_err(|e| {
                        format!("ha.password_file: cannot read {}: {e}", path.display())
                    })?,
                    SecretRef::Env(var) => std::env::var(var).map_err(|_| {
                        format!("ha.password_env: environment variable {var} is not set; export the etcd password in it")
                    })?,
                };
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                if password.is_empty() {
                    return Err("ha: the etcd password is empty".to_string());
                }
                Some((auth.user.clone(), password))
            }
        };
        Ok(EtcdSecrets {
            ca_pem,
            identity_pem,
            credentials,
        })
    }
}

impl TsigConfig {
    /// Reads the key (file or environment). Errors never contain the secret.
    pub fn load_key(&self) -> Result<TsigKey, String> {
        match &self.source {
            TsigSource::KeyFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read TSIG key file {}: {e}; create it with `tsig-keygen -a hmac-sha256 NAME > {}`",
                        path.display(),
                        path.display()
                    )
                })?;
                parse_key_file(&text).map_err(|e| format!("TSIG key file {}: {e}", path.display()))
            }
            TsigSource::Secret {
                name,
                algorithm,
                secret,
            } => {
                let (text, origin) = match secret {
                    SecretRef::File(path) => (
                        std::fs::read_to_string(path).map_err(|e| {
                            if looks_like_a_secret(path) {
                                "secret_file does not name a readable file and looks like a base64 secret itself \
                                 (not shown); put the secret in a file and give that file's path"
                                    .to_string()
                            } else {
                                format!(
                                    "cannot read TSIG secret file {}: {e}; it must hold the base64 secret",
                                    path.display()
                                )
                            }
                        })?,
                        format!("secret file {}", path.display()),
                    ),
                    SecretRef::Env(var) if !is_env_var_name(var) => {
                        return Err("secret_env must be the name of an environment variable (letters, digits, '_'); \
                                    the value given is not one and is not shown, in case it is the secret itself"
                            .to_string());
                    }
                    SecretRef::Env(var) => (
                        std::env::var(var).map_err(|_| {
                            format!(
                                "environment variable {var} (secret_env) is not set; export the base64 TSIG secret in it"
                            )
                        })?,
                        format!("environment variable {var}"),
                    ),
                };
                TsigKey::from_base64(name, *algorithm, &text).map_err(|e| format!("{origin}: {e}"))
            }
        }
    }
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A secret pasted where a path belongs: its last component decodes as 16+ bytes of base64.
fn looks_like_a_secret(path: &Path) -> bool {
    use base64::Engine as _;
    let last = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(last.as_bytes())
        .is_ok_and(|bytes| bytes.len() >= 16)
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the config file at `path` (secrets are not read; see [`Config::load_keys`]).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: path.to_path_buf(),
            line: None,
            field: String::new(),
            message: format!(
                "cannot read the config file: {e}; pass --config PATH or set IPDRIFT_CONFIG"
            ),
        }])
    })?;
    parse(&text, path)
}

// ---- serde schema -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    controller: Option<RawController>,
    #[serde(default)]
    inventory: Vec<Spanned<RawInventory>>,
    #[serde(default)]
    dns: Vec<Spanned<RawDns>>,
    #[serde(default)]
    record: Vec<Spanned<RawRecord>>,
    #[serde(default)]
    haproxy: Vec<Spanned<RawHaproxy>>,
    #[serde(default)]
    notify: Vec<Spanned<RawNotify>>,
    ha: Option<Spanned<RawHa>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHa {
    backend: Spanned<String>,
    endpoints: Spanned<Vec<String>>,
    election: Spanned<String>,
    lease_ttl: Option<Spanned<String>>,
    instance: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: Spanned<String>,
    kind: Spanned<String>,
    failing_passes: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    interval: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_remove_fraction: Option<Spanned<f64>>,
    owner_id: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    audit_fsync: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    name: Spanned<String>,
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
    label_selector: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    filters: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    profile: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    name: Spanned<String>,
    kind: Spanned<String>,
    server: Option<Spanned<String>>,
    zone: Spanned<String>,
    tsig: Option<Spanned<RawTsig>>,
    zone_id: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    wait: Option<Spanned<bool>>,
    region: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsig {
    name: Option<String>,
    algorithm: Option<String>,
    secret_file: Option<String>,
    secret_env: Option<String>,
    key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    dns: Spanned<String>,
    name: Spanned<String>,
    select: Option<Spanned<RawSelect>>,
    address: Spanned<String>,
    ttl: Option<Spanned<i64>>,
    policy: Option<Spanned<String>>,
    adopt: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    name: Spanned<String>,
    runtime_api: Spanned<String>,
    #[serde(default)]
    backend: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: Spanned<String>,
    select: Option<Spanned<RawSelect>>,
    address: Spanned<String>,
    port: Spanned<i64>,
    server: Spanned<String>,
    remove: Option<Spanned<String>>,
    health: Option<Spanned<String>>,
}

// ---- validation -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    line: usize,
}

/// Collects errors with their line numbers while the raw config is checked.
struct Checker<'a> {
    source: &'a str,
    path: &'a Path,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn line_of<T>(&self, spanned: &Spanned<T>) -> usize {
        let start = spanned.span().start.min(self.source.len());
        self.source[..start].matches('\n').count() + 1
    }

    fn error<T>(&mut self, at: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) {
        let line = self.line_of(at);
        self.errors.push(ConfigError {
            path: self.path.to_path_buf(),
            line: Some(line),
            field: field.into(),
            message: message.into(),
        });
    }

    fn resolve_path(&self, relative: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(relative)
    }

    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(text, field, "must be longer than zero");
                default
            }
            Err(e) => {
                self.error(
                    text,
                    field,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"10s\" or \"1m\"",
                        text.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn address_kind(&mut self, value: &Spanned<String>, field: &str) -> AddressKind {
        match value.get_ref().as_str() {
            "public_ipv4" => AddressKind::PublicIpv4,
            "private_ipv4" => AddressKind::PrivateIpv4,
            "ipv6" => AddressKind::Ipv6,
            other => {
                self.error(
                    value,
                    field,
                    format!("unknown address {other:?}; use public_ipv4, private_ipv4 or ipv6"),
                );
                AddressKind::PublicIpv4
            }
        }
    }

    fn selector(
        &mut self,
        value: &Option<Spanned<RawSelect>>,
        field: &str,
        sources: &BTreeSet<String>,
    ) -> Selector {
        let Some(select) = value else {
            return Selector::default();
        };
        let raw = select.get_ref();
        if let Some(source) = &raw.source
            && !sources.contains(source)
        {
            self.error(
                select,
                format!("{field}.source"),
                format!("no [[inventory]] is named {source:?}"),
            );
        }
        Selector {
            tags: raw.tags.clone(),
            source: raw.source.clone(),
        }
    }

    fn template(&mut self, value: &Spanned<String>, field: &str) -> Option<NameTemplate> {
        match NameTemplate::parse(value.get_ref()) {
            Ok(t) => Some(t),
            Err(message) => {
                self.error(value, field, message);
                None
            }
        }
    }

    /// Records `name` as used; reports a duplicate.
    fn unique(&mut self, seen: &mut BTreeSet<String>, name: &Spanned<String>, what: &str) {
        if !seen.insert(name.get_ref().clone()) {
            self.error(
                name,
                format!("{what}.name"),
                format!("{:?} is used twice; names must be unique", name.get_ref()),
            );
        }
    }
}

/// Parses and validates config text (pure: no file or network access). `path` is used for
/// error messages and to resolve relative paths.
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = toml::from_str(source).map_err(|e| {
        let line = e
            .span()
            .map(|span| source[..span.start.min(source.len())].matches('\n').count() + 1);
        ConfigErrors(vec![ConfigError {
            path: path.to_path_buf(),
            line,
            field: String::new(),
            message: e.message().trim().to_string(),
        }])
    })?;
    let mut c = Checker {
        source,
        path,
        errors: Vec::new(),
    };

    let controller = {
        let raw_controller = raw.controller.as_ref();
        let interval = c.duration(
            &raw_controller.and_then(|r| r.interval.clone()),
            "controller.interval",
            DEFAULT_INTERVAL,
        );
        let timeout = c.duration(
            &raw_controller.and_then(|r| r.timeout.clone()),
            "controller.timeout",
            DEFAULT_TIMEOUT,
        );
        let listen = match raw_controller.and_then(|r| r.listen.as_ref()) {
            None => DEFAULT_LISTEN.parse().expect("default listen address"),
            Some(text) => match text.get_ref().parse() {
                Ok(addr) => addr,
                Err(_) => {
                    c.error(
                        text,
                        "controller.listen",
                        format!(
                            "{:?} is not an IP:port address, e.g. \"127.0.0.1:9808\"",
                            text.get_ref()
                        ),
                    );
                    DEFAULT_LISTEN.parse().expect("default listen address")
                }
            },
        };
        let max_remove_fraction = match raw_controller.and_then(|r| r.max_remove_fraction.as_ref())
        {
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
        let owner_id = match raw_controller.and_then(|r| r.owner_id.as_ref()) {
            None => DEFAULT_OWNER_ID.to_string(),
            Some(id) => {
                let text = id.get_ref();
                let ok = !text.is_empty()
                    && text.len() <= 64
                    && text
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
                if !ok {
                    c.error(
                        id,
                        "controller.owner_id",
                        "use 1–64 letters, digits, '-', '_' or '.'",
                    );
                }
                text.clone()
            }
        };
        let audit_log = raw_controller
            .and_then(|r| r.audit_log.as_ref())
            .map(|path| c.resolve_path(path.get_ref()));
        let audit_fsync = match raw_controller.and_then(|r| r.audit_fsync.as_ref()) {
            None => crate::audit::Fsync::default(),
            Some(text) => crate::audit::Fsync::parse(text.get_ref()).unwrap_or_else(|why| {
                c.error(text, "controller.audit_fsync", why);
                crate::audit::Fsync::default()
            }),
        };
        ControllerConfig {
            interval,
            listen,
            timeout,
            max_remove_fraction,
            owner_id,
            audit_log,
            audit_fsync,
        }
    };

    let mut inventories = Vec::new();
    let mut inventory_names = BTreeSet::new();
    if raw.inventory.is_empty() {
        c.errors.push(ConfigError {
            path: path.to_path_buf(),
            line: None,
            field: "inventory".into(),
            message: "at least one [[inventory]] source is required".into(),
        });
    }
    for inv in &raw.inventory {
        let r = inv.get_ref();
        c.unique(&mut inventory_names, &r.name, "inventory");
        let field = format!("inventory \"{}\"", r.name.get_ref());
        let kind = r.kind.get_ref().as_str();
        if let Some(takes) = inventory_keys(kind) {
            stray_inventory_keys(&mut c, r, &field, kind, takes);
        }
        match kind {
            "file" => match &r.path {
                Some(p) => inventories.push(InventoryConfig {
                    name: r.name.get_ref().clone(),
                    kind: InventoryKind::File {
                        path: c.resolve_path(p.get_ref()),
                    },
                }),
                None => c.error(
                    inv,
                    format!("{field}.path"),
                    "a file inventory needs `path = \"instances.json\"`",
                ),
            },
            "exec" => match &r.command {
                Some(command) if !command.get_ref().is_empty() && !command.get_ref()[0].is_empty() => {
                    let timeout = c.duration(&r.timeout, &format!("{field}.timeout"), DEFAULT_EXEC_TIMEOUT);
                    let dir = c.path.parent().unwrap_or(Path::new(".")).to_path_buf();
                    inventories.push(InventoryConfig {
                        name: r.name.get_ref().clone(),
                        kind: InventoryKind::Exec { command: command.get_ref().clone(), timeout, dir },
                    });
                }
                Some(command) => c.error(command, format!("{field}.command"), "the command must not be empty"),
                None => c.error(
                    inv,
                    format!("{field}.command"),
                    "an exec inventory needs `command = [\"program\", \"arg\", …]` printing the instances as JSON",
                ),
            },
            "digitalocean" | "hetzner" => {
                if let Some(kind) = cloud_inventory(&mut c, inv, &field) {
                    inventories.push(InventoryConfig {
                        name: r.name.get_ref().clone(),
                        kind,
                    });
                }
            }
            "aws" if !cfg!(feature = "aws") => {
                c.error(&r.kind, format!("{field}.kind"), WITHOUT_AWS);
            }
            "aws" => {
                if let Some(kind) = aws_inventory(&mut c, inv, &field) {
                    inventories.push(InventoryConfig {
                        name: r.name.get_ref().clone(),
                        kind,
                    });
                }
            }
            other => c.error(
                &r.kind,
                format!("{field}.kind"),
                format!("unknown inventory kind {other:?}; supported: file, exec, digitalocean, hetzner, aws"),
            ),
        }
    }

    let mut target_names = BTreeSet::new();
    let mut dns_targets = Vec::new();
    for dns in &raw.dns {
        let r = dns.get_ref();
        c.unique(&mut target_names, &r.name, "dns");
        let field = format!("dns \"{}\"", r.name.get_ref());
        let zone = match validate::dns_name(r.zone.get_ref()) {
            Ok(z) => Some(z),
            Err(e) => {
                c.error(&r.zone, format!("{field}.zone"), e.0);
                None
            }
        };
        let kind_name = r.kind.get_ref().as_str();
        if let Some(takes) = dns_keys(kind_name) {
            stray_dns_keys(&mut c, r, &field, kind_name, takes);
        }
        let kind = match kind_name {
            "rfc2136" => {
                let server = match &r.server {
                    None => {
                        c.error(dns, format!("{field}.server"), "an rfc2136 target needs `server = \"IP:PORT\"` (the primary that accepts UPDATE)");
                        None
                    }
                    Some(text) => match parse_server_addr(text.get_ref()) {
                        Ok(addr) => Some(addr),
                        Err(message) => {
                            c.error(text, format!("{field}.server"), message);
                            None
                        }
                    },
                };
                let tsig = match &r.tsig {
                    None => {
                        c.error(dns, format!("{field}.tsig"), "an rfc2136 target needs a TSIG key: `tsig = { key_file = \"…\" }` or `{ name, algorithm, secret_file }`");
                        None
                    }
                    Some(t) => tsig_config(&mut c, t, &format!("{field}.tsig")),
                };
                match (server, tsig) {
                    (Some(server), Some(tsig)) => Some(DnsKind::Rfc2136 { server, tsig }),
                    _ => None,
                }
            }
            "route53" if !cfg!(feature = "aws") => {
                c.error(&r.kind, format!("{field}.kind"), WITHOUT_AWS);
                None
            }
            "route53" => route53_target(&mut c, r, &field),
            other => {
                c.error(
                    &r.kind,
                    format!("{field}.kind"),
                    format!("unknown dns kind {other:?}; supported: rfc2136, route53"),
                );
                None
            }
        };
        if let (Some(zone), Some(kind)) = (zone, kind) {
            dns_targets.push(DnsConfig {
                name: r.name.get_ref().clone(),
                zone,
                kind,
            });
        }
    }

    let mut records = Vec::new();
    let mut fixed_records = BTreeSet::new();
    for (index, rec) in raw.record.iter().enumerate() {
        let r = rec.get_ref();
        let field = format!("record[{index}]");
        let address = c.address_kind(&r.address, &format!("{field}.address"));
        let select = c.selector(&r.select, &format!("{field}.select"), &inventory_names);
        let ttl = match &r.ttl {
            None => DEFAULT_TTL,
            Some(t) => match u32::try_from(*t.get_ref()) {
                Ok(ttl) if ttl <= i32::MAX as u32 => ttl,
                _ => {
                    c.error(
                        t,
                        format!("{field}.ttl"),
                        format!("{} is out of range; use 0–2147483647 seconds", t.get_ref()),
                    );
                    DEFAULT_TTL
                }
            },
        };
        let zone = dns_targets
            .iter()
            .find(|d| &d.name == r.dns.get_ref())
            .map(|d| d.zone.clone());
        if zone.is_none()
            && !raw
                .dns
                .iter()
                .any(|d| d.get_ref().name.get_ref() == r.dns.get_ref())
        {
            c.error(
                &r.dns,
                format!("{field}.dns"),
                format!("no [[dns]] target is named {:?}", r.dns.get_ref()),
            );
        }
        let Some(name) = c.template(&r.name, &format!("{field}.name")) else {
            continue;
        };
        // Check the template's literal parts by rendering it with a harmless sample.
        match validate::dns_name(&name.render_with("sample", "sample")) {
            Err(e) => c.error(&r.name, format!("{field}.name"), e.0),
            Ok(rendered) => {
                if let Some(zone) = &zone
                    && !rendered.is_in_zone(zone)
                {
                    c.error(
                        &r.name,
                        format!("{field}.name"),
                        format!(
                            "{} is not inside zone {zone} of dns target {:?}",
                            r.name.get_ref(),
                            r.dns.get_ref()
                        ),
                    );
                }
                if !name.is_per_instance()
                    && !fixed_records.insert((
                        r.dns.get_ref().clone(),
                        rendered.clone(),
                        address.record_type(),
                    ))
                {
                    c.error(&r.name, format!("{field}.name"), format!("{rendered} {} is already managed by another [[record]]; merge the two rules", address.record_type()));
                }
            }
        }
        let policy = match r.policy.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "upsert-only")) => RecordPolicy::UpsertOnly,
            Some((_, "sync")) => RecordPolicy::Sync,
            Some((p, other)) => {
                c.error(
                    p,
                    format!("{field}.policy"),
                    format!("unknown policy {other:?}; use \"upsert-only\" or \"sync\""),
                );
                RecordPolicy::UpsertOnly
            }
        };
        let adopt = r.adopt.unwrap_or(true);
        records.push(RecordRule {
            dns: r.dns.get_ref().clone(),
            name,
            select,
            address,
            ttl,
            policy,
            adopt,
        });
    }

    let mut haproxies = Vec::new();
    for lb in &raw.haproxy {
        let r = lb.get_ref();
        c.unique(&mut target_names, &r.name, "haproxy");
        let field = format!("haproxy \"{}\"", r.name.get_ref());
        let runtime_api = match RuntimeApi::parse(r.runtime_api.get_ref()) {
            Ok(api) => Some(resolve_runtime_api(&c, api)),
            Err(e) => {
                c.error(&r.runtime_api, format!("{field}.runtime_api"), e.0);
                None
            }
        };
        let mut backends = Vec::new();
        let mut backend_names = BTreeSet::new();
        for be in &r.backend {
            let b = be.get_ref();
            let bfield = format!("{field}.backend \"{}\"", b.name.get_ref());
            if !backend_names.insert(b.name.get_ref().clone()) {
                c.error(
                    &b.name,
                    format!("{bfield}.name"),
                    "this backend is configured twice in the same load balancer; merge the two",
                );
            }
            if let Err(e) = validate::haproxy_name(b.name.get_ref()) {
                c.error(&b.name, format!("{bfield}.name"), e.0);
            }
            let address = c.address_kind(&b.address, &format!("{bfield}.address"));
            let select = c.selector(&b.select, &format!("{bfield}.select"), &inventory_names);
            let port = match validate::port(*b.port.get_ref()) {
                Ok(p) => p,
                Err(e) => {
                    c.error(&b.port, format!("{bfield}.port"), e.0);
                    continue;
                }
            };
            let Some(server) = c.template(&b.server, &format!("{bfield}.server")) else {
                continue;
            };
            if let Err(e) = validate::haproxy_name(&server.render_with("sample", "sample")) {
                c.error(&b.server, format!("{bfield}.server"), e.0);
            }
            let remove = match b.remove.as_ref().map(|v| (v, v.get_ref().as_str())) {
                None | Some((_, "maint")) => ServerRemoval::Maint,
                Some((_, "delete")) => ServerRemoval::Delete,
                Some((v, other)) => {
                    c.error(
                        v,
                        format!("{bfield}.remove"),
                        format!("unknown removal {other:?}; use \"maint\" or \"delete\""),
                    );
                    ServerRemoval::Maint
                }
            };
            let health = match b.health.as_ref().map(|v| (v, v.get_ref().as_str())) {
                None | Some((_, "probe")) => HealthGate::Probe,
                Some((_, "haproxy")) => HealthGate::Haproxy,
                Some((v, other)) => {
                    c.error(
                        v,
                        format!("{bfield}.health"),
                        format!("unknown health gate {other:?}; use \"probe\" or \"haproxy\""),
                    );
                    HealthGate::Probe
                }
            };
            backends.push(BackendRule {
                name: b.name.get_ref().clone(),
                select,
                address,
                port,
                server,
                remove,
                health,
            });
        }
        if let Some(runtime_api) = runtime_api {
            haproxies.push(HaproxyConfig {
                name: r.name.get_ref().clone(),
                runtime_api,
                backends,
            });
        }
    }

    let notify = raw
        .notify
        .iter()
        .enumerate()
        .filter_map(|(index, n)| notify_config(&mut c, n.get_ref(), index + 1))
        .collect();

    let ha = raw.ha.as_ref().and_then(|ha| ha_config(&mut c, ha));

    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            controller,
            inventories,
            dns: dns_targets,
            records,
            haproxy: haproxies,
            notify,
            ha,
        })
    } else {
        Err(ConfigErrors(c.errors))
    }
}

/// Letters, digits and `extra`, 1 to `max` of them.
fn is_plain_name(text: &str, max: usize, extra: &[char]) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || extra.contains(&ch))
}

/// The default `ha.instance`: the host name (a pod's name in Kubernetes), or one made
/// from the process id where the host name is unusable.
pub fn default_instance() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| is_plain_name(name, 64, &['-', '_', '.']))
        .unwrap_or_else(|| format!("ipdrift-{}", std::process::id()))
}

/// `[ha]`: the etcd election. Endpoints are URLs with an explicit port; https needs the CA.
fn ha_config(c: &mut Checker<'_>, spanned: &Spanned<RawHa>) -> Option<HaConfig> {
    let raw = spanned.get_ref();
    let errors_before = c.errors.len();
    if raw.backend.get_ref() != "etcd" {
        c.error(
            &raw.backend,
            "ha.backend",
            format!(
                "unknown backend {:?}; supported: etcd",
                raw.backend.get_ref()
            ),
        );
    }
    // A bare HOST:PORT means http://, as for etcdctl.
    let endpoints: Vec<String> = raw
        .endpoints
        .get_ref()
        .iter()
        .map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        c.error(
            &raw.endpoints,
            "ha.endpoints",
            "list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    let mut schemes = BTreeSet::new();
    for endpoint in &endpoints {
        match Url::parse(endpoint) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.port().is_some()
                    && matches!(url.path(), "" | "/")
                    && url.query().is_none()
                    && url.username().is_empty() =>
            {
                schemes.insert(url.scheme().to_string());
            }
            _ => c.error(
                &raw.endpoints,
                "ha.endpoints",
                format!(
                    "{endpoint:?} is not an etcd client URL; write \"http://HOST:PORT\" or \"https://HOST:PORT\", e.g. \"http://127.0.0.1:2379\""
                ),
            ),
        }
    }
    if schemes.len() > 1 {
        c.error(
            &raw.endpoints,
            "ha.endpoints",
            "mix of http:// and https://; use one scheme for every endpoint",
        );
    }
    let https = schemes.contains("https");
    let election = raw.election.get_ref();
    if !is_plain_name(election, 128, &['-', '_', '.', '/'])
        || election.starts_with('/')
        || election.ends_with('/')
    {
        c.error(
            &raw.election,
            "ha.election",
            "use 1–128 letters, digits, '-', '_', '.' or '/' not at either end, e.g. \"ipdrift/prod\"; every controller of one fleet uses the same",
        );
    }
    let lease_ttl = c.duration(&raw.lease_ttl, "ha.lease_ttl", DEFAULT_LEASE_TTL);
    if let Some(text) = &raw.lease_ttl
        && (lease_ttl < MIN_LEASE_TTL || lease_ttl.subsec_nanos() != 0)
    {
        c.error(
            text,
            "ha.lease_ttl",
            "etcd leases last whole seconds, at least 1; write e.g. \"10s\"",
        );
    }
    let instance = match &raw.instance {
        None => default_instance(),
        Some(name) => {
            if !is_plain_name(name.get_ref(), 64, &['-', '_', '.']) {
                c.error(
                    name,
                    "ha.instance",
                    "use 1–64 letters, digits, '-', '_' or '.'",
                );
            }
            name.get_ref().clone()
        }
    };
    let tls = match (&raw.ca_file, &raw.cert_file, &raw.key_file) {
        (None, None, None) => {
            if https {
                c.error(
                    &raw.endpoints,
                    "ha.ca_file",
                    "https:// endpoints need ca_file = \"…\": the CA certificate (PEM) that signed etcd's server certificate",
                );
            }
            None
        }
        (ca, cert, key) => {
            if !https {
                c.error(
                    spanned,
                    "ha.ca_file",
                    "ca_file, cert_file and key_file are for TLS; the endpoints must then be https://",
                );
            }
            let identity = match (cert, key) {
                (Some(cert), Some(key)) => Some((
                    c.resolve_path(cert.get_ref()),
                    c.resolve_path(key.get_ref()),
                )),
                (None, None) => None,
                _ => {
                    c.error(
                        spanned,
                        "ha.cert_file",
                        "a client certificate needs both cert_file and key_file",
                    );
                    None
                }
            };
            match ca {
                Some(ca) => Some(EtcdTls {
                    ca_file: c.resolve_path(ca.get_ref()),
                    identity,
                }),
                None => {
                    c.error(
                        spanned,
                        "ha.ca_file",
                        "TLS needs ca_file: the CA certificate (PEM) that signed etcd's server certificate",
                    );
                    None
                }
            }
        }
    };
    let auth = match (&raw.user, &raw.password_file, &raw.password_env) {
        (None, None, None) => None,
        (Some(user), file, env) => {
            if !is_plain_name(user.get_ref(), 128, &['-', '_', '.', '@']) {
                c.error(
                    user,
                    "ha.user",
                    "use 1–128 letters, digits, '-', '_', '.' or '@'",
                );
            }
            let password = match (file, env) {
                (Some(file), None) => Some(SecretRef::File(c.resolve_path(file.get_ref()))),
                (None, Some(var)) if is_env_var_name(var.get_ref()) => {
                    Some(SecretRef::Env(var.get_ref().clone()))
                }
                (None, Some(var)) => {
                    c.error(
                        var,
                        "ha.password_env",
                        "must be the name of an environment variable (letters, digits, '_'); the value given is not one and is not shown",
                    );
                    None
                }
                (Some(_), Some(_)) => {
                    c.error(
                        user,
                        "ha.password_file",
                        "give either password_file or password_env, not both",
                    );
                    None
                }
                (None, None) => {
                    c.error(
                        user,
                        "ha.password_file",
                        "user needs a password: password_file = \"etcd.password\" or password_env = \"VAR\"",
                    );
                    None
                }
            };
            password.map(|password| EtcdAuth {
                user: user.get_ref().clone(),
                password,
            })
        }
        (None, _, _) => {
            c.error(
                spanned,
                "ha.user",
                "password_file and password_env need user = \"…\"",
            );
            None
        }
    };
    (c.errors.len() == errors_before).then(|| HaConfig {
        endpoints,
        election: election.clone(),
        lease_ttl,
        instance,
        tls,
        auth,
    })
}

/// One `[[notify]]` (the `number`th, 1-based). Errors never quote the URL: it may hold a token.
fn notify_config(c: &mut Checker<'_>, raw: &RawNotify, number: usize) -> Option<NotifyConfig> {
    let field = format!("notify[{number}]");
    let url = match WebhookUrl::parse(raw.url.get_ref()) {
        Ok(url) => Some(url),
        Err(message) => {
            c.error(&raw.url, format!("{field}.url"), message);
            None
        }
    };
    let kind = match raw.kind.get_ref().as_str() {
        "slack" => Some(NotifyKind::Slack),
        "json" => Some(NotifyKind::Json),
        other => {
            c.error(
                &raw.kind,
                format!("{field}.kind"),
                format!("unknown kind {other:?}; use \"slack\" or \"json\""),
            );
            None
        }
    };
    let failing_passes = match &raw.failing_passes {
        None => DEFAULT_FAILING_PASSES,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                c.error(
                    n,
                    format!("{field}.failing_passes"),
                    "must be a whole number of passes, 1 or more",
                );
                DEFAULT_FAILING_PASSES
            }
        },
    };
    let timeout = c.duration(
        &raw.timeout,
        &format!("{field}.timeout"),
        DEFAULT_NOTIFY_TIMEOUT,
    );
    Some(NotifyConfig {
        url: url?,
        kind: kind?,
        failing_passes,
        timeout,
    })
}

/// The `[[inventory]]` keys (besides `name` and `kind`) each kind takes.
fn inventory_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "file" => &["path"],
        "exec" => &["command", "timeout"],
        "digitalocean" => &["token_env", "token_file", "tag", "endpoint"],
        "hetzner" => &["token_env", "token_file", "label_selector", "endpoint"],
        "aws" => &["region", "endpoint", "filters", "profile"],
        _ => return None,
    })
}

/// A key that the source's kind does not take is an error, not something silently ignored
/// (a `label_selector` on a DigitalOcean source would otherwise list every Droplet).
fn stray_inventory_keys(
    c: &mut Checker<'_>,
    r: &RawInventory,
    field: &str,
    kind: &str,
    takes: &[&str],
) {
    let what = format!("a {kind} inventory");
    stray_key(c, &r.path, "path", field, &what, takes);
    stray_key(c, &r.command, "command", field, &what, takes);
    stray_key(c, &r.timeout, "timeout", field, &what, takes);
    stray_key(c, &r.token_env, "token_env", field, &what, takes);
    stray_key(c, &r.token_file, "token_file", field, &what, takes);
    stray_key(c, &r.tag, "tag", field, &what, takes);
    stray_key(c, &r.label_selector, "label_selector", field, &what, takes);
    stray_key(c, &r.endpoint, "endpoint", field, &what, takes);
    stray_key(c, &r.region, "region", field, &what, takes);
    stray_key(c, &r.filters, "filters", field, &what, takes);
    stray_key(c, &r.profile, "profile", field, &what, takes);
}

/// A key that the table's kind does not take: an error naming the keys it does take.
fn stray_key<T>(
    c: &mut Checker<'_>,
    value: &Option<Spanned<T>>,
    key: &str,
    field: &str,
    what: &str,
    takes: &[&str],
) {
    if let Some(value) = value
        && !takes.contains(&key)
    {
        c.error(
            value,
            format!("{field}.{key}"),
            format!(
                "{what} does not take `{key}`; its keys are {}",
                takes.join(", ")
            ),
        );
    }
}

/// The `[[dns]]` keys (besides `name`, `kind` and `zone`) each kind takes.
fn dns_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "rfc2136" => &["server", "tsig"],
        "route53" => &["zone_id", "endpoint", "wait", "region", "profile"],
        _ => return None,
    })
}

/// A `tsig` on a Route 53 target, or a `zone_id` on an RFC 2136 one, is an error.
fn stray_dns_keys(c: &mut Checker<'_>, r: &RawDns, field: &str, kind: &str, takes: &[&str]) {
    let what = format!("a {kind} target");
    stray_key(c, &r.server, "server", field, &what, takes);
    stray_key(c, &r.tsig, "tsig", field, &what, takes);
    stray_key(c, &r.zone_id, "zone_id", field, &what, takes);
    stray_key(c, &r.endpoint, "endpoint", field, &what, takes);
    stray_key(c, &r.wait, "wait", field, &what, takes);
    stray_key(c, &r.region, "region", field, &what, takes);
    stray_key(c, &r.profile, "profile", field, &what, takes);
}

/// Why `kind = "aws"` / `"route53"` is refused by a build without them.
pub(crate) const WITHOUT_AWS: &str = "ipdrift was built without the aws feature, which this kind needs; \
    rebuild with the default features (`cargo build --release`) or `--features aws`";

/// An `aws` source: region, endpoint, profile and the DescribeInstances filters.
fn aws_inventory(
    c: &mut Checker<'_>,
    inv: &Spanned<RawInventory>,
    field: &str,
) -> Option<InventoryKind> {
    let r = inv.get_ref();
    let Some(region) = &r.region else {
        c.error(
            inv,
            format!("{field}.region"),
            "an aws inventory needs `region = \"eu-west-1\"` (the region whose instances it lists)",
        );
        return None;
    };
    let access = aws_access(c, Some(region), &r.endpoint, &r.profile, field, "")?;
    let mut filters = BTreeMap::new();
    if let Some(raw) = &r.filters {
        for (name, values) in raw.get_ref() {
            let problem = if name.trim().is_empty() {
                Some("a filter name must not be empty".to_string())
            } else if values.is_empty() {
                Some(format!(
                    "filter {name:?} has no values; give at least one, e.g. {{ \"tag:env\" = [\"prod\"] }}"
                ))
            } else if name
                .chars()
                .chain(values.iter().flat_map(|v| v.chars()))
                .any(char::is_control)
            {
                Some(format!("filter {name:?} holds control characters"))
            } else {
                None
            };
            match problem {
                Some(message) => c.error(raw, format!("{field}.filters"), message),
                None => {
                    filters.insert(name.clone(), values.clone());
                }
            }
        }
    }
    Some(InventoryKind::Aws { access, filters })
}

/// A `route53` target: the zone's id (or none: looked up by name), endpoint, region,
/// profile and whether to wait for INSYNC.
fn route53_target(c: &mut Checker<'_>, r: &RawDns, field: &str) -> Option<DnsKind> {
    let zone_id = match &r.zone_id {
        None => None,
        Some(id) => {
            // The API hands ids out as `/hostedzone/Z…`; either form is accepted.
            let text = id.get_ref().trim();
            let bare = text.strip_prefix("/hostedzone/").unwrap_or(text);
            if bare.is_empty()
                || bare.len() > 32
                || !bare.chars().all(|ch| ch.is_ascii_alphanumeric())
            {
                c.error(
                    id,
                    format!("{field}.zone_id"),
                    format!("{text:?} is not a hosted zone id such as \"Z0123456789ABCDEFGHIJ\" (letters and digits)"),
                );
                return None;
            }
            Some(bare.to_string())
        }
    };
    let access = aws_access(
        c,
        r.region.as_ref(),
        &r.endpoint,
        &r.profile,
        field,
        DEFAULT_ROUTE53_REGION,
    )?;
    Some(DnsKind::Route53 {
        access,
        zone_id,
        wait: r.wait.as_ref().is_some_and(|w| *w.get_ref()),
    })
}

/// `region` (or `default_region` when it is absent), `endpoint` and `profile`, checked.
fn aws_access(
    c: &mut Checker<'_>,
    region: Option<&Spanned<String>>,
    endpoint: &Option<Spanned<String>>,
    profile: &Option<Spanned<String>>,
    field: &str,
    default_region: &str,
) -> Option<AwsAccess> {
    let mut ok = true;
    let region = match region {
        None => default_region.to_string(),
        Some(text) => {
            let value = text.get_ref();
            let valid = !value.is_empty()
                && value.len() <= 32
                && value
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !valid {
                c.error(
                    text,
                    format!("{field}.region"),
                    format!("{value:?} is not an AWS region; write e.g. \"eu-west-1\""),
                );
                ok = false;
            }
            value.clone()
        }
    };
    let endpoint = endpoint
        .as_ref()
        .and_then(|text| match check_endpoint(text.get_ref()) {
            Ok(url) => Some(url),
            Err(message) => {
                c.error(text, format!("{field}.endpoint"), message);
                ok = false;
                None
            }
        });
    let profile = profile.as_ref().map(|text| {
        let value = text.get_ref();
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            c.error(
                text,
                format!("{field}.profile"),
                "must name a profile of ~/.aws/config, e.g. \"ipdrift\"",
            );
            ok = false;
        }
        value.clone()
    });
    ok.then_some(AwsAccess {
        region,
        endpoint,
        profile,
    })
}

/// A `digitalocean` or `hetzner` source: token, endpoint and the provider's filter.
fn cloud_inventory(
    c: &mut Checker<'_>,
    inv: &Spanned<RawInventory>,
    field: &str,
) -> Option<InventoryKind> {
    let r = inv.get_ref();
    let token = inventory_token(c, inv, field);
    if r.kind.get_ref() == "hetzner" {
        let endpoint = inventory_endpoint(c, &r.endpoint, field, hetzner::DEFAULT_ENDPOINT);
        let label_selector = r.label_selector.as_ref().map(|selector| {
            let text = selector.get_ref().trim();
            if text.is_empty() {
                c.error(
                    selector,
                    format!("{field}.label_selector"),
                    "must not be empty; write e.g. \"role=web\", or leave it out to list every server",
                );
            }
            text.to_string()
        });
        return Some(InventoryKind::Hetzner {
            token: token?,
            label_selector,
            endpoint,
        });
    }
    let endpoint = inventory_endpoint(c, &r.endpoint, field, digitalocean::DEFAULT_ENDPOINT);
    let tag = r.tag.as_ref().map(|tag| {
        let text = tag.get_ref();
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, ':' | '-' | '_'));
        if !ok {
            c.error(
                tag,
                format!("{field}.tag"),
                format!(
                    "{text:?} is not a DigitalOcean tag: use 1–255 letters, digits, ':', '-' or '_', e.g. \"role:web\""
                ),
            );
        }
        text.clone()
    });
    Some(InventoryKind::DigitalOcean {
        token: token?,
        tag,
        endpoint,
    })
}

/// Where a cloud source's API token comes from: exactly one of `token_env`, `token_file`.
/// Values that look like a token pasted in by mistake are refused without being shown.
fn inventory_token(
    c: &mut Checker<'_>,
    inv: &Spanned<RawInventory>,
    field: &str,
) -> Option<SecretRef> {
    let r = inv.get_ref();
    match (&r.token_env, &r.token_file) {
        (Some(var), None) => {
            if !is_env_var_name(var.get_ref()) || looks_like_a_token(var.get_ref()) {
                c.error(
                    var,
                    format!("{field}.token_env"),
                    "must be the name of an environment variable (letters, digits, '_'); the value \
                     given is not one, or looks like a token itself, and is not shown",
                );
                return None;
            }
            Some(SecretRef::Env(var.get_ref().clone()))
        }
        (None, Some(file)) => {
            let text = file.get_ref();
            let last = Path::new(text)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if text.is_empty() || looks_like_a_token(&last) {
                c.error(
                    file,
                    format!("{field}.token_file"),
                    "must be the path of a file holding the API token; the value given is empty or \
                     looks like a token itself (not shown)",
                );
                return None;
            }
            Some(SecretRef::File(c.resolve_path(text)))
        }
        (Some(_), Some(file)) => {
            c.error(file, field, "give either token_env or token_file, not both");
            None
        }
        (None, None) => {
            c.error(
                inv,
                format!("{field}.token_env"),
                "the API needs a token: add token_env = \"VAR\" (an environment variable holding it) or token_file = \"path\"",
            );
            None
        }
    }
}

/// A cloud source's `endpoint`, or the provider's own API.
fn inventory_endpoint(
    c: &mut Checker<'_>,
    value: &Option<Spanned<String>>,
    field: &str,
    default: &str,
) -> Url {
    let default = || Url::parse(default).expect("the default endpoint is a URL");
    let Some(text) = value else {
        return default();
    };
    check_endpoint(text.get_ref()).unwrap_or_else(|message| {
        c.error(text, format!("{field}.endpoint"), message);
        default()
    })
}

/// `IP:PORT`, or a bare IP meaning port 53.
fn parse_server_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("port 0 in {text:?} is out of range; use 1–65535"));
        }
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "{text:?} is not an IP:PORT address, e.g. \"127.0.0.1:53\" (host names are not resolved, so that a broken resolver cannot misdirect updates)"
    ))
}

fn resolve_runtime_api(c: &Checker<'_>, api: RuntimeApi) -> RuntimeApi {
    match api {
        RuntimeApi::Unix(path) if path.is_relative() => {
            RuntimeApi::Unix(c.resolve_path(&path.to_string_lossy()))
        }
        other => other,
    }
}

fn tsig_config(c: &mut Checker<'_>, spanned: &Spanned<RawTsig>, field: &str) -> Option<TsigConfig> {
    let t = spanned.get_ref();
    let location = Location {
        line: c.line_of(spanned),
    };
    if let Some(key_file) = &t.key_file {
        if t.secret_file.is_some()
            || t.secret_env.is_some()
            || t.name.is_some()
            || t.algorithm.is_some()
        {
            c.error(spanned, field, "key_file already holds the name, algorithm and secret; remove name/algorithm/secret_file/secret_env");
            return None;
        }
        return Some(TsigConfig {
            source: TsigSource::KeyFile(c.resolve_path(key_file)),
            location,
        });
    }
    let mut ok = true;
    let name = match &t.name {
        Some(n) => match validate::dns_name(n) {
            Ok(_) => Some(n.clone()),
            Err(e) => {
                c.error(spanned, format!("{field}.name"), e.0);
                ok = false;
                None
            }
        },
        None => {
            c.error(
                spanned,
                format!("{field}.name"),
                "missing: the key's name as the DNS server knows it (or use key_file)",
            );
            ok = false;
            None
        }
    };
    let algorithm = match t.algorithm.as_deref().map(TsigAlgorithm::parse) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            c.error(spanned, format!("{field}.algorithm"), e.to_string());
            ok = false;
            None
        }
        None => {
            c.error(
                spanned,
                format!("{field}.algorithm"),
                "missing: hmac-sha256, hmac-sha384 or hmac-sha512",
            );
            ok = false;
            None
        }
    };
    let secret = match (&t.secret_file, &t.secret_env) {
        (Some(file), None) => Some(SecretRef::File(c.resolve_path(file))),
        (None, Some(var)) => Some(SecretRef::Env(var.clone())),
        (Some(_), Some(_)) => {
            c.error(
                spanned,
                field,
                "give either secret_file or secret_env, not both",
            );
            None
        }
        (None, None) => {
            c.error(spanned, field, "missing secret: add secret_file = \"tsig.secret\" or secret_env = \"VAR\" (or use key_file)");
            None
        }
    };
    match (ok, name, algorithm, secret) {
        (true, Some(name), Some(algorithm), Some(secret)) => Some(TsigConfig {
            source: TsigSource::Secret {
                name,
                algorithm,
                secret,
            },
            location,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/ipdrift.example.toml");

    fn errors_of(text: &str) -> Vec<ConfigError> {
        parse(text, Path::new("/etc/ipdrift/test.toml"))
            .expect_err("config should be invalid")
            .0
    }

    #[test]
    fn the_example_config_parses_with_every_field() {
        let c = parse(EXAMPLE, Path::new("/etc/ipdrift/ipdrift.toml")).unwrap();
        assert_eq!(c.controller.interval, Duration::from_secs(10));
        assert_eq!(c.controller.listen, "127.0.0.1:9808".parse().unwrap());
        assert_eq!(
            c.inventories[0].kind,
            InventoryKind::File {
                path: PathBuf::from("/etc/ipdrift/instances.json")
            }
        );
        let DnsKind::Rfc2136 { server, tsig } = &c.dns[0].kind else {
            panic!("{:?}", c.dns[0].kind)
        };
        assert_eq!(*server, "127.0.0.1:53".parse().unwrap());
        assert_eq!(c.dns[0].zone.as_str(), "example.com.");
        assert_eq!(
            tsig.source,
            TsigSource::Secret {
                name: "ipdrift-key".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: SecretRef::File(PathBuf::from("/etc/ipdrift/tsig.secret")),
            }
        );
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.records[0].ttl, 60);
        assert_eq!(c.records[0].select.tags["role"], "lb");
        assert!(c.records[1].name.is_per_instance());
        assert_eq!(
            c.haproxy[0].runtime_api,
            RuntimeApi::Unix("/run/haproxy/admin.sock".into())
        );
        let backend = &c.haproxy[0].backends[0];
        assert_eq!((backend.name.as_str(), backend.port), ("web", 80));
        assert_eq!(backend.address, AddressKind::PrivateIpv4);
        assert_eq!(
            c.target_names(),
            vec!["ns1".to_string(), "lb-01".to_string()]
        );
    }

    #[test]
    fn exec_sources_need_a_command_and_take_a_timeout() {
        let text = "[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\ncommand = [\"./list\", \"--json\"]\ntimeout = \"3s\"\n";
        let c = parse(text, Path::new("/etc/ipdrift/c.toml")).unwrap();
        assert_eq!(
            c.inventories[0].kind,
            InventoryKind::Exec {
                command: vec!["./list".into(), "--json".into()],
                timeout: Duration::from_secs(3),
                dir: PathBuf::from("/etc/ipdrift"),
            }
        );
        let e = errors_of("[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\ncommand = []\n");
        assert!(e[0].field.ends_with(".command"), "{e:?}");
        let e = errors_of("[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\n");
        assert!(e[0].message.contains("command = ["), "{e:?}");
    }

    #[test]
    fn audit_log_and_notify_are_optional_and_validated() {
        let c = parse(EXAMPLE, Path::new("/etc/ipdrift/ipdrift.toml")).unwrap();
        assert_eq!(
            c.controller.audit_log,
            Some(PathBuf::from("/etc/ipdrift/audit.jsonl"))
        );
        assert_eq!(c.notify.len(), 1);
        assert_eq!(c.notify[0].kind, NotifyKind::Slack);
        assert_eq!(c.notify[0].failing_passes, DEFAULT_FAILING_PASSES);
        assert_eq!(c.notify[0].timeout, DEFAULT_NOTIFY_TIMEOUT);
        let shown = format!("{:?}", c.notify[0]);
        assert!(shown.contains("https://hooks.slack.com/…"), "{shown}");
        assert!(!shown.contains("XXXX"), "the token leaks: {shown}");

        let token = "T000/B000/secret-token";
        let text = format!(
            "{EXAMPLE}\n[[notify]]\nurl = \"ftp://example.com/{token}\"\nkind = \"teams\"\nfailing_passes = 0\n"
        );
        let e = errors_of(&text);
        let all = ConfigErrors(e.clone()).to_string();
        for field in [
            "notify[2].url",
            "notify[2].kind",
            "notify[2].failing_passes",
        ] {
            assert!(all.contains(field), "{field} not reported in {all}");
        }
        assert!(!all.contains(token), "the URL is quoted: {all}");
    }

    #[test]
    fn audit_fsync_defaults_to_once_per_pass_and_a_bad_value_names_the_choices() {
        let inventory = "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n";
        let c = parse(inventory, Path::new("c.toml")).unwrap();
        assert_eq!(c.controller.audit_fsync, crate::audit::Fsync::Pass);
        let with = |value: &str| format!("[controller]\naudit_fsync = \"{value}\"\n{inventory}");
        let c = parse(&with("record"), Path::new("c.toml")).unwrap();
        assert_eq!(c.controller.audit_fsync, crate::audit::Fsync::Record);
        let e = errors_of(&with("sometimes"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (Some(2), "controller.audit_fsync")
        );
        assert!(e[0].message.contains("\"never\""), "{e:?}");
    }

    #[test]
    fn cloud_sources_take_a_token_a_filter_and_an_endpoint() {
        let text = "[[inventory]]\nname = \"do\"\nkind = \"digitalocean\"\ntoken_env = \"DIGITALOCEAN_TOKEN\"\ntag = \"role:web\"\n\n\
                    [[inventory]]\nname = \"hz\"\nkind = \"hetzner\"\ntoken_file = \"hcloud.token\"\nlabel_selector = \"role=web\"\nendpoint = \"http://127.0.0.1:8080\"\n";
        let c = parse(text, Path::new("/etc/ipdrift/c.toml")).unwrap();
        assert_eq!(
            c.inventories[0].kind,
            InventoryKind::DigitalOcean {
                token: SecretRef::Env("DIGITALOCEAN_TOKEN".into()),
                tag: Some("role:web".into()),
                endpoint: Url::parse("https://api.digitalocean.com").unwrap(),
            }
        );
        assert_eq!(
            c.inventories[1].kind,
            InventoryKind::Hetzner {
                token: SecretRef::File("/etc/ipdrift/hcloud.token".into()),
                label_selector: Some("role=web".into()),
                endpoint: Url::parse("http://127.0.0.1:8080").unwrap(),
            }
        );
        let c = parse(
            "[[inventory]]\nname = \"hz\"\nkind = \"hetzner\"\ntoken_env = \"HCLOUD_TOKEN\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let InventoryKind::Hetzner { endpoint, .. } = &c.inventories[0].kind else {
            panic!("{:?}", c.inventories[0].kind)
        };
        assert_eq!(endpoint.as_str(), "https://api.hetzner.cloud/");
    }

    #[test]
    fn cloud_source_mistakes_are_errors_that_never_show_a_token() {
        let base = "[[inventory]]\nname = \"do\"\nkind = \"digitalocean\"\n";
        let e = errors_of(base);
        assert!(e[0].message.contains("token_env = \"VAR\""), "{e:?}");
        assert_eq!(e[0].line, Some(1));
        let e = errors_of(&format!("{base}token_env = \"A\"\ntoken_file = \"b\"\n"));
        assert!(e[0].message.contains("not both"), "{e:?}");
        let token = "dop_v1_4f0c2e8b9a7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b";
        for key in ["token_env", "token_file"] {
            let e = errors_of(&format!("{base}{key} = \"{token}\"\n"));
            let all = ConfigErrors(e.clone()).to_string();
            assert!(!all.contains(token) && all.contains("not shown"), "{all}");
            assert_eq!(e[0].line, Some(4), "{all}");
        }
        // A key of another kind is an error, not silently ignored.
        let e = errors_of(&format!(
            "{base}token_env = \"T\"\nlabel_selector = \"role=web\"\n"
        ));
        assert!(e[0].field.ends_with(".label_selector"), "{e:?}");
        assert!(e[0].message.contains("tag"), "{e:?}");
        let e = errors_of(
            "[[inventory]]\nname = \"f\"\nkind = \"file\"\npath = \"i.json\"\ntag = \"x\"\n",
        );
        assert!(e[0].field.ends_with(".tag"), "{e:?}");
        let e = errors_of(&format!("{base}token_env = \"T\"\ntag = \"role=web\"\n"));
        assert!(e[0].message.contains("role:web"), "{e:?}");
        let e = errors_of(&format!(
            "{base}token_env = \"T\"\nendpoint = \"http://api.example.com\"\n"
        ));
        assert!(e[0].message.contains("must use https"), "{e:?}");
        let e = errors_of(&format!(
            "{base}token_env = \"T\"\nendpoint = \"not a url\"\n"
        ));
        assert!(e[0].field.ends_with(".endpoint"), "{e:?}");
    }

    #[test]
    fn only_inventory_is_required_and_defaults_apply() {
        let c = parse(
            "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n",
            Path::new("x/c.toml"),
        )
        .unwrap();
        assert_eq!(c.controller.interval, DEFAULT_INTERVAL);
        assert_eq!(c.controller.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.dns.is_empty() && c.haproxy.is_empty() && c.records.is_empty());
        assert!(c.notify.is_empty() && c.controller.audit_log.is_none());
        assert!(c.ha.is_none(), "without [ha] a controller runs alone");
        assert_eq!(
            c.inventories[0].kind,
            InventoryKind::File {
                path: PathBuf::from("x/i.json")
            }
        );
        let e = errors_of("");
        assert!(e[0].message.contains("[[inventory]]"), "{e:?}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = EXAMPLE.replace("port = 80", "port = 99999");
        let e = errors_of(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        let line = text
            .lines()
            .position(|l| l.starts_with("port = 99999"))
            .unwrap()
            + 1;
        assert_eq!(e[0].line, Some(line));
        assert!(e[0].field.ends_with(".port"), "{}", e[0].field);
        let shown = e[0].to_string();
        assert!(
            shown.starts_with(&format!("/etc/ipdrift/test.toml:{line}: ")),
            "{shown}"
        );
        assert!(shown.contains("1–65535"), "{shown}");
    }

    #[test]
    fn every_kind_of_mistake_is_reported_together() {
        let text = EXAMPLE
            .replace("interval = \"10s\"", "interval = \"ten seconds\"")
            .replace("dns = \"ns1\"\nname = \"www", "dns = \"ns9\"\nname = \"www")
            .replace("{name}.example.com.", "{hostname}.example.com.")
            .replace("address = \"private_ipv4\"", "address = \"elastic\"")
            .replace("algorithm = \"hmac-sha256\"", "algorithm = \"hmac-md5\"")
            .replace("unix:/run/haproxy/admin.sock", "udp:1.2.3.4");
        let e = errors_of(&text);
        let all = ConfigErrors(e.clone()).to_string();
        for needle in [
            "controller.interval",
            "ns9",
            "{hostname}",
            "elastic",
            "hmac-md5",
            "runtime_api",
        ] {
            assert!(all.contains(needle), "{needle} not reported in:\n{all}");
        }
        assert!(e.iter().all(|e| e.line.is_some()), "{all}");
    }

    #[test]
    fn duplicates_and_out_of_zone_names_are_refused() {
        let text = format!(
            "{EXAMPLE}\n[[dns]]\nname = \"lb-01\"\nkind = \"rfc2136\"\nserver = \"127.0.0.1\"\nzone = \"other.org.\"\ntsig = {{ key_file = \"k\" }}\n"
        );
        let e = errors_of(&text);
        assert!(e.iter().any(|e| e.message.contains("used twice")), "{e:?}");

        let text = EXAMPLE.replace("name = \"www.example.com.\"", "name = \"www.example.org.\"");
        let e = errors_of(&text);
        assert!(
            e[0].message.contains("not inside zone example.com."),
            "{e:?}"
        );

        let text = format!(
            "{EXAMPLE}\n[[record]]\ndns = \"ns1\"\nname = \"WWW.example.com\"\naddress = \"public_ipv4\"\n"
        );
        let e = errors_of(&text);
        assert!(e[0].message.contains("already managed"), "{e:?}");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_have_lines() {
        let e = errors_of(&EXAMPLE.replace("interval = ", "intervall = "));
        assert!(e[0].message.contains("intervall"), "{e:?}");
        assert_eq!(
            e[0].line,
            Some(
                EXAMPLE
                    .lines()
                    .position(|l| l.starts_with("interval"))
                    .unwrap()
                    + 1
            )
        );
        let e = errors_of("[[inventory]\nname=");
        assert_eq!(e[0].line, Some(1));
    }

    #[test]
    fn hostile_template_literals_are_refused() {
        let e = errors_of(&EXAMPLE.replace("server = \"{name}\"", "server = \"{name};shutdown\""));
        assert!(e[0].field.ends_with(".server"), "{e:?}");
        let e = errors_of(&EXAMPLE.replace("{name}.example.com.", "{name} x.example.com."));
        assert!(e[0].field.ends_with(".name"), "{e:?}");
    }

    const INVENTORY: &str = "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n";

    fn ha_errors(ha: &str) -> Vec<String> {
        errors_of(&format!("{INVENTORY}[ha]\n{ha}"))
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn ha_takes_etcd_endpoints_an_election_a_lease_tls_and_a_user() {
        let text = format!(
            "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"https://etcd-0.etcd:2379\", \"https://10.0.0.2:2379\"]\n\
             election = \"ipdrift/prod\"\nlease_ttl = \"15s\"\ninstance = \"host-a\"\nca_file = \"etcd-ca.pem\"\n\
             cert_file = \"client.pem\"\nkey_file = \"client-key.pem\"\nuser = \"ipdrift\"\npassword_env = \"ETCD_PASSWORD\"\n"
        );
        let c = parse(&text, Path::new("/etc/ipdrift/c.toml")).unwrap();
        let ha = c.ha.unwrap();
        assert_eq!(
            ha.endpoints,
            ["https://etcd-0.etcd:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(ha.election, "ipdrift/prod");
        assert_eq!(ha.lease_ttl, Duration::from_secs(15));
        assert_eq!(ha.instance, "host-a");
        assert_eq!(
            ha.tls,
            Some(EtcdTls {
                ca_file: "/etc/ipdrift/etcd-ca.pem".into(),
                identity: Some((
                    "/etc/ipdrift/client.pem".into(),
                    "/etc/ipdrift/client-key.pem".into()
                )),
            })
        );
        assert_eq!(
            ha.auth,
            Some(EtcdAuth {
                user: "ipdrift".into(),
                password: SecretRef::Env("ETCD_PASSWORD".into()),
            })
        );
    }

    #[test]
    fn the_example_ha_section_parses_once_uncommented() {
        let lines: Vec<&str> = EXAMPLE
            .lines()
            .skip_while(|l| !l.starts_with("# [ha]"))
            .map_while(|l| l.strip_prefix("# "))
            .collect();
        assert!(lines.len() > 5, "no commented [ha] section in the example");
        let text = format!("{INVENTORY}{}\n", lines.join("\n"));
        let ha = parse(&text, Path::new("/etc/ipdrift/ipdrift.toml"))
            .unwrap()
            .ha
            .unwrap();
        assert_eq!(ha.election, "ipdrift/prod");
        assert_eq!(ha.instance, "host-a");
        assert!(ha.tls.is_some() && ha.auth.is_some());
    }

    #[test]
    fn ha_defaults_to_a_ten_second_lease_and_the_host_name() {
        let text = format!(
            "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nelection = \"ipdrift/x\"\n"
        );
        let ha = parse(&text, Path::new("c.toml")).unwrap().ha.unwrap();
        assert_eq!(ha.endpoints, ["http://127.0.0.1:2379"], "as for etcdctl");
        assert_eq!(ha.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(ha.instance, default_instance());
        assert!(is_plain_name(&ha.instance, 64, &['-', '_', '.']));
        assert!(ha.tls.is_none() && ha.auth.is_none());
    }

    #[test]
    fn ha_mistakes_name_the_field_and_the_fix() {
        let base = "backend = \"etcd\"\nelection = \"ipdrift/x\"\n";
        for (ha, expected) in [
            (
                "backend = \"zookeeper\"\nendpoints = [\"http://127.0.0.1:2379\"]\nelection = \"x\"\n",
                "ha.backend: unknown backend \"zookeeper\"; supported: etcd",
            ),
            (
                &format!("{base}endpoints = []\n"),
                "ha.endpoints: list at least one etcd client URL",
            ),
            (
                &format!("{base}endpoints = [\"ftp://127.0.0.1:2379\"]\n"),
                "ha.endpoints: \"ftp://127.0.0.1:2379\" is not an etcd client URL",
            ),
            (
                &format!("{base}endpoints = [\"http://etcd\"]\n"),
                "is not an etcd client URL; write \"http://HOST:PORT\"",
            ),
            (
                &format!(
                    "{base}endpoints = [\"http://a:2379\", \"https://b:2379\"]\nca_file = \"ca.pem\"\n"
                ),
                "ha.endpoints: mix of http:// and https://",
            ),
            (
                &format!("{base}endpoints = [\"https://a:2379\"]\n"),
                "ha.ca_file: https:// endpoints need ca_file",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\nca_file = \"ca.pem\"\n"),
                "ha.ca_file: ca_file, cert_file and key_file are for TLS; the endpoints must then be https://",
            ),
            (
                &format!(
                    "{base}endpoints = [\"https://a:2379\"]\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\n"
                ),
                "ha.cert_file: a client certificate needs both cert_file and key_file",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\nlease_ttl = \"500ms\"\n"),
                "ha.lease_ttl: etcd leases last whole seconds, at least 1",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\nlease_ttl = \"2500ms\"\n"),
                "ha.lease_ttl: etcd leases last whole seconds",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:2379\"]\nelection = \"/ipdrift/\"\n",
                "ha.election: use 1–128 letters",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\ninstance = \"a b\"\n"),
                "ha.instance: use 1–64 letters",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\nuser = \"ipdrift\"\n"),
                "ha.password_file: user needs a password",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\npassword_file = \"p\"\n"),
                "ha.user: password_file and password_env need user",
            ),
            (
                &format!(
                    "{base}endpoints = [\"http://a:2379\"]\nuser = \"u\"\npassword_env = \"hunter2 secret\"\n"
                ),
                "ha.password_env: must be the name of an environment variable",
            ),
            (
                &format!("{base}endpoints = [\"http://a:2379\"]\npassword = \"hunter2\"\n"),
                "unknown field `password`",
            ),
        ] {
            let errors = ha_errors(ha);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{ha:?}: {errors:?} lacks {expected:?}"
            );
            assert!(
                errors.iter().all(|e| !e.contains("hunter2 secret")),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn ha_secrets_are_read_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd.password"), "hunter2\n").unwrap();
        let text = format!(
            "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nelection = \"ipdrift/x\"\n\
             user = \"ipdrift\"\npassword_file = \"etcd.password\"\n"
        );
        let ha = parse(&text, &dir.path().join("c.toml"))
            .unwrap()
            .ha
            .unwrap();
        let secrets = ha.load_secrets().unwrap();
        assert_eq!(
            secrets.credentials,
            Some(("ipdrift".to_string(), "hunter2".to_string()))
        );
        assert!(!format!("{secrets:?}").contains("hunter2"));
        std::fs::remove_file(dir.path().join("etcd.password")).unwrap();
        let error = ha.load_secrets().unwrap_err();
        assert!(
            error.starts_with("ha.password_file: cannot read "),
            "{error}"
        );
    }

    #[test]
    fn tsig_sources_are_exclusive_and_complete() {
        let e = errors_of(&EXAMPLE.replace(
            "secret_file = \"tsig.secret\"",
            "secret_file = \"a\", secret_env = \"B\"",
        ));
        assert!(e[0].message.contains("not both"), "{e:?}");
        let e = errors_of(&EXAMPLE.replace(", secret_file = \"tsig.secret\"", ""));
        assert!(e[0].message.contains("missing secret"), "{e:?}");
        let c = parse(
            &EXAMPLE.replace(
                "tsig = { name = \"ipdrift-key\", algorithm = \"hmac-sha256\", secret_file = \"tsig.secret\" }",
                "tsig = { key_file = \"/etc/bind/ipdrift.key\" }",
            ),
            Path::new("c.toml"),
        )
        .unwrap();
        let DnsKind::Rfc2136 { tsig, .. } = &c.dns[0].kind else {
            panic!("{:?}", c.dns[0].kind)
        };
        assert_eq!(
            tsig.source,
            TsigSource::KeyFile("/etc/bind/ipdrift.key".into())
        );
    }

    const AWS_SOURCE: &str =
        "[[inventory]]\nname = \"ec2\"\nkind = \"aws\"\nregion = \"eu-west-1\"\n";

    #[cfg(feature = "aws")]
    #[test]
    fn aws_sources_take_a_region_filters_an_endpoint_and_a_profile() {
        let text = format!(
            "{AWS_SOURCE}endpoint = \"http://127.0.0.1:5000\"\nprofile = \"ipdrift\"\nfilters = {{ \"tag:env\" = [\"prod\"], \"instance-state-name\" = [\"running\", \"stopped\"] }}\n"
        );
        let c = parse(&text, Path::new("/etc/ipdrift/c.toml")).unwrap();
        assert_eq!(
            c.inventories[0].kind,
            InventoryKind::Aws {
                access: AwsAccess {
                    region: "eu-west-1".into(),
                    endpoint: Some(Url::parse("http://127.0.0.1:5000").unwrap()),
                    profile: Some("ipdrift".into()),
                },
                filters: BTreeMap::from([
                    (
                        "instance-state-name".into(),
                        vec!["running".into(), "stopped".into()]
                    ),
                    ("tag:env".into(), vec!["prod".into()]),
                ]),
            }
        );
        let c = parse(AWS_SOURCE, Path::new("c.toml")).unwrap();
        let InventoryKind::Aws { access, filters } = &c.inventories[0].kind else {
            panic!("{:?}", c.inventories[0].kind)
        };
        assert_eq!(
            (access.endpoint.as_ref(), access.profile.as_ref()),
            (None, None)
        );
        assert!(filters.is_empty());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn aws_source_mistakes_name_the_line_and_field() {
        let e = errors_of("[[inventory]]\nname = \"ec2\"\nkind = \"aws\"\n");
        assert!(
            e[0].field.ends_with(".region") && e[0].message.contains("region = "),
            "{e:?}"
        );
        let e = errors_of(&AWS_SOURCE.replace("eu-west-1", "EU West"));
        assert!(
            e[0].message.contains("not an AWS region") && e[0].line == Some(4),
            "{e:?}"
        );
        let e = errors_of(&format!("{AWS_SOURCE}filters = {{ \"tag:env\" = [] }}\n"));
        assert!(
            e[0].field.ends_with(".filters") && e[0].message.contains("no values"),
            "{e:?}"
        );
        assert_eq!(e[0].line, Some(5));
        let e = errors_of(&format!(
            "{AWS_SOURCE}filters = {{ \"tag:env\" = \"prod\" }}\n"
        ));
        assert_eq!(e[0].line, Some(5), "{e:?}");
        let e = errors_of(&format!(
            "{AWS_SOURCE}endpoint = \"http://ec2.example.com\"\n"
        ));
        assert!(e[0].message.contains("must use https"), "{e:?}");
        let e = errors_of(&format!("{AWS_SOURCE}token_env = \"AWS_TOKEN\"\n"));
        assert!(
            e[0].field.ends_with(".token_env")
                && e[0].message.contains("region, endpoint, filters, profile"),
            "{e:?}"
        );
    }

    const ROUTE53: &str = "[[inventory]]\nname = \"f\"\nkind = \"file\"\npath = \"i.json\"\n\n[[dns]]\nname = \"r53\"\nkind = \"route53\"\nzone = \"example.com.\"\n";

    #[cfg(feature = "aws")]
    #[test]
    fn route53_targets_take_a_zone_id_or_look_the_zone_up() {
        let c = parse(ROUTE53, Path::new("c.toml")).unwrap();
        let DnsKind::Route53 {
            access,
            zone_id,
            wait,
        } = &c.dns[0].kind
        else {
            panic!("{:?}", c.dns[0].kind)
        };
        assert_eq!(access.region, DEFAULT_ROUTE53_REGION);
        assert_eq!((zone_id, wait), (&None, &false));
        let text = format!(
            "{ROUTE53}zone_id = \"/hostedzone/Z0123456789ABC\"\nwait = true\nendpoint = \"http://127.0.0.1:5000\"\nregion = \"eu-central-1\"\nprofile = \"dns\"\n"
        );
        let c = parse(&text, Path::new("c.toml")).unwrap();
        let DnsKind::Route53 {
            access,
            zone_id,
            wait,
        } = &c.dns[0].kind
        else {
            panic!("{:?}", c.dns[0].kind)
        };
        assert_eq!(zone_id.as_deref(), Some("Z0123456789ABC"));
        assert!(*wait);
        assert_eq!(access.region, "eu-central-1");
        assert_eq!(access.profile.as_deref(), Some("dns"));
        assert!(
            c.load_keys().unwrap().is_empty(),
            "a Route 53 target has no TSIG key"
        );

        let e = errors_of(&format!("{ROUTE53}zone_id = \"Z01 23\"\n"));
        assert!(
            e[0].field.ends_with(".zone_id") && e[0].line == Some(10),
            "{e:?}"
        );
        let e = errors_of(&format!("{ROUTE53}tsig = {{ key_file = \"k\" }}\n"));
        assert!(
            e[0].field.ends_with(".tsig") && e[0].message.contains("route53 target"),
            "{e:?}"
        );
        let e = errors_of(&format!("{ROUTE53}server = \"127.0.0.1\"\n"));
        assert!(e[0].field.ends_with(".server"), "{e:?}");
        let e = errors_of(
            &EXAMPLE.replace("kind = \"rfc2136\"", "kind = \"rfc2136\"\nzone_id = \"Z1\""),
        );
        assert!(
            e[0].field.ends_with(".zone_id") && e[0].message.contains("rfc2136 target"),
            "{e:?}"
        );
    }

    #[cfg(not(feature = "aws"))]
    #[test]
    fn aws_kinds_are_refused_by_a_build_without_the_aws_feature() {
        for text in [AWS_SOURCE, ROUTE53] {
            let e = errors_of(text);
            assert!(
                e[0].message.contains("built without the aws feature"),
                "{e:?}"
            );
            assert!(
                e[0].field.ends_with(".kind") && e[0].line.is_some(),
                "{e:?}"
            );
        }
    }

    proptest::proptest! {
        /// Any text at all gives a config or errors with lines inside the text; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(errors) = parse(&text, Path::new("fuzz.toml")) {
                let lines = text.lines().count().max(1);
                for e in errors.0 {
                    proptest::prop_assert!(e.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{e}");
                }
            }
        }

        /// The example with any one line dropped or any one value replaced still never
        /// panics, and every error names a line.
        #[test]
        fn mangled_examples_never_panic(
            drop_line in 0usize..60,
            replace_line in 0usize..60,
            replacement in "[a-z_]{1,8} = (\"[^\"\\\\]{0,8}\"|-?[0-9]{1,7}|\\{\\}|\\[\\])",
        ) {
            let text: Vec<String> = EXAMPLE
                .lines()
                .enumerate()
                .filter(|(i, _)| *i != drop_line)
                .map(|(i, l)| if i == replace_line { replacement.clone() } else { l.to_string() })
                .collect();
            if let Err(errors) = parse(&text.join("\n"), Path::new("fuzz.toml")) {
                for e in errors.0 {
                    proptest::prop_assert!(e.line.is_some() || e.field == "inventory", "{e}");
                }
            }
        }
    }

    #[test]
    fn missing_secrets_are_reported_without_revealing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let c = parse(EXAMPLE, &path).unwrap();
        let e = c.load_keys().unwrap_err().to_string();
        assert!(
            e.contains("tsig.secret") && e.contains("dns \"ns1\".tsig"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("tsig.secret"),
            "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n",
        )
        .unwrap();
        let keys = c.load_keys().unwrap();
        assert!(keys.contains_key("ns1"));
        std::fs::write(dir.path().join("tsig.secret"), "not base64 at all!!\n").unwrap();
        let e = c.load_keys().unwrap_err().to_string();
        assert!(!e.contains("not base64 at all"), "{e}");

        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
        for misplaced in [
            format!("secret_env = \"{secret}\""),
            format!("secret_file = \"{secret}\""),
        ] {
            let text = EXAMPLE.replace("secret_file = \"tsig.secret\"", &misplaced);
            let e = parse(&text, &path)
                .unwrap()
                .load_keys()
                .unwrap_err()
                .to_string();
            assert!(!e.contains(secret), "{e}");
            assert!(e.contains("not shown"), "{e}");
        }
    }
}
