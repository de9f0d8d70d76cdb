//! Google Cloud credentials, shared by the `gcp` source and the `gcp_dns` target: the
//! application-default chain, decided when the kind is built.
//!
//! 1. `credentials_file`, else the file `GOOGLE_APPLICATION_CREDENTIALS` names: a
//!    service-account JSON key. An RS256 JWT (RFC 7523 §2.1) signed with its private key
//!    is exchanged at the key's `token_uri` for an access token
//!    (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).
//! 2. Otherwise the metadata server of the VM or GKE pod ipdrift runs on:
//!    `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`
//!    with `Metadata-Flavor: Google`. Its host is `metadata_host`, else the
//!    `GCE_METADATA_HOST` variable the Google client libraries read.
//!
//! The builders ([`key_token_request`], [`metadata_token_request`]) are pure; the token is
//! kept until shortly before it expires ([`TokenCache`]). Nothing of the key, the assertion
//! or the token is ever shown; a key pasted into `credentials_file` is refused unseen.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use reqwest::header::HeaderName;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use toml::Spanned;

use super::http::{ApiClient, HttpOptions};
use super::oauth::{TokenBody, TokenCache, TokenRequest};
use crate::config::secret_keys::{SecretKeys, SecretRef, shown};
use crate::config::{Fragment, SecretAt};

/// The OAuth scope asked for: Compute Engine and Cloud DNS both accept it.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Where a key without `token_uri` exchanges its assertion.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The variable the Google libraries read for another metadata host.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// The variable naming a key file in the application-default chain.
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// What a refused API call is told to check (after `check`).
pub const CHECK: &str = "credentials_file, or the service account of the VM ipdrift runs on";
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;

const KEY_FILE: SecretKeys<'static> = SecretKeys {
    file_key: "credentials_file",
    env_key: "credentials_env",
    missing_key: "credentials_file",
    needs: "",
    at_parse: true,
};

/// Where a Google kind's credentials come from, as config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpAuth {
    /// `credentials_file`: a service-account JSON key.
    pub key_file: Option<SecretAt>,
    /// `metadata_host`: `host[:port]` of the metadata server.
    pub metadata_host: Option<String>,
}

impl GcpAuth {
    pub fn secrets(&self) -> Vec<SecretAt> {
        self.key_file.iter().cloned().collect()
    }
}

/// Checks `credentials_file` and `metadata_host` of a Google kind's table.
pub fn check_auth(
    f: &mut Fragment<'_, '_>,
    key_file: Option<&Spanned<String>>,
    metadata_host: Option<&Spanned<String>>,
) -> Option<GcpAuth> {
    let mut ok = true;
    let key_file = match key_file {
        None => None,
        Some(path) if looks_like_a_key(path.get_ref()) => {
            f.error_at(
                path,
                "credentials_file",
                "must be the path of the service-account JSON key file; the value given looks like the key itself and is not shown — save it in a file and name that",
            );
            ok = false;
            None
        }
        Some(path) => {
            let secret = f.secret(&KEY_FILE, Some(path), None);
            ok &= secret.is_some();
            secret
        }
    };
    let metadata_host = metadata_host.and_then(|host| match check_metadata_host(host.get_ref()) {
        Ok(()) => Some(host.get_ref().trim().to_string()),
        Err(message) => {
            f.error_at(host, "metadata_host", message);
            ok = false;
            None
        }
    });
    ok.then_some(GcpAuth {
        key_file,
        metadata_host,
    })
}

/// Whether a value given for a path is rather a key (JSON or PEM) pasted in.
fn looks_like_a_key(text: &str) -> bool {
    text.contains('{') || text.contains('\n') || text.contains("PRIVATE KEY")
}

/// `host` or `host:port`, as `GCE_METADATA_HOST` takes it.
fn check_metadata_host(text: &str) -> Result<(), String> {
    let text = text.trim();
    match Url::parse(&format!("http://{text}/")) {
        Ok(url)
            if !text.is_empty()
                && url.path() == "/"
                && url.host_str().is_some()
                && !text.contains(['/', '@', '?', '#']) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{:?} is not a host or host:port, e.g. \"metadata.google.internal\" or \"127.0.0.1:8080\"",
            shown(text)
        )),
    }
}

/// The fields of a service-account JSON key that ipdrift uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A service-account key, ready to sign.
pub struct ServiceAccountKey {
    pub client_email: String,
    key_id: Option<String>,
    pub token_uri: Url,
    key_pair: RsaKeyPair,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a JSON key file's text. Errors never quote the text.
    pub fn parse(text: &str) -> Result<ServiceAccountKey, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a service-account JSON key (line {} column {}; contents not shown); download one with `gcloud iam service-accounts keys create`",
                e.line(),
                e.column()
            )
        })?;
        if file.kind != "service_account" {
            return Err(format!(
                "the key's type is {:?}, not \"service_account\"; ipdrift takes service-account keys (user credentials from `gcloud auth` are not supported)",
                file.kind
            ));
        }
        let token_uri =
            crate::validate::api_endpoint(file.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI))
                .map_err(|e| format!("token_uri: {e}"))?;
        let der = pem_body(&file.private_key, "PRIVATE KEY")
            .ok_or("private_key is not a PEM \"PRIVATE KEY\" (PKCS #8) block (not shown)")?;
        let key_pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not an RSA PKCS #8 key ({e}; not shown)"))?;
        Ok(ServiceAccountKey {
            client_email: file.client_email,
            key_id: file.private_key_id.filter(|id| !id.is_empty()),
            token_uri,
            key_pair,
        })
    }

    /// The signed JWT that asks for a token with `scope`, issued at `now` (Unix seconds):
    /// RFC 7515 compact form, RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
    pub fn assertion(&self, scope: &str, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = serde_json::json!(kid);
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the token request failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The DER inside the key, for tests that check a signature.
    pub fn public_key(&self) -> Vec<u8> {
        self.key_pair.public().as_ref().to_vec()
    }
}

/// The base64 body of the first PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let text: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(text).ok()
}

/// The token request of a key (pure but for the signature's random source).
pub fn key_token_request(
    key: &ServiceAccountKey,
    shown_path: &str,
    now: u64,
) -> Result<TokenRequest, String> {
    let assertion = key.assertion(SCOPE, now)?;
    Ok(TokenRequest {
        url: key.token_uri.clone(),
        body: TokenBody::Form(vec![
            (
                "grant_type".into(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
            ),
            ("assertion".into(), assertion.clone()),
        ]),
        headers: Vec::new(),
        what: format!(
            "access token for {} (key file {shown_path})",
            key.client_email
        ),
        needs: "the key must belong to an enabled service account and not be deleted".into(),
        secrets: vec![assertion],
    })
}

/// The metadata server's token request, for the VM's default service account.
pub fn metadata_token_request(host: &str) -> Result<TokenRequest, String> {
    let url = Url::parse(&format!(
        "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
    ))
    .map_err(|e| format!("metadata host {host:?}: {e}"))?;
    Ok(TokenRequest {
        url,
        body: TokenBody::Get,
        headers: vec![(HeaderName::from_static("metadata-flavor"), "Google".into())],
        what: "access token from the metadata server".into(),
        needs: "ipdrift must run on a Google Cloud VM or GKE pod with a service account; elsewhere set credentials_file".into(),
        secrets: Vec::new(),
    })
}

/// Where tokens come from, decided when the kind is built.
enum Source {
    Key {
        key: Arc<ServiceAccountKey>,
        shown: String,
    },
    Metadata {
        host: String,
    },
}

/// The credentials of one Google kind: they put a fresh token on its API client.
pub struct GcpCredentials {
    source: Source,
    cache: TokenCache,
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Key { key, .. } => format!("key of {}", key.client_email),
            Source::Metadata { host } => format!("metadata server {host}"),
        };
        f.debug_struct("GcpCredentials")
            .field("source", &source)
            .finish()
    }
}

impl GcpCredentials {
    /// Reads the key file (config's, else `GOOGLE_APPLICATION_CREDENTIALS`), or settles on
    /// the metadata server. `owner` starts errors (`inventory "gce"`).
    pub fn new(
        auth: &GcpAuth,
        owner: &str,
        options: HttpOptions,
    ) -> anyhow::Result<GcpCredentials> {
        let from_env = std::env::var_os(CREDENTIALS_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let key_path = match (&auth.key_file, from_env) {
            (
                Some(SecretAt {
                    secret: SecretRef::File(path),
                    ..
                }),
                _,
            ) => Some((path.clone(), "credentials_file")),
            (_, Some(path)) => Some((path, CREDENTIALS_ENV)),
            _ => None,
        };
        let source = match key_path {
            Some((path, key)) => {
                let shown_path = shown(&path.to_string_lossy());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    anyhow!("{owner}.{key}: cannot read {shown_path}: {e}; it must hold a service-account JSON key")
                })?;
                let key_pair = ServiceAccountKey::parse(&text)
                    .map_err(|e| anyhow!("{owner}.{key}: {shown_path}: {e}"))?;
                Source::Key {
                    key: Arc::new(key_pair),
                    shown: shown_path,
                }
            }
            None => {
                let host = auth
                    .metadata_host
                    .clone()
                    .or_else(|| {
                        std::env::var(METADATA_HOST_ENV)
                            .ok()
                            .filter(|h| check_metadata_host(h).is_ok())
                    })
                    .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
                Source::Metadata { host }
            }
        };
        let provider = match source {
            Source::Key { .. } => "Google OAuth",
            Source::Metadata { .. } => "Google metadata server",
        };
        let endpoint = ApiClient::without_token(provider, owner.to_string(), options)?;
        Ok(GcpCredentials {
            source,
            cache: TokenCache::new(endpoint),
        })
    }

    /// Puts a token valid for a while yet on `api`.
    pub async fn authorize(&self, api: &ApiClient) -> anyhow::Result<()> {
        let token = self
            .cache
            .token(|| {
                match &self.source {
                    Source::Key { key, shown } => key_token_request(key, shown, unix_now()),
                    Source::Metadata { host } => metadata_token_request(host),
                }
                .map_err(anyhow::Error::msg)
            })
            .await?;
        api.set_token(token)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/gcp-service-account.json");

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        let text = jwt.split('.').nth(n).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    }

    #[test]
    fn a_key_signs_an_rs256_assertion_for_its_token_uri() {
        let key = ServiceAccountKey::parse(KEY).unwrap();
        assert_eq!(
            key.client_email,
            "ipdrift@ipdrift-test.iam.gserviceaccount.com"
        );
        let jwt = key.assertion(SCOPE, 1_800_000_000).unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "3f1c0a9e8b7d6c5a4f3e2d1c0b9a8f7e6d5c4b3a");
        let claims = part(&jwt, 1);
        assert_eq!(
            claims["iss"],
            "ipdrift@ipdrift-test.iam.gserviceaccount.com"
        );
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"], 1_800_003_600u64);
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public_key(),
        );
        public
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("the signature verifies with the key's public half");
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn the_token_request_posts_the_jwt_bearer_grant() {
        let key = ServiceAccountKey::parse(KEY).unwrap();
        let request = key_token_request(&key, "sa.json", 1_800_000_000).unwrap();
        assert_eq!(request.url.as_str(), "https://oauth2.googleapis.com/token");
        let TokenBody::Form(form) = &request.body else {
            panic!("a form")
        };
        assert_eq!(form[0].1, "urn:ietf:params:oauth:grant-type:jwt-bearer");
        assert_eq!(request.secrets, vec![form[1].1.clone()]);
        let metadata = metadata_token_request("127.0.0.1:8080").unwrap();
        assert_eq!(
            metadata.url.as_str(),
            "http://127.0.0.1:8080/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(metadata.headers[0].1, "Google");
    }

    #[test]
    fn broken_keys_are_refused_without_showing_them() {
        let e = ServiceAccountKey::parse("{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIE")
            .unwrap_err();
        assert!(!e.contains("MIIE"), "{e}");
        let user = r#"{"type":"authorized_user","client_email":"x","private_key":"y"}"#;
        assert!(
            ServiceAccountKey::parse(user)
                .unwrap_err()
                .contains("authorized_user")
        );
        let bad = KEY.replace("MIIE", "AAAA");
        let e = ServiceAccountKey::parse(&bad).unwrap_err();
        assert!(
            e.contains("not an RSA PKCS #8 key") && !e.contains("AAAA"),
            "{e}"
        );
        let elsewhere = KEY.replace(
            "https://oauth2.googleapis.com/token",
            "http://evil.example/token",
        );
        assert!(
            ServiceAccountKey::parse(&elsewhere)
                .unwrap_err()
                .contains("must use https")
        );
        assert!(looks_like_a_key(KEY));
        assert!(!looks_like_a_key("/etc/ipdrift/gcp-sa.json"));
    }

    #[test]
    fn metadata_hosts_are_host_and_port() {
        assert!(check_metadata_host("metadata.google.internal").is_ok());
        assert!(check_metadata_host("127.0.0.1:8080").is_ok());
        assert!(check_metadata_host("[::1]:8080").is_ok());
        assert!(check_metadata_host("http://x/").is_err());
        assert!(check_metadata_host("").is_err());
        assert!(check_metadata_host("a/b").is_err());
    }
}
