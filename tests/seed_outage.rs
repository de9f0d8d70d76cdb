//! The outage ipdrift exists for, replayed against real BIND and HAProxy on loopback with
//! the real binary: every address changes at once; one `apply` repairs DNS and HAProxy.

mod support;

use serde_json::Value;
use support::fleet::{self, Fleet, ZONE, describe, http_get, lb_public, web_public};

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

#[test]
fn one_apply_repairs_dns_and_haproxy_after_every_address_changed() {
    let mut fleet = Fleet::start();
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "a converged fleet is in sync:\n{}",
        describe(&diff)
    );
    assert!(fleet.converged_at(1));
    assert_eq!(
        http_get(fleet.haproxy.frontend_port()).map(|r| r.0),
        Some(200)
    );

    fleet.move_to(2);
    let (status, _) = http_get(fleet.haproxy.frontend_port()).expect("haproxy answers");
    assert_eq!(
        status, 503,
        "the outage: haproxy points at servers that are gone"
    );

    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(
        changes.len(),
        5,
        "www, web-01, web-02 in DNS and two servers:\n{plan:#}"
    );
    for change in changes {
        for field in ["target", "op", "object", "from", "to"] {
            assert!(change.get(field).is_some(), "{field} missing in {change}");
        }
    }
    let www = changes
        .iter()
        .find(|c| c["object"] == format!("www.{ZONE} A"))
        .expect("www planned");
    assert_eq!(www["target"], "ns1");
    assert_eq!(www["op"], "update");
    assert!(www["from"].as_str().unwrap().contains(&lb_public(1)));
    assert!(www["to"].as_str().unwrap().contains(&lb_public(2)));
    assert!(fleet.converged_at(1), "diff must not write");

    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        fleet.converged_at(2),
        "after apply:\n{}\nservers: {:?}",
        describe(&apply),
        fleet.haproxy_servers()
    );
    let (status, body) = http_get(fleet.haproxy.frontend_port()).expect("haproxy answers");
    assert_eq!(status, 200, "traffic flows again: {body}");
    assert!(body.contains("gen 2"), "{body}");
    assert_eq!(
        fleet.bind.query(&format!("static.{ZONE}"), "A"),
        vec!["192.0.2.99"],
        "a hand-made record is untouched"
    );

    let again = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        json_of(&again)["changes"].as_array().unwrap().len(),
        0,
        "a second apply writes nothing"
    );
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
}

#[test]
fn a_wrong_tsig_key_fails_with_a_message_about_the_key_and_no_secret() {
    let mut fleet = Fleet::start();
    let wrong_secret = "c29tZS1vdGhlci1zZWNyZXQtdGhhdC1pcy13cm9uZw==";
    std::fs::write(
        fleet.dir.path().join("wrong.secret"),
        format!("{wrong_secret}\n"),
    )
    .unwrap();
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    let key_line = config
        .lines()
        .find(|l| l.starts_with("tsig"))
        .unwrap()
        .to_string();
    let config = config.replace(
        &key_line,
        &format!("tsig = {{ name = \"{}\", algorithm = \"hmac-sha256\", secret_file = \"wrong.secret\" }}", fleet.bind.key_name()),
    );
    std::fs::write(fleet.config_path(), config).unwrap();
    fleet.move_to(2);

    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(all.contains("NOTAUTH") || all.contains("BADSIG"), "{all}");
    assert!(
        all.contains(fleet.bind.key_name().trim_end_matches('.')),
        "names the key: {all}"
    );
    assert!(
        !all.contains(wrong_secret) && !all.contains(fleet.bind.secret_base64()),
        "leaks a secret: {all}"
    );
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(1)],
        "nothing written to DNS"
    );
}

#[test]
fn dns_is_repaired_when_the_haproxy_socket_is_gone() {
    let mut fleet = Fleet::start();
    let gone = fleet.dir.path().join("no-such-haproxy.sock");
    fleet.write_config(&format!("unix:{}", gone.display()));
    fleet.move_to(2);

    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(
        all.contains("lb-01") && all.contains("no-such-haproxy.sock"),
        "names the load balancer and socket: {all}"
    );
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(2)],
        "{all}"
    );
    for n in 1..=fleet::WEB_SERVERS {
        assert_eq!(
            fleet.bind.query(&format!("web-0{n}.{ZONE}"), "A"),
            vec![web_public(2, n)]
        );
    }
}

#[test]
fn a_missing_or_broken_inventory_is_an_error_and_writes_nothing() {
    let fleet = Fleet::start();
    for (what, content) in [
        ("empty", Some("")),
        ("truncated", Some("[{\"id\":\"i-lb\",\"na")),
        ("missing", None),
    ] {
        match content {
            Some(text) => std::fs::write(fleet.instances_path(), text).unwrap(),
            None => {
                let _ = std::fs::remove_file(fleet.instances_path());
            }
        }
        for command in ["diff", "apply"] {
            let out = fleet.ipdrift(&[command]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what} inventory, {command}:\n{}",
                describe(&out)
            );
            assert!(
                describe(&out).contains("instances.json"),
                "{what}: names the file:\n{}",
                describe(&out)
            );
        }
        assert!(fleet.converged_at(1), "{what}: nothing may change");
    }
}

#[test]
fn two_running_instances_with_one_name_make_diff_exit_2_and_say_why() {
    let fleet = Fleet::start();
    let mut instances = fleet.instances_at(1);
    let mut twin = fleet::web_instance(2, 1);
    twin["id"] = "i-web-01-twin".into();
    instances.push(twin);
    fleet.write_instances(&instances);
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains(&format!(
            "cannot   ns1: web-01.{ZONE} A  skipped: 2 running instances render to this name"
        )),
        "{text}"
    );
    assert!(text.contains("cannot   lb-01: web/web-01"), "{text}");
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(fleet.converged_at(1), "nothing written to a contested name");
}

#[test]
fn a_server_left_draining_while_its_instance_runs_is_drift_and_is_enabled() {
    use std::io::{Read as _, Write as _};
    let fleet = Fleet::start();
    let mut socket = std::os::unix::net::UnixStream::connect(fleet.haproxy.socket_path()).unwrap();
    socket
        .write_all(b"set server web/web-02 state drain\n")
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.trim(), "", "haproxy refused: {answer}");
    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    assert_eq!(plan["changes"][0]["object"], "web/web-02", "{plan:#}");
    assert_eq!(plan["changes"][0]["op"], "enable");
    assert_eq!(plan["changes"][0]["from"], "drain");
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
}

#[test]
fn a_second_controller_with_the_same_owner_id_and_other_sources_deletes_nothing_of_the_first() {
    let fleet = Fleet::start();
    let config = std::fs::read_to_string(fleet.config_path())
        .unwrap()
        .replace(
            &format!("name = \"{{name}}.{ZONE}\"\n"),
            &format!("name = \"{{name}}.{ZONE}\"\npolicy = \"sync\"\n"),
        );
    assert!(config.contains("policy = \"sync\""));
    // The first controller's fleet has web-03, which it creates with its ownership record.
    let mut first = fleet.instances_at(1);
    first.push(fleet::web_instance(1, 3));
    fleet.write_instances(&first);
    let first_config = fleet.dir.path().join("first.toml");
    std::fs::write(&first_config, &config).unwrap();
    let apply = fleet::ipdrift(&first_config, &["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(fleet.bind.query(&format!("web-03.{ZONE}"), "A").len(), 1);

    // The second reads another inventory without web-03, under the same owner_id.
    let second_instances: Vec<String> = fleet
        .instances_at(1)
        .iter()
        .map(|i| i.to_string())
        .collect();
    std::fs::write(
        fleet.dir.path().join("other.json"),
        format!("[{}]", second_instances.join(",")),
    )
    .unwrap();
    let second_config = fleet.dir.path().join("second.toml");
    std::fs::write(
        &second_config,
        config
            .replace("name = \"local\"", "name = \"other\"")
            .replace("path = \"instances.json\"", "path = \"other.json\""),
    )
    .unwrap();
    let apply = fleet::ipdrift(&second_config, &["apply", "--output", "json"]);
    assert_eq!(
        apply.status.code(),
        Some(3),
        "refused by a guard: {}",
        describe(&apply)
    );
    let report = json_of(&apply);
    assert_eq!(
        report["refusals"][0]["guard"], "owner-conflict",
        "{report:#}"
    );
    assert_eq!(report["refusals"][0]["object"], format!("web-03.{ZONE} A"));
    assert_eq!(
        fleet.bind.query(&format!("web-03.{ZONE}"), "A").len(),
        1,
        "the first controller's record stays"
    );
}

#[test]
fn an_instance_name_that_is_no_host_name_is_skipped_and_the_rest_of_the_zone_repaired() {
    let mut fleet = Fleet::start();
    fleet.move_to(2);
    let mut instances = fleet.instances_at(2);
    let mut odd = fleet::web_instance(2, 5);
    odd["name"] = "web_05".into();
    instances.push(odd);
    fleet.write_instances(&instances);
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let report = json_of(&apply);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("web_05") && problems.contains("not a host name"),
        "{report:#}"
    );
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(2)]
    );
    assert!(fleet.dns_at(2), "every other record repaired: {report:#}");
}

#[test]
fn an_instance_named_like_the_zones_name_server_never_takes_it_over() {
    let fleet = Fleet::start();
    let mut instances = fleet.instances_at(1);
    let mut ns1 = fleet::web_instance(1, 3);
    ns1["name"] = "ns1".into();
    instances.push(ns1);
    fleet.write_instances(&instances);
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains(&format!(
            "cannot   ns1: ns1.{ZONE} A  ns1.{ZONE} is a name the zone uses itself"
        )),
        "{text}"
    );
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        fleet.bind.query(&format!("ns1.{ZONE}"), "A"),
        vec!["127.0.0.1"]
    );
}

#[test]
fn instances_named_like_a_cname_or_a_delegation_make_diff_exit_2_and_the_rest_is_repaired() {
    let mut fleet = Fleet::start();
    // A hand-made CNAME and a delegation in the zone.
    nsupdate(
        &fleet,
        &[
            format!("update add alias.{ZONE} 300 CNAME www.{ZONE}"),
            format!("update add sub.{ZONE} 300 NS ns.example.net."),
        ],
    );
    fleet.move_to(2);
    let mut instances = fleet.instances_at(2);
    for (n, name) in [(5, "alias"), (6, "sub")] {
        let mut odd = fleet::web_instance(2, n);
        odd["name"] = name.into();
        instances.push(odd);
    }
    fleet.write_instances(&instances);
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let text = String::from_utf8_lossy(&diff.stdout);
    for line in [
        format!("cannot   ns1: alias.{ZONE} A  alias.{ZONE} holds a CNAME (to www.{ZONE})"),
        format!("cannot   ns1: sub.{ZONE} A  sub.{ZONE} is delegated"),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        fleet.dns_at(2),
        "every other record repaired: {}",
        describe(&apply)
    );
    assert_eq!(
        fleet.bind.query(&format!("alias.{ZONE}"), "CNAME"),
        [format!("www.{ZONE}")]
    );
    assert!(fleet.bind.query(&format!("sub.{ZONE}"), "A").is_empty());
}

/// Sends `updates` (nsupdate's `update …` lines) to the fleet's BIND in one UPDATE, the way
/// an operator edits the zone by hand.
fn nsupdate(fleet: &Fleet, updates: &[String]) {
    use std::io::Write as _;
    let script = format!(
        "server 127.0.0.1 {port}\nzone {ZONE}\n{}\nsend\n",
        updates.join("\n"),
        port = fleet.bind.addr().port()
    );
    let mut nsupdate = std::process::Command::new("nsupdate")
        .arg("-y")
        .arg(format!(
            "hmac-sha256:{}:{}",
            fleet.bind.key_name(),
            fleet.bind.secret_base64()
        ))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nsupdate
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(nsupdate.wait().unwrap().success());
}

#[test]
fn a_name_only_a_wildcard_answers_for_is_created_with_its_ownership_record() {
    let fleet = Fleet::start();
    nsupdate(&fleet, &[format!("update add *.{ZONE} 300 A 192.0.2.9")]);
    let web_03 = format!("web-03.{ZONE}");
    assert_eq!(
        fleet.bind.query(&web_03, "A"),
        ["192.0.2.9"],
        "the wildcard answers"
    );
    let mut instances = fleet.instances_at(1);
    instances.push(fleet::web_instance(1, 3));
    fleet.write_instances(&instances);
    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    let change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["object"] == format!("{web_03} A"))
        .unwrap_or_else(|| panic!("web-03 planned: {plan:#}"))
        .clone();
    assert_eq!(change["op"], "create", "{change}");
    assert_eq!(change["from"], Value::Null, "{change}");
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(fleet.bind.query(&web_03, "A"), [web_public(1, 3)]);
    let ownership = fleet.bind.query(&format!("_ipdrift.{web_03}"), "TXT");
    assert!(
        ownership.len() == 1 && ownership[0].contains("heritage=ipdrift"),
        "{ownership:?}"
    );
}
