//! A shared value with change notification whose wake-up order is deterministic.
//!
//! `tokio::sync::watch` spreads waiters over several internal notifiers chosen by
//! tokio's thread RNG (seeded from the OS unless built with `tokio_unstable`), which makes
//! simulations diverge between runs of the same seed. [`Signal`] wakes its waiters in the
//! order they started waiting (a single `Notify`), so the same seed gives the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use crate::sync::Locked;

use tokio::sync::Notify;

/// A value shared by one or more setters and any number of waiters.
pub struct Signal<T> {
    inner: Arc<(Mutex<T>, Notify)>,
    /// Bumped by every [`Signal::set`]: readers on a hot path compare it with the
    /// version of their copy instead of locking the value.
    version: Arc<AtomicU64>,
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Signal { inner: self.inner.clone(), version: self.version.clone() }
    }
}

impl<T> Signal<T> {
    pub fn new(value: T) -> Self {
        Signal { inner: Arc::new((Mutex::new(value), Notify::new())), version: Arc::new(AtomicU64::new(0)) }
    }

    /// Replaces the value and wakes every waiter.
    pub fn set(&self, value: T) {
        *self.inner.0.locked() = value;
        self.version.fetch_add(1, Ordering::Release);
        self.inner.1.notify_waiters();
    }

    /// How many times the value was set.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Runs `f` on the current value.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.inner.0.locked())
    }

    /// Waits until `pred` holds for the value.
    pub async fn wait_for(&self, mut pred: impl FnMut(&T) -> bool) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.with(&mut pred) {
                return;
            }
            notified.await;
        }
    }
}

impl<T: Clone> Signal<T> {
    pub fn get(&self) -> T {
        self.with(T::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiter_sees_a_value_set_after_it_started_waiting() {
        let s = Signal::new(0);
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.wait_for(|v| *v == 2).await });
        tokio::task::yield_now().await;
        s.set(1);
        s.set(2);
        waiter.await.unwrap();
        assert_eq!(s.get(), 2);
    }

    #[tokio::test]
    async fn wait_returns_at_once_when_the_predicate_already_holds() {
        let s = Signal::new(true);
        s.wait_for(|v| *v).await;
    }
}
