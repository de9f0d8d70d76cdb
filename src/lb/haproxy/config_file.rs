//! The `server` lines of haproxy.cfg, read and rewritten (pure: text in, text out).
//!
//! Runtime-API changes are lost when HAProxy restarts or reloads. HAProxy 2.6's
//! server-state file does not bring them back: measured with a real restart, it restores
//! ports and admin states but not addresses, and never servers added with `add server`.
//! So with `config` set, ipdrift rewrites the `server` lines of the backends it changed to
//! what the runtime serves, and a restarted HAProxy starts from the right addresses.
//!
//! Only the address token and the `disabled` keyword of a managed line change; its other
//! options and comments stay. Lines of servers the runtime no longer has are dropped, and
//! servers added at runtime get a line after the last `server` line of their backend.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::{ObservedServer, ServerAdmin};

/// Keywords that start a section of haproxy.cfg.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
];

/// What a `server` line of haproxy.cfg makes a server start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredServer {
    /// `None` when the address is a host name or otherwise not an IP literal.
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub disabled: bool,
}

impl ConfiguredServer {
    /// Whether a HAProxy started from this line serves what `server` shows now.
    pub fn matches(&self, server: &ObservedServer) -> bool {
        self.addr == server.addr
            && self.port == Some(server.port)
            && self.disabled == (server.admin == ServerAdmin::Maint)
    }
}

/// One `server` line: where it is and what it says.
struct ServerLine {
    index: usize,
    name: String,
    configured: ConfiguredServer,
}

/// A `backend` or `listen` section: its name, its `server` lines, and the index of its
/// last line that is neither blank nor a comment.
struct Section {
    name: String,
    servers: Vec<ServerLine>,
    last_content: usize,
}

fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_proxy = false;
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let mut words = content.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if SECTIONS.contains(&first) {
            in_proxy = matches!(first, "backend" | "listen");
            if in_proxy {
                out.push(Section {
                    name: words.next().unwrap_or_default().to_string(),
                    servers: Vec::new(),
                    last_content: index,
                });
            }
            continue;
        }
        let Some(section) = out.last_mut().filter(|_| in_proxy) else {
            continue;
        };
        section.last_content = index;
        if first == "server" {
            let name = words.next().unwrap_or_default().to_string();
            let address = words.next().unwrap_or_default();
            let (addr, port) = parse_address(address);
            let disabled = words.any(|w| w == "disabled");
            section.servers.push(ServerLine {
                index,
                name,
                configured: ConfiguredServer {
                    addr,
                    port,
                    disabled,
                },
            });
        }
    }
    out
}

/// `IP:PORT`, `[IPv6]:PORT` or `ipv4@`/`ipv6@` forms; anything else (a host name, a
/// missing port) gives what could be read of it.
fn parse_address(token: &str) -> (Option<IpAddr>, Option<u16>) {
    let token = token
        .strip_prefix("ipv4@")
        .or_else(|| token.strip_prefix("ipv6@"))
        .unwrap_or(token);
    if let Some(rest) = token.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return (None, None);
        };
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (ip.parse().ok(), port);
    }
    // As HAProxy reads it, the last colon starts the port, even after an IPv6 address.
    if let Some((ip, port)) = token.rsplit_once(':')
        && let (Ok(ip), Ok(port)) = (ip.parse(), port.parse())
    {
        return (Some(ip), Some(port));
    }
    match token.parse() {
        Ok(ip) => (Some(ip), None),
        Err(_) => (
            None,
            token.rsplit_once(':').and_then(|(_, p)| p.parse().ok()),
        ),
    }
}

/// The `server` lines of `backend`, by server name; `None` when haproxy.cfg has no
/// `backend` or `listen` section of that name.
pub fn configured_servers(text: &str, backend: &str) -> Option<BTreeMap<String, ConfiguredServer>> {
    let section = sections(text).into_iter().find(|s| s.name == backend)?;
    Some(
        section
            .servers
            .into_iter()
            .map(|line| (line.name, line.configured))
            .collect(),
    )
}

/// `ADDR:PORT` as haproxy.cfg writes it, IPv6 in brackets.
fn address_token(server: &ObservedServer) -> Option<String> {
    server
        .addr
        .map(|addr| crate::model::socket_text(addr, server.port))
}

/// `line` with its address and `disabled` keyword set from `server`; other options and a
/// trailing comment stay.
fn rewrite_line(line: &str, server: &ObservedServer) -> String {
    let indent = &line[..line.len() - line.trim_start().len()];
    let (content, comment) = match line.find('#') {
        Some(at) => (&line[..at], Some(&line[at..])),
        None => (line, None),
    };
    let mut words: Vec<&str> = content.split_whitespace().collect();
    let address = address_token(server);
    if let (Some(address), Some(slot)) = (&address, words.get_mut(2)) {
        *slot = address;
    }
    words.retain(|w| *w != "disabled");
    let mut out = format!("{indent}{}", words.join(" "));
    if server.admin == ServerAdmin::Maint {
        out.push_str(" disabled");
    }
    if let Some(comment) = comment {
        out.push(' ');
        out.push_str(comment);
    }
    out
}

/// Why haproxy.cfg could not be brought in line with the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("haproxy.cfg has no `backend {0}` or `listen {0}` section")]
    NoSuchBackend(String),
    #[error("server {backend}/{server} has no IP address to write into haproxy.cfg")]
    NoAddress { backend: String, server: String },
}

/// `text` with the `server` lines of each backend in `runtime` (backend → its servers as
/// the runtime API shows them) set to what the runtime serves. `checked` names the servers
/// added with health checks, whose new lines get `check`.
pub fn rewrite(
    text: &str,
    runtime: &BTreeMap<String, Vec<ObservedServer>>,
    checked: &BTreeSet<(String, String)>,
) -> Result<String, RewriteError> {
    let sections = sections(text);
    let mut replaced: BTreeMap<usize, Option<String>> = BTreeMap::new();
    let mut inserted: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (backend, servers) in runtime {
        let section = sections
            .iter()
            .find(|s| &s.name == backend)
            .ok_or_else(|| RewriteError::NoSuchBackend(backend.clone()))?;
        let by_name: BTreeMap<&str, &ObservedServer> =
            servers.iter().map(|s| (s.key.server.as_str(), s)).collect();
        for line in &section.servers {
            let rewritten = by_name.get(line.name.as_str()).map(|server| {
                let original = text.lines().nth(line.index).unwrap_or_default();
                rewrite_line(original, server)
            });
            replaced.insert(line.index, rewritten);
        }
        let listed: BTreeSet<&str> = section.servers.iter().map(|l| l.name.as_str()).collect();
        let (anchor, indent) = match section.servers.last() {
            Some(last) => {
                let line = text.lines().nth(last.index).unwrap_or_default();
                (
                    last.index,
                    line[..line.len() - line.trim_start().len()].to_string(),
                )
            }
            None => (section.last_content, "    ".to_string()),
        };
        for server in servers
            .iter()
            .filter(|s| !listed.contains(s.key.server.as_str()))
        {
            let address = address_token(server).ok_or_else(|| RewriteError::NoAddress {
                backend: backend.clone(),
                server: server.key.server.clone(),
            })?;
            let mut line = format!("{indent}server {} {address}", server.key.server);
            if checked.contains(&(backend.clone(), server.key.server.clone())) {
                line.push_str(" check");
            }
            if server.admin == ServerAdmin::Maint {
                line.push_str(" disabled");
            }
            inserted.entry(anchor).or_default().push(line);
        }
    }
    let mut out = String::with_capacity(text.len() + 64);
    for (index, line) in text.lines().enumerate() {
        // A dropped line may still anchor the lines added after it.
        match replaced.get(&index) {
            Some(Some(new)) => {
                out.push_str(new);
                out.push('\n');
            }
            Some(None) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
        for new in inserted.get(&index).into_iter().flatten() {
            out.push_str(new);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerKey;

    const CFG: &str = "\
global
    stats socket /run/haproxy/admin.sock level admin   # the runtime API

defaults
    mode http

frontend www
    bind :80
    default_backend web

backend web
    balance roundrobin
    server web-01 10.0.0.1:80 check inter 2s   # first
    server web-02 10.0.0.2:80 check disabled
    server web-03 app.internal:80 check

listen api
    bind :8080
    server api-01 [2001:db8::1]:8080
";

    fn server(
        backend: &str,
        name: &str,
        addr: &str,
        port: u16,
        admin: ServerAdmin,
    ) -> ObservedServer {
        ObservedServer {
            key: ServerKey {
                backend: backend.to_string(),
                server: name.to_string(),
            },
            addr: Some(addr.parse().unwrap()),
            port,
            admin,
            durable: true,
        }
    }

    #[test]
    fn server_lines_are_read_by_backend_with_address_port_and_disabled() {
        let web = configured_servers(CFG, "web").unwrap();
        assert_eq!(
            web["web-01"],
            ConfiguredServer {
                addr: Some("10.0.0.1".parse().unwrap()),
                port: Some(80),
                disabled: false
            }
        );
        assert!(web["web-02"].disabled);
        assert_eq!(web["web-03"].addr, None);
        let api = configured_servers(CFG, "api").unwrap();
        assert_eq!(api["api-01"].addr, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(api["api-01"].port, Some(8080));
        assert!(
            configured_servers(CFG, "www").is_none(),
            "a frontend is no backend"
        );
    }

    #[test]
    fn rewriting_changes_only_addresses_and_disabled_and_keeps_options_and_comments() {
        let runtime = BTreeMap::from([(
            "web".to_string(),
            vec![
                server("web", "web-01", "10.1.0.1", 80, ServerAdmin::Ready),
                server("web", "web-02", "10.1.0.2", 8080, ServerAdmin::Ready),
                server("web", "web-03", "10.1.0.3", 80, ServerAdmin::Maint),
            ],
        )]);
        let out = rewrite(CFG, &runtime, &BTreeSet::new()).unwrap();
        assert!(
            out.contains("    server web-01 10.1.0.1:80 check inter 2s # first\n"),
            "{out}"
        );
        assert!(
            out.contains("    server web-02 10.1.0.2:8080 check\n"),
            "{out}"
        );
        assert!(
            out.contains("    server web-03 10.1.0.3:80 check disabled\n"),
            "{out}"
        );
        // Everything else is byte for byte the same.
        let untouched = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.trim_start().starts_with("server web-"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(untouched(&out), untouched(CFG));
        let web = configured_servers(&out, "web").unwrap();
        for s in &runtime["web"] {
            assert!(
                web[&s.key.server].matches(s),
                "{s:?} vs {:?}",
                web[&s.key.server]
            );
        }
    }

    #[test]
    fn servers_added_at_runtime_get_a_line_and_deleted_ones_lose_theirs() {
        let runtime = BTreeMap::from([(
            "web".to_string(),
            vec![
                server("web", "web-01", "10.0.0.1", 80, ServerAdmin::Ready),
                server("web", "web-04", "10.0.0.4", 80, ServerAdmin::Ready),
                server("web", "web-05", "10.0.0.5", 80, ServerAdmin::Maint),
            ],
        )]);
        let checked = BTreeSet::from([("web".to_string(), "web-04".to_string())]);
        let out = rewrite(CFG, &runtime, &checked).unwrap();
        let web = configured_servers(&out, "web").unwrap();
        assert_eq!(
            web.keys().map(String::as_str).collect::<Vec<_>>(),
            ["web-01", "web-04", "web-05"]
        );
        assert!(out.contains("    server web-04 10.0.0.4:80 check\n    server web-05 10.0.0.5:80 disabled\n\nlisten api"), "{out}");
        // A second rewrite from the same runtime changes nothing.
        assert_eq!(rewrite(&out, &runtime, &checked).unwrap(), out);
    }

    #[test]
    fn a_backend_without_server_lines_gets_them_after_its_last_line() {
        let text = "backend empty\n    balance first\n\n# end\n";
        let runtime = BTreeMap::from([(
            "empty".to_string(),
            vec![server("empty", "a", "::1", 81, ServerAdmin::Ready)],
        )]);
        let out = rewrite(text, &runtime, &BTreeSet::new()).unwrap();
        assert_eq!(
            out,
            "backend empty\n    balance first\n    server a [::1]:81\n\n# end\n"
        );
    }

    #[test]
    fn a_backend_missing_from_the_file_is_an_error_naming_it() {
        let runtime = BTreeMap::from([("cache".to_string(), Vec::new())]);
        assert_eq!(
            rewrite(CFG, &runtime, &BTreeSet::new()),
            Err(RewriteError::NoSuchBackend("cache".into()))
        );
    }

    #[test]
    fn addresses_are_read_in_every_form_haproxy_writes() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_address("10.0.0.1:80"), (Some(v4), Some(80)));
        assert_eq!(parse_address("ipv4@10.0.0.1:80"), (Some(v4), Some(80)));
        assert_eq!(parse_address("[2001:db8::1]:80"), (Some(v6), Some(80)));
        assert_eq!(parse_address("ipv6@2001:db8::1"), (Some(v6), None));
        assert_eq!(parse_address("2001:db8::1:80"), (Some(v6), Some(80)));
        assert_eq!(parse_address("10.0.0.1"), (Some(v4), None));
        assert_eq!(parse_address("web.internal:80"), (None, Some(80)));
        assert_eq!(parse_address("[::1"), (None, None));
    }
}
