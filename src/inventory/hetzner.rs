//! `kind = "hetzner"`: servers from the Hetzner Cloud API,
//! `GET /v1/servers?per_page=50[&label_selector=S]`, following
//! `meta.pagination.next_page` until it is `null`.
//!
//! Mapping to [`Instance`]: `id` → id (as text), `name` → name, `labels` → tags;
//! `public_net.ipv4.ip` → `public_ipv4` (`ipv4` is `null` on IPv6-only servers); the first
//! `private_net[].ip` → `private_ipv4`; `public_net.ipv6.ip` is the server's /64 network,
//! and `ipv6` is that network's `::1` address, which Hetzner configures on the server.
//! `status` `running` → running; `initializing`, `starting`, `rebuilding`, `migrating`,
//! `unknown` (and anything new) → pending; `stopping` → stopping; `off` → stopped;
//! `deleting` → terminated.
//!
//! A page that fails after its retries, a malformed page, a rejected token or pages that do
//! not add up to `total_entries` is an error for the pass, never a shorter list.

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
pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud";

pub const KIND: SourceKind = SourceKind {
    name: "hetzner",
    check,
};

/// A `kind = "hetzner"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HetznerConfig {
    /// `token_env` or `token_file`; read by [`Token::load`] when the source is built.
    pub token: SecretAt,
    /// Only servers this label selector matches (`label_selector`).
    pub label_selector: Option<String>,
    /// The API's base URL (`endpoint`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: Url,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHetzner {
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    label_selector: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawHetzner = f.parse()?;
    let token = f.secret(&API_TOKEN, raw.token_file.as_ref(), raw.token_env.as_ref());
    let endpoint = f.endpoint(&raw.endpoint, DEFAULT_ENDPOINT);
    let label_selector = raw.label_selector.map(|selector| {
        let text = selector.get_ref().trim().to_string();
        if text.is_empty() {
            f.error_at(
                &selector,
                "label_selector",
                "must not be empty; write e.g. \"role=web\", or leave it out to list every server",
            );
        }
        text
    });
    Some(Arc::new(HetznerConfig {
        token: token?,
        label_selector,
        endpoint,
    }))
}

impl SourceSpec for HetznerConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        let token = Token::load(&self.token.secret)
            .map_err(|e| anyhow::anyhow!("inventory {name:?}.{e}"))?;
        Ok(Box::new(HetznerInventory::new(
            name.to_string(),
            &self.endpoint,
            token,
            self.label_selector.clone(),
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.token.clone()]
    }
}

/// The most servers Hetzner returns per page.
const PER_PAGE: u32 = 50;

/// One page of `GET /v1/servers`.
#[derive(Debug, Deserialize)]
struct ServerPage {
    servers: Vec<Server>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    pagination: Pagination,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u32>,
    #[serde(default)]
    total_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Server {
    id: u64,
    name: String,
    status: String,
    public_net: PublicNet,
    #[serde(default)]
    private_net: Vec<PrivateNet>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct PublicNet {
    #[serde(default)]
    ipv4: Option<PublicIpv4>,
    #[serde(default)]
    ipv6: Option<PublicIpv6>,
}

#[derive(Debug, Deserialize)]
struct PublicIpv4 {
    ip: Ipv4Addr,
}

#[derive(Debug, Deserialize)]
struct PublicIpv6 {
    /// The server's network, e.g. `2001:db8::/64`.
    ip: String,
}

#[derive(Debug, Deserialize)]
struct PrivateNet {
    #[serde(default)]
    ip: Option<Ipv4Addr>,
}

fn state(status: &str) -> InstanceState {
    match status {
        "running" => InstanceState::Running,
        "stopping" => InstanceState::Stopping,
        "off" => InstanceState::Stopped,
        "deleting" => InstanceState::Terminated,
        // initializing, starting, rebuilding, migrating, unknown, and anything Hetzner adds
        // later: not running, not gone.
        _ => InstanceState::Pending,
    }
}

/// `2001:db8::/64` → `2001:db8::1`: the first address of the server's network, the one
/// Hetzner configures on it. A bare address is taken as it is.
fn server_ipv6(network: &str) -> Option<Ipv6Addr> {
    let Some((addr, prefix)) = network.split_once('/') else {
        return network.parse().ok();
    };
    let addr: Ipv6Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 128)?;
    if prefix == 128 {
        return Some(addr);
    }
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    Some(Ipv6Addr::from((u128::from(addr) & mask) | 1))
}

fn instance(server: Server) -> Result<Instance, String> {
    let ipv6 = match &server.public_net.ipv6 {
        None => None,
        Some(net) => Some(server_ipv6(&net.ip).ok_or_else(|| {
            format!(
                "server {} has public_net.ipv6.ip {:?}, not an IPv6 network",
                server.id, net.ip
            )
        })?),
    };
    Ok(Instance {
        id: server.id.to_string(),
        state: state(&server.status),
        public_ipv4: server.public_net.ipv4.as_ref().map(|v4| v4.ip),
        private_ipv4: server.private_net.iter().find_map(|n| n.ip),
        ipv6,
        tags: server.labels,
        name: server.name,
    })
}

/// Lists Hetzner Cloud servers, optionally only those a label selector matches.
pub struct HetznerInventory {
    name: String,
    api: ApiClient,
    servers: Url,
    label_selector: Option<String>,
}

impl fmt::Debug for HetznerInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HetznerInventory")
            .field("name", &self.name)
            .field("servers", &self.servers.as_str())
            .field("label_selector", &self.label_selector)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl HetznerInventory {
    /// `endpoint` is the API's base URL ([`DEFAULT_ENDPOINT`]); `label_selector` is sent as
    /// it is (e.g. `role=web,env!=dev`).
    pub fn new(
        name: String,
        endpoint: &Url,
        token: Token,
        label_selector: Option<String>,
        options: HttpOptions,
    ) -> anyhow::Result<HetznerInventory> {
        Ok(HetznerInventory {
            api: ApiClient::new(
                "Hetzner Cloud",
                format!("inventory {name:?}"),
                token,
                options,
            )?,
            servers: api_url(endpoint, &["v1", "servers"]),
            name,
            label_selector,
        })
    }

    /// The first page has no `page` parameter; later ones do.
    fn page_url(&self, page: u32) -> Url {
        let filter = self
            .label_selector
            .as_deref()
            .map(|value| ("label_selector", value));
        page_url(&self.servers, PER_PAGE, page, filter)
    }

    async fn list_all(&self) -> anyhow::Result<Vec<Instance>> {
        let listing = Listing {
            noun: "server",
            next_field: "meta.pagination.next_page",
            narrow: Some("label_selector"),
            needs: READ_ONLY,
            id: |i: &Instance| i.id.as_str(),
        };
        let read = |body: ServerPage, _: &Url| {
            let pagination = body.meta.map(|m| m.pagination);
            Ok(Page {
                items: body
                    .servers
                    .into_iter()
                    .map(instance)
                    .collect::<Result<_, _>>()?,
                next: pagination
                    .as_ref()
                    .and_then(|p| p.next_page)
                    .map(NextPage::Number),
                total: pagination.and_then(|p| p.total_entries),
            })
        };
        self.api
            .list_pages(&listing, |page| self.page_url(page), read)
            .await
    }
}

impl Inventory for HetznerInventory {
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

    /// A page shaped like the example in Hetzner's API reference.
    const DOCUMENTED: &str = r#"{
      "servers": [{
        "id": 42, "name": "my-server", "status": "running", "created": "2016-01-30T23:55:00+00:00",
        "public_net": {
          "ipv4": {"ip": "1.2.3.4", "blocked": false, "dns_ptr": "server01.example.com", "id": 42},
          "ipv6": {"ip": "2001:db8::/64", "blocked": false, "dns_ptr": [{"ip": "2001:db8::1", "dns_ptr": "server.example.com"}], "id": 42},
          "floating_ips": [478], "firewalls": [{"id": 42, "status": "applied"}]
        },
        "private_net": [{"network": 4711, "ip": "10.0.0.2", "alias_ips": [], "mac_address": "86:00:ff:2a:7d:e1"}],
        "server_type": {"id": 1, "name": "cx11"},
        "datacenter": {"id": 1, "name": "fsn1-dc8"},
        "image": null, "iso": null, "rescue_enabled": false, "locked": false,
        "backup_window": "22-02", "outgoing_traffic": 123456, "ingoing_traffic": 123456,
        "included_traffic": 654321, "protection": {"delete": false, "rebuild": false},
        "labels": {"role": "web", "env": "prod"},
        "volumes": [], "load_balancers": [], "primary_disk_size": 50, "placement_group": null
      }],
      "meta": {"pagination": {"page": 1, "per_page": 25, "previous_page": null, "next_page": 4, "last_page": 4, "total_entries": 100}}
    }"#;

    #[test]
    fn the_documented_page_maps_to_instances() {
        let page: ServerPage = serde_json::from_str(DOCUMENTED).unwrap();
        let pagination = &page.meta.as_ref().unwrap().pagination;
        assert_eq!(
            (pagination.next_page, pagination.total_entries),
            (Some(4), Some(100))
        );
        let i = instance(page.servers.into_iter().next().unwrap()).unwrap();
        assert_eq!(i.id, "42");
        assert_eq!(i.name, "my-server");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.public_ipv4, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(i.private_ipv4, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(i.ipv6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(i.tags["role"], "web");
    }

    #[test]
    fn ipv6_only_servers_and_odd_networks() {
        let page: ServerPage = serde_json::from_str(
            r#"{"servers":[{"id":7,"name":"v6","status":"off","labels":{},"private_net":[],
                "public_net":{"ipv4":null,"ipv6":{"ip":"2a01:4f8:c17:1234::/64"},"floating_ips":[]}}],
                "meta":{"pagination":{"page":1,"per_page":50,"previous_page":null,"next_page":null,"last_page":1,"total_entries":1}}}"#,
        )
        .unwrap();
        let i = instance(page.servers.into_iter().next().unwrap()).unwrap();
        assert_eq!(i.public_ipv4, None);
        assert_eq!(i.ipv6, Some("2a01:4f8:c17:1234::1".parse().unwrap()));
        assert_eq!(i.state, InstanceState::Stopped);

        assert_eq!(
            server_ipv6("2001:db8:0:0:ffff::/64"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            server_ipv6("2001:db8::5/128"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(
            server_ipv6("2001:db8::7"),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(server_ipv6("2001:db8::/129"), None);
        assert_eq!(server_ipv6("1.2.3.4/32"), None);
        assert_eq!(server_ipv6("::/0"), Some("::1".parse().unwrap()));
    }

    #[test]
    fn statuses_map_as_documented() {
        for (status, want) in [
            ("initializing", InstanceState::Pending),
            ("starting", InstanceState::Pending),
            ("running", InstanceState::Running),
            ("stopping", InstanceState::Stopping),
            ("off", InstanceState::Stopped),
            ("deleting", InstanceState::Terminated),
            ("rebuilding", InstanceState::Pending),
            ("migrating", InstanceState::Pending),
            ("unknown", InstanceState::Pending),
            ("brand-new", InstanceState::Pending),
        ] {
            assert_eq!(state(status), want, "{status}");
        }
    }

    #[test]
    fn page_urls_carry_the_size_page_and_selector() {
        let source = HetznerInventory::new(
            "hz".into(),
            &Url::parse(DEFAULT_ENDPOINT).unwrap(),
            Token::new("t").unwrap(),
            Some("role==web,env!=dev".into()),
            HttpOptions::new(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(
            source.page_url(1).as_str(),
            "https://api.hetzner.cloud/v1/servers?per_page=50&label_selector=role%3D%3Dweb%2Cenv%21%3Ddev"
        );
        assert!(source.page_url(2).as_str().contains("&page=2&"));
    }
}
