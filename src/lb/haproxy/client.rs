//! Socket I/O for the HAProxy runtime API. Each read or write is one connection that
//! carries one request line (all commands, `;`-separated) and is read to EOF; the pure
//! [`super::protocol`] module builds the commands and reads the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

use super::config_file;
use super::protocol::{self, RuntimeApi};
use crate::BoxFuture;
use crate::lb::{LoadBalancer, ServerChange};
use crate::model::ObservedServer;

/// Bigger answers mean the endpoint is not HAProxy's runtime API (or something is badly
/// wrong); stop reading rather than fill memory until the timeout.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// One HAProxy load balancer, reached through its runtime API.
#[derive(Debug, Clone)]
pub struct HaproxyClient {
    name: String,
    endpoint: RuntimeApi,
    timeout: Duration,
    config_file: Option<ConfigFile>,
}

/// The haproxy.cfg kept in line with the runtime, and the binary that checks it.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    binary: String,
}

impl HaproxyClient {
    /// `name` is the load balancer's name from config; `timeout` bounds connecting and,
    /// separately, the exchange of the commands and answers.
    pub fn new(name: String, endpoint: RuntimeApi, timeout: Duration) -> HaproxyClient {
        HaproxyClient {
            name,
            endpoint,
            timeout,
            config_file: None,
        }
    }

    /// Also keeps the `server` lines of haproxy.cfg at `path` in line with what the
    /// runtime serves after each write, checked with `BINARY -c -f` before it replaces
    /// the file; servers the file disagrees with are read as not durable.
    pub fn keeping_config_file(mut self, path: PathBuf, binary: String) -> HaproxyClient {
        self.config_file = Some(ConfigFile { path, binary });
        self
    }

    /// The servers of `backends` as the runtime API shows them.
    async fn read_runtime(&self, backends: &[String]) -> anyhow::Result<Vec<ObservedServer>> {
        if backends.is_empty() {
            return Ok(Vec::new());
        }
        let commands = backends
            .iter()
            .map(|backend| protocol::show_servers_state(backend))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: refusing to send the command", self.subject()))?;
        let response = self.exchange(&commands).await?;
        let answers = protocol::split_answers(&response, commands.len())
            .with_context(|| format!("{}: reading backends", self.subject()))?;
        let mut servers = Vec::new();
        for (backend, answer) in backends.iter().zip(answers) {
            let backend_servers = protocol::parse_servers_state(backend, answer)
                .with_context(|| format!("{}: reading backend {backend}", self.subject()))?;
            servers.extend(backend_servers);
        }
        Ok(servers)
    }

    /// Marks each server whose line in haproxy.cfg would start it differently as not
    /// durable. An unreadable file makes every server not durable: the write that follows
    /// then reports why.
    async fn mark_durability(&self, file: &ConfigFile, servers: &mut [ObservedServer]) {
        let text = match tokio::fs::read_to_string(&file.path).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(target_name = %self.name, file = %file.path.display(), error = %e, "cannot read haproxy config file; its servers count as not durable");
                servers.iter_mut().for_each(|s| s.durable = false);
                return;
            }
        };
        let mut by_backend: BTreeMap<
            String,
            Option<BTreeMap<String, config_file::ConfiguredServer>>,
        > = BTreeMap::new();
        for server in servers {
            let configured = by_backend
                .entry(server.key.backend.clone())
                .or_insert_with(|| config_file::configured_servers(&text, &server.key.backend));
            server.durable = configured
                .as_ref()
                .and_then(|c| c.get(&server.key.server))
                .is_some_and(|c| c.matches(server));
        }
    }

    /// Rewrites the `server` lines of the backends `changes` touched to what the runtime
    /// now serves: checked by HAProxy first, then renamed into place. A file HAProxy
    /// refuses stays as it was.
    async fn persist(&self, file: &ConfigFile, changes: &[ServerChange]) -> anyhow::Result<()> {
        let backends: BTreeSet<String> = changes
            .iter()
            .map(|c| change_key(c).backend.clone())
            .collect();
        let backends: Vec<String> = backends.into_iter().collect();
        let mut runtime: BTreeMap<String, Vec<ObservedServer>> =
            backends.iter().map(|b| (b.clone(), Vec::new())).collect();
        for server in self.read_runtime(&backends).await? {
            runtime
                .entry(server.key.backend.clone())
                .or_default()
                .push(server);
        }
        let checked: BTreeSet<(String, String)> = changes
            .iter()
            .filter_map(|c| match c {
                ServerChange::Add {
                    key, check: true, ..
                } => Some((key.backend.clone(), key.server.clone())),
                _ => None,
            })
            .collect();
        let shown = file.path.display();
        let text = tokio::fs::read_to_string(&file.path)
            .await
            .with_context(|| format!("{}: cannot read {shown} to make the changes durable; ipdrift needs to read and write it (`config` key)", self.subject()))?;
        let rewritten = config_file::rewrite(&text, &runtime, &checked)
            .map_err(|e| anyhow!("{}: cannot make the changes durable in {shown}: {e}; point `config` at the file that defines the backend", self.subject()))?;
        if rewritten == text {
            return Ok(());
        }
        let staged = staged_path(&file.path);
        let result = self.stage_and_check(file, &staged, &rewritten).await;
        if result.is_err() {
            // Best effort: the staged copy is ours and useless once refused.
            let _ = tokio::fs::remove_file(&staged).await;
            return result;
        }
        tokio::fs::rename(&staged, &file.path)
            .await
            .with_context(|| {
                format!(
                    "{}: cannot rename {} to {shown}",
                    self.subject(),
                    staged.display()
                )
            })
    }

    /// Writes `text` to `staged` with the mode of the file it replaces, synced to disk,
    /// and has HAProxy check it.
    async fn stage_and_check(
        &self,
        file: &ConfigFile,
        staged: &Path,
        text: &str,
    ) -> anyhow::Result<()> {
        let shown = file.path.display();
        let mode = tokio::fs::metadata(&file.path)
            .await
            .map(|m| m.permissions());
        let mut out = tokio::fs::File::create(staged).await.with_context(|| {
            format!(
                "{}: cannot write {} beside {shown}",
                self.subject(),
                staged.display()
            )
        })?;
        out.write_all(text.as_bytes()).await?;
        out.sync_all().await?;
        if let Ok(mode) = mode {
            tokio::fs::set_permissions(staged, mode).await?;
        }
        let mut check = tokio::process::Command::new(&file.binary);
        check
            .arg("-c")
            .arg("-f")
            .arg(staged)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = timeout(self.timeout, check.output())
            .await
            .map_err(|_| anyhow!("{}: `{} -c` did not finish checking the rewritten {shown} within {}", self.subject(), file.binary, humantime::format_duration(self.timeout)))?
            .with_context(|| format!("{}: cannot run `{} -c` to check the rewritten {shown}; set `haproxy` to the binary's path", self.subject(), file.binary))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr).trim().to_string()
                + String::from_utf8_lossy(&output.stdout).trim();
            bail!(
                "{}: the runtime is repaired, but {shown} was left as it was: `{} -c` refused the rewritten file ({}): {}",
                self.subject(),
                file.binary,
                output.status,
                crate::validate::printable(&said)
            );
        }
        Ok(())
    }

    /// How errors start: which load balancer, through which socket.
    fn subject(&self) -> String {
        format!("load balancer {} ({})", self.name, self.endpoint)
    }

    /// Sends `commands` as one request line on a fresh connection and returns everything
    /// HAProxy answered before closing it.
    async fn exchange(&self, commands: &[String]) -> anyhow::Result<String> {
        let request = protocol::request_line(commands);
        let connect_failed = |cause: &dyn std::fmt::Display| {
            anyhow!(
                "{}: cannot connect to the runtime API: {cause}; is haproxy running, and does \
                 the global section of haproxy.cfg have `{}`?",
                self.subject(),
                self.endpoint.stats_socket_line()
            )
        };
        let connect_timed_out = || {
            connect_failed(&format_args!(
                "no connection within {}",
                humantime::format_duration(self.timeout)
            ))
        };
        let exchanged = match &self.endpoint {
            RuntimeApi::Unix(path) => {
                let stream = timeout(self.timeout, UnixStream::connect(path))
                    .await
                    .map_err(|_| connect_timed_out())?
                    .map_err(|e| connect_failed(&e))?;
                timeout(self.timeout, converse(stream, &request)).await
            }
            RuntimeApi::Tcp(addr) => {
                let stream = timeout(self.timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| connect_timed_out())?
                    .map_err(|e| connect_failed(&e))?;
                timeout(self.timeout, converse(stream, &request)).await
            }
        };
        match exchanged {
            Err(_) => bail!(
                "{}: the runtime API did not finish answering {} command(s) within {}; is \
                 haproxy overloaded, or is this endpoint not a HAProxy stats socket?",
                self.subject(),
                commands.len(),
                humantime::format_duration(self.timeout)
            ),
            Ok(result) => result.with_context(|| {
                format!(
                    "{}: the runtime API connection failed while exchanging {} command(s)",
                    self.subject(),
                    commands.len()
                )
            }),
        }
    }
}

/// Writes the request line and reads the answers up to EOF: without `prompt` mode
/// HAProxy closes the connection once the line is done.
async fn converse<S>(mut stream: S, request: &str) -> anyhow::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut response)
        .await?;
    if response.len() as u64 > MAX_RESPONSE_BYTES {
        bail!("the answer is longer than {MAX_RESPONSE_BYTES} bytes");
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

impl LoadBalancer for HaproxyClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn read<'a>(
        &'a self,
        backends: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<ObservedServer>>> {
        Box::pin(async move {
            let mut servers = self.read_runtime(backends).await?;
            if let Some(file) = &self.config_file {
                self.mark_durability(file, &mut servers).await;
            }
            Ok(servers)
        })
    }

    fn list_backends(&self) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let response = self.exchange(&[protocol::SHOW_BACKEND.to_string()]).await?;
            protocol::parse_backend_list(&response)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.subject()))
        })
    }

    fn write<'a>(&'a self, changes: &'a [ServerChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            // Validate everything before sending anything: a bad argument aborts the batch.
            let commands = changes
                .iter()
                .map(protocol::change_command)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: refusing to send the changes", self.subject()))?;
            let mut refusals: Vec<String> = Vec::new();
            let mut index = 0;
            while index < changes.len() {
                // A run of commands whose answers are framed shares one connection; the
                // others go alone (see protocol::answer_is_framed).
                let run = if protocol::answer_is_framed(&changes[index]) {
                    changes[index..]
                        .iter()
                        .take_while(|c| protocol::answer_is_framed(c))
                        .count()
                } else {
                    1
                };
                let (batch, batch_commands) =
                    (&changes[index..index + run], &commands[index..index + run]);
                let response = self.exchange(batch_commands).await?;
                let answers: Vec<&str> = if protocol::answer_is_framed(&batch[0]) {
                    protocol::split_answers(&response, run).with_context(|| {
                        format!(
                            "{}: the outcome of {} change(s) is unknown",
                            self.subject(),
                            run
                        )
                    })?
                } else {
                    vec![response.as_str()]
                };
                refusals.extend(
                    batch
                        .iter()
                        .zip(answers)
                        .filter_map(|(change, answer)| {
                            protocol::parse_change_answer(change, answer).err()
                        })
                        .map(|refusal| refusal.to_string()),
                );
                index += run;
            }
            // The runtime is the truth after writing, refused commands or not.
            let persisted = match &self.config_file {
                Some(file) => self.persist(file, changes).await,
                None => Ok(()),
            };
            if refusals.is_empty() {
                return persisted;
            }
            // HAProxy carries on after a refused command, so the others were applied.
            let applied = changes.len() - refusals.len();
            let unpersisted = match persisted {
                Ok(()) => String::new(),
                Err(e) => format!("; and {e:#}"),
            };
            bail!(
                "{}: {} of {} change(s) refused{}: {}{unpersisted}",
                self.subject(),
                refusals.len(),
                changes.len(),
                if applied > 0 {
                    format!(", {applied} applied")
                } else {
                    String::new()
                },
                refusals.join("; ")
            );
        })
    }
}

/// The server a change is about.
fn change_key(change: &ServerChange) -> &crate::model::ServerKey {
    match change {
        ServerChange::SetAddr { key, .. }
        | ServerChange::SetAdmin { key, .. }
        | ServerChange::Add { key, .. }
        | ServerChange::Delete { key } => key,
    }
}

/// `.NAME.ipdrift` beside `path`: on the same file system, so the rename is atomic.
fn staged_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "haproxy.cfg".to_string());
    path.with_file_name(format!(".{name}.ipdrift"))
}
