//! `kind = "exec"`: runs a command that prints the file-source JSON on stdout — the escape
//! hatch for any cloud without a built-in source. A non-zero exit, a timeout, output over
//! `max_output`, or output that is not an instance list is an error for the pass, with the
//! command's stderr. The command runs in a process group of its own, killed whole on a
//! timeout and whenever the listing is abandoned (the controller stopping): nothing it
//! started outlives it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use toml::Spanned;

use super::{Inventory, SourceKind, SourceSpec, parse_instances};
use crate::BoxFuture;
use crate::config::Fragment;
use crate::model::Instance;

pub const KIND: SourceKind = SourceKind {
    name: "exec",
    check,
};

/// How long the command may run (`timeout`), unless the config says otherwise.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// How much the command may print on stdout (`max_output`), unless the config says
/// otherwise: far above any real fleet's JSON, far below what would hurt the controller.
pub const DEFAULT_MAX_OUTPUT: u64 = 32 * 1024 * 1024;

/// The most of its stderr kept.
const MAX_STDERR: u64 = 64 * 1024;

/// A `kind = "exec"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// `command`: the program and its arguments.
    pub command: Vec<String>,
    pub timeout: Duration,
    /// `max_output`: bytes of stdout beyond which the listing is an error.
    pub max_output: u64,
    /// Where it runs: the config's directory.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    command: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
    max_output: Option<Spanned<i64>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawExec = f.parse()?;
    match raw.command {
        Some(command) if command.get_ref().first().is_some_and(|p| !p.is_empty()) => {
            let timeout = f
                .checker
                .duration(&raw.timeout, &f.key("timeout"), DEFAULT_EXEC_TIMEOUT);
            let max_output = match &raw.max_output {
                None => DEFAULT_MAX_OUTPUT,
                Some(n) if (1..=i64::from(u32::MAX)).contains(n.get_ref()) => *n.get_ref() as u64,
                Some(n) => {
                    f.error_at(
                        n,
                        "max_output",
                        format!(
                            "must be between 1 and {} bytes (the default is {DEFAULT_MAX_OUTPUT})",
                            u32::MAX
                        ),
                    );
                    return None;
                }
            };
            Some(Arc::new(ExecConfig {
                command: command.into_inner(),
                timeout,
                max_output,
                dir: f.checker.dir(),
            }))
        }
        Some(command) => {
            f.error_at(&command, "command", "the command must not be empty");
            None
        }
        None => {
            f.missing(
                "command",
                "an exec inventory needs `command = [\"program\", \"arg\", …]` printing the instances as JSON",
            );
            None
        }
    }
}

impl SourceSpec for ExecConfig {
    fn build(&self, name: &str, _timeout: Duration) -> anyhow::Result<Box<dyn Inventory>> {
        Ok(Box::new(
            ExecInventory::new(
                name.to_string(),
                self.command.clone(),
                self.timeout,
                self.dir.clone(),
            )
            .with_max_output(self.max_output),
        ))
    }
}

/// The most of the command's stderr quoted in an error.
const STDERR_QUOTE_BYTES: usize = 2000;

pub struct ExecInventory {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    max_output: u64,
    dir: PathBuf,
}

impl ExecInventory {
    /// `command[0]` is the program, the rest its arguments; it runs in `dir`.
    pub fn new(
        name: String,
        command: Vec<String>,
        timeout: Duration,
        dir: PathBuf,
    ) -> ExecInventory {
        ExecInventory {
            name,
            command,
            timeout,
            max_output: DEFAULT_MAX_OUTPUT,
            dir,
        }
    }

    /// Stdout beyond `bytes` makes the listing an error.
    pub fn with_max_output(mut self, bytes: u64) -> ExecInventory {
        self.max_output = bytes;
        self
    }

    fn shown_command(&self) -> String {
        self.command.join(" ")
    }
}

/// The end of `stderr`, where a failing program usually says why, as readable text.
fn quote_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "(nothing on stderr)".to_string();
    }
    let start = text.len().saturating_sub(STDERR_QUOTE_BYTES);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    format!("stderr: {}", &text[start..])
}

impl Inventory for ExecInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_limit(&self, _default: Duration) -> Duration {
        // Its own timeout, plus a moment to kill the command and collect what it said.
        self.timeout + Duration::from_secs(1)
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        Box::pin(async move {
            let mut child = Command::new(&self.command[0])
                .args(&self.command[1..])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    anyhow!(
                        "inventory {:?}: cannot run `{}`: {e}",
                        self.name,
                        self.shown_command()
                    )
                })?;
            let _group = child.id().map(ProcessGroup);
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            let run = async {
                let (out, err, status) = tokio::join!(
                    read_capped(stdout, self.max_output),
                    read_capped(stderr, MAX_STDERR),
                    child.wait()
                );
                (out, err, status)
            };
            let (stdout, stderr, status) = tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| {
                    anyhow!(
                        "inventory {:?}: `{}` did not finish within {} and was killed with its process group",
                        self.name,
                        self.shown_command(),
                        humantime::format_duration(self.timeout)
                    )
                })?;
            let failed = |e: std::io::Error| {
                anyhow!(
                    "inventory {:?}: `{}` failed: {e}",
                    self.name,
                    self.shown_command()
                )
            };
            let status = status.map_err(failed)?;
            let (stderr, _) = stderr.map_err(failed)?;
            let (stdout, complete) = stdout.map_err(failed)?;
            if !complete {
                return Err(anyhow!(
                    "inventory {:?}: `{}` printed more than max_output = {} bytes; raise max_output if the fleet is that large",
                    self.name,
                    self.shown_command(),
                    self.max_output
                ));
            }
            if !status.success() {
                return Err(anyhow!(
                    "inventory {:?}: `{}` exited with {}; {}",
                    self.name,
                    self.shown_command(),
                    status,
                    quote_stderr(&stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&stdout);
            parse_instances(&stdout).map_err(|e| {
                anyhow!(
                    "inventory {:?}: `{}` did not print a valid instance list: {e}; {}",
                    self.name,
                    self.shown_command(),
                    quote_stderr(&stderr)
                )
            })
        })
    }
}

/// Reads at most `limit` bytes; `false` when there was more (the rest is drained, so
/// that the command is not blocked on a full pipe).
async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    limit: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut stream) = stream else {
        return Ok((Vec::new(), true));
    };
    let mut kept = Vec::new();
    (&mut stream).take(limit).read_to_end(&mut kept).await?;
    let mut rest = [0u8; 8192];
    let mut complete = true;
    while stream.read(&mut rest).await? > 0 {
        complete = false;
    }
    Ok((kept, complete))
}

/// The command's process group (its id is the command's pid), killed when dropped: after
/// it ended, on a timeout, and when the listing is abandoned.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.0) {
            // SAFETY: killpg only sends a signal; ESRCH (the group is gone) is fine.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}
