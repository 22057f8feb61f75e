//! §3.1 CONNECT and §3.2 CONNACK: what the broker answers to a CONNECT (accepted, each refusal's
//! return / reason code), the rules on the first and second packet of a connection, the CONNECT
//! deadline, client id takeover, and the hand-off of a connection to its client id's home shard.

use std::time::Duration;

use coremq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{hex, RawClient, TestBroker};
use crate::{
    connect, connect_packet, connect_with, expect_message, frame, ping, publish, subscribe, wire,
};

each_version!(
    mqtt_3_2_2_3_accepted_connect_gets_connack_0,
    mqtt_3_1_3_6_empty_client_id_with_clean_session_is_assigned_one,
    mqtt_3_1_0_2_second_connect_closes_the_connection,
    mqtt_3_1_2_3_reserved_connect_flag_closes_the_connection,
    mqtt_3_1_4_2_takeover_disconnects_the_old_connection,
    mqtt_3_1_4_2_takeover_resumes_a_persistent_session,
    home_shard_handoff_serves_clients_homed_on_every_shard,
    home_shard_handoff_keeps_packets_sent_right_after_connect,
);

fn mqtt_3_2_2_3_accepted_connect_gets_connack_0(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    for shard in 0..2 {
        let id = broker.id_on(shard, "accepted");
        let (mut client, ack) = connect_with(&broker, connect_packet(v, &id, true));
        // [MQTT-3.2.2-1] a clean session never finds a stored one.
        assert!(!ack.session_present);
        if !v.is_v5() {
            assert_eq!(wire(&[Packet::ConnAck(ack)], v), hex("20 02 00 00"));
        }
        ping(&mut client);
    }
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_is_refused_with_return_code_1() {
    let broker = TestBroker::start(2);
    for level in [0u8, 2, 6, 0xff] {
        let mut client = RawClient::connect(broker.addr, ProtocolVersion::V3_1_1);
        let body = [
            &hex("00 04 4d 51 54 54")[..],
            &[level],
            &hex("02 00 3c 00 01 61"),
        ]
        .concat();
        client.send_bytes(&frame(0x10, &body));
        // [MQTT-3.2.2-5] the refusal is followed by a close.
        let before = client.expect_close();
        assert_eq!(
            wire(&before, ProtocolVersion::V3_1_1),
            hex("20 02 00 01"),
            "level {level}"
        );
    }
}

fn mqtt_3_1_3_6_empty_client_id_with_clean_session_is_assigned_one(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut publishers: Vec<RawClient> = (0..2)
        .map(|shard| connect(&broker, v, &broker.id_on(shard, "pub"), true))
        .collect();
    let (mut first, ack1) = connect_with(&broker, connect_packet(v, "", true));
    let (mut second, ack2) = connect_with(&broker, connect_packet(v, "", true));
    if v.is_v5() {
        // [MQTT-3.2.2-16] MQTT 5 tells the client the identifier it was given.
        let id1 = ack1.properties.assigned_client_identifier.clone();
        let id2 = ack2.properties.assigned_client_identifier.clone();
        assert!(id1.as_ref().is_some_and(|id| !id.is_empty()), "{ack1:?}");
        assert!(id2.as_ref().is_some_and(|id| !id.is_empty()), "{ack2:?}");
        assert_ne!(id1, id2, "two clients got the same identifier");
    }
    // Each got its own id: the second did not take the first over, and both are served, from
    // publishers on either shard.
    subscribe(&mut first, "assigned/1", QoS::AtLeastOnce);
    subscribe(&mut second, "assigned/2", QoS::AtLeastOnce);
    for (shard, p) in publishers.iter_mut().enumerate() {
        publish(p, "assigned/1", format!("from {shard}"), QoS::AtMostOnce);
        publish(p, "assigned/2", format!("from {shard}"), QoS::AtMostOnce);
        expect_message(&mut first, "assigned/1", format!("from {shard}"));
        expect_message(&mut second, "assigned/2", format!("from {shard}"));
    }
}

#[test]
fn mqtt_3_1_3_8_empty_client_id_without_clean_session_is_refused_with_return_code_2() {
    let broker = TestBroker::start(2);
    // 3.1.1 with Clean Session 0, and MQTT 3.1 always, must send a client id.
    for (v, clean) in [
        (ProtocolVersion::V3_1_1, false),
        (ProtocolVersion::V3_1, false),
        (ProtocolVersion::V3_1, true),
    ] {
        let mut client = RawClient::connect(broker.addr, v);
        client.send(&Packet::Connect(Box::new(connect_packet(v, "", clean))));
        // [MQTT-3.2.2-5] the refusal is followed by a close.
        let before = client.expect_close();
        assert_eq!(wire(&before, v), hex("20 02 00 02"), "{v:?} clean {clean}");
    }
}

#[test]
fn mqtt_3_1_protocol_name_mqisdp_level_3_is_accepted() {
    let broker = TestBroker::start(2);
    let v = ProtocolVersion::V3_1;
    let id = broker.id_on(1, "mqisdp");
    let mut client = RawClient::connect(broker.addr, v);
    // "MQIsdp", level 3, Clean Session, keep alive 0, client id.
    let mut body = hex("00 06 4d 51 49 73 64 70 03 02 00 00");
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    client.send_bytes(&frame(0x10, &body));
    assert_eq!(wire(&[client.expect_packet()], v), hex("20 02 00 00"));

    // The connection then speaks 3.1 with a 3.1.1 publisher on the other shard.
    subscribe(&mut client, "mqisdp/t", QoS::AtLeastOnce);
    let mut publisher = connect(
        &broker,
        ProtocolVersion::V3_1_1,
        &broker.id_on(0, "pub"),
        true,
    );
    publish(&mut publisher, "mqisdp/t", "hello 3.1", QoS::AtLeastOnce);
    let p = expect_message(&mut client, "mqisdp/t", "hello 3.1");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    client.acknowledge(&p);
    ping(&mut client);
}

#[test]
fn mqtt_3_1_0_1_first_packet_other_than_connect_closes_the_connection() {
    let broker = TestBroker::start(2);
    let cases = [
        ("pingreq", "c0 00"),
        ("publish", "30 04 00 01 61 78"),
        ("subscribe", "82 06 00 01 00 01 61 00"),
        ("disconnect", "e0 00"),
        ("connack", "20 02 00 00"),
        ("reserved type 0", "00 00"),
    ];
    for (name, bytes) in cases {
        let mut client = RawClient::connect(broker.addr, ProtocolVersion::V3_1_1);
        client.send_bytes(&hex(bytes));
        assert_eq!(client.expect_close(), Vec::new(), "first packet: {name}");
    }
}

fn mqtt_3_1_0_2_second_connect_closes_the_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "twice");
    let mut client = connect(&broker, v, &id, true);
    client.send(&Packet::Connect(Box::new(connect_packet(v, &id, true))));
    client.expect_disconnect(ReasonCode::PROTOCOL_ERROR);
}

fn mqtt_3_1_2_3_reserved_connect_flag_closes_the_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut client = RawClient::connect(broker.addr, v);
    let mut bytes = wire(
        &[Packet::Connect(Box::new(connect_packet(
            v,
            &broker.id_on(0, "reserved"),
            true,
        )))],
        v,
    );
    // Fixed header (2), protocol name "MQTT" (6), level (1), then the connect flags.
    assert_eq!(bytes[9], 0x02);
    bytes[9] |= 0x01;
    client.send_bytes(&bytes);
    let before = client.expect_close();
    if v.is_v5() {
        // An MQTT 5 CONNECT that cannot be parsed is refused with 0x81 Malformed Packet.
        assert_eq!(wire(&before, v), hex("20 03 00 81 00"));
    } else {
        assert_eq!(before, Vec::new());
    }
}

/// An MQTT 5 CONNECT the broker cannot accept gets a CONNACK with the reason code, then a close
/// [MQTT-3.2.2-5]: 0x81 when it cannot be parsed, 0x82 when it parses but breaks a rule.
#[test]
fn mqtt_3_2_2_8_malformed_v5_connect_is_refused_with_its_reason_code() {
    let broker = TestBroker::start(2);
    // (case, connect flags, property block, payload, reason code)
    let cases = [
        (
            "mqtt_3_1_2_3_reserved_flag",
            0x03,
            "00",
            "00 01 61",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_3_1_2_11_will_qos_without_will_flag",
            0x0a,
            "00",
            "00 01 61",
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "mqtt_3_1_2_12_will_qos_3",
            0x1e,
            "00",
            "00 01 61 00 00 01 74 00 00",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_2_2_2_2_unknown_property",
            0x02,
            "01 7f",
            "00 01 61",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_2_2_2_2_property_not_allowed_in_connect",
            0x02,
            "02 01 01",
            "00 01 61",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_3_1_2_11_2_session_expiry_interval_twice",
            0x02,
            "0a 11 00 00 00 01 11 00 00 00 01",
            "00 01 61",
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "mqtt_3_1_2_11_3_receive_maximum_0",
            0x02,
            "03 21 00 00",
            "00 01 61",
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "mqtt_3_1_2_11_10_authentication_data_without_method",
            0x02,
            "04 16 00 01 78",
            "00 01 61",
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "mqtt_1_5_4_1_client_id_not_utf8",
            0x02,
            "00",
            "00 02 c3 28",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_1_5_4_2_client_id_with_null_character",
            0x02,
            "00",
            "00 02 61 00",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_4_13_1_client_id_longer_than_the_packet",
            0x02,
            "00",
            "00 09 61",
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "mqtt_4_13_1_bytes_after_the_payload",
            0x02,
            "00",
            "00 01 61 00",
            ReasonCode::MALFORMED_PACKET,
        ),
    ];
    for (name, flags, properties, payload, reason) in cases {
        let mut client = RawClient::connect(broker.addr, ProtocolVersion::V5);
        // "MQTT", level 5, flags, keep alive 0, properties, payload.
        let body = [
            &hex("00 04 4d 51 54 54 05")[..],
            &[flags],
            &hex("00 00"),
            &hex(properties),
            &hex(payload),
        ]
        .concat();
        client.send_bytes(&frame(0x10, &body));
        let before = client.expect_close();
        assert_eq!(
            wire(&before, ProtocolVersion::V5),
            [&hex("20 03 00")[..], &[reason.0], &hex("00")].concat(),
            "{name}"
        );
    }
}

#[test]
fn mqtt_3_1_0_1_connection_without_connect_is_closed_after_the_connect_timeout() {
    let broker = TestBroker::start_with(2, |c| c.connect_timeout = Duration::from_millis(300));
    // Connected clients on both shards: the deadline covers only the wait for CONNECT.
    let mut connected: Vec<RawClient> = (0..2)
        .map(|shard| {
            connect(
                &broker,
                ProtocolVersion::V3_1_1,
                &broker.id_on(shard, "early"),
                true,
            )
        })
        .collect();
    let mut silent = RawClient::connect(broker.addr, ProtocolVersion::V3_1_1);
    let mut partial = RawClient::connect(broker.addr, ProtocolVersion::V3_1_1);
    partial.send_bytes(&hex("10 0d 00 04 4d 51 54 54"));
    assert_eq!(silent.expect_close(), Vec::new());
    assert_eq!(partial.expect_close(), Vec::new());
    for client in &mut connected {
        ping(client);
    }
}

fn mqtt_3_1_4_2_takeover_disconnects_the_old_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    for shard in 0..2 {
        let id = broker.id_on(shard, "takeover");
        let mut current = connect(&broker, v, &id, true);
        // Several rounds: each new connection may be accepted by either shard and handed to the
        // home shard, where it must find and end the previous one.
        for _ in 0..4 {
            let mut next = connect(&broker, v, &id, true);
            current.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
            ping(&mut next);
            current = next;
        }
    }
}

fn mqtt_3_1_4_2_takeover_resumes_a_persistent_session(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "resumed");
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    let mut old = connect(&broker, v, &id, false);
    subscribe(&mut old, "resumed/t", QoS::AtLeastOnce);

    publish(&mut publisher, "resumed/t", "before", QoS::AtLeastOnce);
    let unacked = expect_message(&mut old, "resumed/t", "before");

    let (mut new, ack) = connect_with(&broker, connect_packet(v, &id, false));
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    // The delivery the old connection left unacknowledged goes out again [MQTT-4.4.0-1].
    let again = expect_message(&mut new, "resumed/t", "before");
    assert!(again.dup);
    assert_eq!(again.packet_id, unacked.packet_id);
    new.acknowledge(&again);
    publish(
        &mut publisher,
        "resumed/t",
        "after takeover",
        QoS::AtLeastOnce,
    );
    let p = expect_message(&mut new, "resumed/t", "after takeover");
    new.acknowledge(&p);
}

/// Clients whose ids are homed on each shard all work, wherever the kernel accepted them.
fn home_shard_handoff_serves_clients_homed_on_every_shard(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut clients: Vec<(String, RawClient)> = (0..8)
        .map(|i| {
            let id = broker.id_on(i % 2, &format!("handoff{i}"));
            let mut c = connect(&broker, v, &id, true);
            subscribe(&mut c, &format!("handoff/{id}"), QoS::AtLeastOnce);
            (id, c)
        })
        .collect();
    for shard in 0..2 {
        let mut publisher = connect(&broker, v, &broker.id_on(shard, "pub"), true);
        for (id, _) in &clients {
            publish(
                &mut publisher,
                &format!("handoff/{id}"),
                id,
                QoS::AtLeastOnce,
            );
        }
        for (id, c) in &mut clients {
            let p = expect_message(c, &format!("handoff/{id}"), id);
            c.acknowledge(&p);
        }
    }
}

/// Packets that arrive with the CONNECT (same write) travel with the connection to its home shard.
fn home_shard_handoff_keeps_packets_sent_right_after_connect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    for shard in 0..2 {
        for round in 0..4 {
            let id = broker.id_on(shard, &format!("pipelined{round}"));
            let mut client = RawClient::connect(broker.addr, v);
            let subscribe = coremq::protocol::Subscribe {
                packet_id: crate::packet_id(7),
                properties: Default::default(),
                filters: vec![(
                    coremq::protocol::TopicFilter::copy_from("pipelined/t").unwrap(),
                    coremq::protocol::SubscriptionOptions::with_qos(QoS::AtMostOnce),
                )],
            };
            let bytes = wire(
                &[
                    Packet::Connect(Box::new(connect_packet(v, &id, true))),
                    Packet::Subscribe(subscribe),
                    Packet::PingReq,
                ],
                v,
            );
            client.send_bytes(&bytes);
            assert!(matches!(client.expect_packet(), Packet::ConnAck(_)));
            match client.expect_packet() {
                Packet::SubAck(ack) => assert_eq!(ack.packet_id, crate::packet_id(7)),
                other => panic!("expected SUBACK, got {other:?}"),
            }
            assert_eq!(client.expect_packet(), Packet::PingResp);
        }
    }
}
