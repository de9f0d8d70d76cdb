//! `kind = "gcp_dns"` against a stateful stand-in for the Cloud DNS API v1 on loopback,
//! shaped like cloud.google.com/dns/docs/reference/rest/v1's examples:
//! `resourceRecordSets.list` (`{"kind": "dns#resourceRecordSetsListResponse", "rrsets":
//! […], "nextPageToken": …}`, 2 sets a page) and `changes.create`, applied atomically as
//! Cloud DNS does (a deletion must match the stored set exactly, an addition must not
//! exist yet), behind a service-account token from the stand-in's token endpoint.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};

const KEY: &str = include_str!("fixtures/gcp-service-account.json");
const ACCESS_TOKEN: &str = "ya29.c.b0AXv0zTPbFakeAccessTokenForTheStandIn0123456789";
const PROJECT: &str = "ipdrift-test";
const ZONE_ID: &str = "example-test";
const PAGE: usize = 2;

#[derive(Default)]
struct CloudDns {
    rrsets: Vec<Value>,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<CloudDns>>;

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {ACCESS_TOKEN}"))
}

fn refused() -> Response {
    reply(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
    )
}

async fn token(State(dns): State<Shared>, body: String) -> Response {
    dns.lock().unwrap().requests.push("POST token".into());
    if !body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

async fn list(State(dns): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let mut dns = dns.lock().unwrap();
    dns.requests.push("GET rrsets".into());
    if !authorized(&headers) {
        return refused();
    }
    let start: usize = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "pageToken")
        .and_then(|(_, v)| v.strip_prefix("page-").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let items: Vec<Value> = dns.rrsets.iter().skip(start).take(PAGE).cloned().collect();
    let mut body = json!({"kind": "dns#resourceRecordSetsListResponse", "rrsets": items});
    if start + PAGE < dns.rrsets.len() {
        body["nextPageToken"] = json!(format!("page-{}", start + PAGE));
    }
    reply(StatusCode::OK, body)
}

/// The fields Cloud DNS compares a deletion by.
fn identity(set: &Value) -> Value {
    json!({"name": set["name"], "type": set["type"], "ttl": set["ttl"], "rrdatas": set["rrdatas"]})
}

async fn change(State(dns): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut dns = dns.lock().unwrap();
    dns.requests.push("POST changes".into());
    if !authorized(&headers) {
        return refused();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": "Invalid JSON payload received."}}),
        );
    };
    let mut after = dns.rrsets.clone();
    for deletion in body["deletions"].as_array().into_iter().flatten() {
        let Some(at) = after.iter().position(|s| identity(s) == identity(deletion)) else {
            return reply(
                StatusCode::PRECONDITION_FAILED,
                json!({"error": {"code": 412, "message": format!("Precondition not met for 'entity.change.deletions[{}]'", deletion["name"]), "errors": [{"reason": "conditionNotMet"}]}}),
            );
        };
        after.remove(at);
    }
    for addition in body["additions"].as_array().into_iter().flatten() {
        if after
            .iter()
            .any(|s| s["name"] == addition["name"] && s["type"] == addition["type"])
        {
            return reply(
                StatusCode::CONFLICT,
                json!({"error": {"code": 409, "message": format!("The resource 'entity.change.additions[{}]' named '{}' already exists", addition["type"], addition["name"]), "errors": [{"reason": "alreadyExists"}]}}),
            );
        }
        let mut set = identity(addition);
        set["kind"] = json!("dns#resourceRecordSet");
        after.push(set);
    }
    dns.rrsets = after;
    reply(
        StatusCode::OK,
        json!({"kind": "dns#change", "id": "7", "status": "done", "startTime": "2026-12-02T20:00:00.000Z",
               "additions": body["additions"], "deletions": body["deletions"]}),
    )
}

fn rrset(name: &str, kind: &str, ttl: u32, rrdatas: &[&str]) -> Value {
    json!({"kind": "dns#resourceRecordSet", "name": name, "type": kind, "ttl": ttl, "rrdatas": rrdatas})
}

/// The stand-in with the seed's zone: SOA, NS, a hand-made `www` and `web-0N` (generation
/// 1) and an unmanaged `static`.
async fn start() -> (Shared, String) {
    let dns = Shared::default();
    dns.lock().unwrap().rrsets = vec![
        rrset(
            "example.test.",
            "SOA",
            21600,
            &[
                "ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300",
            ],
        ),
        rrset(
            "example.test.",
            "NS",
            21600,
            &[
                "ns-cloud-a1.googledomains.com.",
                "ns-cloud-a2.googledomains.com.",
            ],
        ),
        rrset("www.example.test.", "A", 300, &["192.0.2.1"]),
        rrset("web-01.example.test.", "A", 300, &["192.0.2.11"]),
        rrset("web-02.example.test.", "A", 300, &["192.0.2.12"]),
        rrset("static.example.test.", "A", 300, &["192.0.2.99"]),
    ];
    let base = format!("/dns/v1/projects/{PROJECT}/managedZones/{ZONE_ID}");
    let app = Router::new()
        .route("/token", post(token))
        .route(&format!("{base}/rrsets"), get(list))
        .route(&format!("{base}/changes"), post(change))
        .with_state(dns.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (dns, url)
}

/// instances.json at generation `g` (192.0.2.x for 1, 198.51.100.x for 2) and the config.
fn write_setup(dir: &std::path::Path, url: &str, g: u8) {
    let prefix = if g == 1 { "192.0.2" } else { "198.51.100" };
    let instances = json!([
        {"id": "i-lb", "name": "lb", "state": "running", "public_ipv4": format!("{prefix}.1"), "tags": {"role": "lb"}},
        {"id": "i-web-01", "name": "web-01", "state": "running", "public_ipv4": format!("{prefix}.11"), "tags": {"role": "web"}},
        {"id": "i-web-02", "name": "web-02", "state": "running", "public_ipv4": format!("{prefix}.12"), "tags": {"role": "web"}},
    ]);
    std::fs::write(dir.join("instances.json"), instances.to_string()).unwrap();
    let mut key: Value = serde_json::from_str(KEY).unwrap();
    key["token_uri"] = json!(format!("{url}/token"));
    std::fs::write(dir.join("sa.json"), key.to_string()).unwrap();
    let config = format!(
        r#"[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "clouddns"
kind = "gcp_dns"
zone = "example.test."
project = "{PROJECT}"
managed_zone = "{ZONE_ID}"
credentials_file = "sa.json"
endpoint = "{url}"

[[record]]
dns = "clouddns"
name = "www.example.test."
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "clouddns"
name = "{{name}}.example.test."
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
"#
    );
    std::fs::write(dir.join("ipdrift.toml"), config).unwrap();
}

fn addresses(dns: &Shared, name: &str) -> Vec<String> {
    dns.lock()
        .unwrap()
        .rrsets
        .iter()
        .filter(|s| s["name"] == name && s["type"] == "A")
        .flat_map(|s| {
            s["rrdatas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect()
}

async fn run(dir: &std::path::Path, args: &'static [&'static str]) -> std::process::Output {
    let config = dir.join("ipdrift.toml");
    tokio::task::spawn_blocking(move || ipdrift(&config, args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_the_seed_outage_and_a_second_writes_nothing() {
    let (dns, url) = start().await;
    let dir = tempfile::tempdir().unwrap();
    write_setup(dir.path(), &url, 1);
    let diff = run(dir.path(), &["diff"]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in sync at generation 1:\n{}",
        describe(&diff)
    );

    write_setup(dir.path(), &url, 2);
    let diff = run(dir.path(), &["diff"]).await;
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    assert_eq!(
        addresses(&dns, "www.example.test."),
        ["192.0.2.1"],
        "diff writes nothing"
    );

    dns.lock().unwrap().requests.clear();
    let apply = run(dir.path(), &["apply"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(addresses(&dns, "www.example.test."), ["198.51.100.1"]);
    assert_eq!(addresses(&dns, "web-01.example.test."), ["198.51.100.11"]);
    assert_eq!(addresses(&dns, "web-02.example.test."), ["198.51.100.12"]);
    assert_eq!(
        addresses(&dns, "static.example.test."),
        ["192.0.2.99"],
        "an unmanaged set is untouched"
    );
    let requests = dns.lock().unwrap().requests.clone();
    assert_eq!(
        requests.iter().filter(|r| *r == "POST changes").count(),
        1,
        "one atomic changes.create for the whole repair: {requests:?}"
    );

    let again = run(dir.path(), &["apply", "--output", "json"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        plan["changes"].as_array().map(Vec::len),
        Some(0),
        "{plan:#}"
    );
    let shown = describe(&again) + &describe(&apply);
    assert!(
        !shown.contains(ACCESS_TOKEN),
        "the access token is never shown"
    );
}
