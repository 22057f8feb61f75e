//! Content- and type-based filters per subscription (`src/filter/`): the MQTT 5 `filter` User
//! Property (rumqttc v5 and raw packets) and the `$filter/<expression>/<topic filter>` prefix
//! (MQTT 3.1.1, raw packets), across shards, with retained messages, shared groups and a
//! persistent session's offline queue. Subscribers are homed on shard 0, publishers on shard 1,
//! so every delivery crosses the mesh and is filtered on the subscriber's shard.
//!
//! "Only the matching messages arrive" is checked by publishing, in order, messages that match
//! and messages that do not, then an end marker that matches: everything received up to the
//! marker must be exactly the matching ones.

use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::{
    MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, Unsubscribe, UnsubscribeProperties,
};
use rumqttc::v5::mqttbytes::v5::{
    Packet as V5Packet, PublishProperties as V5PublishProperties, SubscribeProperties as V5Props,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS as V5QoS;

use crate::common::{
    connect, expect_message, packet_id, publish, subscribe, subscribe_codes, topic_name, RawClient,
    TestBroker,
};
use crate::rumqttc_v5::Peer;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn s(v: &str) -> MqttString {
    MqttString::copy_from(v).unwrap()
}

/// Payloads received (QoS 0) until one equal to `end`, which is included.
fn received_until(client: &mut RawClient, end: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let p = client.expect_publish();
        let text = String::from_utf8_lossy(&p.payload).into_owned();
        got.push(text.clone());
        if text == end {
            return got;
        }
    }
}

/// A raw MQTT 5 SUBSCRIBE of `filters` with `filter` User Properties `exprs` (and a
/// Subscription Identifier); returns the SUBACK's codes and Reason String.
fn subscribe_v5(
    client: &mut RawClient,
    filters: &[(&str, QoS)],
    exprs: &[&str],
    id: Option<u32>,
) -> (Vec<ReasonCode>, Option<String>) {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(9),
        properties: SubscribeProperties {
            subscription_identifier: id.and_then(std::num::NonZeroU32::new),
            user_properties: exprs.iter().map(|e| (s("filter"), s(e))).collect(),
        },
        filters: filters
            .iter()
            .map(|(f, q)| {
                (
                    TopicFilter::copy_from(f).unwrap(),
                    SubscriptionOptions::with_qos(*q),
                )
            })
            .collect(),
    }));
    match client.expect_packet() {
        Packet::SubAck(a) => (
            a.reason_codes,
            a.properties.reason_string.map(|r| r.as_str().to_owned()),
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// The MQTT 5 user property form, with rumqttc: only messages whose JSON payload passes reach
/// the subscriber; the rest (other values, missing fields, payloads that are not JSON) do not.
#[test]
fn v5_user_property_filter_delivers_only_matching_messages_across_shards() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "fsub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "fpub"));
    let props = V5Props {
        id: None,
        user_properties: vec![("filter".into(), r#"temp > 30 && site == "north""#.into())],
    };
    sub.client
        .subscribe_with_properties("sensors/#", V5QoS::AtLeastOnce, props)
        .unwrap();
    let codes = sub.expect(|p| match p {
        V5Packet::SubAck(a) => Some(a.return_codes.clone()),
        _ => None,
    });
    assert_eq!(
        codes,
        vec![SubscribeReasonCode::Success(V5QoS::AtLeastOnce)]
    );
    let messages = [
        r#"{"temp": 31, "site": "north", "n": 1}"#,
        r#"{"temp": 29, "site": "north", "n": 2}"#,
        r#"{"temp": 35, "site": "south", "n": 3}"#,
        r#"{"site": "north", "n": 4}"#,
        "temp=40 site=north",
        r#"{"temp": 45.5, "site": "north", "n": 6}"#,
        r#"{"temp": 99, "site": "north", "end": true}"#,
    ];
    for m in messages {
        publ.client
            .publish("sensors/a/b", V5QoS::AtLeastOnce, false, m)
            .unwrap();
    }
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some(messages[6]) {
        let p = sub.next_publish();
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(got, vec![messages[0], messages[5], messages[6]]);
}

/// Conditions on MQTT 5 metadata and the payload's type: Content Type (glob), a User Property,
/// QoS, topic levels and the sniffed kind.
#[test]
fn v5_type_and_metadata_conditions() {
    let broker = TestBroker::start(2);
    let sub = Peer::connect(&broker, &broker.id_on(0, "tsub"));
    let publ = Peer::connect(&broker, &broker.id_on(1, "tpub"));
    let expr = r#"content_type matches "application/*" && user["unit"] == "C" && topic[1] == "kitchen" && qos == 1 || kind == "binary""#;
    let props = V5Props {
        id: None,
        user_properties: vec![("filter".into(), expr.into())],
    };
    sub.client
        .subscribe_with_properties("home/#", V5QoS::AtLeastOnce, props)
        .unwrap();
    sub.expect(|p| matches!(p, V5Packet::SubAck(_)).then_some(()));
    let send = |topic: &str, payload: &[u8], qos: V5QoS, ct: Option<&str>, unit: Option<&str>| {
        let props = V5PublishProperties {
            content_type: ct.map(str::to_owned),
            user_properties: unit
                .map(|u| vec![("unit".to_owned(), u.to_owned())])
                .unwrap_or_default(),
            ..Default::default()
        };
        publ.client
            .publish_with_properties(topic, qos, false, payload.to_vec(), props)
            .unwrap();
    };
    let q1 = V5QoS::AtLeastOnce;
    send(
        "home/kitchen/t",
        b"1 ok",
        q1,
        Some("application/json"),
        Some("C"),
    );
    send(
        "home/kitchen/t",
        b"2 no: unit F",
        q1,
        Some("application/json"),
        Some("F"),
    );
    send(
        "home/kitchen/t",
        b"3 no: text/plain",
        q1,
        Some("text/plain"),
        Some("C"),
    );
    send(
        "home/hall/t",
        b"4 no: hall",
        q1,
        Some("application/xml"),
        Some("C"),
    );
    send(
        "home/kitchen/t",
        b"5 no: qos 0",
        V5QoS::AtMostOnce,
        Some("application/json"),
        Some("C"),
    );
    send(
        "home/kitchen/t",
        b"6 no: no content type",
        q1,
        None,
        Some("C"),
    );
    send("home/x", b"\xff\x00 7 binary", q1, None, None);
    send(
        "home/kitchen/t",
        b"8 end",
        q1,
        Some("application/cbor"),
        Some("C"),
    );
    let mut got = Vec::new();
    while got.last().map(|p: &Vec<u8>| p.ends_with(b"end")) != Some(true) {
        got.push(sub.next_publish().payload.to_vec());
    }
    let got: Vec<String> = got
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(got, vec!["1 ok", "\u{fffd}\0 7 binary", "8 end"]);
}

/// [MQTT-3.8.4-3] with filters: the same topic filter with another expression is another
/// subscription (a message matching both arrives once, with both Subscription Identifiers
/// [MQTT-3.3.4-3]); the same filter and expression replace the subscription; UNSUBSCRIBE with
/// the `filter` property removes only that one.
#[test]
fn v5_same_topic_with_two_expressions_is_two_subscriptions() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "two"), true);
    let mut publ = connect(&broker, V5, &broker.id_on(1, "twop"), true);
    let a = r#"a == 1"#;
    let b = r#"b == 1"#;
    assert_eq!(
        subscribe_v5(&mut sub, &[("t/#", QoS::AtMostOnce)], &[a], Some(1)).0,
        vec![ReasonCode::SUCCESS]
    );
    assert_eq!(
        subscribe_v5(&mut sub, &[("t/#", QoS::AtMostOnce)], &[b], Some(2)).0,
        vec![ReasonCode::SUCCESS]
    );
    let ids = |p: &Publish| -> Vec<u32> {
        p.properties
            .subscription_identifiers
            .iter()
            .map(|i| i.get())
            .collect()
    };
    for (payload, want) in [
        (r#"{"a":1}"#, vec![1]),
        (r#"{"b":1}"#, vec![2]),
        (r#"{"a":1,"b":1}"#, vec![1, 2]),
    ] {
        publish(&mut publ, "t/x", payload, QoS::AtMostOnce);
        let mut got = ids(&expect_message(&mut sub, "t/x", payload));
        got.sort();
        assert_eq!(got, want, "{payload}");
    }
    // Same filter and expression: replaced (now id 3), not a third subscription.
    assert_eq!(
        subscribe_v5(&mut sub, &[("t/#", QoS::AtMostOnce)], &[a], Some(3)).0,
        vec![ReasonCode::SUCCESS]
    );
    publish(&mut publ, "t/x", r#"{"a":1,"b":1,"c":1}"#, QoS::AtMostOnce);
    let mut got = ids(&expect_message(&mut sub, "t/x", r#"{"a":1,"b":1,"c":1}"#));
    got.sort();
    assert_eq!(got, vec![2, 3]);
    // UNSUBSCRIBE with `filter` = a: only that subscription goes.
    let unsubscribe = |sub: &mut RawClient, expr: &str| {
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: packet_id(5),
            properties: UnsubscribeProperties {
                user_properties: vec![(s("filter"), s(expr))],
            },
            filters: vec![TopicFilter::copy_from("t/#").unwrap()],
        }));
        match sub.expect_packet() {
            Packet::UnsubAck(u) => u.reason_codes,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    };
    assert_eq!(unsubscribe(&mut sub, a), vec![ReasonCode::SUCCESS]);
    assert_eq!(
        unsubscribe(&mut sub, a),
        vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    publish(&mut publ, "t/x", r#"{"a":1}"#, QoS::AtMostOnce);
    publish(&mut publ, "t/x", r#"{"b":1}"#, QoS::AtMostOnce);
    assert_eq!(ids(&expect_message(&mut sub, "t/x", r#"{"b":1}"#)), vec![2]);
}

/// A malformed expression gets 0x8F, one beyond the COREMQ_FILTER_MAX_* limits 0x83, each with
/// a Reason String naming the position and the problem; the connection goes on working.
#[test]
fn v5_bad_expressions_are_refused_with_position_and_problem() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "bad"), true);
    let deep = "!".repeat(40) + "a";
    let long = "a == 1 || ".repeat(200) + "a == 1";
    let cases: &[(&str, &[&str], ReasonCode, &str)] = &[
        (
            "x/#",
            &["temp >"],
            ReasonCode::TOPIC_FILTER_INVALID,
            "filter expression: expected a value or field at position 6",
        ),
        (
            "x/#",
            &["a == \"x"],
            ReasonCode::TOPIC_FILTER_INVALID,
            "filter expression: unterminated string at position 5",
        ),
        (
            "x/#",
            &[&deep],
            ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
            "filter expression: nested deeper than COREMQ_FILTER_MAX_DEPTH at position 16",
        ),
        (
            "x/#",
            &[&long],
            ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
            "filter expression: longer than COREMQ_FILTER_MAX_LENGTH at position 1024",
        ),
        (
            "x/#",
            &["a == 1", "b == 1"],
            ReasonCode::TOPIC_FILTER_INVALID,
            "more than one `filter` user property",
        ),
        (
            "$filter/a == 1/x/#",
            &["b == 1"],
            ReasonCode::TOPIC_FILTER_INVALID,
            "both a $filter/ prefix and a `filter` user property",
        ),
        (
            "$filter/%zz/x",
            &[],
            ReasonCode::TOPIC_FILTER_INVALID,
            "filter expression: bad percent-encoding at position 0",
        ),
        (
            "$filter/a == 1",
            &[],
            ReasonCode::TOPIC_FILTER_INVALID,
            "filter expression: expected '/' and a topic filter after the expression at position 6",
        ),
    ];
    for (filter, exprs, code, why) in cases {
        let (codes, reason) = subscribe_v5(&mut sub, &[(filter, QoS::AtMostOnce)], exprs, None);
        assert_eq!(codes, vec![*code], "{filter} {exprs:?}");
        assert_eq!(reason.as_deref(), Some(*why), "{filter} {exprs:?}");
    }
    // Still served, and a good filter next to a bad one in one SUBSCRIBE is granted.
    let (codes, _) = subscribe_v5(
        &mut sub,
        &[
            ("$filter/a >/x", QoS::AtMostOnce),
            ("$filter/a > 1/x", QoS::AtMostOnce),
        ],
        &[],
        None,
    );
    assert_eq!(
        codes,
        vec![ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::SUCCESS]
    );
}

/// MQTT 3.1.1 (no properties): the `$filter/` prefix, with `/` `+` `#` `%` percent-encoded in
/// the expression; a bad expression gets 0x80 (3.1.1's only failure code); UNSUBSCRIBE with the
/// same text removes it.
#[test]
fn v3_prefix_filter_delivers_only_matching_messages() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V3, &broker.id_on(0, "v3s"), true);
    let mut publ = connect(&broker, V3, &broker.id_on(1, "v3p"), true);
    let filter = r#"$filter/status in ["alarm","fault"] || payload contains "a%2Fb"/plant/+/state"#;
    assert_eq!(
        subscribe_codes(
            &mut sub,
            &[
                (filter, QoS::AtMostOnce),
                ("$filter/status ==/plant/#", QoS::AtMostOnce)
            ]
        ),
        vec![
            ReasonCode::granted(QoS::AtMostOnce),
            ReasonCode::UNSPECIFIED_ERROR
        ]
    );
    for m in [
        r#"{"status":"ok"}"#,
        r#"{"status":"alarm"}"#,
        r#"{"status":"fault","x":[1,2,{"y":null}]}"#,
        "plain a/b text",
        r#"{"status":"ALARM"}"#,
        "{broken",
    ] {
        publish(&mut publ, "plant/p1/state", m, QoS::AtMostOnce);
    }
    publish(
        &mut publ,
        "plant/p1/other",
        r#"{"status":"alarm"}"#,
        QoS::AtMostOnce,
    );
    publish(
        &mut publ,
        "plant/p2/state",
        r#"{"status":"fault","end":1}"#,
        QoS::AtMostOnce,
    );
    assert_eq!(
        received_until(&mut sub, r#"{"status":"fault","end":1}"#),
        vec![
            r#"{"status":"alarm"}"#,
            r#"{"status":"fault","x":[1,2,{"y":null}]}"#,
            "plain a/b text",
            r#"{"status":"fault","end":1}"#,
        ]
    );
    // The same subscription in another encoding (a space as %20) is the same one: unsubscribed.
    sub.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: packet_id(3),
        properties: Default::default(),
        filters: vec![TopicFilter::copy_from(
            r#"$filter/status%20in ["alarm","fault"] || payload contains "a%2Fb"/plant/+/state"#,
        )
        .unwrap()],
    }));
    assert!(matches!(sub.expect_packet(), Packet::UnsubAck(_)));
    publish(
        &mut publ,
        "plant/p1/state",
        r#"{"status":"alarm"}"#,
        QoS::AtMostOnce,
    );
    sub.expect_silence(Duration::from_millis(300));
}

/// Retained messages are filtered the same way when a filtered subscription is made.
#[test]
fn retained_messages_are_filtered_on_subscribe() {
    let broker = TestBroker::start(2);
    let mut publ = connect(&broker, V3, &broker.id_on(1, "rp"), true);
    for (topic, m) in [
        ("r/1", r#"{"level": 1}"#),
        ("r/2", r#"{"level": 5}"#),
        ("r/3", "not json"),
        ("r/4", r#"{"level": 9}"#),
    ] {
        publ.send(&Packet::Publish(Publish {
            retain: true,
            qos: QoS::AtLeastOnce,
            packet_id: Some(packet_id(1)),
            ..Publish::new(topic_name(topic), Bytes::from(m))
        }));
        publ.finish_publish(packet_id(1), QoS::AtLeastOnce);
    }
    for (version, shard) in [(V3, 0), (V5, 1)] {
        let mut sub = connect(&broker, version, &broker.id_on(shard, "rs"), true);
        subscribe(&mut sub, "$filter/level >= 5/r/#", QoS::AtMostOnce);
        let mut got: Vec<(String, bool)> = (0..2)
            .map(|_| {
                let p = sub.expect_publish();
                (p.topic.as_str().to_owned(), p.retain)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![("r/2".to_owned(), true), ("r/4".to_owned(), true)]
        );
        sub.expect_silence(Duration::from_millis(200));
    }
}

/// [MQTT-4.8.2] with filters: each message goes to one member of the group among those whose
/// expression it passes, wherever they are; a message no member's filter passes goes to none.
/// Both prefix orders (`$filter/…/$share/…` and `$share/…/$filter/…`) name the same kind of
/// member.
#[test]
fn shared_group_member_is_chosen_among_matching_filters() {
    let broker = TestBroker::start(2);
    let mut north = connect(&broker, V3, &broker.id_on(0, "gn"), true);
    let mut south = connect(&broker, V3, &broker.id_on(1, "gs"), true);
    let mut publ = connect(&broker, V3, &broker.id_on(1, "gp"), true);
    subscribe(
        &mut north,
        r#"$filter/site == "north"/$share/g/jobs/#"#,
        QoS::AtMostOnce,
    );
    subscribe(
        &mut south,
        r#"$share/g/$filter/site == "south"/jobs/#"#,
        QoS::AtMostOnce,
    );
    for i in 0..10 {
        let site = if i % 2 == 0 { "north" } else { "south" };
        publish(
            &mut publ,
            "jobs/x",
            format!(r#"{{"site":"{site}","i":{i}}}"#),
            QoS::AtMostOnce,
        );
    }
    publish(&mut publ, "jobs/x", r#"{"site":"east"}"#, QoS::AtMostOnce);
    publish(
        &mut publ,
        "jobs/x",
        r#"{"site":"north","i":"end"}"#,
        QoS::AtMostOnce,
    );
    publish(
        &mut publ,
        "jobs/x",
        r#"{"site":"south","i":"end"}"#,
        QoS::AtMostOnce,
    );
    let n = received_until(&mut north, r#"{"site":"north","i":"end"}"#);
    let s = received_until(&mut south, r#"{"site":"south","i":"end"}"#);
    assert_eq!(n.len(), 6, "{n:?}");
    assert_eq!(s.len(), 6, "{s:?}");
    assert!(n.iter().all(|m| m.contains("north")), "{n:?}");
    assert!(s.iter().all(|m| m.contains("south")), "{s:?}");
    north.expect_silence(Duration::from_millis(200));
}

/// A persistent session's offline queue holds only the messages its filter passes.
#[test]
fn persistent_session_queues_only_matching_messages() {
    let broker = TestBroker::start(2);
    let id = broker.id_on(0, "ps");
    let mut sub = connect(&broker, V3, &id, false);
    subscribe(&mut sub, "$filter/exists(even)/q/#", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publ = connect(&broker, V3, &broker.id_on(1, "pp"), true);
    for m in [
        r#"{"even":1}"#,
        r#"{"odd":1}"#,
        r#"{"even":2}"#,
        "x",
        r#"{"even":3}"#,
    ] {
        publish(&mut publ, "q/a", m, QoS::AtLeastOnce);
    }
    let mut sub = connect(&broker, V3, &id, false);
    for want in [r#"{"even":1}"#, r#"{"even":2}"#, r#"{"even":3}"#] {
        let p = expect_message(&mut sub, "q/a", want);
        sub.acknowledge(&p);
    }
    sub.expect_silence(Duration::from_millis(300));
}

/// The same expression can be given either way; a v5 client using the prefix form gets the same
/// subscription as one using the property (the second SUBSCRIBE replaces the first, so one
/// copy of each message arrives).
#[test]
fn v5_prefix_and_property_forms_are_the_same_subscription() {
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, V5, &broker.id_on(0, "same"), true);
    let mut publ = connect(&broker, V5, &broker.id_on(1, "samep"), true);
    assert_eq!(
        subscribe_v5(&mut sub, &[("k/#", QoS::AtMostOnce)], &["v > 1"], Some(1)).0,
        vec![ReasonCode::SUCCESS]
    );
    assert_eq!(
        subscribe_v5(
            &mut sub,
            &[("$filter/v > 1/k/#", QoS::AtMostOnce)],
            &[],
            Some(2)
        )
        .0,
        vec![ReasonCode::SUCCESS]
    );
    publish(&mut publ, "k/1", r#"{"v": 2}"#, QoS::AtMostOnce);
    let p = expect_message(&mut sub, "k/1", r#"{"v": 2}"#);
    let ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, vec![2]);
    sub.expect_silence(Duration::from_millis(200));
}
