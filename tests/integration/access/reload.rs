//! Reloading the files under live connections (`Broker::reload`, what SIGHUP calls): connected
//! clients meet the new ACL on their next PUBLISH, SUBSCRIBE and delivery; the new password
//! file decides the next logins (cached logins included); a file that does not parse is
//! reported with its name and line and changes nothing.

use coremq::protocol::ProtocolVersion::{V3_1_1, V5 as MQTT5};
use coremq::protocol::{QoS, ReasonCode};

use super::*;

const ACL_BEFORE: &str = "\
user alice
topic write a/#
topic write x/#
user bob
topic read a/#
topic read x/#
";

/// alice loses x/# and gains b/#; bob keeps only a/public of a/#, gains b/# and c/#.
const ACL_AFTER: &str = "\
user alice
topic write a/#
topic write b/#
user bob
topic read a/public
topic read b/#
topic read c/#
";

#[test]
fn connected_clients_meet_the_reloaded_acl_on_their_next_packet_and_delivery() {
    use ReasonCode as R;
    let files = Files::new("reload-acl");
    files
        .write_passwords(&mosquitto_users())
        .write_acl(ACL_BEFORE);
    let broker = files.start("auto");
    let id_a = broker.id_on(1, "alice");
    let mut alice = raw_login(&broker, MQTT5, &id_a, Some("alice"), Some(ALICE_PASSWORD));
    let id_b = broker.id_on(0, "bob");
    let mut bob = raw_login(&broker, V3_1_1, &id_b, Some("bob"), Some(BOB_PASSWORD));
    let q0 = QoS::AtMostOnce;
    let codes = raw_subscribe(
        &mut bob,
        1,
        &[("a/#", q0), ("b/#", q0), ("c/#", q0), ("x/#", q0)],
    );
    let denied = R::UNSPECIFIED_ERROR; // 0x80 in MQTT 3.1.1
    assert_eq!(codes, [R::GRANTED_QOS_0, denied, denied, R::GRANTED_QOS_0]);
    let mut publish = |topic: &str, id| raw_publish(&mut alice, topic, QoS::AtLeastOnce, id, "x");
    assert_eq!(publish("x/1", 1), Some(R::SUCCESS));
    assert_eq!(publish("b/1", 2), Some(R::NOT_AUTHORIZED));
    assert_eq!(publish("a/1", 3), Some(R::SUCCESS));
    assert_topics(&raw_topics_until(&mut bob, "a/1"), &["x/1", "a/1"]);

    files.write_acl(ACL_AFTER);
    broker.broker.reload().expect("the new ACL loads");

    // Same connections, new rules: publish ...
    assert_eq!(publish("x/2", 4), Some(R::NOT_AUTHORIZED));
    assert_eq!(publish("b/2", 5), Some(R::SUCCESS));
    // ... delivery through bob's old `a/#` subscription: a/2 no longer, a/public still ...
    assert_eq!(publish("a/2", 6), Some(R::SUCCESS));
    assert_eq!(publish("a/public", 7), Some(R::SUCCESS));
    assert_topics(&raw_topics_until(&mut bob, "a/public"), &["a/public"]);
    // ... and subscribe.
    let codes = raw_subscribe(&mut bob, 2, &[("b/#", q0), ("c/#", q0), ("x/#", q0)]);
    assert_eq!(codes, [R::GRANTED_QOS_0, R::GRANTED_QOS_0, denied]);
    assert_eq!(publish("b/3", 8), Some(R::SUCCESS));
    assert_topics(&raw_topics_until(&mut bob, "b/3"), &["b/3"]);
}

#[test]
fn a_malformed_file_is_reported_with_file_and_line_and_keeps_the_old_rules() {
    use ReasonCode as R;
    let files = Files::new("reload-bad");
    files
        .write_passwords(&mosquitto_users())
        .write_acl(ACL_AFTER);
    let broker = files.start("auto");
    let mut alice = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(0, "alice"),
        Some("alice"),
        Some(ALICE_PASSWORD),
    );

    // Lines 1-2 are valid and would allow x/#; line 3 is not.
    files.write_acl("user alice\ntopic write x/#\ntopic sometimes y/#\n");
    let err = broker.broker.reload().expect_err("a bad ACL is refused");
    assert_eq!(err.file, files.acl);
    assert_eq!(err.line, Some(3));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:3: ", shown(&files.acl))),
        "{text}"
    );
    assert!(text.contains("sometimes"), "{text}");
    // Nothing of it applies; the old rules do.
    assert_eq!(
        raw_publish(&mut alice, "x/1", QoS::AtLeastOnce, 1, "x"),
        Some(R::NOT_AUTHORIZED)
    );
    assert_eq!(
        raw_publish(&mut alice, "b/1", QoS::AtLeastOnce, 2, "x"),
        Some(R::SUCCESS)
    );

    // A bad password file stops the reload of a good ACL too: both files or neither.
    files.write_acl("user alice\ntopic write x/#\n");
    files.write_passwords(&format!("{MOSQUITTO_ALICE}\n\nbob:$5$abc$def\n"));
    let err = broker
        .broker
        .reload()
        .expect_err("a bad password file is refused");
    assert_eq!(
        (err.file.as_path(), err.line),
        (files.passwords.as_path(), Some(3))
    );
    assert!(err.to_string().contains("$5$"), "{err}");
    assert_eq!(
        raw_publish(&mut alice, "x/2", QoS::AtLeastOnce, 3, "x"),
        Some(R::NOT_AUTHORIZED)
    );
    // bob is still in force from the old password file.
    raw_login(
        &broker,
        V3_1_1,
        &broker.id_on(1, "bob"),
        Some("bob"),
        Some(BOB_PASSWORD),
    );

    // A missing file is an error too, without a line.
    std::fs::remove_file(&files.acl).unwrap();
    let err = broker
        .broker
        .reload()
        .expect_err("a missing ACL is refused");
    assert_eq!((err.file.as_path(), err.line), (files.acl.as_path(), None));

    // Fixed files load.
    files.write_passwords(&mosquitto_users());
    files.write_acl("user alice\ntopic write x/#\n");
    broker.broker.reload().expect("fixed files load");
    assert_eq!(
        raw_publish(&mut alice, "x/3", QoS::AtLeastOnce, 4, "x"),
        Some(R::SUCCESS)
    );
}

#[test]
fn a_reloaded_password_file_decides_who_logs_in_next() {
    let files = Files::new("reload-passwords");
    files.write_passwords(&mosquitto_users());
    let broker = files.start("auto");
    // alice logs in on both shards (and is remembered by each shard's login cache).
    let mut connected = Vec::new();
    for shard in 0..2 {
        for version in [V3_1_1, MQTT5] {
            let id = broker.id_on(shard, &format!("alice-{}", version.level()));
            connected.push(raw_login(
                &broker,
                version,
                &id,
                Some("alice"),
                Some(ALICE_PASSWORD),
            ));
        }
    }
    let carol_password = "carol's new password";
    let carol = coremq::auth::password::PasswordHash::pbkdf2_with_salt(
        carol_password.as_bytes(),
        b"carolsaltsal",
        1000,
    );
    // alice is removed, carol added, bob keeps his line.
    files.write_passwords(&format!("carol:{carol}\n{MOSQUITTO_BOB}\n"));
    broker.broker.reload().expect("the new password file loads");

    for shard in 0..2 {
        for version in [V3_1_1, MQTT5] {
            let id = broker.id_on(shard, "next");
            let alice = connect_packet(version, &id, Some("alice"), Some(ALICE_PASSWORD));
            let refused = if version.is_v5() {
                V5_BAD_CREDENTIALS
            } else {
                V311_BAD_CREDENTIALS
            };
            assert_eq!(
                refusal_bytes(&broker, alice),
                refused,
                "{version:?} shard {shard}"
            );
            raw_login(&broker, version, &id, Some("carol"), Some(carol_password));
            raw_login(&broker, version, &id, Some("bob"), Some(BOB_PASSWORD));
        }
    }
    // Connections made before the reload stay up: a reload checks logins, not sessions.
    for client in &mut connected {
        client.send(&coremq::protocol::Packet::PingReq);
        assert_eq!(client.expect_packet(), coremq::protocol::Packet::PingResp);
    }
}
