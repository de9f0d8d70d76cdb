//! `HaproxyClient` against a real haproxy started by the test harness.

mod support;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use ipdrift::lb::haproxy::client::HaproxyClient;
use ipdrift::lb::haproxy::protocol::RuntimeApi;
use ipdrift::lb::{LoadBalancer, ServerChange};
use ipdrift::model::{ObservedServer, ServerAdmin, ServerKey};
use support::haproxy::{BackendSpec, Haproxy};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `web` with two IPv4 servers, `api` with one IPv6 server.
fn start_web_and_api() -> Haproxy {
    Haproxy::start(&[
        BackendSpec {
            name: "web",
            servers: vec![("web-01", "127.0.1.1:8080"), ("web-02", "127.0.1.2:8080")],
        },
        BackendSpec {
            name: "api",
            servers: vec![("api-01", "[::1]:9090")],
        },
    ])
}

fn unix_client(haproxy: &Haproxy) -> HaproxyClient {
    HaproxyClient::new(
        "lb1".into(),
        RuntimeApi::Unix(haproxy.socket_path()),
        TIMEOUT,
    )
}

fn key(backend: &str, server: &str) -> ServerKey {
    ServerKey {
        backend: backend.into(),
        server: server.into(),
    }
}

fn observed(key: ServerKey, addr: &str, port: u16, admin: ServerAdmin) -> ObservedServer {
    ObservedServer {
        key,
        addr: Some(addr.parse().unwrap()),
        port,
        admin,
        durable: true,
    }
}

fn names(backends: &[&str]) -> Vec<String> {
    backends.iter().map(|name| name.to_string()).collect()
}

/// The server `key` as HAProxy reports it now.
async fn read_server(client: &HaproxyClient, key: &ServerKey) -> ObservedServer {
    let servers = client
        .read(std::slice::from_ref(&key.backend))
        .await
        .unwrap();
    servers
        .into_iter()
        .find(|server| server.key == *key)
        .unwrap_or_else(|| panic!("{key} is not in the server list"))
}

#[tokio::test]
async fn reads_the_servers_of_several_backends() {
    let haproxy = start_web_and_api();
    let servers = unix_client(&haproxy)
        .read(&names(&["web", "api"]))
        .await
        .unwrap();
    assert_eq!(
        servers,
        vec![
            observed(key("web", "web-01"), "127.0.1.1", 8080, ServerAdmin::Ready),
            observed(key("web", "web-02"), "127.0.1.2", 8080, ServerAdmin::Ready),
            observed(key("api", "api-01"), "::1", 9090, ServerAdmin::Ready),
        ]
    );
}

#[tokio::test]
async fn set_addresses_and_ports_read_back() {
    let haproxy = start_web_and_api();
    let client = unix_client(&haproxy);
    let changes = [
        ServerChange::SetAddr {
            key: key("web", "web-01"),
            addr: "127.0.1.9".parse().unwrap(),
            port: 8090,
        },
        // IPv6 → IPv4, same port.
        ServerChange::SetAddr {
            key: key("api", "api-01"),
            addr: "127.0.2.1".parse().unwrap(),
            port: 9090,
        },
        // IPv4 → IPv6.
        ServerChange::SetAddr {
            key: key("web", "web-02"),
            addr: "::1".parse().unwrap(),
            port: 8080,
        },
    ];
    client.write(&changes).await.unwrap();
    let servers = client.read(&names(&["web", "api"])).await.unwrap();
    assert_eq!(
        servers,
        vec![
            observed(key("web", "web-01"), "127.0.1.9", 8090, ServerAdmin::Ready),
            observed(key("web", "web-02"), "::1", 8080, ServerAdmin::Ready),
            observed(key("api", "api-01"), "127.0.2.1", 9090, ServerAdmin::Ready),
        ]
    );
    // Writing what is already there is accepted ("no need to change the addr, …").
    client.write(&changes).await.unwrap();
}

#[tokio::test]
async fn admin_states_read_back() {
    let haproxy = start_web_and_api();
    let client = unix_client(&haproxy);
    let web01 = key("web", "web-01");
    for admin in [
        ServerAdmin::Maint,
        ServerAdmin::Drain,
        ServerAdmin::Ready,
        ServerAdmin::Maint,
        ServerAdmin::Maint,
    ] {
        let change = ServerChange::SetAdmin {
            key: web01.clone(),
            admin,
        };
        client.write(&[change]).await.unwrap();
        assert_eq!(read_server(&client, &web01).await.admin, admin);
    }
}

#[tokio::test]
async fn an_unknown_backend_is_an_error_naming_it() {
    let haproxy = start_web_and_api();
    let err = unix_client(&haproxy)
        .read(&names(&["web", "nope"]))
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("load balancer lb1"), "{message}");
    assert!(
        message.contains(&haproxy.socket_path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("no backend \"nope\"") && message.contains("Can't find backend."),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_change_quotes_haproxy_and_the_others_still_apply() {
    let haproxy = start_web_and_api();
    let client = unix_client(&haproxy);
    let changes = [
        ServerChange::SetAdmin {
            key: key("web", "ghost"),
            admin: ServerAdmin::Maint,
        },
        ServerChange::SetAddr {
            key: key("web", "web-01"),
            addr: "127.0.1.7".parse().unwrap(),
            port: 8080,
        },
        ServerChange::SetAddr {
            key: key("nope", "web-01"),
            addr: "127.0.1.7".parse().unwrap(),
            port: 8080,
        },
    ];
    let err = client.write(&changes).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("load balancer lb1"), "{message}");
    assert!(
        message.contains("2 of 3 change(s) refused, 1 applied: "),
        "{message}"
    );
    assert!(
        message.contains("refused to set server web/ghost to maint: \"No such server.\""),
        "{message}"
    );
    assert!(
        message.contains("address of server nope/web-01: \"No such backend.\""),
        "{message}"
    );
    assert_eq!(
        read_server(&client, &key("web", "web-01")).await,
        observed(key("web", "web-01"), "127.0.1.7", 8080, ServerAdmin::Ready)
    );
}

#[tokio::test]
async fn hostile_names_are_refused_before_anything_is_sent() {
    let haproxy = start_web_and_api();
    let client = unix_client(&haproxy);
    let changes = [
        ServerChange::SetAdmin {
            key: key("web", "web-01"),
            admin: ServerAdmin::Maint,
        },
        ServerChange::SetAdmin {
            key: key("web", "web-01;set server web/web-02 state maint"),
            admin: ServerAdmin::Ready,
        },
    ];
    let err = client.write(&changes).await.unwrap_err();
    assert!(format!("{err:#}").contains("refusing to send"), "{err:#}");
    for server in ["web-01", "web-02"] {
        assert_eq!(
            read_server(&client, &key("web", server)).await.admin,
            ServerAdmin::Ready
        );
    }
}

#[tokio::test]
async fn an_absent_socket_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let client = HaproxyClient::new("lb1".into(), RuntimeApi::Unix(socket.clone()), TIMEOUT);
    let err = client.read(&names(&["web"])).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("load balancer lb1"), "{message}");
    assert!(
        message.contains(&format!("unix:{}", socket.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "stats socket {} mode 600 level admin",
            socket.display()
        )),
        "{message}"
    );
    // Nothing to do needs no connection.
    client.read(&[]).await.unwrap();
    client.write(&[]).await.unwrap();
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Connections queue in the backlog and are never accepted, so never answered.
    let _listener = UnixListener::bind(&socket).unwrap();
    let client = HaproxyClient::new(
        "lb1".into(),
        RuntimeApi::Unix(socket),
        Duration::from_millis(300),
    );
    let err = client.read(&names(&["web"])).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("did not finish answering 1 command(s) within 300ms"),
        "{message}"
    );
}

#[tokio::test]
async fn the_tcp_runtime_api_works_too() {
    let haproxy = start_web_and_api();
    let client = HaproxyClient::new(
        "lb-tcp".into(),
        RuntimeApi::Tcp(haproxy.tcp_api_addr()),
        TIMEOUT,
    );
    let web02 = key("web", "web-02");
    client
        .write(&[
            ServerChange::SetAddr {
                key: web02.clone(),
                addr: "127.0.1.22".parse().unwrap(),
                port: 8082,
            },
            ServerChange::SetAdmin {
                key: web02.clone(),
                admin: ServerAdmin::Maint,
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        read_server(&client, &web02).await,
        observed(web02, "127.0.1.22", 8082, ServerAdmin::Maint)
    );
}

#[tokio::test]
async fn a_restart_drops_runtime_changes() {
    let mut haproxy = start_web_and_api();
    let client = unix_client(&haproxy);
    let web01 = key("web", "web-01");
    client
        .write(&[
            ServerChange::SetAddr {
                key: web01.clone(),
                addr: "127.0.1.99".parse().unwrap(),
                port: 9999,
            },
            ServerChange::SetAdmin {
                key: web01.clone(),
                admin: ServerAdmin::Maint,
            },
        ])
        .await
        .unwrap();
    haproxy.restart();
    assert_eq!(
        read_server(&client, &web01).await,
        observed(web01, "127.0.1.1", 8080, ServerAdmin::Ready)
    );
}
