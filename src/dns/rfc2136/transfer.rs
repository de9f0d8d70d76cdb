//! Reading a zone transfer (AXFR, RFC 5936): the ownership records and the address RRsets
//! of the zone, as the transfer's messages arrive. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use hickory_proto::rr::{Name, RData, Record, TSigVerifier};

use super::answer::{Request, zone_own_name};
use super::message::Endpoint;

use crate::dns::{OWNERSHIP_LABEL, ZoneContents, ZoneRead};
use crate::model::{DnsName, Obstacles, RecordKey, RecordSet, RecordType};
use crate::validate;

/// The records of a zone transfer as its messages arrive, keeping the ownership records and
/// the A and AAAA RRsets. RFC 5936 §2.2: the transfer opens with the zone's SOA and closes
/// with it again.
#[derive(Debug)]
pub struct ZoneListing {
    zone: Name,
    /// How many messages of the transfer have come.
    messages: usize,
    opened: bool,
    /// Records between the opening and the closing SOA.
    pub records: usize,
    /// Managed name → the texts of its ownership records (normally exactly one).
    ownership: BTreeMap<DnsName, BTreeSet<String>>,
    rrsets: BTreeMap<RecordKey, RecordSet>,
    /// Names below the apex that have NS records: zone cuts. Address records at and below
    /// them are glue, not the zone's own data (RFC 1034 §4.2.1), and a query for them gets
    /// a referral, not an answer.
    cuts: Vec<DnsName>,
    /// Name → the target of its CNAME.
    cnames: BTreeMap<DnsName, DnsName>,
    /// The zone's name, to tell which targets lie inside it (`None` if it is no valid
    /// [`DnsName`], and then the transfer fails at its first SOA anyway).
    apex: Option<DnsName>,
    /// The names the zone uses itself: its SOA primary, every NS, MX and SRV target inside it.
    own: BTreeSet<DnsName>,
}

impl ZoneListing {
    pub fn new(zone: Name) -> Self {
        Self {
            messages: 0,
            opened: false,
            records: 0,
            ownership: BTreeMap::new(),
            rrsets: BTreeMap::new(),
            cuts: Vec::new(),
            cnames: BTreeMap::new(),
            apex: validate::dns_name(&zone.to_ascii()).ok(),
            own: BTreeSet::new(),
            zone,
        }
    }

    /// Takes the next message of the transfer that the query with id `query_id` (signed
    /// with the verifier's key) asked for, as the network delivered it: it must answer that
    /// query and be signed with the key ([`Endpoint::check_answer`]). True once the closing
    /// SOA has come.
    pub fn take_answer(
        &mut self,
        endpoint: &Endpoint,
        query_id: u16,
        answer: &[u8],
        verifier: &mut TSigVerifier,
    ) -> anyhow::Result<bool> {
        self.messages += 1;
        if answer.get(..2) != Some(&query_id.to_be_bytes()[..]) {
            bail!(
                "{} answered the zone transfer with a different message id; is something else answering on that address?",
                endpoint.who()
            );
        }
        let request = Request::Transfer {
            message: self.messages,
        };
        let message = endpoint.check_answer(request, answer, verifier)?;
        self.take(&message.answers).map_err(|why| {
            anyhow!(
                "{} sent a zone transfer (AXFR) of {} that {why}",
                endpoint.who(),
                endpoint.zone
            )
        })
    }

    /// Takes the answer records of the next message; true once the closing SOA has come.
    /// The error says what is wrong with the transfer.
    pub fn take(&mut self, answers: &[Record]) -> Result<bool, String> {
        for (index, record) in answers.iter().enumerate() {
            let is_soa = record.record_type() == hickory_proto::rr::RecordType::SOA;
            if !self.opened {
                if !is_soa || record.name != self.zone {
                    break;
                }
                self.opened = true;
                // The SOA names the zone's primary.
                if let Some(apex) = &self.apex {
                    self.own.extend(zone_own_name(apex, record));
                }
            } else if is_soa {
                if index + 1 != answers.len() {
                    return Err("has records after its closing SOA record".into());
                }
                return Ok(true);
            } else {
                self.records += 1;
                self.keep(record);
            }
        }
        if !self.opened {
            return Err(
                "does not start with the zone's SOA record (RFC 5936 §2.2); is the target's zone right?"
                    .into(),
            );
        }
        Ok(false)
    }

    /// Keeps `record` if it is an ownership record, an address record, a zone cut or a
    /// CNAME, and the name it says the zone uses itself.
    pub fn keep(&mut self, record: &Record) {
        if let Some(apex) = &self.apex {
            self.own.extend(zone_own_name(apex, record));
        }
        if let Some((name, text)) = ownership_entry(record) {
            self.ownership.entry(name).or_default().insert(text);
        } else if let Some((key, addr)) = address_entry(record) {
            let rrset = self.rrsets.entry(key).or_insert_with_key(|key| RecordSet {
                key: key.clone(),
                ttl: record.ttl,
                addrs: BTreeSet::new(),
            });
            // RFC 2181 §5.2 requires equal TTLs; as for queries, the lowest counts.
            rrset.ttl = rrset.ttl.min(record.ttl);
            rrset.addrs.insert(addr);
        } else if record.record_type() == hickory_proto::rr::RecordType::NS
            && record.name != self.zone
            && let Ok(cut) = validate::dns_name(&record.name.to_ascii())
        {
            self.cuts.push(cut);
        } else if let RData::CNAME(target) = &record.data
            && let Ok(name) = validate::dns_name(&record.name.to_ascii())
            && let Ok(target) = validate::dns_name(&target.0.to_ascii())
        {
            self.cnames.insert(name, target);
        }
    }

    /// The zone's CNAMEs and delegations.
    fn obstacles(cuts: Vec<DnsName>, cnames: BTreeMap<DnsName, DnsName>) -> Obstacles {
        Obstacles {
            cnames,
            cuts: cuts.into_iter().collect(),
        }
    }

    /// The RRsets of `keys` that the zone holds, and its CNAMEs and delegations.
    pub fn rrsets_of(self, keys: &BTreeSet<&RecordKey>) -> ZoneRead {
        let Self {
            mut rrsets,
            cuts,
            cnames,
            own,
            ..
        } = self;
        ZoneRead {
            rrsets: keys
                .iter()
                .filter(|key| !is_glue(&cuts, key))
                .filter_map(|key| rrsets.remove(*key))
                .collect(),
            obstacles: Self::obstacles(cuts, cnames),
            zone_own: own,
        }
    }

    /// Every ownership record and address RRset. A name with several ownership records gets
    /// their texts sorted and joined by newlines, which matches no
    /// [`crate::dns::ownership_text`]: ambiguous ownership counts as none.
    pub fn into_contents(self) -> ZoneContents {
        let Self {
            ownership,
            rrsets,
            cuts,
            cnames,
            own,
            ..
        } = self;
        let rrsets = rrsets
            .into_values()
            .filter(|rrset| !is_glue(&cuts, &rrset.key))
            .collect();
        let ownership = ownership
            .into_iter()
            .map(|(name, texts)| (name, texts.into_iter().collect::<Vec<_>>().join("\n")))
            .collect();
        ZoneContents {
            ownership,
            rrsets: Some(rrsets),
            obstacles: Self::obstacles(cuts, cnames),
            zone_own: own,
        }
    }
}

/// Whether `key` lies at or below one of the zone `cuts`, where address records are glue.
fn is_glue(cuts: &[DnsName], key: &RecordKey) -> bool {
    cuts.iter().any(|cut| key.name.is_in_zone(cut))
}

/// The managed name and text of `record` if it is an ownership record: a TXT record at
/// `_ipdrift.<name>`, its character-strings concatenated. A name that is not a valid
/// [`DnsName`] is never one ipdrift manages, so its record is not ipdrift's.
fn ownership_entry(record: &Record) -> Option<(DnsName, String)> {
    let RData::TXT(txt) = &record.data else {
        return None;
    };
    // `to_ascii` escapes dots inside labels, so the first `.` ends the first label.
    let owner = record.name.to_ascii();
    let (label, managed) = owner.split_once('.')?;
    if !label.eq_ignore_ascii_case(OWNERSHIP_LABEL) {
        return None;
    }
    let managed = validate::dns_name(managed).ok()?;
    let text = String::from_utf8_lossy(&txt.txt_data.concat()).into_owned();
    Some((managed, text))
}

/// The RRset key and address of `record` if it is an A or AAAA record at a name ipdrift
/// could manage (a valid [`DnsName`]).
fn address_entry(record: &Record) -> Option<(RecordKey, IpAddr)> {
    let (rtype, addr) = match &record.data {
        RData::A(a) => (RecordType::A, IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => (RecordType::Aaaa, IpAddr::V6(aaaa.0)),
        _ => return None,
    };
    let name = validate::dns_name(&record.name.to_ascii()).ok()?;
    Some((RecordKey { name, rtype }, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;
    use hickory_proto::rr::rdata::{A, AAAA};

    use crate::dns::rfc2136::message::ownership_record;

    fn zone_listing() -> ZoneListing {
        ZoneListing::new(Name::from_ascii("EXAMPLE.test.").unwrap())
    }

    #[test]
    fn long_ownership_texts_are_split_into_character_strings_and_rejoined() {
        use hickory_proto::serialize::binary::{BinDecodable as _, BinEncodable as _};
        let text = format!("heritage=ipdrift,owner={}", "é".repeat(300));
        let record = ownership_record(ownership_of_www(), 60, &text);
        let lengths: Vec<usize> = txt_texts(&record).iter().map(|s| s.len()).collect();
        assert_eq!(lengths, [255, 255, text.len() - 510]);
        let decoded = Record::from_bytes(&record.to_bytes().unwrap()).unwrap();
        assert_eq!(
            ownership_entry(&decoded),
            Some((name("www.example.test."), text))
        );
    }

    #[test]
    fn a_zone_listing_keeps_ownership_records_until_the_closing_soa() {
        let mut listing = zone_listing();
        let first = [
            soa(),
            Record::from_rdata(www(), 300, RData::A(A::new(192, 0, 2, 1))),
            txt("_ipdrift.www.example.test.", "heritage=ipdrift,owner=a"),
            txt("_IPDRIFT.Api.example.test.", "heritage=ipdrift,owner=b"),
            txt("_ipdrift.example.test.", "heritage=ipdrift,owner=apex"),
            txt("other.www.example.test.", "not ownership"),
            txt("_ipdriftx.www.example.test.", "not ownership"),
            Record::from_rdata(
                Name::from_ascii("_ipdrift.v4.example.test.").unwrap(),
                300,
                RData::A(A::new(192, 0, 2, 2)),
            ),
        ];
        assert_eq!(listing.take(&first), Ok(false));
        let last = [
            txt("_ipdrift.twice.example.test.", "heritage=ipdrift,owner=b"),
            txt("_ipdrift.twice.example.test.", "heritage=ipdrift,owner=a"),
            soa(),
        ];
        assert_eq!(listing.take(&last), Ok(true));
        let owners: Vec<(String, String)> = listing
            .into_contents()
            .ownership
            .into_iter()
            .map(|(name, text)| (name.as_str().to_string(), text))
            .collect();
        let expected = [
            ("api.example.test.", "heritage=ipdrift,owner=b"),
            ("example.test.", "heritage=ipdrift,owner=apex"),
            (
                "twice.example.test.",
                "heritage=ipdrift,owner=a\nheritage=ipdrift,owner=b",
            ),
            ("www.example.test.", "heritage=ipdrift,owner=a"),
        ]
        .map(|(name, text)| (name.to_string(), text.to_string()));
        assert_eq!(owners, expected);
    }

    #[test]
    fn a_zone_listing_keeps_address_rrsets_but_not_glue_below_a_zone_cut() {
        let record = |owner: &str, ttl: u32, data: RData| {
            Record::from_rdata(Name::from_ascii(owner).unwrap(), ttl, data)
        };
        let ns = |target: &str| {
            RData::NS(hickory_proto::rr::rdata::NS(
                Name::from_ascii(target).unwrap(),
            ))
        };
        let mut listing = zone_listing();
        let records = [
            soa(),
            record("example.test.", 300, ns("ns1.example.test.")),
            record("ns1.example.test.", 300, RData::A(A::new(127, 0, 0, 1))),
            record("WWW.example.test.", 300, RData::A(A::new(192, 0, 2, 1))),
            record("www.example.test.", 120, RData::A(A::new(192, 0, 2, 2))),
            record(
                "www.example.test.",
                300,
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ),
            record("sub.example.test.", 300, ns("ns.sub.example.test.")),
            record("ns.sub.example.test.", 300, RData::A(A::new(192, 0, 2, 53))),
            record("*.example.test.", 300, RData::A(A::new(192, 0, 2, 9))),
            record(
                "Alias.example.test.",
                300,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(www())),
            ),
            soa(),
        ];
        assert_eq!(listing.take(&records), Ok(true));
        assert_eq!(listing.records, 9, "the records between the two SOAs");
        let contents = listing.into_contents();
        assert_eq!(
            contents.rrsets,
            Some(vec![
                rrset("ns1.example.test.", RecordType::A, 300, &["127.0.0.1"]),
                rrset(
                    "www.example.test.",
                    RecordType::A,
                    120,
                    &["192.0.2.1", "192.0.2.2"]
                ),
                rrset("www.example.test.", RecordType::Aaaa, 300, &["2001:db8::1"]),
            ])
        );

        let mut listing = zone_listing();
        assert_eq!(listing.take(&records), Ok(true));
        let www_a = RecordKey {
            name: name("www.example.test."),
            rtype: RecordType::A,
        };
        let glue = RecordKey {
            name: name("ns.sub.example.test."),
            rtype: RecordType::A,
        };
        let absent = RecordKey {
            name: name("nothing.example.test."),
            rtype: RecordType::A,
        };
        let read = listing.rrsets_of(&BTreeSet::from([&www_a, &glue, &absent]));
        assert_eq!(
            read.obstacles.cuts,
            BTreeSet::from([name("sub.example.test.")])
        );
        assert_eq!(
            read.obstacles.cnames,
            BTreeMap::from([(name("alias.example.test."), name("www.example.test."))])
        );
        assert_eq!(
            read.rrsets,
            [rrset(
                "www.example.test.",
                RecordType::A,
                120,
                &["192.0.2.1", "192.0.2.2"]
            )]
        );
    }

    #[test]
    fn a_zone_listing_shows_the_names_the_zone_uses_itself() {
        let record = |owner: &str, data: RData| {
            Record::from_rdata(Name::from_ascii(owner).unwrap(), 300, data)
        };
        let target = |text: &str| Name::from_ascii(text).unwrap();
        let mut listing = zone_listing();
        let records = [
            soa(),
            record(
                "example.test.",
                RData::NS(hickory_proto::rr::rdata::NS(target("ns1.example.test."))),
            ),
            record(
                "example.test.",
                RData::MX(hickory_proto::rr::rdata::MX::new(
                    10,
                    target("MX.example.test."),
                )),
            ),
            record(
                "_x._tcp.example.test.",
                RData::SRV(hickory_proto::rr::rdata::SRV::new(
                    0,
                    5,
                    80,
                    target("srv.example.test."),
                )),
            ),
            record(
                "_y._tcp.example.test.",
                RData::SRV(hickory_proto::rr::rdata::SRV::new(0, 0, 0, Name::root())),
            ),
            record(
                "sub.example.test.",
                RData::NS(hickory_proto::rr::rdata::NS(target("ns-sub.example.test."))),
            ),
            record(
                "sub.example.test.",
                RData::NS(hickory_proto::rr::rdata::NS(target("ns.example.net."))),
            ),
            soa(),
        ];
        assert_eq!(listing.take(&records), Ok(true));
        let contents = listing.into_contents();
        let expected: BTreeSet<DnsName> = [
            "ns1.example.test.",
            "mx.example.test.",
            "srv.example.test.",
            "ns-sub.example.test.",
        ]
        .map(name)
        .into();
        assert_eq!(contents.zone_own, expected, "the SOA primary is ns1 too");
    }

    #[test]
    fn a_zone_listing_must_open_and_close_with_the_zones_soa() {
        let www_txt = txt("_ipdrift.www.example.test.", "x");
        assert!(
            zone_listing()
                .take(&[])
                .unwrap_err()
                .contains("does not start with the zone's SOA")
        );
        assert!(zone_listing().take(&[www_txt.clone(), soa()]).is_err());
        let mut other_zone_soa = soa();
        other_zone_soa.name = Name::from_ascii("example.org.").unwrap();
        assert!(zone_listing().take(&[other_zone_soa]).is_err());
        assert_eq!(
            zone_listing().take(&[soa(), soa(), www_txt]),
            Err("has records after its closing SOA record".to_string())
        );
    }
}
