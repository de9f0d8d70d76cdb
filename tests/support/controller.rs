//! `ipdrift run` as a child process: JSON logs collected while it runs (a thread drains its
//! stderr, so a long run never blocks on a full pipe), /metrics read over HTTP, SIGHUP and
//! SIGTERM sent with `kill`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fleet::{Fleet, http_get_path};
use super::{free_port, wait_until};

/// A running `ipdrift --log-format json run --interval 1s --listen 127.0.0.1:PORT`
/// (or `--log-format text`), killed when dropped.
pub struct Controller {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Controller {
    /// Starts the controller on the fleet's config.
    pub fn start(fleet: &Fleet) -> Controller {
        Controller::start_with(&fleet.config_path())
    }

    /// Starts the controller on `config`.
    pub fn start_with(config: &Path) -> Controller {
        Controller::spawn(config, "json", "1s", |_| {})
    }

    /// Starts the controller on `config` with `--interval INTERVAL`.
    pub fn start_every(config: &Path, interval: &str) -> Controller {
        Controller::spawn(config, "json", interval, |_| {})
    }

    /// [`Controller::start_every`], its command first changed by `configure`.
    pub fn start_every_configured(
        config: &Path,
        interval: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Controller {
        Controller::spawn(config, "json", interval, configure)
    }

    /// Starts the controller on `config`, its command first changed by `configure` (e.g.
    /// to set environment variables).
    pub fn start_configured(config: &Path, configure: impl FnOnce(&mut Command)) -> Controller {
        Controller::spawn(config, "json", "1s", configure)
    }

    /// Starts the controller on the fleet's config with `--log-format text` (the default
    /// format, as an operator's terminal or journal shows it).
    pub fn start_text(fleet: &Fleet) -> Controller {
        Controller::spawn(&fleet.config_path(), "text", "1s", |_| {})
    }

    fn spawn(
        config: &Path,
        log_format: &str,
        interval: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Controller {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ipdrift"));
        command
            .arg("--config")
            .arg(config)
            .args([
                "--log-format",
                log_format,
                "run",
                "--interval",
                interval,
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .env_remove("IPDRIFT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("start ipdrift run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Controller {
            child,
            port,
            log,
            reader: Some(reader),
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String, String)> {
        http_get_path(self.port, path)
    }

    /// The value of one series of /metrics, e.g. `ipdrift_target_up{target="ns1"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, _, body) = self.get("/metrics")?;
        metric_in(&body, series)
    }

    /// Passes finished so far (the count of `ipdrift_reconcile_duration_seconds`).
    pub fn passes(&self) -> u64 {
        self.metric("ipdrift_reconcile_duration_seconds_count")
            .map_or(0, |n| n as u64)
    }

    /// Waits until `n` more passes than now have finished; false on timeout.
    pub fn wait_passes(&self, n: u64, timeout: Duration) -> bool {
        let start = self.passes();
        wait_until(timeout, || self.passes() >= start + n)
    }

    /// Waits until /readyz answers 200 (a pass in which everything worked); panics with
    /// the log otherwise.
    pub fn wait_ready(&self) {
        assert!(
            wait_until(Duration::from_secs(10), || self
                .get("/readyz")
                .is_some_and(|r| r.0 == 200)),
            "/readyz never became ready; log:\n{}",
            self.log_text()
        );
    }

    /// Every log line so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log lines so far that are JSON objects.
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many log lines so far have `message` equal to `message`.
    pub fn count_messages(&self, message: &str) -> usize {
        self.log_events()
            .iter()
            .filter(|e| e["message"] == message)
            .count()
    }

    /// Sends SIGHUP (reload the config). Wait for readiness first: before its handler is
    /// installed, SIGHUP would end the process.
    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    /// Sends `signal` (as `kill` takes it, e.g. "-STOP") to the controller.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGTERM, then the exit status and the whole log.
    pub fn terminate(self) -> (Option<i32>, String) {
        self.terminate_within(Duration::from_secs(10))
    }

    /// SIGTERM, then the exit status and the whole log; fails when stopping takes longer
    /// than `limit`.
    pub fn terminate_within(mut self, limit: Duration) -> (Option<i32>, String) {
        self.signal("-TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return (status.code(), self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "ipdrift run did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The value of `series` in an OpenMetrics text.
pub fn metric_in(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}
