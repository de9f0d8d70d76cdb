//! Turning a batch of changes into UPDATE messages (RFC 2136 §2.4, §2.5) that fit in DNS
//! over TCP, and the outcome of sending them. Pure: no I/O.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

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

/// The RRsets an UPDATE's prerequisites guard, to name them when the server says one failed
/// (it does not say which).
#[derive(Debug, Default)]
pub struct Guarded {
    /// Created only if they do not exist (RFC 2136 §2.4.3).
    pub created: Vec<RecordKey>,
    /// Deleted only if their ownership record exists (RFC 2136 §2.4.1).
    pub deleted: Vec<RecordKey>,
}

/// One UPDATE message of a write, and what it changes, to name them in errors.
#[derive(Debug, Default)]
pub struct UpdatePart {
    /// Counting from 1, of `count`; a write of one message is simply "the update".
    pub number: usize,
    pub count: usize,
    /// Every RRset the message changes.
    pub changed: Vec<RecordKey>,
    pub guarded: Guarded,
}

/// The prerequisite and update sections of one UPDATE (RFC 2136 §2.4, §2.5), with the
/// deletions kept apart so that they precede every addition of the message.
#[derive(Debug, Default)]
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

    /// The update section: deletions first (see [`Rfc2136Target::update_messages`]).
    pub fn updates(&mut self) -> Vec<Record> {
        let mut updates = std::mem::take(&mut self.deletions);
        updates.append(&mut self.additions);
        updates
    }
}

impl Endpoint {
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
    pub fn update_messages(
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

/// The result of a write of `count` UPDATE messages from the errors of the refused ones, in
/// message order. A write of one message fails with that message's error; otherwise every
/// refused message is named and the error says how many were applied all the same.
pub fn update_outcome(refused: Vec<anyhow::Error>, count: usize) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::rfc2136::fixtures::*;
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{Name, RData};

    use crate::dns::rfc2136::message::{is_truncated, sign, update_message};
    use crate::model::RecordType;

    /// The sections of the UPDATE that makes `changes`, which must fit in one message.
    fn one_message(changes: &[RecordChange]) -> UpdateSections {
        let mut messages = endpoint()
            .update_messages(changes, MAX_UPDATE_BYTES)
            .unwrap();
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
        let endpoint = endpoint();
        let empty_create = RecordChange::Create {
            to: rrset("www.example.test.", RecordType::A, 60, &[]),
            owner: "heritage=ipdrift,owner=test".into(),
        };
        let text = endpoint
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
        let text = endpoint
            .update_messages(&twice, MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("changed twice in one update"), "{text}");
    }

    #[test]
    fn a_batch_too_big_for_one_message_is_split_into_messages_that_fit_when_signed() {
        let changes = replaces(1500);
        let messages = endpoint()
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
        let mut sections = endpoint()
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
        let messages = endpoint().update_messages(&changes, 300).unwrap();
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
        let text = endpoint()
            .update_messages(&[huge], MAX_UPDATE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("the changes at www.example.test. take 160028 bytes, more than one UPDATE message holds (64511)"),
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
}
