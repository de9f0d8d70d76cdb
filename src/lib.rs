//! ipdrift keeps DNS records and HAProxy backends pointed at the right IP addresses when a
//! cloud provider changes them.
//!
//! One reconcile pass: observe → desire → plan → apply → verify. The pure core does no I/O
//! and is tested with unit and property tests; the I/O modules are thin and sit behind
//! small traits.
//!
//! Pure core:
//! - [`model`]: instances, record sets, backend servers.
//! - [`validate`]: checks on every name, address and port before it is sent anywhere.
//! - [`template`]: `{name}` / `{id}` name templates.
//! - [`config`]: TOML → spans → validated [`config::Config`]: the driver hands each
//!   `[[inventory]]`, `[[dns]]` and load-balancer table to its kind through the wings' lists;
//!   [`config::checker`] is what the kinds check with (file:line:field errors); only
//!   [`config::secrets`] reads files and the environment.
//! - [`desired`]: instances × rules → desired state.
//! - [`forecast`]: announced maintenance → the records and servers it will break.
//! - [`maintenance`]: acting before it: lower TTLs, drain servers, restore after it.
//! - [`plan`]: desired × observed → changes, guard refusals; `plan::render` prints them;
//!   `plan::reviewed` holds `apply --plan` to a reviewed plan.
//! - [`explain`]: one record or server: its rule, instances, desired value and verdict.
//! - [`init`]: what the sources, zones and load balancers hold → the rules that keep it.
//! - [`lb::haproxy::protocol`], [`dns::tsig`], [`dns::rfc2136::message`],
//!   [`dns::rfc2136::answer`]: command and message builders, response and key parsers.
//! - [`dns::secondaries`]: how a zone's secondaries stood after a write (served it, when;
//!   or lagging, how), for the report, metrics and audit log; the rfc2136 target's
//!   [`dns::rfc2136::secondaries`] asks them.
//! - [`audit::tracker`]: state kept across passes → audit events (drift seen, converged…).
//! - [`audit::timeline`], [`audit::render`]: audit log → incidents → text, JSON, Markdown.
//!
//! I/O:
//! - [`clients`]: what several kinds share to reach a cloud API: [`clients::http`], the
//!   JSON client (token, timeouts, retries); [`clients::token`]; and `clients::aws`
//!   (feature `aws`), the SDK set-up (credentials chain, region, HTTPS on ring, timeouts)
//!   and error wording of the EC2 source and the Route 53 target.
//!
//! The three wings. Each kind is one file (or folder) holding its config fragment, its
//! checks, its builder and its I/O; each wing lists its kinds once, in `KINDS`:
//! - [`inventory`]: sources of instances (`file`, `exec`, `digitalocean`, `hetzner`; `aws`,
//!   EC2 with the AWS SDK, behind the default cargo feature `aws`).
//! - [`dns`]: DNS targets (`rfc2136` with TSIG; `route53`, feature `aws`).
//! - [`lb`]: load balancers behind one kind-neutral trait and change type (`haproxy`: the
//!   runtime API over a unix or TCP socket, [`lb::haproxy::client`]).
//!
//! Around them:
//! - [`reconcile`]: one pass over all of them, as trait objects; [`reconcile::build`] makes
//!   them from a config (tests give fakes to [`reconcile::Reconciler::from_parts`]).
//! - [`controller`]: the `run` loop, with a pure per-target backoff policy
//!   ([`controller::backoff`]); [`trigger`]: what starts a pass before the interval is up
//!   (a source's watch, `POST /reconcile`), debounced, with pass numbers; [`admin`]:
//!   /metrics /healthz /readyz /reconcile on a socket the caller bound; [`metrics`]: names.
//! - [`ha`]: leader election on etcd (`[ha]`) and the fence every write batch checks.
//! - [`audit`]: the audit log's event schema and its O_APPEND writer and reader.
//! - [`notify`]: webhook notifications through bounded queues, with timeouts and retries.
//! - [`cli`], [`commands`]: the command line and what each command does.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod controller;
pub mod desired;
pub mod dns;
pub mod explain;
pub mod forecast;
pub mod ha;
pub mod init;
pub mod inventory;
pub mod lb;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plan;
pub mod reconcile;
pub mod template;
pub mod trigger;
pub mod validate;

use std::future::Future;
use std::pin::Pin;

/// The boxed future that the I/O traits return, so targets can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// reqwest is built without a TLS crypto provider of its own; HTTPS (cloud APIs, webhooks)
/// uses ring, which TSIG needs anyway. Call before building an HTTP client; idempotent.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
