//! §3.1.2.5–3.1.2.7 the Will: published when a connection ends without DISCONNECT (the socket
//! closes, a protocol violation, a takeover; keep-alive timeout is in `s3_12_keepalive`), never
//! after a normal DISCONNECT, with its QoS and Retain flag honoured; MQTT 5 DISCONNECT 0x04 asks
//! for it.
//!
//! The will's client is homed on shard 1 and the watcher subscribed to it on shard 0, so a will
//! always crosses the mesh.

use coremq::protocol::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{hex, RawClient, TestBroker};
use crate::{
    acknowledge, connect, connect_packet, connect_with, disconnect, expect_disconnect,
    expect_message, publish, subscribe, will,
};

each_version!(
    mqtt_3_1_2_8_will_is_published_when_the_socket_closes_without_disconnect,
    mqtt_3_1_2_8_will_is_published_when_the_broker_closes_on_a_protocol_violation,
    mqtt_3_1_4_2_will_is_published_when_the_connection_is_taken_over,
    mqtt_3_14_4_3_will_is_not_published_after_disconnect,
    mqtt_3_1_2_17_will_qos_and_retain_are_honoured,
);

/// A CONNECT for a client homed on shard 1 with a QoS 0 will on `will/<case>`.
fn will_connect(broker: &TestBroker, v: ProtocolVersion, case: &str) -> Connect {
    Connect {
        will: Some(will(&format!("will/{case}"), case, QoS::AtMostOnce, false)),
        ..connect_packet(v, &broker.id_on(1, case), true)
    }
}

/// A client on shard 0 subscribed to every will at QoS 2.
fn watcher(broker: &TestBroker, v: ProtocolVersion) -> RawClient {
    let mut w = connect(broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut w, "will/#", QoS::ExactlyOnce);
    w
}

fn mqtt_3_1_2_8_will_is_published_when_the_socket_closes_without_disconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let (client, _) = connect_with(&broker, will_connect(&broker, v, "dropped"));
    drop(client);
    let p = expect_message(&mut watcher, "will/dropped", "dropped");
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert!(!p.retain);
}

fn mqtt_3_1_2_8_will_is_published_when_the_broker_closes_on_a_protocol_violation(
    v: ProtocolVersion,
) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let (mut client, _) = connect_with(&broker, will_connect(&broker, v, "violation"));
    // [MQTT-2.1.3-1] PINGREQ with a reserved flag set.
    client.send_bytes(&hex("c1 00"));
    expect_disconnect(&mut client, ReasonCode::MALFORMED_PACKET);
    expect_message(&mut watcher, "will/violation", "violation");
}

fn mqtt_3_1_4_2_will_is_published_when_the_connection_is_taken_over(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let with_will = will_connect(&broker, v, "takeover");
    let id = with_will.client_id.as_str().to_owned();
    let (mut old, _) = connect_with(&broker, with_will);
    let (mut new, _) = connect_with(&broker, connect_packet(v, &id, true));
    expect_disconnect(&mut old, ReasonCode::SESSION_TAKEN_OVER);
    expect_message(&mut watcher, "will/takeover", "takeover");
    crate::ping(&mut new);
}

fn mqtt_3_14_4_3_will_is_not_published_after_disconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let (client, _) = connect_with(&broker, will_connect(&broker, v, "normal"));
    disconnect(client);
    // A marker from the will client's shard, sent after the DISCONNECT was handled: had the will
    // gone out, it would arrive first (one shard's messages to another keep their order).
    let mut marker = connect(&broker, v, &broker.id_on(1, "marker"), true);
    publish(&mut marker, "will/normal", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut watcher, "will/normal", "marker");
    acknowledge(&mut watcher, &p);
}

fn mqtt_3_1_2_17_will_qos_and_retain_are_honoured(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let mut low = connect(&broker, v, &broker.id_on(0, "low"), true);
    subscribe(&mut low, "will/#", QoS::AtMostOnce);
    let with_will = Connect {
        will: Some(will("will/retained", "last words", QoS::AtLeastOnce, true)),
        ..connect_packet(v, &broker.id_on(1, "retained"), true)
    };
    let (client, _) = connect_with(&broker, with_will);
    drop(client);

    // [MQTT-3.1.2-14] the will's QoS, capped by each subscription's; [MQTT-3.3.1-9] retain 0 on
    // delivery to an existing subscription.
    let p = expect_message(&mut watcher, "will/retained", "last words");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(!p.retain);
    acknowledge(&mut watcher, &p);
    let p = expect_message(&mut low, "will/retained", "last words");
    assert_eq!(p.qos, QoS::AtMostOnce);

    // [MQTT-3.1.2-17] it was retained: a new subscription (on the watcher's shard, which has
    // applied the retained update before it received the will) gets it with retain 1.
    let mut late = connect(&broker, v, &broker.id_on(0, "late"), true);
    subscribe(&mut late, "will/+", QoS::ExactlyOnce);
    let p = expect_message(&mut late, "will/retained", "last words");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(p.retain);
    acknowledge(&mut late, &p);
}

#[test]
fn mqtt_3_14_2_1_v5_disconnect_with_will_message_publishes_the_will() {
    let v = ProtocolVersion::V5;
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let (mut client, _) = connect_with(&broker, will_connect(&broker, v, "asked"));
    client.send(&Packet::Disconnect(Disconnect::new(
        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
    )));
    assert_eq!(client.expect_close(), Vec::new());
    expect_message(&mut watcher, "will/asked", "asked");
}
