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
