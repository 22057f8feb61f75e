//! SCRAM-SHA-256 (MQTT 5 enhanced authentication, method "SCRAM-SHA-256") against a password
//! file whose verifier was written by the library (`passwd_command` with `scram_iterations`,
//! what `coremq passwd --scram` runs). The client side is implemented here from RFC 5802 and
//! checked against RFC 7677's example first, so the broker is tested against an independent
//! implementation rather than its own.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use coremq::auth::password::{passwd_command, Change, PasswdOptions, PasswordSource};
use coremq::auth::scram::METHOD;
use coremq::protocol::ProtocolVersion::V5 as MQTT5;
use coremq::protocol::{Auth, AuthProperties, Packet, QoS, ReasonCode};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::*;
use crate::common::{RawClient, TestBroker};

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The client's half of one SCRAM-SHA-256 exchange (RFC 5802 §3, no channel binding).
struct ScramClient {
    user: String,
    password: String,
    nonce: String,
}

/// What the client sends last and expects back.
struct ClientFinal {
    message: String,
    /// `v=` + base64(ServerSignature): the server-final message the server must send.
    server_final: String,
}

impl ScramClient {
    fn new(user: &str, password: &str, nonce: &str) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            nonce: nonce.into(),
        }
    }

    fn first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.nonce)
    }

    /// client-first-message: GS2 header "n,," (no binding, no authzid) + bare.
    fn first(&self) -> String {
        format!("n,,{}", self.first_bare())
    }

    /// client-final-message for `server_first` (`r=…,s=…,i=…`).
    fn answer(&self, server_first: &str) -> ClientFinal {
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from {server_first:?}"))
        };
        let nonce = attr("r=");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server's nonce extends ours: {nonce:?}"
        );
        let salt = B64.decode(attr("s=")).expect("base64 salt");
        let iterations: u32 = attr("i=").parse().expect("an iteration count");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        // c= base64 of the GS2 header "n,,".
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare());
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        ClientFinal {
            message: format!("{without_proof},p={}", B64.encode(proof)),
            server_final: format!(
                "v={}",
                B64.encode(hmac(&server_key, auth_message.as_bytes()))
            ),
        }
    }
}

/// The test's client against RFC 7677 §3's worked example.
#[test]
fn the_test_client_reproduces_rfc_7677() {
    let client = ScramClient::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    assert_eq!(client.first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let fin = client.answer(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    assert_eq!(
        fin.message,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    assert_eq!(
        fin.server_final,
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

const CAROL_PASSWORD: &str = "correct horse battery staple";

/// A password file with alice (a Mosquitto hash, no SCRAM verifier) and carol, written by the
/// library with a SCRAM-SHA-256 verifier (4096 rounds, RFC 7677's minimum), and an ACL.
fn scram_files(name: &str) -> Files {
    let files = Files::new(name);
    files.write_passwords(&format!("{MOSQUITTO_ALICE}\n"));
    let options = PasswdOptions {
        iterations: 1000,
        scram_iterations: Some(4096),
    };
    let change = passwd_command(
        &files.passwords,
        "carol",
        PasswordSource::Value(CAROL_PASSWORD),
        &options,
    )
    .expect("passwd writes carol");
    assert_eq!(change, Change::Added);
    let text = std::fs::read_to_string(&files.passwords).unwrap();
    let carol = text.lines().find(|l| l.starts_with("carol:")).unwrap();
    assert_eq!(
        carol.split(':').nth(2).map(|v| v.split('$').next()),
        Some(Some("scram-sha-256"))
    );
    files.write_acl(
        "user carol
topic readwrite carol/#
user alice
topic read carol/#
",
    );
    files
}

fn auth_packet(code: ReasonCode, data: String) -> Packet {
    Packet::Auth(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(MqttString::copy_from(METHOD).unwrap()),
            authentication_data: Some(Bytes::from(data)),
            ..AuthProperties::default()
        },
    })
}

/// The server's data in an AUTH packet with `code` and the SCRAM method.
fn expect_auth(client: &mut RawClient, code: ReasonCode) -> String {
    match client.expect_packet() {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, code, "{a:?}");
            assert_eq!(
                a.properties
                    .authentication_method
                    .as_ref()
                    .map(|m| m.as_str()),
                Some(METHOD)
            );
            let data = a
                .properties
                .authentication_data
                .expect("authentication data");
            String::from_utf8(data.to_vec()).expect("UTF-8 SCRAM message")
        }
        other => panic!("expected AUTH {code:?}, got {other:?}"),
    }
}

/// Runs the CONNECT exchange as `scram` (with `username` in CONNECT, if any) up to the
/// CONNACK; returns it with the client and the server-final message the client computed.
fn scram_connect(
    broker: &TestBroker,
    id: &str,
    username: Option<&str>,
    scram: &ScramClient,
) -> (Box<coremq::protocol::ConnAck>, RawClient, String) {
    let mut connect = connect_packet(MQTT5, id, username, None);
    connect.properties.authentication_method = Some(MqttString::copy_from(METHOD).unwrap());
    connect.properties.authentication_data = Some(Bytes::from(scram.first()));
    let mut client = RawClient::connect(broker.addr, MQTT5);
    client.send(&Packet::Connect(Box::new(connect)));
    let server_first = expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION);
    let fin = scram.answer(&server_first);
    client.send(&auth_packet(
        ReasonCode::CONTINUE_AUTHENTICATION,
        fin.message,
    ));
    match client.expect_packet() {
        Packet::ConnAck(ack) => (ack, client, fin.server_final),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Logs in as carol over SCRAM; asserts the server proved itself.
fn carol_logs_in(broker: &TestBroker, id: &str, nonce: &str) -> RawClient {
    let scram = ScramClient::new("carol", CAROL_PASSWORD, nonce);
    let (ack, client, server_final) = scram_connect(broker, id, None, &scram);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
    // [MQTT-4.12.0-5] CONNACK names the method and carries the server-final message, which
    // only a holder of carol's verifier can compute.
    assert_eq!(
        ack.properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some(METHOD)
    );
    let data = ack
        .properties
        .authentication_data
        .expect("server-final in CONNACK");
    assert_eq!(std::str::from_utf8(&data).unwrap(), server_final);
    client
}

#[test]
fn scram_sha_256_logs_in_without_the_password_and_the_server_proves_itself() {
    let files = scram_files("scram-ok");
    let broker = files.start("auto");
    for shard in 0..2 {
        let id = broker.id_on(shard, "carol");
        let mut client = carol_logs_in(&broker, &id, &format!("clientnonce{shard}"));
        client.send(&Packet::PingReq);
        assert_eq!(client.expect_packet(), Packet::PingResp);
    }
    // The CONNECT may also name the same user.
    let scram = ScramClient::new("carol", CAROL_PASSWORD, "named");
    let (ack, _client, _) =
        scram_connect(&broker, &broker.id_on(1, "named"), Some("carol"), &scram);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    // Password login still works for the same user.
    raw_login(&broker, MQTT5, "plain", Some("carol"), Some(CAROL_PASSWORD));
}

#[test]
fn scram_with_a_wrong_password_or_unknown_user_gets_0x87() {
    let files = scram_files("scram-bad");
    let broker = files.start("auto");
    let cases = [
        ("wrong password", "carol", "Correct horse battery staple"),
        ("unknown user", "mallory", CAROL_PASSWORD),
        // alice's line has no SCRAM verifier: she can only log in with her password.
        ("user without a verifier", "alice", ALICE_PASSWORD),
    ];
    for (shard, (what, user, password)) in cases.into_iter().enumerate() {
        let scram = ScramClient::new(user, password, "nonce");
        let (ack, mut client, _) =
            scram_connect(&broker, &broker.id_on(shard % 2, "bad"), None, &scram);
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED, "{what}");
        assert!(ack.properties.authentication_data.is_none(), "{what}");
        assert!(client.recv().is_none(), "{what}: closed after the refusal");
    }
    // Unknown users get a challenge like everyone else's (4096 rounds, a stable salt), so the
    // challenge does not tell who exists.
    let challenge = |user: &str| {
        let scram = ScramClient::new(user, "x", "probe");
        let mut connect = connect_packet(MQTT5, "probe", None, None);
        connect.properties.authentication_method = Some(MqttString::copy_from(METHOD).unwrap());
        connect.properties.authentication_data = Some(Bytes::from(scram.first()));
        let mut client = RawClient::connect(broker.addr, MQTT5);
        client.send(&Packet::Connect(Box::new(connect)));
        let first = expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION);
        first
            .split_once(',')
            .map(|(_, salt_and_rounds)| salt_and_rounds.to_string())
            .unwrap()
    };
    let mallory = challenge("mallory");
    assert!(mallory.ends_with(",i=4096"), "{mallory}");
    assert_eq!(challenge("mallory"), mallory, "the same salt every time");
    assert_ne!(challenge("carol"), mallory);
    // carol's proof under another user name in CONNECT: refused.
    let scram = ScramClient::new("carol", CAROL_PASSWORD, "n");
    let (ack, _, _) = scram_connect(&broker, "other", Some("alice"), &scram);
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
}

/// Failed SCRAM exchanges count as failed logins (COREMQ_LOGIN_FAILURES): past the limit the
/// address is banned, and its next connection is closed before any exchange.
#[test]
fn failed_scram_exchanges_count_towards_the_login_ban() {
    let files = scram_files("scram-ban");
    let broker = files.start_tweaked("auto", |c| {
        c.login_failures = Some((2, std::time::Duration::from_secs(60)));
    });
    for n in 0..3 {
        let scram = ScramClient::new("carol", "wrong", &format!("n{n}"));
        let (ack, _, _) = scram_connect(&broker, &format!("guess-{n}"), None, &scram);
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED, "attempt {n}");
    }
    // Banned: the next connection is closed at once, whatever it sends (the ban crosses the
    // mesh to the accepting shard first: a moment).
    let closed = (0..50).any(|_| {
        let mut client = RawClient::connect(broker.addr, MQTT5);
        let scram = ScramClient::new("carol", CAROL_PASSWORD, "right");
        let mut connect = connect_packet(MQTT5, "right", None, None);
        connect.properties.authentication_method = Some(MqttString::copy_from(METHOD).unwrap());
        connect.properties.authentication_data = Some(Bytes::from(scram.first()));
        let mut bytes = bytes::BytesMut::new();
        Packet::Connect(Box::new(connect))
            .encode(MQTT5, &mut bytes)
            .unwrap();
        let _ = std::io::Write::write_all(&mut client.stream, &bytes);
        let closed = client.recv().is_none();
        if !closed {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        closed
    });
    assert!(
        closed,
        "the address was not banned after 3 failed exchanges"
    );
}

#[test]
fn the_scram_user_is_the_user_name_for_the_acl() {
    use ReasonCode as R;
    let files = scram_files("scram-acl");
    let broker = files.start("auto");
    // alice reads carol/# on one shard; carol, authenticated by SCRAM without a user name in
    // CONNECT, publishes from the other.
    let mut alice = raw_login(
        &broker,
        MQTT5,
        &broker.id_on(0, "alice"),
        Some("alice"),
        Some(ALICE_PASSWORD),
    );
    assert_eq!(
        raw_subscribe(&mut alice, 1, &[("carol/#", QoS::AtMostOnce)]),
        [R::GRANTED_QOS_0]
    );
    let mut carol = carol_logs_in(&broker, &broker.id_on(1, "carol"), "acl");
    assert_eq!(
        raw_publish(&mut carol, "alice/x", QoS::AtLeastOnce, 1, "x"),
        Some(R::NOT_AUTHORIZED)
    );
    assert_eq!(
        raw_publish(&mut carol, "carol/x", QoS::AtLeastOnce, 2, "x"),
        Some(R::SUCCESS)
    );
    assert_topics(&raw_topics_until(&mut alice, "carol/x"), &["carol/x"]);
    assert_eq!(
        raw_subscribe(
            &mut carol,
            3,
            &[("carol/#", QoS::AtMostOnce), ("alice/#", QoS::AtMostOnce)]
        ),
        [R::GRANTED_QOS_0, R::NOT_AUTHORIZED]
    );
}

/// [MQTT-4.12.1] a SCRAM client re-authenticates with the same method: AUTH 0x19 with a new
/// client-first, the challenge, the proof, then AUTH 0x00 with the server-final message. A
/// re-authentication that fails, or proves another user, ends the connection with 0x87.
#[test]
fn scram_re_authentication_succeeds_and_a_failed_one_disconnects_with_0x87() {
    let files = scram_files("scram-reauth");
    let dave_password = "dave's password";
    let options = PasswdOptions {
        iterations: 1000,
        scram_iterations: Some(4096),
    };
    passwd_command(
        &files.passwords,
        "dave",
        PasswordSource::Value(dave_password),
        &options,
    )
    .expect("passwd writes dave");
    let broker = files.start("auto");
    // On shard 0 the last attempt has a wrong password; on shard 1 it proves dave, not carol.
    let last_attempts = [("carol", "not carol's password"), ("dave", dave_password)];
    for (shard, (user, password)) in last_attempts.into_iter().enumerate() {
        let mut client = carol_logs_in(&broker, &broker.id_on(shard, "carol"), "first");
        let again = ScramClient::new("carol", CAROL_PASSWORD, "second");
        client.send(&auth_packet(ReasonCode::RE_AUTHENTICATE, again.first()));
        let server_first = expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION);
        let fin = again.answer(&server_first);
        client.send(&auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            fin.message,
        ));
        assert_eq!(
            expect_auth(&mut client, ReasonCode::SUCCESS),
            fin.server_final
        );
        client.send(&Packet::PingReq);
        assert_eq!(client.expect_packet(), Packet::PingResp);

        let last = ScramClient::new(user, password, "third");
        client.send(&auth_packet(ReasonCode::RE_AUTHENTICATE, last.first()));
        let server_first = expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION);
        let fin = last.answer(&server_first);
        client.send(&auth_packet(
            ReasonCode::CONTINUE_AUTHENTICATION,
            fin.message,
        ));
        match client.expect_close().as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, ReasonCode::NOT_AUTHORIZED, "{user}")
            }
            other => panic!("{user}: expected DISCONNECT 0x87, got {other:?}"),
        }
    }
}
