//! Secrets never show: not the TSIG secret a running controller signs with, nor a webhook
//! URL, in its logs at trace level (text and JSON), `/metrics`, the audit log or webhook
//! bodies; and not secrets pasted into the keys that name where a secret is (paths,
//! variable names), in anything `check-config`, `diff` or `apply` print.

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::controller::Controller;
use support::fleet::{Fleet, describe, ipdrift};
use support::wait_until;
use support::webhook::Receiver;

/// The forms a leaked TSIG secret could take: its base64 (without padding) and its hex.
fn renderings(secret_base64: &str) -> Vec<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret_base64)
        .unwrap();
    vec![
        secret_base64.trim_end_matches('=').to_string(),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
    ]
}

fn assert_absent(haystack: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !haystack.contains(secret.as_str()),
            "{what} shows a secret ({secret}):\n{haystack}"
        );
    }
}

#[test]
fn a_run_repairing_the_seed_outage_shows_no_secret_in_any_output() {
    let mut fleet = Fleet::start();
    let receiver = Receiver::start();
    let config = std::fs::read_to_string(fleet.config_path())
        .unwrap()
        .replacen(
            "[controller]\n",
            "[controller]\naudit_log = \"audit.jsonl\"\n",
            1,
        )
        + &format!(
            "\n[[notify]]\nurl = \"{}\"\nkind = \"json\"\n",
            receiver.url
        );
    std::fs::write(fleet.config_path(), config).unwrap();
    let mut secrets = renderings(fleet.bind.secret_base64());
    secrets.push("secret-token".into());
    secrets.push(receiver.url.clone());

    let controller = Controller::start_configured(&fleet.config_path(), |c| {
        c.env("RUST_LOG", "trace");
    });
    controller.wait_ready();
    fleet.move_to(2);
    assert!(
        wait_until(Duration::from_secs(15), || fleet.converged_at(2)),
        "not repaired:\n{}",
        controller.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || receiver.bodies().len() >= 2),
        "drift and repair notices: {:?}",
        receiver.bodies()
    );
    let (_, metrics) = controller.get("/metrics").map(|(c, _, b)| (c, b)).unwrap();
    let (code, log) = controller.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("\"level\":\"TRACE\"") || log.contains("TRACE"),
        "trace logs were on"
    );
    assert_absent(&log, &secrets, "the JSON log at trace");
    assert_absent(&metrics, &secrets, "/metrics");
    let audit = std::fs::read_to_string(fleet.dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"change\""), "{audit}");
    assert_absent(&audit, &secrets, "the audit log");
    let bodies = serde_json::to_string(&receiver.bodies()).unwrap();
    assert_absent(&bodies, &secrets, "the webhook bodies");

    let timeline = ipdrift(&fleet.config_path(), &["timeline", "--output", "markdown"]);
    assert_eq!(timeline.status.code(), Some(0), "{}", describe(&timeline));
    assert_absent(&describe(&timeline), &secrets, "the timeline");
}

/// Real-shaped secrets: base64 with `/` and `+` (a TSIG secret), an API token, a password.
const PASTED: [&str; 3] = [
    "q9Xv/4bN+0Tz3Lk7/Ra+Wm2c8Ye1Ph5Js6Gd0Fu4Vo8=",
    "hcloud_tok3n_0123456789abcdefABCDEF0123456789abcdefABCDEF0123",
    "correct-horse-battery-staple-42!",
];

#[test]
fn secrets_pasted_into_the_keys_that_name_their_place_are_never_shown() {
    let fleet = Fleet::start();
    let base = std::fs::read_to_string(fleet.config_path()).unwrap();
    let tsig = base
        .lines()
        .find(|l| l.starts_with("tsig = "))
        .expect("the fleet's TSIG line")
        .to_string();
    for secret in PASTED {
        let cases = [
            base.replace(
                &tsig,
                &format!("tsig = {{ name = \"k\", algorithm = \"hmac-sha256\", secret_file = \"{secret}\" }}"),
            ),
            base.replace(
                &tsig,
                &format!("tsig = {{ name = \"k\", algorithm = \"hmac-sha256\", secret_env = \"{secret}\" }}"),
            ),
            base.replace(&tsig, &format!("tsig = {{ key_file = \"{secret}\" }}")),
            format!("{base}\n[[inventory]]\nname = \"cloud\"\nkind = \"hetzner\"\ntoken_file = \"{secret}\"\n"),
            format!("{base}\n[[inventory]]\nname = \"cloud\"\nkind = \"hetzner\"\ntoken_env = \"{secret}\"\n"),
            format!(
                "{base}\n[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\nelection = \"e\"\nuser = \"ipdrift\"\npassword_file = \"{secret}\"\n"
            ),
            format!(
                "{base}\n[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\nelection = \"e\"\nuser = \"ipdrift\"\npassword_env = \"{secret}\"\n"
            ),
        ];
        for (n, config) in cases.iter().enumerate() {
            let path = fleet.dir.path().join(format!("pasted-{n}.toml"));
            std::fs::write(&path, config).unwrap();
            for command in ["check-config", "diff", "apply"] {
                for format in ["text", "json"] {
                    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ipdrift"))
                        .env("RUST_LOG", "trace")
                        .args(["--log-format", format, "--config"])
                        .arg(&path)
                        .arg(command)
                        .output()
                        .unwrap();
                    // Every command reads the TSIG key; check-config does not read API token
                    // files, and only check-config and run read [ha]'s password.
                    let reads_it = n <= 2
                        || (n <= 4 && command != "check-config")
                        || (n >= 5 && command == "check-config");
                    if reads_it {
                        assert_eq!(
                            output.status.code(),
                            Some(1),
                            "case {n} {command}: {}",
                            describe(&output)
                        );
                    }
                    let all = describe(&output);
                    for shown in [secret, secret.trim_end_matches('='), &secret[..24]] {
                        assert!(
                            !all.contains(shown),
                            "case {n} {command} --log-format {format} shows {shown:?}:\n{all}"
                        );
                    }
                }
            }
        }
    }
}
