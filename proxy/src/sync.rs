//! Locks that outlive a panic: a `std::sync` lock is poisoned when a thread panics
//! while holding it, and `lock().expect(..)` would then turn one session's bug into a
//! panic in every session that touches the same registry, pool or counter. Everything
//! Sluice keeps under these locks is valid between statements (maps and counters
//! updated in one step), so the guard is taken over from a poisoned lock instead.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that recovers from poisoning.
pub trait Locked<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that recover from poisoning.
pub trait RwLocked<T: ?Sized> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLocked<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_usable() {
        let m = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(1));
        let (m2, rw2) = (m.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _a = m2.lock();
            let _b = rw2.write();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.locked() += 1;
        assert_eq!(*m.locked(), 2);
        *rw.write_locked() += 1;
        assert_eq!(*rw.read_locked(), 2);
    }
}

/// Values kept per backend node, for a node set a config reload may change. Readers
/// take a snapshot (one short lock and an `Arc` clone) and may keep it: sessions hold
/// one and take a new one after a reload, so the hot path takes no lock.
/// [`NodeMap::set_nodes`] publishes a new snapshot that keeps the values of the nodes
/// that stay.
#[derive(Debug, Default)]
pub struct NodeMap<T> {
    map: Mutex<std::sync::Arc<std::collections::BTreeMap<String, std::sync::Arc<T>>>>,
}

impl<T: Default> NodeMap<T> {
    pub fn new(nodes: &[String]) -> Self {
        let m = nodes.iter().map(|n| (n.clone(), std::sync::Arc::new(T::default()))).collect();
        NodeMap { map: Mutex::new(std::sync::Arc::new(m)) }
    }

    /// The values now.
    pub fn snapshot(&self) -> std::sync::Arc<std::collections::BTreeMap<String, std::sync::Arc<T>>> {
        self.map.locked().clone()
    }

    /// `node`'s value, if it is one of the nodes.
    pub fn get(&self, node: &str) -> Option<std::sync::Arc<T>> {
        self.map.locked().get(node).cloned()
    }

    /// The node set becomes `nodes`: new ones start from the default, removed ones go.
    pub fn set_nodes(&self, nodes: &[String]) {
        let mut g = self.map.locked();
        let m = nodes.iter().map(|n| (n.clone(), g.get(n).cloned().unwrap_or_default())).collect();
        *g = std::sync::Arc::new(m);
    }
}

#[cfg(test)]
mod node_map_tests {
    use super::NodeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn set_nodes_keeps_the_values_of_nodes_that_stay_and_old_snapshots_stay_valid() {
        let m: NodeMap<AtomicU64> = NodeMap::new(&["a".into(), "b".into()]);
        m.get("a").unwrap().store(5, Ordering::Relaxed);
        let before = m.snapshot();
        m.set_nodes(&["a".into(), "c".into()]);
        assert_eq!(m.get("a").unwrap().load(Ordering::Relaxed), 5);
        assert!(m.get("b").is_none());
        assert_eq!(m.get("c").unwrap().load(Ordering::Relaxed), 0);
        assert!(before.contains_key("b"), "a snapshot taken before is unchanged");
    }
}
