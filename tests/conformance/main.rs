//! Conformance tests: one module per section of the MQTT specification, each case named after the
//! normative statement it checks (`mqtt_3_1_4_2_…` is [MQTT-3.1.4-2]). A case that applies to
//! both MQTT 3.1.1 and MQTT 5 is written once, as a function of the protocol version, and
//! `each_version!` turns it into the tests `case::v3_1_1` and `case::v5`.
//!
//! Every test starts its own broker in-process with 2 shards and drives it with `RawClient`, so
//! the bytes on the wire are exactly the ones the case names. Clients are placed on shards on
//! purpose (`TestBroker::id_on`): publisher and subscriber, or a will's sender and its receiver,
//! live on different shards. Cases assert behaviour, never timings; waits are generous.

#[path = "../common/mod.rs"]
mod common;

use std::num::NonZeroU16;

use bytes::Bytes;
use coremq::protocol::{
    ConnAck, Connect, LastWill, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilter, TopicName, WillProperties,
};

use common::{RawClient, TestBroker};

/// Turns each `case(version)` function into a module of two tests, `case::v3_1_1` and `case::v5`.
macro_rules! each_version {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn v3_1_1() {
                super::$case(coremq::protocol::ProtocolVersion::V3_1_1)
            }

            #[test]
            fn v5() {
                super::$case(coremq::protocol::ProtocolVersion::V5)
            }
        }
    )*};
}

mod s2_malformed;
mod s2_malformed_connect;
mod s3_01_connect;
mod s3_01_session;
mod s3_03_will;
mod s3_04_acks;
mod s3_12_keepalive;
mod s3_mqtt5;

use common::connect_packet;

/// A will on `topic` with `payload`.
fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic_name(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

/// Opens a connection and sends `connect`; returns the client and the broker's CONNACK, which
/// must accept the connection.
fn connect_with(broker: &TestBroker, connect: Connect) -> (RawClient, Box<ConnAck>) {
    let mut client = RawClient::connect(broker.addr, connect.protocol);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_packet() {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK refused");
            (client, ack)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// `connect_with` the default CONNECT of `connect_packet`.
fn connect(broker: &TestBroker, v: ProtocolVersion, client_id: &str, clean: bool) -> RawClient {
    connect_with(broker, connect_packet(v, client_id, clean)).0
}

fn topic_name(s: &str) -> TopicName {
    TopicName::copy_from(s).unwrap()
}

fn packet_id(id: u16) -> PacketId {
    PacketId(NonZeroU16::new(id).unwrap())
}

/// Subscribes to `filter` at `qos` and waits for the SUBACK granting it.
fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::copy_from(filter).unwrap(),
            SubscriptionOptions::with_qos(qos),
        )],
    }));
    match client.expect_packet() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id(1));
            assert_eq!(ack.reason_codes, vec![ReasonCode::granted(qos)]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes `payload` to `topic` and completes the sender's side of the QoS flow (PUBACK, or
/// PUBREC / PUBREL / PUBCOMP), so the broker has routed the message when this returns.
fn publish(client: &mut RawClient, topic: &str, payload: &str, qos: QoS) {
    let id = packet_id(1);
    client.send(&Packet::Publish(Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        ..Publish::new(
            topic_name(topic),
            Bytes::copy_from_slice(payload.as_bytes()),
        )
    }));
    client.finish_publish(id, qos);
}

/// The next packet, which must be a PUBLISH.
fn expect_publish(client: &mut RawClient) -> Publish {
    client.expect_publish()
}

/// The next packet must be a PUBLISH of `payload` to `topic`; returns it for further checks.
fn expect_message(client: &mut RawClient, topic: &str, payload: &str) -> Publish {
    let p = expect_publish(client);
    assert_eq!(p.topic.as_str(), topic);
    assert_eq!(&p.payload[..], payload.as_bytes(), "payload on {topic}");
    p
}

/// Completes the receiver's side of a delivery's QoS flow.
fn acknowledge(client: &mut RawClient, p: &Publish) {
    client.acknowledge(p)
}

/// Sends DISCONNECT and waits until the broker closes the connection.
fn disconnect(client: RawClient) {
    client.disconnect()
}

/// See `RawClient::expect_disconnect`.
fn expect_disconnect(client: &mut RawClient, reason: ReasonCode) {
    client.expect_disconnect(reason)
}

/// PINGREQ, and the PINGRESP that shows the broker still serves this connection.
fn ping(client: &mut RawClient) {
    client.send(&Packet::PingReq);
    assert_eq!(client.expect_packet(), Packet::PingResp);
}

/// A frame of type-and-flags byte `first`: the fixed header (remaining length as a variable byte
/// integer) and `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// `packets` as bytes on the wire of a `v` connection (to compare with a case's expected hex).
fn wire(packets: &[Packet], v: ProtocolVersion) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for p in packets {
        p.encode(v, &mut out).unwrap();
    }
    out.to_vec()
}
