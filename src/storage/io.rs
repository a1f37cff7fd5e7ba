//! The storage I/O seam: every file operation of the storage layer (create/open, positional
//! write, set_len, fdatasync/fsync, syncfs, rename, remove, directory fsync, read) goes through
//! [`Fs`] and [`FsFile`].
//!
//! In a normal build `Fs` is a zero-sized value and every method is a direct `std::fs` call (no
//! dispatch, no copy). Built for tests (`cfg(test)` or the `failpoints` cargo feature, which the
//! integration tests enable through a dev-dependency on this crate) an `Fs` may carry a
//! [`TestFs`]: failpoints ([`super::failpoints`]) that inject EIO/ENOSPC, short writes and stalls,
//! and a crash-consistency recorder ([`super::crash`]) that models what a power loss would leave.
//!
//! Invariants:
//! - Writes are positional (`pwrite` at a length the caller tracks), so retrying a failed or
//!   short write overwrites whatever part of it reached the file instead of appending after it.
//! - The test layer performs the real operation and records it before returning, so whatever a
//!   caller does after an operation returned (publish, acknowledge) is ordered after the record.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
#[cfg(any(test, feature = "failpoints"))]
use std::path::PathBuf;
#[cfg(any(test, feature = "failpoints"))]
use std::sync::Arc;

#[cfg(any(test, feature = "failpoints"))]
use super::crash::Recorder;
#[cfg(any(test, feature = "failpoints"))]
use super::failpoints::{Action, Failpoints, Op};

/// Above this many files or directories, one `syncfs` replaces per-item syncs.
const SYNCFS_ABOVE: usize = 8;

/// The file system the storage layer uses. `Fs::default()` is the real one.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    #[cfg(any(test, feature = "failpoints"))]
    test: Option<Arc<TestFs>>,
}

/// An open file of the storage layer.
#[derive(Debug)]
pub struct FsFile {
    file: File,
    #[cfg(any(test, feature = "failpoints"))]
    test: Option<(Arc<TestFs>, PathBuf, Option<usize>)>,
}

/// Test hooks: failpoints, and optionally a crash-consistency recorder of every operation.
#[cfg(any(test, feature = "failpoints"))]
#[derive(Debug, Default)]
pub struct TestFs {
    pub faults: Failpoints,
    pub recorder: Option<Recorder>,
}

#[cfg(any(test, feature = "failpoints"))]
impl TestFs {
    /// Runs a mutating operation: failpoints first (which may fail or stall it), then the real
    /// operation and its record under the recorder's lock, so a power-loss image taken
    /// concurrently sees either both or neither.
    fn mutate<T>(
        &self,
        op: Op,
        path: &Path,
        real: impl FnOnce() -> io::Result<T>,
        record: impl FnOnce(&mut super::crash::Model, &T),
    ) -> io::Result<T> {
        if let Some(Action::Fail(errno)) = self.faults.check(op, path) {
            if op == Op::Sync
                && let Some(r) = &self.recorder
            {
                // "fsyncgate": after a failed fsync the kernel may have dropped the dirty pages
                // (while reads still show them); those writes never become durable.
                let _ = r.with(|m| {
                    m.sync_failed(path);
                    Ok(())
                });
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        match &self.recorder {
            Some(r) => r.with(|m| {
                let v = real()?;
                record(m, &v);
                Ok(v)
            }),
            None => real(),
        }
    }
}

impl Fs {
    /// The real file system.
    pub fn real() -> Fs {
        Fs::default()
    }

    /// A file system with test hooks.
    #[cfg(any(test, feature = "failpoints"))]
    pub fn testing(test: TestFs) -> Fs {
        Fs {
            test: Some(Arc::new(test)),
        }
    }

    /// The test hooks, if any.
    #[cfg(any(test, feature = "failpoints"))]
    pub fn test(&self) -> Option<&TestFs> {
        self.test.as_deref()
    }

    #[cfg(any(test, feature = "failpoints"))]
    fn wrap(&self, file: File, path: &Path, ino: Option<usize>) -> FsFile {
        FsFile {
            file,
            test: self
                .test
                .as_ref()
                .map(|t| (t.clone(), path.to_path_buf(), ino)),
        }
    }

    #[cfg(not(any(test, feature = "failpoints")))]
    fn wrap(&self, file: File, _path: &Path, _ino: Option<usize>) -> FsFile {
        FsFile { file }
    }

    /// Creates a new file for writing; fails if it exists.
    pub fn create_new(&self, path: &Path) -> io::Result<FsFile> {
        let open = || OpenOptions::new().write(true).create_new(true).open(path);
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            let mut ino = None;
            let f = t.mutate(Op::Create, path, open, |m, _| {
                ino = m.create_file(path, false);
            })?;
            return Ok(self.wrap(f, path, ino));
        }
        Ok(self.wrap(open()?, path, None))
    }

    /// Creates or truncates a file for writing.
    pub fn create_truncate(&self, path: &Path) -> io::Result<FsFile> {
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
        };
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            let mut ino = None;
            let f = t.mutate(Op::Create, path, open, |m, _| {
                ino = m.create_file(path, true);
            })?;
            return Ok(self.wrap(f, path, ino));
        }
        Ok(self.wrap(open()?, path, None))
    }

    /// Opens an existing file for writing (positional writes, set_len, sync).
    pub fn open_write(&self, path: &Path) -> io::Result<FsFile> {
        let f = OpenOptions::new().write(true).open(path)?;
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            let ino = match &t.recorder {
                Some(r) => r.with(|m| Ok(m.lookup(path)))?,
                None => None,
            };
            return Ok(self.wrap(f, path, ino));
        }
        Ok(self.wrap(f, path, None))
    }

    /// Reads a whole file, without updating its access time where the kernel allows (a restart
    /// reads every shape log once; an atime update would dirty each inode for nothing).
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            Ok(f) => f,
            // O_NOATIME is refused for files this user does not own.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path)?,
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Reads `len` bytes at `start`.
    pub fn read_at(&self, path: &Path, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        File::open(path)?.read_exact_at(&mut buf, start)?;
        Ok(buf)
    }

    /// Names of the entries of a directory.
    pub fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for e in fs::read_dir(path)? {
            out.push(e?.file_name());
        }
        Ok(out)
    }

    pub fn create_dir(&self, path: &Path) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(
                Op::Create,
                path,
                || fs::create_dir(path),
                |m, ()| m.create_dir(path),
            );
        }
        fs::create_dir(path)
    }

    pub fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(
                Op::Create,
                path,
                || fs::create_dir_all(path),
                |m, ()| m.create_dir_all(path),
            );
        }
        fs::create_dir_all(path)
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(
                Op::Rename,
                to,
                || fs::rename(from, to),
                |m, ()| m.rename(from, to),
            );
        }
        fs::rename(from, to)
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(
                Op::Remove,
                path,
                || fs::remove_file(path),
                |m, ()| m.unlink(path),
            );
        }
        fs::remove_file(path)
    }

    pub fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(
                Op::Remove,
                path,
                || fs::remove_dir_all(path),
                |m, ()| m.unlink(path),
            );
        }
        fs::remove_dir_all(path)
    }

    /// Fsyncs a directory, making the creates, renames and removes inside it durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let real = || File::open(dir)?.sync_all();
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            return t.mutate(Op::Sync, dir, real, |m, ()| m.sync_dir(dir));
        }
        real()
    }

    /// `syncfs` of the file system `on` lives in: everything on it becomes durable.
    fn syncfs(&self, on: &File) -> io::Result<()> {
        let real = || {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs takes a valid open descriptor, which `on` holds for this call.
            let rc = unsafe { libc::syncfs(on.as_raw_fd()) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        #[cfg(any(test, feature = "failpoints"))]
        if let Some(t) = &self.test {
            // syncfs concerns every file: its failpoint path is empty.
            return t.mutate(Op::Sync, Path::new(""), real, |m, ()| m.sync_everything());
        }
        real()
    }

    /// Makes the entries of several directories durable: one `fsync` per directory for a few,
    /// one `syncfs` for many (shape creation seals many directories in one flush).
    pub fn sync_dirs(&self, dirs: &[&Path]) -> io::Result<()> {
        let Some(first) = dirs.first() else {
            return Ok(());
        };
        if dirs.len() > SYNCFS_ABOVE {
            return self.syncfs(&File::open(first)?);
        }
        for d in dirs {
            self.sync_dir(d)?;
        }
        Ok(())
    }

    /// Makes written files durable: one `fdatasync` per file for a few files, one `syncfs` for
    /// many (a single syscall regardless of how many shapes a batch touched).
    pub fn sync_files(&self, files: &[&FsFile]) -> io::Result<()> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        if files.len() > SYNCFS_ABOVE {
            return self.syncfs(&first.file);
        }
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }
}

impl FsFile {
    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some((t, path, ino)) = &self.test {
            let (buf, result) = match t.faults.check(Op::Write, path) {
                Some(Action::Fail(errno)) => return Err(io::Error::from_raw_os_error(errno)),
                // A disk filling up mid-write: part of the buffer lands, then ENOSPC.
                Some(Action::ShortWrite) => (
                    &buf[..buf.len() / 2],
                    Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                ),
                _ => (buf, Ok(())),
            };
            return match &t.recorder {
                Some(r) => r.with(|m| {
                    self.file.write_all_at(buf, offset)?;
                    if let Some(ino) = ino {
                        m.write(*ino, offset, buf);
                    }
                    result
                }),
                None => {
                    self.file.write_all_at(buf, offset)?;
                    result
                }
            };
        }
        self.file.write_all_at(buf, offset)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some((t, path, ino)) = &self.test {
            return t.mutate(
                Op::Write,
                path,
                || self.file.set_len(len),
                |m, ()| {
                    if let Some(ino) = ino {
                        m.set_len(*ino, len);
                    }
                },
            );
        }
        self.file.set_len(len)
    }

    /// `fdatasync`.
    pub fn sync_data(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some((t, path, ino)) = &self.test {
            return t.mutate(
                Op::Sync,
                path,
                || self.file.sync_data(),
                |m, ()| {
                    if let Some(ino) = ino {
                        m.sync_file(*ino);
                    }
                },
            );
        }
        self.file.sync_data()
    }

    /// `fsync` (data and metadata).
    pub fn sync_all(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "failpoints"))]
        if let Some((t, path, ino)) = &self.test {
            return t.mutate(
                Op::Sync,
                path,
                || self.file.sync_all(),
                |m, ()| {
                    if let Some(ino) = ino {
                        m.sync_file(*ino);
                    }
                },
            );
        }
        self.file.sync_all()
    }
}
