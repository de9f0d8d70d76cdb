//! `kind = "digitalocean"`: Droplets from the DigitalOcean API,
//! `GET /v2/droplets?per_page=200[&tag_name=T]`, following `links.pages.next`.
//!
//! Mapping to [`Instance`]: `id` → id (as text), `name` → name; `status` `new` → pending,
//! `active` → running, `off` → stopped, `archive` → terminated (anything else → pending);
//! the first `networks.v4` entry of type `public` → `public_ipv4`, of type `private` →
//! `private_ipv4`; the first public `networks.v6` entry → `ipv6`. Droplet tags are plain
//! strings: `"key:value"` becomes tag `key` = `value`, a bare `"web"` becomes tag `web` = `""`.
//! When two tags share a key (`role:db`, `role:web`) the alphabetically first one counts.
//!
//! A page that fails after its retries, a malformed page, a rejected token or pages that do
//! not add up to `meta.total` is an error for the pass, never a shorter list.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec};
use crate::BoxFuture;
use crate::clients::http::{ApiClient, HttpOptions, READ_ONLY, api_url};
use crate::clients::paging::{Listing, NextPage, Page, page_url};
use crate::clients::token::Token;
use crate::config::secret_keys::API_TOKEN;
use crate::config::{Fragment, SecretAt};
use crate::model::{Instance, InstanceState};

/// The API's base URL unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://api.digitalocean.com";

pub const KIND: SourceKind = SourceKind {
    name: "digitalocean",
    check,
};

/// A `kind = "digitalocean"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitalOceanConfig {
    /// `token_env` or `token_file`; read by [`Token::load`] when the source is built.
    pub token: SecretAt,
    /// Only Droplets with this tag (`tag_name`).
    pub tag: Option<String>,
    /// The API's base URL (`endpoint`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigitalOcean {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawDigitalOcean = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let tag = raw.tag.map(|tag| {
        let text = tag.get_ref();
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, ':' | '-' | '_'));
        if !ok {
            f.error_at(
                &tag,
                "tag",
                format!(
                    "{text:?} is not a DigitalOcean tag: use 1–255 letters, digits, ':', '-' or '_', e.g. \"role:web\""
                ),
            );
        }
        tag.into_inner()
    });
    Some(Arc::new(DigitalOceanConfig {
        token: token?,
        tag,
        endpoint,
    }))
}

impl SourceSpec for DigitalOceanConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let token = Token::load(&self.token.secret)
            .map_err(|e| anyhow::anyhow!("inventory {name:?}.{e}"))?;
        Ok(Box::new(DigitalOceanInventory::new(
            name.to_string(),
            &self.endpoint,
            token,
            self.tag.clone(),
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.token.clone()]
    }
}

/// The most droplets DigitalOcean returns per page.
const PER_PAGE: u32 = 200;

/// One page of `GET /v2/droplets`.
#[derive(Debug, Deserialize)]
struct DropletPage {
    droplets: Vec<Droplet>,
    #[serde(default)]
    links: Option<Links>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Debug, Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    total: u64,
}

#[derive(Debug, Deserialize)]
struct Droplet {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    networks: Networks,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Networks {
    #[serde(default)]
    v4: Vec<Network<Ipv4Addr>>,
    #[serde(default)]
    v6: Vec<Network<Ipv6Addr>>,
}

#[derive(Debug, Deserialize)]
struct Network<A> {
    ip_address: A,
    #[serde(rename = "type")]
    kind: String,
}

fn state(status: &str) -> InstanceState {
    match status {
        "active" => InstanceState::Running,
        "off" => InstanceState::Stopped,
        "archive" => InstanceState::Terminated,
        // "new", and anything DigitalOcean adds later: not running, not gone.
        _ => InstanceState::Pending,
    }
}

/// `["env:prod", "web"]` → `{env: prod, web: ""}`; of two values for a key the
/// alphabetically first counts, so the result does not depend on the API's order.
fn tags(list: &[String]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&String> = list.iter().collect();
    sorted.sort();
    let mut tags = BTreeMap::new();
    for tag in sorted {
        let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
        tags.entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
    tags
}

fn instance(droplet: Droplet) -> Instance {
    let first = |kind: &str| {
        droplet
            .networks
            .v4
            .iter()
            .find(|n| n.kind == kind)
            .map(|n| n.ip_address)
    };
    Instance {
        id: droplet.id.to_string(),
        state: state(&droplet.status),
        public_ipv4: first("public"),
        private_ipv4: first("private"),
        ipv6: droplet
            .networks
            .v6
            .iter()
            .find(|n| n.kind == "public")
            .map(|n| n.ip_address),
        tags: tags(&droplet.tags),
        name: droplet.name,
    }
}

/// The page number in a `links.pages.next` URL.
pub(crate) fn next_page(current: &Url, link: &str) -> Option<u32> {
    let url = current.join(link).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// Lists Droplets, optionally only those with one tag.
pub struct DigitalOceanInventory {
    name: String,
    api: ApiClient,
    droplets: Url,
    tag: Option<String>,
}

impl fmt::Debug for DigitalOceanInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitalOceanInventory")
            .field("name", &self.name)
            .field("droplets", &self.droplets.as_str())
            .field("tag", &self.tag)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl DigitalOceanInventory {
    /// `endpoint` is the API's base URL ([`DEFAULT_ENDPOINT`]); `tag` sends `tag_name`.
    pub fn new(
        name: String,
        endpoint: &Url,
        token: Token,
        tag: Option<String>,
        options: HttpOptions,
    ) -> anyhow::Result<DigitalOceanInventory> {
        Ok(DigitalOceanInventory {
            api: ApiClient::new(
                "DigitalOcean",
                format!("inventory {name:?}"),
                token,
                options,
            )?,
            droplets: api_url(endpoint, &["v2", "droplets"]),
            name,
            tag,
        })
    }

    /// The first page has no `page` parameter; later ones do.
    fn page_url(&self, page: u32) -> Url {
        let filter = self.tag.as_deref().map(|value| ("tag_name", value));
        page_url(&self.droplets, PER_PAGE, page, filter)
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let listing = Listing {
            noun: "droplet",
            next_field: "links.pages.next",
            narrow: Some("tag"),
            needs: READ_ONLY,
            id: |i: &Instance| i.id.as_str(),
        };
        let read = |body: DropletPage, url: &Url| {
            let next = match body
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .filter(|n| !n.is_empty())
            {
                None => None,
                Some(link) => Some(NextPage::Number(
                    next_page(url, &link)
                        .ok_or_else(|| format!("links.pages.next {link:?} names no page"))?,
                )),
            };
            Ok(Page {
                items: body.droplets.into_iter().map(instance).collect(),
                next,
                total: body.meta.map(|m| m.total),
            })
        };
        self.api
            .list_pages(&listing, |page| self.page_url(page), read)
            .await
    }
}

impl Inventory for DigitalOceanInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        self.api.options().listing_limit()
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(self.list_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page shaped like the example in DigitalOcean's API reference.
    const DOCUMENTED: &str = r#"{
      "droplets": [{
        "id": 3164444, "name": "example.com", "memory": 1024, "vcpus": 1, "disk": 25,
        "locked": false, "status": "active", "kernel": null,
        "created_at": "2020-07-21T18:37:44Z", "features": ["backups", "private_networking", "ipv6"],
        "backup_ids": [53893572], "next_backup_window": null, "snapshot_ids": [67512819],
        "image": {"id": 63663980, "name": "20.04 (LTS) x64", "distribution": "Ubuntu"},
        "volume_ids": [], "size": {"slug": "s-1vcpu-1gb"}, "size_slug": "s-1vcpu-1gb",
        "networks": {
          "v4": [
            {"ip_address": "10.128.192.124", "netmask": "255.255.0.0", "gateway": "nil", "type": "private"},
            {"ip_address": "192.241.165.154", "netmask": "255.255.240.0", "gateway": "192.241.160.1", "type": "public"}
          ],
          "v6": [
            {"ip_address": "2604:a880:0:1010::18a:a001", "netmask": 64, "gateway": "2604:a880:0:1010::1", "type": "public"}
          ]
        },
        "region": {"name": "New York 3", "slug": "nyc3"},
        "tags": ["web", "env:prod"],
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
      }],
      "links": {"pages": {"next": "https://api.digitalocean.com/v2/droplets?page=2&per_page=1", "last": "https://api.digitalocean.com/v2/droplets?page=3&per_page=1"}},
      "meta": {"total": 3}
    }"#;

    #[test]
    fn the_documented_page_maps_to_instances() {
        let page: DropletPage = serde_json::from_str(DOCUMENTED).unwrap();
        assert_eq!(page.meta.as_ref().unwrap().total, 3);
        let next = page
            .links
            .as_ref()
            .unwrap()
            .pages
            .as_ref()
            .unwrap()
            .next
            .clone();
        let current = Url::parse("https://api.digitalocean.com/v2/droplets?per_page=1").unwrap();
        assert_eq!(next_page(&current, &next.unwrap()), Some(2));
        let i = instance(page.droplets.into_iter().next().unwrap());
        assert_eq!(i.id, "3164444");
        assert_eq!(i.name, "example.com");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("192.241.165.154".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("10.128.192.124".parse().unwrap()));
        assert_eq!(i.ipv6, Some("2604:a880:0:1010::18a:a001".parse().unwrap()));
        assert_eq!(i.tags["env"], "prod");
        assert_eq!(i.tags["web"], "");
    }

    #[test]
    fn statuses_and_tags_map_as_documented() {
        assert_eq!(state("new"), InstanceState::Pending);
        assert_eq!(state("active"), InstanceState::Running);
        assert_eq!(state("off"), InstanceState::Stopped);
        assert_eq!(state("archive"), InstanceState::Terminated);
        assert_eq!(state("something-new"), InstanceState::Pending);
        let t = tags(&[
            "role:web".into(),
            "role:db".into(),
            "k8s:worker:1".into(),
            "solo".into(),
        ]);
        assert_eq!(t["role"], "db");
        assert_eq!(t["k8s"], "worker:1");
        assert_eq!(t["solo"], "");
    }

    #[test]
    fn a_droplet_without_networks_has_no_addresses() {
        let page: DropletPage = serde_json::from_str(
            r#"{"droplets":[{"id":1,"name":"n","status":"new","networks":{"v4":[],"v6":[]},"tags":[]}],"links":{},"meta":{"total":1}}"#,
        )
        .unwrap();
        let i = instance(page.droplets.into_iter().next().unwrap());
        assert_eq!((i.public_ipv4, i.private_ipv4, i.ipv6), (None, None, None));
        assert_eq!(i.state, InstanceState::Pending);
    }

    #[test]
    fn page_urls_carry_the_size_page_and_tag() {
        let source = DigitalOceanInventory::new(
            "do".into(),
            &Url::parse(DEFAULT_ENDPOINT).unwrap(),
            Token::new("t").unwrap(),
            Some("role:web".into()),
            HttpOptions::new(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(
            source.page_url(1).as_str(),
            "https://api.digitalocean.com/v2/droplets?per_page=200&tag_name=role%3Aweb"
        );
        assert_eq!(
            source.page_url(3).as_str(),
            "https://api.digitalocean.com/v2/droplets?per_page=200&page=3&tag_name=role%3Aweb"
        );
    }
}
