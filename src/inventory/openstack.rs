//! `kind = "openstack"`: servers of one project from OpenStack Nova
//! (<https://docs.openstack.org/api-ref/compute/#list-servers-detailed>), with a Keystone v3
//! token ([`crate::clients::keystone`]).
//!
//! - Credentials, first that applies: the config's `auth_url` with an application credential
//!   (`application_credential_id`, `application_credential_secret_env`/`_file`) or a user
//!   (`username`, `password_env`/`_file`, `project_name` or `project_id`); the config's
//!   `cloud` from `clouds.yaml`; the environment's `OS_CLOUD`; the environment's `OS_AUTH_URL`
//!   with `OS_APPLICATION_CREDENTIAL_ID`/`_SECRET` or `OS_USERNAME`/`OS_PASSWORD`/
//!   `OS_PROJECT_NAME`/`OS_PROJECT_ID` (as the OpenStack clients read them). `clouds.yaml` is
//!   `clouds_file`, else `OS_CLIENT_CONFIG_FILE`, else the first of `./clouds.yaml`,
//!   `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`.
//! - Listing: `GET {compute}/servers/detail?limit=1000[&tags=a,b]` (the compute endpoint from
//!   the token's catalog for `region` and `interface`), following `servers_links` `next`. With
//!   `tags` the microversion 2.26 is asked for, which filters by server tags. A page that
//!   fails, a malformed page or a refused token fails the listing: never a shorter list.
//! - Forewarning: none. Nova has no API that announces maintenance to a project — instance
//!   actions are history, and host maintenance (`os-services`, `os-hypervisors`,
//!   `os-migrations`) is the operator's, admin-only, and says nothing ahead of time.
//!
//! Mapping to [`Instance`]: `id` → id, `name` → name, `metadata` → tags. Of `addresses`
//! (network name → addresses, networks in name order): the first `fixed` IPv4 →
//! `private_ipv4`; the first `floating` IPv4 → `public_ipv4`, or without one the first fixed
//! IPv4 outside the private ranges (a provider network with public addresses); the first
//! IPv6 (floating, else fixed) → `ipv6`. `status` `ACTIVE` → running; `SHUTOFF`, `SUSPENDED`,
//! `PAUSED`, `SHELVED`, `SHELVED_OFFLOADED`, `STOPPED`, `ERROR` → stopped; `DELETED`,
//! `SOFT_DELETED` → terminated; `BUILD`, `REBUILD`, `REBOOT`, `HARD_REBOOT`, `RESIZE`,
//! `VERIFY_RESIZE`, `REVERT_RESIZE`, `MIGRATING`, `PASSWORD`, `RESCUE`, `UNKNOWN` (and
//! anything new) → pending.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;
use yaml_rust2::{Yaml, YamlLoader};

use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::http::{ApiClient, HttpOptions, api_url};
use crate::clients::keystone::{self, Keystone, KeystoneAuth, Method, Project, Secret};
use crate::clients::paging::{Listing, NextPage, Page};
use crate::config::secret_keys::SecretKeys;
use crate::config::{Fragment, SecretAt};
use crate::model::{Instance, InstanceState};

pub const KIND: SourceKind = SourceKind {
    name: "openstack",
    check,
};

/// Servers asked for per page; Nova answers with fewer when its `max_limit` is lower.
const LIMIT: u32 = 1000;

/// The keys a refused credential is told to check.
const CHECK: &str = "the source's credentials (application_credential_secret_env/_file, password_env/_file, the cloud in clouds.yaml, or OS_*)";
const NEEDS_LIST: &str = "the user or application credential needs a role on the project that may list servers (reader or member)";

const APP_SECRET: SecretKeys<'static> = SecretKeys {
    file_key: "application_credential_secret_file",
    env_key: "application_credential_secret_env",
    missing_key: "application_credential_secret_env",
    needs: "an application credential needs its secret: add application_credential_secret_env = \"VAR\" or application_credential_secret_file = \"path\"",
    at_parse: true,
};
const PASSWORD: SecretKeys<'static> = SecretKeys {
    file_key: "password_file",
    env_key: "password_env",
    missing_key: "password_env",
    needs: "a user needs its password: add password_env = \"VAR\" or password_file = \"path\"",
    at_parse: true,
};

/// Where the credentials come from, as the config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `auth_url` and an application credential.
    ApplicationCredential {
        auth_url: Url,
        id: String,
        secret: SecretAt,
    },
    /// `auth_url` and a user with a project.
    Password {
        auth_url: Url,
        username: String,
        user_domain: String,
        password: SecretAt,
        project: Project,
    },
    /// `cloud` of clouds.yaml (`file`: `clouds_file`).
    Cloud { name: String, file: Option<PathBuf> },
    /// Nothing in the config: `OS_CLOUD` or `OS_AUTH_URL` and the rest of `OS_*`.
    Environment { file: Option<PathBuf> },
}

/// A `kind = "openstack"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenStackConfig {
    pub credentials: Credentials,
    /// `region`; else the cloud's or `OS_REGION_NAME`.
    pub region: Option<String>,
    /// `interface`; else the cloud's, `OS_INTERFACE` or `public`.
    pub interface: Option<String>,
    /// Only servers with all these tags (`tags`, pushed down).
    pub tags: Vec<String>,
    /// The config file's directory, where `./clouds.yaml` is looked for.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenStack {
    cloud: Option<Spanned<String>>,
    clouds_file: Option<Spanned<String>>,
    auth_url: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    application_credential_id: Option<Spanned<String>>,
    application_credential_secret_env: Option<Spanned<String>>,
    application_credential_secret_file: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    user_domain_name: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    project_id: Option<Spanned<String>>,
    project_name: Option<Spanned<String>>,
    project_domain_name: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
}

const INTERFACES: [&str; 3] = ["public", "internal", "admin"];

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawOpenStack = f.parse()?;
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().trim().to_string());
    let interface = raw.interface.as_ref().and_then(|i| {
        if INTERFACES.contains(&i.get_ref().as_str()) {
            Some(i.get_ref().clone())
        } else {
            f.error_at(
                i,
                "interface",
                "must be \"public\", \"internal\" or \"admin\"",
            );
            None
        }
    });
    let mut tags = Vec::new();
    if let Some(list) = &raw.tags {
        for tag in list.get_ref() {
            if tag.is_empty() || tag.contains(',') || tag.contains('/') || tag.chars().count() > 60
            {
                f.error_at(
                    list,
                    "tags",
                    format!("{tag:?} is not a server tag (1–60 characters, no ',' or '/')"),
                );
            } else {
                tags.push(tag.clone());
            }
        }
        if list.get_ref().is_empty() {
            f.error_at(
                list,
                "tags",
                "must name at least one tag; leave it out to list every server",
            );
        }
    }
    let user_keys = raw.username.is_some()
        || raw.password_env.is_some()
        || raw.password_file.is_some()
        || raw.project_id.is_some()
        || raw.project_name.is_some();
    let app_keys = raw.application_credential_id.is_some()
        || raw.application_credential_secret_env.is_some()
        || raw.application_credential_secret_file.is_some();
    let file = raw
        .clouds_file
        .as_ref()
        .map(|p| f.checker.resolve_path(p.get_ref()));
    let credentials = match (&raw.auth_url, &raw.cloud) {
        (Some(url), Some(_)) => {
            f.error_at(
                url,
                "auth_url",
                "give either auth_url (with its credentials) or cloud (from clouds.yaml), not both",
            );
            None
        }
        (None, cloud) if user_keys || app_keys => {
            f.missing("auth_url", format!(
                "credentials in the config need auth_url = \"https://keystone.example:5000/v3\"{}",
                if cloud.is_some() { "; with cloud, clouds.yaml holds them" } else { "" }
            ));
            None
        }
        (None, Some(cloud)) => Some(Credentials::Cloud {
            name: cloud.get_ref().clone(),
            file,
        }),
        (None, None) => Some(Credentials::Environment { file }),
        (Some(url), None) => {
            let auth_url = f.endpoint(&Some(url.clone()), "https://keystone.invalid/v3");
            match (app_keys, user_keys) {
                (true, true) => {
                    f.error_at(
                        url,
                        "auth_url",
                        "give an application credential or a user, not both",
                    );
                    None
                }
                (false, false) => {
                    f.missing("application_credential_id", "auth_url needs credentials: application_credential_id with application_credential_secret_env/_file, or username with password_env/_file and project_name or project_id");
                    None
                }
                (true, false) => {
                    let secret = f.secret(
                        &APP_SECRET,
                        raw.application_credential_secret_file.as_ref(),
                        raw.application_credential_secret_env.as_ref(),
                    );
                    let id = text(&raw.application_credential_id);
                    if id.is_none() {
                        f.missing(
                            "application_credential_id",
                            "the application credential's id is needed with its secret",
                        );
                    }
                    Some(Credentials::ApplicationCredential {
                        auth_url,
                        id: id?,
                        secret: secret?,
                    })
                }
                (false, true) => {
                    let password = f.secret(
                        &PASSWORD,
                        raw.password_file.as_ref(),
                        raw.password_env.as_ref(),
                    );
                    let username = text(&raw.username);
                    if username.is_none() {
                        f.missing("username", "a password needs its username");
                    }
                    let project = match (text(&raw.project_id), text(&raw.project_name)) {
                        (Some(id), None) => Some(Project::Id(id)),
                        (None, Some(name)) => Some(Project::Name {
                            name,
                            domain: text(&raw.project_domain_name)
                                .unwrap_or_else(|| "Default".into()),
                        }),
                        _ => {
                            f.missing("project_name", "a user's token is scoped to one project: give project_name or project_id (one of the two)");
                            None
                        }
                    };
                    Some(Credentials::Password {
                        auth_url,
                        username: username?,
                        user_domain: text(&raw.user_domain_name)
                            .unwrap_or_else(|| "Default".into()),
                        password: password?,
                        project: project?,
                    })
                }
            }
        }
    };
    Some(Arc::new(OpenStackConfig {
        credentials: credentials?,
        region: text(&raw.region).filter(|r| !r.is_empty()),
        interface,
        tags,
        dir: f.checker.dir(),
    }))
}

impl SourceSpec for OpenStackConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let auth = resolve(self, &env, &|path: &Path| std::fs::read_to_string(path))
            .map_err(|e| anyhow!("inventory {name:?}: {e}"))?;
        Ok(Box::new(OpenStackInventory::new(
            name.to_string(),
            auth,
            self.tags.clone(),
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        match &self.credentials {
            Credentials::ApplicationCredential { secret, .. } => vec![secret.clone()],
            Credentials::Password { password, .. } => vec![password.clone()],
            Credentials::Cloud { .. } | Credentials::Environment { .. } => Vec::new(),
        }
    }
}

/// A secret the config names, read.
fn read_secret(at: &SecretAt) -> Result<Secret, String> {
    at.secret
        .read()
        .map(Secret::new)
        .map_err(|e| format!("{}: {e}", at.field))
}

fn parse_url(text: &str, from: &str) -> Result<Url, String> {
    crate::validate::api_endpoint(text).map_err(|e| format!("{from}: auth_url {e}"))
}

/// The credentials, from the config, clouds.yaml or the environment (`env` looks a
/// variable up, `read` reads a file). Pure but for what those two do.
fn resolve(
    config: &OpenStackConfig,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<KeystoneAuth, String> {
    let interface = |other: Option<String>| {
        config
            .interface
            .clone()
            .or(other)
            .unwrap_or_else(|| "public".into())
    };
    let region = |other: Option<String>| config.region.clone().or(other);
    match &config.credentials {
        Credentials::ApplicationCredential {
            auth_url,
            id,
            secret,
        } => Ok(KeystoneAuth {
            auth_url: keystone::v3_root(auth_url),
            method: Method::ApplicationCredential {
                id: id.clone(),
                secret: read_secret(secret)?,
            },
            region: region(None),
            interface: interface(None),
        }),
        Credentials::Password {
            auth_url,
            username,
            user_domain,
            password,
            project,
        } => Ok(KeystoneAuth {
            auth_url: keystone::v3_root(auth_url),
            method: Method::Password {
                username: username.clone(),
                user_domain: user_domain.clone(),
                password: read_secret(password)?,
                project: project.clone(),
            },
            region: region(None),
            interface: interface(None),
        }),
        Credentials::Cloud { name, file } => {
            from_clouds_yaml(config, name, file.as_deref(), env, read)
        }
        Credentials::Environment { file } => {
            if let Some(cloud) = env("OS_CLOUD") {
                return from_clouds_yaml(config, &cloud, file.as_deref(), env, read);
            }
            let Some(url) = env("OS_AUTH_URL") else {
                return Err("no credentials: give auth_url or cloud in the config, or set OS_CLOUD (a cloud of clouds.yaml) or OS_AUTH_URL with the rest of the OS_* variables".into());
            };
            let method = method_from(
                &|key| env(&format!("OS_{}", key.to_ascii_uppercase())),
                "the OS_* environment",
            )?;
            Ok(KeystoneAuth {
                auth_url: keystone::v3_root(&parse_url(&url, "OS_AUTH_URL")?),
                method,
                region: region(env("OS_REGION_NAME")),
                interface: interface(env("OS_INTERFACE")),
            })
        }
    }
}

/// An application credential or a password from `get` (clouds.yaml's `auth` keys, or the
/// `OS_*` variables under the same names).
fn method_from(get: &dyn Fn(&str) -> Option<String>, from: &str) -> Result<Method, String> {
    if let Some(id) = get("application_credential_id") {
        let secret = get("application_credential_secret").ok_or_else(|| {
            format!("{from}: application_credential_id without application_credential_secret")
        })?;
        return Ok(Method::ApplicationCredential {
            id,
            secret: Secret::new(secret),
        });
    }
    let username = get("username").ok_or_else(|| {
        format!("{from}: neither application_credential_id nor username is given")
    })?;
    let password = get("password").ok_or_else(|| format!("{from}: username without password"))?;
    let project = match (get("project_id"), get("project_name")) {
        (Some(id), _) => Project::Id(id),
        (None, Some(name)) => Project::Name {
            name,
            domain: get("project_domain_name").unwrap_or_else(|| "Default".into()),
        },
        (None, None) => return Err(format!("{from}: a user needs project_name or project_id")),
    };
    Ok(Method::Password {
        username,
        user_domain: get("user_domain_name").unwrap_or_else(|| "Default".into()),
        password: Secret::new(password),
        project,
    })
}

/// The first clouds.yaml that exists, as the OpenStack clients look for it.
fn clouds_yaml(
    config: &OpenStackConfig,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<(PathBuf, String), String> {
    let candidates: Vec<PathBuf> = match (file, env("OS_CLIENT_CONFIG_FILE")) {
        (Some(file), _) => vec![file.to_path_buf()],
        (None, Some(file)) => vec![PathBuf::from(file)],
        (None, None) => {
            let mut all = vec![config.dir.join("clouds.yaml")];
            if let Some(home) = env("HOME") {
                all.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
            }
            all.push(PathBuf::from("/etc/openstack/clouds.yaml"));
            all
        }
    };
    for path in &candidates {
        match read(path) {
            Ok(text) => return Ok((path.clone(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && candidates.len() > 1 => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Err(format!(
        "no clouds.yaml: looked for {}",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn from_clouds_yaml(
    config: &OpenStackConfig,
    cloud: &str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<KeystoneAuth, String> {
    let (path, text) = clouds_yaml(config, file, env, read)?;
    let shown = path.display().to_string();
    // The YAML parser's messages may quote the text, which holds secrets: not shown.
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{shown}: not YAML (line {})", e.marker().line()))?;
    let entry = docs
        .first()
        .map(|d| &d["clouds"][cloud])
        .filter(|e| !e.is_badvalue())
        .ok_or_else(|| format!("{shown} has no cloud {cloud:?} under clouds:"))?;
    let field = |y: &Yaml| match y {
        Yaml::String(s) if !s.is_empty() => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        _ => None,
    };
    let auth = &entry["auth"];
    let from = format!("{shown}, cloud {cloud:?}");
    let url =
        field(&auth["auth_url"]).ok_or_else(|| format!("{from}: auth.auth_url is missing"))?;
    let method = method_from(&|key| field(&auth[key]), &from)?;
    Ok(KeystoneAuth {
        auth_url: keystone::v3_root(&parse_url(&url, &from)?),
        method,
        region: config
            .region
            .clone()
            .or_else(|| field(&entry["region_name"])),
        interface: config
            .interface
            .clone()
            .or_else(|| field(&entry["interface"]))
            .unwrap_or_else(|| "public".into()),
    })
}

/// One page of `GET /servers/detail`.
#[derive(Debug, Deserialize)]
struct ServerPage {
    servers: Vec<Server>,
    #[serde(default)]
    servers_links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    href: String,
    rel: String,
}

#[derive(Debug, Deserialize)]
struct Server {
    id: String,
    name: String,
    status: String,
    #[serde(default)]
    addresses: BTreeMap<String, Vec<Address>>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Address {
    addr: IpAddr,
    #[serde(default, rename = "OS-EXT-IPS:type")]
    kind: Option<String>,
}

fn state(status: &str) -> InstanceState {
    match status {
        "ACTIVE" => InstanceState::Running,
        "SHUTOFF" | "SUSPENDED" | "PAUSED" | "SHELVED" | "SHELVED_OFFLOADED" | "STOPPED"
        | "ERROR" => InstanceState::Stopped,
        "DELETED" | "SOFT_DELETED" => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

/// RFC 1918 and the shared address space (RFC 6598), which no public network uses.
fn is_private(addr: Ipv4Addr) -> bool {
    addr.is_private() || (addr.octets()[0] == 100 && (addr.octets()[1] & 0xc0) == 64)
}

fn instance(server: Server) -> Instance {
    let all: Vec<&Address> = server.addresses.values().flatten().collect();
    let floating = |a: &Address| a.kind.as_deref() == Some("floating");
    let v4 = |a: &Address| match a.addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    };
    let v6 = |a: &Address| match a.addr {
        IpAddr::V6(v6) => Some(v6),
        IpAddr::V4(_) => None,
    };
    // An address without OS-EXT-IPS:type (an old Nova) counts as fixed.
    let private_ipv4 = all.iter().filter(|a| !floating(a)).find_map(|a| v4(a));
    let public_ipv4 = all
        .iter()
        .filter(|a| floating(a))
        .find_map(|a| v4(a))
        .or_else(|| {
            all.iter()
                .filter(|a| !floating(a))
                .filter_map(|a| v4(a))
                .find(|a| !is_private(*a))
        });
    let ipv6: Option<Ipv6Addr> = all
        .iter()
        .filter(|a| floating(a))
        .find_map(|a| v6(a))
        .or_else(|| all.iter().filter(|a| !floating(a)).find_map(|a| v6(a)));
    Instance {
        id: server.id,
        name: server.name,
        state: state(&server.status),
        public_ipv4,
        private_ipv4,
        ipv6,
        tags: server.metadata,
    }
}

/// Lists the servers of the project the credentials are scoped to.
pub struct OpenStackInventory {
    name: String,
    keystone: Keystone,
    api: ApiClient,
    tags: Vec<String>,
}

impl std::fmt::Debug for OpenStackInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStackInventory")
            .field("name", &self.name)
            .field("auth", self.keystone.auth())
            .field("tags", &self.tags)
            .finish()
    }
}

impl OpenStackInventory {
    pub fn new(
        name: String,
        auth: KeystoneAuth,
        tags: Vec<String>,
        options: HttpOptions,
    ) -> anyhow::Result<OpenStackInventory> {
        let owner = format!("inventory {name:?}");
        let identity =
            ApiClient::without_token("Keystone", owner.clone(), options)?.checking(CHECK);
        let api = ApiClient::without_token("OpenStack Nova", owner, options)?.checking(CHECK);
        Ok(OpenStackInventory {
            keystone: Keystone::new(auth, "compute", identity),
            api,
            name,
            tags,
        })
    }

    /// `{compute}/servers/detail?limit=1000[&tags=a,b]`.
    fn first_page(&self, compute: &Url) -> Url {
        let mut url = api_url(compute, &["servers", "detail"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &LIMIT.to_string());
            if !self.tags.is_empty() {
                query.append_pair("tags", &self.tags.join(","));
            }
        }
        url
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let (token, compute) = self.keystone.session().await?;
        self.api.set_token_header("x-auth-token", token)?;
        let listing = Listing {
            noun: "server",
            next_field: "servers_links",
            narrow: Some("tags"),
            needs: NEEDS_LIST,
            id: |i: &Instance| i.id.as_str(),
        };
        let first = self.first_page(&compute);
        let read = |body: ServerPage, _: &Url| -> Result<Page<Instance>, String> {
            let next = match body.servers_links.iter().find(|l| l.rel == "next") {
                None => None,
                Some(link) => Some(NextPage::Url(Url::parse(&link.href).map_err(|e| {
                    format!("servers_links next {:?} is not a URL: {e}", link.href)
                })?)),
            };
            Ok(Page {
                items: body.servers.into_iter().map(instance).collect(),
                next,
                total: None,
            })
        };
        // Server tags are a filter of microversion 2.26 and later.
        let header = (!self.tags.is_empty()).then(|| {
            (
                reqwest::header::HeaderName::from_static("openstack-api-version"),
                "compute 2.26",
            )
        });
        self.api
            .list_pages_with(&listing, header, |_| first.clone(), read)
            .await
    }
}

impl Inventory for OpenStackInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        // The token, then the pages.
        self.api.options().listing_limit().saturating_mul(2)
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(self.list_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret_keys::SecretRef;

    /// A server shaped like the example in the Compute API reference (List Servers Detailed).
    const DOCUMENTED: &str = r#"{
      "servers": [{
        "OS-DCF:diskConfig": "AUTO", "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:power_state": 1, "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": "active",
        "accessIPv4": "", "accessIPv6": "",
        "addresses": {
          "private": [
            {"OS-EXT-IPS-MAC:mac_addr": "aa:bb:cc:dd:ee:ff", "OS-EXT-IPS:type": "fixed", "addr": "192.168.1.30", "version": 4},
            {"OS-EXT-IPS-MAC:mac_addr": "aa:bb:cc:dd:ee:ff", "OS-EXT-IPS:type": "fixed", "addr": "2001:db8::30", "version": 6},
            {"OS-EXT-IPS-MAC:mac_addr": "aa:bb:cc:dd:ee:ff", "OS-EXT-IPS:type": "floating", "addr": "203.0.113.30", "version": 4}
          ]
        },
        "created": "2013-09-03T04:01:32Z", "flavor": {"id": "1", "links": []},
        "hostId": "bcf92836fc9ed4203a75cb0337afc7f917d2be504164b995c2334b25",
        "id": "f5dc173b-6804-445a-a6d8-c705dad5b5eb", "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": []},
        "key_name": null, "links": [], "metadata": {"role": "web", "env": "prod"},
        "name": "new-server-test", "progress": 0, "status": "ACTIVE",
        "tenant_id": "6f70656e737461636b20342065766572", "updated": "2013-09-03T04:01:33Z", "user_id": "fake"
      }],
      "servers_links": [{"href": "https://nova.example:8774/v2.1/servers/detail?limit=1&marker=f5dc173b-6804-445a-a6d8-c705dad5b5eb", "rel": "next"}]
    }"#;

    #[test]
    fn the_documented_server_maps_to_an_instance() {
        let page: ServerPage = serde_json::from_str(DOCUMENTED).unwrap();
        assert_eq!(page.servers_links[0].rel, "next");
        let i = instance(page.servers.into_iter().next().unwrap());
        assert_eq!(i.id, "f5dc173b-6804-445a-a6d8-c705dad5b5eb");
        assert_eq!(i.name, "new-server-test");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("203.0.113.30".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("192.168.1.30".parse().unwrap()));
        assert_eq!(i.ipv6, Some("2001:db8::30".parse().unwrap()));
        assert_eq!(i.tags["role"], "web");
    }

    #[test]
    fn provider_networks_and_odd_servers() {
        let server = |addresses: serde_json::Value| -> Instance {
            instance(
                serde_json::from_value(serde_json::json!({
                    "id": "x", "name": "x", "status": "SHUTOFF", "addresses": addresses
                }))
                .unwrap(),
            )
        };
        // A public provider network: the fixed address is the public one too.
        let public = server(
            serde_json::json!({"public": [{"addr": "198.51.100.7", "version": 4, "OS-EXT-IPS:type": "fixed"}]}),
        );
        assert_eq!(public.public_ipv4, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(public.state, InstanceState::Stopped);
        let private = server(
            serde_json::json!({"lan": [{"addr": "10.0.0.7", "version": 4, "OS-EXT-IPS:type": "fixed"}]}),
        );
        assert_eq!(
            (private.public_ipv4, private.private_ipv4),
            (None, Some("10.0.0.7".parse().unwrap()))
        );
        let cgnat = server(serde_json::json!({"lan": [{"addr": "100.64.1.7", "version": 4}]}));
        assert_eq!(cgnat.public_ipv4, None);
        let v6 = server(
            serde_json::json!({"v6": [{"addr": "2001:db8::7", "version": 6, "OS-EXT-IPS:type": "fixed"}]}),
        );
        assert_eq!((v6.public_ipv4, v6.private_ipv4), (None, None));
        assert!(v6.ipv6.is_some());
        assert_eq!(server(serde_json::json!({})).ipv6, None);
        for (status, want) in [
            ("ACTIVE", InstanceState::Running),
            ("BUILD", InstanceState::Pending),
            ("HARD_REBOOT", InstanceState::Pending),
            ("SHELVED_OFFLOADED", InstanceState::Stopped),
            ("ERROR", InstanceState::Stopped),
            ("SOFT_DELETED", InstanceState::Terminated),
            ("SOMETHING_NEW", InstanceState::Pending),
        ] {
            assert_eq!(state(status), want, "{status}");
        }
    }

    fn config(credentials: Credentials) -> OpenStackConfig {
        OpenStackConfig {
            credentials,
            region: None,
            interface: None,
            tags: vec![],
            dir: PathBuf::from("/etc/ipdrift"),
        }
    }

    const CLOUDS: &str = "clouds:\n  prod:\n    auth:\n      auth_url: https://keystone.example:5000\n      application_credential_id: 423f19a4ac1e4f48bbb4180756e6eb6c\n      application_credential_secret: rEaqvJka48mpv\n    region_name: RegionTwo\n    interface: internal\n    auth_type: v3applicationcredential\n  dev:\n    auth:\n      auth_url: https://keystone.example:5000/v3\n      username: ipdrift\n      password: hunter2\n      project_name: web\n      user_domain_name: Users\n";

    #[test]
    fn credentials_come_from_clouds_yaml_or_the_environment() {
        let files = |path: &Path| {
            if path == Path::new("/home/op/.config/openstack/clouds.yaml") {
                Ok(CLOUDS.to_string())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        let home = vars(&[("HOME", "/home/op")]);
        let prod = resolve(
            &config(Credentials::Cloud {
                name: "prod".into(),
                file: None,
            }),
            &home,
            &files,
        )
        .unwrap();
        assert_eq!(prod.auth_url.as_str(), "https://keystone.example:5000/v3");
        assert_eq!(
            (prod.region.as_deref(), prod.interface.as_str()),
            (Some("RegionTwo"), "internal")
        );
        assert!(
            matches!(prod.method, Method::ApplicationCredential { ref id, .. } if id == "423f19a4ac1e4f48bbb4180756e6eb6c")
        );

        let env = vars(&[("HOME", "/home/op"), ("OS_CLOUD", "dev")]);
        let dev = resolve(
            &config(Credentials::Environment { file: None }),
            &env,
            &files,
        )
        .unwrap();
        assert!(
            matches!(&dev.method, Method::Password { user_domain, project: Project::Name { name, .. }, .. } if user_domain == "Users" && name == "web")
        );

        let env = vars(&[
            ("OS_AUTH_URL", "https://keystone.example/identity"),
            ("OS_USERNAME", "ipdrift"),
            ("OS_PASSWORD", "hunter2"),
            ("OS_PROJECT_ID", "6f70656e737461636b20342065766572"),
            ("OS_REGION_NAME", "RegionOne"),
        ]);
        let plain = resolve(
            &config(Credentials::Environment { file: None }),
            &env,
            &files,
        )
        .unwrap();
        assert_eq!(
            plain.auth_url.as_str(),
            "https://keystone.example/identity/v3"
        );
        assert_eq!(plain.region.as_deref(), Some("RegionOne"));
        assert!(matches!(
            plain.method,
            Method::Password {
                project: Project::Id(_),
                ..
            }
        ));

        let e = resolve(
            &config(Credentials::Cloud {
                name: "nope".into(),
                file: None,
            }),
            &home,
            &files,
        )
        .unwrap_err();
        assert!(e.contains("no cloud \"nope\""), "{e}");
        let e = resolve(
            &config(Credentials::Environment { file: None }),
            &vars(&[]),
            &files,
        )
        .unwrap_err();
        assert!(e.contains("OS_CLOUD") && e.contains("auth_url"), "{e}");
        let broken = |_: &Path| {
            Ok("clouds:\n  prod:\n    auth: {auth_url: x, password: hunter2".to_string())
        };
        let e = resolve(
            &config(Credentials::Cloud {
                name: "prod".into(),
                file: None,
            }),
            &home,
            &broken,
        )
        .unwrap_err();
        assert!(e.contains("not YAML") && !e.contains("hunter2"), "{e}");
        let no_secret = |_: &Path| {
            Ok("clouds:\n  prod:\n    auth:\n      auth_url: https://k.example\n      application_credential_id: abc\n".to_string())
        };
        let e = resolve(
            &config(Credentials::Cloud {
                name: "prod".into(),
                file: None,
            }),
            &home,
            &no_secret,
        )
        .unwrap_err();
        assert!(e.contains("without application_credential_secret"), "{e}");
    }

    #[test]
    fn a_secret_named_by_the_config_is_read_from_its_variable() {
        let at = SecretAt {
            field: "inventory \"os\"".into(),
            line: 1,
            secret: SecretRef::Env("IPDRIFT_TEST_UNSET_OS_SECRET".into()),
        };
        let e = resolve(
            &config(Credentials::ApplicationCredential {
                auth_url: Url::parse("https://k.example/v3").unwrap(),
                id: "abc".into(),
                secret: at,
            }),
            &|_| None,
            &|_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        )
        .unwrap_err();
        assert!(
            e.contains("IPDRIFT_TEST_UNSET_OS_SECRET") && e.contains("not set"),
            "{e}"
        );
    }
}
