//! What the harnesses of the three authoritative servers (BIND 9, Knot DNS, PowerDNS) share:
//! the trait the RFC 2136 tests drive them through, the zone file they start from, the key,
//! and `dig` to look at what they serve.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;

/// The name of the TSIG key every harness creates.
pub const KEY_NAME: &str = "ipdrift-key";
/// The `$TTL` of every record in the initial zone file.
pub const ZONE_TTL: u32 = 300;
/// `dig` comes with BIND's tools; every harness uses it to look at what its server serves.
const DIG_INSTALL: &str = "apt-get install bind9-dnsutils";

/// What the key may do with the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    /// Update it and transfer it (AXFR), as ipdrift's `read_ownership` needs.
    UpdateAndTransfer,
    /// Only update it: a primary set up for updates, not transfers.
    UpdateOnly,
    /// Only transfer it: a key for secondaries, not for updates.
    TransferOnly,
}

impl Grants {
    pub fn updates(self) -> bool {
        self != Grants::TransferOnly
    }

    pub fn transfers(self) -> bool {
        self != Grants::UpdateOnly
    }
}

/// A running primary for one zone on a loopback port, accepting updates signed with the
/// key [`KEY_NAME`] and transfers with it, as its [`Grants`] say.
pub trait Authoritative {
    /// "BIND 9", "Knot DNS", "PowerDNS": for assertion messages.
    fn product(&self) -> &'static str;
    /// `127.0.0.1:PORT`, for both UDP and TCP.
    fn addr(&self) -> SocketAddr;
    /// The zone, with its trailing dot.
    fn zone(&self) -> &str;
    fn key_name(&self) -> &str {
        KEY_NAME
    }
    fn secret_base64(&self) -> &str;
    /// The key as BIND's `tsig-keygen` writes it (`key "NAME" { algorithm …; secret "…"; };`),
    /// the file ipdrift's `tsig = { key_file = … }` reads.
    fn key_file_path(&self) -> PathBuf;
    /// What the server logged so far.
    fn log(&self) -> String;
    /// How many zone transfers of the zone the server logged as begun.
    fn transfers_started(&self) -> usize;
    /// How many zone transfers of the zone the server logged as denied.
    fn transfers_denied(&self) -> usize;
    /// How many UPDATEs of the zone the server logged as denied for the key's permissions.
    fn updates_denied(&self) -> usize;
    /// Kills the server (SIGKILL: fast, and updates are already stored) and waits for it.
    fn stop(&mut self);
    /// Starts the server again on the same port, with the zone as the updates left it.
    fn start(&mut self);
    fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// The rdata of `name`'s `rtype` records as `dig +short` prints them, sorted; empty when
    /// there are none.
    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        let mut lines: Vec<String> = dig(self.addr().port(), name, rtype)
            .unwrap_or_else(|| panic!("dig {name} {rtype} got no answer from {}", self.product()))
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    /// The zone's SOA serial.
    fn soa_serial(&self) -> u32 {
        let soa = self.query(self.zone(), "SOA");
        soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    /// How many messages a zone transfer signed with the key takes, as `dig` counts them.
    fn transfer_message_count(&self) -> usize {
        let output = run(Command::new(super::require_binary("dig", DIG_INSTALL))
            .arg("-k")
            .arg(self.key_file_path())
            .args(["+nocmd", "+nocomments", "+noall", "+stats", "-p"])
            .arg(self.addr().port().to_string())
            .args(["@127.0.0.1", self.zone(), "AXFR"]));
        // ";; XFR size: 412 records (messages 9, bytes 200123)"
        output
            .split_once("(messages ")
            .and_then(|(_, rest)| rest.split_once(','))
            .and_then(|(count, _)| count.parse().ok())
            .unwrap_or_else(|| panic!("no message count in dig's AXFR output:\n{output}"))
    }
}

/// A fresh random HMAC-SHA256 secret, base64, as `tsig-keygen` makes them (32 bytes).
pub fn random_secret() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// The key clause BIND's `tsig-keygen -a hmac-sha256` writes.
pub fn key_clause(secret_base64: &str) -> String {
    format!("key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret_base64}\";\n}};\n")
}

/// The zone file every server starts from: an SOA, an NS (`ns1`, 127.0.0.1) and `records`
/// (`(owner relative to the zone or "@", type, rdata)`), each with TTL [`ZONE_TTL`].
pub fn zone_file(zone: &str, records: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "$ORIGIN {zone}\n$TTL {ZONE_TTL}\n\
         @ IN SOA ns1 hostmaster 1 3600 600 86400 60\n\
         @ IN NS ns1\n\
         ns1 IN A 127.0.0.1\n"
    );
    for (owner, rtype, rdata) in records {
        writeln!(text, "{owner} IN {rtype} {rdata}").unwrap();
    }
    text
}

/// `zone` with exactly one trailing dot.
pub fn absolute(zone: &str) -> String {
    format!("{}.", zone.trim_end_matches('.'))
}

/// A port that is free for both TCP (checked by `free_port`) and UDP, as DNS servers need both.
pub fn free_udp_and_tcp_port() -> u16 {
    loop {
        let port = super::free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// `dig +short` against a server on loopback; `None` when dig got no answer at all.
pub fn dig(port: u16, name: &str, rtype: &str) -> Option<String> {
    let output = Command::new(super::require_binary("dig", DIG_INSTALL))
        .args(["+short", "+norecurse", "+time=1", "+tries=1", "-p"])
        .arg(port.to_string())
        .args(["@127.0.0.1", name, rtype])
        .output()
        .expect("run dig");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether the server on `port` serves `zone`'s SOA.
pub fn answers_soa(port: u16, zone: &str) -> bool {
    dig(port, zone, "SOA").is_some_and(|soa| !soa.is_empty())
}

/// Runs a command to completion and returns its stdout; panics with its stderr on failure.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
