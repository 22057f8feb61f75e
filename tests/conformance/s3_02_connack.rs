//! §3.2.2.3 CONNACK properties (MQTT 5): the server's limits, advertised and enforced, Server
//! Keep Alive and Response Information.
//!
//! Placement and timing as for every MQTT 5 case (see `v5`).

use std::num::{NonZeroU16, NonZeroU32};

use coremq::protocol::{Packet, Publish, QoS, ReasonCode, SubscriptionOptions};

use crate::common::TestBroker;
use crate::v5::*;
use crate::{connect, connect_with, expect_message, publish, will};

// §3.2.2.3 CONNACK properties: the server's limits, advertised and enforced.

#[test]
fn mqtt_3_2_2_11_publish_above_maximum_qos_is_disconnected_with_0x9b() {
    let broker = TestBroker::start_with(2, |c| c.max_qos = 1);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "pub"), |_| {}));
    // [MQTT-3.2.2-9] a server without QoS 2 says so.
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    publish(&mut publisher, "qos/1", "allowed", QoS::AtLeastOnce);
    publisher.send(&Packet::Publish(message(
        "qos/2",
        "too high",
        QoS::ExactlyOnce,
    )));
    publisher.expect_disconnect(ReasonCode::QOS_NOT_SUPPORTED);
}

#[test]
fn mqtt_3_2_2_10_subscriptions_are_granted_at_most_maximum_qos() {
    let broker = TestBroker::start_with(2, |c| c.max_qos = 1);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    let qos2 = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    let codes = subscribe_with(&mut sub, &[("max/#", qos2)], None);
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "max/a", "at most 1", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "max/a", "at most 1");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.acknowledge(&p);
}

#[test]
fn mqtt_3_2_2_12_will_above_maximum_qos_is_refused_with_0x9b() {
    let broker = TestBroker::start_with(2, |c| c.max_qos = 1);
    let connect = connect_v5(&broker.id_on(1, "will"), |c| {
        c.will = Some(will("will/qos2", "too high", QoS::ExactlyOnce, false));
    });
    let ack = expect_refused(&broker, connect);
    assert_eq!(ack.reason_code, ReasonCode::QOS_NOT_SUPPORTED);
}

#[test]
fn mqtt_3_2_2_14_retained_publish_without_retain_available_is_disconnected_with_0x9a() {
    let broker = TestBroker::start_with(2, |c| c.retain_available = false);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "pub"), |_| {}));
    assert_eq!(ack.properties.retain_available, Some(false));
    publish(&mut publisher, "ret/a", "not retained", QoS::AtLeastOnce);
    let retained = Publish {
        retain: true,
        ..message("ret/a", "retained", QoS::AtMostOnce)
    };
    publisher.send(&Packet::Publish(retained));
    publisher.expect_disconnect(ReasonCode::RETAIN_NOT_SUPPORTED);
}

#[test]
fn mqtt_3_2_2_13_will_retain_without_retain_available_is_refused_with_0x9a() {
    let broker = TestBroker::start_with(2, |c| c.retain_available = false);
    let connect = connect_v5(&broker.id_on(1, "will"), |c| {
        c.will = Some(will("will/retained", "kept", QoS::AtMostOnce, true));
    });
    let ack = expect_refused(&broker, connect);
    assert_eq!(ack.reason_code, ReasonCode::RETAIN_NOT_SUPPORTED);
}

#[test]
fn mqtt_3_2_2_3_3_connack_advertises_the_server_limits() {
    let broker = TestBroker::start(2);
    let (_client, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "named"), |_| {}));
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(1024));
    assert_eq!(p.topic_alias_maximum, Some(10));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(1 << 20));
    // Absent means the defaults: QoS 2, retain available, the client's keep alive.
    assert_eq!((p.maximum_qos, p.retain_available), (None, None));
    assert_eq!(p.server_keep_alive, None);
    assert_eq!(p.assigned_client_identifier, None);
    // [MQTT-3.2.2-16] an empty client id is told the one it was given.
    let (_client, ack) = connect_with(&broker, connect_v5("", |_| {}));
    assert!(ack.properties.assigned_client_identifier.is_some());

    let broker = TestBroker::start_with(2, |c| {
        c.receive_maximum = 5;
        c.max_packet_size = 4096;
        c.max_keepalive = 30;
    });
    for (asked, told) in [(20, None), (60, Some(30)), (0, Some(30))] {
        let connect = connect_v5(&broker.id_on(0, "limited"), |c| c.keep_alive = asked);
        let (_client, ack) = connect_with(&broker, connect);
        let p = &ack.properties;
        assert_eq!(p.receive_maximum, NonZeroU16::new(5));
        assert_eq!(p.maximum_packet_size, NonZeroU32::new(4096));
        assert_eq!(p.server_keep_alive, told, "keep alive {asked}");
    }
}

#[test]
fn mqtt_3_2_2_21_server_keep_alive_replaces_the_clients() {
    let broker = TestBroker::start_with(2, |c| c.max_keepalive = 1);
    let connect = connect_v5(&broker.id_on(1, "slow"), |c| c.keep_alive = 60);
    let (mut client, ack) = connect_with(&broker, connect);
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // Silent for 1.5 × the server's keep alive, not the client's 60 s.
    client.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT);
}

#[test]
fn mqtt_3_1_2_28_response_information_only_when_requested() {
    let broker = TestBroker::start_with(2, |c| c.response_information = "responses".into());
    for shard in 0..2 {
        let id = broker.id_on(shard, "asks");
        let asks = connect_v5(&id, |c| {
            c.properties.request_response_information = Some(true)
        });
        let (_client, ack) = connect_with(&broker, asks);
        let info = ack
            .properties
            .response_information
            .as_ref()
            .map(|s| s.as_str());
        assert_eq!(info, Some(format!("responses/{id}/").as_str()));
        for request in [None, Some(false)] {
            let id = broker.id_on(shard, "silent");
            let connect = connect_v5(&id, |c| c.properties.request_response_information = request);
            let (_client, ack) = connect_with(&broker, connect);
            assert_eq!(ack.properties.response_information, None, "{request:?}");
        }
    }
}
