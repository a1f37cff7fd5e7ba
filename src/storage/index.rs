//! The shape index (`shapes.idx`): every sealed shape's metadata in one file, so a restart reads
//! one file instead of opening a `meta.bin` per shape (issue 6: 100k shapes took 4–8 s to
//! restore, a third of it those opens).
//!
//! It is a cache, never the source of truth. A shape exists when its directory under `shapes/`
//! does and holds a valid `meta.bin`; the index only spares reading that `meta.bin`. Hence:
//!
//! - an entry is appended only after its shape's `meta.bin` and directory entries are durable
//!   (`Storage::seal_shapes`), so an entry never names a shape whose sealing a crash undid;
//! - `meta.bin` never changes once sealed and handles are never reused, so an entry stays true
//!   for as long as its directory exists; entries of removed shapes are skipped (the directory
//!   listing decides) and dropped when the index is rewritten;
//! - appends are not synced: a power loss may cut or tear the tail, and every record carries a
//!   checksum, so reading stops at the first record that does not check out and those shapes
//!   take the slow path (their `meta.bin`);
//! - after a failed append nothing more is appended in this process (the file's end is no longer
//!   known); the next start sees the missing entries and rewrites the file.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"AMPSIDX\n"` |
//! | 8..12 | version, u32 LE (1) |
//! | 12..16 | reserved, zero |
//! | then, per entry: 0..4 | length `n` of what follows the checksum, u32 LE |
//! | 4..8 | CRC-32 of those `n` bytes |
//! | 8..10 | handle length `h`, u16 LE |
//! | 10..10+h | handle (UTF-8) |
//! | 10+h..8+n | the shape's `meta.bin` payload (JSON) |

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::Path;

use super::io::{Fs, FsFile};

const MAGIC: &[u8; 8] = b"AMPSIDX\n";
const VERSION: u32 = 1;
/// Length of the file header.
pub const HEADER_LEN: u64 = 16;
/// An entry larger than this is not one of ours (a shape's metadata is a few KiB).
const MAX_ENTRY: usize = 64 << 20;

/// The file header.
fn header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends one encoded entry to `out`; `None` when the handle or payload is too large to encode.
pub fn encode_entry(out: &mut Vec<u8>, handle: &str, payload: &[u8]) -> Option<()> {
    let h = u16::try_from(handle.len()).ok()?;
    let n = 2 + handle.len() + payload.len();
    if n > MAX_ENTRY {
        return None;
    }
    let start = out.len();
    out.extend_from_slice(&u32::try_from(n).ok()?.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(handle.as_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

/// The entries of an index file as read at startup.
#[derive(Debug, Default)]
pub struct ShapeIndex {
    bytes: Vec<u8>,
    entries: HashMap<String, Range<usize>>,
    /// Length of the valid prefix (header and every entry that checks out).
    pub valid_len: u64,
    /// Whether the file was missing, had a bad header, or ended in bytes that do not check out.
    pub damaged: bool,
}

impl ShapeIndex {
    /// Decodes an index file's bytes; total: whatever does not check out ends the entries.
    pub fn decode(bytes: Vec<u8>) -> ShapeIndex {
        let mut idx = ShapeIndex {
            bytes: Vec::new(),
            entries: HashMap::new(),
            valid_len: 0,
            damaged: true,
        };
        if bytes.get(0..16) != Some(&header()[..]) {
            return idx;
        }
        let mut pos = 16usize;
        while let Some((handle, payload, next)) = entry_at(&bytes, pos) {
            // A later entry for the same handle cannot happen (sealed once); keep the first.
            idx.entries.entry(handle).or_insert(payload);
            pos = next;
        }
        idx.valid_len = pos as u64;
        idx.damaged = pos != bytes.len();
        idx.bytes = bytes;
        idx
    }

    /// The stored `meta.bin` payload of `handle`, if the index has it.
    pub fn get(&self, handle: &str) -> Option<&[u8]> {
        self.entries
            .get(handle)
            .and_then(|r| self.bytes.get(r.clone()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The entry starting at `pos`: handle, payload range and the next position.
fn entry_at(bytes: &[u8], pos: usize) -> Option<(String, Range<usize>, usize)> {
    let n = usize::try_from(u32::from_le_bytes(
        bytes.get(pos..pos.checked_add(4)?)?.try_into().ok()?,
    ))
    .ok()?;
    if !(2..=MAX_ENTRY).contains(&n) {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
    let end = pos.checked_add(8)?.checked_add(n)?;
    let body = bytes.get(pos + 8..end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let h = usize::from(u16::from_le_bytes(body.get(0..2)?.try_into().ok()?));
    let handle = std::str::from_utf8(body.get(2..2usize.checked_add(h)?)?).ok()?;
    Some((handle.to_owned(), pos + 10 + h..end, end))
}

/// Reads the index at `path`; a missing or unreadable file is an empty, damaged index.
pub fn read(fs: &Fs, path: &Path) -> ShapeIndex {
    match fs.read(path) {
        Ok(bytes) => ShapeIndex::decode(bytes),
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "shape index unreadable: shapes restore from their own metadata");
            }
            // No bytes at all: a bad header, hence damaged (the start writes a fresh one).
            ShapeIndex::decode(Vec::new())
        }
    }
}

/// Appends entries at the known end of the file.
#[derive(Debug)]
pub struct Appender {
    file: FsFile,
    len: u64,
}

impl Appender {
    /// Continues an existing index whose valid prefix is `len` bytes long and is the whole file.
    pub fn open(fs: &Fs, path: &Path, len: u64) -> io::Result<Appender> {
        Ok(Appender {
            file: fs.open_write(path)?,
            len,
        })
    }

    /// Writes a fresh index holding `entries` (temp file, sync, rename, directory sync) and
    /// returns an appender at its end.
    pub fn rewrite<'a>(
        fs: &Fs,
        path: &Path,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> io::Result<Appender> {
        let mut buf = header().to_vec();
        for (handle, payload) in entries {
            // An entry too large to encode is left out: that shape takes the slow path.
            let _ = encode_entry(&mut buf, handle, payload);
        }
        let tmp = path.with_extension("tmp");
        let f = fs.create_truncate(&tmp)?;
        f.write_all_at(&buf, 0)?;
        f.sync_all()?;
        drop(f);
        fs.rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs.sync_dir(dir)?;
        }
        Appender::open(fs, path, buf.len() as u64)
    }

    /// Appends entries (not synced: see the module header).
    pub fn append(&mut self, entries: &[(&str, &[u8])]) -> io::Result<()> {
        let mut buf = Vec::new();
        for (handle, payload) in entries {
            let _ = encode_entry(&mut buf, handle, payload);
        }
        self.file.write_all_at(&buf, self.len)?;
        self.len += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = header().to_vec();
        encode_entry(&mut b, "h1", br#"{"a":1}"#).unwrap();
        encode_entry(&mut b, "h2", br#"{"b":2}"#).unwrap();
        b
    }

    #[test]
    fn entries_round_trip() {
        let idx = ShapeIndex::decode(sample());
        assert!(!idx.damaged);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.get("h1"), Some(&br#"{"a":1}"#[..]));
        assert_eq!(idx.get("h2"), Some(&br#"{"b":2}"#[..]));
        assert_eq!(idx.get("h3"), None);
    }

    #[test]
    fn a_torn_or_flipped_tail_keeps_the_entries_before_it() {
        let good = sample();
        let first_end = 16 + 8 + 2 + 2 + 7;
        for cut in 0..good.len() {
            let idx = ShapeIndex::decode(good[..cut].to_vec());
            // Only a cut at an entry boundary leaves a file with nothing left over.
            assert_eq!(idx.damaged, cut != 16 && cut != first_end, "cut at {cut}");
            assert_eq!(idx.get("h1").is_some(), cut >= first_end, "cut at {cut}");
            assert_eq!(idx.get("h2"), None);
        }
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let idx = ShapeIndex::decode(flipped);
        assert!(idx.damaged);
        assert_eq!(idx.valid_len, first_end as u64);
        assert!(idx.get("h1").is_some() && idx.get("h2").is_none());
        // A bad header trusts nothing.
        let mut bad = good;
        bad[9] = 9;
        assert!(ShapeIndex::decode(bad).is_empty());
    }

    #[test]
    fn rewrite_then_append_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shapes.idx");
        let fs = Fs::real();
        let mut a = Appender::rewrite(&fs, &p, [("x", &b"{}"[..])]).unwrap();
        a.append(&[("y", b"[1]"), ("z", b"[2]")]).unwrap();
        let idx = read(&fs, &p);
        assert!(!idx.damaged);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.get("z"), Some(&b"[2]"[..]));
        assert_eq!(idx.valid_len, std::fs::metadata(&p).unwrap().len());
        assert!(read(&fs, &dir.path().join("none")).damaged);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = header().to_vec();
            b.extend_from_slice(&bytes);
            let idx = ShapeIndex::decode(b.clone());
            prop_assert!(idx.valid_len as usize <= b.len());
        }
    }
}
