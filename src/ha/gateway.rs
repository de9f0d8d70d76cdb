//! etcd's v3 API through its HTTP/JSON gateway (served on every etcd client URL since 3.3;
//! `/v3/…`): what the election needs, spoken with the reqwest client already in the tree,
//! so building ipdrift needs no protoc. JSON follows the gRPC-gateway mapping etcd uses:
//! proto field names, 64-bit integers as strings, bytes as base64, zero values left out.
//! [`request`] and [`parse`] are pure; [`Gateway`] is the I/O.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::config::EtcdSecrets;

/// Why a call failed: etcd's own error (`code` is the gRPC status code) or no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("etcd answered: {message} (code {code})")]
    Etcd { code: i64, message: String },
    #[error("{0}")]
    Unreachable(String),
}

impl GatewayError {
    /// The lease is gone (expired or revoked): etcd's `requested lease not found`.
    pub fn lease_not_found(&self) -> bool {
        matches!(self, GatewayError::Etcd { message, .. } if message.contains("lease not found"))
    }

    /// The auth token expired or was never valid: authenticate again.
    fn bad_token(&self) -> bool {
        matches!(self, GatewayError::Etcd { code: 16, .. })
            || matches!(self, GatewayError::Etcd { message, .. } if message.contains("invalid auth token"))
    }
}

/// Request bodies.
pub mod request {
    use super::*;

    pub fn grant(ttl_seconds: u64) -> Value {
        json!({ "TTL": ttl_seconds.to_string() })
    }

    pub fn lease(id: i64) -> Value {
        json!({ "ID": id.to_string() })
    }

    pub fn campaign(election: &str, lease: i64, value: &str) -> Value {
        json!({
            "name": BASE64.encode(election),
            "lease": lease.to_string(),
            "value": BASE64.encode(value),
        })
    }

    pub fn leader(election: &str) -> Value {
        json!({ "name": BASE64.encode(election) })
    }

    pub fn authenticate(user: &str, password: &str) -> Value {
        json!({ "name": user, "password": password })
    }
}

/// Answers.
pub mod parse {
    use super::*;

    /// A 64-bit integer as the gateway writes it (a string), or a plain number; absent is 0.
    fn int(v: &Value) -> Result<i64, String> {
        match v {
            Value::Null => Ok(0),
            Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not an integer")),
            Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not an integer")),
            other => Err(format!("{other} is not an integer")),
        }
    }

    fn bytes(v: &Value) -> Result<Vec<u8>, String> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => BASE64.decode(s).map_err(|e| format!("not base64: {e}")),
            other => Err(format!("{other} is not base64 text")),
        }
    }

    /// An error body: `{"error": …, "code": …, "message": …}`.
    /// Streams wrap theirs in an object: `{"error": {"grpc_code": …, "message": …}}`.
    pub fn error(body: &Value) -> Option<GatewayError> {
        let body = match body.get("error") {
            Some(inner @ Value::Object(_)) => inner,
            _ => body,
        };
        let message = [body.get("message"), body.get("error")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|m| !m.is_empty())?;
        Some(GatewayError::Etcd {
            code: body
                .get("code")
                .or_else(|| body.get("grpc_code"))
                .and_then(Value::as_i64)
                .unwrap_or(2),
            message: message.to_string(),
        })
    }

    /// A grant: the lease id and the TTL etcd granted, in seconds.
    pub fn grant(body: &Value) -> Result<(i64, i64), String> {
        if let Some(error) = body
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(error.to_string());
        }
        Ok((int(&body["ID"])?, int(&body["TTL"])?))
    }

    /// A keep-alive's answer (wrapped in `result` by the gateway, as a stream's messages are):
    /// the TTL left; 0 when the lease is gone.
    pub fn keep_alive(body: &Value) -> Result<i64, String> {
        let answer = body.get("result").unwrap_or(body);
        int(&answer["TTL"])
    }

    /// A campaign's answer: the key that won.
    pub fn campaign(body: &Value) -> Result<Vec<u8>, String> {
        bytes(&body["leader"]["key"])
    }

    /// A leader query: the leader's key and value, if there is a leader.
    pub fn leader(body: &Value) -> Result<Option<(Vec<u8>, String)>, String> {
        match body.get("kv") {
            None | Some(Value::Null) => Ok(None),
            Some(kv) => Ok(Some((
                bytes(&kv["key"])?,
                String::from_utf8_lossy(&bytes(&kv["value"])?).into_owned(),
            ))),
        }
    }

    pub fn token(body: &Value) -> Result<String, String> {
        body.get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| "no token in the answer".to_string())
    }
}

/// One etcd cluster, reached through the gateway of whichever endpoint answers.
pub struct Gateway {
    client: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    current: Mutex<usize>,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
}

impl Gateway {
    /// `connect_timeout` bounds each connection attempt; calls have no overall limit (a
    /// campaign waits until it wins): callers bound them.
    pub fn new(
        endpoints: &[String],
        secrets: &EtcdSecrets,
        connect_timeout: Duration,
    ) -> Result<Gateway, String> {
        crate::install_tls_provider();
        let mut headers = HeaderMap::new();
        // A member cut off from the cluster's majority fails requests at once instead of
        // leaving them hanging (gRPC metadata `hasleader`, passed through by the gateway).
        headers.insert("Grpc-Metadata-hasleader", HeaderValue::from_static("true"));
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ipdrift/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &secrets.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| format!("ha.ca_file: not a PEM certificate: {e}"))?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &secrets.identity_pem {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                "ha.cert_file and ha.key_file: not a PEM certificate and key".to_string()
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up the etcd client: {e}"))?;
        Ok(Gateway {
            client,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: Mutex::new(0),
            credentials: secrets.credentials.clone(),
            token: Mutex::new(None),
        })
    }

    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), GatewayError> {
        let body = self
            .call("/v3/lease/grant", request::grant(ttl.as_secs()))
            .await?;
        let (id, granted) = parse::grant(&body).map_err(malformed)?;
        Ok((id, Duration::from_secs(granted.max(0) as u64)))
    }

    /// `Some(ttl)` when renewed; `None` when the lease is gone.
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>, GatewayError> {
        let body = self
            .call("/v3/lease/keepalive", request::lease(lease))
            .await?;
        let ttl = parse::keep_alive(&body).map_err(malformed)?;
        Ok((ttl > 0).then(|| Duration::from_secs(ttl as u64)))
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), GatewayError> {
        self.call("/v3/lease/revoke", request::lease(lease))
            .await
            .map(drop)
    }

    /// Waits until this lease's key leads `election`; the winning key.
    pub async fn campaign(
        &self,
        election: &str,
        lease: i64,
        value: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        let body = self
            .call(
                "/v3/election/campaign",
                request::campaign(election, lease, value),
            )
            .await?;
        parse::campaign(&body).map_err(malformed)
    }

    /// The current leader's key and value; `None` when nobody leads.
    pub async fn leader(&self, election: &str) -> Result<Option<(Vec<u8>, String)>, GatewayError> {
        match self
            .call("/v3/election/leader", request::leader(election))
            .await
        {
            Ok(body) => parse::leader(&body).map_err(malformed),
            Err(GatewayError::Etcd { message, .. }) if message.contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One call, authenticated when `[ha]` has a user (again once if the token expired),
    /// on the endpoint that answered last, then the others.
    async fn call(&self, path: &str, body: Value) -> Result<Value, GatewayError> {
        match self.call_once(path, &body).await {
            Err(e) if e.bad_token() && self.credentials.is_some() => {
                *self.token.lock().expect("lock") = None;
                self.call_once(path, &body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, GatewayError> {
        let token = self.token().await?;
        self.post(path, body, token.as_deref()).await
    }

    async fn token(&self) -> Result<Option<String>, GatewayError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(None);
        };
        if let Some(token) = self.token.lock().expect("lock").clone() {
            return Ok(Some(token));
        }
        let body = self
            .post(
                "/v3/auth/authenticate",
                &request::authenticate(user, password),
                None,
            )
            .await
            .map_err(|e| match e {
                // etcd's message names the user at most, never the password.
                GatewayError::Etcd { code, message } => GatewayError::Etcd {
                    code,
                    message: format!("authenticating as {user:?}: {message}"),
                },
                other => other,
            })?;
        let token = parse::token(&body).map_err(malformed)?;
        *self.token.lock().expect("lock") = Some(token.clone());
        Ok(Some(token))
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let first = *self.current.lock().expect("lock");
        let mut failures = Vec::new();
        for n in 0..self.endpoints.len() {
            let index = (first + n) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let mut request = self.client.post(format!("{endpoint}{path}")).json(body);
            if let Some(token) = token {
                let mut value = HeaderValue::from_str(token).map_err(|_| {
                    GatewayError::Unreachable("etcd gave an auth token that cannot be sent".into())
                })?;
                value.set_sensitive(true);
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    failures.push(format!("{endpoint}: {}", crate::clients::chain(&e)));
                    continue;
                }
            };
            *self.current.lock().expect("lock") = index;
            let status = response.status();
            let text = response.text().await.map_err(|e| {
                GatewayError::Unreachable(format!("{endpoint}: reading the answer: {e}"))
            })?;
            // A stream's answer (keep-alive) may hold several lines; the first is the one.
            let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let value: Value = serde_json::from_str(first_line).map_err(|_| {
                GatewayError::Unreachable(format!(
                    "{endpoint}{path} answered HTTP {status} with something that is not etcd's JSON; is this etcd's client URL?"
                ))
            })?;
            if let Some(error) = parse::error(&value) {
                return Err(error);
            }
            if !status.is_success() {
                return Err(parse::error(&value).unwrap_or(GatewayError::Etcd {
                    code: 2,
                    message: format!("HTTP {status}"),
                }));
            }
            return Ok(value);
        }
        Err(GatewayError::Unreachable(format!(
            "cannot reach etcd: {}",
            failures.join("; ")
        )))
    }
}

fn malformed(why: String) -> GatewayError {
    GatewayError::Unreachable(format!("etcd's answer was not understood: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_shaped_as_the_gateway_reads_them() {
        assert_eq!(request::grant(10), json!({"TTL": "10"}));
        assert_eq!(request::lease(7587), json!({"ID": "7587"}));
        assert_eq!(
            request::campaign("ipdrift/prod", 42, "host-a"),
            json!({"name": "aXBkcmlmdC9wcm9k", "lease": "42", "value": "aG9zdC1h"})
        );
        assert_eq!(request::leader("e"), json!({"name": "ZQ=="}));
    }

    #[test]
    fn answers_are_read_with_strings_for_integers_and_zero_values_left_out() {
        let grant = json!({"header": {"revision": "5"}, "ID": "7587868474837481226", "TTL": "10"});
        assert_eq!(parse::grant(&grant), Ok((7_587_868_474_837_481_226, 10)));
        assert_eq!(
            parse::keep_alive(&json!({"result": {"ID": "1", "TTL": "9"}})),
            Ok(9)
        );
        assert_eq!(
            parse::keep_alive(&json!({"result": {"ID": "1"}})),
            Ok(0),
            "a lease that is gone"
        );
        assert_eq!(
            parse::campaign(
                &json!({"leader": {"name": "ZQ==", "key": "ZS83NTg3", "rev": "3", "lease": "1"}})
            ),
            Ok(b"e/7587".to_vec())
        );
        assert_eq!(
            parse::leader(&json!({"kv": {"key": "ZS83NTg3", "value": "aG9zdC1h"}})),
            Ok(Some((b"e/7587".to_vec(), "host-a".to_string())))
        );
        assert_eq!(parse::leader(&json!({"header": {}})), Ok(None));
        assert!(parse::grant(&json!({"ID": "x"})).is_err());
        assert_eq!(parse::token(&json!({"token": "abc.1"})), Ok("abc.1".into()));
    }

    #[test]
    fn etcd_errors_are_recognised() {
        let gone = parse::error(&json!({"error": "etcdserver: requested lease not found", "code": 5, "message": "etcdserver: requested lease not found"})).unwrap();
        assert!(gone.lease_not_found());
        let token =
            parse::error(&json!({"error": "etcdserver: invalid auth token", "code": 16})).unwrap();
        assert!(token.bad_token());
        assert!(parse::error(&json!({"ID": "1"})).is_none());
        assert!(parse::error(&json!({"ID": "1", "error": ""})).is_none());
        let streamed = parse::error(&json!({"error": {"grpc_code": 5, "http_code": 404, "message": "etcdserver: requested lease not found"}})).unwrap();
        assert!(streamed.lease_not_found());
    }
}
