//! The zone's secondaries (`secondaries`): whether each serves what the primary serves.
//!
//! Secondaries are asked with plain, unsigned queries over TCP, as any client asks them:
//! first the zone's SOA, whose serial (compared as RFC 1982 serial numbers) says whether
//! the secondary has transferred the primary's version yet, then, after a write, each
//! written RRset, which must read as it was written. The primary's serial is read with a
//! signed query, like every read of the primary.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::future::join_all;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use super::Rfc2136Target;
use super::answer::{Request, queried_rrset};
use super::config::Secondaries;
use super::explain::answer_mnemonic;
use super::message::{query_message, sign, soa_query};
use super::tcp::read_message;
use crate::dns::secondaries::{Secondary, Served};
use crate::dns::{RecordChange, SecondaryCheck};
use crate::model::{RecordKey, RecordSet};

/// The shortest wait between two polls of a secondary after a write. Polls then come at a
/// tenth of the time waited so far (at most [`POLL_AT_MOST`]), so that the time measured is
/// within about 10 % of when the secondary began to serve the change.
const POLL_AT_LEAST: Duration = Duration::from_millis(10);
const POLL_AT_MOST: Duration = Duration::from_secs(1);

/// How many written RRsets are read back from each secondary once its serial has caught
/// up: the first of the batch (in the plan's order). The serial says the rest came with
/// them; reading all of a large batch from every secondary at every poll would cost as
/// much as the write. Also keeps the query ids of one connection distinct.
const MAX_CHECKED_RRSETS: usize = 256;

/// Whether serial `a` is `b` or later, in RFC 1982 serial number arithmetic (§3.2): a
/// serial that wrapped past 2³² is still later.
pub fn serial_reached(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

/// How long to wait before polling again, having waited `waited`.
fn poll_after(waited: Duration) -> Duration {
    (waited / 10).clamp(POLL_AT_LEAST, POLL_AT_MOST)
}

/// What one look at a secondary found.
enum Look {
    /// It serves the primary's serial (or later) and, after a write, the written RRsets.
    Serves,
    /// It is behind: its serial, if it answered with one, and how it is behind.
    Behind { serial: Option<u32>, why: String },
}

impl Rfc2136Target {
    /// Watches `secondaries` after writes (`None`: nothing is watched).
    pub fn with_secondaries(mut self, secondaries: Option<Secondaries>) -> Self {
        self.secondaries = secondaries;
        self
    }

    /// How each configured secondary stands ([`SecondaryCheck`]), all of them concurrently.
    pub(super) async fn check_secondaries(
        &self,
        check: SecondaryCheck<'_>,
    ) -> anyhow::Result<Vec<Secondary>> {
        let Some(secondaries) = &self.secondaries else {
            return Ok(Vec::new());
        };
        let primary_serial = self.primary_serial().await?;
        let (expected, deadline) = match check {
            SecondaryCheck::Now => (Vec::new(), None),
            SecondaryCheck::Written { changes, ended } => (
                changes
                    .iter()
                    .take(MAX_CHECKED_RRSETS)
                    .map(expected_rrset)
                    .collect(),
                Some((ended, ended + secondaries.timeout)),
            ),
        };
        let expected = &expected;
        let watches = secondaries.servers.iter().map(|&addr| async move {
            let state = match deadline {
                None => match self.look(addr, primary_serial, expected).await {
                    Look::Serves => Served::InSync,
                    Look::Behind { serial, why } => Served::Lagging {
                        waited: Duration::ZERO,
                        serial,
                        why,
                    },
                },
                Some((ended, deadline)) => {
                    self.wait_for(addr, primary_serial, expected, ended, deadline)
                        .await
                }
            };
            Secondary {
                addr,
                primary_serial,
                state,
            }
        });
        Ok(join_all(watches).await)
    }

    /// Polls `addr` until it serves `expected` at `primary_serial`, or `deadline` passes.
    async fn wait_for(
        &self,
        addr: SocketAddr,
        primary_serial: u32,
        expected: &[(RecordKey, Option<RecordSet>)],
        ended: Instant,
        deadline: Instant,
    ) -> Served {
        loop {
            let look = self.look(addr, primary_serial, expected).await;
            let now = Instant::now();
            let waited = now.saturating_duration_since(ended);
            match look {
                Look::Serves => return Served::After(waited),
                Look::Behind { serial, why } if now >= deadline => {
                    return Served::Lagging {
                        waited,
                        serial,
                        why,
                    };
                }
                Look::Behind { .. } => {
                    sleep_until((now + poll_after(waited)).min(deadline)).await;
                }
            }
        }
    }

    /// Asks `addr` for the zone's SOA and, when its serial has reached `primary_serial`,
    /// for each RRset of `expected`, all on one connection, within the target's timeout
    /// (so the last look, at the deadline, has its full time).
    async fn look(
        &self,
        addr: SocketAddr,
        primary_serial: u32,
        expected: &[(RecordKey, Option<RecordSet>)],
    ) -> Look {
        match timeout(self.timeout, self.ask(addr, primary_serial, expected)).await {
            Ok(Ok(look)) => look,
            Ok(Err(error)) => Look::Behind {
                serial: None,
                why: format!("{error:#}"),
            },
            Err(_) => Look::Behind {
                serial: None,
                why: format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            },
        }
    }

    async fn ask(
        &self,
        addr: SocketAddr,
        primary_serial: u32,
        expected: &[(RecordKey, Option<RecordSet>)],
    ) -> anyhow::Result<Look> {
        let zone = self.endpoint.checked_name(&self.endpoint.zone)?;
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|why| anyhow!("cannot connect ({why})"))?;
        let id: u16 = rand::random();
        let soa = soa_query(id, zone.clone())
            .to_vec()
            .context("encoding a query")?;
        let answer = exchange(&mut stream, &self.frame(&[soa])?, 1).await?;
        let serial = match serial_in(&zone, &answer[0], id) {
            Ok(serial) => serial,
            Err(why) => return Ok(Look::Behind { serial: None, why }),
        };
        if !serial_reached(serial, primary_serial) {
            return Ok(Look::Behind {
                serial: Some(serial),
                why: format!("serial {serial} (primary has {primary_serial})"),
            });
        }
        let mut requests = Vec::with_capacity(expected.len());
        let mut owners = Vec::with_capacity(expected.len());
        for (n, (key, _)) in expected.iter().enumerate() {
            let owner = self.endpoint.owner_name(&key.name)?;
            let query = query_message(id.wrapping_add(1 + n as u16), owner.clone(), key.rtype);
            requests.push(query.to_vec().context("encoding a query")?);
            owners.push(owner);
        }
        if requests.is_empty() {
            return Ok(Look::Serves);
        }
        let answers = exchange(&mut stream, &self.frame(&requests)?, requests.len()).await?;
        for answer in answers {
            let message = Message::from_vec(&answer).context("an answer that does not parse")?;
            let Some(n) = usize::from(message.id.wrapping_sub(id))
                .checked_sub(1)
                .filter(|n| *n < expected.len())
            else {
                bail!("an answer (id {}) to no query it was asked", message.id);
            };
            let (key, want) = &expected[n];
            let served = queried_rrset(&self.endpoint.zone, key, &owners[n], &message)
                .map_err(|_| anyhow!("answers {key} without authority"))?;
            if served != *want {
                let shown = |rrset: Option<&RecordSet>| {
                    rrset.map_or("(absent)".to_string(), |set| {
                        let addrs: Vec<String> =
                            set.addrs.iter().map(ToString::to_string).collect();
                        format!("{} ttl={}", addrs.join(","), set.ttl)
                    })
                };
                return Ok(Look::Behind {
                    serial: Some(serial),
                    why: format!(
                        "serial {serial} but {key} reads {} (the primary has {})",
                        shown(served.as_ref()),
                        shown(want.as_ref())
                    ),
                });
            }
        }
        Ok(Look::Serves)
    }

    /// The zone's SOA serial on the primary, from a signed query.
    async fn primary_serial(&self) -> anyhow::Result<u32> {
        let zone = self.endpoint.checked_name(&self.endpoint.zone)?;
        let mut query = soa_query(rand::random(), zone.clone());
        let mut verifier = sign(&mut query, &self.endpoint.key.signer())?;
        let answers = self
            .exchange(&[query.to_vec().context("encoding the SOA query")?])
            .await?;
        let message = self
            .endpoint
            .check_answer(Request::ZoneOwn, &answers[0], &mut verifier)?;
        soa_serial(&zone, &message).ok_or_else(|| {
            anyhow!(
                "{} answered the query for the zone's SOA without it: it does not serve zone {}",
                self.endpoint.who(),
                self.endpoint.zone
            )
        })
    }
}

/// What a written change leaves at its RRset: the new RRset, or none for a deletion.
fn expected_rrset(change: &RecordChange) -> (RecordKey, Option<RecordSet>) {
    match change {
        RecordChange::Replace { to, .. } | RecordChange::Create { to, .. } => {
            (to.key.clone(), Some(to.clone()))
        }
        RecordChange::Delete { from } => (from.key.clone(), None),
    }
}

/// Sends `framed` on `stream` and reads `count` answers.
async fn exchange(
    stream: &mut TcpStream,
    framed: &[u8],
    count: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    stream
        .write_all(framed)
        .await
        .map_err(|why| anyhow!("cannot send a query ({why})"))?;
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        answers.push(
            read_message(stream)
                .await
                .map_err(|why| anyhow!("closed the connection or sent a broken answer ({why})"))?,
        );
    }
    Ok(answers)
}

/// The serial of an unsigned answer to the SOA query `id` from a server that must be
/// authoritative for `zone`; why not, in words, when the answer does not give one.
fn serial_in(zone: &Name, answer: &[u8], id: u16) -> Result<u32, String> {
    let message = Message::from_vec(answer)
        .map_err(|why| format!("an answer to the SOA query that does not parse ({why})"))?;
    if message.id != id {
        return Err(format!(
            "an answer (id {}) to no query it was asked",
            message.id
        ));
    }
    if message.response_code != ResponseCode::NoError {
        return Err(format!(
            "answers the SOA query with {} — does it serve the zone (has it transferred it yet)?",
            answer_mnemonic(message.response_code, None)
        ));
    }
    if !message.authoritative {
        return Err("answers the SOA query without authority: it does not serve the zone".into());
    }
    soa_serial(zone, &message).ok_or_else(|| "answers the SOA query without an SOA".into())
}

/// The serial of `zone`'s SOA in an answer.
fn soa_serial(zone: &Name, message: &Message) -> Option<u32> {
    message
        .answers
        .iter()
        .filter(|record| record.name == *zone)
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_across_the_wrap() {
        assert!(serial_reached(5, 5));
        assert!(serial_reached(6, 5));
        assert!(!serial_reached(4, 5));
        assert!(serial_reached(2, u32::MAX), "wrapped past 2^32");
        assert!(!serial_reached(u32::MAX, 2));
    }

    #[test]
    fn polls_come_at_a_tenth_of_the_wait_within_bounds() {
        assert_eq!(poll_after(Duration::ZERO), POLL_AT_LEAST);
        assert_eq!(
            poll_after(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(poll_after(Duration::from_secs(60)), POLL_AT_MOST);
    }
}
