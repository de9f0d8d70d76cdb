//! OAuth access tokens for the clouds whose API tokens expire (Google, Azure): what the
//! credential modules (`gcp.rs`, `azure.rs`) share.
//!
//! Each credential module has a pure builder that says which request fetches a token
//! ([`TokenRequest`]); [`TokenCache`] sends it through an [`ApiClient`] without a token of
//! its own (so 429/5xx are retried, `Retry-After` honoured, errors worded as for every
//! API call) and keeps the answer until shortly before it expires. Tokens, client secrets
//! and signed assertions are never logged or shown: the access token is a [`Token`], and
//! an error quoting the endpoint's answer has the secrets of the request replaced.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use reqwest::header::HeaderName;
use serde::{Deserialize, Deserializer};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{ApiClient, Call};
use super::token::Token;

/// A token is fetched anew when it has less than this left, so that it never expires
/// during a pass.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a token endpoint is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBody {
    /// `GET` (metadata servers).
    Get,
    /// `POST` of these form fields (OAuth token endpoints).
    Form(Vec<(String, String)>),
}

/// One token request, as a credential's pure builder makes it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub url: Url,
    pub body: TokenBody,
    /// Headers the endpoint requires (`Metadata-Flavor: Google`, `Metadata: true`).
    pub headers: Vec<(HeaderName, String)>,
    /// How errors name the request: `service-account token (key file sa.json)`.
    pub what: String,
    /// What a refused request is told it needs.
    pub needs: String,
    /// Values of the request that must never be shown (a client secret, an assertion).
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("url", &self.url.as_str())
            .field("what", &self.what)
            .field("form", &"<redacted>")
            .finish()
    }
}

/// An endpoint's answer: RFC 6749 §5.1 (`expires_in` a number), or Azure IMDS and App
/// Service (`expires_in` a string).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    match Seconds::deserialize(d)? {
        Seconds::Number(n) => Ok(n),
        Seconds::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("expires_in is not a number of seconds")),
    }
}

/// An access token and when it stops working.
#[derive(Clone)]
struct Cached {
    token: Token,
    expires: Instant,
}

/// The token of one credential: fetched on first use, then kept until
/// [`REFRESH_MARGIN`] before it expires.
pub struct TokenCache {
    endpoint: ApiClient,
    current: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// `endpoint` sends the token requests; it must carry no token itself
    /// ([`ApiClient::without_token`]).
    pub fn new(endpoint: ApiClient) -> TokenCache {
        TokenCache {
            endpoint,
            current: Mutex::new(None),
        }
    }

    /// A token valid for at least [`REFRESH_MARGIN`] more, fetching one with `request()`
    /// when the one kept is older. `request` may fail (a key that cannot be read).
    pub async fn token(
        &self,
        request: impl FnOnce() -> anyhow::Result<TokenRequest>,
    ) -> anyhow::Result<Token> {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && cached.expires.saturating_duration_since(Instant::now()) > REFRESH_MARGIN
        {
            return Ok(cached.token.clone());
        }
        let request = request()?;
        let fetched = self.fetch(&request).await?;
        let token = fetched.token.clone();
        *current = Some(fetched);
        Ok(token)
    }

    async fn fetch(&self, request: &TokenRequest) -> anyhow::Result<Cached> {
        let hide = |text: String| {
            request
                .secrets
                .iter()
                .filter(|s| !s.is_empty())
                .fold(text, |text, secret| {
                    text.replace(secret.as_str(), "<redacted>")
                })
        };
        let mut call = Call::new(request.what.clone(), &request.needs).repeatable();
        for (name, value) in &request.headers {
            call = call.header(name.clone(), value);
        }
        let started = Instant::now();
        let answer: TokenAnswer = match &request.body {
            TokenBody::Get => self.endpoint.get_json(&request.url, &call).await,
            TokenBody::Form(fields) => {
                let form: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.endpoint.post_form(&request.url, &form, &call).await
            }
        }
        .map_err(|e| anyhow!(hide(format!("{e:#}"))))?;
        let token = Token::new(answer.access_token).map_err(|e| {
            anyhow!(
                "{}: {} ({}): the answer holds no usable access token: {e}",
                self.endpoint.owner(),
                request.what,
                request.url
            )
        })?;
        // Counted from when the request was sent, so that a slow answer errs early.
        let expires = started + Duration::from_secs(answer.expires_in);
        Ok(Cached { token, expires })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_a_number_or_a_string() {
        let a: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(a.expires_in, 3599);
        let b: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"eyJ0","expires_in":"86399","expires_on":"1506484173","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(b.expires_in, 86399);
        assert!(
            serde_json::from_str::<TokenAnswer>(r#"{"access_token":"x","expires_in":"soon"}"#)
                .is_err()
        );
    }

    #[test]
    fn a_token_request_shows_no_form() {
        let request = TokenRequest {
            url: Url::parse("https://oauth2.googleapis.com/token").unwrap(),
            body: TokenBody::Form(vec![("assertion".into(), "eyJhbGciOi.secret".into())]),
            headers: vec![],
            what: "token".into(),
            needs: String::new(),
            secrets: vec!["eyJhbGciOi.secret".into()],
        };
        assert!(!format!("{request:?}").contains("secret"));
    }
}
