//! The upstreams file ipdrift owns, as text and as data (pure: no I/O). Each managed server
//! line carries a tag, `# ipdrift:NAME` (and its state when out of rotation), so that the
//! file read back says which server is which; nginx ignores the comment.
//!
//! ```text
//! upstream web {
//!     server 10.0.0.21:80; # ipdrift:web-01
//!     server 10.0.0.22:80 down; # ipdrift:web-02 maint
//! }
//! ```
//!
//! Open-source nginx has no state between "in rotation" and `down`: a draining server
//! (`ServerAdmin::Drain`) is written `down` too, and its tag says `drain`. After the reload
//! the new workers send it nothing; the old workers finish the connections they hold.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::lb::ServerChange;
use crate::model::{ObservedServer, ServerAdmin, ServerKey, socket_text};
use crate::validate;

/// The tag that marks a server line as ipdrift's.
const TAG: &str = "# ipdrift:";

/// One server of an upstream, as ipdrift writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub addr: IpAddr,
    pub port: u16,
    pub admin: ServerAdmin,
}

/// What the upstreams file says: upstream name → server name → server, sorted, so that
/// rendering is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    pub upstreams: BTreeMap<String, BTreeMap<String, Server>>,
}

/// A line of the file that is not what ipdrift writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Upstreams {
    /// The servers of `upstream` (none when the file has no such block yet).
    pub fn observed(&self, upstream: &str) -> Vec<ObservedServer> {
        self.upstreams
            .get(upstream)
            .into_iter()
            .flatten()
            .map(|(name, s)| ObservedServer {
                key: ServerKey {
                    backend: upstream.to_string(),
                    server: name.clone(),
                },
                addr: Some(s.addr),
                port: s.port,
                admin: s.admin,
                durable: true,
            })
            .collect()
    }

    /// Applies `changes` in order; a change that does not fit what the file holds (setting
    /// a server that is not there, adding one that is) is refused with the reason, and
    /// nothing is applied.
    pub fn apply(&self, changes: &[ServerChange]) -> Result<Upstreams, String> {
        let mut next = self.clone();
        for change in changes {
            next.apply_one(change)?;
        }
        Ok(next)
    }

    fn apply_one(&mut self, change: &ServerChange) -> Result<(), String> {
        let missing = |key: &ServerKey| format!("{key}: no such server in the upstreams file");
        match change {
            ServerChange::SetAddr { key, addr, port } => {
                let server = self.server_mut(key).ok_or_else(|| missing(key))?;
                check_server(key, *addr, *port)?;
                server.addr = *addr;
                server.port = *port;
            }
            ServerChange::SetAdmin { key, admin } => {
                self.server_mut(key).ok_or_else(|| missing(key))?.admin = *admin;
            }
            ServerChange::Add {
                key, addr, port, ..
            } => {
                check_server(key, *addr, *port)?;
                let servers = self.upstreams.entry(key.backend.clone()).or_default();
                if servers.contains_key(&key.server) {
                    return Err(format!("{key}: the server is already there"));
                }
                // Like HAProxy's `add server`: out of rotation until the health gate says.
                servers.insert(
                    key.server.clone(),
                    Server {
                        addr: *addr,
                        port: *port,
                        admin: ServerAdmin::Maint,
                    },
                );
            }
            ServerChange::Delete { key } => {
                let servers = self
                    .upstreams
                    .get_mut(&key.backend)
                    .ok_or_else(|| missing(key))?;
                servers.remove(&key.server).ok_or_else(|| missing(key))?;
                if servers.is_empty() {
                    // nginx refuses an upstream without servers ("no servers are inside
                    // upstream"), and a missing one breaks every proxy_pass that names it.
                    return Err(format!(
                        "{key}: deleting it would leave upstream {} without servers, which nginx refuses; keep it (remove = \"maint\")",
                        key.backend
                    ));
                }
            }
        }
        Ok(())
    }

    fn server_mut(&mut self, key: &ServerKey) -> Option<&mut Server> {
        self.upstreams.get_mut(&key.backend)?.get_mut(&key.server)
    }

    /// The file's text: a header that names the owner, then one block per upstream with its
    /// servers sorted by name. The same data always renders to the same bytes.
    pub fn render(&self, lb: &str) -> String {
        let mut out = format!(
            "# Generated by ipdrift for [[nginx]] {lb:?}; do not edit. ipdrift rewrites this\n\
             # file: a hand edit is drift that the next pass repairs. Include it in http {{}}.\n"
        );
        for (upstream, servers) in &self.upstreams {
            // An empty block is invalid nginx (apply refuses to leave one).
            if servers.is_empty() {
                continue;
            }
            write!(out, "\nupstream {upstream} {{\n").unwrap();
            for (name, s) in servers {
                let (flag, state) = match s.admin {
                    ServerAdmin::Ready => ("", ""),
                    ServerAdmin::Drain => (" down", " drain"),
                    ServerAdmin::Maint => (" down", " maint"),
                };
                writeln!(
                    out,
                    "    server {}{flag}; {TAG}{name}{state}",
                    socket_text(s.addr, s.port)
                )
                .unwrap();
            }
            out.push_str("}\n");
        }
        out
    }

    /// Reads a file that [`Upstreams::render`] wrote, or one edited by hand within what it
    /// writes (addresses, ports, `down`, servers added or removed). Comments and blank
    /// lines are ignored. Anything else — a server line without a tag, another directive —
    /// is an error: ipdrift will not guess which servers such a file sends traffic to.
    pub fn parse(text: &str) -> Result<Upstreams, ParseError> {
        let mut out = Upstreams::default();
        let mut open: Option<(String, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| ParseError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed == "}" {
                if open.take().is_none() {
                    return Err(err("`}` without an `upstream` block".into()));
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("upstream ") {
                if let Some((name, _)) = &open {
                    return Err(err(format!("upstream {name} is not closed with `}}`")));
                }
                let name = rest
                    .strip_suffix('{')
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                    .ok_or_else(|| err(format!("expected `upstream NAME {{`, found {raw:?}")))?;
                if out.upstreams.contains_key(name) {
                    return Err(err(format!("upstream {name} is there twice")));
                }
                out.upstreams.insert(name.to_string(), BTreeMap::new());
                open = Some((name.to_string(), line));
                continue;
            }
            let Some((upstream, _)) = &open else {
                return Err(err(format!(
                    "{trimmed:?} is outside any upstream block; this file holds only the upstream blocks ipdrift writes"
                )));
            };
            let (name, server) = parse_server(trimmed).map_err(err)?;
            let servers = out.upstreams.get_mut(upstream).expect("opened above");
            if servers.insert(name.clone(), server).is_some() {
                return Err(err(format!(
                    "server {name} is in upstream {upstream} twice"
                )));
            }
        }
        if let Some((name, line)) = open {
            return Err(ParseError {
                line,
                message: format!("upstream {name} is not closed with `}}`"),
            });
        }
        Ok(out)
    }
}

/// What may go into a server line: the same checks the HAProxy commands get.
fn check_server(key: &ServerKey, addr: IpAddr, port: u16) -> Result<(), String> {
    validate::haproxy_name(&key.server).map_err(|e| format!("{key}: {}", e.0))?;
    validate::port(port.into()).map_err(|e| format!("{key}: {}", e.0))?;
    validate::target_addr(addr).map_err(|e| format!("{key}: {}", e.0))?;
    Ok(())
}

/// `server IP:PORT [down]; # ipdrift:NAME [drain|maint]`.
fn parse_server(line: &str) -> Result<(String, Server), String> {
    let not_ours = || {
        format!(
            "{line:?} is not a server line ipdrift writes (`server IP:PORT [down]; {TAG}NAME`); remove it, or move it into nginx.conf"
        )
    };
    let (directive, tag) = line.split_once(TAG).ok_or_else(not_ours)?;
    let directive = directive
        .trim()
        .strip_suffix(';')
        .and_then(|d| d.strip_prefix("server "))
        .ok_or_else(not_ours)?;
    let mut words = directive.split_whitespace();
    let endpoint = words.next().ok_or_else(not_ours)?;
    let down = match words.next() {
        None => false,
        Some("down") => true,
        Some(other) => {
            return Err(format!(
                "{line:?}: ipdrift writes no {other:?} parameter; remove it"
            ));
        }
    };
    if words.next().is_some() {
        return Err(not_ours());
    }
    let socket: std::net::SocketAddr = endpoint.parse().map_err(|_| {
        format!("{line:?}: {endpoint:?} is not IP:PORT (IPv6 in brackets, [::1]:80)")
    })?;
    if socket.port() == 0 {
        return Err(format!("{line:?}: port 0"));
    }
    let mut tag_words = tag.split_whitespace();
    let name = tag_words.next().ok_or_else(not_ours)?.to_string();
    validate::haproxy_name(&name).map_err(|e| format!("{line:?}: {}", e.0))?;
    let state = tag_words.next();
    if tag_words.next().is_some() {
        return Err(not_ours());
    }
    // What nginx does decides: without `down` the server takes traffic, whatever the tag
    // says; with it, the tag tells draining from maintenance.
    let admin = match (down, state) {
        (false, _) => ServerAdmin::Ready,
        (true, Some("drain")) => ServerAdmin::Drain,
        (true, None | Some("maint")) => ServerAdmin::Maint,
        (true, Some(other)) => {
            return Err(format!(
                "{line:?}: unknown state {other:?}; ipdrift writes \"drain\" or \"maint\""
            ));
        }
    };
    Ok((
        name,
        Server {
            addr: socket.ip(),
            port: socket.port(),
            admin,
        },
    ))
}

/// The `pid` directive of a main nginx.conf (top level, where nginx reads it), if any.
pub fn pid_directive(config: &str) -> Option<String> {
    let mut depth = 0usize;
    for line in config.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        if depth == 0
            && let Some(rest) = code.strip_prefix("pid")
            && rest.starts_with(char::is_whitespace)
            && let Some(path) = rest.trim().strip_suffix(';')
        {
            return Some(path.trim().trim_matches(['"', '\'']).to_string());
        }
        depth += code.matches('{').count();
        depth = depth.saturating_sub(code.matches('}').count());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(backend: &str, server: &str) -> ServerKey {
        ServerKey {
            backend: backend.into(),
            server: server.into(),
        }
    }

    fn sample() -> Upstreams {
        let mut u = Upstreams::default();
        let web = u.upstreams.entry("web".into()).or_default();
        web.insert(
            "web-02".into(),
            Server {
                addr: "10.0.0.22".parse().unwrap(),
                port: 80,
                admin: ServerAdmin::Maint,
            },
        );
        web.insert(
            "web-01".into(),
            Server {
                addr: "10.0.0.21".parse().unwrap(),
                port: 80,
                admin: ServerAdmin::Ready,
            },
        );
        u.upstreams.entry("api".into()).or_default().insert(
            "api-01".into(),
            Server {
                addr: "2001:db8::1".parse().unwrap(),
                port: 8443,
                admin: ServerAdmin::Drain,
            },
        );
        u
    }

    #[test]
    fn renders_sorted_tagged_blocks_under_a_header() {
        let text = sample().render("edge");
        assert_eq!(
            text,
            "# Generated by ipdrift for [[nginx]] \"edge\"; do not edit. ipdrift rewrites this\n\
             # file: a hand edit is drift that the next pass repairs. Include it in http {}.\n\
             \n\
             upstream api {\n\
             \x20   server [2001:db8::1]:8443 down; # ipdrift:api-01 drain\n\
             }\n\
             \n\
             upstream web {\n\
             \x20   server 10.0.0.21:80; # ipdrift:web-01\n\
             \x20   server 10.0.0.22:80 down; # ipdrift:web-02 maint\n\
             }\n"
        );
    }

    #[test]
    fn what_is_rendered_parses_back_to_the_same() {
        let u = sample();
        assert_eq!(Upstreams::parse(&u.render("edge")).unwrap(), u);
        assert_eq!(Upstreams::parse("").unwrap(), Upstreams::default());
    }

    #[test]
    fn a_hand_edit_within_the_format_reads_as_what_nginx_does() {
        let text = "upstream web {\n  server 10.9.9.9:8080; # ipdrift:web-01 maint\n  server 10.0.0.22:80 down; # ipdrift:web-02\n}\n";
        let u = Upstreams::parse(text).unwrap();
        let observed = u.observed("web");
        assert_eq!(observed[0].addr, Some("10.9.9.9".parse().unwrap()));
        assert_eq!(observed[0].port, 8080);
        // No `down`: nginx sends it traffic, whatever the tag says.
        assert_eq!(observed[0].admin, ServerAdmin::Ready);
        assert_eq!(observed[1].admin, ServerAdmin::Maint);
        assert!(u.observed("api").is_empty(), "no block yet: no servers");
    }

    #[test]
    fn lines_ipdrift_does_not_write_are_errors_with_their_line() {
        for (text, line, words) in [
            (
                "upstream web {\n  server 10.0.0.1:80;\n}\n",
                2,
                "not a server line",
            ),
            (
                "upstream web {\n  keepalive 8;\n}\n",
                2,
                "not a server line",
            ),
            (
                "upstream web {\n  server 10.0.0.1:80 weight=5; # ipdrift:a\n}\n",
                2,
                "\"weight=5\"",
            ),
            (
                "upstream web {\n  server web.example:80; # ipdrift:a\n}\n",
                2,
                "not IP:PORT",
            ),
            (
                "server 10.0.0.1:80; # ipdrift:a\n",
                1,
                "outside any upstream",
            ),
            (
                "upstream web {\n  server 10.0.0.1:80; # ipdrift:a\n",
                1,
                "not closed",
            ),
            (
                "upstream web {\n server 10.0.0.1:80; # ipdrift:a\n server 10.0.0.2:80; # ipdrift:a\n}\n",
                3,
                "twice",
            ),
            (
                "upstream web {\n server 10.0.0.1:80 down; # ipdrift:a sideways\n}\n",
                2,
                "unknown state",
            ),
            ("}\n", 1, "without"),
        ] {
            let e = Upstreams::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(words), "{text:?}: {e}");
        }
    }

    #[test]
    fn changes_apply_in_order_and_a_misfit_applies_nothing() {
        let u = sample();
        let changes = [
            ServerChange::SetAddr {
                key: key("web", "web-02"),
                addr: "10.0.1.22".parse().unwrap(),
                port: 81,
            },
            ServerChange::SetAdmin {
                key: key("web", "web-02"),
                admin: ServerAdmin::Ready,
            },
            ServerChange::Add {
                key: key("web", "web-03"),
                addr: "10.0.1.23".parse().unwrap(),
                port: 80,
                check: false,
            },
            ServerChange::Add {
                key: key("new", "n-01"),
                addr: "10.0.1.30".parse().unwrap(),
                port: 80,
                check: true,
            },
            ServerChange::Delete {
                key: key("web", "web-01"),
            },
        ];
        let next = u.apply(&changes).unwrap();
        let web: Vec<_> = next
            .observed("web")
            .into_iter()
            .map(|s| (s.key.server, s.addr.unwrap().to_string(), s.port, s.admin))
            .collect();
        assert_eq!(
            web,
            vec![
                ("web-02".into(), "10.0.1.22".into(), 81, ServerAdmin::Ready),
                ("web-03".into(), "10.0.1.23".into(), 80, ServerAdmin::Maint),
            ]
        );
        assert_eq!(next.observed("new")[0].admin, ServerAdmin::Maint);

        let missing = u
            .apply(&[ServerChange::SetAdmin {
                key: key("web", "web-09"),
                admin: ServerAdmin::Ready,
            }])
            .unwrap_err();
        assert!(missing.contains("web/web-09"), "{missing}");
        let twice = u
            .apply(&[ServerChange::Add {
                key: key("web", "web-01"),
                addr: "10.0.1.1".parse().unwrap(),
                port: 80,
                check: false,
            }])
            .unwrap_err();
        assert!(twice.contains("already"), "{twice}");
        let bad = u
            .apply(&[ServerChange::SetAddr {
                key: key("web", "web-01"),
                addr: "0.0.0.0".parse().unwrap(),
                port: 80,
            }])
            .unwrap_err();
        assert!(bad.contains("web/web-01"), "{bad}");
    }

    #[test]
    fn deleting_the_last_server_of_an_upstream_is_refused() {
        let u = sample();
        let e = u
            .apply(&[ServerChange::Delete {
                key: key("api", "api-01"),
            }])
            .unwrap_err();
        assert!(e.contains("without servers"), "{e}");
    }

    #[test]
    fn the_pid_directive_is_found_at_top_level_only() {
        let conf = "user www-data;\n# pid /commented;\npid /run/nginx.pid;\nevents {}\n";
        assert_eq!(pid_directive(conf).as_deref(), Some("/run/nginx.pid"));
        assert_eq!(
            pid_directive("http {\n pid /nested;\n}\n pid \"/q.pid\" ;\n").as_deref(),
            Some("/q.pid")
        );
        assert_eq!(pid_directive("events {}\n"), None);
        assert_eq!(pid_directive("pidfile x;\n"), None);
    }
}
