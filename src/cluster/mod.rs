//! Several coremq nodes sharing one MQTT namespace through NATS (COREMQ_CLUSTER_NATS).
//!
//! # What runs where
//! - The **link thread** (`node.rs`, one per broker, named `coremq-cluster`) runs the NATS
//!   client (`async-nats`, which needs tokio) on a single-threaded tokio runtime. It owns every
//!   NATS subscription and the JetStream key-value buckets.
//! - **Shards** talk to it through a `ShardLink`: what they send (`ToCluster`) goes into one
//!   bounded queue toward the link thread, never waiting — a full queue drops and counts; what
//!   comes back (`FromCluster`) arrives in a bounded queue per shard, with a wake-up (a byte on
//!   a socket pair, `net::doorbell`) when the shard sleeps. So a slow node or an unreachable NATS
//!   never stalls a shard, and memory stays bounded.
//!
//! # Routing
//! A node subscribes in NATS only to what its clients subscribe to (filters mapped to subjects,
//! `subject.rs`), reference-counted over its shards; a message published here goes to NATS once,
//! on its topic's subject, and NATS forwards it to every node with a matching subscription —
//! once per node, where there is interest (a node whose filters overlap gets one copy per
//! matching subscription and routes only the first: each message carries its origin node and a
//! sequence number). Shared subscriptions are NATS queue groups, so each message goes to one
//! member cluster-wide.
//!
//! # Client ids and retained messages
//! JetStream KV bucket `coremq_clients` maps each client id to the node it last connected to,
//! written with compare-and-set on the entry's revision; every node watches it and disconnects
//! (0x8E) its own connection of an id another node took. Bucket `coremq_retained` holds the
//! retained messages (one key per topic); every node loads it at start and applies its updates.

pub mod interest;
pub mod node;
pub mod subject;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Delivery, Message};
use crate::protocol::{decode, ClientId, Packet, PacketId, ProtocolVersion, TopicFilter};

/// What a shard tells the link thread.
#[derive(Debug)]
pub enum ToCluster {
    /// A message published on this node (never `$` topics, never one that came from NATS).
    Publish(Message),
    /// A retained message published here (an empty payload clears the topic).
    Retain(Message),
    /// A filter gained its first subscriber on this shard (`true`) or lost its last.
    Interest { filter: String, add: bool },
    /// A shared subscription (`$share/GROUP/FILTER`) gained its first member on this shard or
    /// lost its last.
    Shared {
        group: String,
        filter: String,
        add: bool,
    },
    /// A client connected here (the registry of client ids).
    Connected(ClientId),
}

/// What the link thread hands a shard.
#[derive(Debug)]
pub enum FromCluster {
    /// A message from another node, for this node's (non-shared) subscribers.
    Publish(Message),
    /// A message for this node's members of one shared subscription (`$share/GROUP/FILTER`).
    Shared(TopicFilter, Message),
    /// A retained message another node published (an empty payload clears the topic).
    Retained(Message),
    /// Another node took this client id: close its connection here, if any (0x8E).
    TakenOver(ClientId),
    /// Some node now wants messages on this filter (`true`), or none does any more: messages
    /// published here go to NATS only when their topic matches a wanted filter.
    Interest(String, bool),
    /// Whether the other nodes' filters are known (`true`), or still being learned (`false`,
    /// after connecting to NATS, until their answers to this node's request had time to come):
    /// meanwhile every message published here goes to NATS, so that none a node wants is kept
    /// back for want of its filter.
    InterestKnown(bool),
}

/// Counters of the cluster link (all shards and the link thread).
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    /// Messages dropped because a queue between the shards and the link thread was full.
    pub dropped: AtomicU64,
    /// Copies of a message that arrived again through another subscription of this node.
    pub duplicates: AtomicU64,
    pub takeovers: AtomicU64,
    /// Whether the NATS connection is up.
    pub connected: AtomicBool,
    /// Whether the JetStream buckets (client ids, retained messages) are open.
    pub ready: AtomicBool,
    /// Whether the other nodes' filters are known (see `FromCluster::InterestKnown`).
    pub interest_known: AtomicBool,
}

/// A snapshot of `ClusterStats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCounts {
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub duplicates: u64,
    pub takeovers: u64,
    pub connected: bool,
    /// The buckets are open and the other nodes' filters known: the node routes as the cluster
    /// wants.
    pub ready: bool,
}

impl ClusterStats {
    pub fn snapshot(&self) -> ClusterCounts {
        ClusterCounts {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            takeovers: self.takeovers.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Relaxed)
                && self.interest_known.load(Ordering::Relaxed),
        }
    }
}

/// How many messages may wait toward the link thread (from all shards) and toward each shard.
/// Bounds in time as much as in memory: a subscriber's node that cannot keep up holds at most a
/// shard's `INBOX` messages (at fan-out 1→100 on this 2-core VM, ~0.3 s of deliveries) and drops
/// and counts the rest, instead of delivering seconds late.
pub const QUEUE: usize = 16_384;
pub const INBOX: usize = 4_096;

/// A running cluster link: the thread, and each shard's handle (taken by the shard at start).
pub struct Links {
    pub shards: Vec<ShardLink>,
    pub thread: node::LinkThread,
    pub stats: Arc<ClusterStats>,
}

/// Starts the link thread for a node of `rings.len()` shards; `rings[i]` wakes shard `i`.
pub fn start(
    urls: Vec<String>,
    node_id: String,
    rings: Vec<Box<dyn Fn() + Send + Sync>>,
) -> std::io::Result<Links> {
    let stats = Arc::new(ClusterStats::default());
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let (ctl, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut inboxes = Vec::with_capacity(rings.len());
    let mut shards = Vec::with_capacity(rings.len());
    for ring in rings {
        let (itx, irx) = mpsc::sync_channel(INBOX);
        let (ictl, ictl_rx) = mpsc::channel();
        let asleep = Arc::new(AtomicBool::new(false));
        inboxes.push(ShardInbox {
            tx: itx,
            ctl: ictl,
            asleep: asleep.clone(),
            ring,
        });
        shards.push(ShardLink {
            tx: tx.clone(),
            ctl: ctl.clone(),
            rx: irx,
            ctl_rx: ictl_rx,
            asleep,
            stats: stats.clone(),
        });
    }
    let config = node::NodeConfig { urls, node_id };
    let thread = node::start(config, rx, ctl_rx, inboxes, stats.clone())?;
    Ok(Links {
        shards,
        thread,
        stats,
    })
}

/// The link thread's end of one shard's inbound queues: messages in a bounded one (full: dropped
/// and counted), the rest (interest, retained changes, takeovers: what keeps a shard in step
/// with the cluster, a few per subscription or retained topic) in one that never drops.
pub struct ShardInbox {
    pub tx: mpsc::SyncSender<FromCluster>,
    pub ctl: mpsc::Sender<FromCluster>,
    /// Set by the shard before it sleeps on its doorbell; whoever clears it rings.
    pub asleep: Arc<AtomicBool>,
    pub ring: Box<dyn Fn() + Send + Sync>,
}

impl ShardInbox {
    /// Queues `msg` for the shard (dropped and counted when its queue is full) and wakes it.
    pub fn deliver(&self, msg: FromCluster, stats: &ClusterStats) {
        match msg {
            FromCluster::Publish(_) | FromCluster::Shared(..) => {
                if self.tx.try_send(msg).is_err() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            other => {
                if self.ctl.send(other).is_err() {
                    return;
                }
            }
        }
        if self.asleep.swap(false, Ordering::SeqCst) {
            (self.ring)();
        }
    }
}

/// A shard's handle on the cluster.
pub struct ShardLink {
    /// Messages toward the link thread (bounded: full drops and counts).
    tx: tokio::sync::mpsc::Sender<ToCluster>,
    /// Everything else toward it (interest, retained, connections): never dropped.
    ctl: tokio::sync::mpsc::UnboundedSender<ToCluster>,
    rx: mpsc::Receiver<FromCluster>,
    ctl_rx: mpsc::Receiver<FromCluster>,
    asleep: Arc<AtomicBool>,
    stats: Arc<ClusterStats>,
}

impl ShardLink {
    /// Sends `msg` to the link thread: a message is dropped and counted when its queue is full;
    /// the rest always goes.
    pub fn send(&self, msg: ToCluster) {
        match msg {
            ToCluster::Publish(_) => {
                if self.tx.try_send(msg).is_err() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            other => {
                let _ = self.ctl.send(other);
            }
        }
    }

    /// Whether this node is connected to NATS now (shared subscriptions are served locally
    /// while it is not).
    pub fn is_connected(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed)
    }

    /// The next message from the link thread, if any (interest and retained changes first).
    pub fn try_recv(&self) -> Option<FromCluster> {
        self.ctl_rx.try_recv().or_else(|_| self.rx.try_recv()).ok()
    }

    /// Marks the shard as about to sleep on its doorbell; the caller checks `try_recv` once
    /// more afterwards (a message queued before the mark rang no bell).
    pub fn sleeping(&self) {
        // SeqCst, as the link's swap: the caller's next `try_recv` must not be ordered before
        // this store, or a message queued in between would ring no bell.
        self.asleep.swap(true, Ordering::SeqCst);
    }
}

/// One message on the wire between nodes: `1`, the origin node id (length byte and bytes), a
/// sequence number (u64, big-endian), then the message as an MQTT 5 PUBLISH.
pub fn encode_message(origin: &str, seq: u64, m: &Message, now: Instant) -> Option<Bytes> {
    let delivery = Delivery {
        qos: m.qos,
        retain: m.retain,
        ..Delivery::default()
    };
    let id = (m.qos as u8 > 0).then(|| PacketId::new(1)).flatten();
    let publish = m.to_publish(&delivery, id, false, now);
    let origin = origin.as_bytes();
    let mut out = BytesMut::with_capacity(10 + origin.len() + m.payload.len() + 64);
    out.put_u8(1);
    out.put_u8(u8::try_from(origin.len()).ok()?);
    out.put_slice(origin);
    out.put_u64(seq);
    Packet::Publish(publish)
        .encode(ProtocolVersion::V5, &mut out)
        .ok()?;
    Some(out.freeze())
}

/// The origin, sequence number and message of `encode_message`'s bytes.
pub fn decode_message(bytes: &[u8], now: Instant) -> Option<(String, u64, Message)> {
    let (&version, rest) = bytes.split_first()?;
    if version != 1 {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let origin = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    let rest = &rest[usize::from(len)..];
    let seq = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let mut frame = BytesMut::from(&rest[8..]);
    match decode(&mut frame, ProtocolVersion::V5, u32::MAX) {
        Ok(Some(Packet::Publish(p))) => Some((
            origin.to_string(),
            seq,
            Message::from_publish(p, ClientId::default(), now),
        )),
        _ => None,
    }
}

/// Recently seen sequence numbers of one origin node (a sliding window of 4,096), to route a
/// message that arrives through several subscriptions only once.
pub struct SeenWindow {
    /// Highest sequence number seen.
    top: u64,
    /// Bit i: `top - i` was seen.
    bits: [u64; 64],
}

impl Default for SeenWindow {
    fn default() -> Self {
        Self {
            top: 0,
            bits: [0; 64],
        }
    }
}

impl SeenWindow {
    /// Records `seq`; false when it was seen before (or is too old to tell).
    pub fn first_time(&mut self, seq: u64) -> bool {
        const SPAN: u64 = 64 * 64;
        if seq > self.top {
            self.shift(seq - self.top);
            self.top = seq;
            self.bits[0] |= 1;
            return true;
        }
        let back = self.top - seq;
        if back >= SPAN {
            return false;
        }
        let (word, bit) = ((back / 64) as usize, back % 64);
        let seen = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        !seen
    }

    /// Moves the window `by` places: bit i becomes bit i + `by` (a word at a time).
    fn shift(&mut self, by: u64) {
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        if words >= self.bits.len() {
            self.bits = [0; 64];
            return;
        }
        for i in (0..self.bits.len()).rev() {
            let hi = if i >= words { self.bits[i - words] } else { 0 };
            let lo = if i > words {
                self.bits[i - words - 1]
            } else {
                0
            };
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MqttString, QoS, TopicName};

    #[test]
    fn messages_cross_the_wire_with_origin_and_sequence() {
        let now = Instant::now();
        let m = Message {
            topic: TopicName::new(MqttString::copy_from("a/b").unwrap()).unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Default::default(),
            publisher: ClientId::copy_from("pub").unwrap(),
            expires_at: None,
            received: now,
        };
        let bytes = encode_message("node-a", 42, &m, now).unwrap();
        let (origin, seq, back) = decode_message(&bytes, now).unwrap();
        assert_eq!((origin.as_str(), seq), ("node-a", 42));
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!((back.qos, back.retain), (QoS::ExactlyOnce, true));
        assert!(decode_message(&bytes[..bytes.len() - 1], now).is_none());
        assert!(decode_message(b"\x02", now).is_none());
    }

    #[test]
    fn a_full_inbox_drops_messages_only_and_a_sleeping_shard_is_rung_once() {
        use std::sync::atomic::AtomicUsize;
        let rung = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::sync_channel(2);
        let (ctl, ctl_rx) = mpsc::channel();
        let asleep = Arc::new(AtomicBool::new(true));
        let r = rung.clone();
        let inbox = ShardInbox {
            tx,
            ctl,
            asleep: asleep.clone(),
            ring: Box::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        };
        let stats = ClusterStats::default();
        let message = || {
            let topic = TopicName::new(MqttString::copy_from("a").unwrap()).unwrap();
            FromCluster::Publish(Message {
                topic,
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
                publisher: ClientId::default(),
                expires_at: None,
                received: Instant::now(),
            })
        };
        for _ in 0..5 {
            inbox.deliver(message(), &stats);
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3, "two fit");
        assert_eq!(rung.load(Ordering::Relaxed), 1, "rung once while it slept");
        assert_eq!(rx.try_iter().count(), 2);
        // What keeps shards in step is never dropped.
        for _ in 0..5 {
            inbox.deliver(FromCluster::Interest("a/#".into(), true), &stats);
        }
        assert_eq!(ctl_rx.try_iter().count(), 5);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
        // Awake (not marked asleep): no ring.
        assert_eq!(rung.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_window_routes_each_sequence_number_once() {
        let mut w = SeenWindow::default();
        assert!(w.first_time(1));
        assert!(w.first_time(3));
        assert!(!w.first_time(1));
        assert!(w.first_time(2));
        assert!(!w.first_time(3));
        assert!(w.first_time(100));
        assert!(!w.first_time(2), "2 was seen");
        assert!(w.first_time(50));
        assert!(w.first_time(10_000));
        assert!(!w.first_time(100), "too old to tell: treated as seen");
        assert!(!w.first_time(10_000));
        // Shifts across words keep what was seen.
        let mut w = SeenWindow::default();
        for seq in [1, 2, 70, 130] {
            assert!(w.first_time(seq));
        }
        assert!(w.first_time(200));
        for seq in [1, 2, 70, 130, 200] {
            assert!(!w.first_time(seq), "{seq} was seen");
        }
        assert!(w.first_time(3));
        assert!(w.first_time(199));
    }
}
