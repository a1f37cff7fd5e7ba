//! One shape's log: the writer that appends and makes records durable, and the read planner that
//! turns a request offset into a byte range of the durable prefix.
//!
//! Invariants:
//! - Readers only ever see [`LogView`]s published after the bytes they describe were written and
//!   synced ("durable before visible"). The writer is the only publisher.
//! - Offsets strictly increase within the file; chunk boundaries are records in the file, so they
//!   survive restarts unchanged (a cached chunk URL keeps meaning the same bytes).
//! - A response never crosses a chunk boundary.
//! - The writer knows the file length that is durable (`synced_len`: everything before it was
//!   written and then synced without error). After a failed sync nothing past it is trusted:
//!   [`LogWriter::rewind`] cuts the file back to it rather than syncing again (a retried fsync
//!   can succeed after the kernel dropped the dirty pages of the failed one).
//! - Unsynced bytes are written and synced through the same descriptor, kept open only while
//!   there are unsynced bytes (an idle shape holds no descriptor).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    self, FILE_HEADER_LEN, FLAG_SNAPSHOT_END, FLAG_TXN_END, KIND_CHUNK_END, KIND_ENTRY,
};
use super::io::{Fs, FsFile};
use super::view::ViewCell;
use crate::offset::{LogOffset, RequestOffset};

/// Spacing of the seek points kept inside the open chunk, so a live reader near the tail scans at
/// most this many bytes before the data it wants.
const SEEK_POINT_SPACING: u64 = 16 * 1024;

/// A closed chunk: its end offset and the file position just after its chunk-end record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub end: LogOffset,
    pub end_pos: u64,
}

/// What readers may see of a log. Cheap to clone (two `Arc`s).
#[derive(Debug, Clone)]
pub struct LogView {
    /// File length readers may read (everything before it is durable).
    pub durable_len: u64,
    /// Offset of the last durable entry; `0_inf` for a complete snapshot with no changes yet.
    pub latest: LogOffset,
    /// Number of closed snapshot chunks (they are the first `snapshot_chunks` of `chunks`).
    pub snapshot_chunks: usize,
    pub snapshot_complete: bool,
    /// One allocation, like `points`; rebuilt when a chunk closes (rare: every chunk-size bytes).
    pub chunks: Arc<[Chunk]>,
    /// Seek points inside the open chunk: (offset of the last entry before `pos`, `pos`).
    /// One allocation (not an `Arc<Vec>`, which is two): every idle shape has one.
    pub points: Arc<[(LogOffset, u64)]>,
    /// The shape was removed; readers answer 409.
    pub gone: bool,
    /// The shape's snapshot failed; readers answer 503 rather than send clients into a 409 loop.
    pub failed: bool,
}

impl LogView {
    pub fn empty() -> LogView {
        LogView {
            durable_len: FILE_HEADER_LEN,
            latest: LogOffset::new(0, 0),
            snapshot_chunks: 0,
            snapshot_complete: false,
            chunks: Arc::new([]),
            points: Arc::new([]),
            gone: false,
            failed: false,
        }
    }
}

/// The result of planning a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPlan {
    /// Read `[start, end)`, keep entries with offset `> after` (all when `None`); respond with
    /// offset `response`.
    Range {
        start: u64,
        end: u64,
        after: Option<LogOffset>,
        response: LogOffset,
    },
    /// Nothing after the request offset: respond with offset `response` (= latest).
    AtEnd { response: LogOffset },
    /// The data is not written yet (snapshot still running): wait for the next view.
    NotReady,
    /// The request offset is beyond the end of the log.
    OutOfBounds,
}

/// Plans the response for a request offset against a view (http-protocol.md §6.1, §10).
pub fn plan_read(view: &LogView, req: RequestOffset) -> ReadPlan {
    let chunks = &view.chunks;
    let snap = view.snapshot_chunks;
    let o = match req {
        RequestOffset::Initial => {
            return match chunks.first() {
                Some(c) if snap > 0 => ReadPlan::Range {
                    start: FILE_HEADER_LEN,
                    end: c.end_pos,
                    after: None,
                    response: LogOffset::new(0, 0),
                },
                _ => ReadPlan::NotReady,
            };
        }
        RequestOffset::Now => {
            return if view.snapshot_complete {
                ReadPlan::AtEnd {
                    response: view.latest,
                }
            } else {
                ReadPlan::NotReady
            };
        }
        RequestOffset::At(o) => o,
    };
    if o.tx == 0 && o.op != LogOffset::INF_OP {
        let k = usize::try_from(o.op).unwrap_or(usize::MAX);
        let next = k.saturating_add(1);
        if next < snap {
            return ReadPlan::Range {
                start: chunks[k].end_pos,
                end: chunks[next].end_pos,
                after: None,
                response: chunks[next].end,
            };
        }
        if !view.snapshot_complete {
            return ReadPlan::NotReady;
        }
        // At or past the last snapshot chunk: continue as 0_inf.
        return plan_log_read(view, LogOffset::SNAPSHOT_END);
    }
    if !view.snapshot_complete {
        return ReadPlan::NotReady;
    }
    plan_log_read(view, o)
}

fn plan_log_read(view: &LogView, o: LogOffset) -> ReadPlan {
    if o > view.latest {
        return ReadPlan::OutOfBounds;
    }
    if o == view.latest {
        return ReadPlan::AtEnd {
            response: view.latest,
        };
    }
    let chunks = &view.chunks;
    let snap = view.snapshot_chunks;
    let log_chunks = &chunks[snap..];
    // First closed log chunk whose end is past `o`.
    let i = log_chunks.partition_point(|c| c.end <= o);
    let prev_end = |i: usize| -> u64 {
        if i == 0 {
            chunks
                .get(snap.wrapping_sub(1))
                .map_or(FILE_HEADER_LEN, |c| c.end_pos)
        } else {
            log_chunks[i - 1].end_pos
        }
    };
    if let Some(c) = log_chunks.get(i) {
        return ReadPlan::Range {
            start: prev_end(i),
            end: c.end_pos,
            after: Some(o),
            response: c.end,
        };
    }
    // In the open chunk: start at the last seek point at or before `o`.
    let mut start = prev_end(log_chunks.len());
    let p = view.points.partition_point(|(off, _)| *off <= o);
    if p > 0 {
        start = start.max(view.points[p - 1].1);
    }
    ReadPlan::Range {
        start,
        end: view.durable_len,
        after: Some(o),
        response: view.latest,
    }
}

/// Reads `[start, end)` of a log file (record bytes; see [`append_payloads`]).
pub fn read_range(fs: &Fs, path: &Path, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(end.saturating_sub(start))
        .map_err(|_| io::Error::other("range too large"))?;
    fs.read_at(path, start, len)
}

/// The JSON payloads of the entries in a buffer read by [`read_range`] after `after`.
pub fn payloads(buf: &[u8], after: Option<LogOffset>) -> impl Iterator<Item = &[u8]> {
    format::records(buf)
        .filter(move |rec| rec.kind == KIND_ENTRY && after.is_none_or(|a| rec.offset > a))
        .map(|rec| rec.payload)
}

/// Joins the entries of a buffer read by [`read_range`] into `out` as comma-separated JSON.
/// Returns the number of entries written.
pub fn append_payloads(buf: &[u8], after: Option<LogOffset>, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for rec in format::records(buf) {
        if rec.kind != KIND_ENTRY || after.is_some_and(|a| rec.offset <= a) {
            continue;
        }
        if n > 0 || out.last().is_some_and(|&b| b != b'[') {
            out.push(b',');
        }
        out.extend_from_slice(rec.payload);
        n += 1;
    }
    n
}

/// Where a log file lives. A shape's log is `<shapes dir>/<handle>/log`, built from the shapes
/// directory (one allocation for all shapes) and the handle (the shape's own): stored whole,
/// the path would cost ~100 B per shape, twice (writer and shape).
#[derive(Debug, Clone)]
pub enum LogPath {
    /// `Arc<PathBuf>`, a thin pointer: with the handle's fat one this variant is 24 bytes.
    Shape {
        shapes: Arc<PathBuf>,
        handle: Arc<str>,
    },
    Whole(Arc<Path>),
}

impl LogPath {
    pub fn path(&self) -> PathBuf {
        match self {
            LogPath::Shape { shapes, handle } => shapes.join(&**handle).join("log"),
            LogPath::Whole(p) => p.to_path_buf(),
        }
    }
}

impl From<PathBuf> for LogPath {
    fn from(p: PathBuf) -> LogPath {
        LogPath::Whole(p.into())
    }
}

/// The single writer of one shape log.
#[derive(Debug)]
pub struct LogWriter {
    fs: Fs,
    path: LogPath,
    /// Bytes already written to the file.
    file_len: u64,
    /// Bytes of the file known durable (written, then synced without error).
    synced_len: u64,
    /// The descriptor unsynced bytes were written through (`None` when everything is synced).
    unsynced: Option<FsFile>,
    pending: Vec<u8>,
    threshold: u64,
    open_chunk_bytes: u64,
    /// Shared with the published view (copied on write when a chunk closes or a rollback
    /// drops one), so an idle shape keeps one chunk list, not two.
    chunks: Arc<[Chunk]>,
    chunks_dirty: bool,
    points: Vec<(LogOffset, u64)>,
    snapshot_chunks: usize,
    snapshot_complete: bool,
    /// Latest entry offset including pending records.
    latest: LogOffset,
    /// Latest offset at the last transaction end (what a flush makes visible).
    committed_latest: LogOffset,
    /// File length at the last transaction end, including pending.
    committed_len: u64,
    /// Chunk count and open-chunk bytes at the last transaction end (for rollback).
    committed_chunks: usize,
    committed_open_bytes: u64,
    view: Arc<ViewCell>,
}

impl LogWriter {
    /// Creates a new, empty log file (with its header, not yet synced) for a fresh shape.
    pub fn create(
        fs: &Fs,
        path: impl Into<LogPath>,
        threshold: u64,
        view: Arc<ViewCell>,
    ) -> io::Result<LogWriter> {
        let path: LogPath = path.into();
        let f = fs.create_new(&path.path())?;
        f.write_all_at(&format::file_header(), 0)?;
        // Not synced here: the snapshot syncs the file (header included) before publishing.
        Ok(LogWriter {
            fs: fs.clone(),
            path,
            file_len: FILE_HEADER_LEN,
            synced_len: 0,
            unsynced: Some(f),
            pending: Vec::new(),
            threshold,
            open_chunk_bytes: 0,
            chunks: Arc::new([]),
            chunks_dirty: false,
            points: Vec::new(),
            snapshot_chunks: 0,
            snapshot_complete: false,
            latest: LogOffset::new(0, 0),
            committed_latest: LogOffset::new(0, 0),
            committed_len: FILE_HEADER_LEN,
            committed_chunks: 0,
            committed_open_bytes: 0,
            view,
        })
    }

    /// Opens an existing log after a restart: validates the header, truncates a torn or partial
    /// tail to the last complete transaction, rebuilds the chunk index and publishes the view.
    pub fn recover(
        fs: &Fs,
        path: impl Into<LogPath>,
        threshold: u64,
        view: Arc<ViewCell>,
        acknowledged_lsn: u64,
    ) -> Result<LogWriter, RecoverError> {
        let path: LogPath = path.into();
        let bytes = fs.read(&path.path())?;
        format::check_file_header(&bytes)?;
        let body = &bytes[usize::try_from(FILE_HEADER_LEN).unwrap_or(16)..];
        let scan = format::scan(body);
        if !scan.snapshot_end {
            return Err(RecoverError::IncompleteSnapshot);
        }
        // Only an interrupted append (an uncommitted tail, or a last record cut short by the end
        // of the file) is cut off: that data was never acknowledged and Postgres resends it. A
        // complete record that fails its checks is damage that may have hit acknowledged data,
        // which Postgres will never resend: the shape is dropped (its clients refetch) rather
        // than served with a hole.
        // A transaction below the acknowledged position was made durable whole before it was
        // acknowledged; finding part of one in the tail means the rest was lost.
        let lost_acknowledged = scan.dropped_min_tx.is_some_and(|tx| tx < acknowledged_lsn);
        if !scan.clean_end || lost_acknowledged {
            return Err(RecoverError::Damaged);
        }
        let file_len = FILE_HEADER_LEN + scan.committed_len;
        if scan.dropped_tail {
            let f = fs.open_write(&path.path())?;
            f.set_len(file_len)?;
            f.sync_all()?;
        }
        let chunks: Vec<Chunk> = scan
            .chunks
            .iter()
            .map(|&(end, pos)| Chunk {
                end,
                end_pos: FILE_HEADER_LEN + pos,
            })
            .collect();
        let snapshot_chunks = chunks.iter().take_while(|c| c.end.tx == 0).count();
        let latest = match scan.last_entry {
            Some(o) if o.tx > 0 => o,
            _ => LogOffset::SNAPSHOT_END,
        };
        let mut w = LogWriter {
            fs: fs.clone(),
            path,
            file_len,
            // Read back from the file: durable as far as this process can tell (a file written
            // before a crash was either synced or cut at an interrupted append above).
            synced_len: file_len,
            unsynced: None,
            pending: Vec::new(),
            threshold,
            open_chunk_bytes: scan.open_chunk_bytes,
            chunks: chunks.into(),
            chunks_dirty: true,
            points: Vec::new(),
            snapshot_chunks,
            snapshot_complete: true,
            latest,
            committed_latest: latest,
            committed_len: file_len,
            committed_chunks: 0,
            committed_open_bytes: 0,
            view,
        };
        w.mark_committed();
        w.publish();
        Ok(w)
    }

    pub fn path(&self) -> PathBuf {
        self.path.path()
    }

    /// Where the log lives, to share with its shape.
    pub fn log_path(&self) -> LogPath {
        self.path.clone()
    }

    /// Latest entry offset including unflushed records.
    pub fn latest(&self) -> LogOffset {
        self.latest
    }

    /// Bytes appended but not yet written to the file.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    fn pos(&self) -> u64 {
        self.file_len + self.pending.len() as u64
    }

    /// Appends a snapshot row to snapshot chunk `chunk`; returns true when that closed the chunk.
    pub fn append_snapshot_row(&mut self, json: &[u8]) -> bool {
        let k = self.snapshot_chunks as u64;
        format::encode_record(&mut self.pending, KIND_ENTRY, 0, LogOffset::new(0, k), json);
        self.open_chunk_bytes += json.len() as u64 + 1;
        if self.open_chunk_bytes >= self.threshold {
            self.close_snapshot_chunk();
            true
        } else {
            false
        }
    }

    fn close_snapshot_chunk(&mut self) {
        let end = LogOffset::new(0, self.snapshot_chunks as u64);
        format::encode_record(&mut self.pending, KIND_CHUNK_END, 0, end, b"");
        let end_pos = self.pos();
        self.push_chunk(Chunk { end, end_pos });
        self.snapshot_chunks += 1;
        self.open_chunk_bytes = 0;
    }

    /// Appends the snapshot-end control message and closes the last snapshot chunk.
    pub fn finish_snapshot(&mut self, json: &[u8]) {
        let k = self.snapshot_chunks as u64;
        format::encode_record(
            &mut self.pending,
            KIND_ENTRY,
            FLAG_TXN_END | FLAG_SNAPSHOT_END,
            LogOffset::new(0, k),
            json,
        );
        self.close_snapshot_chunk();
        self.snapshot_complete = true;
        self.latest = LogOffset::SNAPSHOT_END;
        self.mark_committed();
    }

    /// Closes a chunk: the list is copied with it appended (the view keeps the old one until
    /// the next publish).
    fn push_chunk(&mut self, chunk: Chunk) {
        self.chunks = self.chunks.iter().copied().chain([chunk]).collect();
        self.chunks_dirty = true;
    }

    fn mark_committed(&mut self) {
        self.committed_latest = self.latest;
        self.committed_len = self.pos();
        self.committed_chunks = self.chunks.len();
        self.committed_open_bytes = self.open_chunk_bytes;
    }

    /// Drops everything appended since the last transaction end (a stream that broke
    /// mid-transaction will replay it).
    pub fn discard_uncommitted(&mut self) {
        if self.committed_len < self.file_len {
            // Part of the transaction was spilled to the file: cut it off again. Readers never
            // saw it (views stop at the committed length).
            let cut = match self.unsynced.take() {
                Some(f) => Ok(f),
                None => self.fs.open_write(&self.path.path()),
            }
            .and_then(|f| {
                f.set_len(self.committed_len)?;
                Ok(f)
            });
            match cut.map(|f| self.unsynced = Some(f)) {
                Ok(()) => self.file_len = self.committed_len,
                Err(e) => {
                    tracing::error!(error = %e, "cannot truncate a partial transaction; recovery will")
                }
            }
        }
        let keep = usize::try_from(self.committed_len.saturating_sub(self.file_len)).unwrap_or(0);
        self.pending.truncate(keep);
        if self.chunks.len() != self.committed_chunks {
            self.chunks = self.chunks[..self.committed_chunks.min(self.chunks.len())].into();
            self.chunks_dirty = true;
            self.points.clear();
        }
        self.open_chunk_bytes = self.committed_open_bytes;
        self.latest = self.committed_latest;
    }

    /// Appends a replicated entry. `txn_end` marks the shape's last entry of the transaction.
    pub fn append_entry(&mut self, offset: LogOffset, json: &[u8], txn_end: bool) {
        debug_assert!(offset > self.latest, "offsets must increase");
        let flags = if txn_end { FLAG_TXN_END } else { 0 };
        format::encode_record(&mut self.pending, KIND_ENTRY, flags, offset, json);
        self.latest = offset;
        self.open_chunk_bytes += json.len() as u64 + 1;
        if self.open_chunk_bytes >= self.threshold {
            format::encode_record(&mut self.pending, KIND_CHUNK_END, 0, offset, b"");
            let end_pos = self.pos();
            self.push_chunk(Chunk {
                end: offset,
                end_pos,
            });
            self.points.clear();
            self.open_chunk_bytes = 0;
        }
        if txn_end {
            self.mark_committed();
        }
    }

    /// Writes pending bytes to the file (not yet synced). Returns whether the file now holds
    /// unsynced bytes (then [`LogWriter::unsynced_file`] is the descriptor to sync, so the
    /// caller can sync many logs together). On error nothing counts as written: the bytes stay
    /// pending and the next attempt writes them again at the same position.
    pub fn write_pending(&mut self) -> io::Result<bool> {
        if !self.pending.is_empty() {
            let f = match self.unsynced.take() {
                Some(f) => f,
                None => self.fs.open_write(&self.path.path())?,
            };
            let written = f.write_all_at(&self.pending, self.file_len);
            self.unsynced = Some(f);
            written?;
            self.file_len += self.pending.len() as u64;
            // Released, not cleared: most shapes are idle most of the time, and a retained
            // buffer (a snapshot's, or one large change's) would stay with the shape for good.
            self.pending = Vec::new();
        }
        Ok(self.unsynced.is_some())
    }

    /// The descriptor unsynced bytes were written through, if any.
    pub fn unsynced_file(&self) -> Option<&FsFile> {
        self.unsynced.as_ref()
    }

    /// Records that the unsynced bytes were synced without error.
    pub fn mark_synced(&mut self) {
        self.unsynced = None;
        self.synced_len = self.file_len;
    }

    /// Writes and syncs this log alone (the snapshot's chunk flushes).
    pub fn write_and_sync(&mut self) -> io::Result<()> {
        if self.write_pending()? {
            if let Some(f) = &self.unsynced {
                f.sync_data()?;
            }
            self.mark_synced();
        }
        Ok(())
    }

    /// Length of the file known durable.
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// After a failed sync: forgets everything past the last successful sync. The file is cut
    /// back to `synced_len` (and that cut synced) through a fresh descriptor, and the writer is
    /// rebuilt from the file, as after a restart. Readers are unaffected: they never saw past
    /// the durable length. The caller must have Postgres resend what was lost (restart the
    /// stream from the acknowledged position, which never passes a durable one).
    pub fn rewind(&mut self) -> Result<(), RecoverError> {
        self.unsynced = None;
        let f = self.fs.open_write(&self.path.path())?;
        f.set_len(self.synced_len)?;
        f.sync_all()?;
        drop(f);
        let fresh = LogWriter::recover(
            &self.fs,
            self.path.clone(),
            self.threshold,
            self.view.clone(),
            0,
        )?;
        *self = fresh;
        Ok(())
    }

    /// Publishes the durable state to readers. Call only after the written bytes were synced.
    pub fn publish(&mut self) {
        // Readers may only see whole transactions.
        let durable_len = self.committed_len.min(self.file_len);
        let latest = self.committed_latest;
        // Retained seek points are at least SEEK_POINT_SPACING apart; the current tail is added
        // to the published list so a live reader at the tail starts right there.
        let last_retained = self.points.last().map_or(0, |&(_, p)| p);
        if durable_len >= last_retained + SEEK_POINT_SPACING {
            self.points.push((latest, durable_len));
        }
        // The chunk list only changes when a chunk closes: copy it only then.
        let chunks = std::mem::take(&mut self.chunks_dirty).then(|| self.chunks.clone());
        let tail = self
            .points
            .last()
            .is_none_or(|&(_, p)| p != durable_len)
            .then_some((latest, durable_len));
        // Exact-size iterator: collected straight into the `Arc`'s own allocation.
        let points: Arc<[(LogOffset, u64)]> = self.points.iter().copied().chain(tail).collect();
        let snapshot_chunks = self.snapshot_chunks;
        let snapshot_complete = self.snapshot_complete;
        self.view.update(|v| {
            v.durable_len = durable_len;
            v.latest = latest;
            v.snapshot_chunks = snapshot_chunks;
            v.snapshot_complete = snapshot_complete;
            if let Some(chunks) = chunks {
                v.chunks = chunks;
            }
            v.points = points;
        });
    }
}

/// Why a log could not be recovered (the shape is then dropped and its clients get 409).
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("log I/O")]
    Io(#[from] io::Error),
    #[error("log format")]
    Format(#[from] format::FormatError),
    #[error("the initial snapshot never completed")]
    IncompleteSnapshot,
    #[error("a record does not decode (torn or corrupt): acknowledged data may be missing")]
    Damaged,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, threshold: u64) -> (LogWriter, Arc<ViewCell>) {
        let cell = ViewCell::new(LogView::empty());
        let w = LogWriter::create(&Fs::real(), dir.join("log"), threshold, cell.clone()).unwrap();
        (w, cell)
    }

    fn flush(w: &mut LogWriter) {
        w.write_and_sync().unwrap();
        w.publish();
    }

    fn body(view: &LogView, path: &Path, req: RequestOffset) -> (String, Option<LogOffset>) {
        match plan_read(view, req) {
            ReadPlan::Range {
                start,
                end,
                after,
                response,
            } => {
                let buf = read_range(&Fs::real(), path, start, end).unwrap();
                let mut out = vec![b'['];
                append_payloads(&buf, after, &mut out);
                out.push(b']');
                (String::from_utf8(out).unwrap(), Some(response))
            }
            ReadPlan::AtEnd { response } => ("[]".into(), Some(response)),
            other => (format!("{other:?}"), None),
        }
    }

    #[test]
    fn snapshot_chunks_then_log_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rx) = writer(dir.path(), 10);
        w.append_snapshot_row(b"\"r1\""); // 5 bytes
        w.append_snapshot_row(b"\"r2\""); // reaches 10: closes chunk 0
        w.append_snapshot_row(b"\"r3\"");
        w.finish_snapshot(b"\"end\"");
        flush(&mut w);
        let v = rx.get();
        assert_eq!(v.snapshot_chunks, 2);
        let p = w.path().to_path_buf();
        assert_eq!(
            body(&v, &p, RequestOffset::Initial),
            ("[\"r1\",\"r2\"]".into(), Some(LogOffset::new(0, 0)))
        );
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::new(0, 0))),
            ("[\"r3\",\"end\"]".into(), Some(LogOffset::new(0, 1)))
        );
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::new(0, 1))),
            ("[]".into(), Some(LogOffset::SNAPSHOT_END))
        );
        w.append_entry(LogOffset::new(100, 0), b"\"a\"", false);
        w.append_entry(LogOffset::new(100, 2), b"\"b\"", true);
        // Not flushed: invisible.
        assert_eq!(rx.get().latest, LogOffset::SNAPSHOT_END);
        flush(&mut w);
        let v = rx.get();
        assert_eq!(v.latest, LogOffset::new(100, 2));
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::SNAPSHOT_END)),
            ("[\"a\",\"b\"]".into(), Some(LogOffset::new(100, 2)))
        );
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::new(100, 0))),
            ("[\"b\"]".into(), Some(LogOffset::new(100, 2)))
        );
        // A chunk closes at the threshold and responses stop there.
        w.append_entry(LogOffset::new(200, 0), b"\"cccccccccc\"", true);
        w.append_entry(LogOffset::new(300, 0), b"\"d\"", true);
        flush(&mut w);
        let v = rx.get();
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::SNAPSHOT_END)),
            (
                "[\"a\",\"b\",\"cccccccccc\"]".into(),
                Some(LogOffset::new(200, 0))
            )
        );
        assert_eq!(
            body(&v, &p, RequestOffset::At(LogOffset::new(200, 0))),
            ("[\"d\"]".into(), Some(LogOffset::new(300, 0)))
        );
        assert_eq!(
            plan_read(&v, RequestOffset::At(LogOffset::new(400, 0))),
            ReadPlan::OutOfBounds
        );

        // Recovery rebuilds the same view, dropping an unflushed partial transaction.
        w.append_entry(LogOffset::new(500, 0), b"\"partial\"", false);
        w.write_pending().unwrap();
        drop(w);
        let rx2 = ViewCell::new(LogView::empty());
        let w2 = LogWriter::recover(&Fs::real(), p.clone(), 10, rx2.clone(), 0).unwrap();
        let v2 = rx2.get();
        assert_eq!(v2.latest, LogOffset::new(300, 0));
        assert_eq!(*v2.chunks, *v.chunks);
        assert_eq!(v2.durable_len, v.durable_len);
        assert_eq!(w2.latest(), LogOffset::new(300, 0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Walking the log from `0_inf` with responses chained by their offsets, and reading from
        /// any entry's offset, both return exactly the entries after it, in order, never crossing
        /// a chunk boundary, whatever the transaction sizes, flush points and chunk threshold.
        #[test]
        fn reads_return_exactly_the_entries_after_the_offset(
            txns in proptest::collection::vec((1usize..5, 1usize..120, proptest::bool::ANY), 1..40),
            threshold in 50u64..2000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, rx) = writer(dir.path(), threshold);
            w.finish_snapshot(b"\"end\"");
            flush(&mut w);
            let mut all: Vec<(LogOffset, String)> = Vec::new();
            for (t, &(n, size, do_flush)) in txns.iter().enumerate() {
                let lsn = 1000 + t as u64 * 10;
                for i in 0..n {
                    let off = LogOffset::new(lsn, 2 * i as u64);
                    let json = format!("\"{}-{}\"", off, "x".repeat(size));
                    w.append_entry(off, json.as_bytes(), i + 1 == n);
                    all.push((off, json));
                }
                if do_flush {
                    flush(&mut w);
                }
            }
            flush(&mut w);
            let v = rx.get();
            let p = w.path().to_path_buf();
            let expect_after = |o: LogOffset, upto: LogOffset| -> String {
                let items: Vec<&str> = all.iter().filter(|(off, _)| *off > o && *off <= upto).map(|(_, j)| j.as_str()).collect();
                format!("[{}]", items.join(","))
            };
            // Chained walk.
            let mut at = LogOffset::SNAPSHOT_END;
            let mut seen = 0;
            while at < v.latest {
                let (body_text, resp) = body(&v, &p, RequestOffset::At(at));
                let resp = resp.unwrap();
                proptest::prop_assert!(resp > at);
                proptest::prop_assert_eq!(body_text, expect_after(at, resp));
                seen += all.iter().filter(|(o, _)| *o > at && *o <= resp).count();
                at = resp;
            }
            proptest::prop_assert_eq!(seen, all.len());
            // Arbitrary starting points.
            for (o, _) in all.iter().step_by(3) {
                let (body_text, resp) = body(&v, &p, RequestOffset::At(*o));
                let resp = resp.unwrap();
                proptest::prop_assert_eq!(body_text, expect_after(*o, resp));
                if *o < v.latest {
                    proptest::prop_assert!(resp > *o);
                }
            }
        }
    }

    #[test]
    fn a_damaged_record_drops_the_shape_but_an_uncommitted_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _rx) = writer(dir.path(), 1000);
        w.finish_snapshot(b"\"end\"");
        w.append_entry(LogOffset::new(10, 0), b"\"committed\"", true);
        flush(&mut w);
        let path = w.path().to_path_buf();
        let good = std::fs::read(&path).unwrap();
        // An interrupted transaction: whole records, no transaction end. Cut off, shape kept.
        w.append_entry(LogOffset::new(20, 0), b"\"partial\"", false);
        w.write_pending().unwrap();
        let with_partial = std::fs::read(&path).unwrap();
        let tx = ViewCell::new(LogView::empty());
        let r = LogWriter::recover(&Fs::real(), path.clone(), 1000, tx, 15).unwrap();
        assert_eq!(r.latest(), LogOffset::new(10, 0));
        assert_eq!(std::fs::read(&path).unwrap(), good);
        // The same unfinished transaction below the acknowledged position: it was durable whole
        // before being acknowledged, so losing its end means damage.
        std::fs::write(&path, &with_partial).unwrap();
        let tx = ViewCell::new(LogView::empty());
        assert!(matches!(
            LogWriter::recover(&Fs::real(), path.clone(), 1000, tx, 25),
            Err(RecoverError::Damaged)
        ));
        std::fs::write(&path, &good).unwrap();
        // A flipped byte in an acknowledged record: the shape is dropped.
        let mut bad = good.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let tx = ViewCell::new(LogView::empty());
        assert!(matches!(
            LogWriter::recover(&Fs::real(), path.clone(), 1000, tx, 15),
            Err(RecoverError::Damaged)
        ));
        // A record cut short by the end of the file is an interrupted append (never
        // acknowledged): cut off, shape kept.
        let mut torn = good.clone();
        torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &torn).unwrap();
        let tx = ViewCell::new(LogView::empty());
        let r = LogWriter::recover(&Fs::real(), path.clone(), 1000, tx, 15).unwrap();
        assert_eq!(r.latest(), LogOffset::new(10, 0));
        assert_eq!(std::fs::read(&path).unwrap(), good);
    }

    #[test]
    fn a_fresh_log_without_snapshot_end_is_not_recoverable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _rx) = writer(dir.path(), 1000);
        w.append_snapshot_row(b"1");
        flush(&mut w);
        let tx = ViewCell::new(LogView::empty());
        assert!(matches!(
            LogWriter::recover(&Fs::real(), w.path().to_path_buf(), 1000, tx, 0),
            Err(RecoverError::IncompleteSnapshot)
        ));
    }
}
