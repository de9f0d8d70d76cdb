//! The one part of the config that reads from outside the text: the config file itself, the
//! secrets it names (files and environment variables) and the host name. Errors name the
//! key and the file or variable — unless that looks like a secret pasted into the wrong key
//! ([`super::secret_keys::shown`]) — and never a secret's value.

use std::path::Path;

use super::checker::{ConfigError, ConfigErrors};
use super::ha::{EtcdSecrets, HaConfig, is_plain_name};
use super::secret_keys::{SecretRef, shown};
use super::{Config, ControllerConfig, parse};

/// Reads and validates the config file at `path` (secrets are not read; see
/// [`Config::read_secrets`]).
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

/// Why a secret could not be read.
#[derive(Debug)]
pub enum Unreadable {
    /// The file named by a `*_file` key: the path as errors may show it, and the cause.
    File {
        shown: String,
        cause: std::io::Error,
    },
    /// The variable named by a `*_env` key is not set (or not UTF-8).
    Env { name: String },
}

impl SecretRef {
    /// The secret, without a trailing newline.
    pub fn read(&self) -> Result<String, Unreadable> {
        let text = match self {
            SecretRef::File(path) => {
                std::fs::read_to_string(path).map_err(|cause| Unreadable::File {
                    shown: shown(&path.to_string_lossy()),
                    cause,
                })?
            }
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| Unreadable::Env { name: shown(name) })?
            }
        };
        Ok(text.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// Reads a file the config names, e.g. a TSIG key file or a CA certificate.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Unreadable> {
    std::fs::read(path).map_err(|cause| Unreadable::File {
        shown: shown(&path.to_string_lossy()),
        cause,
    })
}

impl std::fmt::Display for Unreadable {
    /// `cannot read PATH: CAUSE`, or `environment variable NAME is not set`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::File { shown, cause } => write!(f, "cannot read {shown}: {cause}"),
            Unreadable::Env { name } => write!(f, "environment variable {name} is not set"),
        }
    }
}

impl Config {
    /// Reads every secret the kinds read when they are built (TSIG keys), so that a missing
    /// one is reported by `check-config` and stops `run` from starting; the errors say which
    /// target and what to fix.
    pub fn read_secrets(&self) -> Result<(), ConfigErrors> {
        let mut errors: Vec<ConfigError> = self
            .dns
            .iter()
            .filter_map(|dns| dns.spec.read_secrets().err())
            .collect();
        if let (Some(at), Err(message)) = (
            &self.controller.reconcile_token,
            self.controller.read_reconcile_token(),
        ) {
            errors.push(ConfigError {
                path: self.path.clone(),
                line: Some(at.line),
                field: String::new(),
                message,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl ControllerConfig {
    /// The bearer token `POST /reconcile` requires, if one is configured. The error starts
    /// with the key and names the file or variable, never the token.
    pub fn read_reconcile_token(&self) -> Result<Option<String>, String> {
        let Some(at) = &self.reconcile_token else {
            return Ok(None);
        };
        let key = match at.secret {
            SecretRef::File(_) => "controller.reconcile_token_file",
            SecretRef::Env(_) => "controller.reconcile_token_env",
        };
        let token = at.secret.read().map_err(|e| format!("{key}: {e}"))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("{key}: the token is empty"));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "{key}: the token holds spaces or characters that cannot be sent in an HTTP header (not shown)"
            ));
        }
        Ok(Some(token.to_string()))
    }
}

impl HaConfig {
    /// This controller's name in the election: `instance`, or else [`default_instance`].
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(default_instance)
    }

    /// Reads the TLS files and the password. Errors name the file or variable, never a secret.
    pub fn load_secrets(&self) -> Result<EtcdSecrets, String> {
        let read = |path: &Path, key: &str| read_file(path).map_err(|e| format!("ha.{key}: {e}"));
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
                let password = auth.password.read().map_err(|e| match e {
                    Unreadable::File { .. } => format!("ha.password_file: {e}"),
                    Unreadable::Env { name } => format!(
                        "ha.password_env: environment variable {name} is not set; export the etcd password in it"
                    ),
                })?;
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

/// The default `ha.instance`: the host name (a pod's name in Kubernetes), or one made
/// from the process id where the host name is unusable.
pub fn default_instance() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| is_plain_name(name, 64, &['-', '_', '.']))
        .unwrap_or_else(|| format!("ipdrift-{}", std::process::id()))
}
