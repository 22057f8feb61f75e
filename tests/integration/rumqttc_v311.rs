//! MQTT 3.1.1 with the rumqttc client: QoS flows end to end, subscription semantics, wildcards,
//! retained messages and cross-shard fan-out.
//!
//! Absence is asserted without sleeping: a test publishes the message that must *not* arrive,
//! then a sentinel from the same publisher that must; the broker keeps one publisher's messages
//! in order towards one subscriber (one home shard, FIFO mesh), so once the sentinel is in, the
//! other message would have been too.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::{self as wire, PacketId, ProtocolVersion, PublishAck, TopicName};
use rumqttc::{
    Client, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};

use crate::common::{id_on, TestBroker};
use crate::{raw_connect, Inbox};

/// A connected rumqttc client; its event loop runs on its own thread (see `Inbox`).
pub struct Peer {
    pub client: Client,
    inbox: Inbox<Packet, ConnectionError>,
}

impl Peer {
    /// Connects as `id` (clean session) and waits for CONNACK.
    pub fn connect(broker: &TestBroker, id: &str) -> Self {
        let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
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

    /// The next packet `want` accepts, skipping the others.
    pub fn expect<T>(&self, want: impl FnMut(&Packet) -> Option<T>) -> T {
        self.inbox.expect(want)
    }

    pub fn next_publish(&self) -> Publish {
        self.expect(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
    }

    /// Every PUBLISH received up to and including the first on topic `last`.
    pub fn publishes_until(&self, last: &str) -> Vec<Publish> {
        let mut got = Vec::new();
        loop {
            let p = self.next_publish();
            let done = p.topic == last;
            got.push(p);
            if done {
                return got;
            }
        }
    }

    /// Subscribes to `filters` in one SUBSCRIBE and returns the SUBACK's codes.
    pub fn subscribe(&self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let filters = filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new(f.to_string(), *q));
        self.client.subscribe_many(filters).unwrap();
        self.expect(|p| match p {
            Packet::SubAck(a) => Some(a.return_codes.clone()),
            _ => None,
        })
    }

    /// Publishes and, for QoS 1 and 2, waits until the flow completed (PUBACK, PUBCOMP).
    pub fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos, retain, payload).unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.expect(|p| matches!(p, Packet::PubAck(_)).then_some(())),
            QoS::ExactlyOnce => self.expect(|p| matches!(p, Packet::PubComp(_)).then_some(())),
        }
    }
}

const QOS_ALL: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("utf-8 payload")
}

/// (topic, payload, qos, retain) of each publish, for whole-sequence assertions.
fn summary(publishes: &[Publish]) -> Vec<(String, String, QoS, bool)> {
    publishes
        .iter()
        .map(|p| (p.topic.clone(), text(p).to_string(), p.qos, p.retain))
        .collect()
}

fn entry(topic: &str, payload: &str, qos: QoS, retain: bool) -> (String, String, QoS, bool) {
    (topic.to_string(), payload.to_string(), qos, retain)
}

#[test]
fn publish_reaches_a_subscriber_on_another_shard() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("x/+", QoS::AtLeastOnce)]);
    publ.publish("x/y", QoS::AtLeastOnce, false, "hello");
    let got = sub.next_publish();
    assert_eq!(got.topic, "x/y");
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(!got.retain);
}

#[test]
fn qos_0_1_2_end_to_end_in_both_directions() {
    let broker = TestBroker::start(2);
    let a = Peer::connect(&broker, &broker.id_on(0, "a"));
    let b = Peer::connect(&broker, &broker.id_on(1, "b"));
    a.subscribe(&[("to/a/#", QoS::ExactlyOnce)]);
    b.subscribe(&[("to/b/#", QoS::ExactlyOnce)]);
    for (from, to, name) in [(&a, &b, "b"), (&b, &a, "a")] {
        for qos in QOS_ALL {
            let topic = format!("to/{name}/{}", qos as u8);
            from.publish(&topic, qos, false, format!("qos {}", qos as u8));
            let got = to.next_publish();
            assert_eq!(
                summary(&[got]),
                [entry(&topic, &format!("qos {}", qos as u8), qos, false)]
            );
        }
        // The receiving side's QoS 2 flow completes too: the broker answers its PUBREC.
        to.expect(|p| matches!(p, Packet::PubRel(_)).then_some(()));
    }
}

/// [MQTT-4.3.3-2] Until PUBREL, a resent QoS 2 PUBLISH with the same packet id is acknowledged
/// with PUBREC but not delivered again; after PUBCOMP the id starts a new publication.
#[test]
fn mqtt_4_3_3_2_qos2_resend_before_pubrel_is_delivered_once() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[("once/#", QoS::ExactlyOnce)]);
    let mut publ = raw_connect(&broker, ProtocolVersion::V3_1_1, &broker.id_on(1, "pub"));

    let id = PacketId::new(7).unwrap();
    let mut publish = wire::Publish {
        qos: wire::QoS::ExactlyOnce,
        packet_id: Some(id),
        ..wire::Publish::new(
            TopicName::from_static("once/x").unwrap(),
            Bytes::from_static(b"first"),
        )
    };
    publ.send(&wire::Packet::Publish(publish.clone()));
    assert_eq!(
        publ.expect_packet(),
        wire::Packet::PubRec(PublishAck::new(id))
    );
    publish.dup = true;
    publ.send(&wire::Packet::Publish(publish.clone()));
    assert_eq!(
        publ.expect_packet(),
        wire::Packet::PubRec(PublishAck::new(id))
    );
    publ.send(&wire::Packet::PubRel(PublishAck::new(id)));
    assert_eq!(
        publ.expect_packet(),
        wire::Packet::PubComp(PublishAck::new(id))
    );

    // The released id carries a new message, which is delivered.
    publish.dup = false;
    publish.topic = TopicName::from_static("once/y").unwrap();
    publish.payload = Bytes::from_static(b"second");
    publ.send(&wire::Packet::Publish(publish));
    assert_eq!(
        publ.expect_packet(),
        wire::Packet::PubRec(PublishAck::new(id))
    );
    publ.send(&wire::Packet::PubRel(PublishAck::new(id)));
    assert_eq!(
        publ.expect_packet(),
        wire::Packet::PubComp(PublishAck::new(id))
    );

    assert_eq!(
        summary(&sub.publishes_until("once/y")),
        [
            entry("once/x", "first", QoS::ExactlyOnce, false),
            entry("once/y", "second", QoS::ExactlyOnce, false),
        ]
    );
}

/// [MQTT-3.8.4-6] A message goes out at the lower of its own QoS and the subscription's.
#[test]
fn mqtt_3_8_4_6_delivery_qos_is_min_of_published_and_granted() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    let filters: Vec<(String, QoS)> = QOS_ALL
        .iter()
        .map(|q| (format!("down/{}", *q as u8), *q))
        .collect();
    let refs: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    sub.subscribe(&refs);
    let mut expected = BTreeMap::new();
    for (topic, granted) in &filters {
        for published in QOS_ALL {
            let payload = format!("published at {}", published as u8);
            publ.publish(topic, published, false, payload.clone());
            let delivered = if published as u8 <= *granted as u8 {
                published
            } else {
                *granted
            };
            expected.insert((topic.clone(), payload), delivered);
        }
    }
    let mut got = BTreeMap::new();
    while got.len() < expected.len() {
        let p = sub.next_publish();
        let key = (p.topic.clone(), text(&p).to_string());
        assert!(got.insert(key, p.qos).is_none(), "a duplicate of {p:?}");
    }
    assert_eq!(got, expected);
}

/// [MQTT-3.3.5-1] Overlapping subscriptions of one client: one copy, at the highest QoS of the
/// matching subscriptions.
#[test]
fn mqtt_3_3_5_1_overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("a/#", QoS::AtMostOnce)]);
    sub.subscribe(&[("a/b", QoS::ExactlyOnce)]);
    publ.publish("a/b", QoS::ExactlyOnce, false, "two");
    publ.publish("a/b", QoS::AtLeastOnce, false, "one");
    publ.publish("a/c", QoS::ExactlyOnce, false, "end");
    assert_eq!(
        summary(&sub.publishes_until("a/c")),
        [
            entry("a/b", "two", QoS::ExactlyOnce, false),
            entry("a/b", "one", QoS::AtLeastOnce, false),
            entry("a/c", "end", QoS::AtMostOnce, false),
        ]
    );
}

/// [MQTT-4.6.0-6] Messages of one topic and QoS reach a subscriber in the order the publisher
/// sent them — here 200 QoS 1 messages, far beyond the inflight window, across shards.
#[test]
fn mqtt_4_6_0_6_one_publishers_messages_arrive_in_order() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("seq", QoS::AtLeastOnce)]);
    for i in 0..200 {
        publ.client
            .publish("seq", QoS::AtLeastOnce, false, i.to_string())
            .unwrap();
    }
    let got: Vec<String> = (0..200)
        .map(|_| text(&sub.next_publish()).to_string())
        .collect();
    let want: Vec<String> = (0..200).map(|i: i32| i.to_string()).collect();
    assert_eq!(got, want);
}

/// [MQTT-3.9.3-1] [MQTT-3.8.4-5] SUBACK has one return code per filter, in the SUBSCRIBE's
/// order, each the QoS granted — and deliveries honour it.
#[test]
fn mqtt_3_9_3_1_suback_grants_qos_per_filter_in_order() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    let codes = sub.subscribe(&[
        ("g/2", QoS::ExactlyOnce),
        ("g/0", QoS::AtMostOnce),
        ("g/1", QoS::AtLeastOnce),
    ]);
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::ExactlyOnce),
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
        ]
    );
    for topic in ["g/2", "g/0", "g/1"] {
        publ.publish(topic, QoS::ExactlyOnce, false, "x");
    }
    let qos: Vec<QoS> = (0..3).map(|_| sub.next_publish().qos).collect();
    assert_eq!(qos, [QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtLeastOnce]);
}

/// [MQTT-3.10.4-2] After UNSUBACK the broker adds no new messages for the removed subscription;
/// the client's other subscriptions keep working.
#[test]
fn mqtt_3_10_4_2_unsubscribe_stops_delivery() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    sub.subscribe(&[("u/a", QoS::AtLeastOnce), ("u/b", QoS::AtLeastOnce)]);
    publ.publish("u/a", QoS::AtLeastOnce, false, "before");
    assert_eq!(text(&sub.next_publish()), "before");
    sub.client.unsubscribe("u/a").unwrap();
    sub.expect(|p| matches!(p, Packet::UnsubAck(_)).then_some(()));
    publ.publish("u/a", QoS::AtLeastOnce, false, "after");
    publ.publish("u/b", QoS::AtLeastOnce, false, "end");
    assert_eq!(
        summary(&sub.publishes_until("u/b")),
        [entry("u/b", "end", QoS::AtLeastOnce, false)]
    );
}

/// §4.7.1: `+` matches exactly one level (also an empty one); `#` matches any number of levels,
/// including the parent level itself.
#[test]
fn mqtt_4_7_1_wildcards_plus_and_hash_match_levels() {
    let broker = TestBroker::start(2);
    let plus = Peer::connect(&broker, &broker.id_on(0, "plus"));
    let hash = Peer::connect(&broker, &broker.id_on(0, "hash"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    plus.subscribe(&[("w/+/x", QoS::AtLeastOnce), ("w/end", QoS::AtLeastOnce)]);
    hash.subscribe(&[("w/a/#", QoS::AtLeastOnce), ("w/end", QoS::AtLeastOnce)]);
    let topics = [
        "w/a/x", "w/b/x", "w//x", "w/a", "w/a/b/c", "w/a/x/y", "w/b", "w/x", "w/end",
    ];
    for topic in topics {
        publ.publish(topic, QoS::AtLeastOnce, false, "m");
    }
    let topics_of = |peer: &Peer| -> Vec<String> {
        peer.publishes_until("w/end")
            .into_iter()
            .map(|p| p.topic)
            .collect()
    };
    assert_eq!(topics_of(&plus), ["w/a/x", "w/b/x", "w//x", "w/end"]);
    assert_eq!(
        topics_of(&hash),
        ["w/a/x", "w/a", "w/a/b/c", "w/a/x/y", "w/end"]
    );
}

/// [MQTT-4.7.2-1] Filters starting with a wildcard do not match topics starting with `$`;
/// `$app/#` does. (Clients may publish to `$` topics other than the broker's own `$SYS/`.)
#[test]
fn mqtt_4_7_2_1_dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = TestBroker::start(2);
    let wild = Peer::connect(&broker, &broker.id_on(0, "wild"));
    let sys = Peer::connect(&broker, &broker.id_on(0, "sys"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    wild.subscribe(&[("#", QoS::AtLeastOnce), ("+/status", QoS::AtLeastOnce)]);
    sys.subscribe(&[("$app/#", QoS::AtLeastOnce), ("x/status", QoS::AtLeastOnce)]);
    publ.publish("$app/status", QoS::AtLeastOnce, false, "sys");
    publ.publish("x/status", QoS::AtLeastOnce, false, "end");
    assert_eq!(
        summary(&wild.publishes_until("x/status")),
        [entry("x/status", "end", QoS::AtLeastOnce, false)]
    );
    assert_eq!(
        summary(&sys.publishes_until("x/status")),
        [
            entry("$app/status", "sys", QoS::AtLeastOnce, false),
            entry("x/status", "end", QoS::AtLeastOnce, false),
        ]
    );
}

/// Retained tests run on 3 shards with the publisher on shard 1, subscribers on shards 0 and 2,
/// and a topic whose retained updates are ordered by shard 2 — three different shards.
struct RetainedSetup {
    broker: TestBroker,
    publ: Peer,
    topic: String,
}

fn retained_setup() -> RetainedSetup {
    let broker = TestBroker::start(3);
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    // A topic name whose retain owner (the same hash as a client id's home) is shard 2.
    let topic = id_on(3, 2, "retained/t");
    RetainedSetup {
        broker,
        publ,
        topic,
    }
}

/// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] A retained message is stored and sent, with
/// RETAIN set, to a subscription made right after the publisher's PUBACK — on another shard.
#[test]
fn mqtt_3_3_1_8_retained_message_is_sent_on_subscribe_with_retain_set() {
    let RetainedSetup {
        broker,
        publ,
        topic,
    } = retained_setup();
    publ.publish(&topic, QoS::AtLeastOnce, true, "kept");
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[("retained/#", QoS::ExactlyOnce)]);
    assert_eq!(
        summary(&[sub.next_publish()]),
        [entry(&topic, "kept", QoS::AtLeastOnce, true)]
    );
    // An exact-name subscription is a new subscription too.
    let sub2 = Peer::connect(&broker, &broker.id_on(2, "sub2"));
    sub2.subscribe(&[(&topic, QoS::AtMostOnce)]);
    assert_eq!(
        summary(&[sub2.next_publish()]),
        [entry(&topic, "kept", QoS::AtMostOnce, true)]
    );
}

/// [MQTT-3.3.1-5] A new retained message replaces the previous one (here a QoS 1 one by a QoS 2
/// one, subscribed to right after its PUBCOMP).
#[test]
fn mqtt_3_3_1_5_retained_message_is_replaced() {
    let RetainedSetup {
        broker,
        publ,
        topic,
    } = retained_setup();
    publ.publish(&topic, QoS::AtLeastOnce, true, "v1");
    publ.publish(&topic, QoS::ExactlyOnce, true, "v2");
    let sub = Peer::connect(&broker, &broker.id_on(0, "sub"));
    sub.subscribe(&[(&topic, QoS::ExactlyOnce)]);
    publ.publish(&topic, QoS::AtLeastOnce, false, "live");
    let got = sub.publishes_until(&topic);
    assert_eq!(summary(&got), [entry(&topic, "v2", QoS::ExactlyOnce, true)]);
    assert_eq!(
        summary(&[sub.next_publish()]),
        [entry(&topic, "live", QoS::AtLeastOnce, false)]
    );
}

/// [MQTT-3.3.1-10] [MQTT-3.3.1-11] A retained PUBLISH with an empty payload goes to current
/// subscribers as usual and removes the retained message: a later subscriber gets nothing.
#[test]
fn mqtt_3_3_1_10_empty_retained_payload_deletes_the_retained_message() {
    let RetainedSetup {
        broker,
        publ,
        topic,
    } = retained_setup();
    let watcher = Peer::connect(&broker, &broker.id_on(0, "watcher"));
    watcher.subscribe(&[(&topic, QoS::AtLeastOnce)]);
    publ.publish(&topic, QoS::AtLeastOnce, true, "kept");
    publ.publish(&topic, QoS::AtLeastOnce, true, "");
    assert_eq!(
        summary(&[watcher.next_publish(), watcher.next_publish()]),
        [
            entry(&topic, "kept", QoS::AtLeastOnce, false),
            entry(&topic, "", QoS::AtLeastOnce, false),
        ]
    );
    let sub = Peer::connect(&broker, &broker.id_on(2, "sub"));
    sub.subscribe(&[(&topic, QoS::AtLeastOnce)]);
    publ.publish(&topic, QoS::AtLeastOnce, false, "live");
    assert_eq!(
        summary(&[sub.next_publish()]),
        [entry(&topic, "live", QoS::AtLeastOnce, false)]
    );
}

/// [MQTT-3.3.1-9] A message forwarded to an established subscription has RETAIN cleared, however
/// it was published; the same message sent because of a new subscription has it set
/// [MQTT-3.3.1-8].
#[test]
fn mqtt_3_3_1_9_retain_cleared_on_normal_forwarding() {
    let RetainedSetup {
        broker,
        publ,
        topic,
    } = retained_setup();
    let watcher = Peer::connect(&broker, &broker.id_on(0, "watcher"));
    watcher.subscribe(&[(&topic, QoS::ExactlyOnce)]);
    for qos in QOS_ALL {
        publ.publish(&topic, qos, true, format!("qos {}", qos as u8));
        let got = watcher.next_publish();
        assert_eq!(
            summary(&[got]),
            [entry(&topic, &format!("qos {}", qos as u8), qos, false)]
        );
    }
    let sub = Peer::connect(&broker, &broker.id_on(2, "sub"));
    sub.subscribe(&[(&topic, QoS::ExactlyOnce)]);
    assert_eq!(
        summary(&[sub.next_publish()]),
        [entry(&topic, "qos 2", QoS::ExactlyOnce, true)]
    );
}

/// One publisher, a subscriber homed on each of 3 shards (one of them the publisher's): each gets
/// every message, in order.
#[test]
fn fan_out_reaches_subscribers_on_every_shard() {
    let broker = TestBroker::start(3);
    let subs: Vec<Peer> = (0..3)
        .map(|shard| Peer::connect(&broker, &broker.id_on(shard, "sub")))
        .collect();
    for sub in &subs {
        sub.subscribe(&[("fan/#", QoS::AtLeastOnce)]);
    }
    let publ = Peer::connect(&broker, &broker.id_on(1, "pub"));
    for i in 0..50 {
        publ.client
            .publish(
                format!("fan/{}", i % 5),
                QoS::AtLeastOnce,
                false,
                i.to_string(),
            )
            .unwrap();
    }
    let want: Vec<String> = (0..50).map(|i: i32| i.to_string()).collect();
    for (shard, sub) in subs.iter().enumerate() {
        let got: Vec<String> = (0..50)
            .map(|_| text(&sub.next_publish()).to_string())
            .collect();
        assert_eq!(got, want, "subscriber on shard {shard}");
    }
}
