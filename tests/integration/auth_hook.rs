//! MQTT 5 enhanced authentication routed through the authentication hook [MQTT-4.12], with a
//! test method: CONNECT data "hello" → challenge "nonce"; AUTH data "nonce-signed" → success
//! with data "welcome"; anything else → refused.

use std::sync::Arc;

use bytes::Bytes;
use coremq::auth::{AuthExchange, AuthStep, Authenticator, AuthenticatorFactory};
use coremq::protocol::{
    Auth, AuthProperties, Connect, ConnectProperties, MqttString, Packet, ProtocolVersion,
    ReasonCode,
};

use crate::common::{RawClient, TestBroker};

const METHOD: &str = "TEST-CHALLENGE";

struct TestMethod;
struct Exchange {
    challenged: bool,
}

impl Authenticator for TestMethod {
    fn start(&self, method: &str, _client_id: &str) -> Option<Box<dyn AuthExchange>> {
        (method == METHOD)
            .then(|| Box::new(Exchange { challenged: false }) as Box<dyn AuthExchange>)
    }
}

impl AuthExchange for Exchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        match (self.challenged, data) {
            (false, Some(b"hello")) => {
                self.challenged = true;
                AuthStep::Continue(Some(Bytes::from_static(b"nonce")))
            }
            (true, Some(b"nonce-signed")) => {
                AuthStep::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthStep::Fail,
        }
    }
}

fn factory() -> AuthenticatorFactory {
    Arc::new(|| Box::new(TestMethod) as Box<dyn Authenticator>)
}

fn s(v: &str) -> MqttString {
    MqttString::copy_from(v).unwrap()
}

fn auth(code: ReasonCode, data: &'static [u8]) -> Packet {
    Packet::Auth(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(s(METHOD)),
            authentication_data: Some(Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    })
}

fn connect(broker: &TestBroker, id: &str, method: &str, data: &'static [u8]) -> RawClient {
    let mut client = RawClient::connect(broker.addr, ProtocolVersion::V5);
    client.send(&Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: s(id).into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            authentication_method: Some(s(method)),
            authentication_data: Some(Bytes::from_static(data)),
            ..ConnectProperties::default()
        },
    })));
    client
}

fn expect_auth(client: &mut RawClient, code: ReasonCode, data: &[u8]) {
    match client.expect_packet() {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, code);
            assert_eq!(a.properties.authentication_method, Some(s(METHOD)));
            assert_eq!(a.properties.authentication_data.as_deref(), Some(data));
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
}

fn expect_connack(client: &mut RawClient, code: ReasonCode) {
    match client.expect_packet() {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, code);
            if code == ReasonCode::SUCCESS {
                // [MQTT-4.12.0-5] CONNACK carries the method and the final data.
                assert_eq!(ack.properties.authentication_method, Some(s(METHOD)));
                assert_eq!(
                    ack.properties.authentication_data.as_deref(),
                    Some(&b"welcome"[..])
                );
            }
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn mqtt_4_12_0_challenge_response_on_every_shard() {
    let broker = TestBroker::start_full(2, |_| {}, Some(factory()));
    for shard in 0..2 {
        // Clients homed on both shards: the exchange runs on the accepting shard, the
        // connection then moves home with the final data.
        let mut client = connect(&broker, &broker.id_on(shard, "auth"), METHOD, b"hello");
        expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION, b"nonce");
        client.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, b"nonce-signed"));
        expect_connack(&mut client, ReasonCode::SUCCESS);
        client.send(&Packet::PingReq);
        assert_eq!(client.expect_packet(), Packet::PingResp);
    }
}

#[test]
fn mqtt_4_12_0_a_wrong_response_is_refused_with_0x87() {
    let broker = TestBroker::start_full(2, |_| {}, Some(factory()));
    let mut client = connect(&broker, &broker.id_on(1, "auth"), METHOD, b"hello");
    expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION, b"nonce");
    client.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, b"forged"));
    expect_connack(&mut client, ReasonCode::NOT_AUTHORIZED);
    assert!(client.recv().is_none(), "closed after the refusal");
}

#[test]
fn mqtt_4_12_0_1_unknown_method_or_no_hook_gets_0x8c() {
    let with_hook = TestBroker::start_full(2, |_| {}, Some(factory()));
    let mut client = connect(&with_hook, "c1", "SCRAM-SHA-1", b"x");
    expect_connack(&mut client, ReasonCode::BAD_AUTHENTICATION_METHOD);
    let without = TestBroker::start(2);
    let mut client = connect(&without, "c2", METHOD, b"hello");
    expect_connack(&mut client, ReasonCode::BAD_AUTHENTICATION_METHOD);
}

#[test]
fn mqtt_4_12_1_re_authentication_succeeds_and_a_failed_one_disconnects_with_0x87() {
    let broker = TestBroker::start_full(2, |_| {}, Some(factory()));
    let mut client = connect(&broker, &broker.id_on(0, "re"), METHOD, b"hello");
    expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION, b"nonce");
    client.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, b"nonce-signed"));
    expect_connack(&mut client, ReasonCode::SUCCESS);

    client.send(&auth(ReasonCode::RE_AUTHENTICATE, b"hello"));
    expect_auth(&mut client, ReasonCode::CONTINUE_AUTHENTICATION, b"nonce");
    client.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, b"nonce-signed"));
    expect_auth(&mut client, ReasonCode::SUCCESS, b"welcome");

    client.send(&auth(ReasonCode::RE_AUTHENTICATE, b"goodbye"));
    match client.expect_close().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
}
