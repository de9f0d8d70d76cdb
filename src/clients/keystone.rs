//! Keystone v3 tokens for OpenStack APIs (<https://docs.openstack.org/api-ref/identity/v3/>):
//! `POST {auth_url}/auth/tokens` with an application credential or a user's password
//! scoped to a project; the token comes back in `X-Subject-Token`, the service catalog in
//! the body. [`Keystone`] keeps the token until shortly before its `expires_at`.
//!
//! Where the credentials come from is the caller's affair (config keys, `clouds.yaml`, the
//! `OS_*` environment); here they are a [`KeystoneAuth`]. Secrets are never shown: the
//! password and application credential secret are [`Secret`]s, the token a [`Token`], and
//! an error quoting Keystone's answer has them replaced.

use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{ApiClient, Call, api_url};
use super::oauth::REFRESH_MARGIN;
use super::token::Token;

/// A password or an application credential secret. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The project a password token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    Id(String),
    Name { name: String, domain: String },
}

/// How Keystone is asked for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// An application credential: scoped to its project already.
    ApplicationCredential { id: String, secret: Secret },
    Password {
        username: String,
        user_domain: String,
        password: Secret,
        project: Project,
    },
}

/// Everything a token request and the endpoint choice need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneAuth {
    /// The identity API's v3 root, e.g. `https://keystone.example:5000/v3`.
    pub auth_url: Url,
    pub method: Method,
    /// The catalog region whose endpoints are used; `None`: the only one.
    pub region: Option<String>,
    /// `public` (the default), `internal` or `admin`.
    pub interface: String,
}

/// `https://k:5000` → `https://k:5000/v3`; a URL already ending in `/v3` stays.
pub fn v3_root(url: &Url) -> Url {
    let path = url.path().trim_end_matches('/');
    if path.ends_with("/v3") {
        let mut url = url.clone();
        url.set_path(path);
        url
    } else {
        api_url(url, &["v3"])
    }
}

/// The body of `POST /v3/auth/tokens`. Pure.
pub fn token_body(method: &Method) -> serde_json::Value {
    match method {
        Method::ApplicationCredential { id, secret } => json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret.0}
        }}}),
        Method::Password {
            username,
            user_domain,
            password,
            project,
        } => {
            let project = match project {
                Project::Id(id) => json!({"id": id}),
                Project::Name { name, domain } => json!({"name": name, "domain": {"name": domain}}),
            };
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": username, "domain": {"name": user_domain}, "password": password.0
                }}},
                "scope": {"project": project}
            }})
        }
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: TokenInfo,
}

#[derive(Debug, Deserialize)]
struct TokenInfo {
    expires_at: String,
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

/// The `service` endpoint of the catalog for `region` and `interface`. Pure. Without a
/// region, the endpoints must all be in one region: choosing among several is the
/// config's to say.
fn endpoint(
    catalog: &[Service],
    service: &str,
    region: Option<&str>,
    interface: &str,
) -> Result<Url, String> {
    let Some(entry) = catalog.iter().find(|s| s.kind == service) else {
        return Err(format!(
            "the service catalog has no {service} service; the project may not use it"
        ));
    };
    let region_of = |e: &Endpoint| e.region_id.clone().or_else(|| e.region.clone());
    let fits: Vec<&Endpoint> = entry
        .endpoints
        .iter()
        .filter(|e| e.interface == interface)
        .filter(|e| region.is_none_or(|r| region_of(e).as_deref() == Some(r)))
        .collect();
    let mut regions: Vec<String> = fits.iter().filter_map(|e| region_of(e)).collect();
    regions.sort();
    regions.dedup();
    match fits.as_slice() {
        [] => {
            let mut all: Vec<String> = entry.endpoints.iter().filter_map(region_of).collect();
            all.sort();
            all.dedup();
            Err(format!(
                "the service catalog has no {interface} {service} endpoint{}; regions with one: {}",
                region
                    .map(|r| format!(" in region {r}"))
                    .unwrap_or_default(),
                if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                }
            ))
        }
        [first, ..] if regions.len() <= 1 => Url::parse(&first.url).map_err(|e| {
            format!(
                "the catalog's {service} endpoint {:?} is not a URL: {e}",
                first.url
            )
        }),
        _ => Err(format!(
            "the service catalog has {service} endpoints in several regions ({}); set region",
            regions.join(", ")
        )),
    }
}

/// A token and the endpoint it was issued for.
#[derive(Clone)]
struct Session {
    token: Token,
    endpoint: Url,
    expires: Instant,
}

/// One credential's tokens, for one service of the catalog.
pub struct Keystone {
    auth: KeystoneAuth,
    service: &'static str,
    client: ApiClient,
    current: Mutex<Option<Session>>,
}

/// What a refused token request needs.
const NEEDS: &str =
    "Keystone must accept the application credential, or the user's password and its project scope";

impl Keystone {
    /// `client` sends the token requests and carries no token itself
    /// ([`ApiClient::without_token`]); `service` is the catalog type used (`compute`).
    pub fn new(auth: KeystoneAuth, service: &'static str, client: ApiClient) -> Keystone {
        Keystone {
            auth,
            service,
            client,
            current: Mutex::new(None),
        }
    }

    pub fn auth(&self) -> &KeystoneAuth {
        &self.auth
    }

    /// A token valid for at least [`REFRESH_MARGIN`] more, and the service's endpoint.
    pub async fn session(&self) -> anyhow::Result<(Token, Url)> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref()
            && s.expires.saturating_duration_since(Instant::now()) > REFRESH_MARGIN
        {
            return Ok((s.token.clone(), s.endpoint.clone()));
        }
        let fresh = self.fetch().await?;
        let out = (fresh.token.clone(), fresh.endpoint.clone());
        *current = Some(fresh);
        Ok(out)
    }

    fn hide(&self, text: String) -> String {
        match &self.auth.method {
            Method::ApplicationCredential { secret, .. } if !secret.0.is_empty() => {
                text.replace(&secret.0, "<redacted>")
            }
            Method::Password { password, .. } if !password.0.is_empty() => {
                text.replace(&password.0, "<redacted>")
            }
            _ => text,
        }
    }

    async fn fetch(&self) -> anyhow::Result<Session> {
        let url = api_url(&self.auth.auth_url, &["auth", "tokens"]);
        let who = match &self.auth.method {
            Method::ApplicationCredential { id, .. } => format!("application credential {id}"),
            Method::Password { username, .. } => format!("user {username}"),
        };
        // Asking for a token changes nothing: it may be sent again after a 5xx.
        let call = Call::new(format!("token for {who}"), NEEDS).repeatable();
        let (answer, token): (TokenAnswer, _) = self
            .client
            .post_json_with_header(
                &url,
                &token_body(&self.auth.method),
                &call,
                "x-subject-token",
            )
            .await
            .map_err(|e| anyhow!(self.hide(format!("{e:#}"))))?;
        let token = token
            .ok_or_else(|| {
                anyhow!(
                    "{}: Keystone answered the token request without X-Subject-Token",
                    self.client_owner()
                )
            })
            .and_then(|t| {
                Token::new(t).map_err(|e| anyhow!("{}: Keystone's token: {e}", self.client_owner()))
            })?;
        let endpoint = endpoint(
            &answer.token.catalog,
            self.service,
            self.auth.region.as_deref(),
            &self.auth.interface,
        )
        .map_err(|e| anyhow!("{}: {e}", self.client_owner()))?;
        let left = OffsetDateTime::parse(&answer.token.expires_at, &Rfc3339)
            .ok()
            .and_then(|at| SystemTime::from(at).duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::ZERO);
        Ok(Session {
            token,
            endpoint,
            expires: Instant::now() + left,
        })
    }

    fn client_owner(&self) -> String {
        format!("{} (Keystone {})", self.client.owner(), self.auth.auth_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bodies_are_keystone_s() {
        let app = token_body(&Method::ApplicationCredential {
            id: "423f19a4ac1e4f48bbb4180756e6eb6c".into(),
            secret: Secret::new("rEaqvJka48mpv"),
        });
        assert_eq!(
            app["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        assert_eq!(
            app["auth"]["identity"]["application_credential"]["secret"],
            "rEaqvJka48mpv"
        );
        assert!(app["auth"].get("scope").is_none(), "scoped already");
        let password = token_body(&Method::Password {
            username: "ipdrift".into(),
            user_domain: "Default".into(),
            password: Secret::new("hunter2"),
            project: Project::Name {
                name: "web".into(),
                domain: "Default".into(),
            },
        });
        assert_eq!(
            password["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(password["auth"]["scope"]["project"]["name"], "web");
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }

    #[test]
    fn the_endpoint_is_chosen_by_region_and_interface() {
        let catalog: Vec<Service> = serde_json::from_value(json!([
            {"type": "identity", "endpoints": []},
            {"type": "compute", "name": "nova", "endpoints": [
                {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "https://nova.one:8774/v2.1"},
                {"interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": "http://10.0.0.1:8774/v2.1"},
                {"interface": "public", "region": "RegionTwo", "region_id": "RegionTwo", "url": "https://nova.two:8774/v2.1"}
            ]}
        ]))
        .unwrap();
        assert_eq!(
            endpoint(&catalog, "compute", Some("RegionTwo"), "public")
                .unwrap()
                .as_str(),
            "https://nova.two:8774/v2.1"
        );
        let e = endpoint(&catalog, "compute", None, "public").unwrap_err();
        assert!(
            e.contains("several regions") && e.contains("set region"),
            "{e}"
        );
        let e = endpoint(&catalog, "compute", Some("RegionThree"), "public").unwrap_err();
        assert!(e.contains("RegionOne, RegionTwo"), "{e}");
        assert!(endpoint(&catalog, "network", None, "public").is_err());
    }

    #[test]
    fn auth_urls_get_their_v3_root() {
        for (given, want) in [
            ("https://k.example:5000", "https://k.example:5000/v3"),
            ("https://k.example:5000/", "https://k.example:5000/v3"),
            (
                "https://k.example/identity/v3/",
                "https://k.example/identity/v3",
            ),
            (
                "https://k.example/identity",
                "https://k.example/identity/v3",
            ),
        ] {
            assert_eq!(v3_root(&Url::parse(given).unwrap()).as_str(), want);
        }
    }
}
