//! Lock tables: InnoDB-style row locks and `GET_LOCK` user locks.
//!
//! Owns [`LockManager`]. Row locks are exclusive, keyed by
//! `(db, table, primary key)`, taken by writes and locking reads, and held
//! by the owning session until its transaction ends. User-level locks
//! (`GET_LOCK`) are re-entrant per session, case-insensitive by name and
//! held until released or the session ends.
//!
//! The lock manager never waits: an acquisition either succeeds or reports
//! the current holder, and the executor turns that into a `Blocked`
//! outcome. Deadlock detection walks the wait-for graph built from the
//! blocked sessions' recorded lock requests (see `server.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::storage::Key;
use super::SessionId;

/// Identity of a lockable row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowLockId {
    pub db: String,
    pub table: String,
    pub key: Key,
}

#[derive(Clone, Debug, Default)]
pub struct LockManager {
    rows: BTreeMap<RowLockId, SessionId>,
    held: BTreeMap<SessionId, BTreeSet<RowLockId>>,
    /// name (lower-cased) → (holder, re-entrancy count)
    user: BTreeMap<String, (SessionId, u32)>,
}

impl LockManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Try to take an exclusive row lock. `Err(holder)` if another session has it.
    pub fn try_lock_row(&mut self, sid: SessionId, id: &RowLockId) -> Result<(), SessionId> {
        match self.rows.get(id) {
            Some(&h) if h == sid => Ok(()),
            Some(&h) => Err(h),
            None => {
                self.rows.insert(id.clone(), sid);
                self.held.entry(sid).or_default().insert(id.clone());
                Ok(())
            }
        }
    }

    pub fn row_holder(&self, id: &RowLockId) -> Option<SessionId> {
        self.rows.get(id).copied()
    }

    /// Number of row locks a session holds.
    pub fn row_locks_held(&self, sid: SessionId) -> usize {
        self.held.get(&sid).map_or(0, |s| s.len())
    }

    /// Release every row lock of a session.
    pub fn release_rows(&mut self, sid: SessionId) -> bool {
        let Some(set) = self.held.remove(&sid) else {
            return false;
        };
        for id in &set {
            self.rows.remove(id);
        }
        !set.is_empty()
    }

    /// Some other session holding a row lock in `db.table` (for DDL waits).
    pub fn table_locked_by_other(
        &self,
        db: &str,
        table: &str,
        sid: SessionId,
    ) -> Option<SessionId> {
        self.rows
            .iter()
            .filter(|(id, _)| id.db == db && id.table == table)
            .map(|(_, &h)| h)
            .find(|&h| h != sid)
    }

    /// `GET_LOCK`: `Ok(())` when acquired (re-entrant), `Err(holder)` otherwise.
    pub fn get_user_lock(&mut self, sid: SessionId, name: &str) -> Result<(), SessionId> {
        let key = name.to_lowercase();
        match self.user.get_mut(&key) {
            Some((h, n)) if *h == sid => {
                *n += 1;
                Ok(())
            }
            Some((h, _)) => Err(*h),
            None => {
                self.user.insert(key, (sid, 1));
                Ok(())
            }
        }
    }

    /// `RELEASE_LOCK`: `Some(true)` released one level, `Some(false)` held by
    /// someone else, `None` no such lock.
    pub fn release_user_lock(&mut self, sid: SessionId, name: &str) -> Option<bool> {
        let key = name.to_lowercase();
        let (h, n) = self.user.get_mut(&key)?;
        if *h != sid {
            return Some(false);
        }
        *n -= 1;
        if *n == 0 {
            self.user.remove(&key);
        }
        Some(true)
    }

    pub fn user_lock_holder(&self, name: &str) -> Option<SessionId> {
        self.user.get(&name.to_lowercase()).map(|(h, _)| *h)
    }

    /// `RELEASE_ALL_LOCKS`: returns the number of lock levels released.
    pub fn release_all_user_locks(&mut self, sid: SessionId) -> u32 {
        let mut n = 0;
        self.user.retain(|_, (h, c)| {
            if *h == sid {
                n += *c;
                false
            } else {
                true
            }
        });
        n
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.held.clear();
        self.user.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::KeyPart;

    fn id(k: i128) -> RowLockId {
        RowLockId {
            db: "d".into(),
            table: "t".into(),
            key: Key(vec![KeyPart::Int(k)]),
        }
    }

    #[test]
    fn row_locks_are_exclusive_and_reentrant_for_the_owner() {
        let mut lm = LockManager::new();
        assert_eq!(lm.try_lock_row(1, &id(1)), Ok(()));
        assert_eq!(lm.try_lock_row(1, &id(1)), Ok(()));
        assert_eq!(lm.try_lock_row(2, &id(1)), Err(1));
        assert_eq!(lm.table_locked_by_other("d", "t", 2), Some(1));
        assert!(lm.release_rows(1));
        assert_eq!(lm.try_lock_row(2, &id(1)), Ok(()));
    }

    #[test]
    fn user_locks_count_reentrancy_and_ignore_case() {
        let mut lm = LockManager::new();
        assert_eq!(lm.get_user_lock(1, "Job"), Ok(()));
        assert_eq!(lm.get_user_lock(1, "job"), Ok(()));
        assert_eq!(lm.get_user_lock(2, "JOB"), Err(1));
        assert_eq!(lm.release_user_lock(2, "job"), Some(false));
        assert_eq!(lm.release_user_lock(1, "job"), Some(true));
        assert_eq!(lm.user_lock_holder("job"), Some(1));
        assert_eq!(lm.release_all_user_locks(1), 1);
        assert_eq!(lm.release_user_lock(1, "job"), None);
    }
}
