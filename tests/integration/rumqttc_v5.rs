//! MQTT 5 with rumqttc's v5 client: QoS flows and their reason codes, message properties
//! forwarded across shards, UNSUBACK codes, and the DISCONNECT packet in both directions (client
//! DISCONNECT and the will; server DISCONNECT on takeover and shutdown).

use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::{self as wire, Disconnect, LastWill, ProtocolVersion, ReasonCode};
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, PubAckReason, PubCompReason, PubRecReason, PubRelReason, Publish,
    PublishProperties, SubscribeReasonCode, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, ConnectionError, Event, MqttOptions};

use crate::common::{RawClient, TestBroker};
use crate::{raw_connect, raw_connect_with, Inbox};

/// A connected MQTT 5 rumqttc client; its event loop runs on its own thread (see `Inbox`).
pub struct Peer {
    pub client: Client,
    inbox: Inbox<Packet, ConnectionError>,
}

impl Peer {
    pub fn connect(broker: &TestBroker, id: &str) -> Self {
        Self::connect_with(broker, id, |_| {})
    }

    /// Connects as `id` (clean start) after `tweak` adjusted the options; waits for CONNACK.
    fn connect_with(broker: &TestBroker, id: &str, tweak: impl FnOnce(&mut MqttOptions)) -> Self {
        Self::connect_to(broker.port(), id, tweak)
    }

    /// Like `connect_with`, to the listener on 127.0.0.1:`port`.
    pub fn connect_to(port: u16, id: &str, tweak: impl FnOnce(&mut MqttOptions)) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        tweak(&mut opts);
        let (client, mut connection) = Client::new(opts, 16);
        let inbox = Inbox::spawn(move || {
            let event = connection.recv().ok()?;
            Some(event.map(|e| match e {
                Event::Incoming(p) => Some(p),
                Event::Outgoing(_) => None,
            }))
        });
        let peer = Self { client, inbox };
        peer.expect(|p| matches!(p, Packet::ConnAck(_)).then_some(()));
        peer
    }

    pub fn expect<T>(&self, want: impl FnMut(&Packet) -> Option<T>) -> T {
        self.inbox.expect(want)
    }

    pub fn next_publish(&self) -> Publish {
        self.expect(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
    }

    pub fn subscribe(&self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let filters = filters.iter().map(|(f, q)| Filter::new(*f, *q));
        self.client.subscribe_many(filters).unwrap();
        self.expect(|p| match p {
            Packet::SubAck(a) => Some(a.return_codes.clone()),
            _ => None,
        })
    }
}

fn topic(p: &Publish) -> &str {
    std::str::from_utf8(&p.topic).expect("utf-8 topic")
}

/// QoS 0, 1 and 2 across shards, with the reason code of every acknowledgement on both sides:
/// SUBACK grants, PUBACK / PUBREC / PUBCOMP to the publisher, PUBREL to the subscriber.
#[test]
fn v5_qos_0_1_2_across_shards_with_reason_codes() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    let codes = sub.subscribe(&[
        ("q/0", QoS::AtMostOnce),
        ("q/1", QoS::AtLeastOnce),
        ("q/2", QoS::ExactlyOnce),
    ]);
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Success(QoS::ExactlyOnce),
        ]
    );

    publ.client
        .publish("q/0", QoS::AtMostOnce, false, "zero")
        .unwrap();
    publ.client
        .publish("q/1", QoS::AtLeastOnce, false, "one")
        .unwrap();
    let puback = publ.expect(|p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    });
    assert_eq!(puback, PubAckReason::Success);
    publ.client
        .publish("q/2", QoS::ExactlyOnce, false, "two")
        .unwrap();
    let pubrec = publ.expect(|p| match p {
        Packet::PubRec(a) => Some(a.reason),
        _ => None,
    });
    assert_eq!(pubrec, PubRecReason::Success);
    let pubcomp = publ.expect(|p| match p {
        Packet::PubComp(a) => Some(a.reason),
        _ => None,
    });
    assert_eq!(pubcomp, PubCompReason::Success);

    for (want_topic, payload, qos) in [
        ("q/0", "zero", QoS::AtMostOnce),
        ("q/1", "one", QoS::AtLeastOnce),
        ("q/2", "two", QoS::ExactlyOnce),
    ] {
        let got = sub.next_publish();
        assert_eq!(
            (topic(&got), &got.payload[..], got.qos, got.retain),
            (want_topic, payload.as_bytes(), qos, false)
        );
    }
    let pubrel = sub.expect(|p| match p {
        Packet::PubRel(r) => Some(r.reason),
        _ => None,
    });
    assert_eq!(pubrel, PubRelReason::Success);
}

/// [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18]
/// [MQTT-3.3.2-20] Payload format indicator, response topic, correlation data, user properties
/// (order and duplicates kept) and content type reach subscribers on another shard unaltered —
/// at every QoS, and with the retained copy sent on subscribe.
#[test]
fn mqtt_3_3_2_17_v5_message_properties_are_forwarded_unaltered() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("props/#", QoS::ExactlyOnce)]);
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/to/me".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("k".into(), "1".into()),
            ("a".into(), "2".into()),
            ("k".into(), "3".into()),
        ],
        ..Default::default()
    };
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let name = format!("props/{i}");
        publ.client
            .publish_with_properties(name.clone(), qos, i == 2, "{}", properties.clone())
            .unwrap();
        let got = sub.next_publish();
        assert_eq!(topic(&got), name);
        assert_eq!(got.qos, qos);
        assert_eq!(got.properties.as_ref(), Some(&properties), "QoS {qos:?}");
    }
    // The retained one ("props/2", QoS 2) keeps its properties for later subscribers.
    publ.expect(|p| matches!(p, Packet::PubComp(_)).then_some(()));
    let late = Peer::connect(&broker, &broker.id_on(0, "late"));
    late.subscribe(&[("props/2", QoS::AtLeastOnce)]);
    let got = late.next_publish();
    assert!(got.retain);
    assert_eq!(got.properties.as_ref(), Some(&properties));
}

/// Topic aliases both ways with rumqttc. The broker resolves the aliases rumqttc's publisher
/// sets: a topic with alias 1, then the alias alone [MQTT-3.3.2-12]. The subscriber allows 5
/// aliases: each topic comes once named with an alias, then as the alias alone, and rumqttc
/// accepts them [MQTT-3.3.2-10] (an unknown alias would make it disconnect with 0x82). rumqttc
/// reports incoming packets before it resolves aliases, so the events show them as on the wire.
#[test]
fn mqtt_3_3_2_10_v5_topic_aliases_both_ways() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect_with(&broker, &broker.id_on(0, "sub"), |o| {
        o.set_topic_alias_max(Some(5));
    });
    sub.subscribe(&[("alias/#", QoS::AtLeastOnce)]);
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    let sends = [
        ("alias/a", Some(1), "named"),
        ("", Some(1), "aliased"),
        ("alias/b", None, "other topic"),
        ("", Some(1), "aliased again"),
    ];
    for (name, alias, payload) in sends {
        let properties = PublishProperties {
            topic_alias: alias,
            ..Default::default()
        };
        publ.client
            .publish_with_properties(name, QoS::AtLeastOnce, false, payload, properties)
            .unwrap();
        let reason = publ.expect(|p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        });
        assert_eq!(reason, PubAckReason::Success, "{payload}");
    }

    let expected = [
        ("alias/a", Some(1), "named"),
        ("", Some(1), "aliased"),
        ("alias/b", Some(2), "other topic"),
        ("", Some(1), "aliased again"),
    ];
    for (name, alias, payload) in expected {
        let got = sub.next_publish();
        let got_alias = got.properties.as_ref().and_then(|p| p.topic_alias);
        assert_eq!(
            (topic(&got), got_alias, &got.payload[..]),
            (name, alias, payload.as_bytes()),
        );
    }
}

/// MQTT 5 §3.11.3: UNSUBACK carries a reason code: Success for a subscription that existed — and
/// delivery for it stops [MQTT-3.10.4-2] — No Subscription Existed (0x11) otherwise.
#[test]
fn v5_unsuback_reason_codes_and_delivery_stops() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("u/a", QoS::AtLeastOnce), ("u/b", QoS::AtLeastOnce)]);
    for (filter, want) in [
        ("u/a", UnsubAckReason::Success),
        ("u/never", UnsubAckReason::NoSubscriptionExisted),
    ] {
        sub.client.unsubscribe(filter).unwrap();
        let reasons = sub.expect(|p| match p {
            Packet::UnsubAck(a) => Some(a.reasons.clone()),
            _ => None,
        });
        assert_eq!(reasons, [want], "{filter}");
    }
    publ.client
        .publish("u/a", QoS::AtLeastOnce, false, "gone")
        .unwrap();
    publ.client
        .publish("u/b", QoS::AtLeastOnce, false, "kept")
        .unwrap();
    let got = sub.next_publish();
    assert_eq!((topic(&got), &got.payload[..]), ("u/b", &b"kept"[..]));
}

/// [MQTT-3.14.4-3] A DISCONNECT with reason 0x00 discards the will.
#[test]
fn mqtt_3_14_4_3_v5_normal_disconnect_discards_the_will() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[("will/#", QoS::AtLeastOnce)]);
    let leaver = Peer::connect_with(&broker, &broker.id_on(1, "leaver"), |o| {
        o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
            "will/leaver",
            "gone",
            QoS::AtLeastOnce,
            false,
            None,
        ));
    });
    leaver.client.disconnect().unwrap();
    // The broker closes the connection after handling DISCONNECT, will (not) published by then.
    leaver.inbox.expect_end();
    // A sentinel from the leaver's shard follows any will through the same FIFO mesh channel.
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    publ.client
        .publish("will/end", QoS::AtLeastOnce, false, "end")
        .unwrap();
    assert_eq!(topic(&sub.next_publish()), "will/end");
}

/// MQTT 5 §3.14.2.1: DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the
/// will.
#[test]
fn v5_disconnect_with_will_message_publishes_the_will() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[("will/#", QoS::AtLeastOnce)]);
    let mut leaver = raw_connect_with(
        &broker,
        ProtocolVersion::V5,
        &broker.id_on(1, "leaver"),
        |c| {
            c.will = Some(LastWill {
                topic: wire::TopicName::from_static("will/leaver").unwrap(),
                payload: Bytes::from_static(b"gone"),
                qos: wire::QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            });
        },
    );
    leaver.send(&wire::Packet::Disconnect(Disconnect::new(
        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
    )));
    leaver.expect_close();
    let got = sub.next_publish();
    assert_eq!(
        (topic(&got), &got.payload[..], got.qos),
        ("will/leaver", &b"gone"[..], QoS::AtLeastOnce)
    );
}

/// [MQTT-3.1.4-3] A second connection with the same client id takes the session over; the first
/// gets DISCONNECT 0x8E (Session taken over) and is closed. The new connection works across
/// shards.
///
/// The first client is raw, to see the exact DISCONNECT: rumqttc 0.25 reports a server
/// DISCONNECT as "closed by peer" (and cannot parse one that omits the property length, valid by
/// MQTT 5 §3.14.2.2.1, which is why coremq always writes it).
#[test]
fn mqtt_3_1_4_3_v5_takeover_sends_disconnect_session_taken_over() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[("takeover", QoS::AtLeastOnce)]);
    let id = broker.id_on(1, "twice");
    let mut first = raw_connect(&broker, ProtocolVersion::V5, &id);
    let second = Peer::connect(&broker, &id);
    match first.expect_close().as_slice() {
        [wire::Packet::Disconnect(d)] => {
            assert_eq!(d.reason_code, ReasonCode::SESSION_TAKEN_OVER);
            assert!(d.properties.reason_string.is_some());
        }
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    second
        .client
        .publish("takeover", QoS::AtLeastOnce, false, "second")
        .unwrap();
    assert_eq!(&sub.next_publish().payload[..], b"second");
}

/// A stopping broker sends every MQTT 5 client DISCONNECT 0x8B (Server shutting down) and closes
/// every connection, on every shard; MQTT 3.1.1 has no server DISCONNECT, so those connections
/// just close.
#[test]
fn v5_shutdown_sends_disconnect_server_shutting_down() {
    let test = TestBroker::start(2);
    let mut v5: Vec<RawClient> = (0..2)
        .map(|shard| raw_connect(&test, ProtocolVersion::V5, &test.id_on(shard, "v5")))
        .collect();
    let mut v311 = raw_connect(&test, ProtocolVersion::V3_1_1, &test.id_on(1, "v311"));
    test.broker.shutdown();
    for client in &mut v5 {
        match client.expect_close().as_slice() {
            [wire::Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN);
                assert!(d.properties.reason_string.is_some());
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
    assert_eq!(v311.expect_close(), []);
}
