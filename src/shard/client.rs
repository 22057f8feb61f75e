//! A client's lifecycle on its home shard: CONNECT checks, session creation, resumption and
//! takeover, the end of a connection (wills, will delay, session expiry) and the timers that
//! expire sessions and fire delayed wills. What each packet does lives in `packets.rs`.
//!
//! No sockets here: replies go into the connection's `Outbox`; `net` reads frames, awaits any
//! `Deferred` barrier and closes the socket on a `Violation`.

use std::cmp::Reverse;

use bytes::Bytes;

use crate::auth::AuthExchange;
use std::num::{NonZeroU16, NonZeroU32};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::barrier::Wait;
use super::{Entry, Outbox, PendingWill, Shard};
use crate::protocol::{
    ConnAck, ConnAckProperties, Connect, Disconnect, MqttString, Packet, ProtocolVersion,
    PublishAck, QoS, ReasonCode, TopicFilter, TopicName,
};
use crate::session::{Limits, Message, Resend, Session};

/// One connected client, owned by its connection task on the home shard.
pub struct Client {
    pub client_id: MqttString,
    pub version: ProtocolVersion,
    pub conn: Rc<Outbox>,
    /// Effective keep alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Inbound topic aliases (MQTT 5), index = alias - 1, up to `COREMQ_TOPIC_ALIAS_MAXIMUM`.
    pub(super) aliases: Vec<Option<TopicName>>,
    /// Request Problem Information: reason strings may go on acknowledgements [MQTT-3.1.2-29].
    pub(super) problem_information: bool,
    /// The enhanced authentication method of the CONNECT, if any.
    pub(super) auth_method: Option<MqttString>,
    /// A re-authentication in progress [MQTT-4.12.1].
    pub(super) reauth: Option<Box<dyn AuthExchange>>,
    /// The user name (from CONNECT or proved by enhanced authentication), for access control.
    pub username: Option<MqttString>,
}

impl Client {
    /// A Reason String for an acknowledgement that reports a failure, if the client may get one:
    /// MQTT 5, and it did not set Request Problem Information to 0 [MQTT-3.1.2-29]. (Success
    /// acknowledgements carry none; `Outbox::send` removes it again where it would exceed the
    /// client's Maximum Packet Size.)
    pub fn diagnostic(&self, why: &'static str) -> Option<MqttString> {
        (self.version.is_v5() && self.problem_information)
            .then(|| MqttString::from_static(why).ok())
            .flatten()
    }

    /// Whether all this connection's state is in its session (`park`): its outbox is quiet and
    /// it has no inbound topic aliases or enhanced authentication to remember.
    pub fn can_park(&self) -> bool {
        self.conn.is_quiet()
            && self.aliases.iter().all(Option::is_none)
            && self.auth_method.is_none()
            && self.reauth.is_none()
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
    pub waits: Vec<Wait>,
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
}

/// Result of checking a CONNECT on the shard that accepted the connection.
pub enum ConnectOutcome {
    /// Proceed on the client id's home shard; `assigned` when the server chose the id.
    Accept { assigned: bool },
    /// Refused: send this CONNACK and close.
    Refuse(Box<ConnAck>),
}

/// A copy of `s` in its own allocation (falls back to `s` itself, which cannot happen: it was
/// valid already).
fn own(s: MqttString) -> MqttString {
    MqttString::copy_from(s.as_str()).unwrap_or(s)
}

fn refuse(code: ReasonCode) -> ConnectOutcome {
    ConnectOutcome::Refuse(Box::new(ConnAck {
        session_present: false,
        reason_code: code,
        properties: ConnAckProperties::default(),
    }))
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

impl PendingWill {
    /// The will as it goes out at `now`. Its Message Expiry Interval counts from publication, not
    /// from CONNECT: it "is sent as the Publication Expiry Interval when the Server publishes the
    /// Will Message" (MQTT 5 §3.1.3.2.4), and queued or retained copies expire accordingly
    /// [MQTT-3.3.2-5].
    fn publish_at(self, now: Instant) -> Message {
        let mut message = self.message;
        message.expires_at = message
            .properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        message
    }
}

impl Shard {
    /// Checks a CONNECT before it goes to its home shard, assigning a client id when the client
    /// sent an empty one and may.
    pub fn check_connect(&self, connect: &mut Connect) -> ConnectOutcome {
        let v = connect.protocol;
        // A shard that is shutting down accepts no new sessions: return code 3 / reason 0x88.
        if self.is_stopping() {
            return refuse(ReasonCode::SERVER_UNAVAILABLE);
        }
        // MQTT 3.1.1 clients asking for a longer keep alive than allowed are refused; MQTT 5
        // clients are told the server's value instead (see `handle_connect`).
        if !v.is_v5() && connect.keep_alive > self.config.max_keepalive {
            return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if let Some(will) = &connect.will {
            if !self.topic_within_limits(will.topic.as_str()) {
                return refuse(ReasonCode::TOPIC_NAME_INVALID);
            }
            // [MQTT-3.2.2-12] [MQTT-3.2.2-13] a will above the server's limits is refused.
            if will.qos as u8 > self.config.max_qos {
                return refuse(ReasonCode::QOS_NOT_SUPPORTED);
            }
            if will.retain && !self.config.retain_available {
                return refuse(ReasonCode::RETAIN_NOT_SUPPORTED);
            }
        }
        if connect.client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1 without clean session, and MQTT 3.1 always, must send an id;
            // [MQTT-3.1.3-6] otherwise the server assigns one.
            let may_assign = match v {
                ProtocolVersion::V3_1 => false,
                ProtocolVersion::V3_1_1 => connect.clean_start,
                ProtocolVersion::V5 => true,
            };
            if !may_assign {
                return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            match MqttString::copy_from(&self.assign_client_id()) {
                Ok(id) => connect.client_id = id,
                Err(_) => return refuse(ReasonCode::SERVER_UNAVAILABLE),
            }
            return ConnectOutcome::Accept { assigned: true };
        }
        ConnectOutcome::Accept { assigned: false }
    }

    /// Registers a connection on the client id's home shard: takes over an existing connection
    /// of the same client id [MQTT-3.1.4-2], resumes or replaces its session, sends CONNACK and
    /// then any messages the session owes.
    pub fn handle_connect(
        &self,
        connect: Connect,
        assigned: bool,
        auth_data: Option<Bytes>,
        conn: Rc<Outbox>,
    ) -> Client {
        let now = Instant::now();
        let v = connect.protocol;
        let lifetime = session_lifetime(&connect);
        let window = match connect.properties.receive_maximum {
            Some(rm) => (self.config.max_inflight).min(rm.get()),
            None => self.config.max_inflight,
        };
        // [ACL] a will on a topic the client may not publish to is dropped (as Mosquitto does).
        let security = self.security();
        let username = connect.username.clone().map(own);
        let will = connect.will.filter(|w| {
            let allowed = security.can_publish(
                connect.client_id.as_str(),
                username.as_deref(),
                w.topic.as_str(),
            );
            if !allowed {
                crate::log!(
                    Info,
                    "client {:?}: will on {:?} denied by the ACL, dropped",
                    connect.client_id.as_str(),
                    w.topic.as_str()
                );
            }
            allowed
        });
        let will = will.map(|w| {
            let delay =
                Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0)));
            let message = Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                expires_at: None,
                properties: w.properties.message,
                publisher: connect.client_id.clone(),
            }
            // The will lives as long as the connection: do not pin the CONNECT's read chunk.
            .detached();
            // Boxed: most sessions have no will, and the entry is kept per session.
            Box::new(PendingWill {
                message,
                delay,
                due: None,
            })
        });
        // Client id and user name live as long as the session: copies, so they do not pin the
        // CONNECT's read buffer.
        let client_id = own(connect.client_id);

        let mut wills_now = Vec::new();
        let mut dropped_session = None;
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.conns.insert(conn.id, conn.clone());
        let entry = match state.sessions.remove(&client_id) {
            Some(mut old) => {
                // A parked connection is woken to be told (MQTT 5) and closed like a live one.
                self.unpark(&mut old, &mut state.parking, &mut state.conns);
                if let Some(old_conn) = old.conn.take() {
                    if old_conn.version.is_v5() {
                        let mut d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
                        d.properties.reason_string = MqttString::from_static(
                            "[MQTT-3.1.4-2] another connection took over this client id",
                        )
                        .ok();
                        old_conn.send(&Packet::Disconnect(d));
                    }
                    old_conn.close();
                    state.conns.remove(&old_conn.id);
                }
                // [MQTT-3.1.4-3] the old connection ended without DISCONNECT: its will goes out,
                // unless it is delayed and this reconnection (keeping the session) cancels it
                // [MQTT-3.1.3-9]; a delayed will still waiting is cancelled the same way.
                if let Some(w) = old.will.take() {
                    if w.delay.is_zero() || connect.clean_start {
                        wills_now.push(w.publish_at(now));
                    }
                }
                if connect.clean_start {
                    dropped_session = Some(old.session);
                    None
                } else {
                    Some(old)
                }
            }
            None => None,
        };
        let session_present = entry.is_some();
        let limits = Limits {
            max_inflight: window as usize,
            ..self.limits()
        };
        let mut e = entry.unwrap_or_else(|| Entry {
            holds: Default::default(),
            username: None,
            session: Session::new(
                client_id.clone(),
                v,
                lifetime == Some(Duration::ZERO),
                limits,
            ),
            conn: None,
            parked: None,
            will: None,
            lifetime,
            expires_at: None,
        });
        e.session.version = v;
        e.session.clean = lifetime == Some(Duration::ZERO);
        e.session.set_max_inflight(window as usize);
        e.conn = Some(conn.clone());
        e.will = will;
        e.username = username.clone();
        e.lifetime = lifetime;
        e.expires_at = None;

        let mut properties = ConnAckProperties::default();
        let mut keep_alive = connect.keep_alive;
        if v.is_v5() {
            if assigned {
                properties.assigned_client_identifier = Some(client_id.clone());
            }
            // [MQTT-4.12.0-5]: a successful enhanced authentication ends with CONNACK carrying the
            // method (and the last data, if any).
            properties.authentication_method = connect.properties.authentication_method.clone();
            properties.authentication_data = auth_data;
            properties.maximum_packet_size = NonZeroU32::new(self.config.max_packet_size);
            properties.receive_maximum = NonZeroU16::new(self.config.receive_maximum);
            properties.topic_alias_maximum =
                Some(self.config.topic_alias_maximum).filter(|&n| n > 0);
            if self.config.max_qos < 2 {
                properties.maximum_qos = Some(if self.config.max_qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                });
            }
            if !self.config.retain_available {
                properties.retain_available = Some(false);
            }
            if keep_alive > self.config.max_keepalive
                || (keep_alive == 0 && self.config.max_keepalive < 65535)
            {
                // [MQTT-3.2.2-21] the client must use the server's keep alive.
                keep_alive = self.config.max_keepalive;
                properties.server_keep_alive = Some(keep_alive);
            }
            if connect.properties.request_response_information == Some(true)
                && !self.config.response_information.is_empty()
            {
                properties.response_information = MqttString::copy_from(&format!(
                    "{}/{}/",
                    self.config.response_information.trim_end_matches('/'),
                    client_id
                ))
                .ok();
            }
        }
        // [MQTT-3.2.0-1] CONNACK is the first packet the server sends.
        conn.send(&Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties,
        })));
        for r in e.session.resume(now) {
            match r {
                Resend::Publish(p) => conn.send_publish(p),
                Resend::PubRel(id) => conn.send(&Packet::PubRel(PublishAck::new(id))),
            };
        }
        state.sessions.insert(client_id.clone(), e);
        drop(guard);

        if let Some(old) = dropped_session {
            self.end_session(old);
        }
        for w in wills_now {
            self.publish_message(w, false, now);
        }
        Client {
            client_id,
            version: v,
            conn,
            keep_alive,
            aliases: Vec::new(),
            problem_information: connect.properties.request_problem_information != Some(false),
            auth_method: connect.properties.authentication_method,
            reauth: None,
            username,
        }
    }

    /// The will of this client's connection, removed (DISCONNECT discards it).
    pub(super) fn take_will(&self, client: &Client) -> Option<Message> {
        let mut state = self.state.borrow_mut();
        let entry = state.sessions.get_mut(&client.client_id)?;
        match &entry.conn {
            Some(c) if c.id == client.conn.id => {
                entry.will.take().map(|w| w.publish_at(Instant::now()))
            }
            _ => None,
        }
    }

    /// DISCONNECT may change the Session Expiry Interval, except from 0 (MQTT 5 §3.14.2.2.2).
    pub(super) fn set_session_expiry(&self, client: &Client, secs: u32) -> Result<(), Violation> {
        let mut state = self.state.borrow_mut();
        let Some(entry) = state.sessions.get_mut(&client.client_id) else {
            return Ok(());
        };
        if entry.lifetime == Some(Duration::ZERO) && secs > 0 {
            return Err(Violation::protocol(
                "MQTT 5 §3.14.2.2.2: Session Expiry Interval changed from 0 on DISCONNECT",
            ));
        }
        entry.lifetime = (secs != u32::MAX).then(|| Duration::from_secs(u64::from(secs)));
        entry.session.clean = secs == 0;
        Ok(())
    }

    /// The connection ended. `abnormal` when it ended without DISCONNECT (socket error, keep
    /// alive timeout, protocol violation): the will is published [MQTT-3.1.2-8], after its Will
    /// Delay Interval if it has one, or when the session ends if that comes first. A session
    /// with expiry 0 ends with its connection [MQTT-3.1.2-6]; others expire later (see `tick`).
    pub fn handle_close(&self, client: &Client, abnormal: bool) {
        let now = Instant::now();
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.conns.remove(&client.conn.id);
        let Some(entry) = state.sessions.get_mut(&client.client_id) else {
            return;
        };
        if !matches!(&entry.conn, Some(c) if c.id == client.conn.id) {
            return; // taken over: the newer connection owns the session now
        }
        entry.conn = None;
        // An offline session holds back no publisher (its messages just queue).
        let mut holds = std::mem::take(&mut entry.holds);
        let mut will = entry
            .will
            .take()
            .filter(|_| abnormal && !self.is_stopping());
        let mut publish_now = None;
        if entry.lifetime == Some(Duration::ZERO) {
            publish_now = will.take().map(|w| w.publish_at(now));
            let ended = state.sessions.remove(&client.client_id);
            drop(guard);
            if let Some(e) = ended {
                self.end_session(e.session);
            }
        } else {
            entry.session.detach_inflight();
            if let Some(lifetime) = entry.lifetime {
                entry.expires_at = Some(now + lifetime);
                state
                    .timers
                    .push(Reverse((now + lifetime, client.client_id.clone())));
            }
            match will {
                Some(w) if w.delay.is_zero() => publish_now = Some(w.publish_at(now)),
                Some(mut w) => {
                    let due = now + w.delay;
                    w.due = Some(due);
                    entry.will = Some(w);
                    state.timers.push(Reverse((due, client.client_id.clone())));
                }
                None => {}
            }
            drop(guard);
        }
        self.release_holds(&mut holds);
        if let Some(w) = publish_now {
            self.publish_message(w, false, now);
        }
    }

    /// Fires what is due at `now`: delayed wills, and expiry of offline sessions (publishing a
    /// delayed will that is still waiting, since the session ends first [MQTT-3.1.3-9]).
    pub fn tick(&self, now: Instant) {
        self.check_holds(now);
        self.wake_due(now);
        loop {
            let mut state = self.state.borrow_mut();
            let Some(Reverse((due, _))) = state.timers.peek() else {
                return;
            };
            if *due > now {
                return;
            }
            let Some(Reverse((_, client_id))) = state.timers.pop() else {
                return;
            };
            let Some(entry) = state.sessions.get_mut(&client_id) else {
                continue;
            };
            if entry.conn.is_some() || entry.parked.is_some() {
                continue; // reconnected since: timers are void
            }
            let expired = entry.expires_at.is_some_and(|t| t <= now);
            let will_due = entry
                .will
                .as_ref()
                .is_some_and(|w| w.due.is_some_and(|t| t <= now));
            let will = if expired || will_due {
                entry.will.take().map(|w| w.publish_at(now))
            } else {
                None
            };
            let ended = if expired {
                state.sessions.remove(&client_id)
            } else {
                None
            };
            drop(state);
            if let Some(w) = will {
                self.publish_message(w, false, now);
            }
            if let Some(e) = ended {
                self.end_session(e.session);
            }
        }
    }
}
