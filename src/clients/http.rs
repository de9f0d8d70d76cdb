//! What the cloud API sources (`digitalocean`, `hetzner`) share: the API token, an HTTP
//! client with timeouts, and a GET that retries what is worth retrying.
//!
//! - The token is read from an environment variable or a file ([`Token::load`]). It is sent
//!   only in the `Authorization` header (marked sensitive), and appears in no log line, error
//!   or `Debug` output: provider messages quoted in errors have it replaced by `<redacted>`.
//! - Every request has the controller's `timeout`; redirects are not followed.
//! - 5xx answers, 429 and connection failures are retried (exponential backoff with jitter, a
//!   few attempts). A 429's `Retry-After` seconds are waited instead, up to a cap. Everything
//!   else — a 401/403, another 4xx, a timeout, a body that is not the documented JSON — ends
//!   the listing at once with an error naming the source, the provider and the page.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::anyhow;
use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::chain;
use super::token::Token;

/// The most of a provider's error message or body quoted in an error.
const QUOTE_CHARS: usize = 200;

/// The shortest time a whole listing (every page, every retry) may take.
const MIN_LISTING_LIMIT: Duration = Duration::from_secs(30);

/// Most pages one listing may have: a guard against pagination that never ends.
pub(crate) const MAX_PAGES: u32 = 1000;

/// How a page is retried. The defaults suit the real APIs; tests shorten the waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per page, the first one included.
    pub attempts: usize,
    /// The first wait; each further wait doubles, plus up to as much again of jitter.
    pub min_delay: Duration,
    /// The longest wait between attempts (before jitter).
    pub max_delay: Duration,
    /// The longest a 429's `Retry-After` is honoured; a longer one waits this long.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            retry_after_cap: Duration::from_secs(10),
        }
    }
}

/// Limits for one cloud source's HTTP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Limit for each request, connecting and reading the answer included
    /// (`controller.timeout`).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl HttpOptions {
    /// `timeout` per request and the default retry policy.
    pub fn new(timeout: Duration) -> HttpOptions {
        HttpOptions {
            timeout,
            retry: RetryPolicy::default(),
        }
    }

    /// How long a whole listing may take: six request timeouts, at least 30 s.
    pub fn listing_limit(&self) -> Duration {
        self.timeout.saturating_mul(6).max(MIN_LISTING_LIMIT)
    }
}

/// The base URL of an API, checked: `https`, or `http` to a loopback address (a test
/// server), since the token goes with every request; no query, fragment or credentials.
pub fn check_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"https://api.example.com\"")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not hold credentials (not shown); use token_env or token_file".into(),
        );
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{text:?} must use https: the API token is sent with every request (http is accepted only for a loopback test server)"
            ));
        }
        _ => return Err(format!("{text:?} must be an https:// URL")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(url)
}

/// `endpoint` with `segments` appended to its path.
pub(crate) fn api_url(endpoint: &Url, segments: &[&str]) -> Url {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .expect("an http(s) URL has a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// Page `page` of a paginated listing at `base`: `per_page`, then `page` from the second
/// page on, then the provider's filter parameter when one is configured.
pub(crate) fn page_url(base: &Url, per_page: u32, page: u32, filter: Option<(&str, &str)>) -> Url {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("per_page", &per_page.to_string());
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        if let Some((key, value)) = filter {
            query.append_pair(key, value);
        }
    }
    url
}

/// One attempt's failure.
#[derive(Debug)]
enum FetchError {
    /// 5xx, 429, a failed connection: another attempt may work.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt would get the same answer.
    Permanent(String),
}

impl FetchError {
    fn is_transient(&self) -> bool {
        matches!(self, FetchError::Transient { .. })
    }

    fn message(&self) -> &str {
        match self {
            FetchError::Transient { message, .. } | FetchError::Permanent(message) => message,
        }
    }
}

/// An authenticated JSON API client for one source.
pub(crate) struct ApiClient {
    /// For messages: `DigitalOcean`, `Hetzner Cloud`.
    provider: &'static str,
    /// The inventory's name.
    source: String,
    client: reqwest::Client,
    authorization: HeaderValue,
    token: Token,
    options: HttpOptions,
}

impl ApiClient {
    pub(crate) fn new(
        provider: &'static str,
        source: String,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<ApiClient> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| {
                anyhow!(
                    "inventory {source:?}: the token cannot be sent in an HTTP header (not shown)"
                )
            })?;
        authorization.set_sensitive(true);
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("ipdrift/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow!("inventory {source:?}: cannot set up HTTPS: {}", chain(&e)))?;
        Ok(ApiClient {
            provider,
            source,
            client,
            authorization,
            token,
            options,
        })
    }

    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The start of every error about `page`: source, provider, page and request.
    pub(crate) fn page_context(&self, page: u32, url: &Url) -> String {
        format!(
            "inventory {:?}: {} page {page} (GET {url})",
            self.source, self.provider
        )
    }

    /// GETs `url` — page `page` of a listing — retrying as the policy says, and decodes
    /// the JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        page: u32,
    ) -> anyhow::Result<T> {
        let policy = self.options.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.attempts.saturating_sub(1))
            .with_jitter();
        let mut retries = 0usize;
        let result = (|| self.fetch_once(url))
            .retry(backoff)
            .when(FetchError::is_transient)
            .adjust(|e, next| {
                next.map(|delay| match e {
                    FetchError::Transient {
                        retry_after: Some(wait),
                        ..
                    } => (*wait).min(policy.retry_after_cap),
                    _ => delay,
                })
            })
            .notify(|e, delay| {
                retries += 1;
                tracing::warn!(
                    source = %self.source,
                    page,
                    "{} page {page}: {}; retrying in {} ms",
                    self.provider,
                    e.message(),
                    delay.as_millis()
                );
            })
            .await;
        let body = result.map_err(|e| {
            let gave_up = if e.is_transient() {
                format!("; gave up after {} attempts", retries + 1)
            } else {
                String::new()
            };
            anyhow!("{}: {}{gave_up}", self.page_context(page, url), e.message())
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            let mut message = format!(
                "{}: malformed response, not the documented {} JSON: {e}",
                self.page_context(page, url),
                self.provider
            );
            if e.is_syntax() || e.is_eof() {
                message.push_str(&format!("; the body starts {}", self.quote(&body)));
            }
            anyhow!(message)
        })
    }

    async fn fetch_once(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let response = self
            .client
            .get(url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.send_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Ok(body.to_vec()),
                Err(e) if e.is_timeout() => Err(FetchError::Permanent(format!(
                    "the answer did not arrive within {}",
                    humantime::format_duration(self.options.timeout)
                ))),
                Err(e) => Err(FetchError::Permanent(format!(
                    "reading the answer failed: {}",
                    causes(&e)
                ))),
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        let detail = self.provider_message(&body);
        let shown = match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}{detail}", status.as_u16()),
            None => format!("HTTP {}{detail}", status.as_u16()),
        };
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FetchError::Permanent(format!(
                "the API token was rejected ({shown}); check token_env/token_file (a read-only token is enough)"
            )),
            StatusCode::TOO_MANY_REQUESTS => FetchError::Transient {
                message: format!("rate limited ({shown})"),
                retry_after,
            },
            s if s.is_server_error() => FetchError::Transient {
                message: shown,
                retry_after: None,
            },
            _ => FetchError::Permanent(shown),
        })
    }

    fn send_error(&self, e: &reqwest::Error) -> FetchError {
        if e.is_connect() {
            FetchError::Transient {
                message: format!("cannot connect: {}", causes(e)),
                retry_after: None,
            }
        } else if e.is_timeout() {
            FetchError::Permanent(format!(
                "no answer within {}",
                humantime::format_duration(self.options.timeout)
            ))
        } else {
            FetchError::Permanent(format!("the request failed: {}", causes(e)))
        }
    }

    /// `: <the provider's message>` from an error answer, for the error text. DigitalOcean
    /// answers `{"id": …, "message": …}`, Hetzner `{"error": {"code": …, "message": …}}`.
    fn provider_message(&self, body: &[u8]) -> String {
        if body.is_empty() {
            return String::new();
        }
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |v: &serde_json::Value, key: &str| {
            v.get(key).and_then(|m| m.as_str()).map(str::to_string)
        };
        let message = value.as_ref().and_then(|v| {
            let inner = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
            let code = field(inner, "code").or_else(|| field(inner, "id"));
            match (code, field(inner, "message")) {
                (Some(code), Some(message)) => Some(format!("{code}: {message}")),
                (None, Some(message)) => Some(message),
                (Some(code), None) => Some(code),
                (None, None) => None,
            }
        });
        match message {
            Some(message) => format!(": {}", self.clip(&message)),
            None => format!(": {}", self.quote(body)),
        }
    }

    /// `text` shortened, on one line, with the token redacted.
    fn clip(&self, text: &str) -> String {
        let text = self.token.redact(text);
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let one_line = one_line.trim();
        match one_line.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => format!("{}…", &one_line[..cut]),
            None => one_line.to_string(),
        }
    }

    /// The start of a body, quoted.
    fn quote(&self, body: &[u8]) -> String {
        format!("{:?}", self.clip(&String::from_utf8_lossy(body)))
    }

    /// Checks that the pages add up to the whole listing the provider announced: no id
    /// twice, the same total on every page that gave one, and that many instances.
    /// Anything else is a listing that changed while it was read, or a partial one.
    pub(crate) fn check_complete(
        &self,
        ids: impl IntoIterator<Item = String>,
        totals: &[(u32, u64)],
        noun: &str,
    ) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        let mut count = 0u64;
        for id in ids {
            count += 1;
            if !seen.insert(id.clone()) {
                return Err(anyhow!(
                    "inventory {:?}: {} listed {noun} {id} twice; the listing changed while it was read (the next pass reads it again)",
                    self.source,
                    self.provider
                ));
            }
        }
        if let Some(((first_page, first), (page, other))) = totals
            .first()
            .and_then(|first| totals.iter().find(|t| t.1 != first.1).map(|o| (first, o)))
        {
            return Err(anyhow!(
                "inventory {:?}: {} reported {first} {noun}s on page {first_page} and {other} on page {page}; the listing changed while it was read (the next pass reads it again)",
                self.source,
                self.provider
            ));
        }
        if let Some((_, total)) = totals.last()
            && *total != count
        {
            return Err(anyhow!(
                "inventory {:?}: partial listing: {} reported {total} {noun}s but the pages held {count}",
                self.source,
                self.provider
            ));
        }
        Ok(())
    }
}

/// What went wrong under a reqwest error, whose own text repeats the URL the error's
/// context already shows.
fn causes(e: &reqwest::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => chain(cause),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

    #[test]
    fn an_https_client_builds_with_the_ring_provider() {
        // reqwest has no TLS provider of its own here: building must not panic.
        let client = ApiClient::new(
            "DigitalOcean",
            "do".into(),
            Token::new(SECRET.to_string()).unwrap(),
            HttpOptions::new(std::time::Duration::from_secs(1)),
        );
        assert!(client.is_ok());
    }

    #[test]
    fn endpoints_must_be_https_unless_on_loopback() {
        assert!(check_endpoint("https://api.digitalocean.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(check_endpoint("http://[::1]:8080/").is_ok());
        assert!(check_endpoint("http://localhost:8080").is_ok());
        assert!(
            check_endpoint("http://api.hetzner.cloud")
                .unwrap_err()
                .contains("must use https")
        );
        assert!(check_endpoint("ftp://x").is_err());
        assert!(check_endpoint("api.hetzner.cloud").is_err());
        assert!(check_endpoint("https://x/?a=b").is_err());
        let e = check_endpoint("http://user:hunter2@x/").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn api_paths_are_appended_to_the_endpoint() {
        let base = check_endpoint("https://api.digitalocean.com").unwrap();
        assert_eq!(
            api_url(&base, &["v2", "droplets"]).as_str(),
            "https://api.digitalocean.com/v2/droplets"
        );
        let proxied = check_endpoint("https://proxy.example/do/").unwrap();
        assert_eq!(
            api_url(&proxied, &["v2", "droplets"]).as_str(),
            "https://proxy.example/do/v2/droplets"
        );
    }

    #[test]
    fn listing_limit_covers_several_requests() {
        assert_eq!(
            HttpOptions::new(Duration::from_secs(5)).listing_limit(),
            MIN_LISTING_LIMIT
        );
        assert_eq!(
            HttpOptions::new(Duration::from_secs(10)).listing_limit(),
            Duration::from_secs(60)
        );
    }

    fn client() -> ApiClient {
        ApiClient::new(
            "DigitalOcean",
            "do".into(),
            Token::new(SECRET).unwrap(),
            HttpOptions::new(Duration::from_secs(1)),
        )
        .unwrap()
    }

    #[test]
    fn provider_messages_are_quoted_without_the_token() {
        let c = client();
        assert_eq!(
            c.provider_message(br#"{"id":"unauthorized","message":"Unable to authenticate you"}"#),
            ": unauthorized: Unable to authenticate you"
        );
        assert_eq!(
            c.provider_message(
                br#"{"error":{"code":"invalid_input","message":"invalid label_selector","details":{}}}"#
            ),
            ": invalid_input: invalid label_selector"
        );
        let echoed = format!(r#"{{"id":"unauthorized","message":"token {SECRET} is invalid"}}"#);
        let shown = c.provider_message(echoed.as_bytes());
        assert!(
            !shown.contains(SECRET) && shown.contains("<redacted>"),
            "{shown}"
        );
        let html = format!("<html>{}</html>", "x".repeat(1000));
        assert!(c.provider_message(html.as_bytes()).chars().count() < 300);
        assert_eq!(c.provider_message(b""), "");
    }

    #[test]
    fn incomplete_listings_are_errors() {
        let c = client();
        let ids = |n: u32| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(c.check_complete(ids(3), &[(1, 3)], "droplet").is_ok());
        assert!(c.check_complete(ids(3), &[], "droplet").is_ok());
        let e = c.check_complete(ids(2), &[(1, 3)], "droplet").unwrap_err();
        assert!(e.to_string().contains("partial listing"), "{e}");
        let e = c
            .check_complete(ids(4), &[(1, 3), (2, 4)], "droplet")
            .unwrap_err();
        assert!(e.to_string().contains("changed while it was read"), "{e}");
        let e = c
            .check_complete(vec!["1".into(), "1".into()], &[(1, 2)], "droplet")
            .unwrap_err();
        assert!(e.to_string().contains("droplet 1 twice"), "{e}");
    }
}
