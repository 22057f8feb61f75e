//! §3.4–§3.7, §3.9, §3.11, §3.13: the acknowledgements the server sends, byte for byte.
//!
//! Success is said in the shortest form the spec allows: PUBACK/PUBREC/PUBREL/PUBCOMP with
//! reason 0x00 are just the packet id (`40 02 id`) [MQTT-3.4.2.1], and a success-family code such
//! as 0x10 No matching subscribers or 0x11 No subscription existed goes without properties
//! (`40 03 id 10`): strict clients accept nothing longer. A Reason String only ever goes with a
//! failure code (>= 0x80), only when the client did not set Request Problem Information to 0
//! [MQTT-3.1.2-29], and is left out where it would make the packet exceed the client's Maximum
//! Packet Size [MQTT-3.4.2-2] [MQTT-3.9.2-1] [MQTT-3.14.2-3] — the acknowledgement still goes out.
//!
//! Subscribers are homed on shard 0 and publishers on shard 1.

use std::num::NonZeroU32;

use bytes::Bytes;
use coremq::protocol::{
    Connect, Packet, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, Unsubscribe,
};

use crate::common::{hex, RawClient, TempDir, TestBroker};
use crate::v5::*;
use crate::{
    connect, connect_packet, connect_with, expect_message, packet_id, subscribe, topic_name,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn publish_packet(topic: &str, qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(id)),
        ..Publish::new(topic_name(topic), Bytes::from_static(b"payload"))
    })
}

fn subscribe_packet(filter: &str, qos: QoS, id: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: packet_id(id),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::copy_from(filter).unwrap(),
            SubscriptionOptions::with_qos(qos),
        )],
    })
}

fn unsubscribe_packet(filter: &str, id: u16) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: packet_id(id),
        properties: Default::default(),
        filters: vec![TopicFilter::copy_from(filter).unwrap()],
    })
}

/// The encoding of each success acknowledgement, for 3.1.1 (`v3`) and MQTT 5 (`v5`).
fn short(v: ProtocolVersion, v3: &str, v5: &str) -> Vec<u8> {
    hex(if v.is_v5() { v5 } else { v3 })
}

fn mqtt_3_4_2_1_success_acknowledgements_are_the_short_form(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);

    // [MQTT-3.9.3-1] SUBACK: packet id, (MQTT 5: property length 0,) one code per filter.
    sub.send(&subscribe_packet("short/+", QoS::ExactlyOnce, 1));
    assert_eq!(
        sub.expect_frame(),
        short(v, "90 03 0001 02", "90 04 0001 00 02")
    );

    // PUBACK 0x00: the packet id alone.
    publisher.send(&publish_packet("short/a", QoS::AtLeastOnce, 7));
    assert_eq!(publisher.expect_frame(), hex("40 02 0007"));
    let p = sub.expect_publish();
    sub.acknowledge(&p);

    // PUBREC and PUBCOMP 0x00 to the publisher.
    publisher.send(&publish_packet("short/a", QoS::ExactlyOnce, 8));
    assert_eq!(publisher.expect_frame(), hex("50 02 0008"));
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(8))));
    assert_eq!(publisher.expect_frame(), hex("70 02 0008"));

    // PUBREL 0x00 to the subscriber [MQTT-3.6.1-1]: fixed header flags 0010.
    let p = sub.expect_publish();
    let id = p.packet_id.expect("a QoS 2 delivery has a packet id");
    sub.send(&Packet::PubRec(PublishAck::new(id)));
    let [hi, lo] = id.get().to_be_bytes();
    assert_eq!(sub.expect_frame(), vec![0x62, 0x02, hi, lo]);
    sub.send(&Packet::PubComp(PublishAck::new(id)));

    // Nobody subscribed: MQTT 5 says 0x10 No matching subscribers, a success code, so no
    // properties follow it [MQTT-3.4.2.1]; 3.1.1 has no reason codes.
    publisher.send(&publish_packet("nobody/a", QoS::AtLeastOnce, 9));
    assert_eq!(
        publisher.expect_frame(),
        short(v, "40 02 0009", "40 03 0009 10")
    );
    publisher.send(&publish_packet("nobody/a", QoS::ExactlyOnce, 10));
    assert_eq!(
        publisher.expect_frame(),
        short(v, "50 02 000a", "50 03 000a 10")
    );
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(10))));
    assert_eq!(publisher.expect_frame(), hex("70 02 000a"));

    // UNSUBACK: 0x00, then 0x11 No subscription existed (success family: no Reason String).
    sub.send(&unsubscribe_packet("short/+", 2));
    assert_eq!(
        sub.expect_frame(),
        short(v, "b0 02 0002", "b0 04 0002 00 00")
    );
    sub.send(&unsubscribe_packet("short/+", 3));
    assert_eq!(
        sub.expect_frame(),
        short(v, "b0 02 0003", "b0 04 0003 00 11")
    );

    // [MQTT-3.12.4-1] PINGRESP.
    sub.send(&Packet::PingReq);
    assert_eq!(sub.expect_frame(), hex("d0 00"));
}

each_version!(mqtt_3_4_2_1_success_acknowledgements_are_the_short_form);

/// A 2-shard broker whose ACL lets anonymous clients use `open/#` only; the directory holding
/// the file lives as long as the returned guard.
fn broker_with_acl() -> (TempDir, TestBroker) {
    let dir = TempDir::new("acks-acl");
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let broker = TestBroker::start_with(2, |c| c.acl_file = Some(acl));
    (dir, broker)
}

/// An MQTT 5 CONNECT for `id` with Request Problem Information and Maximum Packet Size as given.
fn connect_v5(id: &str, problem_information: Option<bool>, max_packet: Option<u32>) -> Connect {
    let mut c = connect_packet(V5, id, true);
    c.properties.request_problem_information = problem_information;
    c.properties.maximum_packet_size = max_packet.and_then(NonZeroU32::new);
    c
}

/// Denied PUBLISH at QoS 1 and 2 and a denied SUBSCRIBE; returns the three answers as sent.
fn refusals(client: &mut RawClient) -> [Vec<u8>; 3] {
    client.send(&publish_packet("secret/a", QoS::AtLeastOnce, 1));
    let puback = client.expect_frame();
    client.send(&publish_packet("secret/a", QoS::ExactlyOnce, 2));
    let pubrec = client.expect_frame();
    client.send(&subscribe_packet("secret/#", QoS::AtLeastOnce, 3));
    let suback = client.expect_frame();
    [puback, pubrec, suback]
}

/// Decodes one frame of an MQTT 5 connection.
fn decoded(frame: &[u8]) -> Packet {
    let mut buf = bytes::BytesMut::from(frame);
    coremq::protocol::decode(&mut buf, V5, u32::MAX)
        .unwrap()
        .unwrap()
}

#[test]
fn mqtt_3_1_2_29_failure_acknowledgements_carry_a_reason_string_unless_the_client_opts_out() {
    let (_dir, broker) = broker_with_acl();
    // Request Problem Information absent (it defaults to 1) or 1: a Reason String says why.
    for request in [None, Some(true)] {
        let id = broker.id_on(1, "curious");
        let (mut client, ack) = connect_with(&broker, connect_v5(&id, request, None));
        assert_eq!(ack.properties.reason_string, None, "success CONNACK");
        let [puback, pubrec, suback] = refusals(&mut client);
        for (frame, what) in [(&puback, "PUBACK"), (&pubrec, "PUBREC")] {
            match decoded(frame) {
                Packet::PubAck(a) | Packet::PubRec(a) => {
                    assert_eq!(a.reason_code, ReasonCode::NOT_AUTHORIZED, "{what}");
                    assert!(a.properties.reason_string.is_some(), "{what}: {a:?}");
                }
                other => panic!("expected {what}, got {other:?}"),
            }
        }
        match decoded(&suback) {
            Packet::SubAck(a) => {
                assert_eq!(a.reason_codes, [ReasonCode::NOT_AUTHORIZED]);
                assert!(a.properties.reason_string.is_some(), "{a:?}");
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    // [MQTT-3.1.2-29] Request Problem Information 0: no Reason String on any of them.
    let id = broker.id_on(1, "quiet");
    let (mut client, _) = connect_with(&broker, connect_v5(&id, Some(false), None));
    assert_eq!(
        refusals(&mut client),
        [
            hex("40 03 0001 87"),
            hex("50 03 0002 87"),
            hex("90 04 0003 00 87")
        ]
    );
}

#[test]
fn mqtt_3_4_2_2_a_reason_string_that_would_exceed_the_maximum_packet_size_is_left_out() {
    let (_dir, broker) = broker_with_acl();
    // 32 bytes fit CONNACK and every refusal without its Reason String, and no refusal with it:
    // the refusals still go out, without it (they were dropped whole before).
    let id = broker.id_on(1, "small");
    let (mut client, _) = connect_with(&broker, connect_v5(&id, None, Some(32)));
    assert_eq!(
        refusals(&mut client),
        [
            hex("40 03 0001 87"),
            hex("50 03 0002 87"),
            hex("90 04 0003 00 87")
        ]
    );
    // [MQTT-3.14.2-3] the same for a server DISCONNECT: 0x82 for a second CONNECT.
    client.send(&Packet::Connect(Box::new(connect_v5(&id, None, Some(32)))));
    assert_eq!(client.expect_frame(), hex("e0 02 82 00"));
    assert_eq!(client.expect_close(), Vec::new());
}

// §3.4.2.1 / §3.5.2.1 PUBACK and PUBREC reason codes.

#[test]
fn mqtt_3_4_2_1_puback_and_pubrec_say_no_matching_subscribers() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let code = send_publish(&mut publisher, message("nobody/a", "unheard", qos));
        assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS, "{qos:?}");
    }
    // A subscriber on the other shard: the message is accepted and matched.
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "nobody/+", QoS::AtMostOnce);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let code = send_publish(&mut publisher, message("nobody/a", "heard", qos));
        assert_eq!(code, ReasonCode::SUCCESS, "{qos:?}");
        expect_message(&mut sub, "nobody/a", "heard");
    }
}
