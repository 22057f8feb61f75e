//! Helpers for the MQTT 5-only cases (`s3_01_session_expiry`, `s3_02_connack`,
//! `s3_03_topic_alias`, `s3_03_message_expiry`, `s3_03_receive_maximum`,
//! `s3_08_subscription_options`, and the will delay in `s3_01_will`).
//!
//! In those cases subscribers, watchers and sessions are homed on shard 0, publishers and wills
//! on shard 1, so every delivery crosses the mesh. Intervals are 1–2 s; a case sleeps well past
//! them and asserts what happened (or, with a marker published last, what did not), never how
//! long it took. Every server DISCONNECT is checked for its reason code and a reason string
//! (`expect_disconnect`).

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use coremq::protocol::{
    ConnAck, Connect, Packet, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName,
};

use crate::common::{hex, RawClient, TestBroker};
use crate::{connect, connect_packet, packet_id, subscribe, topic_name, will};

pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

/// A clean MQTT 5 CONNECT for `id` (no Session Expiry Interval: the session ends with the
/// connection), adjusted by `tweak`.
pub(crate) fn connect_v5(id: &str, tweak: impl FnOnce(&mut Connect)) -> Connect {
    let mut connect = connect_packet(V5, id, true);
    tweak(&mut connect);
    connect
}

/// A CONNECT with Clean Start `clean_start` for a session that outlives its connection by
/// `expiry` seconds (0xFFFFFFFF: forever).
pub(crate) fn session_connect(id: &str, clean_start: bool, expiry: u32) -> Connect {
    connect_v5(id, |c| {
        c.clean_start = clean_start;
        c.properties.session_expiry_interval = Some(expiry);
    })
}

/// `session_connect` with a will on `topic` (payload: the topic) delayed by `delay` seconds.
pub(crate) fn delayed_will_connect(id: &str, topic: &str, delay: u32, expiry: u32) -> Connect {
    let mut connect = session_connect(id, true, expiry);
    let mut last_will = will(topic, topic, QoS::AtMostOnce, false);
    last_will.properties.will_delay_interval = Some(delay);
    connect.will = Some(last_will);
    connect
}

/// Sends `connect`, which the broker must refuse: returns the CONNACK it sent before closing.
pub(crate) fn expect_refused(broker: &TestBroker, connect: Connect) -> ConnAck {
    let mut client = RawClient::connect(broker.addr, V5);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_close().as_slice() {
        [Packet::ConnAck(ack)] => {
            assert!(!ack.session_present, "[MQTT-3.2.2-6]");
            (**ack).clone()
        }
        other => panic!("expected a CONNACK and a close, got {other:?}"),
    }
}

/// A PUBLISH of `payload` to `topic` at `qos`, with packet id 1 for QoS 1/2. An empty `topic`
/// is the empty Topic Name that stands for a Topic Alias.
pub(crate) fn message(topic: &str, payload: &str, qos: QoS) -> Publish {
    let name = if topic.is_empty() {
        TopicName::default()
    } else {
        topic_name(topic)
    };
    Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(1)),
        ..Publish::new(name, Bytes::copy_from_slice(payload.as_bytes()))
    }
}

/// `message` with a Topic Alias.
pub(crate) fn aliased(topic: &str, payload: &str, alias: u16) -> Publish {
    let mut p = message(topic, payload, QoS::AtLeastOnce);
    p.properties.topic_alias = NonZeroU16::new(alias);
    p
}

/// `message` with a Message Expiry Interval, retained or not.
pub(crate) fn expiring(topic: &str, payload: &str, secs: u32, retain: bool) -> Publish {
    let mut p = message(topic, payload, QoS::AtLeastOnce);
    p.retain = retain;
    p.properties.message.message_expiry_interval = Some(secs);
    p
}

/// Sends `p` and completes the publisher's side of its QoS flow. Returns the reason code of the
/// PUBACK or PUBREC (Success for QoS 0).
pub(crate) fn send_publish(client: &mut RawClient, p: Publish) -> ReasonCode {
    let (qos, id) = (p.qos, p.packet_id);
    client.send(&Packet::Publish(p));
    let Some(id) = id else {
        return ReasonCode::SUCCESS;
    };
    match (qos, client.expect_packet()) {
        (QoS::AtLeastOnce, Packet::PubAck(ack)) if ack.packet_id == id => ack.reason_code,
        (QoS::ExactlyOnce, Packet::PubRec(ack)) if ack.packet_id == id => {
            client.send(&Packet::PubRel(PublishAck::new(id)));
            assert_eq!(client.expect_packet(), Packet::PubComp(PublishAck::new(id)));
            ack.reason_code
        }
        (_, other) => panic!("expected the acknowledgement of {id}, got {other:?}"),
    }
}

/// SUBSCRIBE to `filters` with Subscription Identifier `id`; returns the SUBACK's reason codes.
pub(crate) fn subscribe_with(
    client: &mut RawClient,
    filters: &[(&str, SubscriptionOptions)],
    id: Option<u32>,
) -> Vec<ReasonCode> {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(2),
        properties: SubscribeProperties {
            subscription_identifier: id.and_then(NonZeroU32::new),
            ..SubscribeProperties::default()
        },
        filters: filters
            .iter()
            .map(|(f, o)| (TopicFilter::copy_from(f).unwrap(), *o))
            .collect(),
    }));
    match client.expect_packet() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id(2));
            ack.reason_codes
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Subscribes to one filter with `options`, which must be granted as asked.
pub(crate) fn subscribe_options(
    client: &mut RawClient,
    filter: &str,
    options: SubscriptionOptions,
) {
    let codes = subscribe_with(client, &[(filter, options)], None);
    assert_eq!(codes, [ReasonCode::granted(options.qos)], "{filter}");
}

/// A delivery's Subscription Identifiers, sorted (their order is not significant).
pub(crate) fn subscription_ids(p: &Publish) -> Vec<u32> {
    let mut ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|id| id.get())
        .collect();
    ids.sort_unstable();
    ids
}

/// A client on shard 0 subscribed to every will at QoS 1.
pub(crate) fn will_watcher(broker: &TestBroker) -> RawClient {
    let mut watcher = connect(broker, V5, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "will/#", QoS::AtLeastOnce);
    watcher
}

/// Ends `client`'s connection abnormally (a PINGREQ with a reserved flag set [MQTT-2.1.3-1]). By
/// the time the client sees the close, the broker has handled the end of the connection.
pub(crate) fn break_connection(mut client: RawClient) {
    client.send_bytes(&hex("c1 00"));
    client.expect_disconnect(ReasonCode::MALFORMED_PACKET);
}
