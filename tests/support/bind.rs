//! A real BIND 9 primary for one zone, on a free loopback port, accepting dynamic updates
//! and zone transfers (AXFR) signed with a fresh TSIG key (`ipdrift-key`); and secondaries
//! of it ([`Bind::secondary_of`]) that transfer the zone with that key when NOTIFYed
//! ([`Bind::notify`]). See RECIPES.md, "BIND 9".
//!
//! Synchronous (std::process), so it works from plain and tokio tests alike.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub use super::authoritative::ZONE_TTL;
use super::authoritative::{
    Authoritative, Grants, KEY_NAME, absolute, answers_soa, free_udp_and_tcp_port, run, zone_file,
};

const INSTALL: &str = "apt-get install bind9 bind9-dnsutils";
/// How long named gets to load the zone and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Another process can take the free port between `free_port` and named's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running `named` serving one zone from a temporary directory; killed when dropped.
pub struct Bind {
    dir: TempDir,
    port: u16,
    zone: String,
    secret_base64: String,
    grants: Grants,
    role: Role,
    named: Option<Child>,
}

/// What the zone is on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// The primary; NOTIFY goes to these ports on 127.0.0.1 after each change, at most
    /// once per `delay` seconds.
    Primary { notify: Vec<u16>, delay: u32 },
    /// A secondary that transfers the zone from the primary on 127.0.0.1 at this port.
    Secondary { primary: u16 },
}

impl Bind {
    /// Starts named as primary for `zone` (e.g. `example.test.`) with an SOA, an NS
    /// (`ns1`, 127.0.0.1) and `records`: `(owner relative to the zone or "@", type, rdata)`,
    /// e.g. `("www", "A", "127.0.1.10")`, each with TTL [`ZONE_TTL`]. Updates and transfers
    /// signed with the key are allowed.
    pub fn new(zone: &str, records: &[(&str, &str, &str)]) -> Bind {
        Self::with_grants(zone, records, Grants::UpdateAndTransfer)
    }

    /// Like [`Bind::new`]; [`Grants::UpdateOnly`] is `allow-transfer { none; }`,
    /// [`Grants::TransferOnly`] `allow-update { none; }`.
    pub fn with_grants(zone: &str, records: &[(&str, &str, &str)], grants: Grants) -> Bind {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-bind-")
            .tempdir()
            .expect("create a temporary directory for named");
        let key_conf = run(
            Command::new(super::require_binary("tsig-keygen", INSTALL)).args([
                "-a",
                "hmac-sha256",
                KEY_NAME,
            ]),
        );
        let secret_base64 = key_conf
            .split_once("secret \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(secret, _)| secret.to_string())
            .unwrap_or_else(|| panic!("no secret in tsig-keygen's output:\n{key_conf}"));
        fs::write(dir.path().join("key.conf"), &key_conf).expect("write key.conf");
        let zone = absolute(zone);
        fs::write(dir.path().join("zone.db"), zone_file(&zone, records)).expect("write zone.db");

        let bind = Bind {
            dir,
            port: 0,
            zone,
            secret_base64,
            grants,
            role: Role::Primary {
                notify: Vec::new(),
                delay: 5,
            },
            named: None,
        };
        bind.launch_on_a_free_port()
    }

    /// Starts named as a secondary of `primary`'s zone that transfers it (signed with the
    /// primary's key) from 127.0.0.1 port `primary_port`: `primary.addr().port()` for a
    /// working one, a port nobody listens on for one that never catches up. It starts
    /// serving the zone file `primary` started from (the serial before any update), so
    /// that it answers at once; it refreshes from the primary when it starts and when
    /// NOTIFYed (see [`Bind::notify`]).
    pub fn secondary_of(primary: &Bind, primary_port: u16) -> Bind {
        Self::secondary_at_serial(primary, primary_port, 1)
    }

    /// [`Bind::secondary_of`], its zone file given SOA serial `serial` instead of 1: a
    /// secondary ahead of the primary in serial, with the primary's first records.
    pub fn secondary_at_serial(primary: &Bind, primary_port: u16, serial: u32) -> Bind {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-bind-secondary-")
            .tempdir()
            .expect("create a temporary directory for named");
        fs::copy(primary.dir().join("key.conf"), dir.path().join("key.conf"))
            .expect("copy the key");
        let zone = fs::read_to_string(primary.dir().join("zone.db")).expect("read zone.db");
        let zone = zone.replacen(" hostmaster 1 ", &format!(" hostmaster {serial} "), 1);
        fs::write(dir.path().join("zone.db"), zone).expect("write zone.db");
        let bind = Bind {
            dir,
            port: 0,
            zone: primary.zone.clone(),
            secret_base64: primary.secret_base64.clone(),
            grants: Grants::TransferOnly,
            role: Role::Secondary {
                primary: primary_port,
            },
            named: None,
        };
        bind.launch_on_a_free_port()
    }

    /// Makes the primary NOTIFY `secondary` of every change (`also-notify`, `notify
    /// explicit`), at most once per `notify_delay` seconds (`notify-delay`; BIND's default
    /// is 5: a change within 5 s of the last NOTIFY waits for the rest of them, the first
    /// after startup included): rewrites its config and restarts it, with the zone as the
    /// journal left it.
    pub fn notify(&mut self, secondary: &Bind, notify_delay: u32) {
        let Role::Primary { notify, delay } = &mut self.role else {
            panic!("only a primary sends NOTIFY");
        };
        notify.push(secondary.port);
        *delay = notify_delay;
        self.write_config();
        self.restart();
    }

    /// Stops named with SIGSTOP: it keeps its port, and the kernel still accepts TCP
    /// connections to it, but nothing is answered until it is killed.
    pub fn pause(&self) {
        let named = self.named.as_ref().expect("named is running");
        run(Command::new("kill")
            .arg("-STOP")
            .arg(named.id().to_string()));
    }

    fn launch_on_a_free_port(mut self) -> Bind {
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_udp_and_tcp_port();
            self.write_config();
            match self.launch() {
                Ok(()) => return self,
                Err(log) if log.contains("unable to listen") || log.contains("address in use") => {
                    continue;
                }
                Err(log) => panic!("named did not start; its log:\n{log}"),
            }
        }
        panic!("named could not bind a free port in {PORT_ATTEMPTS} attempts");
    }

    /// `127.0.0.1:PORT`, for both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The zone, with its trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The name of the TSIG key the zone's `allow-update` (and `allow-transfer`) admits.
    pub fn key_name(&self) -> &str {
        KEY_NAME
    }

    pub fn secret_base64(&self) -> &str {
        &self.secret_base64
    }

    /// The key file exactly as `tsig-keygen` wrote it.
    pub fn key_file_path(&self) -> PathBuf {
        self.dir.path().join("key.conf")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The rdata of `name`'s `rtype` records as `dig +short` prints them, sorted; empty when
    /// there are none.
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        Authoritative::query(self, name, rtype)
    }

    /// What named logged so far (it runs with `-g`: every category at info, to stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).expect("read named.log")
    }

    /// Kills named (SIGKILL: fast, and updates are already in the journal) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut named) = self.named.take() {
            let _ = named.kill();
            let _ = named.wait();
        }
    }

    /// Starts named again on the same port, with the zone as the journal left it.
    pub fn start(&mut self) {
        assert!(self.named.is_none(), "named is already running");
        if let Err(log) = self.launch() {
            panic!(
                "named did not start again on port {}; its log:\n{log}",
                self.port
            );
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn write_config(&self) {
        let dir = self.dir.path().display();
        let zone = self.zone.trim_end_matches('.');
        let port = self.port;
        let allowed = |granted: bool| match granted {
            true => format!("key {KEY_NAME};"),
            false => "none;".to_string(),
        };
        let allow_update = allowed(self.grants.updates());
        let allow_transfer = allowed(self.grants.transfers());
        let update = format!("allow-update {{ {allow_update} }};");
        let role = match &self.role {
            Role::Primary { notify, .. } if notify.is_empty() => {
                format!("type primary;\n    {update}")
            }
            Role::Primary { notify, delay } => {
                let ports: String = notify
                    .iter()
                    .map(|port| format!("127.0.0.1 port {port}; "))
                    .collect();
                format!(
                    "type primary;\n    {update}\n    notify explicit;\n    notify-delay {delay};\n    also-notify {{ {ports}}};"
                )
            }
            // A secondary takes no updates (BIND refuses allow-update in one).
            Role::Secondary { primary } => format!(
                "type secondary;\n    primaries {{ 127.0.0.1 port {primary} key {KEY_NAME}; }};\n    masterfile-format text;"
            ),
        };
        let config = format!(
            r#"include "{dir}/key.conf";
options {{
    directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
zone "{zone}" {{
    {role}
    file "{dir}/zone.db";
    allow-transfer {{ {allow_transfer} }};
}};
"#
        );
        fs::write(self.dir.path().join("named.conf"), config).expect("write named.conf");
    }

    /// Spawns named and waits until it answers for the zone; on failure returns its log.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("named.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open named.log");
        let named = Command::new(super::require_binary("named", INSTALL))
            .arg("-g")
            .arg("-c")
            .arg(self.dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn named");
        self.named = Some(named);

        let mut exited = false;
        let ready = super::wait_until(START_TIMEOUT, || {
            let named = self.named.as_mut().expect("named was just spawned");
            exited = matches!(named.try_wait(), Ok(Some(_)));
            exited || answers_soa(self.port, &self.zone)
        });
        if ready && !exited {
            return Ok(());
        }
        self.stop();
        Err(fs::read_to_string(&log_path).unwrap_or_default())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Authoritative for Bind {
    fn product(&self) -> &'static str {
        "BIND 9"
    }

    fn addr(&self) -> SocketAddr {
        Bind::addr(self)
    }

    fn zone(&self) -> &str {
        &self.zone
    }

    fn secret_base64(&self) -> &str {
        &self.secret_base64
    }

    fn key_file_path(&self) -> PathBuf {
        Bind::key_file_path(self)
    }

    fn log(&self) -> String {
        Bind::log(self)
    }

    fn transfers_started(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .matches(&format!("transfer of '{zone}/IN': AXFR started"))
            .count()
    }

    fn transfers_denied(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .matches(&format!("zone transfer '{zone}/AXFR/IN' denied"))
            .count()
    }

    fn updates_denied(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .matches(&format!("update '{zone}/IN' denied"))
            .count()
    }

    fn stop(&mut self) {
        Bind::stop(self);
    }

    fn start(&mut self) {
        Bind::start(self);
    }
}
