//! `kind = "powerdns"` against a real pdns_server with its HTTP API on loopback: the seed
//! outage repaired by one `apply` (one GET and one PATCH), a second `apply` that writes
//! nothing, an unmanaged record untouched, creation and deletion with ownership records,
//! and a wrong key refused without being shown.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::authoritative::{Grants, dig};
use support::fleet::{describe, ipdrift};
use support::pdns::PowerDns;

const ZONE: &str = "example.test.";

struct Setup {
    pdns: PowerDns,
    dir: tempfile::TempDir,
}

fn lb_instance(g: u8) -> Value {
    serde_json::json!({
        "id": "i-lb", "name": "lb", "state": "running",
        "public_ipv4": format!("127.0.{g}.1"), "private_ipv4": format!("127.0.{g}.2"),
        "tags": {"role": "lb"},
    })
}

/// Web server N's public address in generation `g`: 127.G.x.y, N = 1 → 127.G.0.11 as in
/// the fleet, up to N = 2 000.
fn web_addr(g: u8, n: u16) -> String {
    let n = n + 10;
    format!("127.{g}.{}.{}", n / 250, n % 250)
}

fn web(g: u8, n: u16) -> Value {
    serde_json::json!({
        "id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
        "public_ipv4": web_addr(g, n), "private_ipv4": format!("127.{g}.200.{}", n % 250),
        "tags": {"role": "web"},
    })
}

impl Setup {
    /// A PowerDNS zone at generation 1 (www, web-01, web-02) plus `static`, which no rule
    /// names; instances.json at generation 1; an ipdrift config with `policy`.
    fn start(policy: &str) -> Setup {
        Setup::with_webs(policy, 2)
    }

    /// Like [`Setup::start`] with `webs` web servers `web-0N` at [`web_addr`].
    fn with_webs(policy: &str, webs: u16) -> Setup {
        Setup::with_records(policy, webs, &[])
    }

    /// Like [`Setup::with_webs`], the zone also holding `extra` records.
    fn with_records(policy: &str, webs: u16, extra: &[(&str, &str, &str)]) -> Setup {
        let mut records = vec![
            ("www".to_string(), "127.0.1.1".to_string()),
            ("static".to_string(), "192.0.2.99".to_string()),
        ];
        records.extend((1..=webs).map(|n| (format!("web-0{n}"), web_addr(1, n))));
        let mut records: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(name, addr)| (name.as_str(), "A", addr.as_str()))
            .collect();
        records.extend(extra);
        let pdns = PowerDns::with_api(ZONE, &records, Grants::UpdateAndTransfer);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pdns.key"), format!("{}\n", pdns.api().key)).unwrap();
        let config = format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "pdns"
kind = "powerdns"
api_url = "{url}"
zone = "{ZONE}"
api_key_file = "pdns.key"

[[record]]
dns = "pdns"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "pdns"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
policy = "{policy}"
"#,
            url = pdns.api().url()
        );
        std::fs::write(dir.path().join("ipdrift.toml"), config).unwrap();
        let setup = Setup { pdns, dir };
        setup.instances(1, &(1..=webs).collect::<Vec<_>>());
        setup
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("ipdrift.toml")
    }

    fn instances(&self, g: u8, webs: &[u16]) {
        let mut all = vec![lb_instance(g)];
        all.extend(webs.iter().map(|n| web(g, *n)));
        std::fs::write(
            self.dir.path().join("instances.json"),
            serde_json::to_string(&all).unwrap(),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        ipdrift(&self.config(), args)
    }

    /// What the server answers over DNS for `label`.`ZONE`, sorted.
    fn answer(&self, label: &str, rtype: &str) -> Vec<String> {
        let text = dig(self.pdns_port(), &format!("{label}.{ZONE}"), rtype).expect("dig runs");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    fn pdns_port(&self) -> u16 {
        support::authoritative::Authoritative::addr(&self.pdns).port()
    }

    /// pdns_server's log.
    fn log(&self) -> String {
        support::authoritative::Authoritative::log(&self.pdns)
    }
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

fn changes(output: &std::process::Output) -> usize {
    json_of(output)["changes"].as_array().unwrap().len()
}

#[test]
fn one_apply_repairs_the_seed_outage_through_the_api_and_a_second_writes_nothing() {
    let setup = Setup::start("upsert-only");
    let diff = setup.run(&["diff"]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in sync at first:\n{}",
        describe(&diff)
    );

    setup.instances(2, &[1, 2]);
    let diff = setup.run(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    assert_eq!(
        changes(&diff),
        3,
        "www, web-01, web-02:\n{}",
        describe(&diff)
    );

    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.answer("www", "A"), vec!["127.0.2.1"]);
    assert_eq!(setup.answer("web-01", "A"), vec![web_addr(2, 1)]);
    assert_eq!(setup.answer("web-02", "A"), vec![web_addr(2, 2)]);
    assert_eq!(
        setup.answer("static", "A"),
        vec!["192.0.2.99"],
        "a record no rule names is untouched"
    );
    assert!(
        setup.answer("_ipdrift.www", "TXT").is_empty(),
        "updating a record ipdrift did not create writes no ownership record"
    );

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(changes(&again), 0, "a second apply writes nothing");
    assert!(!setup.log().contains("Exception"), "{}", setup.log());
}

#[test]
fn records_ipdrift_creates_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start("sync");
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.answer("web-03", "A"), vec![web_addr(1, 3)]);
    let ownership = setup.answer("_ipdrift.web-03", "TXT");
    assert_eq!(ownership.len(), 1, "{ownership:?}");
    assert!(ownership[0].contains("heritage=ipdrift"), "{ownership:?}");

    // web-03 and web-02 go away: only web-03, which ipdrift created, is deleted.
    setup.instances(1, &[1]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        setup.answer("web-03", "A").is_empty(),
        "the owned set is deleted"
    );
    assert!(
        setup.answer("_ipdrift.web-03", "TXT").is_empty(),
        "and its ownership record"
    );
    assert_eq!(
        setup.answer("web-02", "A"),
        vec![web_addr(1, 2)],
        "a set ipdrift did not create is never deleted"
    );
    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));
}

#[test]
fn a_wrong_api_key_is_refused_with_the_keys_to_check_and_never_shown() {
    let setup = Setup::start("upsert-only");
    let wrong = "wrongkey0123456789abcdefwrongkey0123456789";
    std::fs::write(setup.dir.path().join("pdns.key"), wrong).unwrap();
    setup.instances(2, &[1, 2]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(all.contains("api_key_env/api_key_file"), "{all}");
    assert!(
        all.contains("pdns") && all.contains(ZONE),
        "names target and zone: {all}"
    );
    assert!(
        !all.contains(wrong) && !all.contains(&setup.pdns.api().key),
        "{all}"
    );
    assert_eq!(
        setup.answer("www", "A"),
        vec!["127.0.1.1"],
        "nothing written"
    );
}

#[test]
fn a_missing_zone_is_an_error_not_an_empty_zone() {
    let setup = Setup::start("sync");
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config
            .replace(&format!("zone = \"{ZONE}\""), "zone = \"other.test.\"")
            .replace(&format!(".{ZONE}\""), ".other.test.\""),
    )
    .unwrap();
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(all.contains("other.test.") && all.contains("GET"), "{all}");
    assert!(!all.contains(&setup.pdns.api().key), "{all}");
}

/// The API requests pdns_server logged (`webserver-loglevel=normal`, its default, logs
/// each one with its method and path).
fn api_requests(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let at = line.find("/api/v1/")?;
            let method = ["GET", "PATCH", "PUT", "POST", "DELETE"]
                .into_iter()
                .find(|m| line[..at].ends_with(&format!("{m} ")))?;
            Some(format!(
                "{method} {}",
                line[at..].split_whitespace().next()?
            ))
        })
        .collect()
}

#[test]
fn a_pass_at_1000_record_sets_is_one_get_one_patch_and_one_read_back() {
    for webs in [2, 999] {
        // www and the web servers: 3 and 1 000 record sets.
        let setup = Setup::with_webs("upsert-only", webs);
        setup.instances(2, &(1..=webs).collect::<Vec<_>>());
        let started = std::time::Instant::now();
        let apply = setup.run(&["apply", "--output", "json"]);
        let took = started.elapsed();
        assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
        assert_eq!(changes(&apply), usize::from(webs) + 1);
        let zone = format!("/api/v1/servers/localhost/zones/{ZONE}");
        assert_eq!(
            api_requests(&setup.log()),
            vec![
                format!("GET {zone}"),
                format!("PATCH {zone}"),
                format!("GET {zone}")
            ],
            "at {} record sets: read, one write, read back",
            webs + 1
        );
        assert_eq!(
            setup.answer(&format!("web-0{webs}"), "A"),
            vec![web_addr(2, webs)]
        );
        println!(
            "{} record sets: 1 GET + 1 PATCH + 1 GET, apply took {took:?}",
            webs + 1
        );
    }
}

#[test]
fn an_api_key_pasted_into_api_key_env_is_refused_and_not_shown() {
    let setup = Setup::start("upsert-only");
    let key = setup.pdns.api().key.clone();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replace(
            "api_key_file = \"pdns.key\"",
            &format!("api_key_env = \"{key}\""),
        ),
    )
    .unwrap();
    let check = setup.run(&["check-config"]);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    let all = describe(&check);
    assert!(
        all.contains("api_key_env") && all.contains("not shown"),
        "{all}"
    );
    assert!(!all.contains(&key), "{all}");
}

/// Records the zone uses itself, and names no address can be written to.
const ZONE_OWN_AND_OBSTACLES: &[(&str, &str, &str)] = &[
    ("@", "MX", "10 mail"),
    ("mail", "A", "192.0.2.25"),
    ("_game._udp", "SRV", "0 5 27015 game"),
    ("game", "A", "192.0.2.27"),
    ("sub", "NS", "ns-sub"),
    ("ns-sub", "A", "192.0.2.53"),
    ("alias", "CNAME", "www"),
];

#[tokio::test]
async fn the_zone_listing_shows_the_names_the_zone_uses_itself_and_its_cnames_and_delegations() {
    use ipdrift::config::{SecretAt, SecretRef};
    use ipdrift::dns::TargetSpec as _;
    use ipdrift::dns::powerdns::PowerDnsConfig;
    let setup = Setup::with_records("upsert-only", 2, ZONE_OWN_AND_OBSTACLES);
    let spec = PowerDnsConfig {
        api_url: setup.pdns.api().url().parse().unwrap(),
        server_id: "localhost".into(),
        api_key: SecretAt {
            field: "dns \"pdns\"".into(),
            line: 1,
            secret: SecretRef::File(setup.dir.path().join("pdns.key")),
        },
    };
    let zone = ipdrift::validate::dns_name(ZONE).unwrap();
    let target = spec
        .build("pdns", &zone, std::time::Duration::from_secs(5))
        .unwrap();
    let name = |label: &str| ipdrift::validate::dns_name(&format!("{label}.{ZONE}")).unwrap();
    let own = target.read_zone_own_names().await.unwrap();
    assert_eq!(
        own,
        ["ns1", "mail", "game", "ns-sub"].map(name).into(),
        "the SOA primary and NS, the MX, the SRV target and the delegation's name server"
    );
    let keys = [ipdrift::model::RecordKey {
        name: name("www"),
        rtype: ipdrift::model::RecordType::A,
    }];
    let read = target.read_zone(&keys).await.unwrap();
    assert_eq!(read.rrsets.len(), 1);
    assert_eq!(read.zone_own, own);
    assert_eq!(read.obstacles.cnames, [(name("alias"), name("www"))].into());
    assert_eq!(read.obstacles.cuts, [name("sub")].into());
    let listing = target.read_listing().await.unwrap();
    assert_eq!((listing.obstacles, listing.zone_own), (read.obstacles, own));
}

#[test]
fn instances_named_like_the_zones_own_names_or_a_cname_are_reported_and_the_rest_repaired() {
    let setup = Setup::with_records("upsert-only", 2, ZONE_OWN_AND_OBSTACLES);
    let mut instances = vec![lb_instance(2), web(2, 1), web(2, 2)];
    for (n, label) in [(5, "mail"), (6, "alias"), (7, "sub"), (8, "game")] {
        let mut odd = web(2, n);
        odd["name"] = label.into();
        odd["id"] = format!("i-{label}").into();
        instances.push(odd);
    }
    std::fs::write(
        setup.dir.path().join("instances.json"),
        serde_json::to_string(&instances).unwrap(),
    )
    .unwrap();
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let text = String::from_utf8_lossy(&diff.stdout);
    for line in [
        format!("cannot   pdns: mail.{ZONE} A  mail.{ZONE} is a name the zone uses itself"),
        format!("cannot   pdns: game.{ZONE} A  game.{ZONE} is a name the zone uses itself"),
        format!("cannot   pdns: alias.{ZONE} A  alias.{ZONE} holds a CNAME (to www.{ZONE})"),
        format!("cannot   pdns: sub.{ZONE} A  sub.{ZONE} is delegated"),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.answer("www", "A"), vec!["127.0.2.1"]);
    assert_eq!(setup.answer("web-01", "A"), vec![web_addr(2, 1)]);
    assert_eq!(setup.answer("mail", "A"), vec!["192.0.2.25"], "left alone");
    assert_eq!(setup.answer("game", "A"), vec!["192.0.2.27"], "left alone");
    let zone = format!("/api/v1/servers/localhost/zones/{ZONE}");
    let requests = api_requests(&setup.log());
    assert_eq!(
        requests
            .iter()
            .filter(|r| **r == format!("GET {zone}"))
            .count(),
        3,
        "one GET for the diff, one for the apply and its read-back: {requests:?}"
    );
}
