//! The sessions homed on a shard, by client id (home shard only). Entries sit side by side in
//! fixed-size chunks and an index maps each client id to its slot, rather than living in the
//! buckets of a hash map: a hash map keeps a third or more of its buckets free, and with entries
//! of a few hundred bytes every free bucket costs as much as a session. A single vector would do
//! no better, since it doubles when full; chunks of 64 KiB are added one at a time. (This table is
//! most of what an idle connection costs; see the README's memory figures.) The slot number is
//! also the short, stable name a parked connection's socket is registered under (`net::park`).
//! The index holds only slot numbers (4 bytes a bucket), found by the hash of the client id the
//! session itself keeps (`Keyed`), so no second copy of every client id is kept for it.
//!
//! Worked example: sessions "a", "b", "c" take slots 0, 1, 2 (all in the first chunk); removing
//! "b" frees slot 1, which the next new session ("d") takes, so there are never more free slots
//! than the most sessions ever held at once minus those held now, plus one chunk.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::protocol::ClientId;

/// What the table finds a session by.
pub(super) trait Keyed {
    fn client_id(&self) -> &ClientId;
}

/// Bytes per chunk: a size the allocator serves with next to no rounding.
const CHUNK_BYTES: usize = 64 * 1024;

pub(super) struct SessionTable<T> {
    chunks: Vec<Box<[Option<T>]>>,
    /// Slots handed out so far (all of them below this are in `chunks`).
    used: usize,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
    /// The taken slots, by the hash of their session's client id.
    index: HashTable<u32>,
    /// Keyed at random (SipHash), so nobody can choose client ids that collide.
    hasher: RandomState,
}

impl<T> Default for SessionTable<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            used: 0,
            free: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl<T: Keyed> SessionTable<T> {
    /// Slots per chunk.
    const CHUNK: usize = {
        let n = CHUNK_BYTES / std::mem::size_of::<Option<T>>();
        if n == 0 {
            1
        } else {
            n
        }
    };

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of a session.
    pub fn key_of(&self, client_id: &ClientId) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(self.hasher.hash_one(client_id), |&k| {
                Self::at(chunks, k).is_some_and(|e| e.client_id() == client_id)
            })
            .copied()
    }

    /// The slot of `client_id`'s session, trying `hint` (where it was found before) first: one
    /// slot checked, usually by pointer (the caller's id is a clone of the session's), instead
    /// of hashing the id.
    pub fn key_near(&self, client_id: &ClientId, hint: u32) -> Option<u32> {
        let at_hint = Self::at(&self.chunks, hint).is_some_and(|e| {
            let (a, b) = (e.client_id().as_bytes(), client_id.as_bytes());
            (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
        });
        if at_hint {
            Some(hint)
        } else {
            self.key_of(client_id)
        }
    }

    fn at(chunks: &[Box<[Option<T>]>], key: u32) -> Option<&T> {
        let k = key as usize;
        chunks.get(k / Self::CHUNK)?[k % Self::CHUNK].as_ref()
    }

    pub fn get(&self, client_id: &ClientId) -> Option<&T> {
        let k = self.key_of(client_id)? as usize;
        self.chunks.get(k / Self::CHUNK)?[k % Self::CHUNK].as_ref()
    }

    pub fn get_mut(&mut self, client_id: &ClientId) -> Option<&mut T> {
        let k = self.key_of(client_id)?;
        self.by_key_mut(k)
    }

    /// The session in slot `key`, if the slot is taken.
    pub fn by_key_mut(&mut self, key: u32) -> Option<&mut T> {
        let k = key as usize;
        self.chunks.get_mut(k / Self::CHUNK)?[k % Self::CHUNK].as_mut()
    }

    fn slot(&mut self, key: u32) -> &mut Option<T> {
        let k = key as usize;
        &mut self.chunks[k / Self::CHUNK][k % Self::CHUNK]
    }

    /// Adds (or replaces) the session of `entry`'s client id; returns its slot.
    pub fn insert(&mut self, entry: T) -> u32 {
        if let Some(k) = self.key_of(entry.client_id()) {
            *self.slot(k) = Some(entry);
            return k;
        }
        let hash = self.hasher.hash_one(entry.client_id());
        let k = match self.free.pop() {
            Some(k) => k,
            None => {
                if self.used == self.chunks.len() * Self::CHUNK {
                    self.chunks.push((0..Self::CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                (self.used - 1) as u32
            }
        };
        *self.slot(k) = Some(entry);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index.insert_unique(hash, k, |&k| {
            Self::at(chunks, k).map_or(0, |e| hasher.hash_one(e.client_id()))
        });
        k
    }

    pub fn remove(&mut self, client_id: &ClientId) -> Option<T> {
        let chunks = &self.chunks;
        let found = self
            .index
            .find_entry(self.hasher.hash_one(client_id), |&k| {
                Self::at(chunks, k).is_some_and(|e| e.client_id() == client_id)
            })
            .ok()?;
        let (k, _) = found.remove();
        self.free.push(k);
        self.slot(k).take()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter()).flatten()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        ClientId::copy_from(s).unwrap()
    }

    /// A session stand-in: its client id and a number.
    #[derive(Debug, PartialEq)]
    struct S(ClientId, u32);

    impl Keyed for S {
        fn client_id(&self) -> &ClientId {
            &self.0
        }
    }

    fn s(name: &str, n: u32) -> S {
        S(id(name), n)
    }

    #[test]
    fn finds_replaces_and_removes_by_client_id() {
        let mut t = SessionTable::default();
        let a = t.insert(s("a", 1));
        let b = t.insert(s("b", 2));
        assert_ne!(a, b);
        assert_eq!(t.get(&id("a")), Some(&s("a", 1)));
        assert_eq!(t.insert(s("a", 10)), a, "replacing keeps the slot");
        assert_eq!(t.get(&id("a")), Some(&s("a", 10)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(&id("a")), Some(s("a", 10)));
        assert_eq!(t.get(&id("a")), None);
        assert_eq!(t.remove(&id("a")), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.by_key_mut(b), Some(&mut s("b", 2)));
        assert_eq!(t.by_key_mut(a), None, "a freed slot holds nothing");
    }

    #[test]
    fn a_hint_is_checked_and_a_wrong_one_falls_back_to_the_index() {
        let mut t = SessionTable::default();
        let a = t.insert(s("a", 1));
        let b = t.insert(s("b", 2));
        assert_eq!(t.key_near(&id("a"), a), Some(a), "right hint");
        assert_eq!(t.key_near(&id("a"), b), Some(a), "another session's slot");
        assert_eq!(t.key_near(&id("a"), u32::MAX), Some(a), "no hint yet");
        t.remove(&id("a"));
        assert_eq!(t.key_near(&id("a"), a), None, "a freed slot");
        let c = t.insert(s("c", 3));
        assert_eq!(c, a, "the freed slot is reused");
        assert_eq!(
            t.key_near(&id("a"), a),
            None,
            "the slot's new session is not a's"
        );
        assert_eq!(t.key_near(&id("c"), b), Some(c));
    }

    #[test]
    fn thousands_of_sessions_are_found_after_the_index_grows() {
        let mut t = SessionTable::default();
        let keys: Vec<u32> = (0..5000)
            .map(|i| t.insert(s(&format!("c{i}"), i)))
            .collect();
        for i in (0..5000).step_by(2) {
            assert_eq!(
                t.remove(&id(&format!("c{i}"))),
                Some(s(&format!("c{i}"), i))
            );
        }
        for i in 0..5000u32 {
            let want = (i % 2 == 1).then(|| keys[i as usize]);
            assert_eq!(t.key_of(&id(&format!("c{i}"))), want, "c{i}");
        }
        assert_eq!(t.len(), 2500);
    }

    #[test]
    fn freed_slots_are_reused_so_the_vector_does_not_grow_with_churn() {
        let mut t = SessionTable::default();
        for round in 0..100 {
            let keys: Vec<u32> = (0..100)
                .map(|i| t.insert(s(&format!("{round}/{i}"), i)))
                .collect();
            assert!(keys.iter().all(|&k| k < 100), "{keys:?}");
            assert_eq!(t.chunks.len(), 1, "100 small sessions fit in one chunk");
            for i in 0..100 {
                let name = format!("{round}/{i}");
                assert_eq!(t.remove(&id(&name)), Some(s(&name, i)));
            }
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.values_mut().count(), 0);
        let k = t.insert(s("x", 7));
        assert!(k < 100);
        assert_eq!(t.values_mut().map(|v| v.1).collect::<Vec<_>>(), vec![7]);
    }
}
