//! `kind = "azure_dns"` against a stateful wiremock stand-in for Azure Resource Manager's
//! DNS record-set API (2018-05-01) and the Microsoft identity platform's token endpoint on
//! loopback. Bodies are shaped like the REST reference's examples: `RecordSetListResult`
//! (`value`, `nextLink` naming management.azure.com), `RecordSet` (`etag`,
//! `properties.TTL`, `ARecords`, `TXTRecords`, `targetResource`), `CloudError`. It serves at
//! most 2 record sets a page unless told otherwise, enforces `If-Match` / `If-None-Match`,
//! and can answer the next request with a fault.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::fleet::{describe, ipdrift};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ZONE: &str = "example.test";
const SUB: &str = "8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b";
const GROUP: &str = "dns-rg";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "3e1b5c7d-9f2a-4c6e-8b0d-1a2b3c4d5e6f";
const SECRET: &str = "Qm8Q~7rT2xYz0aBcDeFgHiJkLmNoPqRsTuVwXyZ01";
const ACCESS_TOKEN: &str =
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.azure-test-access-token.sig0123456789";

#[derive(Clone, Copy, Debug)]
enum Fault {
    RateLimited,
    ServerError,
    Malformed,
    Forbidden,
    /// Resource Manager refuses the access token itself.
    Unauthorized,
    /// Someone edits `www` before the next request: its etag changes.
    ConcurrentEdit,
    /// No fault for this request (to aim at a later one).
    Pass,
}

struct Arm {
    sets: Vec<Value>,
    next_etag: u64,
    faults: VecDeque<Fault>,
    requests: Vec<String>,
    page: usize,
}

type Shared = Arc<Mutex<Arm>>;

struct Stand(Shared);

fn base() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Network/dnsZones/{ZONE}"
    )
}

fn cloud_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"code": code, "message": message}}))
}

fn record_set(rtype: &str, rel: &str, etag: u64, properties: Value) -> Value {
    let fqdn = if rel == "@" {
        format!("{ZONE}.")
    } else {
        format!("{rel}.{ZONE}.")
    };
    let mut properties = properties;
    properties["fqdn"] = json!(fqdn);
    properties["provisioningState"] = json!("Succeeded");
    json!({
        "id": format!("{}/{rtype}/{rel}", base()),
        "name": rel,
        "type": format!("Microsoft.Network/dnszones/{rtype}"),
        "etag": format!("{etag:08x}-0000-0000-0000-000000000000"),
        "properties": properties,
    })
}

fn a(rel: &str, etag: u64, addrs: &[&str]) -> Value {
    let records: Vec<Value> = addrs.iter().map(|a| json!({"ipv4Address": a})).collect();
    record_set("A", rel, etag, json!({"TTL": 300, "ARecords": records}))
}

fn query(request: &Request, key: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Arm {
    fn etag(&mut self) -> u64 {
        self.next_etag += 1;
        self.next_etag
    }

    fn position(&self, rtype: &str, rel: &str) -> Option<usize> {
        self.sets.iter().position(|s| {
            s["name"] == rel
                && s["type"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .eq_ignore_ascii_case(rtype)
        })
    }

    fn list(&self, request: &Request) -> ResponseTemplate {
        let skip: usize = query(request, "$skipToken")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let top: usize = query(request, "$top")
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let per_page = top.min(self.page);
        let items: Vec<Value> = self
            .sets
            .iter()
            .skip(skip)
            .take(per_page)
            .cloned()
            .collect();
        let mut body = json!({"value": items});
        if skip + per_page < self.sets.len() {
            body["nextLink"] = json!(format!(
                "https://management.azure.com{}/recordsets?api-version=2018-05-01&$top={top}&$skipToken={}",
                base(),
                skip + per_page
            ));
        }
        ResponseTemplate::new(200).set_body_json(body)
    }

    fn put(&mut self, request: &Request, rtype: &str, rel: &str) -> ResponseTemplate {
        let existing = self.position(rtype, rel);
        if let Some(etag) = header(request, "if-match") {
            let matches = existing.is_some_and(|i| self.sets[i]["etag"] == etag);
            if !matches {
                return cloud_error(
                    412,
                    "PreconditionFailed",
                    &format!("The Record set {rel} has been modified (etag mismatch)."),
                );
            }
        }
        if header(request, "if-none-match").as_deref() == Some("*") && existing.is_some() {
            return cloud_error(
                412,
                "PreconditionFailed",
                &format!("The Record set {rel} exists already and hence cannot be created again."),
            );
        }
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(_) => return cloud_error(400, "BadRequest", "The request body is not JSON."),
        };
        let etag = self.etag();
        let set = record_set(rtype, rel, etag, body["properties"].clone());
        match existing {
            Some(i) => {
                self.sets[i] = set.clone();
                ResponseTemplate::new(200).set_body_json(set)
            }
            None => {
                self.sets.push(set.clone());
                ResponseTemplate::new(201).set_body_json(set)
            }
        }
    }

    fn delete(&mut self, request: &Request, rtype: &str, rel: &str) -> ResponseTemplate {
        let Some(i) = self.position(rtype, rel) else {
            return ResponseTemplate::new(204);
        };
        if header(request, "if-match").is_some_and(|etag| self.sets[i]["etag"] != etag) {
            return cloud_error(412, "PreconditionFailed", "etag mismatch");
        }
        self.sets.remove(i);
        ResponseTemplate::new(200)
    }
}

impl Respond for Stand {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut arm = self.0.lock().unwrap();
        let path = request.url.path().to_string();
        if path == format!("/{TENANT}/oauth2/v2.0/token") {
            arm.requests.push("POST token".into());
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
            let field = |k: &str| {
                form.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            if field("client_secret") != Some(SECRET) || field("client_id") != Some(CLIENT) {
                return ResponseTemplate::new(401).set_body_json(json!({
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided."
                }));
            }
            return ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": ACCESS_TOKEN
            }));
        }
        let Some(rest) = path.strip_prefix(&base()) else {
            return cloud_error(404, "NotFound", "no such path");
        };
        let rest = rest.trim_start_matches('/').to_string();
        let what = if rest == "recordsets" {
            format!("{} recordsets", request.method)
        } else {
            format!("{} {rest}", request.method)
        };
        arm.requests.push(what);
        if header(request, "authorization") != Some(format!("Bearer {ACCESS_TOKEN}")) {
            return cloud_error(401, "AuthenticationFailed", "Authentication failed.");
        }
        if query(request, "api-version").as_deref() != Some("2018-05-01") {
            return cloud_error(400, "InvalidApiVersionParameter", "api-version missing");
        }
        match arm.faults.pop_front() {
            Some(Fault::RateLimited) => {
                return cloud_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00.",
                )
                .insert_header("retry-after", "1");
            }
            Some(Fault::ServerError) => {
                return cloud_error(500, "InternalServerError", "An error has occurred.");
            }
            Some(Fault::Malformed) => {
                return ResponseTemplate::new(200)
                    .set_body_raw("<html><body>Gateway</body></html>", "text/html");
            }
            Some(Fault::Forbidden) => {
                return cloud_error(
                    403,
                    "AuthorizationFailed",
                    &format!(
                        "The client '{CLIENT}' with object id '...' does not have authorization to perform action 'Microsoft.Network/dnsZones/A/write' over scope '{}/A/www'.",
                        base()
                    ),
                );
            }
            Some(Fault::Unauthorized) => {
                return cloud_error(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                );
            }
            Some(Fault::ConcurrentEdit) => {
                let etag = arm.etag();
                if let Some(i) = arm.position("A", "www") {
                    arm.sets[i] = a("www", etag, &["203.0.113.77"]);
                }
            }
            Some(Fault::Pass) | None => {}
        }
        let parts: Vec<&str> = rest.split('/').collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["recordsets"]) => arm.list(request),
            ("PUT", [rtype, rel]) => arm.put(request, rtype, rel),
            ("DELETE", [rtype, rel]) => arm.delete(request, rtype, rel),
            _ => cloud_error(405, "MethodNotAllowed", "not served"),
        }
    }
}

struct Setup {
    state: Shared,
    dir: tempfile::TempDir,
    _server: MockServer,
    _runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn start(extra_rule: &str) -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let soa = record_set(
            "SOA",
            "@",
            1,
            json!({"TTL": 3600, "SOARecord": {"host": "ns1-01.azure-dns.com.", "email": "azuredns-hostmaster.microsoft.com", "serialNumber": 1, "refreshTime": 3600, "retryTime": 300, "expireTime": 2419200, "minimumTTL": 300}}),
        );
        let ns = record_set(
            "NS",
            "@",
            2,
            json!({"TTL": 172800, "NSRecords": [{"nsdname": "ns1-01.azure-dns.com."}, {"nsdname": "ns2-01.azure-dns.net."}]}),
        );
        let alias = record_set(
            "A",
            "cdn",
            8,
            json!({"TTL": 60, "targetResource": {"id": format!("/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Network/publicIPAddresses/cdn-ip")}, "ARecords": [{"ipv4Address": "192.0.2.80"}]}),
        );
        let state: Shared = Arc::new(Mutex::new(Arm {
            sets: vec![
                soa,
                ns,
                a("www", 3, &["127.0.1.1"]),
                a("web-01", 4, &[&web_addr(1, 1)]),
                a("web-02", 5, &[&web_addr(1, 2)]),
                a("static", 6, &["192.0.2.99"]),
                alias,
            ],
            next_etag: 100,
            faults: VecDeque::new(),
            requests: Vec::new(),
            page: 2,
        }));
        let server = runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(wiremock::matchers::any())
                .respond_with(Stand(state.clone()))
                .mount(&server)
                .await;
            server
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("azure.secret"), format!("{SECRET}\n")).unwrap();
        let url = server.uri();
        let config = format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "az"
kind = "azure_dns"
zone = "{ZONE}."
subscription_id = "{SUB}"
resource_group = "{GROUP}"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret_file = "azure.secret"
authority = "{url}"
endpoint = "{url}"

[[record]]
dns = "az"
name = "www.{ZONE}."
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = 300

[[record]]
dns = "az"
name = "{{name}}.{ZONE}."
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = 300
{extra_rule}
"#
        );
        std::fs::write(dir.path().join("ipdrift.toml"), config).unwrap();
        let setup = Setup {
            state,
            dir,
            _server: server,
            _runtime: runtime,
        };
        setup.instances(1, &[1, 2]);
        setup
    }

    fn instances(&self, g: u8, webs: &[u32]) {
        let mut all = vec![json!({"id": "i-lb", "name": "lb", "state": "running",
                                  "public_ipv4": format!("127.0.{g}.1"), "tags": {"role": "lb"}})];
        all.extend(webs.iter().map(|n| {
            json!({"id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
                   "public_ipv4": web_addr(g, *n), "tags": {"role": "web"}})
        }));
        std::fs::write(
            self.dir.path().join("instances.json"),
            serde_json::to_string(&all).unwrap(),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let output = ipdrift(&self.dir.path().join("ipdrift.toml"), args);
        let all = describe(&output);
        assert!(
            !all.contains(SECRET) && !all.contains(ACCESS_TOKEN),
            "a secret leaked: {all}"
        );
        output
    }

    /// The values of record set `rel` of `rtype`: addresses, or TXT texts.
    fn contents(&self, rtype: &str, rel: &str) -> Vec<String> {
        let arm = self.state.lock().unwrap();
        let Some(i) = arm.position(rtype, rel) else {
            return Vec::new();
        };
        let props = &arm.sets[i]["properties"];
        let mut values: Vec<String> = match rtype {
            "A" => props["ARecords"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["ipv4Address"].as_str().unwrap().to_string())
                .collect(),
            _ => props["TXTRecords"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r["value"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap())
                        .collect::<String>()
                })
                .collect(),
        };
        values.sort();
        values
    }

    fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }
}

/// Web server N's address in generation `g`, up to N = 2 000.
fn web_addr(g: u8, n: u32) -> String {
    let n = n + 10;
    format!("127.{g}.{}.{}", n / 250, n % 250)
}

fn changes(output: &std::process::Output) -> usize {
    let json: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)));
    json["changes"].as_array().unwrap().len()
}

#[test]
fn one_apply_repairs_the_seed_outage_and_a_second_writes_nothing() {
    let setup = Setup::start("");
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    assert_eq!(
        setup.requests(),
        [
            "POST token",
            "GET recordsets",
            "GET recordsets",
            "GET recordsets",
            "GET recordsets"
        ],
        "7 record sets at 2 a page, pages followed through nextLink"
    );

    // The provider's update: every address changes. The first read is throttled.
    setup.instances(2, &[1, 2]);
    setup.fault(Fault::RateLimited);
    let apply = setup.run(&["apply", "--output", "json"]);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "a 429 is waited out: {}",
        describe(&apply)
    );
    assert_eq!(changes(&apply), 3);
    assert_eq!(setup.contents("A", "www"), ["127.0.2.1"]);
    assert_eq!(setup.contents("A", "web-01"), [web_addr(2, 1)]);
    assert_eq!(setup.contents("A", "web-02"), [web_addr(2, 2)]);
    assert_eq!(
        setup.contents("A", "static"),
        ["192.0.2.99"],
        "an unmanaged record is untouched"
    );
    assert_eq!(
        setup.contents("A", "cdn"),
        ["192.0.2.80"],
        "nor is an alias"
    );
    let requests = setup.requests();
    let writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET")).collect();
    assert_eq!(
        writes,
        ["POST token", "PUT A/web-01", "PUT A/web-02", "PUT A/www"],
        "one PUT per record set: {requests:?}"
    );

    let again = setup.run(&["apply", "--output", "json"]);
    assert_eq!(changes(&again), 0, "{}", describe(&again));
    assert!(
        setup
            .requests()
            .iter()
            .all(|r| r == "GET recordsets" || r == "POST token"),
        "nothing written"
    );
}

#[test]
fn a_500_is_retried_and_a_malformed_page_or_refused_token_is_an_error() {
    let setup = Setup::start("");
    setup.instances(2, &[1, 2]);
    setup.fault(Fault::ServerError);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.contents("A", "www"), ["127.0.2.1"]);
    let requests = setup.requests();
    assert_eq!(
        requests[1..3],
        ["GET recordsets", "GET recordsets"],
        "{requests:?}"
    );

    setup.instances(3, &[1, 2]);
    setup.fault(Fault::Malformed);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("malformed response") && all.contains("Azure DNS zone example.test."),
        "{all}"
    );

    // A page after the first that fails is an error too, never a shorter zone.
    setup.fault(Fault::Pass);
    setup.fault(Fault::Malformed);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    assert!(
        describe(&diff).contains("Azure DNS page 2"),
        "{}",
        describe(&diff)
    );

    setup.fault(Fault::Forbidden);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(
        all.contains("403")
            && all.contains("AuthorizationFailed")
            && all.contains("DNS Zone Contributor"),
        "{all}"
    );
    setup.fault(Fault::Unauthorized);
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("401")
            && all.contains("InvalidAuthenticationToken")
            && all.contains("tenant_id/client_id"),
        "{all}"
    );
    assert_eq!(setup.contents("A", "www"), ["127.0.2.1"], "nothing written");
}

#[test]
fn a_refused_client_secret_names_the_app_and_never_the_secret() {
    let setup = Setup::start("");
    std::fs::write(
        setup.dir.path().join("azure.secret"),
        "Wr0ng~secretValue0123456789abcdefghijkl\n",
    )
    .unwrap();
    let diff = setup.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", describe(&diff));
    let all = describe(&diff);
    assert!(
        all.contains("AADSTS7000215") && all.contains(CLIENT) && !all.contains("Wr0ng~secretValue"),
        "{all}"
    );
}

#[test]
fn a_concurrent_edit_is_refused_with_412_and_not_overwritten() {
    let setup = Setup::start("");
    setup.instances(2, &[1, 2]);
    setup.state.lock().unwrap().page = 100;
    // The listing (one page) passes; someone edits www before the first write.
    setup.fault(Fault::Pass);
    setup.fault(Fault::ConcurrentEdit);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let all = describe(&apply);
    assert!(
        all.contains("412")
            && all.contains("changed since it was read")
            && all.contains("PUT A record set www"),
        "{all}"
    );
    assert_eq!(
        setup.contents("A", "www"),
        ["203.0.113.77"],
        "the concurrent change stands"
    );
    // The next pass reads the edit and repairs it.
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.contents("A", "www"), ["127.0.2.1"]);
}

#[test]
fn an_alias_record_set_is_reported_and_not_overwritten() {
    let setup = Setup::start("");
    let config = std::fs::read_to_string(setup.dir.path().join("ipdrift.toml")).unwrap();
    let config = config.replace(
        &format!("name = \"www.{ZONE}.\""),
        &format!("name = \"cdn.{ZONE}.\""),
    );
    std::fs::write(setup.dir.path().join("ipdrift.toml"), config).unwrap();
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    assert!(
        describe(&apply).contains("alias record set"),
        "{}",
        describe(&apply)
    );
    assert_eq!(setup.contents("A", "cdn"), ["192.0.2.80"]);
}

#[test]
fn created_records_carry_ownership_and_only_those_are_deleted() {
    let setup = Setup::start("policy = \"sync\"");
    setup.instances(1, &[1, 2, 3]);
    let apply = setup.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(setup.contents("A", "web-03"), [web_addr(1, 3)]);
    let owner = setup.contents("TXT", "_ipdrift.web-03");
    assert!(
        owner.len() == 1 && owner[0].starts_with("heritage=ipdrift,owner=ipdrift,inventory="),
        "{owner:?}"
    );
    let requests = setup.requests();
    assert!(
        requests.contains(&"PUT A/web-03".to_string())
            && requests.contains(&"PUT TXT/_ipdrift.web-03".to_string()),
        "{requests:?}"
    );

    // web-03 and web-02 go; only web-03 was created by ipdrift.
    setup.instances(1, &[1]);
    let apply = setup.run(&["apply", "--force"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(setup.contents("A", "web-03").is_empty());
    assert!(setup.contents("TXT", "_ipdrift.web-03").is_empty());
    assert_eq!(
        setup.contents("A", "web-02"),
        [web_addr(1, 2)],
        "made by hand: never deleted"
    );
}

#[test]
fn a_pass_at_3_and_1000_record_sets() {
    for webs in [2u32, 999] {
        let setup = Setup::start("");
        {
            let mut arm = setup.state.lock().unwrap();
            // Azure's own page size at $top=1000.
            arm.page = 1000;
            arm.sets.retain(|s| {
                let name = s["name"].as_str().unwrap();
                !name.starts_with("web-") && name != "static" && name != "cdn"
            });
            for n in 1..=webs {
                let set = a(
                    &format!("web-0{n}"),
                    u64::from(1000 + n),
                    &[&web_addr(1, n)],
                );
                arm.sets.push(set);
            }
        }
        setup.instances(2, &(1..=webs).collect::<Vec<_>>());
        let started = std::time::Instant::now();
        let apply = setup.run(&["apply", "--output", "json"]);
        let took = started.elapsed();
        assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
        assert_eq!(changes(&apply), webs as usize + 1);
        let requests = setup.requests();
        let count = |prefix: &str| requests.iter().filter(|r| r.starts_with(prefix)).count();
        let sets = webs as usize + 1;
        // SOA and NS besides: 3 + 2 sets fit one page, 1 000 + 2 take two.
        let pages = (sets + 2).div_ceil(1000);
        assert_eq!(count("POST token"), 1);
        assert_eq!(count("PUT A/"), sets, "one PUT per record set");
        assert_eq!(
            count("GET recordsets"),
            2 * pages,
            "the listing, then the read-back: {requests:?}"
        );
        println!(
            "{sets} record sets: {} requests ({} token, {} GET, {} PUT) in {took:?}",
            requests.len(),
            count("POST token"),
            count("GET recordsets"),
            count("PUT A/")
        );
    }
}

#[test]
fn check_config_names_missing_and_malformed_keys() {
    let text = format!(
        "[[dns]]\nname = \"az\"\nkind = \"azure_dns\"\nzone = \"{ZONE}.\"\nsubscription_id = \"{SUB}\"\nclient_secret_file = \"s\"\ntenant_id = \"{TENANT}\"\nclient_id = \"not-a-guid\"\nidentity_endpoint = \"http://imds.example/token\"\n"
    );
    let error = ipdrift::config::parse(&text, std::path::Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    for needle in ["resource_group", "client_id", "identity_endpoint"] {
        assert!(error.contains(needle), "{needle}: {error}");
    }
}
