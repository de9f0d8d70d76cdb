//! `[ha]`: several controllers elect one writer through etcd.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::secret_keys::{SecretAt, SecretKeys, SecretRef};

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// etcd leases last whole seconds; etcd itself grants at least 1.5 election timeouts (2 s
/// with its defaults), and ipdrift goes by what it grants.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

const PASSWORD: SecretKeys = SecretKeys {
    file_key: "password_file",
    env_key: "password_env",
    missing_key: "password_file",
    needs: "user needs a password: password_file = \"etcd.password\" or password_env = \"VAR\"",
    at_parse: true,
};

/// `[ha]`: leader election on etcd. Only the leader writes; the others observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// etcd client URLs, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// The election's name (a key prefix in etcd); every controller of one fleet uses the same.
    pub election: String,
    /// TTL of the lease that backs the leadership, in whole seconds.
    pub lease_ttl: Duration,
    /// This controller's name: the election value and the `instance` label of
    /// `ipdrift_leader`; `None`: the host name ([`HaConfig::instance_name`]).
    pub instance: Option<String>,
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

impl HaConfig {
    /// Where its secrets are: the etcd password, the TLS key.
    pub fn secrets(&self) -> Vec<SecretAt> {
        let mut all = Vec::new();
        if let Some(auth) = &self.auth {
            all.push(SecretAt {
                field: "ha".into(),
                line: 0,
                secret: auth.password.clone(),
            });
        }
        if let Some((_, key)) = self.tls.as_ref().and_then(|tls| tls.identity.as_ref()) {
            all.push(SecretAt {
                field: "ha".into(),
                line: 0,
                secret: SecretRef::File(key.clone()),
            });
        }
        all
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
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

/// Letters, digits and `extra`, 1 to `max` of them.
pub(crate) fn is_plain_name(text: &str, max: usize, extra: &[char]) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || extra.contains(&ch))
}

/// `[ha]`: the etcd election. Endpoints are URLs with an explicit port; https needs the CA.
pub(super) fn check(c: &mut Checker<'_>, spanned: &Spanned<RawHa>) -> Option<HaConfig> {
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
    let (endpoints, https) = endpoints(c, raw);
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
        None => None,
        Some(name) => {
            if !is_plain_name(name.get_ref(), 64, &['-', '_', '.']) {
                c.error(
                    name,
                    "ha.instance",
                    "use 1–64 letters, digits, '-', '_' or '.'",
                );
            }
            Some(name.get_ref().clone())
        }
    };
    let tls = tls(c, spanned, https);
    let auth = auth(c, spanned);
    (c.errors.len() == errors_before).then(|| HaConfig {
        endpoints,
        election: election.clone(),
        lease_ttl,
        instance,
        tls,
        auth,
    })
}

/// `endpoints`: etcd client URLs with an explicit port, all http:// or all https://; and
/// whether they are https.
fn endpoints(c: &mut Checker<'_>, raw: &RawHa) -> (Vec<String>, bool) {
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
    (endpoints, https)
}

/// `ca_file`, `cert_file`, `key_file`: TLS to etcd, which https:// endpoints need.
fn tls(c: &mut Checker<'_>, spanned: &Spanned<RawHa>, https: bool) -> Option<EtcdTls> {
    let raw = spanned.get_ref();
    match (&raw.ca_file, &raw.cert_file, &raw.key_file) {
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
    }
}

/// `user` with `password_file` or `password_env`.
fn auth(c: &mut Checker<'_>, spanned: &Spanned<RawHa>) -> Option<EtcdAuth> {
    let raw = spanned.get_ref();
    match (&raw.user, &raw.password_file, &raw.password_env) {
        (None, None, None) => None,
        (Some(user), file, env) => {
            if !is_plain_name(user.get_ref(), 128, &['-', '_', '.', '@']) {
                c.error(
                    user,
                    "ha.user",
                    "use 1–128 letters, digits, '-', '_', '.' or '@'",
                );
            }
            let password = PASSWORD
                .check(c, "ha", file.as_ref(), env.as_ref(), c.line_of(user))
                .map(|at| at.secret);
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
    }
}
