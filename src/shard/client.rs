//! What a connected client's packets do, on its home shard: CONNECT (session creation, resumption
//! and takeover), PUBLISH and its acknowledgements in both directions, SUBSCRIBE / UNSUBSCRIBE,
//! PINGREQ, DISCONNECT, and the end of a connection (wills, clean sessions).
//!
//! No sockets here: replies go into the connection's `Outbox`; the caller (`net`) reads frames,
//! awaits any `Deferred` barrier, and closes the socket on a `Violation`.

use std::num::NonZeroU32;
use std::rc::Rc;

use super::barrier::Wait;
use super::{Entry, Outbox, Shard};
use crate::protocol::{
    ConnAck, ConnAckProperties, Connect, Disconnect, MqttString, Packet, ProtocolVersion,
    PublishAck, QoS, ReasonCode, SubAck, TopicFilter,
};
use crate::session::{Limits, Message, Resend, Session};

/// One connected client, owned by its connection task on the home shard.
pub struct Client {
    pub client_id: MqttString,
    pub version: ProtocolVersion,
    pub conn: Rc<Outbox>,
    /// Effective keep alive in seconds (0 = none).
    pub keep_alive: u16,
}

/// Why a connection must end. For MQTT 5 the reason code goes out in a DISCONNECT first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub reason: ReasonCode,
    pub what: &'static str,
}

impl Violation {
    fn protocol(what: &'static str) -> Self {
        Self {
            reason: ReasonCode::PROTOCOL_ERROR,
            what,
        }
    }
}

/// Replies that must wait for a barrier (other shards confirming a change) before they are
/// sent, in order: `then`, followed by the retained messages matching `retained` (read when the
/// wait is over; see `Shard::send_retained`).
pub struct Deferred {
    pub waits: Vec<Wait>,
    pub then: Vec<Packet>,
    pub retained: Vec<(TopicFilter, QoS)>,
}

/// Result of checking a CONNECT on the shard that accepted the connection.
pub enum ConnectOutcome {
    /// Proceed on the client id's home shard; `assigned` when the server chose the id.
    Accept { assigned: bool },
    /// Refused: send this CONNACK and close.
    Refuse(Box<ConnAck>),
}

fn refuse(code: ReasonCode) -> ConnectOutcome {
    ConnectOutcome::Refuse(Box::new(ConnAck {
        session_present: false,
        reason_code: code,
        properties: ConnAckProperties::default(),
    }))
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
        // Enhanced authentication is not configured: [MQTT-4.12.0-1] Bad authentication method.
        if connect.properties.authentication_method.is_some() {
            return refuse(ReasonCode::BAD_AUTHENTICATION_METHOD);
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
    pub fn handle_connect(&self, connect: Connect, assigned: bool, conn: Rc<Outbox>) -> Client {
        let v = connect.protocol;
        let persistent = if v.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !connect.clean_start
        };
        let window = match connect.properties.receive_maximum {
            Some(rm) => (self.config.max_inflight).min(rm.get()),
            None => self.config.max_inflight,
        };
        let will = connect.will.map(|w| {
            Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: w.properties.message,
            }
            // The will lives as long as the connection: do not pin the CONNECT's read chunk.
            .detached()
        });
        let client_id = connect.client_id;

        let mut takeover_will = None;
        let mut dropped_session = None;
        let mut state = self.state.borrow_mut();
        state.conns.insert(conn.id, conn.clone());
        let existing = state.sessions.remove(&client_id);
        let mut entry = match existing {
            Some(mut old) => {
                if let Some(old_conn) = old.conn.take() {
                    if old_conn.version.is_v5() {
                        old_conn.send(&Packet::Disconnect(Disconnect::new(
                            ReasonCode::SESSION_TAKEN_OVER,
                        )));
                    }
                    old_conn.close();
                    state.conns.remove(&old_conn.id);
                    // [MQTT-3.1.4-3] the old connection ends without DISCONNECT: its will goes out.
                    takeover_will = old.will.take();
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
        let mut e = entry.take().unwrap_or_else(|| Entry {
            session: Session::new(client_id.clone(), v, !persistent, limits),
            conn: None,
            will: None,
        });
        e.session.version = v;
        e.session.clean = !persistent;
        e.session.set_max_inflight(window as usize);
        e.conn = Some(conn.clone());
        e.will = will;

        let mut properties = ConnAckProperties::default();
        let mut keep_alive = connect.keep_alive;
        if v.is_v5() {
            if assigned {
                properties.assigned_client_identifier = Some(client_id.clone());
            }
            properties.maximum_packet_size = NonZeroU32::new(self.config.max_packet_size);
            // Not yet supported; advertised so clients do not try [MQTT-3.2.2-?].
            properties.shared_subscription_available = Some(false);
            properties.subscription_identifiers_available = Some(false);
            properties.topic_alias_maximum = None;
            if keep_alive > self.config.max_keepalive || keep_alive == 0 {
                // [MQTT-3.2.2-21] the client must use the server's keep alive.
                if keep_alive > self.config.max_keepalive || self.config.max_keepalive < 65535 {
                    keep_alive = self.config.max_keepalive;
                    properties.server_keep_alive = Some(keep_alive);
                }
            }
        }
        // [MQTT-3.2.0-1] CONNACK is the first packet the server sends.
        conn.send(&Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties,
        })));
        for r in e.session.resume() {
            conn.send(&match r {
                Resend::Publish(p) => Packet::Publish(p),
                Resend::PubRel(id) => Packet::PubRel(PublishAck::new(id)),
            });
        }
        state.sessions.insert(client_id.clone(), e);
        drop(state);

        if let Some(old) = dropped_session {
            self.drop_session_subscriptions(&old);
        }
        if let Some(w) = takeover_will {
            self.publish_message(w, false);
        }
        Client {
            client_id,
            version: v,
            conn,
            keep_alive,
        }
    }

    /// Publishes a message from a client or a will: updates the retained index when the retain
    /// flag is set, and routes it to subscribers with retain cleared [MQTT-3.3.1-9]. Returns the
    /// retained barrier when `wait` (QoS 1/2 acknowledgements wait for it).
    fn publish_message(&self, mut message: Message, wait: bool) -> Option<Wait> {
        let barrier = if message.retain {
            self.update_retained(message.detached(), wait)
        } else {
            None
        };
        message.retain = false;
        self.route(&message);
        barrier
    }

    /// Handles one packet from a connected client.
    pub fn handle_packet(
        &self,
        client: &mut Client,
        packet: Packet,
    ) -> Result<Option<Deferred>, Violation> {
        let v5 = client.version.is_v5();
        match packet {
            Packet::Publish(p) => {
                if v5 && p.properties.topic_alias.is_some() {
                    // coremq advertises Topic Alias Maximum 0 [MQTT-3.3.2-9].
                    return Err(Violation {
                        reason: ReasonCode::TOPIC_ALIAS_INVALID,
                        what: "topic alias above the Topic Alias Maximum",
                    });
                }
                if !p.properties.subscription_identifiers.is_empty() {
                    return Err(Violation::protocol(
                        "[MQTT-3.3.4-6] PUBLISH from a client with a Subscription Identifier",
                    ));
                }
                let qos = p.qos;
                let id = p.packet_id;
                let message = Message::from_publish(p);
                match (qos, id) {
                    (QoS::AtMostOnce, _) => {
                        self.publish_message(message, false);
                        Ok(None)
                    }
                    (QoS::AtLeastOnce, Some(id)) => {
                        let wait = self.publish_message(message, true);
                        Ok(self.reply(client, wait, Packet::PubAck(PublishAck::new(id))))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        let fresh = self
                            .with_session(client, |s| s.handle_incoming_qos2(id))
                            .unwrap_or(false);
                        // [MQTT-4.3.3-?] a resend before PUBREL is acknowledged, not delivered.
                        let wait = if fresh {
                            self.publish_message(message, true)
                        } else {
                            None
                        };
                        Ok(self.reply(client, wait, Packet::PubRec(PublishAck::new(id))))
                    }
                    _ => Err(Violation::protocol("QoS 1/2 PUBLISH without packet id")),
                }
            }
            Packet::PubAck(a) => {
                self.with_session(client, |s| s.handle_puback(a.packet_id));
                self.drain(client);
                Ok(None)
            }
            Packet::PubRec(a) => {
                let known = self
                    .with_session(client, |s| s.handle_pubrec(a.packet_id))
                    .unwrap_or(false);
                let mut rel = PublishAck::new(a.packet_id);
                if !known && v5 {
                    rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                // A PUBREC with an error code ends the QoS 2 flow with no PUBREL (MQTT 5).
                if a.reason_code.is_error() {
                    self.with_session(client, |s| s.handle_pubcomp(a.packet_id));
                    self.drain(client);
                } else {
                    client.conn.send(&Packet::PubRel(rel));
                }
                Ok(None)
            }
            Packet::PubRel(a) => {
                let known = self
                    .with_session(client, |s| s.handle_pubrel(a.packet_id))
                    .unwrap_or(false);
                let mut comp = PublishAck::new(a.packet_id);
                if !known && v5 {
                    comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                client.conn.send(&Packet::PubComp(comp));
                Ok(None)
            }
            Packet::PubComp(a) => {
                self.with_session(client, |s| s.handle_pubcomp(a.packet_id));
                self.drain(client);
                Ok(None)
            }
            Packet::Subscribe(s) => Ok(self.handle_subscribe(client, s)),
            Packet::Unsubscribe(u) => {
                let mut codes = Vec::with_capacity(u.filters.len());
                for filter in &u.filters {
                    let existed = self
                        .with_session(client, |s| {
                            s.subscriptions.remove(filter.as_mqtt_str()).is_some()
                        })
                        .unwrap_or(false);
                    if existed {
                        self.remove_subscriber(filter.as_mqtt_str(), &client.client_id);
                        codes.push(ReasonCode::SUCCESS);
                    } else {
                        codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
                    }
                }
                client.conn.send(&Packet::UnsubAck(SubAck {
                    packet_id: u.packet_id,
                    properties: Default::default(),
                    reason_codes: if v5 { codes } else { Vec::new() },
                }));
                Ok(None)
            }
            Packet::PingReq => {
                client.conn.send(&Packet::PingResp);
                Ok(None)
            }
            Packet::Disconnect(d) => {
                // [MQTT-3.14.4-3] a DISCONNECT discards the will — except MQTT 5's reason 0x04.
                let will = self.take_will(client);
                if d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
                    if let Some(w) = will {
                        self.publish_message(w, false);
                    }
                }
                client.conn.close();
                Ok(None)
            }
            Packet::Connect(_) => Err(Violation::protocol("[MQTT-3.1.0-2] a second CONNECT")),
            Packet::Auth(_) => Err(Violation::protocol(
                "[MQTT-4.12.0-?] AUTH without an authentication method",
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => Err(
                Violation::protocol("a server-to-client packet from a client"),
            ),
        }
    }

    fn handle_subscribe(
        &self,
        client: &mut Client,
        s: crate::protocol::Subscribe,
    ) -> Option<Deferred> {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut waits = Vec::new();
        let mut retained = Vec::new();
        for (filter, options) in &s.filters {
            if filter.is_shared() {
                // Shared subscriptions arrive with the MQTT 5 feature work.
                codes.push(if client.version.is_v5() {
                    ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let granted = options.qos;
            let key = filter.as_mqtt_str();
            self.with_session(client, |sess| {
                sess.subscriptions.insert(key.clone(), *options)
            });
            if let Some(w) = self.add_subscriber(key, &client.client_id, granted) {
                waits.push(w);
            }
            codes.push(ReasonCode::granted(granted));
            retained.push((filter.clone(), granted));
        }
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reason_codes: codes,
        });
        if waits.is_empty() {
            client.conn.send(&suback);
            self.send_retained(client, &retained);
            None
        } else {
            Some(Deferred {
                waits,
                then: vec![suback],
                retained,
            })
        }
    }

    /// Sends the retained messages matching each (filter, granted QoS), with the retain flag set
    /// [MQTT-3.3.1-6] [MQTT-3.8.4-3] — on every subscribe, after its SUBACK. They are read from
    /// the local replica at this moment, so none is older than what the barrier made visible.
    pub fn send_retained(&self, client: &Client, filters: &[(TopicFilter, QoS)]) {
        for (filter, granted) in filters {
            for m in self.retained_matching(filter.filter()) {
                if let Some(p) = self
                    .with_session(client, |sess| sess.deliver(&m, *granted, true))
                    .flatten()
                {
                    client.conn.send(&Packet::Publish(p));
                }
            }
        }
    }

    /// Sends `packet` now, or after `wait`.
    fn reply(&self, client: &Client, wait: Option<Wait>, packet: Packet) -> Option<Deferred> {
        match wait {
            Some(w) => Some(Deferred {
                waits: vec![w],
                then: vec![packet],
                retained: Vec::new(),
            }),
            None => {
                client.conn.send(&packet);
                None
            }
        }
    }

    /// Runs `f` on this client's session, if this connection still owns it (a takeover may have
    /// moved it to a newer connection).
    fn with_session<T>(&self, client: &Client, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let mut state = self.state.borrow_mut();
        let entry = state.sessions.get_mut(&client.client_id)?;
        match &entry.conn {
            Some(c) if c.id == client.conn.id => Some(f(&mut entry.session)),
            _ => None,
        }
    }

    /// Sends what the session's window now allows from its queue.
    fn drain(&self, client: &Client) {
        if let Some(out) = self.with_session(client, |s| s.drain_queue()) {
            for p in out {
                client.conn.send(&Packet::Publish(p));
            }
        }
    }

    fn take_will(&self, client: &Client) -> Option<Message> {
        let mut state = self.state.borrow_mut();
        let entry = state.sessions.get_mut(&client.client_id)?;
        match &entry.conn {
            Some(c) if c.id == client.conn.id => entry.will.take(),
            _ => None,
        }
    }

    /// The connection ended. `abnormal` when it ended without DISCONNECT (socket error, keep
    /// alive timeout, protocol violation): the will is published [MQTT-3.1.2-8]. A clean session
    /// ends with its connection [MQTT-3.1.2-6].
    pub fn handle_close(&self, client: &Client, abnormal: bool) {
        let mut state = self.state.borrow_mut();
        state.conns.remove(&client.conn.id);
        let Some(entry) = state.sessions.get_mut(&client.client_id) else {
            return;
        };
        if !matches!(&entry.conn, Some(c) if c.id == client.conn.id) {
            return; // taken over: the newer connection owns the session now
        }
        entry.conn = None;
        let will = entry.will.take();
        let ended = if entry.session.clean {
            state.sessions.remove(&client.client_id)
        } else {
            None
        };
        drop(state);
        if let Some(e) = ended {
            self.drop_session_subscriptions(&e.session);
        }
        if abnormal && !self.is_stopping() {
            if let Some(w) = will {
                self.publish_message(w, false);
            }
        }
    }
}
