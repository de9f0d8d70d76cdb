//! `[ha]`: several `ipdrift run` watch one fleet and only the leader writes. The leader is
//! elected with etcd's election API (`v3election`, through etcd's HTTP/JSON gateway:
//! [`gateway`]): each controller grants itself a lease,
//! keeps it alive, and campaigns with a key under the election's prefix that lives as long
//! as the lease; the oldest key wins. When the leader dies its lease expires, its key goes,
//! and the next campaigner is elected.
//!
//! The fence: right before each write batch the reconciler asks [`Fence::check`] whether
//! this process holds the lease *now*. That needs no network call: the lease is known to be
//! valid until the TTL the server granted, counted from when the last successful keep-alive
//! was *sent* (the server counts from later, when it handled it), less a safety margin. The
//! clock is tokio's monotonic one, which keeps running while a process is paused, so a
//! controller that was stopped (SIGSTOP, a frozen VM) or cut off from etcd sees that its
//! lease ran out before it writes again, without asking anyone — and the batch it starts
//! must also end by then.

pub mod gateway;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use self::gateway::Gateway;
use crate::config::HaConfig;

/// How long a stopping controller may take to hand its lease back.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the election task last established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    /// Leading, unless `until` passes before the lease is renewed.
    Leader {
        until: Instant,
    },
}

/// What a write batch checks right before it starts.
#[derive(Debug, Clone)]
pub struct Fence(Option<watch::Receiver<Role>>);

/// This process does not hold the lease now: the write is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not leader: write withheld")]
pub struct NotLeader;

impl Fence {
    /// Without `[ha]`: this process is the only writer.
    pub fn alone() -> Fence {
        Fence(None)
    }

    /// `Ok(Some(deadline))`: write, and be done by the deadline (the lease may lapse after
    /// it); `Ok(None)`: write, no deadline (no `[ha]`); `Err(NotLeader)`: do not write.
    pub fn check(&self) -> Result<Option<Instant>, NotLeader> {
        match &self.0 {
            None => Ok(None),
            Some(role) => match *role.borrow() {
                Role::Leader { until } if Instant::now() < until => Ok(Some(until)),
                _ => Err(NotLeader),
            },
        }
    }

    pub fn holds(&self) -> bool {
        self.check().is_ok()
    }

    /// Resolves once this process leads; never without `[ha]`, or once the election stopped.
    pub async fn until_leader(&self) {
        if let Some(role) = &self.0 {
            let mut role = role.clone();
            let leading =
                role.wait_for(|r| matches!(r, Role::Leader { until } if Instant::now() < *until));
            if leading.await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

/// The keep-alive period and the safety margin: a quarter of the TTL each. The lease is
/// then known valid for three quarters of the TTL after a keep-alive is sent, so two keep-alives
/// in a row may fail before leadership is given up; and a leader that lost the lease stops
/// a quarter of the TTL before etcd can elect another.
fn quarter(ttl: Duration) -> Duration {
    ttl / 4
}

/// Until when a lease is known to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseClock {
    /// The TTL the server granted.
    ttl: Duration,
    /// When the last request that renewed it (grant or keep-alive) was sent.
    renewed_at: Instant,
}

impl LeaseClock {
    fn valid_until(&self) -> Instant {
        self.renewed_at + self.ttl - quarter(self.ttl)
    }
}

/// Why a session (one lease, one campaign) ended.
#[derive(Debug)]
enum SessionEnd {
    /// The controller is stopping.
    Stopped,
    /// etcd could not be reached or refused something; another session follows.
    Failed(String),
}

/// A running election: the background task and the fence it keeps.
pub struct Leadership {
    role: watch::Receiver<Role>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning in the background. Fails only when the TLS files or the password
    /// cannot be read; an unreachable etcd is retried for as long as it takes, and meanwhile
    /// this controller follows.
    pub fn start(ha: &HaConfig, gauge: Gauge) -> anyhow::Result<Leadership> {
        let secrets = ha.load_secrets().map_err(anyhow::Error::msg)?;
        let gateway = Gateway::new(&ha.endpoints, &secrets, quarter(ha.lease_ttl))
            .map_err(anyhow::Error::msg)?;
        let (role_tx, role) = watch::channel(Role::Follower);
        let (stop, stop_rx) = watch::channel(false);
        let election = Election {
            gateway: Arc::new(gateway),
            name: ha.election.clone(),
            instance: ha.instance_name(),
            ttl: ha.lease_ttl,
            role: role_tx,
            gauge,
            stale: Vec::new(),
            failing: false,
            told_longer_ttl: false,
        };
        tracing::info!(election = %ha.election, instance = %ha.instance_name(), endpoints = ?ha.endpoints, lease_ttl = %humantime::format_duration(ha.lease_ttl), "joining the election");
        let task = tokio::spawn(election.run(stop_rx));
        Ok(Leadership { role, stop, task })
    }

    pub fn fence(&self) -> Fence {
        Fence(Some(self.role.clone()))
    }

    /// Hands the lease back (another controller takes over at once instead of after the
    /// TTL) and stops campaigning.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = timeout(STOP_GRACE, self.task).await;
    }
}

/// The election task's state.
struct Election {
    gateway: Arc<Gateway>,
    name: String,
    instance: String,
    /// The TTL asked for.
    ttl: Duration,
    role: watch::Sender<Role>,
    gauge: Gauge,
    /// Leases of ended sessions not yet revoked. etcd restores leases when it restarts, so
    /// a key of an old session could otherwise block the election for another TTL.
    stale: Vec<i64>,
    /// Sessions have failed since etcd last granted a lease: warned about once.
    failing: bool,
    /// etcd granted a longer TTL than asked for: warned about once.
    told_longer_ttl: bool,
}

impl Election {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.session(&mut stop).await {
                SessionEnd::Stopped => break,
                SessionEnd::Failed(reason) => {
                    if !self.failing {
                        tracing::warn!(election = %self.name, "etcd: {reason}; retrying every {}", humantime::format_duration(quarter(self.ttl)));
                    } else {
                        tracing::debug!(election = %self.name, "etcd: {reason}");
                    }
                    self.failing = true;
                }
            }
            tokio::select! {
                _ = sleep(quarter(self.ttl)) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        self.revoke_stale().await;
    }

    /// One lease and one campaign, from the grant until the lease is lost, etcd fails, or
    /// the controller stops.
    async fn session(&mut self, stop: &mut watch::Receiver<bool>) -> SessionEnd {
        let limit = quarter(self.ttl);
        let gateway = self.gateway.clone();
        self.revoke_stale().await;
        let sent = Instant::now();
        let (lease, granted_ttl) = match timeout(limit, gateway.grant(self.ttl)).await {
            Ok(Ok(granted)) => granted,
            Ok(Err(e)) => return SessionEnd::Failed(format!("cannot grant a lease: {e}")),
            Err(_) => return SessionEnd::Failed(unanswered("a lease grant", limit)),
        };
        if granted_ttl > self.ttl && !self.told_longer_ttl {
            self.told_longer_ttl = true;
            tracing::warn!(election = %self.name, "etcd grants {} leases, not the {} of ha.lease_ttl (its minimum is 1.5 election timeouts): a dead leader is replaced that much later", humantime::format_duration(granted_ttl), humantime::format_duration(self.ttl));
        }
        if std::mem::take(&mut self.failing) {
            tracing::info!(election = %self.name, "etcd answers again");
        }
        let mut clock = LeaseClock {
            ttl: granted_ttl,
            renewed_at: sent,
        };
        if let Ok(Ok(Some((_, leader)))) = timeout(limit, gateway.leader(&self.name)).await {
            tracing::info!(election = %self.name, instance = %self.instance, leader = %leader, "campaigning; following the current leader meanwhile");
        }
        let (name, instance) = (self.name.clone(), self.instance.clone());
        let campaign = gateway.campaign(&name, lease, &instance);
        tokio::pin!(campaign);
        let mut renew = tokio::time::interval_at(sent + limit, limit);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The key that won the election, once it did.
        let mut won: Option<Vec<u8>> = None;
        let end = loop {
            tokio::select! {
                elected = &mut campaign, if won.is_none() => match elected {
                    Ok(key) if Instant::now() < clock.valid_until() => {
                        won = Some(key);
                        self.lead(clock.valid_until());
                    }
                    Ok(_) => break SessionEnd::Failed("elected after the lease ran out".into()),
                    Err(e) => break SessionEnd::Failed(format!("campaign failed: {e}")),
                },
                _ = renew.tick() => {
                    match renew_lease(&gateway, lease, clock.ttl, limit).await {
                        Ok(Some(renewed_at)) => {
                            let Some(key) = &won else {
                                clock.renewed_at = renewed_at;
                                continue;
                            };
                            match self.still_elected(key, limit).await {
                                Ok(true) => {
                                    clock.renewed_at = renewed_at;
                                    self.lead(clock.valid_until());
                                }
                                Ok(false) => {
                                    self.follow("the election key is no longer this controller's");
                                    break SessionEnd::Failed("the election key was deleted or replaced".into());
                                }
                                // Unconfirmed, so not counted as renewed.
                                Err(reason) => tracing::debug!(election = %self.name, "{reason}"),
                            }
                        }
                        Ok(None) => {
                            self.follow("etcd says the lease has expired");
                            break SessionEnd::Failed("the lease expired".into());
                        }
                        Err(reason) => {
                            tracing::debug!(election = %self.name, "keep-alive failed: {reason}");
                        }
                    }
                }
                _ = sleep_until(clock.valid_until()) => {
                    let since = humantime::format_duration(Duration::from_millis(clock.renewed_at.elapsed().as_millis() as u64));
                    self.follow(&format!("the lease was not renewed for {since} (etcd unreachable, or this process was paused)"));
                    break SessionEnd::Failed(format!("the lease was not renewed for {since}"));
                }
                _ = stopped(stop) => break SessionEnd::Stopped,
            }
        };
        let was_leader = self.step_down();
        self.stale.push(lease);
        self.revoke_stale().await;
        if was_leader && matches!(end, SessionEnd::Stopped) {
            tracing::info!(election = %self.name, instance = %self.instance, "stopping: handed the lease back");
        }
        end
    }

    /// Whether `key` is still the election's leader key.
    async fn still_elected(&self, key: &[u8], limit: Duration) -> Result<bool, String> {
        match timeout(limit, self.gateway.leader(&self.name)).await {
            Ok(Ok(current)) => Ok(current.is_some_and(|(leader, _)| leader == key)),
            Ok(Err(e)) => Err(format!("cannot read the election's leader: {e}")),
            Err(_) => Err(unanswered("the leader query", limit)),
        }
    }

    /// Revokes the leases of ended sessions; those etcd no longer knows are done too.
    async fn revoke_stale(&mut self) {
        let limit = quarter(self.ttl);
        let mut kept = Vec::new();
        for lease in std::mem::take(&mut self.stale) {
            match timeout(limit, self.gateway.revoke(lease)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.lease_not_found() => {}
                _ => kept.push(lease),
            }
        }
        self.stale = kept;
    }

    fn lead(&self, until: Instant) {
        let was = *self.role.borrow();
        self.role.send_replace(Role::Leader { until });
        if was == Role::Follower {
            self.gauge.set(1);
            tracing::info!(election = %self.name, instance = %self.instance, "became leader");
        }
    }

    /// Stops writing; true when this controller was the leader.
    fn step_down(&self) -> bool {
        let was = self.role.send_replace(Role::Follower);
        self.gauge.set(0);
        was != Role::Follower
    }

    fn follow(&self, reason: &str) {
        if self.step_down() {
            tracing::warn!(election = %self.name, instance = %self.instance, reason, "lost leadership");
        }
    }
}

/// One keep-alive round trip within `limit`. `Ok(Some(sent))`: renewed by the request
/// sent then; `Ok(None)`: the lease is gone.
async fn renew_lease(
    gateway: &Gateway,
    lease: i64,
    ttl: Duration,
    limit: Duration,
) -> Result<Option<Instant>, String> {
    let sent = Instant::now();
    match timeout(limit, gateway.keep_alive(lease)).await {
        Ok(Ok(Some(_))) => Ok(Some(sent)),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) if e.lease_not_found() => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(unanswered(
            &format!("a keep-alive (TTL {})", humantime::format_duration(ttl)),
            limit,
        )),
    }
}

/// Resolves when the controller stops (or the [`Leadership`] is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn unanswered(what: &str, limit: Duration) -> String {
    format!(
        "{what} was not answered within {}",
        humantime::format_duration(limit)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_trusted_for_three_quarters_of_its_ttl_from_the_keep_alive_sent() {
        let sent = Instant::now();
        let clock = LeaseClock {
            ttl: Duration::from_secs(10),
            renewed_at: sent,
        };
        assert_eq!(clock.valid_until(), sent + Duration::from_millis(7500));
        assert_eq!(quarter(Duration::from_secs(2)), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn the_fence_holds_only_while_the_lease_is_known_valid() {
        assert_eq!(Fence::alone().check(), Ok(None));
        let (role, rx) = watch::channel(Role::Follower);
        let fence = Fence(Some(rx));
        assert_eq!(fence.check(), Err(NotLeader));
        let until = Instant::now() + Duration::from_secs(60);
        role.send_replace(Role::Leader { until });
        assert_eq!(fence.check(), Ok(Some(until)));
        // A leader whose deadline passed without a renewal is no leader, whatever the
        // election task last said (it may not have run yet after a pause).
        role.send_replace(Role::Leader {
            until: Instant::now(),
        });
        assert!(!fence.holds());
    }

    #[tokio::test]
    async fn until_leader_waits_for_a_valid_lease() {
        let (role, rx) = watch::channel(Role::Follower);
        let fence = Fence(Some(rx));
        let waiting = tokio::spawn(async move { fence.until_leader().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        role.send_replace(Role::Leader {
            until: Instant::now() + Duration::from_secs(60),
        });
        timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when elected")
            .unwrap();
    }
}
