//! §2.1–2.2: the fixed header — flags, reserved packet types, remaining length, and packet types MQTT 3.1.1 does not have.

use coremq::protocol::ReasonCode;

use super::{both, Case, MALFORMED};

pub(super) const FIXED_HEADER: &[Case] = &[
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
    both(
        "mqtt_2_2_2_2_pingreq_with_every_flag_set",
        "cf 00",
        "cf 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_disconnect_with_flag_3_set",
        "e8 00",
        "e8 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_puback_flags_0001",
        "41 02 00 01",
        "41 02 00 01",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_pubrec_flags_0001",
        "51 02 00 01",
        "51 02 00 01",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_pubrel_flags_1111",
        "6f 02 00 01",
        "6f 02 00 01",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_pubcomp_flags_0010",
        "72 02 00 01",
        "72 02 00 01",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_subscribe_flags_0011",
        "83 08 00 01 00 03 61 2f 62 00",
        "83 09 00 01 00 00 03 61 2f 62 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_unsubscribe_flags_0011",
        "a3 05 00 01 00 01 61",
        "a3 06 00 01 00 00 01 61",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_connack_flags_0001",
        "21 02 00 00",
        "21 03 00 00 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_2_2_suback_flags_0001",
        "91 03 00 01 00",
        "91 04 00 01 00 00",
        MALFORMED,
    ),
    both(
        "mqtt_2_2_1_reserved_packet_type_0_with_flags",
        "0f 00",
        "0f 00",
        MALFORMED,
    ),
    Case {
        name: "mqtt_2_2_1_packet_type_15_with_a_body_before_mqtt_5",
        v3: Some("f0 02 00 00"),
        v5: None,
        reason: MALFORMED,
    },
    both(
        "mqtt_1_5_5_1_remaining_length_three_bytes_not_minimal",
        "c0 80 80 00",
        "c0 80 80 00",
        MALFORMED,
    ),
    both(
        "mqtt_1_5_5_1_remaining_length_four_bytes_not_minimal",
        "c0 80 80 80 00",
        "c0 80 80 80 00",
        MALFORMED,
    ),
    both(
        "mqtt_3_12_pingreq_with_a_two_byte_body",
        "c0 02 00 00",
        "c0 02 00 00",
        MALFORMED,
    ),
];
