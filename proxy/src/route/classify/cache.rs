//! The classifier's result cache: normalised statement text ([`super::scan::normalise`])
//! → shared [`Classified`].
//!
//! Bounded and sharded: `capacity` entries spread over up to 16 shards (chosen by the
//! key's hash), each behind its own mutex, so sessions on different worker threads rarely
//! wait for each other. A full shard evicts with CLOCK (second chance): every hit marks
//! its entry, the hand clears marks until it finds an unmarked entry to replace. Each shard
//! maps the 64-bit hash to a slot and the slot holds the full key, compared on every hit,
//! so two keys with one hash never share a result (the later one just replaces the
//! earlier one).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use crate::sync::Locked;

use crate::route::class::Classified;

/// Most shards a cache has.
const MAX_SHARDS: usize = 16;

pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
}

struct Shard {
    /// hash → slot index.
    map: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    slots: Vec<Slot>,
    capacity: usize,
    hand: usize,
}

struct Slot {
    hash: u64,
    key: Box<[u8]>,
    value: Arc<Classified>,
    referenced: bool,
}

impl Cache {
    /// A cache of `capacity` entries in total (more than 0).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        // Shards of at least 64 entries, so small caches stay close to LRU.
        let shards = (capacity / 64).clamp(1, MAX_SHARDS).next_power_of_two().min(MAX_SHARDS);
        let per_shard = capacity.div_ceil(shards);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_capacity_and_hasher(per_shard.min(1024), Default::default()),
                    slots: Vec::with_capacity(per_shard.min(1024)),
                    capacity: per_shard,
                    hand: 0,
                })
            })
            .collect();
        Cache { shards }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // The high bits pick the shard; the map inside uses all of them.
        &self.shards[(hash >> 58) as usize & (self.shards.len() - 1)]
    }

    pub fn get(&self, hash: u64, key: &[u8]) -> Option<Arc<Classified>> {
        let mut shard = self.shard(hash).locked();
        let idx = *shard.map.get(&hash)? as usize;
        let slot = &mut shard.slots[idx];
        if &*slot.key != key {
            return None;
        }
        slot.referenced = true;
        Some(slot.value.clone())
    }

    pub fn insert(&self, hash: u64, key: Box<[u8]>, value: Arc<Classified>) {
        let mut guard = self.shard(hash).locked();
        let shard = &mut *guard;
        if let Some(&idx) = shard.map.get(&hash) {
            // Same hash: the same key (a concurrent miss) or a collision; either way the
            // newer entry takes the slot.
            let slot = &mut shard.slots[idx as usize];
            slot.key = key;
            slot.value = value;
            return;
        }
        let new = Slot { hash, key, value, referenced: false };
        if shard.slots.len() < shard.capacity {
            shard.map.insert(hash, shard.slots.len() as u32);
            shard.slots.push(new);
            return;
        }
        // CLOCK: give referenced entries a second chance.
        let n = shard.slots.len();
        loop {
            let h = shard.hand;
            shard.hand = (h + 1) % n;
            let slot = &mut shard.slots[h];
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            shard.map.remove(&slot.hash);
            shard.map.insert(hash, h as u32);
            *slot = new;
            return;
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.locked().slots.len()).sum()
    }
}

/// The keys are already hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::class::Kind;

    fn val(k: Kind) -> Arc<Classified> {
        Arc::new(Classified::new(k))
    }

    #[test]
    fn cache_never_holds_more_than_its_capacity() {
        let c = Cache::new(100);
        for i in 0..10_000u64 {
            c.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i.to_le_bytes().into(), val(Kind::Read));
        }
        assert!(c.len() <= 100 + MAX_SHARDS, "{}", c.len());
    }

    #[test]
    fn hash_collision_with_a_different_key_is_a_miss() {
        let c = Cache::new(10);
        c.insert(7, b"a".to_vec().into(), val(Kind::Read));
        assert!(c.get(7, b"a").is_some());
        assert!(c.get(7, b"b").is_none());
        c.insert(7, b"b".to_vec().into(), val(Kind::Write));
        assert_eq!(c.get(7, b"b").unwrap().kind, Kind::Write);
        assert!(c.get(7, b"a").is_none());
    }

    #[test]
    fn clock_keeps_entries_that_are_hit() {
        let c = Cache::new(4);
        for i in 0..4u64 {
            c.insert(i, vec![i as u8].into(), val(Kind::Read));
        }
        // Hit entry 0 repeatedly while inserting new ones: it stays.
        for i in 4..40u64 {
            assert!(c.get(0, &[0]).is_some(), "evicted at {i}");
            c.insert(i, vec![i as u8].into(), val(Kind::Read));
        }
    }
}
