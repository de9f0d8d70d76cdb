//! When a failing target is tried again: exponential backoff with jitter, per target, reset
//! by a success. Pure: the caller supplies the time and the random draws, so the policy is
//! tested without a clock or luck.
//!
//! After `n` consecutive failures a target waits `interval × 2ⁿ⁻¹` (at most [`MAX_BACKOFF`],
//! or the interval when that is longer), plus jitter of up to as much again, counted from
//! the next pass: the first failure is retried at the next pass, later ones skip passes.

use std::collections::BTreeMap;
use std::ops::{Add, Sub};
use std::time::Duration;

/// The longest un-jittered wait of a failing target between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failing targets and when each may be tried again. `I` is the caller's clock's instant
/// (`tokio::time::Instant` in the controller; plain durations in tests).
#[derive(Debug, Clone)]
pub struct Backoffs<I> {
    interval: Duration,
    failing: BTreeMap<String, Failing<I>>,
}

#[derive(Debug, Clone, Copy)]
struct Failing<I> {
    /// Consecutive failed attempts.
    failures: u32,
    /// No attempt before this.
    until: I,
}

impl<I> Backoffs<I>
where
    I: Copy + Ord + Add<Duration, Output = I> + Sub<I, Output = Duration>,
{
    /// No target failing yet; passes start every `interval`.
    pub fn new(interval: Duration) -> Backoffs<I> {
        Backoffs {
            interval,
            failing: BTreeMap::new(),
        }
    }

    /// Targets still waiting at `now`, with the time left.
    pub fn resting(&self, now: I) -> BTreeMap<String, Duration> {
        self.failing
            .iter()
            .filter(|(_, f)| f.until > now)
            .map(|(target, f)| (target.clone(), f.until - now))
            .collect()
    }

    /// `target` failed an attempt at `now`; `jitter` is a random draw from [0, 1).
    pub fn failed(&mut self, target: &str, now: I, jitter: f64) {
        let failures = self.failing.get(target).map_or(0, |f| f.failures) + 1;
        let wait = delay(self.interval, failures, jitter).saturating_sub(self.interval);
        self.failing.insert(
            target.to_string(),
            Failing {
                failures,
                until: now + wait,
            },
        );
    }

    /// `target` worked: its next failure starts the schedule afresh.
    pub fn succeeded(&mut self, target: &str) {
        self.failing.remove(target);
    }
}

/// The delay after `failures` (≥ 1) consecutive failures, counted from the failed pass:
/// `interval × 2^(failures − 1)`, capped at `max(MAX_BACKOFF, interval)`, times
/// `1 + jitter` (see [`fraction`]).
pub fn delay(interval: Duration, failures: u32, jitter: f64) -> Duration {
    let jitter = fraction(jitter);
    let cap = MAX_BACKOFF.max(interval);
    let base = 2u32
        .checked_pow(failures.saturating_sub(1))
        .and_then(|factor| interval.checked_mul(factor))
        .map_or(cap, |d| d.min(cap));
    base.saturating_add(base.mul_f64(jitter))
}

/// A random draw as a fraction in [0, 1]; anything else (NaN included) counts as 0, so a
/// bad draw neither shortens a wait nor panics.
pub fn fraction(draw: f64) -> f64 {
    if (0.0..=1.0).contains(&draw) {
        draw
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// The attempts a target failing at every attempt gets, with passes every `interval`
    /// from 0 until `end` and the given jitter draws.
    fn attempts(interval: Duration, end: Duration, mut jitter: impl FnMut() -> f64) -> Vec<u64> {
        let mut backoffs = Backoffs::new(interval);
        let mut tried = Vec::new();
        let mut now = Duration::ZERO;
        while now <= end {
            if !backoffs.resting(now).contains_key("ns1") {
                tried.push(now.as_secs());
                backoffs.failed("ns1", now, jitter());
            }
            now += interval;
        }
        tried
    }

    #[test]
    fn without_jitter_the_waits_double_from_the_next_pass() {
        // Failure 1 retries at the next pass; then 1, 3, 7, 15, 31 s are skipped.
        assert_eq!(attempts(S, 60 * S, || 0.0), [0, 1, 2, 5, 12, 27, 58]);
    }

    #[test]
    fn the_wait_stops_growing_at_five_minutes_plus_jitter() {
        assert_eq!(delay(S, 9, 0.0), 256 * S);
        assert_eq!(delay(S, 10, 0.0), MAX_BACKOFF);
        assert_eq!(delay(S, 1000, 0.0), MAX_BACKOFF);
        assert_eq!(delay(S, u32::MAX, 0.5), MAX_BACKOFF + MAX_BACKOFF / 2);
        // An interval above the cap: without jitter, failures never skip a pass.
        let long = Duration::from_secs(600);
        assert_eq!(delay(long, 1, 0.0), long);
        assert_eq!(delay(long, 5, 0.0), long);
    }

    #[test]
    fn jitter_adds_up_to_as_much_again_and_no_more() {
        assert_eq!(delay(10 * S, 3, 0.0), 40 * S);
        assert_eq!(delay(10 * S, 3, 0.25), 50 * S);
        assert_eq!(delay(10 * S, 3, 1.0), 80 * S);
        // A draw out of range neither shortens the wait nor panics.
        for bad in [-1.0, 7.0, f64::NAN, f64::INFINITY] {
            assert_eq!(delay(10 * S, 3, bad), 40 * S, "{bad}");
        }
    }

    #[test]
    fn jitter_can_push_the_first_retry_one_pass_later() {
        // Passes start at 0 s and 1 s; the first one took 100 ms.
        let ended = S / 10;
        let mut backoffs = Backoffs::new(S);
        backoffs.failed("ns1", ended, 0.5);
        assert!(backoffs.resting(S).is_empty());
        backoffs.succeeded("ns1");
        backoffs.failed("ns1", ended, 0.9375);
        assert_eq!(
            backoffs.resting(S).get("ns1"),
            Some(&Duration::from_micros(37_500))
        );
    }

    #[test]
    fn a_success_resets_the_schedule_and_targets_are_independent() {
        let mut backoffs = Backoffs::new(S);
        for t in [0, 1, 2] {
            backoffs.failed("ns1", t * S, 0.0);
        }
        backoffs.failed("lb-01", 2 * S, 0.0);
        let resting = backoffs.resting(3 * S);
        assert_eq!(resting.get("ns1"), Some(&(2 * S)));
        assert_eq!(resting.get("lb-01"), None, "one failure: retried next pass");

        backoffs.succeeded("ns1");
        assert!(backoffs.resting(3 * S).is_empty());
        // Failing again starts from the first step: retried at the next pass.
        backoffs.failed("ns1", 3 * S, 0.0);
        assert!(!backoffs.resting(4 * S).contains_key("ns1"));
        backoffs.failed("ns1", 4 * S, 0.0);
        assert_eq!(backoffs.resting(4 * S).get("ns1"), Some(&S));
    }

    #[test]
    fn a_target_that_rested_keeps_its_place_in_the_schedule() {
        // Asking who rests changes nothing: only attempts move the schedule on.
        let mut backoffs = Backoffs::new(S);
        for t in [0, 1, 2] {
            backoffs.failed("ns1", t * S, 0.0);
        }
        for t in [3, 4] {
            assert!(backoffs.resting(t * S).contains_key("ns1"));
        }
        assert!(!backoffs.resting(5 * S).contains_key("ns1"));
        backoffs.failed("ns1", 5 * S, 0.0);
        assert_eq!(backoffs.resting(5 * S).get("ns1"), Some(&(7 * S)));
    }
}
