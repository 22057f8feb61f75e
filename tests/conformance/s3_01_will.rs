//! §3.1.2.5–3.1.2.7 the Will: published when a connection ends without DISCONNECT (the socket
//! closes, a protocol violation, a takeover; keep-alive timeout is in `s3_12_keepalive`), never
//! after a normal DISCONNECT, with its QoS and Retain flag honoured; MQTT 5 DISCONNECT 0x04 asks
//! for it.
//!
//! The will's client is homed on shard 1 and the watcher subscribed to it on shard 0, so a will
//! always crosses the mesh.

use std::thread;
use std::time::Duration;

use coremq::protocol::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{hex, RawClient, TestBroker};
use crate::v5::*;
use crate::{
    connect, connect_packet, connect_with, expect_message, ping, publish, subscribe, will,
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
    client.expect_disconnect(ReasonCode::MALFORMED_PACKET);
    expect_message(&mut watcher, "will/violation", "violation");
}

fn mqtt_3_1_4_2_will_is_published_when_the_connection_is_taken_over(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let with_will = will_connect(&broker, v, "takeover");
    let id = with_will.client_id.as_str().to_owned();
    let (mut old, _) = connect_with(&broker, with_will);
    let (mut new, _) = connect_with(&broker, connect_packet(v, &id, true));
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    expect_message(&mut watcher, "will/takeover", "takeover");
    crate::ping(&mut new);
}

fn mqtt_3_14_4_3_will_is_not_published_after_disconnect(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = watcher(&broker, v);
    let (client, _) = connect_with(&broker, will_connect(&broker, v, "normal"));
    client.disconnect();
    // A marker from the will client's shard, sent after the DISCONNECT was handled: had the will
    // gone out, it would arrive first (one shard's messages to another keep their order).
    let mut marker = connect(&broker, v, &broker.id_on(1, "marker"), true);
    publish(&mut marker, "will/normal", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut watcher, "will/normal", "marker");
    watcher.acknowledge(&p);
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
    watcher.acknowledge(&p);
    let p = expect_message(&mut low, "will/retained", "last words");
    assert_eq!(p.qos, QoS::AtMostOnce);

    // [MQTT-3.1.2-17] it was retained: a new subscription (on the watcher's shard, which has
    // applied the retained update before it received the will) gets it with retain 1.
    let mut late = connect(&broker, v, &broker.id_on(0, "late"), true);
    subscribe(&mut late, "will/+", QoS::ExactlyOnce);
    let p = expect_message(&mut late, "will/retained", "last words");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(p.retain);
    late.acknowledge(&p);
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

// §3.1.3.2.2 Will Delay Interval.

#[test]
fn mqtt_3_1_2_8_delayed_will_is_published_after_the_will_delay_interval() {
    let broker = TestBroker::start(2);
    let mut watcher = will_watcher(&broker);
    let id = broker.id_on(1, "delayed");
    let client = connect_with(&broker, delayed_will_connect(&id, "will/delayed", 2, 300)).0;
    break_connection(client);
    // Not when the connection ends (a quarter of the delay later, nothing yet)...
    watcher.expect_silence(Duration::from_millis(500));
    // ...but once the delay has passed, while the session still exists.
    let p = expect_message(&mut watcher, "will/delayed", "will/delayed");
    watcher.acknowledge(&p);
}

#[test]
fn mqtt_3_1_3_9_will_delay_is_cancelled_by_a_reconnect() {
    let broker = TestBroker::start(2);
    let mut watcher = will_watcher(&broker);
    let id = broker.id_on(1, "back");
    let client = connect_with(&broker, delayed_will_connect(&id, "will/back", 2, 300)).0;
    break_connection(client);
    // Back within the delay, resuming the session: the will must not go out.
    let (mut back, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(ack.session_present);
    thread::sleep(Duration::from_millis(2500));
    // Past the delay, a marker from the will's shard is the first thing the watcher gets.
    let mut marker = connect(&broker, V5, &broker.id_on(1, "marker"), true);
    publish(&mut marker, "will/back", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut watcher, "will/back", "marker");
    watcher.acknowledge(&p);
    ping(&mut back);
}

#[test]
fn mqtt_3_1_2_8_delayed_will_is_published_when_the_session_ends_first() {
    let broker = TestBroker::start(2);
    let mut watcher = will_watcher(&broker);
    // Session Expiry 0: the session ends with the connection, and the will with it.
    let now = broker.id_on(1, "ends-now");
    let client = connect_with(&broker, delayed_will_connect(&now, "will/now", 300, 0)).0;
    break_connection(client);
    let p = expect_message(&mut watcher, "will/now", "will/now");
    watcher.acknowledge(&p);
    // Session Expiry 1 s: the will goes when the session expires, long before its delay.
    let soon = broker.id_on(1, "ends-soon");
    let client = connect_with(&broker, delayed_will_connect(&soon, "will/soon", 300, 1)).0;
    break_connection(client);
    let p = expect_message(&mut watcher, "will/soon", "will/soon");
    watcher.acknowledge(&p);
    let (_client, ack) = connect_with(&broker, session_connect(&soon, false, 300));
    assert!(!ack.session_present, "the session ended");
}

#[test]
fn mqtt_3_1_4_3_takeover_publishes_a_delayed_will_only_with_clean_start() {
    let broker = TestBroker::start(2);
    let mut watcher = will_watcher(&broker);
    // Clean Start 0 continues the session: the old connection's delayed will is cancelled.
    let kept = broker.id_on(1, "kept");
    let mut old = connect_with(&broker, delayed_will_connect(&kept, "will/kept", 300, 300)).0;
    let (mut new, ack) = connect_with(&broker, session_connect(&kept, false, 300));
    assert!(ack.session_present);
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    // Clean Start 1 ends the session: the will goes out at once.
    let ended = broker.id_on(1, "ended");
    let mut old = connect_with(
        &broker,
        delayed_will_connect(&ended, "will/ended", 300, 300),
    )
    .0;
    let (_replaced, ack) = connect_with(&broker, session_connect(&ended, true, 300));
    assert!(!ack.session_present);
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    // Both wills are from shard 1, in order: "will/kept" would have come first.
    let p = expect_message(&mut watcher, "will/ended", "will/ended");
    watcher.acknowledge(&p);
    ping(&mut new);
}
