//! A zone on a primary server that accepts dynamic updates (RFC 2136) signed with TSIG
//! (RFC 8945), such as BIND or Knot.
//!
//! Reads are plain queries sent straight to that server (never a resolver), all pipelined
//! on one TCP connection; a write is one UPDATE message holding every change. Every message
//! is TSIG-signed and every answer's signature is verified before it is believed.
//!
//! Message building and answer interpretation are pure functions; [`Rfc2136Target`] only
//! adds the TCP exchange (RFC 1035 §4.2.2: each message is prefixed with its 2-byte length).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigVerifier, TSigner};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::BoxFuture;
use crate::dns::tsig::{FUDGE_SECONDS, TsigKey};
use crate::dns::{DnsTarget, RecordChange};
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};
use crate::validate;

/// One zone on one RFC 2136 primary, reached over TCP and authenticated with one TSIG key.
#[derive(Debug)]
pub struct Rfc2136Target {
    name: String,
    server: SocketAddr,
    zone: DnsName,
    key: TsigKey,
    timeout: Duration,
}

/// What a request was, for the wording of errors.
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
    Query(&'a RecordKey),
    Update,
}

impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Query(key) => write!(f, "the query for {key}"),
            Request::Update => f.write_str("the update"),
        }
    }
}

impl Rfc2136Target {
    /// `name` is the target's name from config; `server` the zone's primary; `timeout`
    /// bounds each whole exchange (connect, send, every answer).
    pub fn new(
        name: String,
        server: SocketAddr,
        zone: DnsName,
        key: TsigKey,
        timeout: Duration,
    ) -> Self {
        Self {
            name,
            server,
            zone,
            key,
            timeout,
        }
    }

    /// `ns1 (127.0.0.1:53)`: how errors name this target.
    fn who(&self) -> String {
        format!("{} ({})", self.name, self.server)
    }

    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        let keys: BTreeSet<&RecordKey> = keys.iter().collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() > usize::from(u16::MAX) {
            bail!(
                "{}: {} RRsets cannot be read on one connection (message ids are 16 bits); read at most {} at a time",
                self.who(),
                keys.len(),
                u16::MAX
            );
        }
        let signer = self.key.signer();
        // Pipelined answers may come back in any order (RFC 7766 §6.2.1.1): match them by id.
        let first_id: u16 = rand::random();
        let mut pending = HashMap::new();
        let mut requests = Vec::new();
        for (id, key) in (0..=u16::MAX).map(|n| first_id.wrapping_add(n)).zip(keys) {
            let owner = self.owner_name(&key.name)?;
            let mut query = query_message(id, owner.clone(), key.rtype);
            let verifier = sign(&mut query, &signer)?;
            requests.push(query.to_vec().context("encoding a DNS query")?);
            pending.insert(id, (key, owner, verifier));
        }

        let mut rrsets = Vec::new();
        for answer in self.exchange(&requests).await? {
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            let Some((key, owner, mut verifier)) = pending.remove(&id) else {
                bail!(
                    "{} sent an answer (id {id}) to no pending query; is something else answering on that address?",
                    self.who()
                );
            };
            let request = Request::Query(key);
            let message = self.check_answer(request, &answer, &mut verifier)?;
            if !message.authoritative {
                bail!(
                    "{} answered {request} without authority: it does not serve zone {}; point the target at the zone's primary, not a resolver",
                    self.who(),
                    self.zone
                );
            }
            rrsets.extend(rrset_from_answer(key, &owner, &message));
        }
        Ok(rrsets)
    }

    async fn send_update(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let zone = self.checked_name(&self.zone)?;
        let mut seen = BTreeSet::new();
        let mut updates = Vec::new();
        for change in changes {
            let key = &change.to.key;
            if !seen.insert(key) {
                bail!(
                    "{}: {key} is changed twice in one update; the plan must hold one change per RRset",
                    self.who()
                );
            }
            let owner = self.owner_name(&key.name)?;
            updates.extend(
                replace_rrset(owner, &change.to)
                    .map_err(|why| anyhow!("{}: refusing to send {key}: {why}", self.who()))?,
            );
        }
        let mut update = update_message(rand::random(), zone, updates);
        let mut verifier = sign(&mut update, &self.key.signer())?;
        let request = update.to_vec().context("encoding the DNS UPDATE")?;

        let answers = self.exchange(&[request]).await?;
        let answer = &answers[0];
        if answer[..2] != update.id.to_be_bytes() {
            bail!(
                "{} answered the update with a different message id; is something else answering on that address?",
                self.who()
            );
        }
        self.check_answer(Request::Update, answer, &mut verifier)?;
        Ok(())
    }

    /// Validates `name` again (a `DnsName` that came through serde skipped validation) and
    /// converts it for hickory.
    fn checked_name(&self, name: &DnsName) -> anyhow::Result<Name> {
        let name = validate::dns_name(name.as_str())
            .map_err(|why| anyhow!("{}: refusing to send a bad name: {why}", self.who()))?;
        Name::from_ascii(name.as_str())
            .map_err(|why| anyhow!("{}: refusing to send {name}: {why}", self.who()))
    }

    /// [`Self::checked_name`] for an owner name, which must also lie inside the zone.
    fn owner_name(&self, name: &DnsName) -> anyhow::Result<Name> {
        if !name.is_in_zone(&self.zone) {
            bail!(
                "{}: {name} is outside zone {}; this target can only read and write names in its zone (check the record name or the target's zone)",
                self.who(),
                self.zone
            );
        }
        self.checked_name(name)
    }

    /// Checks an answer as RFC 8945 §5.4 asks: a TSIG error means the server did not accept
    /// the key (BADSIG and BADKEY answers are unsigned by design, §5.3.2); otherwise the
    /// signature must verify, and an unsigned answer is believed only as a failure. Then the
    /// RCODE: NOERROR, or NXDOMAIN for a query, gives the message back; anything else is an
    /// error that says what to check.
    fn check_answer(
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
            bail!(
                "{} refused {request}: {} ({}) — {}",
                self.who(),
                rcode_mnemonic(rcode),
                tsig_error_mnemonic(tsig_error),
                explain_tsig_error(&self.key, tsig_error)
            );
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
            bail!(
                "{} answered {request} without a TSIG signature, so it cannot be trusted; check that the server has TSIG key {}",
                self.who(),
                self.key
            );
        }
        if succeeded {
            return Ok(message);
        }
        bail!(
            "{} refused {request}: {} — {}",
            self.who(),
            rcode_mnemonic(rcode),
            explain_rcode(rcode, request, &self.zone, &self.key, self.server)
        )
    }

    /// Sends `requests` on one TCP connection and returns as many answers, in arrival order.
    async fn exchange(&self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut framed = Vec::new();
        for request in requests {
            let length = u16::try_from(request.len()).map_err(|_| {
                anyhow!(
                    "{}: a message of {} bytes does not fit in DNS over TCP's 65535; split the change",
                    self.who(),
                    request.len()
                )
            })?;
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(request);
        }
        tokio::time::timeout(self.timeout, self.exchange_on_tcp(&framed, requests.len()))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow!(
                    "no answer from {} within {} — is the server running and is this its primary?",
                    self.who(),
                    humantime::format_duration(self.timeout)
                ))
            })
    }

    async fn exchange_on_tcp(
        &self,
        framed: &[u8],
        answer_count: usize,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut stream = TcpStream::connect(self.server).await.map_err(|why| {
            anyhow!(
                "cannot connect to {}: {why} — is the server running and listening on TCP {}?",
                self.who(),
                self.server
            )
        })?;
        let (mut reader, mut writer) = stream.split();
        // Read while writing, so a server that answers early never blocks on a full buffer.
        let send = async {
            writer.write_all(framed).await?;
            writer.flush().await
        };
        let receive = async {
            let mut answers = Vec::with_capacity(answer_count);
            for _ in 0..answer_count {
                let length = reader.read_u16().await?;
                let mut answer = vec![0; usize::from(length)];
                reader.read_exact(&mut answer).await?;
                if answer.len() < 12 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "an answer shorter than a DNS header",
                    ));
                }
                answers.push(answer);
            }
            Ok(answers)
        };
        let ((), answers) = tokio::try_join!(send, receive).map_err(|why| {
            if why.kind() == std::io::ErrorKind::UnexpectedEof {
                anyhow!(
                    "{} closed the connection before answering — check the server's log",
                    self.who()
                )
            } else {
                anyhow!("talking to {}: {why}", self.who())
            }
        })?;
        Ok(answers)
    }
}

impl DnsTarget for Rfc2136Target {
    fn name(&self) -> &str {
        &self.name
    }

    fn zone(&self) -> &DnsName {
        &self.zone
    }

    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>> {
        Box::pin(self.read_rrsets(keys))
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_update(changes))
    }
}

/// A query for one RRset: class IN, recursion not desired (RFC 1035 §4.1.1), since the
/// answer must come from the server's own zone data.
fn query_message(id: u16, owner: Name, rtype: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(owner, hickory_type(rtype)));
    message
}

/// An UPDATE (RFC 2136 §2): the zone section names the zone (§2.3: type SOA, class IN), no
/// prerequisites, then `updates`.
fn update_message(id: u16, zone: Name, updates: Vec<Record>) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Update);
    message.metadata.recursion_desired = false;
    let mut zone_section = Query::query(zone, hickory_proto::rr::RecordType::SOA);
    zone_section.set_query_class(DNSClass::IN);
    message.add_query(zone_section);
    message.add_authorities(updates);
    message
}

/// The update records that replace an RRset with `to`: "Delete An RRset" (RFC 2136 §2.5.2:
/// class ANY, TTL 0, empty RDATA), then "Add To An RRset" (§2.5.1) for each address. The
/// server applies them in order, so the RRset ends up exactly `to`; an empty `to` deletes it.
fn replace_rrset(owner: Name, to: &RecordSet) -> Result<Vec<Record>, validate::Invalid> {
    let rtype = to.key.rtype;
    let mut delete = Record::update0(owner.clone(), 0, hickory_type(rtype));
    delete.dns_class = DNSClass::ANY;
    let mut records = vec![delete];
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

/// Signs `message` (RFC 8945 §5.1) and returns the verifier for its answer.
fn sign(message: &mut Message, signer: &TSigner) -> anyhow::Result<TSigVerifier> {
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

fn hickory_type(rtype: RecordType) -> hickory_proto::rr::RecordType {
    match rtype {
        RecordType::A => hickory_proto::rr::RecordType::A,
        RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
    }
}

/// RCODE names as RFC 1035 §4.1.1, RFC 2136 §2.2 and `dig`/`nsupdate` print them.
fn rcode_mnemonic(rcode: ResponseCode) -> String {
    let name = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("RCODE {}", u16::from(other)),
    };
    name.to_string()
}

/// TSIG error names as RFC 8945 §3 lists them.
fn tsig_error_mnemonic(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".to_string(),
        TsigError::BadKey => "BADKEY".to_string(),
        TsigError::BadTime => "BADTIME".to_string(),
        TsigError::BadTrunc => "BADTRUNC".to_string(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

/// Why the server did not accept the key (RFC 8945 §5.2), and what to check.
fn explain_tsig_error(key: &TsigKey, error: TsigError) -> String {
    match error {
        TsigError::BadSig => format!(
            "TSIG key {key} was not accepted: the server has a key of that name and algorithm but the signature did not verify, so the secrets differ; check the key"
        ),
        TsigError::BadKey => format!(
            "TSIG key {key} was not accepted: the server has no key of that name and algorithm; check the name and algorithm against the server's `key` clause"
        ),
        TsigError::BadTime => format!(
            "TSIG key {key} is right but the clocks of this host and the server differ by more than {FUDGE_SECONDS} s; check NTP on both"
        ),
        TsigError::BadTrunc | TsigError::Unknown(_) => {
            format!("TSIG key {key} was not accepted; check the key and the server's log")
        }
    }
}

/// What an error RCODE means for `request`, and what to check.
fn explain_rcode(
    rcode: ResponseCode,
    request: Request<'_>,
    zone: &DnsName,
    key: &TsigKey,
    server: SocketAddr,
) -> String {
    let updating = matches!(request, Request::Update);
    match rcode {
        // RFC 2136 §3.1: the zone is not one the server is primary for. A key problem
        // would have come with a TSIG error.
        ResponseCode::NotAuth => format!(
            "the server is not authoritative for zone {zone}; check the zone name and that {server} is the zone's primary"
        ),
        ResponseCode::Refused if updating => format!(
            "the server does not allow updates to zone {zone} with TSIG key {key} (check allow-update / update-policy)"
        ),
        ResponseCode::Refused => format!(
            "the server does not answer for zone {zone} (check that it serves the zone and that allow-query admits this host)"
        ),
        ResponseCode::NotZone => format!(
            "the server says a name in the update is outside zone {zone}; check the zone name"
        ),
        ResponseCode::ServFail => {
            "the server failed to process it; check its log (is the zone loaded, is its journal writable?)".to_string()
        }
        ResponseCode::NotImp if updating => format!(
            "the server does not implement dynamic updates; point the target at a primary that accepts RFC 2136 UPDATE for {zone}"
        ),
        ResponseCode::FormErr => {
            "the server could not parse the message; check its log".to_string()
        }
        _ => "an unexpected answer; check the server's log".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tsig::TsigAlgorithm;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    fn key() -> TsigKey {
        TsigKey::from_base64(
            "ipdrift-key",
            TsigAlgorithm::HmacSha256,
            "6fLGcV97PuPNuGGSjNxVG8JLZvjInc+xJr1fYtITveo=",
        )
        .unwrap()
    }

    fn rrset(owner: &str, rtype: RecordType, ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet {
            key: RecordKey {
                name: name(owner),
                rtype,
            },
            ttl,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn target() -> Rfc2136Target {
        Rfc2136Target::new(
            "ns1".into(),
            "127.0.0.1:5353".parse().unwrap(),
            name("example.test."),
            key(),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn an_update_deletes_then_adds_each_rrset() {
        let www = rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.1", "192.0.2.2"],
        );
        let owner = Name::from_ascii("www.example.test.").unwrap();
        let message = update_message(
            7,
            Name::from_ascii("example.test.").unwrap(),
            replace_rrset(owner.clone(), &www).unwrap(),
        );
        assert_eq!(message.op_code, OpCode::Update);
        assert_eq!(message.queries.len(), 1);
        assert_eq!(
            message.queries[0].query_type(),
            hickory_proto::rr::RecordType::SOA
        );
        assert_eq!(message.queries[0].query_class(), DNSClass::IN);
        assert!(message.answers.is_empty(), "no prerequisites");

        let [delete, adds @ ..] = message.authorities.as_slice() else {
            panic!("no updates")
        };
        assert_eq!(delete.dns_class, DNSClass::ANY);
        assert_eq!(delete.ttl, 0);
        assert_eq!(
            delete.data,
            RData::Update0(hickory_proto::rr::RecordType::A)
        );
        assert_eq!(adds.len(), 2);
        for add in adds {
            assert_eq!(
                (add.dns_class, add.ttl, &add.name),
                (DNSClass::IN, 60, &owner)
            );
        }
        // Round-trips through the wire format.
        let decoded = Message::from_vec(&message.to_vec().unwrap()).unwrap();
        assert_eq!(decoded.authorities.len(), 3);
    }

    #[test]
    fn addresses_must_fit_the_record_type_and_be_usable() {
        let owner = Name::from_ascii("www.example.test.").unwrap();
        let wrong_family = rrset("www.example.test.", RecordType::Aaaa, 60, &["192.0.2.1"]);
        assert!(replace_rrset(owner.clone(), &wrong_family).is_err());
        let unspecified = rrset("www.example.test.", RecordType::A, 60, &["0.0.0.0"]);
        assert!(replace_rrset(owner, &unspecified).is_err());
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        let target = target();
        let error = target.owner_name(&name("www.example.org.")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("ns1 (127.0.0.1:5353)"), "{text}");
        assert!(text.contains("outside zone example.test."), "{text}");
        // A suffix match is not zone membership.
        assert!(target.owner_name(&name("wwwexample.test.")).is_err());
        // A DnsName that skipped validation (serde) is still checked.
        let smuggled = DnsName("a b.example.test.".into());
        assert!(target.owner_name(&smuggled).is_err());
    }

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

    /// A signed query for www.example.test. A, and the verifier for its answer.
    fn signed_query() -> (Message, TSigVerifier) {
        let owner = Name::from_ascii("www.example.test.").unwrap();
        let mut query = query_message(42, owner, RecordType::A);
        let verifier = sign(&mut query, &key().signer()).unwrap();
        (query, verifier)
    }

    /// An authoritative NOERROR answer to `query`, signed as a server would (RFC 8945 §4.3.1)
    /// with `signer`, or unsigned.
    fn answer(query: &Message, signer: Option<&TSigner>) -> Vec<u8> {
        let mut answer = Message::response(query.id, OpCode::Query);
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

    #[test]
    fn answers_are_believed_only_when_signed_with_the_key() {
        let target = target();
        let record = RecordKey {
            name: name("www.example.test."),
            rtype: RecordType::A,
        };
        let request = Request::Query(&record);

        let (query, mut verifier) = signed_query();
        let signed = answer(&query, Some(&key().signer()));
        assert!(target.check_answer(request, &signed, &mut verifier).is_ok());

        let (query, mut verifier) = signed_query();
        let other_key =
            TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, "b3RoZXI=").unwrap();
        let forged = answer(&query, Some(&other_key.signer()));
        let text = target
            .check_answer(request, &forged, &mut verifier)
            .unwrap_err()
            .to_string();
        assert!(text.contains("failed TSIG verification"), "{text}");

        let (query, mut verifier) = signed_query();
        let unsigned = answer(&query, None);
        let text = target
            .check_answer(request, &unsigned, &mut verifier)
            .unwrap_err()
            .to_string();
        assert!(text.contains("without a TSIG signature"), "{text}");
    }

    #[test]
    fn refusals_say_what_to_check_and_never_the_secret() {
        let zone = name("example.test.");
        let key = key();
        let server = "127.0.0.1:5353".parse().unwrap();
        let texts = [
            explain_tsig_error(&key, TsigError::BadSig),
            explain_tsig_error(&key, TsigError::BadKey),
            explain_rcode(ResponseCode::Refused, Request::Update, &zone, &key, server),
            explain_rcode(ResponseCode::NotAuth, Request::Update, &zone, &key, server),
        ];
        assert!(
            texts[0].contains("'ipdrift-key' (hmac-sha256)"),
            "{}",
            texts[0]
        );
        assert!(texts[0].contains("secrets differ"), "{}", texts[0]);
        assert!(texts[2].contains("allow-update"), "{}", texts[2]);
        assert!(texts[3].contains("not authoritative"), "{}", texts[3]);
        for text in texts {
            assert!(!text.contains("6fLGcV97"), "{text}");
        }
        assert_eq!(rcode_mnemonic(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_mnemonic(ResponseCode::BADCOOKIE), "RCODE 23");
    }
}
