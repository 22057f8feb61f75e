//! Per-client MQTT session state, pure: packets in, packets out. No clock reads, no sockets, no
//! locks. Lives on the client id's home shard only.
//!
//! A `Session` holds what MQTT says survives a reconnect when Clean Session is 0: subscriptions,
//! the outbound QoS 1/2 window (sent, awaiting PUBACK / PUBREC / PUBCOMP), the queue of messages
//! not yet sent (offline, or the window was full) and the inbound QoS 2 packet ids awaiting PUBREL.
//!
//! Worked example, window 2, a QoS 1 subscriber:
//! `deliver(m1)` → PUBLISH id 1; `deliver(m2)` → PUBLISH id 2; `deliver(m3)` → queued;
//! `handle_puback(1)` → PUBLISH m3 with id 3. On reconnect `resume()` resends ids 2 and 3 with
//! DUP set [MQTT-4.4.0-1].

#[doc(hidden)]
pub mod fuzz_check;
mod lifetime;
mod subscriptions;

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::time::Instant;

use crate::message::{Delivery, Message, Outgoing};
pub use lifetime::{Connection, Disconnected};
pub use subscriptions::{Granted, Subscriptions};

use crate::protocol::{
    ClientId, MqttString, PacketId, ProtocolVersion, QoS, SubscriptionOptions, TopicFilter,
};

/// What a sent QoS 1/2 message awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// QoS 1 sent, awaiting PUBACK; or QoS 2 sent, awaiting PUBREC.
    Ack,
    /// QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP.
    Comp,
}

#[derive(Debug)]
struct Inflight {
    id: PacketId,
    message: Message,
    delivery: Delivery,
    stage: Awaiting,
    /// Its number in the session's store records (0 when the session is not durable).
    seq: u64,
}

/// A session's messages on their way: sent and awaiting acknowledgement, and queued. Boxed in
/// the session (8 bytes instead of 72 while it has none: a session is kept per client, and its
/// size is most of what an idle connection costs).
#[derive(Debug, Default)]
struct Traffic {
    inflight: VecDeque<Inflight>,
    /// Messages not yet sent, with their store sequence numbers.
    queue: VecDeque<(Message, Delivery, u64)>,
    /// Topic and payload bytes in `queue`.
    queued_bytes: usize,
}

/// What a session without `Traffic` reads.
static NO_TRAFFIC: Traffic = Traffic {
    inflight: VecDeque::new(),
    queue: VecDeque::new(),
    queued_bytes: 0,
};

/// The traffic of a session, made on first use.
fn traffic_mut(t: &mut Option<Box<Traffic>>) -> &mut Traffic {
    t.get_or_insert_with(Default::default)
}

/// A change to what a durable session keeps, for the store to record (`take_changes`). Messages
/// are named by a per-session sequence number; `Entered` carries the message itself.
// `Entered` is large, the others small: changes live only until the shard records them (the
// same packet), so a box per durable delivery would cost more than the space it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message entered the session: sent at once with packet id `id`, or queued (`None`).
    Entered {
        seq: u64,
        id: Option<PacketId>,
        message: Message,
        delivery: Delivery,
    },
    /// A queued message was sent with packet id `id`.
    Sent { seq: u64, id: PacketId },
    /// PUBREC received for a QoS 2 delivery: it awaits PUBCOMP now.
    Released { seq: u64 },
    /// The message left the session (acknowledged, expired, sent at QoS 0, or handed on).
    Done { seq: u64 },
    /// An inbound QoS 2 packet id was received (`add`) or released by PUBREL.
    Inbound { id: PacketId, add: bool },
}

/// What a durable session tracks for its store records. Boxed: most sessions are not durable.
#[derive(Debug, Default)]
struct Durable {
    next_seq: u64,
    changes: Vec<Change>,
}

/// A message a session keeps, as the store saves and restores it: in flight when it has a packet
/// id, queued otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub seq: u64,
    pub id: Option<PacketId>,
    /// A QoS 2 delivery whose PUBREC arrived (awaiting PUBCOMP).
    pub released: bool,
    pub message: Message,
    pub delivery: Delivery,
}

/// Everything a session keeps across a restart (the store's view of it).
#[derive(Debug, Clone)]
pub struct Image {
    pub client_id: ClientId,
    pub version: ProtocolVersion,
    pub username: Option<MqttString>,
    /// Session Expiry Interval in seconds (`None`: never expires).
    pub lifetime: Option<u32>,
    /// When it expires, if offline.
    pub expires_at: Option<Instant>,
    pub subscriptions: Vec<(MqttString, SubscriptionOptions, Option<NonZeroU32>)>,
    /// In sequence order: in-flight messages first, then queued ones.
    pub messages: Vec<Kept>,
    /// Inbound QoS 2 ids awaiting PUBREL.
    pub inbound: Vec<PacketId>,
    /// A will waiting for its delay: the message, the delay and when it is due.
    pub will: Option<(Message, std::time::Duration, Instant)>,
}

/// What to send for a QoS 1/2 delivery that is in flight: a (re)sent PUBLISH or a PUBREL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived: built and encoded at once on reconnect
pub enum Resend {
    Publish(Outgoing),
    PubRel(PacketId),
}

/// Counters of messages a session dropped (per reason), for logs and stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub queue_full: u64,
    pub qos0_offline: u64,
    pub qos0_congested: u64,
    pub expired: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.queue_full + self.qos0_offline + self.qos0_congested + self.expired
    }

    /// Adds `after - before` (the drops one step counted) to these counters.
    pub fn add_since(&mut self, after: &Drops, before: &Drops) {
        self.queue_full += after.queue_full.saturating_sub(before.queue_full);
        self.qos0_offline += after.qos0_offline.saturating_sub(before.qos0_offline);
        self.qos0_congested += after.qos0_congested.saturating_sub(before.qos0_congested);
        self.expired += after.expired.saturating_sub(before.expired);
    }
}

/// One client's session. Home shard only.
#[derive(Debug)]
pub struct Session {
    /// Never changes: the shard's session table finds the session by it (`shard::table`).
    pub client_id: ClientId,
    pub version: ProtocolVersion,
    /// The user name of its current (or last) connection, for access control.
    pub username: Option<MqttString>,
    /// How long the session outlives its connection, in seconds (MQTT's Session Expiry Interval
    /// is a `u32`): `None` never expires, zero ends with it.
    lifetime: Option<u32>,
    /// While offline: when the session expires.
    expires_at: Option<Instant>,
    /// The will of the current connection (published if it ends abnormally), or of the last one
    /// while its Will Delay Interval runs (`lifetime.rs`).
    will: Option<Box<lifetime::PendingWill>>,
    /// Filter (as sent, `$share/…` included) → options and subscription identifier.
    pub subscriptions: Subscriptions,
    /// What is in flight and queued; `None` while there has been nothing since the connection
    /// last parked (`shed`), the state of most sessions of a large fleet at any moment.
    traffic: Option<Box<Traffic>>,
    /// See `completed()`.
    completed: u64,
    /// See `set_stretch()`.
    stretch: bool,
    /// Inbound QoS 2 ids received and PUBREC'd, awaiting PUBREL [MQTT-4.3.3]. Allocated on the
    /// first one: most sessions never publish at QoS 2, and a session is kept per client. Boxed
    /// so that the unused case costs 8 bytes of the session, not an empty set's 48.
    #[allow(clippy::box_collection)]
    incoming_qos2: Option<Box<HashSet<PacketId>>>,
    next_id: PacketId,
    /// The window and queue limits, narrow (a Receive Maximum is a `u16`; a queue of more than
    /// 2^32 messages is not a limit): a session is kept per client, so its size is most of what
    /// an idle connection costs (see `shard::table`).
    max_inflight: u16,
    max_queued: u32,
    max_queued_bytes: usize,
    queue_qos0: bool,
    pub drops: Drops,
    /// Change tracking for the store, while the session is durable (`set_durable`).
    durable: Option<Box<Durable>>,
}

/// Limits a session enforces, from the broker's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_inflight: usize,
    pub max_queued: usize,
    /// Bytes of topic and payload queued per session.
    pub max_queued_bytes: usize,
    pub queue_qos0: bool,
}

/// Whether the session's client can take a delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected and its outbound buffer has room.
    Online,
    /// Connected but its outbound buffer is full (a slow reader): QoS 0 is dropped, QoS 1/2
    /// queue until it drains.
    Congested,
    /// Not connected: QoS 1/2 (and QoS 0 with `queue_qos0`) queue.
    Offline,
}

impl Session {
    /// A session that never expires and has no will until a connection takes it
    /// (`connected`).
    pub fn new(client_id: ClientId, version: ProtocolVersion, limits: Limits) -> Self {
        Self {
            client_id,
            version,
            username: None,
            lifetime: None,
            expires_at: None,
            will: None,
            subscriptions: Subscriptions::default(),
            traffic: None,
            completed: 0,
            stretch: false,
            incoming_qos2: None,
            next_id: PacketId(std::num::NonZeroU16::MIN),
            max_inflight: narrow_window(limits.max_inflight),
            max_queued: u32::try_from(limits.max_queued).unwrap_or(u32::MAX),
            max_queued_bytes: limits.max_queued_bytes,
            queue_qos0: limits.queue_qos0,
            drops: Drops::default(),
            durable: None,
        }
    }

    /// Starts (or stops) tracking changes for the store: a durable session's messages get
    /// sequence numbers and every change to them is kept until `take_changes`.
    pub fn set_durable(&mut self, on: bool) {
        match (on, self.durable.is_some()) {
            (true, false) => {
                // Messages already kept get numbers now (the caller records the whole image).
                let mut next_seq = 0;
                if let Some(t) = self.traffic.as_deref_mut() {
                    for i in &mut t.inflight {
                        next_seq += 1;
                        i.seq = next_seq;
                    }
                    for q in &mut t.queue {
                        next_seq += 1;
                        q.2 = next_seq;
                    }
                }
                self.durable = Some(Box::new(Durable {
                    next_seq,
                    changes: Vec::new(),
                }));
            }
            (false, true) => self.durable = None,
            _ => {}
        }
    }

    pub fn is_durable(&self) -> bool {
        self.durable.is_some()
    }

    /// The changes since the last call (empty when not durable).
    pub fn take_changes(&mut self) -> Vec<Change> {
        match self.durable.as_mut() {
            Some(d) if !d.changes.is_empty() => std::mem::take(&mut d.changes),
            _ => Vec::new(),
        }
    }

    /// Whether changes wait for `take_changes`.
    pub fn has_changes(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| !d.changes.is_empty())
    }

    fn note(&mut self, change: Change) {
        if let Some(d) = self.durable.as_mut() {
            d.changes.push(change);
        }
    }

    /// A sequence number for a message entering the session (0 when not durable).
    fn next_seq(&mut self) -> u64 {
        match self.durable.as_mut() {
            Some(d) => {
                d.next_seq += 1;
                d.next_seq
            }
            None => 0,
        }
    }

    /// What the store keeps of this session, at `now` (for a snapshot).
    pub fn image(&self) -> Image {
        let mut messages: Vec<Kept> = self
            .tr()
            .inflight
            .iter()
            .map(|i| Kept {
                seq: i.seq,
                id: Some(i.id),
                released: i.stage == Awaiting::Comp,
                message: i.message.clone(),
                delivery: i.delivery.clone(),
            })
            .collect();
        messages.extend(self.tr().queue.iter().map(|(m, d, seq)| Kept {
            seq: *seq,
            id: None,
            released: false,
            message: m.clone(),
            delivery: d.clone(),
        }));
        let mut subscriptions: Vec<_> = self
            .subscriptions
            .iter()
            .map(|(f, (o, id))| (f.clone(), *o, *id))
            .collect();
        subscriptions.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut inbound: Vec<PacketId> = self
            .incoming_qos2
            .as_ref()
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        inbound.sort_by_key(|id| id.get());
        Image {
            client_id: self.client_id.clone(),
            version: self.version,
            username: self.username.clone(),
            lifetime: self.lifetime,
            expires_at: self.expires_at,
            subscriptions,
            messages,
            inbound,
            will: self.delayed_will(),
        }
    }

    /// A durable, offline session rebuilt from what the store kept (see `Image`). Its expiry and
    /// delayed will are as the image says; the caller sets their timers.
    pub fn restore(image: Image, limits: Limits) -> Self {
        let mut s = Session::new(image.client_id, image.version, limits);
        s.username = image.username;
        s.lifetime = image.lifetime;
        s.expires_at = image.expires_at;
        s.subscriptions = image
            .subscriptions
            .into_iter()
            .map(|(f, o, id)| (f, (o, id)))
            .collect();
        let mut next_seq = 0;
        let mut max_id = 0;
        for k in image.messages {
            next_seq = next_seq.max(k.seq);
            match k.id {
                Some(id) => {
                    max_id = max_id.max(id.get());
                    s.tr_mut().inflight.push_back(Inflight {
                        id,
                        message: k.message,
                        delivery: k.delivery,
                        stage: if k.released {
                            Awaiting::Comp
                        } else {
                            Awaiting::Ack
                        },
                        seq: k.seq,
                    });
                }
                None => {
                    s.tr_mut().queued_bytes +=
                        k.message.topic.as_bytes().len() + k.message.payload.len();
                    s.tr_mut().queue.push_back((k.message, k.delivery, k.seq));
                }
            }
        }
        if !image.inbound.is_empty() {
            s.incoming_qos2 = Some(Box::new(image.inbound.into_iter().collect()));
        }
        if let Some(id) = PacketId::new(max_id) {
            s.next_id = id.next();
        }
        s.restore_will(image.will);
        s.durable = Some(Box::new(Durable {
            next_seq,
            changes: Vec::new(),
        }));
        s
    }

    /// Changes the window (a reconnecting MQTT 5 client may announce another Receive Maximum).
    pub fn set_max_inflight(&mut self, n: usize) {
        self.max_inflight = narrow_window(n);
    }

    fn tr(&self) -> &Traffic {
        self.traffic.as_deref().unwrap_or(&NO_TRAFFIC)
    }

    fn tr_mut(&mut self) -> &mut Traffic {
        traffic_mut(&mut self.traffic)
    }

    fn window(&self) -> usize {
        usize::from(self.max_inflight)
    }

    /// Messages waiting to be sent.
    pub fn queued(&self) -> usize {
        self.tr().queue.len()
    }

    /// QoS 1/2 messages sent and not yet fully acknowledged.
    pub fn inflight(&self) -> usize {
        self.tr().inflight.len()
    }

    /// A message matched this session's subscriptions; `delivery` says at which QoS, with which
    /// retain flag and subscription identifiers. Returns the PUBLISH to send now, if the client
    /// is `online` and the window allows it; otherwise the message is queued (QoS 1/2, or QoS 0
    /// when configured) or dropped. Expired messages are dropped [MQTT-3.3.2-5].
    pub fn deliver(
        &mut self,
        message: &Message,
        delivery: Delivery,
        link: Link,
        now: Instant,
    ) -> Option<Outgoing> {
        if message.is_expired(now) {
            self.drops.expired += 1;
            return None;
        }
        if delivery.qos == QoS::AtMostOnce {
            match link {
                Link::Online => return Some(message.outgoing(&delivery, None, false, now)),
                Link::Congested => {
                    self.drops.qos0_congested += 1;
                    return None;
                }
                Link::Offline if !self.queue_qos0 => {
                    self.drops.qos0_offline += 1;
                    return None;
                }
                Link::Offline => {}
            }
        } else if link == Link::Online
            && self.tr().queue.is_empty()
            && self.tr().inflight.len() < self.window()
        {
            let seq = self.next_seq();
            let record = self
                .durable
                .is_some()
                .then(|| (message.clone(), delivery.clone()));
            let out = self.send_inflight(message.clone(), delivery, now, seq);
            if let Some((message, delivery)) = record {
                self.note(Change::Entered {
                    seq,
                    id: out.packet_id,
                    message,
                    delivery,
                });
            }
            return Some(out);
        }
        let size = message.topic.as_bytes().len() + message.payload.len();
        // While flow control holds the publishers back, what they had already sent (and was
        // acknowledged to them) is still arriving: only the byte limit applies to it. How much
        // that is, is bounded by what was in flight when the hold reached the publishers.
        let max_queued = if self.stretch {
            usize::MAX
        } else {
            self.max_queued as usize
        };
        if self.tr().queue.len() >= max_queued
            || self.tr().queued_bytes + size > self.max_queued_bytes
        {
            self.drops.queue_full += 1;
            return None;
        }
        // Queued messages may wait long: copy them out of the publisher's read buffer.
        self.tr_mut().queued_bytes += size;
        let seq = self.next_seq();
        let message = message.detached();
        if self.durable.is_some() {
            self.note(Change::Entered {
                seq,
                id: None,
                message: message.clone(),
                delivery: delivery.clone(),
            });
        }
        self.tr_mut().queue.push_back((message, delivery, seq));
        None
    }

    fn dequeued(&mut self, message: &Message) {
        let size = message.topic.as_bytes().len() + message.payload.len();
        let t = self.tr_mut();
        t.queued_bytes = t.queued_bytes.saturating_sub(size);
    }

    fn allocate_id(&mut self) -> PacketId {
        // Skip ids still in flight (a wrap-around after 65535 sends with an old one unacked).
        loop {
            let id = self.next_id;
            self.next_id = id.next();
            if !self.tr().inflight.iter().any(|i| i.id == id) {
                return id;
            }
        }
    }

    fn send_inflight(
        &mut self,
        message: Message,
        delivery: Delivery,
        now: Instant,
        seq: u64,
    ) -> Outgoing {
        let id = self.allocate_id();
        let publish = message.outgoing(&delivery, Some(id), false, now);
        self.tr_mut().inflight.push_back(Inflight {
            id,
            message,
            delivery,
            stage: Awaiting::Ack,
            seq,
        });
        publish
    }

    /// Moves queued messages into the window while there is room; QoS 0 ones go out directly,
    /// expired ones are dropped.
    pub fn drain_queue(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Some((_, delivery, _)) = self.tr().queue.front() {
            if delivery.qos != QoS::AtMostOnce && self.tr().inflight.len() >= self.window() {
                break;
            }
            let Some((message, delivery, seq)) = self.tr_mut().queue.pop_front() else {
                break;
            };
            self.dequeued(&message);
            if message.is_expired(now) {
                self.drops.expired += 1;
                self.note(Change::Done { seq });
            } else if delivery.qos == QoS::AtMostOnce {
                out.push(message.outgoing(&delivery, None, false, now));
                self.note(Change::Done { seq });
            } else {
                let publish = self.send_inflight(message, delivery, now, seq);
                if let Some(id) = publish.packet_id {
                    self.note(Change::Sent { seq, id });
                }
                out.push(publish);
            }
        }
        out
    }

    /// PUBACK from the client: the QoS 1 delivery is done. Returns whether the id was in flight
    /// at QoS 1 awaiting it.
    pub fn handle_puback(&mut self, id: PacketId) -> bool {
        self.finish(id, QoS::AtLeastOnce, Awaiting::Ack)
    }

    /// PUBREC from the client: answer PUBREL (also for an unknown id, so the client can finish).
    /// Returns whether the id was a QoS 2 delivery awaiting it.
    pub fn handle_pubrec(&mut self, id: PacketId) -> bool {
        let Some(traffic) = self.traffic.as_deref_mut() else {
            return false;
        };
        match traffic.inflight.iter_mut().find(|i| i.id == id) {
            Some(i) if i.delivery.qos == QoS::ExactlyOnce => {
                let fresh = i.stage == Awaiting::Ack;
                i.stage = Awaiting::Comp;
                let seq = i.seq;
                if fresh {
                    self.note(Change::Released { seq });
                }
                true
            }
            _ => false,
        }
    }

    /// PUBCOMP from the client: the QoS 2 delivery is done.
    pub fn handle_pubcomp(&mut self, id: PacketId) -> bool {
        self.finish(id, QoS::ExactlyOnce, Awaiting::Comp)
    }

    fn finish(&mut self, id: PacketId, qos: QoS, stage: Awaiting) -> bool {
        match self
            .tr()
            .inflight
            .iter()
            .position(|i| i.id == id && i.delivery.qos == qos && i.stage == stage)
        {
            Some(pos) => {
                if let Some(i) = self.tr_mut().inflight.remove(pos) {
                    self.note(Change::Done { seq: i.seq });
                }
                self.completed += 1;
                true
            }
            None => false,
        }
    }

    /// While publishers are held back for this session, its queue is bounded by
    /// COREMQ_MAX_QUEUED_BYTES only (not COREMQ_MAX_QUEUED_MESSAGES), for the messages they had
    /// sent before the hold reached them.
    pub fn set_stretch(&mut self, on: bool) {
        self.stretch = on;
    }

    /// The client went offline: its unacknowledged deliveries may now wait for a long time (until
    /// it comes back or the session expires), so copy them out of the read buffers they were
    /// decoded from, as queued messages are: a small message must not keep a whole read chunk
    /// alive.
    /// Also where a session that has nothing on its way gives its (empty) `Traffic` back: the
    /// connection went offline or idle, so none is likely soon.
    pub fn detach_inflight(&mut self) {
        let Some(traffic) = self.traffic.as_mut() else {
            return;
        };
        if traffic.inflight.is_empty() && traffic.queue.is_empty() {
            self.traffic = None;
            return;
        }
        for i in &mut traffic.inflight {
            i.message = i.message.detached();
        }
    }

    /// QoS 1/2 deliveries the client has completed (acknowledged) since the session began: a
    /// client whose count moves is consuming, however slowly.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// An inbound QoS 2 PUBLISH with `id`: returns true when it is new and must be routed; a
    /// resend of an id awaiting PUBREL is not delivered again [MQTT-4.3.3-9] [MQTT-4.3.3-3].
    pub fn handle_incoming_qos2(&mut self, id: PacketId) -> bool {
        let fresh = self.incoming_qos2.get_or_insert_default().insert(id);
        if fresh {
            self.note(Change::Inbound { id, add: true });
        }
        fresh
    }

    /// PUBREL from the client: forget the id. Returns whether it was known.
    pub fn handle_pubrel(&mut self, id: PacketId) -> bool {
        let known = self
            .incoming_qos2
            .as_mut()
            .is_some_and(|ids| ids.remove(&id));
        if known {
            self.note(Change::Inbound { id, add: false });
        }
        known
    }

    /// On reconnect of a persistent session: resend every unacknowledged PUBLISH with DUP set and
    /// every PUBREL, in their original order [MQTT-4.4.0-1], then what the window allows from the
    /// queue.
    pub fn resume(&mut self, now: Instant) -> Vec<Resend> {
        let mut out: Vec<Resend> = self
            .tr()
            .inflight
            .iter()
            .map(|i| match i.stage {
                Awaiting::Ack => {
                    Resend::Publish(i.message.outgoing(&i.delivery, Some(i.id), true, now))
                }
                Awaiting::Comp => Resend::PubRel(i.id),
            })
            .collect();
        out.extend(self.drain_queue(now).into_iter().map(Resend::Publish));
        out
    }

    /// Whether a delivery at `qos` would go out now rather than queue: QoS 0 always, QoS 1/2
    /// while the window has room and nothing waits ahead of it.
    pub fn has_room(&self, qos: QoS) -> bool {
        qos == QoS::AtMostOnce
            || (self.tr().queue.is_empty() && self.tr().inflight.len() < self.window())
    }

    /// Removes and returns the shared-subscription messages not yet delivered (queued) or not
    /// yet acknowledged (sent, awaiting PUBACK / PUBREC), with their group, so they can go to
    /// another member when this session ends [MQTT-4.8.2-5].
    pub fn take_shared(&mut self) -> Vec<(TopicFilter, Message)> {
        let mut out = Vec::new();
        let Some(traffic) = self.traffic.as_mut() else {
            return out;
        };
        let mut kept = VecDeque::with_capacity(traffic.inflight.len());
        for i in traffic.inflight.drain(..) {
            match (&i.delivery.group, i.stage) {
                (Some(g), Awaiting::Ack) => {
                    if let Some(d) = self.durable.as_mut() {
                        d.changes.push(Change::Done { seq: i.seq });
                    }
                    out.push((g.clone(), i.message))
                }
                _ => kept.push_back(i),
            }
        }
        traffic.inflight = kept;
        let mut queue = VecDeque::with_capacity(traffic.queue.len());
        for (m, d, seq) in std::mem::take(&mut traffic.queue) {
            match d.group {
                Some(g) => {
                    self.dequeued(&m);
                    self.note(Change::Done { seq });
                    out.push((g, m))
                }
                None => queue.push_back((m, d, seq)),
            }
        }
        self.tr_mut().queue = queue;
        out
    }

    /// QoS 2 messages received and not yet released (they count against the server's Receive
    /// Maximum [MQTT-3.3.4-7]).
    pub fn incoming_unreleased(&self) -> usize {
        self.incoming_qos2.as_ref().map_or(0, |ids| ids.len())
    }
}

/// A window of 1 to 65,535 messages (more is no limit a client can announce).
fn narrow_window(n: usize) -> u16 {
    u16::try_from(n.max(1)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests;
