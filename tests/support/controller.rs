//! `ipdrift run` as a child process with its admin server on a free loopback port: HTTP
//! GETs, single metric values, SIGTERM with the exit status and stderr.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fleet::{Fleet, http_get_path};

pub struct Controller {
    child: Child,
    pub port: u16,
}

impl Controller {
    /// Runs the fleet's config with a 1 s interval and JSON logs.
    pub fn start(fleet: &Fleet) -> Controller {
        Controller::start_with(&fleet.config_path(), "1s")
    }

    pub fn start_with(config: &Path, interval: &str) -> Controller {
        let port = super::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_ipdrift"))
            .arg("--config")
            .arg(config)
            .args([
                "--log-format",
                "json",
                "run",
                "--interval",
                interval,
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ipdrift run");
        Controller { child, port }
    }

    /// `(status, headers, body)`, or `None` while the server does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String, String)> {
        http_get_path(self.port, path)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        assert!(
            super::wait_until(Duration::from_secs(10), || self
                .get("/readyz")
                .is_some_and(|r| r.0 == 200)),
            "/readyz never became ready"
        );
    }

    /// The value of one series, e.g. `ipdrift_target_up{target="ns1"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, _, body) = self.get("/metrics")?;
        metric_in(&body, series)
    }

    /// SIGTERM, then the exit status and stderr; fails when it takes longer than `limit`.
    pub fn terminate_within(mut self, limit: Duration) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return (status.code(), stderr);
            }
            assert!(
                Instant::now() < deadline,
                "ipdrift run did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn terminate(self) -> (Option<i32>, String) {
        self.terminate_within(Duration::from_secs(10))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
