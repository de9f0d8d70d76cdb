//! A real `haproxy` in a temporary directory: caller-given backends, a frontend on a free
//! loopback port, and the runtime API on both a unix socket and a loopback TCP port, both
//! at `level admin`. Synchronous (std::process), so sync and tokio tests can use it.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// One backend of the generated haproxy.cfg.
pub struct BackendSpec<'a> {
    pub name: &'a str,
    /// `(server name, "IP:PORT")`; IPv6 as `"[::1]:8080"`.
    pub servers: Vec<(&'a str, &'a str)>,
}

/// A running `haproxy -db`, killed when dropped.
pub struct Haproxy {
    dir: TempDir,
    frontend_port: u16,
    tcp_api: SocketAddr,
    child: Child,
}

impl Haproxy {
    /// Writes haproxy.cfg for `backends` (the first is the frontend's default backend),
    /// starts haproxy and waits until its runtime API answers.
    pub fn start(backends: &[BackendSpec<'_>]) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-haproxy-")
            .tempdir()
            .expect("create a temporary directory for haproxy");
        let frontend_port = super::free_port();
        let tcp_api = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let config = render_config(dir.path(), frontend_port, tcp_api, backends);
        fs::write(dir.path().join("haproxy.cfg"), config).expect("write haproxy.cfg");
        let child = spawn(dir.path());
        let mut haproxy = Haproxy {
            dir,
            frontend_port,
            tcp_api,
            child,
        };
        haproxy.wait_until_ready();
        haproxy
    }

    /// The admin-level unix socket (`stats socket DIR/admin.sock`).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The admin-level TCP runtime API (`stats socket ipv4@127.0.0.1:P`).
    pub fn tcp_api_addr(&self) -> SocketAddr {
        self.tcp_api
    }

    /// The port of the HTTP frontend on 127.0.0.1.
    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    /// The generated haproxy.cfg.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// Kills haproxy and starts it again from the same haproxy.cfg: like a production
    /// restart, every runtime change (addresses, states) is lost.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts haproxy again from haproxy.cfg after [`Haproxy::stop`]; waits until its
    /// runtime API answers.
    pub fn start_again(&mut self) {
        assert!(
            !matches!(self.child.try_wait(), Ok(None)),
            "haproxy is still running"
        );
        self.child = spawn(self.dir.path());
        self.wait_until_ready();
    }

    /// Kills haproxy (SIGKILL, like a crash) and waits for it; the socket stops answering.
    pub fn stop(&mut self) {
        // An error means the child already exited; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_until_ready(&mut self) {
        let socket = self.socket_path();
        let output = || fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default();
        let child = &mut self.child;
        let ready = super::wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "haproxy exited with {status} at start; its output:\n{}",
                    output()
                );
            }
            servers_state_answers(&socket)
        });
        assert!(
            ready,
            "haproxy's runtime API at {} did not answer within 10s; its output:\n{}",
            socket.display(),
            output()
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `haproxy -db` (foreground) on DIR/haproxy.cfg with its output in DIR/haproxy.log.
fn spawn(dir: &Path) -> Child {
    let binary = super::require_binary("haproxy", "apt-get install haproxy");
    let log = File::create(dir.join("haproxy.log")).expect("create haproxy.log");
    let log_for_stderr = log.try_clone().expect("clone the haproxy.log handle");
    Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .spawn()
        .expect("start haproxy")
}

/// True once the unix socket answers `show servers state` with a table.
fn servers_state_answers(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let mut answer = String::new();
    stream.write_all(b"show servers state\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("1\n")
}

fn render_config(
    dir: &Path,
    frontend_port: u16,
    tcp_api: SocketAddr,
    backends: &[BackendSpec<'_>],
) -> String {
    let mut config = format!(
        "global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         \x20   stats socket ipv4@{tcp_api} level admin\n\
         \n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 5s\n\
         \x20   timeout server 5s\n\
         \n\
         frontend fe\n\
         \x20   bind 127.0.0.1:{frontend_port}\n",
        socket = dir.join("admin.sock").display(),
    );
    if let Some(first) = backends.first() {
        writeln!(config, "    default_backend {}", first.name).unwrap();
    }
    for backend in backends {
        write!(
            config,
            "\nbackend {}\n    balance roundrobin\n",
            backend.name
        )
        .unwrap();
        for (server, addr) in &backend.servers {
            writeln!(config, "    server {server} {addr}").unwrap();
        }
    }
    config
}
