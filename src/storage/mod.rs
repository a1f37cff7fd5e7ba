//! Persistent state under `ELECTRIC_STORAGE_DIR`.
//!
//! ```text
//! <storage>/
//!   state.bin                 global state (system id, timeline, handle high-water mark): meta format
//!   shapes/<handle>/meta.bin  shape definition + snapshot info, written once the snapshot is complete
//!   shapes/<handle>/log       the shape log (see `format`)
//!   trash/                    removed shape directories, deleted in the background
//!   pgdata/                   the dev-mode Postgres cluster, when no DATABASE_URL is given
//! ```
//!
//! Invariants: a shape directory without a valid `meta.bin` (written, synced with its directory
//! and the `shapes/` entry, only when the snapshot and its buffered transactions are durable) is
//! not a shape and is removed at startup; removal renames the directory into `trash/` first, so a
//! handle disappears atomically.

pub mod format;
pub mod log;
pub mod meta;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O on {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
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
}

impl Storage {
    /// Opens (creating if needed) the storage root.
    pub fn open(root: &Path) -> Result<Storage, StorageError> {
        for sub in ["shapes", "trash"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let s = Storage {
            root: root.to_path_buf(),
        };
        s.empty_trash();
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn shape_dir(&self, handle: &str) -> PathBuf {
        self.root.join("shapes").join(handle)
    }

    pub fn read_global(&self) -> Result<GlobalState, StorageError> {
        Ok(meta::read_json(&self.root.join("state.bin"))?.unwrap_or_default())
    }

    pub fn write_global(&self, state: &GlobalState) -> Result<(), StorageError> {
        Ok(meta::write_json(&self.root.join("state.bin"), state)?)
    }

    /// Handles of every shape directory present.
    pub fn list_shapes(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.root.join("shapes");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    /// Creates a shape directory. Not synced: [`Storage::seal_shape`] makes it durable once the
    /// shape is complete.
    pub fn create_shape_dir(&self, handle: &str) -> Result<PathBuf, StorageError> {
        let dir = self.shape_dir(handle);
        fs::create_dir(&dir).map_err(io_at(&dir))?;
        Ok(dir)
    }

    /// Durably records a completed shape: its metadata (synced file and directory) and its
    /// directory entry under `shapes/`.
    pub fn seal_shape<T: Serialize>(
        &self,
        handle: &str,
        meta_value: &T,
    ) -> Result<(), StorageError> {
        let dir = self.shape_dir(handle);
        meta::write_json(&dir.join("meta.bin"), meta_value)?;
        let parent = self.root.join("shapes");
        meta::sync_dir(&parent).map_err(io_at(&parent))?;
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
        match fs::rename(&dir, &dest) {
            Ok(()) => {
                let _ = meta::sync_dir(&self.root.join("shapes"));
                let _ = fs::remove_dir_all(&dest);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
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
        if let Ok(rd) = fs::read_dir(&trash) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}
