//! A real PowerDNS Authoritative primary (`pdns_server`, 4.7 on Debian 12) with the sqlite3
//! backend, for one zone on a free loopback port, accepting dynamic updates and, unless told
//! otherwise, zone transfers signed with a fresh TSIG key (`ipdrift-key`). See RECIPES.md,
//! "PowerDNS Authoritative".
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
    random_secret, run, zone_file,
};

const INSTALL: &str = "apt-get install pdns-server pdns-backend-sqlite3 sqlite3";
/// Where Debian's pdns-backend-sqlite3 puts the schema of the database.
const SCHEMA: &str = "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql";
/// How long pdns_server gets to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Another process can take the free port between `free_port` and pdns_server's bind.
const PORT_ATTEMPTS: usize = 5;

/// A running `pdns_server` serving one zone from a sqlite database in a temporary
/// directory; killed when dropped.
pub struct PowerDns {
    dir: TempDir,
    port: u16,
    zone: String,
    secret_base64: String,
    grants: Grants,
    /// The HTTP API, when started with [`PowerDns::with_api`].
    api: Option<Api>,
    pdns: Option<Child>,
}

/// The webserver and HTTP API of a [`PowerDns::with_api`] server.
#[derive(Debug, Clone)]
pub struct Api {
    pub port: u16,
    /// pdns.conf's `api-key`, sent as `X-API-Key`.
    pub key: String,
}

impl Api {
    /// `http://127.0.0.1:PORT`, for `api_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl PowerDns {
    /// Loads `zone` with the records of [`zone_file`](super::authoritative::zone_file) into
    /// a fresh database and starts pdns_server. As `grants` says, updates are allowed from
    /// loopback signed with the key (`allow-dnsupdate-from`, `TSIG-ALLOW-DNSUPDATE`), and
    /// transfers with the key (`TSIG-ALLOW-AXFR`). No address may transfer without the key
    /// (`allow-axfr-ips` holds a documentation address only).
    pub fn new(zone: &str, records: &[(&str, &str, &str)], grants: Grants) -> PowerDns {
        PowerDns::start(zone, records, grants, false)
    }

    /// Like [`PowerDns::new`], with the webserver and HTTP API on another free loopback
    /// port (`webserver=yes api=yes`), taking a fresh random api-key from loopback only.
    pub fn with_api(zone: &str, records: &[(&str, &str, &str)], grants: Grants) -> PowerDns {
        PowerDns::start(zone, records, grants, true)
    }

    fn start(zone: &str, records: &[(&str, &str, &str)], grants: Grants, api: bool) -> PowerDns {
        let new_api = || {
            api.then(|| Api {
                port: super::free_port(),
                key: random_secret().replace(['+', '/', '='], ""),
            })
        };
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-pdns-")
            .tempdir()
            .expect("create a temporary directory for pdns_server");
        let zone = absolute(zone);
        let secret_base64 = random_secret();
        fs::write(dir.path().join("key.conf"), key_clause(&secret_base64)).expect("write key.conf");
        fs::write(dir.path().join("zone.db"), zone_file(&zone, records)).expect("write zone.db");
        let mut pdns = PowerDns {
            dir,
            port: 0,
            zone,
            secret_base64,
            grants,
            api: new_api(),
            pdns: None,
        };
        pdns.port = free_udp_and_tcp_port();
        pdns.write_config();
        pdns.load_database();
        for attempt in 1..=PORT_ATTEMPTS {
            match pdns.launch() {
                Ok(()) => return pdns,
                Err(log) if log.contains("Address already in use") && attempt < PORT_ATTEMPTS => {
                    pdns.port = free_udp_and_tcp_port();
                    pdns.api = new_api();
                    pdns.write_config();
                }
                Err(log) => panic!("pdns_server did not start; its log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The HTTP API; panics unless started with [`PowerDns::with_api`].
    pub fn api(&self) -> &Api {
        self.api.as_ref().expect("started with PowerDns::with_api")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// pdns.conf. `SOA-EDIT-DNSUPDATE` is left to the zone's metadata (see
    /// [`Self::load_database`]); nothing is looked up outside (`security-poll-suffix=`).
    fn write_config(&self) {
        let dir = self.dir.path().display();
        let port = self.port;
        // Without TSIG-ALLOW-DNSUPDATE PowerDNS takes any signed update from these addresses.
        let update_from = match self.grants.updates() {
            true => "127.0.0.0/8",
            false => "192.0.2.1/32",
        };
        let config = format!(
            "launch=gsqlite3\n\
             gsqlite3-database={dir}/pdns.sqlite3\n\
             local-address=127.0.0.1\n\
             local-port={port}\n\
             socket-dir={dir}\n\
             dnsupdate=yes\n\
             allow-dnsupdate-from={update_from}\n\
             allow-axfr-ips=192.0.2.1/32\n\
             security-poll-suffix=\n\
             disable-syslog=yes\n\
             log-timestamp=no\n\
             distributor-threads=1\n\
             receiver-threads=1\n"
        );
        let config = match &self.api {
            None => config,
            Some(api) => format!(
                "{config}webserver=yes\n\
                 webserver-address=127.0.0.1\n\
                 webserver-port={}\n\
                 webserver-allow-from=127.0.0.0/8\n\
                 api=yes\n\
                 api-key={}\n\
                 webserver-loglevel=normal\n\
                 loglevel=6\n",
                api.port, api.key
            ),
        };
        fs::write(self.dir.path().join("pdns.conf"), config).expect("write pdns.conf");
    }

    /// Creates the database, loads the zone and the key, and sets the zone's metadata.
    /// `SOA-EDIT-DNSUPDATE=INCREASE` makes each UPDATE bump the serial by one, as BIND and
    /// Knot do (PowerDNS's default moves it to a date first).
    fn load_database(&self) {
        let schema = fs::File::open(SCHEMA)
            .unwrap_or_else(|why| panic!("{SCHEMA}: {why}; install it with: {INSTALL}"));
        run(Command::new(super::require_binary("sqlite3", INSTALL))
            .arg(self.dir.path().join("pdns.sqlite3"))
            .stdin(schema));
        let zone = self.zone.trim_end_matches('.');
        let zone_db = self.dir.path().join("zone.db");
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["load-zone", zone, zone_db.to_str().unwrap()],
            vec![
                "import-tsig-key",
                KEY_NAME,
                "hmac-sha256",
                &self.secret_base64,
            ],
            vec!["set-meta", zone, "SOA-EDIT-DNSUPDATE", "INCREASE"],
        ];
        if self.grants.updates() {
            steps.push(vec!["set-meta", zone, "TSIG-ALLOW-DNSUPDATE", KEY_NAME]);
        }
        if self.grants.transfers() {
            steps.push(vec!["set-meta", zone, "TSIG-ALLOW-AXFR", KEY_NAME]);
        }
        for args in steps {
            run(Command::new(super::require_binary("pdnsutil", INSTALL))
                .arg(format!("--config-dir={}", self.dir.path().display()))
                .args(args));
        }
    }

    /// Spawns pdns_server and waits until it answers for the zone; on failure returns its log.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("pdns.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open pdns.log");
        let pdns = Command::new(super::require_binary("pdns_server", INSTALL))
            .arg(format!("--config-dir={}", self.dir.path().display()))
            .args(["--daemon=no", "--guardian=no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn pdns_server");
        self.pdns = Some(pdns);

        let mut exited = false;
        let ready = super::wait_until(START_TIMEOUT, || {
            let pdns = self.pdns.as_mut().expect("pdns_server was just spawned");
            exited = matches!(pdns.try_wait(), Ok(Some(_)));
            exited
                || answers_soa(self.port, &self.zone)
                    && self.api.as_ref().is_none_or(|api| {
                        std::net::TcpStream::connect(("127.0.0.1", api.port)).is_ok()
                    })
        });
        if ready && !exited {
            return Ok(());
        }
        Authoritative::stop(self);
        Err(fs::read_to_string(&log_path).unwrap_or_default())
    }
}

impl Authoritative for PowerDns {
    fn product(&self) -> &'static str {
        "PowerDNS"
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
        fs::read_to_string(self.dir.path().join("pdns.log")).expect("read pdns.log")
    }

    fn transfers_started(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .lines()
            .filter(|line| line.contains(&format!("AXFR-out zone '{zone}'")))
            .filter(|line| line.ends_with("transfer initiated"))
            .count()
    }

    fn transfers_denied(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .lines()
            .filter(|line| line.contains(&format!("AXFR-out zone '{zone}'")))
            .filter(|line| line.ends_with("failed: client may not request AXFR"))
            .count()
    }

    fn updates_denied(&self) -> usize {
        let zone = self.zone.trim_end_matches('.');
        self.log()
            .lines()
            .filter(|line| {
                line.contains(&format!(
                    "for {zone}: Remote not listed in allow-dnsupdate-from"
                ))
            })
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut pdns) = self.pdns.take() {
            let _ = pdns.kill();
            let _ = pdns.wait();
        }
    }

    fn start(&mut self) {
        assert!(self.pdns.is_none(), "pdns_server is already running");
        if let Err(log) = self.launch() {
            panic!(
                "pdns_server did not start again on port {}; its log:\n{log}",
                self.port
            );
        }
    }
}

impl Drop for PowerDns {
    fn drop(&mut self) {
        Authoritative::stop(self);
    }
}
