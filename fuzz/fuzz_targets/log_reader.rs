//! The on-disk log reader: header check and recovery scan never panic on any bytes, and the
//! committed prefix they report is within the input and rescans to itself.
#![no_main]

use ampere::storage::format::{check_file_header, records, scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_file_header(data);
    let res = scan(data);
    let len = usize::try_from(res.committed_len).expect("fits");
    assert!(len <= data.len());
    let again = scan(&data[..len]);
    assert_eq!(again.committed_len, res.committed_len);
    assert!(!again.dropped_tail);
    for r in records(data) {
        assert!(r.size <= data.len());
    }
});
