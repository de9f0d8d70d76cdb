//! `[[notify]]`: webhooks told about repairs that fail and maintenance that is coming.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;

pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_FAILING_PASSES: u32 = 3;

const KINDS: [(&str, NotifyKind); 2] = [("slack", NotifyKind::Slack), ("json", NotifyKind::Json)];

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    url: Spanned<String>,
    kind: Spanned<String>,
    failing_passes: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
}

/// One `[[notify]]` (the `number`th, 1-based). Errors never quote the URL: it may hold a token.
pub(super) fn check(c: &mut Checker<'_>, raw: &RawNotify, number: usize) -> Option<NotifyConfig> {
    let field = format!("notify[{number}]");
    let url = match WebhookUrl::parse(raw.url.get_ref()) {
        Ok(url) => Some(url),
        Err(message) => {
            c.error(&raw.url, format!("{field}.url"), message);
            None
        }
    };
    let kind = c.choice(&raw.kind, &format!("{field}.kind"), "kind", &KINDS);
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
