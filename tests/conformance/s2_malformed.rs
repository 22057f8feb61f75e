//! §1.5, §2 and the per-packet rules: raw bytes that break the protocol, sent by a connected
//! client. Each case ends that connection only — MQTT 5 clients first get a DISCONNECT with the
//! reason code the case names, MQTT 3.1.1 clients are just closed [MQTT-4.8.0-1] — and after
//! every case two well-behaved clients, one per shard, still exchange messages across the mesh.
//!
//! Each case carries the bytes for each version it applies to (the formats differ where MQTT 5
//! adds a property block) and is named after the statement it breaks. First-packet and CONNECT
//! cases live in `s3_01_connect`.

use coremq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{hex, RawClient, TestBroker};
use crate::{connect, expect_message, publish, subscribe};

each_version!(mqtt_4_8_0_1_protocol_violation_closes_only_its_connection);

struct Case {
    name: &'static str,
    /// The bytes sent after CONNECT on an MQTT 3.1.1 connection; `None`: MQTT 5 only.
    v3: Option<&'static str>,
    /// The bytes sent after CONNECT on an MQTT 5 connection; `None`: not a violation there.
    v5: Option<&'static str>,
    /// The reason code of the DISCONNECT an MQTT 5 client gets.
    reason: ReasonCode,
}

const fn both(name: &'static str, v3: &'static str, v5: &'static str, reason: ReasonCode) -> Case {
    Case {
        name,
        v3: Some(v3),
        v5: Some(v5),
        reason,
    }
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

const CASES: &[Case] = &[
    // Fixed header.
    both(
        "mqtt_2_2_2_1_pingreq_with_a_reserved_flag_set",
        "c1 00",
        "c1 00",
        MALFORMED,
    ),
    both(
        "mqtt_3_6_1_1_pubrel_flags_0000",
        "60 02 00 01",
        "60 02 00 01",
        MALFORMED,
    ),
    both(
        "mqtt_3_8_1_1_subscribe_flags_0000",
        "80 08 00 01 00 03 61 2f 62 00",
        "80 09 00 01 00 00 03 61 2f 62 00",
        MALFORMED,
    ),
    both(
        "mqtt_3_10_1_1_unsubscribe_flags_0000",
        "a0 05 00 01 00 01 61",
        "a0 06 00 01 00 00 01 61",
        MALFORMED,
    ),
    both(
        "mqtt_3_14_1_1_disconnect_with_a_reserved_flag_set",
        "e1 00",
        "e1 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_1_reserved_packet_type_0",
        "00 00",
        "00 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_2_2_1_packet_type_15_is_reserved_before_mqtt_5",
        v3: Some("f0 00"),
        v5: None,
        reason: MALFORMED,
    },
    both(
        "mqtt_2_2_3_remaining_length_longer_than_4_bytes",
        "30 ff ff ff ff 01",
        "30 ff ff ff ff 01",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_5_1_remaining_length_not_minimally_encoded",
        "c0 80 00",
        "c0 80 00",
        MALFORMED,
    ),
    both(
        "mqtt_3_2_2_15_packet_larger_than_the_maximum_packet_size",
        "30 80 80 80 01",
        "30 80 80 80 01",
        ReasonCode::PACKET_TOO_LARGE,
    ),
    both(
        "mqtt_3_12_pingreq_with_a_body",
        "c0 01 00",
        "c0 01 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_3_14_disconnect_with_a_body_before_mqtt_5",
        v3: Some("e0 01 00"),
        v5: None,
        reason: MALFORMED,
    },
    // PUBLISH.
    both(
        "mqtt_3_3_1_4_publish_qos_3",
        "36 04 00 01 61 78",
        "36 04 00 01 61 78",
        MALFORMED,
    ),
    both(
        "mqtt_3_3_1_2_qos_0_publish_with_dup",
        "38 04 00 01 61 78",
        "38 05 00 01 61 00 78",
        PROTOCOL,
    ),
    both(
        "mqtt_3_3_2_2_publish_topic_with_plus",
        "30 06 00 03 61 2f 2b 78",
        "30 07 00 03 61 2f 2b 00 78",
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    both(
        "mqtt_3_3_2_2_publish_topic_with_hash",
        "30 04 00 01 23 78",
        "30 05 00 01 23 00 78",
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    both(
        "mqtt_4_7_3_1_publish_empty_topic",
        "30 03 00 00 78",
        "30 04 00 00 00 78",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_qos_1_publish_with_packet_id_0",
        "32 06 00 01 61 00 00 78",
        "32 07 00 01 61 00 00 00 78",
        PROTOCOL,
    ),
    both(
        "mqtt_1_5_3_1_topic_not_utf8",
        "30 05 00 02 c3 28 78",
        "30 06 00 02 c3 28 00 78",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_3_2_topic_with_null_character",
        "30 05 00 02 61 00 78",
        "30 06 00 02 61 00 00 78",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_3_topic_longer_than_the_packet",
        "30 03 00 05 61",
        "30 03 00 05 61",
        MALFORMED,
    ),
    Case {
        name: "mqtt_2_2_2_2_publish_with_an_unknown_property",
        v3: None,
        v5: Some("30 06 00 01 61 01 7f 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_3_2_3_duplicate_payload_format_indicator",
        v3: None,
        v5: Some("30 09 00 01 61 04 01 00 01 00 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_3_2_8_topic_alias_0",
        v3: None,
        v5: Some("30 08 00 01 61 03 23 00 00 78"),
        reason: ReasonCode::TOPIC_ALIAS_INVALID,
    },
    Case {
        // Alias 11, above the default COREMQ_TOPIC_ALIAS_MAXIMUM of 10.
        name: "mqtt_3_3_2_9_topic_alias_above_the_topic_alias_maximum",
        v3: None,
        v5: Some("30 08 00 01 61 03 23 00 0b 78"),
        reason: ReasonCode::TOPIC_ALIAS_INVALID,
    },
    Case {
        // Alias 1 with an empty topic before alias 1 was ever set.
        name: "mqtt_3_3_2_12_unknown_topic_alias_with_an_empty_topic",
        v3: None,
        v5: Some("30 07 00 00 03 23 00 01 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_3_4_6_publish_with_a_subscription_identifier",
        v3: None,
        v5: Some("30 07 00 01 61 02 0b 01 78"),
        reason: PROTOCOL,
    },
    // Acknowledgements.
    Case {
        name: "mqtt_3_4_2_1_puback_with_an_invalid_reason_code",
        v3: None,
        v5: Some("40 03 00 01 05"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_14_2_1_disconnect_with_an_invalid_reason_code",
        v3: None,
        v5: Some("e0 01 05"),
        reason: PROTOCOL,
    },
    // SUBSCRIBE / UNSUBSCRIBE.
    both(
        "mqtt_3_8_3_3_subscribe_without_filters",
        "82 02 00 01",
        "82 03 00 01 00",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_subscribe_with_packet_id_0",
        "82 08 00 00 00 03 61 2f 62 00",
        "82 09 00 00 00 00 03 61 2f 62 00",
        PROTOCOL,
    ),
    both(
        "mqtt_3_8_3_4_subscribe_options_reserved_bits",
        "82 08 00 01 00 03 61 2f 62 04",
        "82 09 00 01 00 00 03 61 2f 62 c0",
        MALFORMED,
    ),
    both(
        "mqtt_3_8_3_4_subscribe_qos_3",
        "82 08 00 01 00 03 61 2f 62 03",
        "82 09 00 01 00 00 03 61 2f 62 03",
        MALFORMED,
    ),
    Case {
        name: "mqtt_3_8_3_5_retain_handling_3",
        v3: None,
        v5: Some("82 09 00 01 00 00 03 61 2f 62 30"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_8_3_4_shared_subscription_with_no_local",
        v3: None,
        v5: Some("82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 04"),
        reason: PROTOCOL,
    },
    both(
        "mqtt_4_7_1_2_hash_not_the_last_level",
        "82 08 00 01 00 03 23 2f 61 00",
        "82 09 00 01 00 00 03 23 2f 61 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_4_7_1_3_plus_not_a_whole_level",
        "82 08 00 01 00 03 61 2b 62 00",
        "82 09 00 01 00 00 03 61 2b 62 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_4_7_3_1_subscribe_empty_filter",
        "82 05 00 01 00 00 00",
        "82 06 00 01 00 00 00 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_3_10_3_2_unsubscribe_without_filters",
        "a2 02 00 01",
        "a2 03 00 01 00",
        PROTOCOL,
    ),
    // Packets only a server sends.
    both(
        "mqtt_3_2_connack_from_a_client",
        "20 02 00 00",
        "20 03 00 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_3_9_suback_from_a_client",
        "90 03 00 01 00",
        "90 04 00 01 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_3_13_pingresp_from_a_client",
        "d0 00",
        "d0 00",
        PROTOCOL,
    ),
    Case {
        name: "mqtt_4_12_auth_without_an_authentication_method",
        v3: None,
        v5: Some("f0 00"),
        reason: PROTOCOL,
    },
];

/// Two clients, one homed on each shard, each subscribed to its own topic.
struct Bystanders {
    on_0: RawClient,
    on_1: RawClient,
}

impl Bystanders {
    fn connect(broker: &TestBroker, v: ProtocolVersion) -> Self {
        let mut on_0 = connect(broker, v, &broker.id_on(0, "bystander"), true);
        let mut on_1 = connect(broker, v, &broker.id_on(1, "bystander"), true);
        subscribe(&mut on_0, "bystander/0", QoS::AtMostOnce);
        subscribe(&mut on_1, "bystander/1", QoS::AtMostOnce);
        Self { on_0, on_1 }
    }

    /// Each publishes to the other, across the mesh, and receives the other's message.
    fn still_served(&mut self, after: &str) {
        publish(&mut self.on_0, "bystander/1", after, QoS::AtMostOnce);
        publish(&mut self.on_1, "bystander/0", after, QoS::AtMostOnce);
        expect_message(&mut self.on_1, "bystander/1", after);
        expect_message(&mut self.on_0, "bystander/0", after);
    }
}

fn mqtt_4_8_0_1_protocol_violation_closes_only_its_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut bystanders = Bystanders::connect(&broker, v);
    for (i, case) in CASES.iter().enumerate() {
        let bytes = if v.is_v5() { case.v5 } else { case.v3 };
        let Some(bytes) = bytes else { continue };
        // Shown if the case fails inside a helper.
        eprintln!("case {}", case.name);
        // The offender alternates between the shards.
        let mut client = connect(&broker, v, &broker.id_on(i % 2, case.name), true);
        client.send_bytes(&hex(bytes));
        let before = client.expect_close();
        // Only the reason code is normative; the broker adds a Reason String saying why.
        let codes: Vec<ReasonCode> = before
            .iter()
            .map(|p| match p {
                Packet::Disconnect(d) => d.reason_code,
                other => panic!("{}: unexpected {other:?} before the close", case.name),
            })
            .collect();
        let expected = if v.is_v5() {
            vec![case.reason]
        } else {
            Vec::new()
        };
        assert_eq!(
            codes,
            expected,
            "{}: expected {}",
            case.name,
            if v.is_v5() {
                "DISCONNECT then close"
            } else {
                "a close"
            }
        );
        bystanders.still_served(case.name);
    }
}
