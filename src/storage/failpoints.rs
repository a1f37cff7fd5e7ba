//! Failpoints of the storage I/O seam, compiled only for tests (`cfg(test)` or the `failpoints`
//! feature): a test arms an action on an operation kind (optionally only for paths containing a
//! substring, optionally only a number of times) and the next matching operations of
//! [`super::io`] fail with an errno, write half their buffer and then fail with ENOSPC, or stall
//! until the failpoint is disarmed.
//!
//! Invariants: an unarmed `Failpoints` never changes an operation; a stall holds no lock (other
//! storage operations, readers included, go on while one operation is stalled).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// The kinds of operations a failpoint can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Positional writes and `set_len`.
    Write,
    /// `fdatasync`, `fsync`, directory fsync, `syncfs`.
    Sync,
    /// File and directory creation.
    Create,
    Rename,
    Remove,
}

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail with this errno (`libc::EIO`, `libc::ENOSPC`, …) before doing anything.
    Fail(i32),
    /// Writes only: write the first half of the buffer, then fail with ENOSPC.
    ShortWrite,
    /// Block until this failpoint is disarmed, then run the operation normally.
    Stall,
}

#[derive(Debug)]
struct Armed {
    id: u64,
    op: Op,
    action: Action,
    path_contains: Option<String>,
    remaining: Option<u64>,
}

/// The armed failpoints of one [`super::io::Fs`].
#[derive(Debug, Default)]
pub struct Failpoints {
    armed: Mutex<Vec<Armed>>,
    next_id: AtomicU64,
    fired: AtomicU64,
}

impl Failpoints {
    /// Arms `action` on every `op` until disarmed.
    pub fn arm(&self, op: Op, action: Action) -> u64 {
        self.arm_with(op, action, None, None)
    }

    /// Arms `action` on `op` for paths containing `path_contains` (all when `None`), `times`
    /// times (until disarmed when `None`).
    pub fn arm_with(
        &self,
        op: Op,
        action: Action,
        path_contains: Option<&str>,
        times: Option<u64>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.armed.lock().push(Armed {
            id,
            op,
            action,
            path_contains: path_contains.map(str::to_owned),
            remaining: times,
        });
        id
    }

    pub fn disarm(&self, id: u64) {
        self.armed.lock().retain(|a| a.id != id);
    }

    pub fn disarm_all(&self) {
        self.armed.lock().clear();
    }

    pub fn is_armed(&self, id: u64) -> bool {
        self.armed.lock().iter().any(|a| a.id == id)
    }

    /// How many operations a failpoint has hit so far (stalls included).
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Acquire)
    }

    /// Consults the failpoints for one operation: stalls here while a matching stall is armed,
    /// and returns the failure to inject, if any.
    pub(crate) fn check(&self, op: Op, path: &Path) -> Option<Action> {
        let (id, action) = {
            let mut armed = self.armed.lock();
            let i = armed.iter().position(|a| {
                a.op == op
                    && a.path_contains
                        .as_deref()
                        .is_none_or(|s| path.to_string_lossy().contains(s))
            })?;
            let a = &mut armed[i];
            let hit = (a.id, a.action);
            if let Some(n) = a.remaining.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    armed.remove(i);
                }
            }
            hit
        };
        self.fired.fetch_add(1, Ordering::AcqRel);
        match action {
            Action::Stall => {
                while self.is_armed(id) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                None
            }
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_failpoints_match_kind_path_and_count() {
        let f = Failpoints::default();
        let p = Path::new("/s/shapes/h/log");
        assert_eq!(f.check(Op::Write, p), None);
        f.arm_with(Op::Write, Action::Fail(libc::EIO), Some("meta"), None);
        assert_eq!(f.check(Op::Write, p), None);
        let id = f.arm_with(Op::Sync, Action::Fail(libc::ENOSPC), None, Some(2));
        assert_eq!(f.check(Op::Sync, p), Some(Action::Fail(libc::ENOSPC)));
        assert!(f.is_armed(id));
        assert_eq!(f.check(Op::Sync, p), Some(Action::Fail(libc::ENOSPC)));
        assert!(!f.is_armed(id));
        assert_eq!(f.check(Op::Sync, p), None);
        assert_eq!(f.fired(), 2);
    }

    #[test]
    fn a_stall_holds_the_operation_until_disarmed() {
        let f = std::sync::Arc::new(Failpoints::default());
        let id = f.arm(Op::Sync, Action::Stall);
        let f2 = f.clone();
        let t = std::thread::spawn(move || f2.check(Op::Sync, Path::new("x")));
        while f.fired() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!t.is_finished());
        f.disarm(id);
        assert_eq!(t.join().unwrap(), None);
    }
}
