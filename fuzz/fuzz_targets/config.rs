//! The config file: TOML, checked and typed by the pure `ipdrift::config::parse`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ipdrift::config::parse(text, Path::new("/nonexistent/ipdrift.toml"));
    }
});
