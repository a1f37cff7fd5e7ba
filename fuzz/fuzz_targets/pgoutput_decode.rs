//! The pgoutput decoder is total: any bytes give a message or a typed error, never a panic;
//! a decoded message re-encodes and decodes to itself.
#![no_main]

use ampere::pg::pgoutput::{decode, encode};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(msg) = decode(&buf) {
        let mut out = Vec::new();
        encode(&msg, &mut out);
        let again = decode(&Bytes::from(out)).expect("a re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
