//! The `azure` inventory source against wiremock servers on loopback that answer like Azure
//! Resource Manager (`Virtual Machines - List` / `List All` with `statusOnly=true`,
//! `Network Interfaces - List`, `Public IP Addresses - List`: `{"value": […], "nextLink": …}`
//! with next links on management.azure.com, `CloudError` bodies), the Microsoft identity
//! platform's token endpoint and IMDS. Last, the seed outage with the source feeding real
//! BIND and HAProxy, and a planned maintenance forecast.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ipdrift::clients::azure::{AzureAuth, AzureCredentials};
use ipdrift::clients::http::{HttpOptions, RetryPolicy};
use ipdrift::config::{SecretAt, SecretRef};
use ipdrift::inventory::Inventory;
use ipdrift::inventory::azure::{AzureConfig, AzureInventory};
use ipdrift::model::InstanceState;
use reqwest::Url;
use serde_json::{Value, json};
use wiremock::matchers::{
    bearer_token, body_string_contains, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SUB: &str = "8f3c2a1e-4b5d-4e6f-9a7b-0c1d2e3f4a5b";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "3e1b5c7d-9f2a-4c6e-8b0d-1a2b3c4d5e6f";
const SECRET: &str = "Qm8Q~7rT2xYz0aBcDeFgHiJkLmNoPqRsTuVwXyZ01";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.azure-vm-test-token.sig0123456789";

fn vms_path() -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines")
}

fn nics_path() -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces")
}

fn ips_path() -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Network/publicIPAddresses")
}

fn rg(group: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{group}/providers")
}

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

async fn serve_token(server: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={CLIENT}")))
        .and(body_string_contains("scope=https%3A%2F%2Fmanagement.azure.com%2F.default"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ACCESS_TOKEN
        })))
        .expect(times)
        .mount(server)
        .await;
}

fn auth(server: &MockServer, dir: &Path) -> AzureAuth {
    let secret = dir.join("azure.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    AzureAuth {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret: Some(SecretAt {
            field: "inventory \"vms\"".into(),
            line: 1,
            secret: SecretRef::File(secret),
        }),
        authority: Some(Url::parse(&server.uri()).unwrap()),
        ..AzureAuth::default()
    }
}

fn source(
    server: &MockServer,
    auth: AzureAuth,
    group: Option<&str>,
    tags: &[(&str, &str)],
) -> AzureInventory {
    let config = AzureConfig {
        subscription_id: SUB.into(),
        resource_group: group.map(str::to_string),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        auth,
        endpoint: Url::parse(&server.uri()).unwrap(),
    };
    let credentials = AzureCredentials::new(&config.auth, "inventory \"vms\"", fast()).unwrap();
    AzureInventory::new("vms".into(), config, credentials, fast()).unwrap()
}

fn id(group: &str, kind: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{group}/providers/{kind}/{name}")
}

/// A VM `web-NN` in `group` with one network interface.
fn vm(n: u32, group: &str, role: &str) -> Value {
    let name = format!("web-{n:02}");
    json!({
        "id": id(group, "Microsoft.Compute/virtualMachines", &name),
        "name": name, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "tags": {"role": role},
        "properties": {
            "vmId": format!("0f47b100-583c-48e3-a4c0-0000000000{n:02}"),
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "provisioningState": "Succeeded",
            "networkProfile": {"networkInterfaces": [
                {"id": id(group, "Microsoft.Network/networkInterfaces", &format!("{name}-nic")), "properties": {"primary": true}}
            ]}
        }
    })
}

/// The VM's instance view as `statusOnly=true` lists it.
fn status(n: u32, group: &str, power: &str) -> Value {
    let name = format!("web-{n:02}");
    json!({
        "id": id(group, "Microsoft.Compute/virtualMachines", &name),
        "name": name, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "properties": {"instanceView": {"statuses": [
            {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
            {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": "VM"}
        ]}}
    })
}

/// A network interface with an IPv4 configuration (private and public as given) and, for
/// `ipv6`, an IPv6 configuration with a public address.
fn nic(n: u32, group: &str, private: Option<&str>, public: bool, ipv6: bool) -> Value {
    let name = format!("web-{n:02}");
    let mut configs = Vec::new();
    if let Some(private) = private {
        let mut props = json!({"privateIPAddress": private, "privateIPAllocationMethod": "Dynamic",
                               "privateIPAddressVersion": "IPv4", "primary": true,
                               "subnet": {"id": format!("/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default")}});
        if public {
            props["publicIPAddress"] = json!({"id": id(group, "Microsoft.Network/publicIPAddresses", &format!("{name}-ip"))});
        }
        configs.push(json!({"name": "ipconfig1", "properties": props}));
    }
    if ipv6 {
        configs.push(json!({"name": "ipconfig6", "properties": {
            "privateIPAddress": format!("fd00::{n}"), "privateIPAddressVersion": "IPv6", "primary": private.is_none(),
            "publicIPAddress": {"id": id(group, "Microsoft.Network/publicIPAddresses", &format!("{name}-ip6"))}}}));
    }
    json!({
        "id": id(group, "Microsoft.Network/networkInterfaces", &format!("{name}-nic")),
        "name": format!("{name}-nic"), "type": "Microsoft.Network/networkInterfaces",
        "properties": {"provisioningState": "Succeeded", "primary": true, "ipConfigurations": configs,
                       "virtualMachine": {"id": id(group, "Microsoft.Compute/virtualMachines", &name)}}
    })
}

fn public_ip(name: &str, group: &str, addr: &str, allocation: &str) -> Value {
    let version = if addr.contains(':') { "IPv6" } else { "IPv4" };
    json!({
        "id": id(group, "Microsoft.Network/publicIPAddresses", name),
        "name": name, "type": "Microsoft.Network/publicIPAddresses", "location": "westeurope",
        "sku": {"name": if allocation == "Static" { "Standard" } else { "Basic" }, "tier": "Regional"},
        "properties": {"provisioningState": "Succeeded", "ipAddress": addr, "publicIPAddressVersion": version,
                       "publicIPAllocationMethod": allocation, "idleTimeoutInMinutes": 4}
    })
}

fn page(items: Vec<Value>, next: Option<String>) -> ResponseTemplate {
    let mut body = json!({"value": items});
    if let Some(link) = next {
        body["nextLink"] = json!(link);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

/// A nextLink as Resource Manager writes it: on its own host.
fn next(path: &str, api: &str, token: &str) -> Option<String> {
    Some(format!(
        "https://management.azure.com{path}?api-version={api}&$skiptoken={token}"
    ))
}

fn get(p: String) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(p))
        .and(bearer_token(ACCESS_TOKEN))
}

fn vm_page(token: Option<&str>) -> wiremock::MockBuilder {
    let m = get(vms_path()).and(query_param_is_missing("statusOnly"));
    match token {
        None => m.and(query_param_is_missing("$skiptoken")),
        Some(t) => m.and(query_param("$skiptoken", t)),
    }
}

/// The four listings of `vms` (one page each), with `statuses`, `nics` and `ips`.
async fn serve_fleet(
    server: &MockServer,
    vms: Vec<Value>,
    statuses: Vec<Value>,
    nics: Vec<Value>,
    ips: Vec<Value>,
) {
    vm_page(None)
        .respond_with(page(vms, None))
        .mount(server)
        .await;
    get(vms_path())
        .and(query_param("statusOnly", "true"))
        .respond_with(page(statuses, None))
        .mount(server)
        .await;
    get(nics_path())
        .respond_with(page(nics, None))
        .mount(server)
        .await;
    get(ips_path())
        .respond_with(page(ips, None))
        .mount(server)
        .await;
}

async fn error_of(source: &dyn Inventory) -> String {
    let error = format!(
        "{:#}",
        source.list().await.expect_err("the listing should fail")
    );
    assert!(!error.contains(ACCESS_TOKEN), "the token leaked: {error}");
    assert!(!error.contains(SECRET), "the secret leaked: {error}");
    assert!(
        error.contains("inventory \"vms\""),
        "names the source: {error}"
    );
    error
}

#[tokio::test]
async fn pages_are_followed_joined_and_filtered_by_tag() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    vm_page(None)
        .and(query_param("api-version", "2024-07-01"))
        .respond_with(page(
            vec![vm(1, "web-rg", "web"), vm(2, "web-rg", "web")],
            next(&vms_path(), "2024-07-01", "p2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    vm_page(Some("p2"))
        .respond_with(page(
            vec![
                vm(3, "web-rg", "web"),
                vm(4, "web-rg", "web"),
                vm(5, "web-rg", "db"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get(vms_path())
        .and(query_param("statusOnly", "true"))
        .respond_with(page(
            vec![
                status(1, "web-rg", "running"),
                status(2, "WEB-RG", "running"),
                status(3, "web-rg", "deallocated"),
                status(4, "web-rg", "starting"),
                status(5, "web-rg", "running"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get(nics_path())
        .and(query_param("api-version", "2024-05-01"))
        .and(query_param_is_missing("$skiptoken"))
        .respond_with(page(
            vec![
                nic(1, "web-rg", Some("10.0.0.1"), true, false),
                nic(2, "web-rg", Some("10.0.0.2"), true, false),
                // No public address.
                nic(3, "web-rg", Some("10.0.0.3"), false, false),
            ],
            next(&nics_path(), "2024-05-01", "n2"),
        ))
        .mount(&server)
        .await;
    get(nics_path())
        .and(query_param("$skiptoken", "n2"))
        .respond_with(page(
            vec![
                // IPv6 only.
                nic(4, "web-rg", None, false, true),
                nic(5, "web-rg", Some("10.0.0.5"), false, false),
            ],
            None,
        ))
        .mount(&server)
        .await;
    get(ips_path())
        .respond_with(page(
            vec![
                public_ip("web-01-ip", "web-rg", "20.61.0.1", "Static"),
                public_ip("web-02-ip", "web-rg", "20.61.0.2", "Dynamic"),
                public_ip("web-04-ip6", "web-rg", "2603:1020:203:3::4", "Static"),
            ],
            None,
        ))
        .mount(&server)
        .await;
    let source = source(&server, auth(&server, dir.path()), None, &[("Role", "web")]);
    let list = source.list().await.unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["web-01", "web-02", "web-03", "web-04"],
        "web-05 has role=db"
    );
    assert_eq!(list[0].id, "0f47b100-583c-48e3-a4c0-000000000001");
    assert_eq!(list[0].state, InstanceState::Running);
    assert_eq!(list[0].public_ipv4, Some("20.61.0.1".parse().unwrap()));
    assert_eq!(list[0].private_ipv4, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(list[0].tags["role"], "web");
    assert_eq!(
        list[1].state,
        InstanceState::Running,
        "ids match in any case"
    );
    assert_eq!(list[2].state, InstanceState::Stopped);
    assert_eq!(list[2].public_ipv4, None);
    assert_eq!(list[2].private_ipv4, Some("10.0.0.3".parse().unwrap()));
    assert_eq!(list[3].state, InstanceState::Pending);
    assert_eq!((list[3].public_ipv4, list[3].private_ipv4), (None, None));
    assert_eq!(list[3].ipv6, Some("2603:1020:203:3::4".parse().unwrap()));
}

#[tokio::test]
async fn a_resource_group_is_listed_and_what_lies_outside_it_read_by_id() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    get(format!(
        "{}/Microsoft.Compute/virtualMachines",
        rg("web-rg")
    ))
    .respond_with(page(vec![vm(1, "web-rg", "web")], None))
    .expect(1)
    .mount(&server)
    .await;
    // Resource Manager has the instance view of every VM only for the subscription.
    get(vms_path())
        .and(query_param("statusOnly", "true"))
        .respond_with(page(
            vec![
                status(1, "web-rg", "running"),
                status(9, "other-rg", "running"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    // The public IP lives in the network team's resource group.
    let elsewhere = id("net-rg", "Microsoft.Network/publicIPAddresses", "web-01-ip");
    let mut interface = nic(1, "web-rg", Some("10.0.0.1"), true, false);
    interface["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"] =
        json!(elsewhere.to_uppercase());
    get(format!(
        "{}/Microsoft.Network/networkInterfaces",
        rg("web-rg")
    ))
    .respond_with(page(vec![interface], None))
    .expect(1)
    .mount(&server)
    .await;
    get(format!(
        "{}/Microsoft.Network/publicIPAddresses",
        rg("web-rg")
    ))
    .respond_with(page(vec![], None))
    .expect(1)
    .mount(&server)
    .await;
    get(elsewhere.to_uppercase())
        .and(query_param("api-version", "2024-05-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(public_ip(
            "web-01-ip",
            "net-rg",
            "20.61.0.1",
            "Static",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let source = source(&server, auth(&server, dir.path()), Some("web-rg"), &[]);
    let list = source.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].public_ipv4, Some("20.61.0.1".parse().unwrap()));
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_a_500_is_retried() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    vm_page(None)
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(json!({"error": {
                "code": "TooManyRequests",
                "message": "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00."}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    vm_page(None)
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"error": {"code": "InternalServerError", "message": "An error has occurred."}}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    serve_fleet(
        &server,
        vec![vm(1, "web-rg", "web")],
        vec![status(1, "web-rg", "running")],
        vec![nic(1, "web-rg", Some("10.0.0.1"), false, false)],
        vec![],
    )
    .await;
    let started = Instant::now();
    let list = source(&server, auth(&server, dir.path()), None, &[])
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
async fn failing_and_malformed_pages_fail_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (
            ResponseTemplate::new(503).set_body_json(
                json!({"error": {"code": "ServiceUnavailable", "message": "Backend unavailable"}}),
            ),
            "gave up after 3 attempts",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>Sign in</html>", "text/html"),
            "malformed response",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"value": [{"name": "no-id"}]})),
            "malformed response",
        ),
    ];
    for (second_page, needle) in cases {
        let server = MockServer::start().await;
        serve_token(&server, 1).await;
        vm_page(Some("p2"))
            .respond_with(second_page)
            .mount(&server)
            .await;
        vm_page(None)
            .respond_with(page(
                vec![vm(1, "web-rg", "web")],
                next(&vms_path(), "2024-07-01", "p2"),
            ))
            .mount(&server)
            .await;
        serve_fleet(&server, vec![], vec![], vec![], vec![]).await;
        let error = error_of(&source(&server, auth(&server, dir.path()), None, &[])).await;
        assert!(
            error.contains("Azure Resource Manager page 2") && error.contains(needle),
            "{needle}: {error}"
        );
    }
}

#[tokio::test]
async fn a_refused_credential_names_the_role_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    for status in [401, 403] {
        let server = MockServer::start().await;
        serve_token(&server, 1).await;
        vm_page(None)
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {
                "code": "AuthorizationFailed",
                "message": format!("The client '{CLIENT}' does not have authorization to perform action 'Microsoft.Compute/virtualMachines/read' over scope '/subscriptions/{SUB}'.")}})))
            .mount(&server)
            .await;
        serve_fleet(&server, vec![], vec![], vec![], vec![]).await;
        let error = error_of(&source(&server, auth(&server, dir.path()), None, &[])).await;
        assert!(
            error.contains(&format!("HTTP {status}"))
                && error.contains("AuthorizationFailed")
                && error.contains("Reader role"),
            "{error}"
        );
    }
    // The token endpoint refuses the secret.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT}'.")
        })))
        .expect(1)
        .mount(&server)
        .await;
    let error = error_of(&source(&server, auth(&server, dir.path()), None, &[])).await;
    assert!(
        error.contains("AADSTS7000215")
            && error.contains(&format!("access token for client {CLIENT}")),
        "{error}"
    );
}

#[tokio::test]
async fn the_managed_identity_gives_the_token_through_imds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(header("metadata", "true"))
        .and(query_param("api-version", "2018-02-01"))
        .and(query_param("resource", "https://management.azure.com/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN, "refresh_token": "", "expires_in": "86399",
            "expires_on": "1893456000", "not_before": "1893369600",
            "resource": "https://management.azure.com/", "token_type": "Bearer"
        })))
        .expect(1)
        .mount(&server)
        .await;
    serve_fleet(
        &server,
        vec![vm(1, "web-rg", "web")],
        vec![status(1, "web-rg", "running")],
        vec![nic(1, "web-rg", Some("10.0.0.1"), false, false)],
        vec![],
    )
    .await;
    let auth = AzureAuth {
        identity_endpoint: Some(
            Url::parse(&format!("{}/metadata/identity/oauth2/token", server.uri())).unwrap(),
        ),
        ..AzureAuth::default()
    };
    let source = source(&server, auth, None, &[]);
    assert_eq!(source.list().await.unwrap()[0].name, "web-01");
    assert!(!format!("{source:?}").contains(ACCESS_TOKEN));
}

#[tokio::test]
async fn workload_identity_sends_the_federated_token_as_the_assertion() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let assertion = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6aXBkcmlmdDppcGRyaWZ0In0.c2ln";
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, assertion).unwrap();
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ))
        .and(body_string_contains(format!("client_assertion={assertion}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    serve_fleet(
        &server,
        vec![vm(1, "web-rg", "web")],
        vec![status(1, "web-rg", "running")],
        vec![nic(1, "web-rg", Some("10.0.0.1"), false, false)],
        vec![],
    )
    .await;
    let auth = AzureAuth {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        federated_token_file: Some(file),
        authority: Some(Url::parse(&server.uri()).unwrap()),
        ..AzureAuth::default()
    };
    assert_eq!(
        source(&server, auth, None, &[]).list().await.unwrap().len(),
        1
    );
}

#[test]
fn config_keys_are_checked_and_a_pasted_secret_is_not_shown() {
    let text = format!(
        "[[inventory]]\nname = \"vms\"\nkind = \"azure\"\nsubscription_id = \"{SUB}\"\nclient_secret_env = \"{SECRET}\"\n"
    );
    let error = ipdrift::config::parse(&text, Path::new("/etc/ipdrift/ipdrift.toml"))
        .expect_err("a secret is not a variable name")
        .to_string();
    assert!(
        error.contains("client_secret_env")
            && error.contains("tenant_id")
            && !error.contains(SECRET),
        "{error}"
    );
    let text = "[[inventory]]\nname = \"vms\"\nkind = \"azure\"\nsubscription_id = \"not-a-guid\"\nzone = \"x\"\n";
    let error = ipdrift::config::parse(text, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("subscription_id") && error.contains("does not take `zone`"),
        "{error}"
    );
}

/// The VM's instance view with a planned maintenance announced.
fn with_maintenance(mut status: Value) -> Value {
    status["properties"]["instanceView"]["maintenanceRedeployStatus"] = json!({
        "isCustomerInitiatedMaintenanceAllowed": true,
        "preMaintenanceWindowStartTime": "2030-01-08T08:00:00Z",
        "preMaintenanceWindowEndTime": "2030-01-14T08:00:00Z",
        "maintenanceWindowStartTime": "2030-01-15T08:00:00Z",
        "maintenanceWindowEndTime": "2030-01-20T08:00:00Z",
        "lastOperationResultCode": "None"
    });
    status
}

#[tokio::test]
async fn maintenance_changes_addresses_only_of_a_dynamic_public_ip() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    serve_token(&server, 1).await;
    // list and scheduled_events share one listing: each call expects one request.
    vm_page(None)
        .respond_with(page(
            vec![
                vm(1, "web-rg", "web"),
                vm(2, "web-rg", "web"),
                vm(3, "web-rg", "web"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get(vms_path())
        .and(query_param("statusOnly", "true"))
        .respond_with(page(
            vec![
                with_maintenance(status(1, "web-rg", "running")),
                with_maintenance(status(2, "web-rg", "running")),
                status(3, "web-rg", "running"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get(nics_path())
        .respond_with(page(
            (1..=3)
                .map(|n| nic(n, "web-rg", Some(&format!("10.0.0.{n}")), true, false))
                .collect(),
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get(ips_path())
        .respond_with(page(
            vec![
                public_ip("web-01-ip", "web-rg", "20.61.0.1", "Dynamic"),
                public_ip("web-02-ip", "web-rg", "20.61.0.2", "Static"),
                public_ip("web-03-ip", "web-rg", "20.61.0.3", "Dynamic"),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let source = source(&server, auth(&server, dir.path()), None, &[]);
    let (listed, events) = tokio::join!(source.list(), source.scheduled_events());
    assert_eq!(listed.unwrap().len(), 3);
    let events = events.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0].instance_id,
        "0f47b100-583c-48e3-a4c0-000000000001"
    );
    assert!(
        events[0].changes_addresses,
        "a dynamic public IP may change"
    );
    assert_eq!(events[0].code, "planned-maintenance");
    assert_eq!(events[0].not_before, 1_894_694_400);
    assert!(!events[1].changes_addresses, "a static public IP is kept");
}

// --- the seed outage, with an azure source feeding real BIND and HAProxy -------------

use support::fleet::{self, Fleet, ZONE, describe, http_get, lb_public, web_private, web_public};

/// The fleet's instances of generation `g` as the four listings serve them.
async fn serve_generation(server: &MockServer, fleet: &Fleet, g: u8, maintenance_on: Option<u8>) {
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}),
        ))
        .mount(server)
        .await;
    let (mut vms, mut statuses, mut nics, mut ips) = (vec![], vec![], vec![], vec![]);
    for i in fleet.instances_at(g) {
        let name = i["name"].as_str().unwrap().to_string();
        let nic_id = id(
            "web-rg",
            "Microsoft.Network/networkInterfaces",
            &format!("{name}-nic"),
        );
        let ip_id = id(
            "web-rg",
            "Microsoft.Network/publicIPAddresses",
            &format!("{name}-ip"),
        );
        let vm_id = id("web-rg", "Microsoft.Compute/virtualMachines", &name);
        vms.push(json!({"id": vm_id, "name": name, "type": "Microsoft.Compute/virtualMachines",
            "tags": i["tags"], "properties": {"vmId": i["id"].as_str().unwrap().replace('-', ""), "provisioningState": "Succeeded",
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true}}]}}}));
        let mut view = json!({"id": vm_id, "name": name, "properties": {"instanceView": {"statuses": [
            {"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]}}});
        if maintenance_on.is_some_and(|n| name == format!("web-0{n}")) {
            view = with_maintenance(view);
        }
        statuses.push(view);
        nics.push(json!({"id": nic_id, "name": format!("{name}-nic"), "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {"privateIPAddress": i["private_ipv4"], "privateIPAddressVersion": "IPv4",
             "primary": true, "publicIPAddress": {"id": ip_id}}}]}}));
        ips.push(json!({"id": ip_id, "name": format!("{name}-ip"), "sku": {"name": "Basic"},
            "properties": {"ipAddress": i["public_ipv4"], "publicIPAddressVersion": "IPv4", "publicIPAllocationMethod": "Dynamic"}}));
    }
    serve_fleet(server, vms, statuses, nics, ips).await;
}

/// Points the fleet's source at the mock: an azure inventory with a client secret.
fn use_azure_source(fleet: &Fleet, server: &str, notify: Option<&str>) {
    std::fs::write(fleet.dir.path().join("azure.secret"), SECRET).unwrap();
    let config = std::fs::read_to_string(fleet.config_path()).unwrap();
    let mut config = config.replace(
        "kind = \"file\"\npath = \"instances.json\"\n",
        &format!(
            "kind = \"azure\"\nsubscription_id = \"{SUB}\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret_file = \"azure.secret\"\nauthority = \"{server}\"\nendpoint = \"{server}\"\n"
        ),
    );
    assert!(config.contains("kind = \"azure\""));
    if let Some(url) = notify {
        config.push_str(&format!("\n[[notify]]\nurl = \"{url}\"\nkind = \"json\"\n"));
    }
    std::fs::write(fleet.config_path(), config).unwrap();
}

async fn ipdrift(fleet: &Fleet, args: &'static [&'static str]) -> std::process::Output {
    let config = fleet.config_path();
    let output = tokio::task::spawn_blocking(move || fleet::ipdrift(&config, args))
        .await
        .unwrap();
    let all = describe(&output);
    assert!(
        !all.contains(SECRET) && !all.contains(ACCESS_TOKEN),
        "a secret leaked: {all}"
    );
    output
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_repairs_dns_and_haproxy_after_every_vm_address_changed() {
    let server = MockServer::start().await;
    let mut fleet = Fleet::start();
    use_azure_source(&fleet, &server.uri(), None);
    serve_generation(&server, &fleet, 1, None).await;
    let diff = ipdrift(&fleet, &["diff"]).await;
    assert_eq!(
        diff.status.code(),
        Some(0),
        "in sync at first:\n{}",
        describe(&diff)
    );

    // The provider's update: every VM has new addresses.
    fleet.move_web_servers_to(2);
    serve_generation(&server, &fleet, 2, None).await;
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
async fn planned_maintenance_shows_in_diff_metrics_and_a_webhook() {
    let server = MockServer::start().await;
    let receiver = support::webhook::Receiver::start();
    let fleet = Fleet::start();
    use_azure_source(&fleet, &server.uri(), Some(&receiver.url));
    serve_generation(&server, &fleet, 1, Some(1)).await;
    let diff = ipdrift(&fleet, &["diff", "--output", "json"]).await;
    let forecast = json_of(&diff)["forecast"].clone();
    assert_eq!(
        forecast.as_array().map(Vec::len),
        Some(1),
        "{forecast:#}\n{}",
        describe(&diff)
    );
    assert_eq!(forecast[0]["name"], "web-01");
    assert_eq!(forecast[0]["code"], "planned-maintenance");
    assert_eq!(forecast[0]["not_before"], 1_894_694_400u64);
    assert_eq!(forecast[0]["records"][0], format!("ns1: web-01.{ZONE} A"));
    assert_eq!(forecast[0]["servers"][0], "lb-01: web/web-01");

    let config = fleet.config_path();
    let controller =
        tokio::task::spawn_blocking(move || support::controller::Controller::start_with(&config))
            .await
            .unwrap();
    let series = "ipdrift_scheduled_events{source=\"local\",instance=\"iweb01\",code=\"planned-maintenance\"}";
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
