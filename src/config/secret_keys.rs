//! Keys that say where a secret is (`secret_file`, `token_env`, `password_file`, …): checked
//! without reading anything, and never echoed when their value looks like the secret itself
//! pasted into the wrong key. Pure; [`super::secrets`] reads them.

use std::path::PathBuf;

use base64::Engine as _;
use toml::Spanned;

use super::checker::Checker;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

/// A secret's location in the config: which keys name it, for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretAt {
    /// `dns "ns1".tsig`, `inventory "do"`, `ha`: the table that holds the keys.
    pub field: String,
    pub line: usize,
    pub secret: SecretRef,
}

pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A long run of token characters with lower-case letters and digits, like DigitalOcean's
/// `dop_v1_…` and Hetzner's 64 characters — and unlike a variable name such as
/// `IPDRIFT_DIGITALOCEAN_READ_ONLY_TOKEN`.
pub fn looks_like_a_token(text: &str) -> bool {
    text.len() >= 32
        && text.chars().any(|c| c.is_ascii_lowercase())
        && text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `text` may be a secret rather than a path or a name: base64 of 16 bytes or more
/// (TSIG secrets; `/` and `+` are base64 characters, so the whole text is tried as well as
/// each path component), a long hex string, an API token, or a password (punctuation or
/// spaces, or 20 letters and more without `.` or `-`). Real paths almost always have
/// a `.` or `-` somewhere or are short, so they are shown in errors; anything else is not.
pub fn looks_like_a_secret(text: &str) -> bool {
    let text = text.trim();
    let base64 = |t: &str| {
        !t.contains('.')
            && [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
            ]
            .iter()
            .any(|engine| engine.decode(t.as_bytes()).is_ok_and(|b| b.len() >= 16))
    };
    let hex = |t: &str| t.len() >= 32 && t.chars().all(|c| c.is_ascii_hexdigit());
    let shaped = |t: &str| base64(t) || hex(t) || looks_like_a_token(t);
    // Passwords: characters file and variable names do not have, or a long run of letters
    // without the `.` or `-` that names of files almost always have.
    let unusual = |t: &str| {
        t.chars()
            .any(|c| c.is_whitespace() || "!@#$%^&*()?<>|\"'`\\{}[];,".contains(c))
    };
    let passphrase = |t: &str| {
        t.len() >= 20
            && t.chars().any(|c| c.is_ascii_lowercase())
            && !t.contains('.')
            && !t.contains('-')
    };
    shaped(text)
        || unusual(text)
        || text.split('/').any(passphrase)
        || shaped(text.trim_start_matches('/'))
        || text.split('/').any(shaped)
        || (text.contains('+') || text.ends_with('='))
            && text
                .split('/')
                .filter(|c| !c.is_empty())
                .all(|c| !c.contains('.'))
}

/// A value that is surely a secret and not a path, refused even before anything is read:
/// an API token (or any path component that is one), or base64 with `+` or `=` padding.
fn pasted(text: &str) -> bool {
    text.split('/').any(looks_like_a_token)
        || (text.contains('+') || text.ends_with('=')) && looks_like_a_secret(text)
}

/// How an error shows a secret's location: the path or name itself, or a note that it is
/// not shown because it looks like a secret.
pub fn shown(text: &str) -> String {
    if looks_like_a_secret(text) {
        "(the value is not shown: it looks like a secret itself; give a path or a variable name)"
            .to_string()
    } else {
        text.to_string()
    }
}

/// Where a cloud API's token is (`token_env` or `token_file`).
pub const API_TOKEN: SecretKeys<'static> = SecretKeys {
    file_key: "token_file",
    env_key: "token_env",
    missing_key: "token_env",
    needs: "the API needs a token: add token_env = \"VAR\" (an environment variable holding it) or token_file = \"path\"",
    at_parse: true,
};

/// Exactly one of a `*_file` and a `*_env` key, checked: the variable's name must be one
/// and must not look like a secret; a file's path is resolved against the config's
/// directory. `needs` says what to add when both are missing.
pub struct SecretKeys<'k> {
    pub file_key: &'k str,
    pub env_key: &'k str,
    /// The key an error about both being missing names.
    pub missing_key: &'k str,
    pub needs: &'k str,
    /// Refuse a variable name or path that looks like a pasted secret here, at parse time;
    /// otherwise the reader words it when reading fails.
    pub at_parse: bool,
}

impl SecretKeys<'_> {
    pub fn check(
        &self,
        c: &mut Checker<'_>,
        table: &str,
        file: Option<&Spanned<String>>,
        env: Option<&Spanned<String>>,
        line: usize,
    ) -> Option<SecretAt> {
        let field = |key: &str| format!("{table}.{key}");
        let secret = match (file, env) {
            (Some(_), Some(env)) => {
                c.error(
                    env,
                    table,
                    format!(
                        "give either {} or {}, not both",
                        self.file_key, self.env_key
                    ),
                );
                return None;
            }
            (None, None) => {
                c.error_at_line(Some(line), field(self.missing_key), self.needs);
                return None;
            }
            (None, Some(var)) => {
                let name = var.get_ref();
                if self.at_parse && (!is_env_var_name(name) || looks_like_a_token(name)) {
                    c.error(
                        var,
                        field(self.env_key),
                        "must be the name of an environment variable (letters, digits, '_'); the \
                         value given is not one, or looks like a secret itself, and is not shown",
                    );
                    return None;
                }
                SecretRef::Env(name.clone())
            }
            (Some(path), None) => {
                let text = path.get_ref().trim();
                if text.is_empty() || self.at_parse && pasted(text) {
                    c.error(
                        path,
                        field(self.file_key),
                        "must be the path of a file holding the secret; the value given is empty \
                         or looks like a secret itself (not shown)",
                    );
                    return None;
                }
                SecretRef::File(c.resolve_path(text))
            }
        };
        Some(SecretAt {
            field: table.to_string(),
            line,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_every_shape_are_recognised() {
        for secret in [
            "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
            "q2Ft/7X1+Zk9vQ3mR0bLcW8sT4yN6pHa5eJdUiOgKfA=",
            "etc/q2Ft/7X1+Zk9vQ3mR0bLcW8sT4yN6pHa5eJdUiOgKfA=",
            "/q2Ft/7X1+Zk9vQ3mR0bLcW8sT4yN6pHa5eJdUiOgKfA=",
            "a3f5c9e1d7b2468f0e9c8b7a6d5e4f3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e",
            "dop_v1_4f0c2e8b9a7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b",
            "ab+cd/ef==",
        ] {
            assert!(looks_like_a_secret(secret), "{secret}");
            assert!(!shown(secret).contains(secret));
            assert!(
                pasted(secret) || !secret.contains(['+', '=', '_']),
                "{secret}"
            );
        }
        for path in [
            "/etc/ipdrift/tsig.secret",
            "tsig.secret",
            "/run/secrets/ipdrift-tsig",
            "secrets/etcd.password",
            "/var/lib/ipdrift/keys/do.token",
        ] {
            assert!(!looks_like_a_secret(path), "{path}");
            assert_eq!(shown(path), path);
            assert!(!pasted(path), "{path}");
        }
    }

    #[test]
    fn variable_names_are_names() {
        assert!(is_env_var_name("IPDRIFT_TSIG_SECRET"));
        assert!(!is_env_var_name("c2VjcmV0LXNlY3JldC1zZWNyZXQ="));
        assert!(!is_env_var_name("1ABC"));
    }
}
