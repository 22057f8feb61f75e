//! §3.1.2.10 Keep Alive and §3.12 PINGREQ / §3.13 PINGRESP: a client silent for one and a half
//! keep-alive periods is disconnected (MQTT 5: DISCONNECT 0x8D) and its will published; PINGREQ
//! is answered and keeps the connection alive; keep alive 0 turns the timeout off.
//!
//! Keep alive is 1 s, the shortest the protocol allows. The cases check what happens and in
//! which order, with margins wide enough for a loaded machine, not how long it takes.

use std::time::{Duration, Instant};

use coremq::protocol::{Connect, ProtocolVersion, QoS, ReasonCode};

use crate::common::{RawClient, TestBroker};
use crate::{connect, connect_packet, connect_with, expect_message, ping, subscribe, will};

each_version!(
    mqtt_3_1_2_24_silent_client_is_disconnected_after_one_and_a_half_keep_alives,
    mqtt_3_12_4_1_pingreq_is_answered_and_keeps_the_connection_alive,
    mqtt_3_1_2_10_keep_alive_0_disables_the_timeout,
    mqtt_3_1_2_8_will_is_published_on_keep_alive_timeout,
);

/// Connects a client homed on `shard` with keep alive 1 s and the given will.
fn connect_keep_alive_1(
    broker: &TestBroker,
    v: ProtocolVersion,
    shard: usize,
    will: Option<coremq::protocol::LastWill>,
) -> RawClient {
    let connect = Connect {
        keep_alive: 1,
        will,
        ..connect_packet(v, &broker.id_on(shard, "keepalive"), true)
    };
    let (client, ack) = connect_with(broker, connect);
    // The broker keeps the client's value (MQTT 5 could impose its own).
    assert_eq!(ack.properties.server_keep_alive, None);
    client
}

fn mqtt_3_1_2_24_silent_client_is_disconnected_after_one_and_a_half_keep_alives(
    v: ProtocolVersion,
) {
    let broker = TestBroker::start(2);
    let start = Instant::now();
    let mut client = connect_keep_alive_1(&broker, v, 1, None);
    // Within the keep-alive period the connection stays open...
    client.expect_silence(Duration::from_millis(500));
    // ...and after one and a half of them without a packet it is closed.
    client.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        start.elapsed()
    );
}

fn mqtt_3_12_4_1_pingreq_is_answered_and_keeps_the_connection_alive(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut client = connect_keep_alive_1(&broker, v, 1, None);
    // PINGREQ every half period for two seconds, longer than the 1.5 s the broker allows a
    // silent client.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        ping(&mut client);
        std::thread::sleep(Duration::from_millis(400));
    }
    ping(&mut client);
}

fn mqtt_3_1_2_10_keep_alive_0_disables_the_timeout(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut client = connect(&broker, v, &broker.id_on(1, "forever"), true);
    client.expect_silence(Duration::from_secs(2));
    ping(&mut client);
}

fn mqtt_3_1_2_8_will_is_published_on_keep_alive_timeout(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "will/#", QoS::AtLeastOnce);
    let last_will = will("will/silent", "timed out", QoS::AtMostOnce, false);
    let mut client = connect_keep_alive_1(&broker, v, 1, Some(last_will));
    client.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT);
    expect_message(&mut watcher, "will/silent", "timed out");
}
