//! `kind = "cloudflare"` against a stateful stand-in for Cloudflare's v4 API on loopback,
//! answering with the documented envelope (`{success, errors, messages, result,
//! result_info}`, developers.cloudflare.com/api/resources/dns/subresources/records/ — list
//! and batch). It serves at most 2 records per page whatever `per_page` asks, so every
//! listing here has several pages; it can be told to answer the next request with a 429
//! (Retry-After), a 500, a malformed body or a 403, or to reject a batch.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};

const ZONE: &str = "example.test.";
const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "Sn3lZJTBX6kkg7OdcBUAxOO963GEIyGQqnFTOFYY";
/// The most records the stand-in puts on one page.
const PAGE: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Fault {
    RateLimited,
    ServerError,
    Malformed,
    Forbidden,
    RejectBatch,
}

#[derive(Default)]
struct Cloudflare {
    records: Vec<Value>,
    next_id: u32,
    faults: VecDeque<Fault>,
    requests: Vec<String>,
    /// Records per page: at most `per_page`, at most this (default [`PAGE`]).
    page_size: Option<usize>,
}

type Shared = Arc<Mutex<Cloudflare>>;

fn query(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn envelope(result: Value, info: Option<Value>) -> Response {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = info {
        body["result_info"] = info;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The fault to answer with, if one is queued; checks the token.
fn gate(p: &mut Cloudflare, headers: &HeaderMap, what: String) -> Option<Response> {
    p.requests.push(what);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Some(error(
            StatusCode::BAD_REQUEST,
            6003,
            "Invalid request headers",
        ));
    }
    match p.faults.front().copied() {
        Some(Fault::RejectBatch) | None => None,
        Some(fault) => {
            p.faults.pop_front();
            Some(match fault {
                Fault::RateLimited => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1")],
                    json!({"success": false, "errors": [{"code": 10000, "message": "Rate limited"}]}).to_string(),
                )
                    .into_response(),
                Fault::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, 10000, "Internal error"),
                Fault::Malformed => "<html>upstream error</html>".into_response(),
                Fault::Forbidden => error(StatusCode::FORBIDDEN, 10000, "Authentication error"),
                Fault::RejectBatch => unreachable!("handled by the batch"),
            })
        }
    }
}

async fn zones(State(p): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(fault) = gate(&mut p, &headers, "GET /zones".into()) {
        return fault;
    }
    let q = query(&uri);
    let name = q.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone());
    let result = if name.as_deref() == Some("example.test") {
        json!([{"id": ZONE_ID, "name": "example.test", "status": "active"}])
    } else {
        json!([])
    };
    let count = result.as_array().unwrap().len();
    envelope(
        result,
        Some(
            json!({"page": 1, "per_page": 20, "count": count, "total_count": count, "total_pages": 1}),
        ),
    )
}

async fn list(
    State(p): State<Shared>,
    headers: HeaderMap,
    Path(zone): Path<String>,
    uri: Uri,
) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(fault) = gate(&mut p, &headers, "GET dns_records".into()) {
        return fault;
    }
    if zone != ZONE_ID {
        return error(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones/…, perhaps your object identifier is invalid?",
        );
    }
    let q = query(&uri);
    let page: usize = q
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let per_page: usize = q
        .iter()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100);
    let size = per_page.min(p.page_size.unwrap_or(PAGE));
    let total = p.records.len();
    let pages = total.div_ceil(size).max(1);
    let items: Vec<Value> = p
        .records
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let count = items.len();
    envelope(
        Value::Array(items),
        Some(
            json!({"page": page, "per_page": size, "count": count, "total_count": total, "total_pages": pages}),
        ),
    )
}

async fn batch(State(p): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut p = p.lock().unwrap();
    if let Some(fault) = gate(&mut p, &headers, "POST batch".into()) {
        return fault;
    }
    if matches!(p.faults.front(), Some(Fault::RejectBatch)) {
        p.faults.pop_front();
        // The whole batch is one transaction: one bad post rejects all of it.
        return error(
            StatusCode::BAD_REQUEST,
            81058,
            "posts[1]: An identical record already exists.",
        );
    }
    let Ok(batch) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
    };
    let list = |k: &str| batch[k].as_array().cloned().unwrap_or_default();
    for d in list("deletes") {
        p.records.retain(|r| r["id"] != d["id"]);
    }
    for patch in list("patches") {
        if let Some(r) = p.records.iter_mut().find(|r| r["id"] == patch["id"]) {
            for (k, v) in patch.as_object().unwrap() {
                r[k] = v.clone();
            }
        }
    }
    for mut post in list("posts") {
        p.next_id += 1;
        post["id"] = json!(format!("{:032x}", p.next_id + 1000));
        post["proxiable"] = json!(true);
        p.records.push(post);
    }
    envelope(
        json!({"deletes": [], "patches": [], "puts": [], "posts": []}),
        None,
    )
}

struct Server {
    url: String,
    state: Shared,
    _runtime: tokio::runtime::Runtime,
}

fn a(id: u32, name: &str, addr: &str, proxied: bool) -> Value {
    json!({"id": format!("{id:032x}"), "zone_id": ZONE_ID, "zone_name": "example.test", "name": name,
           "type": "A", "content": addr, "proxiable": true, "proxied": proxied, "ttl": 300,
           "comment": null, "tags": [], "created_on": "2026-01-01T05:20:00.12345Z",
           "modified_on": "2026-01-01T05:20:00.12345Z", "meta": {}})
}

impl Server {
    fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state: Shared = Arc::new(Mutex::new(Cloudflare {
            records: vec![
                a(1, "www.example.test", "127.0.1.1", false),
                a(2, "web-01.example.test", "127.0.1.11", false),
                a(3, "web-02.example.test", "127.0.1.12", false),
                a(4, "static.example.test", "192.0.2.99", false),
                a(5, "cdn.example.test", "192.0.2.80", true),
            ],
            ..Cloudflare::default()
        }));
        let app = Router::new()
            .route("/client/v4/zones", get(zones))
            .route("/client/v4/zones/{zone}/dns_records", get(list))
            .route("/client/v4/zones/{zone}/dns_records/batch", post(batch))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/client/v4", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server {
            url,
            state,
            _runtime: runtime,
        }
    }

    fn contents(&self, name: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .state
            .lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| r["name"] == name)
            .map(|r| r["content"].as_str().unwrap().to_string())
            .collect();
        found.sort();
        found
    }

    fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }
}

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn start(extra_rule: &str) -> Setup {
        let server = Server::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cf.token"), format!("{TOKEN}\n")).unwrap();
        let config = format!(
            r#"[controller]
timeout = "30s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "cf"
kind = "cloudflare"
zone = "{ZONE}"
token_file = "cf.token"
endpoint = "{url}"

[[record]]
dns = "cf"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "cf"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
{extra_rule}
"#,
            url = server.url
        );
        std::fs::write(dir.path().join("ipdrift.toml"), config).unwrap();
        let setup = Setup { server, dir };
        setup.instances(1, &[1, 2]);
        setup
    }

    fn instances(&self, g: u8, webs: &[u8]) {
        let mut all = vec![json!({
            "id": "i-lb", "name": "lb", "state": "running",
            "public_ipv4": format!("127.0.{g}.1"), "tags": {"role": "lb"},
        })];
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
}

fn changes(output: &std::process::Output) -> usize {
    let json: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)));
    json["changes"].as_array().unwrap().len()
}

#[test]
fn one_apply_repairs_the_seed_outage_in_one_batch_and_a_second_writes_nothing() {
    let setup = Setup::start("");
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    // 5 records at 2 a page: 3 pages.
    assert_eq!(
        setup.server.requests(),
        vec![
            "GET /zones",
            "GET dns_records",
            "GET dns_records",
            "GET dns_records"
        ]
    );

    setup.instances(2, &[1, 2]);
    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(changes(&apply), 3);
    assert_eq!(setup.server.contents("www.example.test"), vec!["127.0.2.1"]);
    assert_eq!(
        setup.server.contents("web-01.example.test"),
        vec!["127.0.2.11"]
    );
    assert_eq!(
        setup.server.contents("web-02.example.test"),
        vec!["127.0.2.12"]
    );
    assert_eq!(
        setup.server.contents("static.example.test"),
        vec!["192.0.2.99"]
    );
    let posts = setup
        .server
        .requests()
        .into_iter()
        .filter(|r| r == "POST batch")
        .count();
    assert_eq!(posts, 1, "the pass's changes go in one batch");

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));
    assert!(!setup.server.requests().contains(&"POST batch".to_string()));
}

#[test]
fn a_429_and_a_500_are_retried_and_the_pass_still_repairs() {
    let setup = Setup::start("");
    setup.instances(2, &[1, 2]);
    setup.server.fault(Fault::RateLimited);
    setup.server.fault(Fault::ServerError);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.server.contents("www.example.test"), vec!["127.0.2.1"]);
    let requests = setup.server.requests();
    assert_eq!(
        requests[..3],
        ["GET /zones", "GET /zones", "GET /zones"],
        "{requests:?}"
    );
}

#[test]
fn a_malformed_page_or_a_refused_token_is_an_error_naming_the_permission() {
    let setup = Setup::start("");
    setup.instances(2, &[1, 2]);
    setup.server.fault(Fault::Malformed);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    assert!(
        describe(&diff).contains("malformed response"),
        "{}",
        describe(&diff)
    );

    setup.server.fault(Fault::Forbidden);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(all.contains("403") && all.contains("Zone."), "{all}");
    assert!(!all.contains(TOKEN), "{all}");
    assert_eq!(setup.server.contents("www.example.test"), vec!["127.0.1.1"]);
}

#[test]
fn a_rejected_batch_changes_nothing_and_says_why() {
    let setup = Setup::start("");
    setup.instances(2, &[1, 2]);
    setup.server.fault(Fault::RejectBatch);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(
        all.contains("81058") && all.contains("identical record"),
        "{all}"
    );
    assert_eq!(setup.server.contents("www.example.test"), vec!["127.0.1.1"]);
    assert_eq!(
        setup.server.contents("web-01.example.test"),
        vec!["127.0.1.11"]
    );
}

#[test]
fn a_proxied_record_is_reported_and_not_overwritten() {
    let setup = Setup::start("");
    setup.instances(1, &[1, 2]);
    let config = std::fs::read_to_string(setup.dir.path().join("ipdrift.toml")).unwrap();
    let config = config.replace(
        &format!("name = \"www.{ZONE}\""),
        &format!("name = \"cdn.{ZONE}\""),
    );
    std::fs::write(setup.dir.path().join("ipdrift.toml"), config).unwrap();
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    assert!(describe(&apply).contains("proxied"), "{}", describe(&apply));
    assert_eq!(
        setup.server.contents("cdn.example.test"),
        vec!["192.0.2.80"]
    );
}

#[test]
fn a_rule_s_proxied_is_set_on_the_records_it_creates_which_stay_managed() {
    let setup = Setup::start(&format!(
        "\n[[record]]\ndns = \"cf\"\nname = \"origin.{ZONE}\"\nselect = {{ tags = {{ role = \"lb\" }} }}\naddress = \"public_ipv4\"\nproxied = true\n"
    ));
    let origin = |setup: &Setup| -> Vec<(String, bool, u64)> {
        let state = setup.server.state.lock().unwrap();
        state
            .records
            .iter()
            .filter(|r| r["name"] == "origin.example.test")
            .map(|r| {
                (
                    r["content"].as_str().unwrap().to_string(),
                    r["proxied"].as_bool().unwrap_or(false),
                    r["ttl"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        origin(&setup),
        vec![("127.0.1.1".to_string(), true, 1)],
        "created proxied, with Cloudflare's automatic TTL"
    );
    let owner = setup.server.contents("_ipdrift.origin.example.test");
    assert!(
        owner.len() == 1 && owner[0].contains("heritage=ipdrift"),
        "{owner:?}"
    );

    // The origin's address changes: ipdrift created it, so it repairs it, still proxied.
    setup.instances(2, &[1, 2]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(origin(&setup), vec![("127.0.2.1".to_string(), true, 1)]);
    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));

    // Anywhere but Cloudflare the key is an error.
    let config = std::fs::read_to_string(setup.dir.path().join("ipdrift.toml")).unwrap();
    let config = config.replacen(
        "kind = \"cloudflare\"",
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:1\"",
        1,
    );
    let config = config
        .lines()
        .filter(|l| !l.starts_with("token_file") && !l.starts_with("endpoint"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(setup.dir.path().join("ipdrift.toml"), config).unwrap();
    let check = setup.run(&["check-config"]);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    assert!(
        describe(&check).contains("proxied") && describe(&check).contains("only cloudflare"),
        "{}",
        describe(&check)
    );
}

#[test]
fn created_records_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start("policy = \"sync\"");
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        setup.server.contents("web-03.example.test"),
        vec!["127.0.1.13"]
    );
    let owner = setup.server.contents("_ipdrift.web-03.example.test");
    assert!(
        owner.len() == 1 && owner[0].contains("heritage=ipdrift"),
        "{owner:?}"
    );

    setup.instances(1, &[1]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(setup.server.contents("web-03.example.test").is_empty());
    assert!(
        setup
            .server
            .contents("_ipdrift.web-03.example.test")
            .is_empty()
    );
    assert_eq!(
        setup.server.contents("web-02.example.test"),
        vec!["127.0.1.12"]
    );
}

#[test]
fn a_pass_at_3_and_1000_record_sets_makes_the_same_calls() {
    for webs in [2u16, 999] {
        let setup = Setup::start("");
        {
            let mut p = setup.server.state.lock().unwrap();
            // Cloudflare's own page size for this listing: as many as asked for.
            p.page_size = Some(usize::MAX);
            p.records
                .retain(|r| !r["name"].as_str().unwrap().starts_with("web-"));
            for n in 1..=u32::from(webs) {
                p.records.push(a(
                    100 + n,
                    &format!("web-0{n}.example.test"),
                    &web_addr(1, n),
                    false,
                ));
            }
        }
        let mut all = vec![json!({"id": "i-lb", "name": "lb", "state": "running",
                                  "public_ipv4": "127.0.2.1", "tags": {"role": "lb"}})];
        all.extend((1..=u32::from(webs)).map(|n| {
            json!({"id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
                   "public_ipv4": web_addr(2, n), "tags": {"role": "web"}})
        }));
        std::fs::write(
            setup.dir.path().join("instances.json"),
            serde_json::to_string(&all).unwrap(),
        )
        .unwrap();
        let apply = setup.run(&["apply", "--output", "json"]);
        assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
        assert_eq!(changes(&apply), usize::from(webs) + 1);
        let requests = setup.server.requests();
        assert_eq!(
            requests,
            vec![
                "GET /zones",
                "GET dns_records",
                "GET dns_records",
                "POST batch",
                "GET dns_records"
            ],
            "at {} record sets: zone lookup, listing, listing for ids, one batch, read back",
            webs + 1
        );
        println!("{} record sets: {requests:?}", webs + 1);
    }
}

/// Web server N's address in generation `g`, up to N = 2 000.
fn web_addr(g: u8, n: u32) -> String {
    let n = n + 10;
    format!("127.{g}.{}.{}", n / 250, n % 250)
}
