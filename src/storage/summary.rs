//! The clean-shutdown summary (`logs.sum`): every shape log's writer state as a clean
//! shutdown left it, so the next start resumes each writer without reading its log.
//!
//! Recovering a log reads the whole file to find its chunks, its last entry and where the open
//! chunk stands; at 100k shapes those reads were ~40% of a restart (issue 6). After a clean
//! shutdown that state is already known: every log is synced and ends at a transaction end.
//!
//! Invariants:
//! - Written only at a clean shutdown, after every listed log is durable and while this
//!   process still holds the replication slot (no other instance can start before it is
//!   complete), and only for logs whose writer holds nothing pending, unsynced or uncommitted
//!   ([`LogWriter::clean_state`](super::log::LogWriter::clean_state)). Temp file, sync,
//!   rename, directory sync: it is whole or absent.
//! - Consumed once: the next start reads it and removes it (durably) before the stream starts,
//!   so no log changes while a summary of it exists. If the removal fails the summary is not
//!   used. A crash at any later point therefore finds no summary and scans the logs.
//! - One checksum covers the whole file: anything that does not check out (torn, flipped,
//!   another version) is no summary at all, and every log is scanned as before. Entries are
//!   also checked for consistency ([`LogState::is_consistent`]) when a writer resumes.
//! - Decoding is total: any bytes give a summary or `None`, never a panic.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"AMPLSUM\n"` |
//! | 8..12 | version, u32 LE (1) |
//! | 12..16 | entry count, u32 LE |
//! | then, per entry | handle length u16 LE, handle (UTF-8), file length u64, open-chunk bytes u64, latest offset (tx u64, op u64), chunk count u32, per chunk: end offset (tx u64, op u64), end position u64 (all LE) |
//! | last 4 | CRC-32 of everything before, u32 LE |

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::format::FILE_HEADER_LEN;
use super::io::Fs;
use super::log::Chunk;
use crate::offset::LogOffset;

const MAGIC: &[u8; 8] = b"AMPLSUM\n";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 16;

/// A log writer's durable state at a transaction end: what [`LogWriter::recover`] would find
/// by reading the file.
///
/// [`LogWriter::recover`]: super::log::LogWriter::recover
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    pub file_len: u64,
    pub open_chunk_bytes: u64,
    pub latest: LogOffset,
    pub chunks: Vec<Chunk>,
}

impl LogState {
    /// What any log written by us satisfies: chunk ends strictly increase in offset and
    /// position, lie inside the file and at or before the latest entry. A state that does not
    /// is not trusted (the log is scanned instead).
    pub fn is_consistent(&self) -> bool {
        let ordered = self
            .chunks
            .windows(2)
            .all(|w| w[0].end < w[1].end && w[0].end_pos < w[1].end_pos);
        let inside = self
            .chunks
            .iter()
            .all(|c| c.end_pos > FILE_HEADER_LEN && c.end_pos <= self.file_len);
        let before_latest = self.chunks.last().is_none_or(|c| c.end <= self.latest);
        // The snapshot ends in a closed chunk before any replicated entry.
        let has_snapshot = self.chunks.first().is_some_and(|c| c.end.tx == 0);
        ordered
            && inside
            && before_latest
            && has_snapshot
            && self.file_len >= FILE_HEADER_LEN
            && self.open_chunk_bytes <= self.file_len
    }
}

/// Encodes a summary of `entries`; an entry whose handle does not fit is left out (that log
/// is scanned at the next start).
pub fn encode<'a>(entries: impl IntoIterator<Item = (&'a str, &'a LogState)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    for (handle, s) in entries {
        let (Ok(h), Ok(n), Some(next)) = (
            u16::try_from(handle.len()),
            u32::try_from(s.chunks.len()),
            count.checked_add(1),
        ) else {
            continue;
        };
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(handle.as_bytes());
        for v in [s.file_len, s.open_chunk_bytes, s.latest.tx, s.latest.op] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&n.to_le_bytes());
        for c in &s.chunks {
            for v in [c.end.tx, c.end.op, c.end_pos] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        count = next;
    }
    out[12..16].copy_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A little-endian reader over a byte slice that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn offset(&mut self) -> Option<LogOffset> {
        Some(LogOffset::new(self.u64()?, self.u64()?))
    }
}

/// Decodes a summary; `None` unless the whole file checks out.
pub fn decode(bytes: &[u8]) -> Option<HashMap<String, LogState>> {
    let body_len = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc
        || body.get(0..8)? != MAGIC
        || body.get(8..12)? != VERSION.to_le_bytes()
    {
        return None;
    }
    let mut r = Reader {
        bytes: body,
        pos: 12,
    };
    let count = r.u32()?;
    let mut out = HashMap::new();
    for _ in 0..count {
        let h = usize::from(r.u16()?);
        let handle = std::str::from_utf8(r.take(h)?).ok()?.to_owned();
        let file_len = r.u64()?;
        let open_chunk_bytes = r.u64()?;
        let latest = r.offset()?;
        let n = r.u32()?;
        // Bounded by the bytes left, so a forged count cannot reserve memory.
        let mut chunks = Vec::with_capacity(usize::try_from(n).ok()?.min(body.len() / 24));
        for _ in 0..n {
            chunks.push(Chunk {
                end: r.offset()?,
                end_pos: r.u64()?,
            });
        }
        out.insert(
            handle,
            LogState {
                file_len,
                open_chunk_bytes,
                latest,
                chunks,
            },
        );
    }
    (r.pos == body.len()).then_some(out)
}

/// Writes a summary at `path` (temp file, sync, rename, directory sync).
pub fn write<'a>(
    fs: &Fs,
    path: &Path,
    entries: impl IntoIterator<Item = (&'a str, &'a LogState)>,
) -> io::Result<()> {
    let bytes = encode(entries);
    let tmp = path.with_extension("tmp");
    let f = fs.create_truncate(&tmp)?;
    f.write_all_at(&bytes, 0)?;
    f.sync_all()?;
    drop(f);
    fs.rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Reads the summary at `path` and removes it durably. `None` when there is none, it does not
/// check out, or it could not be removed (a summary left in place could outlive the logs it
/// describes, so it is then not used).
pub fn take(fs: &Fs, path: &Path) -> Option<HashMap<String, LogState>> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "log summary unreadable: every log is scanned");
            }
            return None;
        }
    };
    let removed = fs
        .remove_file(path)
        .and_then(|()| path.parent().map_or(Ok(()), |dir| fs.sync_dir(dir)));
    if let Err(e) = removed {
        tracing::warn!(path = %path.display(), error = %e, "log summary not removable: not used, every log is scanned");
        return None;
    }
    let decoded = decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(path = %path.display(), "log summary does not check out: every log is scanned");
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(chunks: usize) -> LogState {
        LogState {
            file_len: 10_000,
            open_chunk_bytes: 17,
            latest: LogOffset::new(900, 3),
            chunks: (0..chunks)
                .map(|i| Chunk {
                    end: LogOffset::new(if i == 0 { 0 } else { 100 * i as u64 }, 0),
                    end_pos: 100 + 50 * i as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn summaries_round_trip() {
        let (a, b) = (state(1), state(3));
        let bytes = encode([("h-1", &a), ("h-2", &b)]);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.len(), 2);
        assert_eq!(back["h-1"], a);
        assert_eq!(back["h-2"], b);
        assert!(a.is_consistent() && b.is_consistent());
        assert_eq!(decode(&encode([])).map(|m| m.len()), Some(0));
    }

    #[test]
    fn any_damage_is_no_summary() {
        let bytes = encode([("h-1", &state(2)), ("h-2", &state(1))]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_none(), "flip at {i}.{bit}");
            }
        }
    }

    #[test]
    fn inconsistent_states_are_not_trusted() {
        let good = state(3);
        let mut unordered = good.clone();
        unordered.chunks.swap(1, 2);
        let mut outside = good.clone();
        outside.file_len = 150;
        let mut past_latest = good.clone();
        past_latest.latest = LogOffset::new(150, 0);
        let mut no_snapshot = good.clone();
        no_snapshot.chunks.remove(0);
        let mut short = good.clone();
        short.file_len = 3;
        short.chunks.clear();
        for bad in [unordered, outside, past_latest, no_snapshot, short] {
            assert!(!bad.is_consistent(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// A valid checksum over garbage (what a forger could produce) still decodes totally.
        #[test]
        fn checksummed_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            bytes.extend_from_slice(&body);
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&bytes);
        }
    }
}
