//! `kind = "hetzner_dns"` against a stateful stand-in for the Hetzner Cloud API's Zones and
//! Zone RRSets on loopback, shaped like docs.hetzner.cloud's examples (`{"rrsets": […],
//! "meta": {"pagination": {…}}}`, names relative to the zone, `@` for the apex, TXT values
//! quoted, writes answered with an action that is `running` until it is asked about once).
//! It serves at most 2 RRsets a page, and can answer the next request with a 429
//! (Retry-After), a 500, a 401 or a malformed body, or hide an RRset from the next listing.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};

const ZONE: &str = "example.test";
const TOKEN: &str = "hX2k9c4J7mN1pQ5rT8vW0yZ3bD6fG9jL2nP5sU8xA1cE4hK7mR0tV3wY6zB9dF2g";
const PAGE: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Fault {
    RateLimited,
    ServerError,
    Unauthorized,
    Malformed,
    /// The next listing's last page leaves out one RRset its total counts.
    Partial,
}

#[derive(Default)]
struct Hetzner {
    rrsets: Vec<Value>,
    /// Action id → times asked about.
    actions: Vec<(u64, u32)>,
    faults: VecDeque<Fault>,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<Hetzner>>;

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply(
        status,
        json!({"error": {"code": code, "message": message, "details": {}}}),
    )
}

fn gate(p: &mut Hetzner, method: &Method, headers: &HeaderMap, what: String) -> Option<Response> {
    p.requests.push(what);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        ));
    }
    if method == Method::GET && matches!(p.faults.front(), Some(Fault::Partial)) {
        return None;
    }
    match p.faults.pop_front() {
        Some(Fault::RateLimited) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", "1"),
                    ("ratelimit-limit", "3600"),
                    ("ratelimit-remaining", "0"),
                    ("content-type", "application/json"),
                ],
                json!({"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached", "details": {}}}).to_string(),
            )
                .into_response(),
        ),
        Some(Fault::ServerError) => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Error",
        )),
        Some(Fault::Unauthorized) => Some(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("insufficient permissions for token {TOKEN}"),
        )),
        Some(Fault::Malformed) => Some(
            (StatusCode::OK, [("content-type", "text/html")], "<html>maintenance</html>")
                .into_response(),
        ),
        Some(Fault::Partial) | None => None,
    }
}

fn new_action(p: &mut Hetzner, command: &str) -> Value {
    let id = 9000 + p.actions.len() as u64;
    p.actions.push((id, 0));
    json!({"id": id, "command": command, "status": "running", "progress": 0,
           "started": "2026-12-02T10:00:00+00:00", "finished": null,
           "resources": [{"id": 42, "type": "zone"}], "error": null})
}

async fn zone(State(p): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &method, &headers, "GET zone".into()) {
        return refused;
    }
    reply(
        StatusCode::OK,
        json!({"zone": {"id": 42, "name": ZONE, "mode": "primary", "ttl": 3600, "status": "ok",
                         "labels": {}, "protection": {"delete": false}, "record_count": 7,
                         "created": "2025-10-07T10:00:00+00:00"}}),
    )
}

async fn list(State(p): State<Shared>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &method, &headers, "GET rrsets".into()) {
        return refused;
    }
    let page: usize = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let total = p.rrsets.len();
    let last = total.div_ceil(PAGE).max(1);
    let mut items: Vec<Value> = p
        .rrsets
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .cloned()
        .collect();
    if page == last && matches!(p.faults.front(), Some(Fault::Partial)) {
        p.faults.pop_front();
        items.pop();
    }
    reply(
        StatusCode::OK,
        json!({"rrsets": items, "meta": {"pagination": {
            "page": page, "per_page": PAGE,
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last { json!(page + 1) } else { Value::Null },
            "last_page": last, "total_entries": total}}}),
    )
}

fn rrset(name: &str, rtype: &str, ttl: Option<u64>, values: &[&str]) -> Value {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"value": v, "comment": ""}))
        .collect();
    json!({"id": format!("{name}/{rtype}"), "name": name, "type": rtype, "ttl": ttl,
           "labels": {}, "protection": {"change": false}, "records": records, "zone": 42})
}

async fn create(
    State(p): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (name, rtype) = (
        body["name"].as_str().unwrap_or("").to_string(),
        body["type"].as_str().unwrap_or("").to_string(),
    );
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &method, &headers, format!("POST {name}/{rtype}")) {
        return refused;
    }
    if p.rrsets
        .iter()
        .any(|r| r["id"] == format!("{name}/{rtype}"))
    {
        return error(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "RRSet already exists",
        );
    }
    let mut created = rrset(&name, &rtype, body["ttl"].as_u64(), &[]);
    created["records"] = body["records"].clone();
    p.rrsets.push(created.clone());
    let action = new_action(&mut p, "create_rrset");
    reply(
        StatusCode::CREATED,
        json!({"rrset": created, "action": action}),
    )
}

async fn rrset_action(
    State(p): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path((_, name, rtype, action)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(
        &mut p,
        &method,
        &headers,
        format!("{action} {name}/{rtype}"),
    ) {
        return refused;
    }
    let Some(found) = p
        .rrsets
        .iter_mut()
        .find(|r| r["id"] == format!("{name}/{rtype}"))
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "RRSet not found");
    };
    match action.as_str() {
        "set_records" => found["records"] = body["records"].clone(),
        "change_ttl" => found["ttl"] = body["ttl"].clone(),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such action"),
    }
    let action = new_action(&mut p, &action);
    reply(StatusCode::CREATED, json!({"action": action}))
}

async fn remove(
    State(p): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path((_, name, rtype)): Path<(String, String, String)>,
) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &method, &headers, format!("DELETE {name}/{rtype}")) {
        return refused;
    }
    let before = p.rrsets.len();
    p.rrsets.retain(|r| r["id"] != format!("{name}/{rtype}"));
    if p.rrsets.len() == before {
        return error(StatusCode::NOT_FOUND, "not_found", "RRSet not found");
    }
    let action = new_action(&mut p, "delete_rrset");
    reply(StatusCode::CREATED, json!({"action": action}))
}

/// `GET /v1/actions?id=…`: each action is `running` the first time it is asked about.
async fn actions(
    State(p): State<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &method, &headers, "GET actions".into()) {
        return refused;
    }
    let ids: Vec<u64> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let mut out = Vec::new();
    for (id, asked) in p.actions.iter_mut().filter(|(id, _)| ids.contains(id)) {
        *asked += 1;
        let status = if *asked > 1 { "success" } else { "running" };
        out.push(
            json!({"id": *id, "command": "set_records", "status": status,
                        "progress": if status == "success" { 100 } else { 50 },
                        "started": "2026-12-02T10:00:00+00:00", "finished": null,
                        "resources": [{"id": 42, "type": "zone"}], "error": null}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"actions": out, "meta": {"pagination": {"page": 1, "per_page": 25, "previous_page": null, "next_page": null, "last_page": 1, "total_entries": out.len()}}}),
    )
}

struct Setup {
    state: Shared,
    dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn start() -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state: Shared = Arc::new(Mutex::new(Hetzner {
            rrsets: vec![
                rrset(
                    "@",
                    "NS",
                    Some(86400),
                    &["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."],
                ),
                rrset("www", "A", Some(300), &["127.0.1.1"]),
                rrset("web-01", "A", None, &["127.0.1.11"]),
                rrset("web-02", "A", Some(300), &["127.0.1.12"]),
                rrset("static", "A", Some(300), &["192.0.2.99"]),
            ],
            ..Hetzner::default()
        }));
        let app = Router::new()
            .route("/v1/zones/{zone}", get(zone))
            .route("/v1/zones/{zone}/rrsets", get(list).post(create))
            .route("/v1/zones/{zone}/rrsets/{name}/{rtype}", delete(remove))
            .route(
                "/v1/zones/{zone}/rrsets/{name}/{rtype}/actions/{action}",
                post(rrset_action),
            )
            .route("/v1/actions", get(actions))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hcloud.token"), format!("{TOKEN}\n")).unwrap();
        let config = format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "hz"
kind = "hetzner_dns"
zone = "{ZONE}."
token_file = "hcloud.token"
endpoint = "{url}"

[[record]]
dns = "hz"
name = "www.{ZONE}."
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "hz"
name = "{{name}}.{ZONE}."
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
policy = "sync"
"#
        );
        std::fs::write(dir.path().join("ipdrift.toml"), config).unwrap();
        let setup = Setup {
            state,
            dir,
            _runtime: runtime,
        };
        setup.instances(1, &[1, 2]);
        setup
    }

    fn instances(&self, g: u8, webs: &[u8]) {
        let mut all = vec![
            json!({"id": "i-lb", "name": "lb", "state": "running", "public_ipv4": format!("127.0.{g}.1"), "tags": {"role": "lb"}}),
        ];
        all.extend(webs.iter().map(|n| {
            json!({"id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
                   "public_ipv4": format!("127.0.{g}.{}", 10 + n), "tags": {"role": "web"}})
        }));
        std::fs::write(
            self.dir.path().join("instances.json"),
            serde_json::to_string(&all).unwrap(),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        ipdrift(&self.dir.path().join("ipdrift.toml"), args)
    }

    fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    fn values(&self, name: &str, rtype: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut found: Vec<String> = state
            .rrsets
            .iter()
            .filter(|r| r["name"] == name && r["type"] == rtype)
            .flat_map(|r| r["records"].as_array().unwrap().clone())
            .map(|v| v["value"].as_str().unwrap().to_string())
            .collect();
        found.sort();
        found
    }

    fn ttl(&self, name: &str) -> Value {
        let state = self.state.lock().unwrap();
        state
            .rrsets
            .iter()
            .find(|r| r["name"] == name && r["type"] == "A")
            .map(|r| r["ttl"].clone())
            .unwrap_or(Value::Null)
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }
}

fn changes(output: &std::process::Output) -> usize {
    let json: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)));
    json["changes"].as_array().unwrap().len()
}

#[test]
fn one_apply_repairs_the_seed_outage_and_a_second_writes_nothing() {
    let setup = Setup::start();
    // web-01 has no TTL of its own: the zone's 3600 differs from the rule's 300.
    let first = setup.run(&["apply", "--output", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(changes(&first), 1, "{}", describe(&first));
    assert_eq!(setup.ttl("web-01"), json!(300));
    let requests = setup.requests();
    assert_eq!(
        requests.iter().filter(|r| *r == "GET rrsets").count() % 3,
        0,
        "5 RRsets at 2 a page, every listing whole: {requests:?}"
    );
    assert!(requests.contains(&"GET zone".to_string()), "{requests:?}");
    assert!(
        requests.contains(&"change_ttl web-01/A".to_string()),
        "{requests:?}"
    );

    // Every address changes; a 429 and a 500 on the way are waited out and retried.
    setup.instances(2, &[1, 2]);
    setup.fault(Fault::RateLimited);
    setup.fault(Fault::ServerError);
    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(changes(&apply), 3);
    assert_eq!(setup.values("www", "A"), vec!["127.0.2.1"]);
    assert_eq!(setup.values("web-01", "A"), vec!["127.0.2.11"]);
    assert_eq!(setup.values("web-02", "A"), vec!["127.0.2.12"]);
    assert_eq!(
        setup.values("static", "A"),
        vec!["192.0.2.99"],
        "an unmanaged record is untouched"
    );
    let requests = setup.requests();
    let mut writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET")).collect();
    writes.sort();
    assert_eq!(
        writes,
        [
            "set_records web-01/A",
            "set_records web-02/A",
            "set_records www/A"
        ],
        "one call per RRset: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r == "GET actions"),
        "the actions are waited for: {requests:?}"
    );

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));
    assert!(
        setup.requests().iter().all(|r| r.starts_with("GET")),
        "nothing written"
    );
}

#[test]
fn created_rrsets_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start();
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.values("web-03", "A"), vec!["127.0.1.13"]);
    let ownership = setup.values("_ipdrift.web-03", "TXT");
    assert!(
        ownership.len() == 1
            && ownership[0].starts_with("\"heritage=ipdrift,owner=ipdrift,inventory="),
        "quoted, as the API takes TXT values: {ownership:?}"
    );

    // web-03 and web-02 go; only web-03 was created by ipdrift.
    setup.instances(1, &[1]);
    let apply = setup.run(&["apply", "--force"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(setup.values("web-03", "A").is_empty());
    assert!(setup.values("_ipdrift.web-03", "TXT").is_empty());
    assert_eq!(
        setup.values("web-02", "A"),
        vec!["127.0.1.12"],
        "made by hand: never deleted"
    );
}

#[test]
fn a_refused_token_names_the_permission_and_never_the_token() {
    let setup = Setup::start();
    setup.fault(Fault::Unauthorized);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("Read permission") && all.contains("hz") && all.contains(ZONE),
        "{all}"
    );
    assert!(!all.contains(TOKEN) && !all.contains(&TOKEN[..20]), "{all}");
}

#[test]
fn malformed_and_partial_listings_are_errors_never_an_empty_zone() {
    for (fault, needle) in [
        (Fault::Malformed, "malformed response"),
        (Fault::Partial, "partial listing"),
    ] {
        let setup = Setup::start();
        setup.instances(2, &[1, 2]);
        setup.fault(fault);
        let apply = setup.run(&["apply"]);
        assert_ne!(apply.status.code(), Some(0), "{}", describe(&apply));
        let all = describe(&apply);
        assert!(
            all.contains(needle) && all.contains("Hetzner DNS"),
            "{needle}: {all}"
        );
        assert_eq!(
            setup.values("www", "A"),
            vec!["127.0.1.1"],
            "nothing written on a listing that failed"
        );
    }
}
