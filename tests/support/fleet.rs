//! The seed outage on loopback: a BIND zone, a HAProxy with one backend, web servers on
//! 127.0.G.x addresses, an instances.json and an ipdrift config pointing at all of them.
//! Generation G of the fleet has the load balancer's public address 127.0.G.1 and web
//! server N the public address 127.0.G.(10+N) and the private address 127.0.G.(20+N);
//! moving to another generation is the provider's "scheduled update".

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;

use super::bind::Bind;
use super::haproxy::{BackendSpec, Haproxy};

pub const ZONE: &str = "example.test.";
/// Web servers of [`Fleet::start`]; [`Fleet::with_web_servers`] takes another count.
pub const WEB_SERVERS: u8 = 2;

pub fn lb_public(generation: u8) -> String {
    format!("127.0.{generation}.1")
}

pub fn web_public(generation: u8, n: u8) -> String {
    format!("127.0.{generation}.{}", 10 + n)
}

pub fn web_private(generation: u8, n: u8) -> String {
    format!("127.0.{generation}.{}", 20 + n)
}

/// A minimal HTTP server answering every request with `200` and its own name.
pub struct WebServer {
    stop: Arc<AtomicBool>,
    addr: String,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    pub fn start(ip: &str, port: u16, body: &str) -> WebServer {
        let addr = format!("{ip}:{port}");
        let listener =
            TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind web server {addr}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let body = body.to_string();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        WebServer {
            stop,
            addr,
            thread: Some(thread),
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /` on 127.0.0.1:port: `(status code, body)`, or `None` when the connection fails.
pub fn http_get(port: u16) -> Option<(u16, String)> {
    http_get_path(port, "/").map(|(status, _, body)| (status, body))
}

/// `GET path` on 127.0.0.1:port: `(status code, headers, body)`, or `None` on failure.
pub fn http_get_path(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Some((status, headers.to_string(), body.to_string()))
}

/// One line of `show servers state web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerState {
    pub name: String,
    /// `"addr:port"`.
    pub addr: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_admin_state` bits: 0x01 forced maintenance, 0x08 forced drain, ….
    pub admin_state: u32,
}

impl ServerState {
    /// Forced maintenance (`set server … state maint`, or added by `add server`).
    pub fn in_maint(&self) -> bool {
        self.admin_state & 0x01 != 0
    }
}

/// Everything the seed outage needs, converged at generation 1.
pub struct Fleet {
    pub dir: TempDir,
    pub bind: Bind,
    pub haproxy: Haproxy,
    pub web_port: u16,
    pub webs: Vec<WebServer>,
    /// How many web servers (`web-01` …) the fleet has.
    pub web_servers: u8,
}

impl Fleet {
    /// Starts BIND and HAProxy pointing at generation 1, [`WEB_SERVERS`] web servers of
    /// generation 1, and writes instances.json (generation 1) and ipdrift.toml.
    pub fn start() -> Fleet {
        Fleet::with_web_servers(WEB_SERVERS)
    }

    /// Like [`Fleet::start`] with `count` web servers (at most 9).
    pub fn with_web_servers(count: u8) -> Fleet {
        assert!((1..=9).contains(&count), "1 to 9 web servers, not {count}");
        let web_port = super::free_port();
        let mut records = vec![
            ("www", "A", lb_public(1)),
            ("static", "A", "192.0.2.99".to_string()),
        ];
        for n in 1..=count {
            records.push((
                Box::leak(format!("web-0{n}").into_boxed_str()),
                "A",
                web_public(1, n),
            ));
        }
        let records: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(a, b, c)| (*a, *b, c.as_str()))
            .collect();
        let bind = Bind::new(ZONE, &records);
        let servers: Vec<(String, String)> = (1..=count)
            .map(|n| {
                (
                    format!("web-0{n}"),
                    format!("{}:{web_port}", web_private(1, n)),
                )
            })
            .collect();
        let haproxy = Haproxy::start(&[BackendSpec {
            name: "web",
            servers: servers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect(),
        }]);
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-fleet-")
            .tempdir()
            .unwrap();
        let mut fleet = Fleet {
            dir,
            bind,
            haproxy,
            web_port,
            webs: Vec::new(),
            web_servers: count,
        };
        fleet.write_config(&format!("unix:{}", fleet.haproxy.socket_path().display()));
        fleet.move_to(1);
        fleet
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ipdrift.toml")
    }

    pub fn instances_path(&self) -> PathBuf {
        self.dir.path().join("instances.json")
    }

    /// Writes ipdrift.toml with the given runtime API address.
    pub fn write_config(&self, runtime_api: &str) {
        let config = format!(
            r#"[controller]
interval = "1s"
timeout = "3s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "{server}"
zone = "{ZONE}"
tsig = {{ key_file = "{key_file}" }}

[[record]]
dns = "ns1"
name = "www.{ZONE}"
select = {{ tags = {{ role = "lb" }} }}
address = "public_ipv4"
ttl = {ttl}

[[record]]
dns = "ns1"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
ttl = {ttl}

[[haproxy]]
name = "lb-01"
runtime_api = "{runtime_api}"

[[haproxy.backend]]
name = "web"
select = {{ tags = {{ role = "web" }} }}
address = "private_ipv4"
port = {port}
server = "{{name}}"
"#,
            server = self.bind.addr(),
            key_file = self.bind.key_file_path().display(),
            port = self.web_port,
            ttl = super::bind::ZONE_TTL,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// The provider's update: every instance gets generation `g`'s addresses, the web
    /// servers move there, and instances.json says so.
    pub fn move_to(&mut self, g: u8) {
        self.move_web_servers_to(g);
        self.write_instances(&self.instances_at(g));
    }

    /// Only the web servers move to generation `g` (body `web-0N gen G`); instances.json
    /// stays as it is.
    pub fn move_web_servers_to(&mut self, g: u8) {
        self.webs.clear();
        for n in 1..=self.web_servers {
            self.webs.push(WebServer::start(
                &web_private(g, n),
                self.web_port,
                &format!("web-0{n} gen {g}"),
            ));
        }
    }

    /// The instances of generation `g`, as instances.json lists them: the load balancer
    /// `lb` (role `lb`) and `web-0N` (role `web`), all running.
    pub fn instances_at(&self, g: u8) -> Vec<serde_json::Value> {
        let mut instances = vec![serde_json::json!({
            "id": "i-lb", "name": "lb", "state": "running",
            "public_ipv4": lb_public(g), "private_ipv4": format!("127.0.{g}.2"),
            "tags": {"role": "lb"},
        })];
        for n in 1..=self.web_servers {
            instances.push(web_instance(g, n));
        }
        instances
    }

    /// Writes instances.json (atomically) with `instances`.
    pub fn write_instances(&self, instances: &[serde_json::Value]) {
        let lines: Vec<String> = instances.iter().map(|i| i.to_string()).collect();
        write_atomically(
            &self.instances_path(),
            &format!("[{}]\n", lines.join(",\n")),
        );
    }

    /// `show servers state web`, read with std I/O: sorted (server name, "addr:port").
    pub fn haproxy_servers(&self) -> Vec<(String, String)> {
        self.server_states()
            .into_iter()
            .map(|s| (s.name, s.addr))
            .collect()
    }

    /// `show servers state web`, read with std I/O, sorted by server name.
    pub fn server_states(&self) -> Vec<ServerState> {
        server_states(&self.haproxy.socket_path(), "web")
    }

    /// What haproxy and DNS should say at generation `g`.
    pub fn converged_at(&self, g: u8) -> bool {
        self.dns_at(g) && self.haproxy_servers() == self.servers_at(g)
    }

    /// DNS says generation `g`: `www` and every `web-0N`.
    pub fn dns_at(&self, g: u8) -> bool {
        self.bind.query(&format!("www.{ZONE}"), "A") == vec![lb_public(g)]
            && (1..=self.web_servers).all(|n| {
                self.bind.query(&format!("web-0{n}.{ZONE}"), "A") == vec![web_public(g, n)]
            })
    }

    /// The servers of backend `web` at generation `g`: sorted (name, "addr:port").
    pub fn servers_at(&self, g: u8) -> Vec<(String, String)> {
        (1..=self.web_servers)
            .map(|n| {
                (
                    format!("web-0{n}"),
                    format!("{}:{}", web_private(g, n), self.web_port),
                )
            })
            .collect()
    }

    /// Runs the real binary with this fleet's config.
    pub fn ipdrift(&self, args: &[&str]) -> Output {
        ipdrift(&self.config_path(), args)
    }
}

/// `show servers state BACKEND` on the runtime API at `socket`, read with std I/O, sorted
/// by server name.
pub fn server_states(socket: &Path, backend: &str) -> Vec<ServerState> {
    let mut stream = UnixStream::connect(socket).expect("connect to the haproxy socket");
    stream
        .write_all(format!("show servers state {backend}\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let header: Vec<&str> = answer
        .lines()
        .find(|l| l.starts_with("# be_id"))
        .unwrap_or_else(|| panic!("no header in {answer:?}"))
        .trim_start_matches("# ")
        .split_whitespace()
        .collect();
    let column = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (name, addr, port) = (column("srv_name"), column("srv_addr"), column("srv_port"));
    let (op, admin) = (column("srv_op_state"), column("srv_admin_state"));
    let number = |text: &str| -> u32 {
        text.parse()
            .unwrap_or_else(|_| panic!("not a number: {text:?} in {answer:?}"))
    };
    let mut servers: Vec<ServerState> = answer
        .lines()
        .skip_while(|l| !l.starts_with("# be_id"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == header.len())
        .map(|cols| ServerState {
            name: cols[name].to_string(),
            addr: format!("{}:{}", cols[addr], cols[port]),
            op_state: number(cols[op]),
            admin_state: number(cols[admin]),
        })
        .collect();
    servers.sort();
    servers
}

/// Instance `web-0N` of generation `g`, running, role `web`.
pub fn web_instance(g: u8, n: u8) -> serde_json::Value {
    serde_json::json!({
        "id": format!("i-web-0{n}"), "name": format!("web-0{n}"), "state": "running",
        "public_ipv4": web_public(g, n), "private_ipv4": web_private(g, n),
        "tags": {"role": "web"},
    })
}

/// Runs `ipdrift --config CONFIG ARGS…` and returns its output.
pub fn ipdrift(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipdrift"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("IPDRIFT_CONFIG")
        .output()
        .expect("run ipdrift")
}

/// Writes through a temporary file and a rename, as a careful producer would.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
