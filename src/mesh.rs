//! The mesh: the only code that moves data between shards, and the only code that knows how many
//! shards there are and which one is a client id's home.
//!
//! A facade in the Seastar/Redpanda manner: callers say *who* should handle a message — the home
//! shard of a client id (`home_of`), the owner of a retained topic (`retain_owner`), a set of
//! shards (`ShardSet`), every other shard (`broadcast`) — and `post` either queues it for that
//! shard or, when it is this shard, hands it straight back for local handling, so a caller has
//! one code path whether the target is local or not. Inbound batches are dispatched by
//! `receive_loop` to one `on_*` method of a `Handler` per message kind.
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

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};

use std::time::Instant;

use crate::guard::GuardKey;
use crate::message::Message;
use crate::notify::Notify;
use crate::protocol::{ClientId, Connect, MqttString, TopicFilter};

/// Most shards a broker can have (`COREMQ_SHARDS` is checked against it at start-up): a
/// `ShardSet` is one 64-bit word.
pub use crate::config::MAX_SHARDS;
const _: () = assert!(MAX_SHARDS <= u64::BITS as usize);

/// A shard's index, 0..shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// A set of shards (bit `i` is shard `i`, up to `MAX_SHARDS`): which shards subscribe to a
/// filter, have members of a shared group, or were tried already.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShardSet(u64);

impl ShardSet {
    pub const EMPTY: ShardSet = ShardSet(0);

    /// The set holding `shard` alone.
    pub fn of(shard: ShardId) -> Self {
        debug_assert!(shard.0 < MAX_SHARDS);
        ShardSet(1 << shard.0)
    }

    pub fn contains(self, shard: ShardId) -> bool {
        shard.0 < MAX_SHARDS && self.0 & (1 << shard.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The shards in `self` and not in `other`.
    pub fn without(self, other: ShardSet) -> Self {
        ShardSet(self.0 & !other.0)
    }

    /// The shards in either.
    pub fn union(self, other: ShardSet) -> Self {
        ShardSet(self.0 | other.0)
    }

    /// The `n`-th shard of the set in increasing order (`n` < `len()`).
    pub fn nth(self, n: usize) -> Option<ShardId> {
        self.iter().nth(n)
    }

    /// The shards, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                ShardId(i)
            })
        })
    }
}

impl std::fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter().map(|s| s.0)).finish()
    }
}

impl MeshMsg {
    /// What the message counts for in the backlog toward its shard (`Mesh::poll_room`): a
    /// QoS 1 or 2 message, which the broker has acknowledged to its publisher, weighs
    /// `ACKED_WEIGHT`; anything else 1.
    fn weight(&self) -> u64 {
        match self {
            MeshMsg::Publish { message, .. } | MeshMsg::SharedPublish { message, .. }
                if message.qos != crate::protocol::QoS::AtMostOnce =>
            {
                ACKED_WEIGHT
            }
            _ => 1,
        }
    }
}

/// Token that a `MeshMsg::Ack` echoes back to complete a barrier on the origin shard.
pub type AckToken = u64;

/// Where to ack once a delivery's store records are on disk (COREMQ_FSYNC always/batch): the
/// origin shard and its barrier's token.
pub type SyncAck = Option<(ShardId, AckToken)>;

/// Everything one shard tells another.
#[derive(Debug)]
pub enum MeshMsg {
    /// Deliver to the receiving shard's local subscribers (matched there); ack to `sync` once
    /// what that stored is on disk.
    Publish { message: Message, sync: SyncAck },
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
    /// Completes one part of a barrier started by the receiver, reporting that what it waited
    /// for could not be stored (disk full, I/O error).
    SyncFailed(AckToken),
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
    /// A message for one member of `group` on the receiving shard; `tried` are the shards that
    /// could not take it.
    SharedPublish {
        group: TopicFilter,
        message: Message,
        tried: ShardSet,
        sync: SyncAck,
    },
    /// Take (`on`) or release a hold on a publisher homed on the receiving shard: a subscriber
    /// elsewhere is falling behind (see `shard::flow`).
    Hold { publisher: ClientId, on: bool },
    /// A connection whose CONNECT named a client id homed on the receiving shard.
    Handoff(Handoff),
    /// To the shard that owns `key` (`owner_of`): one failed login to count.
    LoginFailed { key: GuardKey },
    /// From the shard that owns `key`: refuse its logins until `until`.
    Ban { key: GuardKey, until: Instant },
}

/// What a connection's stream keeps beside its socket (a TLS session, WebSocket framing), moving
/// with it to another shard or into the idle watcher. Only `net` looks inside.
pub type Carried = Box<dyn std::any::Any + Send>;

/// A live connection moving to its client id's home shard: the socket, the decoded CONNECT and
/// whatever the client sent after it.
pub struct Handoff {
    pub fd: OwnedFd,
    /// The stream's state beside the socket (`None`: plain MQTT over TCP).
    pub carried: Option<Carried>,
    pub connect: Box<Connect>,
    /// The server assigned the client id (it goes back in CONNACK).
    pub assigned: bool,
    /// Enhanced authentication succeeded with this final data (it goes back in CONNACK).
    pub auth_data: Option<bytes::Bytes>,
    /// The connection's place under COREMQ_MAX_CONNECTIONS.
    pub slot: crate::gate::ConnSlot,
    pub buf: BytesMut,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("fd", &self.fd)
            .field("carried", &self.carried.is_some())
            .field("client_id", &self.connect.client_id)
            .finish_non_exhaustive()
    }
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
    /// Per peer, how much that peer has handled of what this shard sent it (written by the
    /// peer, read here) ...
    handled_out: Vec<Option<Arc<AtomicU64>>>,
    /// ... and how much this shard has handled of what the peer sent (written here).
    handled_in: Vec<Option<Arc<AtomicU64>>>,
}

/// Channels for `count` shards: element `i` belongs to shard `i`.
pub fn build(count: usize, capacity: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..count)
        .map(|i| MeshEnds {
            id: ShardId(i),
            count,
            senders: (0..count).map(|_| None).collect(),
            receivers: (0..count).map(|_| None).collect(),
            handled_out: (0..count).map(|_| None).collect(),
            handled_in: (0..count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..count {
        for to in 0..count {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers[from] = Some(rx);
                let handled = Arc::new(AtomicU64::new(0));
                ends[from].handled_out[to] = Some(handled.clone());
                ends[to].handled_in[from] = Some(handled);
            }
        }
    }
    ends
}

/// Most of this shard's messages another shard may have on its plate (posted here, in the
/// channel, or being handled there), by weight (`MeshMsg::weight`), before the connections whose
/// messages go there stop reading (`Mesh::poll_room`). Without it a shard that falls behind its
/// peer builds an unbounded queue: QoS 1 pairs x100 (half the pairs across shards) measured p99
/// 84-500 ms and 77-104 MiB peak RSS; with it 22-29 ms and 16-20 MiB (see the README).
const MESH_BACKLOG: u64 = 4096;
/// A QoS 1 or 2 message in the backlog counts for this many: 512 of them fill it, against 4,096
/// QoS 0 ones. Acknowledged messages wait for their holds (`shard::flow`), whose signal travels
/// back through the peer's own backlog; QoS 0 traffic loses throughput to a tight bound (4,096
/// kept QoS 0 pairs x100 within the noise of unbounded, 512 cost a quarter).
const ACKED_WEIGHT: u64 = 8;
/// How often a shard with waiting connections looks at the backlogs: the peers cannot wake it
/// when they catch up.
const RELIEF_POLL: std::time::Duration = std::time::Duration::from_micros(50);
/// How many messages of a batch the receiver handles between telling the sender, so that a
/// long batch does not hold the sender back until its very end.
const HANDLED_STEP: usize = 32;

/// The weight of what one shard has posted to another that the other has not handled yet.
struct Backlog {
    /// Weight posted here so far.
    posted: Cell<u64>,
    /// Weight the peer has handled so far (written by the peer).
    handled: Arc<AtomicU64>,
}

impl Backlog {
    fn new(handled: Arc<AtomicU64>) -> Self {
        Self {
            posted: Cell::new(0),
            handled,
        }
    }

    fn add(&self, weight: u64) {
        self.posted.set(self.posted.get() + weight);
    }

    fn pending(&self) -> u64 {
        let handled = self.handled.load(Ordering::Acquire);
        self.posted.get().saturating_sub(handled)
    }
}

/// Tasks held back by `Mesh::poll_room`, each with the shards it waits for.
#[derive(Default)]
struct RoomWaiters(RefCell<Vec<(ShardSet, Waker)>>);

impl RoomWaiters {
    /// Adds (or updates) the waiter of `waker`: a task polled again before it is woken is
    /// listed once.
    fn add(&self, set: ShardSet, waker: &Waker) {
        let mut list = self.0.borrow_mut();
        match list.iter_mut().find(|(_, w)| w.will_wake(waker)) {
            Some(entry) => entry.0 = set,
            None => list.push((set, waker.clone())),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Wakes (and forgets) every waiter whose shards `still_behind` no longer says are behind.
    fn wake_unless(&self, still_behind: impl Fn(ShardSet) -> bool) {
        self.0.borrow_mut().retain(|(set, waker)| {
            let keep = still_behind(*set);
            if !keep {
                waker.wake_by_ref();
            }
            keep
        });
    }
}

/// A shard's connected end of the mesh.
pub struct Mesh {
    id: ShardId,
    count: usize,
    senders: Vec<Option<ConnectedSender<Vec<MeshMsg>>>>,
    /// Per destination, what leaves with the next flush.
    batches: RefCell<Vec<Vec<MeshMsg>>>,
    pending: Notify,
    /// Per destination, messages and batches sent so far (for the metrics).
    sent_messages: Vec<Cell<u64>>,
    sent_batches: Vec<Cell<u64>>,
    /// Per destination, what it has not handled yet of what was posted to it.
    backlogs: Vec<Option<Backlog>>,
    /// Tasks waiting for the backlogs toward their shards to come down (`poll_room`), and the
    /// wake-up of the task that watches the backlogs for them (`run_relief`).
    waiting: RoomWaiters,
    relief: Notify,
}

/// A connected receiving end, read by one task per peer.
pub struct Inbound {
    pub from: ShardId,
    rx: ConnectedReceiver<Vec<MeshMsg>>,
    /// What the sender reads to know how much of what it sent is handled.
    handled: Arc<AtomicU64>,
}

impl Inbound {
    /// The next batch from `from`, `None` once the sender is gone.
    pub async fn recv(&self) -> Option<Vec<MeshMsg>> {
        self.rx.recv().await
    }

    /// Messages of the sender's weighing `weight` in all are handled.
    fn handled(&self, weight: u64) {
        if weight > 0 {
            self.handled.fetch_add(weight, Ordering::Release);
        }
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
        let mut handled_in = self.handled_in;
        for (i, t) in recv_tasks.into_iter().enumerate() {
            if let (Some(t), Some(handled)) = (t, handled_in[i].take()) {
                inbound.push(Inbound {
                    from: ShardId(i),
                    rx: t.await,
                    handled,
                });
            }
        }
        let mesh = Mesh {
            id: self.id,
            count: self.count,
            senders,
            batches: RefCell::new((0..self.count).map(|_| Vec::new()).collect()),
            pending: Notify::new(),
            sent_messages: (0..self.count).map(|_| Cell::new(0)).collect(),
            sent_batches: (0..self.count).map(|_| Cell::new(0)).collect(),
            backlogs: (self.handled_out.into_iter())
                .map(|h| h.map(Backlog::new))
                .collect(),
            waiting: RoomWaiters::default(),
            relief: Notify::new(),
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

    /// The shard that owns a key by hash (failed-login counts of an address or user name).
    pub fn owner_of(&self, key: &[u8]) -> ShardId {
        home_shard(key, self.count)
    }

    /// The shard that orders updates of a retained topic.
    pub fn retain_owner(&self, topic: &[u8]) -> ShardId {
        home_shard(topic, self.count)
    }

    /// Every other shard.
    pub fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.count).map(ShardId).filter(move |s| *s != self.id)
    }

    /// How many other shards there are (the acks a barrier to all of them waits for).
    pub fn peer_count(&self) -> usize {
        self.count - 1
    }

    /// Sends `msg` to shard `to`; when `to` is this shard the message comes back (`Some`) for the
    /// caller to handle at once. This is the owner-or-local call every cross-shard action makes.
    #[must_use = "a message for this shard must be handled by the caller"]
    pub fn post(&self, to: ShardId, msg: MeshMsg) -> Option<MeshMsg> {
        if to == self.id {
            return Some(msg);
        }
        if let Some(batch) = self.batches.borrow_mut().get_mut(to.0) {
            if let Some(Some(backlog)) = self.backlogs.get(to.0) {
                backlog.add(msg.weight());
            }
            batch.push(msg);
        }
        self.pending.notify();
        None
    }

    /// Sends a message made by `make` to every shard of `set` except this one.
    pub fn send_to_set(&self, set: ShardSet, mut make: impl FnMut() -> MeshMsg) {
        for to in set.without(ShardSet::of(self.id)).iter() {
            let _ = self.post(to, make());
        }
    }

    /// Sends a message made by `make` to every other shard.
    pub fn broadcast(&self, mut make: impl FnMut() -> MeshMsg) {
        for to in self.peers() {
            let _ = self.post(to, make());
        }
    }

    /// Ships queued batches until `stop` says so. Runs as one task per shard.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            self.pending.wait().await;
            let batches: Vec<(usize, Vec<MeshMsg>)> = self
                .batches
                .borrow_mut()
                .iter_mut()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(i, b)| (i, std::mem::take(b)))
                .collect();
            for (to, batch) in batches {
                if let (Some(m), Some(b)) = (self.sent_messages.get(to), self.sent_batches.get(to))
                {
                    m.set(m.get() + batch.len() as u64);
                    b.set(b.get() + 1);
                }
                if let Some(Some(tx)) = self.senders.get(to) {
                    // Err only when the peer is gone (shutdown): nothing left to deliver to.
                    let _ = tx.send(batch).await;
                }
            }
        }
    }

    /// Whether a shard of `set` has more than `limit` (by weight) of this shard's messages
    /// unhandled.
    fn behind(&self, set: ShardSet, limit: u64) -> bool {
        set.iter().any(|to| {
            let backlog = self.backlogs.get(to.0).and_then(Option::as_ref);
            backlog.is_some_and(|b| b.pending() > limit)
        })
    }

    /// `Ready` unless a shard of `set` is more than `MESH_BACKLOG` behind with this shard's
    /// messages; then the task is woken once every shard of `set` is down to half of that. A
    /// connection whose messages went to `set` reads nothing meanwhile, which is the publisher's
    /// backpressure when a peer shard cannot keep up.
    pub fn poll_room(&self, set: ShardSet, cx: &mut Context<'_>) -> Poll<()> {
        if !self.behind(set, MESH_BACKLOG) {
            return Poll::Ready(());
        }
        self.waiting.add(set, cx.waker());
        self.relief.notify();
        Poll::Pending
    }

    /// Wakes the tasks `poll_room` holds back as the shards they wait for catch up. The peers
    /// cannot wake this shard when they do, so while anybody waits the backlogs are looked at
    /// every `RELIEF_POLL`. Runs as one task per shard.
    pub async fn run_relief(self: Rc<Self>) {
        loop {
            self.relief.wait().await;
            while !self.waiting.is_empty() {
                glommio::timer::sleep(RELIEF_POLL).await;
                self.waiting
                    .wake_unless(|set| self.behind(set, MESH_BACKLOG / 2));
            }
        }
    }

    /// Messages and batches sent to each shard so far (by shard index).
    pub fn sent(&self) -> (Vec<u64>, Vec<u64>) {
        let get = |v: &[Cell<u64>]| v.iter().map(Cell::get).collect();
        (get(&self.sent_messages), get(&self.sent_batches))
    }

    /// Closes the sending ends so peers' receive loops end.
    pub fn close(&self) {
        for tx in self.senders.iter().flatten() {
            tx.close();
        }
    }
}

/// What a shard does with each kind of message from another shard (or from itself, through
/// `post`): one method per `MeshMsg` variant.
pub trait Handler {
    /// Deliver to this shard's local subscribers; ack to `sync` once stored.
    fn on_publish(&self, message: Message, sync: SyncAck);
    /// Shard `from` gained or lost its local subscribers of `filter`.
    fn on_interest(&self, filter: MqttString, from: ShardId, add: bool, ack: Option<AckToken>);
    /// One part of a barrier this shard opened is done.
    fn on_ack(&self, token: AckToken);
    /// One part of a barrier this shard opened failed to store what it waited for.
    fn on_sync_failed(&self, token: AckToken);
    /// This shard owns the retained topic: order the update and apply it everywhere.
    fn on_retain_request(&self, message: Message, from: ShardId, ack: Option<AckToken>);
    /// Apply a retained update ordered by the topic's owner.
    fn on_retain_apply(&self, message: Message, from: ShardId, ack: Option<AckToken>);
    /// Shard `from` gained or lost its members of shared subscription `group`.
    fn on_shared_interest(
        &self,
        group: TopicFilter,
        from: ShardId,
        add: bool,
        ack: Option<AckToken>,
    );
    /// A message for one member of `group` here.
    fn on_shared_publish(
        &self,
        group: TopicFilter,
        message: Message,
        tried: ShardSet,
        sync: SyncAck,
    );
    /// A hold on a publisher homed here was taken or released.
    fn on_hold(&self, publisher: ClientId, on: bool);
    /// A connection for a client id homed here.
    fn on_handoff(&self, handoff: Handoff);
    /// This shard owns `key`'s failed-login count: one more failure.
    fn on_login_failed(&self, key: GuardKey);
    /// Refuse `key`'s logins until `until`.
    fn on_ban(&self, key: GuardKey, until: Instant);
}

/// Hands `msg` to the `Handler` method for its kind.
pub fn dispatch(handler: &impl Handler, msg: MeshMsg) {
    match msg {
        MeshMsg::Publish { message, sync } => handler.on_publish(message, sync),
        MeshMsg::Interest {
            filter,
            from,
            add,
            ack,
        } => handler.on_interest(filter, from, add, ack),
        MeshMsg::Ack(token) => handler.on_ack(token),
        MeshMsg::SyncFailed(token) => handler.on_sync_failed(token),
        MeshMsg::RetainRequest { message, from, ack } => {
            handler.on_retain_request(message, from, ack)
        }
        MeshMsg::RetainApply { message, from, ack } => handler.on_retain_apply(message, from, ack),
        MeshMsg::SharedInterest {
            group,
            from,
            add,
            ack,
        } => handler.on_shared_interest(group, from, add, ack),
        MeshMsg::SharedPublish {
            group,
            message,
            tried,
            sync,
        } => handler.on_shared_publish(group, message, tried, sync),
        MeshMsg::Hold { publisher, on } => handler.on_hold(publisher, on),
        MeshMsg::Handoff(h) => handler.on_handoff(h),
        MeshMsg::LoginFailed { key } => handler.on_login_failed(key),
        MeshMsg::Ban { key, until } => handler.on_ban(key, until),
    }
}

/// Handles the batches from one peer shard until it closes its end (one task per peer).
pub async fn receive_loop(handler: Rc<impl Handler>, inbound: Inbound) {
    while let Some(batch) = inbound.recv().await {
        // The sender sees progress within a long batch too, so it need not wait for the end.
        let mut weight = 0;
        for (i, msg) in batch.into_iter().enumerate() {
            weight += msg.weight();
            dispatch(&*handler, msg);
            if i % HANDLED_STEP == HANDLED_STEP - 1 {
                inbound.handled(weight);
                weight = 0;
            }
        }
        inbound.handled(weight);
        glommio::yield_if_needed().await;
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

#[cfg(test)]
mod backlog_tests {
    use super::*;
    use crate::protocol::{QoS, TopicName};
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    fn publish(qos: QoS) -> MeshMsg {
        let message = Message {
            topic: TopicName::from_static("t").unwrap(),
            payload: bytes::Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: Default::default(),
            publisher: ClientId::default(),
            expires_at: None,
            received: Instant::now(),
        };
        MeshMsg::Publish {
            message,
            sync: None,
        }
    }

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), Waker::from(flag))
    }

    #[test]
    fn acknowledged_messages_weigh_more_than_the_rest() {
        assert_eq!(publish(QoS::AtMostOnce).weight(), 1);
        assert_eq!(publish(QoS::AtLeastOnce).weight(), ACKED_WEIGHT);
        assert_eq!(publish(QoS::ExactlyOnce).weight(), ACKED_WEIGHT);
        let hold = MeshMsg::Hold {
            publisher: ClientId::default(),
            on: true,
        };
        assert_eq!(hold.weight(), 1);
    }

    #[test]
    fn the_backlog_is_what_was_posted_and_not_yet_handled() {
        let handled = Arc::new(AtomicU64::new(0));
        let backlog = Backlog::new(handled.clone());
        for _ in 0..10 {
            backlog.add(publish(QoS::AtLeastOnce).weight());
        }
        assert_eq!(backlog.pending(), 10 * ACKED_WEIGHT);
        handled.fetch_add(3 * ACKED_WEIGHT, Ordering::Release);
        assert_eq!(backlog.pending(), 7 * ACKED_WEIGHT);
        handled.fetch_add(7 * ACKED_WEIGHT, Ordering::Release);
        assert_eq!(backlog.pending(), 0);
    }

    #[test]
    fn waiters_are_woken_once_their_own_shards_caught_up() {
        let waiters = RoomWaiters::default();
        let (a_flag, a) = waker();
        let (b_flag, b) = waker();
        let one = ShardSet::of(ShardId(1));
        let two = ShardSet::of(ShardId(2));
        waiters.add(one, &a);
        waiters.add(two, &b);
        // Polled again before being woken: still listed once.
        waiters.add(one, &a);
        assert_eq!(waiters.0.borrow().len(), 2);
        // Shard 2 caught up, shard 1 did not.
        waiters.wake_unless(|set| set == one);
        assert!(!a_flag.0.load(Ordering::SeqCst));
        assert!(b_flag.0.load(Ordering::SeqCst));
        assert!(!waiters.is_empty());
        waiters.wake_unless(|_| false);
        assert!(a_flag.0.load(Ordering::SeqCst));
        assert!(waiters.is_empty());
    }
}

#[cfg(test)]
mod shard_set_tests {
    use super::*;

    #[test]
    fn shard_sets_hold_what_is_put_in() {
        let set = ShardSet::of(ShardId(3))
            .union(ShardSet::of(ShardId(0)))
            .union(ShardSet::of(ShardId(MAX_SHARDS - 1)));
        assert_eq!(set.len(), 3);
        assert!(set.contains(ShardId(3)) && !set.contains(ShardId(1)));
        assert!(
            !set.contains(ShardId(MAX_SHARDS)),
            "out of range is never in"
        );
        let ids: Vec<usize> = set.iter().map(|s| s.0).collect();
        assert_eq!(ids, [0, 3, MAX_SHARDS - 1]);
        assert_eq!(set.nth(1), Some(ShardId(3)));
        assert_eq!(set.nth(3), None);
        let rest = set.without(ShardSet::of(ShardId(0)));
        assert_eq!(
            rest.iter().map(|s| s.0).collect::<Vec<_>>(),
            [3, MAX_SHARDS - 1]
        );
        assert!(ShardSet::EMPTY.is_empty() && !rest.is_empty());
        assert_eq!(format!("{rest:?}"), "{3, 63}");
    }
}
