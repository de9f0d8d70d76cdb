//! Pure data shared by every module: instances as the clouds report them, DNS record sets
//! and HAProxy servers as they are and as they should be. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Lifecycle state of an instance, as the inventory source reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Terminated,
}

/// One server as an inventory source reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub state: InstanceState,
    #[serde(default)]
    pub public_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub private_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    pub fn address(&self, kind: AddressKind) -> Option<IpAddr> {
        match kind {
            AddressKind::PublicIpv4 => self.public_ipv4.map(IpAddr::V4),
            AddressKind::PrivateIpv4 => self.private_ipv4.map(IpAddr::V4),
            AddressKind::Ipv6 => self.ipv6.map(IpAddr::V6),
        }
    }
}

/// Which of an instance's addresses a rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    PublicIpv4,
    PrivateIpv4,
    Ipv6,
}

impl AddressKind {
    /// The name used in config, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::PublicIpv4 => "public_ipv4",
            AddressKind::PrivateIpv4 => "private_ipv4",
            AddressKind::Ipv6 => "ipv6",
        }
    }

    pub fn record_type(self) -> RecordType {
        match self {
            AddressKind::PublicIpv4 | AddressKind::PrivateIpv4 => RecordType::A,
            AddressKind::Ipv6 => RecordType::Aaaa,
        }
    }
}

/// The address record types ipdrift manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

impl RecordType {
    pub fn matches(self, addr: &IpAddr) -> bool {
        matches!(
            (self, addr),
            (RecordType::A, IpAddr::V4(_)) | (RecordType::Aaaa, IpAddr::V6(_))
        )
    }
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fully-qualified, lower-case DNS name with its trailing dot, e.g. `www.example.com.`.
/// Only constructed through [`crate::validate::dns_name`], so it is always valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DnsName(pub(crate) String);

impl DnsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `zone` or lies below it.
    pub fn is_in_zone(&self, zone: &DnsName) -> bool {
        zone.0 == "." || self.0 == zone.0 || self.0.ends_with(&format!(".{}", zone.0))
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one RRset: owner name and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    pub name: DnsName,
    pub rtype: RecordType,
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.rtype)
    }
}

/// One RRset of address records. Addresses are kept sorted so equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    pub key: RecordKey,
    pub ttl: u32,
    pub addrs: BTreeSet<IpAddr>,
}

/// Names of a zone that cannot hold address records, as a read of the zone showed them:
/// writing there would be refused or ignored by the server, so the plan reports such a name
/// as unrepairable instead of writing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Obstacles {
    /// Name → the target of the CNAME it holds (a CNAME allows no other data, RFC 1034 §3.6.2).
    pub cnames: BTreeMap<DnsName, DnsName>,
    /// Delegations inside the zone (names below the apex with NS records): addresses at and
    /// below them are the delegated zone's, not this one's (RFC 1034 §4.2.1).
    pub cuts: BTreeSet<DnsName>,
}

/// Why a name cannot hold address records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obstacle {
    /// It holds a CNAME to this name.
    Cname(DnsName),
    /// It is at or below this delegation.
    Delegation(DnsName),
}

impl Obstacles {
    /// What keeps `name` from holding address records, if anything.
    pub fn at(&self, name: &DnsName) -> Option<Obstacle> {
        if let Some(target) = self.cnames.get(name) {
            return Some(Obstacle::Cname(target.clone()));
        }
        self.cuts
            .iter()
            .find(|cut| name.is_in_zone(cut))
            .map(|cut| Obstacle::Delegation(cut.clone()))
    }

    pub fn extend(&mut self, other: Obstacles) {
        self.cnames.extend(other.cnames);
        self.cuts.extend(other.cuts);
    }
}

/// Whether the load balancer sends a server traffic (`ready`), only its existing
/// connections (`drain`, set by ipdrift only under `remove = "drain"`), or none (`maint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerAdmin {
    Ready,
    Drain,
    Maint,
}

impl fmt::Display for ServerAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerAdmin::Ready => "ready",
            ServerAdmin::Drain => "drain",
            ServerAdmin::Maint => "maint",
        })
    }
}

/// Identifies a server inside one load balancer: `backend/server`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerKey {
    pub backend: String,
    pub server: String,
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

/// What a backend server should look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredServer {
    pub key: ServerKey,
    pub intent: ServerIntent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerIntent {
    /// The instance runs: point the server at it and send it traffic.
    Serve { addr: IpAddr, port: u16 },
    /// The instance is known and not running: keep the server in maintenance.
    Maint,
}

/// A backend server as `show servers state` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedServer {
    pub key: ServerKey,
    /// `None` when HAProxy has no usable address (e.g. an unresolved FQDN).
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub admin: ServerAdmin,
    /// Whether the load balancer would serve the same after a restart: false when its
    /// config file (HAProxy's `config`) says otherwise, and the file needs rewriting.
    #[serde(default = "durable_by_default")]
    pub durable: bool,
}

fn durable_by_default() -> bool {
    true
}

/// `ip:port`, with brackets for IPv6: what `SocketAddr` displays, made without the
/// formatting machinery for IPv4 (see [`push_addr`]).
pub fn socket_text(addr: IpAddr, port: u16) -> String {
    let mut text = String::with_capacity(22);
    match addr {
        IpAddr::V4(_) => push_addr(&mut text, addr),
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(text, "[{v6}]");
        }
    }
    text.push(':');
    push_decimal(&mut text, u32::from(port));
    text
}

/// Appends `addr` as `Display` writes it. IPv4, the common case, is written digit by digit:
/// the formatting machinery was a third of the planner's time for 10 000 changed addresses.
pub fn push_addr(text: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(text, "{v6}");
        }
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(text: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        text.push(char::from(digit));
    }
}

impl RecordKey {
    /// `name TYPE`, as `Display` writes it, in one allocation.
    pub fn text(&self) -> String {
        let rtype = self.rtype.as_str();
        let mut text = String::with_capacity(self.name.0.len() + 1 + rtype.len());
        text.push_str(&self.name.0);
        text.push(' ');
        text.push_str(rtype);
        text
    }
}

impl ServerKey {
    /// `backend/server`, as `Display` writes it, in one allocation.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(self.backend.len() + 1 + self.server.len());
        text.push_str(&self.backend);
        text.push('/');
        text.push_str(&self.server);
        text
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn addresses_and_sockets_read_as_display_writes_them(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            port in any::<u16>(),
        ) {
            for addr in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
                let mut text = String::new();
                push_addr(&mut text, addr);
                prop_assert_eq!(text, addr.to_string());
                prop_assert_eq!(socket_text(addr, port), SocketAddr::new(addr, port).to_string());
            }
        }

        #[test]
        fn decimals_read_as_display_writes_them(n in any::<u32>()) {
            let mut text = String::new();
            push_decimal(&mut text, n);
            prop_assert_eq!(text, n.to_string());
        }

        #[test]
        fn key_texts_are_what_display_writes(name in "[a-z0-9.-]{1,40}", server in "[a-z0-9_]{1,20}") {
            let key = RecordKey { name: DnsName(name.clone()), rtype: RecordType::Aaaa };
            prop_assert_eq!(key.text(), key.to_string());
            let key = ServerKey { backend: name, server };
            prop_assert_eq!(key.text(), key.to_string());
        }
    }
}
