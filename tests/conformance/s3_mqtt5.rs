//! MQTT 5 only: Session Expiry and Will Delay intervals, topic aliases in both directions,
//! subscription options (No Local, Retain As Published, Retain Handling) and identifiers, Message
//! Expiry, Receive Maximum both ways, the server limits CONNACK advertises and enforces (Maximum
//! QoS, Retain Available, Topic Alias Maximum, Server Keep Alive), Response Information and the
//! 0x10 No Matching Subscribers acknowledgement. Every server DISCONNECT is checked for its reason
//! code and a reason string (`expect_disconnect`).
//!
//! Subscribers, watchers and sessions are homed on shard 0, publishers and wills on shard 1, so
//! every delivery crosses the mesh. Intervals are 1–2 s; a case sleeps well past them and asserts
//! what happened (or, with a marker published last, what did not), never how long it took.

use std::num::{NonZeroU16, NonZeroU32};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::{
    ConnAck, Connect, Disconnect, DisconnectProperties, Packet, ProtocolVersion, Publish,
    PublishAck, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName,
};

use crate::common::{hex, RawClient, TestBroker};
use crate::{
    acknowledge, connect, connect_packet, connect_with, disconnect, expect_disconnect,
    expect_message, frame, packet_id, ping, publish, subscribe, topic_name, will,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A clean MQTT 5 CONNECT for `id` (no Session Expiry Interval: the session ends with the
/// connection), adjusted by `tweak`.
fn connect_v5(id: &str, tweak: impl FnOnce(&mut Connect)) -> Connect {
    let mut connect = connect_packet(V5, id, true);
    tweak(&mut connect);
    connect
}

/// A CONNECT with Clean Start `clean_start` for a session that outlives its connection by
/// `expiry` seconds (0xFFFFFFFF: forever).
fn session_connect(id: &str, clean_start: bool, expiry: u32) -> Connect {
    connect_v5(id, |c| {
        c.clean_start = clean_start;
        c.properties.session_expiry_interval = Some(expiry);
    })
}

/// `session_connect` with a will on `topic` (payload: the topic) delayed by `delay` seconds.
fn delayed_will_connect(id: &str, topic: &str, delay: u32, expiry: u32) -> Connect {
    let mut connect = session_connect(id, true, expiry);
    let mut last_will = will(topic, topic, QoS::AtMostOnce, false);
    last_will.properties.will_delay_interval = Some(delay);
    connect.will = Some(last_will);
    connect
}

/// Sends `connect`, which the broker must refuse: returns the CONNACK it sent before closing.
fn expect_refused(broker: &TestBroker, connect: Connect) -> ConnAck {
    let mut client = RawClient::connect(broker.addr, V5);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_close().as_slice() {
        [Packet::ConnAck(ack)] => {
            assert!(!ack.session_present, "[MQTT-3.2.2-6]");
            (**ack).clone()
        }
        other => panic!("expected a CONNACK and a close, got {other:?}"),
    }
}

/// A PUBLISH of `payload` to `topic` at `qos`, with packet id 1 for QoS 1/2. An empty `topic`
/// is the empty Topic Name that stands for a Topic Alias.
fn message(topic: &str, payload: &str, qos: QoS) -> Publish {
    let name = if topic.is_empty() {
        TopicName::default()
    } else {
        topic_name(topic)
    };
    Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(1)),
        ..Publish::new(name, Bytes::copy_from_slice(payload.as_bytes()))
    }
}

/// `message` with a Topic Alias.
fn aliased(topic: &str, payload: &str, alias: u16) -> Publish {
    let mut p = message(topic, payload, QoS::AtLeastOnce);
    p.properties.topic_alias = NonZeroU16::new(alias);
    p
}

/// `message` with a Message Expiry Interval, retained or not.
fn expiring(topic: &str, payload: &str, secs: u32, retain: bool) -> Publish {
    let mut p = message(topic, payload, QoS::AtLeastOnce);
    p.retain = retain;
    p.properties.message.message_expiry_interval = Some(secs);
    p
}

/// Sends `p` and completes the publisher's side of its QoS flow. Returns the reason code of the
/// PUBACK or PUBREC (Success for QoS 0).
fn send_publish(client: &mut RawClient, p: Publish) -> ReasonCode {
    let (qos, id) = (p.qos, p.packet_id);
    client.send(&Packet::Publish(p));
    let Some(id) = id else {
        return ReasonCode::SUCCESS;
    };
    match (qos, client.expect_packet()) {
        (QoS::AtLeastOnce, Packet::PubAck(ack)) if ack.packet_id == id => ack.reason_code,
        (QoS::ExactlyOnce, Packet::PubRec(ack)) if ack.packet_id == id => {
            client.send(&Packet::PubRel(PublishAck::new(id)));
            assert_eq!(client.expect_packet(), Packet::PubComp(PublishAck::new(id)));
            ack.reason_code
        }
        (_, other) => panic!("expected the acknowledgement of {id}, got {other:?}"),
    }
}

/// SUBSCRIBE to `filters` with Subscription Identifier `id`; returns the SUBACK's reason codes.
fn subscribe_with(
    client: &mut RawClient,
    filters: &[(&str, SubscriptionOptions)],
    id: Option<u32>,
) -> Vec<ReasonCode> {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(2),
        properties: SubscribeProperties {
            subscription_identifier: id.and_then(NonZeroU32::new),
            ..SubscribeProperties::default()
        },
        filters: filters
            .iter()
            .map(|(f, o)| (TopicFilter::copy_from(f).unwrap(), *o))
            .collect(),
    }));
    match client.expect_packet() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id(2));
            ack.reason_codes
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Subscribes to one filter with `options`, which must be granted as asked.
fn subscribe_options(client: &mut RawClient, filter: &str, options: SubscriptionOptions) {
    let codes = subscribe_with(client, &[(filter, options)], None);
    assert_eq!(codes, [ReasonCode::granted(options.qos)], "{filter}");
}

/// A delivery's Subscription Identifiers, sorted (their order is not significant).
fn subscription_ids(p: &Publish) -> Vec<u32> {
    let mut ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|id| id.get())
        .collect();
    ids.sort_unstable();
    ids
}

/// A client on shard 0 subscribed to every will at QoS 1.
fn will_watcher(broker: &TestBroker) -> RawClient {
    let mut watcher = connect(broker, V5, &broker.id_on(0, "watcher"), true);
    subscribe(&mut watcher, "will/#", QoS::AtLeastOnce);
    watcher
}

/// Ends `client`'s connection abnormally (a PINGREQ with a reserved flag set [MQTT-2.1.3-1]). By
/// the time the client sees the close, the broker has handled the end of the connection.
fn break_connection(mut client: RawClient) {
    client.send_bytes(&hex("c1 00"));
    expect_disconnect(&mut client, ReasonCode::MALFORMED_PACKET);
}

// §3.1.2.11.2 Session Expiry Interval, §3.14.2.2.2 on DISCONNECT.

#[test]
fn mqtt_3_1_2_11_2_session_expires_after_the_interval() {
    let broker = TestBroker::start(2);
    let short = broker.id_on(0, "short");
    let forever = broker.id_on(0, "forever");
    for (id, expiry) in [(&short, 1), (&forever, u32::MAX)] {
        let mut client = connect_with(&broker, session_connect(id, true, expiry)).0;
        subscribe(&mut client, "expiry/#", QoS::AtLeastOnce);
        disconnect(client);
    }
    thread::sleep(Duration::from_millis(2500));

    // The 1 s session ended, subscriptions and all; 0xFFFFFFFF never expires.
    let (mut short, ack) = connect_with(&broker, session_connect(&short, false, 300));
    assert!(!ack.session_present, "the 1 s session expired");
    let (mut forever, ack) = connect_with(&broker, session_connect(&forever, false, u32::MAX));
    assert!(ack.session_present, "a 0xFFFFFFFF session never expires");
    subscribe(&mut short, "marker", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "expiry/a", "kept", QoS::AtLeastOnce);
    publish(&mut publisher, "marker", "marker", QoS::AtLeastOnce);
    let p = expect_message(&mut forever, "expiry/a", "kept");
    acknowledge(&mut forever, &p);
    // Had the expired session's subscription survived, "expiry/a" would come first.
    let p = expect_message(&mut short, "marker", "marker");
    acknowledge(&mut short, &p);
}

#[test]
fn mqtt_3_14_2_2_2_disconnect_may_change_the_session_expiry_interval() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "shortened");
    let (mut client, _) = connect_with(&broker, session_connect(&id, true, 300));
    client.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..DisconnectProperties::default()
        },
    }));
    assert_eq!(client.expect_close(), []);
    // Expiry 0 from the DISCONNECT: the session ended with the connection.
    let (_client, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(!ack.session_present);
}

#[test]
fn mqtt_3_14_2_2_2_disconnect_setting_an_expiry_after_0_is_a_protocol_error() {
    let broker = TestBroker::start(2);
    let mut client = connect_with(&broker, connect_v5(&broker.id_on(1, "zero"), |_| {})).0;
    client.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..DisconnectProperties::default()
        },
    }));
    expect_disconnect(&mut client, ReasonCode::PROTOCOL_ERROR);
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
    acknowledge(&mut watcher, &p);
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
    acknowledge(&mut watcher, &p);
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
    acknowledge(&mut watcher, &p);
    // Session Expiry 1 s: the will goes when the session expires, long before its delay.
    let soon = broker.id_on(1, "ends-soon");
    let client = connect_with(&broker, delayed_will_connect(&soon, "will/soon", 300, 1)).0;
    break_connection(client);
    let p = expect_message(&mut watcher, "will/soon", "will/soon");
    acknowledge(&mut watcher, &p);
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
    expect_disconnect(&mut old, ReasonCode::SESSION_TAKEN_OVER);
    // Clean Start 1 ends the session: the will goes out at once.
    let ended = broker.id_on(1, "ended");
    let mut old = connect_with(
        &broker,
        delayed_will_connect(&ended, "will/ended", 300, 300),
    )
    .0;
    let (_replaced, ack) = connect_with(&broker, session_connect(&ended, true, 300));
    assert!(!ack.session_present);
    expect_disconnect(&mut old, ReasonCode::SESSION_TAKEN_OVER);
    // Both wills are from shard 1, in order: "will/kept" would have come first.
    let p = expect_message(&mut watcher, "will/ended", "will/ended");
    acknowledge(&mut watcher, &p);
    ping(&mut new);
}

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
        acknowledge(&mut sub, &p);
    }
}

#[test]
fn mqtt_3_3_2_9_topic_alias_above_the_maximum_is_disconnected_with_0x94() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "pub");
    let mut publisher = connect(&broker, V5, &id, true);
    publisher.send(&Packet::Publish(aliased("alias/x", "above", 11)));
    expect_disconnect(&mut publisher, ReasonCode::TOPIC_ALIAS_INVALID);

    // [MQTT-3.3.2-8] alias 0 (raw bytes: the codec cannot write it).
    let mut publisher = connect(&broker, V5, &id, true);
    publisher.send_bytes(&frame(0x30, &hex("00 01 61  03 23 00 00  7a")));
    expect_disconnect(&mut publisher, ReasonCode::TOPIC_ALIAS_INVALID);

    // With COREMQ_TOPIC_ALIAS_MAXIMUM=0, CONNACK announces none and every alias is invalid.
    let broker = TestBroker::start_with(2, |c| c.topic_alias_maximum = 0);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&id, |_| {}));
    assert_eq!(ack.properties.topic_alias_maximum, None);
    publisher.send(&Packet::Publish(aliased("alias/x", "none", 1)));
    expect_disconnect(&mut publisher, ReasonCode::TOPIC_ALIAS_INVALID);
}

/// MQTT 5 §3.3.4: an empty Topic Name with an alias that has no mapping is a Protocol Error.
#[test]
fn mqtt_3_3_4_unknown_topic_alias_with_an_empty_topic_is_a_protocol_error() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, aliased("alias/a", "mapped", 1));
    publisher.send(&Packet::Publish(aliased("", "unmapped", 2)));
    expect_disconnect(&mut publisher, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn mqtt_3_3_2_7_topic_alias_mappings_end_with_the_connection() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(1, "pub");
    let mut publisher = connect_with(&broker, session_connect(&id, true, 300)).0;
    send_publish(&mut publisher, aliased("alias/a", "mapped", 1));
    disconnect(publisher);
    // The session resumes, the alias does not.
    let (mut publisher, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(ack.session_present);
    publisher.send(&Packet::Publish(aliased("", "unmapped", 1)));
    expect_disconnect(&mut publisher, ReasonCode::PROTOCOL_ERROR);
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
        publish(&mut publisher, topic, &i.to_string(), QoS::AtMostOnce);
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
        let p = expect_message(&mut sub, topic, &i.to_string());
        assert_eq!(
            p.properties.topic_alias.map(|a| a.get()),
            alias,
            "message {i}"
        );
    }
    // [MQTT-3.1.2-27] a client without Topic Alias Maximum gets none.
    for (i, topic) in topics.iter().enumerate() {
        let p = expect_message(&mut plain, topic, &i.to_string());
        assert_eq!(p.properties.topic_alias, None);
    }
}

// §3.8.3.1 Subscription Options.

#[test]
fn mqtt_3_8_3_3_no_local_does_not_echo_own_messages() {
    let broker = TestBroker::start(2);
    let mut me = connect(&broker, V5, &broker.id_on(0, "me"), true);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    subscribe_options(&mut me, "nl/#", no_local);
    let mut other = connect(&broker, V5, &broker.id_on(1, "other"), true);
    subscribe(&mut other, "nl/#", QoS::AtMostOnce);

    // An echo would be delivered before the PUBACK, which `publish` expects first.
    publish(&mut me, "nl/mine", "mine", QoS::AtLeastOnce);
    expect_message(&mut other, "nl/mine", "mine");
    // Messages from other clients still arrive; without No Local, a client gets its own.
    publish(&mut other, "nl/theirs", "theirs", QoS::AtMostOnce);
    expect_message(&mut other, "nl/theirs", "theirs");
    let p = expect_message(&mut me, "nl/theirs", "theirs");
    assert_eq!(p.qos, QoS::AtMostOnce);
}

#[test]
fn mqtt_3_3_1_13_retain_as_published_keeps_the_retain_flag() {
    let broker = TestBroker::start(2);
    let mut as_published = connect(&broker, V5, &broker.id_on(0, "rap"), true);
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    subscribe_options(&mut as_published, "rap/#", rap);
    let mut plain = connect(&broker, V5, &broker.id_on(0, "plain"), true);
    subscribe(&mut plain, "rap/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("rap/retained", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    publish(&mut publisher, "rap/live", "live", QoS::AtLeastOnce);

    for (client, retain) in [(&mut as_published, true), (&mut plain, false)] {
        // [MQTT-3.3.1-13] the publisher's flag; [MQTT-3.3.1-12] 0 without the option.
        let p = expect_message(client, "rap/retained", "retained");
        assert_eq!(p.retain, retain);
        acknowledge(client, &p);
        let p = expect_message(client, "rap/live", "live");
        assert!(!p.retain);
        acknowledge(client, &p);
    }
}

/// A retained message on `rh/t`, published from shard 1 (its PUBACK waits until every shard
/// stores it), and a client on shard 0 to subscribe with each Retain Handling.
fn retained_and_subscriber(broker: &TestBroker) -> RawClient {
    let mut publisher = connect(broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("rh/t", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    connect(broker, V5, &broker.id_on(0, "sub"), true)
}

fn retain_handling(handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling: handling,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    }
}

/// The retained message must follow the SUBACK just received.
fn expect_retained(client: &mut RawClient) {
    let p = expect_message(client, "rh/t", "retained");
    assert!(p.retain);
    acknowledge(client, &p);
}

#[test]
fn mqtt_3_3_1_9_retain_handling_0_sends_retained_messages_at_every_subscribe() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    let options = retain_handling(RetainHandling::SendAtSubscribe);
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
    // [MQTT-3.8.4-4] again when the subscription is replaced.
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
}

#[test]
fn mqtt_3_3_1_10_retain_handling_1_sends_retained_messages_for_a_new_subscription_only() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    let options = retain_handling(RetainHandling::SendIfNew);
    subscribe_options(&mut sub, "rh/#", options);
    expect_retained(&mut sub);
    subscribe_options(&mut sub, "rh/#", options);
    // Retained messages follow the SUBACK at once; the PINGRESP comes first when there are none.
    ping(&mut sub);
}

#[test]
fn mqtt_3_3_1_11_retain_handling_2_never_sends_retained_messages() {
    let broker = TestBroker::start(2);
    let mut sub = retained_and_subscriber(&broker);
    subscribe_options(&mut sub, "rh/#", retain_handling(RetainHandling::DoNotSend));
    ping(&mut sub);
    // The subscription itself works.
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "live"), true);
    publish(&mut publisher, "rh/t", "live", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "rh/t", "live");
    assert!(!p.retain);
    acknowledge(&mut sub, &p);
}

// §3.8.2.1.2 Subscription Identifier.

#[test]
fn mqtt_3_3_4_3_subscription_identifier_is_sent_with_every_delivery() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    let retained = Publish {
        retain: true,
        ..message("sid/retained", "retained", QoS::AtLeastOnce)
    };
    send_publish(&mut publisher, retained);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    assert_eq!(
        subscribe_with(&mut sub, &[("sid/+", qos1)], Some(7)),
        [ReasonCode::GRANTED_QOS_1]
    );
    // The retained message sent on subscribe, and every live one, carry the identifier.
    let p = expect_message(&mut sub, "sid/retained", "retained");
    assert_eq!(subscription_ids(&p), [7]);
    acknowledge(&mut sub, &p);
    subscribe(&mut sub, "plain/+", QoS::AtLeastOnce);
    publish(&mut publisher, "sid/a", "qos 1", QoS::AtLeastOnce);
    publish(&mut publisher, "sid/a", "qos 0", QoS::AtMostOnce);
    publish(&mut publisher, "plain/a", "no id", QoS::AtLeastOnce);
    for payload in ["qos 1", "qos 0"] {
        let p = expect_message(&mut sub, "sid/a", payload);
        assert_eq!(subscription_ids(&p), [7], "{payload}");
        acknowledge(&mut sub, &p);
    }
    let p = expect_message(&mut sub, "plain/a", "no id");
    assert_eq!(subscription_ids(&p), Vec::<u32>::new());
    acknowledge(&mut sub, &p);

    // [MQTT-3.8.4-3] subscribing again replaces the identifier (retained: Retain Handling 2).
    let again = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..qos1
    };
    subscribe_with(&mut sub, &[("sid/+", again)], Some(8));
    publish(&mut publisher, "sid/a", "new id", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "sid/a", "new id");
    assert_eq!(subscription_ids(&p), [8]);
    acknowledge(&mut sub, &p);
}

#[test]
fn mqtt_3_3_4_4_overlapping_subscriptions_get_one_delivery_with_every_identifier() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    let options = SubscriptionOptions::with_qos;
    subscribe_with(&mut sub, &[("ov/#", options(QoS::AtMostOnce))], Some(1));
    subscribe_with(&mut sub, &[("ov/+", options(QoS::ExactlyOnce))], Some(2));
    subscribe_with(&mut sub, &[("ov/x", options(QoS::AtLeastOnce))], None);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "ov/x", "overlap", QoS::ExactlyOnce);
    publish(&mut publisher, "ov/x", "marker", QoS::AtMostOnce);

    // One copy, at the highest QoS granted [MQTT-3.3.4-2], with both identifiers; the marker
    // comes next, so there was no second copy.
    let p = expect_message(&mut sub, "ov/x", "overlap");
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(subscription_ids(&p), [1, 2]);
    let marker = expect_message(&mut sub, "ov/x", "marker");
    assert_eq!(subscription_ids(&marker), [1, 2]);
    acknowledge(&mut sub, &p);
}

// §3.3.2.3.3 Message Expiry Interval.

#[test]
fn mqtt_3_3_2_5_expired_messages_are_not_delivered() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "offline");
    let mut sub = connect_with(&broker, session_connect(&id, true, 300)).0;
    subscribe(&mut sub, "exp/#", QoS::AtLeastOnce);
    disconnect(sub);
    let mut live = connect(&broker, V5, &broker.id_on(0, "live"), true);
    subscribe(&mut live, "exp/will", QoS::AtLeastOnce);

    // Queued for the offline session: a message and a retained message expiring in 1 s...
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, expiring("exp/queued", "queued", 1, false));
    send_publish(
        &mut publisher,
        expiring("exp/retained", "retained", 1, true),
    );
    // ...and a retained will expiring 1 s after it is published (MQTT 5 §3.1.3.2.4).
    let mut with_will = connect_v5(&broker.id_on(1, "mortal"), |_| {});
    let mut last_will = will("exp/will", "will", QoS::AtLeastOnce, true);
    last_will.properties.message.message_expiry_interval = Some(1);
    with_will.will = Some(last_will);
    break_connection(connect_with(&broker, with_will).0);
    let p = expect_message(&mut live, "exp/will", "will");
    acknowledge(&mut live, &p);
    // Then a marker that does not expire.
    publish(&mut publisher, "exp/marker", "marker", QoS::AtLeastOnce);
    thread::sleep(Duration::from_millis(2500));

    let (mut sub, ack) = connect_with(&broker, session_connect(&id, false, 300));
    assert!(ack.session_present);
    let p = expect_message(&mut sub, "exp/marker", "marker");
    assert_eq!(p.properties.message.message_expiry_interval, None);
    acknowledge(&mut sub, &p);
    // Nor are expired retained messages sent to a new subscription.
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let codes = subscribe_with(
        &mut sub,
        &[("exp/retained", qos1), ("exp/will", qos1)],
        None,
    );
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1; 2]);
    ping(&mut sub);
}

#[test]
fn mqtt_3_3_2_6_forwarded_messages_carry_the_remaining_expiry_interval() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "offline");
    let mut offline = connect_with(&broker, session_connect(&id, true, 300)).0;
    subscribe(&mut offline, "rem/#", QoS::AtLeastOnce);
    disconnect(offline);
    let mut live = connect(&broker, V5, &broker.id_on(0, "live"), true);
    subscribe(&mut live, "rem/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    send_publish(&mut publisher, expiring("rem/a", "a", 60, true));
    publish(&mut publisher, "rem/plain", "no expiry", QoS::AtLeastOnce);

    let remaining = |p: &Publish| p.properties.message.message_expiry_interval;
    let p = expect_message(&mut live, "rem/a", "a");
    assert!(matches!(remaining(&p), Some(1..=60)), "{p:?}");
    acknowledge(&mut live, &p);
    let p = expect_message(&mut live, "rem/plain", "no expiry");
    assert_eq!(remaining(&p), None);
    acknowledge(&mut live, &p);

    // After waiting in the server, the queued copy and the retained one say less than 60 s.
    thread::sleep(Duration::from_millis(1500));
    let (mut offline, _) = connect_with(&broker, session_connect(&id, false, 300));
    let p = expect_message(&mut offline, "rem/a", "a");
    assert!(matches!(remaining(&p), Some(1..=59)), "{p:?}");
    acknowledge(&mut offline, &p);
    let p = expect_message(&mut offline, "rem/plain", "no expiry");
    acknowledge(&mut offline, &p);
    let mut late = connect(&broker, V5, &broker.id_on(0, "late"), true);
    subscribe(&mut late, "rem/a", QoS::AtLeastOnce);
    let p = expect_message(&mut late, "rem/a", "a");
    assert!(p.retain);
    assert!(matches!(remaining(&p), Some(1..=59)), "{p:?}");
    acknowledge(&mut late, &p);
}

// §3.3.4 Receive Maximum, both ways.

#[test]
fn mqtt_3_3_4_7_too_many_unreleased_qos_2_messages_are_disconnected_with_0x93() {
    let broker = TestBroker::start_with(2, |c| c.receive_maximum = 2);
    let (mut publisher, ack) = connect_with(&broker, connect_v5(&broker.id_on(1, "pub"), |_| {}));
    assert_eq!(ack.properties.receive_maximum, NonZeroU16::new(2));
    let qos2 = |id, dup| Publish {
        dup,
        packet_id: Some(packet_id(id)),
        ..message("rm/in", "unreleased", QoS::ExactlyOnce)
    };
    let received = |publisher: &mut RawClient, id, dup| {
        publisher.send(&Packet::Publish(qos2(id, dup)));
        match publisher.expect_packet() {
            Packet::PubRec(ack) => assert_eq!(ack.packet_id, packet_id(id)),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    };
    received(&mut publisher, 1, false);
    received(&mut publisher, 2, false);
    // A resend of an unreleased message is no new message...
    received(&mut publisher, 1, true);
    // ...and a released one frees its place.
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(1))));
    let pubcomp = Packet::PubComp(PublishAck::new(packet_id(1)));
    assert_eq!(publisher.expect_packet(), pubcomp);
    received(&mut publisher, 3, false);
    // Ids 2 and 3 await PUBREL: another is one too many.
    publisher.send(&Packet::Publish(qos2(4, false)));
    expect_disconnect(&mut publisher, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

#[test]
fn mqtt_3_3_4_9_server_sends_at_most_the_clients_receive_maximum() {
    let broker = TestBroker::start(2);
    let small = connect_v5(&broker.id_on(0, "small"), |c| {
        c.properties.receive_maximum = NonZeroU16::new(2);
    });
    let mut sub = connect_with(&broker, small).0;
    subscribe(&mut sub, "rm/#", QoS::AtLeastOnce);
    // Subscribed on the same shard: once it has the third message, so had `sub` (or its queue).
    let mut probe = connect(&broker, V5, &broker.id_on(0, "probe"), true);
    subscribe(&mut probe, "rm/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    for i in 1..=3 {
        publish(&mut publisher, &format!("rm/{i}"), "m", QoS::AtLeastOnce);
    }
    for i in 1..=3 {
        let p = expect_message(&mut probe, &format!("rm/{i}"), "m");
        acknowledge(&mut probe, &p);
    }

    let first = expect_message(&mut sub, "rm/1", "m");
    let second = expect_message(&mut sub, "rm/2", "m");
    // Two unacknowledged: the third waits (the PINGRESP comes first)...
    ping(&mut sub);
    // ...until a PUBACK frees a place.
    acknowledge(&mut sub, &first);
    let third = expect_message(&mut sub, "rm/3", "m");
    acknowledge(&mut sub, &second);
    acknowledge(&mut sub, &third);
}

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
    expect_disconnect(&mut publisher, ReasonCode::QOS_NOT_SUPPORTED);
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
    acknowledge(&mut sub, &p);
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
    expect_disconnect(&mut publisher, ReasonCode::RETAIN_NOT_SUPPORTED);
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
    expect_disconnect(&mut client, ReasonCode::KEEP_ALIVE_TIMEOUT);
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

// §3.4.2.1 / §3.5.2.1 PUBACK and PUBREC reason codes.

#[test]
fn mqtt_3_4_2_1_puback_and_pubrec_say_no_matching_subscribers() {
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, V5, &broker.id_on(1, "pub"), true);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let code = send_publish(&mut publisher, message("nobody/a", "unheard", qos));
        assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS, "{qos:?}");
    }
    // A subscriber on the other shard: the message is accepted and matched.
    let mut sub = connect(&broker, V5, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "nobody/+", QoS::AtMostOnce);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let code = send_publish(&mut publisher, message("nobody/a", "heard", qos));
        assert_eq!(code, ReasonCode::SUCCESS, "{qos:?}");
        expect_message(&mut sub, "nobody/a", "heard");
    }
}
