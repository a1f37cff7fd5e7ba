//! The on-disk shape log format: a versioned header, then self-validating records.
//!
//! Every shape has one append-only file `log` holding the exact JSON bytes the API serves, so a
//! response is a byte range of the file, re-framed. Each record checks itself (length + CRC-32C
//! over everything after the CRC), so recovery finds the last complete transaction without
//! trusting any separate pointer. A torn or corrupt tail is the end of the log, never a panic.
//!
//! File header (16 bytes):
//!
//! | bytes | field | value |
//! |---|---|---|
//! | 0..8 | magic | `b"AMPLOG\r\n"` |
//! | 8..12 | version | u32 LE, currently 1 |
//! | 12..16 | crc | CRC-32 (IEEE) of bytes 0..12, u32 LE |
//!
//! Record (28-byte header, then `len` payload bytes):
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..4 | len | payload length, u32 LE (at most [`MAX_PAYLOAD`]) |
//! | 4..8 | crc | CRC-32 of bytes 8..28 and the payload, u32 LE |
//! | 8 | kind | 1 = entry (a JSON message), 2 = chunk end (no payload) |
//! | 9 | flags | bit 0 = last record of a transaction in this shape, bit 1 = snapshot end |
//! | 10..12 | reserved | zero |
//! | 12..20 | tx | offset tx part, u64 LE |
//! | 20..28 | op | offset op part, u64 LE (`u64::MAX` = inf) |
//!
//! Entry records of the snapshot region have `tx = 0`, `op = chunk index`. A chunk-end record's
//! `(tx, op)` is the chunk's end offset (`0_k` for snapshot chunk k; the last entry's offset for
//! log chunks). The committed prefix of a file ends after the last record with the transaction
//! flag, or after a chunk-end record that follows only committed records.

use crate::offset::LogOffset;

pub const MAGIC: &[u8; 8] = b"AMPLOG\r\n";
pub const VERSION: u32 = 1;
pub const FILE_HEADER_LEN: u64 = 16;
pub const RECORD_HEADER_LEN: usize = 28;
/// One JSON message may not exceed this (a whole row, well above Postgres' 1 GB field limit is
/// impossible anyway; this bounds what a corrupt length can make us allocate).
pub const MAX_PAYLOAD: usize = 1 << 30;

pub const KIND_ENTRY: u8 = 1;
pub const KIND_CHUNK_END: u8 = 2;
pub const FLAG_TXN_END: u8 = 1;
pub const FLAG_SNAPSHOT_END: u8 = 2;

/// The file header bytes.
pub fn file_header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[0..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a file is not a readable log at all (a bad tail is not an error: see [`scan`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("log file header is truncated")]
    TruncatedHeader,
    #[error("log file magic does not match")]
    BadMagic,
    #[error("log file header checksum mismatch")]
    BadHeaderChecksum,
    #[error("log file version {0} is not supported (expected {VERSION})")]
    UnsupportedVersion(u32),
}

/// Validates the 16-byte file header.
pub fn check_file_header(bytes: &[u8]) -> Result<(), FormatError> {
    let h = bytes.get(0..16).ok_or(FormatError::TruncatedHeader)?;
    if &h[0..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if crc != crc32fast::hash(&h[0..12]) {
        return Err(FormatError::BadHeaderChecksum);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    Ok(())
}

/// Appends one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, kind: u8, flags: u8, offset: LogOffset, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&offset.tx.to_le_bytes());
    out.extend_from_slice(&offset.op.to_le_bytes());
    out.extend_from_slice(payload);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start + 8..]);
    let crc = hasher.finalize();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub flags: u8,
    pub offset: LogOffset,
    pub payload: &'a [u8],
    /// Total encoded size (header + payload).
    pub size: usize,
}

impl Record<'_> {
    pub fn is_txn_end(&self) -> bool {
        self.flags & FLAG_TXN_END != 0
    }
    pub fn is_snapshot_end(&self) -> bool {
        self.flags & FLAG_SNAPSHOT_END != 0
    }
}

/// Decodes the record at the start of `buf`. `None` for a torn or corrupt record (the end of
/// the readable log).
pub fn decode_record(buf: &[u8]) -> Option<Record<'_>> {
    let header = buf.get(0..RECORD_HEADER_LEN)?;
    let len = usize::try_from(u32::from_le_bytes(header[0..4].try_into().ok()?)).ok()?;
    if len > MAX_PAYLOAD {
        return None;
    }
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let end = RECORD_HEADER_LEN.checked_add(len)?;
    let body = buf.get(8..end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let kind = header[8];
    if kind != KIND_ENTRY && kind != KIND_CHUNK_END {
        return None;
    }
    let tx = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let op = u64::from_le_bytes(header[20..28].try_into().ok()?);
    Some(Record {
        kind,
        flags: header[9],
        offset: LogOffset { tx, op },
        payload: &buf[RECORD_HEADER_LEN..end],
        size: end,
    })
}

/// Iterates the records of a byte range that is known to be valid (a durable range).
pub fn records(buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rec = decode_record(buf.get(pos..)?)?;
        pos += rec.size;
        Some(rec)
    })
}

/// What a recovery scan learned from a file body (everything after the file header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Length of the committed prefix of the body (truncate the file to header + this).
    pub committed_len: u64,
    /// Closed chunks in the committed prefix: (end offset, body position just after the chunk).
    pub chunks: Vec<(LogOffset, u64)>,
    /// Offset of the last committed entry, if any.
    pub last_entry: Option<LogOffset>,
    /// Whether the committed prefix contains the snapshot-end message.
    pub snapshot_end: bool,
    /// Bytes of entries after the last closed chunk (to continue chunk accounting).
    pub open_chunk_bytes: u64,
    /// Whether anything after the committed prefix had to be dropped.
    pub dropped_tail: bool,
    /// Whether the scan ended at the end of the bytes or at a record cut short by the end of
    /// the file (an interrupted append). False when it stopped at a record whose bytes are all
    /// there but do not check out: damage, which may have hit acknowledged data.
    pub clean_end: bool,
    /// Smallest commit LSN (`tx > 0`) among the records cut off: complete records of an
    /// unfinished transaction, and a last record cut short if its offset field survived.
    pub dropped_min_tx: Option<u64>,
}

/// Scans a file body, stopping at the first torn or corrupt record, and reports the committed
/// prefix: a partially written transaction at the end is not part of it.
pub fn scan(body: &[u8]) -> ScanResult {
    let mut res = ScanResult::default();
    let mut pos: usize = 0;
    let mut pending = false;
    // State at the last commit point, so a dropped tail does not leak into the result.
    let mut open_bytes: u64 = 0;
    let mut chunks_at_commit = 0usize;
    let mut last_at_commit = None;
    let mut open_at_commit = 0u64;
    let mut snap_end_at_commit = false;
    let mut snap_end = false;
    let mut last_entry = None;
    while let Some(rec) = body.get(pos..).and_then(decode_record) {
        pos += rec.size;
        let pos64 = pos as u64;
        match rec.kind {
            KIND_ENTRY => {
                open_bytes += rec.payload.len() as u64 + 1;
                last_entry = Some(rec.offset);
                if rec.is_snapshot_end() {
                    snap_end = true;
                }
                pending = !rec.is_txn_end();
            }
            _ => {
                res.chunks.push((rec.offset, pos64));
                open_bytes = 0;
            }
        }
        if !pending {
            res.committed_len = pos64;
            chunks_at_commit = res.chunks.len();
            last_at_commit = last_entry;
            open_at_commit = open_bytes;
            snap_end_at_commit = snap_end;
        }
    }
    res.chunks.truncate(chunks_at_commit);
    res.last_entry = last_at_commit;
    res.open_chunk_bytes = open_at_commit;
    res.snapshot_end = snap_end_at_commit;
    res.dropped_tail = res.committed_len != body.len() as u64;
    res.clean_end = pos == body.len() || cut_short(&body[pos..]);
    // What the cut-off tail held, so recovery can tell an interrupted append (never
    // acknowledged) from lost acknowledged data.
    let committed = usize::try_from(res.committed_len).unwrap_or(usize::MAX);
    let mut min_tx: Option<u64> = None;
    let mut note = |tx: u64| {
        if tx > 0 {
            min_tx = Some(min_tx.map_or(tx, |m| m.min(tx)));
        }
    };
    let mut p = committed;
    let mut last_tx = last_at_commit.map_or(0, |o| o.tx);
    while let Some(rec) = body.get(p..).and_then(decode_record) {
        note(rec.offset.tx);
        last_tx = last_tx.max(rec.offset.tx);
        p += rec.size;
    }
    // The record the end of the file cut short: its header is outside the checksum it failed,
    // so its tx field may itself be torn (a power loss that extended the file with zeros keeps
    // only the field's low bytes). Records are appended in tx order, so a value below the last
    // decoded record's tx is such a torn field and proves nothing; a plausible one still counts.
    if let Some(tx) = body
        .get(p..)
        .and_then(|r| r.get(12..20))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .filter(|&tx| tx >= last_tx)
    {
        note(tx);
    }
    res.dropped_min_tx = min_tx;
    res
}

/// Whether `rest` is not a complete record of ours: a prefix that the end of the file cut off
/// (its declared length runs past the end) or bytes whose declared length no record can have
/// (garbage from an interrupted extension of the file). A complete record that fails its checks
/// is damage instead. Either way `dropped_min_tx` tells recovery whether an acknowledged
/// transaction was hit.
fn cut_short(rest: &[u8]) -> bool {
    // A file extended but never written (zeros after a power loss) holds no record of ours.
    // Likewise a file that ends in a zero byte: its size reached the disk before the last of
    // its data did (a power loss during an append). No complete entry record ends in a zero
    // byte (the payload is JSON); a damaged chunk-end record of an acknowledged transaction
    // would, and the acknowledged-position check in recovery catches it.
    if rest.last().is_none_or(|&b| b == 0) {
        return true;
    }
    let Some(len) = rest
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    else {
        return true;
    };
    match usize::try_from(len) {
        Ok(l) if l <= MAX_PAYLOAD => l
            .checked_add(RECORD_HEADER_LEN)
            .is_none_or(|need| need > rest.len()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        encode_record(&mut b, KIND_ENTRY, 0, LogOffset::new(0, 0), b"{\"a\":1}");
        encode_record(
            &mut b,
            KIND_ENTRY,
            FLAG_TXN_END | FLAG_SNAPSHOT_END,
            LogOffset::new(0, 0),
            b"{}",
        );
        encode_record(&mut b, KIND_CHUNK_END, 0, LogOffset::new(0, 0), b"");
        encode_record(&mut b, KIND_ENTRY, 0, LogOffset::new(100, 0), b"x");
        encode_record(
            &mut b,
            KIND_ENTRY,
            FLAG_TXN_END,
            LogOffset::new(100, 2),
            b"y",
        );
        encode_record(&mut b, KIND_ENTRY, 0, LogOffset::new(200, 0), b"partial");
        b
    }

    #[test]
    fn header_round_trips_and_detects_a_flipped_byte() {
        let h = file_header();
        assert_eq!(check_file_header(&h), Ok(()));
        for i in 0..16 {
            let mut bad = h;
            bad[i] ^= 0x40;
            assert!(check_file_header(&bad).is_err(), "byte {i}");
        }
        assert_eq!(
            check_file_header(&h[..10]),
            Err(FormatError::TruncatedHeader)
        );
    }

    #[test]
    fn scan_drops_a_partial_transaction() {
        let b = sample();
        let r = scan(&b);
        assert!(r.dropped_tail);
        assert_eq!(r.last_entry, Some(LogOffset::new(100, 2)));
        assert_eq!(r.chunks.len(), 1);
        assert!(r.snapshot_end);
        let kept = &b[..usize::try_from(r.committed_len).unwrap()];
        assert_eq!(records(kept).count(), 5);
        assert_eq!(r.open_chunk_bytes, 2 + 2);
    }

    #[test]
    fn a_record_whose_data_never_reached_the_disk_is_an_interrupted_append() {
        let mut b = Vec::new();
        encode_record(
            &mut b,
            KIND_ENTRY,
            FLAG_TXN_END,
            LogOffset::new(10, 0),
            b"{}",
        );
        let committed = b.len();
        encode_record(
            &mut b,
            KIND_ENTRY,
            FLAG_TXN_END,
            LogOffset::new(20, 0),
            b"{\"a\":1}",
        );
        // The size reached the disk, the last bytes did not: zeros.
        let n = b.len();
        b[n - 4..].fill(0);
        let r = scan(&b);
        assert_eq!(r.committed_len, committed as u64);
        assert!(r.clean_end, "a zero-filled tail is an interrupted append");
        assert_eq!(r.dropped_min_tx, Some(20));
        // A flipped byte leaves no zero at the end: damage.
        let mut f = b.clone();
        f[n - 4..].copy_from_slice(b"1}}}");
        assert!(!scan(&f).clean_end);
    }

    #[test]
    fn a_torn_header_does_not_claim_an_older_transaction() {
        // Seed 5256874265737799588 of the power-loss test: the file was extended with zeros
        // from inside the tx field of an unacknowledged record, leaving its low byte only.
        let mut b = Vec::new();
        encode_record(
            &mut b,
            KIND_ENTRY,
            FLAG_TXN_END,
            LogOffset::new(2080, 6),
            b"{}",
        );
        let committed = b.len();
        encode_record(&mut b, KIND_ENTRY, 0, LogOffset::new(2110, 0), b"{\"a\":1}");
        let n = b.len();
        b[committed + 13..n].fill(0);
        let r = scan(&b);
        assert_eq!(r.committed_len, committed as u64);
        assert!(r.clean_end);
        assert_eq!(r.dropped_min_tx, None, "tx {} is a torn field", 2110 % 256);
        // The same record with its tx intact still counts.
        b[committed + 13] = (2110u64 >> 8) as u8;
        assert_eq!(scan(&b).dropped_min_tx, Some(2110));
    }

    #[test]
    fn a_flipped_byte_ends_the_log_there() {
        let b = sample();
        let first = decode_record(&b).unwrap().size;
        let mut bad = b.clone();
        bad[first + 28] ^= 1; // the second record's first payload byte
        let r = scan(&bad);
        assert_eq!(r.committed_len, 0);
        assert_eq!(r.last_entry, None);
        assert!(r.dropped_tail);
    }

    proptest! {
        #[test]
        fn scan_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let r = scan(&bytes);
            prop_assert!(r.committed_len <= bytes.len() as u64);
        }

        #[test]
        fn every_truncation_keeps_a_committed_prefix(cut in 0usize..200) {
            let b = sample();
            let cut = cut.min(b.len());
            let r = scan(&b[..cut]);
            prop_assert!(r.committed_len <= cut as u64);
            let kept = &b[..usize::try_from(r.committed_len).unwrap()];
            // The kept prefix re-scans to itself with no dropped tail.
            let again = scan(kept);
            prop_assert_eq!(again.committed_len, r.committed_len);
            prop_assert!(!again.dropped_tail);
        }
    }
}
