//! The `openstack` inventory source against wiremock servers on loopback that answer like
//! Keystone v3 (`POST /v3/auth/tokens`: 201, the token in `X-Subject-Token`, the catalog in
//! the body) and Nova (`GET /v2.1/servers/detail`, `servers_links` next links), shaped after
//! the API references' examples. Last, the seed outage with the source feeding real BIND
//! and HAProxy.

mod support;

use std::time::{Duration, Instant};

use ipdrift::clients::http::{HttpOptions, RetryPolicy};
use ipdrift::clients::keystone::{KeystoneAuth, Method, Project, Secret};
use ipdrift::inventory::Inventory;
use ipdrift::inventory::openstack::OpenStackInventory;
use ipdrift::model::InstanceState;
use reqwest::Url;
use serde_json::{Value, json};
use wiremock::matchers::{
    body_partial_json, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SUBJECT_TOKEN: &str = "gAAAAABpNx1fZ8kQfakeKeystoneFernetToken0123456789abcdefABCDEF_-";
const APP_ID: &str = "423f19a4ac1e4f48bbb4180756e6eb6c";
const APP_SECRET: &str = "rEaqvJka48mpv-secret-of-the-application-credential";
const SERVERS: &str = "/compute/v2.1/servers/detail";

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

fn auth(server: &MockServer, method: Method) -> KeystoneAuth {
    KeystoneAuth {
        auth_url: Url::parse(&format!("{}/identity/v3", server.uri())).unwrap(),
        method,
        region: Some("RegionOne".into()),
        interface: "public".into(),
    }
}

fn app_credential() -> Method {
    Method::ApplicationCredential {
        id: APP_ID.into(),
        secret: Secret::new(APP_SECRET),
    }
}

fn source(server: &MockServer, method: Method, tags: &[&str]) -> OpenStackInventory {
    OpenStackInventory::new(
        "os".into(),
        auth(server, method),
        tags.iter().map(|t| t.to_string()).collect(),
        fast(),
    )
    .unwrap()
}

/// Keystone's answer to a token request: the catalog has compute in two regions.
fn token_answer(server: &str) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header("x-subject-token", SUBJECT_TOKEN)
        .set_body_json(json!({"token": {
            "methods": ["application_credential"],
            "expires_at": "2099-01-01T00:00:00.000000Z", "issued_at": "2026-12-02T10:00:00.000000Z",
            "user": {"id": "ee4dfb6e5540447cb3741905149d9b6e", "name": "ipdrift", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "6f70656e737461636b20342065766572", "name": "web", "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "reader"}],
            "catalog": [
                {"type": "identity", "name": "keystone", "id": "1", "endpoints": [
                    {"id": "a", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": format!("{server}/identity")}]},
                {"type": "compute", "name": "nova", "id": "2", "endpoints": [
                    {"id": "b", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": format!("{server}/compute/v2.1")},
                    {"id": "c", "interface": "internal", "region": "RegionOne", "region_id": "RegionOne", "url": "http://10.0.0.1:8774/v2.1"},
                    {"id": "d", "interface": "public", "region": "RegionTwo", "region_id": "RegionTwo", "url": "https://nova.two.example:8774/v2.1"}]}
            ]
        }}))
}

async fn serve_token(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .and(body_partial_json(json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": APP_ID, "secret": APP_SECRET}}}})))
        .respond_with(token_answer(&server.uri()))
        .expect(times)
        .mount(server)
        .await;
}

/// A Nova server: fixed and floating addresses on the network `private` as given.
fn nova(n: u32, status: &str, fixed: &[&str], floating: Option<&str>) -> Value {
    let mut addresses: Vec<Value> = fixed
        .iter()
        .map(|a| json!({"OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01", "OS-EXT-IPS:type": "fixed", "addr": a, "version": if a.contains(':') { 6 } else { 4 }}))
        .collect();
    if let Some(ip) = floating {
        addresses.push(json!({"OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01", "OS-EXT-IPS:type": "floating", "addr": ip, "version": 4}));
    }
    json!({
        "id": format!("f5dc173b-6804-445a-a6d8-c705dad5b5{n:02}"), "name": format!("web-{n:02}"),
        "status": status, "OS-EXT-STS:vm_state": "active", "OS-EXT-AZ:availability_zone": "nova",
        "addresses": {"private": addresses}, "metadata": {"role": "web"},
        "flavor": {"id": "1", "links": []}, "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": []},
        "tenant_id": "6f70656e737461636b20342065766572", "user_id": "ee4dfb6e5540447cb3741905149d9b6e",
        "created": "2026-01-10T04:01:32Z", "updated": "2026-01-10T04:01:33Z", "links": []
    })
}

fn web(n: u32) -> Value {
    nova(
        n,
        "ACTIVE",
        &[&format!("10.0.0.{n}")],
        Some(&format!("203.0.113.{n}")),
    )
}

/// A page; `next` is the marker of the next one (Nova's next link, on the catalog's host).
fn page(server: &MockServer, servers: Vec<Value>, next: Option<&str>) -> ResponseTemplate {
    let links: Vec<Value> = next
        .map(|m| json!({"rel": "next", "href": format!("{}{SERVERS}?limit=1000&marker={m}", server.uri())}))
        .into_iter()
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({"servers": servers, "servers_links": links}))
}

fn on_page(marker: Option<&str>) -> wiremock::MockBuilder {
    let mock = Mock::given(method("GET"))
        .and(path(SERVERS))
        .and(header("x-auth-token", SUBJECT_TOKEN))
        .and(query_param("limit", "1000"));
    match marker {
        None => mock.and(query_param_is_missing("marker")),
        Some(m) => mock.and(query_param("marker", m)),
    }
}

async fn error_of(source: &dyn Inventory) -> String {
    let error = format!(
        "{:#}",
        source.list().await.expect_err("the listing should fail")
    );
    for secret in [SUBJECT_TOKEN, APP_SECRET] {
        assert!(!error.contains(secret), "a secret leaked into: {error}");
    }
    assert!(
        error.contains("inventory \"os\""),
        "names the source: {error}"
    );
    error
}

#[tokio::test]
async fn pages_are_followed_and_mapped_with_one_token() {
    let server = MockServer::start().await;
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(page(&server, vec![web(1), web(2)], Some("m2")))
        .expect(1)
        .mount(&server)
        .await;
    // No public address; then an IPv6-only one.
    on_page(Some("m2"))
        .respond_with(page(
            &server,
            vec![nova(3, "SHUTOFF", &["10.0.0.3"], None)],
            Some("m3"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    on_page(Some("m3"))
        .respond_with(page(
            &server,
            vec![nova(4, "BUILD", &["2001:db8::4"], None)],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let source = source(&server, app_credential(), &[]);
    let list = source.list().await.unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["web-01", "web-02", "web-03", "web-04"]);
    assert_eq!(list[0].id, "f5dc173b-6804-445a-a6d8-c705dad5b501");
    assert_eq!(list[0].state, InstanceState::Running);
    assert_eq!(list[0].public_ipv4, Some("203.0.113.1".parse().unwrap()));
    assert_eq!(list[0].private_ipv4, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(list[0].tags["role"], "web");
    assert_eq!(list[2].state, InstanceState::Stopped);
    assert_eq!(list[2].public_ipv4, None);
    assert_eq!(list[3].state, InstanceState::Pending);
    assert_eq!((list[3].public_ipv4, list[3].private_ipv4), (None, None));
    assert_eq!(list[3].ipv6, Some("2001:db8::4".parse().unwrap()));
    // A second listing reuses the token (the token mock expects one request).
    server.reset().await;
    serve_token(&server, 0).await;
    on_page(None)
        .respond_with(page(&server, vec![web(1)], None))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(source.list().await.unwrap().len(), 1);
    assert!(!format!("{source:?}").contains(APP_SECRET));
}

#[tokio::test]
async fn a_password_token_is_scoped_and_tags_are_pushed_down_with_the_microversion() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .and(body_partial_json(json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "ipdrift", "domain": {"name": "Default"}, "password": "hunter2-but-longer"}}},
            "scope": {"project": {"name": "web", "domain": {"name": "Default"}}}
        }})))
        .respond_with(token_answer(&server.uri()))
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .and(query_param("tags", "web,prod"))
        .and(header("openstack-api-version", "compute 2.26"))
        .respond_with(page(&server, vec![web(1)], None))
        .expect(1)
        .mount(&server)
        .await;
    let password = Method::Password {
        username: "ipdrift".into(),
        user_domain: "Default".into(),
        password: Secret::new("hunter2-but-longer"),
        project: Project::Name {
            name: "web".into(),
            domain: "Default".into(),
        },
    };
    let list = source(&server, password, &["web", "prod"])
        .list()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_a_500_is_retried() {
    let server = MockServer::start().await;
    // The token request itself meets a 500 first: it changes nothing, so it goes again.
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"code": 500, "message": "An unexpected error prevented the server from fulfilling your request.", "title": "Internal Server Error"}})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(json!({"overLimit": {"code": 429, "message": "This request was rate-limited.", "retryAfter": "1"}})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"computeFault": {"code": 503, "message": "Service Unavailable"}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .respond_with(page(&server, vec![web(1)], None))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    assert_eq!(
        source(&server, app_credential(), &[])
            .list()
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failing_and_malformed_pages_fail_the_listing() {
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (
            ResponseTemplate::new(500).set_body_json(json!({"computeFault": {"code": 500, "message": "Unexpected API Error."}})),
            "gave up after 3 attempts",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>Bad Gateway</html>", "text/html"),
            "malformed response",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"servers": [{"id": "x", "name": "y", "status": "ACTIVE", "addresses": {"n": [{"addr": "not-an-ip"}]}}]})),
            "malformed response",
        ),
    ];
    for (second, needle) in cases {
        let server = MockServer::start().await;
        serve_token(&server, 1).await;
        on_page(None)
            .respond_with(page(&server, vec![web(1)], Some("m2")))
            .mount(&server)
            .await;
        on_page(Some("m2"))
            .respond_with(second)
            .mount(&server)
            .await;
        let error = error_of(&source(&server, app_credential(), &[])).await;
        assert!(
            error.contains("OpenStack Nova page 2") && error.contains(needle),
            "{needle}: {error}"
        );
    }
}

#[tokio::test]
async fn a_refused_credential_or_token_is_a_clear_error_without_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}})))
        .expect(1)
        .mount(&server)
        .await;
    let error = error_of(&source(&server, app_credential(), &[])).await;
    assert!(
        error.contains("HTTP 401")
            && error.contains(&format!("application credential {APP_ID}"))
            && error.contains("clouds.yaml"),
        "{error}"
    );

    let server = MockServer::start().await;
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"forbidden": {"code": 403, "message": format!("Policy doesn't allow os_compute_api:servers:detail to be performed (token {SUBJECT_TOKEN})")}})))
        .expect(1)
        .mount(&server)
        .await;
    let error = error_of(&source(&server, app_credential(), &[])).await;
    assert!(
        error.contains("HTTP 403") && error.contains("reader or member"),
        "{error}"
    );

    // A catalog without the configured region names the ones it has.
    let server = MockServer::start().await;
    serve_token(&server, 1).await;
    let mut elsewhere = auth(&server, app_credential());
    elsewhere.region = Some("RegionNine".into());
    let source = OpenStackInventory::new("os".into(), elsewhere, vec![], fast()).unwrap();
    let error = error_of(&source).await;
    assert!(error.contains("RegionOne, RegionTwo"), "{error}");
}

// --- the seed outage, with an openstack source feeding real BIND and HAProxy ------------

use support::fleet::{self, Fleet, ZONE, describe, http_get, lb_public, web_private, web_public};

/// The fleet's instances of generation `g` as Nova lists them: the private address fixed,
/// the public one floating.
fn fleet_page(server: &MockServer, fleet: &Fleet, g: u8) -> ResponseTemplate {
    let servers: Vec<Value> = fleet
        .instances_at(g)
        .iter()
        .map(|i| {
            json!({
                "id": i["id"], "name": i["name"], "status": "ACTIVE", "metadata": i["tags"],
                "addresses": {"private": [
                    {"OS-EXT-IPS:type": "fixed", "addr": i["private_ipv4"], "version": 4},
                    {"OS-EXT-IPS:type": "floating", "addr": i["public_ipv4"], "version": 4}
                ]}
            })
        })
        .collect();
    page(server, servers, None)
}

async fn serve_generation(server: &MockServer, fleet: &Fleet, g: u8) {
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(token_answer(&server.uri()))
        .mount(server)
        .await;
    on_page(None)
        .respond_with(fleet_page(server, fleet, g))
        .mount(server)
        .await;
}

async fn ipdrift(fleet: &Fleet, args: &'static [&'static str]) -> std::process::Output {
    let config = fleet.config_path();
    tokio::task::spawn_blocking(move || fleet::ipdrift(&config, args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_dns_and_haproxy_after_every_server_address_changed() {
    let server = MockServer::start().await;
    let mut fleet = Fleet::start();
    // Credentials from clouds.yaml, as the OpenStack clients keep them.
    std::fs::write(
        fleet.dir.path().join("clouds.yaml"),
        format!("clouds:\n  test:\n    auth:\n      auth_url: {}/identity\n      application_credential_id: {APP_ID}\n      application_credential_secret: {APP_SECRET}\n    region_name: RegionOne\n    auth_type: v3applicationcredential\n", server.uri()),
    )
    .unwrap();
    let config = std::fs::read_to_string(fleet.config_path())
        .unwrap()
        .replace(
            "kind = \"file\"\npath = \"instances.json\"\n",
            "kind = \"openstack\"\ncloud = \"test\"\nclouds_file = \"clouds.yaml\"\n",
        );
    assert!(config.contains("kind = \"openstack\""));
    std::fs::write(fleet.config_path(), config).unwrap();
    serve_generation(&server, &fleet, 1).await;
    let diff = ipdrift(&fleet, &["diff"]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in sync at first:\n{}",
        describe(&diff)
    );

    fleet.move_web_servers_to(2);
    serve_generation(&server, &fleet, 2).await;
    let apply = ipdrift(&fleet, &["apply"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        fleet.converged_at(2),
        "after apply:\n{}\n{:?}",
        describe(&apply),
        fleet.haproxy_servers()
    );
    let (status, body) = http_get(fleet.haproxy.frontend_port()).expect("haproxy answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gen 2"), "{body}");
    assert_eq!(
        fleet.bind.query(&format!("static.{ZONE}"), "A"),
        vec!["192.0.2.99"]
    );
    assert_eq!(
        fleet.bind.query(&format!("www.{ZONE}"), "A"),
        vec![lb_public(2)]
    );
    assert_eq!(
        fleet.bind.query(&format!("web-01.{ZONE}"), "A"),
        vec![web_public(2, 1)]
    );
    assert_eq!(
        fleet.haproxy_servers()[0].1,
        format!("{}:{}", web_private(2, 1), fleet.web_port)
    );
    let again = ipdrift(&fleet, &["apply", "--output", "json"]).await;
    let json: Value = serde_json::from_slice(&again.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", describe(&again)));
    assert_eq!(
        json["changes"].as_array().map(Vec::len),
        Some(0),
        "{}",
        describe(&again)
    );
    let all = format!("{}{}", describe(&apply), describe(&again));
    assert!(
        !all.contains(APP_SECRET) && !all.contains(SUBJECT_TOKEN),
        "{all}"
    );
}
