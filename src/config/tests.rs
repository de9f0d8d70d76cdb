use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use super::*;
use crate::dns::rfc2136::config::{Rfc2136Config, TsigSource};
use crate::dns::tsig::TsigAlgorithm;
use crate::inventory::digitalocean::DigitalOceanConfig;
use crate::inventory::exec::ExecConfig;
use crate::inventory::file::FileConfig;
use crate::inventory::hetzner::HetznerConfig;
use crate::lb::haproxy::HaproxyConfig;
use crate::lb::haproxy::protocol::RuntimeApi;
use crate::model::AddressKind;

const EXAMPLE: &str = include_str!("../../config/ipdrift.example.toml");

fn errors_of(text: &str) -> Vec<ConfigError> {
    parse(text, Path::new("/etc/ipdrift/test.toml"))
        .expect_err("config should be invalid")
        .0
}

#[test]
fn the_example_config_parses_with_every_field() {
    let c = parse(EXAMPLE, Path::new("/etc/ipdrift/ipdrift.toml")).unwrap();
    assert_eq!(c.controller.interval, Duration::from_secs(10));
    assert_eq!(c.controller.listen, "127.0.0.1:9808".parse().unwrap());
    assert_eq!(
        c.inventories[0].settings::<FileConfig>(),
        Some(&FileConfig {
            path: PathBuf::from("/etc/ipdrift/instances.json"),
            watch: true,
        })
    );
    let Rfc2136Config { server, tsig, .. } = c.dns[0].settings().unwrap();
    assert_eq!(*server, "127.0.0.1:53".parse().unwrap());
    assert_eq!(c.dns[0].zone.as_str(), "example.com.");
    assert_eq!(
        tsig.source,
        TsigSource::Secret {
            name: "ipdrift-key".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: SecretRef::File(PathBuf::from("/etc/ipdrift/tsig.secret")),
        }
    );
    assert_eq!(c.records.len(), 2);
    assert_eq!(c.records[0].ttl, 60);
    assert_eq!(c.records[0].select.tags["role"], "lb");
    assert!(c.records[1].name.is_per_instance());
    assert_eq!(
        c.load_balancers[0]
            .settings::<HaproxyConfig>()
            .unwrap()
            .runtime_api,
        RuntimeApi::Unix("/run/haproxy/admin.sock".into())
    );
    let backend = &c.load_balancers[0].backends[0];
    assert_eq!((backend.name.as_str(), backend.port), ("web", 80));
    assert_eq!(backend.address, AddressKind::PrivateIpv4);
    assert_eq!(
        c.target_names(),
        vec!["ns1".to_string(), "lb-01".to_string()]
    );
}

#[test]
fn exec_sources_need_a_command_and_take_a_timeout() {
    let text = "[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\ncommand = [\"./list\", \"--json\"]\ntimeout = \"3s\"\n";
    let c = parse(text, Path::new("/etc/ipdrift/c.toml")).unwrap();
    assert_eq!(
        c.inventories[0].settings::<ExecConfig>(),
        Some(&ExecConfig {
            command: vec!["./list".into(), "--json".into()],
            timeout: Duration::from_secs(3),
            max_output: crate::inventory::exec::DEFAULT_MAX_OUTPUT,
            dir: PathBuf::from("/etc/ipdrift"),
        })
    );
    let e = errors_of(
        "[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\ncommand = [\"x\"]\nmax_output = 0\n",
    );
    assert!(
        e[0].field.ends_with(".max_output") && e[0].message.contains("between 1 and"),
        "{e:?}"
    );
    let e = errors_of("[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\ncommand = []\n");
    assert!(e[0].field.ends_with(".command"), "{e:?}");
    let e = errors_of("[[inventory]]\nname = \"cloud\"\nkind = \"exec\"\n");
    assert!(e[0].message.contains("command = ["), "{e:?}");
}

#[test]
fn audit_log_and_notify_are_optional_and_validated() {
    let c = parse(EXAMPLE, Path::new("/etc/ipdrift/ipdrift.toml")).unwrap();
    assert_eq!(
        c.controller.audit_log,
        Some(PathBuf::from("/etc/ipdrift/audit.jsonl"))
    );
    assert_eq!(c.notify.len(), 1);
    assert_eq!(c.notify[0].kind, NotifyKind::Slack);
    assert_eq!(c.notify[0].failing_passes, DEFAULT_FAILING_PASSES);
    assert_eq!(c.notify[0].timeout, DEFAULT_NOTIFY_TIMEOUT);
    let shown = format!("{:?}", c.notify[0]);
    assert!(shown.contains("https://hooks.slack.com/…"), "{shown}");
    assert!(!shown.contains("XXXX"), "the token leaks: {shown}");

    let token = "T000/B000/secret-token";
    let text = format!(
        "{EXAMPLE}\n[[notify]]\nurl = \"ftp://example.com/{token}\"\nkind = \"teams\"\nfailing_passes = 0\n"
    );
    let e = errors_of(&text);
    let all = ConfigErrors(e.clone()).to_string();
    for field in [
        "notify[2].url",
        "notify[2].kind",
        "notify[2].failing_passes",
    ] {
        assert!(all.contains(field), "{field} not reported in {all}");
    }
    assert!(!all.contains(token), "the URL is quoted: {all}");
}

#[test]
fn audit_fsync_defaults_to_once_per_pass_and_a_bad_value_names_the_choices() {
    let inventory = "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n";
    let c = parse(inventory, Path::new("c.toml")).unwrap();
    assert_eq!(c.controller.audit_fsync, crate::audit::Fsync::Pass);
    let with = |value: &str| format!("[controller]\naudit_fsync = \"{value}\"\n{inventory}");
    let c = parse(&with("record"), Path::new("c.toml")).unwrap();
    assert_eq!(c.controller.audit_fsync, crate::audit::Fsync::Record);
    let e = errors_of(&with("sometimes"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].line, e[0].field.as_str()),
        (Some(2), "controller.audit_fsync")
    );
    assert!(e[0].message.contains("\"never\""), "{e:?}");
}

#[test]
fn cloud_sources_take_a_token_a_filter_and_an_endpoint() {
    let text = "[[inventory]]\nname = \"do\"\nkind = \"digitalocean\"\ntoken_env = \"DIGITALOCEAN_TOKEN\"\ntag = \"role:web\"\n\n\
                [[inventory]]\nname = \"hz\"\nkind = \"hetzner\"\ntoken_file = \"hcloud.token\"\nlabel_selector = \"role=web\"\nendpoint = \"http://127.0.0.1:8080\"\n";
    let c = parse(text, Path::new("/etc/ipdrift/c.toml")).unwrap();
    assert_eq!(
        c.inventories[0].settings::<DigitalOceanConfig>().map(|d| (
            &d.token.secret,
            &d.tag,
            &d.endpoint
        )),
        Some((
            &SecretRef::Env("DIGITALOCEAN_TOKEN".into()),
            &Some("role:web".into()),
            &Url::parse("https://api.digitalocean.com").unwrap(),
        ))
    );
    assert_eq!(
        c.inventories[1].settings::<HetznerConfig>().map(|h| (
            &h.token.secret,
            &h.label_selector,
            &h.endpoint
        )),
        Some((
            &SecretRef::File("/etc/ipdrift/hcloud.token".into()),
            &Some("role=web".into()),
            &Url::parse("http://127.0.0.1:8080").unwrap(),
        ))
    );
    let c = parse(
        "[[inventory]]\nname = \"hz\"\nkind = \"hetzner\"\ntoken_env = \"HCLOUD_TOKEN\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    let HetznerConfig { endpoint, .. } = c.inventories[0].settings().unwrap();
    assert_eq!(endpoint.as_str(), "https://api.hetzner.cloud/");
}

#[test]
fn cloud_source_mistakes_are_errors_that_never_show_a_token() {
    let base = "[[inventory]]\nname = \"do\"\nkind = \"digitalocean\"\n";
    let e = errors_of(base);
    assert!(e[0].message.contains("token_env = \"VAR\""), "{e:?}");
    assert_eq!(e[0].line, Some(1));
    let e = errors_of(&format!("{base}token_env = \"A\"\ntoken_file = \"b\"\n"));
    assert!(e[0].message.contains("not both"), "{e:?}");
    let token = "dop_v1_4f0c2e8b9a7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b";
    for key in ["token_env", "token_file"] {
        let e = errors_of(&format!("{base}{key} = \"{token}\"\n"));
        let all = ConfigErrors(e.clone()).to_string();
        assert!(!all.contains(token) && all.contains("not shown"), "{all}");
        assert_eq!(e[0].line, Some(4), "{all}");
    }
    // A key of another kind is an error, not silently ignored.
    let e = errors_of(&format!(
        "{base}token_env = \"T\"\nlabel_selector = \"role=web\"\n"
    ));
    assert!(e[0].field.ends_with(".label_selector"), "{e:?}");
    assert!(e[0].message.contains("tag"), "{e:?}");
    let e =
        errors_of("[[inventory]]\nname = \"f\"\nkind = \"file\"\npath = \"i.json\"\ntag = \"x\"\n");
    assert!(e[0].field.ends_with(".tag"), "{e:?}");
    let e = errors_of(&format!("{base}token_env = \"T\"\ntag = \"role=web\"\n"));
    assert!(e[0].message.contains("role:web"), "{e:?}");
    let e = errors_of(&format!(
        "{base}token_env = \"T\"\nendpoint = \"http://api.example.com\"\n"
    ));
    assert!(e[0].message.contains("must use https"), "{e:?}");
    let e = errors_of(&format!(
        "{base}token_env = \"T\"\nendpoint = \"not a url\"\n"
    ));
    assert!(e[0].field.ends_with(".endpoint"), "{e:?}");
}

#[test]
fn only_inventory_is_required_and_defaults_apply() {
    let c = parse(
        "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n",
        Path::new("x/c.toml"),
    )
    .unwrap();
    assert_eq!(c.controller.interval, DEFAULT_INTERVAL);
    assert_eq!(c.controller.listen.to_string(), DEFAULT_LISTEN);
    assert!(c.dns.is_empty() && c.load_balancers.is_empty() && c.records.is_empty());
    assert!(c.notify.is_empty() && c.controller.audit_log.is_none());
    assert!(c.ha.is_none(), "without [ha] a controller runs alone");
    assert_eq!(
        c.inventories[0].settings::<FileConfig>(),
        Some(&FileConfig {
            path: PathBuf::from("x/i.json"),
            watch: true,
        })
    );
    let e = errors_of("");
    assert!(e[0].message.contains("[[inventory]]"), "{e:?}");
}

#[test]
fn maintenance_keys_default_and_are_checked() {
    let source = "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n";
    let c = parse(source, Path::new("c.toml")).unwrap();
    assert_eq!(c.controller.maintenance_ttl, DEFAULT_MAINTENANCE_TTL);
    assert_eq!(c.controller.maintenance_lead, None);
    assert!(!c.controller.maintenance_drain);
    let c = parse(
        &format!(
            "[controller]\nmaintenance_ttl = 5\nlead = \"90s\"\nmaintenance_drain = true\n{source}"
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(c.controller.maintenance_ttl, 5);
    assert_eq!(
        c.controller.maintenance_lead,
        Some(Duration::from_secs(90)),
        "`lead` is maintenance_lead's short name"
    );
    assert!(c.controller.maintenance_drain);
    for (line, fix) in [
        ("maintenance_ttl = 0", "from 1 to 86400"),
        ("maintenance_ttl = 100000", "from 1 to 86400"),
        ("maintenance_lead = \"soon\"", "not a duration"),
        ("maintenance_lead = \"0s\"", "longer than zero"),
    ] {
        let e = errors_of(&format!("[controller]\n{line}\n{source}"));
        assert_eq!(e.len(), 1, "{line}: {e:?}");
        assert_eq!(e[0].line, Some(2), "{line}");
        assert!(e[0].field.starts_with("controller.maintenance_"), "{e:?}");
        assert!(e[0].message.contains(fix), "{line}: {}", e[0].message);
    }
}

#[test]
fn errors_name_file_line_and_field() {
    let text = EXAMPLE.replace("port = 80", "port = 99999");
    let e = errors_of(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    let line = text
        .lines()
        .position(|l| l.starts_with("port = 99999"))
        .unwrap()
        + 1;
    assert_eq!(e[0].line, Some(line));
    assert!(e[0].field.ends_with(".port"), "{}", e[0].field);
    let shown = e[0].to_string();
    assert!(
        shown.starts_with(&format!("/etc/ipdrift/test.toml:{line}: ")),
        "{shown}"
    );
    assert!(shown.contains("1–65535"), "{shown}");
}

#[test]
fn every_kind_of_mistake_is_reported_together() {
    let text = EXAMPLE
        .replace("interval = \"10s\"", "interval = \"ten seconds\"")
        .replace("dns = \"ns1\"\nname = \"www", "dns = \"ns9\"\nname = \"www")
        .replace("{name}.example.com.", "{hostname}.example.com.")
        .replace("address = \"private_ipv4\"", "address = \"elastic\"")
        .replace("algorithm = \"hmac-sha256\"", "algorithm = \"hmac-md5\"")
        .replace("unix:/run/haproxy/admin.sock", "udp:1.2.3.4");
    let e = errors_of(&text);
    let all = ConfigErrors(e.clone()).to_string();
    for needle in [
        "controller.interval",
        "ns9",
        "{hostname}",
        "elastic",
        "hmac-md5",
        "runtime_api",
    ] {
        assert!(all.contains(needle), "{needle} not reported in:\n{all}");
    }
    assert!(e.iter().all(|e| e.line.is_some()), "{all}");
}

#[test]
fn duplicates_and_out_of_zone_names_are_refused() {
    let text = format!(
        "{EXAMPLE}\n[[dns]]\nname = \"lb-01\"\nkind = \"rfc2136\"\nserver = \"127.0.0.1\"\nzone = \"other.org.\"\ntsig = {{ key_file = \"k\" }}\n"
    );
    let e = errors_of(&text);
    assert!(e.iter().any(|e| e.message.contains("used twice")), "{e:?}");

    let text = EXAMPLE.replace("name = \"www.example.com.\"", "name = \"www.example.org.\"");
    let e = errors_of(&text);
    assert!(
        e[0].message.contains("not inside zone example.com."),
        "{e:?}"
    );

    let text = format!(
        "{EXAMPLE}\n[[record]]\ndns = \"ns1\"\nname = \"WWW.example.com\"\naddress = \"public_ipv4\"\n"
    );
    let e = errors_of(&text);
    assert!(e[0].message.contains("already managed"), "{e:?}");
}

#[test]
fn unknown_keys_and_syntax_errors_have_lines() {
    let e = errors_of(&EXAMPLE.replace("interval = ", "intervall = "));
    assert!(e[0].message.contains("intervall"), "{e:?}");
    assert_eq!(
        e[0].line,
        Some(
            EXAMPLE
                .lines()
                .position(|l| l.starts_with("interval"))
                .unwrap()
                + 1
        )
    );
    let e = errors_of("[[inventory]\nname=");
    assert_eq!(e[0].line, Some(1));
}

#[test]
fn hostile_template_literals_are_refused() {
    let e = errors_of(&EXAMPLE.replace("server = \"{name}\"", "server = \"{name};shutdown\""));
    assert!(e[0].field.ends_with(".server"), "{e:?}");
    let e = errors_of(&EXAMPLE.replace("{name}.example.com.", "{name} x.example.com."));
    assert!(e[0].field.ends_with(".name"), "{e:?}");
}

const INVENTORY: &str = "[[inventory]]\nname = \"a\"\nkind = \"file\"\npath = \"i.json\"\n";

fn ha_errors(ha: &str) -> Vec<String> {
    errors_of(&format!("{INVENTORY}[ha]\n{ha}"))
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn ha_takes_etcd_endpoints_an_election_a_lease_tls_and_a_user() {
    let text = format!(
        "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"https://etcd-0.etcd:2379\", \"https://10.0.0.2:2379\"]\n\
         election = \"ipdrift/prod\"\nlease_ttl = \"15s\"\ninstance = \"host-a\"\nca_file = \"etcd-ca.pem\"\n\
         cert_file = \"client.pem\"\nkey_file = \"client-key.pem\"\nuser = \"ipdrift\"\npassword_env = \"ETCD_PASSWORD\"\n"
    );
    let c = parse(&text, Path::new("/etc/ipdrift/c.toml")).unwrap();
    let ha = c.ha.unwrap();
    assert_eq!(
        ha.endpoints,
        ["https://etcd-0.etcd:2379", "https://10.0.0.2:2379"]
    );
    assert_eq!(ha.election, "ipdrift/prod");
    assert_eq!(ha.lease_ttl, Duration::from_secs(15));
    assert_eq!(ha.instance_name(), "host-a");
    assert_eq!(
        ha.tls,
        Some(EtcdTls {
            ca_file: "/etc/ipdrift/etcd-ca.pem".into(),
            identity: Some((
                "/etc/ipdrift/client.pem".into(),
                "/etc/ipdrift/client-key.pem".into()
            )),
        })
    );
    assert_eq!(
        ha.auth,
        Some(EtcdAuth {
            user: "ipdrift".into(),
            password: SecretRef::Env("ETCD_PASSWORD".into()),
        })
    );
}

#[test]
fn the_example_ha_section_parses_once_uncommented() {
    let lines: Vec<&str> = EXAMPLE
        .lines()
        .skip_while(|l| !l.starts_with("# [ha]"))
        .map_while(|l| l.strip_prefix("# "))
        .collect();
    assert!(lines.len() > 5, "no commented [ha] section in the example");
    let text = format!("{INVENTORY}{}\n", lines.join("\n"));
    let ha = parse(&text, Path::new("/etc/ipdrift/ipdrift.toml"))
        .unwrap()
        .ha
        .unwrap();
    assert_eq!(ha.election, "ipdrift/prod");
    assert_eq!(ha.instance_name(), "host-a");
    assert!(ha.tls.is_some() && ha.auth.is_some());
}

#[test]
fn ha_defaults_to_a_ten_second_lease_and_the_host_name() {
    let text = format!(
        "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nelection = \"ipdrift/x\"\n"
    );
    let ha = parse(&text, Path::new("c.toml")).unwrap().ha.unwrap();
    assert_eq!(ha.endpoints, ["http://127.0.0.1:2379"], "as for etcdctl");
    assert_eq!(ha.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(ha.instance, None);
    assert_eq!(ha.instance_name(), default_instance());
    assert!(ha::is_plain_name(&ha.instance_name(), 64, &['-', '_', '.']));
    assert!(ha.tls.is_none() && ha.auth.is_none());
}

#[test]
fn ha_mistakes_name_the_field_and_the_fix() {
    let base = "backend = \"etcd\"\nelection = \"ipdrift/x\"\n";
    for (ha, expected) in [
        (
            "backend = \"zookeeper\"\nendpoints = [\"http://127.0.0.1:2379\"]\nelection = \"x\"\n",
            "ha.backend: unknown backend \"zookeeper\"; supported: etcd",
        ),
        (
            &format!("{base}endpoints = []\n"),
            "ha.endpoints: list at least one etcd client URL",
        ),
        (
            &format!("{base}endpoints = [\"ftp://127.0.0.1:2379\"]\n"),
            "ha.endpoints: \"ftp://127.0.0.1:2379\" is not an etcd client URL",
        ),
        (
            &format!("{base}endpoints = [\"http://etcd\"]\n"),
            "is not an etcd client URL; write \"http://HOST:PORT\"",
        ),
        (
            &format!(
                "{base}endpoints = [\"http://a:2379\", \"https://b:2379\"]\nca_file = \"ca.pem\"\n"
            ),
            "ha.endpoints: mix of http:// and https://",
        ),
        (
            &format!("{base}endpoints = [\"https://a:2379\"]\n"),
            "ha.ca_file: https:// endpoints need ca_file",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\nca_file = \"ca.pem\"\n"),
            "ha.ca_file: ca_file, cert_file and key_file are for TLS; the endpoints must then be https://",
        ),
        (
            &format!(
                "{base}endpoints = [\"https://a:2379\"]\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"\n"
            ),
            "ha.cert_file: a client certificate needs both cert_file and key_file",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\nlease_ttl = \"500ms\"\n"),
            "ha.lease_ttl: etcd leases last whole seconds, at least 1",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\nlease_ttl = \"2500ms\"\n"),
            "ha.lease_ttl: etcd leases last whole seconds",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"http://a:2379\"]\nelection = \"/ipdrift/\"\n",
            "ha.election: use 1–128 letters",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\ninstance = \"a b\"\n"),
            "ha.instance: use 1–64 letters",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\nuser = \"ipdrift\"\n"),
            "ha.password_file: user needs a password",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\npassword_file = \"p\"\n"),
            "ha.user: password_file and password_env need user",
        ),
        (
            &format!(
                "{base}endpoints = [\"http://a:2379\"]\nuser = \"u\"\npassword_env = \"hunter2 secret\"\n"
            ),
            "ha.password_env: must be the name of an environment variable",
        ),
        (
            &format!("{base}endpoints = [\"http://a:2379\"]\npassword = \"hunter2\"\n"),
            "unknown field `password`",
        ),
    ] {
        let errors = ha_errors(ha);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{ha:?}: {errors:?} lacks {expected:?}"
        );
        assert!(
            errors.iter().all(|e| !e.contains("hunter2 secret")),
            "{errors:?}"
        );
    }
}

#[test]
fn ha_secrets_are_read_without_being_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etcd.password"), "hunter2\n").unwrap();
    let text = format!(
        "{INVENTORY}[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nelection = \"ipdrift/x\"\n\
         user = \"ipdrift\"\npassword_file = \"etcd.password\"\n"
    );
    let ha = parse(&text, &dir.path().join("c.toml"))
        .unwrap()
        .ha
        .unwrap();
    let secrets = ha.load_secrets().unwrap();
    assert_eq!(
        secrets.credentials,
        Some(("ipdrift".to_string(), "hunter2".to_string()))
    );
    assert!(!format!("{secrets:?}").contains("hunter2"));
    std::fs::remove_file(dir.path().join("etcd.password")).unwrap();
    let error = ha.load_secrets().unwrap_err();
    assert!(
        error.starts_with("ha.password_file: cannot read "),
        "{error}"
    );
}

#[test]
fn tsig_sources_are_exclusive_and_complete() {
    let e = errors_of(&EXAMPLE.replace(
        "secret_file = \"tsig.secret\"",
        "secret_file = \"a\", secret_env = \"B\"",
    ));
    assert!(e[0].message.contains("not both"), "{e:?}");
    let e = errors_of(&EXAMPLE.replace(", secret_file = \"tsig.secret\"", ""));
    assert!(e[0].message.contains("missing secret"), "{e:?}");
    let c = parse(
        &EXAMPLE.replace(
            "tsig = { name = \"ipdrift-key\", algorithm = \"hmac-sha256\", secret_file = \"tsig.secret\" }",
            "tsig = { key_file = \"/etc/bind/ipdrift.key\" }",
        ),
        Path::new("c.toml"),
    )
    .unwrap();
    let Rfc2136Config { tsig, .. } = c.dns[0].settings().unwrap();
    assert_eq!(
        tsig.source,
        TsigSource::KeyFile("/etc/bind/ipdrift.key".into())
    );
}

const AWS_SOURCE: &str = "[[inventory]]\nname = \"ec2\"\nkind = \"aws\"\nregion = \"eu-west-1\"\n";

#[cfg(feature = "aws")]
use std::collections::BTreeMap;

#[cfg(feature = "aws")]
use crate::clients::aws::AwsAccess;
#[cfg(feature = "aws")]
use crate::dns::route53::{DEFAULT_ROUTE53_REGION, Route53Config};
#[cfg(feature = "aws")]
use crate::inventory::aws::AwsConfig;

#[cfg(feature = "aws")]
#[test]
fn aws_sources_take_a_region_filters_an_endpoint_and_a_profile() {
    let text = format!(
        "{AWS_SOURCE}endpoint = \"http://127.0.0.1:5000\"\nprofile = \"ipdrift\"\nfilters = {{ \"tag:env\" = [\"prod\"], \"instance-state-name\" = [\"running\", \"stopped\"] }}\n"
    );
    let c = parse(&text, Path::new("/etc/ipdrift/c.toml")).unwrap();
    assert_eq!(
        c.inventories[0].settings::<AwsConfig>(),
        Some(&AwsConfig {
            access: AwsAccess {
                region: "eu-west-1".into(),
                endpoint: Some(Url::parse("http://127.0.0.1:5000").unwrap()),
                profile: Some("ipdrift".into()),
            },
            filters: BTreeMap::from([
                (
                    "instance-state-name".into(),
                    vec!["running".into(), "stopped".into()]
                ),
                ("tag:env".into(), vec!["prod".into()]),
            ]),
            events_queue: None,
        })
    );
    let c = parse(AWS_SOURCE, Path::new("c.toml")).unwrap();
    let AwsConfig {
        access,
        filters,
        events_queue,
    } = c.inventories[0].settings().unwrap();
    assert_eq!(
        (access.endpoint.as_ref(), access.profile.as_ref()),
        (None, None)
    );
    assert!(filters.is_empty());
    assert_eq!(events_queue, &None, "no events without a queue");
}

#[cfg(feature = "aws")]
#[test]
fn an_events_queue_is_a_queue_url_of_the_sources_region() {
    let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/ipdrift-events";
    let c = parse(
        &format!("{AWS_SOURCE}events_queue = \"{queue}\"\n"),
        Path::new("c.toml"),
    )
    .unwrap();
    let settings: &AwsConfig = c.inventories[0].settings().unwrap();
    assert_eq!(settings.events_queue.as_deref(), Some(queue));
    let e = errors_of(&format!(
        "{AWS_SOURCE}events_queue = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n"
    ));
    assert!(
        e[0].field.ends_with(".events_queue") && e[0].message.contains("own region"),
        "{e:?}"
    );
    let e = errors_of(&format!("{AWS_SOURCE}events_queue = \"ipdrift-events\"\n"));
    assert!(e[0].message.contains("queue's URL"), "{e:?}");
}

#[cfg(feature = "aws")]
#[test]
fn aws_source_mistakes_name_the_line_and_field() {
    let e = errors_of("[[inventory]]\nname = \"ec2\"\nkind = \"aws\"\n");
    assert!(
        e[0].field.ends_with(".region") && e[0].message.contains("region = "),
        "{e:?}"
    );
    let e = errors_of(&AWS_SOURCE.replace("eu-west-1", "EU West"));
    assert!(
        e[0].message.contains("not an AWS region") && e[0].line == Some(4),
        "{e:?}"
    );
    let e = errors_of(&format!("{AWS_SOURCE}filters = {{ \"tag:env\" = [] }}\n"));
    assert!(
        e[0].field.ends_with(".filters") && e[0].message.contains("no values"),
        "{e:?}"
    );
    assert_eq!(e[0].line, Some(5));
    let e = errors_of(&format!(
        "{AWS_SOURCE}filters = {{ \"tag:env\" = \"prod\" }}\n"
    ));
    assert_eq!(e[0].line, Some(5), "{e:?}");
    let e = errors_of(&format!(
        "{AWS_SOURCE}endpoint = \"http://ec2.example.com\"\n"
    ));
    assert!(e[0].message.contains("must use https"), "{e:?}");
    let e = errors_of(&format!("{AWS_SOURCE}token_env = \"AWS_TOKEN\"\n"));
    assert!(
        e[0].field.ends_with(".token_env")
            && e[0].message.contains("region, endpoint, filters, profile"),
        "{e:?}"
    );
}

const ROUTE53: &str = "[[inventory]]\nname = \"f\"\nkind = \"file\"\npath = \"i.json\"\n\n[[dns]]\nname = \"r53\"\nkind = \"route53\"\nzone = \"example.com.\"\n";

#[cfg(feature = "aws")]
#[test]
fn route53_targets_take_a_zone_id_or_look_the_zone_up() {
    let c = parse(ROUTE53, Path::new("c.toml")).unwrap();
    let Route53Config {
        access,
        zone_id,
        wait,
    } = c.dns[0].settings().unwrap();
    assert_eq!(access.region, DEFAULT_ROUTE53_REGION);
    assert_eq!((zone_id, wait), (&None, &false));
    let text = format!(
        "{ROUTE53}zone_id = \"/hostedzone/Z0123456789ABC\"\nwait = true\nendpoint = \"http://127.0.0.1:5000\"\nregion = \"eu-central-1\"\nprofile = \"dns\"\n"
    );
    let c = parse(&text, Path::new("c.toml")).unwrap();
    let Route53Config {
        access,
        zone_id,
        wait,
    } = c.dns[0].settings().unwrap();
    assert_eq!(zone_id.as_deref(), Some("Z0123456789ABC"));
    assert!(*wait);
    assert_eq!(access.region, "eu-central-1");
    assert_eq!(access.profile.as_deref(), Some("dns"));
    assert!(
        c.read_secrets().is_ok(),
        "a Route 53 target has no TSIG key"
    );

    let e = errors_of(&format!("{ROUTE53}zone_id = \"Z01 23\"\n"));
    assert!(
        e[0].field.ends_with(".zone_id") && e[0].line == Some(10),
        "{e:?}"
    );
    let e = errors_of(&format!("{ROUTE53}tsig = {{ key_file = \"k\" }}\n"));
    assert!(
        e[0].field.ends_with(".tsig") && e[0].message.contains("route53 target"),
        "{e:?}"
    );
    let e = errors_of(&format!("{ROUTE53}server = \"127.0.0.1\"\n"));
    assert!(e[0].field.ends_with(".server"), "{e:?}");
    let e =
        errors_of(&EXAMPLE.replace("kind = \"rfc2136\"", "kind = \"rfc2136\"\nzone_id = \"Z1\""));
    assert!(
        e[0].field.ends_with(".zone_id") && e[0].message.contains("rfc2136 target"),
        "{e:?}"
    );
}

#[cfg(not(feature = "aws"))]
#[test]
fn aws_kinds_are_refused_by_a_build_without_the_aws_feature() {
    for text in [AWS_SOURCE, ROUTE53] {
        let e = errors_of(text);
        assert!(
            e[0].message.contains("built without the aws feature"),
            "{e:?}"
        );
        assert!(
            e[0].field.ends_with(".kind") && e[0].line.is_some(),
            "{e:?}"
        );
    }
}

proptest::proptest! {
    /// Any text at all gives a config or errors with lines inside the text; never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Err(errors) = parse(&text, Path::new("fuzz.toml")) {
            let lines = text.lines().count().max(1);
            for e in errors.0 {
                proptest::prop_assert!(e.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{e}");
            }
        }
    }

    /// The example with any one line dropped or any one value replaced still never
    /// panics, and every error names a line.
    #[test]
    fn mangled_examples_never_panic(
        drop_line in 0usize..60,
        replace_line in 0usize..60,
        replacement in "[a-z_]{1,8} = (\"[^\"\\\\]{0,8}\"|-?[0-9]{1,7}|\\{\\}|\\[\\])",
    ) {
        let text: Vec<String> = EXAMPLE
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != drop_line)
            .map(|(i, l)| if i == replace_line { replacement.clone() } else { l.to_string() })
            .collect();
        if let Err(errors) = parse(&text.join("\n"), Path::new("fuzz.toml")) {
            for e in errors.0 {
                proptest::prop_assert!(e.line.is_some() || e.field == "inventory", "{e}");
            }
        }
    }
}

#[test]
fn missing_secrets_are_reported_without_revealing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let c = parse(EXAMPLE, &path).unwrap();
    let e = c.read_secrets().unwrap_err().to_string();
    assert!(
        e.contains("tsig.secret") && e.contains("dns \"ns1\".tsig"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("tsig.secret"),
        "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n",
    )
    .unwrap();
    c.read_secrets().unwrap();
    assert!(
        c.dns[0]
            .spec
            .build("ns1", &c.dns[0].zone, DEFAULT_TIMEOUT)
            .is_ok()
    );
    std::fs::write(dir.path().join("tsig.secret"), "not base64 at all!!\n").unwrap();
    let e = c.read_secrets().unwrap_err().to_string();
    assert!(!e.contains("not base64 at all"), "{e}");

    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    for misplaced in [
        format!("secret_env = \"{secret}\""),
        format!("secret_file = \"{secret}\""),
    ] {
        let text = EXAMPLE.replace("secret_file = \"tsig.secret\"", &misplaced);
        let e = parse(&text, &path)
            .unwrap()
            .read_secrets()
            .unwrap_err()
            .to_string();
        assert!(!e.contains(secret), "{e}");
        assert!(e.contains("not shown"), "{e}");
    }
}

#[test]
fn sub_millisecond_intervals_are_refused_here_and_on_the_command_line() {
    let e = errors_of(&EXAMPLE.replace("interval = \"10s\"", "interval = \"500us\""));
    assert!(
        e.iter()
            .any(|e| e.field == "controller.interval" && e.message.contains("shorter than 1ms")),
        "{e:?}"
    );
    use super::controller::parse_interval;
    assert_eq!(parse_interval("1ms"), Ok(Duration::from_millis(1)));
    assert!(
        parse_interval("999us")
            .unwrap_err()
            .contains("at least 1ms")
    );
    assert!(parse_interval("0s").is_err());
    assert!(parse_interval("200000000000y").is_err());
}

#[test]
fn a_fixed_name_that_is_no_host_name_needs_check_names_false() {
    let odd = EXAMPLE.replacen("name = \"www.", "name = \"_www.", 1);
    assert_ne!(odd, EXAMPLE, "the example has a www rule");
    let e = errors_of(&odd);
    assert!(
        e.iter()
            .any(|e| e.message.contains("not a host name")
                && e.message.contains("check_names = false")),
        "{e:?}"
    );
    let allowed = EXAMPLE.replacen(
        "name = \"www.example.com.\"",
        "name = \"_www.example.com.\"\ncheck_names = false",
        1,
    );
    let c = parse(&allowed, Path::new("/etc/ipdrift/c.toml")).unwrap();
    assert!(!c.records[0].check_names);
    assert!(c.records[1].check_names);
}

#[test]
fn proxied_is_a_cloudflare_rule_key_with_the_automatic_ttl() {
    let base = |target: &str, rule: &str| {
        format!(
            "[[inventory]]\nname = \"f\"\nkind = \"file\"\npath = \"i.json\"\n\n{target}\n[[record]]\ndns = \"d\"\nname = \"www.example.com.\"\naddress = \"public_ipv4\"\n{rule}\n"
        )
    };
    let cloudflare = "[[dns]]\nname = \"d\"\nkind = \"cloudflare\"\nzone = \"example.com.\"\ntoken_env = \"CF_TOKEN\"\n";
    let config = parse(&base(cloudflare, "proxied = true"), Path::new("c.toml")).unwrap();
    assert_eq!(
        (config.records[0].proxied, config.records[0].ttl),
        (Some(true), 1)
    );
    let config = parse(
        &base(cloudflare, "proxied = false\nttl = 300"),
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(
        (config.records[0].proxied, config.records[0].ttl),
        (Some(false), 300)
    );
    let errors = errors_of(&base(cloudflare, "proxied = true\nttl = 300"));
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("ttl") && e.to_string().contains("automatic")),
        "{errors:?}"
    );
    let rfc2136 = "[[dns]]\nname = \"d\"\nkind = \"rfc2136\"\nzone = \"example.com.\"\nserver = \"127.0.0.1:53\"\ntsig = { key_file = \"k.key\" }\n";
    let errors = errors_of(&base(rfc2136, "proxied = false"));
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        shown.iter().any(|e| e.contains("record[0].proxied")
            && e.contains("only cloudflare")
            && e.contains("rfc2136")),
        "{shown:?}"
    );
}
