//! §3.3 PUBLISH: topic names, QoS and DUP, packet ids, properties and topic aliases.

use coremq::protocol::ReasonCode;

use super::{both, Case, MALFORMED, PROTOCOL};

pub(super) const PUBLISH: &[Case] = &[
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
    both(
        "mqtt_3_3_1_4_publish_qos_3_with_dup_and_retain",
        "3f 04 00 01 61 78",
        "3f 04 00 01 61 78",
        MALFORMED,
    ),
    both(
        "mqtt_3_3_2_2_publish_topic_plus_alone",
        "30 04 00 01 2b 78",
        "30 05 00 01 2b 00 78",
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    both(
        "mqtt_3_3_2_2_publish_topic_with_hash_inside_a_level",
        "30 06 00 03 61 23 62 78",
        "30 07 00 03 61 23 62 00 78",
        ReasonCode::TOPIC_NAME_INVALID,
    ),
    both(
        "mqtt_2_3_1_1_qos_2_publish_with_packet_id_0",
        "34 06 00 01 61 00 00 78",
        "34 07 00 01 61 00 00 00 78",
        PROTOCOL,
    ),
    both(
        "mqtt_1_5_4_1_topic_with_a_utf16_surrogate",
        "30 06 00 03 ed a0 80 78",
        "30 07 00 03 ed a0 80 00 78",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_4_1_topic_with_an_overlong_encoding",
        "30 05 00 02 c0 af 78",
        "30 06 00 02 c0 af 00 78",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_4_1_topic_ending_inside_a_multibyte_character",
        "30 05 00 02 e2 82 78",
        "30 06 00 02 e2 82 00 78",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_qos_1_publish_without_its_packet_id",
        "32 03 00 01 61",
        "32 03 00 01 61",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_publish_with_an_empty_body",
        "30 00",
        "30 00",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_publish_with_half_a_topic_length",
        "30 01 00",
        "30 01 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_4_13_1_publish_properties_longer_than_the_packet",
        v3: None,
        v5: Some("30 05 00 01 61 05 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_1_5_5_1_publish_property_length_not_minimal",
        v3: None,
        v5: Some("30 06 00 01 61 80 00 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_3_2_3_4_duplicate_message_expiry_interval",
        v3: None,
        v5: Some("30 0f 00 01 61 0a 02 00 00 00 01 02 00 00 00 01 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_3_2_3_4_duplicate_topic_alias",
        v3: None,
        v5: Some("30 0b 00 01 61 06 23 00 01 23 00 01 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_3_2_3_2_payload_format_indicator_2",
        v3: None,
        v5: Some("30 07 00 01 61 02 01 02 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_2_2_2_2_session_expiry_interval_in_publish",
        v3: None,
        v5: Some("30 0a 00 01 61 05 11 00 00 00 01 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_2_2_2_2_receive_maximum_in_publish",
        v3: None,
        v5: Some("30 08 00 01 61 03 21 00 01 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_3_2_14_response_topic_with_a_wildcard",
        v3: None,
        v5: Some("30 09 00 01 61 04 08 00 01 23 78"),
        reason: ReasonCode::TOPIC_NAME_INVALID,
    },
    Case {
        name: "mqtt_4_13_1_correlation_data_longer_than_its_property",
        v3: None,
        v5: Some("30 08 00 01 61 03 09 00 05 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_3_4_6_publish_with_subscription_identifier_0",
        v3: None,
        v5: Some("30 07 00 01 61 02 0b 00 78"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_1_5_7_1_user_property_name_not_utf8",
        v3: None,
        v5: Some("30 0b 00 01 61 06 26 00 01 c3 00 00 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_1_5_4_1_content_type_not_utf8",
        v3: None,
        v5: Some("30 09 00 01 61 04 03 00 01 ff 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_1_5_4_2_content_type_with_a_null_character",
        v3: None,
        v5: Some("30 09 00 01 61 04 03 00 01 00 78"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_3_2_8_topic_alias_0_with_an_empty_topic",
        v3: None,
        v5: Some("30 07 00 00 03 23 00 00 78"),
        reason: ReasonCode::TOPIC_ALIAS_INVALID,
    },
    Case {
        name: "mqtt_3_3_2_9_topic_alias_65535",
        v3: None,
        v5: Some("30 08 00 01 61 03 23 ff ff 78"),
        reason: ReasonCode::TOPIC_ALIAS_INVALID,
    },
];
