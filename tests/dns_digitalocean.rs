//! `kind = "digitalocean_dns"` against a stateful stand-in for DigitalOcean's v2 domain
//! records API on loopback, shaped like docs.digitalocean.com/reference/api's examples
//! (`{"domain_records": […], "links": {"pages": {"next": …}}, "meta": {"total": …}}`,
//! names relative to the domain, `@` for the apex). It serves at most 2 records a page,
//! and can answer the next request with a 429 (Retry-After) or a 401.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};

const DOMAIN: &str = "example.test";
const TOKEN: &str = "dop_v1_5f0b1c3e8a7d6f2e4b9c0a1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f";
const PAGE: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Fault {
    RateLimited,
    Unauthorized,
}

#[derive(Default)]
struct DigitalOcean {
    records: Vec<Value>,
    next_id: u64,
    faults: VecDeque<Fault>,
    requests: Vec<String>,
}

type Shared = Arc<Mutex<DigitalOcean>>;

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn gate(p: &mut DigitalOcean, headers: &HeaderMap, what: String) -> Option<Response> {
    p.requests.push(what);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Some(reply(
            StatusCode::UNAUTHORIZED,
            json!({"id": "unauthorized", "message": "Unable to authenticate you"}),
        ));
    }
    match p.faults.pop_front() {
        Some(Fault::RateLimited) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1"), ("content-type", "application/json")],
                json!({"id": "too_many_requests", "message": "API Rate limit exceeded."})
                    .to_string(),
            )
                .into_response(),
        ),
        Some(Fault::Unauthorized) => Some(reply(
            StatusCode::UNAUTHORIZED,
            json!({"id": "unauthorized", "message": "Unable to authenticate you"}),
        )),
        None => None,
    }
}

async fn list(State(p): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &headers, "GET records".into()) {
        return refused;
    }
    let page: usize = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let total = p.records.len();
    let items: Vec<Value> = p
        .records
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .cloned()
        .collect();
    let mut body = json!({"domain_records": items, "links": {}, "meta": {"total": total}});
    if page * PAGE < total {
        body["links"] = json!({"pages": {"next": format!("https://api.digitalocean.com/v2/domains/{DOMAIN}/records?page={}&per_page=200", page + 1)}});
    }
    reply(StatusCode::OK, body)
}

async fn create(State(p): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(
        &mut p,
        &headers,
        format!(
            "POST {} {}",
            body["name"].as_str().unwrap_or(""),
            body["type"].as_str().unwrap_or("")
        ),
    ) {
        return refused;
    }
    p.next_id += 1;
    let record = json!({"id": 1000 + p.next_id, "type": body["type"], "name": body["name"], "data": body["data"],
                        "priority": null, "port": null, "ttl": body["ttl"], "weight": null, "flags": null, "tag": null});
    p.records.push(record.clone());
    reply(StatusCode::CREATED, json!({"domain_record": record}))
}

async fn update(
    State(p): State<Shared>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, u64)>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &headers, format!("PUT {id}")) {
        return refused;
    }
    let Some(record) = p.records.iter_mut().find(|r| r["id"] == id) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"id": "not_found", "message": "The resource you requested could not be found."}),
        );
    };
    record["data"] = body["data"].clone();
    record["ttl"] = body["ttl"].clone();
    let record = record.clone();
    reply(StatusCode::OK, json!({"domain_record": record}))
}

async fn remove(
    State(p): State<Shared>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, u64)>,
) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(refused) = gate(&mut p, &headers, format!("DELETE {id}")) {
        return refused;
    }
    p.records.retain(|r| r["id"] != id);
    StatusCode::NO_CONTENT.into_response()
}

fn a(id: u64, name: &str, addr: &str) -> Value {
    json!({"id": id, "type": "A", "name": name, "data": addr, "priority": null, "port": null, "ttl": 300, "weight": null, "flags": null, "tag": null})
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
        let state: Shared = Arc::new(Mutex::new(DigitalOcean {
            records: vec![
                json!({"id": 1, "type": "NS", "name": "@", "data": "ns1.digitalocean.com", "ttl": 1800}),
                a(2, "www", "127.0.1.1"),
                a(3, "web-01", "127.0.1.11"),
                a(4, "web-02", "127.0.1.12"),
                a(5, "static", "192.0.2.99"),
            ],
            ..DigitalOcean::default()
        }));
        let app = Router::new()
            .route("/v2/domains/{domain}/records", get(list).post(create))
            .route(
                "/v2/domains/{domain}/records/{id}",
                put(update).delete(remove),
            )
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("do.token"), format!("{TOKEN}\n")).unwrap();
        let config = format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "do"
kind = "digitalocean_dns"
zone = "{DOMAIN}."
token_file = "do.token"
endpoint = "{url}"

[[record]]
dns = "do"
name = "www.{DOMAIN}."
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "do"
name = "{{name}}.{DOMAIN}."
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

    fn data(&self, name: &str, rtype: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .state
            .lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| r["name"] == name && r["type"] == rtype)
            .map(|r| r["data"].as_str().unwrap().to_string())
            .collect();
        found.sort();
        found
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
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    assert_eq!(
        setup.requests(),
        vec!["GET records", "GET records", "GET records"],
        "5 records at 2 a page"
    );

    setup.instances(2, &[1, 2]);
    setup
        .state
        .lock()
        .unwrap()
        .faults
        .push_back(Fault::RateLimited);
    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "a 429 is waited out: {}",
        describe(&apply)
    );
    assert_eq!(changes(&apply), 3);
    assert_eq!(setup.data("www", "A"), vec!["127.0.2.1"]);
    assert_eq!(setup.data("web-01", "A"), vec!["127.0.2.11"]);
    assert_eq!(setup.data("web-02", "A"), vec!["127.0.2.12"]);
    assert_eq!(
        setup.data("static", "A"),
        vec!["192.0.2.99"],
        "an unmanaged record is untouched"
    );
    let puts = setup
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    assert_eq!(
        puts, 3,
        "each record is put in place, never deleted and re-created"
    );

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));
    assert!(
        setup.requests().iter().all(|r| r == "GET records"),
        "nothing written"
    );
}

#[test]
fn created_records_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start();
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.data("web-03", "A"), vec!["127.0.1.13"]);
    let ownership = setup.data("_ipdrift.web-03", "TXT");
    assert!(
        ownership.len() == 1
            && ownership[0].starts_with("heritage=ipdrift,owner=ipdrift,inventory="),
        "{ownership:?}"
    );

    // web-03 and web-02 go; only web-03 was created by ipdrift.
    setup.instances(1, &[1]);
    let apply = setup.run(&["apply", "--force"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(setup.data("web-03", "A").is_empty());
    assert!(setup.data("_ipdrift.web-03", "TXT").is_empty());
    assert_eq!(
        setup.data("web-02", "A"),
        vec!["127.0.1.12"],
        "made by hand: never deleted"
    );
}

#[test]
fn a_refused_token_is_an_error_naming_the_scope_and_never_the_token() {
    let setup = Setup::start();
    setup
        .state
        .lock()
        .unwrap()
        .faults
        .push_back(Fault::Unauthorized);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(all.contains("domain:read"), "{all}");
    assert!(!all.contains(TOKEN) && !all.contains(&TOKEN[..20]), "{all}");
}
