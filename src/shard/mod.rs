//! Everything one core owns, split by what each part owns (each behind its own `RefCell`; a shard
//! is never touched by another thread, so `Rc`/`RefCell`/`Cell` only):
//!
//! | part | file | owns |
//! |---|---|---|
//! | `Clients` | `clients.rs`, `client.rs`, `login.rs`, `packets.rs` | the sessions homed here and their connections (always on the home shard), session timers, parked connections |
//! | `Routing` | `routing.rs` | this shard's subscription trie and the replicated interest table |
//! | `RetainedStore` | `retained.rs` | the replicated retained messages, indexed by topic |
//! | `SharedGroups` | `shared.rs` | the shared subscription groups, local members and remote shards |
//! | `Flow` | `flow.rs` | holds between lagging subscribers and their publishers |
//! | `Barriers` | `barrier.rs` | "every shard confirmed" waits |
//! | `Persist` | `persist.rs` | the shard's journal (COREMQ_DATA_DIR), acknowledgements and deliveries waiting for the disk |
//! | cluster link | `cluster.rs` | what goes to the other nodes (COREMQ_CLUSTER_NATS) and what comes from them |
//!
//! Other shards reach this one through the mesh: `mesh::Handler` (below) hands each message kind
//! to the part it concerns, and `post` sends to another shard — or handles the message here when
//! the owner is this shard, so every cross-shard action has one code path.

pub mod barrier;
mod client;
mod clients;
mod cluster;
mod filtering;
mod flow;
mod guard;
mod login;
pub mod outbox;
mod packets;
mod park;
mod persist;
mod retained;
mod routing;
mod shared;
mod table;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use client::{Client, Deferred, RetainedFor, Violation};
pub use clients::{Arrival, Parked, Woken};
pub use guard::{Refusal, Refusals};
pub use login::{Admission, Admit, Admitted, CertUser};
pub use outbox::{ConnId, Outbox, Terms};
pub use persist::{AckPoll, PendingAck, StoreBatch};

use crate::auth::scram::ScramSha256;
use crate::auth::security::Security;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::guard::GuardKey;
use crate::mesh::{self, AckToken, Handoff, Mesh, MeshMsg, ShardId, ShardSet};
use crate::message::Message;
use crate::protocol::{ClientId, MqttString, Packet, TopicFilter};
use crate::session::{Drops, Limits};
use barrier::Barriers;
use clients::Clients;
use flow::Flow;
use retained::RetainedStore;
use routing::Routing;
use shared::SharedGroups;

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
    /// Connections and CONNECTs refused since start, by reason.
    pub refusals: Refusals,
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
        self.refusals.add(&other.refusals);
    }
}

/// Who may connect and what they may do, and the enhanced-authentication methods.
struct Access {
    /// Replaced whole on reload; shared with the built-in SCRAM method's user lookup.
    security: Rc<RefCell<Rc<Security>>>,
    /// SCRAM-SHA-256 against the password file (users with a SCRAM verifier).
    scram: Option<ScramSha256>,
    /// MQTT 5 enhanced authentication hook, when one is configured.
    authenticator: Option<Box<dyn Authenticator>>,
}

/// Drop accounting, the metrics counters and the ids this shard hands out.
#[derive(Default)]
struct Counters {
    /// What `metrics` reports (shared with the outboxes).
    metrics: Rc<crate::metrics::Counters>,
    next_conn: Cell<u64>,
    next_client_id: Cell<u64>,
    last_drop_log: Cell<Option<Instant>>,
    /// Deliveries dropped since start, for `Stats`.
    drops: Cell<Drops>,
}

/// One core's broker. Lives on its shard's thread only.
pub struct Shard {
    pub config: Rc<Config>,
    mesh: Rc<Mesh>,
    access: Access,
    clients: RefCell<Clients>,
    routing: RefCell<Routing>,
    retained: RefCell<RetainedStore>,
    shared: RefCell<SharedGroups>,
    /// The JSON paths this shard's content filters read (`filtering.rs`).
    schema: crate::filter::Schema,
    /// The last payload scanned for them, for the shared groups' step (`filtering.rs`).
    last_scan: RefCell<Option<filtering::LastScan>>,
    flow: Flow,
    guards: RefCell<guard::Guards>,
    barriers: RefCell<Barriers>,
    counters: Counters,
    stopping: Cell<bool>,
    /// The shard's part of the store (COREMQ_DATA_DIR), once `enable_store` turned it on.
    persist: Option<RefCell<persist::Persist>>,
    /// The link to the other nodes (COREMQ_CLUSTER_NATS), once `set_cluster` joined it.
    cluster: Option<crate::cluster::ShardLink>,
}

impl Shard {
    pub fn new(config: Rc<Config>, mesh: Rc<Mesh>) -> Self {
        let security = Rc::new(RefCell::new(Rc::new(Security::open(&config))));
        let guards = guard::Guards::new(&config);
        Self {
            config,
            mesh,
            access: Access {
                security,
                scram: None,
                authenticator: None,
            },
            clients: RefCell::default(),
            routing: RefCell::default(),
            retained: RefCell::default(),
            shared: RefCell::default(),
            schema: crate::filter::Schema::default(),
            last_scan: RefCell::default(),
            flow: Flow::default(),
            guards: RefCell::new(guards),
            barriers: RefCell::default(),
            counters: Counters::default(),
            stopping: Cell::new(false),
            persist: None,
            cluster: None,
        }
    }

    pub fn id(&self) -> ShardId {
        self.mesh.id()
    }

    /// The shard's metrics counters (increment only; read through `snapshot`).
    pub fn counters(&self) -> &crate::metrics::Counters {
        &self.counters.metrics
    }

    /// The home shard of a client id.
    pub fn home_of(&self, client_id: &[u8]) -> ShardId {
        self.mesh.home_of(client_id)
    }

    /// Hands an admitted connection to its client id's home shard.
    pub fn hand_over(&self, home: ShardId, handoff: Handoff) {
        self.post(home, MeshMsg::Handoff(handoff));
    }

    /// Sends `msg` to shard `to`, or handles it at once when `to` is this shard.
    fn post(&self, to: ShardId, msg: MeshMsg) {
        if let Some(local) = self.mesh.post(to, msg) {
            mesh::dispatch(self, local);
        }
    }

    /// The current access policy.
    pub fn security(&self) -> Rc<Security> {
        self.access.security.borrow().clone()
    }

    /// Installs a (re)loaded access policy; clients meet it on their next packet or delivery.
    pub fn set_security(&self, security: Security) {
        *self.access.security.borrow_mut() = Rc::new(security);
    }

    /// Installs the MQTT 5 enhanced-authentication hook.
    pub fn set_authenticator(&mut self, authenticator: Option<Box<dyn Authenticator>>) {
        self.access.authenticator = authenticator;
    }

    /// Enables SCRAM-SHA-256 against the password file's verifiers. `mock_key` must be the same
    /// on every shard (it makes the fake salts of unknown users stable).
    pub fn enable_scram(&mut self, mock_key: [u8; 32]) {
        let security = self.access.security.clone();
        self.access.scram = Some(ScramSha256::new(
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
        match &self.access.scram {
            Some(s) if method == crate::auth::scram::METHOD && self.security().has_passwords() => {
                Some(s)
            }
            _ => self.access.authenticator.as_deref(),
        }
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
        let clients = self.clients.borrow();
        let routing = self.routing.borrow();
        Stats {
            connections: clients.connections(),
            parked: clients.parking.count(),
            sessions: clients.sessions.len(),
            retained: self.retained.borrow().len(),
            local_filters: routing.local_filters(),
            remote_filters: routing.remote_filters(),
            drops: self.counters.drops.get(),
            refusals: self.guards.borrow().refusals,
        }
    }

    /// The shard's figures for the metrics and `$SYS` (walks the sessions: only when asked).
    pub fn snapshot(&self) -> crate::metrics::ShardSnapshot {
        let mut s = crate::metrics::ShardSnapshot {
            shard: self.id().0,
            ..Default::default()
        };
        {
            let clients = self.clients.borrow();
            s.connections_live = clients.conns.len() as u64;
            s.connections_parked = clients.parking.count() as u64;
            for e in clients.sessions.values() {
                if e.is_online() {
                    s.sessions_online += 1;
                } else {
                    s.sessions_offline += 1;
                }
                s.subscriptions += e.session.subscriptions.len() as u64;
                s.queued_messages += e.session.queued() as u64;
                s.inflight_messages += e.session.inflight() as u64;
            }
        }
        s.shared_groups = self.shared.borrow().local_groups() as u64;
        s.filter_scans = self.schema.scans();
        let retained = self.retained.borrow();
        s.retained_messages = retained.len() as u64;
        s.retained_bytes = retained.bytes() as u64;
        drop(retained);
        s.publishers_held = self.flow.held() as u64;
        self.counters.metrics.copy_into(&mut s);
        let drops = self.counters.drops.get();
        s.dropped.queue_full = drops.queue_full;
        s.dropped.slow_reader = drops.qos0_congested;
        s.dropped.offline = drops.qos0_offline;
        s.dropped.expired = drops.expired;
        s.refused = self.guards.borrow().refusals;
        (s.mesh_messages, s.mesh_batches) = self.mesh.sent();
        s
    }

    /// Publishes the broker's `$SYS` topics, retained, as the broker's own messages (the ACL
    /// applies to whoever subscribes).
    pub fn publish_sys(&self, topics: Vec<(String, String)>) {
        let now = Instant::now();
        for (topic, value) in topics {
            let Ok(topic) = crate::protocol::TopicName::copy_from(&topic) else {
                continue;
            };
            let message = Message {
                topic,
                payload: bytes::Bytes::from(value),
                qos: crate::protocol::QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                publisher: crate::protocol::ClientId::default(),
                expires_at: None,
                received: now,
            };
            self.publish_message(message, false, now);
        }
    }

    /// Gives back the room of tables that emptied (say, after a storm of connections that then
    /// parked or left); called about once a second.
    pub fn compact(&self) {
        self.clients.borrow_mut().compact();
        self.forget_old_guards(Instant::now());
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// A fresh connection id.
    fn new_conn_id(&self) -> ConnId {
        let next = self.counters.next_conn.get() + 1;
        self.counters.next_conn.set(next);
        ConnId(next)
    }

    /// The outbox of a new (or woken) connection with the terms it agreed, and the broker's
    /// slow-reader limits.
    pub fn new_outbox(&self, terms: Terms) -> Rc<Outbox> {
        let conn = Outbox::new(self.new_conn_id(), terms, self.counters.metrics.clone());
        conn.set_slow_reader_limits(
            self.config.max_outbound_buffer,
            self.config.slow_reader_timeout,
        );
        Rc::new(conn)
    }

    /// A client id for a client that sent an empty one, unique across shards and restarts of
    /// the counter (shard id + counter + start time).
    fn assign_client_id(&self) -> String {
        let next = self.counters.next_client_id.get() + 1;
        self.counters.next_client_id.set(next);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!("coremq-{}-{next}-{:x}", self.id().0, nanos & 0xFFFF_FFFF)
    }

    /// Counts the deliveries a session dropped since its counters were `before`, and logs them at
    /// most once per second per shard, with the client id and the session's counters by reason.
    fn note_drop(&self, client_id: &ClientId, after: &Drops, before: &Drops, now: Instant) {
        let mut drops = self.counters.drops.get();
        drops.add_since(after, before);
        self.counters.drops.set(drops);
        let last = self.counters.last_drop_log.get();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.counters.last_drop_log.set(Some(now));
            crate::log!(
                Warn,
                "client {:?}: messages dropped so far: {after:?} (COREMQ_MAX_QUEUED_MESSAGES / \
                 COREMQ_MAX_QUEUED_BYTES / COREMQ_MAX_OUTBOUND_BUFFER / \
                 COREMQ_SLOW_READER_TIMEOUT / expiry)",
                client_id.as_str()
            );
        }
    }

    /// Opens a barrier that every other shard must ack; `None` with a single shard.
    fn barrier_to_peers(&self) -> Option<(AckToken, barrier::Barrier)> {
        let peers = self.mesh.peer_count();
        (peers > 0).then(|| self.barriers.borrow_mut().open(peers))
    }

    /// Fires what is due at `now` (every tick): flow-control holds, parked connections' keep
    /// alive, delayed wills and session expiry.
    pub fn tick(&self, now: Instant) {
        self.check_holds(now);
        self.wake_due(now);
        self.fire_session_timers(now);
    }

    /// Whether the shard serves no live connection: then nothing but its timers (session expiry,
    /// delayed wills, parked connections' keep alive: `next_due`) needs its tick, and it may tick
    /// less often.
    pub fn is_quiet(&self) -> bool {
        self.clients.borrow().conns.is_empty()
    }

    /// The earliest session timer or parked connection's keep-alive deadline, if any.
    pub fn next_due(&self) -> Option<Instant> {
        let clients = self.clients.borrow();
        let timer = clients.timers.peek().map(|std::cmp::Reverse((t, _))| *t);
        match (timer, clients.parking.next_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Graceful shutdown: stop accepting packets and close every connection. MQTT 5 clients get
    /// DISCONNECT 0x8B (server shutting down); wills are not published for them.
    pub fn begin_shutdown(&self) {
        self.stopping.set(true);
        self.wake_all();
        let conns: Vec<Rc<Outbox>> = self.clients.borrow().live_outboxes();
        for conn in conns {
            if conn.terms().version.is_v5() {
                let mut d = crate::protocol::Disconnect::new(
                    crate::protocol::ReasonCode::SERVER_SHUTTING_DOWN,
                );
                d.properties.reason_string = MqttString::from_static("server shutting down").ok();
                conn.send(&Packet::Disconnect(d));
            }
            conn.close();
        }
        for entry in self.clients.borrow_mut().sessions.values_mut() {
            entry.session.drop_will();
        }
    }
}

/// Each message kind from the mesh goes to the part it concerns.
impl mesh::Handler for Shard {
    fn on_publish(&self, message: Message, sync: mesh::SyncAck) {
        self.deliver_local(&message, Instant::now());
        if let Some((to, token)) = sync {
            self.ack_after_sync(to, token);
        }
    }

    fn on_interest(&self, filter: MqttString, from: ShardId, add: bool, ack: Option<AckToken>) {
        self.routing.borrow_mut().set_interest(&filter, from, add);
        if let Some(token) = ack {
            self.post(from, MeshMsg::Ack(token));
        }
    }

    fn on_ack(&self, token: AckToken) {
        self.barriers.borrow_mut().ack(token);
    }

    fn on_sync_failed(&self, token: AckToken) {
        self.barriers.borrow_mut().fail(token);
    }

    fn on_retain_request(&self, message: Message, from: ShardId, ack: Option<AckToken>) {
        self.order_retained(message, from, ack);
    }

    fn on_retain_apply(&self, message: Message, from: ShardId, ack: Option<AckToken>) {
        self.apply_retained(message);
        if let Some(token) = ack {
            self.post(from, MeshMsg::Ack(token));
        }
    }

    fn on_shared_interest(
        &self,
        group: TopicFilter,
        from: ShardId,
        add: bool,
        ack: Option<AckToken>,
    ) {
        self.set_shared_interest(group, from, add);
        if let Some(token) = ack {
            self.post(from, MeshMsg::Ack(token));
        }
    }

    fn on_shared_publish(
        &self,
        group: TopicFilter,
        message: Message,
        tried: ShardSet,
        sync: mesh::SyncAck,
    ) {
        self.deliver_shared_here(group, message, tried, sync, Instant::now());
    }

    fn on_hold(&self, publisher: ClientId, on: bool) {
        self.flow.set_hold(publisher, on);
    }

    fn on_handoff(&self, handoff: Handoff) {
        self.clients
            .borrow_mut()
            .parking
            .arrive(Arrival::Handoff(handoff));
    }

    fn on_login_failed(&self, key: GuardKey) {
        self.count_login_failure(key);
    }

    fn on_ban(&self, key: GuardKey, until: Instant) {
        self.apply_ban(key, until);
    }
}
