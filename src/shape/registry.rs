//! The set of live shapes, shared by the HTTP layer (lookups) and the pipeline (writes).
//!
//! Invariants: a handle is never reused (handles embed a strictly increasing microsecond stamp
//! whose high-water mark is persisted); one identity maps to at most one live handle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::definition::ShapeDef;
use crate::storage::log::LogPath;
use crate::storage::view::{ViewCell, ViewWatch};

/// One live shape as readers see it.
#[derive(Debug)]
pub struct Shape {
    pub handle: Arc<str>,
    pub def: Arc<ShapeDef>,
    /// Where its log lives (shares the handle and the storage's shapes directory).
    pub log: LogPath,
    pub view: Arc<ViewCell>,
    /// When a request last read this shape (Unix seconds), for `ELECTRIC_MAX_SHAPES` eviction.
    pub last_read: AtomicU64,
}

impl Shape {
    pub fn new(
        handle: impl Into<Arc<str>>,
        def: Arc<ShapeDef>,
        log: LogPath,
        view: Arc<ViewCell>,
    ) -> Shape {
        let s = Shape {
            handle: handle.into(),
            def,
            log,
            view,
            last_read: AtomicU64::new(0),
        };
        s.touch();
        s
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.log.path()
    }

    /// Records a read now.
    pub fn touch(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_read.store(now, Ordering::Relaxed);
    }

    pub fn subscribe(&self) -> ViewWatch {
        self.view.watch()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys share the shape's own strings (100k shapes would otherwise keep second copies).
    by_handle: HashMap<Arc<str>, Arc<Shape>>,
    /// Keyed by identity hash; a hit is confirmed by comparing full identities (a collision
    /// can only make two requests miss each other's shape, never share a wrong one).
    by_identity: HashMap<u64, Arc<Shape>>,
}

#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<Inner>,
    last_stamp: AtomicU64,
}

impl Registry {
    pub fn new(handle_high_water: u64) -> Registry {
        Registry {
            inner: RwLock::default(),
            last_stamp: AtomicU64::new(handle_high_water),
        }
    }

    pub fn get(&self, handle: &str) -> Option<Arc<Shape>> {
        self.inner.read().by_handle.get(handle).cloned()
    }

    /// The registered shape with `def`'s identity.
    pub fn find(&self, def: &ShapeDef) -> Option<Arc<Shape>> {
        let s = self
            .inner
            .read()
            .by_identity
            .get(&def.identity_hash)
            .cloned()?;
        (s.def.identity() == def.identity()).then_some(s)
    }

    pub fn insert(&self, shape: Arc<Shape>) {
        let mut g = self.inner.write();
        g.by_identity.insert(shape.def.identity_hash, shape.clone());
        g.by_handle.insert(shape.handle.clone(), shape);
    }

    /// Removes a shape and wakes its readers (they answer 409).
    pub fn remove(&self, handle: &str) -> Option<Arc<Shape>> {
        let mut g = self.inner.write();
        let shape = g.by_handle.remove(handle)?;
        if g.by_identity
            .get(&shape.def.identity_hash)
            .is_some_and(|s| &*s.handle == handle)
        {
            g.by_identity.remove(&shape.def.identity_hash);
        }
        drop(g);
        shape.view.update(|v| v.gone = true);
        Some(shape)
    }

    pub fn all(&self) -> Vec<Arc<Shape>> {
        self.inner.read().by_handle.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().by_handle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh handle `<hash>-<micros>`: the stamp is strictly greater than every stamp issued
    /// before (by this process or, via the persisted high-water mark, any earlier one).
    pub fn new_handle(&self, identity: &str) -> (String, u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut prev = self.last_stamp.load(Ordering::Relaxed);
        let stamp = loop {
            let next = now.max(prev + 1);
            match self
                .last_stamp
                .compare_exchange(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(p) => prev = p,
            }
        };
        // 27-bit hash of the identity, as Electric's handles carry (informational only).
        let hash = super::definition::fnv1a(identity.as_bytes()) & ((1 << 27) - 1);
        (format!("{hash}-{stamp}"), stamp)
    }

    pub fn high_water(&self) -> u64 {
        self.last_stamp.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_unique_and_increasing_even_with_a_future_high_water() {
        let far_future = 10_000_000_000_000_000;
        let r = Registry::new(far_future);
        let (a, sa) = r.new_handle("x");
        let (b, sb) = r.new_handle("x");
        assert_ne!(a, b);
        assert!(sa > far_future && sb > sa);
        assert!(
            a.split_once('-')
                .is_some_and(|(h, t)| h.parse::<u64>().is_ok() && t.parse::<u64>().is_ok())
        );
    }
}
