//! `kind = "webhook"` against a webhook provider written here after the published protocol
//! (external-dns `docs/tutorials/webhook-provider.md`, `provider/webhook/api/httpapi.go`):
//! no webhook provider could be installed from a package registry here. The server keeps
//! its records in memory, refuses requests without the protocol's media type (as
//! external-dns's own server does), answers GET / with the domain filter, `Vary:
//! Content-Type` and the media type, applies POST /records and answers 204, and counts
//! every request.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};

const MEDIA: &str = "application/external.dns.webhook+json;version=1";
const ZONE: &str = "example.test.";

#[derive(Default)]
struct Provider {
    endpoints: Vec<Value>,
    requests: Vec<String>,
    /// Answer POST /records with this status instead of applying.
    fail_apply: Option<StatusCode>,
}

type Shared = Arc<Mutex<Provider>>;

fn media(body: Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, MEDIA),
            (header::VARY, "Content-Type"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn accepts(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(MEDIA)
}

fn same(a: &Value, b: &Value) -> bool {
    let name = |e: &Value| {
        e["dnsName"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_string()
    };
    name(a) == name(b) && a["recordType"] == b["recordType"]
}

async fn negotiate(State(p): State<Shared>, headers: HeaderMap) -> Response {
    p.lock().unwrap().requests.push("GET /".into());
    if !accepts(&headers, header::ACCEPT) {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    }
    media(json!({"include": ["example.test"], "exclude": ["internal.example.test"]}))
}

async fn records(State(p): State<Shared>, headers: HeaderMap) -> Response {
    let mut p = p.lock().unwrap();
    p.requests.push("GET /records".into());
    if !accepts(&headers, header::ACCEPT) {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    }
    media(Value::Array(p.endpoints.clone()))
}

async fn apply(State(p): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut p = p.lock().unwrap();
    p.requests.push("POST /records".into());
    if !accepts(&headers, header::CONTENT_TYPE) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    if let Some(status) = p.fail_apply {
        return (status, "provider failed").into_response();
    }
    let Ok(changes) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let list = |key: &str| changes[key].as_array().cloned().unwrap_or_default();
    for gone in list("Delete").iter().chain(&list("UpdateOld")) {
        p.endpoints.retain(|e| !same(e, gone));
    }
    for new in list("Create").into_iter().chain(list("UpdateNew")) {
        p.endpoints.retain(|e| !same(e, &new));
        p.endpoints.push(new);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Adds a label to each endpoint, as providers that normalise do.
async fn adjust(State(p): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    p.lock()
        .unwrap()
        .requests
        .push("POST /adjustendpoints".into());
    if !accepts(&headers, header::CONTENT_TYPE) || !accepts(&headers, header::ACCEPT) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(Value::Array(mut endpoints)) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    for e in &mut endpoints {
        e["labels"] = json!({"adjusted-by": "test-provider"});
    }
    media(Value::Array(endpoints))
}

struct Server {
    url: String,
    state: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(endpoints: Vec<Value>) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state: Shared = Arc::new(Mutex::new(Provider {
            endpoints,
            ..Provider::default()
        }));
        let app = Router::new()
            .route("/", get(negotiate))
            .route("/records", get(records).post(apply))
            .route("/adjustendpoints", post(adjust))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server {
            url,
            state,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }

    fn targets(&self, name: &str, rtype: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .iter()
            .filter(|e| same(e, &json!({"dnsName": name, "recordType": rtype})))
            .flat_map(|e| e["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }
}

fn a(name: &str, addr: &str) -> Value {
    json!({"dnsName": name, "targets": [addr], "recordType": "A", "recordTTL": 300})
}

/// Web server N's public address in generation `g`: 127.G.x.y, N = 1 → 127.G.0.11 as in
/// the fleet, up to N = 2 000.
fn web_addr(g: u8, n: u16) -> String {
    let n = n + 10;
    format!("127.{g}.{}.{}", n / 250, n % 250)
}

fn web(g: u8, n: u16) -> Value {
    json!({
        "id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
        "public_ipv4": web_addr(g, n), "private_ipv4": format!("127.{g}.200.{}", n % 250),
        "tags": {"role": "web"},
    })
}

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn start(policy: &str) -> Setup {
        Setup::with_webs(policy, 2)
    }

    /// Like [`Setup::start`] with `webs` web servers `web-0N` at [`web_addr`].
    fn with_webs(policy: &str, webs: u16) -> Setup {
        let mut endpoints = vec![
            a("www.example.test", "127.0.1.1"),
            a("static.example.test", "192.0.2.99"),
            a("other.example.org", "192.0.2.50"),
        ];
        endpoints.extend((1..=webs).map(|n| a(&format!("web-0{n}.example.test"), &web_addr(1, n))));
        let server = Server::start(endpoints);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "hook"
kind = "webhook"
url = "{url}"
zone = "{ZONE}"

[[record]]
dns = "hook"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "hook"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
policy = "{policy}"
"#,
            url = server.url
        );
        std::fs::write(dir.path().join("ipdrift.toml"), config).unwrap();
        let setup = Setup { server, dir };
        setup.instances(1, &(1..=webs).collect::<Vec<_>>());
        setup
    }

    fn instances(&self, g: u8, webs: &[u16]) {
        let mut all = vec![json!({
            "id": "i-lb", "name": "lb", "state": "running",
            "public_ipv4": format!("127.0.{g}.1"), "private_ipv4": format!("127.0.{g}.2"),
            "tags": {"role": "lb"},
        })];
        all.extend(webs.iter().map(|n| web(g, *n)));
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
fn one_apply_repairs_the_seed_outage_and_a_second_writes_nothing() {
    let setup = Setup::start("upsert-only");
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    assert_eq!(setup.server.requests(), vec!["GET /", "GET /records"]);

    setup.instances(2, &[1, 2]);
    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(changes(&apply), 3, "{}", describe(&apply));
    assert_eq!(
        setup.server.targets("www.example.test", "A"),
        vec!["127.0.2.1"]
    );
    assert_eq!(
        setup.server.targets("web-01.example.test", "A"),
        vec![web_addr(2, 1)]
    );
    assert_eq!(
        setup.server.targets("web-02.example.test", "A"),
        vec![web_addr(2, 2)]
    );
    assert_eq!(
        setup.server.targets("static.example.test", "A"),
        vec!["192.0.2.99"],
        "a record no rule names is untouched"
    );
    let calls = setup.server.requests();
    assert_eq!(
        calls,
        vec![
            "GET /",
            "GET /records",
            "POST /adjustendpoints",
            "POST /records",
            "GET /records"
        ],
        "negotiate, read, adjust, one write, read back"
    );

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(
        changes(&again),
        0,
        "a second apply writes nothing: {}",
        describe(&again)
    );
    assert!(
        !setup
            .server
            .requests()
            .contains(&"POST /records".to_string())
    );
}

#[test]
fn created_records_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start("sync");
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        setup.server.targets("web-03.example.test", "A"),
        vec![web_addr(1, 3)]
    );
    let owner = setup.server.targets("_ipdrift.web-03.example.test", "TXT");
    assert_eq!(owner.len(), 1);
    assert!(owner[0].contains("heritage=ipdrift"), "{owner:?}");

    setup.instances(1, &[1]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(setup.server.targets("web-03.example.test", "A").is_empty());
    assert!(
        setup
            .server
            .targets("_ipdrift.web-03.example.test", "TXT")
            .is_empty()
    );
    assert_eq!(
        setup.server.targets("web-02.example.test", "A"),
        vec![web_addr(1, 2)],
        "a record ipdrift did not create is never deleted"
    );
}

#[test]
fn a_failed_write_or_listing_is_an_error_never_an_empty_zone() {
    let setup = Setup::start("sync");
    setup.state_mut(|p| p.fail_apply = Some(StatusCode::INTERNAL_SERVER_ERROR));
    setup.instances(2, &[1, 2]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(
        all.contains("hook") && all.contains("POST") && all.contains("500"),
        "{all}"
    );
    let posts = setup
        .server
        .requests()
        .into_iter()
        .filter(|r| r == "POST /records")
        .count();
    assert_eq!(posts, 1, "a POST that got a 5xx is not sent again");

    // A zone outside the provider's domain filter is refused at negotiation.
    let config = std::fs::read_to_string(setup.dir.path().join("ipdrift.toml")).unwrap();
    std::fs::write(
        setup.dir.path().join("ipdrift.toml"),
        config.replace(ZONE, "internal.example.test."),
    )
    .unwrap();
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    assert!(
        describe(&diff).contains("domain filter"),
        "{}",
        describe(&diff)
    );
}

impl Setup {
    fn state_mut(&self, change: impl FnOnce(&mut Provider)) {
        change(&mut self.server.state.lock().unwrap());
    }
}

#[test]
fn a_pass_at_3_and_1000_record_sets_is_the_same_five_requests() {
    for webs in [2, 999] {
        let setup = Setup::with_webs("upsert-only", webs);
        setup.instances(2, &(1..=webs).collect::<Vec<_>>());
        let apply = setup.run(&["apply", "--output", "json"]);
        assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
        assert_eq!(changes(&apply), usize::from(webs) + 1);
        assert_eq!(
            setup.server.requests(),
            vec![
                "GET /",
                "GET /records",
                "POST /adjustendpoints",
                "POST /records",
                "GET /records"
            ],
            "at {} record sets",
            webs + 1
        );
        assert_eq!(
            setup
                .server
                .targets(&format!("web-0{webs}.example.test"), "A"),
            vec![web_addr(2, webs)]
        );
        println!(
            "{} record sets: GET /, GET /records, POST /adjustendpoints, POST /records, GET /records",
            webs + 1
        );
    }
}
