//! API tokens for the cloud APIs: read from an environment variable or a file, sent only in
//! the `Authorization` header, and shown nowhere — not in `Debug`, errors or logs; provider
//! messages quoted in errors have the token replaced by `<redacted>`.

use std::fmt;

use crate::config::SecretRef;
use crate::config::secret_keys::{looks_like_a_secret, shown};

/// An API token. Its `Debug` shows nothing of it and it has no `Display`.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token given directly (surrounding whitespace is trimmed). The error never quotes it.
    pub fn new(value: impl Into<String>) -> Result<Token, String> {
        let value = value.into();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err("the token is empty".into());
        }
        if !trimmed.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                "the token holds spaces or characters that cannot be sent in an HTTP header (not shown)"
                    .into(),
            );
        }
        Ok(Token(trimmed.to_string()))
    }

    /// Reads the token from `token_env` ([`SecretRef::Env`]) or `token_file`
    /// ([`SecretRef::File`]). The error starts with that key and says what to fix; it never
    /// contains the token, nor a key's value that looks like a token pasted in by mistake.
    pub fn load(source: &SecretRef) -> Result<Token, String> {
        match source {
            SecretRef::Env(var) if looks_like_a_secret(var) => Err(
                "token_env: must name an environment variable holding the token; the value given \
                 looks like a token itself and is not shown — export it in a variable and name that"
                    .into(),
            ),
            SecretRef::Env(var) => {
                let value = std::env::var(var).map_err(|e| match e {
                    std::env::VarError::NotPresent => format!(
                        "token_env: environment variable {var} is not set; export the API token in it"
                    ),
                    std::env::VarError::NotUnicode(_) => {
                        format!("token_env: environment variable {var} does not hold a valid token")
                    }
                })?;
                Token::new(value).map_err(|e| format!("token_env: environment variable {var}: {e}"))
            }
            SecretRef::File(path) => {
                // A path that exists is a path; one that does not may be the token itself.
                let shown = if path.exists() {
                    path.display().to_string()
                } else {
                    shown(&path.display().to_string())
                };
                let value = std::fs::read_to_string(path).map_err(|e| {
                    format!("token_file: cannot read {shown}: {e}; it must hold the API token")
                })?;
                Token::new(value).map_err(|e| format!("token_file: {shown}: {e}"))
            }
        }
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the token replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SECRET: &str = "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

    #[test]
    fn tokens_are_trimmed_checked_and_never_shown() {
        let token = Token::new(format!("  {SECRET}\n")).unwrap();
        assert_eq!(token.expose(), SECRET);
        assert!(!format!("{token:?}").contains("dop_v1"));
        assert_eq!(
            token.redact(&format!("bad token {SECRET}.")),
            "bad token <redacted>."
        );
        assert!(Token::new(" \n").unwrap_err().contains("empty"));
        let e = Token::new("abc def").unwrap_err();
        assert!(!e.contains("abc"), "{e}");
    }

    #[test]
    fn tokens_load_from_env_or_file_and_errors_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("do.token");
        std::fs::write(&file, format!("{SECRET}\n")).unwrap();
        let token = Token::load(&SecretRef::File(file.clone())).unwrap();
        assert_eq!(token.expose(), SECRET);

        let e = Token::load(&SecretRef::File(dir.path().join("missing"))).unwrap_err();
        assert!(
            e.starts_with("token_file: cannot read ") && e.contains("missing"),
            "{e}"
        );
        std::fs::write(&file, "\n").unwrap();
        let e = Token::load(&SecretRef::File(file)).unwrap_err();
        assert!(e.contains("empty"), "{e}");

        let e = Token::load(&SecretRef::Env("IPDRIFT_TEST_SURELY_UNSET_VAR".into())).unwrap_err();
        assert!(
            e.contains("IPDRIFT_TEST_SURELY_UNSET_VAR is not set"),
            "{e}"
        );
        // A token pasted where a name or path belongs is not echoed.
        let e = Token::load(&SecretRef::Env(SECRET.into())).unwrap_err();
        assert!(!e.contains(SECRET) && e.contains("not shown"), "{e}");
        let e =
            Token::load(&SecretRef::File(PathBuf::from("/etc/ipdrift").join(SECRET))).unwrap_err();
        assert!(!e.contains(SECRET) && e.contains("not shown"), "{e}");
        let e = Token::load(&SecretRef::File(
            PathBuf::from("/etc/ipdrift").join("correct-horse-battery-staple-42!"),
        ))
        .unwrap_err();
        assert!(!e.contains("staple") && e.contains("not shown"), "{e}");
        assert!(!looks_like_a_secret("IPDRIFT_DIGITALOCEAN_READ_ONLY_TOKEN"));
        assert!(looks_like_a_secret(
            "jEheVytlAoFl7F8MqUQ7jAo2hOXASztX5ZBdHGHBmkgbM0NmrCVTYr0kcNDCBOh2"
        ));
    }
}
