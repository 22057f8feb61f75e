//! §3.3.2.3.4 Topic Alias (MQTT 5): client to server, and server to client.
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use coremq::protocol::{Packet, QoS, ReasonCode};

use crate::common::{hex, TestBroker};
use crate::v5::*;
use crate::{connect, connect_with, expect_message, frame, publish, subscribe};

// §3.3.2.3.4 Topic Alias, client to server.

#[test]
fn mqtt_3_3_2_12_inbound_topic_alias_is_resolved() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "alias/#", QoS::AtLeastOnce);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "pub"), |_| {}));
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));

    let sends = [
        // A topic with an alias sets it; an empty topic with the alias uses it.
        ("alias/a", 1, "a"),
        ("", 1, "a again"),
        // A topic with an alias in use maps it to the new topic.
        ("alias/b", 1, "b"),
        ("", 1, "b again"),
        // Every alias up to the maximum is accepted.
        ("alias/c", 10, "c"),
        ("", 10, "c again"),
    ];
    for (topic, alias, payload) in sends {
        let code = send_publish(&mut publisher, aliased(topic, payload, alias));
        assert_eq!(code, ReasonCode::SUCCESS, "{payload}");
    }
    for (topic, payload) in [
        ("alias/a", "a"),
        ("alias/a", "a again"),
        ("alias/b", "b"),
        ("alias/b", "b again"),
        ("alias/c", "c"),
        ("alias/c", "c again"),
    ] {
        // The subscriber asked for no aliases: it gets the topic.
        let p = expect_message(&mut sub, topic, payload);
        assert_eq!(p.properties.topic_alias, None);
        sub.acknowledge(&p);
    }
}

#[test]
fn mqtt_3_3_2_9_topic_alias_above_the_maximum_is_disconnected_with_0x94() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "pub");
    let mut publisher = connect(&broker, V5, &id, true);
    publisher.send(&Packet::Publish(aliased("alias/x", "above", 11)));
    publisher.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID);

    // [MQTT-3.3.2-8] alias 0 (raw bytes: the codec cannot write it).
    let mut publisher = connect(&broker, V5, &id, true);
    publisher.send_bytes(&frame(0x30, &hex("00 01 61  03 23 00 00  7a")));
    publisher.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID);

    // With COREMQ_TOPIC_ALIAS_MAXIMUM=0, CONNACK announces none and every alias is invalid.
    let broker = TestBroker::start_with(2, |c| c.topic_alias_maximum = 0);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&id, |_| {}));
    assert_eq!(ack.properties.topic_alias_maximum, None);
    publisher.send(&Packet::Publish(aliased("alias/x", "none", 1)));
    publisher.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID);
}

/// MQTT 5 §3.3.4: an empty Topic Name with an alias that has no mapping is a Protocol Error.
#[test]
fn mqtt_3_3_4_unknown_topic_alias_with_an_empty_topic_is_a_protocol_error() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, aliased("alias/a", "mapped", 1));
    publisher.send(&Packet::Publish(aliased("", "unmapped", 2)));
    publisher.expect_disconnect(ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_3_2_7_topic_alias_mappings_end_with_the_connection() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "pub");
    let mut publisher = connect_with(&broker, session_connect(&id, true, 300)).0;
    send_publish(&mut publisher, aliased("alias/a", "mapped", 1));
    publisher.disconnect();
    // The session resumes, the alias does not.
    let (mut publisher, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(ack.session_present);
    publisher.send(&Packet::Publish(aliased("", "unmapped", 1)));
    publisher.expect_disconnect(ReasonCode::PROTOCOL_ERROR);
}

// §3.3.2.3.4 Topic Alias, server to client.

#[test]
fn mqtt_3_3_2_10_outbound_topic_alias_replaces_the_topic() {
    let broker = TestBroker::start(2);
    let with_aliases = connect_v5(&broker.id_on(0, "aliases"), |c| {
        c.properties.topic_alias_maximum = Some(2);
    });
    let mut sub = connect_with(&broker, with_aliases).0;
    subscribe(&mut sub, "out/#", QoS::AtMostOnce);
    let mut plain = connect(&broker, V5, &broker.id_on(0, "plain"), true);
    subscribe(&mut plain, "out/#", QoS::AtMostOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    let topics = [
        "out/a", "out/a", "out/b", "out/c", "out/c", "out/a", "out/b",
    ];
    for (i, topic) in topics.iter().enumerate() {
        publish(&mut publisher, topic, i.to_string(), QoS::AtMostOnce);
    }

    // The first two topics get aliases 1 and 2: named once with the alias, then by the alias
    // alone; a third topic finds no alias left [MQTT-3.1.2-26] and is always named.
    let expected = [
        ("out/a", Some(1)),
        ("", Some(1)),
        ("out/b", Some(2)),
        ("out/c", None),
        ("out/c", None),
        ("", Some(1)),
        ("", Some(2)),
    ];
    for (i, (topic, alias)) in expected.into_iter().enumerate() {
        let p = expect_message(&mut sub, topic, i.to_string());
        assert_eq!(
            p.properties.topic_alias.map(|a| a.get()),
            alias,
            "message {i}"
        );
    }
    // [MQTT-3.1.2-27] a client without Topic Alias Maximum gets none.
    for (i, topic) in topics.iter().enumerate() {
        let p = expect_message(&mut plain, topic, i.to_string());
        assert_eq!(p.properties.topic_alias, None);
    }
}
