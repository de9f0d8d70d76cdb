//! The I/O of the nginx kind: reading the upstreams file, and a write that can only reach
//! the running nginx through `nginx -t`. A write renders the new file, puts it in place
//! through a temporary file and a rename, runs `nginx -t` on the whole configuration,
//! reloads, and checks that the reload took effect; any failure puts the previous file
//! back (and, after a reload, reloads it again). Writes to one nginx are serialised, and a
//! reload waits until `min_reload_interval` after the previous one: passes that change
//! things faster than that share reloads instead of causing a storm.
//!
//! The check that a reload took effect: the master named by the pid file is alive and has
//! a child process it did not have before the signal. nginx starts new workers only once
//! it has read and applied the new configuration; a reload it rejects ("reconfiguring"
//! followed by an error) keeps the old workers and starts none, so the check cannot pass
//! on a failed reload. Old workers finish their connections and exit on their own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::process::Command;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::render::{self, Upstreams};
use super::{DEFAULT_PID_FILE, NginxConfig};
use crate::BoxFuture;
use crate::lb::{LoadBalancer, ServerChange};
use crate::model::ObservedServer;

/// How often the reload check looks for new workers.
const POLL: Duration = Duration::from_millis(20);

/// One nginx whose upstreams file ipdrift owns.
pub struct NginxClient {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    settings: NginxConfig,
    timeout: Duration,
    /// Held for the whole of a write; remembers when nginx was last reloaded.
    last_reload: Mutex<Option<Instant>>,
}

impl NginxClient {
    /// `timeout` bounds each command (`nginx -t`, the reload) and the reload check.
    pub fn new(name: String, settings: NginxConfig, timeout: Duration) -> NginxClient {
        NginxClient {
            inner: Arc::new(Inner {
                name,
                settings,
                timeout,
                last_reload: Mutex::new(None),
            }),
        }
    }
}

impl LoadBalancer for NginxClient {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn read<'a>(
        &'a self,
        backends: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<ObservedServer>>> {
        Box::pin(async move {
            let (_, upstreams) = self.inner.read_file().await?;
            Ok(backends
                .iter()
                .flat_map(|upstream| upstreams.observed(upstream))
                .collect())
        })
    }

    fn write<'a>(&'a self, changes: &'a [ServerChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        let inner = self.inner.clone();
        let changes = changes.to_vec();
        Box::pin(async move {
            // A write abandoned by its caller (the pass's deadline) must still finish or
            // roll back: between the rename and `nginx -t` the file on disk is unvalidated.
            tokio::spawn(async move { inner.write(&changes).await })
                .await
                .map_err(|e| anyhow!("load balancer {}: the write task failed: {e}", self.name()))?
        })
    }

    /// The wait for `min_reload_interval`, then `nginx -t`, the reload and its check, and
    /// a rollback's reload and check: each bounded by `timeout`.
    fn write_time_limit(&self, timeout: Duration) -> Duration {
        self.inner.settings.min_reload_interval + timeout * 5
    }

    fn list_backends(&self) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let (_, upstreams) = self.inner.read_file().await?;
            Ok(upstreams.upstreams.into_keys().collect())
        })
    }
}

impl Inner {
    /// How errors start: which load balancer, which file.
    fn subject(&self) -> String {
        format!(
            "load balancer {} (nginx, {})",
            self.name,
            self.settings.upstreams_file.display()
        )
    }

    /// The file's text (`None`: not there yet, so no servers) and what it says.
    async fn read_file(&self) -> anyhow::Result<(Option<String>, Upstreams)> {
        let path = &self.settings.upstreams_file;
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => bail!("{}: cannot read the upstreams file: {e}", self.subject()),
        };
        let upstreams = Upstreams::parse(text.as_deref().unwrap_or("")).map_err(|e| {
            anyhow!(
                "{}: {}:{}: {}; ipdrift owns this file and writes nothing else into it (delete the file to have ipdrift write it anew)",
                self.subject(),
                path.display(),
                e.line,
                e.message
            )
        })?;
        Ok((text, upstreams))
    }

    async fn write(&self, changes: &[ServerChange]) -> anyhow::Result<()> {
        let mut last_reload = self.last_reload.lock().await;
        let (previous, upstreams) = self.read_file().await?;
        let next = upstreams
            .apply(changes)
            .map_err(|e| anyhow!("{}: refusing the changes: {e}", self.subject()))?;
        let text = next.render(&self.name);
        if previous.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        if let Some(at) = *last_reload {
            sleep_until(at + self.settings.min_reload_interval).await;
        }
        self.install(Some(&text)).await?;
        if let Err(refusal) = self.validate().await {
            let restored = self.install(previous.as_deref()).await;
            return Err(refusal.context(match restored {
                Ok(()) => "the previous upstreams file is back and nginx was not reloaded",
                Err(_) => {
                    "nginx was not reloaded, but putting the previous upstreams file back failed too"
                }
            }));
        }
        let reloaded = self.reload().await;
        *last_reload = Some(Instant::now());
        let Err(failure) = reloaded else {
            tracing::info!(
                lb = %self.name,
                file = %self.settings.upstreams_file.display(),
                changes = changes.len(),
                "nginx validated the new upstreams file and reloaded with it"
            );
            return Ok(());
        };
        let undone = match self.install(previous.as_deref()).await {
            Ok(()) => match self.reload().await {
                Ok(()) => "the previous upstreams file is back and nginx reloaded with it".into(),
                Err(e) => format!(
                    "the previous upstreams file is back, but reloading nginx with it failed too: {e:#}"
                ),
            },
            Err(e) => format!("putting the previous upstreams file back failed: {e:#}"),
        };
        Err(failure.context(undone))
    }

    /// Puts `text` in place through a temporary file beside it and a rename, so that nginx
    /// never reads half a file; `None` removes the file (there was none before).
    async fn install(&self, text: Option<&str>) -> anyhow::Result<()> {
        let path = &self.settings.upstreams_file;
        let Some(text) = text else {
            return match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow!(
                    "{}: cannot remove the new upstreams file: {e}",
                    self.subject()
                )),
                _ => Ok(()),
            };
        };
        let tmp = temporary_path(path);
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, text.as_bytes()).await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            bail!(
                "{}: cannot write the upstreams file through {}: {e}; can ipdrift write to that directory?",
                self.subject(),
                tmp.display()
            );
        }
        Ok(())
    }

    /// `nginx -t -c CONFIG`: nginx's own verdict on the whole configuration, quoted.
    async fn validate(&self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.settings.nginx);
        command.arg("-t").arg("-c").arg(&self.settings.config);
        let out = self.run(command, "nginx -t").await?;
        if out.status.success() {
            return Ok(());
        }
        bail!(
            "{}: nginx -t rejected the configuration with the new upstreams file: {}",
            self.subject(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Reloads nginx and waits until the master runs a new worker (see the module doc).
    async fn reload(&self) -> anyhow::Result<()> {
        let pid_file = self.pid_file().await;
        let master = read_pid(&pid_file)
            .await
            .map_err(|e| anyhow!("{}: {e}; is nginx running?", self.subject()))?;
        let before = children_of(master).await;
        let command = match &self.settings.reload {
            Some(words) => {
                let mut c = Command::new(&words[0]);
                c.args(&words[1..]);
                c
            }
            None => {
                let mut c = Command::new(&self.settings.nginx);
                c.arg("-c")
                    .arg(&self.settings.config)
                    .args(["-s", "reload"]);
                c
            }
        };
        let out = self.run(command, "the reload").await?;
        if !out.status.success() {
            bail!(
                "{}: the reload failed ({}): {}",
                self.subject(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if !alive(master) {
                bail!(
                    "{}: the nginx master (pid {master} from {}) is gone after the reload",
                    self.subject(),
                    pid_file.display()
                );
            }
            if children_of(master)
                .await
                .difference(&before)
                .next()
                .is_some()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: the reload did not take effect: the nginx master (pid {master}) started no new worker within {}; nginx's error_log says why",
                    self.subject(),
                    humantime::format_duration(self.timeout)
                );
            }
            sleep(POLL).await;
        }
    }

    /// `pid_file`, else nginx.conf's `pid` directive, else Debian's default.
    async fn pid_file(&self) -> PathBuf {
        if let Some(path) = &self.settings.pid_file {
            return path.clone();
        }
        let config = tokio::fs::read_to_string(&self.settings.config)
            .await
            .unwrap_or_default();
        render::pid_directive(&config)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PID_FILE))
    }

    /// Runs `command` within the timeout; `what` names it in errors.
    async fn run(&self, mut command: Command, what: &str) -> anyhow::Result<std::process::Output> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let child = command.spawn().map_err(|e| {
            anyhow!(
                "{}: cannot run {what} ({program}): {e}; set `nginx` (or `reload`) in [[nginx]] to the full path",
                self.subject()
            )
        })?;
        timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                anyhow!(
                    "{}: {what} ({program}) did not finish within {}",
                    self.subject(),
                    humantime::format_duration(self.timeout)
                )
            })?
            .with_context(|| format!("{}: {what} ({program})", self.subject()))
    }
}

/// `DIR/.NAME.ipdrift-tmp`: beside the target (so the rename is atomic) and matched by no
/// `include *.conf`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.ipdrift-tmp"))
}

async fn read_pid(pid_file: &Path) -> Result<u32, String> {
    let text = tokio::fs::read_to_string(pid_file)
        .await
        .map_err(|e| format!("cannot read nginx's pid file {}: {e}", pid_file.display()))?;
    let pid: u32 = text.trim().parse().map_err(|_| {
        format!(
            "nginx's pid file {} holds {:?}, not a pid",
            pid_file.display(),
            text.trim()
        )
    })?;
    if !alive(pid) {
        return Err(format!(
            "no process has the pid {pid} from nginx's pid file {}",
            pid_file.display()
        ));
    }
    Ok(pid)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids whose parent is `pid`, from /proc (Linux).
async fn children_of(pid: u32) -> BTreeSet<u32> {
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return BTreeSet::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|child| {
                std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .ok()
                    .and_then(|stat| parent_in_stat(&stat))
                    == Some(pid)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The parent pid in a /proc/PID/stat line: the second field after the command, which is
/// in parentheses and may itself contain spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_after_the_command() {
        assert_eq!(
            parent_in_stat("4242 (nginx: worker) S 4200 4200 4200 0 -1"),
            Some(4200)
        );
        assert_eq!(parent_in_stat("7 (a) b)) R 1 7 7"), Some(1));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn the_temporary_file_is_hidden_beside_the_target() {
        assert_eq!(
            temporary_path(Path::new("/etc/nginx/conf.d/ipdrift.conf")),
            PathBuf::from("/etc/nginx/conf.d/.ipdrift.conf.ipdrift-tmp")
        );
    }
}
