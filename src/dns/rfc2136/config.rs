//! `kind = "rfc2136"`'s keys: the primary that accepts UPDATE (`server`), the TSIG key
//! (`tsig`) and the secondaries watched after a write (`secondaries`,
//! `propagation_timeout`), checked; and the builder, which reads the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Rfc2136Target;
use crate::config::secret_keys::{SecretKeys, shown};
use crate::config::secrets::{Unreadable, read_file};
use crate::config::{ConfigError, Fragment, SecretAt, SecretRef};
use crate::dns::tsig::{TsigAlgorithm, TsigKey, parse_key_file};
use crate::dns::{DnsTarget, TargetKind, TargetSpec};
use crate::model::DnsName;
use crate::validate;

pub const KIND: TargetKind = TargetKind {
    name: "rfc2136",
    check,
};

/// A `kind = "rfc2136"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Config {
    pub server: SocketAddr,
    pub tsig: TsigConfig,
    /// The servers that must serve a write before it counts as repaired for clients;
    /// `None` without `secondaries` (nothing is watched).
    pub secondaries: Option<Secondaries>,
}

/// `secondaries` and `propagation_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondaries {
    pub servers: Vec<SocketAddr>,
    /// How long after a write to wait for every secondary to serve it.
    pub timeout: Duration,
}

/// `propagation_timeout` without a value: BIND's and Knot's NOTIFY-driven transfers take
/// well under a second on a LAN; 30 s leaves room for a refresh retry.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `propagation_timeout`: the pass that wrote waits this long for a lagging
/// secondary, so it must stay well below the intervals passes run at.
pub const MAX_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a TSIG key comes from. The secret itself is read only by [`TsigConfig::load_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigConfig {
    pub source: TsigSource,
    /// The config file, `dns "NAME".tsig` and the line of `tsig`, for errors.
    config: PathBuf,
    field: String,
    line: usize,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRfc2136 {
    server: Option<Spanned<String>>,
    tsig: Option<Spanned<RawTsig>>,
    secondaries: Option<Spanned<Vec<Spanned<String>>>>,
    propagation_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTsig {
    name: Option<String>,
    algorithm: Option<String>,
    secret_file: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    key_file: Option<String>,
}

/// The secret's keys. A value that looks like the secret itself is refused when reading it,
/// where the error can say so without showing it.
const SECRET: SecretKeys = SecretKeys {
    file_key: "secret_file",
    env_key: "secret_env",
    missing_key: "",
    needs: "missing secret: add secret_file = \"tsig.secret\" or secret_env = \"VAR\" (or use key_file)",
    at_parse: false,
};

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawRfc2136 = f.parse()?;
    let server = match &raw.server {
        None => {
            f.missing(
                "server",
                "an rfc2136 target needs `server = \"IP:PORT\"` (the primary that accepts UPDATE)",
            );
            None
        }
        Some(text) => parse_server_addr(text.get_ref())
            .map_err(|message| f.error_at(text, "server", message))
            .ok(),
    };
    let tsig = match &raw.tsig {
        None => {
            f.missing(
                "tsig",
                "an rfc2136 target needs a TSIG key: `tsig = { key_file = \"…\" }` or `{ name, algorithm, secret_file }`",
            );
            None
        }
        Some(t) => tsig_config(f, t),
    };
    let secondaries = secondaries(f, &raw, server);
    Some(Arc::new(Rfc2136Config {
        server: server?,
        tsig: tsig?,
        secondaries: secondaries?,
    }))
}

/// `secondaries` (each an address, none twice, not the primary) and `propagation_timeout`
/// (only with `secondaries`, at most [`MAX_PROPAGATION_TIMEOUT`]). `None` after an error.
fn secondaries(
    f: &mut Fragment<'_, '_>,
    raw: &RawRfc2136,
    primary: Option<SocketAddr>,
) -> Option<Option<Secondaries>> {
    let errors_before = f.checker.error_count();
    let Some(list) = &raw.secondaries else {
        if let Some(timeout) = &raw.propagation_timeout {
            f.error_at(
                timeout,
                "propagation_timeout",
                "propagation_timeout only applies with secondaries; add `secondaries = [\"192.0.2.53:53\"]` (the servers to wait for after a write) or remove it",
            );
            return None;
        }
        return Some(None);
    };
    if list.get_ref().is_empty() {
        f.error_at(
            list,
            "secondaries",
            "an empty list watches nothing; list the secondaries' addresses, e.g. `secondaries = [\"192.0.2.53:53\"]`, or remove the key",
        );
    }
    let mut servers = Vec::new();
    for text in list.get_ref() {
        match parse_server_addr(text.get_ref()) {
            Ok(addr) if Some(addr) == primary => f.error_at(
                text,
                "secondaries",
                format!("{addr} is the primary (`server`); list only the servers that transfer the zone from it"),
            ),
            Ok(addr) if servers.contains(&addr) => f.error_at(
                text,
                "secondaries",
                format!("{addr} is listed twice; list each secondary once"),
            ),
            Ok(addr) => servers.push(addr),
            Err(message) => f.error_at(text, "secondaries", message),
        }
    }
    let field = f.key("propagation_timeout");
    let timeout = f.checker.duration(
        &raw.propagation_timeout,
        &field,
        DEFAULT_PROPAGATION_TIMEOUT,
    );
    if timeout > MAX_PROPAGATION_TIMEOUT
        && let Some(text) = &raw.propagation_timeout
    {
        f.error_at(
            text,
            "propagation_timeout",
            format!(
                "{:?} is longer than {}, the most a pass waits for secondaries; write e.g. \"30s\"",
                text.get_ref(),
                humantime::format_duration(MAX_PROPAGATION_TIMEOUT)
            ),
        );
    }
    (f.checker.error_count() == errors_before).then_some(Some(Secondaries { servers, timeout }))
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

fn tsig_config(f: &mut Fragment<'_, '_>, spanned: &Spanned<RawTsig>) -> Option<TsigConfig> {
    let t = spanned.get_ref();
    let field = f.key("tsig");
    let line = f.checker.line_of(spanned);
    let c = &mut *f.checker;
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
            config: c.path().to_path_buf(),
            field,
            line,
        });
    }
    let errors_before = c.error_count();
    let name = match &t.name {
        Some(n) => validate::dns_name(n)
            .map(|_| n.clone())
            .map_err(|e| c.error(spanned, format!("{field}.name"), e.0))
            .ok(),
        None => {
            c.error(
                spanned,
                format!("{field}.name"),
                "missing: the key's name as the DNS server knows it (or use key_file)",
            );
            None
        }
    };
    let algorithm = match t.algorithm.as_deref().map(TsigAlgorithm::parse) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            c.error(spanned, format!("{field}.algorithm"), e.to_string());
            None
        }
        None => {
            c.error(
                spanned,
                format!("{field}.algorithm"),
                "missing: hmac-sha256, hmac-sha384 or hmac-sha512",
            );
            None
        }
    };
    let secret = match (&t.secret_file, &t.secret_env) {
        (None, None) => {
            c.error(spanned, field.as_str(), SECRET.needs);
            None
        }
        (file, env) => SECRET
            .check(c, &field, file.as_ref(), env.as_ref(), line)
            .map(|at| at.secret),
    };
    if c.error_count() != errors_before {
        return None;
    }
    Some(TsigConfig {
        source: TsigSource::Secret {
            name: name?,
            algorithm: algorithm?,
            secret: secret?,
        },
        config: c.path().to_path_buf(),
        field,
        line,
    })
}

impl TsigConfig {
    /// Reads the key (file or environment). Errors never contain the secret.
    pub fn load_key(&self) -> Result<TsigKey, String> {
        match &self.source {
            TsigSource::KeyFile(path) => {
                let path_shown = shown(&path.to_string_lossy());
                let bytes = read_file(path).map_err(|e| match e {
                    Unreadable::File { cause, .. } => format!(
                        "cannot read TSIG key file {path_shown}: {cause}; create it with `tsig-keygen -a hmac-sha256 NAME > {path_shown}`"
                    ),
                    Unreadable::Env { .. } => e.to_string(),
                })?;
                parse_key_file(&String::from_utf8_lossy(&bytes))
                    .map_err(|e| format!("TSIG key file {path_shown}: {e}"))
            }
            TsigSource::Secret {
                name,
                algorithm,
                secret,
            } => {
                if let SecretRef::Env(var) = secret
                    && !crate::config::secret_keys::is_env_var_name(var)
                {
                    return Err("secret_env must be the name of an environment variable (letters, digits, '_'); \
                                the value given is not one and is not shown, in case it is the secret itself"
                        .to_string());
                }
                let text = secret.read().map_err(|e| match e {
                    Unreadable::File { shown, .. } if shown.starts_with('(') => {
                        "secret_file does not name a readable file and looks like a base64 secret itself \
                         (not shown); put the secret in a file and give that file's path"
                            .to_string()
                    }
                    Unreadable::File { shown, cause } => format!(
                        "cannot read TSIG secret file {shown}: {cause}; it must hold the base64 secret"
                    ),
                    Unreadable::Env { name } => format!(
                        "environment variable {name} (secret_env) is not set; export the base64 TSIG secret in it"
                    ),
                })?;
                let origin = match secret {
                    SecretRef::File(path) => {
                        format!("secret file {}", shown(&path.to_string_lossy()))
                    }
                    SecretRef::Env(var) => format!("environment variable {var}"),
                };
                TsigKey::from_base64(name, *algorithm, &text).map_err(|e| format!("{origin}: {e}"))
            }
        }
    }

    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            path: self.config.clone(),
            line: Some(self.line),
            field: self.field.clone(),
            message,
        }
    }
}

impl TargetSpec for Rfc2136Config {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let key = self
            .tsig
            .load_key()
            .map_err(|message| anyhow::anyhow!("{}", self.tsig.error(message)))?;
        Ok(Box::new(
            Rfc2136Target::new(name.to_string(), self.server, zone.clone(), key, timeout)
                .with_secondaries(self.secondaries.clone()),
        ))
    }

    fn read_secrets(&self) -> Result<(), ConfigError> {
        self.tsig
            .load_key()
            .map(drop)
            .map_err(|message| self.tsig.error(message))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        let secret = match &self.tsig.source {
            TsigSource::KeyFile(path) => SecretRef::File(path.clone()),
            TsigSource::Secret { secret, .. } => secret.clone(),
        };
        vec![SecretAt {
            field: self.tsig.field.clone(),
            line: self.tsig.line,
            secret,
        }]
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A config whose one rfc2136 target has `extra` keys, starting on line 6.
    fn config(extra: &str) -> String {
        format!(
            "[[inventory]]\nname = \"local\"\nkind = \"file\"\npath = \"i.json\"\n[[dns]]\nname = \"ns1\"\nkind = \"rfc2136\"\nzone = \"example.test.\"\nserver = \"127.0.0.1:5300\"\ntsig = {{ key_file = \"k.key\" }}\n{extra}\n"
        )
    }

    fn settings(extra: &str) -> Rfc2136Config {
        let c = crate::config::parse(&config(extra), Path::new("/etc/ipdrift/t.toml")).unwrap();
        c.dns[0].settings::<Rfc2136Config>().unwrap().clone()
    }

    fn errors(extra: &str) -> Vec<String> {
        crate::config::parse(&config(extra), Path::new("/etc/ipdrift/t.toml"))
            .expect_err("invalid")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn secondaries_are_addresses_with_a_bounded_timeout() {
        assert_eq!(settings("").secondaries, None, "opt-in");
        assert_eq!(
            settings("secondaries = [\"127.0.0.1:5301\", \"::1\"]").secondaries,
            Some(Secondaries {
                servers: vec![
                    "127.0.0.1:5301".parse().unwrap(),
                    "[::1]:53".parse().unwrap()
                ],
                timeout: DEFAULT_PROPAGATION_TIMEOUT,
            })
        );
        let two = settings("secondaries = [\"127.0.0.1:5301\"]\npropagation_timeout = \"2s\"");
        assert_eq!(two.secondaries.unwrap().timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_secondaries_are_named_with_file_line_and_an_example() {
        let e = errors("secondaries = [\"127.0.0.1:5301\", \"ns2.example.test\"]");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/ipdrift/t.toml:11: dns \"ns1\".secondaries: \"ns2.example.test\" is not an IP:PORT address, e.g. \"127.0.0.1:53\""),
            "{e:?}"
        );
        let e = errors(
            "secondaries = [\"127.0.0.1:5301\", \"127.0.0.1:5301\", \"127.0.0.1:5300\", \"127.0.0.1:0\"]",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].ends_with("127.0.0.1:5301 is listed twice; list each secondary once"),
            "{e:?}"
        );
        assert!(
            e[1].contains("127.0.0.1:5300 is the primary (`server`)"),
            "{e:?}"
        );
        assert!(
            e[2].contains("port 0 in \"127.0.0.1:0\" is out of range"),
            "{e:?}"
        );
        let e = errors("secondaries = []");
        assert!(
            e[0].contains(":11: dns \"ns1\".secondaries: an empty list watches nothing"),
            "{e:?}"
        );
        let e = errors("propagation_timeout = \"5s\"");
        assert!(
            e[0].contains(":11: dns \"ns1\".propagation_timeout: propagation_timeout only applies with secondaries"),
            "{e:?}"
        );
        let e = errors("secondaries = [\"127.0.0.1:5301\"]\npropagation_timeout = \"1h\"");
        assert!(
            e[0].contains(":12: dns \"ns1\".propagation_timeout: \"1h\" is longer than 10m"),
            "{e:?}"
        );
        let e = errors("secondaries = [\"127.0.0.1:5301\"]\npropagation_timeout = \"soon\"");
        assert!(e[0].contains("\"soon\" is not a duration"), "{e:?}");
        let e = errors("secondaries = \"127.0.0.1:5301\"");
        assert!(e[0].contains("dns \"ns1\""), "{e:?}");
    }
}
