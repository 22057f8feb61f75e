//! §3.3.4 Receive Maximum (MQTT 5), both ways.
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use std::num::NonZeroU16;

use coremq::protocol::{Packet, Publish, PublishAck, QoS, ReasonCode};

use crate::common::{RawClient, TestBroker};
use crate::v5::*;
use crate::{connect, connect_with, expect_message, packet_id, ping, publish, subscribe};

// §3.3.4 Receive Maximum, both ways.

#[test]
fn mqtt_3_3_4_7_too_many_unreleased_qos_2_messages_are_disconnected_with_0x93() {
    let broker = TestBroker::start_with(2, |c| c.receive_maximum = 2);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "pub"), |_| {}));
    assert_eq!(ack.properties.receive_maximum, NonZeroU16::new(2));
    let qos2 = |id, dup| Publish {
        dup,
        packet_id: Some(packet_id(id)),
        ..message("rm/in", "unreleased", QoS::ExactlyOnce)
    };
    let received = |publisher: &mut RawClient, id, dup| {
        publisher.send(&Packet::Publish(qos2(id, dup)));
        match publisher.expect_packet() {
            Packet::PubRec(ack) => assert_eq!(ack.packet_id, packet_id(id)),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    };
    received(&mut publisher, 1, false);
    received(&mut publisher, 2, false);
    // A resend of an unreleased message is no new message...
    received(&mut publisher, 1, true);
    // ...and a released one frees its place.
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(1))));
    let pubcomp = Packet::PubComp(PublishAck::new(packet_id(1)));
    assert_eq!(publisher.expect_packet(), pubcomp);
    received(&mut publisher, 3, false);
    // Ids 2 and 3 await PUBREL: another is one too many.
    publisher.send(&Packet::Publish(qos2(4, false)));
    publisher.expect_disconnect(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn mqtt_3_3_4_9_server_sends_at_most_the_clients_receive_maximum() {
    let broker = TestBroker::start(2);
    let small = connect_v5(&broker.id_on(0, "small"), |c| {
        c.properties.receive_maximum = NonZeroU16::new(2);
    });
    let mut sub = connect_with(&broker, small).0;
    subscribe(&mut sub, "rm/#", QoS::AtLeastOnce);
    // Subscribed on the same shard: once it has the third message, so had `sub` (or its queue).
    let mut probe = connect(&broker, V5, &broker.id_on(0, "probe"), true);
    subscribe(&mut probe, "rm/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    for i in 1..=3 {
        publish(&mut publisher, &format!("rm/{i}"), "m", QoS::AtLeastOnce);
    }
    for i in 1..=3 {
        let p = expect_message(&mut probe, &format!("rm/{i}"), "m");
        probe.acknowledge(&p);
    }

    let first = expect_message(&mut sub, "rm/1", "m");
    let second = expect_message(&mut sub, "rm/2", "m");
    // Two unacknowledged: the third waits (the PINGRESP comes first)...
    ping(&mut sub);
    // ...until a PUBACK frees a place.
    sub.acknowledge(&first);
    let third = expect_message(&mut sub, "rm/3", "m");
    sub.acknowledge(&second);
    sub.acknowledge(&third);
}
