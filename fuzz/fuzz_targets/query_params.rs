//! Query-string parsing and shape-parameter validation never panic on any query string.
#![no_main]

use ampere::http::params::{parse_query, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let raw = parse_query(&q);
    let _ = validate(&raw);
});
