//! The `digitalocean` and `hetzner` inventory sources against wiremock servers on loopback
//! that answer with bodies shaped like the providers' documented responses: several pages,
//! rate limits, server errors, malformed bodies, rejected tokens, partial listings.

use std::time::{Duration, Instant};

use ipdrift::clients::http::{HttpOptions, RetryPolicy};
use ipdrift::clients::token::Token;
use ipdrift::inventory::Inventory;
use ipdrift::inventory::digitalocean::DigitalOceanInventory;
use ipdrift::inventory::hetzner::HetznerInventory;
use ipdrift::model::{Instance, InstanceState};
use reqwest::Url;
use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "dop_v1_8c1f4a2e9b7d3c5a6e0f1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

/// Short waits so that retries take milliseconds.
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

#[derive(Debug, Clone, Copy)]
enum Provider {
    DigitalOcean,
    Hetzner,
}

use Provider::{DigitalOcean, Hetzner};

impl Provider {
    fn path(self) -> &'static str {
        match self {
            DigitalOcean => "/v2/droplets",
            Hetzner => "/v1/servers",
        }
    }

    /// How the provider is named in errors.
    fn shown(self) -> &'static str {
        match self {
            DigitalOcean => "DigitalOcean",
            Hetzner => "Hetzner Cloud",
        }
    }

    fn source(self, server: &MockServer, filter: Option<&str>) -> Box<dyn Inventory> {
        let endpoint = Url::parse(&server.uri()).unwrap();
        let token = Token::new(TOKEN).unwrap();
        let filter = filter.map(str::to_string);
        match self {
            DigitalOcean => Box::new(
                DigitalOceanInventory::new("do".into(), &endpoint, token, filter, fast()).unwrap(),
            ),
            Hetzner => Box::new(
                HetznerInventory::new("hz".into(), &endpoint, token, filter, fast()).unwrap(),
            ),
        }
    }

    /// One running instance `n` with public 192.0.2.n, private 10.0.0.n and a role tag.
    fn instance(self, n: u8) -> Value {
        match self {
            DigitalOcean => droplet(
                n,
                "active",
                &[
                    ("public", format!("192.0.2.{n}")),
                    ("private", format!("10.0.0.{n}")),
                ],
                &["role:web", "env:prod"],
            ),
            Hetzner => hetzner_server(
                n,
                "running",
                Some(format!("192.0.2.{n}")),
                &[("role", "web")],
            ),
        }
    }

    /// Page `page` of `last` holding `items`, with `total` as the announced size.
    fn page(self, items: Vec<Value>, page: u32, last: u32, total: usize) -> Value {
        match self {
            DigitalOcean => {
                // DigitalOcean's own host: the source must take only the page number from it.
                let link = |p: u32| {
                    format!("https://api.digitalocean.com/v2/droplets?page={p}&per_page=200")
                };
                let mut pages = serde_json::Map::new();
                if page < last {
                    pages.insert("next".into(), json!(link(page + 1)));
                    pages.insert("last".into(), json!(link(last)));
                }
                if page > 1 {
                    pages.insert("first".into(), json!(link(1)));
                    pages.insert("prev".into(), json!(link(page - 1)));
                }
                json!({"droplets": items, "links": {"pages": pages}, "meta": {"total": total}})
            }
            Hetzner => json!({
                "servers": items,
                "meta": {"pagination": {
                    "page": page, "per_page": 50,
                    "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
                    "next_page": if page < last { json!(page + 1) } else { Value::Null },
                    "last_page": last, "total_entries": total,
                }}
            }),
        }
    }

    /// Mounts a mock for page `page` (the first has no `page` parameter).
    fn on_page(self, page: u32) -> wiremock::MockBuilder {
        let mock = Mock::given(method("GET"))
            .and(path(self.path()))
            .and(bearer_token(TOKEN));
        if page == 1 {
            mock.and(query_param_is_missing("page"))
        } else {
            mock.and(query_param("page", page.to_string()))
        }
    }
}

fn droplet(n: u8, status: &str, v4: &[(&str, String)], tags: &[&str]) -> Value {
    let v4: Vec<Value> = v4
        .iter()
        .map(|(kind, ip)| json!({"ip_address": ip, "netmask": "255.255.240.0", "gateway": "192.0.2.254", "type": kind}))
        .collect();
    json!({
        "id": 3164400 + u64::from(n), "name": format!("web-{n:02}"), "memory": 1024, "vcpus": 1,
        "disk": 25, "locked": false, "status": status, "kernel": null,
        "created_at": "2020-07-21T18:37:44Z", "features": ["private_networking", "ipv6"],
        "backup_ids": [], "snapshot_ids": [], "volume_ids": [],
        "image": {"id": 63663980, "name": "20.04 (LTS) x64", "distribution": "Ubuntu"},
        "size_slug": "s-1vcpu-1gb",
        "networks": {
            "v4": v4,
            "v6": [{"ip_address": format!("2604:a880:0:1010::{n:x}"), "netmask": 64, "gateway": "2604:a880:0:1010::1", "type": "public"}]
        },
        "region": {"name": "New York 3", "slug": "nyc3"},
        "tags": tags,
        "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
    })
}

fn hetzner_server(n: u8, status: &str, ipv4: Option<String>, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "id": 4200 + u64::from(n), "name": format!("web-{n:02}"), "status": status,
        "created": "2016-01-30T23:55:00+00:00",
        "public_net": {
            "ipv4": ipv4.map(|ip| json!({"ip": ip, "blocked": false, "dns_ptr": "server01.example.com", "id": 42})),
            "ipv6": {"ip": format!("2001:db8:{n:x}::/64"), "blocked": false, "dns_ptr": [], "id": 43},
            "floating_ips": [], "primary_ips": [], "firewalls": []
        },
        "private_net": [{"network": 4711, "ip": format!("10.0.0.{n}"), "alias_ips": [], "mac_address": "86:00:ff:2a:7d:e1"}],
        "server_type": {"id": 1, "name": "cx22"},
        "datacenter": {"id": 1, "name": "fsn1-dc14"},
        "labels": labels,
        "protection": {"delete": false, "rebuild": false},
        "volumes": [], "load_balancers": [], "primary_disk_size": 40, "placement_group": null
    })
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// Serves a one-page listing of instances 1 and 2.
async fn serve_one_page(server: &MockServer, provider: Provider) {
    provider
        .on_page(1)
        .respond_with(ok(provider.page(
            vec![provider.instance(1), provider.instance(2)],
            1,
            1,
            2,
        )))
        .mount(server)
        .await;
}

fn names(list: &[Instance]) -> Vec<&str> {
    list.iter().map(|i| i.name.as_str()).collect()
}

async fn error_of(source: &dyn Inventory) -> String {
    let error = format!(
        "{:#}",
        source.list().await.expect_err("the listing should fail")
    );
    assert!(!error.contains(TOKEN), "the token leaked into: {error}");
    assert!(
        error.contains(&format!("inventory {:?}", source.name())),
        "names the source: {error}"
    );
    error
}

#[tokio::test]
async fn digitalocean_pages_are_followed_and_mapped() {
    let server = MockServer::start().await;
    let p = DigitalOcean;
    let pages = [
        vec![p.instance(1), p.instance(2)],
        vec![
            p.instance(3),
            droplet(
                4,
                "off",
                &[("private", "10.0.0.4".into())],
                &["role:web", "standalone"],
            ),
        ],
        vec![droplet(5, "new", &[], &[])],
    ];
    for (i, items) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        p.on_page(page)
            .and(query_param("per_page", "200"))
            .and(query_param("tag_name", "role:web"))
            .respond_with(ok(p.page(items, page, 3, 5)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let list = p.source(&server, Some("role:web")).list().await.unwrap();
    assert_eq!(
        names(&list),
        ["web-01", "web-02", "web-03", "web-04", "web-05"]
    );
    let first = &list[0];
    assert_eq!(first.id, "3164401");
    assert_eq!(first.state, InstanceState::Running);
    assert_eq!(first.public_ipv4, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(first.private_ipv4, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(first.ipv6, Some("2604:a880:0:1010::1".parse().unwrap()));
    assert_eq!(first.tags["role"], "web");
    assert_eq!(first.tags["env"], "prod");
    assert_eq!(list[3].state, InstanceState::Stopped);
    assert_eq!(list[3].public_ipv4, None);
    assert_eq!(list[3].tags["standalone"], "");
    assert_eq!(list[4].state, InstanceState::Pending);
}

#[tokio::test]
async fn hetzner_pages_are_followed_and_mapped() {
    let server = MockServer::start().await;
    let p = Hetzner;
    let pages = [
        vec![p.instance(1), p.instance(2)],
        vec![hetzner_server(
            3,
            "off",
            None,
            &[("role", "web"), ("env", "")],
        )],
        vec![hetzner_server(
            4,
            "initializing",
            Some("192.0.2.4".into()),
            &[],
        )],
    ];
    for (i, items) in pages.into_iter().enumerate() {
        let page = i as u32 + 1;
        p.on_page(page)
            .and(query_param("per_page", "50"))
            .and(query_param("label_selector", "role=web,env!=dev"))
            .respond_with(ok(p.page(items, page, 3, 4)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let list = p
        .source(&server, Some("role=web,env!=dev"))
        .list()
        .await
        .unwrap();
    assert_eq!(names(&list), ["web-01", "web-02", "web-03", "web-04"]);
    let first = &list[0];
    assert_eq!(first.id, "4201");
    assert_eq!(first.state, InstanceState::Running);
    assert_eq!(first.public_ipv4, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(first.private_ipv4, Some("10.0.0.1".parse().unwrap()));
    // The /64 Hetzner reports becomes its ::1, the address configured on the server.
    assert_eq!(first.ipv6, Some("2001:db8:1::1".parse().unwrap()));
    assert_eq!(first.tags["role"], "web");
    // IPv6-only: no public IPv4.
    assert_eq!(list[2].public_ipv4, None);
    assert_eq!(list[2].state, InstanceState::Stopped);
    assert_eq!(list[3].state, InstanceState::Pending);
}

#[tokio::test]
async fn without_a_filter_no_filter_is_sent() {
    for (p, param) in [(DigitalOcean, "tag_name"), (Hetzner, "label_selector")] {
        let server = MockServer::start().await;
        p.on_page(1)
            .and(query_param_is_missing(param))
            .respond_with(ok(p.page(vec![p.instance(1)], 1, 1, 1)))
            .expect(1)
            .mount(&server)
            .await;
        let list = p.source(&server, None).list().await.unwrap();
        assert_eq!(names(&list), ["web-01"], "{p:?}");
    }
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    for p in [DigitalOcean, Hetzner] {
        let server = MockServer::start().await;
        p.on_page(1)
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(
                        json!({"id": "too_many_requests", "message": "API Rate limit exceeded."}),
                    ),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        serve_one_page(&server, p).await;
        let started = Instant::now();
        let list = p.source(&server, None).list().await.unwrap();
        let waited = started.elapsed();
        assert_eq!(names(&list), ["web-01", "web-02"], "{p:?}");
        // Retry-After: 1 capped at 300 ms — far longer than the 1 ms backoff.
        assert!(
            waited >= Duration::from_millis(280) && waited < Duration::from_millis(1000),
            "{p:?} waited {waited:?}"
        );
    }
}

#[tokio::test]
async fn a_500_is_retried_then_succeeds() {
    for p in [DigitalOcean, Hetzner] {
        let server = MockServer::start().await;
        p.on_page(1)
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream hiccup"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        serve_one_page(&server, p).await;
        let list = p.source(&server, None).list().await.unwrap();
        assert_eq!(names(&list), ["web-01", "web-02"], "{p:?}");
    }
}

#[tokio::test]
async fn a_page_that_keeps_failing_fails_the_listing() {
    for p in [DigitalOcean, Hetzner] {
        let server = MockServer::start().await;
        // Page 1 works; page 2 answers 503 every time.
        p.on_page(1)
            .respond_with(ok(p.page(vec![p.instance(1)], 1, 2, 2)))
            .mount(&server)
            .await;
        p.on_page(2)
            .respond_with(ResponseTemplate::new(503).set_body_json(
                json!({"error": {"code": "unavailable", "message": "service unavailable"}}),
            ))
            .expect(3)
            .mount(&server)
            .await;
        let source = p.source(&server, None);
        let error = error_of(source.as_ref()).await;
        for needle in [
            &format!("{} page 2", p.shown()),
            "HTTP 503 Service Unavailable",
            "unavailable: service unavailable",
            "gave up after 3 attempts",
        ] {
            assert!(
                error.contains(needle),
                "{p:?}: {needle:?} missing from: {error}"
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_body_is_an_error_naming_provider_and_page() {
    for p in [DigitalOcean, Hetzner] {
        for (body, needle) in [
            (
                "<html><body>Gateway login</body></html>",
                "<html><body>Gateway login",
            ),
            ("{\"droplets\": [", "EOF"),
            ("{\"servers\": 3, \"droplets\": 3}", "invalid type"),
            ("{}", "missing field"),
        ] {
            let server = MockServer::start().await;
            p.on_page(1)
                .respond_with(ok(p.page(vec![p.instance(1)], 1, 2, 2)))
                .mount(&server)
                .await;
            p.on_page(2)
                .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
                .expect(1)
                .mount(&server)
                .await;
            let source = p.source(&server, None);
            let error = error_of(source.as_ref()).await;
            assert!(
                error.contains(&format!("{} page 2", p.shown()))
                    && error.contains("malformed response")
                    && error.contains(needle),
                "{p:?} {body}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn a_bad_address_in_a_page_is_an_error() {
    let server = MockServer::start().await;
    let mut bad = Hetzner.instance(1);
    bad["public_net"]["ipv6"]["ip"] = json!("not-an-address/64");
    Hetzner
        .on_page(1)
        .respond_with(ok(Hetzner.page(vec![bad], 1, 1, 1)))
        .mount(&server)
        .await;
    let source = Hetzner.source(&server, None);
    let error = error_of(source.as_ref()).await;
    assert!(
        error.contains("Hetzner Cloud page 1") && error.contains("not-an-address"),
        "{error}"
    );

    let server = MockServer::start().await;
    let mut bad = DigitalOcean.instance(1);
    bad["networks"]["v4"][0]["ip_address"] = json!("300.1.2.3");
    DigitalOcean
        .on_page(1)
        .respond_with(ok(DigitalOcean.page(vec![bad], 1, 1, 1)))
        .mount(&server)
        .await;
    let source = DigitalOcean.source(&server, None);
    let error = error_of(source.as_ref()).await;
    assert!(
        error.contains("DigitalOcean page 1") && error.contains("malformed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_token_is_a_clear_error_without_the_token() {
    for p in [DigitalOcean, Hetzner] {
        for status in [401, 403] {
            let server = MockServer::start().await;
            // A provider that echoes the token back: it must not reach the error.
            let body = match p {
                DigitalOcean => {
                    json!({"id": "unauthorized", "message": format!("Unable to authenticate you with {TOKEN}")})
                }
                Hetzner => {
                    json!({"error": {"code": "unauthorized", "message": format!("unable to authenticate {TOKEN}"), "details": null}})
                }
            };
            Mock::given(method("GET"))
                .and(path(p.path()))
                .respond_with(ResponseTemplate::new(status).set_body_json(body))
                .expect(1) // not retried
                .mount(&server)
                .await;
            let source = p.source(&server, None);
            let error = error_of(source.as_ref()).await;
            assert!(
                error.contains("the API token was rejected")
                    && error.contains(&format!("HTTP {status}"))
                    && error.contains("check token_env/token_file")
                    && error.contains("<redacted>"),
                "{p:?} {status}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/servers"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "invalid_input", "message": "invalid label_selector", "details": {}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let source = Hetzner.source(&server, Some("role=="));
    let error = error_of(source.as_ref()).await;
    assert!(
        error.contains("HTTP 400 Bad Request: invalid_input: invalid label_selector"),
        "{error}"
    );
}

#[tokio::test]
async fn a_partial_listing_is_an_error_never_a_shorter_list() {
    for p in [DigitalOcean, Hetzner] {
        // The pages end, but hold 2 of the 3 instances announced.
        let server = MockServer::start().await;
        p.on_page(1)
            .respond_with(ok(p.page(vec![p.instance(1), p.instance(2)], 1, 1, 3)))
            .mount(&server)
            .await;
        let source = p.source(&server, None);
        let error = error_of(source.as_ref()).await;
        assert!(
            error.contains("partial listing") && error.contains("3"),
            "{p:?}: {error}"
        );

        // The listing changes between pages: instance 2 shows up twice.
        let server = MockServer::start().await;
        p.on_page(1)
            .respond_with(ok(p.page(vec![p.instance(1), p.instance(2)], 1, 2, 3)))
            .mount(&server)
            .await;
        p.on_page(2)
            .respond_with(ok(p.page(vec![p.instance(2), p.instance(3)], 2, 2, 3)))
            .mount(&server)
            .await;
        let source = p.source(&server, None);
        let error = error_of(source.as_ref()).await;
        assert!(
            error.contains("changed while it was read"),
            "{p:?}: {error}"
        );
    }
}

#[tokio::test]
async fn an_empty_account_is_an_empty_list() {
    for p in [DigitalOcean, Hetzner] {
        let server = MockServer::start().await;
        p.on_page(1)
            .respond_with(ok(p.page(vec![], 1, 1, 0)))
            .mount(&server)
            .await;
        assert_eq!(
            p.source(&server, None).list().await.unwrap(),
            vec![],
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_api_is_retried_then_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (p, source) in [
        (
            DigitalOcean,
            Box::new(
                DigitalOceanInventory::new(
                    "do".into(),
                    &Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
                    Token::new(TOKEN).unwrap(),
                    None,
                    fast(),
                )
                .unwrap(),
            ) as Box<dyn Inventory>,
        ),
        (
            Hetzner,
            Box::new(
                HetznerInventory::new(
                    "hz".into(),
                    &Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
                    Token::new(TOKEN).unwrap(),
                    None,
                    fast(),
                )
                .unwrap(),
            ),
        ),
    ] {
        let error = error_of(source.as_ref()).await;
        assert!(
            error.contains("cannot connect") && error.contains("gave up after 3 attempts"),
            "{p:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_without_retries() {
    let server = MockServer::start().await;
    DigitalOcean
        .on_page(1)
        .respond_with(
            ok(DigitalOcean.page(vec![DigitalOcean.instance(1)], 1, 1, 1))
                .set_delay(Duration::from_secs(5)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let source = DigitalOcean.source(&server, None);
    let error = error_of(source.as_ref()).await;
    assert!(error.contains("no answer within 2s"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_token_goes_only_in_the_authorization_header() {
    let server = MockServer::start().await;
    serve_one_page(&server, Hetzner).await;
    let source = HetznerInventory::new(
        "hz".into(),
        &Url::parse(&server.uri()).unwrap(),
        Token::new(TOKEN).unwrap(),
        Some("role=web".into()),
        fast(),
    )
    .unwrap();
    source.list().await.unwrap();
    let shown = format!("{source:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("role=web"),
        "{shown}"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(!request.url.as_str().contains(TOKEN), "{}", request.url);
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        &format!("Bearer {TOKEN}")
    );
    let token = Token::new(TOKEN).unwrap();
    assert!(!format!("{token:?}").contains(TOKEN));
}

#[tokio::test]
async fn the_config_builds_cloud_sources_that_a_pass_lists() {
    use ipdrift::desired::SourceSnapshot;
    use ipdrift::reconcile::{Mode, Reconciler};
    use std::sync::Arc;

    let server = MockServer::start().await;
    serve_one_page(&server, DigitalOcean).await;
    Hetzner
        .on_page(1)
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": "unauthorized", "message": "unable to authenticate"}}),
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.token"), format!("{TOKEN}\n")).unwrap();
    let text = format!(
        "[[inventory]]\nname = \"do\"\nkind = \"digitalocean\"\ntoken_file = \"api.token\"\nendpoint = \"{uri}\"\n\n\
         [[inventory]]\nname = \"hz\"\nkind = \"hetzner\"\ntoken_file = \"api.token\"\nendpoint = \"{uri}\"\n",
        uri = server.uri()
    );
    let path = dir.path().join("ipdrift.toml");
    let config = ipdrift::config::parse(&text, &path).unwrap();
    let reconciler = Reconciler::new(Arc::new(config), false).unwrap();
    let outcome = reconciler.pass(Mode::ReadOnly).await;
    let SourceSnapshot::Listed(list) = &outcome.sources["do"] else {
        panic!("do was not listed: {:?}", outcome.report.errors)
    };
    assert_eq!(names(list), ["web-01", "web-02"]);
    // A failing source is a failed source, not an empty one.
    assert!(matches!(outcome.sources["hz"], SourceSnapshot::Failed));
    let errors = format!("{:?}", outcome.report.errors);
    assert!(
        errors.contains("the API token was rejected") && !errors.contains(TOKEN),
        "{errors}"
    );

    // A token that cannot be read stops the reconciler from being built.
    let unset = text.replace(
        "token_file = \"api.token\"",
        "token_env = \"IPDRIFT_TEST_UNSET_CLOUD_TOKEN\"",
    );
    let config = ipdrift::config::parse(&unset, &path).unwrap();
    let error = match Reconciler::new(Arc::new(config), false) {
        Ok(_) => panic!("built without a token"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains(
            "inventory \"do\".token_env: environment variable IPDRIFT_TEST_UNSET_CLOUD_TOKEN is not set"
        ),
        "{error}"
    );
}
