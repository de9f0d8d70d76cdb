//! The RFC 2136 target against real primaries: BIND 9, Knot DNS and PowerDNS. Every test
//! about a server's behaviour runs once per server (`NAME::bind`, `NAME::knot`,
//! `NAME::powerdns`); where the servers legitimately differ, each one's behaviour is
//! asserted.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipdrift::dns::rfc2136::Rfc2136Target;
use ipdrift::dns::tsig::{TsigAlgorithm, TsigKey, parse_key_file};
use ipdrift::dns::{DnsTarget, RecordChange, ownership_text};
use ipdrift::model::{DnsName, RecordKey, RecordSet, RecordType};
use ipdrift::validate;
use support::authoritative::{Authoritative, Grants, ZONE_TTL};
use support::bind::Bind;
use support::knot::Knot;
use support::pdns::PowerDns;

const ZONE: &str = "example.test.";
const TIMEOUT: Duration = Duration::from_secs(5);
/// The `owner_id` of the controller these tests play.
const OWNER_ID: &str = "test";

/// The zone every test starts from: `owned` is an RRset ipdrift created (it has an ownership
/// record); the others are not ipdrift's.
const RECORDS: &[(&str, &str, &str)] = &[
    ("www", "A", "127.0.1.10"),
    ("static", "A", "192.0.2.99"),
    ("api", "A", "192.0.2.1"),
    ("api", "A", "192.0.2.2"),
    ("v6", "AAAA", "2001:db8::1"),
    ("alias", "CNAME", "www"),
    ("owned", "A", "192.0.2.60"),
    ("_ipdrift.owned", "TXT", "\"heritage=ipdrift,owner=test\""),
];

/// The servers every test of server behaviour runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Bind,
    Knot,
    PowerDns,
}

impl Server {
    /// A primary for [`ZONE`] holding `records`, on a free loopback port.
    fn start(self, records: &[(&str, &str, &str)], grants: Grants) -> Box<dyn Authoritative> {
        match self {
            Server::Bind => Box::new(Bind::with_grants(ZONE, records, grants)),
            Server::Knot => Box::new(Knot::new(ZONE, records, grants)),
            Server::PowerDns => Box::new(PowerDns::new(ZONE, records, grants)),
        }
    }

    /// A primary for [`ZONE`] holding [`RECORDS`] where the key may update and transfer.
    fn with_records(self) -> Box<dyn Authoritative> {
        self.start(RECORDS, Grants::UpdateAndTransfer)
    }
}

/// `every_server! { async fn NAME(server: Server) { … } }` defines the test once per
/// server, as `NAME::bind`, `NAME::knot` and `NAME::powerdns`, so that a run counts passes
/// per server.
macro_rules! every_server {
    ($(#[$meta:meta])* async fn $name:ident($server:ident: Server $(,)?) $body:block) => {
        mod $name {
            use super::*;

            $(#[$meta])*
            async fn run($server: Server) $body

            #[tokio::test]
            async fn bind() {
                run(Server::Bind).await
            }

            #[tokio::test]
            async fn knot() {
                run(Server::Knot).await
            }

            #[tokio::test]
            async fn powerdns() {
                run(Server::PowerDns).await
            }
        }
    };
}

/// A target that signs with the server's key file, in the format tsig-keygen writes.
fn target(dns: &dyn Authoritative) -> Rfc2136Target {
    let text = std::fs::read_to_string(dns.key_file_path()).unwrap();
    target_with_key(dns.addr(), parse_key_file(&text).unwrap())
}

fn target_with_key(server: SocketAddr, key: TsigKey) -> Rfc2136Target {
    Rfc2136Target::new("ns1".into(), server, name(ZONE), key, TIMEOUT)
}

fn name(text: &str) -> DnsName {
    validate::dns_name(text).unwrap()
}

fn key(owner: &str, rtype: RecordType) -> RecordKey {
    RecordKey {
        name: name(owner),
        rtype,
    }
}

fn addrs(texts: &[&str]) -> BTreeSet<IpAddr> {
    texts.iter().map(|text| text.parse().unwrap()).collect()
}

fn rrset(owner: &str, rtype: RecordType, ttl: u32, addresses: &[&str]) -> RecordSet {
    RecordSet {
        key: key(owner, rtype),
        ttl,
        addrs: addrs(addresses),
    }
}

fn replace(to: RecordSet) -> RecordChange {
    RecordChange::Replace { from: None, to }
}

fn create(to: RecordSet) -> RecordChange {
    RecordChange::Create {
        to,
        owner: ownership_text(OWNER_ID),
        proxied: None,
    }
}

fn delete(from: RecordSet) -> RecordChange {
    RecordChange::Delete { from }
}

/// The TXT rdata of the ownership record of `name`, as `dig +short` prints it.
fn ownership_txt(dns: &dyn Authoritative, name: &str) -> Vec<String> {
    dns.query(&format!("_ipdrift.{name}"), "TXT")
}

fn ownership(entries: &[(&str, &str)]) -> BTreeMap<DnsName, String> {
    entries
        .iter()
        .map(|(owner, text)| (name(owner), text.to_string()))
        .collect()
}

every_server! {
    async fn reads_existing_rrsets_and_leaves_out_absent_ones(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let mut read = target
            .read(&[
                key("www.example.test.", RecordType::A),
                key("api.example.test.", RecordType::A),
                key("v6.example.test.", RecordType::Aaaa),
                key("nothing.example.test.", RecordType::A), // NXDOMAIN
                key("www.example.test.", RecordType::Aaaa),  // NOERROR, no data
                key("alias.example.test.", RecordType::A),   // a CNAME is not an A RRset
            ])
            .await
            .unwrap();
        read.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            read,
            vec![
                rrset(
                    "api.example.test.",
                    RecordType::A,
                    ZONE_TTL,
                    &["192.0.2.1", "192.0.2.2"]
                ),
                rrset(
                    "v6.example.test.",
                    RecordType::Aaaa,
                    ZONE_TTL,
                    &["2001:db8::1"]
                ),
                rrset(
                    "www.example.test.",
                    RecordType::A,
                    ZONE_TTL,
                    &["127.0.1.10"]
                ),
            ]
        );
    }
}

every_server! {
    async fn writes_a_multi_address_rrset_that_dig_and_read_see(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let wanted = rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.20", "192.0.2.21", "192.0.2.22"],
        );
        target.write(&[replace(wanted.clone())]).await.unwrap();

        assert_eq!(
            dns.query("www.example.test.", "A"),
            ["192.0.2.20", "192.0.2.21", "192.0.2.22"]
        );
        let read = target
            .read(std::slice::from_ref(&wanted.key))
            .await
            .unwrap();
        assert_eq!(read, vec![wanted]);
    }
}

every_server! {
    async fn one_write_changes_two_rrsets_in_one_update_and_nothing_else(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        target
            .write(&[
                replace(rrset(
                    "www.example.test.",
                    RecordType::A,
                    60,
                    &["192.0.2.30"],
                )),
                replace(rrset(
                    "api.example.test.",
                    RecordType::A,
                    60,
                    &["192.0.2.31"],
                )),
            ])
            .await
            .unwrap();

        assert_eq!(dns.query("www.example.test.", "A"), ["192.0.2.30"]);
        assert_eq!(dns.query("api.example.test.", "A"), ["192.0.2.31"]);
        assert_eq!(dns.query("static.example.test.", "A"), ["192.0.2.99"]);
        assert_eq!(dns.query("v6.example.test.", "AAAA"), ["2001:db8::1"]);
        // Every server bumps the serial once per UPDATE message.
        assert_eq!(dns.soa_serial(), serial_before + 1);
    }
}

every_server! {
    async fn writes_an_aaaa_rrset(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let wanted = rrset(
            "v6.example.test.",
            RecordType::Aaaa,
            120,
            &["2001:db8::10", "2001:db8::11"],
        );
        target.write(&[replace(wanted.clone())]).await.unwrap();

        assert_eq!(
            dns.query("v6.example.test.", "AAAA"),
            ["2001:db8::10", "2001:db8::11"]
        );
        assert_eq!(
            target
                .read(std::slice::from_ref(&wanted.key))
                .await
                .unwrap(),
            vec![wanted]
        );
    }
}

every_server! {
    async fn written_records_survive_a_restart(server: Server) {
        let mut dns = server.with_records();
        let target = target(&*dns);
        let wanted = rrset("new.example.test.", RecordType::A, 60, &["192.0.2.40"]);
        target.write(&[replace(wanted.clone())]).await.unwrap();

        dns.restart();
        assert_eq!(
            target
                .read(std::slice::from_ref(&wanted.key))
                .await
                .unwrap(),
            vec![wanted]
        );
    }
}

every_server! {
    /// BIND and Knot answer a wrong secret with the TSIG error BADSIG; PowerDNS answers an
    /// update with an unsigned REFUSED and a query or transfer with an unsigned NOTAUTH,
    /// which ipdrift asks about before it words the error.
    async fn a_wrong_secret_is_reported_as_a_key_problem_and_never_printed(server: Server) {
        let dns = server.with_records();
        let wrong_secret = "c2VjcmV0LXRoYXQtdGhlLXNlcnZlci1kb2VzLW5vdC1oYXZl";
        let wrong =
            TsigKey::from_base64(dns.key_name(), TsigAlgorithm::HmacSha256, wrong_secret).unwrap();
        let target = target_with_key(dns.addr(), wrong);

        let write_error = target
            .write(&[replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.50"]))])
            .await
            .unwrap_err();
        let read_error = target
            .read(&[key("www.example.test.", RecordType::A)])
            .await
            .unwrap_err();
        let transfer_error = target.read_ownership().await.unwrap_err();
        let said = match server {
            Server::Bind | Server::Knot => ["NOTAUTH (BADSIG)"; 3],
            Server::PowerDns => ["REFUSED", "NOTAUTH", "NOTAUTH"],
        };
        let errors = [&write_error, &read_error, &transfer_error];
        for (error, said) in errors.into_iter().zip(said) {
            let text = format!("{error:#}");
            assert!(text.contains(&format!("ns1 ({})", dns.addr())), "{text}");
            assert!(text.contains(&format!(": {said} — ")), "{text}");
            assert!(
                text.contains("TSIG key 'ipdrift-key' (hmac-sha256) was not accepted"),
                "{text}"
            );
            assert!(!text.contains("not authoritative"), "{text}");
            assert!(!text.contains(wrong_secret), "{text}");
            assert!(!text.contains(dns.secret_base64()), "{text}");
        }
        assert!(format!("{write_error:#}").contains("refused the update"));
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
    }
}

every_server! {
    async fn a_key_unknown_to_the_server_is_reported_as_a_key_problem(server: Server) {
        let dns = server.with_records();
        let unknown =
            TsigKey::from_base64("other-key", TsigAlgorithm::HmacSha256, dns.secret_base64())
                .unwrap();
        let target = target_with_key(dns.addr(), unknown);
        let write_error = target
            .write(&[replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.51"]))])
            .await
            .unwrap_err();
        let transfer_error = target.read_ownership().await.unwrap_err();
        let said = match server {
            Server::Bind | Server::Knot => ["NOTAUTH (BADKEY)"; 2],
            Server::PowerDns => ["REFUSED", "NOTAUTH"],
        };
        for (error, said) in [write_error, transfer_error].into_iter().zip(said) {
            let text = format!("{error:#}");
            assert!(text.contains(&format!(": {said} — ")), "{text}");
            assert!(
                text.contains("TSIG key 'other-key' (hmac-sha256) was not accepted"),
                "{text}"
            );
            assert!(!text.contains("not authoritative"), "{text}");
            assert!(!text.contains(dns.secret_base64()), "{text}");
        }
    }
}

every_server! {
    async fn a_zone_the_server_does_not_serve_is_notauth(server: Server) {
        let dns = server.with_records();
        let text = std::fs::read_to_string(dns.key_file_path()).unwrap();
        let target = Rfc2136Target::new(
            "ns1".into(),
            dns.addr(),
            name("other.test."),
            parse_key_file(&text).unwrap(),
            TIMEOUT,
        );
        let error = target
            .write(&[replace(rrset(
                "www.other.test.",
                RecordType::A,
                60,
                &["192.0.2.52"],
            ))])
            .await
            .unwrap_err();
        let transfer_error = target.read_ownership().await.unwrap_err();
        for error in [error, transfer_error] {
            let text = format!("{error:#}");
            assert!(text.contains(": NOTAUTH — "), "{text}");
            assert!(
                text.contains("the server is not authoritative for zone other.test."),
                "{text}"
            );
            // The fix fits every server, not only BIND.
            for config in ["named.conf", "knot.conf", "pdnsutil"] {
                assert!(text.contains(config), "{text}");
            }
            assert!(!text.contains("was not accepted"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_stopped_server_is_named_in_the_error() {
    let mut bind = Bind::new(ZONE, RECORDS);
    let target = target(&bind);
    bind.stop();

    let write_error = target
        .write(&[replace(rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.53"],
        ))])
        .await
        .unwrap_err();
    let read_error = target
        .read(&[key("www.example.test.", RecordType::A)])
        .await
        .unwrap_err();
    let transfer_error = target.read_ownership().await.unwrap_err();
    for error in [write_error, read_error, transfer_error] {
        let text = format!("{error:#}");
        assert!(text.contains("cannot connect to ns1"), "{text}");
        assert!(text.contains(&bind.addr().to_string()), "{text}");
        assert!(text.contains("is the server running"), "{text}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out_with_a_clear_error() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let tsig_key =
        TsigKey::from_base64("ipdrift-key", TsigAlgorithm::HmacSha256, "c2VjcmV0").unwrap();
    let target = Rfc2136Target::new(
        "ns1".into(),
        server,
        name(ZONE),
        tsig_key,
        Duration::from_millis(300),
    );

    let error = target
        .read(&[key("www.example.test.", RecordType::A)])
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains(&format!("no answer from ns1 ({server}) within 300ms")),
        "{text}"
    );
    assert!(text.contains("is this its primary"), "{text}");
    let text = format!("{:#}", target.read_ownership().await.unwrap_err());
    assert!(
        text.contains(&format!(
            "the zone transfer (AXFR) of example.test. from ns1 ({server}) did not finish within 300ms"
        )),
        "{text}"
    );
    holder.abort();
}

#[tokio::test]
async fn a_name_outside_the_zone_is_refused_before_anything_is_sent() {
    let mut bind = Bind::new(ZONE, RECORDS);
    let target = target(&bind);
    // With the server gone, any attempt to send would fail with "cannot connect".
    bind.stop();

    let write_error = target
        .write(&[
            replace(rrset(
                "www.example.test.",
                RecordType::A,
                60,
                &["192.0.2.54"],
            )),
            replace(rrset(
                "www.example.org.",
                RecordType::A,
                60,
                &["192.0.2.55"],
            )),
        ])
        .await
        .unwrap_err();
    let read_error = target
        .read(&[key("www.example.org.", RecordType::A)])
        .await
        .unwrap_err();
    for error in [write_error, read_error] {
        let text = format!("{error:#}");
        assert!(
            text.contains("www.example.org. is outside zone example.test."),
            "{text}"
        );
        assert!(!text.contains("cannot connect"), "{text}");
    }
}

every_server! {
    async fn a_create_writes_the_rrset_and_its_ownership_record_which_read_ownership_lists(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let owner_text = ownership_text(OWNER_ID);
        assert_eq!(
            target.read_ownership().await.unwrap(),
            ownership(&[("owned.example.test.", &owner_text)])
        );

        let wanted = rrset(
            "new.example.test.",
            RecordType::A,
            60,
            &["192.0.2.70", "192.0.2.71"],
        );
        target.write(&[create(wanted.clone())]).await.unwrap();

        assert_eq!(
            dns.query("new.example.test.", "A"),
            ["192.0.2.70", "192.0.2.71"]
        );
        assert_eq!(
            ownership_txt(&*dns, "new.example.test."),
            [format!("\"{owner_text}\"")]
        );
        assert_eq!(
            target
                .read(std::slice::from_ref(&wanted.key))
                .await
                .unwrap(),
            vec![wanted]
        );
        assert_eq!(
            target.read_ownership().await.unwrap(),
            ownership(&[
                ("new.example.test.", &owner_text),
                ("owned.example.test.", &owner_text),
            ])
        );
    }
}

every_server! {
    async fn a_create_over_an_rrset_that_exists_is_refused_alone_and_the_rest_written(
        server: Server,
    ) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        let error = target
            .write(&[
                replace(rrset("api.example.test.", RecordType::A, 60, &["192.0.2.77"])),
                create(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.78"])),
            ])
            .await
            .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "ns1 ({}) refused the update of www.example.test. A: YXRRSET — www.example.test. A appeared since it was read, so ipdrift did not create it over what is there; it will be handled in the next pass; the other change was written",
                dns.addr()
            )
        );
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
        assert_eq!(dns.query("api.example.test.", "A"), ["192.0.2.77"]);
        assert!(ownership_txt(&*dns, "www.example.test.").is_empty());
        // The refused message changed nothing; api's own message did.
        assert_eq!(dns.soa_serial(), serial_before + 1);
    }
}

every_server! {
    async fn a_delete_removes_the_rrset_and_its_ownership_record(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        target
            .write(&[delete(rrset(
                "owned.example.test.",
                RecordType::A,
                ZONE_TTL,
                &["192.0.2.60"],
            ))])
            .await
            .unwrap();

        assert!(dns.query("owned.example.test.", "A").is_empty());
        assert!(ownership_txt(&*dns, "owned.example.test.").is_empty());
        assert_eq!(target.read_ownership().await.unwrap(), BTreeMap::new());
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
    }
}

every_server! {
    async fn a_delete_of_an_rrset_without_ownership_record_fails_and_leaves_it(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        let error = target
            .write(&[delete(rrset(
                "www.example.test.",
                RecordType::A,
                ZONE_TTL,
                &["127.0.1.10"],
            ))])
            .await
            .unwrap_err();
        let text = format!("{error:#}");
        assert_eq!(
            text,
            format!(
                "ns1 ({}) refused the update: NXRRSET — the ownership record _ipdrift.www.example.test. TXT of www.example.test. A is gone, so ipdrift no longer owns it and did not delete it; nothing in the update was applied, and it will be handled in the next pass",
                dns.addr()
            )
        );
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
        assert_eq!(dns.soa_serial(), serial_before);
    }
}

every_server! {
    async fn a_batch_of_replace_create_and_delete_is_one_update(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        target
            .write(&[
                replace(rrset(
                    "www.example.test.",
                    RecordType::A,
                    60,
                    &["192.0.2.80"],
                )),
                create(rrset(
                    "new.example.test.",
                    RecordType::Aaaa,
                    60,
                    &["2001:db8::80"],
                )),
                delete(rrset(
                    "owned.example.test.",
                    RecordType::A,
                    ZONE_TTL,
                    &["192.0.2.60"],
                )),
            ])
            .await
            .unwrap();

        assert_eq!(dns.query("www.example.test.", "A"), ["192.0.2.80"]);
        assert_eq!(dns.query("new.example.test.", "AAAA"), ["2001:db8::80"]);
        assert!(dns.query("owned.example.test.", "A").is_empty());
        assert_eq!(
            target.read_ownership().await.unwrap(),
            ownership(&[("new.example.test.", &ownership_text(OWNER_ID))])
        );
        // Every server bumps the serial once per UPDATE message.
        assert_eq!(dns.soa_serial(), serial_before + 1);
    }
}

every_server! {
    async fn a_zone_transfer_of_many_messages_is_read_to_the_end(server: Server) {
        // About 300 kB of TXT records: every server sends the transfer in several messages.
        // (PowerDNS 4.7 fails a transfer with records of more than about 750 bytes: "attempt
        // to write an oversized chunk".)
        let filler = vec![format!("\"{}\"", "x".repeat(250)); 2].join(" ");
        let names: Vec<String> = (0..600).map(|n| format!("filler{n}")).collect();
        let mut records: Vec<(&str, &str, &str)> = RECORDS.to_vec();
        records.extend(
            names
                .iter()
                .map(|owner| (owner.as_str(), "TXT", filler.as_str())),
        );
        records.push((
            "_ipdrift.zzz-last",
            "TXT",
            "\"heritage=ipdrift,owner=other\"",
        ));
        let dns = server.start(&records, Grants::UpdateAndTransfer);
        assert!(dns.transfer_message_count() > 3);

        assert_eq!(
            target(&*dns).read_ownership().await.unwrap(),
            ownership(&[
                ("owned.example.test.", &ownership_text(OWNER_ID)),
                ("zzz-last.example.test.", &ownership_text("other")),
            ])
        );
    }
}

every_server! {
    /// BIND refuses with REFUSED, Knot with NOTAUTH (BADKEY), PowerDNS with NOTAUTH; each
    /// answers a signed query, so the key is right and the transfer is what is not allowed.
    async fn a_refused_zone_transfer_says_how_to_allow_it(server: Server) {
        let dns = server.start(RECORDS, Grants::UpdateOnly);
        let error = target(&*dns).read_ownership().await.unwrap_err();
        let said = match server {
            Server::Bind => "REFUSED",
            Server::Knot => "NOTAUTH (BADKEY)",
            Server::PowerDns => "NOTAUTH",
        };
        assert_eq!(
            format!("{error:#}"),
            format!(
                "ns1 ({}) refused the zone transfer (AXFR): {said} — the server accepts TSIG key 'ipdrift-key' (hmac-sha256) but does not allow zone transfers of example.test. with it, which ipdrift needs to find its ownership records; allow transfers with the key: `allow-transfer {{ key ipdrift-key; }};` in the zone's clause in named.conf (BIND), `transfer` in the `action` of an acl for key ipdrift-key in knot.conf (Knot), `pdnsutil set-meta example.test TSIG-ALLOW-AXFR ipdrift-key` (PowerDNS)",
                dns.addr()
            )
        );
    }
}

/// `count` replaces of `web-00000.example.test.` A onwards, each to one address.
fn web_replaces(count: usize) -> Vec<RecordChange> {
    (0..count)
        .map(|n| {
            replace(rrset(
                &format!("web-{n:05}.example.test."),
                RecordType::A,
                60,
                &[&format!("10.1.{}.{}", n / 250, n % 250 + 1)],
            ))
        })
        .collect()
}

fn sorted(mut rrsets: Vec<RecordSet>) -> Vec<RecordSet> {
    rrsets.sort_by(|a, b| a.key.cmp(&b.key));
    rrsets
}

every_server! {
    async fn fifteen_hundred_rrsets_written_at_once_take_several_updates_and_read_back(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        let changes = web_replaces(1500);
        target.write(&changes).await.unwrap();

        // A replaced A record takes at most 72 bytes (each name uncompressed), so 1 500 of them
        // need two messages of at most 64 511 bytes. BIND and PowerDNS bump the serial once
        // per message; Knot applies the updates that are queued together as one change.
        let bumps = dns.soa_serial() - serial_before;
        match server {
            Server::Bind | Server::PowerDns => assert_eq!(bumps, 2),
            Server::Knot => assert!((1..=2).contains(&bumps), "{bumps}"),
        }
        let wanted: Vec<RecordSet> = changes
            .iter()
            .map(|change| match change {
                RecordChange::Replace { to, .. } => to.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let keys: Vec<RecordKey> = wanted.iter().map(|rrset| rrset.key.clone()).collect();
        assert_eq!(sorted(target.read(&keys).await.unwrap()), wanted);
        assert_eq!(dns.query("web-00000.example.test.", "A"), ["10.1.0.1"]);
        assert_eq!(dns.query("web-01499.example.test.", "A"), ["10.1.5.250"]);
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
    }
}

every_server! {
    async fn one_refused_rrset_among_fifteen_hundred_is_isolated_and_the_rest_written(
        server: Server,
    ) {
        let dns = server.with_records();
        let target = target(&*dns);
        // The create of www, which exists, lands in the second of two messages.
        let mut changes = web_replaces(1500);
        changes.insert(
            1200,
            create(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.78"])),
        );
        let error = target.write(&changes).await.unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "ns1 ({}) refused the update of www.example.test. A: YXRRSET — www.example.test. A appeared since it was read, so ipdrift did not create it over what is there; it will be handled in the next pass; the other 1500 changes were written",
                dns.addr()
            )
        );
        assert_eq!(dns.query("web-00000.example.test.", "A"), ["10.1.0.1"]);
        assert_eq!(dns.query("web-01199.example.test.", "A"), ["10.1.4.200"]);
        assert_eq!(dns.query("web-01200.example.test.", "A"), ["10.1.4.201"]);
        assert_eq!(dns.query("web-01499.example.test.", "A"), ["10.1.5.250"]);
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
        assert!(ownership_txt(&*dns, "www.example.test.").is_empty());
    }
}

every_server! {
    /// BIND refuses an owner name with `_` (check-names is on for primary zones by
    /// default); Knot and PowerDNS accept it.
    async fn one_bad_name_does_not_stop_the_rest_of_the_zone(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let serial_before = dns.soa_serial();
        let result = target
            .write(&[
                replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.100"])),
                replace(rrset("web-01.example.test.", RecordType::A, 60, &["192.0.2.101"])),
                replace(rrset("web_05.example.test.", RecordType::A, 60, &["192.0.2.105"])),
            ])
            .await;
        assert_eq!(dns.query("www.example.test.", "A"), ["192.0.2.100"]);
        assert_eq!(dns.query("web-01.example.test.", "A"), ["192.0.2.101"]);
        match server {
            Server::Bind => {
                let text = format!("{:#}", result.unwrap_err());
                assert_eq!(
                    text,
                    format!(
                        "ns1 ({}) refused the update of web_05.example.test. A: REFUSED — web_05.example.test. is not a host name (only letters, digits and hyphens; `_` is not one), and BIND refuses such owner names for address records in a primary zone (check-names, on by default); rename the record, or allow it with `check-names primary ignore;` in named.conf's options (the server accepted the batch's other changes with the same key); the other 2 changes were written",
                        dns.addr()
                    )
                );
                assert!(!text.contains("allow-update"), "{text}");
                assert!(dns.query("web_05.example.test.", "A").is_empty());
                // The refused batch, then www alone and the other two, then each of those.
                assert_eq!(dns.soa_serial(), serial_before + 2);
            }
            Server::Knot | Server::PowerDns => {
                result.unwrap();
                assert_eq!(dns.query("web_05.example.test.", "A"), ["192.0.2.105"]);
            }
        }
    }
}

every_server! {
    /// Knot answers an update its ACL denies with NOTAUTH (BADKEY), BIND and PowerDNS with a
    /// signed REFUSED; one UPDATE that changes nothing then shows that the key may update
    /// nothing, so the batch is not split in search of a bad name.
    async fn a_key_that_may_not_update_is_told_how_to_allow_it_and_nothing_is_split(
        server: Server,
    ) {
        let dns = server.start(RECORDS, Grants::TransferOnly);
        let target = target(&*dns);
        let error = target
            .write(&[
                replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.120"])),
                replace(rrset("web-01.example.test.", RecordType::A, 60, &["192.0.2.121"])),
                replace(rrset("web_05.example.test.", RecordType::A, 60, &["192.0.2.125"])),
            ])
            .await
            .unwrap_err();
        let (said, denied) = match server {
            // The batch and the UPDATE that changes nothing.
            Server::Bind | Server::PowerDns => ("REFUSED", 2),
            // The batch; the key's standing comes from a signed query.
            Server::Knot => ("NOTAUTH (BADKEY)", 1),
        };
        assert_eq!(
            format!("{error:#}"),
            format!(
                "ns1 ({}) refused the update: {said} — the server accepts TSIG key 'ipdrift-key' (hmac-sha256) but does not allow updates to zone example.test. with it; allow updates with the key: `allow-update {{ key ipdrift-key; }};` or an `update-policy` grant in the zone's clause in named.conf (BIND), `update` in the `action` of an acl for key ipdrift-key in knot.conf (Knot), `pdnsutil set-meta example.test TSIG-ALLOW-DNSUPDATE ipdrift-key` and an `allow-dnsupdate-from` that admits this host (PowerDNS)",
                dns.addr()
            )
        );
        assert_eq!(dns.updates_denied(), denied, "{}", dns.log());
        assert_eq!(dns.query("www.example.test.", "A"), ["127.0.1.10"]);
    }
}

every_server! {
    /// Every server accepts an address below a delegation of the zone (it is occluded,
    /// RFC 2181 §6) and answers a query for it with a referral: reads take it as absent,
    /// as a zone transfer's glue, and still read the other RRsets.
    async fn a_name_below_a_delegation_reads_as_absent_without_failing_the_read(server: Server) {
        let mut records = RECORDS.to_vec();
        records.extend([("sub", "NS", "ns.sub"), ("ns.sub", "A", "192.0.2.53")]);
        let dns = server.start(&records, Grants::UpdateAndTransfer);
        let target = target(&*dns);
        target
            .write(&[
                replace(rrset("x.sub.example.test.", RecordType::A, 60, &["192.0.2.130"])),
                replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.131"])),
            ])
            .await
            .unwrap();
        let keys = [
            key("x.sub.example.test.", RecordType::A),
            key("ns.sub.example.test.", RecordType::A),
            key("www.example.test.", RecordType::A),
        ];
        let by_queries = target.read(&keys).await.unwrap();
        assert_eq!(
            by_queries,
            [rrset("www.example.test.", RecordType::A, 60, &["192.0.2.131"])]
        );
        let listing = target.read_listing().await.unwrap();
        let rrsets = listing.rrsets.unwrap();
        assert!(!rrsets.iter().any(|rrset| rrset.key == keys[0]), "{rrsets:?}");
        assert!(!rrsets.iter().any(|rrset| rrset.key == keys[1]), "{rrsets:?}");
    }
}

every_server! {
    /// An address at a name that holds a CNAME: BIND and Knot ignore the addition (RFC 2136
    /// §3.4.2.2) and answer NOERROR, so only reading back shows it; PowerDNS refuses it.
    async fn an_address_at_a_cname_is_isolated_where_the_server_refuses_it(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let result = target
            .write(&[
                replace(rrset("alias.example.test.", RecordType::A, 60, &["192.0.2.110"])),
                replace(rrset("www.example.test.", RecordType::A, 60, &["192.0.2.111"])),
            ])
            .await;
        assert_eq!(dns.query("www.example.test.", "A"), ["192.0.2.111"]);
        let alias = target
            .read(&[key("alias.example.test.", RecordType::A)])
            .await
            .unwrap();
        assert_eq!(alias, [], "no A RRset beside the CNAME");
        match server {
            Server::Bind | Server::Knot => result.unwrap(),
            Server::PowerDns => assert_eq!(
                format!("{:#}", result.unwrap_err()),
                format!(
                    "ns1 ({}) refused the update of alias.example.test. A: REFUSED — alias.example.test. holds a CNAME (to www.example.test.), and a name with a CNAME can hold no other data (RFC 1034 §3.6.2); remove the CNAME, or manage another name (the server accepted the batch's other changes with the same key); the other change was written",
                    dns.addr()
                )
            ),
        }
    }
}

/// A zone of about a hundred names: RECORDS plus single and multi-address A RRsets, AAAA
/// RRsets, names in mixed case and other types.
fn hundred_names() -> Vec<(String, &'static str, String)> {
    let mut records: Vec<(String, &str, String)> = RECORDS
        .iter()
        .map(|(owner, rtype, rdata)| (owner.to_string(), *rtype, rdata.to_string()))
        .collect();
    for n in 0..90 {
        let owner = if n % 10 == 0 {
            format!("Host-{n:02}")
        } else {
            format!("host-{n:02}")
        };
        records.push((owner.clone(), "A", format!("192.0.2.{}", n + 1)));
        if n % 3 == 0 {
            records.push((owner.clone(), "A", format!("198.51.100.{}", n + 1)));
        }
        if n % 4 == 0 {
            records.push((owner.clone(), "AAAA", format!("2001:db8::{:x}", n + 1)));
        }
        if n % 7 == 0 {
            records.push((owner, "TXT", "\"not an address\"".to_string()));
        }
    }
    records
}

/// Every A and AAAA key of `hundred_names`, plus some that do not exist.
fn hundred_names_keys() -> Vec<RecordKey> {
    let mut keys = Vec::new();
    for n in 0..95 {
        for rtype in [RecordType::A, RecordType::Aaaa] {
            keys.push(key(&format!("host-{n:02}.example.test."), rtype));
        }
    }
    for (owner, _, _) in RECORDS {
        for rtype in [RecordType::A, RecordType::Aaaa] {
            keys.push(key(&format!("{owner}.example.test."), rtype));
        }
    }
    keys
}

/// A primary for [`ZONE`] holding `records`, given as owned strings.
fn start(
    server: Server,
    records: &[(String, &str, String)],
    grants: Grants,
) -> Box<dyn Authoritative> {
    let records: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|(owner, rtype, rdata)| (owner.as_str(), *rtype, rdata.as_str()))
        .collect();
    server.start(&records, grants)
}

every_server! {
    async fn a_read_of_many_rrsets_by_zone_transfer_matches_one_query_each(server: Server) {
        let dns = start(server, &hundred_names(), Grants::UpdateAndTransfer);
        let target = target(&*dns);
        let keys = hundred_names_keys();

        let by_transfer = sorted(target.read(&keys).await.unwrap());
        assert_eq!(dns.transfers_started(), 1);
        let mut by_queries = Vec::new();
        for chunk in keys.chunks(32) {
            by_queries.extend(target.read(chunk).await.unwrap());
        }
        assert_eq!(
            dns.transfers_started(),
            1,
            "reads of 32 RRsets use queries"
        );

        assert_eq!(by_transfer, sorted(by_queries));
        assert_eq!(by_transfer.len(), 90 + 23 + 5);
        assert!(by_transfer.contains(&rrset(
            "host-30.example.test.",
            RecordType::A,
            ZONE_TTL,
            &["192.0.2.31", "198.51.100.31"]
        )));
    }
}

every_server! {
    /// A key that may update the zone but not transfer it still reads and writes: Knot
    /// refuses the transfer with NOTAUTH (BADKEY), PowerDNS with NOTAUTH, BIND with REFUSED.
    async fn a_refused_zone_transfer_falls_back_to_queries_and_is_not_asked_again(server: Server) {
        let dns = start(server, &hundred_names(), Grants::UpdateOnly);
        let target = target(&*dns);
        let keys = hundred_names_keys();
        assert!(keys.len() > 40);

        let first = sorted(target.read(&keys).await.unwrap());
        let second = sorted(target.read(&keys).await.unwrap());
        assert_eq!(first.len(), 90 + 23 + 5);
        assert_eq!(first, second);
        assert_eq!(dns.transfers_denied(), 1, "{}", dns.log());

        let moved = rrset("host-30.example.test.", RecordType::A, 60, &["192.0.2.230"]);
        target.write(&[replace(moved.clone())]).await.unwrap();
        let third = target.read(&keys).await.unwrap();
        assert!(third.contains(&moved), "{third:?}");
        assert_eq!(third.len(), first.len());
        assert_eq!(dns.transfers_denied(), 1, "not asked again within the hour");
        // The ownership records still need the transfer.
        let error = target.read_ownership().await.unwrap_err();
        assert!(format!("{error:#}").contains("refused the zone transfer (AXFR)"), "{error:#}");
    }
}

every_server! {
    async fn the_names_the_zone_uses_itself_are_read_from_its_soa_and_ns(server: Server) {
        let dns = server.with_records();
        let target = target(&*dns);
        let names = target.read_zone_own_names().await.unwrap();
        assert_eq!(
            names,
            BTreeSet::from([validate::dns_name(&format!("ns1.{ZONE}")).unwrap()]),
            "the SOA primary and the one name server"
        );
    }
}

every_server! {
    /// A CNAME at a managed name and a delegation in the zone are what make a server refuse
    /// or ignore an address there: a read shows both, whether by queries or by a zone
    /// transfer, so that the plan reports those names instead of writing them.
    async fn the_cnames_and_delegations_at_managed_names_are_read_by_queries_and_transfer(
        server: Server,
    ) {
        let mut records = RECORDS.to_vec();
        records.extend([("sub", "NS", "ns.sub"), ("ns.sub", "A", "192.0.2.53")]);
        let dns = server.start(&records, Grants::UpdateAndTransfer);
        let target = target(&*dns);
        let keys = [
            key("alias.example.test.", RecordType::A),
            key("sub.example.test.", RecordType::A),
            key("x.sub.example.test.", RecordType::A),
            key("www.example.test.", RecordType::A),
        ];
        let by_queries = target.read_zone(&keys).await.unwrap();
        assert_eq!(
            by_queries.rrsets,
            [rrset("www.example.test.", RecordType::A, ZONE_TTL, &["127.0.1.10"])]
        );
        let cnames = BTreeMap::from([(name("alias.example.test."), name("www.example.test."))]);
        let cuts = BTreeSet::from([name("sub.example.test.")]);
        assert_eq!(by_queries.obstacles.cnames, cnames);
        assert_eq!(by_queries.obstacles.cuts, cuts);
        assert_eq!(dns.transfers_started(), 0, "a few RRsets are queried");
        let listing = target.read_listing().await.unwrap();
        assert_eq!(listing.obstacles.cnames, cnames);
        assert_eq!(listing.obstacles.cuts, cuts);
        for key in &keys[..3] {
            let obstacle = listing.obstacles.at(&key.name);
            assert!(obstacle.is_some(), "{key}: {:?}", listing.obstacles);
        }
        assert_eq!(listing.obstacles.at(&keys[3].name), None);
    }
}

every_server! {
    /// Mail exchangers, SRV targets and the name servers of delegations are names the zone
    /// uses itself too. Queries find the ones at known names (the apex, well-known services,
    /// the delegations managed names lie under); a zone transfer finds them all.
    async fn srv_targets_and_delegations_name_servers_are_names_the_zone_uses_itself(
        server: Server,
    ) {
        let mut records = RECORDS.to_vec();
        records.extend([
            ("@", "MX", "10 mail"),
            ("mail", "A", "192.0.2.25"),
            ("_sip._tcp", "SRV", "0 5 5060 sip"),
            ("sip", "A", "192.0.2.26"),
            ("_game._udp", "SRV", "0 5 27015 game"),
            ("game", "A", "192.0.2.27"),
            ("sub", "NS", "ns-sub"),
            ("ns-sub", "A", "192.0.2.53"),
            ("other", "SRV", "0 0 1 outside.example.net."),
        ]);
        let dns = server.start(&records, Grants::UpdateAndTransfer);
        let target = target(&*dns);
        let names = |texts: &[&str]| -> BTreeSet<DnsName> {
            texts.iter().map(|t| name(&format!("{t}.{ZONE}"))).collect()
        };
        assert_eq!(
            target.read_zone_own_names().await.unwrap(),
            names(&["ns1", "mail", "sip"]),
            "by queries: the apex and the well-known services"
        );
        let below = target
            .read_zone(&[key("x.sub.example.test.", RecordType::A)])
            .await
            .unwrap();
        assert_eq!(below.zone_own, names(&["ns-sub"]), "from the referral");
        let listing = target.read_listing().await.unwrap();
        assert_eq!(
            listing.zone_own,
            names(&["ns1", "mail", "sip", "game", "ns-sub"]),
            "by zone transfer: every SRV target and the delegation's name server"
        );
    }
}

every_server! {
    /// A wildcard answers a query for a name that does not exist with the query's name,
    /// like an RRset that exists: reads by queries find out by asking below the name, take
    /// such a name as absent, and a create writes it with its ownership record. Names that
    /// exist beside the wildcard still read as they are.
    async fn a_name_only_a_wildcard_answers_for_reads_as_absent_and_is_created_with_ownership(
        server: Server,
    ) {
        let mut records = RECORDS.to_vec();
        records.extend([("*", "A", "192.0.2.9"), ("*.deep", "AAAA", "2001:db8::9")]);
        let dns = server.start(&records, Grants::UpdateAndTransfer);
        let target = target(&*dns);
        assert_eq!(
            dns.query("new.example.test.", "A"),
            ["192.0.2.9"],
            "the wildcard answers"
        );
        let keys = [
            key("new.example.test.", RecordType::A),
            key("x.deep.example.test.", RecordType::Aaaa),
            key("www.example.test.", RecordType::A),
            key("v6.example.test.", RecordType::Aaaa),
        ];
        let www = rrset("www.example.test.", RecordType::A, ZONE_TTL, &["127.0.1.10"]);
        let v6 = rrset("v6.example.test.", RecordType::Aaaa, ZONE_TTL, &["2001:db8::1"]);
        assert_eq!(sorted(target.read(&keys).await.unwrap()), [v6.clone(), www.clone()]);
        let listed = target.read_listing().await.unwrap().rrsets.unwrap();
        assert!(
            !listed.iter().any(|rrset| rrset.key.name.as_str().contains('*')),
            "{listed:?}"
        );

        let new = rrset("new.example.test.", RecordType::A, 60, &["192.0.2.140"]);
        target.write(&[create(new.clone())]).await.unwrap();
        assert_eq!(
            sorted(target.read(&keys).await.unwrap()),
            [new, v6, www],
            "once it exists, it reads as itself"
        );
        assert_eq!(
            ownership_txt(&*dns, "new.example.test."),
            [format!("\"{}\"", ownership_text(OWNER_ID))]
        );
        assert_eq!(dns.transfers_started(), 1, "the reads were queries");
    }
}
