//! What HAProxy's runtime API sends back: the answer to `show servers state web`, and a
//! whole response split into the answers of three commands.
#![no_main]

use ipdrift::lb::haproxy::protocol::{parse_servers_state, split_answers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The client reads the socket as UTF-8 (lossily): so does the target.
    let answer = String::from_utf8_lossy(data);
    let _ = parse_servers_state("web", &answer);
    let _ = split_answers(&answer, 3);
});
