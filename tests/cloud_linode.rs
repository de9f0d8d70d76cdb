//! The `linode` inventory source against wiremock servers on loopback that answer like the
//! Linode API v4 (`GET /v4/linode/instances`, `GET /v4/account/maintenance`, shaped after
//! the API reference's Linode and Maintenance objects and its `{data, page, pages,
//! results}` envelope). Last, the seed outage with the source feeding real BIND and
//! HAProxy, and an announced maintenance forecast through `diff`, `/metrics` and a webhook.

mod support;

use std::time::{Duration, Instant};

use ipdrift::clients::http::{HttpOptions, RetryPolicy};
use ipdrift::clients::token::Token;
use ipdrift::inventory::Inventory;
use ipdrift::inventory::linode::LinodeInventory;
use ipdrift::model::InstanceState;
use reqwest::Url;
use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "3f1c9a2b7e4d5c6b8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3";
const INSTANCES: &str = "/v4/linode/instances";
const MAINTENANCE: &str = "/v4/account/maintenance";

fn fast() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            retry_after_cap: Duration::from_millis(300),
        },
    }
}

fn source(server: &MockServer, tag: Option<&str>) -> LinodeInventory {
    LinodeInventory::new(
        "li".into(),
        &Url::parse(&server.uri()).unwrap(),
        Token::new(TOKEN).unwrap(),
        tag.map(str::to_string),
        fast(),
    )
    .unwrap()
}

/// A Linode as the API reference shows one; `ipv4` and `ipv6` as given.
fn linode(id: u64, label: &str, status: &str, ipv4: &[&str], ipv6: Option<&str>) -> Value {
    json!({
        "alerts": {"cpu": 180, "io": 10000, "network_in": 10, "network_out": 10, "transfer_quota": 80},
        "backups": {"available": false, "enabled": false, "last_successful": null, "schedule": {"day": null, "window": null}},
        "capabilities": [], "created": "2026-01-01T00:01:01", "group": "", "has_user_data": false,
        "host_uuid": "3a3ddd59d9a78bb8de041391075df44de62bfec8", "hypervisor": "kvm",
        "id": id, "image": "linode/debian12", "ipv4": ipv4, "ipv6": ipv6,
        "label": label, "lke_cluster_id": null, "placement_group": null, "region": "us-east",
        "specs": {"disk": 81920, "gpus": 0, "memory": 4096, "transfer": 4000, "vcpus": 2},
        "status": status, "tags": ["role:web", "env:prod"], "type": "g6-standard-2",
        "updated": "2026-01-01T00:01:01", "watchdog_enabled": true
    })
}

fn web(n: u64) -> Value {
    linode(
        1000 + n,
        &format!("web-{n:02}"),
        "running",
        &[&format!("198.51.100.{n}"), &format!("192.168.140.{n}")],
        Some(&format!("2600:3c03::f03c:91ff:fe00:{n}/128")),
    )
}

/// The API's list envelope.
fn envelope(data: Vec<Value>, page: u32, pages: u32, results: usize) -> Value {
    json!({"data": data, "page": page, "pages": pages, "results": results})
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn on_page(at: &str, page: u32) -> wiremock::MockBuilder {
    let mock = Mock::given(method("GET"))
        .and(path(at.to_string()))
        .and(bearer_token(TOKEN))
        .and(query_param("page_size", "500"));
    if page == 1 {
        mock.and(query_param_is_missing("page"))
    } else {
        mock.and(query_param("page", page.to_string()))
    }
}

async fn error_of(source: &dyn Inventory) -> String {
    let error = format!(
        "{:#}",
        source.list().await.expect_err("the listing should fail")
    );
    assert!(!error.contains(TOKEN), "the token leaked into: {error}");
    assert!(
        error.contains("inventory \"li\""),
        "names the source: {error}"
    );
    error
}

#[tokio::test]
async fn pages_are_followed_and_mapped_with_the_tag_pushed_down() {
    let server = MockServer::start().await;
    let filter = r#"{"tags":"role:web"}"#;
    on_page(INSTANCES, 1)
        .and(header("x-filter", filter))
        .respond_with(ok(envelope(vec![web(1), web(2)], 1, 3, 4)))
        .expect(1)
        .mount(&server)
        .await;
    // No public address; then an IPv6-only one.
    on_page(INSTANCES, 2)
        .and(header("x-filter", filter))
        .respond_with(ok(envelope(
            vec![linode(1003, "web-03", "offline", &["192.168.140.3"], None)],
            2,
            3,
            4,
        )))
        .expect(1)
        .mount(&server)
        .await;
    on_page(INSTANCES, 3)
        .and(header("x-filter", filter))
        .respond_with(ok(envelope(
            vec![linode(
                1004,
                "web-04",
                "booting",
                &[],
                Some("2600:3c03::f03c:91ff:fe00:4/128"),
            )],
            3,
            3,
            4,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let list = source(&server, Some("role:web")).list().await.unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["web-01", "web-02", "web-03", "web-04"]);
    assert_eq!(list[0].id, "1001");
    assert_eq!(list[0].state, InstanceState::Running);
    assert_eq!(list[0].public_ipv4, Some("198.51.100.1".parse().unwrap()));
    assert_eq!(list[0].private_ipv4, Some("192.168.140.1".parse().unwrap()));
    assert_eq!(
        list[0].ipv6,
        Some("2600:3c03::f03c:91ff:fe00:1".parse().unwrap())
    );
    assert_eq!(
        (list[0].tags["role"].as_str(), list[0].tags["env"].as_str()),
        ("web", "prod")
    );
    assert_eq!(list[2].state, InstanceState::Stopped);
    assert_eq!(list[2].public_ipv4, None);
    assert_eq!(list[2].private_ipv4, Some("192.168.140.3".parse().unwrap()));
    assert_eq!(list[3].state, InstanceState::Pending);
    assert_eq!((list[3].public_ipv4, list[3].private_ipv4), (None, None));
    assert!(list[3].ipv6.is_some());
}

#[tokio::test]
async fn without_a_tag_no_filter_is_sent() {
    let server = MockServer::start().await;
    on_page(INSTANCES, 1)
        .respond_with(ok(envelope(vec![web(1)], 1, 1, 1)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(source(&server, None).list().await.unwrap().len(), 1);
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("x-filter").is_none());
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_a_500_is_retried() {
    let server = MockServer::start().await;
    on_page(INSTANCES, 1)
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-limit", "800")
                .set_body_json(json!({"errors": [{"reason": "Too Many Requests"}]})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(INSTANCES, 1)
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"errors": [{"reason": "Internal Server Error"}]})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(INSTANCES, 1)
        .respond_with(ok(envelope(vec![web(1)], 1, 1, 1)))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    assert_eq!(source(&server, None).list().await.unwrap().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "Retry-After (capped at 300 ms here) was waited: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failing_malformed_and_partial_pages_fail_the_listing() {
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (
            ResponseTemplate::new(503)
                .set_body_json(json!({"errors": [{"reason": "Service Unavailable"}]})),
            "gave up after 3 attempts",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
            "malformed response",
        ),
        (
            ok(json!({"data": [{"id": 5}], "page": 2, "pages": 2, "results": 3})),
            "malformed response",
        ),
        // Two pages that hold 2 of the 3 Linodes announced.
        (ok(envelope(vec![], 2, 2, 3)), "partial listing"),
    ];
    for (second_page, needle) in cases {
        let server = MockServer::start().await;
        on_page(INSTANCES, 1)
            .respond_with(ok(envelope(vec![web(1), web(2)], 1, 2, 3)))
            .mount(&server)
            .await;
        on_page(INSTANCES, 2)
            .respond_with(second_page)
            .mount(&server)
            .await;
        let error = error_of(&source(&server, None)).await;
        assert!(error.contains(needle), "{needle}: {error}");
        if needle != "partial listing" {
            assert!(error.contains("Linode page 2"), "{error}");
        }
    }
}

#[tokio::test]
async fn a_rejected_token_names_the_scope_it_needs() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        on_page(INSTANCES, 1)
            .respond_with(
                ResponseTemplate::new(status).set_body_json(
                    json!({"errors": [{"reason": format!("Invalid Token {TOKEN}")}]}),
                ),
            )
            .expect(1)
            .mount(&server)
            .await;
        let error = error_of(&source(&server, None)).await;
        assert!(
            error.contains(&format!("HTTP {status}"))
                && error.contains("linodes:read_only")
                && error.contains("token_env/token_file"),
            "{error}"
        );
    }
}

/// A maintenance entry as the API reference shows one.
fn maintenance(linode: u64, kind: &str, status: &str, when: &str) -> Value {
    json!({
        "body": "Scheduled upgrade to faster NVMe hardware.",
        "entity": {"id": linode, "label": format!("linode-{linode}"), "type": "linode",
                   "url": format!("https://api.linode.com/v4/linode/instances/{linode}")},
        "label": "Scheduled upgrade to faster NVMe hardware",
        "message": "Scheduled upgrade to faster NVMe hardware.",
        "reason": "This maintenance will allow us to update the BIOS on the host's motherboard.",
        "status": status, "type": kind, "when": when
    })
}

#[tokio::test]
async fn the_maintenance_list_is_read_page_by_page_into_events() {
    let server = MockServer::start().await;
    on_page(MAINTENANCE, 1)
        .respond_with(ok(envelope(
            vec![
                maintenance(1001, "cold_migration", "pending", "2030-01-15T08:00:00"),
                maintenance(1002, "reboot", "scheduled", "2030-01-16T08:00:00"),
            ],
            1,
            2,
            3,
        )))
        .expect(1)
        .mount(&server)
        .await;
    on_page(MAINTENANCE, 2)
        .respond_with(ok(envelope(
            vec![maintenance(
                1003,
                "cold_migration",
                "completed",
                "2025-01-15T08:00:00",
            )],
            2,
            2,
            3,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let events = source(&server, None).scheduled_events().await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (
            events[0].instance_id.as_str(),
            events[0].code.as_str(),
            events[0].not_before
        ),
        ("1001", "cold-migration", 1_894_694_400)
    );
    assert!(events[0].changes_addresses);
    assert!(!events[1].changes_addresses, "a reboot keeps the addresses");

    // A maintenance list the token may not read is an error, never "no maintenance".
    server.reset().await;
    on_page(MAINTENANCE, 1)
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"errors": [{"reason": "Your OAuth token is not authorized to use this endpoint."}]}),
        ))
        .mount(&server)
        .await;
    let error = format!(
        "{:#}",
        source(&server, None).scheduled_events().await.unwrap_err()
    );
    assert!(
        error.contains("account:read_only") && !error.contains(TOKEN),
        "{error}"
    );
}

// --- the seed outage, with a linode source feeding real BIND and HAProxy --------------

use support::fleet::{self, Fleet, ZONE, describe, http_get, lb_public, web_private, web_public};

/// Linode's API lists public and private IPv4 addresses together and tells them apart by
/// range; the fleet's loopback addresses are in none, so the fleet's private addresses
/// are listed as what Linode would list: 192.168.128.0/17 addresses, with the backend
/// then pointed at the public (loopback) ones the web servers also listen on.
fn fleet_page(fleet: &Fleet, g: u8) -> Value {
    let data: Vec<Value> = fleet
        .instances_at(g)
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let mut l = linode(
                2000 + k as u64,
                i["name"].as_str().unwrap(),
                "running",
                &[
                    i["public_ipv4"].as_str().unwrap(),
                    &format!("192.168.200.{}", 10 * g as usize + k),
                ],
                None,
            );
            let role = i["tags"]["role"].as_str().unwrap();
            l["tags"] = json!([format!("role:{role}")]);
            l
        })
        .collect();
    let n = data.len();
    envelope(data, 1, 1, n)
}

fn use_linode_source(fleet: &Fleet, server: &str, notify: Option<&str>) {
    std::fs::write(fleet.dir.path().join("linode.token"), format!("{TOKEN}\n")).unwrap();
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    let mut config = config
        .replace(
            "kind = \"file\"\npath = \"instances.json\"\n",
            &format!("kind = \"linode\"\ntoken_file = \"linode.token\"\nendpoint = \"{server}\"\n"),
        )
        .replace("address = \"private_ipv4\"", "address = \"public_ipv4\"");
    assert!(config.contains("kind = \"linode\""));
    if let Some(url) = notify {
        config.push_str(&format!("\n[[notify]]\nurl = \"{url}\"\nkind = \"json\"\n"));
    }
    std::fs::write(fleet.config_path(), config).unwrap();
}

/// Web servers on the public addresses of generation `g` as well (the backend uses them).
fn public_web_servers(fleet: &Fleet, g: u8) -> Vec<fleet::WebServer> {
    (1..=fleet.web_servers)
        .map(|n| {
            fleet::WebServer::start(
                &web_public(g, n),
                fleet.web_port,
                &format!("web-0{n} gen {g}"),
            )
        })
        .collect()
}

async fn serve_generation(server: &MockServer, page: Value, maintenance: Vec<Value>) {
    server.reset().await;
    on_page(INSTANCES, 1)
        .respond_with(ok(page))
        .mount(server)
        .await;
    let n = maintenance.len();
    on_page(MAINTENANCE, 1)
        .respond_with(ok(envelope(maintenance, 1, 1, n)))
        .mount(server)
        .await;
}

async fn ipdrift(fleet: &Fleet, args: &'static [&'static str]) -> std::process::Output {
    let config = fleet.config_path();
    tokio::task::spawn_blocking(move || fleet::ipdrift(&config, args))
        .await
        .unwrap()
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

fn haproxy_at_public(fleet: &Fleet, g: u8) -> bool {
    let want: Vec<(String, String)> = (1..=fleet.web_servers)
        .map(|n| {
            (
                format!("web-0{n}"),
                format!("{}:{}", web_public(g, n), fleet.web_port),
            )
        })
        .collect();
    fleet.haproxy_servers() == want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_dns_and_haproxy_after_every_linode_address_changed() {
    let server = MockServer::start().await;
    let mut fleet = Fleet::start();
    use_linode_source(&fleet, &server.uri(), None);
    let _gen1 = public_web_servers(&fleet, 1);
    serve_generation(&server, fleet_page(&fleet, 1), vec![]).await;
    // HAProxy starts on the private addresses; the first apply moves it to the public ones.
    let first = ipdrift(&fleet, &["apply"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert!(
        fleet.dns_at(1) && haproxy_at_public(&fleet, 1),
        "{}",
        describe(&first)
    );

    // The provider's update: every Linode has new addresses.
    fleet.move_web_servers_to(2);
    let _gen2 = public_web_servers(&fleet, 2);
    serve_generation(&server, fleet_page(&fleet, 2), vec![]).await;
    let apply = ipdrift(&fleet, &["apply"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        fleet.dns_at(2) && haproxy_at_public(&fleet, 2),
        "after apply:\n{}\n{:?}",
        describe(&apply),
        fleet.haproxy_servers()
    );
    let (status, body) = http_get(fleet.haproxy.frontend_port()).expect("haproxy answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gen 2"), "{body}");
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(2)]
    );
    assert_eq!(
        fleet.bind.query(&format!("static.{ZONE}"), "A"),
        vec!["192.0.2.99"],
        "an unmanaged record is untouched"
    );
    let again = ipdrift(&fleet, &["apply", "--output", "json"]).await;
    assert_eq!(
        json_of(&again)["changes"].as_array().map(Vec::len),
        Some(0),
        "{}",
        describe(&again)
    );
    // The generation-2 private addresses were never used.
    assert!(!format!("{:?}", fleet.haproxy_servers()).contains(&web_private(2, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_maintenance_shows_in_diff_metrics_and_a_webhook() {
    let server = MockServer::start().await;
    let receiver = support::webhook::Receiver::start();
    let fleet = Fleet::start();
    use_linode_source(&fleet, &server.uri(), Some(&receiver.url));
    let _gen1 = public_web_servers(&fleet, 1);
    // web-01 is the fleet's second instance: Linode 2001.
    serve_generation(
        &server,
        fleet_page(&fleet, 1),
        vec![
            maintenance(2001, "cold_migration", "scheduled", "2030-01-15T08:00:00"),
            maintenance(2002, "reboot", "scheduled", "2030-01-15T08:00:00"),
        ],
    )
    .await;
    let diff = ipdrift(&fleet, &["diff", "--output", "json"]).await;
    let forecast = json_of(&diff)["forecast"].clone();
    assert_eq!(
        forecast.as_array().map(Vec::len),
        Some(1),
        "{forecast:#}\n{}",
        describe(&diff)
    );
    assert_eq!(forecast[0]["name"], "web-01");
    assert_eq!(forecast[0]["code"], "cold-migration");
    assert_eq!(forecast[0]["not_before"], 1_894_694_400u64);
    assert_eq!(forecast[0]["records"][0], format!("ns1: web-01.{ZONE} A"));
    assert_eq!(forecast[0]["servers"][0], "lb-01: web/web-01");

    let config = fleet.config_path();
    let controller =
        tokio::task::spawn_blocking(move || support::controller::Controller::start_with(&config))
            .await
            .unwrap();
    let series =
        "ipdrift_scheduled_events{source=\"local\",instance=\"2001\",code=\"cold-migration\"}";
    let seen = tokio::task::spawn_blocking(move || {
        let metric = support::wait_until(Duration::from_secs(20), || {
            controller.metric(series) == Some(1_894_694_400.0)
        });
        (metric, controller)
    })
    .await
    .unwrap();
    assert!(
        seen.0,
        "{series} not in /metrics: {:?}",
        seen.1.get("/metrics").map(|r| r.2)
    );
    let hooked = support::wait_until(Duration::from_secs(10), || {
        receiver
            .bodies()
            .iter()
            .any(|b| b["event"] == "scheduled_event" && b["name"] == "web-01")
    });
    assert!(
        hooked,
        "no scheduled_event webhook: {:?}",
        receiver.bodies()
    );
    drop(seen);
}
