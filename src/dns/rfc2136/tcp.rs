//! The socket I/O of a target: DNS over TCP (RFC 1035 §4.2.2, RFC 7766), each message
//! prefixed with its 2-byte length, several pipelined on one connection.

use anyhow::anyhow;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Rfc2136Target;

impl Rfc2136Target {
    /// Sends `requests` on one TCP connection and returns as many answers, in arrival order.
    pub(super) async fn exchange(&self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<Vec<u8>>> {
        let framed = self.frame(requests)?;
        tokio::time::timeout(self.timeout, self.exchange_on_tcp(&framed, requests.len()))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow!(
                    "no answer from {} within {} — is the server running and is this its primary?",
                    self.endpoint.who(),
                    humantime::format_duration(self.timeout)
                ))
            })
    }

    /// Each request prefixed with its length (RFC 1035 §4.2.2), ready to send.
    pub(super) fn frame(&self, requests: &[Vec<u8>]) -> anyhow::Result<Vec<u8>> {
        let mut framed = Vec::new();
        for request in requests {
            let length = u16::try_from(request.len()).map_err(|_| {
                anyhow!(
                    "{}: a message of {} bytes does not fit in DNS over TCP's 65535; split the change",
                    self.endpoint.who(),
                    request.len()
                )
            })?;
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(request);
        }
        Ok(framed)
    }

    pub(super) async fn exchange_on_tcp(
        &self,
        framed: &[u8],
        answer_count: usize,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut stream = self.connect().await?;
        let (mut reader, mut writer) = stream.split();
        // Read while writing, so a server that answers early never blocks on a full buffer.
        let send = async {
            writer.write_all(framed).await?;
            writer.flush().await
        };
        let receive = async {
            let mut answers = Vec::with_capacity(answer_count);
            for _ in 0..answer_count {
                answers.push(read_message(&mut reader).await?);
            }
            Ok(answers)
        };
        let ((), answers) = tokio::try_join!(send, receive).map_err(|why| self.io_error(why))?;
        Ok(answers)
    }

    pub(super) async fn connect(&self) -> anyhow::Result<TcpStream> {
        TcpStream::connect(self.endpoint.server)
            .await
            .map_err(|why| {
                anyhow!(
                    "cannot connect to {}: {why} — is the server running and listening on TCP {}?",
                    self.endpoint.who(),
                    self.endpoint.server
                )
            })
    }

    pub(super) fn io_error(&self, why: std::io::Error) -> anyhow::Error {
        if why.kind() == std::io::ErrorKind::UnexpectedEof {
            anyhow!(
                "{} closed the connection before answering — check the server's log",
                self.endpoint.who()
            )
        } else {
            anyhow!("talking to {}: {why}", self.endpoint.who())
        }
    }
}

/// Reads one length-prefixed message (RFC 1035 §4.2.2) of at least a DNS header.
pub(super) async fn read_message(
    reader: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Vec<u8>> {
    let length = reader.read_u16().await?;
    let mut message = vec![0; usize::from(length)];
    reader.read_exact(&mut message).await?;
    if message.len() < 12 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "an answer shorter than a DNS header",
        ));
    }
    Ok(message)
}
