//! Golden frames: every packet type in every protocol version where it exists, written by hand
//! from the spec's layout (one comment per field), checked in both directions.
//!
//! Each `golden` case asserts that the hex decodes to exactly the expected `Packet`, that the
//! `Packet` encodes to exactly the hex, that `encoded_len` is the hex length, and that the frame
//! fed one byte at a time is `Ok(None)` (nothing consumed) until its last byte arrives.
//!
//! Property order inside a block is free on the wire [MQTT-2.2.2]; the frames below list them in
//! the order coremq writes them, so that the encode direction can compare bytes exactly.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};

use crate::protocol::{
    decode, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, Disconnect, DisconnectProperties, LastWill, MessageProperties, MqttString,
    Packet, PacketId, ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter,
    TopicName, Unsubscribe, UnsubscribeProperties, UserProperty, WillProperties,
};

pub(super) const V3: ProtocolVersion = ProtocolVersion::V3_1;
pub(super) const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(super) const V5: ProtocolVersion = ProtocolVersion::V5;
pub(super) const ALL: [ProtocolVersion; 3] = [V3, V4, V5];

/// Bytes from hex digits; whitespace is ignored.
pub(super) fn hex(s: &str) -> BytesMut {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    let bytes: Vec<u8> = digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect();
    BytesMut::from(&bytes[..])
}

/// Upper-case hex with a space between bytes, for readable assertion failures.
pub(super) fn to_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn s(v: &'static str) -> MqttString {
    MqttString::from_static(v).unwrap()
}

fn topic(v: &'static str) -> TopicName {
    TopicName::from_static(v).unwrap()
}

fn filter(v: &'static str) -> TopicFilter {
    TopicFilter::from_static(v).unwrap()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn up(k: &'static str, v: &'static str) -> UserProperty {
    (s(k), s(v))
}

fn nz16(v: u16) -> Option<NonZeroU16> {
    NonZeroU16::new(v)
}

fn nz32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

/// Decodes `frame` in version `v` and expects exactly `packet`, with the buffer drained.
fn assert_decodes(v: ProtocolVersion, frame: &str, packet: &Packet) {
    let mut buf = hex(frame);
    let got = decode(&mut buf, v, u32::MAX);
    assert_eq!(got, Ok(Some(packet.clone())), "decode {v:?} {frame}");
    assert!(buf.is_empty(), "decode {v:?} left {} bytes", buf.len());
}

/// Encodes `packet` in version `v` and expects exactly `frame`.
fn assert_encodes(v: ProtocolVersion, packet: &Packet, frame: &str) {
    let want = hex(frame);
    let mut out = BytesMut::new();
    packet.encode(v, &mut out).unwrap();
    assert_eq!(to_hex(&out), to_hex(&want), "encode {v:?} {packet:?}");
    assert_eq!(packet.encoded_len(v), want.len(), "encoded_len {v:?}");
}

/// Feeds `frame` one byte at a time: `Ok(None)` and nothing consumed until the last byte.
fn assert_incremental(v: ProtocolVersion, frame: &str, packet: &Packet) {
    let whole = hex(frame);
    let mut buf = BytesMut::new();
    for (i, byte) in whole.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let got = decode(&mut buf, v, u32::MAX);
        if i + 1 < whole.len() {
            assert_eq!(got, Ok(None), "{v:?} prefix of {} bytes of {frame}", i + 1);
            assert_eq!(buf.len(), i + 1, "{v:?} prefix consumed bytes");
        } else {
            assert_eq!(got, Ok(Some(packet.clone())), "{v:?} last byte of {frame}");
            assert!(buf.is_empty());
        }
    }
}

/// The full golden check: decode, encode, encoded_len, byte-by-byte arrival.
fn golden(v: ProtocolVersion, frame: &str, packet: Packet) {
    assert_decodes(v, frame, &packet);
    assert_encodes(v, &packet, frame);
    assert_incremental(v, frame, &packet);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_v3_1_minimal() {
    let frame = concat!(
        "10 0F",                   // CONNECT, remaining length 15
        "00 06 4D 51 49 73 64 70", // protocol name "MQIsdp"
        "03",                      // protocol level 3
        "02",                      // flags: Clean Session
        "00 3C",                   // keep alive 60
        "00 01 61",                // client id "a"
    );
    golden(
        V3,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V3,
            clean_start: true,
            keep_alive: 60,
            client_id: s("a").into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        })),
    );
}

#[test]
fn connect_v3_1_will_qos2_and_username() {
    let frame = concat!(
        "10 1C",                   // CONNECT, remaining length 28
        "00 06 4D 51 49 73 64 70", // "MQIsdp"
        "03",                      // level 3
        "96",                      // flags: User Name | Will QoS 2 (10 in bits 4-3) | Will | Clean
        "00 1E",                   // keep alive 30
        "00 03 63 6C 69",          // client id "cli"
        "00 01 74",                // will topic "t"
        "00 00",                   // will payload, empty
        "00 04 75 73 65 72",       // user name "user"
    );
    golden(
        V3,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V3,
            clean_start: true,
            keep_alive: 30,
            client_id: s("cli").into(),
            will: Some(LastWill {
                topic: topic("t"),
                payload: Bytes::new(),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: WillProperties::default(),
            }),
            username: Some(s("user")),
            password: None,
            properties: ConnectProperties::default(),
        })),
    );
}

#[test]
fn connect_v3_1_1_minimal() {
    let frame = concat!(
        "10 0D",             // CONNECT, remaining length 13
        "00 04 4D 51 54 54", // protocol name "MQTT"
        "04",                // protocol level 4
        "02",                // flags: Clean Session
        "00 3C",             // keep alive 60
        "00 01 61",          // client id "a"
    );
    golden(
        V4,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V4,
            clean_start: true,
            keep_alive: 60,
            client_id: s("a").into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        })),
    );
}

#[test]
fn connect_v3_1_1_will_retain_username_password() {
    let frame = concat!(
        "10 1F",             // CONNECT, remaining length 31
        "00 04 4D 51 54 54", // "MQTT"
        "04",                // level 4
        // flags: User Name 80, Password 40, Will Retain 20, Will QoS 1 (bits 4-3) 08, Will 04
        "EC",             // connect flags EC
        "00 0A",          // keep alive 10
        "00 02 63 31",    // client id "c1"
        "00 03 77 2F 74", // will topic "w/t"
        "00 03 62 79 65", // will payload "bye"
        "00 01 75",       // user name "u"
        "00 02 01 02",    // password, binary 01 02
    );
    golden(
        V4,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V4,
            clean_start: false,
            keep_alive: 10,
            client_id: s("c1").into(),
            will: Some(LastWill {
                topic: topic("w/t"),
                payload: b(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some(s("u")),
            password: Some(b(&[0x01, 0x02])),
            properties: ConnectProperties::default(),
        })),
    );
}

#[test]
fn connect_v5_minimal() {
    let frame = concat!(
        "10 0E",             // CONNECT, remaining length 14
        "00 04 4D 51 54 54", // "MQTT"
        "05",                // level 5
        "02",                // flags: Clean Start
        "00 3C",             // keep alive 60
        "00",                // property length 0
        "00 01 61",          // client id "a"
    );
    golden(
        V5,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: s("a").into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        })),
    );
}

#[test]
fn connect_v5_properties_will_properties_and_credentials() {
    let frame = concat!(
        "10 76",             // CONNECT, remaining length 118
        "00 04 4D 51 54 54", // "MQTT"
        "05",                // level 5
        // flags: User Name 80, Password 40, Will QoS 1 (bits 4-3) 08, Will 04, Clean 02
        "CE",                                     // connect flags CE
        "00 3C",                                  // keep alive 60
        "30",                                     // property length 48
        "11 00 00 0E 10",                         //   Session Expiry Interval 3600
        "21 00 14",                               //   Receive Maximum 20
        "27 00 00 04 00",                         //   Maximum Packet Size 1024
        "22 00 0A",                               //   Topic Alias Maximum 10
        "19 01",                                  //   Request Response Information 1
        "17 00",                                  //   Request Problem Information 0
        "26 00 01 6B 00 01 76",                   //   User Property ("k", "v")
        "26 00 01 6B 00 01 77",                   //   User Property ("k", "w"), same name
        "15 00 05 53 43 52 41 4D",                //   Authentication Method "SCRAM"
        "16 00 03 01 02 03",                      //   Authentication Data 01 02 03
        "00 02 69 64",                            // client id "id"
        "29",                                     // will property length 41
        "18 00 00 00 05",                         //   Will Delay Interval 5
        "01 01",                                  //   Payload Format Indicator 1 (UTF-8)
        "02 00 00 00 3C",                         //   Message Expiry Interval 60
        "03 00 0A 74 65 78 74 2F 70 6C 61 69 6E", //   Content Type "text/plain"
        "08 00 01 72",                            //   Response Topic "r"
        "09 00 02 AB CD",                         //   Correlation Data AB CD
        "26 00 01 61 00 01 62",                   //   User Property ("a", "b")
        "00 01 77",                               // will topic "w"
        "00 01 78",                               // will payload "x"
        "00 01 75",                               // user name "u"
        "00 02 70 77",                            // password "pw"
    );
    golden(
        V5,
        frame,
        Packet::Connect(Box::new(Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: s("id").into(),
            will: Some(LastWill {
                topic: topic("w"),
                payload: b(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: Some(5),
                    message: MessageProperties {
                        payload_format_indicator: Some(true),
                        message_expiry_interval: Some(60),
                        content_type: Some(s("text/plain")),
                        response_topic: Some(topic("r")),
                        correlation_data: Some(b(&[0xAB, 0xCD])),
                        user_properties: vec![up("a", "b")],
                    },
                },
            }),
            username: Some(s("u")),
            password: Some(b(b"pw")),
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: nz16(20),
                maximum_packet_size: Some(nz32(1024)),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: vec![up("k", "v"), up("k", "w")],
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(b(&[0x01, 0x02, 0x03])),
            },
        })),
    );
}

/// CONNECT carries its own level: the connection's version passed to `decode` is ignored.
#[test]
fn connect_decodes_whatever_the_connection_version() {
    let frame = "10 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 61";
    for v in ALL {
        let mut buf = hex(frame);
        let Some(Packet::Connect(c)) = decode(&mut buf, v, u32::MAX).unwrap() else {
            panic!("not a CONNECT");
        };
        assert_eq!(c.protocol, V4);
    }
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_v3_1_accepted_and_refused() {
    // MQTT 3.1: the first byte is unused, the second is the return code.
    golden(
        V3,
        "20 02 00 00", // CONNACK, length 2, unused, return code 0 (accepted)
        Packet::ConnAck(Box::default()),
    );
    golden(
        V3,
        "20 02 00 05", // return code 5: not authorized
        Packet::ConnAck(Box::new(ConnAck {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..ConnAck::default()
        })),
    );
}

#[test]
fn connack_v3_1_1_session_present() {
    golden(
        V4,
        concat!(
            "20 02", // CONNACK, remaining length 2
            "01",    // acknowledge flags: Session Present
            "00",    // return code 0: accepted
        ),
        Packet::ConnAck(Box::new(ConnAck {
            session_present: true,
            ..ConnAck::default()
        })),
    );
}

/// [MQTT-3.2.2.3] the 3.1.1 return codes 1..5 map to the MQTT 5 reason codes of the same meaning.
#[test]
fn connack_v3_1_1_every_return_code() {
    let cases = [
        ("20 02 00 00", ReasonCode::SUCCESS),
        ("20 02 00 01", ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        ("20 02 00 02", ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        ("20 02 00 03", ReasonCode::SERVER_UNAVAILABLE),
        ("20 02 00 04", ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        ("20 02 00 05", ReasonCode::NOT_AUTHORIZED),
    ];
    for (frame, code) in cases {
        golden(
            V4,
            frame,
            Packet::ConnAck(Box::new(ConnAck {
                reason_code: code,
                ..ConnAck::default()
            })),
        );
    }
}

/// MQTT 5 reason codes with no 3.1.1 equivalent are sent as 3 (server unavailable), the banned
/// / bad method family as 5 (not authorized).
#[test]
fn connack_v3_1_1_encodes_v5_only_codes_as_return_codes() {
    for (code, frame) in [
        (ReasonCode::SERVER_BUSY, "20 02 00 03"),
        (ReasonCode::BANNED, "20 02 00 05"),
        (ReasonCode::BAD_AUTHENTICATION_METHOD, "20 02 00 05"),
    ] {
        let p = Packet::ConnAck(Box::new(ConnAck {
            reason_code: code,
            ..ConnAck::default()
        }));
        assert_encodes(V4, &p, frame);
    }
}

/// MQTT 3.1 has no Session Present flag: it is dropped on encode.
#[test]
fn connack_v3_1_drops_session_present() {
    let p = Packet::ConnAck(Box::new(ConnAck {
        session_present: true,
        ..ConnAck::default()
    }));
    assert_encodes(V3, &p, "20 02 00 00");
}

#[test]
fn connack_v5_minimal_and_refused() {
    golden(
        V5,
        concat!(
            "20 03", // CONNACK, remaining length 3
            "00",    // acknowledge flags
            "00",    // reason code Success
            "00",    // property length 0
        ),
        Packet::ConnAck(Box::default()),
    );
    golden(
        V5,
        "20 03 00 86 00", // reason code 0x86 Bad User Name or Password, no properties
        Packet::ConnAck(Box::new(ConnAck {
            reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ..ConnAck::default()
        })),
    );
}

#[test]
fn connack_v5_every_property() {
    let frame = concat!(
        "20 47",                      // CONNACK, remaining length 71
        "01",                         // acknowledge flags: Session Present
        "00",                         // reason code Success
        "44",                         // property length 68
        "11 00 00 00 78",             //   Session Expiry Interval 120
        "21 00 64",                   //   Receive Maximum 100
        "24 01",                      //   Maximum QoS 1
        "25 00",                      //   Retain Available 0
        "27 00 01 00 00",             //   Maximum Packet Size 65536
        "12 00 06 61 75 74 6F 2D 31", //   Assigned Client Identifier "auto-1"
        "22 00 05",                   //   Topic Alias Maximum 5
        "1F 00 02 6F 6B",             //   Reason String "ok"
        "26 00 01 78 00 01 79",       //   User Property ("x", "y")
        "28 01",                      //   Wildcard Subscription Available 1
        "29 00",                      //   Subscription Identifiers Available 0
        "2A 01",                      //   Shared Subscription Available 1
        "13 00 1E",                   //   Server Keep Alive 30
        "1A 00 02 72 69",             //   Response Information "ri"
        "1C 00 02 73 32",             //   Server Reference "s2"
        "15 00 01 4D",                //   Authentication Method "M"
        "16 00 01 00",                //   Authentication Data 00
    );
    golden(
        V5,
        frame,
        Packet::ConnAck(Box::new(ConnAck {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: ConnAckProperties {
                session_expiry_interval: Some(120),
                receive_maximum: nz16(100),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: Some(nz32(65536)),
                assigned_client_identifier: Some(s("auto-1")),
                topic_alias_maximum: Some(5),
                reason_string: Some(s("ok")),
                user_properties: vec![up("x", "y")],
                wildcard_subscription_available: Some(true),
                subscription_identifiers_available: Some(false),
                shared_subscription_available: Some(true),
                server_keep_alive: Some(30),
                response_information: Some(s("ri")),
                server_reference: Some(s("s2")),
                authentication_method: Some(s("M")),
                authentication_data: Some(b(&[0x00])),
            },
        })),
    );
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

fn publish(qos: QoS, packet_id: Option<u16>, t: &'static str, payload: &'static [u8]) -> Publish {
    Publish {
        qos,
        packet_id: packet_id.map(pid),
        ..Publish::new(topic(t), b(payload))
    }
}

#[test]
fn publish_v3_1_and_v3_1_1_qos0() {
    let frame = concat!(
        "30 07",          // PUBLISH, QoS 0, remaining length 7
        "00 03 61 2F 62", // topic "a/b"
        "68 69",          // payload "hi" (no packet id at QoS 0)
    );
    for v in [V3, V4] {
        golden(
            v,
            frame,
            Packet::Publish(publish(QoS::AtMostOnce, None, "a/b", b"hi")),
        );
    }
}

#[test]
fn publish_v3_1_and_v3_1_1_qos1_retain() {
    let frame = concat!(
        "33 09",          // PUBLISH, flags 0011: QoS 1, RETAIN; remaining length 9
        "00 03 61 2F 62", // topic "a/b"
        "00 0A",          // packet id 10
        "68 69",          // payload "hi"
    );
    for v in [V3, V4] {
        golden(
            v,
            frame,
            Packet::Publish(Publish {
                retain: true,
                ..publish(QoS::AtLeastOnce, Some(10), "a/b", b"hi")
            }),
        );
    }
}

#[test]
fn publish_v3_1_1_qos2_dup_retain_empty_payload() {
    let frame = concat!(
        "3D 07",          // PUBLISH, flags 1101: DUP, QoS 2, RETAIN; remaining length 7
        "00 03 61 2F 62", // topic "a/b"
        "12 34",          // packet id 0x1234, then an empty payload
    );
    golden(
        V4,
        frame,
        Packet::Publish(Publish {
            dup: true,
            retain: true,
            ..publish(QoS::ExactlyOnce, Some(0x1234), "a/b", b"")
        }),
    );
}

/// A remaining length of 203 takes two bytes: 203 = 1·128 + 75 → CB 01.
#[test]
fn publish_v3_1_1_two_byte_remaining_length() {
    let frame = format!(
        "{} {} {}",
        "30 CB 01",        // PUBLISH QoS 0, remaining length 203
        "00 01 61",        // topic "a"
        "55 ".repeat(200)  // 200 payload bytes
    );
    golden(
        V4,
        &frame,
        Packet::Publish(Publish::new(topic("a"), Bytes::from(vec![0x55; 200]))),
    );
}

#[test]
fn publish_v5_qos0_no_properties() {
    let frame = concat!(
        "30 08",          // PUBLISH, QoS 0, remaining length 8
        "00 03 61 2F 62", // topic "a/b"
        "00",             // property length 0
        "68 69",          // payload "hi"
    );
    golden(
        V5,
        frame,
        Packet::Publish(publish(QoS::AtMostOnce, None, "a/b", b"hi")),
    );
}

#[test]
fn publish_v5_topic_alias_subscription_ids_user_properties_correlation_data() {
    let frame = concat!(
        "32 48",                // PUBLISH, QoS 1, remaining length 72
        "00 03 74 2F 31",       // topic "t/1"
        "00 07",                // packet id 7
        "3E",                   // property length 62
        "01 01",                //   Payload Format Indicator 1
        "02 00 00 01 2C",       //   Message Expiry Interval 300
        "03 00 04 6A 73 6F 6E", //   Content Type "json"
        "08 00 04 72 65 2F 70", //   Response Topic "re/p"
        "09 00 04 01 02 03 04", //   Correlation Data 01 02 03 04
        "26 00 01 7A 00 01 31", //   User Property ("z", "1")
        "26 00 01 61 00 01 32", //   User Property ("a", "2")
        "26 00 01 7A 00 01 33", //   User Property ("z", "3"): order and duplicates kept
        "23 00 03",             //   Topic Alias 3
        "0B 01",                //   Subscription Identifier 1
        "0B C8 01",             //   Subscription Identifier 200 (var int C8 01)
        "0B FF FF FF 7F",       //   Subscription Identifier 268,435,455 (largest var int)
        "70 6C",                // payload "pl"
    );
    golden(
        V5,
        frame,
        Packet::Publish(Publish {
            properties: PublishProperties {
                topic_alias: nz16(3),
                subscription_identifiers: vec![nz32(1), nz32(200), nz32(268_435_455)],
                message: MessageProperties {
                    payload_format_indicator: Some(true),
                    message_expiry_interval: Some(300),
                    content_type: Some(s("json")),
                    response_topic: Some(topic("re/p")),
                    correlation_data: Some(b(&[1, 2, 3, 4])),
                    user_properties: vec![up("z", "1"), up("a", "2"), up("z", "3")],
                },
            },
            ..publish(QoS::AtLeastOnce, Some(7), "t/1", b"pl")
        }),
    );
}

/// MQTT 5 §3.3.2.3.4: a zero-length topic name is allowed when a Topic Alias stands in for it.
#[test]
fn publish_v5_empty_topic_with_topic_alias() {
    let frame = concat!(
        "30 07",    // PUBLISH, QoS 0, remaining length 7
        "00 00",    // topic "" (length 0)
        "03",       // property length 3
        "23 00 05", //   Topic Alias 5
        "78",       // payload "x"
    );
    golden(
        V5,
        frame,
        Packet::Publish(Publish {
            properties: PublishProperties {
                topic_alias: nz16(5),
                ..PublishProperties::default()
            },
            ..Publish::new(TopicName::default(), b(b"x"))
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

fn ack(id: u16, code: ReasonCode, properties: AckProperties) -> PublishAck {
    PublishAck {
        packet_id: pid(id),
        reason_code: code,
        properties,
    }
}

/// Before MQTT 5, and in MQTT 5 for Success without properties, an ack is the packet id alone
/// [MQTT-3.4.2.1]. PUBREL has flags 0010 [MQTT-3.6.1-1].
#[test]
fn publish_acks_packet_id_only_every_version() {
    for v in ALL {
        golden(
            v,
            "40 02 00 01", // PUBACK, remaining length 2, packet id 1
            Packet::PubAck(PublishAck::new(pid(1))),
        );
        golden(
            v,
            "50 02 00 02", // PUBREC, packet id 2
            Packet::PubRec(PublishAck::new(pid(2))),
        );
        golden(
            v,
            "62 02 00 03", // PUBREL, flags 0010, packet id 3
            Packet::PubRel(PublishAck::new(pid(3))),
        );
        golden(
            v,
            "70 02 FF FF", // PUBCOMP, packet id 65535
            Packet::PubComp(PublishAck::new(pid(0xFFFF))),
        );
    }
}

#[test]
fn publish_acks_v5_reason_code_only() {
    golden(
        V5,
        concat!("40 03", "00 01", "10"), // PUBACK id 1, 0x10 No Matching Subscribers
        Packet::PubAck(ack(
            1,
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
            AckProperties::default(),
        )),
    );
    golden(
        V5,
        concat!("50 03", "00 02", "80"), // PUBREC id 2, 0x80 Unspecified Error
        Packet::PubRec(ack(
            2,
            ReasonCode::UNSPECIFIED_ERROR,
            AckProperties::default(),
        )),
    );
    golden(
        V5,
        concat!("62 03", "00 03", "92"), // PUBREL id 3, 0x92 Packet Identifier Not Found
        Packet::PubRel(ack(
            3,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            AckProperties::default(),
        )),
    );
    golden(
        V5,
        concat!("70 03", "00 04", "92"), // PUBCOMP id 4, 0x92
        Packet::PubComp(ack(
            4,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            AckProperties::default(),
        )),
    );
}

#[test]
fn publish_acks_v5_with_reason_string() {
    golden(
        V5,
        concat!(
            "40 08",       // PUBACK, remaining length 8
            "00 05",       // packet id 5
            "87",          // reason code 0x87 Not Authorized
            "04",          // property length 4
            "1F 00 01 78", //   Reason String "x"
        ),
        Packet::PubAck(ack(
            5,
            ReasonCode::NOT_AUTHORIZED,
            AckProperties {
                reason_string: Some(s("x")),
                user_properties: vec![],
            },
        )),
    );
    golden(
        V5,
        concat!(
            "50 13",                   // PUBREC, remaining length 19
            "00 06",                   // packet id 6
            "97",                      // reason code 0x97 Quota Exceeded
            "0F",                      // property length 15
            "1F 00 05 71 75 6F 74 61", //   Reason String "quota"
            "26 00 01 6B 00 01 76",    //   User Property ("k", "v")
        ),
        Packet::PubRec(ack(
            6,
            ReasonCode::QUOTA_EXCEEDED,
            AckProperties {
                reason_string: Some(s("quota")),
                user_properties: vec![up("k", "v")],
            },
        )),
    );
    golden(
        V5,
        concat!(
            "62 09",          // PUBREL, remaining length 9
            "00 08",          // packet id 8
            "92",             // reason code 0x92
            "05",             // property length 5
            "1F 00 02 6E 66", //   Reason String "nf"
        ),
        Packet::PubRel(ack(
            8,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            AckProperties {
                reason_string: Some(s("nf")),
                user_properties: vec![],
            },
        )),
    );
    // Success with properties: the reason code byte 00 must be written before the block.
    golden(
        V5,
        concat!(
            "70 07",    // PUBCOMP, remaining length 7
            "00 09",    // packet id 9
            "00",       // reason code Success
            "03",       // property length 3
            "1F 00 00", //   Reason String "" (empty)
        ),
        Packet::PubComp(ack(
            9,
            ReasonCode::SUCCESS,
            AckProperties {
                reason_string: Some(s("")),
                user_properties: vec![],
            },
        )),
    );
}

/// Non-canonical but valid MQTT 5 forms: Success spelled out, with or without an empty property
/// block. They decode to the same value the short form does (and re-encode to the short form).
#[test]
fn publish_acks_v5_long_forms_of_success_decode() {
    let want = Packet::PubAck(PublishAck::new(pid(1)));
    assert_decodes(V5, "40 03 00 01 00", &want); // reason code 00, no property length
    assert_decodes(V5, "40 04 00 01 00 00", &want); // reason code 00, property length 0
    assert_encodes(V5, &want, "40 02 00 01");
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_v3_1_single_filter() {
    golden(
        V3,
        concat!(
            "82 08",          // SUBSCRIBE, flags 0010 [MQTT-3.8.1-1], remaining length 8
            "00 01",          // packet id 1
            "00 03 61 2F 23", // filter "a/#"
            "01",             // requested QoS 1
        ),
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![(
                filter("a/#"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            )],
        }),
    );
}

#[test]
fn subscribe_v3_1_1_two_filters() {
    golden(
        V4,
        concat!(
            "82 0C",          // SUBSCRIBE, remaining length 12
            "00 01",          // packet id 1
            "00 03 61 2F 23", // filter "a/#"
            "01",             //   QoS 1
            "00 01 62",       // filter "b"
            "02",             //   QoS 2
        ),
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![
                (
                    filter("a/#"),
                    SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                ),
                (filter("b"), SubscriptionOptions::with_qos(QoS::ExactlyOnce)),
            ],
        }),
    );
}

#[test]
fn subscribe_v5_options_bits_and_properties() {
    let frame = concat!(
        "82 23",                // SUBSCRIBE, remaining length 35
        "00 0A",                // packet id 10
        "09",                   // property length 9
        "0B 05",                //   Subscription Identifier 5
        "26 00 01 6B 00 01 76", //   User Property ("k", "v")
        "00 03 61 2F 2B",       // filter "a/+"
        // options 0010 1101: Retain Handling 2 (bits 5-4), Retain As Published (bit 3),
        // No Local (bit 2), QoS 1 (bits 1-0)
        "2D",                                  //   options 2D
        "00 0A 24 73 68 61 72 65 2F 67 2F 78", // filter "$share/g/x"
        "12",                                  //   options 0001 0010: Retain Handling 1, QoS 2
        "00 01 23",                            // filter "#"
        "00",                                  //   options 0: QoS 0, everything else off
    );
    golden(
        V5,
        frame,
        Packet::Subscribe(Subscribe {
            packet_id: pid(10),
            properties: SubscribeProperties {
                subscription_identifier: Some(nz32(5)),
                user_properties: vec![up("k", "v")],
            },
            filters: vec![
                (
                    filter("a/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                (
                    filter("$share/g/x"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                ),
                (filter("#"), SubscriptionOptions::default()),
            ],
        }),
    );
}

/// MQTT 3.1.1 has only the QoS bits: the MQTT 5 options are not written.
#[test]
fn subscribe_v3_1_1_drops_v5_options() {
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(
            filter("a"),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
    });
    assert_encodes(V4, &p, "82 06 00 01 00 01 61 01");
}

fn suback(id: u16, properties: AckProperties, codes: &[u8]) -> SubAck {
    SubAck {
        packet_id: pid(id),
        properties,
        reason_codes: codes.iter().map(|c| ReasonCode(*c)).collect(),
    }
}

#[test]
fn suback_v3_1_granted_qos() {
    golden(
        V3,
        concat!("90 04", "00 01", "00 01"), // SUBACK, packet id 1, granted QoS 0 and 1
        Packet::SubAck(suback(1, AckProperties::default(), &[0, 1])),
    );
}

#[test]
fn suback_v3_1_1_granted_and_failure() {
    golden(
        V4,
        concat!(
            "90 05",    // SUBACK, remaining length 5
            "00 01",    // packet id 1
            "00 02 80", // granted QoS 0, granted QoS 2, failure
        ),
        Packet::SubAck(suback(1, AckProperties::default(), &[0x00, 0x02, 0x80])),
    );
}

/// [MQTT-3.9.3] 3.1.1 has one failure code, 0x80: every MQTT 5 error is sent as 0x80.
#[test]
fn suback_v3_1_1_encodes_every_error_as_0x80() {
    let p = Packet::SubAck(suback(
        2,
        AckProperties::default(),
        &[0x87, 0x01, 0x8F, 0xA2],
    ));
    assert_encodes(V4, &p, "90 06 00 02 80 01 80 80");
}

#[test]
fn suback_v5_reason_codes() {
    golden(
        V5,
        concat!(
            "90 08",          // SUBACK, remaining length 8
            "00 0A",          // packet id 10
            "00",             // property length 0
            "00 01 02 80 8F", // QoS 0, QoS 1, QoS 2, Unspecified, Topic Filter Invalid
        ),
        Packet::SubAck(suback(
            10,
            AckProperties::default(),
            &[0x00, 0x01, 0x02, 0x80, 0x8F],
        )),
    );
}

#[test]
fn suback_v5_with_reason_string() {
    golden(
        V5,
        concat!(
            "90 0A",          // SUBACK, remaining length 10
            "00 0B",          // packet id 11
            "05",             // property length 5
            "1F 00 02 6E 6F", //   Reason String "no"
            "00 97",          // QoS 0, Quota Exceeded
        ),
        Packet::SubAck(suback(
            11,
            AckProperties {
                reason_string: Some(s("no")),
                user_properties: vec![],
            },
            &[0x00, 0x97],
        )),
    );
}

// ---------------------------------------------------------------------------------------------
// UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn unsubscribe_v3_1_and_v3_1_1() {
    let frame = concat!(
        "A2 0A",          // UNSUBSCRIBE, flags 0010 [MQTT-3.10.1-1], remaining length 10
        "00 02",          // packet id 2
        "00 03 61 2F 62", // filter "a/b"
        "00 01 23",       // filter "#"
    );
    for v in [V3, V4] {
        golden(
            v,
            frame,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(2),
                properties: UnsubscribeProperties::default(),
                filters: vec![filter("a/b"), filter("#")],
            }),
        );
    }
}

#[test]
fn unsubscribe_v5_with_user_property() {
    golden(
        V5,
        concat!(
            "A2 0F",                // UNSUBSCRIBE, remaining length 15
            "00 03",                // packet id 3
            "07",                   // property length 7
            "26 00 01 6B 00 01 76", //   User Property ("k", "v")
            "00 03 61 2F 2B",       // filter "a/+"
        ),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            properties: UnsubscribeProperties {
                user_properties: vec![up("k", "v")],
            },
            filters: vec![filter("a/+")],
        }),
    );
}

#[test]
fn unsuback_v3_1_and_v3_1_1_packet_id_only() {
    for v in [V3, V4] {
        golden(
            v,
            "B0 02 00 02", // UNSUBACK, remaining length 2, packet id 2
            Packet::UnsubAck(suback(2, AckProperties::default(), &[])),
        );
    }
}

/// A 3.1.1 UNSUBACK has no payload: reason codes are not written.
#[test]
fn unsuback_v3_1_1_drops_reason_codes() {
    let p = Packet::UnsubAck(suback(2, AckProperties::default(), &[0x00, 0x11]));
    assert_encodes(V4, &p, "B0 02 00 02");
}

#[test]
fn unsuback_v5_reason_codes() {
    golden(
        V5,
        concat!(
            "B0 06",    // UNSUBACK, remaining length 6
            "00 03",    // packet id 3
            "00",       // property length 0
            "00 11 8F", // Success, No Subscription Existed, Topic Filter Invalid
        ),
        Packet::UnsubAck(suback(3, AckProperties::default(), &[0x00, 0x11, 0x8F])),
    );
    golden(
        V5,
        concat!(
            "B0 09",       // UNSUBACK, remaining length 9
            "00 04",       // packet id 4
            "04",          // property length 4
            "1F 00 01 78", //   Reason String "x"
            "87 80",       // Not Authorized, Unspecified Error
        ),
        Packet::UnsubAck(suback(
            4,
            AckProperties {
                reason_string: Some(s("x")),
                user_properties: vec![],
            },
            &[0x87, 0x80],
        )),
    );
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn pingreq_and_pingresp_every_version() {
    for v in ALL {
        golden(v, "C0 00", Packet::PingReq); // PINGREQ, remaining length 0
        golden(v, "D0 00", Packet::PingResp); // PINGRESP, remaining length 0
    }
}

#[test]
fn disconnect_v3_1_and_v3_1_1() {
    for v in [V3, V4] {
        golden(v, "E0 00", Packet::Disconnect(Disconnect::default()));
    }
}

/// [MQTT-3.14.2.1] Normal disconnection without properties may omit everything: `E0 00`; a
/// reason code without properties may omit the property length (`E0 01 <code>`, decoded), but
/// coremq always writes it (`E0 02 <code> 00`) because several clients cannot parse the shorter
/// form.
#[test]
fn disconnect_v5_short_forms() {
    golden(V5, "E0 00", Packet::Disconnect(Disconnect::default()));
    let with_will = Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE));
    golden(
        V5,
        "E0 02 04 00", // reason code 0x04 Disconnect with Will Message, property length 0
        with_will.clone(),
    );
    assert_decodes(V5, "E0 01 04", &with_will);
    // Long forms of Normal disconnection decode the same.
    let normal = Packet::Disconnect(Disconnect::default());
    assert_decodes(V5, "E0 01 00", &normal);
    assert_decodes(V5, "E0 02 00 00", &normal);
}

#[test]
fn disconnect_v5_with_properties() {
    golden(
        V5,
        concat!(
            "E0 18",                // DISCONNECT, remaining length 24
            "8B",                   // reason code 0x8B Server Shutting Down
            "16",                   // property length 22
            "11 00 00 00 00",       //   Session Expiry Interval 0
            "1F 00 03 62 79 65",    //   Reason String "bye"
            "26 00 01 6B 00 01 76", //   User Property ("k", "v")
            "1C 00 01 68",          //   Server Reference "h"
        ),
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                user_properties: vec![up("k", "v")],
                server_reference: Some(s("h")),
            },
        }),
    );
    // Normal disconnection with a property: the 00 reason code byte must be present.
    golden(
        V5,
        concat!(
            "E0 07",          // DISCONNECT, remaining length 7
            "00",             // reason code Normal disconnection
            "05",             // property length 5
            "11 00 00 00 3C", //   Session Expiry Interval 60
        ),
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: DisconnectProperties {
                session_expiry_interval: Some(60),
                ..DisconnectProperties::default()
            },
        }),
    );
}

#[test]
fn auth_v5_continue_authentication() {
    golden(
        V5,
        concat!(
            "F0 20",                                     // AUTH, remaining length 32
            "18",                                        // reason code 0x18 Continue Authentication
            "1E",                                        // property length 30
            "15 00 0B 53 43 52 41 4D 2D 53 48 41 2D 31", //   Authentication Method "SCRAM-SHA-1"
            "16 00 02 AB CD",                            //   Authentication Data AB CD
            "1F 00 01 63",                               //   Reason String "c"
            "26 00 01 6B 00 01 76",                      //   User Property ("k", "v")
        ),
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(b(&[0xAB, 0xCD])),
                reason_string: Some(s("c")),
                user_properties: vec![up("k", "v")],
            },
        }),
    );
}

#[test]
fn auth_v5_re_authenticate_method_only() {
    golden(
        V5,
        concat!(
            "F0 06",       // AUTH, remaining length 6
            "19",          // reason code 0x19 Re-authenticate
            "04",          // property length 4
            "15 00 01 4D", //   Authentication Method "M"
        ),
        Packet::Auth(Auth {
            reason_code: ReasonCode::RE_AUTHENTICATE,
            properties: AuthProperties {
                authentication_method: Some(s("M")),
                ..AuthProperties::default()
            },
        }),
    );
}

/// AUTH does not exist before MQTT 5: it cannot be encoded there.
#[test]
fn auth_cannot_be_encoded_before_v5() {
    let p = Packet::Auth(Auth::default());
    for v in [V3, V4] {
        let mut out = BytesMut::new();
        assert_eq!(
            p.encode(v, &mut out),
            Err(crate::protocol::EncodeError::NotInVersion)
        );
        assert!(out.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Framing: frames back to back, partial frames, zero copy
// ---------------------------------------------------------------------------------------------

/// Several frames in one buffer decode one at a time, each consuming exactly its own bytes; a
/// partial frame at the end stays in the buffer until it completes.
#[test]
fn frames_back_to_back_decode_one_at_a_time() {
    let publish_frame = "32 09 00 03 61 2F 62 00 0A 68 69"; // PUBLISH QoS 1 id 10 "a/b" "hi"
    let puback_frame = "40 02 00 0A"; // PUBACK id 10
    let pingreq_frame = "C0 00";
    let mut buf = hex(&format!(
        "{publish_frame} {puback_frame} {pingreq_frame} 82 08 00"
    ));
    let total = buf.len();

    let first = decode(&mut buf, V4, 1024).unwrap();
    assert_eq!(
        first,
        Some(Packet::Publish(publish(
            QoS::AtLeastOnce,
            Some(10),
            "a/b",
            b"hi"
        )))
    );
    assert_eq!(buf.len(), total - 11);

    let second = decode(&mut buf, V4, 1024).unwrap();
    assert_eq!(second, Some(Packet::PubAck(PublishAck::new(pid(10)))));
    assert_eq!(buf.len(), total - 15);

    assert_eq!(decode(&mut buf, V4, 1024).unwrap(), Some(Packet::PingReq));
    // What is left is the first 3 bytes of a SUBSCRIBE (remaining length 8).
    assert_eq!(&buf[..], &hex("82 08 00")[..]);
    assert_eq!(decode(&mut buf, V4, 1024), Ok(None));
    assert_eq!(buf.len(), 3);

    // The rest of the SUBSCRIBE arrives: packet id 1, filter "a/#", QoS 1.
    buf.extend_from_slice(&hex("01 00 03 61 2F 23 01"));
    assert_eq!(
        decode(&mut buf, V4, 1024).unwrap(),
        Some(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![(
                filter("a/#"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce)
            )],
        }))
    );
    assert!(buf.is_empty());
    assert_eq!(decode(&mut buf, V4, 1024), Ok(None));
}

/// Two PUBLISH + PINGREQ pairs in one stream, arriving in chunks of 7 bytes that cut frames
/// anywhere (inside the header, inside a string).
#[test]
fn frames_back_to_back_arriving_in_chunks() {
    let one = "32 09 00 03 61 2F 62 00 0A 68 69 C0 00";
    let all = hex(&format!("{one} {one}"));
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in all.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Some(p) = decode(&mut buf, V4, 1024).unwrap() {
            got.push(p);
        }
    }
    let publish = Packet::Publish(publish(QoS::AtLeastOnce, Some(10), "a/b", b"hi"));
    assert_eq!(
        got,
        vec![publish.clone(), Packet::PingReq, publish, Packet::PingReq]
    );
    assert!(buf.is_empty());
}

/// The address range of `b`.
fn addr(b: &[u8]) -> std::ops::Range<usize> {
    let start = b.as_ptr() as usize;
    start..start + b.len()
}

/// Topic and payload are slices of the read buffer, not copies: their addresses are the
/// addresses of those bytes in the buffer the frame arrived in.
#[test]
fn decoded_topic_and_payload_are_slices_of_the_read_buffer_v3_1_1() {
    let mut buf = hex("32 09 00 03 61 2F 62 00 0A 68 69");
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, V4, 1024).unwrap() else {
        panic!("not a PUBLISH");
    };
    // Frame offsets: topic "a/b" at 4..7, payload "hi" at 9..11.
    assert_eq!(addr(p.topic.as_bytes()), base + 4..base + 7);
    assert_eq!(addr(&p.payload), base + 9..base + 11);
}

#[test]
fn decoded_strings_and_binary_properties_are_slices_of_the_read_buffer_v5() {
    let frame = concat!(
        "32 48 00 03 74 2F 31 00 07 3E",
        "01 01 02 00 00 01 2C 03 00 04 6A 73 6F 6E 08 00 04 72 65 2F 70",
        "09 00 04 01 02 03 04",
        "26 00 01 7A 00 01 31 26 00 01 61 00 01 32 26 00 01 7A 00 01 33",
        "23 00 03 0B 01 0B C8 01 0B FF FF FF 7F",
        "70 6C",
    );
    let mut buf = hex(frame);
    let len = buf.len();
    let base = buf.as_ptr() as usize;
    let whole = base..base + len;
    let Some(Packet::Publish(p)) = decode(&mut buf, V5, 1024).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(addr(p.topic.as_bytes()), base + 4..base + 7); // "t/1"
    assert_eq!(addr(&p.payload), base + len - 2..base + len); // "pl"
    let m = &p.properties.message;
    // Correlation data: after header (2), topic (5), packet id (2), property length (1),
    // format (2), expiry (5), content type (7), response topic (7) and its own id+length (3).
    assert_eq!(
        addr(m.correlation_data.as_ref().unwrap()),
        base + 34..base + 38
    );
    let content_type = m.content_type.as_ref().unwrap().as_bytes();
    assert_eq!(addr(content_type), base + 20..base + 24); // "json"
    for (k, v) in &m.user_properties {
        for part in [k.as_bytes(), v.as_bytes()] {
            let r = addr(part);
            assert!(
                whole.contains(&r.start) && r.end <= whole.end,
                "user property outside the frame"
            );
        }
    }
}

/// A will message decoded from CONNECT also shares the frame.
#[test]
fn decoded_will_and_credentials_are_slices_of_the_read_buffer() {
    let mut buf = hex(concat!(
        "10 1F 00 04 4D 51 54 54 04 EC 00 0A", // header, "MQTT", level 4, flags, keep alive
        "00 02 63 31",                         // client id "c1"
        "00 03 77 2F 74 00 03 62 79 65",       // will topic "w/t", will payload "bye"
        "00 01 75 00 02 01 02",                // user name "u", password 01 02
    ));
    let base = buf.as_ptr() as usize;
    let Some(Packet::Connect(c)) = decode(&mut buf, V4, 1024).unwrap() else {
        panic!("not a CONNECT");
    };
    let will = c.will.as_ref().unwrap();
    assert_eq!(addr(c.client_id.as_bytes()), base + 14..base + 16); // "c1"
    assert_eq!(addr(will.topic.as_bytes()), base + 18..base + 21); // "w/t"
    assert_eq!(addr(&will.payload), base + 23..base + 26); // "bye"
    assert_eq!(
        addr(c.username.as_ref().unwrap().as_bytes()),
        base + 28..base + 29
    ); // "u"
    assert_eq!(addr(c.password.as_ref().unwrap()), base + 31..base + 33); // 01 02
}
