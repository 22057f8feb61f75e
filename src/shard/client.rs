//! A client's lifecycle on its home shard once its CONNECT is accepted (`login.rs` decides that):
//! session creation, resumption and takeover, CONNACK, the end of a connection and of a session.
//! What each packet does lives in `packets.rs`.
//!
//! No sockets here: replies go into the connection's `Outbox`; `net` reads frames, awaits any
//! `Deferred` barrier and closes the socket on a `Violation`.

use std::cmp::Reverse;
use std::num::{NonZeroU16, NonZeroU32};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::barrier::Barrier;
use super::clients::{Clients, Entry};
use super::guard::Refusal;
use super::table::SessionTable;
use super::{Outbox, Shard, Terms};
use crate::auth::AuthExchange;
use crate::message::Message;
use crate::protocol::{
    ClientId, ConnAck, ConnAckProperties, Connect, Disconnect, MqttString, Packet, PublishAck, QoS,
    ReasonCode, TopicFilter, TopicName,
};
use crate::session::{Connection, Resend, Session};

/// One connected client's per-connection MQTT state, owned by its connection's task on the home
/// shard. (Its session is the shard's; what the connection agreed at CONNECT is in its outbox's
/// `Terms`.)
pub struct Client {
    pub client_id: ClientId,
    pub conn: Rc<Outbox>,
    /// Inbound topic aliases (MQTT 5), index = alias - 1, up to `COREMQ_TOPIC_ALIAS_MAXIMUM`.
    pub(super) aliases: Vec<Option<TopicName>>,
    /// The enhanced authentication method of the CONNECT, if any.
    pub(super) auth_method: Option<MqttString>,
    /// A re-authentication in progress [MQTT-4.12.1].
    pub(super) reauth: Option<Box<dyn AuthExchange>>,
    /// PUBACK / PUBREC / PUBCOMP waiting for the store (or behind one that does), in order.
    pub(super) acks: std::collections::VecDeque<super::PendingAck>,
    /// The slot its session was last found in (`SessionTable::key_near`): checked first, instead
    /// of hashing the client id for every packet that touches the session.
    slot: std::cell::Cell<u32>,
}

impl Client {
    pub(super) fn new(
        client_id: ClientId,
        conn: Rc<Outbox>,
        auth_method: Option<MqttString>,
    ) -> Self {
        Self {
            client_id,
            conn,
            aliases: Vec::new(),
            auth_method,
            reauth: None,
            acks: std::collections::VecDeque::new(),
            slot: std::cell::Cell::new(u32::MAX),
        }
    }

    /// The slot of its session in `sessions`, if it has one.
    pub(super) fn session_key(&self, sessions: &SessionTable<Entry>) -> Option<u32> {
        let key = sessions.key_near(&self.client_id, self.slot.get())?;
        self.slot.set(key);
        Some(key)
    }

    /// What the connection agreed at CONNECT.
    pub fn terms(&self) -> Terms {
        self.conn.terms()
    }

    /// A Reason String for an acknowledgement that reports a failure, if the client may get one:
    /// MQTT 5, and it did not set Request Problem Information to 0 [MQTT-3.1.2-29]. (Success
    /// acknowledgements carry none; `Outbox::send` removes it again where it would exceed the
    /// client's Maximum Packet Size.)
    pub fn diagnostic(&self, why: &str) -> Option<MqttString> {
        let terms = self.terms();
        (terms.version.is_v5() && terms.problem_information)
            .then(|| MqttString::copy_from(why).ok())
            .flatten()
    }

    /// Whether all this connection's state is in its session (`park`): its outbox is quiet and
    /// it has no inbound topic aliases or enhanced authentication to remember.
    pub fn can_park(&self) -> bool {
        self.conn.is_quiet()
            && self.aliases.iter().all(Option::is_none)
            && self.auth_method.is_none()
            && self.reauth.is_none()
            && self.acks.is_empty()
    }
}

/// Why a connection must end. For MQTT 5 the reason code goes out in a DISCONNECT first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub reason: ReasonCode,
    pub what: &'static str,
}

impl Violation {
    pub(super) fn protocol(what: &'static str) -> Self {
        Self {
            reason: ReasonCode::PROTOCOL_ERROR,
            what,
        }
    }
}

/// Replies that must wait for a barrier (other shards confirming a change) before they are
/// sent, in order: `then`, followed by the retained messages for `retained` (read when the wait
/// is over; see `Shard::send_retained`).
pub struct Deferred {
    pub waits: Vec<Barrier>,
    pub then: Vec<Packet>,
    pub retained: Vec<RetainedFor>,
}

impl Deferred {
    /// `Ready` once every wait is over (each finished one is dropped); otherwise registers the
    /// task to be woken.
    pub fn poll_waits(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        while let Some(w) = self.waits.last() {
            if w.poll_done(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            self.waits.pop();
        }
        std::task::Poll::Ready(())
    }
}

/// A subscription that is owed the retained messages matching it.
pub struct RetainedFor {
    pub filter: TopicFilter,
    pub qos: QoS,
    pub id: Option<NonZeroU32>,
    /// The subscription's content filter: retained messages are filtered the same way.
    pub content: Option<Rc<crate::filter::Filter>>,
}

/// A copy of `s` in its own allocation (falls back to `s` itself, which cannot happen: it was
/// valid already).
pub(super) fn own(s: MqttString) -> MqttString {
    MqttString::copy_from(s.as_str()).unwrap_or(s)
}

/// Session Expiry Interval as a lifetime after disconnect: `None` = never expires.
/// MQTT 5: absent or 0 ends the session with the connection, 0xFFFFFFFF never expires
/// [MQTT-3.1.2-11.2]; MQTT 3.1.1: Clean Session 1 ends it, 0 keeps it.
fn session_lifetime(connect: &Connect) -> Option<Duration> {
    if connect.protocol.is_v5() {
        match connect.properties.session_expiry_interval.unwrap_or(0) {
            u32::MAX => None,
            s => Some(Duration::from_secs(u64::from(s))),
        }
    } else if connect.clean_start {
        Some(Duration::ZERO)
    } else {
        None
    }
}

/// What taking a client id's session over leaves to do once the shard's state is released.
#[derive(Default)]
struct Takeover {
    /// The session kept for the new connection, if it is resumed.
    kept: Option<Entry>,
    /// The old session, when the new connection starts clean: it must end.
    dropped: Option<Session>,
    /// The old connection's will, when it goes out now.
    will: Option<Message>,
}

impl Shard {
    /// Registers an accepted CONNECT on the client id's home shard: takes over an existing
    /// connection of the same client id [MQTT-3.1.4-2], resumes or replaces its session, sends
    /// CONNACK and then any messages the session owes. `assigned` when the server chose the
    /// client id, `auth_data` the last data of a successful enhanced authentication. `Err` is
    /// the CONNACK refusing a client id that connects too often (COREMQ_FLAPPING): 0x8A Banned.
    pub fn handle_connect(
        &self,
        connect: Connect,
        assigned: bool,
        auth_data: Option<Bytes>,
    ) -> Result<Client, Box<ConnAck>> {
        let now = Instant::now();
        self.counters()
            .packet_in(crate::protocol::wire::packet_type::CONNECT);
        if !self.connect_allowed(&connect.client_id, now) {
            self.count_refusal(Refusal::Flapping);
            return Err(Box::new(ConnAck::refusal(ReasonCode::BANNED)));
        }
        self.counters().login();
        let (ack, terms) = self.connack(&connect, assigned, auth_data);
        let conn = self.new_outbox(terms);
        let username = connect.username.clone().map(own);
        let will = self.will_of(&connect, username.as_ref());
        // Client id and user name live as long as the session: copies, so they do not pin the
        // CONNECT's read buffer.
        let client_id = connect.client_id.detached();
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        clients.conns.insert(conn.id, conn.clone());
        let mut takeover = self.take_over(clients, &client_id, connect.clean_start, now);
        if let Some(old) = takeover.dropped.as_mut() {
            // Forgotten on disk before the new session is recorded under the same client id.
            if old.is_durable() {
                self.forget_session(&old.client_id);
                old.set_durable(false);
            }
        }
        let session_present = takeover.kept.is_some();
        let mut entry = takeover.kept.unwrap_or_else(|| {
            Entry::new(Session::new(
                client_id.clone(),
                terms.version,
                self.limits(),
            ))
        });
        let window = match connect.properties.receive_maximum {
            Some(rm) => self.config.max_inflight.min(rm.get()),
            None => self.config.max_inflight,
        };
        entry.session.connected(Connection {
            version: terms.version,
            lifetime: session_lifetime(&connect),
            max_inflight: usize::from(window),
            username,
            will,
        });
        entry.conn = Some(conn.clone());
        // [MQTT-3.2.0-1] CONNACK is the first packet the server sends.
        conn.send(&Packet::ConnAck(Box::new(ConnAck {
            session_present,
            ..ack
        })));
        let resends = entry.session.resume(now);
        // Recorded before anything goes out (see `persist.rs`: what was sent is on disk first).
        self.keep_session(&mut entry.session);
        for r in resends {
            match r {
                Resend::Publish(p) => self.send_delivery(&conn, p),
                Resend::PubRel(id) => self.send_release(&conn, Packet::PubRel(PublishAck::new(id))),
            };
        }
        clients.sessions.insert(entry);
        drop(guard);
        self.export_connected(&client_id);
        if let Some(old) = takeover.dropped {
            self.end_session(old);
        }
        if let Some(w) = takeover.will {
            self.publish_message(w, false, now);
        }
        Ok(Client::new(
            client_id,
            conn,
            connect.properties.authentication_method,
        ))
    }

    /// The CONNECT's will, if the ACL lets the client publish on its topic (else it is dropped,
    /// as Mosquitto does), detached from the CONNECT's read buffer, with its delay.
    fn will_of(
        &self,
        connect: &Connect,
        username: Option<&MqttString>,
    ) -> Option<(Message, Duration)> {
        let w = connect.will.as_ref()?;
        let id = connect.client_id.as_str();
        if !self
            .security()
            .can_publish(id, username.map(|u| u.as_str()), w.topic.as_str())
        {
            crate::log!(
                Info,
                "client {id:?}: will on {:?} denied by the ACL, dropped",
                w.topic.as_str()
            );
            return None;
        }
        let delay = Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0)));
        let message = Message {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
            expires_at: None,
            properties: w.properties.message.clone(),
            publisher: connect.client_id.clone(),
            // Set again when the will is published (`PendingWill::publish_at`).
            received: Instant::now(),
        };
        Some((message.detached(), delay))
    }

    /// Takes the session of `client_id` from its previous connection, if any: that connection
    /// (woken first if parked) is told (MQTT 5: DISCONNECT 0x8E) and closed; its will goes out
    /// unless delayed and the session is kept [MQTT-3.1.4-3] [MQTT-3.1.3-9]; the session is kept
    /// unless the new connection starts clean.
    fn take_over(
        &self,
        clients: &mut Clients,
        client_id: &ClientId,
        clean_start: bool,
        now: Instant,
    ) -> Takeover {
        let Some(mut old) = clients.sessions.remove(client_id) else {
            return Takeover::default();
        };
        self.unpark(&mut old, &mut clients.parking, &mut clients.conns);
        if let Some(old_conn) = old.conn.take() {
            if old_conn.terms().version.is_v5() {
                let mut d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
                d.properties.reason_string = MqttString::from_static(
                    "[MQTT-3.1.4-2] another connection took over this client id",
                )
                .ok();
                old_conn.send(&Packet::Disconnect(d));
            }
            old_conn.close();
            clients.conns.remove(&old_conn.id);
        }
        let will = old.session.taken_over(clean_start, now);
        if clean_start {
            Takeover {
                kept: None,
                dropped: Some(old.session),
                will,
            }
        } else {
            Takeover {
                kept: Some(old),
                dropped: None,
                will,
            }
        }
    }

    /// The CONNACK accepting `connect` (Session Present is set by the caller) and the terms of
    /// the connection: for MQTT 5 the properties that tell the client the server's limits, the
    /// assigned client id, the end of an enhanced authentication and the keep alive the server
    /// imposes [MQTT-3.2.2-21].
    fn connack(
        &self,
        connect: &Connect,
        assigned: bool,
        auth_data: Option<Bytes>,
    ) -> (ConnAck, Terms) {
        let v = connect.protocol;
        let mut terms = Terms {
            version: v,
            keep_alive: connect.keep_alive,
            problem_information: connect.properties.request_problem_information != Some(false),
            max_packet_size: connect
                .properties
                .maximum_packet_size
                .map_or(u32::MAX, |n| n.get()),
            alias_max: connect.properties.topic_alias_maximum.unwrap_or(0),
        };
        let mut p = ConnAckProperties::default();
        if v.is_v5() {
            if assigned {
                p.assigned_client_identifier = Some(connect.client_id.as_mqtt_str().clone());
            }
            // [MQTT-4.12.0-5]: a successful enhanced authentication ends with CONNACK carrying the
            // method (and the last data, if any).
            p.authentication_method = connect.properties.authentication_method.clone();
            p.authentication_data = auth_data;
            self.advertise_limits(&mut p);
            let max = self.config.max_keepalive;
            if terms.keep_alive > max || (terms.keep_alive == 0 && max < 65535) {
                // [MQTT-3.2.2-21] the client must use the server's keep alive.
                terms.keep_alive = max;
                p.server_keep_alive = Some(max);
            }
            if connect.properties.request_response_information == Some(true)
                && !self.config.response_information.is_empty()
            {
                p.response_information = MqttString::copy_from(&format!(
                    "{}/{}/",
                    self.config.response_information.trim_end_matches('/'),
                    connect.client_id
                ))
                .ok();
            }
        }
        let ack = ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: p,
        };
        (ack, terms)
    }

    /// The server limits an MQTT 5 CONNACK announces (absent ones are the spec's defaults).
    fn advertise_limits(&self, p: &mut ConnAckProperties) {
        p.maximum_packet_size = NonZeroU32::new(self.config.max_packet_size);
        p.receive_maximum = NonZeroU16::new(self.config.receive_maximum);
        p.topic_alias_maximum = Some(self.config.topic_alias_maximum).filter(|&n| n > 0);
        if self.config.max_qos < 2 {
            p.maximum_qos = Some(if self.config.max_qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            });
        }
        if !self.config.retain_available {
            p.retain_available = Some(false);
        }
    }

    /// The will of this client's connection, removed (DISCONNECT discards it).
    pub(super) fn take_will(&self, client: &Client) -> Option<Message> {
        self.with_session(client, |s| s.take_will(Instant::now()))
            .flatten()
    }

    /// DISCONNECT may change the Session Expiry Interval, except from 0 (MQTT 5 §3.14.2.2.2).
    pub(super) fn set_session_expiry(&self, client: &Client, secs: u32) -> Result<(), Violation> {
        match self.with_session(client, |s| s.set_expiry_interval(secs)) {
            Some(false) => Err(Violation::protocol(
                "MQTT 5 §3.14.2.2.2: Session Expiry Interval changed from 0 on DISCONNECT",
            )),
            _ => Ok(()),
        }
    }

    /// The connection ended. `abnormal` when it ended without DISCONNECT (socket error, keep
    /// alive timeout, protocol violation): the will is published [MQTT-3.1.2-8], after its Will
    /// Delay Interval if it has one, or when the session ends if that comes first. A session
    /// with expiry 0 ends with its connection [MQTT-3.1.2-6]; others expire later (`clients.rs`).
    pub fn handle_close(&self, client: &Client, abnormal: bool) {
        let now = Instant::now();
        if !self.is_stopping() {
            self.connection_ended(&client.client_id, now);
        }
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        clients.conns.remove(&client.conn.id);
        let Some(entry) = clients.sessions.get_mut(&client.client_id) else {
            return;
        };
        if !entry.is_served_by(client.conn.id) {
            return; // taken over: the newer connection owns the session now
        }
        entry.conn = None;
        // An offline session holds back no publisher (its messages just queue).
        let mut holds = std::mem::take(&mut entry.holds);
        let end = entry
            .session
            .disconnected(abnormal && !self.is_stopping(), now);
        for at in end.wake_at {
            clients.timers.push(Reverse((at, client.client_id.clone())));
        }
        if !end.ends {
            // Its expiry (and delayed will) recorded, for a restart meanwhile.
            self.keep_session(&mut entry.session);
        }
        let ended = end
            .ends
            .then(|| clients.sessions.remove(&client.client_id))
            .flatten();
        drop(guard);
        if let Some(e) = ended {
            self.end_session(e.session);
        }
        self.release_holds(&mut holds);
        if let Some(w) = end.will {
            self.publish_message(w, false, now);
        }
    }

    /// Ends a session: removes its subscriptions from the trie and its shared groups, and hands
    /// its unacknowledged shared messages to other members.
    pub(super) fn end_session(&self, mut session: Session) {
        if session.is_durable() {
            self.forget_session(&session.client_id);
        }
        for (key, _) in session.subscriptions.iter() {
            self.detach_subscription(key, &session.client_id);
        }
        self.reroute_shared(session.take_shared());
    }

    /// The user name of this client's session (for access control).
    pub(super) fn username_of(&self, client: &Client) -> Option<MqttString> {
        self.clients
            .borrow()
            .sessions
            .get(&client.client_id)
            .and_then(|e| e.session.username.clone())
    }

    /// Runs `f` on this client's session, if this connection still owns it (a takeover may have
    /// moved it to a newer connection).
    pub(super) fn with_session<T>(
        &self,
        client: &Client,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Option<T> {
        let mut clients = self.clients.borrow_mut();
        let key = client.session_key(&clients.sessions)?;
        let entry = clients.sessions.by_key_mut(key)?;
        if !entry.is_served_by(client.conn.id) {
            return None;
        }
        let out = f(&mut entry.session);
        self.keep(&mut entry.session);
        Some(out)
    }
}
