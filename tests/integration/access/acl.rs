//! What clients may do (the ACL file, Mosquitto's acl_file syntax): a denied PUBLISH is not
//! routed (MQTT 5 PUBACK / PUBREC 0x87; MQTT 3.1.1 acknowledged as usual and dropped), a denied
//! SUBSCRIBE filter gets 0x87 / 0x80 beside the granted ones, a partly readable wildcard receives
//! only readable topics (retained messages included), `pattern` substitutes `%c` and `%u`, rules
//! before the first `user` line are for anonymous clients, and a will on a denied topic is
//! dropped. The ACL tests use no password file: user names are then taken as given.

use coremq::protocol::ProtocolVersion::{V3_1_1, V5 as MQTT5};
use coremq::protocol::{QoS, ReasonCode};
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as V5Sub;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PubAckReason, PubRecReason};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{QoS as Q3, SubscribeReasonCode as V311Sub};

use super::*;

/// A publisher allowed `ok/#` only, a reader of everything.
const PUBLISH_ACL: &str = "\
user writer
topic write ok/#
user reader
topic read #
";

#[test]
fn v5_denied_publish_gets_0x87_and_is_not_routed() {
    let files = Files::new("acl-v5-publish");
    files.write_acl(PUBLISH_ACL);
    let broker = files.start("auto");
    let reader = V311::connect(&broker, &broker.id_on(0, "reader"), Some(("reader", "")));
    reader.subscribe(&[("#", Q3::AtLeastOnce)]);

    // Raw bytes: the exact reason code for each QoS.
    let mut raw = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(1, "w-raw"),
        Some("writer"),
        None,
    );
    raw_publish_qos0(&mut raw, "denied/0", "x");
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        let code = raw_publish(&mut raw, "denied/x", qos, id, "x");
        assert_eq!(code, Some(ReasonCode::NOT_AUTHORIZED), "{qos:?}");
    }
    assert_eq!(
        raw_publish(&mut raw, "ok/raw", QoS::AtLeastOnce, 3, "x"),
        Some(ReasonCode::SUCCESS)
    );
    // rumqttc's MQTT 5 client sees the same codes.
    let writer = V5::connect(&broker, &broker.id_on(1, "writer"), Some(("writer", "")));
    writer
        .client
        .publish("denied/y", Q5::AtLeastOnce, false, "x")
        .unwrap();
    let reason = writer.expect(|p| match p {
        P5::PubAck(a) => Some(a.reason),
        _ => None,
    });
    assert_eq!(reason, PubAckReason::NotAuthorized);
    writer
        .client
        .publish("denied/z", Q5::ExactlyOnce, false, "x")
        .unwrap();
    let reason = writer.expect(|p| match p {
        P5::PubRec(r) => Some(r.reason),
        _ => None,
    });
    assert_eq!(reason, PubRecReason::NotAuthorized);
    writer
        .client
        .publish("ok/marker", Q5::AtLeastOnce, false, "x")
        .unwrap();

    // Only the allowed messages reached the reader, on the other shard.
    assert_topics(&reader.topics_until("ok/marker"), &["ok/raw", "ok/marker"]);
}

#[test]
fn v311_denied_publish_is_acknowledged_as_usual_and_dropped() {
    let files = Files::new("acl-v311-publish");
    files.write_acl(PUBLISH_ACL);
    let broker = files.start("auto");
    let reader = V5::connect(&broker, &broker.id_on(0, "reader"), Some(("reader", "")));
    reader.subscribe(&[("#", Q5::AtLeastOnce)]);

    // Raw bytes: a plain PUBACK (3.1.1 has no way to say "denied"), PUBREC / PUBCOMP for QoS 2.
    let mut raw = raw_login(
        &broker,
        V3_1_1,
        &broker.id_on(1, "w-raw"),
        Some("writer"),
        None,
    );
    raw.send_bytes(&crate::common::hex("32 0d 0008 64656e6965642f31 0001 78")); // denied/1 QoS 1
    let mut got = [0u8; 4];
    std::io::Read::read_exact(&mut raw.stream, &mut got).unwrap();
    assert_eq!(got, [0x40, 0x02, 0x00, 0x01], "PUBACK, return code implied");
    assert_eq!(
        raw_publish(&mut raw, "denied/2", QoS::ExactlyOnce, 2, "x"),
        Some(ReasonCode::SUCCESS)
    );
    // rumqttc's 3.1.1 client completes all three QoS flows normally.
    let writer = V311::connect(&broker, &broker.id_on(1, "writer"), Some(("writer", "")));
    for qos in [Q3::AtMostOnce, Q3::AtLeastOnce, Q3::ExactlyOnce] {
        writer.publish("denied/rumqttc", qos, false, "x");
    }
    writer.publish("ok/marker", Q3::AtLeastOnce, false, "x");

    assert_topics(&reader.topics_until("ok/marker"), &["ok/marker"]);
}

/// One SUBSCRIBE, several filters: each gets its own code.
#[test]
fn denied_filters_get_their_own_code_in_one_subscribe() {
    let files = Files::new("acl-subscribe");
    files.write_acl(
        "user carol
topic read news/#
topic read sensors/+/temperature
topic deny news/secret/#
",
    );
    let broker = files.start("auto");
    let filters = [
        "news/#",           // allowed, but for news/secret/…: granted, checked per message
        "admin/#",          // nothing readable
        "sensors/#",        // partly readable
        "news/secret/keys", // denied outright
        "sensors/a/temperature",
    ];
    let v5 = V5::connect(&broker, &broker.id_on(0, "carol5"), Some(("carol", "")));
    let codes = v5.subscribe(&filters.map(|f| (f, Q5::AtLeastOnce)));
    use V5Sub::{NotAuthorized, Success};
    assert_eq!(
        codes,
        [
            Success(Q5::AtLeastOnce),
            NotAuthorized,
            Success(Q5::AtLeastOnce),
            NotAuthorized,
            Success(Q5::AtLeastOnce)
        ]
    );
    let v311 = V311::connect(&broker, &broker.id_on(1, "carol3"), Some(("carol", "")));
    let codes = v311.subscribe(&filters.map(|f| (f, Q3::ExactlyOnce)));
    use V311Sub::{Failure, Success as Granted};
    assert_eq!(
        codes,
        [
            Granted(Q3::ExactlyOnce),
            Failure,
            Granted(Q3::ExactlyOnce),
            Failure,
            Granted(Q3::ExactlyOnce)
        ]
    );
    // The same over raw bytes: 0x87 in MQTT 5, 0x80 in 3.1.1.
    for (shard, version, denied) in [
        (1, MQTT5, ReasonCode::NOT_AUTHORIZED),
        (0, V3_1_1, ReasonCode::UNSPECIFIED_ERROR),
    ] {
        let mut raw = raw_login(
            &broker,
            version,
            &broker.id_on(shard, "raw"),
            Some("carol"),
            None,
        );
        let codes = raw_subscribe(
            &mut raw,
            7,
            &[("admin/x", QoS::AtMostOnce), ("news/a", QoS::AtMostOnce)],
        );
        assert_eq!(codes, [denied, ReasonCode::GRANTED_QOS_0], "{version:?}");
    }
}

/// ACL of the partial-subscription tests: carol reads some sensor topics, dave writes them all.
const SENSORS_ACL: &str = "\
user carol
topic read sensors/+/temperature
user dave
topic write sensors/#
";

/// Topics dave publishes after the subscribers subscribed `sensors/#`; only the temperatures
/// are for carol.
const SENSOR_TOPICS: [&str; 5] = [
    "sensors/a/temperature",
    "sensors/a/humidity",
    "sensors/b/temperature",
    "sensors/b/temperature/raw",
    "sensors/z/temperature", // marker
];

/// [ACL] before [filter]: a content filter never widens what a client may read. A filtered
/// subscription to a denied filter is refused like an unfiltered one; on a partly readable
/// wildcard, a filter that every message passes still gets only the readable topics.
#[test]
fn a_content_filter_never_widens_what_the_acl_allows() {
    let files = Files::new("acl-filter");
    files.write_acl(SENSORS_ACL);
    let broker = files.start("auto");
    let mut dave = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(1, "dave-f"),
        Some("dave"),
        None,
    );
    let mut carol = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(0, "carol-f"),
        Some("carol"),
        None,
    );
    assert_eq!(
        raw_subscribe(
            &mut carol,
            1,
            &[
                ("$filter/true || !true/other/#", QoS::AtMostOnce),
                ("$filter/true/sensors/#", QoS::AtMostOnce)
            ]
        ),
        [ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_0]
    );
    for topic in SENSOR_TOPICS {
        raw_publish_qos0(&mut dave, topic, "{}");
    }
    let readable = [SENSOR_TOPICS[0], SENSOR_TOPICS[2], SENSOR_TOPICS[4]];
    assert_topics(&raw_topics_until(&mut carol, SENSOR_TOPICS[4]), &readable);
}

#[test]
fn a_partly_allowed_wildcard_receives_only_readable_topics() {
    let files = Files::new("acl-partial");
    files.write_acl(SENSORS_ACL);
    let broker = files.start("auto");
    let v311 = V311::connect(&broker, &broker.id_on(0, "carol3"), Some(("carol", "")));
    let v5 = V5::connect(&broker, &broker.id_on(0, "carol5"), Some(("carol", "")));
    assert_eq!(
        v311.subscribe(&[("sensors/#", Q3::AtLeastOnce)]),
        [V311Sub::Success(Q3::AtLeastOnce)]
    );
    assert_eq!(
        v5.subscribe(&[("sensors/#", Q5::AtLeastOnce)]),
        [V5Sub::Success(Q5::AtLeastOnce)]
    );
    let mut raw = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(1, "carol-raw"),
        Some("carol"),
        None,
    );
    assert_eq!(
        raw_subscribe(&mut raw, 1, &[("sensors/+/+", QoS::AtMostOnce)]),
        [ReasonCode::GRANTED_QOS_0]
    );

    let dave = V311::connect(&broker, &broker.id_on(1, "dave"), Some(("dave", "")));
    for topic in SENSOR_TOPICS {
        dave.publish(topic, Q3::AtLeastOnce, false, "21.5");
    }
    let readable = [SENSOR_TOPICS[0], SENSOR_TOPICS[2], SENSOR_TOPICS[4]];
    assert_topics(&v311.topics_until(SENSOR_TOPICS[4]), &readable);
    assert_topics(&v5.topics_until(SENSOR_TOPICS[4]), &readable);
    assert_topics(&raw_topics_until(&mut raw, SENSOR_TOPICS[4]), &readable);
}

#[test]
fn a_retained_message_on_an_unreadable_topic_is_not_sent() {
    let files = Files::new("acl-retained");
    files.write_acl(
        "user writer
topic write r/#
user reader
topic read r/open/#
topic read r/marker
user admin
topic read r/#
",
    );
    let broker = files.start("auto");
    let writer = V311::connect(&broker, &broker.id_on(1, "writer"), Some(("writer", "")));
    // QoS 1: PUBACK comes once the retained message is stored on every shard.
    writer.publish("r/open/a", Q3::AtLeastOnce, true, "open");
    writer.publish("r/secret/b", Q3::AtLeastOnce, true, "secret");

    for (version, prefix) in [(V3_1_1, "reader3"), (MQTT5, "reader5")] {
        let mut reader = raw_login(
            &broker,
            version,
            &broker.id_on(0, prefix),
            Some("reader"),
            None,
        );
        let codes = raw_subscribe(&mut reader, 1, &[("r/#", QoS::AtMostOnce)]);
        assert_eq!(codes, [ReasonCode::GRANTED_QOS_0], "{version:?}");
        writer.publish("r/marker", Q3::AtMostOnce, false, "live");
        // Retained messages follow the SUBACK at once; the marker comes after them.
        assert_topics(
            &raw_topics_until(&mut reader, "r/marker"),
            &["r/open/a", "r/marker"],
        );
        // Subscribing to the secret topic itself is refused: no retained message either.
        let codes = raw_subscribe(&mut reader, 2, &[("r/secret/b", QoS::AtMostOnce)]);
        assert!(codes[0].is_error(), "{version:?}: {codes:?}");
        writer.publish("r/marker", Q3::AtMostOnce, false, "live");
        assert_topics(&raw_topics_until(&mut reader, "r/marker"), &["r/marker"]);
    }
    // Whereas a reader of everything gets both: the secret was stored, just not for `reader`.
    let mut admin = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(0, "admin"),
        Some("admin"),
        None,
    );
    raw_subscribe(&mut admin, 1, &[("r/#", QoS::AtMostOnce)]);
    writer.publish("r/marker", Q3::AtMostOnce, false, "live");
    let mut got = raw_topics_until(&mut admin, "r/marker");
    got.sort();
    assert_topics(&got, &["r/marker", "r/open/a", "r/secret/b"]);
}

#[test]
fn pattern_rules_substitute_client_id_and_user_name() {
    let files = Files::new("acl-pattern");
    files.write_acl(
        "topic read devices/+/announce
pattern readwrite devices/%c/#
pattern read users/%u/inbox
user alice
topic write users/+/inbox
",
    );
    let broker = files.start("auto");
    // %c: each device owns its own tree.
    let dev1 = broker.id_on(1, "dev");
    let dev0 = broker.id_on(0, "dev");
    let mut d1 = raw_login(&broker, MQTT5, &dev1, None, None);
    let mut d0 = raw_login(&broker, MQTT5, &dev0, None, None);
    let codes = raw_subscribe(
        &mut d0,
        1,
        &[
            ("devices/+/status", QoS::AtMostOnce),
            (&format!("devices/{dev1}/status"), QoS::AtMostOnce),
            ("devices/+/announce", QoS::AtMostOnce),
        ],
    );
    use ReasonCode as R;
    assert_eq!(
        codes,
        [R::GRANTED_QOS_0, R::NOT_AUTHORIZED, R::GRANTED_QOS_0]
    );
    let mut publish = |topic: String, id| raw_publish(&mut d1, &topic, QoS::AtLeastOnce, id, "x");
    assert_eq!(
        publish(format!("devices/{dev0}/status"), 1),
        Some(R::NOT_AUTHORIZED)
    );
    assert_eq!(
        publish(format!("devices/{dev1}/status"), 2),
        Some(R::SUCCESS)
    );
    assert_eq!(
        publish(format!("devices/{dev1}/announce"), 3),
        Some(R::SUCCESS)
    );
    // dev0's `devices/+/status` is partial: not dev1's status, ...
    let announce = format!("devices/{dev1}/announce");
    assert_eq!(raw_topics_until(&mut d0, &announce), [announce]);
    // ... only its own.
    let own = format!("devices/{dev0}/status");
    raw_publish_qos0(&mut d0, &own, "self");
    assert_eq!(raw_topics_until(&mut d0, &own), [own]);

    // %u: alice and bob each read their own inbox; alice may write to any inbox.
    let bob = V311::connect(&broker, &broker.id_on(0, "bob"), Some(("bob", "")));
    assert_eq!(
        bob.subscribe(&[
            ("users/bob/inbox", Q3::AtLeastOnce),
            ("users/alice/inbox", Q3::AtLeastOnce)
        ]),
        [V311Sub::Success(Q3::AtLeastOnce), V311Sub::Failure]
    );
    let alice = V5::connect(&broker, &broker.id_on(1, "alice"), Some(("alice", "")));
    alice
        .client
        .publish("users/bob/inbox", Q5::AtLeastOnce, false, "hi bob")
        .unwrap();
    let got = bob.next_publish();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("users/bob/inbox", &b"hi bob"[..])
    );
    // bob may not write to alice's inbox (patterns give him read only).
    let mut bob_raw = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(1, "bob-raw"),
        Some("bob"),
        None,
    );
    assert_eq!(
        raw_publish(&mut bob_raw, "users/alice/inbox", QoS::AtLeastOnce, 1, "x"),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
    // An anonymous client has no %u: no inbox to read.
    let mut anon = raw_login(&broker, V3_1_1, &broker.id_on(0, "anon"), None, None);
    assert_eq!(
        raw_subscribe(&mut anon, 1, &[("users/+/inbox", QoS::AtMostOnce)]),
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    // A client id that is a wildcard cannot widen `devices/%c/#` into `devices/+/#`.
    let mut wild = raw_login(&broker, MQTT5, "+", None, None);
    assert_eq!(
        raw_publish(
            &mut wild,
            &format!("devices/{dev0}/status"),
            QoS::AtLeastOnce,
            1,
            "x"
        ),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
}

#[test]
fn rules_before_the_first_user_line_are_for_anonymous_clients() {
    let files = Files::new("acl-anonymous");
    files.write_acl(
        "# anonymous clients:
topic read public/#
topic write public/anonymous
user alice
topic readwrite public/#
",
    );
    let broker = files.start("auto");
    let anon = V311::connect(&broker, &broker.id_on(0, "anon"), None);
    assert_eq!(
        anon.subscribe(&[
            ("public/#", Q3::AtLeastOnce),
            ("private/#", Q3::AtLeastOnce)
        ]),
        [V311Sub::Success(Q3::AtLeastOnce), V311Sub::Failure]
    );
    let mut anon_pub = raw_login(&broker, MQTT5, &broker.id_on(1, "anon-pub"), None, None);
    assert_eq!(
        raw_publish(&mut anon_pub, "public/news", QoS::AtLeastOnce, 1, "x"),
        Some(ReasonCode::NOT_AUTHORIZED),
        "anonymous clients read public/# but write only public/anonymous"
    );
    assert_eq!(
        raw_publish(&mut anon_pub, "public/anonymous", QoS::AtLeastOnce, 2, "x"),
        Some(ReasonCode::SUCCESS)
    );
    // alice's section replaces the anonymous rules for her: she writes public/#, ...
    let alice = V5::connect(&broker, &broker.id_on(1, "alice"), Some(("alice", "")));
    alice
        .client
        .publish("public/news", Q5::AtLeastOnce, false, "x")
        .unwrap();
    assert_topics(
        &anon.topics_until("public/news"),
        &["public/anonymous", "public/news"],
    );
    // ... and a user without a section of its own gets no anonymous rules.
    let mut bob = raw_login(&broker, MQTT5, &broker.id_on(0, "bob"), Some("bob"), None);
    assert_eq!(
        raw_subscribe(&mut bob, 1, &[("public/#", QoS::AtMostOnce)]),
        [ReasonCode::NOT_AUTHORIZED]
    );
}

#[test]
fn a_will_on_a_denied_topic_is_not_published() {
    let files = Files::new("acl-will");
    files.write_acl(
        "user w
topic write wills/ok
topic write wills/marker
user watcher
topic read wills/#
",
    );
    let broker = files.start("auto");
    let watcher = V311::connect(&broker, &broker.id_on(0, "watcher"), Some(("watcher", "")));
    watcher.subscribe(&[("wills/#", Q3::AtLeastOnce)]);

    for version in [V3_1_1, MQTT5] {
        // A will on a topic w may write, and one on a topic w may not.
        let ok_id = broker.id_on(1, &format!("w-ok-{}", version.level()));
        let denied_id = broker.id_on(1, &format!("w-denied-{}", version.level()));
        let ok = raw_login_with_will(&broker, version, &ok_id, "wills/ok");
        let denied = raw_login_with_will(&broker, version, &denied_id, "wills/denied");
        // Both connections end without DISCONNECT: their wills are due.
        drop(denied);
        // A new connection with the same id on the same shard: the old one's close (or
        // takeover) — and any will it publishes — comes before this CONNACK.
        let mut again = raw_login(&broker, version, &denied_id, Some("w"), None);
        assert_eq!(
            raw_publish(&mut again, "wills/marker", QoS::AtLeastOnce, 1, "x"),
            Some(ReasonCode::SUCCESS)
        );
        assert_topics(&watcher.topics_until("wills/marker"), &["wills/marker"]);
        drop(ok);
        let got = watcher.next_publish();
        assert_eq!(got.topic, "wills/ok", "{version:?}");
    }
}

fn raw_login_with_will(
    broker: &crate::common::TestBroker,
    version: coremq::protocol::ProtocolVersion,
    id: &str,
    topic: &str,
) -> crate::common::RawClient {
    let mut connect = connect_packet(version, id, Some("w"), None);
    connect.will = Some(will(topic, "gone"));
    let (code, client) = raw_try(broker, connect);
    // The will's topic is not checked against the ACL with a refusal: it is just dropped.
    assert_eq!(code, ReasonCode::SUCCESS);
    client
}

#[test]
fn a_client_without_a_user_section_gets_nothing_but_patterns() {
    let files = Files::new("acl-nothing");
    files.write_acl("user alice\ntopic readwrite a/#\n");
    let broker = files.start("auto");
    let mut anon = raw_login(&broker, MQTT5, &broker.id_on(0, "anon"), None, None);
    assert_eq!(
        raw_subscribe(
            &mut anon,
            1,
            &[("a/#", QoS::AtMostOnce), ("#", QoS::AtMostOnce)]
        ),
        [ReasonCode::NOT_AUTHORIZED, ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        raw_publish(&mut anon, "a/x", QoS::ExactlyOnce, 1, "x"),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
    let mut alice = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(1, "alice"),
        Some("alice"),
        None,
    );
    assert_eq!(
        raw_publish(&mut alice, "a/x", QoS::ExactlyOnce, 1, "x"),
        Some(ReasonCode::SUCCESS)
    );
}
