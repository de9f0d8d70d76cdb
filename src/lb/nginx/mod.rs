//! `[[nginx]]`: open-source nginx, which has no runtime API for upstreams. ipdrift owns one
//! file of upstream blocks that nginx.conf includes; a change is a new file, validated with
//! `nginx -t` before it can reach the running nginx, then a reload that is checked to have
//! taken effect. This file holds the keys, their checks and the builder; [`render`] is the
//! pure part (the file as text and data), [`client`] the I/O (files, nginx, the reload).

pub mod client;
pub mod render;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use self::client::NginxClient;
use crate::config::rules::{BackendTables, RawBackend, check_backends};
use crate::config::{BackendRule, Fragment};
use crate::lb::{LbKind, LbSpec, LoadBalancer};

pub const KIND: LbKind = LbKind {
    section: "nginx",
    backends: "upstream",
    check,
};

/// At most one reload per this long, however many passes change something.
pub const DEFAULT_MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Where nginx writes its pid when nginx.conf has no `pid` directive (Debian's build).
pub const DEFAULT_PID_FILE: &str = "/run/nginx.pid";

/// A `[[nginx]]`'s settings; paths are resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConfig {
    /// The main nginx.conf, for `nginx -t -c` and the default reload.
    pub config: PathBuf,
    /// The file ipdrift owns, included in `http {}`.
    pub upstreams_file: PathBuf,
    /// The nginx binary (a bare name is looked up on PATH).
    pub nginx: PathBuf,
    /// The reload command; `None`: `NGINX -c CONFIG -s reload`.
    pub reload: Option<Vec<String>>,
    /// The master's pid file; `None`: nginx.conf's `pid` directive, else
    /// [`DEFAULT_PID_FILE`].
    pub pid_file: Option<PathBuf>,
    pub min_reload_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNginx {
    config: Spanned<String>,
    upstreams_file: Spanned<String>,
    nginx: Option<Spanned<String>>,
    reload: Option<Spanned<Vec<String>>>,
    pid_file: Option<Spanned<String>>,
    min_reload_interval: Option<Spanned<String>>,
    #[serde(default)]
    upstream: Vec<Spanned<RawBackend>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<(Vec<BackendRule>, Arc<dyn LbSpec>)> {
    let raw: RawNginx = f.parse()?;
    let config = f.checker.resolve_path(raw.config.get_ref());
    let upstreams_file = f.checker.resolve_path(raw.upstreams_file.get_ref());
    if raw.upstreams_file.get_ref().is_empty() || upstreams_file == config {
        f.error_at(
            &raw.upstreams_file,
            "upstreams_file",
            "must be a file of its own that nginx.conf includes in http {} (ipdrift rewrites it whole), not nginx.conf",
        );
    }
    let nginx = match &raw.nginx {
        None => PathBuf::from("nginx"),
        Some(text) if text.get_ref().is_empty() => {
            f.error_at(
                text,
                "nginx",
                "must name the nginx binary, e.g. \"/usr/sbin/nginx\"",
            );
            PathBuf::from("nginx")
        }
        // A bare name is found on PATH, like a shell would; a path is the config's.
        Some(text) if !text.get_ref().contains('/') => PathBuf::from(text.get_ref()),
        Some(text) => f.checker.resolve_path(text.get_ref()),
    };
    let reload = raw.reload.as_ref().and_then(|r| {
        if r.get_ref().first().is_none_or(|program| program.is_empty()) {
            f.error_at(
                r,
                "reload",
                "must be a command as a list of words, e.g. [\"systemctl\", \"reload\", \"nginx\"]",
            );
            None
        } else {
            Some(r.get_ref().clone())
        }
    });
    let pid_file = raw
        .pid_file
        .as_ref()
        .map(|p| f.checker.resolve_path(p.get_ref()));
    let field = f.key("min_reload_interval");
    let min_reload_interval = f.checker.duration(
        &raw.min_reload_interval,
        &field,
        DEFAULT_MIN_RELOAD_INTERVAL,
    );
    let field = f.field.clone();
    for upstream in &raw.upstream {
        let name = upstream.get_ref().name();
        if name.get_ref().contains(':') {
            // `proxy_pass http://a:b` would read as host a, port b.
            f.checker.error(
                name,
                format!("{field}.upstream \"{}\".name", name.get_ref()),
                "an nginx upstream name cannot contain ':' (proxy_pass would read it as a port)",
            );
        }
    }
    let tables = BackendTables {
        key: KIND.backends,
        default_server: Some("{name}"),
    };
    let backends = check_backends(f.checker, &raw.upstream, &field, tables);
    Some((
        backends,
        Arc::new(NginxConfig {
            config,
            upstreams_file,
            nginx,
            reload,
            pid_file,
            min_reload_interval,
        }),
    ))
}

impl LbSpec for NginxConfig {
    fn build(&self, name: &str, timeout: Duration) -> anyhow::Result<Box<dyn LoadBalancer>> {
        Ok(Box::new(NginxClient::new(
            name.to_string(),
            self.clone(),
            timeout,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ServerRemoval, parse};

    const INVENTORY: &str =
        "[[inventory]]\nname = \"local\"\nkind = \"file\"\npath = \"instances.json\"\n\n";

    fn config_of(nginx: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        parse(
            &format!("{INVENTORY}{nginx}"),
            Path::new("/etc/ipdrift/ipdrift.toml"),
        )
    }

    #[test]
    fn the_issue_example_parses_with_its_defaults() {
        let c = config_of(
            "[[nginx]]\nname = \"edge\"\nconfig = \"/etc/nginx/nginx.conf\"\nupstreams_file = \"/etc/nginx/conf.d/ipdrift-upstreams.conf\"\nnginx = \"nginx\"\n\n[[nginx.upstream]]\nname = \"web\"\nselect = { tags = { role = \"web\" } }\naddress = \"private_ipv4\"\nport = 80\n",
        )
        .unwrap();
        let lb = &c.load_balancers[0];
        assert_eq!((lb.name.as_str(), lb.kind), ("edge", "nginx"));
        assert_eq!(
            lb.settings::<NginxConfig>(),
            Some(&NginxConfig {
                config: "/etc/nginx/nginx.conf".into(),
                upstreams_file: "/etc/nginx/conf.d/ipdrift-upstreams.conf".into(),
                nginx: "nginx".into(),
                reload: None,
                pid_file: None,
                min_reload_interval: DEFAULT_MIN_RELOAD_INTERVAL,
            })
        );
        let upstream = &lb.backends[0];
        assert_eq!((upstream.name.as_str(), upstream.port), ("web", 80));
        assert!(
            upstream.server.matches("web-01"),
            "server defaults to {{name}}"
        );
        assert_eq!(upstream.remove, ServerRemoval::Maint);
    }

    #[test]
    fn paths_are_the_configs_and_every_key_is_read() {
        let c = config_of(
            "[[nginx]]\nname = \"edge\"\nconfig = \"nginx/nginx.conf\"\nupstreams_file = \"nginx/up.conf\"\nnginx = \"bin/nginx\"\nreload = [\"systemctl\", \"reload\", \"nginx\"]\npid_file = \"run/nginx.pid\"\nmin_reload_interval = \"250ms\"\n\n[[nginx.upstream]]\nname = \"web\"\naddress = \"private_ipv4\"\nport = 8080\nserver = \"ipd-{name}\"\nremove = \"delete\"\n",
        )
        .unwrap();
        let s = c.load_balancers[0].settings::<NginxConfig>().unwrap();
        assert_eq!(s.config, Path::new("/etc/ipdrift/nginx/nginx.conf"));
        assert_eq!(s.upstreams_file, Path::new("/etc/ipdrift/nginx/up.conf"));
        assert_eq!(s.nginx, Path::new("/etc/ipdrift/bin/nginx"));
        assert_eq!(
            s.pid_file.as_deref(),
            Some(Path::new("/etc/ipdrift/run/nginx.pid"))
        );
        assert_eq!(
            s.reload.as_deref(),
            Some(&["systemctl".to_string(), "reload".into(), "nginx".into()][..])
        );
        assert_eq!(s.min_reload_interval, Duration::from_millis(250));
        let upstream = &c.load_balancers[0].backends[0];
        assert!(upstream.server.matches("ipd-web-01") && !upstream.server.matches("web-01"));
        assert_eq!(upstream.remove, ServerRemoval::Delete);
    }

    #[test]
    fn mistakes_are_named_by_key_and_line() {
        let errors = config_of(
            "[[nginx]]\nname = \"edge\"\nconfig = \"/etc/nginx/nginx.conf\"\nupstreams_file = \"/etc/nginx/nginx.conf\"\nreload = []\nmin_reload_interval = \"soon\"\n\n[[nginx.upstream]]\nname = \"web:80\"\naddress = \"private_ipv4\"\nport = 70000\n\n[[nginx.upstream]]\nname = \"web:80\"\naddress = \"private_ipv4\"\nport = 80\n",
        )
        .unwrap_err()
        .0;
        let fields: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        for expected in [
            // The inventory before it takes lines 1–5.
            ("nginx \"edge\".upstreams_file", Some(9)),
            ("nginx \"edge\".reload", Some(10)),
            ("nginx \"edge\".min_reload_interval", Some(11)),
            ("nginx \"edge\".upstream \"web:80\".name", Some(14)),
            ("nginx \"edge\".upstream \"web:80\".port", Some(16)),
            ("nginx \"edge\".upstream \"web:80\".name", Some(19)),
        ] {
            assert!(
                fields.contains(&expected),
                "{expected:?} not in {errors:#?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("configured twice")),
            "{errors:#?}"
        );
        let errors = config_of("[[nginx]]\nname = \"edge\"\nconfig = \"/c\"\nupstreams_file = \"/u\"\nruntime_api = \"unix:/x\"\n")
            .unwrap_err()
            .0;
        assert!(
            errors[0].message.contains("runtime_api"),
            "unknown keys are refused: {errors:#?}"
        );
    }

    #[test]
    fn haproxy_backends_still_need_a_server_template() {
        let errors = config_of(
            "[[haproxy]]\nname = \"lb\"\nruntime_api = \"unix:/s\"\n\n[[haproxy.backend]]\nname = \"web\"\naddress = \"private_ipv4\"\nport = 80\n",
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].field, "haproxy \"lb\".backend \"web\".server");
        assert!(
            errors[0].message.contains("missing key `server`"),
            "{errors:#?}"
        );
    }
}
