//! The `aws` inventory source and the `route53` target against a real moto server on
//! loopback, with a real HAProxy and the real binary: EC2 instances are stopped and started
//! so that their public addresses change, and one `apply` repairs Route 53 and HAProxy.
#![cfg(feature = "aws")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::controller::Controller;
use support::fleet::{ServerState, describe, server_states};
use support::haproxy::{BackendSpec, Haproxy};
use support::moto::{self, AnnouncedEvent, EventProxy, Moto, REGION};
use support::wait_until;

const ZONE: &str = "example.test.";
/// The start of the ownership TXT text; the inventory fingerprint follows.
const OWNERSHIP: &str = "\"heritage=ipdrift,owner=ipdrift,inventory=";

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

/// The test's ipdrift.toml: an `aws` source (only `env = test` instances), a `route53`
/// target found by its zone's name, `www` for the load balancer, one record per web
/// server (policy sync), and HAProxy backend `web` on the web servers' public addresses.
fn write_config(dir: &Path, endpoint: &str, haproxy: &Haproxy) -> PathBuf {
    let config = format!(
        r#"[controller]
timeout = "5s"

[[inventory]]
name = "ec2"
kind = "aws"
region = "{REGION}"
endpoint = "{endpoint}"
filters = {{ "tag:env" = ["test"] }}

[[dns]]
name = "r53"
kind = "route53"
zone = "{ZONE}"
endpoint = "{endpoint}"
wait = true

[[record]]
dns = "r53"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"

[[record]]
dns = "r53"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
policy = "sync"

[[haproxy]]
name = "lb-01"
runtime_api = "unix:{socket}"

[[haproxy.backend]]
name = "web"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
port = 80
server = "{{name}}"
health = "haproxy"
"#,
        socket = haproxy.socket_path().display()
    );
    let path = dir.join("ipdrift.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A load balancer `lb` and web servers `web-01`… tagged `env = test`, plus `other` with
/// `env = dev` that the source's filter leaves out. Returns (lb, webs, other) ids.
async fn instances(ec2: &aws_sdk_ec2::Client, webs: u8) -> (String, Vec<String>, String) {
    let subnet = moto::public_subnet(ec2).await;
    let lb = moto::run_instance(
        ec2,
        &subnet,
        &[("Name", "lb"), ("role", "lb"), ("env", "test")],
    )
    .await;
    let mut ids = Vec::new();
    for n in 1..=webs {
        let name = format!("web-0{n}");
        ids.push(
            moto::run_instance(
                ec2,
                &subnet,
                &[("Name", &name), ("role", "web"), ("env", "test")],
            )
            .await,
        );
    }
    let other = moto::run_instance(
        ec2,
        &subnet,
        &[("Name", "other"), ("role", "web"), ("env", "dev")],
    )
    .await;
    (lb, ids, other)
}

/// `(server, "addr:port")` of backend `web` that are not in maintenance, sorted.
fn serving(states: &[ServerState]) -> Vec<(String, String)> {
    states
        .iter()
        .filter(|s| !s.in_maint())
        .map(|s| (s.name.clone(), s.addr.clone()))
        .collect()
}

fn a_record(records: &BTreeMap<(String, String), Vec<String>>, name: &str) -> Option<Vec<String>> {
    records
        .get(&(format!("{name}.{ZONE}"), "A".to_string()))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_route53_and_haproxy_after_a_stop_start() {
    let moto = Moto::start();
    let ec2 = moto.ec2().await;
    let route53 = moto.route53().await;
    let (lb, webs, other) = instances(&ec2, 3).await;
    let zone_id = moto::hosted_zone(&route53, ZONE).await;
    let lb_ip = moto::public_ips(&ec2, std::slice::from_ref(&lb))
        .await
        .remove(0);
    let web_ips = moto::public_ips(&ec2, &webs).await;
    // By hand, before ipdrift: www, and a record no rule names.
    moto::upsert(&route53, &zone_id, &format!("www.{ZONE}"), "A", &[&lb_ip]).await;
    moto::upsert(
        &route53,
        &zone_id,
        &format!("static.{ZONE}"),
        "A",
        &["192.0.2.99"],
    )
    .await;
    let servers: Vec<(String, String)> = web_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("web-0{}", i + 1), format!("{ip}:80")))
        .collect();
    let haproxy = Haproxy::start(&[BackendSpec {
        name: "web",
        servers: servers
            .iter()
            .map(|(s, a)| (s.as_str(), a.as_str()))
            .collect(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moto.endpoint(), &haproxy);
    let socket = haproxy.socket_path();

    // The web servers' records do not exist yet: ipdrift creates them with ownership.
    let diff = moto::ipdrift(&config, &["diff", "--output", "json"]);
    assert_eq!(
        diff.status.code(),
        Some(2),
        "{}\nmoto:\n{}",
        describe(&diff),
        moto.log()
    );
    let apply = moto::ipdrift(&config, &["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let records = moto::records(&route53, &zone_id).await;
    for (n, ip) in web_ips.iter().enumerate() {
        let name = format!("web-0{}", n + 1);
        assert_eq!(
            a_record(&records, &name),
            Some(vec![ip.clone()]),
            "{records:?}"
        );
        let ownership = records.get(&(format!("_ipdrift.{name}.{ZONE}"), "TXT".into()));
        assert!(
            ownership.is_some_and(|texts| texts.len() == 1 && texts[0].starts_with(OWNERSHIP)),
            "{records:?}"
        );
    }
    assert_eq!(
        a_record(&records, "other"),
        None,
        "the filter leaves out env=dev: {records:?}"
    );
    assert!(
        !records.contains_key(&(format!("_ipdrift.www.{ZONE}"), "TXT".into())),
        "www was made by hand: ipdrift does not claim it"
    );
    let diff = moto::ipdrift(&config, &["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));

    // The outage: a stop/start gives every instance a new public address.
    let mut moved = vec![lb.clone()];
    moved.extend(webs.iter().cloned());
    moto::stop_start(&ec2, &moved).await;
    let new_lb_ip = moto::public_ips(&ec2, std::slice::from_ref(&lb))
        .await
        .remove(0);
    let new_web_ips = moto::public_ips(&ec2, &webs).await;
    assert_ne!(new_lb_ip, lb_ip, "moto gives a new public address on start");

    let diff = moto::ipdrift(&config, &["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 7, "www, 3 web records, 3 servers:\n{plan:#}");
    assert!(changes.iter().all(|c| c["op"] == "update"), "{plan:#}");

    let apply = moto::ipdrift(&config, &["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let records = moto::records(&route53, &zone_id).await;
    assert_eq!(
        a_record(&records, "www"),
        Some(vec![new_lb_ip.clone()]),
        "{records:?}"
    );
    for (n, ip) in new_web_ips.iter().enumerate() {
        assert_eq!(
            a_record(&records, &format!("web-0{}", n + 1)),
            Some(vec![ip.clone()])
        );
    }
    assert_eq!(
        a_record(&records, "static"),
        Some(vec!["192.0.2.99".to_string()])
    );
    let want: Vec<(String, String)> = new_web_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("web-0{}", i + 1), format!("{ip}:80")))
        .collect();
    assert_eq!(serving(&server_states(&socket, "web")), want);

    let again = moto::ipdrift(&config, &["apply", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        json_of(&again)["changes"].as_array().unwrap().len(),
        0,
        "a second apply writes nothing"
    );

    // web-03 is terminated: its record and ownership record go (policy sync), its server
    // goes to maintenance.
    ec2.terminate_instances()
        .instance_ids(&webs[2])
        .send()
        .await
        .unwrap();
    let apply = moto::ipdrift(&config, &["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let records = moto::records(&route53, &zone_id).await;
    assert_eq!(a_record(&records, "web-03"), None, "{records:?}");
    assert!(!records.contains_key(&(format!("_ipdrift.web-03.{ZONE}"), "TXT".into())));
    assert_eq!(serving(&server_states(&socket, "web")), want[..2].to_vec());
    let _ = other;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_endpoint_is_an_error_that_names_the_source_and_never_an_empty_listing() {
    let moto = Moto::start();
    let haproxy = Haproxy::start(&[BackendSpec {
        name: "web",
        servers: vec![("web-01", "192.0.2.1:80")],
    }]);
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let config = write_config(dir.path(), &closed, &haproxy);
    let diff = moto::ipdrift(&config, &["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("inventory \"ec2\"") && all.contains("DescribeInstances"),
        "{all}"
    );
    assert!(all.contains("dns target \"r53\""), "{all}");
    assert!(!all.contains("testing"), "credentials leak: {all}");
    assert_eq!(
        serving(&server_states(&haproxy.socket_path(), "web")),
        vec![("web-01".to_string(), "192.0.2.1:80".to_string())],
        "nothing changes on unknown state"
    );
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_that_does_not_exist_names_the_zone_and_the_fix() {
    let moto = Moto::start();
    let ec2 = moto.ec2().await;
    instances(&ec2, 1).await;
    let haproxy = Haproxy::start(&[BackendSpec {
        name: "web",
        servers: vec![],
    }]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moto.endpoint(), &haproxy);
    let diff = moto::ipdrift(&config, &["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("no hosted zone named example.test.") && all.contains("zone_id"),
        "{all}"
    );
}

/// moto announces no scheduled events, so a proxy in front of it adds them (see
/// `support::moto::EventProxy`): the forecast of `diff`, `/metrics` and the log of `run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_stop_shows_in_diff_metrics_and_the_log() {
    let moto = Moto::start();
    let proxy = EventProxy::start(moto.port());
    let ec2 = moto.ec2().await;
    let route53 = moto.route53().await;
    let (_lb, webs, _other) = instances(&ec2, 2).await;
    moto::hosted_zone(&route53, ZONE).await;
    let web_ips = moto::public_ips(&ec2, &webs).await;
    let haproxy = Haproxy::start(&[BackendSpec {
        name: "web",
        servers: vec![
            ("web-01", &format!("{}:80", web_ips[0])),
            ("web-02", &format!("{}:80", web_ips[1])),
        ],
    }]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &proxy.endpoint(), &haproxy);
    let not_before = 1_894_694_400; // 2030-01-15T08:00:00Z
    proxy.announce(AnnouncedEvent {
        instance_id: webs[0].clone(),
        code: "instance-stop".into(),
        not_before: "2030-01-15T08:00:00.000Z".into(),
        description: "The instance is running on degraded hardware".into(),
    });
    proxy.announce(AnnouncedEvent {
        instance_id: webs[1].clone(),
        code: "system-reboot".into(),
        not_before: "2030-01-16T08:00:00.000Z".into(),
        description: "scheduled reboot".into(),
    });

    let diff = moto::ipdrift(&config, &["diff"]);
    let text = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "forecast instance-stop of web-01 ({}, source ec2) not before 2030-01-15T08:00:00Z will change its addresses; prepared for from 2030-01-15T07:55:00Z; depends on it: r53: web-01.{ZONE} A; lb-01: web/web-01",
            webs[0]
        )),
        "{}",
        describe(&diff)
    );
    assert!(
        !text.contains("system-reboot"),
        "a reboot keeps the addresses:\n{text}"
    );

    let diff = moto::ipdrift(&config, &["diff", "--output", "json"]);
    let forecast = json_of(&diff)["forecast"].clone();
    assert_eq!(forecast.as_array().map(Vec::len), Some(1), "{forecast:#}");
    assert_eq!(forecast[0]["instance"], webs[0].as_str());
    assert_eq!(forecast[0]["code"], "instance-stop");
    assert_eq!(forecast[0]["not_before"], not_before);
    assert_eq!(
        forecast[0]["prepare_from"],
        not_before - 300,
        "the default lead: twice the records' 60 s TTL, at least 5 minutes"
    );
    assert_eq!(forecast[0]["records"][0], format!("r53: web-01.{ZONE} A"));
    assert_eq!(forecast[0]["servers"][0], "lb-01: web/web-01");

    let controller = Controller::start_configured(&config, moto::aws_test_env);
    let series = format!(
        "ipdrift_scheduled_events{{source=\"ec2\",instance=\"{}\",code=\"instance-stop\"}}",
        webs[0]
    );
    assert!(
        wait_until(std::time::Duration::from_secs(20), || controller
            .metric(&series)
            == Some(not_before as f64)),
        "{series} not in /metrics:\n{:?}\nlog:\n{}",
        controller.get("/metrics").map(|r| r.2),
        controller.log_text()
    );
    assert_eq!(
        controller.count_messages("scheduled maintenance will change this instance's addresses"),
        1,
        "{}",
        controller.log_text()
    );
}
