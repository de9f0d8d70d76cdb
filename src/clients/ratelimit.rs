//! What an API's answer headers say about waiting: `Retry-After`, and the request budget
//! in the common rate-limit headers. Pure: the wall-clock time is passed in.
//!
//! Understood budget headers, first match wins:
//! - `ratelimit: "default";r=50;t=30` (the IETF draft's structured form, Cloudflare): each
//!   item's remaining quota `r` and seconds to its reset `t`;
//! - `ratelimit-remaining` / `ratelimit-reset` (DigitalOcean, Hetzner, older drafts);
//! - `x-ratelimit-remaining` / `x-ratelimit-reset` (GitHub and many others).
//!
//! A reset is a Unix time for DigitalOcean, Hetzner and GitHub and seconds from now for the
//! drafts; values from [`UNIX_TIME_FROM`] on are taken as Unix times.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// Unix times have been above this since 2001; no API asks to wait 31 years.
const UNIX_TIME_FROM: u64 = 1_000_000_000;

/// What an answer says about the request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Nothing understood (or the reset is not said): no reason to wait.
    Unknown,
    /// Requests are left, or the budget has been refilled already.
    Left,
    /// None left until this much later.
    ExhaustedFor(Duration),
}

/// The wait an answer's `Retry-After` asks for (RFC 9110 §10.2.3): delay-seconds or an
/// HTTP-date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`). A date already past asks for
/// no wait; a value that is neither is ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = SystemTime::from(OffsetDateTime::parse(value, &Rfc2822).ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// The request budget an answer's headers announce.
pub(crate) fn budget(headers: &HeaderMap, now: SystemTime) -> Budget {
    if let Some(budget) = text(headers, "ratelimit").and_then(structured) {
        return budget;
    }
    for (remaining, reset) in [
        ("ratelimit-remaining", "ratelimit-reset"),
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
    ] {
        let Some(left) = number(headers, remaining) else {
            continue;
        };
        if left > 0 {
            return Budget::Left;
        }
        return match number(headers, reset).map(|reset| reset_in(reset, now)) {
            Some(wait) if wait.is_zero() => Budget::Left,
            Some(wait) => Budget::ExhaustedFor(wait),
            None => Budget::Unknown,
        };
    }
    Budget::Unknown
}

/// `"default";r=0;t=30, "burst";r=5;t=2`: exhausted while any item is, until the latest of
/// their resets. `None` when no item has an `r`.
fn structured(value: &str) -> Option<Budget> {
    let mut seen = false;
    let mut exhausted: Option<Duration> = None;
    for item in value.split(',') {
        let (mut remaining, mut reset) = (None, None);
        for param in item.split(';').skip(1) {
            match param.trim().split_once('=') {
                Some(("r", v)) => remaining = v.trim().parse::<u64>().ok(),
                Some(("t", v)) => reset = v.trim().parse::<u64>().ok(),
                _ => {}
            }
        }
        let Some(remaining) = remaining else { continue };
        seen = true;
        if let (0, Some(t)) = (remaining, reset.filter(|t| *t > 0)) {
            let wait = Duration::from_secs(t);
            exhausted = Some(exhausted.map_or(wait, |w| w.max(wait)));
        }
    }
    match exhausted {
        Some(wait) => Some(Budget::ExhaustedFor(wait)),
        None if seen => Some(Budget::Left),
        None => None,
    }
}

/// How long until a reset given as a Unix time or as seconds from now.
fn reset_in(reset: u64, now: SystemTime) -> Duration {
    if reset < UNIX_TIME_FROM {
        return Duration::from_secs(reset);
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
    at.duration_since(now).unwrap_or_default()
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    text(headers, name)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    /// 2026-05-01T10:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_777_629_600)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let wait = |v: &str| retry_after(&headers(&[("retry-after", v)]), now());
        assert_eq!(wait("120"), Some(Duration::from_secs(120)));
        assert_eq!(wait(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            wait("Fri, 01 May 2026 10:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        // A date in the past: retry at once.
        assert_eq!(wait("Fri, 01 May 2026 09:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(wait("soon"), None);
        assert_eq!(wait("-5"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn digitalocean_and_hetzner_budgets_reset_at_a_unix_time() {
        let unix = |s: u64| (1_777_629_600 + s).to_string();
        let b = |remaining: &str, reset: &str| {
            budget(
                &headers(&[
                    ("ratelimit-limit", "5000"),
                    ("ratelimit-remaining", remaining),
                    ("ratelimit-reset", reset),
                ]),
                now(),
            )
        };
        assert_eq!(
            b("0", &unix(42)),
            Budget::ExhaustedFor(Duration::from_secs(42))
        );
        assert_eq!(b("4999", &unix(42)), Budget::Left);
        // The reset has passed: the budget is full again.
        assert_eq!(b("0", "1777629000"), Budget::Left);
        // Draft style: seconds from now.
        assert_eq!(b("0", "7"), Budget::ExhaustedFor(Duration::from_secs(7)));
        assert_eq!(
            budget(&headers(&[("ratelimit-remaining", "0")]), now()),
            Budget::Unknown
        );
    }

    #[test]
    fn x_ratelimit_headers_are_understood() {
        let h = headers(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1777629610"),
        ]);
        assert_eq!(
            budget(&h, now()),
            Budget::ExhaustedFor(Duration::from_secs(10))
        );
        let h = headers(&[("x-ratelimit-remaining", "12")]);
        assert_eq!(budget(&h, now()), Budget::Left);
        assert_eq!(budget(&HeaderMap::new(), now()), Budget::Unknown);
        let h = headers(&[("x-ratelimit-remaining", "lots")]);
        assert_eq!(budget(&h, now()), Budget::Unknown);
    }

    #[test]
    fn the_structured_ratelimit_header_waits_for_the_latest_exhausted_item() {
        let b = |v: &str| budget(&headers(&[("ratelimit", v)]), now());
        assert_eq!(b(r#""default";r=50;t=30"#), Budget::Left);
        assert_eq!(
            b(r#""default";r=0;t=30"#),
            Budget::ExhaustedFor(Duration::from_secs(30))
        );
        assert_eq!(
            b(r#""burst";r=0;t=2, "day";r=0;t=90, "default";r=3;t=30"#),
            Budget::ExhaustedFor(Duration::from_secs(90))
        );
        // No r anywhere: fall back to the other headers.
        let h = headers(&[("ratelimit", "garbage"), ("ratelimit-remaining", "9")]);
        assert_eq!(budget(&h, now()), Budget::Left);
    }
}
