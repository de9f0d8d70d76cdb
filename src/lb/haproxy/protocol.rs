//! The HAProxy runtime-API protocol, without I/O: where the API listens, the commands
//! ipdrift sends (every argument validated first), how one connection's answers are
//! framed, and what those answers mean.
//!
//! Without `prompt` mode HAProxy runs the commands of one line (separated by `;`) in
//! order, ends each answer with an empty line, and closes the connection. The answer texts
//! below were checked against HAProxy 2.6 and its source (`src/server.c`, `src/proxy.c`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::lb::ServerChange;
use crate::model::{ObservedServer, ServerAdmin, ServerKey};
use crate::validate::{self, Invalid};

/// Where a load balancer's runtime API listens (HAProxy's `stats socket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeApi {
    /// `unix:/run/haproxy/admin.sock`
    Unix(PathBuf),
    /// `tcp:127.0.0.1:9999`
    Tcp(SocketAddr),
}

impl RuntimeApi {
    /// Parses `unix:PATH` or `tcp:IP:PORT` (`tcp:[::1]:9999` for IPv6). A relative PATH
    /// is kept as written; resolving it is the caller's business.
    pub fn parse(text: &str) -> Result<RuntimeApi, Invalid> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Invalid(format!(
                    "runtime API {} has no socket path; write unix:/run/haproxy/admin.sock",
                    validate::printable(text)
                )));
            }
            return Ok(RuntimeApi::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            let addr: SocketAddr = addr.parse().map_err(|_| {
                Invalid(format!(
                    "runtime API {} is not tcp:IP:PORT; write e.g. tcp:127.0.0.1:9999 \
                     or tcp:[::1]:9999 (host names are not accepted)",
                    validate::printable(text)
                ))
            })?;
            validate::port(i64::from(addr.port()))?;
            return Ok(RuntimeApi::Tcp(addr));
        }
        Err(Invalid(format!(
            "runtime API {} must start with unix: or tcp:, e.g. unix:/run/haproxy/admin.sock \
             or tcp:127.0.0.1:9999",
            validate::printable(text)
        )))
    }

    /// The haproxy.cfg `global` line that makes HAProxy listen here with the rights
    /// ipdrift needs; error messages suggest it.
    pub fn stats_socket_line(&self) -> String {
        match self {
            RuntimeApi::Unix(path) => {
                format!("stats socket {} mode 600 level admin", path.display())
            }
            RuntimeApi::Tcp(addr) => {
                let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
                format!("stats socket {family}@{addr} level admin")
            }
        }
    }
}

impl fmt::Display for RuntimeApi {
    /// The form [`RuntimeApi::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeApi::Unix(path) => write!(f, "unix:{}", path.display()),
            RuntimeApi::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// An answer HAProxy gave that ipdrift cannot accept. Answers are kept verbatim; the
/// messages quote their first line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `show servers state B` answered `Can't find backend.`
    #[error(
        "HAProxy has no backend {backend:?} (it answered {}); check the backend name against haproxy.cfg",
        quote(answer)
    )]
    NoSuchBackend { backend: String, answer: String },
    /// `show servers state B` answered something other than a server table.
    #[error(
        "HAProxy did not list the servers of backend {backend:?}; it answered {}{}",
        quote(answer),
        hint(answer)
    )]
    ServersStateRefused { backend: String, answer: String },
    /// The server table of a backend does not have the expected shape.
    #[error("cannot read HAProxy's server table for backend {backend:?}, line {line}: {reason}")]
    MalformedServersState {
        backend: String,
        /// 1-based line number within the answer.
        line: usize,
        reason: String,
    },
    /// `set server B/S addr …` was refused (or only partly applied).
    #[error(
        "HAProxy refused to change the address of server {server}: {}{}",
        quote(answer),
        hint(answer)
    )]
    SetAddrRefused { server: ServerKey, answer: String },
    /// `set server B/S state …` was refused.
    #[error(
        "HAProxy refused to set server {server} to {admin}: {}{}",
        quote(answer),
        hint(answer)
    )]
    SetAdminRefused {
        server: ServerKey,
        admin: ServerAdmin,
        answer: String,
    },
    /// `add server B/S …` was refused.
    #[error(
        "HAProxy refused to add server {server}: {}{}; adding servers needs HAProxy ≥ 2.4 and a backend whose balance algorithm allows dynamic servers (e.g. roundrobin)",
        quote(answer),
        hint(answer)
    )]
    AddServerRefused { server: ServerKey, answer: String },
    /// `del server B/S` was refused.
    #[error(
        "HAProxy refused to delete server {server}: {}{}",
        quote(answer),
        hint(answer)
    )]
    DelServerRefused { server: ServerKey, answer: String },
    /// The connection carried a different number of answers than commands were sent.
    #[error(
        "HAProxy gave {received} answers to {sent} commands; was it reloaded or restarted meanwhile?"
    )]
    AnswerCount { sent: usize, received: usize },
    /// The connection closed in the middle of an answer.
    #[error(
        "HAProxy closed the connection in the middle of an answer; was it reloaded or restarted meanwhile?"
    )]
    IncompleteAnswer,
}

/// The first line of an answer, quoted, with `…` when more lines follow (an unknown
/// command is answered with a whole help text).
fn quote(answer: &str) -> String {
    let answer = answer.trim();
    match answer.split_once('\n') {
        Some((first, _)) => format!("{} …", validate::printable(first)),
        None => validate::printable(answer),
    }
}

/// What to do about an answer, when HAProxy's own words do not say it.
fn hint(answer: &str) -> &'static str {
    if answer.starts_with("Permission denied") {
        " (the stats socket needs `level admin` in haproxy.cfg)"
    } else {
        ""
    }
}

/// `show backend`: the names of every backend, one a line after a `# name` header.
pub const SHOW_BACKEND: &str = "show backend";

/// Reads the answer to `show backend`.
pub fn parse_backend_list(answer: &str) -> Result<Vec<String>, String> {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some(header) if header.starts_with('#') => {}
        _ => return Err(format!("`show backend` answered {:?}", answer.trim())),
    }
    lines
        .map(|name| {
            validate::haproxy_name(name)
                .map(|_| name.to_string())
                .map_err(|e| {
                    format!(
                        "`show backend` listed {}: {}",
                        validate::printable(name),
                        e.0
                    )
                })
        })
        .collect()
}

/// `show servers state B`: the server table of one backend.
pub fn show_servers_state(backend: &str) -> Result<String, Invalid> {
    validate::haproxy_name(backend)?;
    Ok(format!("show servers state {backend}"))
}

/// `set server B/S addr IP port P`.
pub fn set_addr(key: &ServerKey, addr: IpAddr, port: u16) -> Result<String, Invalid> {
    let server = server_ref(key)?;
    let addr = validate::target_addr(addr)?;
    let port = validate::port(i64::from(port))?;
    Ok(format!("set server {server} addr {addr} port {port}"))
}

/// `set server B/S state ready|drain|maint`.
pub fn set_admin(key: &ServerKey, admin: ServerAdmin) -> Result<String, Invalid> {
    let server = server_ref(key)?;
    Ok(format!("set server {server} state {admin}"))
}

/// `add server B/S IP:PORT` (HAProxy ≥ 2.4 adds dynamic servers in maintenance), with
/// `check` and `enable health` when HAProxy's health checks should judge the server.
pub fn add_server(
    key: &ServerKey,
    addr: IpAddr,
    port: u16,
    check: bool,
) -> Result<String, Invalid> {
    let server = server_ref(key)?;
    let addr = validate::target_addr(addr)?;
    let port = validate::port(i64::from(port))?;
    let target = crate::model::socket_text(addr, port);
    Ok(if check {
        format!("add server {server} {target} check;enable health {server}")
    } else {
        format!("add server {server} {target}")
    })
}

/// `del server B/S`.
pub fn del_server(key: &ServerKey) -> Result<String, Invalid> {
    Ok(format!("del server {}", server_ref(key)?))
}

/// The command that carries out `change`.
pub fn change_command(change: &ServerChange) -> Result<String, Invalid> {
    match change {
        ServerChange::SetAddr { key, addr, port } => set_addr(key, *addr, *port),
        ServerChange::SetAdmin { key, admin } => set_admin(key, *admin),
        ServerChange::Add {
            key,
            addr,
            port,
            check,
        } => add_server(key, *addr, *port, *check),
        ServerChange::Delete { key } => del_server(key),
    }
}

/// `B/S` with both names validated.
fn server_ref(key: &ServerKey) -> Result<String, Invalid> {
    validate::haproxy_name(&key.backend)?;
    validate::haproxy_name(&key.server)?;
    Ok(format!("{}/{}", key.backend, key.server))
}

/// Whether HAProxy ends its answer to `change` with an empty line. `add server` and `del
/// server` errors (and `del server`'s success) do not, so those commands go on a connection
/// of their own where the end of the answer is the end of the connection.
pub fn answer_is_framed(change: &ServerChange) -> bool {
    matches!(
        change,
        ServerChange::SetAddr { .. } | ServerChange::SetAdmin { .. }
    )
}

/// One request line carrying `commands` (built by this module, so free of `;` and
/// newlines), executed by HAProxy in order.
pub fn request_line(commands: &[String]) -> String {
    let mut line = commands.join(";");
    line.push('\n');
    line
}

/// Splits everything HAProxy sent on one connection into the answers to the `sent`
/// commands of the request line. Each answer is a run of non-empty lines ended by an
/// empty line, so an empty answer (a successful `set server … state`) is a lone `\n`.
/// The returned answers have no trailing newline.
pub fn split_answers(response: &str, sent: usize) -> Result<Vec<&str>, ProtocolError> {
    let mut answers = Vec::with_capacity(sent);
    let mut answer_start = 0;
    let mut line_start = 0;
    while line_start < response.len() {
        let Some(newline) = response[line_start..].find('\n') else {
            return Err(ProtocolError::IncompleteAnswer);
        };
        let line_end = line_start + newline;
        if line_end == line_start {
            let answer = &response[answer_start..line_start];
            answers.push(answer.strip_suffix('\n').unwrap_or(answer));
            answer_start = line_end + 1;
        }
        line_start = line_end + 1;
    }
    if answer_start != response.len() {
        return Err(ProtocolError::IncompleteAnswer);
    }
    if answers.len() != sent {
        return Err(ProtocolError::AnswerCount {
            sent,
            received: answers.len(),
        });
    }
    Ok(answers)
}

/// HAProxy's answer when `show servers state B` names no backend.
const NO_SUCH_BACKEND: &str = "Can't find backend.";

/// `srv_admin_state` bits (HAProxy's `SRV_ADMF_MAINT` mask) that take a server out of
/// service: forced (0x01), inherited from a tracked server (0x02), DNS resolution
/// failed (0x20). Not 0x04 (`disabled` in haproxy.cfg): it stays set after
/// `set server … state ready` while the server takes traffic again, and a disabled
/// server also has 0x01 until then. Not 0x40 either: it only records an FQDN change.
const ADMIN_MAINT_BITS: u32 = 0x01 | 0x02 | 0x20;
/// `srv_admin_state` bits for drain (`SRV_ADMF_DRAIN`): forced (0x08), inherited (0x10).
const ADMIN_DRAIN_BITS: u32 = 0x08 | 0x10;

/// What `srv_admin_state` means for traffic; maintenance wins over drain.
fn admin_from_state_bits(bits: u32) -> ServerAdmin {
    if bits & ADMIN_MAINT_BITS != 0 {
        ServerAdmin::Maint
    } else if bits & ADMIN_DRAIN_BITS != 0 {
        ServerAdmin::Drain
    } else {
        ServerAdmin::Ready
    }
}

/// Positions of the columns ipdrift reads, found by name in the `# …` header line so a
/// HAProxy version that adds or moves columns is still read correctly.
struct StateColumns {
    count: usize,
    be_name: usize,
    srv_name: usize,
    srv_addr: usize,
    srv_admin_state: usize,
    srv_port: usize,
}

impl StateColumns {
    fn from_header(header: &str) -> Result<StateColumns, String> {
        let Some(names) = header.strip_prefix('#') else {
            return Err(format!(
                "expected the `# be_id be_name …` header, found {}",
                validate::printable(header)
            ));
        };
        let names: Vec<&str> = names.split_whitespace().collect();
        let find = |wanted: &str| {
            names
                .iter()
                .position(|name| *name == wanted)
                .ok_or_else(|| format!("the header has no {wanted} column"))
        };
        Ok(StateColumns {
            count: names.len(),
            be_name: find("be_name")?,
            srv_name: find("srv_name")?,
            srv_addr: find("srv_addr")?,
            srv_admin_state: find("srv_admin_state")?,
            srv_port: find("srv_port")?,
        })
    }

    fn server(&self, backend: &str, line: &str) -> Result<ObservedServer, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != self.count {
            return Err(format!(
                "{} fields where the header names {}",
                fields.len(),
                self.count
            ));
        }
        if fields[self.be_name] != backend {
            return Err(format!(
                "a server of backend {} in the answer for backend {backend:?}",
                validate::printable(fields[self.be_name])
            ));
        }
        let addr = match fields[self.srv_addr] {
            "-" => None,
            text => Some(text.parse::<IpAddr>().map_err(|_| {
                format!(
                    "srv_addr {} is not an IP address",
                    validate::printable(text)
                )
            })?),
        };
        let port = fields[self.srv_port].parse::<u16>().map_err(|_| {
            format!(
                "srv_port {} is not a port number",
                validate::printable(fields[self.srv_port])
            )
        })?;
        let admin_bits = fields[self.srv_admin_state].parse::<u32>().map_err(|_| {
            format!(
                "srv_admin_state {} is not a number",
                validate::printable(fields[self.srv_admin_state])
            )
        })?;
        Ok(ObservedServer {
            key: ServerKey {
                backend: backend.to_string(),
                server: fields[self.srv_name].to_string(),
            },
            addr,
            port,
            admin: admin_from_state_bits(admin_bits),
            durable: true,
        })
    }
}

/// Reads the answer to `show servers state B`: a version line, a `# …` header naming
/// the columns, then one line per server. `srv_addr` is `-` when the server has no
/// address (e.g. an unresolved FQDN). A backend without servers gives an empty list.
pub fn parse_servers_state(
    backend: &str,
    answer: &str,
) -> Result<Vec<ObservedServer>, ProtocolError> {
    let mut lines = answer
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let malformed = |line: usize, reason: String| ProtocolError::MalformedServersState {
        backend: backend.to_string(),
        line,
        reason,
    };

    // Anything but a version number first means HAProxy answered with a message.
    match lines.next() {
        Some((_, version)) if version.parse::<u32>().is_ok() => {}
        _ if answer.trim() == NO_SUCH_BACKEND => {
            return Err(ProtocolError::NoSuchBackend {
                backend: backend.to_string(),
                answer: answer.to_string(),
            });
        }
        _ => {
            return Err(ProtocolError::ServersStateRefused {
                backend: backend.to_string(),
                answer: answer.to_string(),
            });
        }
    }
    let (header_line, header) = lines
        .next()
        .ok_or_else(|| malformed(2, "the `# be_id be_name …` header is missing".into()))?;
    let columns =
        StateColumns::from_header(header).map_err(|reason| malformed(header_line, reason))?;
    lines
        .map(|(line_number, line)| {
            columns
                .server(backend, line)
                .map_err(|reason| malformed(line_number, reason))
        })
        .collect()
}

/// Reads the answer to `set server B/S addr IP port P`. HAProxy reports each half:
/// `IP changed from 'A' to 'B'` or `no need to change the addr`, then
/// `port changed from 'P' to 'Q'` or `no need to change the port`, joined by `, ` and
/// followed by ` by 'stats socket command'`; HAProxy 3.x says `nothing changed` when
/// nothing did. Anything else (`No such server.`, `Invalid addr …`, a report of a
/// change followed by a port error) is a refusal.
pub fn parse_set_addr_answer(key: &ServerKey, answer: &str) -> Result<(), ProtocolError> {
    let text = answer.trim();
    let report = match text.rfind(" by '") {
        Some(at) if text.ends_with('\'') => &text[..at],
        _ => text,
    };
    let accepted = report == "nothing changed"
        || (!report.is_empty() && report.split(", ").all(is_addr_report_clause));
    if accepted {
        Ok(())
    } else {
        Err(ProtocolError::SetAddrRefused {
            server: key.clone(),
            answer: answer.to_string(),
        })
    }
}

fn is_addr_report_clause(clause: &str) -> bool {
    let is_change_of = |subject: &str| {
        clause
            .strip_prefix(subject)
            .and_then(|rest| rest.strip_prefix(" changed from '"))
            .and_then(|rest| rest.strip_suffix('\''))
            .is_some_and(|values| values.contains("' to '"))
    };
    clause == "no need to change the addr"
        || clause == "no need to change the port"
        || is_change_of("IP")
        || is_change_of("port")
}

/// Reads the answer to `set server B/S state …`: empty on success, a sentence otherwise
/// (`No such server.`, `No such backend.`, `Permission denied`).
pub fn parse_set_admin_answer(
    key: &ServerKey,
    admin: ServerAdmin,
    answer: &str,
) -> Result<(), ProtocolError> {
    if answer.trim().is_empty() {
        Ok(())
    } else {
        Err(ProtocolError::SetAdminRefused {
            server: key.clone(),
            admin,
            answer: answer.to_string(),
        })
    }
}

/// Reads the answer to [`change_command`]`(change)`.
pub fn parse_change_answer(change: &ServerChange, answer: &str) -> Result<(), ProtocolError> {
    match change {
        ServerChange::SetAddr { key, .. } => parse_set_addr_answer(key, answer),
        ServerChange::SetAdmin { key, admin } => parse_set_admin_answer(key, *admin, answer),
        ServerChange::Add { key, .. } => parse_add_server_answer(key, answer),
        ServerChange::Delete { key } => parse_del_server_answer(key, answer),
    }
}

/// The whole answer to `add server …` (and `enable health …`, which answers nothing):
/// `New server registered.` on success, a sentence naming the problem otherwise.
pub fn parse_add_server_answer(key: &ServerKey, answer: &str) -> Result<(), ProtocolError> {
    if answer.trim() == "New server registered." {
        Ok(())
    } else {
        Err(ProtocolError::AddServerRefused {
            server: key.clone(),
            answer: answer.trim().to_string(),
        })
    }
}

/// The whole answer to `del server …`: `Server deleted.` on success.
pub fn parse_del_server_answer(key: &ServerKey, answer: &str) -> Result<(), ProtocolError> {
    if answer.trim() == "Server deleted." {
        Ok(())
    } else {
        Err(ProtocolError::DelServerRefused {
            server: key.clone(),
            answer: answer.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn add_and_del_server_commands_are_validated() {
        let k = key("web", "web-03");
        let addr: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(
            add_server(&k, addr, 80, false).unwrap(),
            "add server web/web-03 10.0.0.3:80"
        );
        assert_eq!(
            add_server(&k, "2001:db8::3".parse().unwrap(), 80, true).unwrap(),
            "add server web/web-03 [2001:db8::3]:80 check;enable health web/web-03"
        );
        assert!(add_server(&k, addr, 0, false).is_err());
        assert!(add_server(&key("web", "a;del server web/b"), addr, 80, false).is_err());
        assert_eq!(del_server(&k).unwrap(), "del server web/web-03");
        assert!(parse_add_server_answer(&k, "New server registered.\n\n").is_ok());
        let refused = parse_add_server_answer(
            &k,
            "Already exists a server with the same name in backend.\n",
        );
        assert!(refused.unwrap_err().to_string().contains("Already exists"));
        assert!(parse_del_server_answer(&k, "Server deleted.\n").is_ok());
        assert!(
            parse_del_server_answer(&k, "Only servers in maintenance mode can be deleted.\n")
                .is_err()
        );
    }

    /// The header HAProxy 2.6 writes.
    const HEADER_2_6: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state \
        srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status \
        srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id \
        srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
        srv_check_addr srv_agent_addr srv_agent_port";

    fn key(backend: &str, server: &str) -> ServerKey {
        ServerKey {
            backend: backend.into(),
            server: server.into(),
        }
    }

    fn observed(server: &str, addr: Option<&str>, port: u16, admin: ServerAdmin) -> ObservedServer {
        ObservedServer {
            key: key("web", server),
            addr: addr.map(|a| a.parse().unwrap()),
            port,
            admin,
            durable: true,
        }
    }

    /// A 2.6 table line with the given variable fields.
    fn state_line(backend: &str, server: &str, addr: &str, admin_bits: u32, port: u16) -> String {
        format!(
            "3 {backend} 1 {server} {addr} 2 {admin_bits} 1 1 4 1 0 2 0 0 0 0 - {port} - 0 0 - - 0"
        )
    }

    #[test]
    fn commands_are_built_from_validated_arguments() {
        let web01 = key("web", "web-01");
        assert_eq!(show_servers_state("web").unwrap(), "show servers state web");
        assert_eq!(
            parse_backend_list("# name\nweb\nstats\n\n").unwrap(),
            vec!["web", "stats"]
        );
        assert!(parse_backend_list("Unknown command.\n").is_err());
        assert!(parse_backend_list("# name\nweb\x1b[2J\n").is_err());
        assert_eq!(
            set_addr(&web01, "192.0.2.7".parse().unwrap(), 8080).unwrap(),
            "set server web/web-01 addr 192.0.2.7 port 8080"
        );
        assert_eq!(
            set_addr(&web01, "2001:db8::7".parse().unwrap(), 443).unwrap(),
            "set server web/web-01 addr 2001:db8::7 port 443"
        );
        assert_eq!(
            set_admin(&web01, ServerAdmin::Maint).unwrap(),
            "set server web/web-01 state maint"
        );
        assert_eq!(
            set_admin(&web01, ServerAdmin::Drain).unwrap(),
            "set server web/web-01 state drain"
        );
        assert_eq!(
            set_admin(&web01, ServerAdmin::Ready).unwrap(),
            "set server web/web-01 state ready"
        );
    }

    #[test]
    fn hostile_or_out_of_range_arguments_are_refused() {
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(show_servers_state("web;shutdown sessions server web/web-02").is_err());
        assert!(show_servers_state("").is_err());
        assert!(set_addr(&key("web", "web-01;disable frontend fe"), addr, 80).is_err());
        assert!(set_addr(&key("web/x", "web-01"), addr, 80).is_err());
        assert!(set_addr(&key("web", "web-01"), addr, 0).is_err());
        assert!(set_addr(&key("web", "web-01"), "0.0.0.0".parse().unwrap(), 80).is_err());
        assert!(set_admin(&key("web", "web 01"), ServerAdmin::Ready).is_err());
        let change = ServerChange::SetAdmin {
            key: key("web", "web-01\nshutdown"),
            admin: ServerAdmin::Maint,
        };
        assert!(change_command(&change).is_err());
    }

    #[test]
    fn runtime_api_endpoints_parse_and_print_back() {
        for text in [
            "unix:/run/haproxy/admin.sock",
            "tcp:127.0.0.1:9999",
            "tcp:[::1]:9999",
        ] {
            assert_eq!(RuntimeApi::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            RuntimeApi::parse("unix:/run/haproxy/admin.sock").unwrap(),
            RuntimeApi::Unix("/run/haproxy/admin.sock".into())
        );
        for bad in [
            "",
            "unix:",
            "/run/haproxy/admin.sock",
            "tcp:localhost:9999",
            "tcp:127.0.0.1",
            "tcp:127.0.0.1:0",
            "tcp:127.0.0.1:99999",
        ] {
            assert!(RuntimeApi::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            RuntimeApi::parse("tcp:[::1]:9999")
                .unwrap()
                .stats_socket_line(),
            "stats socket ipv6@[::1]:9999 level admin"
        );
    }

    #[test]
    fn answers_are_split_on_empty_lines() {
        let response = "\nNo such server.\n\n1\n# be_id be_name\n3 web\n\n";
        assert_eq!(
            split_answers(response, 3).unwrap(),
            vec!["", "No such server.", "1\n# be_id be_name\n3 web"]
        );
        assert_eq!(request_line(&["a".into(), "b".into()]), "a;b\n");
        assert_eq!(
            split_answers("\n\n", 3),
            Err(ProtocolError::AnswerCount {
                sent: 3,
                received: 2
            })
        );
        assert_eq!(
            split_answers("1\n# be_id", 1),
            Err(ProtocolError::IncompleteAnswer)
        );
        assert_eq!(
            split_answers("1\n# be_id\n", 1),
            Err(ProtocolError::IncompleteAnswer)
        );
        assert_eq!(split_answers("", 0).unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn servers_state_of_haproxy_2_6_is_read() {
        // Verbatim from HAProxy 2.6: a ready server, one `disabled` in haproxy.cfg, an
        // IPv6 one, and one whose FQDN did not resolve (`-`, resolution maintenance).
        let answer = format!(
            "1\n{HEADER_2_6}\n\
             3 web 1 web-01 127.0.1.1 2 0 1 1 1 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n\
             3 web 2 web-02 127.0.1.2 0 5 1 1 1 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0\n\
             3 web 3 web-03 ::1 2 0 1 1 1 1 0 2 0 0 0 0 - 8081 - 0 0 - - 0\n\
             3 web 4 fq - 0 32 1 1 1 1 0 0 0 0 0 0 localhost.invalid 80 - 0 0 - - 0"
        );
        assert_eq!(
            parse_servers_state("web", &answer).unwrap(),
            vec![
                observed("web-01", Some("127.0.1.1"), 8080, ServerAdmin::Ready),
                observed("web-02", Some("127.0.1.2"), 8080, ServerAdmin::Maint),
                observed("web-03", Some("::1"), 8081, ServerAdmin::Ready),
                observed("fq", None, 80, ServerAdmin::Maint),
            ]
        );
        let empty_backend = format!("1\n{HEADER_2_6}");
        assert_eq!(parse_servers_state("web", &empty_backend).unwrap(), vec![]);
    }

    #[test]
    fn columns_are_found_by_name() {
        let answer = "2\n# srv_port extra srv_admin_state srv_addr srv_name be_name\n\
                      8080 x 8 192.0.2.1 web-01 web\n";
        assert_eq!(
            parse_servers_state("web", answer).unwrap(),
            vec![observed(
                "web-01",
                Some("192.0.2.1"),
                8080,
                ServerAdmin::Drain
            )]
        );
    }

    #[test]
    fn admin_state_bits_map_to_traffic_states() {
        for (bits, admin) in [
            (0x00, ServerAdmin::Ready),
            (0x01, ServerAdmin::Maint), // set server … state maint
            (0x02, ServerAdmin::Maint), // inherited from a tracked server
            (0x05, ServerAdmin::Maint), // `disabled` in haproxy.cfg
            (0x04, ServerAdmin::Ready), // `disabled`, then set ready
            (0x08, ServerAdmin::Drain), // set server … state drain
            (0x0c, ServerAdmin::Drain), // `disabled`, then set drain
            (0x10, ServerAdmin::Drain), // inherited drain
            (0x09, ServerAdmin::Maint), // maintenance wins over drain
            (0x20, ServerAdmin::Maint), // FQDN did not resolve
            (0x40, ServerAdmin::Ready), // FQDN changed from the CLI
        ] {
            assert_eq!(admin_from_state_bits(bits), admin, "bits {bits:#04x}");
        }
    }

    #[test]
    fn non_table_answers_name_the_backend() {
        let err = parse_servers_state("nope", "Can't find backend.").unwrap_err();
        assert!(matches!(err, ProtocolError::NoSuchBackend { .. }));
        assert!(err.to_string().contains("\"nope\""), "{err}");

        let err = parse_servers_state("web", "Permission denied\n").unwrap_err();
        assert!(matches!(err, ProtocolError::ServersStateRefused { .. }));
        let message = err.to_string();
        assert!(
            message.contains("\"web\"") && message.contains("level admin"),
            "{message}"
        );

        let err = parse_servers_state("web", "Unknown command, but maybe…\n  help\n").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("\"Unknown command, but maybe…\" …"),
            "{err}"
        );
        assert!(matches!(
            parse_servers_state("web", ""),
            Err(ProtocolError::ServersStateRefused { .. })
        ));
    }

    #[test]
    fn malformed_tables_are_refused_with_the_line() {
        let cases = [
            ("1\n", 2),
            ("1\nbe_name srv_name\n", 2),
            ("1\n# be_name srv_name srv_addr srv_port\n", 2),
            (
                "1\n# be_name srv_name srv_addr srv_admin_state srv_port\nweb a 1.2.3.4 0\n",
                3,
            ),
            (
                "1\n# be_name srv_name srv_addr srv_admin_state srv_port\napi a 1.2.3.4 0 80\n",
                3,
            ),
            (
                "1\n# be_name srv_name srv_addr srv_admin_state srv_port\nweb a unix 0 80\n",
                3,
            ),
            (
                "1\n# be_name srv_name srv_addr srv_admin_state srv_port\nweb a 1.2.3.4 x 80\n",
                3,
            ),
            (
                "1\n# be_name srv_name srv_addr srv_admin_state srv_port\nweb a 1.2.3.4 0 99999\n",
                3,
            ),
        ];
        for (answer, expected_line) in cases {
            match parse_servers_state("web", answer) {
                Err(ProtocolError::MalformedServersState { line, .. }) => {
                    assert_eq!(line, expected_line, "{answer:?}")
                }
                other => panic!("{answer:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn set_addr_answers_of_haproxy_are_understood() {
        let web01 = key("web", "web-01");
        for accepted in [
            "IP changed from '127.0.1.1' to '127.0.1.9', port changed from '8080' to '8090' by 'stats socket command'",
            "IP changed from '127.0.1.10' to '::2', no need to change the port by 'stats socket command'",
            "no need to change the addr, port changed from '8090' to '8091' by 'stats socket command'",
            "no need to change the addr, no need to change the port by 'stats socket command'",
            "IP changed from '127.0.1.4' to '127.0.1.7', port changed from '+1' to '80' by 'stats socket command'\n",
            // HAProxy 3.x reports only what changed
            "nothing changed",
            "port changed from '8080' to '8090' by 'stats socket command'",
            "IP changed from '127.0.1.1' to '127.0.1.9' by 'stats socket command'",
        ] {
            assert_eq!(
                parse_set_addr_answer(&web01, accepted),
                Ok(()),
                "{accepted:?}"
            );
        }
        for refused in [
            "No such server.",
            "No such backend.",
            "Permission denied",
            "Invalid addr 'bogus' by 'stats socket command'",
            "Update for the current server address family is only supported through configuration file by 'stats socket command'",
            "no need to change the addr, problem converting port 'abc' to an int by 'stats socket command'",
            "IP changed from '127.0.1.1' to '127.0.1.9', can't change <port> to port map because it is incompatible with current health check port configuration (use 'port' statement from the 'server' directive.",
            "",
            " by 'stats socket command'",
        ] {
            let err = parse_set_addr_answer(&web01, refused).unwrap_err();
            assert!(err.to_string().contains("web/web-01"), "{err}");
        }
        let err = parse_set_addr_answer(&web01, "No such server.").unwrap_err();
        assert_eq!(
            err.to_string(),
            "HAProxy refused to change the address of server web/web-01: \"No such server.\""
        );
    }

    #[test]
    fn set_admin_answers_are_empty_on_success() {
        let web01 = key("web", "web-01");
        assert_eq!(
            parse_set_admin_answer(&web01, ServerAdmin::Maint, ""),
            Ok(())
        );
        let err =
            parse_set_admin_answer(&web01, ServerAdmin::Ready, "No such server.").unwrap_err();
        assert_eq!(
            err.to_string(),
            "HAProxy refused to set server web/web-01 to ready: \"No such server.\""
        );
        let change = ServerChange::SetAdmin {
            key: web01,
            admin: ServerAdmin::Maint,
        };
        assert!(parse_change_answer(&change, "Permission denied").is_err());
    }

    /// One generated server row: name, address (`None` = `-`), port, admin bits.
    fn server_row() -> impl Strategy<Value = (String, Option<IpAddr>, u16, u32)> {
        (
            "[A-Za-z0-9_.:-]{1,20}",
            proptest::option::of(any::<IpAddr>()),
            any::<u16>(),
            0u32..0x80,
        )
    }

    proptest! {
        #[test]
        fn parsers_never_panic(backend in "[a-z]{1,8}", answer in "(?s).{0,400}") {
            let _ = parse_servers_state(&backend, &answer);
            let _ = split_answers(&answer, 2);
        }

        #[test]
        fn servers_state_parser_never_panics_on_near_tables(
            rows in proptest::collection::vec("[ -~]{0,60}", 0..6),
        ) {
            let answer = format!("1\n{HEADER_2_6}\n{}", rows.join("\n"));
            let _ = parse_servers_state("web", &answer);
        }

        #[test]
        fn generated_tables_round_trip(rows in proptest::collection::vec(server_row(), 0..12)) {
            let mut answer = format!("1\n{HEADER_2_6}\n");
            for (server, addr, port, bits) in &rows {
                let addr_text = addr.map_or("-".to_string(), |a| a.to_string());
                answer.push_str(&state_line("web", server, &addr_text, *bits, *port));
                answer.push('\n');
            }
            let expected: Vec<ObservedServer> = rows
                .iter()
                .map(|(server, addr, port, bits)| ObservedServer {
                    key: key("web", server),
                    addr: *addr,
                    port: *port,
                    admin: admin_from_state_bits(*bits),
                    durable: true,
                })
                .collect();
            prop_assert_eq!(parse_servers_state("web", &answer).unwrap(), expected);
        }

        #[test]
        fn split_answers_inverts_framing(answers in proptest::collection::vec(
            proptest::collection::vec("[ -~]{1,20}", 0..4), 0..6,
        )) {
            let texts: Vec<String> = answers.iter().map(|lines| lines.join("\n")).collect();
            let response: String = texts
                .iter()
                .map(|text| if text.is_empty() { "\n".to_string() } else { format!("{text}\n\n") })
                .collect();
            let split = split_answers(&response, texts.len()).unwrap();
            prop_assert_eq!(split, texts.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
