//! A real single-member etcd (Debian's `etcd-server`, 3.4) on free loopback ports, with its
//! data in a temporary directory. See RECIPES.md, "etcd". Synchronous (std::process).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::fleet::http_get_path;

const INSTALL: &str = "apt-get install etcd-server";
/// How long etcd gets to elect itself and answer /health.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Another process can take a free port between `free_port` and etcd's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running `etcd`, killed when dropped.
pub struct Etcd {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-etcd-")
            .tempdir()
            .expect("create a temporary directory for etcd");
        let mut etcd = Etcd {
            dir,
            client_port: 0,
            peer_port: 0,
            child: None,
        };
        for _ in 0..PORT_ATTEMPTS {
            etcd.client_port = super::free_port();
            etcd.peer_port = super::free_port();
            match etcd.launch() {
                Ok(()) => return etcd,
                Err(log) if log.contains("address already in use") => {
                    // A failed first start leaves a half-made member behind.
                    let _ = fs::remove_dir_all(etcd.data_dir());
                    continue;
                }
                Err(log) => panic!("etcd did not start; its log:\n{log}"),
            }
        }
        panic!("etcd could not bind free ports in {PORT_ATTEMPTS} attempts");
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL, as a crash would) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data: its leases come back, each with a
    /// fresh TTL.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        if let Err(log) = self.launch() {
            panic!("etcd did not start again; its log:\n{log}");
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Spawns etcd and waits until /health says so; on failure returns its log.
    fn launch(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open etcd.log");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(super::require_binary("etcd", INSTALL))
            .arg("--name")
            .arg("ipdrift-test")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("ipdrift-test={peer}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let port = self.client_port;
        let mut exited = false;
        let ready = super::wait_until(START_TIMEOUT, || {
            let child = self.child.as_mut().expect("etcd was just spawned");
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited
                || http_get_path(port, "/health")
                    .is_some_and(|(status, _, body)| status == 200 && body.contains("true"))
        });
        if ready && !exited {
            return Ok(());
        }
        self.stop();
        Err(fs::read_to_string(self.log_path()).unwrap_or_default())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
