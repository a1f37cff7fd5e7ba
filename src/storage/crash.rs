//! Crash-consistency recorder, compiled only for tests: a model of what the storage directory
//! would hold after a power loss at any instant.
//!
//! The recorder sits behind [`super::io::Fs`] over the real file system (every operation still
//! happens for real, so readers read real files) and keeps, per inode, the state a power loss
//! could not take away plus the operations since:
//!
//! - a file's content as of its last successful `fsync`/`fdatasync` (or `syncfs`), and the writes
//!   and `set_len`s after it;
//! - a directory's entries as of its last fsync (or `syncfs`), and the creates, renames and
//!   removes after it (renames that cross directories are an unlink in one and a link in the
//!   other, each pending in its own directory).
//!
//! [`Recorder::crash`] builds a *power-loss image*, seeded: every file keeps its durable content
//! plus a random prefix of its later operations, the first operation not kept may be torn (a
//! random prefix of its bytes, and sometimes the file extended with zeros to the write's full
//! length: size metadata that reached the disk before the data); every directory keeps its
//! durable entries plus a random prefix of its later entry operations. Files that existed when
//! the recorder started are taken as durable. After `crash` the recorder is frozen: every later
//! mutating operation fails with EIO, as on a machine that lost power, so the process that
//! produced the image can acknowledge nothing more.
//!
//! A failed sync (an injected failpoint) drops the unsynced writes of the file concerned for good
//! (every file's, for `syncfs`), while reads still show them: the "fsyncgate" behaviour of Linux,
//! where a later fsync succeeds without having written the lost pages.
//!
//! Not modelled: reordering of unsynced writes within one file (later pages reaching the disk
//! before earlier ones); recovery treats such a hole as damage and drops the shape, which is
//! conservative (a 409, never wrong data).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Ino = usize;

#[derive(Debug, Clone)]
enum FileOp {
    Write { at: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, Ino),
    Unlink(OsString),
}

#[derive(Debug)]
enum Node {
    File {
        durable: Vec<u8>,
        pending: Vec<FileOp>,
    },
    Dir {
        durable: BTreeMap<OsString, Ino>,
        current: BTreeMap<OsString, Ino>,
        pending: Vec<DirOp>,
    },
}

/// The recorded state (inode 0 is the recorder's root directory).
#[derive(Debug)]
pub struct Model {
    root: PathBuf,
    nodes: Vec<Node>,
    frozen: bool,
    /// Operations recorded (for test reports).
    ops: u64,
}

/// Records the storage operations under one root directory.
pub struct Recorder {
    model: Mutex<Model>,
}

impl std::fmt::Debug for Recorder {
    // Not the recorded contents: a `Config` holding the test file system may be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts recording under `root`; whatever already exists there is taken as durable.
    pub fn new(root: &Path) -> io::Result<Recorder> {
        let mut m = Model {
            root: root.to_path_buf(),
            nodes: vec![Node::Dir {
                durable: BTreeMap::new(),
                current: BTreeMap::new(),
                pending: Vec::new(),
            }],
            frozen: false,
            ops: 0,
        };
        if root.exists() {
            m.import(0, root, 0)?;
        }
        Ok(Recorder {
            model: Mutex::new(m),
        })
    }

    /// Runs `f` on the model under its lock; fails with EIO once the recorder is frozen.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Model) -> io::Result<T>) -> io::Result<T> {
        let mut m = self.model.lock();
        if m.frozen {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        m.ops += 1;
        f(&mut m)
    }

    /// Number of operations recorded so far.
    pub fn ops(&self) -> u64 {
        self.model.lock().ops
    }

    /// Writes the power-loss image for `seed` into `target` (an empty or missing directory)
    /// without freezing: the recording goes on (for taking many images of one run).
    pub fn image(&self, seed: u64, target: &Path) -> io::Result<()> {
        let m = self.model.lock();
        m.materialise(&mut StdRng::seed_from_u64(seed), target)
    }

    /// A power loss now: writes the image for `seed` into `target` and freezes the recorder.
    pub fn crash(&self, seed: u64, target: &Path) -> io::Result<()> {
        let mut m = self.model.lock();
        m.frozen = true;
        m.materialise(&mut StdRng::seed_from_u64(seed), target)
    }
}

fn apply(buf: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { at, data } => {
            let at = usize::try_from(*at).unwrap_or(usize::MAX);
            let end = at.saturating_add(data.len());
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[at..end].copy_from_slice(data);
        }
        FileOp::SetLen(n) => buf.resize(usize::try_from(*n).unwrap_or(usize::MAX), 0),
    }
}

fn apply_dir(entries: &mut BTreeMap<OsString, Ino>, op: &DirOp) {
    match op {
        DirOp::Link(name, ino) => {
            entries.insert(name.clone(), *ino);
        }
        DirOp::Unlink(name) => {
            entries.remove(name);
        }
    }
}

impl Model {
    fn import(&mut self, dir: Ino, path: &Path, depth: usize) -> io::Result<()> {
        if depth > 64 {
            return Ok(());
        }
        for e in std::fs::read_dir(path)? {
            let e = e?;
            let ft = e.file_type()?;
            let ino = self.nodes.len();
            if ft.is_dir() {
                self.nodes.push(Node::Dir {
                    durable: BTreeMap::new(),
                    current: BTreeMap::new(),
                    pending: Vec::new(),
                });
                self.import(ino, &e.path(), depth + 1)?;
            } else if ft.is_file() {
                self.nodes.push(Node::File {
                    durable: std::fs::read(e.path())?,
                    pending: Vec::new(),
                });
            } else {
                continue;
            }
            if let Node::Dir {
                durable, current, ..
            } = &mut self.nodes[dir]
            {
                durable.insert(e.file_name(), ino);
                current.insert(e.file_name(), ino);
            }
        }
        Ok(())
    }

    /// Components of `path` below the root, or `None` outside it.
    fn rel(&self, path: &Path) -> Option<Vec<OsString>> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut out = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => out.push(n.to_os_string()),
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(out)
    }

    fn child(&self, dir: Ino, name: &OsString) -> Option<Ino> {
        match &self.nodes[dir] {
            Node::Dir { current, .. } => current.get(name).copied(),
            Node::File { .. } => None,
        }
    }

    pub(crate) fn lookup(&self, path: &Path) -> Option<Ino> {
        let mut ino = 0;
        for c in self.rel(path)? {
            ino = self.child(ino, &c)?;
        }
        Some(ino)
    }

    fn parent_and_name(&self, path: &Path) -> Option<(Ino, OsString)> {
        let mut parts = self.rel(path)?;
        let name = parts.pop()?;
        let mut ino = 0;
        for c in parts {
            ino = self.child(ino, &c)?;
        }
        Some((ino, name))
    }

    fn link(&mut self, dir: Ino, name: OsString, ino: Ino) {
        if let Node::Dir {
            current, pending, ..
        } = &mut self.nodes[dir]
        {
            current.insert(name.clone(), ino);
            pending.push(DirOp::Link(name, ino));
        }
    }

    pub(crate) fn create_file(&mut self, path: &Path, truncate: bool) -> Option<Ino> {
        let (dir, name) = self.parent_and_name(path)?;
        if let Some(ino) = self.child(dir, &name) {
            if truncate {
                self.set_len(ino, 0);
            }
            return Some(ino);
        }
        let ino = self.nodes.len();
        self.nodes.push(Node::File {
            durable: Vec::new(),
            pending: Vec::new(),
        });
        self.link(dir, name, ino);
        Some(ino)
    }

    pub(crate) fn create_dir(&mut self, path: &Path) {
        let Some((dir, name)) = self.parent_and_name(path) else {
            return;
        };
        if self.child(dir, &name).is_some() {
            return;
        }
        let ino = self.nodes.len();
        self.nodes.push(Node::Dir {
            durable: BTreeMap::new(),
            current: BTreeMap::new(),
            pending: Vec::new(),
        });
        self.link(dir, name, ino);
    }

    pub(crate) fn create_dir_all(&mut self, path: &Path) {
        let Some(parts) = self.rel(path) else { return };
        let mut p = self.root.clone();
        for c in parts {
            p.push(c);
            self.create_dir(&p);
        }
    }

    pub(crate) fn write(&mut self, ino: Ino, at: u64, data: &[u8]) {
        if let Some(Node::File { pending, .. }) = self.nodes.get_mut(ino) {
            pending.push(FileOp::Write {
                at,
                data: data.to_vec(),
            });
        }
    }

    pub(crate) fn set_len(&mut self, ino: Ino, len: u64) {
        if let Some(Node::File { pending, .. }) = self.nodes.get_mut(ino) {
            pending.push(FileOp::SetLen(len));
        }
    }

    pub(crate) fn sync_file(&mut self, ino: Ino) {
        if let Some(Node::File { durable, pending }) = self.nodes.get_mut(ino) {
            for op in pending.drain(..) {
                apply(durable, &op);
            }
        }
    }

    pub(crate) fn sync_dir(&mut self, path: &Path) {
        let Some(ino) = self.lookup(path) else { return };
        if let Node::Dir {
            durable,
            current,
            pending,
        } = &mut self.nodes[ino]
        {
            durable.clone_from(current);
            pending.clear();
        }
    }

    /// A sync of `path` failed (`syncfs`, of every file, when `path` is empty): the unsynced
    /// writes of the files concerned are lost for good. A failed directory fsync loses nothing
    /// more than its own pending entries might (they stay pending, and may or may not survive).
    pub(crate) fn sync_failed(&mut self, path: &Path) {
        let inos: Vec<Ino> = if path.as_os_str().is_empty() {
            (0..self.nodes.len()).collect()
        } else {
            self.lookup(path)
                .filter(|&ino| matches!(self.nodes[ino], Node::File { .. }))
                .into_iter()
                .collect()
        };
        for ino in inos {
            if let Node::File { pending, .. } = &mut self.nodes[ino] {
                pending.clear();
            }
        }
    }

    /// `syncfs`: everything on the file system becomes durable.
    pub(crate) fn sync_everything(&mut self) {
        for n in &mut self.nodes {
            match n {
                Node::File { durable, pending } => {
                    for op in pending.drain(..) {
                        apply(durable, &op);
                    }
                }
                Node::Dir {
                    durable,
                    current,
                    pending,
                } => {
                    durable.clone_from(current);
                    pending.clear();
                }
            }
        }
    }

    pub(crate) fn rename(&mut self, from: &Path, to: &Path) {
        let (Some((fd, fname)), Some((td, tname))) =
            (self.parent_and_name(from), self.parent_and_name(to))
        else {
            return;
        };
        let Some(ino) = self.child(fd, &fname) else {
            return;
        };
        self.unlink_at(fd, fname);
        self.link(td, tname, ino);
    }

    pub(crate) fn unlink(&mut self, path: &Path) {
        if let Some((dir, name)) = self.parent_and_name(path) {
            self.unlink_at(dir, name);
        }
    }

    fn unlink_at(&mut self, dir: Ino, name: OsString) {
        if let Node::Dir {
            current, pending, ..
        } = &mut self.nodes[dir]
            && current.remove(&name).is_some()
        {
            pending.push(DirOp::Unlink(name));
        }
    }

    /// The content of a file in the image.
    fn file_image(durable: &[u8], pending: &[FileOp], rng: &mut StdRng) -> Vec<u8> {
        let mut buf = durable.to_vec();
        let keep = rng.random_range(0..=pending.len());
        for op in &pending[..keep] {
            apply(&mut buf, op);
        }
        if let Some(FileOp::Write { at, data }) = pending.get(keep)
            && !data.is_empty()
            && rng.random_bool(0.5)
        {
            let torn = rng.random_range(0..data.len());
            apply(
                &mut buf,
                &FileOp::Write {
                    at: *at,
                    data: data[..torn].to_vec(),
                },
            );
            if rng.random_bool(0.3) {
                // The size reached the disk, the data did not.
                let end = usize::try_from(*at)
                    .unwrap_or(usize::MAX)
                    .saturating_add(data.len());
                if buf.len() < end {
                    buf.resize(end, 0);
                }
            }
        }
        buf
    }

    fn materialise(&self, rng: &mut StdRng, target: &Path) -> io::Result<()> {
        // Decide every inode's image once, so an inode reachable twice (a cross-directory
        // rename whose both halves survived) has one content.
        let mut dirs: Vec<Option<BTreeMap<OsString, Ino>>> = Vec::with_capacity(self.nodes.len());
        let mut files: Vec<Option<Vec<u8>>> = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            match n {
                Node::File { durable, pending } => {
                    files.push(Some(Model::file_image(durable, pending, rng)));
                    dirs.push(None);
                }
                Node::Dir {
                    durable, pending, ..
                } => {
                    let mut entries = durable.clone();
                    let keep = rng.random_range(0..=pending.len());
                    for op in &pending[..keep] {
                        apply_dir(&mut entries, op);
                    }
                    dirs.push(Some(entries));
                    files.push(None);
                }
            }
        }
        std::fs::create_dir_all(target)?;
        write_tree(&dirs, &files, 0, target, 0)
    }
}

fn write_tree(
    dirs: &[Option<BTreeMap<OsString, Ino>>],
    files: &[Option<Vec<u8>>],
    dir: Ino,
    at: &Path,
    depth: usize,
) -> io::Result<()> {
    let Some(Some(entries)) = dirs.get(dir) else {
        return Ok(());
    };
    if depth > 64 {
        return Ok(());
    }
    for (name, &ino) in entries {
        let p = at.join(name);
        if let Some(Some(content)) = files.get(ino) {
            std::fs::write(&p, content)?;
        } else if let Some(Some(_)) = dirs.get(ino) {
            std::fs::create_dir_all(&p)?;
            write_tree(dirs, files, ino, &p, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::{Fs, TestFs};

    fn recorded(root: &Path) -> Fs {
        Fs::testing(TestFs {
            recorder: Some(Recorder::new(root).unwrap()),
            ..TestFs::default()
        })
    }

    fn image(fs: &Fs, seed: u64) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let r = fs.test().unwrap().recorder.as_ref().unwrap();
        r.image(seed, out.path()).unwrap();
        out
    }

    #[test]
    fn synced_data_and_entries_survive_and_unsynced_ones_may_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fs = recorded(root);
        fs.create_dir(&root.join("d")).unwrap();
        fs.sync_dir(root).unwrap();
        let f = fs.create_new(&root.join("d/f")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&root.join("d")).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        let g = fs.create_new(&root.join("d/g")).unwrap();
        g.write_all_at(b"x", 0).unwrap();
        g.sync_all().unwrap();
        let mut saw_lost = false;
        let mut saw_kept = false;
        let mut saw_g = false;
        let mut saw_no_g = false;
        for seed in 0..200 {
            let img = image(&fs, seed);
            let content = std::fs::read(img.path().join("d/f")).unwrap();
            assert!(content.starts_with(b"hello"), "{content:?}");
            assert!(content.len() <= 11);
            let tail = &content[5..];
            // The unsynced tail is a prefix of " world", or that prefix then zeros.
            let written = tail.iter().take_while(|&&b| b != 0).count();
            assert_eq!(&tail[..written], &b" world"[..written]);
            assert!(tail[written..].iter().all(|&b| b == 0));
            saw_lost |= content.len() == 5;
            saw_kept |= content == b"hello world";
            match std::fs::read(img.path().join("d/g")) {
                Ok(c) => {
                    assert_eq!(c, b"x", "a synced file whose entry survived is whole");
                    saw_g = true;
                }
                Err(_) => saw_no_g = true,
            }
        }
        assert!(saw_lost && saw_kept && saw_g && saw_no_g);
    }

    #[test]
    fn a_rename_is_durable_only_after_the_directory_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("m"), b"old").unwrap();
        let fs = recorded(root);
        let t = fs.create_truncate(&root.join("m.tmp")).unwrap();
        t.write_all_at(b"new", 0).unwrap();
        t.sync_all().unwrap();
        fs.rename(&root.join("m.tmp"), &root.join("m")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let img = image(&fs, seed);
            let m = std::fs::read(img.path().join("m")).unwrap();
            assert!(m == b"old" || m == b"new");
            seen.insert(m);
        }
        assert_eq!(seen.len(), 2);
        fs.sync_dir(root).unwrap();
        for seed in 0..20 {
            let img = image(&fs, seed);
            assert_eq!(std::fs::read(img.path().join("m")).unwrap(), b"new");
            assert!(!img.path().join("m.tmp").exists());
        }
    }

    #[test]
    fn after_a_crash_every_operation_fails() {
        let dir = tempfile::tempdir().unwrap();
        let fs = recorded(dir.path());
        let f = fs.create_new(&dir.path().join("f")).unwrap();
        let out = tempfile::tempdir().unwrap();
        fs.test()
            .unwrap()
            .recorder
            .as_ref()
            .unwrap()
            .crash(1, out.path())
            .unwrap();
        assert!(f.write_all_at(b"x", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.create_dir(&dir.path().join("d")).is_err());
    }
}
