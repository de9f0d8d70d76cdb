//! ipdrift keeps DNS records and HAProxy backends pointed at the right IP addresses when a
//! cloud provider changes them.
//!
//! One reconcile pass: observe → desire → plan → apply → verify.
//!
//! - [`model`]: pure data (instances, record sets, backend servers).
//! - [`validate`]: checks on every name, address and port before it is sent anywhere.
//! - [`haproxy`]: HAProxy runtime API; `protocol` is pure, `client` does the socket I/O.
//! - [`dns`]: DNS targets (RFC 2136 + TSIG) behind the `DnsTarget` trait.

pub mod dns;
pub mod haproxy;
pub mod model;
pub mod validate;

use std::future::Future;
use std::pin::Pin;

/// The boxed future that the I/O traits return, so targets can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
