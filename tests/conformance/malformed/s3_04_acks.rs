//! §3.4–3.7 PUBACK, PUBREC, PUBREL, PUBCOMP: lengths, reason codes, properties.

use super::{both, Case, MALFORMED, PROTOCOL};

pub(super) const ACKS: &[Case] = &[
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
    both(
        "mqtt_2_3_1_1_puback_with_packet_id_0",
        "40 02 00 00",
        "40 02 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_pubrec_with_packet_id_0",
        "50 02 00 00",
        "50 02 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_pubrel_with_packet_id_0",
        "62 02 00 00",
        "62 02 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_2_3_1_1_pubcomp_with_packet_id_0",
        "70 02 00 00",
        "70 02 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_4_13_1_puback_with_half_a_packet_id",
        "40 01 00",
        "40 01 00",
        MALFORMED,
    ),
    both(
        "mqtt_4_13_1_pubrel_without_a_packet_id",
        "62 00",
        "62 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_3_4_puback_longer_than_2_bytes_before_mqtt_5",
        v3: Some("40 03 00 01 00"),
        v5: None,
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_7_pubcomp_longer_than_2_bytes_before_mqtt_5",
        v3: Some("70 04 00 01 00 00"),
        v5: None,
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_5_2_1_pubrec_with_an_invalid_reason_code",
        v3: None,
        v5: Some("50 03 00 01 05"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_6_2_1_pubrel_with_reason_code_0x10",
        v3: None,
        v5: Some("62 03 00 01 10"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_7_2_1_pubcomp_with_reason_code_0x80",
        v3: None,
        v5: Some("70 03 00 01 80"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_2_2_2_2_topic_alias_in_puback",
        v3: None,
        v5: Some("40 07 00 01 00 03 23 00 01"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_4_2_2_2_duplicate_reason_string_in_puback",
        v3: None,
        v5: Some("40 0c 00 01 00 08 1f 00 01 61 1f 00 01 61"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_4_13_1_puback_properties_longer_than_the_packet",
        v3: None,
        v5: Some("40 05 00 01 00 05 1f"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_4_13_1_pubrel_with_a_byte_after_its_properties",
        v3: None,
        v5: Some("62 05 00 01 00 00 00"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_1_5_4_1_reason_string_not_utf8_in_pubcomp",
        v3: None,
        v5: Some("70 08 00 01 00 04 1f 00 01 fe"),
        reason: MALFORMED,
    },
];
