//! `ipdrift init` against real BIND and HAProxy: from a config with only sources, targets
//! and load balancers, it writes the rules that keep the world as it is — `diff` on the
//! written config exits 0 — and lists what it cannot explain instead of guessing.

mod support;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use support::fleet::{Fleet, ZONE, describe, ipdrift, web_instance};

/// The fleet's config without its `[[record]]` rules and backends.
fn write_base(fleet: &Fleet) -> PathBuf {
    let full = std::fs::read_to_string(fleet.config_path()).unwrap();
    let base: Vec<&str> = full
        .split("\n\n")
        .filter(|block| {
            let header = block.trim_start();
            !header.starts_with("[[record]]") && !header.starts_with("[[haproxy.backend]]")
        })
        .collect();
    let path = fleet.dir.path().join("base.toml");
    std::fs::write(&path, base.join("\n\n")).unwrap();
    path
}

fn init(base: &Path, output: &Path) -> std::process::Output {
    ipdrift(base, &["init", "--output", output.to_str().unwrap()])
}

fn runtime(socket: &Path, command: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn on_the_demo_world_init_writes_a_config_whose_diff_is_in_sync() {
    let fleet = Fleet::start();
    let base = write_base(&fleet);
    let written = fleet.dir.path().join("written.toml");
    let out = init(&base, &written);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains(&format!("name = \"www.{ZONE}\"")), "{text}");
    assert!(
        text.contains(&format!("name = \"{{name}}.{ZONE}\"")),
        "{text}"
    );
    assert!(
        text.contains("[[haproxy.backend]]\nname = \"web\""),
        "{text}"
    );
    assert!(text.contains("server = \"{name}\""), "{text}");
    assert!(text.contains("address = \"private_ipv4\""), "{text}");
    assert!(text.contains("# matched web/web-01 = "), "{text}");
    // Records of other systems are listed, not adopted.
    assert!(
        text.contains(&format!(
            "static.{ZONE} A 192.0.2.99: address 192.0.2.99 is no instance's"
        )),
        "{text}"
    );
    assert!(
        !text.contains(&format!("name = \"static.{ZONE}\"")),
        "{text}"
    );

    let check = ipdrift(&written, &["check-config"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let diff = ipdrift(&written, &["diff"]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "the written config keeps the world as it is:\n{text}\n{}",
        describe(&diff)
    );

    let again = init(&base, &written);
    assert_eq!(
        again.status.code(),
        Some(1),
        "never overwrites: {}",
        describe(&again)
    );
    let refused = ipdrift(&written, &["init"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already has"));
}

#[test]
fn where_an_address_already_drifted_init_matches_by_name_and_says_so() {
    let fleet = Fleet::start();
    // web-02 got new addresses; DNS and HAProxy still have the old ones.
    let mut instances = fleet.instances_at(1);
    instances[2] = web_instance(2, 2);
    fleet.write_instances(&instances);
    let base = write_base(&fleet);
    let written = fleet.dir.path().join("written.toml");
    let out = init(&base, &written);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 drifted"), "{stderr}");
    assert!(stderr.contains(&format!("web-02.{ZONE} A")), "{stderr}");
    assert!(
        stderr.contains("web/web-02: named after instance \"web-02\""),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(
        text.contains(&format!("name = \"{{name}}.{ZONE}\"")),
        "{text}"
    );
    let diff = ipdrift(&written, &["diff", "--output", "json"]);
    assert_eq!(
        diff.status.code(),
        Some(2),
        "the drift is shown as drift: {}",
        describe(&diff)
    );
    let plan: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    let objects: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        objects,
        vec!["web/web-02".to_string(), format!("web-02.{ZONE} A")],
        "{plan:#}"
    );
}

#[test]
fn hand_made_servers_are_listed_not_adopted() {
    let fleet = Fleet::start();
    let answer = runtime(
        &fleet.haproxy.socket_path(),
        "add server web/legacy 192.0.2.200:8080",
    );
    assert!(answer.contains("New server registered"), "{answer}");
    let base = write_base(&fleet);
    let out = ipdrift(&base, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lb-01: web/legacy: 192.0.2.200:8080 is no instance's address; its name fits `{name}`, so ipdrift would take it out of service"),
        "{text}"
    );
    assert!(!text.contains("legacy ="), "{text}");
    assert!(
        text.contains("[[haproxy.backend]]"),
        "the instances' servers are still managed: {text}"
    );
}
