//! The real binary on the command line, with no servers: help and version, `check-config`
//! on valid and broken configs, how the config file is found, that the TSIG secret is never
//! printed, and what `diff`, `apply` and `run` do when every target is unreachable.
//! Targets point at 127.0.0.1:1, where nothing listens, so each connection fails at once.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tempfile::TempDir;

use support::fleet::{describe, ipdrift};
use support::free_port;

/// The TSIG secret before base64 encoding; printable, so that a leak of the raw bytes shows.
const SECRET_BYTES: &str = "ipdrift-cli-test-tsig-secret-42";

/// The environment variable that `secret_env` names in these tests.
const SECRET_ENV_VAR: &str = "IPDRIFT_CLI_TEST_TSIG_SECRET";

/// The TSIG line of [`VALID_CONFIG`]; the other tests swap in other key sources.
const TSIG_SECRET_FILE: &str =
    r#"tsig = { name = "ipdrift-key", algorithm = "hmac-sha256", secret_file = "tsig.secret" }"#;

/// config/ipdrift.example.toml with both targets on a closed loopback port.
const VALID_CONFIG: &str = r#"[controller]
interval = "10s"
listen = "127.0.0.1:9808"
timeout = "2s"

[[inventory]]
name = "local"
kind = "file"
path = "instances.json"

[[dns]]
name = "ns1"
kind = "rfc2136"
server = "127.0.0.1:1"
zone = "example.com."
tsig = { name = "ipdrift-key", algorithm = "hmac-sha256", secret_file = "tsig.secret" }

[[record]]
dns = "ns1"
name = "www.example.com."
select = { tags = { role = "lb" } }
address = "public_ipv4"
ttl = 60

[[record]]
dns = "ns1"
name = "{name}.example.com."
select = { tags = { role = "web" } }
address = "public_ipv4"

[[haproxy]]
name = "lb-01"
runtime_api = "tcp:127.0.0.1:1"

[[haproxy.backend]]
name = "web"
select = { tags = { role = "web" } }
address = "private_ipv4"
port = 80
server = "{name}"
"#;

const INSTANCES: &str = r#"[
{"id":"i-lb","name":"lb","state":"running","public_ipv4":"192.0.2.1","private_ipv4":"10.0.0.1","tags":{"role":"lb"}},
{"id":"i-web-01","name":"web-01","state":"running","public_ipv4":"192.0.2.11","private_ipv4":"10.0.0.11","tags":{"role":"web"}}
]
"#;

fn secret_base64() -> String {
    BASE64.encode(SECRET_BYTES)
}

/// A temporary directory holding ipdrift.toml (the given text), instances.json, and the
/// secret both as `tsig.secret` (bare base64) and as `ipdrift.key` (a tsig-keygen key file).
struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    fn new(config: &str) -> ConfigDir {
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-cli-")
            .tempdir()
            .unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("instances.json", INSTANCES);
        write("tsig.secret", &format!("{}\n", secret_base64()));
        write(
            "ipdrift.key",
            &format!(
                "key \"ipdrift-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
                secret_base64()
            ),
        );
        write("ipdrift.toml", config);
        ConfigDir { dir }
    }

    fn valid() -> ConfigDir {
        ConfigDir::new(VALID_CONFIG)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("ipdrift.toml")
    }
}

/// The binary with RUST_LOG and IPDRIFT_CONFIG cleared, for tests that set the environment.
fn ipdrift_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipdrift"));
    command.env_remove("RUST_LOG").env_remove("IPDRIFT_CONFIG");
    command
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_the_commands_and_the_exit_codes() {
    let output = ipdrift_command().arg("--help").output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let help = stdout_of(&output);
    for command in ["run", "diff", "apply", "check-config"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`{command}` is not listed:\n{help}"
        );
    }
    for exit_code in [
        "0 success",
        "1 error",
        "2 `diff` found drift",
        "3 `apply` refused",
    ] {
        assert!(help.contains(exit_code), "{exit_code:?} missing:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let output = ipdrift_command().arg("--version").output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout_of(&output),
        format!("ipdrift {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_a_valid_config() {
    let config = ConfigDir::valid();
    let output = ipdrift(&config.config_path(), &["check-config"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&format!("{}: valid", config.config_path().display())),
        "{}",
        describe(&output)
    );
    assert!(stderr_of(&output).is_empty(), "{}", describe(&output));
}

/// Runs `check-config` on [`VALID_CONFIG`] with `from` replaced by `to`, and checks that it
/// exits 1 with `PATH:LINE:` pointing at the first line of `to` and every one of `expected`.
fn assert_rejected(from: &str, to: &str, expected: &[&str]) {
    assert_eq!(
        VALID_CONFIG.matches(from).count(),
        1,
        "{from:?} must occur exactly once in the valid config"
    );
    let text = VALID_CONFIG.replace(from, to);
    let first_line_of_change = to.lines().next().unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(first_line_of_change))
        .unwrap()
        + 1;
    let config = ConfigDir::new(&text);
    let output = ipdrift(&config.config_path(), &["check-config"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = stderr_of(&output);
    let location = format!("{}:{line}: ", config.config_path().display());
    assert!(
        stderr.contains(&location),
        "{location:?} not in:\n{}",
        describe(&output)
    );
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "{needle:?} not in:\n{}",
            describe(&output)
        );
    }
}

#[test]
fn check_config_rejects_a_port_out_of_range() {
    assert_rejected(
        "port = 80",
        "port = 99999",
        &["haproxy \"lb-01\".backend \"web\".port", "1–65535"],
    );
}

#[test]
fn check_config_rejects_an_unknown_template_placeholder() {
    assert_rejected(
        "name = \"{name}.example.com.\"",
        "name = \"{hostname}.example.com.\"",
        &["record[1].name", "{hostname}"],
    );
}

#[test]
fn check_config_rejects_a_misspelt_key() {
    assert_rejected(
        "interval = \"10s\"",
        "intervall = \"10s\"",
        &["unknown field `intervall`"],
    );
}

#[test]
fn check_config_rejects_a_record_for_a_missing_dns_target() {
    assert_rejected(
        "dns = \"ns1\"\nname = \"www.example.com.\"",
        "dns = \"ns9\"\nname = \"www.example.com.\"",
        &["record[0].dns", "\"ns9\""],
    );
}

#[test]
fn check_config_rejects_a_missing_secret_file() {
    assert_rejected(
        "secret_file = \"tsig.secret\"",
        "secret_file = \"missing.secret\"",
        &["dns \"ns1\".tsig", "missing.secret"],
    );
}

#[test]
fn check_config_rejects_an_unparsable_duration() {
    assert_rejected(
        "timeout = \"2s\"",
        "timeout = \"soon\"",
        &["controller.timeout", "\"soon\""],
    );
}

#[test]
fn ipdrift_config_is_read_when_config_is_not_given() {
    let config = ConfigDir::valid();
    let output = ipdrift_command()
        .env("IPDRIFT_CONFIG", config.config_path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout_of(&output).contains(&format!("{}: valid", config.config_path().display())),
        "{}",
        describe(&output)
    );
}

#[test]
fn config_flag_takes_precedence_over_ipdrift_config() {
    let config = ConfigDir::valid();
    let output = ipdrift_command()
        .env("IPDRIFT_CONFIG", config.dir.path().join("absent.toml"))
        .arg("--config")
        .arg(config.config_path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn a_missing_config_file_is_named_with_how_to_pass_another() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.toml");
    // Every command reads the config first; none may mistake this for drift (exit 2).
    for command in ["check-config", "diff", "apply", "run"] {
        let output = ipdrift(&absent, &[command]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let stderr = stderr_of(&output);
        for needle in [absent.display().to_string(), "--config".into()] {
            assert!(
                stderr.contains(&needle),
                "{command}: {needle:?} not in:\n{}",
                describe(&output)
            );
        }
    }
}

/// Forms in which a leaked secret could show: its base64 (with or without padding), its raw
/// bytes as text, as a Debug byte list, and as hex.
fn secret_renderings() -> Vec<String> {
    vec![
        secret_base64().trim_end_matches('=').to_string(),
        SECRET_BYTES.to_string(),
        format!("{:?}", SECRET_BYTES.as_bytes()),
        SECRET_BYTES
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ]
}

fn assert_no_secret_in(output: &Output, what: &str) {
    let all = format!("{}{}", stdout_of(output), stderr_of(output));
    for rendering in secret_renderings() {
        assert!(
            !all.contains(&rendering),
            "{what} printed the TSIG secret ({rendering}):\n{}",
            describe(output)
        );
    }
}

/// Runs check-config, diff and apply at the most verbose log level against unreachable
/// targets with the given TSIG line; none may print the secret.
fn assert_secret_never_printed(tsig_line: &str) {
    assert!(
        VALID_CONFIG.contains(TSIG_SECRET_FILE),
        "the TSIG line to swap is gone"
    );
    let config = ConfigDir::new(&VALID_CONFIG.replace(TSIG_SECRET_FILE, tsig_line));
    // check-config succeeds; diff and apply read the key, then fail to reach the targets.
    for (command, expected_exit) in [("check-config", 0), ("diff", 1), ("apply", 1)] {
        let output = ipdrift_command()
            .env("RUST_LOG", "trace")
            .env(SECRET_ENV_VAR, secret_base64())
            .arg("--config")
            .arg(config.config_path())
            .arg(command)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(expected_exit),
            "{command}: {}",
            describe(&output)
        );
        assert_no_secret_in(&output, &format!("{command} with {tsig_line}"));
    }
}

#[test]
fn the_secret_from_a_secret_file_is_never_printed() {
    assert_secret_never_printed(TSIG_SECRET_FILE);
}

#[test]
fn the_secret_from_secret_env_is_never_printed() {
    assert_secret_never_printed(&format!(
        r#"tsig = {{ name = "ipdrift-key", algorithm = "hmac-sha256", secret_env = "{SECRET_ENV_VAR}" }}"#
    ));
}

#[test]
fn the_secret_from_a_key_file_is_never_printed() {
    assert_secret_never_printed(r#"tsig = { key_file = "ipdrift.key" }"#);
}

/// The `target` of every entry in the `errors` array of a `--output json` report.
fn error_targets(report: &Value) -> Vec<&str> {
    let mut targets: Vec<&str> = report["errors"]
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|e| e["target"].as_str().expect("a target name"))
        .collect();
    targets.sort();
    targets
}

#[test]
fn diff_and_apply_fail_naming_each_unreachable_target() {
    let config = ConfigDir::valid();
    for command in ["diff", "apply"] {
        let output = ipdrift(&config.config_path(), &[command]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        for target in ["ns1", "lb-01"] {
            assert!(
                all.contains(target),
                "{command}: {target} not named:\n{}",
                describe(&output)
            );
        }
        assert!(all.contains("127.0.0.1:1"), "{}", describe(&output));

        let output = ipdrift(&config.config_path(), &[command, "--output", "json"]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{command} --output json: {e}\n{}", describe(&output)));
        assert_eq!(error_targets(&report), ["lb-01", "ns1"], "{report}");
        assert_eq!(report["changes"], Value::Array(Vec::new()), "{report}");
    }
}

#[test]
fn run_with_json_log_format_writes_json_lines_to_stderr() {
    let config = ConfigDir::valid();
    let mut child = ipdrift_command()
        .arg("--config")
        .arg(config.config_path())
        .args([
            "--log-format",
            "json",
            "run",
            "--interval",
            "1s",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ipdrift run");
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Read until two passes have logged the DNS target's error, or give up after 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while let Ok(line) = line_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(line);
        if lines.iter().filter(|l| l.contains("\"ns1\"")).count() >= 2 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();

    let all = lines.join("\n");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{all}")))
        .collect();
    for event in &events {
        for field in ["timestamp", "level", "message"] {
            assert!(event.get(field).is_some(), "no {field} in {event}");
        }
    }
    for target in ["ns1", "lb-01"] {
        assert!(
            events
                .iter()
                .any(|e| e["level"] == "ERROR" && e["target"] == target),
            "no ERROR event for {target}:\n{all}"
        );
    }
    for rendering in secret_renderings() {
        assert!(
            !all.contains(&rendering),
            "run printed the TSIG secret:\n{all}"
        );
    }
}

#[test]
fn usage_errors_exit_1_never_the_drift_code() {
    let dir = ConfigDir::valid();
    let config = dir.config_path();
    let config = config.to_str().unwrap();
    for args in [
        vec!["--config", config, "diff", "--output", "yaml"],
        vec!["--config", config, "dif"],
        vec![],
    ] {
        let out = ipdrift_command().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}:\n{}", describe(&out));
        assert!(!stderr_of(&out).is_empty(), "{args:?}: says what is wrong");
    }
    let help = ipdrift_command().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn an_empty_ipdrift_config_falls_back_to_the_default_path() {
    let out = ipdrift_command()
        .env("IPDRIFT_CONFIG", "")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("/etc/ipdrift/ipdrift.toml"),
        "{}",
        describe(&out)
    );
}

/// The subcommands as clap defines them, so that a new one cannot be left out of the tests.
fn subcommand_names() -> Vec<String> {
    use clap::CommandFactory as _;
    ipdrift::cli::Cli::command()
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// `ipdrift completions SHELL` (or `man`) with IPDRIFT_CONFIG naming a file that does not
/// exist: both must work where no config is, such as a package build.
fn generated(args: &[&str]) -> String {
    let dir = TempDir::new().unwrap();
    let output = ipdrift_command()
        .args(args)
        .env("IPDRIFT_CONFIG", dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {}", describe(&output));
    assert!(output.stderr.is_empty(), "{args:?}: {}", describe(&output));
    stdout_of(&output)
}

#[test]
fn completions_offer_every_subcommand_in_bash_zsh_and_fish() {
    let names = subcommand_names();
    assert!(names.len() >= 9, "{names:?}");
    // How each generator spells "NAME is a subcommand of ipdrift".
    type Entry = fn(&str) -> String;
    let shells: [(&str, Entry); 3] = [
        ("bash", |name| format!("ipdrift,{name})")),
        ("zsh", |name| format!("\n'{name}:")),
        ("fish", |name| {
            format!("__fish_ipdrift_needs_command\" -f -a \"{name}\"")
        }),
    ];
    for (shell, entry) in shells {
        let script = generated(&["completions", shell]);
        for name in &names {
            assert!(
                script.contains(&entry(name)),
                "the {shell} completion does not offer `{name}`:\n{script}"
            );
        }
    }
}

#[test]
fn the_bash_completion_parses_and_completes_a_subcommand() {
    support::require_binary("bash", "apt-get install bash");
    let dir = TempDir::new().unwrap();
    let script = dir.path().join("ipdrift.bash");
    std::fs::write(&script, generated(&["completions", "bash"])).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "bash -n: {}", describe(&syntax));
    // What bash does on `ipdrift che<TAB>`.
    let completed = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1"; COMP_WORDS=(ipdrift che); COMP_CWORD=1; _ipdrift ipdrift che ipdrift; printf '%s\n' "${COMPREPLY[@]}""#)
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    assert!(completed.status.success(), "{}", describe(&completed));
    assert_eq!(stdout_of(&completed), "check-config\n");
}

/// Roff escapes every `-` as `\-`; the text a reader sees has plain dashes.
fn man_page_text(args: &[&str]) -> String {
    generated(args).replace("\\-", "-")
}

#[test]
fn the_man_page_names_every_subcommand_and_every_top_level_flag() {
    use clap::CommandFactory as _;
    let page = man_page_text(&["man"]);
    assert!(page.contains(".TH ipdrift 1"), "{page}");
    for name in subcommand_names() {
        assert!(
            page.contains(&format!("ipdrift-{name}(1)")),
            "`{name}` missing:\n{page}"
        );
    }
    let mut cli = ipdrift::cli::Cli::command();
    // Building adds --help and --version, which the page lists too.
    cli.build();
    let flags: Vec<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .collect();
    assert!(flags.contains(&"--config".to_owned()), "{flags:?}");
    for flag in flags {
        assert!(
            page.contains(&format!("\\fB{flag}\\fR")),
            "{flag} missing:\n{page}"
        );
    }
    assert!(
        page.contains("2 `diff` found drift"),
        "exit codes missing:\n{page}"
    );
}

#[test]
fn each_subcommand_named_in_the_man_page_has_its_own_page() {
    for name in subcommand_names() {
        let page = man_page_text(&["man", &name]);
        assert!(
            page.contains(&format!(".TH ipdrift-{name} 1")),
            "{name}:\n{page}"
        );
    }
    let run = man_page_text(&["man", "run"]);
    assert!(run.contains("\\fB--interval\\fR"), "{run}");
    let output = ipdrift_command().args(["man", "rnu"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr_of(&output).contains("check-config"),
        "{}",
        describe(&output)
    );
}

/// A world with nothing to repair: one source, no target, so `diff` is in sync (exit 0).
const INVENTORY_ONLY: &str = r#"[[inventory]]
name = "local"
kind = "file"
path = "instances.json"
"#;

#[test]
fn a_report_that_cannot_be_written_to_stdout_exits_1_and_says_so() {
    let dir = ConfigDir::new(INVENTORY_ONLY);
    let config = dir.config_path();
    let config = config.to_str().unwrap();
    let audit_log = dir.dir.path().join("audit.jsonl");
    std::fs::write(&audit_log, "").unwrap();
    let audit_log = audit_log.to_str().unwrap();
    let in_sync = ipdrift_command()
        .args(["--config", config, "diff"])
        .output()
        .unwrap();
    assert_eq!(in_sync.status.code(), Some(0), "{}", describe(&in_sync));
    assert!(!in_sync.stdout.is_empty(), "diff reports on stdout");
    for args in [
        vec!["--config", config, "check-config"],
        vec!["--config", config, "diff"],
        vec!["--config", config, "diff", "--output", "json"],
        vec!["--config", config, "apply"],
        vec!["--config", config, "explain", "www.example.com."],
        vec!["timeline", "--audit-log", audit_log],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = ipdrift_command().args(&args).stdout(full).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}:\n{}", describe(&out));
        assert!(
            stderr.contains("cannot write to stdout: No space left on device"),
            "{args:?}:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}:\n{stderr}");
    }
}
