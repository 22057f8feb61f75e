//! §3.2, §3.9, §3.11, §3.13 packets only a server sends, and §3.15 AUTH out of turn.

use super::{both, Case, MALFORMED, PROTOCOL};

pub(super) const SERVER_PACKETS: &[Case] = &[
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
    both(
        "mqtt_3_11_unsuback_from_a_client",
        "b0 02 00 01",
        "b0 04 00 01 00 00",
        PROTOCOL,
    ),
    both(
        "mqtt_3_2_connack_with_session_present_from_a_client",
        "20 02 01 00",
        "20 03 01 00 00",
        PROTOCOL,
    ),
    Case {
        name: "mqtt_4_12_0_7_auth_continue_without_enhanced_authentication",
        v3: None,
        v5: Some("f0 02 18 00"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_15_2_1_auth_with_an_invalid_reason_code",
        v3: None,
        v5: Some("f0 02 05 00"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_2_2_2_2_auth_flags_0001",
        v3: None,
        v5: Some("f1 00"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_2_2_2_2_topic_alias_in_auth",
        v3: None,
        v5: Some("f0 05 18 03 23 00 01"),
        reason: MALFORMED,
    },
];
