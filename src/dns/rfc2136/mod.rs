//! A zone on a primary server that accepts dynamic updates (RFC 2136) signed with TSIG
//! (RFC 8945), such as BIND or Knot.
//!
//! Reads go straight to that server (never a resolver): a few RRsets are read with one query
//! each, pipelined on one TCP connection; many, and the ownership records, by listing the
//! zone with one zone transfer (AXFR, RFC 5936), or with queries when the server refuses
//! the transfer. A write is one UPDATE message holding every change, with prerequisites
//! where ownership matters, or as few messages as fit when one would pass the 65 535 bytes
//! DNS over TCP carries; they are pipelined on one connection too. Every message is
//! TSIG-signed and every answer's signature is verified before it is believed.
//!
//! Message building and answer interpretation are pure functions; [`Rfc2136Target`] only
//! adds the TCP exchange (RFC 1035 §4.2.2: each message is prefixed with its 2-byte length).

pub mod config;

pub use config::KIND;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, TSigVerifier, TSigner};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::BoxFuture;
use crate::dns::tsig::{FUDGE_SECONDS, TsigKey};
use crate::dns::{DnsTarget, OWNERSHIP_LABEL, RecordChange, ZoneContents, ownership_name};
use crate::model::{DnsName, RecordKey, RecordSet, RecordType};
use crate::validate;

/// The most a zone transfer may carry, in bytes: about a million address records. A
/// transfer this big is more likely the wrong zone, or a server that never stops, than a
/// zone of addresses ipdrift manages.
const MAX_TRANSFER_BYTES: usize = 64 << 20;

/// A read of more RRsets than this may list the zone with one zone transfer instead of one
/// query per RRset; fewer take about as long as the smallest transfer.
const TRANSFER_ABOVE_KEYS: usize = 32;

/// How many records of a zone transfer cost as much as one query and its answer, each
/// signed and verified: 15–25 measured against BIND 9.18 on loopback (5–12 µs per
/// transferred record, 70–300 µs per query). A read transfers the zone only when its RRsets
/// times this reach the zone's size, so that a few RRsets in a big zone are still queried.
const RECORDS_PER_QUERY: usize = 16;

/// After a server refused a zone transfer, reads use queries for this long before they try
/// a transfer again (the operator may allow it meanwhile).
const TRANSFER_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The largest UPDATE message ipdrift builds, before its TSIG record. DNS over TCP carries
/// at most 65 535 bytes (RFC 1035 §4.2.2); the TSIG record signing appends is at most about
/// 350 bytes (RFC 8945 §4.2: the key name, at most 255, the algorithm name, 16 bytes of
/// fixed fields and a MAC of at most 64), so 1 KiB leaves room to spare.
const MAX_UPDATE_BYTES: usize = 65_535 - 1_024;

/// A DNS message header (RFC 1035 §4.1.1).
const HEADER_BYTES: usize = 12;

/// A TXT character-string holds at most 255 bytes (RFC 1035 §3.3).
const MAX_CHARACTER_STRING: usize = 255;

/// One zone on one RFC 2136 primary, reached over TCP and authenticated with one TSIG key.
#[derive(Debug)]
pub struct Rfc2136Target {
    name: String,
    server: SocketAddr,
    zone: DnsName,
    key: TsigKey,
    timeout: Duration,
    /// What past zone transfers showed, for deciding how to read.
    transfers: Mutex<TransferHistory>,
}

/// What past zone transfers of the zone showed.
#[derive(Debug, Default)]
struct TransferHistory {
    /// When the server last refused one; `None` while transfers work or were never tried.
    refused_at: Option<Instant>,
    /// Whether the operator was told how to allow transfers (once per target).
    told: bool,
    /// How many records the last transfer held; `None` before the first.
    zone_records: Option<usize>,
}

impl TransferHistory {
    /// Whether reading `keys` RRsets at `now` is done best with a transfer: there are more
    /// than [`TRANSFER_ABOVE_KEYS`], as many queries would cost at least the transfer of a
    /// zone the size of the last one, and no transfer was refused within
    /// [`TRANSFER_RETRY_AFTER`].
    fn prefers_transfer(&self, keys: usize, now: Instant) -> bool {
        keys > TRANSFER_ABOVE_KEYS
            && self
                .zone_records
                .is_none_or(|records| keys.saturating_mul(RECORDS_PER_QUERY) >= records)
            && self
                .refused_at
                .is_none_or(|at| now.saturating_duration_since(at) >= TRANSFER_RETRY_AFTER)
    }
}

/// The server refused the zone transfer itself (REFUSED or NOTAUTH without a TSIG error),
/// as servers do unless told to allow it: reads can do without it.
#[derive(Debug, thiserror::Error)]
#[error("{explanation}")]
struct TransferRefused {
    rcode: ResponseCode,
    explanation: String,
}

/// What a request was, for the wording of errors.
#[derive(Debug, Clone, Copy)]
enum Request<'a> {
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

/// The RRsets an UPDATE's prerequisites guard, to name them when the server says one failed
/// (it does not say which).
#[derive(Debug, Default)]
struct Guarded {
    /// Created only if they do not exist (RFC 2136 §2.4.3).
    created: Vec<RecordKey>,
    /// Deleted only if their ownership record exists (RFC 2136 §2.4.1).
    deleted: Vec<RecordKey>,
}

/// One UPDATE message of a write, and what it changes, to name them in errors.
#[derive(Debug, Default)]
struct UpdatePart {
    /// Counting from 1, of `count`; a write of one message is simply "the update".
    number: usize,
    count: usize,
    /// Every RRset the message changes.
    changed: Vec<RecordKey>,
    guarded: Guarded,
}

/// The prerequisite and update sections of one UPDATE (RFC 2136 §2.4, §2.5), with the
/// deletions kept apart so that they precede every addition of the message.
#[derive(Debug, Default)]
struct UpdateSections {
    prerequisites: Vec<Record>,
    deletions: Vec<Record>,
    additions: Vec<Record>,
    changed: Vec<RecordKey>,
    guarded: Guarded,
    /// The encoded size of every record above, each encoded alone: an upper bound of what
    /// they take in a message, where name compression can only shrink them.
    bytes: usize,
}

impl UpdateSections {
    /// Moves every record and key of `other` into `self`.
    fn append(&mut self, mut other: UpdateSections) {
        self.prerequisites.append(&mut other.prerequisites);
        self.deletions.append(&mut other.deletions);
        self.additions.append(&mut other.additions);
        self.changed.append(&mut other.changed);
        self.guarded.created.append(&mut other.guarded.created);
        self.guarded.deleted.append(&mut other.guarded.deleted);
        self.bytes += other.bytes;
    }

    /// The update section: deletions first (see [`Rfc2136Target::update_messages`]).
    fn updates(&mut self) -> Vec<Record> {
        let mut updates = std::mem::take(&mut self.deletions);
        updates.append(&mut self.additions);
        updates
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
            transfers: Mutex::default(),
        }
    }

    /// `ns1 (127.0.0.1:53)`: how errors name this target.
    fn who(&self) -> String {
        format!("{} ({})", self.name, self.server)
    }

    /// The RRsets of `keys`: from one zone transfer when there are many, compared with the
    /// zone's size, and the server allows transfers; otherwise with one query each.
    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<Vec<RecordSet>> {
        let keys: BTreeSet<&RecordKey> = keys.iter().collect();
        for key in &keys {
            self.owner_name(&key.name)?;
        }
        let prefers_transfer =
            (self.transfers.lock().expect("lock")).prefers_transfer(keys.len(), Instant::now());
        if prefers_transfer {
            match self.transfer_zone(MAX_TRANSFER_BYTES).await {
                Ok(listing) => return Ok(listing.rrsets_of(&keys)),
                Err(error) => match error.downcast_ref::<TransferRefused>() {
                    Some(refused) => self.remember_refusal(refused),
                    None => return Err(error),
                },
            }
        }
        self.query_rrsets(&keys).await
    }

    /// Remembers that the server refused a zone transfer and, the first time, tells the
    /// operator how to allow it: reads still work, with one query per RRset.
    fn remember_refusal(&self, refused: &TransferRefused) {
        let mut transfers = self.transfers.lock().expect("lock");
        transfers.refused_at = Some(Instant::now());
        if !std::mem::replace(&mut transfers.told, true) {
            tracing::info!(
                target = %self.name,
                server = %self.server,
                zone = %self.zone,
                rcode = %rcode_mnemonic(refused.rcode),
                "the server refused a zone transfer, so RRsets are read with one query each (a transfer is tried again every {}); one transfer reads many RRsets much faster: add `allow-transfer {{ key {}; }};` to the zone's clause in named.conf",
                humantime::format_duration(TRANSFER_RETRY_AFTER),
                self.key.name_in_config()
            );
        }
    }

    /// The RRsets of `keys` with one signed query each, pipelined on one connection.
    async fn query_rrsets(&self, keys: &BTreeSet<&RecordKey>) -> anyhow::Result<Vec<RecordSet>> {
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
        for (id, &key) in (0..=u16::MAX).map(|n| first_id.wrapping_add(n)).zip(keys) {
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

    /// Writes `changes` in as few UPDATE messages as fit (usually one), pipelined on one
    /// connection. The server applies each message atomically and on its own (RFC 2136
    /// §3.2, §3.4), so a refused message is reported, naming its RRsets, while the others
    /// still take effect.
    async fn send_update(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let zone = self.checked_name(&self.zone)?;
        let messages = self.update_messages(changes, MAX_UPDATE_BYTES)?;
        let count = messages.len();
        let signer = self.key.signer();
        // Pipelined answers may come back in any order (RFC 7766 §6.2.1.1): match them by id.
        let first_id: u16 = rand::random();
        let mut pending = HashMap::new();
        let mut requests = Vec::with_capacity(count);
        for (index, mut sections) in messages.into_iter().enumerate() {
            let offset = u16::try_from(index).map_err(|_| {
                anyhow!(
                    "{}: {count} UPDATE messages cannot be sent on one connection (message ids are 16 bits); write fewer changes at a time",
                    self.who()
                )
            })?;
            let id = first_id.wrapping_add(offset);
            let updates = sections.updates();
            let mut update = update_message(id, zone.clone(), sections.prerequisites, updates);
            let verifier = sign(&mut update, &signer)?;
            let request = update.to_vec().context("encoding a DNS UPDATE")?;
            // Past 65 535 bytes hickory leaves records out and sets TC instead of failing; the
            // size budget keeps every message well below, and this keeps a cut UPDATE unsent.
            if is_truncated(&request) {
                bail!(
                    "{}: UPDATE message {} of {count} did not fit in a DNS message; nothing was sent",
                    self.who(),
                    index + 1
                );
            }
            requests.push(request);
            let part = UpdatePart {
                number: index + 1,
                count,
                changed: sections.changed,
                guarded: sections.guarded,
            };
            pending.insert(id, (part, verifier));
        }

        let mut refused = BTreeMap::new();
        for answer in self.exchange(&requests).await? {
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            let Some((part, mut verifier)) = pending.remove(&id) else {
                bail!(
                    "{} sent an answer (id {id}) to no pending update; is something else answering on that address?",
                    self.who()
                );
            };
            if let Err(error) = self.check_answer(Request::Update(&part), &answer, &mut verifier) {
                refused.insert(part.number, error);
            }
        }
        update_outcome(refused.into_values().collect(), count)
    }

    /// The UPDATE messages that make `changes`, each at most `max_bytes` before signing:
    /// - `Replace`: delete the RRset, add `to`.
    /// - `Create`: prerequisite "RRset does not exist", so a create never merges with an RRset
    ///   that appeared since it was read; add `to` and the ownership record.
    /// - `Delete`: prerequisite "ownership record exists", so ipdrift never deletes an RRset
    ///   whose ownership vanished; delete the RRset and the ownership record.
    ///
    /// The server applies a message's updates in order (RFC 2136 §3.4.2) and ownership is per
    /// name, so deletions go first: a `Create` at a name where another type is deleted in the
    /// same batch then re-adds the ownership record instead of losing it. For the same
    /// reason all changes at one name go into one message. Names fill messages in the order
    /// they first appear; a name whose records would not fit starts the next message.
    fn update_messages(
        &self,
        changes: &[RecordChange],
        max_bytes: usize,
    ) -> anyhow::Result<Vec<UpdateSections>> {
        let zone = self.checked_name(&self.zone)?;
        let zone_section = Query::query(zone, hickory_proto::rr::RecordType::SOA);
        let fixed_bytes = HEADER_BYTES + encoded_len(&zone_section)?;
        let mut names: Vec<UpdateSections> = Vec::new();
        let mut index_of_name: HashMap<&DnsName, usize> = HashMap::new();
        let mut seen = BTreeSet::new();
        for change in changes {
            let key = change.key();
            if !seen.insert(key) {
                bail!(
                    "{}: {key} is changed twice in one update; the plan must hold one change per RRset",
                    self.who()
                );
            }
            let sections = self.change_sections(change)?;
            match index_of_name.entry(&key.name) {
                Entry::Occupied(index) => names[*index.get()].append(sections),
                Entry::Vacant(vacant) => {
                    vacant.insert(names.len());
                    names.push(sections);
                }
            }
        }

        let mut messages = Vec::new();
        let mut message = UpdateSections::default();
        for name in names {
            if fixed_bytes + name.bytes > max_bytes {
                bail!(
                    "{}: the changes at {} take {} bytes, more than one UPDATE message holds ({max_bytes}); give the RRset fewer addresses",
                    self.who(),
                    name.changed[0].name,
                    name.bytes
                );
            }
            if !message.changed.is_empty() && fixed_bytes + message.bytes + name.bytes > max_bytes {
                messages.push(std::mem::take(&mut message));
            }
            message.append(name);
        }
        messages.push(message);
        Ok(messages)
    }

    /// The sections of one change (see [`Self::update_messages`]), with their size.
    fn change_sections(&self, change: &RecordChange) -> anyhow::Result<UpdateSections> {
        let key = change.key();
        let owner = self.owner_name(&key.name)?;
        let rtype = hickory_type(key.rtype);
        let refuse = |why| anyhow!("{}: refusing to send {key}: {why}", self.who());
        let mut sections = UpdateSections {
            changed: vec![key.clone()],
            ..UpdateSections::default()
        };
        match change {
            // "Delete an RRset" (RFC 2136 §2.5.2), then add `to`: the deletions of a message
            // precede its additions, so the RRset ends up exactly `to` (gone if it is empty).
            RecordChange::Replace { to, .. } => {
                sections
                    .deletions
                    .push(bare_rrset(owner.clone(), rtype, DNSClass::ANY));
                sections
                    .additions
                    .extend(add_rrset(owner, to).map_err(refuse)?);
            }
            RecordChange::Create {
                to,
                owner: ownership_text,
            } => {
                if to.addrs.is_empty() {
                    return Err(refuse(validate::Invalid(
                        "an RRset to create needs at least one address".into(),
                    )));
                }
                let ownership = self.checked_name(&ownership_name(&key.name))?;
                sections
                    .prerequisites
                    .push(bare_rrset(owner.clone(), rtype, DNSClass::NONE));
                sections
                    .additions
                    .extend(add_rrset(owner, to).map_err(refuse)?);
                sections
                    .additions
                    .push(ownership_record(ownership, to.ttl, ownership_text));
                sections.guarded.created.push(key.clone());
            }
            RecordChange::Delete { .. } => {
                let ownership = self.checked_name(&ownership_name(&key.name))?;
                let txt = hickory_proto::rr::RecordType::TXT;
                sections
                    .prerequisites
                    .push(bare_rrset(ownership.clone(), txt, DNSClass::ANY));
                sections
                    .deletions
                    .push(bare_rrset(owner, rtype, DNSClass::ANY));
                sections
                    .deletions
                    .push(bare_rrset(ownership, txt, DNSClass::ANY));
                sections.guarded.deleted.push(key.clone());
            }
        }
        for record in sections
            .prerequisites
            .iter()
            .chain(&sections.deletions)
            .chain(&sections.additions)
        {
            sections.bytes += encoded_len(record)?;
        }
        Ok(sections)
    }

    /// The zone, from a zone transfer (RFC 5936) of at most `max_bytes`, all within the
    /// target's timeout.
    ///
    /// Every message of the transfer must be TSIG-signed: each is verified against the one
    /// before (RFC 8945 §5.3.1). The RFC lets a server sign only every 100th message, the
    /// ones between covered by the next signature, but hickory's verifier takes one message
    /// at a time; BIND and Knot sign every message.
    async fn transfer_zone(&self, max_bytes: usize) -> anyhow::Result<ZoneListing> {
        let zone = self.checked_name(&self.zone)?;
        let mut query = transfer_query(rand::random(), zone.clone());
        let mut verifier = sign(&mut query, &self.key.signer())?;
        let request = self.frame(&[query.to_vec().context("encoding the AXFR query")?])?;
        let transfer = async {
            let mut stream = self.connect().await?;
            stream
                .write_all(&request)
                .await
                .map_err(|why| self.io_error(why))?;
            let mut listing = ZoneListing::new(zone);
            let mut received = 0;
            let mut number = 0;
            loop {
                number += 1;
                let answer = read_message(&mut stream)
                    .await
                    .map_err(|why| self.io_error(why))?;
                received += answer.len();
                if received > max_bytes {
                    bail!(
                        "the zone transfer (AXFR) of {} from {} is larger than {max_bytes} bytes, the most ipdrift reads from one zone; check that the target's zone is the one holding the managed names",
                        self.zone,
                        self.who()
                    );
                }
                if answer[..2] != query.id.to_be_bytes() {
                    bail!(
                        "{} answered the zone transfer with a different message id; is something else answering on that address?",
                        self.who()
                    );
                }
                let message = self.check_answer(
                    Request::Transfer { message: number },
                    &answer,
                    &mut verifier,
                )?;
                let complete = listing.take(&message.answers).map_err(|why| {
                    anyhow!(
                        "{} sent a zone transfer (AXFR) of {} that {why}",
                        self.who(),
                        self.zone
                    )
                })?;
                if complete {
                    self.transfers.lock().expect("lock").zone_records = Some(listing.records);
                    return Ok(listing);
                }
            }
        };
        tokio::time::timeout(self.timeout, transfer)
            .await
            .unwrap_or_else(|_| {
                Err(anyhow!(
                    "the zone transfer (AXFR) of {} from {} did not finish within {} — is the server running, and is this its primary?",
                    self.zone,
                    self.who(),
                    humantime::format_duration(self.timeout)
                ))
            })
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
        match (request, rcode) {
            (Request::Transfer { message: 1 }, ResponseCode::Refused | ResponseCode::NotAuth) => {
                Err(TransferRefused { rcode, explanation }.into())
            }
            _ => Err(anyhow!(explanation)),
        }
    }

    /// Sends `requests` on one TCP connection and returns as many answers, in arrival order.
    async fn exchange(&self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<Vec<u8>>> {
        let framed = self.frame(requests)?;
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

    /// Each request prefixed with its length (RFC 1035 §4.2.2), ready to send.
    fn frame(&self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
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
        Ok(framed)
    }

    async fn exchange_on_tcp(
        &self,
        framed: &[u8],
        answer_count: usize,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut stream = self.connect().await?;
        let (mut reader, mut writer) = stream.split();
        // Read while writing, so a server that answers early never blocks on a full buffer.
        let send = async {
            writer.write_all(framed).await?;
            writer.flush().await
        };
        let receive = async {
            let mut answers = Vec::with_capacity(answer_count);
            for _ in 0..answer_count {
                answers.push(read_message(&mut reader).await?);
            }
            Ok(answers)
        };
        let ((), answers) = tokio::try_join!(send, receive).map_err(|why| self.io_error(why))?;
        Ok(answers)
    }

    async fn connect(&self) -> anyhow::Result<TcpStream> {
        TcpStream::connect(self.server).await.map_err(|why| {
            anyhow!(
                "cannot connect to {}: {why} — is the server running and listening on TCP {}?",
                self.who(),
                self.server
            )
        })
    }

    fn io_error(&self, why: std::io::Error) -> anyhow::Error {
        if why.kind() == std::io::ErrorKind::UnexpectedEof {
            anyhow!(
                "{} closed the connection before answering — check the server's log",
                self.who()
            )
        } else {
            anyhow!("talking to {}: {why}", self.who())
        }
    }
}

/// Reads one length-prefixed message (RFC 1035 §4.2.2) of at least a DNS header.
async fn read_message(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let length = reader.read_u16().await?;
    let mut message = vec![0; usize::from(length)];
    reader.read_exact(&mut message).await?;
    if message.len() < 12 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "an answer shorter than a DNS header",
        ));
    }
    Ok(message)
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

    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>> {
        Box::pin(async {
            let listing = self.transfer_zone(MAX_TRANSFER_BYTES).await?;
            Ok(listing.into_contents().ownership)
        })
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_update(changes))
    }

    /// One zone transfer gives both the ownership records and the RRsets.
    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(async {
            let listing = self.transfer_zone(MAX_TRANSFER_BYTES).await?;
            Ok(listing.into_contents())
        })
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

/// A zone transfer query (RFC 5936 §2.1.1): the zone, type AXFR, class IN.
fn transfer_query(id: u16, zone: Name) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(zone, hickory_proto::rr::RecordType::AXFR));
    message
}

/// An UPDATE (RFC 2136 §2): the zone section names the zone (§2.3: type SOA, class IN), then
/// the prerequisite section (§2.4) and the update section (§2.5).
fn update_message(
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
fn bare_rrset(owner: Name, rtype: hickory_proto::rr::RecordType, class: DNSClass) -> Record {
    let mut record = Record::update0(owner, 0, rtype);
    record.dns_class = class;
    record
}

/// "Add to an RRset" (RFC 2136 §2.5.1) for each address of `to`.
fn add_rrset(owner: Name, to: &RecordSet) -> Result<Vec<Record>, validate::Invalid> {
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
fn ownership_record(owner: Name, ttl: u32, text: &str) -> Record {
    let mut strings: Vec<&[u8]> = text.as_bytes().chunks(MAX_CHARACTER_STRING).collect();
    if strings.is_empty() {
        // TXT-DATA is one or more character-strings.
        strings.push(b"");
    }
    Record::from_rdata(owner, ttl, RData::TXT(TXT::from_bytes(strings)))
}

/// The records of a zone transfer as its messages arrive, keeping the ownership records and
/// the A and AAAA RRsets. RFC 5936 §2.2: the transfer opens with the zone's SOA and closes
/// with it again.
#[derive(Debug)]
pub struct ZoneListing {
    zone: Name,
    opened: bool,
    /// Records between the opening and the closing SOA.
    records: usize,
    /// Managed name → the texts of its ownership records (normally exactly one).
    ownership: BTreeMap<DnsName, BTreeSet<String>>,
    rrsets: BTreeMap<RecordKey, RecordSet>,
    /// Names below the apex that have NS records: zone cuts. Address records at and below
    /// them are glue, not the zone's own data (RFC 1034 §4.2.1), and a query for them gets
    /// a referral, not an answer.
    cuts: Vec<DnsName>,
}

impl ZoneListing {
    pub fn new(zone: Name) -> Self {
        Self {
            zone,
            opened: false,
            records: 0,
            ownership: BTreeMap::new(),
            rrsets: BTreeMap::new(),
            cuts: Vec::new(),
        }
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

    /// Keeps `record` if it is an ownership record, an address record or a zone cut.
    fn keep(&mut self, record: &Record) {
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
        }
    }

    /// The RRsets of `keys` that the zone holds.
    fn rrsets_of(self, keys: &BTreeSet<&RecordKey>) -> Vec<RecordSet> {
        let Self {
            mut rrsets, cuts, ..
        } = self;
        keys.iter()
            .filter(|key| !is_glue(&cuts, key))
            .filter_map(|key| rrsets.remove(*key))
            .collect()
    }

    /// Every ownership record and address RRset. A name with several ownership records gets
    /// their texts sorted and joined by newlines, which matches no
    /// [`crate::dns::ownership_text`]: ambiguous ownership counts as none.
    pub fn into_contents(self) -> ZoneContents {
        let Self {
            ownership,
            rrsets,
            cuts,
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

/// The size of `item` encoded on its own, without name compression against anything else.
fn encoded_len(item: &impl BinEncodable) -> anyhow::Result<usize> {
    Ok(item
        .to_bytes()
        .context("encoding a record of the DNS UPDATE")?
        .len())
}

/// Whether an encoded message has its TC (truncated) flag set (RFC 1035 §4.1.1).
fn is_truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// The result of a write of `count` UPDATE messages from the errors of the refused ones, in
/// message order. A write of one message fails with that message's error; otherwise every
/// refused message is named and the error says how many were applied all the same.
fn update_outcome(refused: Vec<anyhow::Error>, count: usize) -> anyhow::Result<()> {
    let applied = count - refused.len();
    let mut errors = refused.into_iter();
    let Some(first) = errors.next() else {
        return Ok(());
    };
    if count == 1 {
        return Err(first);
    }
    let mut text = format!("{first:#}");
    for error in errors {
        text.push_str(&format!("; {error:#}"));
    }
    match applied {
        0 => text.push_str(&format!(
            "; none of the {count} update messages was applied"
        )),
        1 => text.push_str("; the other update message was applied"),
        _ => text.push_str(&format!(
            "; the other {applied} update messages were applied"
        )),
    }
    Err(anyhow!(text))
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
    let allow_transfer = format!(
        "add `allow-transfer {{ key {}; }};` to the zone's clause in named.conf",
        key.name_in_config()
    );
    match (rcode, request) {
        (ResponseCode::Refused, Request::Transfer { .. }) => format!(
            "the server does not allow zone transfers of {zone} with TSIG key {key}, which ipdrift needs to find its ownership records; {allow_transfer}"
        ),
        // BIND answers NOTAUTH to a transfer of a zone it does not serve, and some servers
        // to a transfer their ACL refuses.
        (ResponseCode::NotAuth, Request::Transfer { .. }) => format!(
            "the server is not authoritative for zone {zone} or does not allow zone transfers of it with TSIG key {key}; check that {server} is the zone's primary, and {allow_transfer}"
        ),
        // RFC 2136 §3.1: the zone is not one the server is primary for. A key problem
        // would have come with a TSIG error.
        (ResponseCode::NotAuth, _) => format!(
            "the server is not authoritative for zone {zone}; check the zone name and that {server} is the zone's primary"
        ),
        (ResponseCode::Refused, Request::Update(_)) => format!(
            "the server does not allow updates to zone {zone} with TSIG key {key} (check allow-update / update-policy)"
        ),
        (ResponseCode::Refused, _) => format!(
            "the server does not answer for zone {zone} (check that it serves the zone and that allow-query admits this host)"
        ),
        (
            ResponseCode::YXDomain
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::NXRRSet,
            Request::Update(part),
        ) => explain_failed_prerequisite(rcode, part),
        (ResponseCode::NotZone, _) => format!(
            "the server says a name in the update is outside zone {zone}; check the zone name"
        ),
        (ResponseCode::ServFail, _) => {
            "the server failed to process it; check its log (is the zone loaded, is its journal writable?)".to_string()
        }
        (ResponseCode::NotImp, Request::Update(_)) => format!(
            "the server does not implement dynamic updates; point the target at a primary that accepts RFC 2136 UPDATE for {zone}"
        ),
        (ResponseCode::FormErr, _) => {
            "the server could not parse the message; check its log".to_string()
        }
        _ => "an unexpected answer; check the server's log".to_string(),
    }
}

/// Why an UPDATE's prerequisite failed, naming the RRsets it guarded (the server does not
/// say which one failed). RFC 2136 §3.2.5: YXRRSET when an RRset to create exists, NXRRSET
/// when an ownership record is gone; nothing of the message was applied (§3.2).
fn explain_failed_prerequisite(rcode: ResponseCode, part: &UpdatePart) -> String {
    let guarded = &part.guarded;
    let creates_failed = matches!(rcode, ResponseCode::YXRRSet | ResponseCode::YXDomain);
    let scope = if part.count > 1 {
        "that message"
    } else {
        "the update"
    };
    let no_change =
        format!("nothing in {scope} was applied, and it will be handled in the next pass");
    match (guarded.created.as_slice(), guarded.deleted.as_slice()) {
        (created @ [_, ..], deleted) if creates_failed || deleted.is_empty() => format!(
            "{} appeared since it was read, so ipdrift did not create it over what is there; {no_change}",
            one_of(created)
        ),
        (_, [deleted]) => format!(
            "the ownership record {} TXT of {deleted} is gone, so ipdrift no longer owns it and did not delete it; {no_change}",
            ownership_name(&deleted.name)
        ),
        (_, deleted @ [_, _, ..]) => format!(
            "the ownership record ({OWNERSHIP_LABEL}.<name> TXT) of {} is gone, so ipdrift no longer owns it and did not delete it; {no_change}",
            one_of(deleted)
        ),
        _ => format!("a prerequisite failed, but {scope} had none; check the server's log"),
    }
}

/// `www.example.test. A`, or `one of www.example.test. A, api.example.test. A`.
fn one_of(keys: &[RecordKey]) -> String {
    if keys.len() == 1 {
        some_of(keys)
    } else {
        format!("one of {}", some_of(keys))
    }
}

/// How many RRsets an error names before it only counts the rest.
const NAMED_IN_ERRORS: usize = 10;

/// `www.example.test. A, api.example.test. A`; past [`NAMED_IN_ERRORS`] the rest are
/// counted: `…, web-9.example.test. A and 690 more`.
fn some_of(keys: &[RecordKey]) -> String {
    let mut listed = keys
        .iter()
        .take(NAMED_IN_ERRORS)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > NAMED_IN_ERRORS {
        listed.push_str(&format!(" and {} more", keys.len() - NAMED_IN_ERRORS));
    }
    listed
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

    /// The sections of the UPDATE that makes `changes`, which must fit in one message.
    fn one_message(changes: &[RecordChange]) -> UpdateSections {
        let mut messages = target().update_messages(changes, MAX_UPDATE_BYTES).unwrap();
        assert_eq!(messages.len(), 1);
        messages.remove(0)
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
        let mut sections = one_message(&[RecordChange::Replace {
            from: None,
            to: www,
        }]);
        let updates = sections.updates();
        let message = update_message(
            7,
            Name::from_ascii("example.test.").unwrap(),
            sections.prerequisites,
            updates,
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
        assert!(add_rrset(owner.clone(), &wrong_family).is_err());
        let unspecified = rrset("www.example.test.", RecordType::A, 60, &["0.0.0.0"]);
        assert!(add_rrset(owner, &unspecified).is_err());
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
            explain_rcode(
                ResponseCode::Refused,
                Request::Update(&UpdatePart::default()),
                &zone,
                &key,
                server,
            ),
            explain_rcode(
                ResponseCode::NotAuth,
                Request::Update(&UpdatePart::default()),
                &zone,
                &key,
                server,
            ),
            explain_rcode(
                ResponseCode::Refused,
                Request::Transfer { message: 1 },
                &zone,
                &key,
                server,
            ),
        ];
        assert!(
            texts[0].contains("'ipdrift-key' (hmac-sha256)"),
            "{}",
            texts[0]
        );
        assert!(texts[0].contains("secrets differ"), "{}", texts[0]);
        assert!(texts[2].contains("allow-update"), "{}", texts[2]);
        assert!(texts[3].contains("not authoritative"), "{}", texts[3]);
        assert!(
            texts[4].contains(
                "add `allow-transfer { key ipdrift-key; };` to the zone's clause in named.conf"
            ),
            "{}",
            texts[4]
        );
        for text in texts {
            assert!(!text.contains("6fLGcV97"), "{text}");
        }
        assert_eq!(rcode_mnemonic(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_mnemonic(ResponseCode::BADCOOKIE), "RCODE 23");
    }
    fn www() -> Name {
        Name::from_ascii("www.example.test.").unwrap()
    }

    fn ownership_of_www() -> Name {
        Name::from_ascii("_ipdrift.www.example.test.").unwrap()
    }

    fn txt_texts(record: &Record) -> Vec<&[u8]> {
        let RData::TXT(txt) = &record.data else {
            panic!("not a TXT record: {record:?}")
        };
        txt.txt_data.iter().map(AsRef::as_ref).collect()
    }

    #[test]
    fn a_create_needs_the_rrset_absent_and_adds_the_ownership_record() {
        let to = rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.1", "192.0.2.2"],
        );
        let mut sections = one_message(&[RecordChange::Create {
            to,
            owner: "heritage=ipdrift,owner=test".into(),
        }]);
        let updates = sections.updates();

        let [absent] = sections.prerequisites.as_slice() else {
            panic!("{:?}", sections.prerequisites)
        };
        assert_eq!(
            (&absent.name, absent.dns_class, absent.ttl, &absent.data),
            (
                &www(),
                DNSClass::NONE,
                0,
                &RData::Update0(hickory_proto::rr::RecordType::A)
            )
        );
        let [add1, add2, ownership] = updates.as_slice() else {
            panic!("{updates:?}")
        };
        for add in [add1, add2] {
            assert_eq!(
                (&add.name, add.dns_class, add.ttl),
                (&www(), DNSClass::IN, 60)
            );
        }
        assert_eq!(
            (&ownership.name, ownership.dns_class, ownership.ttl),
            (&ownership_of_www(), DNSClass::IN, 60)
        );
        assert_eq!(
            txt_texts(ownership),
            [b"heritage=ipdrift,owner=test".as_slice()]
        );
        assert_eq!(
            sections.guarded.created,
            [RecordKey {
                name: name("www.example.test."),
                rtype: RecordType::A
            }]
        );
    }

    #[test]
    fn deletions_need_the_ownership_record_and_come_before_additions() {
        let changes = [
            RecordChange::Create {
                to: rrset("www.example.test.", RecordType::Aaaa, 60, &["2001:db8::1"]),
                owner: "heritage=ipdrift,owner=test".into(),
            },
            RecordChange::Delete {
                from: rrset("www.example.test.", RecordType::A, 60, &["192.0.2.1"]),
            },
            RecordChange::Replace {
                from: None,
                to: rrset("api.example.test.", RecordType::A, 60, &["192.0.2.9"]),
            },
        ];
        let mut sections = one_message(&changes);
        let updates = sections.updates();
        let api = Name::from_ascii("api.example.test.").unwrap();
        let shape = |records: &[Record]| {
            records
                .iter()
                .map(|record| {
                    (
                        record.name.clone(),
                        record.dns_class,
                        record.record_type(),
                        record.ttl,
                    )
                })
                .collect::<Vec<_>>()
        };
        use hickory_proto::rr::RecordType::{A as TYPE_A, AAAA as TYPE_AAAA, TXT as TYPE_TXT};
        // Update0 records report the type they name.
        assert_eq!(
            shape(&sections.prerequisites),
            [
                (www(), DNSClass::NONE, TYPE_AAAA, 0),
                (ownership_of_www(), DNSClass::ANY, TYPE_TXT, 0),
            ]
        );
        assert_eq!(
            shape(&updates),
            [
                (www(), DNSClass::ANY, TYPE_A, 0),
                (ownership_of_www(), DNSClass::ANY, TYPE_TXT, 0),
                (api.clone(), DNSClass::ANY, TYPE_A, 0),
                (www(), DNSClass::IN, TYPE_AAAA, 60),
                (ownership_of_www(), DNSClass::IN, TYPE_TXT, 60),
                (api, DNSClass::IN, TYPE_A, 60),
            ]
        );
        // Round-trips through the wire format, prerequisites in the answer section.
        let message = update_message(
            7,
            Name::from_ascii("example.test.").unwrap(),
            sections.prerequisites,
            updates,
        );
        let decoded = Message::from_vec(&message.to_vec().unwrap()).unwrap();
        assert_eq!((decoded.answers.len(), decoded.authorities.len()), (2, 6));
    }

    #[test]
    fn bad_batches_are_refused_before_anything_is_sent() {
        let target = target();
        let empty_create = RecordChange::Create {
            to: rrset("www.example.test.", RecordType::A, 60, &[]),
            owner: "heritage=ipdrift,owner=test".into(),
        };
        let text = target
            .update_messages(&[empty_create], MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("www.example.test. A: an RRset to create needs at least one address"),
            "{text}"
        );
        let twice = [
            RecordChange::Delete {
                from: rrset("www.example.test.", RecordType::A, 60, &[]),
            },
            RecordChange::Replace {
                from: None,
                to: rrset("www.example.test.", RecordType::A, 60, &["192.0.2.1"]),
            },
        ];
        let text = target
            .update_messages(&twice, MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("changed twice in one update"), "{text}");
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

    fn soa() -> Record {
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

    fn txt(owner: &str, text: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            300,
            RData::TXT(TXT::new(vec![text.into()])),
        )
    }

    fn zone_listing() -> ZoneListing {
        ZoneListing::new(Name::from_ascii("EXAMPLE.test.").unwrap())
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
            soa(),
        ];
        assert_eq!(listing.take(&records), Ok(true));
        assert_eq!(listing.records, 8, "the records between the two SOAs");
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
        assert_eq!(
            listing.rrsets_of(&BTreeSet::from([&www_a, &glue, &absent])),
            [rrset(
                "www.example.test.",
                RecordType::A,
                120,
                &["192.0.2.1", "192.0.2.2"]
            )]
        );
    }

    #[test]
    fn reads_transfer_for_many_rrsets_compared_with_the_zone_and_retry_after_an_hour() {
        let now = Instant::now();
        let mut history = TransferHistory::default();
        assert!(!history.prefers_transfer(32, now));
        assert!(
            history.prefers_transfer(33, now),
            "the zone's size is unknown"
        );
        history.zone_records = Some(10_000);
        assert!(!history.prefers_transfer(624, now));
        assert!(history.prefers_transfer(625, now));
        history.refused_at = Some(now);
        assert!(!history.prefers_transfer(10_000, now));
        assert!(!history.prefers_transfer(10_000, now + Duration::from_secs(3599)));
        assert!(history.prefers_transfer(10_000, now + TRANSFER_RETRY_AFTER));
    }

    #[test]
    fn only_a_transfer_refused_by_rcode_lets_reads_fall_back_to_queries() {
        let target = target();
        let refused_with = |rcode: ResponseCode| {
            let mut query = transfer_query(9, Name::from_ascii("example.test.").unwrap());
            let mut verifier = sign(&mut query, &key().signer()).unwrap();
            let mut answer = Message::response(query.id, OpCode::Query);
            answer.metadata.response_code = rcode;
            answer.add_queries(query.queries.clone());
            target
                .check_answer(
                    Request::Transfer { message: 1 },
                    &answer.to_vec().unwrap(),
                    &mut verifier,
                )
                .unwrap_err()
        };
        for rcode in [ResponseCode::Refused, ResponseCode::NotAuth] {
            let error = refused_with(rcode);
            let refused = error.downcast_ref::<TransferRefused>().unwrap();
            assert_eq!(refused.rcode, rcode);
            assert!(error.to_string().contains("allow-transfer"), "{error}");
        }
        assert!(
            refused_with(ResponseCode::ServFail)
                .downcast_ref::<TransferRefused>()
                .is_none()
        );
    }

    fn replaces(count: usize) -> Vec<RecordChange> {
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

    #[test]
    fn a_batch_too_big_for_one_message_is_split_into_messages_that_fit_when_signed() {
        let changes = replaces(1500);
        let messages = target()
            .update_messages(&changes, MAX_UPDATE_BYTES)
            .unwrap();
        assert_eq!(messages.len(), 2);
        let changed: Vec<&RecordKey> = messages.iter().flat_map(|m| &m.changed).collect();
        let wanted: Vec<&RecordKey> = changes.iter().map(RecordChange::key).collect();
        assert_eq!(changed, wanted);
        for mut sections in messages {
            let records = sections.deletions.len() + sections.additions.len();
            let updates = sections.updates();
            let mut message = update_message(
                7,
                Name::from_ascii("example.test.").unwrap(),
                sections.prerequisites,
                updates,
            );
            sign(&mut message, &key().signer()).unwrap();
            let encoded = message.to_vec().unwrap();
            assert!(encoded.len() <= usize::from(u16::MAX), "{}", encoded.len());
            assert!(!is_truncated(&encoded));
            let decoded = Message::from_vec(&encoded).unwrap();
            assert_eq!(decoded.authorities.len(), records);
            assert!(decoded.signature().is_some());
        }
    }

    #[test]
    fn hickory_truncates_a_message_past_65535_bytes_instead_of_failing() {
        let mut sections = target()
            .update_messages(&replaces(1000), usize::MAX)
            .unwrap()
            .remove(0);
        let updates = sections.updates();
        let message = update_message(
            7,
            Name::from_ascii("example.test.").unwrap(),
            sections.prerequisites,
            updates,
        );
        assert!(is_truncated(&message.to_vec().unwrap()));
        assert!(!is_truncated(
            &update_message(7, Name::root(), Vec::new(), Vec::new())
                .to_vec()
                .unwrap()
        ));
    }

    #[test]
    fn the_changes_at_one_name_stay_in_one_message() {
        let changes = [
            RecordChange::Create {
                to: rrset("www.example.test.", RecordType::Aaaa, 60, &["2001:db8::1"]),
                owner: "heritage=ipdrift,owner=test".into(),
            },
            RecordChange::Replace {
                from: None,
                to: rrset("api.example.test.", RecordType::A, 60, &["192.0.2.9"]),
            },
            RecordChange::Delete {
                from: rrset("www.example.test.", RecordType::A, 60, &["192.0.2.1"]),
            },
        ];
        // Room for the changes at www, not for api's as well.
        let messages = target().update_messages(&changes, 300).unwrap();
        let changed: Vec<Vec<String>> = messages
            .iter()
            .map(|m| m.changed.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            changed,
            [
                vec!["www.example.test. AAAA", "www.example.test. A"],
                vec!["api.example.test. A"],
            ]
        );
        assert_eq!(messages[0].prerequisites.len(), 2);
        assert_eq!(messages[0].deletions.len(), 2);
    }

    #[test]
    fn an_rrset_too_big_for_any_message_is_refused() {
        let addrs: Vec<String> = (0..5000)
            .map(|n| format!("10.0.{}.{}", n / 250, n % 250 + 1))
            .collect();
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let huge = RecordChange::Replace {
            from: None,
            to: rrset("www.example.test.", RecordType::A, 60, &addrs),
        };
        let text = target()
            .update_messages(&[huge], MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("the changes at www.example.test. take 160028 bytes, more than one UPDATE message holds (64511)"),
            "{text}"
        );
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

    #[test]
    fn failed_prerequisites_name_the_guarded_rrsets() {
        let www_a = RecordKey {
            name: name("www.example.test."),
            rtype: RecordType::A,
        };
        let api_a = RecordKey {
            name: name("api.example.test."),
            rtype: RecordType::A,
        };
        let only = |created: Vec<RecordKey>, deleted: Vec<RecordKey>| UpdatePart {
            number: 1,
            count: 1,
            changed: created.iter().chain(&deleted).cloned().collect(),
            guarded: Guarded { created, deleted },
        };
        let creating = only(vec![www_a.clone()], Vec::new());
        let deleting = only(Vec::new(), vec![www_a.clone()]);
        let both = only(vec![www_a.clone(), api_a.clone()], vec![www_a, api_a]);
        assert_eq!(
            explain_failed_prerequisite(ResponseCode::YXRRSet, &creating),
            "www.example.test. A appeared since it was read, so ipdrift did not create it over what is there; nothing in the update was applied, and it will be handled in the next pass"
        );
        assert_eq!(
            explain_failed_prerequisite(ResponseCode::NXRRSet, &deleting),
            "the ownership record _ipdrift.www.example.test. TXT of www.example.test. A is gone, so ipdrift no longer owns it and did not delete it; nothing in the update was applied, and it will be handled in the next pass"
        );
        let text = explain_failed_prerequisite(ResponseCode::YXRRSet, &both);
        assert!(
            text.starts_with("one of www.example.test. A, api.example.test. A appeared"),
            "{text}"
        );
        let text = explain_failed_prerequisite(ResponseCode::NXRRSet, &both);
        assert!(
            text.starts_with("the ownership record (_ipdrift.<name> TXT) of one of www.example.test. A, api.example.test. A is gone"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_message_of_several_is_named_with_its_rrsets_counted_past_ten() {
        let created: Vec<RecordKey> = (0..25)
            .map(|n| RecordKey {
                name: name(&format!("web-{n:02}.example.test.")),
                rtype: RecordType::A,
            })
            .collect();
        let part = UpdatePart {
            number: 2,
            count: 3,
            changed: created.clone(),
            guarded: Guarded {
                created,
                deleted: Vec::new(),
            },
        };
        assert_eq!(
            Request::Update(&part).to_string(),
            "update message 2 of 3 (changing web-00.example.test. A, web-01.example.test. A, web-02.example.test. A, web-03.example.test. A, web-04.example.test. A, web-05.example.test. A, web-06.example.test. A, web-07.example.test. A, web-08.example.test. A, web-09.example.test. A and 15 more)"
        );
        let text = explain_failed_prerequisite(ResponseCode::YXRRSet, &part);
        assert!(
            text.starts_with("one of web-00.example.test. A, "),
            "{text}"
        );
        assert!(
            text.ends_with(" and 15 more appeared since it was read, so ipdrift did not create it over what is there; nothing in that message was applied, and it will be handled in the next pass"),
            "{text}"
        );
    }

    #[test]
    fn a_write_of_several_messages_reports_every_refused_one_and_counts_the_rest() {
        assert!(update_outcome(Vec::new(), 3).is_ok());
        let alone = update_outcome(vec![anyhow!("refused the update")], 1).unwrap_err();
        assert_eq!(alone.to_string(), "refused the update");
        let some = update_outcome(vec![anyhow!("refused message 2")], 3).unwrap_err();
        assert_eq!(
            some.to_string(),
            "refused message 2; the other 2 update messages were applied"
        );
        let one = update_outcome(vec![anyhow!("refused message 2")], 2).unwrap_err();
        assert_eq!(
            one.to_string(),
            "refused message 2; the other update message was applied"
        );
        let all = update_outcome(vec![anyhow!("refused 1"), anyhow!("refused 2")], 2).unwrap_err();
        assert_eq!(
            all.to_string(),
            "refused 1; refused 2; none of the 2 update messages was applied"
        );
    }

    #[test]
    fn every_message_of_a_zone_transfer_after_the_first_must_be_signed() {
        let (query, mut verifier) = signed_query();
        let unsigned = answer(&query, None);
        let text = target()
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

    #[tokio::test]
    async fn a_zone_transfer_larger_than_the_limit_is_cut_off() {
        // Answers the AXFR query with one maximal message, whatever it holds.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let flood = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_message(&mut socket).await.unwrap();
            let mut frame = u16::MAX.to_be_bytes().to_vec();
            frame.resize(2 + usize::from(u16::MAX), 0);
            let _ = socket.write_all(&frame).await;
        });
        let target = Rfc2136Target::new(
            "ns1".into(),
            server,
            name("example.test."),
            key(),
            Duration::from_secs(5),
        );
        let text = target.transfer_zone(1000).await.unwrap_err().to_string();
        assert!(
            text.contains(&format!(
                "the zone transfer (AXFR) of example.test. from ns1 ({server}) is larger than 1000 bytes"
            )),
            "{text}"
        );
        flood.await.unwrap();
    }
}
