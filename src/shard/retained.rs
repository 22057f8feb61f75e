//! The retained store, replicated on every shard so a subscribe on any shard reads it locally and
//! at once, indexed by topic (`TopicIndex`) so a SUBSCRIBE visits only the topics its filter can
//! match.
//!
//! An update goes to the topic's owner shard (`Mesh::retain_owner`), which applies it and
//! forwards it to every other shard. Each topic's updates are thus ordered by one shard and travel
//! FIFO channels, so every replica applies them in the same order and the replicas agree. For QoS
//! 1/2 the PUBACK / PUBREC waits for every shard's ack (a barrier).

use std::time::Instant;

use super::barrier::Barrier;
use super::Shard;
use crate::mesh::{AckToken, MeshMsg, ShardId};
use crate::message::Message;
use crate::topic::TopicIndex;

/// Topic → retained message (retain flag set, payload detached from read buffers).
#[derive(Default)]
pub(super) struct RetainedStore {
    index: TopicIndex<Message>,
    /// Topic and payload bytes of the stored messages.
    bytes: usize,
}

impl RetainedStore {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Topic and payload bytes stored.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Calls `f` with every stored message.
    pub fn for_each(&self, f: impl FnMut(&Message)) {
        self.index.for_each(f);
    }

    /// Stores, replaces, or (empty payload) removes the topic's message [MQTT-3.3.1-10].
    fn apply(&mut self, message: Message) {
        let old = if message.payload.is_empty() {
            self.index.remove(message.topic.as_str())
        } else {
            self.bytes += size(&message);
            let topic = message.topic.clone();
            self.index.insert(topic.as_str(), message)
        };
        if let Some(old) = old {
            self.bytes = self.bytes.saturating_sub(size(&old));
        }
    }

    /// The messages whose topic `filter` matches, leaving out (and removing) expired ones
    /// [MQTT-3.3.2-5].
    fn matching(&mut self, filter: &str, now: Instant) -> Vec<Message> {
        let mut found = Vec::new();
        let mut expired = false;
        self.index.for_each_match(filter, |m| {
            if m.is_expired(now) {
                expired = true;
            } else {
                found.push(m.clone());
            }
        });
        if expired {
            let mut freed = 0;
            self.index.retain(|m| {
                let keep = !m.is_expired(now);
                if !keep {
                    freed += size(m);
                }
                keep
            });
            self.bytes = self.bytes.saturating_sub(freed);
        }
        found
    }
}

fn size(m: &Message) -> usize {
    m.topic.as_bytes().len() + m.payload.len()
}

impl Shard {
    /// Starts a retained update (store, replace, or delete when the payload is empty) from a
    /// client on this shard. `wait`: `Some(None)` returns a barrier that completes once every
    /// shard applied it; `Some(Some(token))` counts those acks into the caller's barrier instead
    /// (the owner acks once the update is on disk, when the store is on).
    pub(super) fn update_retained(
        &self,
        message: Message,
        wait: Option<Option<AckToken>>,
    ) -> Option<Barrier> {
        let n = self.mesh.peer_count() + 1;
        let (ack, barrier) = match wait {
            None => (None, None),
            Some(None) => {
                let (t, b) = self.barriers.borrow_mut().open(n);
                (Some(t), Some(b))
            }
            Some(Some(t)) => {
                self.barriers.borrow_mut().expect(t, n);
                (Some(t), None)
            }
        };
        let owner = self.mesh.retain_owner(message.topic.as_bytes());
        let from = self.id();
        self.post(owner, MeshMsg::RetainRequest { message, from, ack });
        barrier
    }

    /// On the owner shard: record (when the store is on), apply, then forward to every other
    /// shard. The owner's ack waits for the record to be on disk.
    pub(super) fn order_retained(&self, message: Message, from: ShardId, ack: Option<AckToken>) {
        self.keep_retained(&message);
        self.mesh.broadcast(|| MeshMsg::RetainApply {
            message: message.clone(),
            from,
            ack,
        });
        self.apply_retained(message);
        if let Some(token) = ack {
            self.ack_after_sync(from, token);
        }
    }

    pub(super) fn apply_retained(&self, message: Message) {
        self.retained.borrow_mut().apply(message);
    }

    /// Retained messages whose topic matches `filter`, for delivery on subscribe.
    pub(super) fn retained_matching(&self, filter: &str, now: Instant) -> Vec<Message> {
        self.retained.borrow_mut().matching(filter, now)
    }
}
