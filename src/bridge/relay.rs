//! What a bridge does with each packet, pure (no I/O, no clock): it stands between two MQTT
//! connections — to this broker (`Side::Local`) and to the remote broker (`Side::Remote`) — and
//! relays each application message from the side it came from (the *source*) to the other (the
//! *sink*), under the other side's topic.
//!
//! Acknowledgements are relayed too, so that nothing is lost between the two brokers: a QoS 1
//! message is acknowledged to its source (PUBACK) only once the sink acknowledged it, and a QoS 2
//! message is received from its source (PUBREC) only once the sink received it (its PUBREC).
//! Until then the source still holds the message and sends it again after a reconnection. Each
//! direction keeps its own packet ids toward its sink.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::conf::TopicRule;
use crate::protocol::{MqttString, Packet, PacketId, Publish, PublishAck, QoS, TopicName};

/// One of the bridge's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// A message forwarded to a sink and not yet acknowledged there.
#[derive(Debug, Clone, Copy)]
struct Forwarded {
    /// The source's packet id.
    source: PacketId,
    qos: QoS,
}

/// One direction: messages from one side (its source) to the other (its sink).
#[derive(Debug)]
struct Direction {
    /// By the sink's packet id.
    inflight: HashMap<u16, Forwarded>,
    /// The source's ids forwarded and not yet acknowledged to it (a resent DUP is not
    /// forwarded twice).
    from_source: HashSet<u16>,
    /// QoS 2: the source's ids acknowledged with PUBREC, waiting for its PUBREL.
    received: HashSet<u16>,
    /// QoS 2: the sink's ids we sent PUBREL for, waiting for PUBCOMP.
    releasing: HashSet<u16>,
    next_id: u16,
}

impl Direction {
    fn new() -> Self {
        Self {
            inflight: HashMap::new(),
            from_source: HashSet::new(),
            received: HashSet::new(),
            releasing: HashSet::new(),
            next_id: 0,
        }
    }

    /// A packet id toward the sink that is free in this direction.
    fn allocate(&mut self) -> PacketId {
        // The source's window (at most 65,535 in flight) leaves an id free; the bound only
        // keeps a broken peer from spinning this loop forever.
        for _ in 0..=u16::MAX {
            self.next_id = self.next_id.wrapping_add(1);
            let id = self.next_id;
            if id != 0
                && id != u16::MAX
                && !self.inflight.contains_key(&id)
                && !self.releasing.contains(&id)
            {
                return PacketId::new(id).unwrap_or(PacketId(std::num::NonZeroU16::MIN));
            }
        }
        PacketId(std::num::NonZeroU16::MIN)
    }
}

/// Messages relayed each way (the bridge's metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    pub sent_out: u64,
    pub received_in: u64,
}

/// Both directions of one bridge connection.
pub struct Relay {
    rules: Vec<TopicRule>,
    /// Clears the retain flag of what goes out (`bridge_outgoing_retain false`).
    outgoing_retain: bool,
    outward: Direction,
    inward: Direction,
    pub stats: RelayStats,
}

/// A packet to send, and where.
pub type Send = (Side, Packet);

impl Relay {
    pub fn new(rules: Vec<TopicRule>, outgoing_retain: bool) -> Self {
        Self {
            rules,
            outgoing_retain,
            outward: Direction::new(),
            inward: Direction::new(),
            stats: RelayStats::default(),
        }
    }

    /// Forgets every exchange in flight: both connections are new. Their sources send again
    /// what was not acknowledged (persistent sessions), marked DUP.
    pub fn reset(&mut self) {
        // What each sink received and we were releasing (QoS 2 after its PUBREC) is the sink's
        // to finish: kept for `resume`, which sends the PUBRELs again.
        let out = std::mem::take(&mut self.outward.releasing);
        let inw = std::mem::take(&mut self.inward.releasing);
        self.outward = Direction::new();
        self.inward = Direction::new();
        self.outward.releasing = out;
        self.inward.releasing = inw;
    }

    /// A connection to `sink` is up again: with its session kept (`session_present`), the
    /// QoS 2 messages it received and we had not finished releasing get their PUBREL again
    /// [MQTT-4.4.0-1], so their packet ids do not stay taken there; without it they are gone.
    pub fn resume(&mut self, sink: Side, session_present: bool, out: &mut Vec<Send>) {
        let d = self.direction(sink.other());
        let ids = std::mem::take(&mut d.releasing);
        if !session_present {
            return;
        }
        for id in ids {
            if let Some(id) = PacketId::new(id) {
                d.releasing.insert(id.get());
                out.push((sink, Packet::PubRel(PublishAck::new(id))));
            }
        }
    }

    /// Whether nothing is waiting for an acknowledgement.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        [&self.outward, &self.inward]
            .iter()
            .all(|d| d.inflight.is_empty() && d.received.is_empty() && d.releasing.is_empty())
    }

    fn direction(&mut self, source: Side) -> &mut Direction {
        match source {
            Side::Local => &mut self.outward,
            Side::Remote => &mut self.inward,
        }
    }

    /// A packet arrived on `from`; what to send in answer (on either side). Packets the relay
    /// does not handle (CONNACK, SUBACK, PINGRESP, …) give nothing: the link handles them.
    pub fn on_packet(&mut self, from: Side, packet: Packet, out: &mut Vec<Send>) {
        match packet {
            Packet::Publish(p) => self.on_publish(from, p, out),
            // Acknowledgements of what we sent `from` as its sink: the direction whose source is
            // the other side.
            Packet::PubAck(a) => self.on_sink_ack(from.other(), a, out),
            Packet::PubRec(a) => self.on_sink_rec(from.other(), a, out),
            Packet::PubComp(a) => {
                self.direction(from.other())
                    .releasing
                    .remove(&a.packet_id.get());
            }
            // The source releases a QoS 2 message we received from it.
            Packet::PubRel(a) => {
                self.direction(from).received.remove(&a.packet_id.get());
                out.push((from, Packet::PubComp(PublishAck::new(a.packet_id))));
            }
            _ => {}
        }
    }

    fn on_publish(&mut self, from: Side, mut p: Publish, out: &mut Vec<Send>) {
        let Some(topic) = self.map_topic(from, p.topic.as_str()) else {
            // Not under any rule for this direction (an overlapping subscription of the
            // remote's own making): acknowledged and not forwarded.
            ack_source(from, &p, out);
            return;
        };
        let outgoing_retain = self.outgoing_retain;
        match from {
            Side::Local => self.stats.sent_out += 1,
            Side::Remote => self.stats.received_in += 1,
        }
        let d = self.direction(from);
        if let Some(id) = p.packet_id {
            if d.from_source.contains(&id.get()) {
                // A resend of what is still on its way to the sink.
                return;
            }
            if p.qos == QoS::ExactlyOnce && d.received.contains(&id.get()) {
                // Received already (we sent PUBREC): say so again.
                out.push((from, Packet::PubRec(PublishAck::new(id))));
                return;
            }
        }
        p.topic = topic;
        p.dup = false;
        p.properties.topic_alias = None;
        p.properties.subscription_identifiers.clear();
        if from == Side::Local && !outgoing_retain {
            p.retain = false;
        }
        let to = from.other();
        match p.packet_id {
            None => out.push((to, Packet::Publish(p))),
            Some(source) => {
                let sink = d.allocate();
                d.inflight
                    .insert(sink.get(), Forwarded { source, qos: p.qos });
                d.from_source.insert(source.get());
                p.packet_id = Some(sink);
                out.push((to, Packet::Publish(p)));
            }
        }
    }

    /// PUBACK from the sink of `source`'s direction.
    /// A refusal (MQTT 5 reason code 0x80 or above) is acknowledged to the source all the same.
    fn on_sink_ack(&mut self, source: Side, a: PublishAck, out: &mut Vec<Send>) {
        let d = self.direction(source);
        let Some(f) = d.inflight.remove(&a.packet_id.get()) else {
            return;
        };
        d.from_source.remove(&f.source.get());
        out.push((source, Packet::PubAck(PublishAck::new(f.source))));
    }

    /// PUBREC from the sink of `source`'s direction: the sink has the message; release it there
    /// and tell the source it is received.
    fn on_sink_rec(&mut self, source: Side, a: PublishAck, out: &mut Vec<Send>) {
        let refused = a.reason_code.is_error();
        let d = self.direction(source);
        let Some(f) = d.inflight.remove(&a.packet_id.get()) else {
            // A PUBREC for an exchange we no longer know (a reconnection in between): release
            // it so the sink can let go of it [MQTT-4.3.3].
            out.push((source.other(), Packet::PubRel(PublishAck::new(a.packet_id))));
            return;
        };
        d.from_source.remove(&f.source.get());
        // A refused one (0x80 or above) ends there: nothing to release.
        if !refused {
            d.releasing.insert(a.packet_id.get());
            out.push((source.other(), Packet::PubRel(PublishAck::new(a.packet_id))));
        }
        let d = self.direction(source);
        match f.qos {
            QoS::ExactlyOnce => {
                d.received.insert(f.source.get());
                out.push((source, Packet::PubRec(PublishAck::new(f.source))));
            }
            _ => out.push((source, Packet::PubAck(PublishAck::new(f.source)))),
        }
    }

    /// The topic a message from `from` takes on the other side: the first rule of that
    /// direction whose prefix and pattern it is under.
    fn map_topic(&self, from: Side, topic: &str) -> Option<TopicName> {
        for rule in &self.rules {
            let (applies, from_prefix, to_prefix) = match from {
                Side::Local => (
                    rule.direction.outward(),
                    &rule.local_prefix,
                    &rule.remote_prefix,
                ),
                Side::Remote => (
                    rule.direction.inward(),
                    &rule.remote_prefix,
                    &rule.local_prefix,
                ),
            };
            if !applies {
                continue;
            }
            let Some(rest) = topic.strip_prefix(from_prefix.as_str()) else {
                continue;
            };
            let under = if rule.pattern.is_empty() {
                rest.is_empty()
            } else {
                filter_matches(&rule.pattern, rest)
            };
            if !under {
                continue;
            }
            let mapped = format!("{to_prefix}{rest}");
            if let Ok(t) = MqttString::from_bytes(Bytes::from(mapped)).and_then(TopicName::new) {
                return Some(t);
            }
        }
        None
    }
}

/// Acknowledges a message that is not forwarded.
fn ack_source(from: Side, p: &Publish, out: &mut Vec<Send>) {
    let Some(id) = p.packet_id else { return };
    let ack = PublishAck::new(id);
    out.push((
        from,
        match p.qos {
            QoS::ExactlyOnce => Packet::PubRec(ack),
            _ => Packet::PubAck(ack),
        },
    ));
}

/// Whether `topic` is under `filter` (`+` one level, `#` the rest, the parent included).
fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::conf::Direction as Way;

    fn rule(pattern: &str, direction: Way, local: &str, remote: &str) -> TopicRule {
        TopicRule {
            pattern: pattern.into(),
            direction,
            qos: QoS::ExactlyOnce,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    fn publish(topic: &str, qos: QoS, id: u16) -> Packet {
        let mut p = Publish::new(
            TopicName::new(MqttString::copy_from(topic).unwrap()).unwrap(),
            Bytes::from_static(b"m"),
        );
        p.qos = qos;
        p.packet_id = PacketId::new(id);
        Packet::Publish(p)
    }

    fn ack(id: u16) -> PublishAck {
        PublishAck::new(PacketId::new(id).unwrap())
    }

    #[test]
    fn topics_map_by_prefix_and_direction() {
        let relay = Relay::new(
            vec![
                rule("sensors/#", Way::Out, "site/", "cloud/"),
                rule("cmd/+", Way::In, "", "cloud/"),
                rule("", Way::Both, "here/state", "there/state"),
            ],
            true,
        );
        let map = |from, t: &str| relay.map_topic(from, t).map(|t| t.as_str().to_string());
        assert_eq!(
            map(Side::Local, "site/sensors/a/b").as_deref(),
            Some("cloud/sensors/a/b")
        );
        assert_eq!(
            map(Side::Local, "site/sensors").as_deref(),
            Some("cloud/sensors")
        );
        assert_eq!(map(Side::Remote, "cloud/sensors/a"), None, "out only");
        assert_eq!(map(Side::Remote, "cloud/cmd/x").as_deref(), Some("cmd/x"));
        assert_eq!(map(Side::Remote, "cloud/cmd/x/y"), None);
        assert_eq!(
            map(Side::Local, "here/state").as_deref(),
            Some("there/state")
        );
        assert_eq!(
            map(Side::Remote, "there/state").as_deref(),
            Some("here/state")
        );
        assert_eq!(map(Side::Local, "here/state/x"), None);
    }

    #[test]
    fn qos1_is_acknowledged_to_its_source_only_after_the_sink_has_it() {
        let mut relay = Relay::new(vec![rule("#", Way::Both, "", "")], true);
        let mut out = Vec::new();
        relay.on_packet(Side::Local, publish("a", QoS::AtLeastOnce, 7), &mut out);
        let [(Side::Remote, Packet::Publish(p))] = &out[..] else {
            panic!("{out:?}")
        };
        let sink = p.packet_id.unwrap().get();
        out.clear();
        // A resend (DUP) while the first is on its way is not forwarded again.
        relay.on_packet(Side::Local, publish("a", QoS::AtLeastOnce, 7), &mut out);
        assert!(out.is_empty(), "{out:?}");
        relay.on_packet(Side::Remote, Packet::PubAck(ack(sink)), &mut out);
        assert_eq!(out, vec![(Side::Local, Packet::PubAck(ack(7)))]);
        assert!(relay.is_idle());
    }

    #[test]
    fn qos2_is_received_from_its_source_once_the_sink_received_it() {
        let mut relay = Relay::new(vec![rule("#", Way::Both, "", "")], true);
        let mut out = Vec::new();
        relay.on_packet(Side::Remote, publish("a", QoS::ExactlyOnce, 3), &mut out);
        let [(Side::Local, Packet::Publish(p))] = &out[..] else {
            panic!("{out:?}")
        };
        let sink = p.packet_id.unwrap().get();
        out.clear();
        relay.on_packet(Side::Local, Packet::PubRec(ack(sink)), &mut out);
        assert_eq!(
            out,
            vec![
                (Side::Local, Packet::PubRel(ack(sink))),
                (Side::Remote, Packet::PubRec(ack(3))),
            ]
        );
        out.clear();
        // The source resends before its PUBREL: only PUBREC again, no second copy.
        relay.on_packet(Side::Remote, publish("a", QoS::ExactlyOnce, 3), &mut out);
        assert_eq!(out, vec![(Side::Remote, Packet::PubRec(ack(3)))]);
        out.clear();
        relay.on_packet(Side::Remote, Packet::PubRel(ack(3)), &mut out);
        assert_eq!(out, vec![(Side::Remote, Packet::PubComp(ack(3)))]);
        out.clear();
        relay.on_packet(Side::Local, Packet::PubComp(ack(sink)), &mut out);
        assert!(out.is_empty() && relay.is_idle());
    }

    #[test]
    fn qos2_releases_left_at_a_reconnection_are_sent_again_to_a_kept_session() {
        let mut relay = Relay::new(vec![rule("#", Way::Both, "", "")], true);
        let mut out = Vec::new();
        relay.on_packet(Side::Local, publish("a", QoS::ExactlyOnce, 9), &mut out);
        let [(Side::Remote, Packet::Publish(p))] = &out[..] else {
            panic!("{out:?}")
        };
        let sink = p.packet_id.unwrap().get();
        out.clear();
        relay.on_packet(Side::Remote, Packet::PubRec(ack(sink)), &mut out);
        out.clear();
        // The link drops before the remote's PUBCOMP.
        relay.reset();
        relay.resume(Side::Remote, true, &mut out);
        assert_eq!(out, vec![(Side::Remote, Packet::PubRel(ack(sink)))]);
        out.clear();
        // A new message does not take the id the remote still holds.
        relay.on_packet(Side::Local, publish("b", QoS::AtLeastOnce, 10), &mut out);
        let [(Side::Remote, Packet::Publish(p))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_ne!(p.packet_id.unwrap().get(), sink);
        out.clear();
        relay.on_packet(Side::Remote, Packet::PubComp(ack(sink)), &mut out);
        // A remote that kept no session knows nothing to release.
        relay.reset();
        relay.resume(Side::Remote, false, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn outgoing_retain_false_clears_the_flag_going_out_only() {
        let mut relay = Relay::new(vec![rule("#", Way::Both, "", "")], false);
        let mut out = Vec::new();
        for from in [Side::Local, Side::Remote] {
            let Packet::Publish(mut p) = publish("a", QoS::AtMostOnce, 0) else {
                unreachable!()
            };
            p.retain = true;
            relay.on_packet(from, Packet::Publish(p), &mut out);
        }
        let retained: Vec<_> = out
            .iter()
            .map(|(to, p)| match p {
                Packet::Publish(p) => (*to, p.retain),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(retained, vec![(Side::Remote, false), (Side::Local, true)]);
    }
}
