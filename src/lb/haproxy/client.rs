//! Socket I/O for the HAProxy runtime API. Each read or write is one connection that
//! carries one request line (all commands, `;`-separated) and is read to EOF; the pure
//! [`protocol`](super::protocol) module builds the commands and reads the answers.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

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
}

impl HaproxyClient {
    /// `name` is the load balancer's name from config; `timeout` bounds connecting and,
    /// separately, the exchange of the commands and answers.
    pub fn new(name: String, endpoint: RuntimeApi, timeout: Duration) -> HaproxyClient {
        HaproxyClient {
            name,
            endpoint,
            timeout,
        }
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
            if refusals.is_empty() {
                return Ok(());
            }
            // HAProxy carries on after a refused command, so the others were applied.
            let applied = changes.len() - refusals.len();
            bail!(
                "{}: {} of {} change(s) refused{}: {}",
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
