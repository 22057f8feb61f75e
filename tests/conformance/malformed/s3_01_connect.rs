//! §3.1 CONNECT, raw: CONNECT packets the broker must refuse, each named after the statement it
//! breaks, for each version it applies to. An MQTT 5 client gets a CONNACK with the reason code
//! (the spec allows it before the close, MQTT 5 §4.13.1, and coremq always sends it when it can
//! tell the client speaks MQTT 5); an MQTT 3.1.1 client is closed, with a CONNACK return code only
//! where 3.1.1 defines one [MQTT-3.2.2-5]. After every case two well-behaved clients, one per
//! shard, still exchange messages across the mesh (`Bystanders`). The first-packet
//! rules and the CONNECT deadline live in `s3_01_connect`.

use coremq::protocol::{ConnAck, Packet, ProtocolVersion, ReasonCode};

use super::{Bystanders, MALFORMED, PROTOCOL};
use crate::common::{hex, RawClient, TestBroker};
use crate::{frame, wire};

each_version!(mqtt_4_8_0_1_refused_connect_closes_only_its_connection);

/// How the broker must answer a refused CONNECT.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Close the connection without a reply.
    Close,
    /// CONNACK with this code (a 3.1.1 return code for 3.1.1 clients), then close.
    ConnAck(ReasonCode),
}

pub(crate) struct ConnectCase {
    pub(crate) name: &'static str,
    /// The fixed header's first byte (0x10 unless the case is about it).
    first: u8,
    /// The body of an MQTT 3.1.1 CONNECT and the answer; `None`: MQTT 5 only.
    v3: Option<(&'static str, Answer)>,
    /// The body of an MQTT 5 CONNECT and the answer; `None`: not a violation there.
    v5: Option<(&'static str, Answer)>,
}

const fn refused(
    name: &'static str,
    v3: &'static str,
    v5: &'static str,
    reason: ReasonCode,
) -> ConnectCase {
    ConnectCase {
        name,
        first: 0x10,
        v3: Some((v3, Answer::Close)),
        v5: Some((v5, Answer::ConnAck(reason))),
    }
}

const fn refused_v5(name: &'static str, v5: &'static str, reason: ReasonCode) -> ConnectCase {
    ConnectCase {
        name,
        first: 0x10,
        v3: None,
        v5: Some((v5, Answer::ConnAck(reason))),
    }
}

// Bodies: protocol name "MQTT", level (04 / 05), connect flags, keep alive 0, then MQTT 5's
// property block, then the payload (client id "a" unless the case is about it; MQTT 5 wills start
// with their own property block).
pub(crate) const CONNECT_CASES: &[ConnectCase] = &[
    ConnectCase {
        name: "mqtt_2_2_2_2_connect_with_a_header_flag_set",
        first: 0x11,
        v3: Some(("00 04 4d 51 54 54 04 02 00 00 00 01 61", Answer::Close)),
        v5: Some((
            "00 04 4d 51 54 54 05 02 00 00 00 00 01 61",
            Answer::ConnAck(MALFORMED),
        )),
    },
    ConnectCase {
        // MQTT 5 §3.1.2.1: the server MAY close the connection [MQTT-3.1.2-1].
        name: "mqtt_3_1_2_1_protocol_name_mqtx",
        first: 0x10,
        v3: Some(("00 04 4d 51 54 58 04 02 00 00 00 01 61", Answer::Close)),
        v5: Some(("00 04 4d 51 54 58 05 02 00 00 00 00 01 61", Answer::Close)),
    },
    ConnectCase {
        name: "mqtt_3_1_2_2_protocol_level_6",
        first: 0x10,
        v3: Some((
            "00 04 4d 51 54 54 06 02 00 00 00 01 61",
            Answer::ConnAck(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        )),
        v5: None,
    },
    ConnectCase {
        // Level 3 is MQTT 3.1, whose protocol name is "MQIsdp".
        name: "mqtt_3_1_2_1_protocol_name_mqtt_with_level_3",
        first: 0x10,
        v3: Some(("00 04 4d 51 54 54 03 02 00 00 00 01 61", Answer::Close)),
        v5: None,
    },
    refused(
        "mqtt_3_1_2_3_connect_reserved_flag",
        "00 04 4d 51 54 54 04 03 00 00 00 01 61",
        "00 04 4d 51 54 54 05 03 00 00 00 00 01 61",
        MALFORMED,
    ),
    refused(
        "mqtt_3_1_2_11_will_qos_without_the_will_flag",
        "00 04 4d 51 54 54 04 0a 00 00 00 01 61",
        "00 04 4d 51 54 54 05 0a 00 00 00 00 01 61",
        PROTOCOL,
    ),
    refused(
        "mqtt_3_1_2_15_will_retain_without_the_will_flag",
        "00 04 4d 51 54 54 04 22 00 00 00 01 61",
        "00 04 4d 51 54 54 05 22 00 00 00 00 01 61",
        PROTOCOL,
    ),
    refused(
        "mqtt_3_1_2_14_will_qos_3",
        "00 04 4d 51 54 54 04 1e 00 00 00 01 61 00 01 74 00 00",
        "00 04 4d 51 54 54 05 1e 00 00 00 00 01 61 00 00 01 74 00 00",
        MALFORMED,
    ),
    ConnectCase {
        // MQTT 5 allows a password without a user name.
        name: "mqtt_3_1_2_22_password_without_a_user_name",
        first: 0x10,
        v3: Some((
            "00 04 4d 51 54 54 04 42 00 00 00 01 61 00 01 70",
            Answer::Close,
        )),
        v5: None,
    },
    refused(
        "mqtt_3_1_3_11_will_topic_with_a_wildcard",
        "00 04 4d 51 54 54 04 06 00 00 00 01 61 00 03 61 2f 23 00 00",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 00 00 03 61 2f 23 00 00",
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    refused(
        "mqtt_4_7_3_1_empty_will_topic",
        "00 04 4d 51 54 54 04 06 00 00 00 01 61 00 00 00 00",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 00 00 00 00 00",
        PROTOCOL,
    ),
    refused(
        "mqtt_1_5_4_1_will_topic_not_utf8",
        "00 04 4d 51 54 54 04 06 00 00 00 01 61 00 01 ff 00 00",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 00 00 01 ff 00 00",
        MALFORMED,
    ),
    refused(
        "mqtt_1_5_4_1_user_name_not_utf8",
        "00 04 4d 51 54 54 04 82 00 00 00 01 61 00 01 ff",
        "00 04 4d 51 54 54 05 82 00 00 00 00 01 61 00 01 ff",
        MALFORMED,
    ),
    refused(
        "mqtt_1_5_4_2_client_id_with_a_null_character",
        "00 04 4d 51 54 54 04 02 00 00 00 02 61 00",
        "00 04 4d 51 54 54 05 02 00 00 00 00 02 61 00",
        MALFORMED,
    ),
    refused(
        "mqtt_4_13_1_user_name_flag_without_a_user_name",
        "00 04 4d 51 54 54 04 82 00 00 00 01 61",
        "00 04 4d 51 54 54 05 82 00 00 00 00 01 61",
        MALFORMED,
    ),
    refused(
        "mqtt_4_13_1_will_flag_without_a_will_payload",
        "00 04 4d 51 54 54 04 06 00 00 00 01 61 00 01 74",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 00 00 01 74",
        MALFORMED,
    ),
    refused(
        "mqtt_4_13_1_connect_client_id_longer_than_the_packet",
        "00 04 4d 51 54 54 04 02 00 00 00 09 61",
        "00 04 4d 51 54 54 05 02 00 00 00 00 09 61",
        MALFORMED,
    ),
    refused(
        "mqtt_4_13_1_connect_with_bytes_after_the_payload",
        "00 04 4d 51 54 54 04 02 00 00 00 01 61 00",
        "00 04 4d 51 54 54 05 02 00 00 00 00 01 61 00",
        MALFORMED,
    ),
    refused(
        "mqtt_4_13_1_connect_ending_after_its_flags",
        "00 04 4d 51 54 54 04 02",
        "00 04 4d 51 54 54 05 02",
        MALFORMED,
    ),
    refused_v5(
        "mqtt_3_1_2_11_3_receive_maximum_0",
        "00 04 4d 51 54 54 05 02 00 00 03 21 00 00 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_4_maximum_packet_size_0",
        "00 04 4d 51 54 54 05 02 00 00 05 27 00 00 00 00 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_6_request_response_information_2",
        "00 04 4d 51 54 54 05 02 00 00 02 19 02 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_7_request_problem_information_2",
        "00 04 4d 51 54 54 05 02 00 00 02 17 02 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_5_topic_alias_maximum_twice",
        "00 04 4d 51 54 54 05 02 00 00 06 22 00 01 22 00 01 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_9_authentication_method_twice",
        "00 04 4d 51 54 54 05 02 00 00 08 15 00 01 61 15 00 01 61 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_2_11_10_authentication_data_without_a_method",
        "00 04 4d 51 54 54 05 02 00 00 04 16 00 01 78 00 01 61",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_2_2_2_2_topic_alias_in_connect",
        "00 04 4d 51 54 54 05 02 00 00 03 23 00 01 00 01 61",
        MALFORMED,
    ),
    refused_v5(
        "mqtt_2_2_2_2_session_expiry_interval_in_will_properties",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 05 11 00 00 00 01 00 01 74 00 00",
        MALFORMED,
    ),
    refused_v5(
        "mqtt_3_1_3_2_2_will_delay_interval_twice",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 0a 18 00 00 00 01 18 00 00 00 01 00 01 74 00 00",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_3_1_3_2_3_will_payload_format_indicator_2",
        "00 04 4d 51 54 54 05 06 00 00 00 00 01 61 02 01 02 00 01 74 00 00",
        PROTOCOL,
    ),
    refused_v5(
        "mqtt_1_5_7_1_user_property_value_not_utf8",
        "00 04 4d 51 54 54 05 02 00 00 06 26 00 00 00 01 ff 00 01 61",
        MALFORMED,
    ),
    refused_v5(
        "mqtt_1_5_5_1_connect_property_length_not_minimal",
        "00 04 4d 51 54 54 05 02 00 00 80 00 00 01 61",
        MALFORMED,
    ),
    refused_v5(
        "mqtt_4_13_1_connect_properties_longer_than_the_packet",
        "00 04 4d 51 54 54 05 02 00 00 09 11 00 01 61",
        MALFORMED,
    ),
];

fn mqtt_4_8_0_1_refused_connect_closes_only_its_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut bystanders = Bystanders::connect(&broker, v);
    for case in CONNECT_CASES {
        let Some((body, answer)) = (if v.is_v5() { case.v5 } else { case.v3 }) else {
            continue;
        };
        eprintln!("case {}", case.name);
        let mut client = RawClient::connect(broker.addr, v);
        client.send_bytes(&frame(case.first, &hex(body)));
        let before = client.expect_close();
        let expected = match answer {
            Answer::Close => Vec::new(),
            Answer::ConnAck(code) => vec![Packet::ConnAck(Box::new(ConnAck {
                session_present: false,
                reason_code: code,
                properties: Default::default(),
            }))],
        };
        assert_eq!(
            wire(&before, v),
            wire(&expected, v),
            "{}: expected {answer:?}",
            case.name
        );
        bystanders.still_served(case.name);
    }
}
