//! What the unit tests of the rfc2136 modules share: a key, names, RRsets, signed queries
//! and the answers a server would give.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, TSigVerifier, TSigner};

use super::message::{Endpoint, query_message, sign};
use crate::dns::RecordChange;
use crate::dns::tsig::{TsigAlgorithm, TsigKey};
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};
use crate::validate;

pub fn name(text: &str) -> DnsName {
    validate::dns_name(text).unwrap()
}

pub fn key() -> TsigKey {
    TsigKey::from_base64(
        "ipdrift-key",
        TsigAlgorithm::HmacSha256,
        "6fLGcV97PuPNuGGSjNxVG8JLZvjInc+xJr1fYtITveo=",
    )
    .unwrap()
}

pub fn rrset(owner: &str, rtype: RecordType, ttl: u32, addrs: &[&str]) -> RecordSet {
    RecordSet {
        key: RecordKey {
            name: name(owner),
            rtype,
        },
        ttl,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

/// The endpoint every unit test talks to (nothing listens there).
pub fn endpoint() -> Endpoint {
    Endpoint {
        name: "ns1".into(),
        server: "127.0.0.1:5353".parse().unwrap(),
        zone: name("example.test."),
        key: key(),
    }
}

/// A signed query for www.example.test. A, and the verifier for its answer.
pub fn signed_query() -> (Message, TSigVerifier) {
    let owner = Name::from_ascii("www.example.test.").unwrap();
    let mut query = query_message(42, owner, RecordType::A);
    let verifier = sign(&mut query, &key().signer()).unwrap();
    (query, verifier)
}

/// An authoritative NOERROR answer to `query`, signed as a server would (RFC 8945 §4.3.1)
/// with `signer`, or unsigned.
pub fn answer(query: &Message, signer: Option<&TSigner>) -> Vec<u8> {
    answer_with(query, ResponseCode::NoError, signer)
}

/// [`answer`] with the RCODE `rcode`.
pub fn answer_with(query: &Message, rcode: ResponseCode, signer: Option<&TSigner>) -> Vec<u8> {
    let mut answer = Message::response(query.id, query.op_code);
    answer.metadata.response_code = rcode;
    answer.metadata.authoritative = true;
    answer.add_queries(query.queries.clone());
    let Some(signer) = signer else {
        return answer.to_vec().unwrap();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request_mac = query.signature().unwrap().data.mac.clone();
    let context = hickory_proto::rr::TSigResponseContext::new(
        query.id,
        now,
        signer.clone(),
        request_mac,
        None,
    );
    answer.set_signature(context.sign(&answer.to_vec().unwrap()).unwrap());
    answer.to_vec().unwrap()
}

pub fn www() -> Name {
    Name::from_ascii("www.example.test.").unwrap()
}

pub fn ownership_of_www() -> Name {
    Name::from_ascii("_ipdrift.www.example.test.").unwrap()
}

pub fn txt_texts(record: &Record) -> Vec<&[u8]> {
    let RData::TXT(txt) = &record.data else {
        panic!("not a TXT record: {record:?}")
    };
    txt.txt_data.iter().map(AsRef::as_ref).collect()
}

pub fn soa() -> Record {
    let zone = Name::from_ascii("example.test.").unwrap();
    let soa = hickory_proto::rr::rdata::SOA::new(
        Name::from_ascii("ns1.example.test.").unwrap(),
        Name::from_ascii("hostmaster.example.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    Record::from_rdata(zone, 300, RData::SOA(soa))
}

pub fn txt(owner: &str, text: &str) -> Record {
    Record::from_rdata(
        Name::from_ascii(owner).unwrap(),
        300,
        RData::TXT(TXT::new(vec![text.into()])),
    )
}

pub fn replaces(count: usize) -> Vec<RecordChange> {
    (0..count)
        .map(|n| RecordChange::Replace {
            from: None,
            to: rrset(
                &format!("web-{n:05}.example.test."),
                RecordType::A,
                60,
                &["192.0.2.1"],
            ),
        })
        .collect()
}
