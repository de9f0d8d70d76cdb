//! A TSIG key file, as `tsig-keygen` writes it or as anyone may have edited it.
#![no_main]

use ipdrift::dns::tsig::parse_key_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_key_file(text);
    }
});
