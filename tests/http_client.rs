//! The shared cloud API client (`ipdrift::clients`) against wiremock servers on loopback
//! that answer like the DNS providers' documented APIs (Cloudflare's record endpoints and
//! result envelope, Azure DNS's `nextLink` listing, DigitalOcean's empty 204): writes with
//! JSON bodies, retries and which verbs get them, `Retry-After`, rate-limit budgets,
//! refused tokens, and listings read by page number or by next link.

use std::time::{Duration, Instant};

use ipdrift::clients::http::{ApiClient, Call, HttpOptions, READ_ONLY, RetryPolicy};
use ipdrift::clients::paging::{Listing, MAX_PAGES, NextPage, Page};
use ipdrift::clients::token::Token;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8xMjM0NTY3";
const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const RECORD: &str = "372e67954025e0ba6aaa6d586b9e0b59";
/// What a refused Cloudflare token is told.
const EDIT: &str = "the token must allow Zone.DNS:Edit";

/// Waits of milliseconds; `Retry-After` and used-up budgets capped at 300 ms.
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

fn client(options: HttpOptions) -> ApiClient {
    ApiClient::new(
        "Cloudflare",
        "dns target \"cf\"".into(),
        Token::new(TOKEN).unwrap(),
        options,
    )
    .unwrap()
}

fn url(server: &MockServer, path: &str) -> Url {
    Url::parse(&format!("{}{path}", server.uri())).unwrap()
}

fn records_path() -> String {
    format!("/client/v4/zones/{ZONE}/dns_records")
}

fn record_path() -> String {
    format!("/client/v4/zones/{ZONE}/dns_records/{RECORD}")
}

/// A record as Cloudflare's API reference shows it.
fn record(id: &str, name: &str, content: &str) -> Value {
    json!({
        "id": id, "zone_id": ZONE, "zone_name": "example.com", "name": name, "type": "A",
        "content": content, "proxiable": true, "proxied": false, "ttl": 3600,
        "settings": {}, "meta": {}, "comment": "managed by ipdrift", "tags": [],
        "created_on": "2014-01-01T05:20:00.12345Z", "modified_on": "2014-01-01T05:20:00.12345Z"
    })
}

/// Cloudflare's envelope around a result.
fn envelope(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn cloudflare_error(code: u32, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    success: bool,
    result: T,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Record {
    id: String,
    name: String,
    content: String,
}

fn new_record() -> Value {
    json!({"type": "A", "name": "www.example.com", "content": "198.51.100.4", "ttl": 3600, "proxied": false})
}

/// The verbs that carry a body, each with the path Cloudflare takes it on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verb {
    Post,
    Put,
    Patch,
    Delete,
    Get,
}

use Verb::{Delete, Get, Patch, Post, Put};

impl Verb {
    fn method(self) -> &'static str {
        match self {
            Post => "POST",
            Put => "PUT",
            Patch => "PATCH",
            Delete => "DELETE",
            Get => "GET",
        }
    }

    fn path(self) -> String {
        if self == Post {
            records_path()
        } else {
            record_path()
        }
    }

    /// Sends the verb (with [`new_record`] as the body where it has one).
    async fn send(
        self,
        api: &ApiClient,
        server: &MockServer,
        call: &Call<'_>,
    ) -> anyhow::Result<Value> {
        let url = url(server, &self.path());
        let body = new_record();
        match self {
            Post => api.post_json(&url, &body, call).await,
            Put => api.put_json(&url, &body, call).await,
            Patch => api.patch_json(&url, &body, call).await,
            Delete => api.delete(&url, call).await,
            Get => api.get_json(&url, call).await,
        }
    }
}

fn write_call() -> Call<'static> {
    Call::new("create record www.example.com. A", EDIT)
}

fn error_of(result: anyhow::Result<Value>) -> String {
    let error = format!("{:#}", result.expect_err("the call should fail"));
    assert!(!error.contains(TOKEN), "the token leaked into: {error}");
    assert!(
        error.starts_with("dns target \"cf\": Cloudflare "),
        "{error}"
    );
    error
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn writes_send_their_json_body_with_the_token() {
    for verb in [Post, Put, Patch] {
        let server = MockServer::start().await;
        Mock::given(method(verb.method()))
            .and(path(verb.path()))
            .and(bearer_token(TOKEN))
            .and(header("content-type", "application/json"))
            .and(header("accept", "application/json"))
            .and(body_json(new_record()))
            .respond_with(ResponseTemplate::new(200).set_body_json(envelope(record(
                RECORD,
                "www.example.com",
                "198.51.100.4",
            ))))
            .expect(1)
            .mount(&server)
            .await;
        let api = client(fast());
        let url = url(&server, &verb.path());
        let call = write_call();
        let answer: Envelope<Record> = match verb {
            Post => api.post_json(&url, &new_record(), &call).await,
            Put => api.put_json(&url, &new_record(), &call).await,
            _ => api.patch_json(&url, &new_record(), &call).await,
        }
        .unwrap();
        assert!(answer.success, "{verb:?}");
        assert_eq!(
            answer.result,
            Record {
                id: RECORD.into(),
                name: "www.example.com".into(),
                content: "198.51.100.4".into()
            },
            "{verb:?}"
        );
    }
}

#[tokio::test]
async fn a_delete_takes_an_empty_answer_or_a_json_one() {
    let server = MockServer::start().await;
    // DigitalOcean answers a deleted record with 204 and no body.
    Mock::given(method("DELETE"))
        .and(path("/v2/domains/example.com/records/3352896"))
        .and(bearer_token(TOKEN))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // Cloudflare with the deleted record's id.
    Mock::given(method("DELETE"))
        .and(path(record_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({"id": RECORD}))))
        .expect(1)
        .mount(&server)
        .await;
    let api = client(fast());
    let call = Call::new("delete record www.example.com. A", EDIT);
    let () = api
        .delete(
            &url(&server, "/v2/domains/example.com/records/3352896"),
            &call,
        )
        .await
        .unwrap();
    let deleted: Envelope<Value> = api
        .delete(&url(&server, &record_path()), &call)
        .await
        .unwrap();
    assert_eq!(deleted.result["id"], RECORD);
    // An answer the caller needs but did not get is an error, not a default.
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let e = api
        .delete::<Envelope<Value>>(&url(&server, &record_path()), &call)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("malformed response") && e.contains("the body is empty"),
        "{e}"
    );
}

#[tokio::test]
async fn a_429_is_retried_for_every_verb_after_its_retry_after() {
    for verb in [Post, Put, Patch, Delete] {
        let server = MockServer::start().await;
        Mock::given(method(verb.method()))
            .and(path(verb.path()))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(cloudflare_error(
                        971,
                        "Please wait and consider throttling your request speed",
                    )),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method(verb.method()))
            .and(path(verb.path()))
            .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({"id": RECORD}))))
            .mount(&server)
            .await;
        let started = Instant::now();
        let answer = verb
            .send(&client(fast()), &server, &write_call())
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(answer["result"]["id"], RECORD, "{verb:?}");
        assert_eq!(requests(&server).await, 2, "{verb:?}");
        // Retry-After: 1 capped at 300 ms — far longer than the 1 ms backoff.
        assert!(
            waited >= Duration::from_millis(280),
            "{verb:?} waited {waited:?}"
        );
    }
}

#[tokio::test]
async fn retry_after_may_be_an_http_date() {
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .unwrap();
    let date = (time::OffsetDateTime::now_utc() + Duration::from_secs(3))
        .format(&format)
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", date.as_str()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({"id": RECORD}))))
        .mount(&server)
        .await;
    let started = Instant::now();
    Post.send(&client(fast()), &server, &write_call())
        .await
        .unwrap();
    let waited = started.elapsed();
    // Two or three seconds away, capped at 300 ms; unread, it would be the 1 ms backoff.
    assert!(
        waited >= Duration::from_millis(280),
        "{date}: waited {waited:?}"
    );
}

#[tokio::test]
async fn a_server_error_is_retried_only_for_idempotent_verbs() {
    for verb in [Get, Put, Delete] {
        let server = MockServer::start().await;
        Mock::given(method(verb.method()))
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream hiccup"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method(verb.method()))
            .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({"id": RECORD}))))
            .mount(&server)
            .await;
        let answer = verb
            .send(&client(fast()), &server, &write_call())
            .await
            .unwrap();
        assert_eq!(answer["result"]["id"], RECORD, "{verb:?}");
        assert_eq!(requests(&server).await, 2, "{verb:?}");
    }
    // A POST or PATCH may have been carried out before the 5xx: sending it again could
    // create a second record.
    for verb in [Post, Patch] {
        let server = MockServer::start().await;
        Mock::given(method(verb.method()))
            .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"))
            .mount(&server)
            .await;
        let error = error_of(verb.send(&client(fast()), &server, &write_call()).await);
        assert_eq!(requests(&server).await, 1, "{verb:?}");
        assert!(
            error.contains(&format!("({} {}", verb.method(), server.uri()))
                && error.contains("HTTP 502 Bad Gateway: \"<html>Bad gateway</html>\"")
                && error.contains(&format!(
                    "not retried: the {} may have been carried out all the same",
                    verb.method()
                )),
            "{verb:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_server_error_that_persists_gives_up_after_the_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(cloudflare_error(10000, "service unavailable")),
        )
        .expect(3)
        .mount(&server)
        .await;
    let error = error_of(Put.send(&client(fast()), &server, &write_call()).await);
    assert!(
        error.contains(
            "HTTP 503 Service Unavailable: 10000: service unavailable; gave up after 3 attempts"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_refused_token_names_the_permission_and_is_never_shown() {
    for (status, reason) in [(401, "Unauthorized"), (403, "Forbidden")] {
        let server = MockServer::start().await;
        // A provider that echoes the token back: it must not reach the error.
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(cloudflare_error(
                    10000,
                    &format!("Authentication error for {TOKEN}"),
                )),
            )
            .mount(&server)
            .await;
        let error = error_of(Post.send(&client(fast()), &server, &write_call()).await);
        assert_eq!(requests(&server).await, 1, "not retried");
        assert_eq!(
            error,
            format!(
                "dns target \"cf\": Cloudflare create record www.example.com. A (POST {}{}): \
                 the API token was rejected (HTTP {status} {reason}: 10000: Authentication error for <redacted>); \
                 check token_env/token_file (the token must allow Zone.DNS:Edit)",
                server.uri(),
                records_path()
            )
        );
    }
}

#[tokio::test]
async fn other_client_errors_quote_the_provider_and_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(cloudflare_error(81057, "Record already exists.")),
        )
        .mount(&server)
        .await;
    let error = error_of(Post.send(&client(fast()), &server, &write_call()).await);
    assert_eq!(requests(&server).await, 1);
    assert!(
        error.ends_with("HTTP 400 Bad Request: 81057: Record already exists."),
        "{error}"
    );
}

#[tokio::test]
async fn a_wait_past_the_deadline_ends_the_call_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "5"))
        .mount(&server)
        .await;
    let mut options = fast();
    options.retry.retry_after_cap = Duration::from_secs(60);
    let call = write_call().until(tokio::time::Instant::now() + Duration::from_millis(500));
    let started = Instant::now();
    let error = error_of(Put.send(&client(options), &server, &call).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited {:?} for a wait past the deadline",
        started.elapsed()
    );
    assert_eq!(requests(&server).await, 1);
    assert!(
        error.contains("rate limited (HTTP 429 Too Many Requests); gave up after 1 attempt: waiting 5s for another would pass the time limit"),
        "{error}"
    );
}

#[tokio::test]
async fn a_used_up_budget_delays_the_next_request() {
    let unix_in = |seconds: u64| {
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + seconds)
            .to_string()
    };
    let exhausted: [Vec<(&str, String)>; 3] = [
        // DigitalOcean and Hetzner: a Unix time.
        vec![
            ("ratelimit-limit", "5000".into()),
            ("ratelimit-remaining", "0".into()),
            ("ratelimit-reset", unix_in(3)),
        ],
        vec![
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", unix_in(3)),
        ],
        // Cloudflare: seconds to the reset.
        vec![("ratelimit", "\"default\";r=0;t=2".into())],
    ];
    let mut options = fast();
    options.retry.retry_after_cap = Duration::from_secs(1);
    for headers in exhausted {
        let server = MockServer::start().await;
        let mut answer = ResponseTemplate::new(200).set_body_json(envelope(json!([])));
        for (name, value) in &headers {
            answer = answer.insert_header(*name, value.as_str());
        }
        Mock::given(method("GET"))
            .and(query_param("page", "1"))
            .respond_with(answer)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(query_param("page", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
            .mount(&server)
            .await;
        let api = client(options);
        let call = Call::new("records", READ_ONLY);
        let _: Value = api
            .get_json(&url(&server, "/records?page=1"), &call)
            .await
            .unwrap();
        let started = Instant::now();
        let _: Value = api
            .get_json(&url(&server, "/records?page=2"), &call)
            .await
            .unwrap();
        let waited = started.elapsed();
        // Two or three seconds to the reset, capped at one.
        assert!(
            waited >= Duration::from_millis(950),
            "{headers:?}: waited {waited:?}"
        );
        assert_eq!(requests(&server).await, 2, "{headers:?}");
    }
}

/// One page of Cloudflare's `GET /zones/{zone}/dns_records`.
#[derive(Debug, Deserialize)]
struct CloudflarePage {
    result: Vec<Record>,
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    page: u32,
    total_pages: u32,
    total_count: u64,
}

fn cloudflare_listing() -> Listing<'static, Record> {
    Listing {
        noun: "record",
        next_field: "result_info.page",
        narrow: Some("zone"),
        needs: "the token must allow Zone.DNS:Read",
        id: |r: &Record| r.id.as_str(),
    }
}

fn read_cloudflare(body: CloudflarePage, _: &Url) -> Result<Page<Record>, String> {
    let info = body.result_info.ok_or("result_info is missing")?;
    Ok(Page {
        items: body.result,
        next: (info.page < info.total_pages).then(|| NextPage::Number(info.page + 1)),
        total: Some(info.total_count),
    })
}

fn cloudflare_page(records: Vec<Value>, page: u32, total_pages: u32, total_count: u64) -> Value {
    json!({
        "success": true, "errors": [], "messages": [],
        "result": records,
        "result_info": {"page": page, "per_page": 2, "count": 2, "total_count": total_count, "total_pages": total_pages}
    })
}

fn numbered_url(server: &MockServer) -> impl Fn(u32) -> Url {
    let base = url(server, &records_path());
    move |page| {
        let mut url = base.clone();
        url.query_pairs_mut()
            .append_pair("page", &page.to_string())
            .append_pair("per_page", "2");
        url
    }
}

/// A mock for page `page` of the record listing.
fn cloudflare_mock(page: u32, response: ResponseTemplate) -> Mock {
    Mock::given(method("GET"))
        .and(path(records_path()))
        .and(query_param("page", page.to_string()))
        .and(bearer_token(TOKEN))
        .respond_with(response)
}

#[tokio::test]
async fn a_page_number_listing_is_read_to_the_end() {
    let server = MockServer::start().await;
    let pages = [
        vec![
            record("a1", "a.example.com", "192.0.2.1"),
            record("a2", "b.example.com", "192.0.2.2"),
        ],
        vec![
            record("a3", "c.example.com", "192.0.2.3"),
            record("a4", "d.example.com", "192.0.2.4"),
        ],
        vec![record("a5", "e.example.com", "192.0.2.5")],
    ];
    for (i, records) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        cloudflare_mock(
            page,
            ResponseTemplate::new(200).set_body_json(cloudflare_page(records, page, 3, 5)),
        )
        .expect(1)
        .mount(&server)
        .await;
    }
    let list = client(fast())
        .list_pages(
            &cloudflare_listing(),
            numbered_url(&server),
            read_cloudflare,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = list.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3", "a4", "a5"]);
    assert_eq!(list[4].content, "192.0.2.5");
}

#[tokio::test]
async fn a_failed_middle_page_fails_the_listing() {
    let server = MockServer::start().await;
    cloudflare_mock(
        1,
        ResponseTemplate::new(200).set_body_json(cloudflare_page(
            vec![record("a1", "a.example.com", "192.0.2.1")],
            1,
            3,
            3,
        )),
    )
    .mount(&server)
    .await;
    cloudflare_mock(
        2,
        ResponseTemplate::new(503).set_body_json(cloudflare_error(10000, "service unavailable")),
    )
    .expect(3)
    .mount(&server)
    .await;
    cloudflare_mock(
        3,
        ResponseTemplate::new(200).set_body_json(cloudflare_page(
            vec![record("a3", "c.example.com", "192.0.2.3")],
            3,
            3,
            3,
        )),
    )
    .expect(0)
    .mount(&server)
    .await;
    let result = client(fast())
        .list_pages(
            &cloudflare_listing(),
            numbered_url(&server),
            read_cloudflare,
        )
        .await;
    let error = format!("{:#}", result.expect_err("never a shorter list"));
    assert!(!error.contains(TOKEN), "{error}");
    assert!(
        error.starts_with("dns target \"cf\": Cloudflare page 2 (GET ")
            && error.contains(
                "HTTP 503 Service Unavailable: 10000: service unavailable; gave up after 3 attempts"
            ),
        "{error}"
    );
}

#[tokio::test]
async fn pages_that_are_malformed_go_back_or_never_end_are_errors() {
    // The reader refuses the page.
    let server = MockServer::start().await;
    cloudflare_mock(
        1,
        ResponseTemplate::new(200)
            .set_body_json(json!({"success": true, "errors": [], "messages": [], "result": []})),
    )
    .mount(&server)
    .await;
    let api = client(fast());
    let error = api
        .list_pages(
            &cloudflare_listing(),
            numbered_url(&server),
            read_cloudflare,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Cloudflare page 1 (GET ")
            && error.ends_with("): malformed response: result_info is missing"),
        "{error}"
    );

    // Page 2 points back to page 1.
    let server = MockServer::start().await;
    cloudflare_mock(
        1,
        ResponseTemplate::new(200).set_body_json(cloudflare_page(vec![], 1, 3, 0)),
    )
    .mount(&server)
    .await;
    let mut back = cloudflare_page(vec![], 2, 3, 0);
    back["result_info"]["page"] = json!(0);
    cloudflare_mock(2, ResponseTemplate::new(200).set_body_json(back))
        .mount(&server)
        .await;
    let error = api
        .list_pages(
            &cloudflare_listing(),
            numbered_url(&server),
            read_cloudflare,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Cloudflare page 2 (GET ")
            && error.ends_with("malformed response: result_info.page goes back to page 1"),
        "{error}"
    );

    // A listing that announces more pages than any real one has.
    let server = MockServer::start().await;
    let huge = cloudflare_page(vec![], MAX_PAGES, MAX_PAGES + 5, 0);
    cloudflare_mock(1, ResponseTemplate::new(200).set_body_json(huge))
        .expect(1)
        .mount(&server)
        .await;
    let error = api
        .list_pages(
            &cloudflare_listing(),
            numbered_url(&server),
            read_cloudflare,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(&format!(
            "the listing has more than {MAX_PAGES} pages; narrow it with `zone`"
        )),
        "{error}"
    );
}

/// One page of Azure DNS's `GET …/dnsZones/{zone}/all`: the record sets and, while more
/// follow, the absolute URL of the next page.
#[derive(Debug, Deserialize)]
struct AzurePage {
    value: Vec<AzureRecordSet>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AzureRecordSet {
    id: String,
    name: String,
}

const AZURE_PATH: &str =
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/dnsZones/example.com/all";

fn azure_listing() -> Listing<'static, AzureRecordSet> {
    Listing {
        noun: "record set",
        next_field: "nextLink",
        narrow: None,
        needs: READ_ONLY,
        id: |r: &AzureRecordSet| r.id.as_str(),
    }
}

fn read_azure(body: AzurePage, _: &Url) -> Result<Page<AzureRecordSet>, String> {
    let next = match body.next_link {
        None => None,
        Some(link) => {
            Some(NextPage::Url(Url::parse(&link).map_err(|e| {
                format!("nextLink {link:?} is not a URL: {e}")
            })?))
        }
    };
    Ok(Page {
        items: body.value,
        next,
        total: None,
    })
}

fn azure_set(name: &str) -> Value {
    json!({
        "id": format!("{}/A/{name}", AZURE_PATH.trim_end_matches("/all")),
        "name": name, "type": "Microsoft.Network/dnszones/A", "etag": "00000000-0000-0000-0000-000000000000",
        "properties": {"TTL": 3600, "fqdn": format!("{name}.example.com."), "ARecords": [{"ipv4Address": "192.0.2.1"}]}
    })
}

fn azure_first_url(server: &MockServer) -> impl Fn(u32) -> Url {
    let url = url(
        server,
        &format!("{AZURE_PATH}?api-version=2018-05-01&$top=2"),
    );
    move |_| url.clone()
}

#[tokio::test]
async fn a_next_link_listing_follows_the_links() {
    let server = MockServer::start().await;
    let link = |token: &str| {
        format!(
            "{}{AZURE_PATH}?api-version=2018-05-01&$top=2&$skipToken={token}",
            server.uri()
        )
    };
    Mock::given(method("GET"))
        .and(path(AZURE_PATH))
        .and(wiremock::matchers::query_param_is_missing("$skipToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"value": [azure_set("a"), azure_set("b")], "nextLink": link("p2")}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(AZURE_PATH))
        .and(query_param("$skipToken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [azure_set("c")]})))
        .expect(1)
        .mount(&server)
        .await;
    let list = client(fast())
        .list_pages(&azure_listing(), azure_first_url(&server), read_azure)
        .await
        .unwrap();
    let names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn next_links_elsewhere_or_back_are_not_followed() {
    // A link to another server: the token would go with it.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(AZURE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [azure_set("a")],
            "nextLink": "https://collector.example/all?$skipToken=p2"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let api = client(fast());
    let error = api
        .list_pages(&azure_listing(), azure_first_url(&server), read_azure)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("malformed response: nextLink leads to another server (https://collector.example); not followed, the token would go with it"),
        "{error}"
    );

    // A link back to the first page: a loop.
    let server = MockServer::start().await;
    let first = azure_first_url(&server)(1);
    Mock::given(method("GET"))
        .and(path(AZURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [], "nextLink": first.as_str()})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = api
        .list_pages(&azure_listing(), azure_first_url(&server), read_azure)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("malformed response: nextLink leads back to a page already read"),
        "{error}"
    );
}
