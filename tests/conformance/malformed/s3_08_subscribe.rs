//! §3.8 SUBSCRIBE and §3.10 UNSUBSCRIBE: filters, options, shared subscriptions, identifiers.

use coremq::protocol::ReasonCode;

use super::{both, Case, MALFORMED, PROTOCOL};

pub(super) const SUBSCRIBE: &[Case] = &[
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
        "mqtt_4_13_1_subscribe_filter_without_its_options_byte",
        "82 07 00 01 00 03 61 2f 62",
        "82 08 00 01 00 00 03 61 2f 62",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_subscribe_filter_longer_than_the_packet",
        "82 06 00 01 00 09 61 00",
        "82 07 00 01 00 00 09 61 00",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_4_1_subscribe_filter_not_utf8",
        "82 06 00 01 00 01 ff 00",
        "82 07 00 01 00 00 01 ff 00",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_4_2_subscribe_filter_with_a_null_character",
        "82 06 00 01 00 01 00 00",
        "82 07 00 01 00 00 01 00 00",
        MALFORMED,
    ),
    both(
        "mqtt_4_7_1_1_hash_inside_a_level",
        "82 07 00 01 00 02 61 23 00",
        "82 08 00 01 00 00 02 61 23 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_4_7_1_2_plus_followed_by_a_character",
        "82 07 00 01 00 02 2b 61 00",
        "82 08 00 01 00 00 02 2b 61 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_4_7_1_1_second_filter_invalid",
        "82 0d 00 01 00 03 61 2f 62 00 00 02 23 61 00",
        "82 0e 00 01 00 00 03 61 2f 62 00 00 02 23 61 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_3_8_3_5_subscribe_options_upper_bits",
        "82 08 00 01 00 03 61 2f 62 f1",
        "82 09 00 01 00 00 03 61 2f 62 c1",
        MALFORMED,
    ),
    Case {
        name: "mqtt_3_8_3_5_subscribe_options_bit_6",
        v3: None,
        v5: Some("82 09 00 01 00 00 03 61 2f 62 40"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_4_8_2_1_shared_subscription_with_an_empty_share_name",
        v3: None,
        v5: Some("82 0f 00 01 00 00 09 24 73 68 61 72 65 2f 2f 61 00"),
        reason: ReasonCode::TOPIC_FILTER_INVALID,
    },
    Case {
        name: "mqtt_4_8_2_1_shared_subscription_share_name_with_a_wildcard",
        v3: None,
        v5: Some("82 11 00 01 00 00 0b 24 73 68 61 72 65 2f 67 2b 2f 61 00"),
        reason: ReasonCode::TOPIC_FILTER_INVALID,
    },
    Case {
        name: "mqtt_4_8_2_2_shared_subscription_without_a_filter",
        v3: None,
        v5: Some("82 0f 00 01 00 00 09 24 73 68 61 72 65 2f 67 2f 00"),
        reason: ReasonCode::TOPIC_FILTER_INVALID,
    },
    Case {
        name: "mqtt_4_8_2_2_shared_subscription_without_a_slash",
        v3: None,
        v5: Some("82 0e 00 01 00 00 08 24 73 68 61 72 65 2f 67 00"),
        reason: ReasonCode::TOPIC_FILTER_INVALID,
    },
    Case {
        name: "mqtt_3_8_2_1_2_subscription_identifier_0",
        v3: None,
        v5: Some("82 0b 00 01 02 0b 00 00 03 61 2f 62 00"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_8_2_1_2_subscription_identifier_twice",
        v3: None,
        v5: Some("82 0d 00 01 04 0b 01 0b 02 00 03 61 2f 62 00"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_2_2_2_2_topic_alias_in_subscribe",
        v3: None,
        v5: Some("82 0c 00 01 03 23 00 01 00 03 61 2f 62 00"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_4_13_1_subscribe_properties_longer_than_the_packet",
        v3: None,
        v5: Some("82 06 00 01 09 0b 01 00"),
        reason: MALFORMED,
    },
    both(
        "mqtt_3_10_3_2_unsubscribe_without_filters",
        "a2 02 00 01",
        "a2 03 00 01 00",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_unsubscribe_with_packet_id_0",
        "a2 05 00 00 00 01 61",
        "a2 06 00 00 00 00 01 61",
        PROTOCOL,
    ),
    both(
        "mqtt_4_7_1_1_unsubscribe_hash_not_the_last_level",
        "a2 09 00 01 00 05 61 2f 23 2f 62",
        "a2 0a 00 01 00 00 05 61 2f 23 2f 62",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_4_7_3_1_unsubscribe_empty_filter",
        "a2 04 00 01 00 00",
        "a2 05 00 01 00 00 00",
        ReasonCode::TOPIC_FILTER_INVALID,
    ),
    both(
        "mqtt_1_5_4_1_unsubscribe_filter_not_utf8",
        "a2 05 00 01 00 01 ff",
        "a2 06 00 01 00 00 01 ff",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_unsubscribe_filter_longer_than_the_packet",
        "a2 05 00 01 00 05 61",
        "a2 06 00 01 00 00 05 61",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_unsubscribe_with_a_stray_byte",
        "a2 06 00 01 00 01 61 00",
        "a2 07 00 01 00 00 01 61 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_2_2_2_2_subscription_identifier_in_unsubscribe",
        v3: None,
        v5: Some("a2 08 00 01 02 0b 01 00 01 61"),
        reason: MALFORMED,
    },
];
