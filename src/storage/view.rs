//! The published view of one shape's log, and how readers wait for it to change.
//!
//! One [`ViewCell`] per shape, shared by its log writer (the only publisher) and every reader.
//! It replaces a `tokio::sync::watch` channel, which carried nine `Notify`s and a reference-
//! counted shared block per shape (most of an idle shape's memory, issue 6): here an idle shape
//! costs one lock, one version counter and one `Notify`, and a parked reader costs only its own
//! waiter entry.
//!
//! Invariant: `version` is bumped while the view's write lock is held, then every waiter is
//! woken. A reader registers as a waiter *before* comparing versions, so an update between its
//! check and its sleep is never missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::Notify;

use super::log::LogView;

pub struct ViewCell {
    view: RwLock<LogView>,
    version: AtomicU64,
    changed: Notify,
}

impl ViewCell {
    pub fn new(view: LogView) -> Arc<ViewCell> {
        Arc::new(ViewCell {
            view: RwLock::new(view),
            version: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// The current view (two `Arc` clones).
    pub fn get(&self) -> LogView {
        self.view.read().clone()
    }

    /// Changes the view and wakes every waiting reader.
    pub fn update(&self, f: impl FnOnce(&mut LogView)) {
        {
            let mut v = self.view.write();
            f(&mut v);
            self.version.fetch_add(1, Ordering::Release);
        }
        self.changed.notify_waiters();
    }

    /// Wakes every waiting reader without changing the view (they see a new version and look
    /// again; the service stopping, for one).
    pub fn wake(&self) {
        self.update(|_| {});
    }

    /// A reader's handle: remembers which version it has seen.
    pub fn watch(self: &Arc<Self>) -> ViewWatch {
        ViewWatch {
            cell: self.clone(),
            seen: self.version.load(Ordering::Acquire),
        }
    }
}

impl std::fmt::Debug for ViewCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCell")
            .field("view", &*self.view.read())
            .field("version", &self.version.load(Ordering::Relaxed))
            .finish()
    }
}

pub struct ViewWatch {
    cell: Arc<ViewCell>,
    seen: u64,
}

impl ViewWatch {
    /// The current view, marking it seen.
    pub fn borrow_and_update(&mut self) -> LogView {
        let v = self.cell.view.read();
        self.seen = self.cell.version.load(Ordering::Acquire);
        v.clone()
    }

    /// Resolves once the view changed after the last one seen.
    pub async fn changed(&mut self) {
        loop {
            let notified = self.cell.changed.notified();
            tokio::pin!(notified);
            // Register first, then check: an update in between still wakes us.
            notified.as_mut().enable();
            let now = self.cell.version.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }

    /// Resolves with the first view (current or future) that satisfies `pred`.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&LogView) -> bool) -> LogView {
        loop {
            let v = self.borrow_and_update();
            if pred(&v) {
                return v;
            }
            self.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_sees_an_update_made_before_it_slept_and_after() {
        let cell = ViewCell::new(LogView::empty());
        let mut w = cell.watch();
        cell.update(|v| v.durable_len = 100);
        // Updated since the watch was taken: resolves at once.
        w.changed().await;
        assert_eq!(w.borrow_and_update().durable_len, 100);
        let c2 = cell.clone();
        let waiter = tokio::spawn(async move {
            w.changed().await;
            w.borrow_and_update().durable_len
        });
        tokio::task::yield_now().await;
        c2.update(|v| v.durable_len = 200);
        assert_eq!(waiter.await.unwrap(), 200);
    }

    #[tokio::test]
    async fn wait_for_returns_the_first_matching_view() {
        let cell = ViewCell::new(LogView::empty());
        let mut w = cell.watch();
        let c2 = cell.clone();
        let t = tokio::spawn(async move { w.wait_for(|v| v.gone).await.durable_len });
        for len in 1..5 {
            c2.update(|v| v.durable_len = len);
            tokio::task::yield_now().await;
        }
        c2.update(|v| v.gone = true);
        assert_eq!(t.await.unwrap(), 4);
    }
}
