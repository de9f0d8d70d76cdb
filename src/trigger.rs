//! Triggers: what starts a pass of `ipdrift run` before the interval is up — a source saw
//! a change (its file was replaced, a cloud event arrived on its queue) or someone asked
//! (`POST /reconcile`). Polling stays the safety net: a lost trigger costs at most one
//! interval.
//!
//! - A burst is one pass: the first trigger opens a window of `controller.debounce`, and
//!   the pass that starts after it serves every trigger that arrived before it started.
//! - Passes never overlap: a trigger during a pass waits for it, and all that arrive
//!   during one pass are served by exactly one more pass after it.
//! - Passes are numbered 1, 2, … from the start of `run`; a trigger is told the number of
//!   the pass that will serve it, and may wait until that pass has finished (a queued
//!   event is deleted only then).
//!
//! [`Trigger`] is the sending side, cloned into each source's watch and the admin server;
//! [`Triggers`] is the controller's.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::ha::Fence;

/// The number of a pass of `run`: 1 for the first.
pub type PassId = u64;

/// Why a pass was asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The named source saw its instances change (its file, its event queue).
    Source(String),
    /// `POST /reconcile` on the admin listener.
    Request,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Source(name) => write!(f, "inventory {name:?} changed"),
            Cause::Request => f.write_str("POST /reconcile"),
        }
    }
}

/// Triggers not yet served, and the last pass started.
#[derive(Default)]
struct Waiting {
    started: PassId,
    causes: BTreeSet<Cause>,
    /// When the first waiting trigger arrived: the debounce window counts from it.
    since: Option<Instant>,
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// Wakes the controller waiting in [`Triggers::burst`].
    arrived: Notify,
}

/// A source's running watch ([`crate::inventory::Inventory::watch`]); dropping it stops
/// the watch.
pub struct Watch {
    _running: Box<dyn Send>,
}

impl Watch {
    /// A watch that stops when `guard` is dropped (e.g. a file watcher).
    pub fn new(guard: impl Send + 'static) -> Watch {
        Watch {
            _running: Box::new(guard),
        }
    }

    /// A watch that is a task: aborted when the watch is dropped.
    pub fn task(task: tokio::task::JoinHandle<()>) -> Watch {
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        Watch::new(AbortOnDrop(task))
    }
}

/// The controller stopped before the pass a trigger waited for finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the controller stopped before the pass ran")]
pub struct Stopped;

/// Asks the controller for a pass; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Trigger {
    shared: Arc<Shared>,
    finished: watch::Receiver<PassId>,
    fence: Fence,
}

impl Trigger {
    /// Asks for a pass; returns the number of the pass that will serve this request: the
    /// next one to start.
    pub fn fire(&self, cause: Cause) -> PassId {
        let next = {
            let mut waiting = self.shared.waiting.lock().expect("lock");
            waiting.causes.insert(cause);
            waiting.since.get_or_insert_with(Instant::now);
            waiting.started + 1
        };
        // A stored permit if the controller is not waiting yet: never a lost wake-up.
        self.shared.arrived.notify_one();
        next
    }

    /// Resolves once pass `id` has finished.
    pub async fn finished(&self, id: PassId) -> Result<(), Stopped> {
        let mut finished = self.finished.clone();
        finished
            .wait_for(|done| *done >= id)
            .await
            .map(|_| ())
            .map_err(|_| Stopped)
    }

    /// Whether this controller writes now (always without `[ha]`). Consuming what other
    /// controllers must see too (a shared event queue) is the leader's job.
    pub fn leading(&self) -> bool {
        self.fence.holds()
    }

    /// Resolves once this controller leads (at once when it does; never without `[ha]`,
    /// where it always leads).
    pub async fn until_leading(&self) {
        if !self.leading() {
            self.fence.until_leader().await;
        }
    }
}

/// The controller's side: when a triggered pass is due, and the numbering of passes.
pub struct Triggers {
    shared: Arc<Shared>,
    finished: watch::Sender<PassId>,
    debounce: Duration,
    fence: Fence,
}

impl Triggers {
    /// No trigger yet, no pass started; `fence` tells the triggers whether this controller
    /// leads.
    pub fn new(debounce: Duration, fence: Fence) -> Triggers {
        Triggers {
            shared: Arc::new(Shared {
                waiting: Mutex::new(Waiting::default()),
                arrived: Notify::new(),
            }),
            finished: watch::channel(0).0,
            debounce,
            fence,
        }
    }

    /// A sending side for a source's watch or the admin server.
    pub fn trigger(&self) -> Trigger {
        Trigger {
            shared: self.shared.clone(),
            finished: self.finished.subscribe(),
            fence: self.fence.clone(),
        }
    }

    /// `controller.debounce` changed (a reload).
    pub fn set_debounce(&mut self, debounce: Duration) {
        self.debounce = debounce;
    }

    /// A pass starts now, whatever started it: it serves every trigger waiting. Returns its
    /// number and the causes it serves (none for a pass of the schedule alone).
    pub fn start_pass(&self) -> (PassId, BTreeSet<Cause>) {
        let mut waiting = self.shared.waiting.lock().expect("lock");
        waiting.started += 1;
        waiting.since = None;
        (waiting.started, std::mem::take(&mut waiting.causes))
    }

    /// Pass `id` has finished: whoever waits for it may go on.
    pub fn finish_pass(&self, id: PassId) {
        self.finished.send_replace(id);
    }

    /// Resolves when a triggered pass is due: a trigger waits and its debounce window is
    /// over. Cancel-safe: what arrived stays waiting for the next call or pass.
    pub async fn burst(&self) {
        loop {
            let since = self.shared.waiting.lock().expect("lock").since;
            match since {
                Some(since) => {
                    tokio::time::sleep_until(since + self.debounce).await;
                    return;
                }
                None => self.shared.arrived.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(50);

    fn triggers() -> (Triggers, Trigger) {
        let triggers = Triggers::new(DEBOUNCE, Fence::alone());
        let trigger = triggers.trigger();
        (triggers, trigger)
    }

    /// Whether `burst` resolves within `wait`.
    async fn due_within(triggers: &Triggers, wait: Duration) -> bool {
        tokio::time::timeout(wait, triggers.burst()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_due_without_a_trigger() {
        let (triggers, _trigger) = triggers();
        assert!(!due_within(&triggers, Duration::from_secs(3600)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_due_once_its_window_after_the_first_trigger_is_over() {
        let (triggers, trigger) = triggers();
        let t0 = Instant::now();
        assert_eq!(trigger.fire(Cause::Source("local".into())), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // More of the burst: the window still counts from the first.
        assert_eq!(trigger.fire(Cause::Source("local".into())), 1);
        assert_eq!(trigger.fire(Cause::Request), 1);
        triggers.burst().await;
        assert_eq!(Instant::now() - t0, DEBOUNCE);
        let (id, causes) = triggers.start_pass();
        assert_eq!(id, 1);
        assert_eq!(
            causes.into_iter().collect::<Vec<_>>(),
            [Cause::Source("local".into()), Cause::Request],
            "one pass for the whole burst, each cause once"
        );
        assert!(
            !due_within(&triggers, Duration::from_secs(60)).await,
            "the burst was served"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_arriving_while_burst_waits_wakes_it() {
        let (triggers, trigger) = triggers();
        let t0 = Instant::now();
        let fire = async {
            tokio::time::sleep(Duration::from_secs(7)).await;
            trigger.fire(Cause::Request)
        };
        let ((), id) = tokio::join!(triggers.burst(), fire);
        assert_eq!(id, 1);
        assert_eq!(Instant::now() - t0, Duration::from_secs(7) + DEBOUNCE);
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_pass_are_served_by_exactly_one_more_pass() {
        let (triggers, trigger) = triggers();
        let (first, causes) = triggers.start_pass();
        assert_eq!((first, causes.len()), (1, 0), "a pass of the schedule");
        // During pass 1: three triggers, all promised pass 2.
        for _ in 0..3 {
            assert_eq!(trigger.fire(Cause::Source("local".into())), 2);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        triggers.finish_pass(first);
        // Their window is long over: due at once.
        assert!(due_within(&triggers, Duration::ZERO).await);
        let (second, causes) = triggers.start_pass();
        assert_eq!((second, causes.len()), (2, 1));
        triggers.finish_pass(second);
        assert!(!due_within(&triggers, Duration::from_secs(60)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_pass_serves_the_triggers_waiting_when_it_starts() {
        let (triggers, trigger) = triggers();
        assert_eq!(trigger.fire(Cause::Request), 1);
        let (id, causes) = triggers.start_pass();
        assert_eq!(id, 1);
        assert!(causes.contains(&Cause::Request));
        assert!(!due_within(&triggers, Duration::from_secs(60)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_cancel_safe() {
        let (triggers, trigger) = triggers();
        trigger.fire(Cause::Request);
        // Cancelled inside the window (another branch of the controller's select won).
        assert!(!due_within(&triggers, DEBOUNCE / 2).await);
        assert!(due_within(&triggers, DEBOUNCE).await, "still waiting");
        assert_eq!(triggers.start_pass().1.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_pass_ends_when_it_finished_or_the_controller_stopped() {
        let (triggers, trigger) = triggers();
        let id = trigger.fire(Cause::Request);
        let waiter = trigger.clone();
        let wait = tokio::spawn(async move { waiter.finished(id).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!wait.is_finished(), "pass {id} has not run");
        let (started, _) = triggers.start_pass();
        triggers.finish_pass(started);
        assert_eq!(wait.await.unwrap(), Ok(()));
        // A pass already over: at once.
        assert_eq!(trigger.finished(id).await, Ok(()));

        let next = trigger.fire(Cause::Request);
        drop(triggers);
        assert_eq!(trigger.finished(next).await, Err(Stopped));
    }

    #[test]
    fn causes_say_what_happened() {
        assert_eq!(
            Cause::Source("local".into()).to_string(),
            "inventory \"local\" changed"
        );
        assert_eq!(Cause::Request.to_string(), "POST /reconcile");
        let (_, trigger) = triggers();
        assert!(trigger.leading(), "alone, a controller always leads");
    }
}
