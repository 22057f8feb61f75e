//! Clients that die mid-flow — reset or closed in the middle of a QoS 2 exchange, half-way
//! through writing a large packet, while the broker writes a large message to them, or
//! half-open (write side shut): the broker releases the connection (counters back to their
//! baseline), publishes the will [MQTT-3.1.2-8], and a persistent session keeps its QoS 1/2
//! state, resent on reconnect [MQTT-4.4.0-1].

use std::io::Read;
use std::net::Shutdown;
use std::time::Duration;

use coremq::protocol::{Packet, ProtocolVersion, PublishAck, QoS};

use crate::common::{RawClient, TestBroker};
use crate::{
    beside, connect, connect_packet, connect_with, eventually, expect_message, handshake, kill,
    numbered, packet_id, publish, publish_packet, seq_of, stats_when, subscribe, will,
};

each_version!(
    publisher_killed_between_pubrec_and_pubrel_keeps_its_qos2_state,
    subscriber_killed_between_pubrel_and_pubcomp_gets_its_flows_resumed,
    client_killed_while_writing_a_large_packet_is_released,
    subscriber_killed_while_the_broker_writes_to_it_keeps_its_messages,
    half_open_connection_is_released_and_its_will_published,
);

/// Waits until the broker holds exactly `connections` connections and `sessions` sessions.
fn released(broker: &TestBroker, connections: usize, sessions: usize) {
    stats_when(broker, "connections released", |s| {
        s.connections == connections && s.sessions == sessions
    });
    eventually(
        "places under COREMQ_MAX_CONNECTIONS freed",
        || broker.broker.admitted_connections(),
        |&n| n == connections,
    );
}

fn publisher_killed_between_pubrec_and_pubrel_keeps_its_qos2_state(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "kill/#", QoS::ExactlyOnce);
    let id = broker.id_on(1, "publisher");
    let mut c = connect_packet(v, &id, false);
    c.will = Some(will("kill/will", "publisher gone", QoS::AtMostOnce, false));
    let mut publisher = connect_with(&broker, c).0;
    publisher.send(&publish_packet(
        "kill/data",
        b"exactly once",
        QoS::ExactlyOnce,
        7,
    ));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubRec(PublishAck::new(packet_id(7)))
    );
    let p = expect_message(&mut watcher, "kill/data", b"exactly once");
    watcher.acknowledge(&p);

    kill(publisher);
    expect_message(&mut watcher, "kill/will", b"publisher gone");
    released(&broker, 1, 2);

    // The session remembers packet id 7 awaiting PUBREL [MQTT-4.3.3-9]: the PUBREL completes the
    // exchange, and the message is not delivered again.
    let mut publisher = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut publisher, connect_packet(v, &id, false)).session_present);
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(7))));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubComp(PublishAck::new(packet_id(7)))
    );
    watcher.expect_silence(Duration::from_millis(200));
    publisher.disconnect();
    released(&broker, 1, 2);
}

fn subscriber_killed_between_pubrel_and_pubcomp_gets_its_flows_resumed(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "subscriber");
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "kill/q", QoS::ExactlyOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "publisher"), true);
    publish(&mut publisher, "kill/q", b"m1", QoS::ExactlyOnce);
    publish(&mut publisher, "kill/q", b"m2", QoS::ExactlyOnce);
    let m1 = expect_message(&mut sub, "kill/q", b"m1");
    let m2 = expect_message(&mut sub, "kill/q", b"m2");
    let (id1, id2) = (m1.packet_id.unwrap(), m2.packet_id.unwrap());
    sub.send(&Packet::PubRec(PublishAck::new(id1)));
    assert_eq!(sub.expect_packet(), Packet::PubRel(PublishAck::new(id1)));
    kill(sub);
    released(&broker, 1, 2);
    // Queued while the subscriber is away.
    publish(&mut publisher, "kill/q", b"m3", QoS::AtLeastOnce);

    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &id, false)).session_present);
    // In their original order: the PUBREL of m1, m2 again with DUP, then the queued m3.
    assert_eq!(sub.expect_packet(), Packet::PubRel(PublishAck::new(id1)));
    let again = expect_message(&mut sub, "kill/q", b"m2");
    assert_eq!((again.packet_id, again.dup), (Some(id2), true));
    let m3 = expect_message(&mut sub, "kill/q", b"m3");
    assert_eq!(m3.qos, QoS::AtLeastOnce);
    sub.send(&Packet::PubComp(PublishAck::new(id1)));
    sub.acknowledge(&again);
    sub.acknowledge(&m3);
    sub.expect_silence(Duration::from_millis(200));
    sub.disconnect();
}

fn client_killed_while_writing_a_large_packet_is_released(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "kill/#", QoS::AtMostOnce);
    released(&broker, 1, 1);
    let mut frame = bytes::BytesMut::new();
    publish_packet("kill/big", vec![b'b'; 512 * 1024], QoS::AtMostOnce, 1)
        .encode(v, &mut frame)
        .unwrap();
    for shard in 0..2 {
        let mut c = connect_packet(v, &broker.id_on(shard, "writer"), true);
        c.will = Some(will(
            &format!("kill/will/{shard}"),
            "writer gone",
            QoS::AtMostOnce,
            false,
        ));
        let mut writer = connect_with(&broker, c).0;
        // The fixed header and half of the body.
        writer.send_bytes(&frame[..frame.len() / 2]);
        if shard == 0 {
            drop(writer);
        } else {
            kill(writer);
        }
        // The will, and never the half-sent message.
        expect_message(&mut watcher, &format!("kill/will/{shard}"), b"writer gone");
        released(&broker, 1, 1);
    }
}

fn subscriber_killed_while_the_broker_writes_to_it_keeps_its_messages(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let mut watcher = connect(&broker, v, &broker.id_on(1, "watcher"), true);
    subscribe(&mut watcher, "kill/will/#", QoS::AtMostOnce);
    let id = broker.id_on(0, "subscriber");
    let mut c = connect_packet(v, &id, false);
    c.will = Some(will(
        "kill/will/subscriber",
        "subscriber gone",
        QoS::AtMostOnce,
        false,
    ));
    let mut sub = connect_with(&broker, c).0;
    subscribe(&mut sub, "kill/big", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "publisher"), true);
    // 8 × 256 KiB: more than the socket buffers take at once.
    for seq in 0..8 {
        publish(
            &mut publisher,
            "kill/big",
            numbered(seq, 256 * 1024),
            QoS::AtLeastOnce,
        );
    }
    let mut start = [0u8; 1000];
    sub.stream.read_exact(&mut start).unwrap();
    kill(sub);
    expect_message(&mut watcher, "kill/will/subscriber", b"subscriber gone");
    released(&broker, 2, 3);

    // Every message is still owed, in order: those sent before the reset again with DUP set
    // [MQTT-3.3.1-1] — at least the one it was reading — then those that were still queued
    // (COREMQ_MAX_OUTBOUND_BUFFER held them back) for the first time, without.
    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &id, false)).session_present);
    let mut dups = Vec::new();
    for seq in 0..8 {
        let p = sub.expect_publish();
        assert_eq!(seq_of(&p), seq);
        dups.push(p.dup);
        sub.acknowledge(&p);
    }
    assert!(dups[0], "{dups:?}");
    assert!(dups.windows(2).all(|w| w[0] || !w[1]), "{dups:?}");
    sub.expect_silence(Duration::from_millis(200));
    sub.disconnect();
    released(&broker, 2, 3);
}

fn half_open_connection_is_released_and_its_will_published(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "kill/will/#", QoS::AtMostOnce);
    for shard in 0..2 {
        let mut c = connect_packet(v, &broker.id_on(shard, "half"), true);
        c.will = Some(will(
            &format!("kill/will/{shard}"),
            "half open",
            QoS::AtMostOnce,
            false,
        ));
        let mut client = connect_with(&broker, c).0;
        subscribe(&mut client, "kill/half", QoS::AtMostOnce);
        client.stream.shutdown(Shutdown::Write).unwrap();
        // The broker sees the end of the stream without DISCONNECT: it closes its side too
        // (nothing to say: the client is gone) and publishes the will.
        assert_eq!(client.expect_close(), Vec::new());
        expect_message(&mut watcher, &format!("kill/will/{shard}"), b"half open");
        released(&broker, 1, 1);
    }
}
