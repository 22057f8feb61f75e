//! Everything one core owns: the sessions homed here (and their connections, which are always on
//! the home shard), this shard's subscription trie, the replicated interest table and the
//! replicated retained index. `Rc`/`RefCell`/`Cell` only — a shard is never touched by another
//! thread; other shards reach it through `mesh` messages, handled in `on_mesh`.
//!
//! Routing a message (`route`): match this shard's trie and deliver to local sessions; match the
//! interest table (filter → bit set of shards with subscribers) and send the message once to each
//! interested shard, which matches its own trie. The payload `Bytes` is shared by every delivery.
//!
//! Interest table: when a shard's trie gains its first subscriber for a filter it tells every
//! other shard (`MeshMsg::Interest`, with a barrier so SUBACK waits until all know); when it loses
//! the last one it tells them again.
//!
//! Retained index, replicated on every shard so a subscribe on any shard reads it locally and at
//! once: an update goes to the topic's owner shard (`Mesh::retain_owner`), which applies it and
//! forwards it to every other shard. Each topic's updates are thus ordered by one shard and travel
//! FIFO channels, so every replica applies them in the same order and the replicas agree. For QoS
//! 1/2 the PUBACK / PUBREC waits for every shard's ack.

pub mod barrier;
mod client;
mod flow;
pub mod outbox;
mod packets;
mod park;
mod shared;
mod table;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use client::{Client, ConnectOutcome, Deferred, RetainedFor, Violation};
pub use outbox::{ConnId, Outbox};
pub use park::{Parked, Woken};

use crate::auth::scram::ScramSha256;
use crate::auth::security::Security;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::mesh::{AckToken, Mesh, MeshMsg, ShardId};
use crate::protocol::{MqttString, Packet, SubscriptionOptions, TopicFilter};
use crate::session::{Delivery, Drops, Limits, Link, Message, Session};
use crate::topic::Trie;
use barrier::{Barriers, Wait};

/// A local subscriber of one filter.
#[derive(Debug, Clone)]
struct Subscriber {
    client_id: MqttString,
    /// Granted QoS and the MQTT 5 options (No Local, Retain As Published).
    options: SubscriptionOptions,
    /// The Subscription Identifier given with the SUBSCRIBE, if any.
    id: Option<NonZeroU32>,
}

/// A session and, while connected, its connection.
struct Entry {
    session: Session,
    conn: Option<Rc<Outbox>>,
    /// The user name of the current (or last) connection, for access control.
    username: Option<MqttString>,
    /// The will of the current connection (published if it ends abnormally), or of the last one
    /// while its Will Delay Interval runs.
    will: Option<Box<PendingWill>>,
    /// How long the session outlives its connection: `None` never expires, zero ends with it.
    lifetime: Option<Duration>,
    /// While offline: when the session expires.
    expires_at: Option<Instant>,
    /// Publishers this (live but lagging) subscriber holds back (see `flow`).
    holds: flow::Holds,
    /// The connection, when it is parked (`park`): then `conn` is `None`.
    parked: Option<Box<park::Parked>>,
}

impl Entry {
    /// Whether the client can take a delivery at `now` (see `Link`).
    fn link(&self, now: Instant) -> Link {
        match &self.conn {
            // Parked: idle, so nothing waits in its (future) outbox.
            None if self.parked.is_some() => Link::Online,
            None => Link::Offline,
            Some(c) if c.is_congested(now) => Link::Congested,
            Some(_) => Link::Online,
        }
    }
}

/// A will message and its delay.
struct PendingWill {
    message: Message,
    delay: Duration,
    /// Set once the connection ended abnormally: when the will goes out.
    due: Option<Instant>,
}

#[derive(Default)]
struct State {
    sessions: table::SessionTable<Entry>,
    /// Filter (without share prefix) → this shard's subscribers.
    subs: Trie<Vec<Subscriber>>,
    /// Filter → bit set of *other* shards with subscribers to it.
    interest: Trie<u64>,
    /// Topic → retained message (retain flag set, payload detached from read buffers).
    retained: HashMap<Box<str>, Message>,
    /// Every live connection on this shard, for shutdown.
    conns: HashMap<ConnId, Rc<Outbox>>,
    /// Parked connections (they are in `sessions`, not in `conns`).
    parking: park::Parking,
    /// Session expiries and delayed wills, earliest first; stale entries are skipped by `tick`.
    timers: BinaryHeap<Reverse<(Instant, MqttString)>>,
    /// Shared subscription groups with members on this shard, by filter.
    shared: Trie<Vec<shared::Group>>,
    /// Shared subscription groups with members on other shards, by filter.
    shared_remote: Trie<shared::RemoteGroups>,
    /// Per group, the shard rotation cursor of messages published here.
    shared_cursor: HashMap<MqttString, usize>,
}

/// Counters, read by tests and logs (`Broker::stats` sums them over the shards).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections, parked ones included.
    pub connections: usize,
    /// Connections parked (COREMQ_PARK_IDLE_AFTER).
    pub parked: usize,
    pub sessions: usize,
    pub retained: usize,
    /// Filters in this shard's subscription trie.
    pub local_filters: usize,
    /// Filters in the interest table (other shards' subscriptions).
    pub remote_filters: usize,
    /// Deliveries dropped since start, by reason (all sessions homed here, past and present).
    pub drops: Drops,
}

impl Stats {
    /// Adds another shard's counters.
    pub fn add(&mut self, other: &Stats) {
        self.connections += other.connections;
        self.sessions += other.sessions;
        self.parked += other.parked;
        self.retained += other.retained;
        self.local_filters += other.local_filters;
        self.remote_filters += other.remote_filters;
        self.drops.add_since(&other.drops, &Drops::default());
    }
}

pub struct Shard {
    pub config: Rc<Config>,
    pub mesh: Rc<Mesh>,
    /// MQTT 5 enhanced authentication hook, when one is configured.
    pub authenticator: Option<Box<dyn Authenticator>>,
    /// Who may connect and what they may do; replaced whole on reload. Shared with the
    /// built-in SCRAM method's user lookup.
    security: Rc<RefCell<Rc<Security>>>,
    /// SCRAM-SHA-256 against the password file (users with a SCRAM verifier).
    scram: Option<ScramSha256>,
    state: RefCell<State>,
    barriers: RefCell<Barriers>,
    next_conn: Cell<u64>,
    next_client_id: Cell<u64>,
    stopping: Cell<bool>,
    last_drop_log: Cell<Option<Instant>>,
    /// Deliveries dropped since start, for `Stats`.
    drops: Cell<Drops>,
    /// Publishers homed here that lagging subscribers hold back (see `flow`).
    paused: RefCell<flow::Paused>,
    /// Sessions homed here that hold publishers back, checked every tick (see `flow`).
    holding: RefCell<Vec<MqttString>>,
}

impl Shard {
    pub fn new(config: Rc<Config>, mesh: Rc<Mesh>) -> Self {
        let security = Rc::new(RefCell::new(Rc::new(Security::open(&config))));
        Self {
            config,
            mesh,
            authenticator: None,
            security,
            scram: None,
            state: RefCell::default(),
            barriers: RefCell::default(),
            next_conn: Cell::new(0),
            next_client_id: Cell::new(0),
            stopping: Cell::new(false),
            last_drop_log: Cell::new(None),
            drops: Cell::new(Drops::default()),
            paused: RefCell::default(),
            holding: RefCell::default(),
        }
    }

    /// The current access policy.
    pub fn security(&self) -> Rc<Security> {
        self.security.borrow().clone()
    }

    /// Installs a (re)loaded access policy; clients meet it on their next packet or delivery.
    pub fn set_security(&self, security: Security) {
        *self.security.borrow_mut() = Rc::new(security);
    }

    /// Enables SCRAM-SHA-256 against the password file's verifiers. `mock_key` must be the same
    /// on every shard (it makes the fake salts of unknown users stable).
    pub fn enable_scram(&mut self, mock_key: [u8; 32]) {
        let security = self.security.clone();
        self.scram = Some(ScramSha256::new(
            move |user| {
                security
                    .borrow()
                    .passwords()
                    .and_then(|p| p.scram_verifier(user).cloned())
            },
            mock_key,
        ));
    }

    /// The authenticator for an enhanced-authentication method: the built-in SCRAM method when
    /// the password file is in use, else the configured hook.
    pub fn authenticator_for(&self, method: &str) -> Option<&dyn Authenticator> {
        match &self.scram {
            Some(s) if method == crate::auth::scram::METHOD && self.security().has_passwords() => {
                Some(s)
            }
            _ => self.authenticator.as_deref(),
        }
    }

    pub fn id(&self) -> ShardId {
        self.mesh.id()
    }

    /// Counts the deliveries `session` dropped since its counters were `before`, and logs them at
    /// most once per second per shard, with the client id and the session's counters by reason.
    fn note_drop(&self, session: &Session, before: &Drops, now: Instant) {
        let mut drops = self.drops.get();
        drops.add_since(&session.drops, before);
        self.drops.set(drops);
        let last = self.last_drop_log.get();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.last_drop_log.set(Some(now));
            crate::log!(
                Warn,
                "client {:?}: messages dropped so far: {:?} (COREMQ_MAX_QUEUED_MESSAGES / \
                 COREMQ_MAX_QUEUED_BYTES / COREMQ_MAX_OUTBOUND_BUFFER / expiry)",
                session.client_id.as_str(),
                session.drops
            );
        }
    }

    /// A connection's outbound buffer drained after deliveries were held back: offer its
    /// session's queue again.
    pub fn resume_held_back(&self, client_id: &MqttString, conn: ConnId) {
        self.drain_session(client_id, conn, Instant::now());
    }

    /// After a client's queue drained (acknowledgements freed its window): send what the window
    /// allows and release the publishers it held once it is back under the low watermark.
    pub(super) fn drain_session(&self, client_id: &MqttString, conn: ConnId, now: Instant) {
        let mut state = self.state.borrow_mut();
        let Some(entry) = state.sessions.get_mut(client_id) else {
            return;
        };
        let Some(out) = entry.conn.clone().filter(|c| c.id == conn) else {
            return;
        };
        for p in entry.session.drain_queue(now) {
            out.send_publish(p);
        }
        self.relieve(&mut entry.holds, &entry.session);
    }

    fn limits(&self) -> Limits {
        Limits {
            max_inflight: self.config.max_inflight as usize,
            max_queued: self.config.max_queued_messages,
            max_queued_bytes: self.config.max_queued_bytes,
            queue_qos0: self.config.queue_qos0,
        }
    }

    pub fn stats(&self) -> Stats {
        let s = self.state.borrow();
        Stats {
            connections: s.conns.len() + s.parking.count(),
            parked: s.parking.count(),
            sessions: s.sessions.len(),
            retained: s.retained.len(),
            local_filters: s.subs.len(),
            remote_filters: s.interest.len(),
            drops: self.drops.get(),
        }
    }

    /// Gives back the room of a connection table that emptied (say, after a storm of
    /// connections that then parked or left); called about once a second.
    pub fn compact(&self) {
        let mut s = self.state.borrow_mut();
        let len = s.conns.len();
        if s.conns.capacity() > 4 * len + 64 {
            s.conns.shrink_to(2 * len);
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// A fresh connection id.
    pub fn new_conn_id(&self) -> ConnId {
        self.next_conn.set(self.next_conn.get() + 1);
        ConnId(self.next_conn.get())
    }

    /// The outbox of a new (or woken) connection with the client's Maximum Packet Size and Topic
    /// Alias Maximum, and the broker's slow-reader limits.
    pub fn new_outbox(
        &self,
        version: crate::protocol::ProtocolVersion,
        max_packet_size: u32,
        alias_max: u16,
    ) -> Rc<Outbox> {
        let conn = Outbox::new(self.new_conn_id(), version, max_packet_size, alias_max);
        conn.set_slow_reader_limits(
            self.config.max_outbound_buffer,
            self.config.slow_reader_timeout,
        );
        Rc::new(conn)
    }

    /// A client id for a client that sent an empty one, unique across shards and restarts of
    /// the counter (shard id + counter + start time).
    pub fn assign_client_id(&self) -> String {
        self.next_client_id.set(self.next_client_id.get() + 1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!(
            "coremq-{}-{}-{:x}",
            self.id().0,
            self.next_client_id.get(),
            nanos & 0xFFFF_FFFF
        )
    }

    /// Delivers `message` to every matching subscriber, here and on other shards. `message.retain`
    /// is the publisher's flag; each subscriber sees it only with Retain As Published. Returns
    /// whether any subscription (here, or possibly on another shard) matched.
    pub fn route(&self, message: &Message, now: Instant) -> bool {
        let local = self.deliver_local(message, now);
        let mut shards: u64 = 0;
        self.state
            .borrow()
            .interest
            .for_each_match(message.topic.as_str(), |bits| shards |= *bits);
        for peer in self.mesh.peers() {
            if shards & (1 << peer.0) != 0 {
                self.mesh.send(peer, MeshMsg::Publish(message.clone()));
            }
        }
        let shared = self.route_shared(message, now);
        local > 0 || shards != 0 || shared
    }

    /// Delivers to this shard's subscribers: once per session, at the highest QoS of its
    /// matching subscriptions, with the identifiers of all of them [MQTT-3.3.4-2]
    /// [MQTT-3.3.4-3]; never back to a No Local subscriber's own messages [MQTT-3.8.3-3].
    /// Returns the number of sessions it went to.
    fn deliver_local(&self, message: &Message, now: Instant) -> usize {
        let security = self.security();
        let checks = security.checks_deliveries();
        let topic = message.topic.as_str();
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let mut matches: Vec<&Subscriber> = Vec::new();
        state
            .subs
            .for_each_match(message.topic.as_str(), |subs: &Vec<Subscriber>| {
                matches.extend(
                    subs.iter()
                        .filter(|s| !(s.options.no_local && s.client_id == message.publisher)),
                );
            });
        if matches.len() > 1 {
            matches.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        }
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let client_id = &matches[i].client_id;
            let mut delivery = Delivery::default();
            while let Some(s) = matches.get(i).filter(|s| &s.client_id == client_id) {
                delivery.qos = delivery.qos.max(message.qos.min(s.options.qos));
                // [MQTT-3.3.1-12] Retain As Published keeps the publisher's flag.
                delivery.retain |= s.options.retain_as_published && message.retain;
                delivery.subscription_ids.extend(s.id);
                i += 1;
            }
            if let Some(entry) = state.sessions.get_mut(client_id) {
                if checks && !security.can_receive(client_id, entry.username.as_deref(), topic) {
                    continue; // [ACL] this subscriber may not read this topic
                }
                delivered += 1;
                let before = entry.session.drops;
                let link = entry.link(now);
                let qos = delivery.qos;
                entry.session.set_stretch(Self::stretching(&entry.holds));
                if let Some(publish) = entry.session.deliver(message, delivery, link, now) {
                    if entry.parked.is_some() {
                        self.unpark(entry, &mut state.parking, &mut state.conns);
                    }
                    if let Some(conn) = &entry.conn {
                        conn.send_publish(publish);
                    }
                }
                self.note_pressure(
                    &mut entry.holds,
                    &entry.session,
                    link,
                    qos,
                    &message.publisher,
                    now,
                );
                if entry.session.drops != before {
                    self.note_drop(&entry.session, &before, now);
                }
            }
        }
        delivered
    }

    /// Publishes a message from a client or a will: updates the retained index when the retain
    /// flag is set [MQTT-3.3.1-5], then routes it. Returns whether any subscription matched, and
    /// with `wait` the retained barrier that QoS 1/2 acknowledgements wait for.
    fn publish_message(&self, message: Message, wait: bool, now: Instant) -> (bool, Option<Wait>) {
        let barrier = if message.retain {
            self.update_retained(message.detached(), wait)
        } else {
            None
        };
        (self.route(&message, now), barrier)
    }

    /// Starts a retained update (store, replace, or delete when the payload is empty) from a
    /// client on this shard. With `wait`, returns a barrier that completes once every shard
    /// applied it.
    fn update_retained(&self, message: Message, wait: bool) -> Option<Wait> {
        let n = self.mesh.count();
        let (ack, w) = if wait {
            let (t, w) = self.barriers.borrow_mut().open(n);
            (Some(t), Some(w))
        } else {
            (None, None)
        };
        let owner = self.mesh.retain_owner(message.topic.as_bytes());
        let from = self.id();
        if owner == from {
            self.order_retained(message, from, ack);
        } else {
            self.mesh
                .send(owner, MeshMsg::RetainRequest { message, from, ack });
        }
        w
    }

    /// On the owner shard: apply, then forward to every other shard.
    fn order_retained(&self, message: Message, from: ShardId, ack: Option<AckToken>) {
        for peer in self.mesh.peers() {
            self.mesh.send(
                peer,
                MeshMsg::RetainApply {
                    message: message.clone(),
                    from,
                    ack,
                },
            );
        }
        self.apply_retained(message, from, ack);
    }

    fn apply_retained(&self, message: Message, from: ShardId, ack: Option<AckToken>) {
        {
            let mut state = self.state.borrow_mut();
            if message.payload.is_empty() {
                // [MQTT-3.3.1-10] an empty retained payload removes the retained message.
                state.retained.remove(message.topic.as_str());
            } else {
                state
                    .retained
                    .insert(message.topic.as_str().into(), message);
            }
        }
        if let Some(token) = ack {
            self.ack_to(from, token);
        }
    }

    fn ack_to(&self, to: ShardId, token: AckToken) {
        if to == self.id() {
            self.barriers.borrow_mut().ack(token);
        } else {
            self.mesh.send(to, MeshMsg::Ack(token));
        }
    }

    /// Retained messages whose topic matches `filter`, for delivery on subscribe. Expired ones
    /// are left out (and removed from this replica) [MQTT-3.3.2-5].
    fn retained_matching(&self, filter: &str, now: Instant) -> Vec<Message> {
        let mut state = self.state.borrow_mut();
        state.retained.retain(|_, m| !m.is_expired(now));
        state
            .retained
            .values()
            .filter(|m| crate::topic::matches(filter, m.topic.as_str()))
            .cloned()
            .collect()
    }

    /// Adds (or updates) a local subscriber; tells other shards when the filter is new here.
    /// Returns whether the subscription existed already (for Retain Handling 1) and the barrier
    /// to wait for before acknowledging.
    fn add_subscriber(
        &self,
        filter: &MqttString,
        client_id: &MqttString,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) -> (bool, Option<Wait>) {
        let (existed, first) = {
            let mut state = self.state.borrow_mut();
            let subs = state.subs.entry(filter.as_str(), Vec::new);
            match subs.iter_mut().find(|s| &s.client_id == client_id) {
                Some(s) => {
                    // [MQTT-3.8.4-3] a repeated subscription replaces the old one.
                    s.options = options;
                    s.id = id;
                    (true, false)
                }
                None => {
                    subs.push(Subscriber {
                        client_id: client_id.clone(),
                        options,
                        id,
                    });
                    (false, subs.len() == 1)
                }
            }
        };
        if !first || self.mesh.count() == 1 {
            return (existed, None);
        }
        let (token, wait) = self.barriers.borrow_mut().open(self.mesh.count() - 1);
        self.broadcast_interest(filter, true, Some(token));
        (existed, Some(wait))
    }

    /// Removes a local subscriber; tells other shards when it was the filter's last one here.
    fn remove_subscriber(&self, filter: &MqttString, client_id: &MqttString) {
        let emptied = self
            .state
            .borrow_mut()
            .subs
            .update_remove(filter.as_str(), |subs| {
                subs.retain(|s| &s.client_id != client_id);
                subs.is_empty()
            });
        if emptied {
            self.broadcast_interest(filter, false, None);
        }
    }

    fn broadcast_interest(&self, filter: &MqttString, add: bool, ack: Option<AckToken>) {
        for peer in self.mesh.peers() {
            self.mesh.send(
                peer,
                MeshMsg::Interest {
                    filter: filter.clone(),
                    from: self.id(),
                    add,
                    ack,
                },
            );
        }
    }

    /// Ends a session: removes its subscriptions from the trie.
    /// Removes an ending session's subscriptions from the trie and its shared groups, and hands
    /// its unacknowledged shared messages to other members.
    fn end_session(&self, mut session: Session) {
        for (filter, _) in session.subscriptions.iter() {
            match TopicFilter::new(filter.clone()) {
                Ok(f) if f.is_shared() => self.remove_shared_member(&f, &session.client_id),
                _ => self.remove_subscriber(filter, &session.client_id),
            }
        }
        self.reroute_shared(session.take_shared());
    }

    /// Handles a message from another shard (all but `Handoff`, which `net` adopts).
    pub fn on_mesh(&self, msg: MeshMsg) {
        match msg {
            MeshMsg::Publish(m) => {
                self.deliver_local(&m, Instant::now());
            }
            MeshMsg::Interest {
                filter,
                from,
                add,
                ack,
            } => {
                let bit = 1u64 << from.0;
                let mut state = self.state.borrow_mut();
                if add {
                    *state.interest.entry(filter.as_str(), || 0) |= bit;
                } else {
                    state.interest.update_remove(filter.as_str(), |bits| {
                        *bits &= !bit;
                        *bits == 0
                    });
                }
                drop(state);
                if let Some(token) = ack {
                    self.ack_to(from, token);
                }
            }
            MeshMsg::Ack(token) => self.barriers.borrow_mut().ack(token),
            MeshMsg::Hold { publisher, on } => self.on_hold(publisher, on),
            MeshMsg::RetainRequest { message, from, ack } => {
                self.order_retained(message, from, ack)
            }
            MeshMsg::RetainApply { message, from, ack } => self.apply_retained(message, from, ack),
            MeshMsg::SharedInterest {
                group,
                from,
                add,
                ack,
            } => self.on_shared_interest(group, from, add, ack),
            MeshMsg::SharedPublish {
                group,
                message,
                tried,
            } => self.on_shared_publish(group, message, tried),
            MeshMsg::Handoff(_) => {
                crate::log!(Error, "shard {}: a handoff reached the shard", self.id().0)
            }
        }
    }

    /// Graceful shutdown: stop accepting packets and close every connection. MQTT 5 clients get
    /// DISCONNECT 0x8B (server shutting down); wills are not published for them.
    pub fn begin_shutdown(&self) {
        self.stopping.set(true);
        self.wake_all();
        let conns: Vec<Rc<Outbox>> = self.state.borrow().conns.values().cloned().collect();
        for conn in conns {
            if conn.version.is_v5() {
                let mut d = crate::protocol::Disconnect::new(
                    crate::protocol::ReasonCode::SERVER_SHUTTING_DOWN,
                );
                d.properties.reason_string = MqttString::from_static("server shutting down").ok();
                conn.send(&Packet::Disconnect(d));
            }
            conn.close();
        }
        let mut state = self.state.borrow_mut();
        for entry in state.sessions.values_mut() {
            entry.will = None;
        }
    }
}
