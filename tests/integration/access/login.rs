//! Who may connect: anonymous access (`COREMQ_ALLOW_ANONYMOUS` auto / true / false) and the
//! password file with genuine Mosquitto `$7$` and `$6$` hashes. Bad credentials get CONNACK
//! 0x86 / return code 4; anonymous clients that are not allowed get 0x87 / return code 5.

use coremq::protocol::ProtocolVersion::{V3_1_1, V5 as MQTT5};
use coremq::protocol::{ProtocolVersion, QoS};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::ConnectReturnCode as V311Code;

use super::*;
use crate::common::TestBroker;

const VERSIONS: [ProtocolVersion; 2] = [V3_1_1, MQTT5];

/// The exact refusal bytes for "bad credentials" in `version`.
fn bad_credentials(version: ProtocolVersion) -> &'static [u8] {
    if version.is_v5() {
        V5_BAD_CREDENTIALS
    } else {
        V311_BAD_CREDENTIALS
    }
}

fn not_authorized(version: ProtocolVersion) -> &'static [u8] {
    if version.is_v5() {
        V5_NOT_AUTHORIZED
    } else {
        V311_NOT_AUTHORIZED
    }
}

/// An anonymous publisher on one shard reaches an anonymous subscriber on the other.
fn anonymous_round_trip(broker: &TestBroker) {
    let sub = V311::connect(broker, &broker.id_on(0, "anon-sub"), None);
    let publ = V5::connect(broker, &broker.id_on(1, "anon-pub"), None);
    sub.subscribe(&[("anon/#", rumqttc::QoS::AtLeastOnce)]);
    publ.client
        .publish(
            "anon/x",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "hi",
        )
        .unwrap();
    assert_eq!(sub.next_publish().topic, "anon/x");
}

#[test]
fn without_a_password_file_anonymous_clients_connect_by_default() {
    let files = Files::new("anon-default");
    let broker = files.start("auto");
    anonymous_round_trip(&broker);
    // A user name without a password file is just a name: no check to fail.
    for (shard, version) in VERSIONS.into_iter().enumerate() {
        let id = broker.id_on(shard, "named");
        raw_login(&broker, version, &id, Some("whoever"), Some("anything"));
    }
}

#[test]
fn with_a_password_file_anonymous_clients_are_refused_unless_allowed() {
    let files = Files::new("anon-refused");
    files.write_passwords(&mosquitto_users());
    for flag in ["auto", "false"] {
        let broker = files.start(flag);
        for (shard, version) in VERSIONS.into_iter().enumerate() {
            let id = broker.id_on(shard, "anon");
            let connect = connect_packet(version, &id, None, None);
            assert_eq!(
                refusal_bytes(&broker, connect),
                not_authorized(version),
                "COREMQ_ALLOW_ANONYMOUS={flag}, {version:?}"
            );
            // A password without a user name is still anonymous (MQTT 5 allows sending one).
            if version.is_v5() {
                let connect = connect_packet(version, &id, None, Some(ALICE_PASSWORD));
                assert_eq!(refusal_bytes(&broker, connect), V5_NOT_AUTHORIZED);
            }
        }
        assert_eq!(
            V311::refused(&broker, &broker.id_on(0, "anon"), None),
            V311Code::NotAuthorized
        );
        assert_eq!(
            V5::refused(&broker, &broker.id_on(1, "anon"), None),
            V5Code::NotAuthorized
        );
        // Users in the file still log in.
        V311::connect(
            &broker,
            &broker.id_on(1, "alice"),
            Some(("alice", ALICE_PASSWORD)),
        );
    }
    // COREMQ_ALLOW_ANONYMOUS=true lets them in beside the file's users, whose passwords are
    // still checked.
    let broker = files.start("true");
    anonymous_round_trip(&broker);
    let wrong = connect_packet(V3_1_1, &broker.id_on(0, "a"), Some("alice"), Some("wrong"));
    assert_eq!(refusal_bytes(&broker, wrong), V311_BAD_CREDENTIALS);
}

#[test]
fn allow_anonymous_false_without_a_password_file_refuses_everyone() {
    let files = Files::new("anon-false");
    let broker = files.start("false");
    for (shard, version) in VERSIONS.into_iter().enumerate() {
        let id = broker.id_on(shard, "c");
        let anonymous = connect_packet(version, &id, None, None);
        assert_eq!(refusal_bytes(&broker, anonymous), not_authorized(version));
        // No password file can vouch for a user name either.
        let named = connect_packet(version, &id, Some("alice"), Some(ALICE_PASSWORD));
        assert_eq!(refusal_bytes(&broker, named), not_authorized(version));
    }
}

/// Both Mosquitto hash formats, both protocol versions, clients homed on both shards; the two
/// users then exchange a message across shards.
#[test]
fn mosquitto_7_and_6_hashes_log_in_with_the_right_password() {
    let files = Files::new("mosquitto");
    files.write_passwords(&mosquitto_users());
    let broker = files.start("auto");
    for (user, password) in [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] {
        for (shard, version) in [(0, V3_1_1), (1, V3_1_1), (0, MQTT5), (1, MQTT5)] {
            let id = broker.id_on(shard, user);
            let mut client = raw_login(&broker, version, &id, Some(user), Some(password));
            client.send(&coremq::protocol::Packet::PingReq);
            assert_eq!(client.expect_packet(), coremq::protocol::Packet::PingResp);
        }
    }
    let bob = V311::connect(
        &broker,
        &broker.id_on(0, "bob"),
        Some(("bob", BOB_PASSWORD)),
    );
    bob.subscribe(&[("hello/#", rumqttc::QoS::AtLeastOnce)]);
    let alice = V5::connect(
        &broker,
        &broker.id_on(1, "alice"),
        Some(("alice", ALICE_PASSWORD)),
    );
    alice
        .client
        .publish(
            "hello/bob",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "from alice",
        )
        .unwrap();
    let got = bob.next_publish();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("hello/bob", &b"from alice"[..])
    );
}

#[test]
fn wrong_password_unknown_user_or_missing_password_get_bad_credentials() {
    let files = Files::new("bad-credentials");
    files.write_passwords(&mosquitto_users());
    let broker = files.start("auto");
    for (shard, version) in VERSIONS.into_iter().enumerate() {
        let id = broker.id_on(shard, "bad");
        let cases = [
            ("alice, bob's password", Some("alice"), Some(BOB_PASSWORD)),
            ("bob, alice's password", Some("bob"), Some(ALICE_PASSWORD)),
            ("alice, one letter off", Some("alice"), Some("wonderlanD")),
            ("unknown user", Some("mallory"), Some(ALICE_PASSWORD)),
            ("user name without password", Some("alice"), None),
            ("empty password", Some("bob"), Some("")),
        ];
        for (what, user, password) in cases {
            let connect = connect_packet(version, &id, user, password);
            assert_eq!(
                refusal_bytes(&broker, connect),
                bad_credentials(version),
                "{what}, {version:?}"
            );
        }
    }
    assert_eq!(
        V311::refused(&broker, &broker.id_on(1, "r"), Some(("alice", "nope"))),
        V311Code::BadUserNamePassword
    );
    assert_eq!(
        V5::refused(&broker, &broker.id_on(0, "r"), Some(("nobody", "nope"))),
        V5Code::BadUserNamePassword
    );
    // A failed login leaves nothing behind: the right password still works afterwards, and
    // the accepted one is not mistaken for another after it was cached.
    raw_login(
        &broker,
        V3_1_1,
        "after",
        Some("alice"),
        Some(ALICE_PASSWORD),
    );
    let wrong = connect_packet(V3_1_1, "after", Some("alice"), Some("wonderland2"));
    assert_eq!(refusal_bytes(&broker, wrong), V311_BAD_CREDENTIALS);
    let mut again = raw_login(
        &broker,
        V3_1_1,
        "after",
        Some("alice"),
        Some(ALICE_PASSWORD),
    );
    assert_eq!(
        raw_publish(&mut again, "t", QoS::AtLeastOnce, 1, "x"),
        Some(coremq::protocol::ReasonCode::SUCCESS)
    );
}
