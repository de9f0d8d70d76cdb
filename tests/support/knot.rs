//! A real Knot DNS primary (`knotd`, 3.2 on Debian 12) for one zone, on a free loopback
//! port, accepting dynamic updates and, unless told otherwise, zone transfers signed with a
//! fresh TSIG key (`ipdrift-key`). See RECIPES.md, "Knot DNS".
//!
//! Synchronous (std::process), so it works from plain and tokio tests alike.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::authoritative::{
    Authoritative, Grants, KEY_NAME, absolute, answers_soa, free_udp_and_tcp_port, key_clause,
    random_secret, zone_file,
};

const INSTALL: &str = "apt-get install knot knot-dnsutils";
/// How long knotd gets to load the zone and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Another process can take the free port between `free_port` and knotd's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running `knotd` serving one zone from a temporary directory; killed when dropped.
pub struct Knot {
    dir: TempDir,
    port: u16,
    zone: String,
    secret_base64: String,
    grants: Grants,
    knotd: Option<Child>,
}

impl Knot {
    /// Starts knotd as primary for `zone` with the records of
    /// [`zone_file`](super::authoritative::zone_file). The key's ACL allows `update` and
    /// `transfer`, as `grants` says.
    pub fn new(zone: &str, records: &[(&str, &str, &str)], grants: Grants) -> Knot {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-knot-")
            .tempdir()
            .expect("create a temporary directory for knotd");
        let zone = absolute(zone);
        let secret_base64 = random_secret();
        fs::write(dir.path().join("key.conf"), key_clause(&secret_base64)).expect("write key.conf");
        fs::write(
            dir.path().join(format!("{zone}zone")),
            zone_file(&zone, records),
        )
        .expect("write the zone file");
        let mut knot = Knot {
            dir,
            port: 0,
            zone,
            secret_base64,
            grants,
            knotd: None,
        };
        for _ in 0..PORT_ATTEMPTS {
            knot.port = free_udp_and_tcp_port();
            knot.write_config();
            match knot.launch() {
                Ok(()) => return knot,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("knotd did not start; its log:\n{log}"),
            }
        }
        panic!("knotd could not bind a free port in {PORT_ATTEMPTS} attempts");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// knot.conf: one key, one ACL for it, one zone. Zone files are rewritten after every
    /// update (`zonefile-sync: 0`) and updates are kept in the journal, so both survive a
    /// restart. Debug logging, because that is where knotd reports a denied transfer.
    fn write_config(&self) {
        let dir = self.dir.path().display();
        let port = self.port;
        let zone = self.zone.trim_end_matches('.');
        let secret = &self.secret_base64;
        let actions = match self.grants {
            Grants::UpdateAndTransfer => "[update, transfer]",
            Grants::UpdateOnly => "[update]",
            Grants::TransferOnly => "[transfer]",
        };
        let config = format!(
            r#"server:
    rundir: "{dir}"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: debug
database:
    storage: "{dir}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: ipdrift
    key: {KEY_NAME}
    action: {actions}
template:
  - id: default
    storage: "{dir}"
    file: "%s.zone"
    zonefile-sync: 0
zone:
  - domain: {zone}
    acl: [ipdrift]
"#
        );
        fs::write(self.dir.path().join("knot.conf"), config).expect("write knot.conf");
    }

    /// Spawns knotd and waits until it answers for the zone; on failure returns its log.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("knotd.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open knotd.log");
        let knotd = Command::new(super::require_binary("knotd", INSTALL))
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn knotd");
        self.knotd = Some(knotd);

        let mut exited = false;
        let ready = super::wait_until(START_TIMEOUT, || {
            let knotd = self.knotd.as_mut().expect("knotd was just spawned");
            exited = matches!(knotd.try_wait(), Ok(Some(_)));
            exited || answers_soa(self.port, &self.zone)
        });
        if ready && !exited {
            return Ok(());
        }
        Authoritative::stop(self);
        Err(fs::read_to_string(&log_path).unwrap_or_default())
    }
}

impl Authoritative for Knot {
    fn product(&self) -> &'static str {
        "Knot DNS"
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn zone(&self) -> &str {
        &self.zone
    }

    fn secret_base64(&self) -> &str {
        &self.secret_base64
    }

    fn key_file_path(&self) -> PathBuf {
        self.dir.path().join("key.conf")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("knotd.log")).expect("read knotd.log")
    }

    fn transfers_started(&self) -> usize {
        let log = self.log();
        log.lines()
            .filter(|line| line.contains(&format!("[{}] AXFR, outgoing", self.zone)))
            .filter(|line| line.contains(", started"))
            .count()
    }

    fn transfers_denied(&self) -> usize {
        let log = self.log();
        log.lines()
            .filter(|line| line.contains(&format!("[{}] ACL, denied, action transfer", self.zone)))
            .count()
    }

    fn updates_denied(&self) -> usize {
        let log = self.log();
        log.lines()
            .filter(|line| line.contains(&format!("[{}] ACL, denied, action update", self.zone)))
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut knotd) = self.knotd.take() {
            let _ = knotd.kill();
            let _ = knotd.wait();
        }
    }

    fn start(&mut self) {
        assert!(self.knotd.is_none(), "knotd is already running");
        if let Err(log) = self.launch() {
            panic!(
                "knotd did not start again on port {}; its log:\n{log}",
                self.port
            );
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        Authoritative::stop(self);
    }
}
