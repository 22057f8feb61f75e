//! §3.14 DISCONNECT from a client: reason codes, properties, length.

use super::{Case, MALFORMED, PROTOCOL};

pub(super) const DISCONNECT: &[Case] = &[
    Case {
        // The connection's Session Expiry Interval is 0 (clean, none in CONNECT).
        name: "mqtt_3_14_2_2_2_session_expiry_set_on_disconnect_after_0",
        v3: None,
        v5: Some("e0 07 00 05 11 00 00 00 10"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_2_2_2_2_topic_alias_in_disconnect",
        v3: None,
        v5: Some("e0 05 00 03 23 00 01"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_4_13_1_disconnect_properties_longer_than_the_packet",
        v3: None,
        v5: Some("e0 03 00 05 11"),
        reason: MALFORMED,
    },
    Case {
        name: "mqtt_3_14_2_2_2_duplicate_session_expiry_interval",
        v3: None,
        v5: Some("e0 0c 00 0a 11 00 00 00 00 11 00 00 00 00"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_14_2_1_disconnect_with_reason_code_0x01",
        v3: None,
        v5: Some("e0 01 01"),
        reason: PROTOCOL,
    },
    Case {
        name: "mqtt_3_14_disconnect_with_two_bytes_before_mqtt_5",
        v3: Some("e0 02 00 00"),
        v5: None,
        reason: MALFORMED,
    },
];
