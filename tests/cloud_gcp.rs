//! The `gcp` inventory source against wiremock servers on loopback that answer like the
//! Compute Engine API (`instances.aggregatedList`, `instances.list`,
//! `addresses.aggregatedList`, shaped after the REST reference's `Instance`,
//! `InstanceAggregatedList` and `AddressAggregatedList`), Google's OAuth token endpoint
//! (RFC 6749 §5.1 answers) and the metadata server. Last, the seed outage with the source
//! feeding real BIND and HAProxy.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ipdrift::clients::gcp::{GcpAuth, GcpCredentials};
use ipdrift::clients::http::{HttpOptions, RetryPolicy};
use ipdrift::config::{SecretAt, SecretRef};
use ipdrift::inventory::Inventory;
use ipdrift::inventory::gcp::{GcpConfig, GcpInventory};
use ipdrift::model::InstanceState;
use reqwest::Url;
use serde_json::{Value, json};
use wiremock::matchers::{
    bearer_token, body_string_contains, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PROJECT: &str = "ipdrift-test";
const ACCESS_TOKEN: &str = "ya29.c.b0AXv0zTPfakeaccesstoken0123456789abcdefABCDEF";
const AGGREGATED: &str = "/compute/v1/projects/ipdrift-test/aggregated/instances";
const KEY: &str = include_str!("fixtures/gcp-service-account.json");

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

/// The fixture key with its `token_uri` on `server`, written into `dir`.
fn write_key(dir: &Path, server: &str) -> PathBuf {
    let mut key: Value = serde_json::from_str(KEY).unwrap();
    key["token_uri"] = json!(format!("{server}/token"));
    let path = dir.join("sa.json");
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

/// The token endpoint: answers a JWT-bearer grant as Google does.
async fn serve_token(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        ))
        .and(body_string_contains("assertion="))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .expect(times)
        .mount(server)
        .await;
}

fn source_with(
    server: &MockServer,
    dir: &Path,
    zones: &[&str],
    filter: Option<&str>,
) -> GcpInventory {
    let key = write_key(dir, &server.uri());
    let config = GcpConfig {
        project: PROJECT.into(),
        zones: zones.iter().map(|z| z.to_string()).collect(),
        filter: filter.map(str::to_string),
        auth: GcpAuth {
            key_file: Some(SecretAt {
                field: "inventory \"gce\"".into(),
                line: 1,
                secret: SecretRef::File(key),
            }),
            metadata_host: None,
        },
        endpoint: Url::parse(&server.uri()).unwrap(),
    };
    let credentials = GcpCredentials::new(&config.auth, "inventory \"gce\"", fast()).unwrap();
    GcpInventory::new("gce".into(), config, credentials, fast()).unwrap()
}

/// A Compute Engine instance: `n` names it; addresses and labels as given.
fn gce(
    n: u32,
    status: &str,
    public: Option<&str>,
    private: Option<&str>,
    ipv6: Option<&str>,
) -> Value {
    let access: Vec<Value> = public
        .map(|ip| json!({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": ip, "networkTier": "PREMIUM"}))
        .into_iter()
        .collect();
    let access6: Vec<Value> = ipv6
        .map(|ip| json!({"kind": "compute#accessConfig", "type": "DIRECT_IPV6", "name": "external-ipv6", "externalIpv6": ip, "externalIpv6PrefixLength": 96, "networkTier": "PREMIUM"}))
        .into_iter()
        .collect();
    let mut nic = json!({
        "kind": "compute#networkInterface", "name": "nic0",
        "network": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/default"),
        "stackType": if ipv6.is_some() { "IPV4_IPV6" } else { "IPV4_ONLY" },
        "accessConfigs": access, "ipv6AccessConfigs": access6, "fingerprint": "abc="
    });
    if let Some(ip) = private {
        nic["networkIP"] = json!(ip);
    }
    json!({
        "kind": "compute#instance", "id": format!("{}", 4_567_890_123_456_789_000u64 + u64::from(n)),
        "creationTimestamp": "2026-01-10T02:03:04.000-08:00", "name": format!("web-{n:02}"),
        "machineType": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/europe-west1-b/machineTypes/e2-small"),
        "status": status, "zone": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/europe-west1-b"),
        "networkInterfaces": [nic],
        "labels": {"role": "web"},
        "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": true, "preemptible": false, "provisioningModel": "STANDARD"}
    })
}

fn web(n: u32) -> Value {
    gce(
        n,
        "RUNNING",
        Some(&format!("34.76.0.{n}")),
        Some(&format!("10.132.0.{n}")),
        None,
    )
}

/// An `InstanceAggregatedList` page: `instances` in one zone, an empty zone with the
/// warning the API puts there, and `next` as the page token.
fn aggregated(instances: Vec<Value>, next: Option<&str>) -> Value {
    let mut page = json!({
        "kind": "compute#instanceAggregatedList",
        "id": format!("projects/{PROJECT}/aggregated/instances"),
        "items": {
            "zones/europe-west1-b": {"instances": instances},
            "zones/us-east1-c": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/us-east1-c' on this page.", "data": [{"key": "scope", "value": "zones/us-east1-c"}]}}
        },
        "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances")
    });
    if let Some(token) = next {
        page["nextPageToken"] = json!(token);
    }
    page
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn on_page(token: Option<&str>) -> wiremock::MockBuilder {
    let mock = Mock::given(method("GET"))
        .and(path(AGGREGATED))
        .and(bearer_token(ACCESS_TOKEN));
    match token {
        None => mock.and(query_param_is_missing("pageToken")),
        Some(t) => mock.and(query_param("pageToken", t)),
    }
}

async fn error_of(source: &dyn Inventory) -> String {
    let error = format!(
        "{:#}",
        source.list().await.expect_err("the listing should fail")
    );
    assert!(
        !error.contains(ACCESS_TOKEN),
        "the token leaked into: {error}"
    );
    assert!(
        !error.contains("PRIVATE KEY"),
        "the key leaked into: {error}"
    );
    assert!(
        error.contains("inventory \"gce\""),
        "names the source: {error}"
    );
    error
}

#[tokio::test]
async fn aggregated_pages_are_followed_and_mapped_with_one_token() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    let filter = "labels.role = web";
    on_page(None)
        .and(query_param("maxResults", "500"))
        .and(query_param("filter", filter))
        .respond_with(ok(aggregated(vec![web(1), web(2)], Some("tok-2"))))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    // No public address; then an IPv6-only one (no IPv4 at all).
    on_page(Some("tok-2"))
        .and(query_param("filter", filter))
        .respond_with(ok(aggregated(
            vec![gce(3, "TERMINATED", None, Some("10.132.0.3"), None)],
            Some("tok-3"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    on_page(Some("tok-3"))
        .respond_with(ok(aggregated(
            vec![gce(4, "STAGING", None, None, Some("2600:1900:4010:1::"))],
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let source = source_with(&server, dir.path(), &[], Some(filter));
    let list = source.list().await.unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["web-01", "web-02", "web-03", "web-04"]);
    assert_eq!(list[0].id, "4567890123456789001");
    assert_eq!(list[0].state, InstanceState::Running);
    assert_eq!(list[0].public_ipv4, Some("34.76.0.1".parse().unwrap()));
    assert_eq!(list[0].private_ipv4, Some("10.132.0.1".parse().unwrap()));
    assert_eq!(list[0].tags["role"], "web");
    assert_eq!(list[2].state, InstanceState::Stopped);
    assert_eq!(list[2].public_ipv4, None);
    assert_eq!(list[3].state, InstanceState::Pending);
    assert_eq!((list[3].public_ipv4, list[3].private_ipv4), (None, None));
    assert_eq!(list[3].ipv6, Some("2600:1900:4010:1::".parse().unwrap()));
    // A second listing reads afresh and reuses the token (the token mock expects one call).
    on_page(None)
        .respond_with(ok(aggregated(vec![web(1)], None)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(source.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_signed_assertion_verifies_and_names_the_key() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(ok(aggregated(vec![web(1)], None)))
        .mount(&server)
        .await;
    source_with(&server, dir.path(), &[], None)
        .list()
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let token_request: &Request = requests.iter().find(|r| r.url.path() == "/token").unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&token_request.body)
        .into_owned()
        .collect();
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
    assert_eq!(
        claims["iss"],
        "ipdrift@ipdrift-test.iam.gserviceaccount.com"
    );
    assert_eq!(claims["aud"], format!("{}/token", server.uri()));
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    let key = ipdrift::clients::gcp::ServiceAccountKey::parse(KEY).unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key(),
    )
    .verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &decode(parts[2]),
    )
    .expect("RS256 signature by the key");
    let api = requests
        .iter()
        .find(|r| r.url.path() == AGGREGATED)
        .unwrap();
    assert_eq!(
        api.headers.get("authorization").unwrap(),
        &format!("Bearer {ACCESS_TOKEN}")
    );
}

#[tokio::test]
async fn zones_are_listed_one_by_one() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    for (zone, n) in [("europe-west1-b", 1), ("europe-west1-c", 2)] {
        Mock::given(method("GET"))
            .and(path(format!("/compute/v1/projects/{PROJECT}/zones/{zone}/instances")))
            .and(bearer_token(ACCESS_TOKEN))
            .respond_with(ok(json!({
                "kind": "compute#instanceList",
                "id": format!("projects/{PROJECT}/zones/{zone}/instances"),
                "items": [web(n)],
                "selfLink": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}/instances")
            })))
            .expect(1)
            .mount(&server)
            .await;
    }
    // A zone with no instances answers without `items`.
    Mock::given(method("GET"))
        .and(path(format!(
            "/compute/v1/projects/{PROJECT}/zones/us-east1-c/instances"
        )))
        .respond_with(ok(json!({"kind": "compute#instanceList", "id": "x"})))
        .expect(1)
        .mount(&server)
        .await;
    let source = source_with(
        &server,
        dir.path(),
        &["europe-west1-b", "europe-west1-c", "us-east1-c"],
        None,
    );
    let list = source.list().await.unwrap();
    assert_eq!(
        list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["web-01", "web-02"]
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_a_500_is_retried() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"code": 429, "message": "Quota exceeded for quota metric 'Read requests'", "status": "RESOURCE_EXHAUSTED"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .respond_with(ok(aggregated(vec![web(1)], None)))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let list = source_with(&server, dir.path(), &[], None)
        .list()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failing_malformed_and_partial_pages_fail_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"code": 503, "message": "Backend Error"}})),
            "gave up after 3 attempts",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>Sign in</html>", "text/html"),
            "malformed response",
        ),
        (
            ok(json!({"items": {"zones/a": {"instances": [{"id": "1"}]}}})),
            "malformed response",
        ),
        (
            ok(
                json!({"kind": "compute#instanceAggregatedList", "items": {}, "unreachables": ["zones/asia-east1-a"]}),
            ),
            "partial listing: zones/asia-east1-a unreachable",
        ),
        (
            ok(
                json!({"items": {"zones/asia-east1-a": {"warning": {"code": "UNREACHABLE", "message": "zone unreachable"}}}}),
            ),
            "partial listing: zones/asia-east1-a is unreachable",
        ),
    ];
    for (second_page, needle) in cases {
        let server = MockServer::start().await;
        serve_token(&server, 1).await;
        on_page(None)
            .respond_with(ok(aggregated(vec![web(1)], Some("tok-2"))))
            .mount(&server)
            .await;
        on_page(Some("tok-2"))
            .respond_with(second_page)
            .mount(&server)
            .await;
        let source = source_with(&server, dir.path(), &[], None);
        let error = error_of(&source).await;
        assert!(
            error.contains("Compute Engine page 2") && error.contains(needle),
            "{needle}: {error}"
        );
    }
}

#[tokio::test]
async fn a_refused_credential_names_the_role_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    for status in [401, 403] {
        let server = MockServer::start().await;
        serve_token(&server, 1).await;
        on_page(None)
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {
                "code": status, "message": format!("Required 'compute.instances.list' permission for 'projects/{PROJECT}' ({ACCESS_TOKEN})"),
                "errors": [{"message": "Required 'compute.instances.list' permission", "domain": "global", "reason": "forbidden"}]
            }})))
            .expect(1)
            .mount(&server)
            .await;
        let error = error_of(&source_with(&server, dir.path(), &[], None)).await;
        assert!(
            error.contains(&format!("HTTP {status}"))
                && error.contains("roles/compute.viewer")
                && error.contains("credentials_file")
                && error.contains("<redacted>"),
            "{error}"
        );
    }
    // The token endpoint refuses the key.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let error = error_of(&source_with(&server, dir.path(), &[], None)).await;
    assert!(
        error.contains("access token for ipdrift@ipdrift-test.iam.gserviceaccount.com")
            && error.contains("Invalid JWT Signature")
            && !error.contains("eyJ"),
        "{error}"
    );
}

#[tokio::test]
async fn the_metadata_server_gives_the_token_without_a_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/token"))
        .and(header("metadata-flavor", "Google"))
        .respond_with(ResponseTemplate::new(200).insert_header("metadata-flavor", "Google").set_body_json(
            json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    on_page(None)
        .respond_with(ok(aggregated(vec![web(1)], None)))
        .expect(1)
        .mount(&server)
        .await;
    let host = server.uri().trim_start_matches("http://").to_string();
    let config = GcpConfig {
        project: PROJECT.into(),
        zones: vec![],
        filter: None,
        auth: GcpAuth {
            key_file: None,
            metadata_host: Some(host),
        },
        endpoint: Url::parse(&server.uri()).unwrap(),
    };
    let credentials = GcpCredentials::new(&config.auth, "inventory \"gce\"", fast()).unwrap();
    let source = GcpInventory::new("gce".into(), config, credentials, fast()).unwrap();
    assert_eq!(source.list().await.unwrap()[0].name, "web-01");
    assert!(!format!("{source:?}").contains(ACCESS_TOKEN));
}

#[test]
fn a_key_pasted_into_credentials_file_is_not_shown_back() {
    let pasted = KEY.replace('\n', "\\n").replace('"', "\\\"");
    let text = format!(
        "[[inventory]]\nname = \"gce\"\nkind = \"gcp\"\nproject = \"{PROJECT}\"\ncredentials_file = \"{pasted}\"\n"
    );
    let error = ipdrift::config::parse(&text, Path::new("/etc/ipdrift/ipdrift.toml"))
        .expect_err("a key is not a path")
        .to_string();
    assert!(
        error.contains("credentials_file") && error.contains("not shown"),
        "{error}"
    );
    assert!(
        !error.contains("MII") && !error.contains("PRIVATE"),
        "{error}"
    );

    let missing = "[[inventory]]\nname = \"gce\"\nkind = \"gcp\"\ncredentials_file = \"sa.json\"\nzone = \"x\"\n".to_string();
    let error = ipdrift::config::parse(&missing, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("project") && error.contains("does not take `zone`"),
        "{error}"
    );
}

/// The forecast: a scheduled maintenance that stops an instance with an ephemeral address.
fn with_maintenance(mut instance: Value, on_host_maintenance: &str) -> Value {
    instance["scheduling"]["onHostMaintenance"] = json!(on_host_maintenance);
    instance["upcomingMaintenance"] = json!({
        "type": "SCHEDULED", "canReschedule": true,
        "windowStartTime": "2030-01-15T08:00:00Z", "windowEndTime": "2030-01-15T12:00:00Z",
        "latestWindowStartTime": "2030-01-22T08:00:00Z", "maintenanceStatus": "PENDING"
    });
    instance
}

#[tokio::test]
async fn maintenance_is_an_event_that_changes_addresses_only_when_the_address_goes() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    on_page(None)
        .respond_with(ok(aggregated(
            vec![
                with_maintenance(web(1), "TERMINATE"),
                with_maintenance(web(2), "MIGRATE"),
                // Stopped for maintenance, but its address is reserved.
                with_maintenance(web(3), "TERMINATE"),
            ],
            None,
        )))
        .expect(1) // list and scheduled_events share one listing
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/compute/v1/projects/{PROJECT}/aggregated/addresses")))
        .respond_with(ok(json!({
            "kind": "compute#addressAggregatedList",
            "items": {
                "regions/europe-west1": {"addresses": [{"kind": "compute#address", "name": "web-03", "address": "34.76.0.3", "addressType": "EXTERNAL", "status": "IN_USE", "users": ["https://www.googleapis.com/compute/v1/projects/ipdrift-test/zones/europe-west1-b/instances/web-03"]}]},
                "regions/us-east1": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}}
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let source = source_with(&server, dir.path(), &[], None);
    let (listed, events) = tokio::join!(source.list(), source.scheduled_events());
    assert_eq!(listed.unwrap().len(), 3);
    let events = events.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let by_name = |n: u64| {
        events
            .iter()
            .find(|e| e.instance_id == (4_567_890_123_456_789_000u64 + n).to_string())
            .unwrap()
    };
    assert!(by_name(1).changes_addresses);
    assert_eq!(by_name(1).code, "scheduled-maintenance");
    assert_eq!(by_name(1).not_before, 1_894_694_400);
    assert!(
        !by_name(2).changes_addresses,
        "live migration keeps addresses"
    );
    assert!(!by_name(3).changes_addresses, "a static address is kept");
}

// --- the seed outage, with a gcp source feeding real BIND and HAProxy -----------------

use support::fleet::{self, Fleet, ZONE, describe, http_get, lb_public, web_private, web_public};

/// The fleet's instances of generation `g` as Compute Engine lists them.
fn fleet_page(fleet: &Fleet, g: u8, maintenance_on: Option<u8>) -> Value {
    let instances: Vec<Value> = fleet
        .instances_at(g)
        .iter()
        .map(|i| {
            let mut instance = json!({
                "kind": "compute#instance",
                "id": i["id"].as_str().unwrap().trim_start_matches("i-").replace('-', ""),
                "name": i["name"], "status": "RUNNING",
                "labels": i["tags"],
                "networkInterfaces": [{
                    "name": "nic0", "networkIP": i["private_ipv4"],
                    "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": i["public_ipv4"], "networkTier": "PREMIUM"}]
                }],
                "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": true}
            });
            if maintenance_on.is_some_and(|n| i["name"] == format!("web-0{n}")) {
                instance = with_maintenance(instance, "TERMINATE");
            }
            instance
        })
        .collect();
    aggregated(instances, None)
}

/// Points the fleet's source at the mock: a gcp inventory with a key file.
fn use_gcp_source(fleet: &Fleet, server: &str, notify: Option<&str>) {
    let key = write_key(fleet.dir.path(), server);
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    let mut config = config.replace(
        "kind = \"file\"\npath = \"instances.json\"\n",
        &format!(
            "kind = \"gcp\"\nproject = \"{PROJECT}\"\ncredentials_file = \"{}\"\nendpoint = \"{server}\"\n",
            key.display()
        ),
    );
    assert!(config.contains("kind = \"gcp\""));
    if let Some(url) = notify {
        config.push_str(&format!("\n[[notify]]\nurl = \"{url}\"\nkind = \"json\"\n"));
    }
    std::fs::write(fleet.config_path(), config).unwrap();
}

async fn serve_generation(server: &MockServer, page: Value) {
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(server)
        .await;
    on_page(None).respond_with(ok(page)).mount(server).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/compute/v1/projects/{PROJECT}/aggregated/addresses"
        )))
        .respond_with(ok(
            json!({"kind": "compute#addressAggregatedList", "items": {}}),
        ))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_dns_and_haproxy_after_every_gce_address_changed() {
    let server = MockServer::start().await;
    let mut fleet = Fleet::start();
    use_gcp_source(&fleet, &server.uri(), None);
    serve_generation(&server, fleet_page(&fleet, 1, None)).await;
    let diff = ipdrift(&fleet, &["diff"]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in sync at first:\n{}",
        describe(&diff)
    );

    // The provider's update: every instance has new addresses.
    fleet.move_web_servers_to(2);
    serve_generation(&server, fleet_page(&fleet, 2, None)).await;
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
    let again = ipdrift(&fleet, &["apply", "--output", "json"]).await;
    assert_eq!(
        json_of(&again)["changes"].as_array().map(Vec::len),
        Some(0),
        "{}",
        describe(&again)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_maintenance_shows_in_diff_metrics_and_a_webhook() {
    let server = MockServer::start().await;
    let receiver = support::webhook::Receiver::start();
    let fleet = Fleet::start();
    use_gcp_source(&fleet, &server.uri(), Some(&receiver.url));
    serve_generation(&server, fleet_page(&fleet, 1, Some(1))).await;
    let diff = ipdrift(&fleet, &["diff", "--output", "json"]).await;
    let forecast = json_of(&diff)["forecast"].clone();
    assert_eq!(
        forecast.as_array().map(Vec::len),
        Some(1),
        "{forecast:#}\n{}",
        describe(&diff)
    );
    assert_eq!(forecast[0]["name"], "web-01");
    assert_eq!(forecast[0]["code"], "scheduled-maintenance");
    assert_eq!(forecast[0]["not_before"], 1_894_694_400u64);
    assert_eq!(forecast[0]["records"][0], format!("ns1: web-01.{ZONE} A"));
    assert_eq!(forecast[0]["servers"][0], "lb-01: web/web-01");

    let config = fleet.config_path();
    let controller =
        tokio::task::spawn_blocking(move || support::controller::Controller::start_with(&config))
            .await
            .unwrap();
    let series = "ipdrift_scheduled_events{source=\"local\",instance=\"web01\",code=\"scheduled-maintenance\"}";
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
