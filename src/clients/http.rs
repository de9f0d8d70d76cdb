//! The JSON-over-HTTPS client for cloud APIs: the inventory sources (`digitalocean`,
//! `hetzner`) read with it, and DNS providers that speak HTTP read and write with it.
//!
//! - The token ([`Token`]) is sent only in the `Authorization` header, marked sensitive.
//!   Provider messages quoted in errors have it replaced by `<redacted>`.
//! - Every request has the controller's `timeout`; redirects are not followed.
//! - Errors start with who asked, the provider, what the request was for and the request —
//!   `inventory "do": DigitalOcean page 2 (GET https://…)` — then the provider's own message.
//!   A refused token (401/403) is told what the call needs ([`Call::new`]).
//! - A request is retried a few times (exponential backoff with jitter), every wait within
//!   the call's deadline:
//!   - when the connection failed: the request was never sent, so any method may go again;
//!   - on a 429, for every method: the API turned the request away without acting on it;
//!   - on a 5xx, for GET, PUT and DELETE only. These are idempotent (RFC 9110 §9.2.2):
//!     sending one twice ends in the same state. A POST or PATCH that got a 5xx may have been
//!     carried out all the same, and sending it again could, say, create a second record; it
//!     is an error instead, and the next pass, which reads the state afresh, decides.
//!
//!   An answer's `Retry-After` (seconds or an HTTP date) is waited instead of the backoff,
//!   up to a cap; when that wait would pass the deadline the call ends at once.
//! - Rate limits: when an answer says the request budget is used up (`ratelimit-remaining:
//!   0` and the like, see `ratelimit.rs`), the next request waits for the reset (up to the same cap) rather than earn a 429.
//! - Anything else — another 4xx, a timeout (for a write, whether it was carried out is
//!   unknown), a body that is not the documented JSON — ends the call with an error.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::chain;
use super::ratelimit::{self, Budget};
use super::token::Token;

/// The most of a provider's error message or body quoted in an error.
const QUOTE_CHARS: usize = 200;

/// The shortest time a whole listing (every page, every retry) may take.
const MIN_LISTING_LIMIT: Duration = Duration::from_secs(30);

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// `Bearer <token>`, marked sensitive so that it is never logged.
fn bearer(token: &Token) -> Result<HeaderValue, ()> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| ())?;
    value.set_sensitive(true);
    Ok(value)
}

/// What a read needs of the token, for [`Call::new`].
pub const READ_ONLY: &str = "a read-only token is enough";

/// How a request is retried. The defaults suit the real APIs; tests shorten the waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included.
    pub attempts: usize,
    /// The first wait; each further wait doubles, plus up to as much again of jitter.
    pub min_delay: Duration,
    /// The longest wait between attempts (before jitter).
    pub max_delay: Duration,
    /// The longest a `Retry-After` or a used-up request budget is waited for; a longer one
    /// waits this long.
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

/// Limits for one client's HTTP requests.
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

    /// How long a whole listing may take: six request timeouts, at least 30 s. A single
    /// call without a deadline of its own may take as long.
    pub fn listing_limit(&self) -> Duration {
        self.timeout.saturating_mul(6).max(MIN_LISTING_LIMIT)
    }
}

/// The base URL of an API, checked (see [`crate::validate::api_endpoint`]).
pub fn check_endpoint(text: &str) -> Result<Url, String> {
    crate::validate::api_endpoint(text)
}

/// `endpoint` with `segments` appended to its path.
pub fn api_url(endpoint: &Url, segments: &[&str]) -> Url {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .expect("an http(s) URL has a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// What one request is for, as its errors tell it, and by when it must be done.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    what: String,
    needs: &'a str,
    deadline: Option<Instant>,
    /// Sent with the request besides the client's own (`If-Match`, `Metadata`).
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A POST that may be sent again after a 5xx (an OAuth token request).
    repeatable: bool,
}

impl<'a> Call<'a> {
    /// `what` names the request in errors (`page 2`, `create record www.example.com. A`).
    /// `needs` is said when the API refuses the token (401, 403): [`READ_ONLY`] for reads,
    /// the permission for writes (`the token must allow Zone.DNS:Edit`).
    pub fn new(what: impl Into<String>, needs: &'a str) -> Call<'a> {
        Call {
            what: what.into(),
            needs,
            deadline: None,
            headers: Vec::new(),
            repeatable: false,
        }
    }

    /// Sends `name: value` with the request, e.g. `If-Match` with an etag. A value that
    /// cannot be a header value is left out.
    pub fn header(mut self, name: HeaderName, value: &str) -> Call<'a> {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// The request may be sent again after a 5xx although its method is POST: it changes
    /// nothing (a token request).
    pub fn repeatable(self) -> Call<'a> {
        Call {
            repeatable: true,
            ..self
        }
    }

    /// Every attempt and every wait of the call ends by `deadline`. Without one, a call
    /// may take [`HttpOptions::listing_limit`].
    pub fn until(self, deadline: Instant) -> Call<'a> {
        Call {
            deadline: Some(deadline),
            ..self
        }
    }
}

/// Why one attempt failed, and whether another may be made.
#[derive(Debug)]
enum Failure {
    /// The connection failed: the request was never sent, so it may be sent again.
    NotSent(String),
    /// 429: the API turned the request away without acting on it; it may be sent again.
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx: the API may have acted or not; only an idempotent request may be sent again.
    Server {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt would get the same answer, or might do again what was done.
    Final(String),
}

impl Failure {
    fn may_retry(&self, idempotent: bool) -> bool {
        match self {
            Failure::NotSent(_) | Failure::RateLimited { .. } => true,
            Failure::Server { .. } => idempotent,
            Failure::Final(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::RateLimited { retry_after, .. } | Failure::Server { retry_after, .. } => {
                *retry_after
            }
            Failure::NotSent(_) | Failure::Final(_) => None,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::NotSent(message)
            | Failure::Final(message)
            | Failure::RateLimited { message, .. }
            | Failure::Server { message, .. } => message,
        }
    }
}

/// GET, PUT and DELETE leave the same state however often they are sent (RFC 9110
/// §9.2.2); POST and PATCH may not.
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::PUT | Method::DELETE)
}

/// The wait before retry number `retry` (1 for the first): `min_delay` doubled each time,
/// at most `max_delay`, plus up to as much again of jitter so that clients that failed
/// together do not retry together.
fn backoff(policy: &RetryPolicy, retry: usize) -> Duration {
    let doublings = u32::try_from(retry.saturating_sub(1)).unwrap_or(u32::MAX);
    let base = policy
        .min_delay
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(policy.max_delay);
    base.saturating_add(base.mul_f64(rand::random::<f64>()))
}

/// `after` from now, or a time so far away it never comes when that overflows.
pub(super) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn attempts(n: usize) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
}

/// The wait before a request when the request budget refills in `left`: at most `cap`,
/// and an error instead when that would pass the deadline, `remaining` away.
fn budget_wait(
    left: Option<Duration>,
    cap: Duration,
    remaining: Duration,
) -> Result<Option<Duration>, String> {
    let Some(left) = left.filter(|left| !left.is_zero()) else {
        return Ok(None);
    };
    let wait = left.min(cap);
    if wait > remaining {
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(format!(
            "rate limited: the API's request budget is used up for {} more, past the time limit",
            humantime::format_duration(Duration::from_secs(seconds))
        ));
    }
    Ok(Some(wait))
}

/// An authenticated JSON API client: one per source or target, shared by its requests.
pub struct ApiClient {
    /// For messages: `DigitalOcean`, `Hetzner Cloud`.
    provider: &'static str,
    /// Who uses the client, as errors start: `inventory "do"`.
    owner: String,
    client: reqwest::Client,
    /// `Authorization: Bearer …`, or the header the API takes its key in (`X-API-Key`),
    /// with the token it carries; `None` for a client without credentials or one that
    /// fetches tokens (an OAuth endpoint, a metadata server) until [`Self::set_token`].
    credential: RwLock<Option<(HeaderName, HeaderValue, Token)>>,
    /// The media type sent in `Accept` and as a JSON body's `Content-Type`.
    media_type: &'static str,
    /// What a refused credential is told to check: `token_env/token_file`.
    check: &'static str,
    options: HttpOptions,
    /// Until when the API said its request budget is used up.
    exhausted_until: Mutex<Option<Instant>>,
}

impl ApiClient {
    /// A client for `provider`'s API used by `owner` (`inventory "do"`), sending `token`.
    pub fn new(
        provider: &'static str,
        owner: String,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<ApiClient> {
        let authorization = bearer(&token).map_err(|()| {
            anyhow!("{owner}: the token cannot be sent in an HTTP header (not shown)")
        })?;
        let client = ApiClient::without_token(provider, owner, options)?;
        client.set_credential(AUTHORIZATION, authorization, token);
        Ok(client)
    }

    /// A client that sends `token` as it is in the header `header` (PowerDNS's
    /// `X-API-Key`) instead of `Authorization: Bearer`; a refused one is told to check
    /// `check` (`api_key_env/api_key_file`).
    pub fn with_key_header(
        provider: &'static str,
        owner: String,
        header: &'static str,
        check: &'static str,
        token: Token,
        options: HttpOptions,
    ) -> anyhow::Result<ApiClient> {
        let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
            anyhow!("{owner}: the token cannot be sent in an HTTP header (not shown)")
        })?;
        value.set_sensitive(true);
        let client = ApiClient::without_token(provider, owner, options)?.checking(check);
        client.set_credential(HeaderName::from_static(header), value, token);
        Ok(client)
    }

    /// A client that sends no credentials: a webhook provider on loopback, or, until
    /// [`Self::set_token`], token endpoints, metadata servers and APIs whose tokens expire.
    pub fn without_token(
        provider: &'static str,
        owner: String,
        options: HttpOptions,
    ) -> anyhow::Result<ApiClient> {
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("ipdrift/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow!("{owner}: cannot set up HTTPS: {}", chain(&e)))?;
        Ok(ApiClient {
            provider,
            owner,
            client,
            credential: RwLock::new(None),
            media_type: JSON,
            check: "token_env/token_file",
            options,
            exhausted_until: Mutex::new(None),
        })
    }

    /// Sends `media_type` (a JSON media type such as
    /// `application/external.dns.webhook+json;version=1`) in `Accept` and as the body's
    /// `Content-Type` instead of `application/json`.
    pub fn media_type(self, media_type: &'static str) -> ApiClient {
        ApiClient { media_type, ..self }
    }

    /// A refused credential (401, 403) is told to check `keys` instead of
    /// `token_env/token_file`.
    pub fn checking(self, keys: &'static str) -> ApiClient {
        ApiClient {
            check: keys,
            ..self
        }
    }

    /// Sends `token` from now on (a fresh OAuth access token).
    pub fn set_token(&self, token: Token) -> anyhow::Result<()> {
        let authorization = bearer(&token).map_err(|()| {
            anyhow!(
                "{}: the access token cannot be sent in an HTTP header (not shown)",
                self.owner
            )
        })?;
        self.set_credential(AUTHORIZATION, authorization, token);
        Ok(())
    }

    /// Sends `token` as it is in the header `header` from now on (a fresh Keystone token
    /// in `X-Auth-Token`).
    pub fn set_token_header(&self, header: &'static str, token: Token) -> anyhow::Result<()> {
        let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
            anyhow!(
                "{}: the token cannot be sent in an HTTP header (not shown)",
                self.owner
            )
        })?;
        value.set_sensitive(true);
        self.set_credential(HeaderName::from_static(header), value, token);
        Ok(())
    }

    fn set_credential(&self, header: HeaderName, value: HeaderValue, token: Token) {
        *self
            .credential
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((header, value, token));
    }

    /// `text` with the current token replaced.
    fn redact(&self, text: &str) -> String {
        match &*self
            .credential
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((_, _, token)) => token.redact(text),
            None => text.to_string(),
        }
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    pub(super) fn provider(&self) -> &'static str {
        self.provider
    }

    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    /// The start of every error about a request: who, provider, what, and the request.
    pub(super) fn context(&self, method: &Method, url: &Url, call: &Call<'_>) -> String {
        format!(
            "{}: {} {} ({method} {})",
            self.owner,
            self.provider,
            call.what,
            self.redact(url.as_str())
        )
    }

    /// GETs `url` and decodes the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        self.send(Method::GET, url, None, call).await
    }

    /// POSTs `body` as JSON. Not retried after a 5xx (see the module doc).
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        self.send_json(Method::POST, url, body, call).await
    }

    /// POSTs `form` as `application/x-www-form-urlencoded` (OAuth token requests).
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish()
            .into_bytes();
        self.send(Method::POST, url, Some((body, FORM)), call).await
    }

    /// POSTs `body` as JSON; the answer, and the value of its header `header` (Keystone
    /// answers a token request with the token in `X-Subject-Token`).
    pub async fn post_json_with_header<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
        call: &Call<'_>,
        header: &str,
    ) -> anyhow::Result<(T, Option<String>)> {
        let context = self.context(&Method::POST, url, call);
        let body = serde_json::to_vec(body)
            .map_err(|e| anyhow!("{context}: cannot encode the request as JSON: {e}"))?;
        let (answer, headers) = self
            .exchange(Method::POST, url, Some((body, self.media_type)), call)
            .await?;
        let value = headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((self.decode(&answer, &context)?, value))
    }

    /// PUTs `body` as JSON.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        self.send_json(Method::PUT, url, body, call).await
    }

    /// PATCHes with `body` as JSON. Not retried after a 5xx (see the module doc).
    pub async fn patch_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        self.send_json(Method::PATCH, url, body, call).await
    }

    /// DELETEs `url`; `T = ()` takes an empty answer.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        url: &Url,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        self.send(Method::DELETE, url, None, call).await
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &Url,
        body: &B,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).map_err(|e| {
            anyhow!(
                "{}: cannot encode the request as JSON: {e}",
                self.context(&method, url, call)
            )
        })?;
        self.send(method, url, Some((body, self.media_type)), call)
            .await
    }

    /// Sends the request, retrying as the module doc says, and decodes the answer. An empty
    /// answer (204 No Content, or an empty 200) reads as JSON `null`, which `()` and
    /// `Option` take.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &Url,
        body: Option<(Vec<u8>, &'static str)>,
        call: &Call<'_>,
    ) -> anyhow::Result<T> {
        let context = self.context(&method, url, call);
        let (answer, _) = self.exchange(method, url, body, call).await?;
        self.decode(&answer, &context)
    }

    /// Sends the request, retrying as the module doc says: the answer's body and headers.
    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        body: Option<(Vec<u8>, &'static str)>,
        call: &Call<'_>,
    ) -> anyhow::Result<(Vec<u8>, HeaderMap)> {
        let context = self.context(&method, url, call);
        let deadline = call
            .deadline
            .unwrap_or_else(|| deadline_after(self.options.listing_limit()));
        let policy = self.options.retry;
        let mut attempt = 1;
        let answer = loop {
            self.wait_for_budget(deadline)
                .await
                .map_err(|e| anyhow!("{context}: {e}"))?;
            let failure = match self.attempt(&method, url, body.as_ref(), call).await {
                Ok(answer) => break answer,
                Err(failure) => failure,
            };
            let message = failure.message();
            if !failure.may_retry(call.repeatable || is_idempotent(&method)) {
                let unsure = if matches!(failure, Failure::Server { .. }) {
                    format!(
                        "; not retried: the {method} may have been carried out all the same (the next pass reads the state again)"
                    )
                } else {
                    String::new()
                };
                return Err(anyhow!("{context}: {message}{unsure}"));
            }
            if attempt >= policy.attempts {
                return Err(anyhow!(
                    "{context}: {message}; gave up after {}",
                    attempts(attempt)
                ));
            }
            let wait = match failure.retry_after() {
                Some(asked) => asked.min(policy.retry_after_cap),
                None => backoff(&policy, attempt),
            };
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|t| t > deadline)
            {
                return Err(anyhow!(
                    "{context}: {message}; gave up after {}: waiting {} for another would pass the time limit",
                    attempts(attempt),
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
                    ))
                ));
            }
            tracing::warn!("{context}: {message}; retrying in {} ms", wait.as_millis());
            tokio::time::sleep(wait).await;
            attempt += 1;
        };
        Ok(answer)
    }

    /// When the API said its request budget is used up, waits for the reset as
    /// [`budget_wait`] says.
    async fn wait_for_budget(&self, deadline: Instant) -> Result<(), String> {
        let until = *self
            .exhausted_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let left = until.map(|until| until.saturating_duration_since(now));
        let wait = budget_wait(
            left,
            self.options.retry.retry_after_cap,
            deadline.saturating_duration_since(now),
        )?;
        if let Some(wait) = wait {
            tracing::info!(
                "{}: {}: the request budget is used up; waiting {} ms",
                self.owner,
                self.provider,
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Remembers what an answer said about the request budget.
    fn note_budget(&self, headers: &HeaderMap) {
        let mut until = self
            .exhausted_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match ratelimit::budget(headers, SystemTime::now()) {
            Budget::Unknown => {}
            Budget::Left => *until = None,
            Budget::ExhaustedFor(wait) => *until = Some(deadline_after(wait)),
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&(Vec<u8>, &'static str)>,
        call: &Call<'_>,
    ) -> Result<(Vec<u8>, HeaderMap), Failure> {
        let needs = call.needs;
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .header(ACCEPT, self.media_type);
        if let Some((name, value, _)) = &*self
            .credential
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            request = request.header(name.clone(), value.clone());
        }
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some((body, content_type)) = body {
            request = request
                .header(CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| self.send_error(&e))?;
        self.note_budget(response.headers());
        let status = response.status();
        if status.is_success() {
            let headers = response.headers().clone();
            return match response.bytes().await {
                Ok(body) => Ok((body.to_vec(), headers)),
                Err(e) if e.is_timeout() => Err(Failure::Final(format!(
                    "the answer did not arrive within {}",
                    humantime::format_duration(self.options.timeout)
                ))),
                Err(e) => Err(Failure::Final(format!(
                    "reading the answer failed: {}",
                    causes(&e)
                ))),
            };
        }
        let retry_after = ratelimit::retry_after(response.headers(), SystemTime::now());
        let body = response.bytes().await.unwrap_or_default();
        let detail = self.provider_message(&body);
        let shown = match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}{detail}", status.as_u16()),
            None => format!("HTTP {}{detail}", status.as_u16()),
        };
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Final(format!(
                "the API token was rejected ({shown}); check {} ({needs})",
                self.check
            )),
            // Sent with If-Match / If-None-Match: someone else changed it since it was read.
            StatusCode::PRECONDITION_FAILED => Failure::Final(format!(
                "it changed since it was read ({shown}); not overwritten, the next pass reads it again"
            )),
            StatusCode::TOO_MANY_REQUESTS => Failure::RateLimited {
                message: format!("rate limited ({shown})"),
                retry_after,
            },
            s if s.is_server_error() => Failure::Server {
                message: shown,
                retry_after,
            },
            _ => Failure::Final(shown),
        })
    }

    fn send_error(&self, e: &reqwest::Error) -> Failure {
        if e.is_connect() {
            Failure::NotSent(format!("cannot connect: {}", causes(e)))
        } else if e.is_timeout() {
            Failure::Final(format!(
                "no answer within {}",
                humantime::format_duration(self.options.timeout)
            ))
        } else {
            Failure::Final(format!("the request failed: {}", causes(e)))
        }
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8], context: &str) -> anyhow::Result<T> {
        let empty = body.iter().all(u8::is_ascii_whitespace);
        let json: &[u8] = if empty { b"null" } else { body };
        serde_json::from_slice(json).map_err(|e| {
            let mut message = format!(
                "{context}: malformed response, not the documented {} JSON: {e}",
                self.provider
            );
            if empty {
                message.push_str("; the body is empty");
            } else if e.is_syntax() || e.is_eof() {
                message.push_str(&format!("; the body starts {}", self.quote(body)));
            }
            anyhow!(message)
        })
    }

    /// `: <the provider's message>` from an error answer, for the error text. DigitalOcean
    /// answers `{"id": …, "message": …}`, Hetzner (and Azure, Google) `{"error": {"code": …,
    /// "message": …}}`, Cloudflare `{"errors": [{"code": 10000, "message": …}]}`, PowerDNS
    /// `{"error": "…"}`.
    fn provider_message(&self, body: &[u8]) -> String {
        if body.is_empty() {
            return String::new();
        }
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |v: &serde_json::Value, key: &str| match v.get(key) {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        let message = value.as_ref().and_then(|v| {
            // PowerDNS `{"error": …}`; OAuth 2 `{"error": code, "error_description": …}`.
            if let Some(serde_json::Value::String(text)) = v.get("error") {
                return Some(match field(v, "error_description") {
                    Some(description) => format!("{text}: {description}"),
                    None => text.clone(),
                });
            }
            let inner = v
                .get("error")
                .filter(|e| e.is_object())
                .or_else(|| v.get("errors").and_then(|e| e.get(0)))
                .unwrap_or(v);
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
        let text = self.redact(text);
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
            "inventory \"do\"".into(),
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
            "inventory \"do\"".into(),
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
        assert_eq!(
            c.provider_message(
                br#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#
            ),
            ": 10000: Authentication error"
        );
        assert_eq!(
            c.provider_message(
                br#"{"error": "RRset www.example.com. IN A: Conflicts with pre-existing RRset"}"#
            ),
            ": RRset www.example.com. IN A: Conflicts with pre-existing RRset",
            "PowerDNS"
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
    fn only_get_put_and_delete_are_sent_again_after_a_server_error() {
        let server = || Failure::Server {
            message: "HTTP 502".into(),
            retry_after: None,
        };
        for (method, idempotent) in [
            (Method::GET, true),
            (Method::PUT, true),
            (Method::DELETE, true),
            (Method::POST, false),
            (Method::PATCH, false),
        ] {
            assert_eq!(is_idempotent(&method), idempotent, "{method}");
            assert_eq!(server().may_retry(is_idempotent(&method)), idempotent);
            // Turned away or never sent: safe for every method.
            let limited = Failure::RateLimited {
                message: "HTTP 429".into(),
                retry_after: None,
            };
            assert!(limited.may_retry(is_idempotent(&method)), "{method}");
            assert!(Failure::NotSent("refused".into()).may_retry(false));
            assert!(!Failure::Final("HTTP 400".into()).may_retry(true));
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_on_top() {
        let policy = RetryPolicy {
            attempts: 10,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            retry_after_cap: Duration::from_secs(1),
        };
        for (retry, base) in [(1, 100), (2, 200), (3, 400), (4, 500), (60, 500)] {
            let base = Duration::from_millis(base);
            for _ in 0..20 {
                let wait = backoff(&policy, retry);
                assert!(wait >= base && wait < base * 2, "{retry}: {wait:?}");
            }
        }
    }

    #[test]
    fn empty_answers_read_as_null_and_bad_ones_are_quoted() {
        let c = client();
        c.decode::<()>(b"", "ctx").unwrap();
        assert_eq!(c.decode::<Option<u32>>(b" \n", "ctx").unwrap(), None);
        assert_eq!(c.decode::<u32>(b"7", "ctx").unwrap(), 7);
        let e = c.decode::<Vec<u32>>(b"", "ctx").unwrap_err().to_string();
        assert!(
            e.starts_with("ctx: malformed response, not the documented DigitalOcean JSON")
                && e.ends_with("; the body is empty"),
            "{e}"
        );
        let e = c.decode::<u32>(b"<html>", "ctx").unwrap_err().to_string();
        assert!(e.contains("the body starts \"<html>\""), "{e}");
    }

    #[test]
    fn errors_name_owner_provider_what_and_request() {
        let c = client();
        let url = Url::parse("https://api.digitalocean.com/v2/droplets?page=2").unwrap();
        assert_eq!(
            c.context(&Method::GET, &url, &Call::new("page 2", READ_ONLY)),
            "inventory \"do\": DigitalOcean page 2 (GET https://api.digitalocean.com/v2/droplets?page=2)"
        );
        // A token in a URL (it never belongs there) is not shown either.
        let url = Url::parse(&format!("https://x.example/{SECRET}")).unwrap();
        let shown = c.context(&Method::DELETE, &url, &Call::new("delete", READ_ONLY));
        assert!(!shown.contains(SECRET) && shown.contains("DELETE https://x.example/<redacted>"));
    }

    #[test]
    fn a_used_up_budget_is_waited_for_up_to_the_cap_within_the_deadline() {
        let (minute, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(budget_wait(None, 10 * minute, hour), Ok(None));
        assert_eq!(budget_wait(Some(Duration::ZERO), minute, hour), Ok(None));
        assert_eq!(
            budget_wait(Some(Duration::from_secs(2)), minute, hour),
            Ok(Some(Duration::from_secs(2)))
        );
        // Hetzner's reset is when the whole budget is back, maybe an hour away; a request
        // is allowed again much sooner, so the wait is capped.
        assert_eq!(
            budget_wait(Some(hour), 10 * minute, hour),
            Ok(Some(10 * minute))
        );
        assert_eq!(
            budget_wait(Some(hour), 10 * minute, minute),
            Err(
                "rate limited: the API's request budget is used up for 1h more, past the time limit"
                    .into()
            )
        );
    }

    #[test]
    fn answers_set_and_clear_the_used_up_budget() {
        let c = client();
        let headers = |pairs: &[(&'static str, &str)]| -> HeaderMap {
            pairs
                .iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect()
        };
        let until = || *c.exhausted_until.lock().unwrap();
        c.note_budget(&headers(&[("ratelimit", "\"default\";r=0;t=30")]));
        let left = until().unwrap().saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        // An answer without rate-limit headers says nothing new.
        c.note_budget(&HeaderMap::new());
        assert!(until().is_some());
        c.note_budget(&headers(&[("ratelimit-remaining", "4999")]));
        assert_eq!(until(), None);
    }
}
