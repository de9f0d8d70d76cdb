//! Reading the server's answers: TSIG verification (RFC 8945 §5.4), the RCODE, and the
//! RRsets of query answers. Pure: no I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, TSigVerifier};

use super::explain::{
    explain_rcode, explain_tsig_error, rcode_mnemonic, some_of, tsig_error_mnemonic,
};
use super::message::Endpoint;
use super::update::UpdatePart;
use crate::model::{RecordKey, RecordSet, RecordType};

/// The server answered with an error: it refused the request or did not accept the key.
/// Kept apart from other errors (no answer, a forged one), so that the caller can decide
/// what to do: read with queries when a transfer is refused, whatever the server said.
#[derive(Debug, thiserror::Error)]
#[error("{explanation}")]
pub struct Refusal {
    pub rcode: ResponseCode,
    /// The TSIG error of the answer (BADSIG, BADKEY, BADTIME …), if it has one.
    pub tsig_error: Option<TsigError>,
    pub explanation: String,
}

/// What a request was, for the wording of errors.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Query(&'a RecordKey),
    Update(&'a UpdatePart),
    /// Message `message` (counting from 1) of the answer to the AXFR query.
    Transfer {
        message: usize,
    },
}

impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Query(key) => write!(f, "the query for {key}"),
            Request::Update(UpdatePart { count: 0 | 1, .. }) => f.write_str("the update"),
            Request::Update(part) => write!(
                f,
                "update message {} of {} (changing {})",
                part.number,
                part.count,
                some_of(&part.changed)
            ),
            Request::Transfer { message: 1 } => f.write_str("the zone transfer (AXFR)"),
            Request::Transfer { message } => {
                write!(f, "message {message} of the zone transfer (AXFR)")
            }
        }
    }
}

impl Endpoint {
    /// Checks an answer as RFC 8945 §5.4 asks: a TSIG error means the server did not accept
    /// the key (BADSIG and BADKEY answers are unsigned by design, §5.3.2); otherwise the
    /// signature must verify, and an unsigned answer is believed only as a failure. Then the
    /// RCODE: NOERROR, or NXDOMAIN for a query, gives the message back; anything else is an
    /// error that says what to check.
    pub fn check_answer(
        &self,
        request: Request<'_>,
        answer: &[u8],
        verifier: &mut TSigVerifier,
    ) -> anyhow::Result<Message> {
        let message = Message::from_vec(answer).map_err(|why| {
            anyhow!(
                "{} answered {request} with a message that does not parse ({why})",
                self.who()
            )
        })?;
        let rcode = message.response_code;
        let tsig_error = message.signature().and_then(|tsig| tsig.data.error);
        if let Some(tsig_error) = tsig_error {
            let explanation = format!(
                "{} refused {request}: {} ({}) — {}",
                self.who(),
                rcode_mnemonic(rcode),
                tsig_error_mnemonic(tsig_error),
                explain_tsig_error(&self.key, tsig_error)
            );
            return Err(Refusal {
                rcode,
                tsig_error: Some(tsig_error),
                explanation,
            }
            .into());
        }
        let succeeded = rcode == ResponseCode::NoError
            || (rcode == ResponseCode::NXDomain && matches!(request, Request::Query(_)));
        if message.signature().is_some() {
            verifier.verify(answer).map_err(|why| {
                anyhow!(
                    "the answer from {} to {request} failed TSIG verification ({why}): it was not signed with TSIG key {}; check that the server uses the same secret",
                    self.who(),
                    self.key
                )
            })?;
        } else if succeeded {
            let check = match request {
                Request::Transfer { message: 2.. } => "ipdrift needs every message of a zone transfer signed (it cannot verify a signature that covers unsigned messages before it, RFC 8945 §5.3.1), as BIND and Knot do".to_string(),
                _ => format!("check that the server has TSIG key {}", self.key),
            };
            bail!(
                "{} answered {request} without a TSIG signature, so it cannot be trusted; {check}",
                self.who()
            );
        }
        if succeeded {
            return Ok(message);
        }
        let explanation = format!(
            "{} refused {request}: {} — {}",
            self.who(),
            rcode_mnemonic(rcode),
            explain_rcode(rcode, request, &self.zone, &self.key, self.server)
        );
        Err(Refusal {
            rcode,
            tsig_error: None,
            explanation,
        }
        .into())
    }
}

/// The RRset for `key` in an answer: the A/AAAA records of exactly that name and type
/// (a CNAME or other records the server adds are not part of it). `None` when there are
/// none (NODATA, NXDOMAIN). The TTL is the lowest of the records' TTLs, which RFC 2181 §5.2
/// requires to be equal anyway.
pub fn rrset_from_answer(key: &RecordKey, owner: &Name, answer: &Message) -> Option<RecordSet> {
    let mut ttl = None::<u32>;
    let mut addrs = BTreeSet::new();
    for record in answer.answers.iter().filter(|record| record.name == *owner) {
        let addr = match (&record.data, key.rtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(aaaa), RecordType::Aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        addrs.insert(addr);
        ttl = Some(ttl.map_or(record.ttl, |lowest| lowest.min(record.ttl)));
    }
    Some(RecordSet {
        key: key.clone(),
        ttl: ttl?,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Record, TSigner};

    use crate::dns::rfc2136::message::{sign, transfer_query};
    use crate::dns::tsig::{TsigAlgorithm, TsigKey};

    #[test]
    fn answers_yield_only_the_asked_rrset() {
        let key = RecordKey {
            name: name("www.example.test."),
            rtype: RecordType::A,
        };
        let mut answer = Message::new(1, MessageType::Response, OpCode::Query);
        let www = Name::from_ascii("www.example.test.").unwrap();
        let other = Name::from_ascii("other.example.test.").unwrap();
        answer.add_answer(Record::from_rdata(
            www.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        answer.add_answer(Record::from_rdata(
            www.clone(),
            120,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        answer.add_answer(Record::from_rdata(
            other,
            300,
            RData::A(A::new(192, 0, 2, 3)),
        ));
        let rrset = rrset_from_answer(&key, &www, &answer).unwrap();
        assert_eq!(rrset.ttl, 120);
        assert_eq!(
            rrset.addrs,
            ["192.0.2.1", "192.0.2.2"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect()
        );

        let empty = Message::new(1, MessageType::Response, OpCode::Query);
        assert_eq!(rrset_from_answer(&key, &www, &empty), None);
    }

    #[test]
    fn answers_are_believed_only_when_signed_with_the_key() {
        let endpoint = endpoint();
        let record = RecordKey {
            name: name("www.example.test."),
            rtype: RecordType::A,
        };
        let request = Request::Query(&record);

        let (query, mut verifier) = signed_query();
        let signed = answer(&query, Some(&key().signer()));
        assert!(
            endpoint
                .check_answer(request, &signed, &mut verifier)
                .is_ok()
        );

        let (query, mut verifier) = signed_query();
        let other_key =
            TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, "b3RoZXI=").unwrap();
        let forged = answer(&query, Some(&other_key.signer()));
        let text = endpoint
            .check_answer(request, &forged, &mut verifier)
            .unwrap_err()
            .to_string();
        assert!(text.contains("failed TSIG verification"), "{text}");

        let (query, mut verifier) = signed_query();
        let unsigned = answer(&query, None);
        let text = endpoint
            .check_answer(request, &unsigned, &mut verifier)
            .unwrap_err()
            .to_string();
        assert!(text.contains("without a TSIG signature"), "{text}");
    }

    #[test]
    fn every_error_answer_is_a_refusal_but_an_unsigned_or_forged_success_is_not() {
        let endpoint = endpoint();
        let refused_with = |rcode: ResponseCode, signer: Option<&TSigner>| {
            let mut query = transfer_query(9, Name::from_ascii("example.test.").unwrap());
            let mut verifier = sign(&mut query, &key().signer()).unwrap();
            let answer = answer_with(&query, rcode, signer);
            endpoint
                .check_answer(Request::Transfer { message: 1 }, &answer, &mut verifier)
                .unwrap_err()
        };
        // Reads fall back to queries after any of these (RFC 5936 §2.2.1 lets a server
        // refuse a transfer with whatever RCODE it likes).
        for rcode in [
            ResponseCode::Refused,
            ResponseCode::NotAuth,
            ResponseCode::ServFail,
            ResponseCode::NotImp,
        ] {
            for signer in [None, Some(key().signer())] {
                let error = refused_with(rcode, signer.as_ref());
                let refused = error.downcast_ref::<Refusal>().unwrap();
                assert_eq!((refused.rcode, refused.tsig_error), (rcode, None));
            }
        }
        let unsigned = refused_with(ResponseCode::NoError, None);
        assert!(unsigned.downcast_ref::<Refusal>().is_none(), "{unsigned}");
        let other_key =
            TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, "b3RoZXI=").unwrap();
        let forged = refused_with(ResponseCode::Refused, Some(&other_key.signer()));
        assert!(forged.downcast_ref::<Refusal>().is_none(), "{forged}");
    }

    #[test]
    fn every_message_of_a_zone_transfer_after_the_first_must_be_signed() {
        let (query, mut verifier) = signed_query();
        let unsigned = answer(&query, None);
        let text = endpoint()
            .check_answer(Request::Transfer { message: 2 }, &unsigned, &mut verifier)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(
                "answered message 2 of the zone transfer (AXFR) without a TSIG signature"
            ),
            "{text}"
        );
        assert!(
            text.contains("every message of a zone transfer signed"),
            "{text}"
        );
    }
}
