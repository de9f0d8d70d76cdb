//! A HAProxy restarted while ipdrift is stopped serves what ipdrift last wrote: with
//! `config` set, the `server` lines of haproxy.cfg follow the runtime (real HAProxy and
//! BIND on loopback, the real binary).

mod support;

use std::fs;

use support::fleet::{Fleet, WebServer, describe, http_get, web_instance, web_private};

/// The fleet's ipdrift.toml with `config` pointing at the fleet's haproxy.cfg.
fn keep_haproxy_cfg(fleet: &Fleet) {
    let path = fleet.config_path();
    let text = fs::read_to_string(&path).unwrap();
    let runtime_api = text
        .lines()
        .find(|l| l.starts_with("runtime_api = "))
        .expect("the fleet's config has a runtime_api")
        .to_string();
    let text = text.replace(
        &runtime_api,
        &format!(
            "{runtime_api}\nconfig = \"{}\"",
            fleet.haproxy.config_path().display()
        ),
    );
    fs::write(path, text).unwrap();
}

/// Adds web-03 at generation `g`: its web server and its instance.
fn add_third_web_server(fleet: &mut Fleet, g: u8) {
    fleet.webs.push(WebServer::start(
        &web_private(g, 3),
        fleet.web_port,
        &format!("web-03 gen {g}"),
    ));
    let mut instances = fleet.instances_at(g);
    instances.push(web_instance(g, 3));
    fleet.write_instances(&instances);
}

#[test]
fn a_haproxy_restarted_while_ipdrift_is_stopped_serves_the_repaired_addresses() {
    let mut fleet = Fleet::start();
    keep_haproxy_cfg(&fleet);
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "haproxy.cfg already says what the runtime serves:\n{}",
        describe(&diff)
    );

    fleet.move_to(2);
    add_third_web_server(&mut fleet, 2);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let mut want = fleet.servers_at(2);
    want.push((
        "web-03".to_string(),
        format!("{}:{}", web_private(2, 3), fleet.web_port),
    ));
    assert_eq!(fleet.haproxy_servers(), want);
    let cfg = fs::read_to_string(fleet.haproxy.config_path()).unwrap();
    assert!(
        cfg.contains(&format!(
            "    server web-03 {}:{}\n",
            web_private(2, 3),
            fleet.web_port
        )),
        "the server added at runtime has its line:\n{cfg}"
    );

    // ipdrift is not running; HAProxy is killed and started again from haproxy.cfg.
    fleet.haproxy.restart();
    assert_eq!(
        fleet.haproxy_servers(),
        want,
        "after the restart, with the added server too"
    );
    assert!(
        fleet.server_states().iter().all(|s| !s.in_maint()),
        "every server is in service after the restart: {:?}",
        fleet.server_states()
    );
    for _ in 0..6 {
        let (status, body) = http_get(fleet.haproxy.frontend_port()).expect("haproxy answers");
        assert_eq!(status, 200, "traffic flows after the restart: {body}");
        assert!(body.contains("gen 2"), "{body}");
    }

    let again = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let plan: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        plan["changes"].as_array().map(Vec::len),
        Some(0),
        "nothing left to write:\n{plan:#}"
    );
    assert_eq!(
        fs::read_to_string(fleet.haproxy.config_path()).unwrap(),
        cfg,
        "a converged pass leaves haproxy.cfg alone"
    );
}

#[test]
fn a_hand_edited_haproxy_cfg_is_drift_and_is_rewritten() {
    let mut fleet = Fleet::start();
    keep_haproxy_cfg(&fleet);
    let generation_1 = fs::read_to_string(fleet.haproxy.config_path()).unwrap();
    fleet.move_to(2);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));

    // Someone puts the old file back; the runtime still serves generation 2.
    fs::write(fleet.haproxy.config_path(), &generation_1).unwrap();
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(
        shown.contains("not in the load balancer's config file"),
        "diff says why a server the runtime serves is drift:\n{shown}"
    );
    assert_eq!(
        fs::read_to_string(fleet.haproxy.config_path()).unwrap(),
        generation_1,
        "diff writes nothing"
    );

    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    fleet.haproxy.restart();
    assert_eq!(fleet.haproxy_servers(), fleet.servers_at(2));
}

#[test]
fn a_rewrite_haproxy_refuses_leaves_the_file_as_it_was_and_the_runtime_repaired() {
    let mut fleet = Fleet::start();
    keep_haproxy_cfg(&fleet);
    // Another part of the file is broken meanwhile, by hand.
    let path = fleet.haproxy.config_path();
    let broken =
        fs::read_to_string(&path).unwrap() + "\nfrontend typo\n    bind 127.0.0.1:notaport\n";
    fs::write(&path, &broken).unwrap();

    fleet.move_to(2);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let said = describe(&apply);
    assert!(
        said.contains("-c` refused the rewritten file") && said.contains("notaport"),
        "the error quotes HAProxy's own words:\n{said}"
    );
    assert_eq!(
        fleet.haproxy_servers(),
        fleet.servers_at(2),
        "the runtime is repaired all the same"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        broken,
        "the file is untouched"
    );
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ipdrift"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no staged copy is left: {leftovers:?}"
    );

    // Once the file is fixed, the next pass makes the repair durable.
    let fixed = broken.replace("\nfrontend typo\n    bind 127.0.0.1:notaport\n", "");
    fs::write(&path, fixed).unwrap();
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    fleet.haproxy.restart();
    assert_eq!(fleet.haproxy_servers(), fleet.servers_at(2));
}
