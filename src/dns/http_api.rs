//! What DNS targets behind an HTTP JSON API share: a zone listing in one neutral shape
//! ([`ListedSet`]), the record sets and ownership records picked from it, TXT quoting, and
//! the checks a batch passes before it is sent. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::dns::{OWNERSHIP_LABEL, RecordChange, ZoneContents};
use crate::model::{DnsName, Obstacles, RecordKey, RecordSet, RecordType};
use crate::validate;

/// One record set of a listing, as the provider returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSet {
    /// The owner name as the API writes it (with or without the trailing dot).
    pub name: String,
    /// `A`, `AAAA`, `TXT`…
    pub rtype: String,
    pub ttl: u32,
    /// The records' values: addresses, or TXT values as the API writes them.
    pub values: Vec<String>,
    /// Why ipdrift must not overwrite this set although it is A or AAAA (a proxied
    /// Cloudflare record, a disabled PowerDNS record), or `None`.
    pub special: Option<String>,
}

/// Whether a name as an API returns it (any case, with or without the trailing dot) is `name`.
pub fn same_name(listed: &str, name: &DnsName) -> bool {
    let trimmed = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    trimmed(listed) == trimmed(name.as_str())
}

/// The record set for `key` from `set`: an error when it is special or holds a value that
/// is not an address of its type.
fn address_set(key: &RecordKey, set: &ListedSet) -> Result<RecordSet, String> {
    if let Some(why) = &set.special {
        return Err(format!(
            "{key} {why}, which ipdrift does not overwrite; remove the rule or change the record by hand"
        ));
    }
    let addrs = set
        .values
        .iter()
        .map(|value| {
            value
                .trim()
                .parse::<IpAddr>()
                .ok()
                .filter(|a| key.rtype.matches(a))
                .ok_or_else(|| {
                    format!("{key} holds {value:?}, which is not an address of that type")
                })
        })
        .collect::<Result<BTreeSet<IpAddr>, String>>()?;
    Ok(RecordSet {
        key: key.clone(),
        ttl: set.ttl,
        addrs,
    })
}

/// The record sets for `keys` in a listing. Several listed sets for one key (APIs that
/// list records one by one are grouped by the caller) are an error.
pub fn pick_rrsets(listing: &[ListedSet], keys: &[RecordKey]) -> Result<Vec<RecordSet>, String> {
    let wanted: BTreeSet<&RecordKey> = keys.iter().collect();
    let mut found = Vec::new();
    for key in wanted {
        let word = key.rtype.as_str();
        let mut sets = listing
            .iter()
            .filter(|s| s.rtype.eq_ignore_ascii_case(word) && same_name(&s.name, &key.name));
        let Some(set) = sets.next() else { continue };
        if sets.next().is_some() {
            return Err(format!("{key} is listed twice"));
        }
        found.push(address_set(key, set)?);
    }
    Ok(found)
}

/// What a listing of `zone` shows besides its address sets: the CNAMEs and delegations (NS
/// sets below the apex), where no address can be written, and the names the zone uses
/// itself — the SOA's primary, every NS (so the delegations' glue too), MX and SRV target
/// inside the zone. Values are read as zone-file rdata (`10 mail.example.com.`); one that
/// does not read as such names nothing.
pub fn zone_facts(listing: &[ListedSet], zone: &DnsName) -> (Obstacles, BTreeSet<DnsName>) {
    let mut obstacles = Obstacles::default();
    let mut own = BTreeSet::new();
    for set in listing {
        let Ok(owner) = validate::dns_name(&set.name) else {
            continue;
        };
        let rtype = set.rtype.to_ascii_uppercase();
        // Which field of the rdata is a name: SOA MNAME, NS/CNAME target, MX exchange,
        // SRV target.
        let field = match rtype.as_str() {
            "SOA" | "NS" | "CNAME" => 0,
            "MX" => 1,
            "SRV" => 3,
            _ => continue,
        };
        let targets = set.values.iter().filter_map(|value| {
            let target = value.split_whitespace().nth(field)?;
            validate::dns_name(target).ok()
        });
        for target in targets {
            match rtype.as_str() {
                "CNAME" => {
                    obstacles.cnames.insert(owner.clone(), target);
                }
                _ if target.is_in_zone(zone) => {
                    own.insert(target);
                }
                _ => {}
            }
        }
        if rtype == "NS" && owner != *zone && owner.is_in_zone(zone) {
            obstacles.cuts.insert(owner);
        }
    }
    (obstacles, own)
}

/// A TXT value as APIs write it — one or more `"quoted strings"` with `\"` and `\\`
/// escapes, or plain text — as the text of its strings joined.
pub fn unquote_txt(value: &str) -> String {
    let trimmed = value.trim();
    if !trimmed.starts_with('"') {
        return trimmed.to_string();
    }
    let mut text = String::new();
    let mut chars = trimmed.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', _) => quoted = !quoted,
            ('\\', true) => text.extend(chars.next()),
            (c, true) => text.push(c),
            _ => {}
        }
    }
    text
}

/// `text` as one quoted TXT string.
pub fn quote_txt(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Managed name → ownership text, from the TXT sets named `_ipdrift.<name>`. Several
/// records at one name are sorted and joined by newlines, which matches no ownership text:
/// ambiguous ownership counts as none (as for RFC 2136).
pub fn ownership_records(listing: &[ListedSet]) -> BTreeMap<DnsName, String> {
    let mut texts: BTreeMap<DnsName, Vec<String>> = BTreeMap::new();
    for set in listing
        .iter()
        .filter(|s| s.rtype.eq_ignore_ascii_case("TXT"))
    {
        let name = set.name.to_ascii_lowercase();
        let Some((label, managed)) = name.split_once('.') else {
            continue;
        };
        if label != OWNERSHIP_LABEL.to_ascii_lowercase() {
            continue;
        }
        let Ok(managed) = validate::dns_name(managed) else {
            continue;
        };
        texts
            .entry(managed)
            .or_default()
            .extend(set.values.iter().map(|v| unquote_txt(v)));
    }
    texts
        .into_iter()
        .map(|(name, mut values)| {
            values.sort();
            (name, values.join("\n"))
        })
        .collect()
}

/// What one listing gives a pass: the ownership records and every A/AAAA set — or, when
/// some A/AAAA set cannot be read as plain addresses, no sets (the pass then reads the
/// sets it manages with [`pick_rrsets`], which names the one at fault if it is managed).
pub fn zone_contents(listing: &[ListedSet]) -> ZoneContents {
    let mut rrsets = Some(Vec::new());
    for set in listing {
        let rtype = if set.rtype.eq_ignore_ascii_case("A") {
            RecordType::A
        } else if set.rtype.eq_ignore_ascii_case("AAAA") {
            RecordType::Aaaa
        } else {
            continue;
        };
        let read = validate::dns_name(&set.name)
            .ok()
            .and_then(|name| address_set(&RecordKey { name, rtype }, set).ok());
        match (read, rrsets.as_mut()) {
            (Some(rrset), Some(all)) => all.push(rrset),
            _ => rrsets = None,
        }
    }
    if let Some(all) = &rrsets {
        let keys: BTreeSet<&RecordKey> = all.iter().map(|s| &s.key).collect();
        if keys.len() != all.len() {
            rrsets = None;
        }
    }
    ZoneContents {
        ownership: ownership_records(listing),
        rrsets,
        ..ZoneContents::default()
    }
}

/// The checks every batch passes before it is sent: one change per record set, every name
/// valid and inside `zone`, no record set emptied.
pub fn check_batch(changes: &[RecordChange], zone: &DnsName) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for change in changes {
        let key = change.key();
        if !seen.insert(key) {
            return Err(format!(
                "{key} is changed twice in one batch; the plan must hold one change per record set"
            ));
        }
        if !key.name.is_in_zone(zone) {
            return Err(format!(
                "refusing to send {key}: it is outside zone {zone} (check the record name or the target's zone)"
            ));
        }
        validate::dns_name(key.name.as_str())
            .map_err(|why| format!("refusing to send {key}: {why}"))?;
        if let RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } = change
            && to.addrs.is_empty()
        {
            return Err(format!(
                "refusing to send {key}: a record set needs at least one address"
            ));
        }
    }
    Ok(())
}

/// The ownership records a batch writes and deletes, one per name: names created (with
/// their owner text and TTL), and names whose last owned set is deleted with no other type
/// created there in the same batch.
pub fn ownership_changes(
    changes: &[RecordChange],
) -> (BTreeMap<DnsName, (String, u32)>, Vec<DnsName>) {
    let mut created: BTreeMap<DnsName, (String, u32)> = BTreeMap::new();
    let mut deleted = BTreeSet::new();
    for change in changes {
        match change {
            RecordChange::Create { to, owner, .. } => {
                created
                    .entry(to.key.name.clone())
                    .or_insert((owner.clone(), to.ttl));
            }
            RecordChange::Delete { from } => {
                deleted.insert(from.key.name.clone());
            }
            RecordChange::Replace { .. } => {}
        }
    }
    let disowned = deleted
        .into_iter()
        .filter(|name| !created.contains_key(name))
        .collect();
    (created, disowned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        validate::dns_name(text).unwrap()
    }

    #[test]
    fn a_listing_shows_cnames_delegations_and_the_names_the_zone_uses_itself() {
        let zone = name("example.com.");
        let listing = [
            listed(
                "example.com.",
                "SOA",
                &["ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60"],
            ),
            listed(
                "example.com.",
                "NS",
                &["ns1.example.com.", "ns.example.net."],
            ),
            listed("example.com.", "MX", &["10 Mail.example.com."]),
            listed(
                "_sip._tcp.example.com.",
                "SRV",
                &["0 5 5060 sip.example.com."],
            ),
            listed("_none._tcp.example.com.", "srv", &["0 0 0 ."]),
            listed("sub.example.com.", "NS", &["ns-sub.example.com."]),
            listed("alias.example.com.", "CNAME", &["www.example.com."]),
            listed("odd.example.com.", "MX", &["not rdata"]),
        ];
        let (obstacles, own) = zone_facts(&listing, &zone);
        assert_eq!(
            own,
            [
                "ns1.example.com.",
                "mail.example.com.",
                "sip.example.com.",
                "ns-sub.example.com."
            ]
            .map(name)
            .into()
        );
        assert_eq!(
            obstacles.cnames,
            [(name("alias.example.com."), name("www.example.com."))].into()
        );
        assert_eq!(obstacles.cuts, [name("sub.example.com.")].into());
    }

    fn listed(name: &str, rtype: &str, values: &[&str]) -> ListedSet {
        ListedSet {
            name: name.into(),
            rtype: rtype.into(),
            ttl: 60,
            values: values.iter().map(|v| v.to_string()).collect(),
            special: None,
        }
    }

    fn key(text: &str, rtype: RecordType) -> RecordKey {
        RecordKey {
            name: name(text),
            rtype,
        }
    }

    #[test]
    fn a_listing_gives_address_sets_and_ownership() {
        let listing = vec![
            listed("www.example.com.", "A", &["192.0.2.2", "192.0.2.1"]),
            listed("WEB.example.com", "AAAA", &["2001:db8::1"]),
            listed(
                "_ipdrift.www.example.com.",
                "TXT",
                &["\"heritage=ipdrift,owner=a\""],
            ),
            listed(
                "_ipdrift.web.example.com.",
                "TXT",
                &["heritage=ipdrift,owner=a", "x"],
            ),
            listed("static.example.com.", "TXT", &["\"hello\""]),
        ];
        let sets = pick_rrsets(&listing, &[key("www.example.com.", RecordType::A)]).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].addrs.len(), 2);
        let contents = zone_contents(&listing);
        assert_eq!(contents.rrsets.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            contents.ownership[&name("www.example.com.")],
            "heritage=ipdrift,owner=a"
        );
        assert_eq!(
            contents.ownership[&name("web.example.com.")],
            "heritage=ipdrift,owner=a\nx"
        );
    }

    #[test]
    fn specials_and_bad_values_are_errors_not_overwritten() {
        let mut proxied = listed("www.example.com.", "A", &["192.0.2.1"]);
        proxied.special = Some("is proxied by Cloudflare".into());
        let www = key("www.example.com.", RecordType::A);
        let e =
            pick_rrsets(std::slice::from_ref(&proxied), std::slice::from_ref(&www)).unwrap_err();
        assert!(
            e.contains("proxied") && e.contains("does not overwrite"),
            "{e}"
        );
        assert_eq!(zone_contents(&[proxied]).rrsets, None);
        let wrong = listed("www.example.com.", "A", &["2001:db8::1"]);
        assert!(pick_rrsets(&[wrong], std::slice::from_ref(&www)).is_err());
        let twice = vec![
            listed("www.example.com.", "A", &["192.0.2.1"]),
            listed("www.example.com.", "A", &["192.0.2.2"]),
        ];
        assert!(pick_rrsets(&twice, &[www]).unwrap_err().contains("twice"));
        assert_eq!(zone_contents(&twice).rrsets, None);
    }

    #[test]
    fn txt_values_round_trip() {
        assert_eq!(quote_txt("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(
            unquote_txt(&quote_txt("say \"hi\" \\o/")),
            "say \"hi\" \\o/"
        );
        assert_eq!(unquote_txt("\"a b\" \"c\""), "a bc");
        assert_eq!(unquote_txt("plain text"), "plain text");
    }

    #[test]
    fn batches_are_checked_and_ownership_is_per_name() {
        let zone = name("example.com.");
        let set = |text: &str, rtype, addrs: &[&str]| RecordSet {
            key: key(text, rtype),
            ttl: 60,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let owner = "heritage=ipdrift,owner=a".to_string();
        let changes = vec![
            RecordChange::Create {
                to: set("a.example.com.", RecordType::A, &["192.0.2.1"]),
                owner: owner.clone(),
                proxied: None,
            },
            RecordChange::Delete {
                from: set("a.example.com.", RecordType::Aaaa, &["2001:db8::1"]),
            },
            RecordChange::Delete {
                from: set("b.example.com.", RecordType::A, &["192.0.2.2"]),
            },
        ];
        check_batch(&changes, &zone).unwrap();
        let (created, disowned) = ownership_changes(&changes);
        assert_eq!(
            created.keys().collect::<Vec<_>>(),
            vec![&name("a.example.com.")]
        );
        assert_eq!(disowned, vec![name("b.example.com.")]);
        let outside = RecordChange::Replace {
            from: None,
            to: set("a.example.org.", RecordType::A, &["192.0.2.1"]),
        };
        assert!(
            check_batch(&[outside], &zone)
                .unwrap_err()
                .contains("outside")
        );
        let empty = RecordChange::Replace {
            from: None,
            to: set("a.example.com.", RecordType::A, &[]),
        };
        assert!(check_batch(&[empty.clone(), empty], &zone).is_err());
    }
}
