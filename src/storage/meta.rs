//! Small durable metadata files: magic, version, length, CRC, JSON payload.
//!
//! Written as temp file → fsync → rename → fsync of the directory, so after a crash the file is
//! either the old or the new version, never a mix; a flipped byte is detected by the checksum.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"AMPMETA\n"` |
//! | 8..12 | version, u32 LE (1) |
//! | 12..16 | payload length, u32 LE |
//! | 16..20 | CRC-32 of the payload, u32 LE |
//! | 20.. | payload (JSON) |

use std::io;
use std::path::{Path, PathBuf};

use super::io::{Fs, FsFile};

const MAGIC: &[u8; 8] = b"AMPMETA\n";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata I/O on {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("metadata file {0} is corrupt (bad magic, version, length or checksum)")]
    Corrupt(String),
    #[error("metadata file {path} does not decode")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Encodes a metadata file body.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a metadata file body; `None` if anything does not check out.
pub fn decode(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.get(0..8)? != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    let len = usize::try_from(u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(bytes.get(16..20)?.try_into().ok()?);
    let payload = bytes.get(20..20usize.checked_add(len)?)?;
    (version == VERSION && bytes.len() == 20 + len && crc32fast::hash(payload) == crc)
        .then_some(payload)
}

/// Atomically and durably replaces `path` with `value` serialised as JSON. The temp file is
/// `path` with the extension `tmp`; one left by a crash is removed at startup.
pub fn write_json<T: serde::Serialize>(fs: &Fs, path: &Path, value: &T) -> Result<(), MetaError> {
    // Every retry rewrites the whole temp file and renames it again, so a failed fsync is never
    // retried as if the earlier bytes were safe.
    let staged = stage_json(fs, path, value)?;
    staged.tmp_file.sync_all().map_err(io_err(&staged.tmp))?;
    let _payload = staged.commit(fs)?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(())
}

/// A metadata file written to its temp path, not yet synced or renamed: the first half of
/// [`write_json`], split out so many files can share one sync (`Storage::seal_shapes`).
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    pub tmp_file: FsFile,
    /// The JSON payload written (the shape index keeps a copy).
    pub payload: Vec<u8>,
}

/// Writes `value` to `path`'s temp file (created or truncated). Nothing is durable yet.
pub fn stage_json<T: serde::Serialize>(
    fs: &Fs,
    path: &Path,
    value: &T,
) -> Result<Staged, MetaError> {
    let payload = serde_json::to_vec(value).map_err(|source| MetaError::Json {
        path: path.display().to_string(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let f = fs.create_truncate(&tmp).map_err(io_err(&tmp))?;
    f.write_all_at(&encode(&payload), 0).map_err(io_err(&tmp))?;
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
        tmp_file: f,
        payload,
    })
}

impl Staged {
    /// Renames the (synced) temp file over the target (durable once its directory is synced)
    /// and gives back the payload.
    pub fn commit(self, fs: &Fs) -> Result<Vec<u8>, MetaError> {
        drop(self.tmp_file);
        fs.rename(&self.tmp, &self.path)
            .map_err(io_err(&self.path))?;
        Ok(self.payload)
    }
}

/// Reads a metadata file's checked payload; `Ok(None)` when the file does not exist.
pub fn read_payload(fs: &Fs, path: &Path) -> Result<Option<Vec<u8>>, MetaError> {
    let mut bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let len = decode(&bytes)
        .ok_or_else(|| MetaError::Corrupt(path.display().to_string()))?
        .len();
    bytes.drain(..20);
    debug_assert_eq!(bytes.len(), len);
    Ok(Some(bytes))
}

/// Decodes a metadata payload (as [`read_payload`] returns it) read from `path`.
pub fn parse_payload<T: serde::de::DeserializeOwned>(
    path: &Path,
    payload: &[u8],
) -> Result<T, MetaError> {
    serde_json::from_slice(payload).map_err(|source| MetaError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a metadata file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(
    fs: &Fs,
    path: &Path,
) -> Result<Option<T>, MetaError> {
    match read_payload(fs, path)? {
        Some(payload) => parse_payload(path, &payload).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin");
        let fs = Fs::real();
        write_json(&fs, &p, &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = read_json(&fs, &p).unwrap().unwrap();
        assert_eq!(v["a"], 1);
        let good = std::fs::read(&p).unwrap();
        let mut bytes = good.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            read_json::<serde_json::Value>(&fs, &p),
            Err(MetaError::Corrupt(_))
        ));
        // Every truncation is refused too.
        for n in 0..good.len() {
            std::fs::write(&p, &good[..n]).unwrap();
            assert!(
                read_json::<serde_json::Value>(&fs, &p).is_err(),
                "cut at {n}"
            );
        }
        assert!(
            read_json::<serde_json::Value>(&fs, &dir.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
