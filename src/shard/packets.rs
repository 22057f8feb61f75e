//! What each packet from a connected client does on its home shard: PUBLISH (topic aliases,
//! limits, QoS 1/2 receiver state) and the acknowledgements of deliveries in both directions,
//! SUBSCRIBE (options, identifiers, retained messages) and UNSUBSCRIBE, PINGREQ, DISCONNECT.

use std::time::Instant;

use std::num::NonZeroU32;

use super::barrier::Barrier;
use super::client::{Client, Deferred, RetainedFor, Violation};
use super::filtering::{property_expression, Refusal, Spec};
use super::Shard;
use crate::auth::AuthStep;
use crate::message::{Delivery, Message};
use crate::protocol::{
    AckProperties, Auth, AuthProperties, Disconnect, Packet, PacketId, Publish, PublishAck, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilter, Unsubscribe,
};
use crate::session::Link;

impl Shard {
    /// Handles one packet from a connected client.
    pub fn handle_packet(
        &self,
        client: &mut Client,
        packet: Packet,
    ) -> Result<Option<Deferred>, Violation> {
        let now = Instant::now();
        match packet {
            Packet::Publish(p) => return self.handle_publish(client, p, now),
            Packet::PubAck(a) => {
                self.with_session(client, |s| s.handle_puback(a.packet_id));
                self.drain(client, now);
            }
            Packet::PubRec(a) => self.handle_pubrec(client, a, now),
            Packet::PubRel(a) => self.handle_pubrel(client, a),
            Packet::PubComp(a) => {
                self.with_session(client, |s| s.handle_pubcomp(a.packet_id));
                self.drain(client, now);
            }
            Packet::Subscribe(s) => return Ok(self.handle_subscribe(client, s)),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(client, u),
            Packet::PingReq => {
                client.conn.send(&Packet::PingResp);
            }
            Packet::Disconnect(d) => self.handle_disconnect(client, d, now)?,
            Packet::Connect(_) => {
                return Err(Violation::protocol("[MQTT-3.1.0-2] a second CONNECT"))
            }
            Packet::Auth(a) => return self.handle_reauth(client, a),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(Violation::protocol(
                    "a server-to-client packet from a client",
                ))
            }
        }
        Ok(None)
    }

    /// PUBREC of a QoS 2 delivery: PUBREL (0x92 for an id not in flight, MQTT 5); an error
    /// PUBREC ends the flow instead, with no PUBREL (MQTT 5 §4.3.3).
    fn handle_pubrec(&self, client: &Client, a: PublishAck, now: Instant) {
        let known = self
            .with_session(client, |s| s.handle_pubrec(a.packet_id))
            .unwrap_or(false);
        if a.reason_code.is_error() {
            self.with_session(client, |s| s.handle_pubcomp(a.packet_id));
            self.drain(client, now);
            return;
        }
        let mut rel = PublishAck::new(a.packet_id);
        if !known && client.terms().version.is_v5() {
            rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send_release(&client.conn, Packet::PubRel(rel));
    }

    /// PUBREL of an inbound QoS 2 message: PUBCOMP (0x92 for an unknown id, MQTT 5).
    /// With the store on, PUBCOMP waits until the release of the id is on disk: the client may
    /// reuse the id once it has PUBCOMP, and a crash must not make the broker take its next
    /// message for a duplicate.
    fn handle_pubrel(&self, client: &mut Client, a: PublishAck) {
        let known = self
            .with_session(client, |s| s.handle_pubrel(a.packet_id))
            .unwrap_or(false);
        let mut comp = PublishAck::new(a.packet_id);
        if !known && client.terms().version.is_v5() {
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        let wait = self.sync_wait();
        self.send_ack(client, Packet::PubComp(comp), wait);
    }

    /// UNSUBSCRIBE: one code per filter [MQTT-3.11.3-1], 0x11 when there was no subscription
    /// (MQTT 5; 3.1.1's UNSUBACK has no codes).
    fn handle_unsubscribe(&self, client: &Client, u: Unsubscribe) {
        let mut codes = Vec::with_capacity(u.filters.len());
        // [filter] MQTT 5: the `filter` User Property names the filtered subscriptions to remove.
        let property = property_expression(&u.properties.user_properties);
        for filter in &u.filters {
            let Ok(spec) = Spec::parse_with(filter, &property) else {
                codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            };
            let key = &spec.key;
            let existed = self
                .with_session(client, |s| {
                    self.forget_subscription(s, key);
                    s.subscriptions.remove(key).is_some()
                })
                .unwrap_or(false);
            if !existed {
                codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
                continue;
            }
            self.detach_subscription(key, &client.client_id);
            codes.push(ReasonCode::SUCCESS);
        }
        let v5 = client.terms().version.is_v5();
        client.conn.send(&Packet::UnsubAck(SubAck {
            packet_id: u.packet_id,
            properties: AckProperties::default(),
            reason_codes: if v5 { codes } else { Vec::new() },
        }));
    }

    /// DISCONNECT: may change the Session Expiry Interval; discards the will [MQTT-3.14.4-3] —
    /// except MQTT 5's reason 0x04, which publishes it.
    fn handle_disconnect(
        &self,
        client: &Client,
        d: Disconnect,
        now: Instant,
    ) -> Result<(), Violation> {
        if let Some(secs) = d.properties.session_expiry_interval {
            self.set_session_expiry(client, secs)?;
        }
        let will = self.take_will(client);
        if d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            if let Some(w) = will {
                self.publish_message(w, false, now);
            }
        }
        client.conn.close();
        Ok(())
    }

    fn handle_publish(
        &self,
        client: &mut Client,
        mut p: Publish,
        now: Instant,
    ) -> Result<Option<Deferred>, Violation> {
        self.check_publish(client, &mut p)?;
        let (qos, id) = (p.qos, p.packet_id);
        self.counters().publish_in(qos as u8);
        // [ACL] a denied PUBLISH is not routed: MQTT 5 acknowledges it with 0x87, MQTT 3.1.1
        // (which has no way to say so) acknowledges it normally and drops it, as Mosquitto does.
        // The `$SYS/` tree is the broker's own: no client may publish there, so what a monitor
        // reads under it is always the broker's figures.
        let security = self.security();
        let allowed = !p.topic.is_broker_owned()
            && (!security.checks_deliveries()
                || security.can_publish(
                    client.client_id.as_str(),
                    self.username_of(client).as_deref(),
                    p.topic.as_str(),
                ));
        if !allowed {
            self.counters().denied_publish();
        }
        let message = Message::from_publish(p, client.client_id.clone(), now);
        let Some(id) = id else {
            if allowed {
                self.publish_message(message, false, now);
            }
            return Ok(None);
        };
        let v5 = client.terms().version.is_v5();
        let mut ack = PublishAck::new(id);
        let unstored = allowed && self.store_failed();
        if unstored && !v5 {
            return Err(Violation {
                reason: ReasonCode::UNSPECIFIED_ERROR,
                what: "the store cannot keep QoS 1/2 messages now (see the log)",
            });
        }
        let wait = if !allowed && v5 {
            ack.reason_code = ReasonCode::NOT_AUTHORIZED;
            ack.properties.reason_string = client.diagnostic("not authorized by the ACL");
            None
        } else if unstored {
            // Not acknowledged as kept what cannot be kept: 0x97, and the message is not routed.
            ack.reason_code = ReasonCode::QUOTA_EXCEEDED;
            ack.properties.reason_string =
                client.diagnostic("the broker cannot store messages now");
            None
        } else {
            let (matched, wait) = match qos {
                QoS::ExactlyOnce => {
                    self.receive_qos2(client, id, allowed.then_some(message), now)?
                }
                _ if allowed => self.publish_message(message, true, now),
                _ => (true, None),
            };
            if !matched && v5 {
                // MQTT 5: 0x10 No matching subscribers (the message was accepted all the same). A
                // success code: the short form, no Reason String, as clients expect
                // [MQTT-3.4.2.1].
                ack.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
            }
            wait
        };
        let packet = if qos == QoS::ExactlyOnce {
            Packet::PubRec(ack)
        } else {
            Packet::PubAck(ack)
        };
        if self.acks_wait_for_sync() {
            // In order behind the acknowledgements still waiting for the disk; reading goes on.
            self.send_ack(client, packet, wait);
            return Ok(None);
        }
        Ok(match wait {
            Some(w) => Some(Deferred {
                waits: vec![w],
                then: vec![packet],
                retained: Vec::new(),
            }),
            None => {
                client.conn.send(&packet);
                None
            }
        })
    }

    /// The checks of a client's PUBLISH before it is routed: topic alias, topic limits, no
    /// Subscription Identifier, QoS and retain within what the server announced.
    fn check_publish(&self, client: &mut Client, p: &mut Publish) -> Result<(), Violation> {
        if client.terms().version.is_v5() {
            self.resolve_topic_alias(client, p)?;
        }
        if !self.topic_within_limits(p.topic.as_str()) {
            return Err(Violation {
                reason: ReasonCode::TOPIC_NAME_INVALID,
                what: "topic beyond COREMQ_MAX_TOPIC_LENGTH or COREMQ_MAX_TOPIC_LEVELS",
            });
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Violation::protocol(
                "[MQTT-3.3.4-6] PUBLISH from a client with a Subscription Identifier",
            ));
        }
        // [MQTT-3.2.2-11] a QoS above Maximum QoS: DISCONNECT 0x9B.
        if p.qos as u8 > self.config.max_qos {
            return Err(Violation {
                reason: ReasonCode::QOS_NOT_SUPPORTED,
                what: "[MQTT-3.2.2-11] PUBLISH above Maximum QoS",
            });
        }
        // [MQTT-3.2.2-14] a retained PUBLISH when Retain Available is 0: DISCONNECT 0x9A.
        if p.retain && !self.config.retain_available {
            return Err(Violation {
                reason: ReasonCode::RETAIN_NOT_SUPPORTED,
                what: "[MQTT-3.2.2-14] retained PUBLISH while retain is unavailable",
            });
        }
        Ok(())
    }

    /// An inbound QoS 2 PUBLISH (`message` is `None` when the ACL denied it): routed once, however
    /// often the client resends it before PUBREL [MQTT-4.3.3-9]; more unreleased messages than
    /// Receive Maximum end the connection with 0x93 [MQTT-3.3.4-7].
    fn receive_qos2(
        &self,
        client: &Client,
        id: PacketId,
        message: Option<Message>,
        now: Instant,
    ) -> Result<(bool, Option<Barrier>), Violation> {
        let (unreleased, fresh) = self
            .with_session(client, |s| {
                let unreleased = s.incoming_unreleased();
                (unreleased, s.handle_incoming_qos2(id))
            })
            .unwrap_or((0, false));
        if fresh && unreleased >= usize::from(self.config.receive_maximum) {
            return Err(Violation {
                reason: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                what: "[MQTT-3.3.4-7] Receive Maximum exceeded",
            });
        }
        Ok(match message {
            Some(m) if fresh => self.publish_message(m, true, now),
            // A resent PUBLISH: its PUBREC again, once the id's record is on disk.
            _ => (true, self.sync_wait()),
        })
    }

    /// MQTT 5 topic aliases from the client [MQTT-3.3.2-10..12]: a topic with an alias sets it, an
    /// empty topic with an alias uses it. Aliases above COREMQ_TOPIC_ALIAS_MAXIMUM, or unknown
    /// ones, end the connection with 0x94 / 0x82.
    fn resolve_topic_alias(&self, client: &mut Client, p: &mut Publish) -> Result<(), Violation> {
        let Some(alias) = p.properties.topic_alias.take() else {
            return Ok(());
        };
        let slot = usize::from(alias.get()) - 1;
        if alias.get() > self.config.topic_alias_maximum {
            return Err(Violation {
                reason: ReasonCode::TOPIC_ALIAS_INVALID,
                what: "[MQTT-3.3.2-9] topic alias above the Topic Alias Maximum",
            });
        }
        if p.topic.is_empty() {
            match client.aliases.get(slot).cloned().flatten() {
                Some(topic) => p.topic = topic,
                None => {
                    return Err(Violation::protocol(
                        "MQTT 5 §3.3.2.3.4: PUBLISH with an unknown topic alias and no topic",
                    ))
                }
            }
        } else {
            if client.aliases.len() <= slot {
                client.aliases.resize(slot + 1, None);
            }
            client.aliases[slot] = Some(p.topic.clone());
        }
        Ok(())
    }

    /// Re-authentication [MQTT-4.12.1]: AUTH 0x19 with the CONNECT's method starts it, AUTH 0x18
    /// continues it; the server answers AUTH 0x18 while the authenticator continues, AUTH 0x00
    /// when it succeeds, and DISCONNECT 0x87 when it refuses, when it proves another user than
    /// the one the client is, or when the method is no longer available.
    fn handle_reauth(&self, client: &mut Client, a: Auth) -> Result<Option<Deferred>, Violation> {
        let Some(method) = client.auth_method.clone() else {
            return Err(Violation::protocol(
                "[MQTT-4.12.0-7] AUTH from a client that did not use enhanced authentication",
            ));
        };
        // [MQTT-4.12.1-1] the same method as in CONNECT.
        if a.properties.authentication_method.as_ref() != Some(&method) {
            return Err(Violation::protocol(
                "[MQTT-4.12.1-1] AUTH with another authentication method",
            ));
        }
        if a.reason_code == ReasonCode::RE_AUTHENTICATE {
            // The same authenticator as at CONNECT: the built-in SCRAM method or the hook.
            client.reauth = self
                .authenticator_for(method.as_str())
                .and_then(|auth| auth.start(method.as_str(), client.client_id.as_str()));
        } else if a.reason_code != ReasonCode::CONTINUE_AUTHENTICATION || client.reauth.is_none() {
            return Err(Violation::protocol("AUTH out of sequence"));
        }
        let username = self.username_of(client);
        let Some(exchange) = client.reauth.as_mut() else {
            // 0x8C Bad authentication method is not a DISCONNECT reason code [MQTT-3.14.2.1].
            return Err(Violation {
                reason: ReasonCode::NOT_AUTHORIZED,
                what: "re-authentication failed: the method is no longer available",
            });
        };
        let (code, data) = match exchange.step(a.properties.authentication_data.as_deref()) {
            AuthStep::Continue(d) => (ReasonCode::CONTINUE_AUTHENTICATION, d),
            AuthStep::Success(d) => {
                // A method that names the user must name the same one as at CONNECT.
                let same_user = exchange
                    .authenticated_user()
                    .is_none_or(|u| username.as_deref() == Some(u));
                client.reauth = None;
                if !same_user {
                    return Err(Violation {
                        reason: ReasonCode::NOT_AUTHORIZED,
                        what: "re-authentication proved another user",
                    });
                }
                (ReasonCode::SUCCESS, d)
            }
            AuthStep::Fail => {
                return Err(Violation {
                    reason: ReasonCode::NOT_AUTHORIZED,
                    what: "re-authentication failed",
                })
            }
        };
        client.conn.send(&Packet::Auth(Auth {
            reason_code: code,
            properties: AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                ..AuthProperties::default()
            },
        }));
        Ok(None)
    }

    fn handle_subscribe(&self, client: &mut Client, s: Subscribe) -> Option<Deferred> {
        let v5 = client.terms().version.is_v5();
        let username = self.username_of(client);
        let id = s.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(s.filters.len());
        // Why the first refused filter was refused, for the SUBACK's Reason String.
        let mut why: Option<String> = None;
        let mut waits = Vec::new();
        let mut retained = Vec::new();
        // [filter] MQTT 5: one `filter` User Property applies to every filter of the SUBSCRIBE.
        let property = property_expression(&s.properties.user_properties);
        for (filter, options) in &s.filters {
            let granted = Spec::parse_with(filter, &property).and_then(|spec| {
                self.subscribe_filter(client, &spec, *options, id, username.as_deref())
            });
            match granted {
                Ok(granted) => {
                    codes.push(ReasonCode::granted(granted.qos));
                    waits.extend(granted.wait);
                    retained.extend(granted.retained);
                }
                Err((code, reason)) => {
                    why.get_or_insert(reason);
                    // 3.1.1 has one failure code.
                    codes.push(if v5 {
                        code
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    });
                }
            }
        }
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: AckProperties {
                // Only when a filter was refused: success goes out without properties.
                reason_string: why.and_then(|w| client.diagnostic(&w)),
                user_properties: Vec::new(),
            },
            reason_codes: codes,
        });
        // A durable session's new subscriptions are on disk before SUBACK says so.
        waits.extend(self.sync_wait());
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

    /// One filter of a SUBSCRIBE: granted (at what QoS, with the barrier to wait for and the
    /// retained messages it is owed), or refused with a reason code and why.
    fn subscribe_filter(
        &self,
        client: &Client,
        spec: &Spec,
        mut options: SubscriptionOptions,
        id: Option<NonZeroU32>,
        username: Option<&str>,
    ) -> Result<Granted, Refusal> {
        // Subscriptions live long: copy the filter out of the SUBSCRIBE's read buffer.
        let filter = &spec.topic;
        let filter = &TopicFilter::copy_from(filter.as_str()).unwrap_or_else(|_| filter.clone());
        // The session's key: the filter itself (one allocation for both) unless it has an
        // expression (then `$filter/…`, already a copy).
        let key = &match spec.expression {
            None => filter.as_mqtt_str().clone(),
            Some(_) => spec.key.clone(),
        };
        if !self.topic_within_limits(filter.filter()) {
            return Err((
                ReasonCode::TOPIC_FILTER_INVALID,
                "filter beyond COREMQ_MAX_TOPIC_LENGTH or COREMQ_MAX_TOPIC_LEVELS".into(),
            ));
        }
        let over_quota = self
            .with_session(client, |sess| {
                sess.subscriptions.len() >= self.config.max_subscriptions
                    && !sess.subscriptions.contains_key(key)
            })
            .unwrap_or(false);
        if over_quota {
            // COREMQ_MAX_SUBSCRIPTIONS: 0x97 Quota exceeded for this filter.
            return Err((
                ReasonCode::QUOTA_EXCEEDED,
                "COREMQ_MAX_SUBSCRIPTIONS reached".into(),
            ));
        }
        let security = self.security();
        // [ACL] first, on the topic filter proper: a content filter never widens what a client
        // may read.
        if !security.may_subscribe(client.client_id.as_str(), username, filter.filter()) {
            // [ACL] 0x87 Not authorized (MQTT 5) / 0x80 failure (3.1.1) for this filter.
            return Err((
                ReasonCode::NOT_AUTHORIZED,
                "not authorized by the ACL".into(),
            ));
        }
        let content = self.compile_filter(spec)?;
        // [MQTT-3.2.2-9] grant at most the server's Maximum QoS.
        options.qos = options.qos.min(max_qos(self.config.max_qos));
        let held = self.with_session(client, |sess| {
            sess.subscriptions.insert(key.clone(), (options, id));
            self.keep_subscription(sess, key, options, id);
        });
        if held.is_none() {
            // The session was taken over by another connection: no session would hold this
            // subscription, so it must not enter the trie (nothing would ever remove it).
            return Err((
                ReasonCode::UNSPECIFIED_ERROR,
                "the session was taken over".into(),
            ));
        }
        if filter.is_shared() {
            // [MQTT-4.8.2] one member of the group gets each message; retained messages are not
            // sent to shared subscriptions.
            let wait = self.add_shared_member(filter, &client.client_id, options, id, content);
            return Ok(Granted {
                qos: options.qos,
                wait,
                retained: None,
            });
        }
        let (existed, wait) = self.add_subscriber(
            filter.as_mqtt_str(),
            &client.client_id,
            options,
            id,
            content.clone(),
        );
        // [MQTT-3.3.1-9..11] Retain Handling: 0 always, 1 only for a new subscription, 2 never.
        let send = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        };
        Ok(Granted {
            qos: options.qos,
            wait,
            retained: send.then(|| RetainedFor {
                filter: filter.clone(),
                qos: options.qos,
                id,
                content,
            }),
        })
    }

    /// Sends the retained messages matching each subscription, with the retain flag set
    /// [MQTT-3.3.1-6] [MQTT-3.3.1-8], after its SUBACK. They are read from the local replica at
    /// this moment, so none is older than what the barrier made visible.
    pub fn send_retained(&self, client: &Client, subs: &[RetainedFor]) {
        let now = Instant::now();
        let security = self.security();
        let username = self.username_of(client);
        for sub in subs {
            for m in self.retained_matching(sub.filter.filter(), now) {
                if !security.can_receive(
                    client.client_id.as_str(),
                    username.as_deref(),
                    m.topic.as_str(),
                ) {
                    continue;
                }
                // [filter] retained messages pass the subscription's content filter too.
                if let Some(f) = &sub.content {
                    if !self.evaluate(f, &self.subject(&m)) {
                        continue;
                    }
                }
                let delivery = Delivery {
                    qos: m.qos.min(sub.qos),
                    retain: true,
                    subscription_ids: sub.id.into_iter().collect(),
                    group: None,
                };
                if let Some(p) = self
                    .with_session(client, |sess| sess.deliver(&m, delivery, Link::Online, now))
                    .flatten()
                {
                    self.send_delivery(&client.conn, p);
                }
            }
        }
    }

    /// COREMQ_MAX_TOPIC_LENGTH and COREMQ_MAX_TOPIC_LEVELS.
    pub(super) fn topic_within_limits(&self, topic: &str) -> bool {
        topic.len() <= self.config.max_topic_length
            && topic.split('/').count() <= self.config.max_topic_levels
    }

    /// Sends what the session's window now allows from its queue.
    fn drain(&self, client: &Client, now: Instant) {
        self.drain_session(&client.client_id, client.conn.id, now);
    }
}

/// A filter granted by SUBSCRIBE.
struct Granted {
    qos: QoS,
    /// The barrier the SUBACK waits for (other shards learning of a new filter or group).
    wait: Option<Barrier>,
    /// The retained messages the subscription is owed, if any.
    retained: Option<RetainedFor>,
}

fn max_qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
