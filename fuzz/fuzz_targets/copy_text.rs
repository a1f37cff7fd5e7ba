//! The COPY text decoder never panics on any line and column count.
#![no_main]

use ampere::pg::copy_text::decode_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, line)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    if decode_line(line, usize::from(n % 16), &mut out).is_ok() {
        assert_eq!(out.len(), usize::from(n % 16));
    }
});
