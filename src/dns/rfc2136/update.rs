//! Turning a batch of changes into UPDATE messages (RFC 2136 §2.4, §2.5) that fit in DNS
//! over TCP, and the outcome of sending them. Pure: no I/O.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use anyhow::{anyhow, bail};
use hickory_proto::op::Query;
use hickory_proto::rr::{DNSClass, Record};

use super::message::{
    Endpoint, add_rrset, bare_rrset, encoded_len, hickory_type, ownership_record,
};
use crate::dns::{RecordChange, ownership_name};
use crate::model::{DnsName, RecordKey};
use crate::validate;

/// The largest UPDATE message ipdrift builds, before its TSIG record. DNS over TCP carries
/// at most 65 535 bytes (RFC 1035 §4.2.2); the TSIG record signing appends is at most about
/// 350 bytes (RFC 8945 §4.2: the key name, at most 255, the algorithm name, 16 bytes of
/// fixed fields and a MAC of at most 64), so 1 KiB leaves room to spare.
pub const MAX_UPDATE_BYTES: usize = 65_535 - 1_024;

/// A DNS message header (RFC 1035 §4.1.1).
const HEADER_BYTES: usize = 12;

/// How many messages a write may send beyond its first round to isolate the RRsets the
/// server refused, splitting each refused message in halves: one refused name among 1 500
/// costs about 22, so a few bad names in a big batch are found and a server that refuses
/// everything costs little.
pub const MAX_EXTRA_MESSAGES: usize = 64;

/// The RRsets an UPDATE's prerequisites guard, to name them when the server says one failed
/// (it does not say which).
#[derive(Debug, Default, Clone)]
pub struct Guarded {
    /// Created only if they do not exist (RFC 2136 §2.4.3).
    pub created: Vec<RecordKey>,
    /// Deleted only if their ownership record exists (RFC 2136 §2.4.1).
    pub deleted: Vec<RecordKey>,
}

/// Which message of a write an UPDATE is, for naming it in errors.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The one message of a write: "the update".
    #[default]
    Only,
    /// Message `number` (from 1) of the `count` of a write's first round.
    Message { number: usize, count: usize },
    /// Part of a refused message, sent again alone to find what the server refused.
    Part,
}

/// One UPDATE message of a write, and what it changes, to name them in errors.
#[derive(Debug, Default, Clone)]
pub struct UpdatePart {
    pub label: Label,
    /// Every RRset the message changes.
    pub changed: Vec<RecordKey>,
    pub guarded: Guarded,
}

/// The prerequisite and update sections of one UPDATE (RFC 2136 §2.4, §2.5), with the
/// deletions kept apart so that they precede every addition of the message.
#[derive(Debug, Default, Clone)]
pub struct UpdateSections {
    pub prerequisites: Vec<Record>,
    pub deletions: Vec<Record>,
    pub additions: Vec<Record>,
    pub changed: Vec<RecordKey>,
    pub guarded: Guarded,
    /// The encoded size of every record above, each encoded alone: an upper bound of what
    /// they take in a message, where name compression can only shrink them.
    pub bytes: usize,
}

impl UpdateSections {
    /// Moves every record and key of `other` into `self`.
    pub fn append(&mut self, mut other: UpdateSections) {
        self.prerequisites.append(&mut other.prerequisites);
        self.deletions.append(&mut other.deletions);
        self.additions.append(&mut other.additions);
        self.changed.append(&mut other.changed);
        self.guarded.created.append(&mut other.guarded.created);
        self.guarded.deleted.append(&mut other.guarded.deleted);
        self.bytes += other.bytes;
    }

    /// The update section: deletions first (see [`Endpoint::batch`]).
    pub fn updates(&mut self) -> Vec<Record> {
        let mut updates = std::mem::take(&mut self.deletions);
        updates.append(&mut self.additions);
        updates
    }

    /// What errors need to know of the message these sections make.
    pub fn part(&self, label: Label) -> UpdatePart {
        UpdatePart {
            label,
            changed: self.changed.clone(),
            guarded: self.guarded.clone(),
        }
    }
}

/// The changes of a write, one group per name in the order the names first appear: all
/// changes at one name go into one message, so that the ownership record, which is per
/// name, stays right (see [`Endpoint::batch`]). A message holds a run of groups.
#[derive(Debug)]
pub struct Batch {
    groups: Vec<UpdateSections>,
    /// The header and zone section every message has.
    fixed_bytes: usize,
}

impl Batch {
    /// How many names the batch changes.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The runs of `groups` that fill messages of at most `max_bytes` before signing, in
    /// order; a name whose records would not fit starts the next message.
    pub fn pack(&self, groups: Range<usize>, max_bytes: usize) -> Vec<Range<usize>> {
        let mut runs = Vec::new();
        let mut start = groups.start;
        let mut bytes = self.fixed_bytes;
        for index in groups.clone() {
            let group = self.groups[index].bytes;
            if index > start && bytes + group > max_bytes {
                runs.push(start..index);
                start = index;
                bytes = self.fixed_bytes;
            }
            bytes += group;
        }
        if start < groups.end {
            runs.push(start..groups.end);
        }
        runs
    }

    /// The sections of the message holding `groups`.
    pub fn sections(&self, groups: Range<usize>) -> UpdateSections {
        let mut sections = UpdateSections::default();
        for group in &self.groups[groups] {
            sections.append(group.clone());
        }
        sections
    }

    /// How many RRsets `groups` change.
    pub fn changes(&self, groups: Range<usize>) -> usize {
        self.groups[groups]
            .iter()
            .map(|group| group.changed.len())
            .sum()
    }
}

impl Endpoint {
    /// The changes as UPDATE sections, grouped by name ([`Batch`]), refusing anything that
    /// must not be sent and any name whose changes would not fit in one message of
    /// `max_bytes`:
    /// - `Replace`: delete the RRset, add `to`.
    /// - `Create`: prerequisite "RRset does not exist", so a create never merges with an RRset
    ///   that appeared since it was read; add `to` and the ownership record.
    /// - `Delete`: prerequisite "ownership record exists", so ipdrift never deletes an RRset
    ///   whose ownership vanished; delete the RRset and the ownership record.
    ///
    /// The server applies a message's updates in order (RFC 2136 §3.4.2) and ownership is per
    /// name, so deletions go first: a `Create` at a name where another type is deleted in the
    /// same batch then re-adds the ownership record instead of losing it. For the same
    /// reason all changes at one name go into one message.
    pub fn batch(&self, changes: &[RecordChange], max_bytes: usize) -> anyhow::Result<Batch> {
        let zone = self.checked_name(&self.zone)?;
        let zone_section = Query::query(zone, hickory_proto::rr::RecordType::SOA);
        let fixed_bytes = HEADER_BYTES + encoded_len(&zone_section)?;
        let mut groups: Vec<UpdateSections> = Vec::new();
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
                Entry::Occupied(index) => groups[*index.get()].append(sections),
                Entry::Vacant(vacant) => {
                    vacant.insert(groups.len());
                    groups.push(sections);
                }
            }
        }
        if let Some(group) = groups
            .iter()
            .find(|group| fixed_bytes + group.bytes > max_bytes)
        {
            bail!(
                "{}: the changes at {} take {} bytes, more than one UPDATE message holds ({max_bytes}); give the RRset fewer addresses",
                self.who(),
                group.changed[0].name,
                group.bytes
            );
        }
        Ok(Batch {
            groups,
            fixed_bytes,
        })
    }

    /// The sections of one change (see [`Self::batch`]), with their size.
    pub fn change_sections(&self, change: &RecordChange) -> anyhow::Result<UpdateSections> {
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
                ..
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
}

/// What a write sends and what became of it: each message the server refuses is split in
/// halves and its halves sent again, until the refused RRsets stand alone or the extra
/// messages run out, so that one bad name does not keep the other changes of the batch
/// from being written. Pure: the caller sends each round and reports each answer.
#[derive(Debug)]
pub struct Write<'a> {
    batch: &'a Batch,
    /// Extra messages left for isolating refused RRsets.
    budget: usize,
    /// How many RRsets the server accepted.
    written: usize,
    /// The groups whose message the server refused for good, with its error.
    refused: Vec<(Range<usize>, anyhow::Error)>,
}

impl<'a> Write<'a> {
    pub fn new(batch: &'a Batch, budget: usize) -> Self {
        Self {
            batch,
            budget,
            written: 0,
            refused: Vec::new(),
        }
    }

    /// The first round: every group, in as few messages of at most `max_bytes` as fit.
    pub fn first_round(&self, max_bytes: usize) -> Vec<(Range<usize>, Label)> {
        let runs = self.batch.pack(0..self.batch.len(), max_bytes);
        let count = runs.len();
        runs.into_iter()
            .enumerate()
            .map(|(index, run)| {
                let label = match count {
                    1 => Label::Only,
                    _ => Label::Message {
                        number: index + 1,
                        count,
                    },
                };
                (run, label)
            })
            .collect()
    }

    /// The server applied the message of `groups`.
    pub fn accepted(&mut self, groups: Range<usize>) {
        self.written += self.batch.changes(groups);
    }

    /// The server refused the message of `groups` with `error`. When the refusal may be
    /// about some of its RRsets (`about_rrsets`), the message holds more than one name and
    /// the budget allows, returns its halves to send in the next round; otherwise keeps the
    /// error for the outcome.
    pub fn refused(
        &mut self,
        groups: Range<usize>,
        error: anyhow::Error,
        about_rrsets: bool,
    ) -> Vec<(Range<usize>, Label)> {
        if about_rrsets && groups.len() > 1 && self.budget >= 2 {
            self.budget -= 2;
            let middle = groups.start + groups.len() / 2;
            return vec![
                (groups.start..middle, Label::Part),
                (middle..groups.end, Label::Part),
            ];
        }
        self.refused.push((groups, error));
        Vec::new()
    }

    /// The errors kept so far, in the order of their groups, to reword them.
    pub fn refusals_mut(&mut self) -> impl Iterator<Item = (&Range<usize>, &mut anyhow::Error)> {
        self.refused.sort_by_key(|(groups, _)| groups.start);
        self.refused
            .iter_mut()
            .map(|(groups, error)| (&*groups, error))
    }

    /// The result of the write. A write of one message that the server refused as a whole
    /// fails with that message's error; otherwise every refused message is named and the
    /// error says how many RRsets were written all the same.
    pub fn outcome(mut self) -> anyhow::Result<()> {
        self.refused.sort_by_key(|(groups, _)| groups.start);
        let total = self.batch.changes(0..self.batch.len());
        if let [(groups, _)] = self.refused.as_slice()
            && *groups == (0..self.batch.len())
        {
            return Err(self.refused.remove(0).1);
        }
        let mut refused = self.refused.into_iter().map(|(_, error)| error);
        let Some(first) = refused.next() else {
            return Ok(());
        };
        let mut text = format!("{first:#}");
        for error in refused {
            text.push_str(&format!("; {error:#}"));
        }
        match self.written {
            0 => text.push_str(&format!("; none of the {total} changes was written")),
            1 => text.push_str("; the other change was written"),
            written => text.push_str(&format!("; the other {written} changes were written")),
        }
        Err(anyhow!(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{Name, RData};

    use crate::dns::rfc2136::message::{is_truncated, sign, update_message};
    use crate::model::RecordType;

    /// The sections of the UPDATE that makes `changes`, which must fit in one message.
    /// The messages of the first round of a write of `changes`.
    fn messages(
        endpoint: &Endpoint,
        changes: &[RecordChange],
        max_bytes: usize,
    ) -> anyhow::Result<Vec<UpdateSections>> {
        let batch = endpoint.batch(changes, max_bytes)?;
        Ok(batch
            .pack(0..batch.len(), max_bytes)
            .into_iter()
            .map(|run| batch.sections(run))
            .collect())
    }

    fn one_message(changes: &[RecordChange]) -> UpdateSections {
        let mut messages = messages(&endpoint(), changes, MAX_UPDATE_BYTES).unwrap();
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
            proxied: None,
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
                proxied: None,
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
        let endpoint = endpoint();
        let empty_create = RecordChange::Create {
            to: rrset("www.example.test.", RecordType::A, 60, &[]),
            owner: "heritage=ipdrift,owner=test".into(),
            proxied: None,
        };
        let text = messages(&endpoint, &[empty_create], MAX_UPDATE_BYTES)
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
        let text = messages(&endpoint, &twice, MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("changed twice in one update"), "{text}");
    }

    #[test]
    fn a_batch_too_big_for_one_message_is_split_into_messages_that_fit_when_signed() {
        let changes = replaces(1500);
        let messages = messages(&endpoint(), &changes, MAX_UPDATE_BYTES).unwrap();
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
        let mut sections = messages(&endpoint(), &replaces(1000), usize::MAX)
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
                proxied: None,
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
        let messages = messages(&endpoint(), &changes, 300).unwrap();
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
        let text = messages(&endpoint(), &[huge], MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("the changes at www.example.test. take 160028 bytes, more than one UPDATE message holds (64511)"),
            "{text}"
        );
    }

    /// Plays a write of `changes` against a server that refuses every message holding one
    /// of `bad`, and returns the messages sent in each round and the outcome.
    fn play(
        changes: &[RecordChange],
        bad: &[&str],
        budget: usize,
    ) -> (Vec<usize>, anyhow::Result<()>) {
        let batch = endpoint().batch(changes, MAX_UPDATE_BYTES).unwrap();
        let mut write = Write::new(&batch, budget);
        let mut round = write.first_round(MAX_UPDATE_BYTES);
        let mut sent = Vec::new();
        while !round.is_empty() {
            sent.push(round.len());
            let mut next = Vec::new();
            for (groups, label) in round {
                let sections = batch.sections(groups.clone());
                let refused: Vec<&RecordKey> = sections
                    .changed
                    .iter()
                    .filter(|key| bad.contains(&key.name.as_str()))
                    .collect();
                if refused.is_empty() {
                    write.accepted(groups);
                } else {
                    let part = sections.part(label);
                    let error = anyhow!(
                        "refused {}",
                        crate::dns::rfc2136::answer::Request::Update(&part)
                    );
                    next.extend(write.refused(groups, error, true));
                }
            }
            round = next;
        }
        (sent, write.outcome())
    }

    #[test]
    fn a_refused_message_is_split_until_the_refused_rrsets_stand_alone() {
        let mut changes = replaces(3);
        changes.push(RecordChange::Replace {
            from: None,
            to: rrset("web_05.example.test.", RecordType::A, 60, &["192.0.2.5"]),
        });
        let (sent, outcome) = play(&changes, &["web_05.example.test."], MAX_EXTRA_MESSAGES);
        assert_eq!(sent, [1, 2, 2]);
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "refused the update of web_05.example.test. A; the other 3 changes were written"
        );

        // One bad name among 1 500 in two messages: about two messages per halving.
        let mut changes = replaces(1500);
        changes[1200] = RecordChange::Replace {
            from: None,
            to: rrset("web_05.example.test.", RecordType::A, 60, &["192.0.2.5"]),
        };
        let (sent, outcome) = play(&changes, &["web_05.example.test."], MAX_EXTRA_MESSAGES);
        let extra: usize = sent[1..].iter().sum();
        assert_eq!(sent[0], 2);
        assert!(extra <= 22, "{sent:?}");
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "refused the update of web_05.example.test. A; the other 1499 changes were written"
        );
    }

    #[test]
    fn splitting_stops_when_the_extra_messages_run_out() {
        let bad: Vec<String> = (0..20)
            .map(|n| format!("web-{:05}.example.test.", n * 50))
            .collect();
        let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
        let (sent, outcome) = play(&replaces(1000), &bad, 8);
        assert_eq!(
            (sent[0], sent[1..].iter().sum::<usize>()),
            (2, 8),
            "{sent:?}"
        );
        let text = outcome.unwrap_err().to_string();
        assert!(
            text.starts_with("refused the update of web-00000.example.test. A, "),
            "{text}"
        );
        assert!(text.contains(" more; "), "{text}");
    }

    #[test]
    fn a_write_reports_every_refused_part_and_counts_what_was_written() {
        let single = [RecordChange::Replace {
            from: None,
            to: rrset("www.example.test.", RecordType::A, 60, &["192.0.2.1"]),
        }];
        let (_, alone) = play(&single, &["www.example.test."], MAX_EXTRA_MESSAGES);
        assert_eq!(alone.unwrap_err().to_string(), "refused the update");
        assert!(play(&replaces(3), &[], MAX_EXTRA_MESSAGES).1.is_ok());
        let (_, two) = play(
            &replaces(4),
            &["web-00000.example.test.", "web-00003.example.test."],
            MAX_EXTRA_MESSAGES,
        );
        assert_eq!(
            two.unwrap_err().to_string(),
            "refused the update of web-00000.example.test. A; refused the update of web-00003.example.test. A; the other 2 changes were written"
        );
        // Refused for good (about_rrsets false): nothing is split.
        let batch = endpoint().batch(&replaces(2), MAX_UPDATE_BYTES).unwrap();
        let mut write = Write::new(&batch, MAX_EXTRA_MESSAGES);
        let round = write.first_round(MAX_UPDATE_BYTES);
        assert!(
            write
                .refused(round[0].0.clone(), anyhow!("wrong key"), false)
                .is_empty()
        );
        assert_eq!(write.outcome().unwrap_err().to_string(), "wrong key");
    }
}
