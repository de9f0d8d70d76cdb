//! A zone on a primary server that accepts dynamic updates (RFC 2136) signed with TSIG
//! (RFC 8945): BIND 9, Knot DNS or PowerDNS Authoritative (the tests run against all three).
//!
//! Reads go straight to that server (never a resolver): a few RRsets are read with one query
//! each, pipelined on one TCP connection; many, and the ownership records, by listing the
//! zone with one zone transfer (AXFR, RFC 5936), or with queries when the server refuses
//! the transfer. A write is one UPDATE message holding every change, with prerequisites
//! where ownership matters, or as few messages as fit when one would pass the 65 535 bytes
//! DNS over TCP carries; they are pipelined on one connection too, and the parts of a
//! message the server refuses are sent again on their own, so that one bad RRset does not
//! hold back the rest. Every message is TSIG-signed and every answer's signature is
//! verified before it is believed; a refusal whose meaning the answer leaves open is
//! explained after asking the server whether it serves the zone and accepts the key.
//!
//! Message building ([`message`], [`update`]) and the reading of answers ([`answer`],
//! [`transfer`]) and their wording ([`explain`]) are pure; [`Rfc2136Target`] adds the TCP
//! exchange (`tcp`: each message is prefixed with its 2-byte length, RFC 1035 §4.2.2).

pub mod answer;
pub mod config;
pub mod explain;
#[cfg(test)]
mod fixtures;
pub mod message;
pub mod secondaries;
mod tcp;
pub mod transfer;
pub mod update;

pub use config::KIND;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hickory_proto::rr::TSigVerifier;
use tokio::io::AsyncWriteExt as _;

use crate::BoxFuture;
use crate::dns::secondaries::Secondary;
use crate::dns::tsig::TsigKey;
use crate::dns::{DnsTarget, RecordChange, SecondaryCheck, ZoneContents, ZoneRead};
use crate::model::{DnsName, RecordKey, RecordSet};
use answer::{Diagnosis, Refusal, Request, diagnose, name_cause};
use explain::{
    NAMED_IN_ERRORS, allow_transfers, answer_mnemonic, explain_diagnosed, explain_refused_name,
};
use message::{
    Endpoint, is_truncated, permission_probe, query_message, sign, soa_query, transfer_query,
    update_message, zone_own_query,
};
use tcp::read_message;
use transfer::ZoneListing;
use update::{Batch, Label, MAX_EXTRA_MESSAGES, MAX_UPDATE_BYTES, UpdatePart, Write};

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

/// The services whose SRV records (`_service._proto` under the apex) are asked for when
/// reading the names the zone uses itself by queries: the ones mail, chat, telephony,
/// directory and calendar clients look up (RFC 6186, RFC 6120, RFC 3263, RFC 4120,
/// RFC 6764, RFC 2782's examples). Other SRV owners are seen only in a zone transfer.
const WELL_KNOWN_SERVICES: &[&str] = &[
    "_sip._tcp",
    "_sip._udp",
    "_sips._tcp",
    "_xmpp-client._tcp",
    "_xmpp-server._tcp",
    "_ldap._tcp",
    "_kerberos._tcp",
    "_kerberos._udp",
    "_submission._tcp",
    "_submissions._tcp",
    "_imap._tcp",
    "_imaps._tcp",
    "_pop3s._tcp",
    "_caldavs._tcp",
    "_carddavs._tcp",
    "_autodiscover._tcp",
    "_matrix._tcp",
];

/// One zone on one RFC 2136 primary, reached over TCP and authenticated with one TSIG key.
#[derive(Debug)]
pub struct Rfc2136Target {
    endpoint: Endpoint,
    timeout: Duration,
    /// What past zone transfers showed, for deciding how to read.
    transfers: Mutex<TransferHistory>,
    /// Watched after writes ([`Self::with_secondaries`]).
    secondaries: Option<config::Secondaries>,
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
            endpoint: Endpoint {
                name,
                server,
                zone,
                key,
            },
            timeout,
            transfers: Mutex::default(),
            secondaries: None,
        }
    }

    /// The RRsets of `keys`: from one zone transfer when there are many, compared with the
    /// zone's size, and the server allows transfers; otherwise with one query each.
    async fn read_rrsets(&self, keys: &[RecordKey]) -> anyhow::Result<ZoneRead> {
        let keys: BTreeSet<&RecordKey> = keys.iter().collect();
        for key in &keys {
            self.endpoint.owner_name(&key.name)?;
        }
        let prefers_transfer =
            (self.transfers.lock().expect("lock")).prefers_transfer(keys.len(), Instant::now());
        if !prefers_transfer {
            return self.query_rrsets(&keys).await;
        }
        match self.transfer_zone(MAX_TRANSFER_BYTES).await {
            Ok(listing) => Ok(listing.rrsets_of(&keys)),
            // Whatever the server said (Knot answers a transfer its ACL denies with NOTAUTH
            // and the TSIG error BADKEY, PowerDNS with NOTAUTH), queries may still work. Only
            // when they do was it the transfer that was refused; else they say what is wrong
            // (a key the server does not accept, say).
            Err(error) => match error.downcast_ref::<Refusal>() {
                Some(refused) => {
                    let rrsets = self.query_rrsets(&keys).await?;
                    self.remember_refusal(refused);
                    Ok(rrsets)
                }
                None => Err(error),
            },
        }
    }

    /// Remembers that the server refused a zone transfer and, the first time, tells the
    /// operator how to allow it: reads still work, with one query per RRset.
    fn remember_refusal(&self, refused: &Refusal) {
        let mut transfers = self.transfers.lock().expect("lock");
        transfers.refused_at = Some(Instant::now());
        if !std::mem::replace(&mut transfers.told, true) {
            tracing::info!(
                target = %self.endpoint.name,
                server = %self.endpoint.server,
                zone = %self.endpoint.zone,
                rcode = %answer_mnemonic(refused.rcode, refused.tsig_error),
                "the server refused a zone transfer, so RRsets are read with one query each (a transfer is tried again every {}); one transfer reads many RRsets much faster: {}",
                humantime::format_duration(TRANSFER_RETRY_AFTER),
                allow_transfers(&self.endpoint.zone, &self.endpoint.key)
            );
        }
    }

    /// The RRsets of `keys` with one signed query each, pipelined on one connection; an
    /// RRset that only a wildcard answers for is left out, as absent.
    ///
    /// A query cannot tell an RRset that exists from one a wildcard synthesizes: the answer
    /// carries the query's name either way (RFC 4592 §2.2.1), and only the RRSIG of a
    /// signed zone tells them apart. What does tell is a name below: a name that exists is
    /// the closest encloser of `<random>.<name>`, so that probe gets NXDOMAIN, while below a
    /// name that does not exist the probe is answered by the same wildcard (RFC 4592 §3.3.1).
    /// So each read also asks for a random name beside the keys (one per parent and type),
    /// and only where that is answered — a wildcard is there — asks below each name found.
    /// A zone with no wildcard costs one query per parent and type; a wildcard `*.<name>`
    /// below a managed name that exists makes it read as absent, and the create that
    /// follows is refused as a record set that exists, never written over it. A zone
    /// transfer shows the `*` owner itself, which is never a managed name.
    async fn query_rrsets(&self, keys: &BTreeSet<&RecordKey>) -> anyhow::Result<ZoneRead> {
        let label = format!("ipdrift-probe-{:016x}", rand::random::<u64>());
        let zone = &self.endpoint.zone;
        let beside: BTreeSet<RecordKey> = keys
            .iter()
            .filter_map(|key| probe_beside(&label, zone, key))
            .filter(|probe| !keys.contains(probe))
            .collect();
        let mut asked = keys.clone();
        asked.extend(&beside);
        let mut read = ZoneRead::default();
        let mut wildcard_beside = BTreeSet::new();
        for (key, answer, mut verifier) in self.exchange_queries(&asked).await? {
            let (rrset, obstacles, own) =
                match self.endpoint.read_query_answer(key, &answer, &mut verifier) {
                    Ok(read) => read,
                    Err(error) => return Err(self.explained(error).await),
                };
            if beside.contains(key) {
                if rrset.is_some() {
                    wildcard_beside.insert(key.clone());
                }
                continue;
            }
            read.rrsets.extend(rrset);
            read.obstacles.extend(obstacles);
            read.zone_own.extend(own);
        }
        let below: BTreeMap<RecordKey, RecordKey> = read
            .rrsets
            .iter()
            .filter(|rrset| {
                probe_beside(&label, zone, &rrset.key)
                    .is_some_and(|probe| wildcard_beside.contains(&probe))
            })
            .filter_map(|rrset| Some((probe_below(&label, &rrset.key)?, rrset.key.clone())))
            .collect();
        if below.is_empty() {
            return Ok(read);
        }
        let probes: BTreeSet<&RecordKey> = below.keys().collect();
        let mut synthesized = BTreeSet::new();
        for (probe, answer, mut verifier) in self.exchange_queries(&probes).await? {
            match self
                .endpoint
                .read_query_answer(probe, &answer, &mut verifier)
            {
                Ok((Some(_), ..)) => {
                    synthesized.insert(&below[probe]);
                }
                Ok(_) => {}
                Err(error) => return Err(self.explained(error).await),
            }
        }
        read.rrsets
            .retain(|rrset| !synthesized.contains(&rrset.key));
        Ok(read)
    }

    /// The names the zone uses itself, from the apex's SOA, NS and MX and the SRV records
    /// of [`WELL_KNOWN_SERVICES`], with one signed query each on one connection.
    ///
    /// Queries can only ask about names known beforehand: SRV records at other names, and
    /// delegations whose names no managed name lies under, are not seen here. A zone
    /// transfer sees all of them, and reads that list the zone add what it shows.
    async fn query_zone_own_names(&self) -> anyhow::Result<BTreeSet<DnsName>> {
        use hickory_proto::rr::RecordType as Type;
        let signer = self.endpoint.key.signer();
        let apex = self.endpoint.checked_name(&self.endpoint.zone)?;
        let mut questions = vec![
            (apex.clone(), Type::SOA),
            (apex.clone(), Type::NS),
            (apex.clone(), Type::MX),
        ];
        for service in WELL_KNOWN_SERVICES {
            let owner = hickory_proto::rr::Name::from_ascii(service)
                .and_then(|service| service.append_domain(&apex))
                .context("building an SRV owner name")?;
            questions.push((owner, Type::SRV));
        }
        let first_id: u16 = rand::random();
        let mut verifiers = HashMap::new();
        let mut requests = Vec::new();
        for (n, (owner, rtype)) in questions.into_iter().enumerate() {
            let id = first_id.wrapping_add(n as u16);
            let mut query = zone_own_query(id, owner, rtype);
            verifiers.insert(id, sign(&mut query, &signer)?);
            requests.push(query.to_vec().context("encoding a DNS query")?);
        }
        let mut names = BTreeSet::new();
        for answer in self.exchange(&requests).await? {
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            let Some(mut verifier) = verifiers.remove(&id) else {
                bail!(
                    "{} sent an answer (id {id}) to no pending query; is something else answering on that address?",
                    self.endpoint.who()
                );
            };
            let message = self
                .endpoint
                .check_answer(Request::ZoneOwn, &answer, &mut verifier)
                .map_err(|e| anyhow!("{e:#}"))?;
            names.extend(answer::zone_own_names(&self.endpoint.zone, &message));
        }
        Ok(names)
    }

    /// One signed query for each of `keys`, pipelined on one connection: each key with the
    /// answer to its query and the verifier for it.
    async fn exchange_queries<'k>(
        &self,
        keys: &BTreeSet<&'k RecordKey>,
    ) -> anyhow::Result<Vec<(&'k RecordKey, Vec<u8>, TSigVerifier)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() > usize::from(u16::MAX) {
            bail!(
                "{}: {} RRsets cannot be read on one connection (message ids are 16 bits); read at most {} at a time",
                self.endpoint.who(),
                keys.len(),
                u16::MAX
            );
        }
        let signer = self.endpoint.key.signer();
        // Pipelined answers may come back in any order (RFC 7766 §6.2.1.1): match them by id.
        let first_id: u16 = rand::random();
        let mut pending = HashMap::new();
        let mut requests = Vec::new();
        for (id, &key) in (0..=u16::MAX).map(|n| first_id.wrapping_add(n)).zip(keys) {
            let owner = self.endpoint.owner_name(&key.name)?;
            let mut query = query_message(id, owner, key.rtype);
            let verifier = sign(&mut query, &signer)?;
            requests.push(query.to_vec().context("encoding a DNS query")?);
            pending.insert(id, (key, verifier));
        }

        let mut answers = Vec::with_capacity(requests.len());
        for answer in self.exchange(&requests).await? {
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            let Some((key, verifier)) = pending.remove(&id) else {
                bail!(
                    "{} sent an answer (id {id}) to no pending query; is something else answering on that address?",
                    self.endpoint.who()
                );
            };
            answers.push((key, answer, verifier));
        }
        Ok(answers)
    }

    /// Writes `changes` in as few UPDATE messages as fit (usually one), pipelined on one
    /// connection. The server applies each message atomically and on its own (RFC 2136
    /// §3.2, §3.4), so when it refuses one because of some of its RRsets, the message's
    /// halves are sent again, and theirs, until the refused RRsets stand alone (at most
    /// [`MAX_EXTRA_MESSAGES`] more messages): every other change is written in the same pass,
    /// and the error names the refused RRsets and why.
    async fn send_update(&self, changes: &[RecordChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let batch = self.endpoint.batch(changes, MAX_UPDATE_BYTES)?;
        let mut write = Write::new(&batch, MAX_EXTRA_MESSAGES);
        let mut round = write.first_round(MAX_UPDATE_BYTES);
        // Whether the key may update the zone at all, once a signed REFUSED asks.
        let mut may_update = None;
        let mut diagnosis = None;
        let mut first = true;
        while !round.is_empty() {
            let mut next = Vec::new();
            let answers = match self.send_round(&batch, round.clone()).await {
                Ok(answers) => answers,
                Err(error) if first => return Err(error),
                // The first round was written; keep what is known of it.
                Err(error) => {
                    let text = format!("{error:#}");
                    for (groups, label) in round {
                        let part = batch.sections(groups.clone()).part(label);
                        let error =
                            anyhow!("{} was not sent again: {text}", Request::Update(&part));
                        write.refused(groups, error, false);
                    }
                    break;
                }
            };
            first = false;
            for (groups, answer) in answers {
                let Err(error) = answer else {
                    write.accepted(groups);
                    continue;
                };
                let about_rrsets = match error.downcast_ref::<Refusal>() {
                    Some(refusal) if refusal.may_be_about_rrsets() => match may_update {
                        Some(may) => may,
                        None => *may_update.insert(self.may_update().await),
                    },
                    Some(refusal) => refusal.is_about_rrsets(),
                    None => false,
                };
                let error = self.explained_with(error, &mut diagnosis).await;
                next.extend(write.refused(groups, error, about_rrsets));
            }
            round = next;
        }
        if may_update == Some(true) {
            self.explain_refused_names(&batch, &mut write).await;
        }
        write.outcome()
    }

    /// Sends one round of a write, each message holding a run of the batch's groups, and
    /// returns what the server answered to each.
    async fn send_round(
        &self,
        batch: &Batch,
        round: Vec<(Range<usize>, Label)>,
    ) -> anyhow::Result<Vec<(Range<usize>, anyhow::Result<()>)>> {
        let zone = self.endpoint.checked_name(&self.endpoint.zone)?;
        let signer = self.endpoint.key.signer();
        // Pipelined answers may come back in any order (RFC 7766 §6.2.1.1): match them by id.
        let first_id: u16 = rand::random();
        let mut pending = HashMap::new();
        let mut requests = Vec::with_capacity(round.len());
        for (index, (groups, label)) in round.into_iter().enumerate() {
            let offset = u16::try_from(index).map_err(|_| {
                anyhow!(
                    "{}: {index} UPDATE messages cannot be sent on one connection (message ids are 16 bits); write fewer changes at a time",
                    self.endpoint.who()
                )
            })?;
            let id = first_id.wrapping_add(offset);
            let mut sections = batch.sections(groups.clone());
            let part = sections.part(label);
            let updates = sections.updates();
            let mut update = update_message(id, zone.clone(), sections.prerequisites, updates);
            let verifier = sign(&mut update, &signer)?;
            let request = update.to_vec().context("encoding a DNS UPDATE")?;
            // Past 65 535 bytes hickory leaves records out and sets TC instead of failing; the
            // size budget keeps every message well below, and this keeps a cut UPDATE unsent.
            if is_truncated(&request) {
                bail!(
                    "{}: {} did not fit in a DNS message; nothing was sent",
                    self.endpoint.who(),
                    Request::Update(&part)
                );
            }
            requests.push(request);
            pending.insert(id, (groups, part, verifier));
        }

        let mut answers = Vec::with_capacity(requests.len());
        for answer in self.exchange(&requests).await? {
            let id = u16::from_be_bytes([answer[0], answer[1]]);
            let Some((groups, part, mut verifier)) = pending.remove(&id) else {
                bail!(
                    "{} sent an answer (id {id}) to no pending update; is something else answering on that address?",
                    self.endpoint.who()
                );
            };
            let applied = self
                .endpoint
                .read_update_answer(&part, &answer, &mut verifier);
            answers.push((groups, applied));
        }
        Ok(answers)
    }

    /// Whether the key may update the zone at all: the server's answer to an UPDATE that
    /// changes nothing ([`permission_probe`]). A server that does not answer counts as
    /// refusing, so that a write never splits messages on a guess.
    async fn may_update(&self) -> bool {
        let Ok(zone) = self.endpoint.checked_name(&self.endpoint.zone) else {
            return false;
        };
        let mut probe = permission_probe(rand::random(), zone);
        let Ok(mut verifier) = sign(&mut probe, &self.endpoint.key.signer()) else {
            return false;
        };
        let Ok(request) = probe.to_vec() else {
            return false;
        };
        let part = UpdatePart::default();
        match self.exchange(&[request]).await {
            Ok(answers) => answers.first().is_some_and(|answer| {
                self.endpoint
                    .read_update_answer(&part, answer, &mut verifier)
                    .is_ok()
            }),
            Err(_) => false,
        }
    }

    /// Rewords the errors of the names the server refused alone while it took the key's
    /// other changes: why, as far as the name and the server's answer for it tell
    /// ([`name_cause`]). At most [`NAMED_IN_ERRORS`] names are looked up.
    async fn explain_refused_names(&self, batch: &Batch, write: &mut Write<'_>) {
        let mut names = Vec::new();
        for (groups, error) in write.refusals_mut() {
            let is_name_refusal = error
                .downcast_ref::<Refusal>()
                .is_some_and(Refusal::may_be_about_rrsets);
            if is_name_refusal && groups.len() == 1 && names.len() < NAMED_IN_ERRORS {
                let key = batch.sections(groups.clone()).changed[0].clone();
                names.push((key, error));
            }
        }
        let keys: BTreeSet<&RecordKey> = names.iter().map(|(key, _)| key).collect();
        let mut answers = HashMap::new();
        for (key, answer, mut verifier) in self.exchange_queries(&keys).await.unwrap_or_default() {
            let request = Request::Query(key);
            if let Ok(message) = self.endpoint.check_answer(request, &answer, &mut verifier) {
                answers.insert(key.clone(), message);
            }
        }
        for (key, error) in names {
            let cause = name_cause(&key.name, answers.get(&key));
            let why = explain_refused_name(&key.name, &cause);
            if let Some(refusal) = error.downcast_mut::<Refusal>() {
                refusal.why = why;
            }
        }
    }

    /// Every ownership record and address RRset of the zone, from one zone transfer; a
    /// refused transfer is explained.
    async fn list_zone(&self) -> anyhow::Result<ZoneContents> {
        match self.transfer_zone(MAX_TRANSFER_BYTES).await {
            Ok(listing) => Ok(listing.into_contents()),
            Err(error) => Err(self.explained(error).await),
        }
    }

    /// `error`, reworded after asking the server what it meant when it is a [`Refusal`] that
    /// leaves that open ([`Refusal::needs_diagnosis`]).
    async fn explained(&self, error: anyhow::Error) -> anyhow::Error {
        self.explained_with(error, &mut None).await
    }

    /// [`Self::explained`], asking the server at most once for all the errors of a write:
    /// `diagnosis` keeps what it said.
    async fn explained_with(
        &self,
        error: anyhow::Error,
        diagnosis: &mut Option<Option<Diagnosis>>,
    ) -> anyhow::Error {
        let Some(refusal) = error.downcast_ref::<Refusal>() else {
            return error;
        };
        if !refusal.needs_diagnosis() {
            return error;
        }
        if diagnosis.is_none() {
            *diagnosis = Some(self.diagnose().await);
        }
        let endpoint = &self.endpoint;
        let why = diagnosis
            .as_ref()
            .and_then(Option::as_ref)
            .and_then(|found| {
                explain_diagnosed(
                    refusal.kind,
                    found,
                    &endpoint.zone,
                    &endpoint.key,
                    endpoint.server,
                )
            });
        match (why, error.downcast::<Refusal>()) {
            (Some(why), Ok(refusal)) => Refusal { why, ..refusal }.into(),
            (_, Ok(refusal)) => refusal.into(),
            (_, Err(error)) => error,
        }
    }

    /// Asks the server for the zone's SOA with and without the key (see [`diagnose`]);
    /// `None` when it does not answer both.
    async fn diagnose(&self) -> Option<Diagnosis> {
        let zone = self.endpoint.checked_name(&self.endpoint.zone).ok()?;
        let id: u16 = rand::random();
        let mut signed = soa_query(id, zone.clone());
        let mut verifier = sign(&mut signed, &self.endpoint.key.signer()).ok()?;
        let unsigned = soa_query(id.wrapping_add(1), zone.clone());
        let requests = [signed.to_vec().ok()?, unsigned.to_vec().ok()?];
        let answers = self.exchange(&requests).await.ok()?;
        let (signed, unsigned): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .partition(|answer| answer[..2] == id.to_be_bytes());
        Some(diagnose(
            &zone,
            signed.first()?,
            &mut verifier,
            unsigned.first()?,
        ))
    }

    /// The zone, from a zone transfer (RFC 5936) of at most `max_bytes`, all within the
    /// target's timeout.
    ///
    /// Every message of the transfer must be TSIG-signed: each is verified against the one
    /// before (RFC 8945 §5.3.1). The RFC lets a server sign only every 100th message, the
    /// ones between covered by the next signature, but hickory's verifier takes one message
    /// at a time; BIND, Knot and PowerDNS sign every message.
    async fn transfer_zone(&self, max_bytes: usize) -> anyhow::Result<ZoneListing> {
        let zone = self.endpoint.checked_name(&self.endpoint.zone)?;
        let mut query = transfer_query(rand::random(), zone.clone());
        let mut verifier = sign(&mut query, &self.endpoint.key.signer())?;
        let request = self.frame(&[query.to_vec().context("encoding the AXFR query")?])?;
        let transfer = async {
            let mut stream = self.connect().await?;
            stream
                .write_all(&request)
                .await
                .map_err(|why| self.io_error(why))?;
            let mut listing = ZoneListing::new(zone);
            let mut received = 0;
            loop {
                let answer = read_message(&mut stream)
                    .await
                    .map_err(|why| self.io_error(why))?;
                received += answer.len();
                if received > max_bytes {
                    bail!(
                        "the zone transfer (AXFR) of {} from {} is larger than {max_bytes} bytes, the most ipdrift reads from one zone; check that the target's zone is the one holding the managed names",
                        self.endpoint.zone,
                        self.endpoint.who()
                    );
                }
                if listing.take_answer(&self.endpoint, query.id, &answer, &mut verifier)? {
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
                    self.endpoint.zone,
                    self.endpoint.who(),
                    humantime::format_duration(self.timeout)
                ))
            })
    }
}

/// `<label>.<name>` for the type of `key`: a name no zone holds, asked for to see whether
/// a wildcard answers below `name`. `None` when it would be too long to be a name.
fn probe_below(label: &str, key: &RecordKey) -> Option<RecordKey> {
    let name = crate::validate::dns_name(&format!("{label}.{}", key.name)).ok()?;
    Some(RecordKey {
        name,
        rtype: key.rtype,
    })
}

/// [`probe_below`] the parent of `key`'s name, if the parent lies inside `zone`.
fn probe_beside(label: &str, zone: &DnsName, key: &RecordKey) -> Option<RecordKey> {
    let (_, parent) = key.name.as_str().split_once('.')?;
    let parent = crate::validate::dns_name(parent).ok()?;
    if !parent.is_in_zone(zone) {
        return None;
    }
    probe_below(
        label,
        &RecordKey {
            name: parent,
            rtype: key.rtype,
        },
    )
}

impl DnsTarget for Rfc2136Target {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn zone(&self) -> &DnsName {
        &self.endpoint.zone
    }

    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>> {
        Box::pin(async move { Ok(self.read_rrsets(keys).await?.rrsets) })
    }

    fn read_zone<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<ZoneRead>> {
        Box::pin(self.read_rrsets(keys))
    }

    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>> {
        Box::pin(async { Ok(self.list_zone().await?.ownership) })
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send_update(changes))
    }

    /// One zone transfer gives both the ownership records and the RRsets.
    fn read_listing(&self) -> BoxFuture<'_, anyhow::Result<ZoneContents>> {
        Box::pin(self.list_zone())
    }

    fn read_zone_own_names(&self) -> BoxFuture<'_, anyhow::Result<BTreeSet<DnsName>>> {
        Box::pin(self.query_zone_own_names())
    }

    fn secondaries<'a>(
        &'a self,
        check: SecondaryCheck<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Secondary>>> {
        Box::pin(self.check_secondaries(check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;

    #[test]
    fn wildcard_probes_ask_below_the_parent_and_below_the_name_inside_the_zone() {
        let zone = name("example.test.");
        let key = |text: &str| RecordKey {
            name: name(text),
            rtype: crate::model::RecordType::Aaaa,
        };
        assert_eq!(
            probe_beside("p", &zone, &key("www.example.test.")),
            Some(key("p.example.test."))
        );
        assert_eq!(
            probe_below("p", &key("www.example.test.")),
            Some(key("p.www.example.test."))
        );
        assert_eq!(probe_beside("p", &zone, &key("example.test.")), None);
        // 251 characters without the trailing dot; 253 is the most a name may have.
        let long = format!(
            "{}.{}.example.test.",
            vec!["a".repeat(60); 3].join("."),
            "b".repeat(55)
        );
        assert_eq!(probe_below("probe", &key(&long)), None, "too long a name");
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

    #[tokio::test]
    async fn a_retry_that_cannot_be_sent_is_reported_without_claiming_a_write() {
        // Refuses the first UPDATE with a signed YXRRSET, then is gone.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let refuse_once = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            drop(listener);
            let request = read_message(&mut socket).await.unwrap();
            let update = hickory_proto::op::Message::from_vec(&request).unwrap();
            let answer = answer_with(
                &update,
                hickory_proto::op::ResponseCode::YXRRSet,
                Some(&key().signer()),
            );
            let mut frame = u16::try_from(answer.len()).unwrap().to_be_bytes().to_vec();
            frame.extend(answer);
            socket.write_all(&frame).await.unwrap();
        });
        let target = Rfc2136Target::new(
            "ns1".into(),
            server,
            name("example.test."),
            key(),
            Duration::from_secs(5),
        );
        let text = format!("{:#}", target.write(&replaces(2)).await.unwrap_err());
        refuse_once.await.unwrap();
        assert!(
            text.starts_with(
                "the update of web-00000.example.test. A was not sent again: cannot connect to ns1"
            ),
            "{text}"
        );
        assert_eq!(text.matches("was not sent again").count(), 2, "{text}");
        assert!(
            text.ends_with("; none of the 2 changes was written"),
            "{text}"
        );
    }
}
