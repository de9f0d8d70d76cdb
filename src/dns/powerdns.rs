//! `kind = "powerdns"`: a zone of a PowerDNS Authoritative server, through its HTTP API
//! (<https://doc.powerdns.com/authoritative/http-api/zone.html>).
//!
//! - Reading is one GET of the zone (`/api/v1/servers/{server_id}/zones/{zone}`), which
//!   carries every RRset: the sets asked for, the ownership records (`_ipdrift.*` TXT) and
//!   the zone listing come from that one answer.
//! - Writing is one PATCH of the zone's `rrsets` per batch, which PowerDNS applies in one
//!   transaction: `REPLACE` for each set written (and for the ownership TXT of each name
//!   created), `DELETE` for each owned set deleted (and for its ownership TXT once no type
//!   of that name is left to ipdrift).
//! - The API key goes in `X-API-Key`. A set with a disabled record is not overwritten: a
//!   REPLACE would drop the record someone switched off on purpose.
//!
//! Errors name the target, the zone, the call and what the key needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::BoxFuture;
use crate::clients::http::{ApiClient, Call, HttpOptions, READ_ONLY, api_url};
use crate::clients::token::Token;
use crate::config::secret_keys::SecretKeys;
use crate::config::{Fragment, SecretAt};
use crate::dns::http_api::{self, ListedSet};
use crate::dns::{
    DnsTarget, RecordChange, TargetKind, TargetSpec, ZoneContents, ZoneRead, ownership_name,
};
use crate::model::{DnsName, RecordKey, RecordSet};
use crate::validate;

pub const KIND: TargetKind = TargetKind {
    name: "powerdns",
    check,
};

/// The server PowerDNS's API serves unless `server_id` says otherwise.
pub const DEFAULT_SERVER_ID: &str = "localhost";

/// Where the API key is: `api_key_env` or `api_key_file`.
pub const API_KEY: SecretKeys<'static> = SecretKeys {
    file_key: "api_key_file",
    env_key: "api_key_env",
    missing_key: "api_key_env",
    needs: "the PowerDNS API needs its api-key: add api_key_env = \"VAR\" (an environment variable holding it) or api_key_file = \"path\"",
    at_parse: true,
};

/// What a write needs of the key; PowerDNS has one key per server, allowed everything.
const WRITE: &str = "the key must be the server's api-key, and the zone must not be a secondary";

/// A `kind = "powerdns"` target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerDnsConfig {
    /// The API's base URL (`api_url`), e.g. `http://127.0.0.1:8081`.
    pub api_url: Url,
    /// `server_id`, default [`DEFAULT_SERVER_ID`].
    pub server_id: String,
    pub api_key: SecretAt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPowerDns {
    api_url: Option<Spanned<String>>,
    server_id: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn TargetSpec>> {
    let raw: RawPowerDns = f.parse()?;
    let api_key = f.secret(
        &API_KEY,
        raw.api_key_file.as_ref(),
        raw.api_key_env.as_ref(),
    );
    let api_url = match &raw.api_url {
        None => {
            f.missing(
                "api_url",
                "the PowerDNS API's address is needed: add api_url = \"http://127.0.0.1:8081\" (its webserver-address and webserver-port)",
            );
            None
        }
        Some(text) => match validate::api_endpoint(text.get_ref()) {
            Ok(url) => Some(url),
            Err(message) => {
                f.error_at(text, "api_url", message);
                None
            }
        },
    };
    let server_id = match &raw.server_id {
        None => DEFAULT_SERVER_ID.to_string(),
        Some(id) => {
            let text = id.get_ref().trim();
            if text.is_empty()
                || !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                f.error_at(
                    id,
                    "server_id",
                    format!("{text:?} is not a server id; PowerDNS's own is \"localhost\""),
                );
                return None;
            }
            text.to_string()
        }
    };
    Some(Arc::new(PowerDnsConfig {
        api_url: api_url?,
        server_id,
        api_key: api_key?,
    }))
}

impl TargetSpec for PowerDnsConfig {
    fn build(
        &self,
        name: &str,
        zone: &DnsName,
        timeout: Duration,
    ) -> anyhow::Result<Box<dyn DnsTarget>> {
        let key = Token::load(&self.api_key.secret).map_err(|e| {
            let e =
                e.replacen("token_env", "api_key_env", 1)
                    .replacen("token_file", "api_key_file", 1);
            anyhow!("dns target {name:?}.{e}")
        })?;
        Ok(Box::new(PowerDnsTarget::new(
            name,
            zone.clone(),
            self,
            key,
            HttpOptions::new(timeout),
        )?))
    }

    fn secrets(&self) -> Vec<SecretAt> {
        vec![self.api_key.clone()]
    }
}

/// One PowerDNS zone.
pub struct PowerDnsTarget {
    name: String,
    zone: DnsName,
    client: ApiClient,
    /// `…/api/v1/servers/{server_id}/zones/{zone}`.
    zone_url: Url,
}

/// `GET …/zones/{zone}` — the fields ipdrift reads.
#[derive(Debug, Deserialize)]
struct Zone {
    rrsets: Vec<Rrset>,
}

#[derive(Debug, Deserialize)]
struct Rrset {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    records: Vec<Record>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
struct Record {
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// One entry of the PATCH body.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct RrsetChange {
    name: String,
    #[serde(rename = "type")]
    rtype: &'static str,
    changetype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    records: Vec<Record>,
}

#[derive(Debug, Serialize)]
struct Patch {
    rrsets: Vec<RrsetChange>,
}

impl PowerDnsTarget {
    pub fn new(
        name: &str,
        zone: DnsName,
        config: &PowerDnsConfig,
        key: Token,
        options: HttpOptions,
    ) -> anyhow::Result<PowerDnsTarget> {
        let owner = format!("dns target {name:?} (PowerDNS zone {zone})");
        let client = ApiClient::with_key_header(
            "PowerDNS",
            owner,
            "x-api-key",
            "api_key_env/api_key_file",
            key,
            options,
        )?;
        // The zone id is the zone's canonical name with its trailing dot.
        let zone_url = api_url(
            &config.api_url,
            &[
                "api",
                "v1",
                "servers",
                &config.server_id,
                "zones",
                zone.as_str(),
            ],
        );
        Ok(PowerDnsTarget {
            name: name.to_string(),
            zone,
            client,
            zone_url,
        })
    }

    async fn list(&self) -> anyhow::Result<Vec<ListedSet>> {
        let zone: Zone = self
            .client
            .get_json(&self.zone_url, &Call::new("zone listing", READ_ONLY))
            .await?;
        Ok(zone.rrsets.into_iter().map(listed).collect())
    }

    /// The RRsets of `keys`, the zone's CNAMEs and delegations and the names it uses
    /// itself, all from one GET of the zone.
    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<ZoneRead> {
        if keys.is_empty() {
            return Ok(ZoneRead::default());
        }
        let listing = self.list().await?;
        let rrsets = http_api::pick_rrsets(&listing, keys)
            .map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let (obstacles, zone_own) = http_api::zone_facts(&listing, &self.zone);
        Ok(ZoneRead {
            rrsets,
            obstacles,
            zone_own,
        })
    }

    async fn listing(&self) -> anyhow::Result<ZoneContents> {
        let listing = self.list().await?;
        let (obstacles, zone_own) = http_api::zone_facts(&listing, &self.zone);
        Ok(ZoneContents {
            obstacles,
            zone_own,
            ..http_api::zone_contents(&listing)
        })
    }

    fn who(&self) -> String {
        format!("dns target {:?} (PowerDNS zone {})", self.name, self.zone)
    }

    async fn send(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let patch = patch(changes, &self.zone).map_err(|why| anyhow!("{}: {why}", self.who()))?;
        let call = Call::new(format!("PATCH of {} rrset(s)", patch.rrsets.len()), WRITE);
        self.client
            .patch_json::<_, ()>(&self.zone_url, &patch, &call)
            .await
    }
}

/// A listed RRset in the neutral shape; one with a disabled record is special.
fn listed(set: Rrset) -> ListedSet {
    let special = set
        .records
        .iter()
        .any(|r| r.disabled)
        .then(|| "has a disabled record".to_string());
    ListedSet {
        name: set.name,
        rtype: set.rtype,
        ttl: set.ttl,
        values: set.records.into_iter().map(|r| r.content).collect(),
        special,
    }
}

fn replace(name: &DnsName, rtype: &'static str, ttl: u32, values: Vec<String>) -> RrsetChange {
    RrsetChange {
        name: name.as_str().to_string(),
        rtype,
        changetype: "REPLACE",
        ttl: Some(ttl),
        records: values
            .into_iter()
            .map(|content| Record {
                content,
                disabled: false,
            })
            .collect(),
    }
}

fn delete(name: &DnsName, rtype: &'static str) -> RrsetChange {
    RrsetChange {
        name: name.as_str().to_string(),
        rtype,
        changetype: "DELETE",
        ttl: None,
        records: Vec::new(),
    }
}

/// The PATCH for `changes`, checked first ([`http_api::check_batch`]).
fn patch(changes: &[RecordChange], zone: &DnsName) -> Result<Patch, String> {
    http_api::check_batch(changes, zone)?;
    let mut rrsets = Vec::new();
    for change in changes {
        let key = change.key();
        let rtype = key.rtype.as_str();
        rrsets.push(match change {
            RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => replace(
                &key.name,
                rtype,
                to.ttl,
                to.addrs.iter().map(ToString::to_string).collect(),
            ),
            RecordChange::Delete { .. } => delete(&key.name, rtype),
        });
    }
    let (created, disowned) = http_api::ownership_changes(changes);
    for (name, (owner, ttl)) in &created {
        rrsets.push(replace(
            &ownership_name(name),
            "TXT",
            *ttl,
            vec![http_api::quote_txt(owner)],
        ));
    }
    for name in &disowned {
        rrsets.push(delete(&ownership_name(name), "TXT"));
    }
    Ok(Patch { rrsets })
}

impl DnsTarget for PowerDnsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn zone(&self) -> &DnsName {
        &self.zone
    }

    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>> {
        Box::pin(async move { Ok(self.read_rrsets(keys).await?.rrsets) })
    }

    fn read_zone<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<ZoneRead>> {
        Box::pin(self.read_rrsets(keys))
    }

    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>> {
        Box::pin(async move { Ok(http_api::ownership_records(&self.list().await?)) })
    }

    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(self.listing())
    }

    fn read_zone_own_names(&self) -> BoxFuture<'_, anyhow::Result<BTreeSet<DnsName>>> {
        Box::pin(async move { Ok(http_api::zone_facts(&self.list().await?, &self.zone).1) })
    }

    /// The GET that reads the RRsets carries the whole zone.
    fn reads_carry_zone_own_names(&self) -> bool {
        true
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecordType;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    fn set(text: &str, rtype: RecordType, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: name(text),
                rtype,
            },
            ttl: 60,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_batch_is_one_patch_of_replaces_and_deletes_with_ownership() {
        let changes = vec![
            RecordChange::Replace {
                from: None,
                to: set("www.example.com.", RecordType::A, &["192.0.2.9"]),
            },
            RecordChange::Create {
                to: set("web-03.example.com.", RecordType::A, &["192.0.2.3"]),
                owner: "heritage=ipdrift,owner=a".into(),
                proxied: None,
            },
            RecordChange::Delete {
                from: set("web-09.example.com.", RecordType::Aaaa, &["2001:db8::9"]),
            },
        ];
        let body = serde_json::to_value(patch(&changes, &name("example.com.")).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"rrsets": [
                {"name": "www.example.com.", "type": "A", "changetype": "REPLACE", "ttl": 60,
                 "records": [{"content": "192.0.2.9", "disabled": false}]},
                {"name": "web-03.example.com.", "type": "A", "changetype": "REPLACE", "ttl": 60,
                 "records": [{"content": "192.0.2.3", "disabled": false}]},
                {"name": "web-09.example.com.", "type": "AAAA", "changetype": "DELETE"},
                {"name": "_ipdrift.web-03.example.com.", "type": "TXT", "changetype": "REPLACE",
                 "ttl": 60, "records": [{"content": "\"heritage=ipdrift,owner=a\"", "disabled": false}]},
                {"name": "_ipdrift.web-09.example.com.", "type": "TXT", "changetype": "DELETE"},
            ]})
        );
    }

    #[test]
    fn a_set_with_a_disabled_record_is_special() {
        let set = Rrset {
            name: "www.example.com.".into(),
            rtype: "A".into(),
            ttl: 60,
            records: vec![
                Record {
                    content: "192.0.2.1".into(),
                    disabled: false,
                },
                Record {
                    content: "192.0.2.2".into(),
                    disabled: true,
                },
            ],
        };
        assert!(listed(set).special.unwrap().contains("disabled"));
    }
}
