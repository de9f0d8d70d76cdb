//! The `exec` inventory source with real scripts: success, a failing command, a command
//! that hangs, and output that is not an instance list.

use std::path::Path;
use std::time::{Duration, Instant};

use ipdrift::inventory::Inventory;
use ipdrift::inventory::exec::ExecInventory;

fn script(dir: &Path, body: &str) -> ExecInventory {
    let path = dir.join("list.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    ExecInventory::new(
        "cloud".into(),
        vec!["sh".into(), path.display().to_string()],
        Duration::from_secs(1),
        dir.to_path_buf(),
    )
}

#[tokio::test]
async fn a_command_that_prints_instances_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fleet.json"),
        r#"[{"id":"i-1","name":"web-01","state":"running","public_ipv4":"192.0.2.1","tags":{"role":"web"}}]"#,
    )
    .unwrap();
    // Runs in the config's directory, so relative paths work.
    let source = script(dir.path(), "cat fleet.json");
    let instances = source.list().await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].name, "web-01");
    assert_eq!(instances[0].public_ipv4, Some("192.0.2.1".parse().unwrap()));
}

#[tokio::test]
async fn a_failing_command_is_an_error_quoting_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let source = script(
        dir.path(),
        "echo '[]'; echo 'credentials expired' >&2; exit 3",
    );
    let error = format!("{:#}", source.list().await.unwrap_err());
    assert!(error.contains("credentials expired"), "{error}");
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("cloud"), "names the source: {error}");
}

#[tokio::test]
async fn a_hanging_command_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let source = script(dir.path(), "sleep 30");
    let started = Instant::now();
    let error = format!("{:#}", source.list().await.unwrap_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("did not finish within 1s"), "{error}");
}

#[tokio::test]
async fn garbage_output_is_an_error_never_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    for body in [
        "echo 'Welcome to the cloud CLI!'",
        "printf ''",
        "echo '[{\"id\": \"i-1\"'",
    ] {
        let source = script(dir.path(), body);
        let error = format!("{:#}", source.list().await.unwrap_err());
        assert!(
            error.contains("did not print a valid instance list"),
            "{body}: {error}"
        );
    }
    let missing = ExecInventory::new(
        "cloud".into(),
        vec!["/nonexistent/lister".into()],
        Duration::from_secs(1),
        dir.path().to_path_buf(),
    );
    let error = format!("{:#}", missing.list().await.unwrap_err());
    assert!(
        error.contains("cannot run `/nonexistent/lister`"),
        "{error}"
    );
}

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .status()
        .unwrap()
        .success()
}

/// A script that starts a grandchild (`sleep 30`), writes its pid, then waits.
const GRANDCHILD: &str = "sleep 30 & echo $! > grandchild.pid; wait";

fn grandchild_pid(dir: &Path) -> String {
    let path = dir.join("grandchild.pid");
    assert!(
        support_wait(|| path.exists()),
        "the script did not start its grandchild"
    );
    std::fs::read_to_string(path).unwrap()
}

fn support_wait(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn a_timeout_kills_what_the_command_started_too() {
    let dir = tempfile::tempdir().unwrap();
    let source = script(dir.path(), GRANDCHILD);
    let error = format!("{:#}", source.list().await.unwrap_err());
    assert!(error.contains("killed with its process group"), "{error}");
    let pid = grandchild_pid(dir.path());
    assert!(
        support_wait(|| !alive(&pid)),
        "grandchild {pid} outlived the timeout"
    );
}

#[tokio::test]
async fn an_abandoned_listing_kills_the_command_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let source = script(dir.path(), GRANDCHILD).with_max_output(1024);
    let abandoned = tokio::time::timeout(Duration::from_millis(300), source.list()).await;
    assert!(abandoned.is_err(), "the listing was still running");
    let pid = grandchild_pid(dir.path());
    assert!(
        support_wait(|| !alive(&pid)),
        "grandchild {pid} outlived the listing"
    );
}

#[tokio::test]
async fn output_beyond_max_output_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = script(
        dir.path(),
        "head -c 5000 /dev/zero | tr '\\0' ' '; echo '[]'",
    )
    .with_max_output(1000);
    let error = format!("{:#}", source.list().await.unwrap_err());
    assert!(
        error.contains("more than max_output = 1000 bytes"),
        "{error}"
    );
    let fits = script(dir.path(), "echo '[]'").with_max_output(1000);
    assert_eq!(fits.list().await.unwrap(), vec![]);
}

#[test]
fn sigterm_stops_run_within_about_a_second_during_a_slow_exec_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.sh"),
        "#!/bin/sh\nsleep 30\necho '[]'\n",
    )
    .unwrap();
    let config = dir.path().join("ipdrift.toml");
    std::fs::write(
        &config,
        "[controller]\nlisten = \"127.0.0.1:0\"\ntimeout = \"60s\"\n\n[[inventory]]\nname = \"slow\"\nkind = \"exec\"\ncommand = [\"sh\", \"slow.sh\"]\ntimeout = \"60s\"\n",
    )
    .unwrap();
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_ipdrift"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The pass is under way once the script runs.
    assert!(
        support_wait(|| {
            std::process::Command::new("pgrep")
                .args(["-f", "sh slow.sh"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty())
        }),
        "the exec pass did not start"
    );
    let sent = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &run.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "run did not stop within 3 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        sent.elapsed() < Duration::from_millis(2000),
        "took {:?}",
        sent.elapsed()
    );
}
