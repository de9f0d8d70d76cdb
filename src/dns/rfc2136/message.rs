//! Building the messages ipdrift sends (RFC 1035 queries, RFC 5936 zone transfer queries,
//! RFC 2136 UPDATEs) and signing them (RFC 8945). Pure: no I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigVerifier, TSigner};
use hickory_proto::serialize::binary::BinEncodable;

use crate::dns::tsig::TsigKey;
use crate::model::{DnsName, RecordSet, RecordType};
use crate::validate;

/// A TXT character-string holds at most 255 bytes (RFC 1035 §3.3).
const MAX_CHARACTER_STRING: usize = 255;

/// Who ipdrift talks to about which zone, with which key: what every message and every
/// error of one target needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The target's name from config.
    pub name: String,
    /// The zone's primary.
    pub server: SocketAddr,
    pub zone: DnsName,
    pub key: TsigKey,
}

impl Endpoint {
    /// `ns1 (127.0.0.1:53)`: how errors name this target.
    pub fn who(&self) -> String {
        format!("{} ({})", self.name, self.server)
    }

    /// Validates `name` again (a `DnsName` that came through serde skipped validation) and
    /// converts it for hickory.
    pub fn checked_name(&self, name: &DnsName) -> anyhow::Result<Name> {
        let name = validate::dns_name(name.as_str())
            .map_err(|why| anyhow!("{}: refusing to send a bad name: {why}", self.who()))?;
        Name::from_ascii(name.as_str())
            .map_err(|why| anyhow!("{}: refusing to send {name}: {why}", self.who()))
    }

    /// [`Self::checked_name`] for an owner name, which must also lie inside the zone.
    pub fn owner_name(&self, name: &DnsName) -> anyhow::Result<Name> {
        if !name.is_in_zone(&self.zone) {
            bail!(
                "{}: {name} is outside zone {}; this target can only read and write names in its zone (check the record name or the target's zone)",
                self.who(),
                self.zone
            );
        }
        self.checked_name(name)
    }
}

/// A query for one RRset: class IN, recursion not desired (RFC 1035 §4.1.1), since the
/// answer must come from the server's own zone data.
pub fn query_message(id: u16, owner: Name, rtype: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(owner, hickory_type(rtype)));
    message
}

/// A query for one of the apex's own RRsets (SOA, NS, MX), as [`query_message`].
pub fn zone_own_query(id: u16, apex: Name, rtype: hickory_proto::rr::RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(apex, rtype));
    message
}

/// A query for the zone's SOA, as [`query_message`] for the apex: asked with and without
/// the key, it shows whether the server serves the zone and accepts the key.
pub fn soa_query(id: u16, zone: Name) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(zone, hickory_proto::rr::RecordType::SOA));
    message
}

/// An UPDATE that changes nothing, with one prerequisite that holds in every zone (its SOA
/// exists, RFC 2136 §2.4.1): servers answer it as they answer any UPDATE with the key,
/// REFUSED (or BADKEY) when the key may not update the zone.
pub fn permission_probe(id: u16, zone: Name) -> Message {
    let soa = bare_rrset(
        zone.clone(),
        hickory_proto::rr::RecordType::SOA,
        DNSClass::ANY,
    );
    update_message(id, zone, vec![soa], Vec::new())
}

/// A zone transfer query (RFC 5936 §2.1.1): the zone, type AXFR, class IN.
pub fn transfer_query(id: u16, zone: Name) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(zone, hickory_proto::rr::RecordType::AXFR));
    message
}

/// An UPDATE (RFC 2136 §2): the zone section names the zone (§2.3: type SOA, class IN), then
/// the prerequisite section (§2.4) and the update section (§2.5).
pub fn update_message(
    id: u16,
    zone: Name,
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Update);
    message.metadata.recursion_desired = false;
    let mut zone_section = Query::query(zone, hickory_proto::rr::RecordType::SOA);
    zone_section.set_query_class(DNSClass::IN);
    message.add_query(zone_section);
    message.add_answers(prerequisites);
    message.add_authorities(updates);
    message
}

/// An RRset named without data (TTL 0, empty RDATA); its class and section say what it
/// means. As a prerequisite, ANY is "RRset exists (value independent)" (RFC 2136 §2.4.1,
/// failing with NXRRSET) and NONE is "RRset does not exist" (§2.4.3, failing with YXRRSET);
/// as an update, ANY is "Delete an RRset" (§2.5.2).
pub(super) fn bare_rrset(
    owner: Name,
    rtype: hickory_proto::rr::RecordType,
    class: DNSClass,
) -> Record {
    let mut record = Record::update0(owner, 0, rtype);
    record.dns_class = class;
    record
}

/// "Add to an RRset" (RFC 2136 §2.5.1) for each address of `to`.
pub(super) fn add_rrset(owner: Name, to: &RecordSet) -> Result<Vec<Record>, validate::Invalid> {
    let rtype = to.key.rtype;
    let mut records = Vec::new();
    for &addr in &to.addrs {
        validate::target_addr(addr)?;
        let rdata = match (rtype, addr) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
            (RecordType::Aaaa, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
            _ => {
                return Err(validate::Invalid(format!(
                    "a {rtype} record cannot hold the address {addr}"
                )));
            }
        };
        records.push(Record::from_rdata(owner.clone(), to.ttl, rdata));
    }
    Ok(records)
}

/// The ownership record: one TXT RR holding `text`, split into character-strings of at most
/// 255 bytes (RFC 1035 §3.3.14), which readers concatenate.
pub(super) fn ownership_record(owner: Name, ttl: u32, text: &str) -> Record {
    let mut strings: Vec<&[u8]> = text.as_bytes().chunks(MAX_CHARACTER_STRING).collect();
    if strings.is_empty() {
        // TXT-DATA is one or more character-strings.
        strings.push(b"");
    }
    Record::from_rdata(owner, ttl, RData::TXT(TXT::from_bytes(strings)))
}

/// Signs `message` (RFC 8945 §5.1) and returns the verifier for its answer.
pub fn sign(message: &mut Message, signer: &TSigner) -> anyhow::Result<TSigVerifier> {
    // TSIG carries wall-clock time (RFC 8945 §4.2); tokio's clock has no epoch.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970; TSIG needs the real time")?
        .as_secs();
    message
        .finalize(signer, now)
        .context("signing a DNS message with TSIG")?
        .context("hickory returned no TSIG verifier for a signed message")
}

/// The size of `item` encoded on its own, without name compression against anything else.
pub(super) fn encoded_len(item: &impl BinEncodable) -> anyhow::Result<usize> {
    Ok(item
        .to_bytes()
        .context("encoding a record of the DNS UPDATE")?
        .len())
}

/// Whether an encoded message has its TC (truncated) flag set (RFC 1035 §4.1.1).
pub fn is_truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

pub(super) fn hickory_type(rtype: RecordType) -> hickory_proto::rr::RecordType {
    match rtype {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;

    #[test]
    fn addresses_must_fit_the_record_type_and_be_usable() {
        let owner = Name::from_ascii("www.example.test.").unwrap();
        let wrong_family = rrset("www.example.test.", RecordType::Aaaa, 60, &["192.0.2.1"]);
        assert!(add_rrset(owner.clone(), &wrong_family).is_err());
        let unspecified = rrset("www.example.test.", RecordType::A, 60, &["0.0.0.0"]);
        assert!(add_rrset(owner, &unspecified).is_err());
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        let endpoint = endpoint();
        let error = endpoint.owner_name(&name("www.example.org.")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("ns1 (127.0.0.1:5353)"), "{text}");
        assert!(text.contains("outside zone example.test."), "{text}");
        // A suffix match is not zone membership.
        assert!(endpoint.owner_name(&name("wwwexample.test.")).is_err());
        // A DnsName that skipped validation (serde) is still checked.
        let smuggled = DnsName("a b.example.test.".into());
        assert!(endpoint.owner_name(&smuggled).is_err());
    }
}
