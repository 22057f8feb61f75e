//! The mesh: the only code that moves data between shards, and the only code that knows how many
//! shards there are and which one is a client id's home.
//!
//! One bounded single-producer single-consumer channel (glommio's `shared_channel`) per ordered pair
//! of shards. Messages are not sent one by one: `Mesh::send` appends to a per-destination batch on
//! the sending shard, and the shard's flusher task ships each non-empty batch as one `Vec` once per
//! tick (after the tasks that produced them yield). A full channel makes the flusher wait; producers
//! never block.
//!
//! Ordering: everything one shard sends to another arrives in the order it was sent (FIFO per pair),
//! which the broker relies on for per-publisher message order and for the retained index.
//!
//! Lives on every shard: `Mesh` is the shard's end of all its channels.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};

use crate::message::Message;
use crate::notify::Notify;
use crate::protocol::{Connect, MqttString, TopicFilter};

/// A shard's index, 0..shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// Token that a `MeshMsg::Ack` echoes back to complete a barrier on the origin shard.
pub type AckToken = u64;

/// Everything one shard tells another.
#[derive(Debug)]
pub enum MeshMsg {
    /// Deliver to the receiving shard's local subscribers (matched there).
    Publish(Message),
    /// Shard `from` now has (`add`) or no longer has local subscribers for `filter` (the filter
    /// proper, without `$share/` prefix). Ack'd when `ack` is set.
    Interest {
        filter: MqttString,
        from: ShardId,
        add: bool,
        ack: Option<AckToken>,
    },
    /// Completes one part of a barrier started by the receiver.
    Ack(AckToken),
    /// To a retained topic's owner shard: order this retained update and apply it everywhere.
    RetainRequest {
        message: Message,
        from: ShardId,
        ack: Option<AckToken>,
    },
    /// From the owner shard to every shard: apply this retained update (empty payload = delete),
    /// then ack to `from` when `ack` is set.
    RetainApply {
        message: Message,
        from: ShardId,
        ack: Option<AckToken>,
    },
    /// Shard `from` now has (`add`) or no longer has members of shared subscription `group`.
    SharedInterest {
        group: TopicFilter,
        from: ShardId,
        add: bool,
        ack: Option<AckToken>,
    },
    /// A message for one member of `group` on the receiving shard; `tried` are the shards
    /// (bits) that could not take it.
    SharedPublish {
        group: TopicFilter,
        message: Message,
        tried: u64,
    },
    /// Take (`on`) or release a hold on a publisher homed on the receiving shard: a subscriber
    /// elsewhere is falling behind (see `shard::flow`).
    Hold { publisher: MqttString, on: bool },
    /// A connection whose CONNECT named a client id homed on the receiving shard.
    Handoff(Handoff),
}

/// A live connection moving to its client id's home shard: the socket, the decoded CONNECT and
/// whatever the client sent after it.
#[derive(Debug)]
pub struct Handoff {
    pub fd: OwnedFd,
    pub connect: Box<Connect>,
    /// The server assigned the client id (it goes back in CONNACK).
    pub assigned: bool,
    /// Enhanced authentication succeeded with this final data (it goes back in CONNACK).
    pub auth_data: Option<bytes::Bytes>,
    /// The connection's place under COREMQ_MAX_CONNECTIONS.
    pub slot: crate::gate::ConnSlot,
    pub buf: BytesMut,
}

/// The shard count and the client-id → home-shard hash (FNV-1a, stable across runs so tests and
/// operators can predict placement).
pub fn home_shard(client_id: &[u8], shards: usize) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in client_id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ShardId((h % shards.max(1) as u64) as usize)
}

/// The unconnected ends of one shard's channels, built on the starting thread and moved to the
/// shard's executor.
pub struct MeshEnds {
    id: ShardId,
    count: usize,
    senders: Vec<Option<shared_channel::SharedSender<Vec<MeshMsg>>>>,
    receivers: Vec<Option<shared_channel::SharedReceiver<Vec<MeshMsg>>>>,
}

/// Channels for `count` shards: element `i` belongs to shard `i`.
pub fn build(count: usize, capacity: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..count)
        .map(|i| MeshEnds {
            id: ShardId(i),
            count,
            senders: (0..count).map(|_| None).collect(),
            receivers: (0..count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..count {
        for to in 0..count {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
            }
        }
    }
    ends
}

/// A shard's connected end of the mesh.
pub struct Mesh {
    id: ShardId,
    count: usize,
    senders: Vec<Option<ConnectedSender<Vec<MeshMsg>>>>,
    outbox: RefCell<Vec<Vec<MeshMsg>>>,
    pending: Notify,
}

/// A connected receiving end, read by one task per peer.
pub struct Inbound {
    pub from: ShardId,
    rx: ConnectedReceiver<Vec<MeshMsg>>,
}

impl Inbound {
    /// The next batch from `from`, `None` once the sender is gone.
    pub async fn recv(&self) -> Option<Vec<MeshMsg>> {
        self.rx.recv().await
    }
}

impl MeshEnds {
    /// Connects every channel end; must run on the shard's own executor. Each `connect` waits
    /// for the peer's matching end, so all of them run concurrently (sequential connects across
    /// shards would deadlock).
    pub async fn connect(self) -> (Mesh, Vec<Inbound>) {
        let send_tasks: Vec<_> = self
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
            .collect();
        let recv_tasks: Vec<_> = self
            .receivers
            .into_iter()
            .map(|r| r.map(|r| glommio::spawn_local(r.connect())))
            .collect();
        let mut senders = Vec::with_capacity(self.count);
        for t in send_tasks {
            senders.push(match t {
                Some(t) => Some(t.await),
                None => None,
            });
        }
        let mut inbound = Vec::new();
        for (i, t) in recv_tasks.into_iter().enumerate() {
            if let Some(t) = t {
                inbound.push(Inbound {
                    from: ShardId(i),
                    rx: t.await,
                });
            }
        }
        let mesh = Mesh {
            id: self.id,
            count: self.count,
            senders,
            outbox: RefCell::new((0..self.count).map(|_| Vec::new()).collect()),
            pending: Notify::new(),
        };
        (mesh, inbound)
    }
}

impl Mesh {
    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The home shard of a client id.
    pub fn home_of(&self, client_id: &[u8]) -> ShardId {
        home_shard(client_id, self.count)
    }

    /// The shard that orders updates of a retained topic.
    pub fn retain_owner(&self, topic: &[u8]) -> ShardId {
        home_shard(topic, self.count)
    }

    /// Every other shard.
    pub fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.count).map(ShardId).filter(move |s| *s != self.id)
    }

    /// Queues `msg` for shard `to` (not this shard); it leaves with the next flush.
    pub fn send(&self, to: ShardId, msg: MeshMsg) {
        if let Some(batch) = self.outbox.borrow_mut().get_mut(to.0) {
            batch.push(msg);
        }
        self.pending.notify();
    }

    /// Ships queued batches until `stop` says so. Runs as one task per shard.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            self.pending.wait().await;
            let batches: Vec<(usize, Vec<MeshMsg>)> = self
                .outbox
                .borrow_mut()
                .iter_mut()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(i, b)| (i, std::mem::take(b)))
                .collect();
            for (to, batch) in batches {
                if let Some(Some(tx)) = self.senders.get(to) {
                    // Err only when the peer is gone (shutdown): nothing left to deliver to.
                    let _ = tx.send(batch).await;
                }
            }
        }
    }

    /// Closes the sending ends so peers' receive loops end.
    pub fn close(&self) {
        for tx in self.senders.iter().flatten() {
            tx.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shard_is_stable_and_in_range() {
        for shards in 1..8 {
            for id in ["a", "client-1", "", "😀"] {
                let s = home_shard(id.as_bytes(), shards);
                assert!(s.0 < shards);
                assert_eq!(s, home_shard(id.as_bytes(), shards));
            }
        }
        // Spread: 1000 ids over 4 shards land everywhere.
        let mut counts = [0; 4];
        for i in 0..1000 {
            counts[home_shard(format!("c{i}").as_bytes(), 4).0] += 1;
        }
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
    }
}
