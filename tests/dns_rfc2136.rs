//! The RFC 2136 target against a real BIND primary.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipdrift::dns::rfc2136::Rfc2136Target;
use ipdrift::dns::tsig::{TsigAlgorithm, TsigKey, parse_key_file};
use ipdrift::dns::{DnsTarget, RecordChange};
use ipdrift::model::{DnsName, RecordKey, RecordSet, RecordType};
use ipdrift::validate;
use support::bind::{Bind, ZONE_TTL};

const ZONE: &str = "example.test.";
const TIMEOUT: Duration = Duration::from_secs(5);

fn bind() -> Bind {
    Bind::new(
        ZONE,
        &[
            ("www", "A", "127.0.1.10"),
            ("static", "A", "192.0.2.99"),
            ("api", "A", "192.0.2.1"),
            ("api", "A", "192.0.2.2"),
            ("v6", "AAAA", "2001:db8::1"),
            ("alias", "CNAME", "www"),
        ],
    )
}

/// A target that signs with the key file exactly as tsig-keygen wrote it.
fn target(bind: &Bind) -> Rfc2136Target {
    let text = std::fs::read_to_string(bind.key_file_path()).unwrap();
    target_with_key(bind.addr(), parse_key_file(&text).unwrap())
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

fn change_to(to: RecordSet) -> RecordChange {
    RecordChange { from: None, to }
}

fn soa_serial(bind: &Bind) -> u32 {
    let soa = bind.query(ZONE, "SOA");
    soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[tokio::test]
async fn reads_existing_rrsets_and_leaves_out_absent_ones() {
    let bind = bind();
    let target = target(&bind);
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

#[tokio::test]
async fn writes_a_multi_address_rrset_that_dig_and_read_see() {
    let bind = bind();
    let target = target(&bind);
    let wanted = rrset(
        "www.example.test.",
        RecordType::A,
        60,
        &["192.0.2.20", "192.0.2.21", "192.0.2.22"],
    );
    target.write(&[change_to(wanted.clone())]).await.unwrap();

    assert_eq!(
        bind.query("www.example.test.", "A"),
        ["192.0.2.20", "192.0.2.21", "192.0.2.22"]
    );
    let read = target
        .read(std::slice::from_ref(&wanted.key))
        .await
        .unwrap();
    assert_eq!(read, vec![wanted]);
}

#[tokio::test]
async fn one_write_changes_two_rrsets_in_one_update_and_nothing_else() {
    let bind = bind();
    let target = target(&bind);
    let serial_before = soa_serial(&bind);
    target
        .write(&[
            change_to(rrset(
                "www.example.test.",
                RecordType::A,
                60,
                &["192.0.2.30"],
            )),
            change_to(rrset(
                "api.example.test.",
                RecordType::A,
                60,
                &["192.0.2.31"],
            )),
        ])
        .await
        .unwrap();

    assert_eq!(bind.query("www.example.test.", "A"), ["192.0.2.30"]);
    assert_eq!(bind.query("api.example.test.", "A"), ["192.0.2.31"]);
    assert_eq!(bind.query("static.example.test.", "A"), ["192.0.2.99"]);
    assert_eq!(bind.query("v6.example.test.", "AAAA"), ["2001:db8::1"]);
    // BIND bumps the serial once per UPDATE message.
    assert_eq!(soa_serial(&bind), serial_before + 1);
}

#[tokio::test]
async fn writes_an_aaaa_rrset() {
    let bind = bind();
    let target = target(&bind);
    let wanted = rrset(
        "v6.example.test.",
        RecordType::Aaaa,
        120,
        &["2001:db8::10", "2001:db8::11"],
    );
    target.write(&[change_to(wanted.clone())]).await.unwrap();

    assert_eq!(
        bind.query("v6.example.test.", "AAAA"),
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

#[tokio::test]
async fn written_records_survive_a_restart() {
    let mut bind = bind();
    let target = target(&bind);
    let wanted = rrset("new.example.test.", RecordType::A, 60, &["192.0.2.40"]);
    target.write(&[change_to(wanted.clone())]).await.unwrap();

    bind.restart();
    assert_eq!(
        target
            .read(std::slice::from_ref(&wanted.key))
            .await
            .unwrap(),
        vec![wanted]
    );
}

#[tokio::test]
async fn a_wrong_secret_is_notauth_badsig_and_never_printed() {
    let bind = bind();
    let wrong_secret = "c2VjcmV0LXRoYXQtdGhlLXNlcnZlci1kb2VzLW5vdC1oYXZl";
    let wrong =
        TsigKey::from_base64(bind.key_name(), TsigAlgorithm::HmacSha256, wrong_secret).unwrap();
    let target = target_with_key(bind.addr(), wrong);

    let write_error = target
        .write(&[change_to(rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.50"],
        ))])
        .await
        .unwrap_err();
    let read_error = target
        .read(&[key("www.example.test.", RecordType::A)])
        .await
        .unwrap_err();
    for error in [&write_error, &read_error] {
        let text = format!("{error:#}");
        assert!(text.contains("ns1 ("), "{text}");
        assert!(text.contains(&bind.addr().to_string()), "{text}");
        assert!(text.contains("NOTAUTH (BADSIG)"), "{text}");
        assert!(text.contains("'ipdrift-key'"), "{text}");
        assert!(!text.contains(wrong_secret), "{text}");
        assert!(!text.contains(bind.secret_base64()), "{text}");
    }
    assert!(format!("{write_error:#}").contains("refused the update"));
    assert_eq!(bind.query("www.example.test.", "A"), ["127.0.1.10"]);
}

#[tokio::test]
async fn a_key_unknown_to_the_server_is_badkey() {
    let bind = bind();
    let unknown =
        TsigKey::from_base64("other-key", TsigAlgorithm::HmacSha256, bind.secret_base64()).unwrap();
    let error = target_with_key(bind.addr(), unknown)
        .write(&[change_to(rrset(
            "www.example.test.",
            RecordType::A,
            60,
            &["192.0.2.51"],
        ))])
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("NOTAUTH (BADKEY)"), "{text}");
    assert!(text.contains("'other-key'"), "{text}");
    assert!(!text.contains(bind.secret_base64()), "{text}");
}

#[tokio::test]
async fn a_zone_the_server_does_not_serve_is_notauth() {
    let bind = bind();
    let text = std::fs::read_to_string(bind.key_file_path()).unwrap();
    let target = Rfc2136Target::new(
        "ns1".into(),
        bind.addr(),
        name("other.test."),
        parse_key_file(&text).unwrap(),
        TIMEOUT,
    );
    let error = target
        .write(&[change_to(rrset(
            "www.other.test.",
            RecordType::A,
            60,
            &["192.0.2.52"],
        ))])
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("NOTAUTH"), "{text}");
    assert!(
        text.contains("not authoritative for zone other.test."),
        "{text}"
    );
}

#[tokio::test]
async fn a_stopped_server_is_named_in_the_error() {
    let mut bind = bind();
    let target = target(&bind);
    bind.stop();

    let write_error = target
        .write(&[change_to(rrset(
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
    for error in [write_error, read_error] {
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
    holder.abort();
}

#[tokio::test]
async fn a_name_outside_the_zone_is_refused_before_anything_is_sent() {
    let mut bind = bind();
    let target = target(&bind);
    // With the server gone, any attempt to send would fail with "cannot connect".
    bind.stop();

    let write_error = target
        .write(&[
            change_to(rrset(
                "www.example.test.",
                RecordType::A,
                60,
                &["192.0.2.54"],
            )),
            change_to(rrset(
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
