//! `kind = "exec"`: runs a command that prints the file-source JSON on stdout — the escape
//! hatch for any cloud without a built-in source. A non-zero exit, a timeout or output
//! that is not an instance list is an error for the pass, with the command's stderr.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;
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

/// A `kind = "exec"` source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// `command`: the program and its arguments.
    pub command: Vec<String>,
    pub timeout: Duration,
    /// Where it runs: the config's directory.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    command: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
}

fn check(f: &mut Fragment<'_, '_>) -> Option<Arc<dyn SourceSpec>> {
    let raw: RawExec = f.parse()?;
    match raw.command {
        Some(command) if command.get_ref().first().is_some_and(|p| !p.is_empty()) => {
            let timeout = f
                .checker
                .duration(&raw.timeout, &f.key("timeout"), DEFAULT_EXEC_TIMEOUT);
            Some(Arc::new(ExecConfig {
                command: command.into_inner(),
                timeout,
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
        Ok(Box::new(ExecInventory::new(
            name.to_string(),
            self.command.clone(),
            self.timeout,
            self.dir.clone(),
        )))
    }
}

/// The most of the command's stderr quoted in an error.
const STDERR_QUOTE_BYTES: usize = 2000;

pub struct ExecInventory {
    name: String,
    command: Vec<String>,
    timeout: Duration,
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
            dir,
        }
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
            let child = Command::new(&self.command[0])
                .args(&self.command[1..])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    anyhow!(
                        "inventory {:?}: cannot run `{}`: {e}",
                        self.name,
                        self.shown_command()
                    )
                })?;
            let output = tokio::time::timeout(self.timeout, child.wait_with_output())
                .await
                .map_err(|_| {
                    anyhow!(
                        "inventory {:?}: `{}` did not finish within {} and was killed",
                        self.name,
                        self.shown_command(),
                        humantime::format_duration(self.timeout)
                    )
                })?
                .map_err(|e| {
                    anyhow!(
                        "inventory {:?}: `{}` failed: {e}",
                        self.name,
                        self.shown_command()
                    )
                })?;
            if !output.status.success() {
                return Err(anyhow!(
                    "inventory {:?}: `{}` exited with {}; {}",
                    self.name,
                    self.shown_command(),
                    output.status,
                    quote_stderr(&output.stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            parse_instances(&stdout).map_err(|e| {
                anyhow!(
                    "inventory {:?}: `{}` did not print a valid instance list: {e}; {}",
                    self.name,
                    self.shown_command(),
                    quote_stderr(&output.stderr)
                )
            })
        })
    }
}
