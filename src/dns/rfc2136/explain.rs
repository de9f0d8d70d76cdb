//! The wording of errors: what the server's answer means and what the operator should
//! check. Pure: no I/O.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigError;

use super::answer::{Diagnosis, KeyVerdict, NameCause, Request, RequestKind};
use super::update::{Label, UpdatePart};
use crate::dns::tsig::{FUDGE_SECONDS, TsigKey};
use crate::dns::{OWNERSHIP_LABEL, ownership_name};
use crate::model::{DnsName, RecordKey};

/// RCODE names as RFC 1035 §4.1.1, RFC 2136 §2.2 and `dig`/`nsupdate` print them.
pub fn rcode_mnemonic(rcode: ResponseCode) -> String {
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

/// The RCODE and, when the answer has one, its TSIG error: `NOTAUTH (BADKEY)`.
pub fn answer_mnemonic(rcode: ResponseCode, tsig_error: Option<TsigError>) -> String {
    match tsig_error {
        Some(error) => format!("{} ({})", rcode_mnemonic(rcode), tsig_error_mnemonic(error)),
        None => rcode_mnemonic(rcode),
    }
}

/// How to let `key` transfer `zone`, on each of the servers ipdrift is tested against.
pub fn allow_transfers(zone: &DnsName, key: &TsigKey) -> String {
    let name = key.name_in_config();
    format!(
        "allow transfers with the key: `allow-transfer {{ key {name}; }};` in the zone's clause in named.conf (BIND), `transfer` in the `action` of an acl for key {name} in knot.conf (Knot), `pdnsutil set-meta {} TSIG-ALLOW-AXFR {name}` (PowerDNS)",
        zone.as_str().trim_end_matches('.')
    )
}

/// TSIG error names as RFC 8945 §3 lists them.
pub fn tsig_error_mnemonic(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".to_string(),
        TsigError::BadKey => "BADKEY".to_string(),
        TsigError::BadTime => "BADTIME".to_string(),
        TsigError::BadTrunc => "BADTRUNC".to_string(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

/// Where each server keeps its TSIG keys, for errors that ask to compare the key.
const WHERE_KEYS_ARE: &str = "the `key` clause in named.conf (BIND), `key:` in knot.conf (Knot), `pdnsutil list-tsig-keys` (PowerDNS)";

/// Why the server did not accept the key, from the TSIG error of its answer (RFC 8945
/// §5.2), and what to check.
pub fn explain_tsig_error(key: &TsigKey, error: TsigError) -> String {
    match error {
        TsigError::BadSig => key_not_accepted(
            key,
            "the server has a key of that name and algorithm but the signature did not verify, so the secrets differ",
        ),
        TsigError::BadKey => key_not_accepted(
            key,
            "the server has no key of that name and algorithm (or, Knot, its ACL denies the request)",
        ),
        TsigError::BadTime => format!(
            "TSIG key {key} is right but the clocks of this host and the server differ by more than {FUDGE_SECONDS} s; check NTP on both"
        ),
        TsigError::BadTrunc | TsigError::Unknown(_) => {
            format!("TSIG key {key} was not accepted; check the key and the server's log")
        }
    }
}

/// `TSIG key 'k' (hmac-sha256) was not accepted: WHY; check …`.
fn key_not_accepted(key: &TsigKey, why: &str) -> String {
    format!(
        "TSIG key {key} was not accepted: {why}; check the key's name, algorithm and secret against the server's ({WHERE_KEYS_ARE})"
    )
}

/// The zone is not one the server serves as primary, and where each server lists its zones.
fn not_authoritative(zone: &DnsName, server: SocketAddr) -> String {
    format!(
        "the server is not authoritative for zone {zone}; check the target's zone and that {server} is its primary (a `zone` clause of type primary in named.conf, a `zone:` entry in knot.conf, `pdnsutil list-all-zones` for PowerDNS)"
    )
}

/// The server accepts the key (it signed an answer with it) but its configuration does not
/// let the key transfer the zone.
fn transfers_not_allowed(zone: &DnsName, key: &TsigKey) -> String {
    format!(
        "the server accepts TSIG key {key} but does not allow zone transfers of {zone} with it, which ipdrift needs to find its ownership records; {}",
        allow_transfers(zone, key)
    )
}

/// The server accepts the key but its configuration does not let the key update the zone.
fn updates_not_allowed(zone: &DnsName, key: &TsigKey) -> String {
    format!(
        "the server accepts TSIG key {key} but does not allow updates to zone {zone} with it; {}",
        allow_updates(zone, key)
    )
}

/// How to let `key` update `zone`, on each of the servers ipdrift is tested against.
pub fn allow_updates(zone: &DnsName, key: &TsigKey) -> String {
    let name = key.name_in_config();
    format!(
        "allow updates with the key: `allow-update {{ key {name}; }};` or an `update-policy` grant in the zone's clause in named.conf (BIND), `update` in the `action` of an acl for key {name} in knot.conf (Knot), `pdnsutil set-meta {} TSIG-ALLOW-DNSUPDATE {name}` and an `allow-dnsupdate-from` that admits this host (PowerDNS)",
        zone.as_str().trim_end_matches('.')
    )
}

/// What an error RCODE means for `request`, and what to check, as far as the answer alone
/// tells: `signed` says whether it carried a signature that verified, which only a server
/// that accepted the key can give. Where servers differ (an unsigned NOTAUTH is a zone Knot
/// does not serve, or a key PowerDNS does not accept), [`explain_diagnosed`] words it
/// better once the server has been asked.
pub fn explain_rcode(
    rcode: ResponseCode,
    signed: bool,
    request: Request<'_>,
    zone: &DnsName,
    key: &TsigKey,
    server: SocketAddr,
) -> String {
    match (rcode, request) {
        (ResponseCode::Refused | ResponseCode::NotAuth, Request::Transfer { .. }) if signed => {
            transfers_not_allowed(zone, key)
        }
        (ResponseCode::Refused | ResponseCode::NotAuth, Request::Transfer { .. }) => format!(
            "the server is not authoritative for zone {zone}, does not accept TSIG key {key}, or does not allow zone transfers with it; check that {server} is the zone's primary, the key, and {}",
            allow_transfers(zone, key)
        ),
        // RFC 2136 §3.1: the zone is not one the server is primary for. The key was accepted:
        // the answer is signed.
        (ResponseCode::NotAuth, _) if signed => not_authoritative(zone, server),
        (ResponseCode::NotAuth, _) => format!(
            "the server is not authoritative for zone {zone}, or did not accept TSIG key {key} (PowerDNS answers an unknown key or a wrong secret so); check that {server} is the zone's primary, and the key ({WHERE_KEYS_ARE})"
        ),
        (ResponseCode::Refused, Request::Update(_)) if signed => updates_not_allowed(zone, key),
        (ResponseCode::Refused, Request::Update(_)) => format!(
            "the server did not accept TSIG key {key} or does not allow updates to zone {zone} with it; check the key ({WHERE_KEYS_ARE}), and {}",
            allow_updates(zone, key)
        ),
        (ResponseCode::Refused, _) => format!(
            "the server does not answer for zone {zone} (check that it serves the zone and that it allows queries from this host)"
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
            "the server failed to process it; check its log (is the zone loaded, is its journal or database writable?)".to_string()
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

/// Why the server refused `kind`, once it has been asked (see
/// [`Diagnosis`]) whether it serves the zone and accepts the key:
/// a zone it does not serve, a key it does not accept, or a request its configuration does
/// not allow with that key. `None` when the diagnosis does not tell more than the answer.
pub fn explain_diagnosed(
    kind: RequestKind,
    diagnosis: &Diagnosis,
    zone: &DnsName,
    key: &TsigKey,
    server: SocketAddr,
) -> Option<String> {
    if !diagnosis.serves_zone {
        return Some(not_authoritative(zone, server));
    }
    match &diagnosis.key {
        KeyVerdict::Accepted => Some(match kind {
            RequestKind::Transfer => transfers_not_allowed(zone, key),
            RequestKind::Update => updates_not_allowed(zone, key),
            RequestKind::Query => format!(
                "the server accepts TSIG key {key} and serves zone {zone} but refused the query; check that it allows queries from this host, and its log"
            ),
        }),
        // A signed query got BADKEY too: the key is unknown, not a request its ACL denies.
        KeyVerdict::TsigError(TsigError::BadKey) => Some(key_not_accepted(
            key,
            "the server has no key of that name and algorithm",
        )),
        KeyVerdict::TsigError(error) => Some(explain_tsig_error(key, *error)),
        KeyVerdict::Unsigned(rcode) => Some(key_not_accepted(
            key,
            &format!(
                "the server answers a query signed with it with an unsigned {}, as PowerDNS does when it has no key of that name and algorithm or the secrets differ",
                rcode_mnemonic(*rcode)
            ),
        )),
        KeyVerdict::Unknown => None,
    }
}

/// Why the server refused the changes at `name` while it accepted others with the key, as
/// far as [`NameCause`] tells, and what to do. Never a missing permission of the key: the
/// server took the key's other changes.
pub fn explain_refused_name(name: &DnsName, cause: &NameCause) -> String {
    let accepted = "the server accepted the batch's other changes with the same key";
    match cause {
        NameCause::NotHostName => format!(
            "{name} is not a host name (only letters, digits and hyphens; `_` is not one), and BIND refuses such owner names for address records in a primary zone (check-names, on by default); rename the record, or allow it with `check-names primary ignore;` in named.conf's options ({accepted})"
        ),
        NameCause::Cname(target) => format!(
            "{name} holds a CNAME (to {target}), and a name with a CNAME can hold no other data (RFC 1034 §3.6.2); remove the CNAME, or manage another name ({accepted})"
        ),
        NameCause::BelowCut(cut) => format!(
            "{name} is at or below the delegation of {cut} (its NS records), where the zone holds no data of its own; manage the name in the delegated zone ({accepted})"
        ),
        NameCause::Unknown => format!(
            "{accepted}, so it refuses this name or its data (an `update-policy` that does not grant it, a server check); its log says why"
        ),
    }
}

/// Why an UPDATE's prerequisite failed, naming the RRsets it guarded (the server does not
/// say which one failed). RFC 2136 §3.2.5: YXRRSET when an RRset to create exists, NXRRSET
/// when an ownership record is gone; nothing of the message was applied (§3.2).
pub fn explain_failed_prerequisite(rcode: ResponseCode, part: &UpdatePart) -> String {
    let guarded = &part.guarded;
    let creates_failed = matches!(rcode, ResponseCode::YXRRSet | ResponseCode::YXDomain);
    let no_change = match (part.label, part.changed.len()) {
        (Label::Only, _) => {
            "nothing in the update was applied, and it will be handled in the next pass"
        }
        (Label::Part, 1) => "it will be handled in the next pass",
        _ => "nothing in that message was applied, and it will be handled in the next pass",
    };
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
        _ => "a prerequisite failed, but the message had none; check the server's log".to_string(),
    }
}

/// `www.example.test. A`, or `one of www.example.test. A, api.example.test. A`.
pub fn one_of(keys: &[RecordKey]) -> String {
    if keys.len() == 1 {
        some_of(keys)
    } else {
        format!("one of {}", some_of(keys))
    }
}

/// How many RRsets an error names before it only counts the rest.
pub const NAMED_IN_ERRORS: usize = 10;

/// `www.example.test. A, api.example.test. A`; past [`NAMED_IN_ERRORS`] the rest are
/// counted: `…, web-9.example.test. A and 690 more`.
pub fn some_of(keys: &[RecordKey]) -> String {
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
    use crate::dns::rfc2136::fixtures::*;
    use crate::dns::rfc2136::update::Guarded;
    use crate::model::RecordType;

    #[test]
    fn refusals_say_what_to_check_for_every_server_and_never_the_secret() {
        let zone = name("example.test.");
        let key = key();
        let server = "127.0.0.1:5353".parse().unwrap();
        let update = UpdatePart::default();
        let rcode =
            |rcode, signed, request| explain_rcode(rcode, signed, request, &zone, &key, server);
        let texts = [
            explain_tsig_error(&key, TsigError::BadSig),
            explain_tsig_error(&key, TsigError::BadKey),
            rcode(ResponseCode::Refused, true, Request::Update(&update)),
            rcode(ResponseCode::NotAuth, true, Request::Update(&update)),
            rcode(
                ResponseCode::Refused,
                true,
                Request::Transfer { message: 1 },
            ),
            rcode(ResponseCode::NotAuth, false, Request::Update(&update)),
        ];
        assert!(
            texts[0].contains("TSIG key 'ipdrift-key' (hmac-sha256) was not accepted"),
            "{}",
            texts[0]
        );
        assert!(texts[0].contains("secrets differ"), "{}", texts[0]);
        assert!(
            texts[1].contains("no key of that name and algorithm"),
            "{}",
            texts[1]
        );
        for config in [
            "allow-update { key ipdrift-key; }",
            "knot.conf",
            "pdnsutil set-meta example.test TSIG-ALLOW-DNSUPDATE ipdrift-key",
        ] {
            assert!(texts[2].contains(config), "{}", texts[2]);
        }
        // Signed: the key was accepted, so the zone is what is wrong.
        assert!(
            texts[3].starts_with("the server is not authoritative for zone example.test.;"),
            "{}",
            texts[3]
        );
        for config in ["named.conf", "knot.conf", "pdnsutil list-all-zones"] {
            assert!(texts[3].contains(config), "{}", texts[3]);
        }
        for config in [
            "allow-transfer { key ipdrift-key; }",
            "knot.conf",
            "pdnsutil set-meta example.test TSIG-ALLOW-AXFR ipdrift-key",
        ] {
            assert!(texts[4].contains(config), "{}", texts[4]);
        }
        // Unsigned: either, until the server has been asked.
        assert!(
            texts[5]
                .contains("not authoritative for zone example.test., or did not accept TSIG key"),
            "{}",
            texts[5]
        );
        for text in texts {
            assert!(!text.contains("6fLGcV97"), "{text}");
        }
        assert_eq!(rcode_mnemonic(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_mnemonic(ResponseCode::BADCOOKIE), "RCODE 23");
        assert_eq!(
            answer_mnemonic(ResponseCode::NotAuth, Some(TsigError::BadKey)),
            "NOTAUTH (BADKEY)"
        );
    }

    #[test]
    fn a_diagnosis_words_a_refusal_as_the_zone_the_key_or_the_permission() {
        let zone = name("example.test.");
        let key = key();
        let server = "127.0.0.1:5353".parse().unwrap();
        let explain = |kind, serves_zone, verdict| {
            let diagnosis = Diagnosis {
                serves_zone,
                key: verdict,
            };
            explain_diagnosed(kind, &diagnosis, &zone, &key, server)
        };
        let not_served = explain(RequestKind::Update, false, KeyVerdict::Unknown).unwrap();
        assert!(
            not_served.starts_with("the server is not authoritative for zone example.test."),
            "{not_served}"
        );
        // Knot: a transfer its ACL denies is NOTAUTH (BADKEY), but signed queries work.
        let denied = explain(RequestKind::Transfer, true, KeyVerdict::Accepted).unwrap();
        assert!(denied.starts_with("the server accepts TSIG key 'ipdrift-key' (hmac-sha256) but does not allow zone transfers of example.test. with it"), "{denied}");
        let denied = explain(RequestKind::Update, true, KeyVerdict::Accepted).unwrap();
        assert!(
            denied.contains(
                "does not allow updates to zone example.test. with it; allow updates with the key"
            ),
            "{denied}"
        );
        // PowerDNS: a wrong secret is an unsigned NOTAUTH.
        let unsigned = explain(
            RequestKind::Query,
            true,
            KeyVerdict::Unsigned(ResponseCode::NotAuth),
        )
        .unwrap();
        assert!(unsigned.starts_with("TSIG key 'ipdrift-key' (hmac-sha256) was not accepted: the server answers a query signed with it with an unsigned NOTAUTH"), "{unsigned}");
        assert!(unsigned.contains("pdnsutil list-tsig-keys"), "{unsigned}");
        let bad_sig = explain(
            RequestKind::Update,
            true,
            KeyVerdict::TsigError(TsigError::BadSig),
        )
        .unwrap();
        assert!(bad_sig.contains("secrets differ"), "{bad_sig}");
        let bad_key = explain(
            RequestKind::Update,
            true,
            KeyVerdict::TsigError(TsigError::BadKey),
        )
        .unwrap();
        assert!(
            bad_key.contains("has no key of that name and algorithm;"),
            "{bad_key}"
        );
        assert!(!bad_key.contains("ACL"), "{bad_key}");
        assert_eq!(
            explain(RequestKind::Update, true, KeyVerdict::Unknown),
            None
        );
    }

    #[test]
    fn a_name_refused_alone_is_never_blamed_on_the_keys_permission() {
        let causes = [
            (
                name("web_05.example.test."),
                NameCause::NotHostName,
                "check-names primary ignore;",
            ),
            (
                name("alias.example.test."),
                NameCause::Cname(name("www.example.test.")),
                "holds a CNAME (to www.example.test.)",
            ),
            (
                name("x.sub.example.test."),
                NameCause::BelowCut(name("sub.example.test.")),
                "below the delegation of sub.example.test.",
            ),
            (
                name("www.example.test."),
                NameCause::Unknown,
                "its log says why",
            ),
        ];
        for (name, cause, says) in causes {
            let text = explain_refused_name(&name, &cause);
            assert!(text.contains(says), "{text}");
            assert!(
                text.contains("accepted the batch's other changes"),
                "{text}"
            );
            assert!(!text.contains("allow-update"), "{text}");
        }
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
            label: Label::Only,
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
            label: Label::Message {
                number: 2,
                count: 3,
            },
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
}
