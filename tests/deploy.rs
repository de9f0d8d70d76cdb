//! deploy/ipdrift.service and the Debian package's deploy/debian/ipdrift.service keep their
//! hardening: read as systemd's INI-like format, each unit runs `ipdrift --config … run`
//! unprivileged and sandboxed, and the two differ only in the binary's path and the user.
//! `systemd-analyze verify` checks the syntax (tests/package_deb.rs, on the installed unit);
//! these tests stop a setting from being dropped or weakened unnoticed.

use std::collections::BTreeMap;

const UNIT: &str = include_str!("../deploy/ipdrift.service");
const PACKAGED_UNIT: &str = include_str!("../deploy/debian/ipdrift.service");

/// Every assignment in the unit: (section, key) → values in file order. Comments and blank
/// lines are skipped; a key may be assigned more than once (systemd appends list settings).
fn assignments(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut section = String::new();
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not `Key=value`: {line}", index + 1));
        found
            .entry((section.clone(), key.trim().to_string()))
            .or_default()
            .push(value.trim().to_string());
    }
    found
}

/// Reads [Service] settings of the unit.
struct Service {
    settings: BTreeMap<(String, String), Vec<String>>,
}

impl Service {
    fn parse(text: &str) -> Service {
        Service {
            settings: assignments(text),
        }
    }

    /// Both units: the one to install by hand and the Debian package's.
    fn both() -> [Service; 2] {
        [Service::parse(UNIT), Service::parse(PACKAGED_UNIT)]
    }

    fn values(&self, key: &str) -> &[String] {
        self.settings
            .get(&("Service".to_string(), key.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("[Service] has no {key}="))
    }

    /// The value of a key assigned exactly once (a second assignment could override it).
    fn single(&self, key: &str) -> &str {
        match self.values(key) {
            [value] => value,
            values => panic!(
                "[Service] assigns {key}= {} times: {values:?}",
                values.len()
            ),
        }
    }

    fn assert_enabled(&self, key: &str) {
        let value = self.single(key);
        assert!(
            ["yes", "true", "on", "1"].contains(&value),
            "{key}={value} does not enable it"
        );
    }
}

#[test]
fn exec_start_runs_the_controller_with_an_explicit_config() {
    for (service, binary) in Service::both()
        .iter()
        .zip(["/usr/local/bin/ipdrift", "/usr/bin/ipdrift"])
    {
        assert_exec_start(service, binary);
    }
}

fn assert_exec_start(service: &Service, binary: &str) {
    let exec_start: Vec<&str> = service.single("ExecStart").split_whitespace().collect();
    assert_eq!(exec_start.first(), Some(&binary));
    let config_flag = exec_start
        .iter()
        .position(|arg| *arg == "--config")
        .expect("ExecStart passes --config");
    assert_eq!(
        exec_start.get(config_flag + 1),
        Some(&"/etc/ipdrift/ipdrift.toml")
    );
    assert_eq!(exec_start.last(), Some(&"run"), "{exec_start:?}");
}

#[test]
fn restarts_on_failure_and_reloads_with_sighup() {
    for service in Service::both() {
        assert_eq!(service.single("Restart"), "on-failure");
        assert_eq!(service.single("ExecReload"), "/bin/kill -HUP $MAINPID");
    }
}

#[test]
fn runs_as_an_unprivileged_user() {
    for service in Service::both() {
        let dynamic_user = service
            .settings
            .contains_key(&("Service".into(), "DynamicUser".into()));
        if dynamic_user {
            service.assert_enabled("DynamicUser");
        } else {
            assert_eq!(service.single("User"), "ipdrift");
        }
        assert_eq!(service.single("CapabilityBoundingSet"), "");
        service.assert_enabled("NoNewPrivileges");
    }
}

#[test]
fn the_filesystem_is_read_only_and_private() {
    for service in Service::both() {
        assert_eq!(service.single("ProtectSystem"), "strict");
        assert_eq!(service.single("ReadOnlyPaths"), "/etc/ipdrift");
        assert_eq!(service.single("UMask"), "0077");
        for key in ["ProtectHome", "PrivateTmp", "PrivateDevices"] {
            service.assert_enabled(key);
        }
    }
}

#[test]
fn kernel_and_system_state_are_protected() {
    for service in Service::both() {
        for key in [
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "RestrictNamespaces",
            "MemoryDenyWriteExecute",
            "LockPersonality",
        ] {
            service.assert_enabled(key);
        }
    }
}

#[test]
fn sockets_and_system_calls_are_restricted() {
    for service in Service::both() {
        let mut families: Vec<&str> = service
            .single("RestrictAddressFamilies")
            .split_whitespace()
            .collect();
        families.sort();
        assert_eq!(families, ["AF_INET", "AF_INET6", "AF_UNIX"]);
        let filters = service.values("SystemCallFilter");
        assert!(
            filters.first().map(String::as_str) == Some("@system-service"),
            "the first SystemCallFilter= must allow only @system-service: {filters:?}"
        );
        // An empty assignment would reset the filter to allow everything.
        assert!(filters.iter().all(|f| !f.is_empty()), "{filters:?}");
    }
}

#[test]
fn comments_explain_the_haproxy_socket_and_the_tsig_credential() {
    for unit in [UNIT, PACKAGED_UNIT] {
        let comments: Vec<&str> = unit
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect();
        for hint in [
            "SupplementaryGroups=haproxy",
            "admin.sock",
            "LoadCredential=",
            "/run/credentials/ipdrift.service/",
        ] {
            assert!(
                comments.iter().any(|l| l.contains(hint)),
                "no comment mentions {hint}"
            );
        }
    }
}

#[test]
fn the_packaged_unit_differs_only_in_the_binary_and_the_user() {
    let mut by_hand = assignments(UNIT);
    let mut packaged = assignments(PACKAGED_UNIT);
    let key = |name: &str| ("Service".to_string(), name.to_string());
    assert_eq!(
        by_hand.remove(&key("DynamicUser")),
        Some(vec!["yes".into()])
    );
    assert_eq!(packaged.remove(&key("User")), Some(vec!["ipdrift".into()]));
    assert_eq!(packaged.remove(&key("Group")), Some(vec!["ipdrift".into()]));
    let exec_start = |settings: &mut BTreeMap<_, Vec<String>>| {
        let line = settings.remove(&key("ExecStart")).unwrap().join(" ");
        line.split_once(' ').unwrap().1.to_string()
    };
    assert_eq!(exec_start(&mut by_hand), exec_start(&mut packaged));
    assert_eq!(by_hand, packaged);
}

/// The table headers of a config, written or commented out: `[controller]`, `[[dns]]`, ….
fn config_sections(text: &str) -> std::collections::BTreeSet<&str> {
    text.lines()
        .map(|l| l.trim_start_matches(['#', ' ']))
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn the_packaged_config_shows_every_section_of_the_example() {
    let example = include_str!("../config/ipdrift.example.toml");
    let packaged = include_str!("../deploy/debian/ipdrift.toml");
    let missing: Vec<_> = config_sections(example)
        .difference(&config_sections(packaged))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/debian/ipdrift.toml lacks {missing:?}"
    );
    // As installed it writes nowhere: no target is configured until the operator adds one.
    for written in packaged.lines().filter(|l| l.starts_with('[')) {
        assert!(
            ["[controller]", "[[inventory]]"].contains(&written.trim()),
            "the packaged config configures {written}"
        );
    }
}
