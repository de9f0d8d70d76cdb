//! An audit log, whatever a crash, a full disk or an editor left in it: read, turned into
//! incidents (whole, and in a window from its first record on) and printed in each format
//! `ipdrift timeline` has. The input, if short, is also tried as a `--since` value.
#![no_main]

use ipdrift::audit::{self, render, timeline};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let parsed = audit::parse(data);
    let since = parsed.records.first().map(|r| r.ts);
    for window in [None, since] {
        let built = timeline::build(&parsed.records, window, None, parsed.skipped.clone());
        let _ = render::text(&built);
        let _ = render::markdown(&built);
        let _ = render::json(&built);
    }
    if data.len() < 64
        && let Ok(text) = std::str::from_utf8(data)
    {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time");
        let _ = timeline::parse_time(text, now);
    }
});
