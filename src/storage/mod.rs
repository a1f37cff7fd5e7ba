//! Persistent state under `ELECTRIC_STORAGE_DIR`.
//!
//! ```text
//! <storage>/
//!   state.bin                 global state (system id, timeline, handle high-water mark): meta format
//!   shapes.idx                a cache of every sealed shape's meta.bin payload (see `index`)
//!   shapes/<handle>/meta.bin  shape definition + snapshot info, written once the snapshot is complete
//!   shapes/<handle>/log       the shape log (see `format`)
//!   trash/                    removed shape directories, deleted in the background
//!   pgdata/                   the dev-mode Postgres cluster, when no DATABASE_URL is given
//!   *.tmp, shapes/<h>/*.tmp   temp files of metadata being replaced (removed at startup, the
//!                             latter with their unsealed shape)
//! ```
//!
//! Every file operation goes through [`io::Fs`], the seam tests replace with failpoints and a
//! crash-consistency recorder ([`crash`]).
//!
//! Invariants: a shape directory without a valid `meta.bin` (written, synced with its directory
//! and the `shapes/` entry, only when the snapshot and its buffered transactions are durable) is
//! not a shape and is removed at startup, as is one whose `meta.bin` does not check out; removal
//! renames the directory into `trash/` first, so a handle disappears atomically.

#[cfg(any(test, feature = "failpoints"))]
pub mod crash;
#[cfg(any(test, feature = "failpoints"))]
pub mod failpoints;
pub mod format;
pub mod index;
pub mod io;
pub mod log;
pub mod meta;
#[cfg(test)]
mod power_loss_tests;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use self::io::{Fs, FsFile};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Global persisted state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GlobalState {
    /// Postgres system identifier and timeline the shapes were built from.
    pub system_id: Option<String>,
    pub timeline: Option<u32>,
    /// Slot name the shapes depend on.
    pub slot: Option<String>,
    /// Highest handle timestamp ever issued (handles are never reused, across restarts too).
    pub handle_high_water: u64,
}

/// The storage root.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    /// `<root>/shapes`, shared by every shape's [`log::LogPath`].
    shapes: Arc<PathBuf>,
    fs: Fs,
    /// Where sealed shapes' entries go; `None` until [`Storage::resume_index`], and again
    /// after a failed append.
    index: Arc<Mutex<Option<index::Appender>>>,
}

impl Storage {
    /// Opens (creating if needed) the storage root.
    pub fn open(root: &Path, fs: Fs) -> Result<Storage, StorageError> {
        for sub in ["shapes", "trash"] {
            let p = root.join(sub);
            fs.create_dir_all(&p).map_err(io_at(&p))?;
        }
        // The entries of `shapes/` and `trash/` (and of the root itself, when this start created
        // it) must be durable before any shape is: sealing a shape syncs `shapes/`, not its
        // parents.
        fs.sync_dir(root).map_err(io_at(root))?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io_at(parent))?;
        }
        let s = Storage {
            root: root.to_path_buf(),
            shapes: Arc::new(root.join("shapes")),
            fs,
            index: Arc::new(Mutex::new(None)),
        };
        s.empty_trash();
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file system every storage operation goes through.
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    pub fn shape_dir(&self, handle: &str) -> PathBuf {
        self.shapes.join(handle)
    }

    /// Where a shape's log lives (`<shape dir>/log`).
    pub fn log_path(&self, handle: Arc<str>) -> log::LogPath {
        log::LogPath::Shape {
            shapes: self.shapes.clone(),
            handle,
        }
    }

    pub fn read_global(&self) -> Result<GlobalState, StorageError> {
        Ok(meta::read_json(&self.fs, &self.root.join("state.bin"))?.unwrap_or_default())
    }

    pub fn write_global(&self, state: &GlobalState) -> Result<(), StorageError> {
        Ok(meta::write_json(
            &self.fs,
            &self.root.join("state.bin"),
            state,
        )?)
    }

    /// Reads a shape's `meta.bin`: `Ok(None)` when it is missing, an error when it does not
    /// check out (the shape is then dropped).
    pub fn read_shape_meta<T: serde::de::DeserializeOwned>(
        &self,
        handle: &str,
    ) -> Result<Option<T>, StorageError> {
        Ok(meta::read_json(
            &self.fs,
            &self.shape_dir(handle).join("meta.bin"),
        )?)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("shapes.idx")
    }

    /// Reads the shape index (startup). Never fails: what does not check out is left out.
    pub fn read_index(&self) -> index::ShapeIndex {
        index::read(&self.fs, &self.index_path())
    }

    /// Startup, once the stored shapes are restored: continues the index as read, or rewrites
    /// it from `live` (every restored shape's `meta.bin` payload) when it is damaged, lacks a
    /// restored shape, or holds more removed shapes than live ones. Until this is called, and
    /// after a failed append, sealing appends nothing (the next start rewrites).
    pub fn resume_index(&self, read: &index::ShapeIndex, live: &[(&str, &[u8])]) {
        let in_index = live.iter().filter(|(h, _)| read.get(h).is_some()).count();
        let stale = read.len() - in_index.min(read.len());
        let rewrite = read.damaged || in_index < live.len() || stale > live.len();
        let path = self.index_path();
        let opened = if rewrite {
            index::Appender::rewrite(&self.fs, &path, live.iter().copied())
        } else {
            index::Appender::open(&self.fs, &path, read.valid_len)
        };
        match opened {
            Ok(a) => *self.index.lock() = Some(a),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "shape index not writable: the next start restores from each shape's metadata");
            }
        }
    }

    /// A shape's `meta.bin` payload (JSON), checked: `Ok(None)` when it is missing.
    pub fn read_shape_meta_payload(&self, handle: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(meta::read_payload(
            &self.fs,
            &self.shape_dir(handle).join("meta.bin"),
        )?)
    }

    /// Handles of every shape directory present.
    pub fn list_shapes(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.root.join("shapes");
        let names = self.fs.read_dir(&dir).map_err(io_at(&dir))?;
        Ok(names
            .into_iter()
            .filter_map(|n| n.to_str().map(str::to_owned))
            .collect())
    }

    /// Removes the temp files a crash in the middle of a metadata replacement left behind in
    /// the root (the file they were replacing is intact: the rename never happened, or it did
    /// and the temp name is gone). Called once this instance owns the storage. A shape
    /// directory holds a temp file only if its sealing was cut short, and then it has no
    /// `meta.bin` and the whole directory is removed.
    pub fn remove_temp_files(&self) {
        let Ok(names) = self.fs.read_dir(&self.root) else {
            return;
        };
        for n in names {
            if Path::new(&n).extension().is_some_and(|e| e == "tmp") {
                let p = self.root.join(&n);
                match self.fs.remove_file(&p) {
                    Ok(()) => {
                        tracing::info!(path = %p.display(), "removed an orphan temp file")
                    }
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "cannot remove an orphan temp file")
                    }
                }
            }
        }
    }

    /// Creates a shape directory. Not synced: [`Storage::seal_shape`] makes it durable once the
    /// shape is complete.
    pub fn create_shape_dir(&self, handle: &str) -> Result<PathBuf, StorageError> {
        let dir = self.shape_dir(handle);
        self.fs.create_dir(&dir).map_err(io_at(&dir))?;
        Ok(dir)
    }

    /// Durably records a completed shape: its metadata (synced file and directory) and its
    /// directory entry under `shapes/`.
    pub fn seal_shape<T: Serialize>(
        &self,
        handle: &str,
        meta_value: &T,
    ) -> Result<(), StorageError> {
        self.seal_shapes(&[(handle, meta_value)])
    }

    /// Seals many completed shapes with a constant number of syncs (issue 6: creating 100k
    /// shapes must not cost 300k fsyncs): write every temp file, sync them together, rename
    /// each over `meta.bin`, then sync every shape directory and `shapes/` together. A crash in
    /// between leaves some shapes without `meta.bin` (removed at startup, never shown to a
    /// client: sealing precedes publishing) and never a half-written one (the rename follows
    /// the sync of its content).
    pub fn seal_shapes<T: Serialize>(&self, shapes: &[(&str, &T)]) -> Result<(), StorageError> {
        if shapes.is_empty() {
            return Ok(());
        }
        let mut staged = Vec::with_capacity(shapes.len());
        for (handle, value) in shapes {
            staged.push(meta::stage_json(
                &self.fs,
                &self.shape_dir(handle).join("meta.bin"),
                value,
            )?);
        }
        let files: Vec<&FsFile> = staged.iter().map(|s| &s.tmp_file).collect();
        self.fs.sync_files(&files).map_err(io_at(&self.root))?;
        let mut payloads = Vec::with_capacity(staged.len());
        for s in staged {
            payloads.push(s.commit(&self.fs)?);
        }
        let dirs: Vec<PathBuf> = shapes
            .iter()
            .map(|(h, _)| self.shape_dir(h))
            .chain(std::iter::once(self.root.join("shapes")))
            .collect();
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        self.fs.sync_dirs(&dirs).map_err(io_at(&self.root))?;
        // Only now that the shapes are durable may the index name them.
        let mut guard = self.index.lock();
        if let Some(appender) = guard.as_mut() {
            let entries: Vec<(&str, &[u8])> = shapes
                .iter()
                .zip(&payloads)
                .map(|((h, _), p)| (*h, p.as_slice()))
                .collect();
            if let Err(e) = appender.append(&entries) {
                tracing::warn!(error = %e, "shape index append failed: the next start rewrites it");
                *guard = None;
            }
        }
        Ok(())
    }

    /// Removes a shape: an atomic rename into the trash, then deletion in the background.
    pub fn remove_shape(&self, handle: &str) {
        let dir = self.shape_dir(handle);
        let dest = self.root.join("trash").join(format!(
            "{handle}.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        match self.fs.rename(&dir, &dest) {
            Ok(()) => {
                let _ = self.fs.sync_dir(&self.root.join("shapes"));
                let _ = self.fs.remove_dir_all(&dest);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not move a removed shape to the trash"),
        }
    }

    /// Removes every shape (a purge after WAL continuity broke).
    pub fn remove_all_shapes(&self) -> Result<(), StorageError> {
        for h in self.list_shapes()? {
            self.remove_shape(&h);
        }
        Ok(())
    }

    fn empty_trash(&self) {
        let trash = self.root.join("trash");
        if let Ok(names) = self.fs.read_dir(&trash) {
            for n in names {
                let _ = self.fs.remove_dir_all(&trash.join(n));
            }
        }
    }
}
