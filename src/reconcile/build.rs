//! A [`Config`] → the trait objects a [`super::Reconciler`] runs on, through each kind's
//! builder ([`crate::inventory::SourceSpec`], [`crate::dns::TargetSpec`],
//! [`crate::lb::LbSpec`]). Building reads the secrets (TSIG keys, cloud API tokens), so a
//! missing one stops `run` from starting and a reload from taking effect.

use super::Parts;
use crate::config::Config;

/// Builds every source and target of `config`. Fails when a secret is missing. The DNS
/// targets are built first, so that a missing TSIG key is the error reported.
pub fn parts(config: &Config) -> anyhow::Result<Parts> {
    let timeout = config.controller.timeout;
    let dns = config
        .dns
        .iter()
        .map(|d| d.spec.build(&d.name, &d.zone, timeout))
        .collect::<anyhow::Result<_>>()?;
    let inventories = config
        .inventories
        .iter()
        .map(|inv| inv.spec.build(&inv.name, timeout))
        .collect::<anyhow::Result<_>>()?;
    let load_balancers = config
        .load_balancers
        .iter()
        .map(|lb| lb.spec.build(&lb.name, timeout))
        .collect::<anyhow::Result<_>>()?;
    Ok(Parts {
        inventories,
        dns,
        load_balancers,
    })
}
