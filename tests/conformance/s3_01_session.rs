//! §3.1.2.4 Clean Session (MQTT 5: Clean Start and Session Expiry) and §4.4 message delivery
//! retry: what a stored session keeps across connections (subscriptions, QoS 1/2 messages
//! published while offline, unacknowledged deliveries), the Session Present flag, and a clean
//! session discarding all of it.
//!
//! The session's client is homed on shard 0 and its publisher on shard 1, so every delivery
//! crosses the mesh; a "marker" message published last proves that nothing else was delivered
//! before it without waiting on a timer.

use bytes::Bytes;
use coremq::protocol::{Packet, ProtocolVersion, Publish, PublishAck, QoS};

use crate::common::{RawClient, TestBroker};
use crate::{
    connect, connect_packet, connect_with, expect_message, packet_id, publish, subscribe,
    topic_name,
};

each_version!(
    mqtt_3_2_2_2_session_present_is_set_only_when_a_stored_session_resumes,
    mqtt_3_1_2_4_subscriptions_survive_a_reconnect,
    mqtt_3_1_2_5_qos_1_and_2_messages_published_while_offline_are_delivered_on_reconnect,
    mqtt_3_1_2_5_qos_0_messages_published_while_offline_are_not_queued_by_default,
    mqtt_3_1_2_5_qos_0_messages_published_while_offline_are_queued_with_queue_qos0,
    mqtt_4_4_0_1_unacknowledged_qos_1_publish_is_resent_with_dup_on_reconnect,
    mqtt_4_4_0_1_unacknowledged_pubrel_is_resent_on_reconnect,
    mqtt_4_3_3_2_qos_2_publish_resent_after_reconnect_is_delivered_once,
    mqtt_3_1_2_6_clean_session_discards_the_stored_session,
);

/// Connects `id` and returns the client with its CONNACK's Session Present flag.
fn reconnect(broker: &TestBroker, v: ProtocolVersion, id: &str, clean: bool) -> (RawClient, bool) {
    let (client, ack) = connect_with(broker, connect_packet(v, id, clean));
    (client, ack.session_present)
}

fn mqtt_3_2_2_2_session_present_is_set_only_when_a_stored_session_resumes(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    for shard in 0..2 {
        let id = broker.id_on(shard, "present");
        let (c, present) = reconnect(&broker, v, &id, false);
        assert!(!present, "[MQTT-3.2.2-3] no session stored yet");
        c.disconnect();
        let (c, present) = reconnect(&broker, v, &id, false);
        assert!(present, "[MQTT-3.2.2-2] the stored session resumes");
        c.disconnect();
        let (c, present) = reconnect(&broker, v, &id, true);
        assert!(!present, "[MQTT-3.2.2-1] a clean session is never present");
        c.disconnect();
        let (c, present) = reconnect(&broker, v, &id, false);
        assert!(
            !present,
            "[MQTT-3.1.2-6] the clean session ended with its connection"
        );
        c.disconnect();
    }
}

fn mqtt_3_1_2_4_subscriptions_survive_a_reconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "subs");
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "kept/+", QoS::AtLeastOnce);
    sub.disconnect();

    let (mut sub, present) = reconnect(&broker, v, &id, false);
    assert!(present);
    publish(
        &mut publisher,
        "kept/a",
        "still subscribed",
        QoS::AtLeastOnce,
    );
    let p = expect_message(&mut sub, "kept/a", "still subscribed");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.acknowledge(&p);
}

fn mqtt_3_1_2_5_qos_1_and_2_messages_published_while_offline_are_delivered_on_reconnect(
    v: ProtocolVersion,
) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "offline");
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "offline/#", QoS::ExactlyOnce);
    sub.disconnect();

    publish(&mut publisher, "offline/1", "one", QoS::AtLeastOnce);
    publish(&mut publisher, "offline/2", "two", QoS::ExactlyOnce);
    let (mut sub, present) = reconnect(&broker, v, &id, false);
    assert!(present);
    // In publication order, each at the QoS it was published with.
    let p = expect_message(&mut sub, "offline/1", "one");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(!p.dup);
    sub.acknowledge(&p);
    let p = expect_message(&mut sub, "offline/2", "two");
    assert_eq!(p.qos, QoS::ExactlyOnce);
    sub.acknowledge(&p);
}

/// Subscribes a persistent session at QoS 1, publishes a QoS 0 message and then a QoS 1 marker
/// while it is offline, reconnects it and returns it.
fn offline_qos0_then_marker(broker: &TestBroker, v: ProtocolVersion) -> RawClient {
    let id = broker.id_on(0, "qos0");
    let mut publisher = connect(broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(broker, v, &id, false);
    subscribe(&mut sub, "qos0/+", QoS::AtLeastOnce);
    sub.disconnect();
    // A live subscriber on the same shard: once it has both messages, the offline session has
    // been offered them too (the publisher's PUBACK only says they left shard 1).
    let mut witness = connect(broker, v, &broker.id_on(0, "witness"), true);
    subscribe(&mut witness, "qos0/+", QoS::AtLeastOnce);
    publish(&mut publisher, "qos0/a", "at most once", QoS::AtMostOnce);
    publish(&mut publisher, "qos0/marker", "marker", QoS::AtLeastOnce);
    expect_message(&mut witness, "qos0/a", "at most once");
    let p = expect_message(&mut witness, "qos0/marker", "marker");
    witness.acknowledge(&p);
    let (sub, present) = reconnect(broker, v, &id, false);
    assert!(present);
    sub
}

fn mqtt_3_1_2_5_qos_0_messages_published_while_offline_are_not_queued_by_default(
    v: ProtocolVersion,
) {
    let broker = TestBroker::start(2);
    let mut sub = offline_qos0_then_marker(&broker, v);
    // The QoS 0 message was dropped: the marker comes first.
    let p = expect_message(&mut sub, "qos0/marker", "marker");
    sub.acknowledge(&p);
}

fn mqtt_3_1_2_5_qos_0_messages_published_while_offline_are_queued_with_queue_qos0(
    v: ProtocolVersion,
) {
    let broker = TestBroker::start_with(2, |c| c.queue_qos0 = true);
    let mut sub = offline_qos0_then_marker(&broker, v);
    let p = expect_message(&mut sub, "qos0/a", "at most once");
    assert_eq!(p.qos, QoS::AtMostOnce);
    let p = expect_message(&mut sub, "qos0/marker", "marker");
    sub.acknowledge(&p);
}

fn mqtt_4_4_0_1_unacknowledged_qos_1_publish_is_resent_with_dup_on_reconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "resend");
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "resend/+", QoS::AtLeastOnce);
    publish(&mut publisher, "resend/a", "unacked", QoS::AtLeastOnce);
    let first = expect_message(&mut sub, "resend/a", "unacked");
    assert!(!first.dup);
    // No PUBACK: the socket just goes away.
    drop(sub);

    let (mut sub, present) = reconnect(&broker, v, &id, false);
    assert!(present);
    let again = expect_message(&mut sub, "resend/a", "unacked");
    assert!(again.dup, "[MQTT-4.4.0-1] a resent PUBLISH has DUP set");
    assert_eq!(again.packet_id, first.packet_id, "same packet identifier");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    sub.acknowledge(&again);
    sub.disconnect();

    // Acknowledged now: the next connection gets only what comes next.
    let (mut sub, _) = reconnect(&broker, v, &id, false);
    publish(&mut publisher, "resend/marker", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "resend/marker", "marker");
    assert!(!p.dup);
    sub.acknowledge(&p);
}

fn mqtt_4_4_0_1_unacknowledged_pubrel_is_resent_on_reconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "pubrel");
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "pubrel/+", QoS::ExactlyOnce);
    publish(&mut publisher, "pubrel/a", "exactly once", QoS::ExactlyOnce);
    let p = expect_message(&mut sub, "pubrel/a", "exactly once");
    let id_sent = p.packet_id.unwrap();
    sub.send(&Packet::PubRec(PublishAck::new(id_sent)));
    assert_eq!(
        sub.expect_packet(),
        Packet::PubRel(PublishAck::new(id_sent))
    );
    // No PUBCOMP: the socket just goes away.
    drop(sub);

    let (mut sub, present) = reconnect(&broker, v, &id, false);
    assert!(present);
    // PUBREC was received, so the message is not sent again; the PUBREL is.
    assert_eq!(
        sub.expect_packet(),
        Packet::PubRel(PublishAck::new(id_sent))
    );
    sub.send(&Packet::PubComp(PublishAck::new(id_sent)));
    publish(&mut publisher, "pubrel/marker", "marker", QoS::AtLeastOnce);
    let p = sub.expect_publish();
    assert_eq!(p.topic.as_str(), "pubrel/marker");
    sub.acknowledge(&p);
}

/// The inbound side: a QoS 2 PUBLISH the broker acknowledged with PUBREC is part of the
/// publisher's session; resent after a reconnect (DUP, same packet id) it is not delivered again.
fn mqtt_4_3_3_2_qos_2_publish_resent_after_reconnect_is_delivered_once(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "qos2pub");
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "once/+", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &id, false);
    let message = Publish {
        qos: QoS::ExactlyOnce,
        packet_id: Some(packet_id(5)),
        ..Publish::new(topic_name("once/a"), Bytes::from_static(b"exactly once"))
    };
    publisher.send(&Packet::Publish(message.clone()));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubRec(PublishAck::new(packet_id(5)))
    );
    // No PUBREL: the socket just goes away, and the client resends after reconnecting.
    drop(publisher);
    let (mut publisher, present) = reconnect(&broker, v, &id, false);
    assert!(present);
    publisher.send(&Packet::Publish(Publish {
        dup: true,
        ..message
    }));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubRec(PublishAck::new(packet_id(5)))
    );
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(5))));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubComp(PublishAck::new(packet_id(5)))
    );
    publish(&mut publisher, "once/marker", "marker", QoS::AtLeastOnce);

    let p = expect_message(&mut sub, "once/a", "exactly once");
    sub.acknowledge(&p);
    let p = expect_message(&mut sub, "once/marker", "marker");
    sub.acknowledge(&p);
}

fn mqtt_3_1_2_6_clean_session_discards_the_stored_session(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "discard");
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "discard/old", QoS::AtLeastOnce);
    sub.disconnect();
    publish(&mut publisher, "discard/old", "queued", QoS::AtLeastOnce);

    let (mut sub, present) = reconnect(&broker, v, &id, true);
    assert!(!present, "[MQTT-3.2.2-1]");
    subscribe(&mut sub, "discard/marker", QoS::AtLeastOnce);
    publish(&mut publisher, "discard/old", "after", QoS::AtLeastOnce);
    publish(&mut publisher, "discard/marker", "marker", QoS::AtLeastOnce);
    // Neither the queued message nor the old subscription survived.
    let p = expect_message(&mut sub, "discard/marker", "marker");
    sub.acknowledge(&p);
}
