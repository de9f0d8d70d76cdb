//! A [`Config`] → the trait objects a [`super::Reconciler`] runs on: one small function per
//! wing (inventories, DNS targets, load balancers). Reads the secrets (TSIG keys, cloud API
//! tokens), so a missing one stops `run` from starting and a reload from taking effect.

use std::collections::BTreeMap;

use anyhow::anyhow;

use super::Parts;
use crate::config::{Config, DnsKind, InventoryKind};
use crate::dns::DnsTarget;
use crate::dns::rfc2136::Rfc2136Target;
use crate::dns::tsig::TsigKey;
use crate::inventory::Inventory;
use crate::inventory::digitalocean::DigitalOceanInventory;
use crate::inventory::exec::ExecInventory;
use crate::inventory::file::FileInventory;
use crate::inventory::hetzner::HetznerInventory;
use crate::inventory::http::{HttpOptions, Token};
use crate::lb::LoadBalancer;
use crate::lb::haproxy::client::HaproxyClient;

/// Builds every source and target of `config`. Fails when a secret is missing.
pub fn parts(config: &Config) -> anyhow::Result<Parts> {
    let keys = config.load_keys().map_err(|e| anyhow!("{e}"))?;
    Ok(Parts {
        inventories: build_inventories(config)?,
        dns: build_dns(config, &keys)?,
        load_balancers: build_load_balancers(config),
    })
}

fn build_inventories(config: &Config) -> anyhow::Result<Vec<Box<dyn Inventory>>> {
    let timeout = config.controller.timeout;
    config
        .inventories
        .iter()
        .map(|inv| -> anyhow::Result<Box<dyn Inventory>> {
            let token =
                |source| Token::load(source).map_err(|e| anyhow!("inventory {:?}.{e}", inv.name));
            Ok(match &inv.kind {
                InventoryKind::Exec {
                    command,
                    timeout,
                    dir,
                } => Box::new(ExecInventory::new(
                    inv.name.clone(),
                    command.clone(),
                    *timeout,
                    dir.clone(),
                )),
                InventoryKind::File { path } => {
                    Box::new(FileInventory::new(inv.name.clone(), path.clone()))
                }
                InventoryKind::DigitalOcean {
                    token: source,
                    tag,
                    endpoint,
                } => Box::new(DigitalOceanInventory::new(
                    inv.name.clone(),
                    endpoint,
                    token(source)?,
                    tag.clone(),
                    HttpOptions::new(timeout),
                )?),
                InventoryKind::Hetzner {
                    token: source,
                    label_selector,
                    endpoint,
                } => Box::new(HetznerInventory::new(
                    inv.name.clone(),
                    endpoint,
                    token(source)?,
                    label_selector.clone(),
                    HttpOptions::new(timeout),
                )?),
                #[cfg(feature = "aws")]
                InventoryKind::Aws { access, filters } => {
                    Box::new(crate::inventory::aws::AwsInventory::new(
                        inv.name.clone(),
                        access.clone(),
                        filters.clone(),
                        HttpOptions::new(timeout),
                    ))
                }
                #[cfg(not(feature = "aws"))]
                InventoryKind::Aws { .. } => {
                    // Unreachable through `config::parse`, which refuses the kind.
                    return Err(anyhow!(
                        "inventory {:?}: {}",
                        inv.name,
                        crate::config::WITHOUT_AWS
                    ));
                }
            })
        })
        .collect()
}

/// `keys`: each RFC 2136 target's TSIG key, by target name ([`Config::load_keys`]).
fn build_dns(
    config: &Config,
    keys: &BTreeMap<String, TsigKey>,
) -> anyhow::Result<Vec<Box<dyn DnsTarget>>> {
    let timeout = config.controller.timeout;
    config
        .dns
        .iter()
        .map(|d| -> anyhow::Result<Box<dyn DnsTarget>> {
            Ok(match &d.kind {
                DnsKind::Rfc2136 { server, .. } => Box::new(Rfc2136Target::new(
                    d.name.clone(),
                    *server,
                    d.zone.clone(),
                    keys[&d.name].clone(),
                    timeout,
                )),
                #[cfg(feature = "aws")]
                DnsKind::Route53 {
                    access,
                    zone_id,
                    wait,
                } => Box::new(crate::dns::route53::Route53Target::new(
                    d.name.clone(),
                    d.zone.clone(),
                    zone_id.clone(),
                    access.clone(),
                    *wait,
                    timeout,
                )),
                #[cfg(not(feature = "aws"))]
                DnsKind::Route53 { .. } => {
                    return Err(anyhow!(
                        "dns target {:?}: {}",
                        d.name,
                        crate::config::WITHOUT_AWS
                    ));
                }
            })
        })
        .collect()
}

fn build_load_balancers(config: &Config) -> Vec<Box<dyn LoadBalancer>> {
    let timeout = config.controller.timeout;
    config
        .haproxy
        .iter()
        .map(|h| -> Box<dyn LoadBalancer> {
            Box::new(HaproxyClient::new(
                h.name.clone(),
                h.runtime_api.clone(),
                timeout,
            ))
        })
        .collect()
}
