//! Reading the server's answers: TSIG verification (RFC 8945 §5.4), the RCODE, and the
//! RRsets of query answers. Pure: no I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, bail};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, TSigVerifier};

use super::explain::{answer_mnemonic, explain_rcode, explain_tsig_error, rcode_mnemonic, some_of};
use super::message::Endpoint;
use super::update::{Label, UpdatePart};
use crate::model::{DnsName, Obstacles, RecordKey, RecordSet, RecordType};
use crate::validate;

/// The server answered with an error: it refused the request or did not accept the key.
/// Kept apart from other errors (no answer, a forged one), so that the caller can decide
/// what to do: read with queries when a transfer is refused, whatever the server said; ask
/// the server what it meant ([`Refusal::needs_diagnosis`]) before wording the error.
#[derive(Debug, thiserror::Error)]
#[error("{said} — {why}")]
pub struct Refusal {
    pub rcode: ResponseCode,
    /// The TSIG error of the answer (BADSIG, BADKEY, BADTIME …), if it has one.
    pub tsig_error: Option<TsigError>,
    /// Whether the answer carried a signature that verified: the server accepted the key.
    pub signed: bool,
    pub kind: RequestKind,
    /// `ns1 (127.0.0.1:53) refused the update: NOTAUTH (BADKEY)`.
    pub said: String,
    /// What it means and what to check.
    pub why: String,
}

impl Refusal {
    /// Whether the answer alone leaves open what the server meant, so that it is worth
    /// asking ([`diagnose`]): a BADKEY is an unknown key or (Knot) an ACL that denies the
    /// request; an unsigned NOTAUTH a zone the server does not serve (Knot) or a key it does
    /// not accept (PowerDNS); an unsigned REFUSED of an update a key PowerDNS does not
    /// accept. A signed REFUSED of an update is the key's permission or one name's
    /// problem, which the write tells apart itself.
    pub fn needs_diagnosis(&self) -> bool {
        match (self.tsig_error, self.rcode) {
            (Some(error), _) => error == TsigError::BadKey,
            (None, ResponseCode::NotAuth) => true,
            (None, ResponseCode::Refused) => !(self.signed && self.kind == RequestKind::Update),
            _ => false,
        }
    }
}

impl Refusal {
    /// Whether the refusal of an UPDATE is about some of its RRsets rather than the key or
    /// the zone, so that sending its parts alone finds them: a failed prerequisite
    /// (RFC 2136 §3.2.5), a name outside the zone, a record the server cannot parse.
    pub fn is_about_rrsets(&self) -> bool {
        self.tsig_error.is_none()
            && matches!(
                self.rcode,
                ResponseCode::YXRRSet
                    | ResponseCode::NXRRSet
                    | ResponseCode::YXDomain
                    | ResponseCode::NXDomain
                    | ResponseCode::NotZone
                    | ResponseCode::FormErr
            )
    }

    /// Whether it is a signed REFUSED of an UPDATE: the server accepted the key, and refuses
    /// either every update with it or some of the names (BIND's check-names, an
    /// `update-policy`, PowerDNS for an address at a CNAME). Which one, a
    /// [`super::message::permission_probe`] tells.
    pub fn may_be_about_rrsets(&self) -> bool {
        self.signed
            && self.tsig_error.is_none()
            && self.rcode == ResponseCode::Refused
            && self.kind == RequestKind::Update
    }
}

/// The three kinds of request, for wording what a refusal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Query,
    Update,
    Transfer,
}

/// What the server showed when asked for the zone's SOA twice, once signed with the key and
/// once unsigned: whether it serves the zone, and whether it accepts the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The unsigned query (or the signed one) got an authoritative answer holding the
    /// zone's SOA.
    pub serves_zone: bool,
    pub key: KeyVerdict,
}

/// How the server answered the signed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// With a signature that verified.
    Accepted,
    /// With a TSIG error (BIND and Knot for a key they do not have or whose secret differs).
    TsigError(TsigError),
    /// With an unsigned error (PowerDNS for a key it does not have or whose secret differs).
    Unsigned(ResponseCode),
    /// With something else: an unsigned success, a forged signature, no answer.
    Unknown,
}

/// The [`Diagnosis`] from the answers to [`super::message::soa_query`] of `zone`, `signed`
/// (with `verifier`, the one signing it returned) and `unsigned`. Either may be anything
/// the network delivered: bytes that do not parse count as no answer.
pub fn diagnose(
    zone: &Name,
    signed: &[u8],
    verifier: &mut TSigVerifier,
    unsigned: &[u8],
) -> Diagnosis {
    let holds_soa = |message: &Message| {
        message.response_code == ResponseCode::NoError
            && message.authoritative
            && message.answers.iter().any(|record| {
                record.record_type() == hickory_proto::rr::RecordType::SOA && record.name == *zone
            })
    };
    let signed_message = Message::from_vec(signed).ok();
    let key = match &signed_message {
        Some(message) => match message.signature().map(|tsig| tsig.data.error) {
            Some(Some(error)) => KeyVerdict::TsigError(error),
            Some(None) if verifier.verify(signed).is_ok() => KeyVerdict::Accepted,
            None if message.response_code != ResponseCode::NoError => {
                KeyVerdict::Unsigned(message.response_code)
            }
            _ => KeyVerdict::Unknown,
        },
        None => KeyVerdict::Unknown,
    };
    let serves_zone = Message::from_vec(unsigned).is_ok_and(|message| holds_soa(&message))
        || (key == KeyVerdict::Accepted && signed_message.as_ref().is_some_and(holds_soa));
    Diagnosis { serves_zone, key }
}

/// What a request was, for the wording of errors.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Query(&'a RecordKey),
    /// A query for the apex's SOA, NS or MX records, or a well-known service's SRV
    /// records: the names the zone uses itself.
    ZoneOwn,
    Update(&'a UpdatePart),
    /// Message `message` (counting from 1) of the answer to the AXFR query.
    Transfer {
        message: usize,
    },
}

impl Request<'_> {
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Query(_) | Request::ZoneOwn => RequestKind::Query,
            Request::Update(_) => RequestKind::Update,
            Request::Transfer { .. } => RequestKind::Transfer,
        }
    }
}

impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Query(key) => write!(f, "the query for {key}"),
            Request::ZoneOwn => f.write_str("the query for the zone's SOA, NS, MX or SRV records"),
            Request::Update(part) => match part.label {
                Label::Only => f.write_str("the update"),
                Label::Message { number, count } => write!(
                    f,
                    "update message {number} of {count} (changing {})",
                    some_of(&part.changed)
                ),
                Label::Part => write!(f, "the update of {}", some_of(&part.changed)),
            },
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
            return Err(Refusal {
                rcode,
                tsig_error: Some(tsig_error),
                signed: false,
                kind: request.kind(),
                said: format!(
                    "{} refused {request}: {}",
                    self.who(),
                    answer_mnemonic(rcode, Some(tsig_error))
                ),
                why: explain_tsig_error(&self.key, tsig_error),
            }
            .into());
        }
        let succeeded = rcode == ResponseCode::NoError
            || (rcode == ResponseCode::NXDomain
                && matches!(request, Request::Query(_) | Request::ZoneOwn));
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
                Request::Transfer { message: 2.. } => "ipdrift needs every message of a zone transfer signed (it cannot verify a signature that covers unsigned messages before it, RFC 8945 §5.3.1), as BIND, Knot and PowerDNS do".to_string(),
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
        let signed = message.signature().is_some();
        Err(Refusal {
            rcode,
            tsig_error: None,
            signed,
            kind: request.kind(),
            said: format!(
                "{} refused {request}: {}",
                self.who(),
                rcode_mnemonic(rcode)
            ),
            why: explain_rcode(rcode, signed, request, &self.zone, &self.key, self.server),
        }
        .into())
    }
}

/// Why a server may refuse to change the RRsets at one name while it accepts the other
/// changes of a batch with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameCause {
    /// A label of the name holds `_`: not a host name (RFC 952, RFC 1123 §2.1), which BIND
    /// refuses for address records in a primary zone (`check-names`, on by default).
    NotHostName,
    /// The name holds a CNAME (to the name given), and so no other data (RFC 1034 §3.6.2).
    Cname(DnsName),
    /// The name lies at or below this delegation (zone cut) in the zone.
    BelowCut(DnsName),
    /// Neither the name nor the server's answer for it tells.
    Unknown,
}

/// The [`NameCause`] for `name`, from the name itself and the verified `answer` to a query
/// for its address records, if there is one.
pub fn name_cause(name: &DnsName, answer: Option<&Message>) -> NameCause {
    if name.as_str().split('.').any(|label| label.contains('_')) {
        return NameCause::NotHostName;
    }
    let Some(answer) = answer else {
        return NameCause::Unknown;
    };
    let cname = answer.answers.iter().find_map(|record| match &record.data {
        RData::CNAME(target) if dns_name_of(&record.name).as_ref() == Some(name) => {
            dns_name_of(&target.0)
        }
        _ => None,
    });
    if let Some(target) = cname {
        return NameCause::Cname(target);
    }
    match referral_cut(answer) {
        Some(cut) => NameCause::BelowCut(cut),
        None => NameCause::Unknown,
    }
}

/// The zone cut a non-authoritative answer refers to (RFC 1034 §4.3.2: a referral names the
/// delegation's NS records in the authority section), if it is a referral.
pub fn referral_cut(answer: &Message) -> Option<DnsName> {
    if answer.authoritative || !answer.answers.is_empty() {
        return None;
    }
    answer
        .authorities
        .iter()
        .find(|record| record.record_type() == hickory_proto::rr::RecordType::NS)
        .and_then(|record| dns_name_of(&record.name))
}

/// The names inside `zone` that an answer's records say the zone uses itself: the SOA's
/// primary, name servers (of the apex or of a delegation: their addresses are glue), mail
/// exchangers and SRV targets.
pub fn zone_own_names(zone: &DnsName, answer: &Message) -> BTreeSet<DnsName> {
    answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .filter_map(|record| zone_own_name(zone, record))
        .collect()
}

/// The name inside `zone` that `record` says the zone uses itself, if it says one: the
/// target of an SOA (its primary), NS, MX or SRV record.
pub fn zone_own_name(zone: &DnsName, record: &hickory_proto::rr::Record) -> Option<DnsName> {
    match &record.data {
        RData::SOA(soa) => dns_name_of(&soa.mname),
        RData::NS(ns) => dns_name_of(&ns.0),
        RData::MX(mx) => dns_name_of(&mx.exchange),
        RData::SRV(srv) => dns_name_of(&srv.target),
        _ => None,
    }
    .filter(|name| name.is_in_zone(zone))
}

fn dns_name_of(name: &Name) -> Option<DnsName> {
    validate::dns_name(&name.to_ascii()).ok()
}

/// The server answered a query without authority, and not with a referral inside the zone:
/// it is a resolver, or does not serve the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAuthoritative;

impl Endpoint {
    /// The RRset of `key` from the answer to a signed query for it, as the network
    /// delivered it: checked ([`Self::check_answer`]), then read ([`queried_rrset`]), with
    /// the CNAME or delegation the answer shows at the name ([`answer_obstacles`]) and the
    /// names it shows the zone uses itself (a referral names the delegation's servers).
    pub fn read_query_answer(
        &self,
        key: &RecordKey,
        answer: &[u8],
        verifier: &mut TSigVerifier,
    ) -> anyhow::Result<(Option<RecordSet>, Obstacles, BTreeSet<DnsName>)> {
        let request = Request::Query(key);
        let message = self.check_answer(request, answer, verifier)?;
        let owner = self.owner_name(&key.name)?;
        let rrset =
            queried_rrset(&self.zone, key, &owner, &message).map_err(|NotAuthoritative| {
                anyhow!(
                    "{} answered {request} without authority: it does not serve zone {}; point the target at the zone's primary, not a resolver",
                    self.who(),
                    self.zone
                )
            })?;
        Ok((
            rrset,
            answer_obstacles(&self.zone, &key.name, &message),
            zone_own_names(&self.zone, &message),
        ))
    }

    /// Whether the server applied the UPDATE `part`, from its answer as the network
    /// delivered it ([`Self::check_answer`]; a [`Refusal`] says what it refused and why).
    pub fn read_update_answer(
        &self,
        part: &UpdatePart,
        answer: &[u8],
        verifier: &mut TSigVerifier,
    ) -> anyhow::Result<()> {
        self.check_answer(Request::Update(part), answer, verifier)
            .map(drop)
    }
}

/// What a verified answer to a query for `name` shows about it: the CNAME it holds (the
/// servers add the records it leads to after it), or the delegation inside `zone` it lies
/// at or below (a referral, RFC 1034 §4.3.2).
pub fn answer_obstacles(zone: &DnsName, name: &DnsName, answer: &Message) -> Obstacles {
    let mut obstacles = Obstacles::default();
    for record in &answer.answers {
        if let RData::CNAME(target) = &record.data
            && dns_name_of(&record.name).as_ref() == Some(name)
            && let Some(target) = dns_name_of(&target.0)
        {
            obstacles.cnames.insert(name.clone(), target);
        }
    }
    if let Some(cut) = referral_cut(answer)
        && cut != *zone
        && cut.is_in_zone(zone)
    {
        obstacles.cuts.insert(cut);
    }
    obstacles
}

/// The RRset of `key` (at `owner`) that a verified answer holds.
/// A referral to a delegation inside `zone` means the name's addresses are not the zone's
/// own data (glue or occluded, RFC 1034 §4.2.1): none, as a zone transfer's listing counts
/// them, so that one such name does not fail a whole read.
pub fn queried_rrset(
    zone: &DnsName,
    key: &RecordKey,
    owner: &Name,
    answer: &Message,
) -> Result<Option<RecordSet>, NotAuthoritative> {
    if answer.authoritative {
        return Ok(rrset_from_answer(key, owner, answer));
    }
    match referral_cut(answer) {
        Some(cut) if cut != *zone && cut.is_in_zone(zone) => Ok(None),
        _ => Err(NotAuthoritative),
    }
}

/// The RRset for `key` in an answer: the A/AAAA records of exactly that name and type
/// (a CNAME or other records the server adds are not part of it). `None` when there are
/// none (NODATA, NXDOMAIN). The TTL is the lowest of the records' TTLs, which RFC 2181 §5.2
/// requires to be equal anyway.
fn rrset_from_answer(key: &RecordKey, owner: &Name, answer: &Message) -> Option<RecordSet> {
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
    use std::collections::BTreeMap;

    use std::time::{SystemTime, UNIX_EPOCH};

    use crate::dns::rfc2136::message::{sign, soa_query, transfer_query};
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
    fn only_ambiguous_refusals_are_worth_asking_about() {
        let refusal = |rcode, tsig_error, signed, kind| Refusal {
            rcode,
            tsig_error,
            signed,
            kind,
            said: String::new(),
            why: String::new(),
        };
        use RequestKind::{Query, Transfer, Update};
        let asked = [
            refusal(
                ResponseCode::NotAuth,
                Some(TsigError::BadKey),
                false,
                Transfer,
            ),
            refusal(ResponseCode::NotAuth, None, false, Update),
            refusal(ResponseCode::NotAuth, None, true, Transfer),
            refusal(ResponseCode::Refused, None, false, Update),
            refusal(ResponseCode::Refused, None, true, Query),
        ];
        let clear = [
            refusal(
                ResponseCode::NotAuth,
                Some(TsigError::BadSig),
                false,
                Update,
            ),
            refusal(
                ResponseCode::NotAuth,
                Some(TsigError::BadTime),
                false,
                Query,
            ),
            refusal(ResponseCode::Refused, None, true, Update),
            refusal(ResponseCode::YXRRSet, None, true, Update),
            refusal(ResponseCode::ServFail, None, false, Transfer),
        ];
        assert!(asked.iter().all(Refusal::needs_diagnosis));
        assert!(!clear.iter().any(Refusal::needs_diagnosis));
    }

    /// A signed and an unsigned SOA query for the zone, the verifier of the signed one, and
    /// an answer to each from `build`.
    fn diagnosed(build: impl Fn(&Message, bool) -> Vec<u8>) -> Diagnosis {
        let zone = Name::from_ascii("example.test.").unwrap();
        let mut signed = soa_query(7, zone.clone());
        let mut verifier = sign(&mut signed, &key().signer()).unwrap();
        let unsigned = soa_query(8, zone.clone());
        diagnose(
            &zone,
            &build(&signed, true),
            &mut verifier,
            &build(&unsigned, false),
        )
    }

    /// `answer_with`, holding the zone's SOA when `rcode` is NOERROR.
    fn soa_answer(query: &Message, rcode: ResponseCode, signer: Option<&TSigner>) -> Vec<u8> {
        let mut message = Message::from_vec(&answer_with(query, rcode, None)).unwrap();
        if rcode == ResponseCode::NoError {
            message.add_answer(soa());
        }
        match signer {
            None => message.to_vec().unwrap(),
            Some(signer) => {
                let bytes = message.to_vec().unwrap();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let context = hickory_proto::rr::TSigResponseContext::new(
                    query.id,
                    now,
                    signer.clone(),
                    query.signature().unwrap().data.mac.clone(),
                    None,
                );
                message.set_signature(context.sign(&bytes).unwrap());
                message.to_vec().unwrap()
            }
        }
    }

    #[test]
    fn a_diagnosis_tells_whether_the_server_serves_the_zone_and_accepts_the_key() {
        let good = key().signer();
        // BIND, Knot, PowerDNS with the right key.
        let accepted = diagnosed(|query, signed| {
            soa_answer(query, ResponseCode::NoError, signed.then_some(&good))
        });
        assert_eq!(
            accepted,
            Diagnosis {
                serves_zone: true,
                key: KeyVerdict::Accepted
            }
        );
        // PowerDNS with a wrong key: an unsigned NOTAUTH, while it serves the zone unsigned.
        let unsigned = diagnosed(|query, signed| {
            let rcode = if signed {
                ResponseCode::NotAuth
            } else {
                ResponseCode::NoError
            };
            soa_answer(query, rcode, None)
        });
        assert_eq!(
            unsigned,
            Diagnosis {
                serves_zone: true,
                key: KeyVerdict::Unsigned(ResponseCode::NotAuth)
            }
        );
        // Knot for a zone it does not serve: REFUSED to both.
        let not_served = diagnosed(|query, _| soa_answer(query, ResponseCode::Refused, None));
        assert_eq!(
            not_served,
            Diagnosis {
                serves_zone: false,
                key: KeyVerdict::Unsigned(ResponseCode::Refused)
            }
        );
        // A forged signature, or bytes that are no message, tell nothing about the key.
        let other = TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, "b3RoZXI=")
            .unwrap()
            .signer();
        let forged = diagnosed(|query, signed| {
            soa_answer(query, ResponseCode::NoError, signed.then_some(&other))
        });
        assert_eq!(
            forged,
            Diagnosis {
                serves_zone: true,
                key: KeyVerdict::Unknown
            }
        );
        let garbage = diagnosed(|_, _| vec![0xff; 5]);
        assert_eq!(
            garbage,
            Diagnosis {
                serves_zone: false,
                key: KeyVerdict::Unknown
            }
        );
    }

    /// A response (not authoritative) with `authorities` NS records, as a referral is.
    fn referral(cut: &str) -> Message {
        let mut answer = Message::new(1, MessageType::Response, OpCode::Query);
        answer.add_authority(Record::from_rdata(
            Name::from_ascii(cut).unwrap(),
            300,
            RData::NS(hickory_proto::rr::rdata::NS(
                Name::from_ascii("ns.example.net.").unwrap(),
            )),
        ));
        answer
    }

    #[test]
    fn a_referral_inside_the_zone_is_no_rrset_and_any_other_answer_without_authority_fails() {
        let zone = name("example.test.");
        let key = RecordKey {
            name: name("x.sub.example.test."),
            rtype: RecordType::A,
        };
        let owner = Name::from_ascii("x.sub.example.test.").unwrap();
        assert_eq!(
            queried_rrset(&zone, &key, &owner, &referral("sub.example.test.")),
            Ok(None)
        );
        // A resolver's referral to the zone's parent, or to the zone itself.
        for cut in ["test.", "example.test."] {
            assert_eq!(
                queried_rrset(&zone, &key, &owner, &referral(cut)),
                Err(NotAuthoritative)
            );
        }
        let unauthoritative = Message::new(1, MessageType::Response, OpCode::Query);
        assert_eq!(
            queried_rrset(&zone, &key, &owner, &unauthoritative),
            Err(NotAuthoritative)
        );
        let mut answer = Message::new(1, MessageType::Response, OpCode::Query);
        answer.metadata.authoritative = true;
        answer.add_answer(Record::from_rdata(
            owner.clone(),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        assert_eq!(
            queried_rrset(&zone, &key, &owner, &answer),
            Ok(Some(rrset(
                "x.sub.example.test.",
                RecordType::A,
                60,
                &["192.0.2.1"]
            )))
        );
    }

    /// An authoritative answer at `owner` (any case): a CNAME to www, and the A record the
    /// CNAME leads to, which is no obstacle at www.
    fn cname_to_www_answer(owner: &str) -> Message {
        let mut answer = Message::new(1, MessageType::Response, OpCode::Query);
        answer.metadata.authoritative = true;
        answer.add_answer(Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            300,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(www())),
        ));
        answer.add_answer(Record::from_rdata(
            www(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        answer
    }

    #[test]
    fn a_refused_name_is_explained_by_its_labels_its_cname_or_its_delegation() {
        let web_05 = name("web_05.example.test.");
        assert_eq!(name_cause(&web_05, None), NameCause::NotHostName);
        let alias = name("alias.example.test.");
        let answer = cname_to_www_answer("Alias.example.test.");
        assert_eq!(
            name_cause(&alias, Some(&answer)),
            NameCause::Cname(name("www.example.test."))
        );
        let below = name("x.sub.example.test.");
        assert_eq!(
            name_cause(&below, Some(&referral("sub.example.test."))),
            NameCause::BelowCut(name("sub.example.test."))
        );
        let empty = Message::new(1, MessageType::Response, OpCode::Query);
        assert_eq!(name_cause(&www_name(), Some(&empty)), NameCause::Unknown);
        assert_eq!(name_cause(&www_name(), None), NameCause::Unknown);
    }

    #[test]
    fn an_answer_shows_the_cname_at_the_name_and_the_delegation_it_lies_below() {
        let zone = name("example.test.");
        let alias = name("alias.example.test.");
        let answer = cname_to_www_answer("ALIAS.example.test.");
        let obstacles = answer_obstacles(&zone, &alias, &answer);
        assert_eq!(
            obstacles.cnames,
            BTreeMap::from([(alias.clone(), www_name())])
        );
        assert!(obstacles.cuts.is_empty());
        assert_eq!(
            answer_obstacles(&zone, &www_name(), &answer),
            Obstacles::default()
        );

        let below = name("x.sub.example.test.");
        let obstacles = answer_obstacles(&zone, &below, &referral("sub.example.test."));
        assert_eq!(obstacles.cuts, BTreeSet::from([name("sub.example.test.")]));
        assert_eq!(
            zone_own_names(&zone, &referral("sub.example.test.")),
            BTreeSet::new(),
            "the delegation's server is outside the zone"
        );
        // A resolver's referral to the zone's parent is no delegation inside it.
        let outside = answer_obstacles(&zone, &below, &referral("test."));
        assert_eq!(outside, Obstacles::default());
    }

    fn www_name() -> DnsName {
        name("www.example.test.")
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
