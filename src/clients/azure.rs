//! Azure credentials, shared by the `azure` source and the `azure_dns` target: the chain
//! the Azure SDKs' `DefaultAzureCredential` walks, decided when the kind is built.
//!
//! 1. A client secret: `client_secret_env`/`client_secret_file` with `tenant_id` and
//!    `client_id`, else (unless config names a federated token file) the variables
//!    `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`. `POST {authority}/{tenant}/oauth2/v2.0/token` with the
//!    client-credentials grant (Microsoft identity platform, RFC 6749 §4.4).
//! 2. Workload identity (AKS, or any federation): the token file `federated_token_file`
//!    names, else `AZURE_FEDERATED_TOKEN_FILE`, sent to the same endpoint as a
//!    `client_assertion` (RFC 7523 §2.2). The file is read for every token, since the
//!    kubelet rotates it. Tenant and client from config, else `AZURE_TENANT_ID` and
//!    `AZURE_CLIENT_ID`, as the workload-identity webhook injects them.
//! 3. Otherwise the managed identity of the VM ipdrift runs on: IMDS,
//!    `GET http://169.254.169.254/metadata/identity/oauth2/token` with `Metadata: true`
//!    (`identity_endpoint` replaces the URL); `client_id` (or `AZURE_CLIENT_ID`) picks a
//!    user-assigned identity.
//!
//! The authority is `authority`, else `AZURE_AUTHORITY_HOST`, else
//! `https://login.microsoftonline.com`. Tokens are asked for Azure Resource Manager
//! ([`ARM_RESOURCE`]). The builders ([`client_secret_request`], [`assertion_request`],
//! [`managed_identity_request`]) are pure; the token is kept until shortly before it
//! expires ([`TokenCache`]). The client secret, the assertion and the token are never shown.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::anyhow;
use reqwest::Url;
use reqwest::header::HeaderName;
use toml::Spanned;

use super::http::{ApiClient, HttpOptions};
use super::oauth::{TokenBody, TokenCache, TokenRequest};
use super::token::Token;
use crate::config::secret_keys::{SecretKeys, SecretRef, shown};
use crate::config::{Fragment, SecretAt};

/// Resource Manager unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The resource (audience) tokens are asked for: Azure Resource Manager, which serves both
/// the Compute/Network APIs and Azure DNS.
pub const ARM_RESOURCE: &str = "https://management.azure.com/";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const DEFAULT_IDENTITY_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// The IMDS identity API version the Azure documentation uses.
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// What a refused API call is told to check.
pub const CHECK: &str = "tenant_id/client_id/client_secret_env (or client_secret_file), federated_token_file, or the VM's managed identity";

const CLIENT_SECRET_ENV: &str = "AZURE_CLIENT_SECRET";
const TENANT_ENV: &str = "AZURE_TENANT_ID";
const CLIENT_ENV: &str = "AZURE_CLIENT_ID";
const FEDERATED_TOKEN_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
const AUTHORITY_ENV: &str = "AZURE_AUTHORITY_HOST";

const SECRET_KEYS: SecretKeys<'static> = SecretKeys {
    file_key: "client_secret_file",
    env_key: "client_secret_env",
    missing_key: "client_secret_env",
    needs: "",
    at_parse: true,
};

/// Where an Azure kind's credentials come from, as config says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureAuth {
    /// `tenant_id`: the directory (tenant) id or a verified domain.
    pub tenant_id: Option<String>,
    /// `client_id`: the app registration's (or user-assigned identity's) client id.
    pub client_id: Option<String>,
    /// `client_secret_env` / `client_secret_file`.
    pub client_secret: Option<SecretAt>,
    /// `federated_token_file`: a workload-identity token file.
    pub federated_token_file: Option<PathBuf>,
    /// `authority`: the Microsoft identity platform's host.
    pub authority: Option<Url>,
    /// `identity_endpoint`: IMDS's token URL.
    pub identity_endpoint: Option<Url>,
}

impl AzureAuth {
    pub fn secrets(&self) -> Vec<SecretAt> {
        self.client_secret.iter().cloned().collect()
    }
}

/// The credential keys of an Azure kind's table, as its serde struct read them.
#[derive(Default)]
pub struct AuthKeys<'r> {
    pub tenant_id: Option<&'r Spanned<String>>,
    pub client_id: Option<&'r Spanned<String>>,
    pub client_secret_env: Option<&'r Spanned<String>>,
    pub client_secret_file: Option<&'r Spanned<String>>,
    pub federated_token_file: Option<&'r Spanned<String>>,
    pub authority: Option<&'r Spanned<String>>,
    pub identity_endpoint: Option<&'r Spanned<String>>,
}

/// A GUID as Azure writes ids: 8-4-4-4-12 hex digits.
pub fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A tenant: its GUID, or a domain such as `contoso.onmicrosoft.com`.
fn is_tenant(text: &str) -> bool {
    is_guid(text)
        || (text.contains('.')
            && text.len() <= 253
            && text
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')))
}

/// IMDS's URL: https, or http to the link-local IMDS address or loopback (a test server,
/// the Arc agent's local endpoint).
fn check_identity_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| {
        format!("{text:?} is not a URL ({e}); write e.g. \"{DEFAULT_IDENTITY_ENDPOINT}\"")
    })?;
    let host: Option<IpAddr> = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse().ok());
    let local = host.is_some_and(|ip| ip.is_loopback() || ip == Ipv4Addr::new(169, 254, 169, 254))
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        _ => {
            return Err(format!(
                "{text:?} must be https, or http to 169.254.169.254 (IMDS) or loopback"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("the URL must hold no credentials or fragment".into());
    }
    Ok(url)
}

/// A resource group's name: 1–90 letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.`.
pub fn is_resource_group(text: &str) -> bool {
    (1..=90).contains(&text.len())
        && !text.ends_with('.')
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
}

/// `subscription_id` (required) and `resource_group` (required when `needs_group`).
pub fn check_scope(
    f: &mut Fragment<'_, '_>,
    subscription: Option<&Spanned<String>>,
    group: Option<&Spanned<String>>,
    needs_group: bool,
) -> (Option<String>, Option<Option<String>>) {
    let subscription = match subscription {
        None => {
            f.missing(
                "subscription_id",
                "needs `subscription_id = \"…\"` (a GUID: `az account show --query id`)",
            );
            None
        }
        Some(s) if !is_guid(s.get_ref().trim()) => {
            f.error_at(
                s,
                "subscription_id",
                format!(
                    "{:?} is not a subscription id (a GUID such as \"00000000-0000-0000-0000-000000000000\")",
                    s.get_ref()
                ),
            );
            None
        }
        Some(s) => Some(s.get_ref().trim().to_ascii_lowercase()),
    };
    let group = match group {
        None if needs_group => {
            f.missing(
                "resource_group",
                "needs `resource_group = \"…\"` (the resource group that holds the DNS zone)",
            );
            None
        }
        None => Some(None),
        Some(g) if !is_resource_group(g.get_ref()) => {
            f.error_at(
                g,
                "resource_group",
                format!(
                    "{:?} is not a resource group name (1–90 letters, digits, '_', '-', '.', '(', ')')",
                    g.get_ref()
                ),
            );
            None
        }
        Some(g) => Some(Some(g.get_ref().clone())),
    };
    (subscription, group)
}

/// Checks the credential keys of an Azure kind's table.
pub fn check_auth(f: &mut Fragment<'_, '_>, keys: &AuthKeys<'_>) -> Option<AzureAuth> {
    let mut ok = true;
    let mut id = |f: &mut Fragment<'_, '_>, value: Option<&Spanned<String>>, key: &str| {
        let value = value?;
        let text = value.get_ref().trim();
        let valid = if key == "tenant_id" {
            is_tenant(text)
        } else {
            is_guid(text)
        };
        if valid {
            Some(text.to_ascii_lowercase())
        } else {
            f.error_at(
                value,
                key,
                format!(
                    "{:?} is not a {}; the portal's app registration (or managed identity) overview shows it",
                    shown(text),
                    if key == "tenant_id" {
                        "tenant id (a GUID such as \"72f988bf-86f1-41af-91ab-2d7cd011db47\", or a domain such as \"contoso.onmicrosoft.com\")"
                    } else {
                        "client id (a GUID such as \"00000000-0000-0000-0000-000000000000\")"
                    }
                ),
            );
            ok = false;
            None
        }
    };
    let tenant_id = id(f, keys.tenant_id, "tenant_id");
    let client_id = id(f, keys.client_id, "client_id");
    let client_secret = if keys.client_secret_env.is_some() || keys.client_secret_file.is_some() {
        let secret = f.secret(
            &SECRET_KEYS,
            keys.client_secret_file,
            keys.client_secret_env,
        );
        ok &= secret.is_some();
        if keys.tenant_id.is_none() || keys.client_id.is_none() {
            f.missing(
                if keys.tenant_id.is_none() {
                    "tenant_id"
                } else {
                    "client_id"
                },
                "a client secret needs `tenant_id` and `client_id` (the app registration's directory and application ids)",
            );
            ok = false;
        }
        secret
    } else {
        None
    };
    let federated_token_file = keys.federated_token_file.and_then(|path| {
        let text = path.get_ref().trim();
        if text.is_empty() || text.contains('\n') || text.starts_with("eyJ") {
            f.error_at(
                path,
                "federated_token_file",
                "must be the path of the projected service-account token file (e.g. /var/run/secrets/azure/tokens/azure-identity-token); the value given is not one and is not shown",
            );
            ok = false;
            None
        } else {
            Some(f.checker.resolve_path(text))
        }
    });
    if client_secret.is_some() && federated_token_file.is_some() {
        f.error(
            f.key("federated_token_file"),
            "give a client secret or a federated token file, not both",
        );
        ok = false;
    }
    let authority = keys.authority.and_then(|text| {
        match crate::validate::api_endpoint(text.get_ref().trim()) {
            Ok(url) => Some(url),
            Err(message) => {
                f.error_at(text, "authority", message);
                ok = false;
                None
            }
        }
    });
    let identity_endpoint =
        keys.identity_endpoint
            .and_then(|text| match check_identity_endpoint(text.get_ref()) {
                Ok(url) => Some(url),
                Err(message) => {
                    f.error_at(text, "identity_endpoint", message);
                    ok = false;
                    None
                }
            });
    ok.then_some(AzureAuth {
        tenant_id,
        client_id,
        client_secret,
        federated_token_file,
        authority,
        identity_endpoint,
    })
}

/// `{authority}/{tenant}/oauth2/v2.0/token`.
fn token_url(authority: &Url, tenant: &str) -> Url {
    super::http::api_url(authority, &[tenant, "oauth2", "v2.0", "token"])
}

fn scope() -> String {
    format!("{ARM_RESOURCE}.default")
}

/// The client-credentials request with a client secret.
pub fn client_secret_request(
    authority: &Url,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> TokenRequest {
    TokenRequest {
        url: token_url(authority, tenant),
        body: TokenBody::Form(vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), client_id.into()),
            ("client_secret".into(), secret.into()),
            ("scope".into(), scope()),
        ]),
        headers: Vec::new(),
        what: format!("access token for client {client_id} (client secret)"),
        needs: "the app registration must exist in the tenant and the secret must not have expired"
            .into(),
        secrets: vec![secret.to_string()],
    }
}

/// The client-credentials request with a federated token as the client assertion.
pub fn assertion_request(
    authority: &Url,
    tenant: &str,
    client_id: &str,
    assertion: &str,
    shown_path: &str,
) -> TokenRequest {
    TokenRequest {
        url: token_url(authority, tenant),
        body: TokenBody::Form(vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), client_id.into()),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), assertion.into()),
            ("scope".into(), scope()),
        ]),
        headers: Vec::new(),
        what: format!("access token for client {client_id} (federated token {shown_path})"),
        needs: "the app registration or managed identity needs a federated credential for this service account's issuer and subject".into(),
        secrets: vec![assertion.to_string()],
    }
}

/// IMDS's token request, for the VM's system-assigned identity or the user-assigned one
/// `client_id` names.
pub fn managed_identity_request(endpoint: &Url, client_id: Option<&str>) -> TokenRequest {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("api-version", IMDS_API_VERSION);
        query.append_pair("resource", ARM_RESOURCE);
        if let Some(id) = client_id {
            query.append_pair("client_id", id);
        }
    }
    TokenRequest {
        url,
        body: TokenBody::Get,
        headers: vec![(HeaderName::from_static("metadata"), "true".into())],
        what: "access token from the managed identity (IMDS)".into(),
        needs: "ipdrift must run on an Azure VM (or scale set) with a managed identity; elsewhere set a client secret or a federated token file".into(),
        secrets: Vec::new(),
    }
}

/// Resource Manager's host, which `nextLink`s name whatever endpoint was asked.
const ARM_HOST: &str = "management.azure.com";

/// Where an ARM listing's `nextLink` leads, on the configured `endpoint`: a link to
/// Resource Manager's own host is moved onto the endpoint (a proxy, a test server), so the
/// token goes nowhere else; any other host is kept, and the paging guard refuses it.
pub fn next_link(endpoint: &Url, link: &str) -> Result<Url, String> {
    let url = Url::parse(link).map_err(|e| format!("nextLink {link:?} is not a URL ({e})"))?;
    if url.host_str() != Some(ARM_HOST) || endpoint.host_str() == Some(ARM_HOST) {
        return Ok(url);
    }
    let mut moved = endpoint.clone();
    let prefix = endpoint.path().trim_end_matches('/');
    moved.set_path(&format!("{prefix}{}", url.path()));
    moved.set_query(url.query());
    Ok(moved)
}

/// `endpoint` + `segments` + `?api-version=`.
pub fn arm_url(endpoint: &Url, segments: &[&str], api_version: &str) -> Url {
    let mut url = super::http::api_url(endpoint, segments);
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    url
}

/// Where tokens come from, decided when the kind is built.
enum Source {
    ClientSecret {
        authority: Url,
        tenant: String,
        client_id: String,
        secret: Token,
    },
    Workload {
        authority: Url,
        tenant: String,
        client_id: String,
        file: PathBuf,
    },
    ManagedIdentity {
        endpoint: Url,
        client_id: Option<String>,
    },
}

/// The credentials of one Azure kind: they put a fresh token on its API client.
pub struct AzureCredentials {
    source: Source,
    cache: TokenCache,
}

impl fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::ClientSecret { client_id, .. } => format!("client secret of {client_id}"),
            Source::Workload { client_id, .. } => format!("workload identity of {client_id}"),
            Source::ManagedIdentity { endpoint, .. } => format!("managed identity ({endpoint})"),
        };
        f.debug_struct("AzureCredentials")
            .field("source", &source)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The client secret from `client_secret_env` / `client_secret_file`; errors name the key
/// and never the secret.
fn load_secret(at: &SecretAt) -> Result<Token, String> {
    match &at.secret {
        SecretRef::Env(var) => {
            let value = std::env::var(var).map_err(|_| {
                format!("client_secret_env: environment variable {var} is not set; export the client secret in it")
            })?;
            Token::new(value).map_err(|e| format!("client_secret_env: {var}: {e}"))
        }
        SecretRef::File(path) => {
            let shown_path = shown(&path.display().to_string());
            let value = std::fs::read_to_string(path).map_err(|e| {
                format!("client_secret_file: cannot read {shown_path}: {e}; it must hold the client secret")
            })?;
            Token::new(value).map_err(|e| format!("client_secret_file: {shown_path}: {e}"))
        }
    }
}

impl AzureCredentials {
    /// Settles on a credential as the module doc says, reading a client secret now.
    /// `owner` starts errors (`inventory "vms"`).
    pub fn new(
        auth: &AzureAuth,
        owner: &str,
        options: HttpOptions,
    ) -> anyhow::Result<AzureCredentials> {
        let authority = match (&auth.authority, env(AUTHORITY_ENV)) {
            (Some(url), _) => url.clone(),
            (None, Some(text)) => crate::validate::api_endpoint(&text)
                .map_err(|e| anyhow!("{owner}: {AUTHORITY_ENV}: {e}"))?,
            (None, None) => Url::parse(DEFAULT_AUTHORITY).expect("a URL"),
        };
        let tenant = auth.tenant_id.clone().or_else(|| env(TENANT_ENV));
        let client_id = auth.client_id.clone().or_else(|| env(CLIENT_ENV));
        let needs_ids = |what: &str| {
            anyhow!(
                "{owner}: {what} needs a tenant and a client id: set tenant_id and client_id (or {TENANT_ENV} and {CLIENT_ENV})"
            )
        };
        let workload = |file: PathBuf| -> anyhow::Result<Source> {
            Ok(Source::Workload {
                authority: authority.clone(),
                tenant: tenant
                    .clone()
                    .ok_or_else(|| needs_ids("a federated token"))?,
                client_id: client_id
                    .clone()
                    .ok_or_else(|| needs_ids("a federated token"))?,
                file,
            })
        };
        // What config names comes before what the environment says.
        let source = if let Some(at) = &auth.client_secret {
            let secret = load_secret(at).map_err(|e| anyhow!("{owner}.{e}"))?;
            Source::ClientSecret {
                authority,
                tenant: tenant.ok_or_else(|| needs_ids("a client secret"))?,
                client_id: client_id.ok_or_else(|| needs_ids("a client secret"))?,
                secret,
            }
        } else if let Some(file) = auth.federated_token_file.clone() {
            workload(file)?
        } else if let Some(value) = env(CLIENT_SECRET_ENV) {
            let secret =
                Token::new(value).map_err(|e| anyhow!("{owner}: {CLIENT_SECRET_ENV}: {e}"))?;
            Source::ClientSecret {
                authority,
                tenant: tenant.ok_or_else(|| needs_ids(CLIENT_SECRET_ENV))?,
                client_id: client_id.ok_or_else(|| needs_ids(CLIENT_SECRET_ENV))?,
                secret,
            }
        } else if let Some(file) = env(FEDERATED_TOKEN_ENV) {
            workload(PathBuf::from(file))?
        } else {
            Source::ManagedIdentity {
                endpoint: auth
                    .identity_endpoint
                    .clone()
                    .unwrap_or_else(|| Url::parse(DEFAULT_IDENTITY_ENDPOINT).expect("a URL")),
                client_id,
            }
        };
        let provider = match source {
            Source::ManagedIdentity { .. } => "Azure IMDS",
            _ => "Microsoft identity platform",
        };
        let endpoint = ApiClient::without_token(provider, owner.to_string(), options)?;
        Ok(AzureCredentials {
            source,
            cache: TokenCache::new(endpoint),
        })
    }

    fn request(&self) -> anyhow::Result<TokenRequest> {
        Ok(match &self.source {
            Source::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => client_secret_request(authority, tenant, client_id, secret.expose()),
            Source::Workload {
                authority,
                tenant,
                client_id,
                file,
            } => {
                let shown_path = shown(&file.display().to_string());
                let text = std::fs::read_to_string(file).map_err(|e| {
                    anyhow!("federated token file {shown_path}: cannot read it: {e}; it must hold the projected service-account token")
                })?;
                let assertion = text.trim();
                if assertion.is_empty() {
                    return Err(anyhow!("federated token file {shown_path} is empty"));
                }
                assertion_request(authority, tenant, client_id, assertion, &shown_path)
            }
            Source::ManagedIdentity {
                endpoint,
                client_id,
            } => managed_identity_request(endpoint, client_id.as_deref()),
        })
    }

    /// Puts a token valid for a while yet on `api`.
    pub async fn authorize(&self, api: &ApiClient) -> anyhow::Result<()> {
        let token = self.cache.token(|| self.request()).await?;
        api.set_token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Xy8Q~abcDEF0123456789.ghiJKLmnoPQRstuVWxyz_-";

    #[test]
    fn a_client_secret_request_posts_the_client_credentials_grant() {
        let authority = Url::parse(DEFAULT_AUTHORITY).unwrap();
        let r = client_secret_request(
            &authority,
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "11111111-2222-3333-4444-555555555555",
            SECRET,
        );
        assert_eq!(
            r.url.as_str(),
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
        let TokenBody::Form(form) = &r.body else {
            panic!("a form")
        };
        let field = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("grant_type"), Some("client_credentials"));
        assert_eq!(
            field("scope"),
            Some("https://management.azure.com/.default")
        );
        assert_eq!(r.secrets, vec![SECRET.to_string()]);
        assert!(!format!("{r:?}").contains(SECRET));
        assert!(!r.what.contains(SECRET));
    }

    #[test]
    fn a_federated_token_is_the_client_assertion() {
        let authority = Url::parse("http://127.0.0.1:9/").unwrap();
        let r = assertion_request(
            &authority,
            "contoso.onmicrosoft.com",
            "c",
            "eyJhbGc.x.y",
            "t",
        );
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:9/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let TokenBody::Form(form) = &r.body else {
            panic!("a form")
        };
        assert!(form.contains(&(
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()
        )));
        assert!(form.contains(&("client_assertion".into(), "eyJhbGc.x.y".into())));
        assert_eq!(r.secrets, vec!["eyJhbGc.x.y".to_string()]);
    }

    #[test]
    fn imds_is_asked_with_the_metadata_header_for_resource_manager() {
        let endpoint = Url::parse(DEFAULT_IDENTITY_ENDPOINT).unwrap();
        let r = managed_identity_request(&endpoint, None);
        assert_eq!(
            r.url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
        );
        assert_eq!(r.body, TokenBody::Get);
        assert_eq!(r.headers[0].0.as_str(), "metadata");
        assert_eq!(r.headers[0].1, "true");
        let user = managed_identity_request(&endpoint, Some("abc"));
        assert!(user.url.as_str().ends_with("&client_id=abc"));
    }

    #[test]
    fn next_links_move_onto_the_configured_endpoint() {
        let arm = Url::parse("https://management.azure.com").unwrap();
        let link = "https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01&$skiptoken=abc";
        assert_eq!(next_link(&arm, link).unwrap().as_str(), link);
        let local = Url::parse("http://127.0.0.1:8080/arm/").unwrap();
        assert_eq!(
            next_link(&local, link).unwrap().as_str(),
            "http://127.0.0.1:8080/arm/subscriptions/s/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01&$skiptoken=abc"
        );
        let elsewhere = next_link(&local, "https://evil.example/x").unwrap();
        assert_eq!(elsewhere.host_str(), Some("evil.example"));
        assert!(next_link(&arm, "not a url").is_err());
        assert_eq!(
            arm_url(&arm, &["subscriptions", "s"], "2018-05-01").as_str(),
            "https://management.azure.com/subscriptions/s?api-version=2018-05-01"
        );
    }

    #[test]
    fn ids_and_endpoints_are_checked() {
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf86f141af91ab2d7cd011db47"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4g"));
        assert!(is_tenant("contoso.onmicrosoft.com"));
        assert!(is_resource_group("web-rg_1.(prod)"));
        assert!(!is_resource_group("web-rg."));
        assert!(!is_resource_group("web rg"));
        assert!(!is_tenant("contoso"));
        assert!(check_identity_endpoint(DEFAULT_IDENTITY_ENDPOINT).is_ok());
        assert!(check_identity_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_identity_endpoint("http://imds.example/token").is_err());
        assert!(check_identity_endpoint("https://imds.example/token").is_ok());
    }

    #[test]
    fn a_client_secret_is_read_from_its_key_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("azure.secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let at = |secret| SecretAt {
            field: "dns \"az\"".into(),
            line: 1,
            secret,
        };
        let token = load_secret(&at(SecretRef::File(path))).unwrap();
        assert_eq!(token.expose(), SECRET);
        let e = load_secret(&at(SecretRef::Env("IPDRIFT_TEST_SURELY_UNSET".into()))).unwrap_err();
        assert!(
            e.starts_with("client_secret_env:") && e.contains("not set"),
            "{e}"
        );
        // A secret pasted where the path belongs is not shown back.
        let pasted = "jEheVytlAoFl7F8MqUQ7jAo2hOXASztX5ZBdHGHBmkgbM0NmrCVTYr0kcNDCBOh2";
        let e = load_secret(&at(SecretRef::File(dir.path().join(pasted)))).unwrap_err();
        assert!(!e.contains(pasted) && e.contains("not shown"), "{e}");
    }
}
