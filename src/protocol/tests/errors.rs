//! One test per decode-error path: raw frames that break one spec statement each, the exact
//! `DecodeError` they must produce, and the MQTT 5 reason code the broker answers with.
//!
//! Test names carry the spec statement (MQTT 5.0 numbering unless the rule only exists in
//! 3.1.1). Every frame is complete, so an `Ok(None)` is a failure too. The last test proves that
//! every `DecodeError` variant has at least one frame here.

use std::num::NonZeroU32;

use bytes::Bytes;

use super::golden::{hex, ALL, V3, V4, V5};
use crate::protocol::{
    connect_protocol_version, decode, DecodeError, MqttString, Packet, ProtocolVersion, ReasonCode,
};

use DecodeError as E;

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// Decodes `frame` (complete) in version `v` and returns the error it must produce.
fn decode_err(v: ProtocolVersion, frame: &str) -> DecodeError {
    let mut buf = hex(frame);
    match decode(&mut buf, v, u32::MAX) {
        Err(e) => e,
        Ok(p) => panic!("{v:?} {frame} decoded to {p:?}, expected an error"),
    }
}

/// `frame` fails with exactly `want` in every version of `versions`, and `want` maps to `rc`.
fn assert_error(versions: &[ProtocolVersion], frame: &str, want: DecodeError, rc: ReasonCode) {
    for &v in versions {
        assert_eq!(decode_err(v, frame), want, "{v:?} {frame}");
    }
    assert_eq!(want.reason_code(), rc, "reason code of {want:?}");
}

/// `frame` decodes without error in version `v`.
fn decode_ok(v: ProtocolVersion, frame: &str) -> Packet {
    let mut buf = hex(frame);
    match decode(&mut buf, v, u32::MAX) {
        Ok(Some(p)) => {
            assert!(buf.is_empty(), "{v:?} {frame} left bytes");
            p
        }
        other => panic!("{v:?} {frame}: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed header
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.1.3-1] Every flags value other than the one the spec fixes, for every packet type but
/// PUBLISH, is Malformed — and is reported from the first two bytes, before the body arrives.
#[test]
fn mqtt_2_1_3_1_reserved_flags() {
    // (packet type, the only valid flags, versions where the type exists)
    let types: &[(u8, u8, &[ProtocolVersion])] = &[
        (1, 0b0000, &ALL),   // CONNECT
        (2, 0b0000, &ALL),   // CONNACK
        (4, 0b0000, &ALL),   // PUBACK
        (5, 0b0000, &ALL),   // PUBREC
        (6, 0b0010, &ALL),   // PUBREL
        (7, 0b0000, &ALL),   // PUBCOMP
        (8, 0b0010, &ALL),   // SUBSCRIBE
        (9, 0b0000, &ALL),   // SUBACK
        (10, 0b0010, &ALL),  // UNSUBSCRIBE
        (11, 0b0000, &ALL),  // UNSUBACK
        (12, 0b0000, &ALL),  // PINGREQ
        (13, 0b0000, &ALL),  // PINGRESP
        (14, 0b0000, &ALL),  // DISCONNECT
        (15, 0b0000, &[V5]), // AUTH
    ];
    for &(ptype, valid, versions) in types {
        for flags in (0u8..16).filter(|f| *f != valid) {
            let first = (ptype << 4) | flags;
            let want = E::InvalidHeaderFlags {
                packet_type: ptype,
                flags,
            };
            // A complete empty frame, and a header announcing 10 bytes that have not arrived.
            assert_error(versions, &format!("{first:02X} 00"), want, MALFORMED);
            assert_error(versions, &format!("{first:02X} 0A"), want, MALFORMED);
        }
    }
}

/// [MQTT-2.1.2] packet type 0 is reserved (Forbidden).
#[test]
fn mqtt_2_1_2_reserved_packet_type_0() {
    assert_error(&ALL, "00 00", E::ReservedPacketType(0), MALFORMED);
    assert_error(&ALL, "02 05", E::ReservedPacketType(0), MALFORMED); // header only
}

/// [MQTT-2.1.2] type 15 (AUTH) only exists from MQTT 5 on; in 3.1 / 3.1.1 it is reserved.
#[test]
fn mqtt_2_1_2_auth_is_reserved_before_v5() {
    assert_error(&[V3, V4], "F0 00", E::ReservedPacketType(15), MALFORMED);
    assert_error(
        &[V3, V4],
        "F0 02 18 00",
        E::ReservedPacketType(15),
        MALFORMED,
    );
    assert_error(&[V3, V4], "F0 05", E::ReservedPacketType(15), MALFORMED); // header only
}

/// [MQTT-3.3.1-4] a PUBLISH must not have both QoS bits set.
#[test]
fn mqtt_3_3_1_4_publish_qos_3_is_malformed() {
    for first in ["36", "37", "3E", "3F"] {
        // flags x11x, topic "a/b"
        assert_error(
            &ALL,
            &format!("{first} 05 00 03 61 2F 62"),
            E::InvalidQoS,
            MALFORMED,
        );
    }
}

/// [MQTT-3.3.1-2] DUP must be 0 on a QoS 0 PUBLISH.
#[test]
fn mqtt_3_3_1_2_publish_dup_on_qos_0() {
    assert_error(&[V3, V4], "38 05 00 03 61 2F 62", E::DupWithQoS0, PROTOCOL);
    assert_error(&[V3, V4], "39 05 00 03 61 2F 62", E::DupWithQoS0, PROTOCOL); // + RETAIN
    assert_error(&[V5], "38 06 00 03 61 2F 62 00", E::DupWithQoS0, PROTOCOL);
}

// ---------------------------------------------------------------------------------------------
// Variable byte integers, lengths
// ---------------------------------------------------------------------------------------------

/// [MQTT-1.5.5] a variable byte integer is at most four bytes.
#[test]
fn mqtt_1_5_5_var_int_longer_than_four_bytes() {
    // Remaining length with a fifth byte.
    assert_error(&ALL, "30 80 80 80 80 01", E::VarIntTooLong, MALFORMED);
    // Four continuation bytes: known to be too long before a fifth arrives.
    assert_error(&ALL, "30 FF FF FF FF", E::VarIntTooLong, MALFORMED);
    // A property length of five bytes inside a PUBLISH (topic "a").
    assert_error(
        &[V5],
        "30 08 00 01 61 FF FF FF FF 01",
        E::VarIntTooLong,
        MALFORMED,
    );
}

/// [MQTT-1.5.5-1] a variable byte integer uses the fewest bytes that hold its value.
#[test]
fn mqtt_1_5_5_1_var_int_not_minimal() {
    // Remaining length 0 written as 80 00; 0 as 80 80 00; 5 as 85 80 00 (header only).
    assert_error(&ALL, "C0 80 00", E::VarIntNotMinimal, MALFORMED);
    assert_error(&ALL, "C0 80 80 00", E::VarIntNotMinimal, MALFORMED);
    assert_error(&ALL, "30 85 80 00", E::VarIntNotMinimal, MALFORMED);
    // Property length 0 written as 80 00 (PUBLISH "a", payload "x").
    assert_error(
        &[V5],
        "30 06 00 01 61 80 00 78",
        E::VarIntNotMinimal,
        MALFORMED,
    );
    // Subscription Identifier 1 written as 81 00.
    assert_error(
        &[V5],
        "30 07 00 01 61 03 0B 81 00",
        E::VarIntNotMinimal,
        MALFORMED,
    );
}

/// [MQTT-4.13.1] / §1.5: a length field that points past the end of its frame (or of its
/// property block) is Malformed; the frame is complete, so this is an error, not `Ok(None)`.
#[test]
fn mqtt_4_13_1_truncated_fields() {
    // PUBLISH topic length 5 with 1 byte left.
    assert_error(&ALL, "30 03 00 05 61", E::Truncated, MALFORMED);
    // PUBACK with half a packet id.
    assert_error(&ALL, "40 01 00", E::Truncated, MALFORMED);
    // CONNECT ending after the protocol name (no level).
    assert_error(&ALL, "10 06 00 04 4D 51 54 54", E::Truncated, MALFORMED);
    // CONNECT with the User Name flag but no user name.
    assert_error(
        &ALL,
        "10 0D 00 04 4D 51 54 54 04 82 00 3C 00 01 61",
        E::Truncated,
        MALFORMED,
    );
    // SUBSCRIBE filter without its options byte.
    assert_error(&[V3, V4], "82 05 00 01 00 01 61", E::Truncated, MALFORMED);
    // PUBACK: property length 5, 1 byte left.
    assert_error(&[V5], "40 05 00 01 80 05 1F", E::Truncated, MALFORMED);
    // PUBACK: property length 4 covers "1F 00 05 61": the Reason String (length 5) cannot
    // borrow bytes from outside its block.
    assert_error(
        &[V5],
        "40 09 00 01 80 04 1F 00 05 61 62",
        E::Truncated,
        MALFORMED,
    );
    // PUBLISH: Subscription Identifier whose var int ends with the block.
    assert_error(&[V5], "30 06 00 01 61 02 0B 80", E::Truncated, MALFORMED);
}

/// [MQTT-4.13.1] bytes after the last field of a packet are Malformed.
#[test]
fn mqtt_4_13_1_trailing_bytes() {
    assert_error(&ALL, "C0 01 00", E::TrailingBytes, MALFORMED); // PINGREQ
    assert_error(&ALL, "D0 01 00", E::TrailingBytes, MALFORMED); // PINGRESP
    assert_error(&[V3, V4], "E0 01 00", E::TrailingBytes, MALFORMED); // 3.1.1 DISCONNECT
    assert_error(&[V3, V4], "40 03 00 01 00", E::TrailingBytes, MALFORMED); // 3.1.1 PUBACK
    assert_error(&[V3, V4], "62 03 00 01 00", E::TrailingBytes, MALFORMED); // 3.1.1 PUBREL
    assert_error(&[V3, V4], "20 03 00 00 00", E::TrailingBytes, MALFORMED); // 3.1.1 CONNACK

    // CONNECT with one byte after the client id.
    assert_error(
        &ALL,
        "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 01 61 FF",
        E::TrailingBytes,
        MALFORMED,
    );
    // MQTT 5: reason code, empty property block, then a stray byte.
    assert_error(&[V5], "40 05 00 01 10 00 FF", E::TrailingBytes, MALFORMED);
    assert_error(&[V5], "E0 03 00 00 FF", E::TrailingBytes, MALFORMED);
    assert_error(&[V5], "F0 03 00 00 FF", E::TrailingBytes, MALFORMED);
    assert_error(&[V5], "20 04 00 00 00 FF", E::TrailingBytes, MALFORMED);
}

/// [MQTT-3.2.2-15] / [MQTT-3.1.2-24] a packet larger than the Maximum Packet Size is refused from
/// its fixed header alone: the body is never buffered. The size counts the whole frame.
#[test]
fn mqtt_3_2_2_15_packet_too_large_from_the_header_alone() {
    // PUBLISH announcing 1000 bytes (E8 07 = 104 + 7·128), none of which have arrived.
    let mut buf = hex("30 E8 07");
    let want = E::PacketTooLarge {
        size: 1003,
        max: 100,
    };
    for v in ALL {
        assert_eq!(decode(&mut buf, v, 100), Err(want));
        assert_eq!(buf.len(), 3, "nothing consumed");
    }
    assert_eq!(want.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // Even a header whose type and flags are invalid: the size is the first check.
    let mut buf = hex("00 E8 07");
    assert_eq!(decode(&mut buf, V5, 100), Err(want));
    // The boundary: a 9-byte frame passes a limit of 9 and fails a limit of 8.
    let frame = "30 07 00 03 61 2F 62 68 69";
    let mut buf = hex(frame);
    assert!(decode(&mut buf, V4, 9).unwrap().is_some());
    let mut buf = hex(frame);
    assert_eq!(
        decode(&mut buf, V4, 8),
        Err(E::PacketTooLarge { size: 9, max: 8 })
    );
}

// ---------------------------------------------------------------------------------------------
// UTF-8 strings
// ---------------------------------------------------------------------------------------------

/// [MQTT-1.5.4-1] overlong encodings are not well-formed UTF-8.
#[test]
fn mqtt_1_5_4_1_overlong_utf8_is_malformed() {
    assert_error(&ALL, "30 04 00 02 C0 AF", E::InvalidUtf8, MALFORMED); // '/' in 2 bytes
    assert_error(&ALL, "30 05 00 03 E0 80 AF", E::InvalidUtf8, MALFORMED); // '/' in 3 bytes

    // U+0000 overlong (C0 80, "modified UTF-8") is ill-formed, not a null character.
    assert_error(&ALL, "30 04 00 02 C0 80", E::InvalidUtf8, MALFORMED);
}

/// [MQTT-1.5.4-1] UTF-16 surrogates (U+D800..U+DFFF) must not appear, in any string field.
#[test]
fn mqtt_1_5_4_1_surrogate_d800_is_malformed() {
    // PUBLISH topic U+D800 = ED A0 80.
    assert_error(&ALL, "30 05 00 03 ED A0 80", E::InvalidUtf8, MALFORMED);
    // U+DFFF = ED BF BF.
    assert_error(&ALL, "30 05 00 03 ED BF BF", E::InvalidUtf8, MALFORMED);
    // CONNECT client id U+D800.
    assert_error(
        &ALL,
        "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 ED A0 80",
        E::InvalidUtf8,
        MALFORMED,
    );
    // MQTT 5 User Property value U+D800 in a PUBACK.
    assert_error(
        &[V5],
        "40 0D 00 01 00 09 26 00 01 6B 00 03 ED A0 80",
        E::InvalidUtf8,
        MALFORMED,
    );
    // A truncated sequence: E2 82 without its third byte (U+20AC is E2 82 AC).
    assert_error(&ALL, "30 04 00 02 E2 82", E::InvalidUtf8, MALFORMED);
}

/// [MQTT-1.5.4-2] a UTF-8 string must not contain U+0000.
#[test]
fn mqtt_1_5_4_2_null_character_is_malformed() {
    assert_error(&ALL, "30 05 00 03 61 00 62", E::NullCharacter, MALFORMED); // topic "a\0b"

    // SUBSCRIBE filter "a\0".
    assert_error(
        &[V3, V4],
        "82 07 00 01 00 02 61 00 01",
        E::NullCharacter,
        MALFORMED,
    );
    // CONNECT user name "\0".
    assert_error(
        &ALL,
        "10 10 00 04 4D 51 54 54 04 82 00 3C 00 01 61 00 01 00",
        E::NullCharacter,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// Topic names and filters
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.3.2-2] a topic name (PUBLISH, will, Response Topic) contains no wildcard.
#[test]
fn mqtt_3_3_2_2_wildcard_in_topic_name() {
    let rc = ReasonCode::TOPIC_NAME_INVALID;
    assert_error(
        &[V3, V4],
        "30 05 00 03 61 2F 2B",
        E::WildcardInTopicName,
        rc,
    ); // "a/+"
    assert_error(
        &[V3, V4],
        "30 05 00 03 61 2F 23",
        E::WildcardInTopicName,
        rc,
    ); // "a/#"
    assert_error(&[V5], "30 06 00 03 61 2F 23 00", E::WildcardInTopicName, rc);
    // Will topic "#" (flags: Will | Clean).
    assert_error(
        &ALL,
        "10 12 00 04 4D 51 54 54 04 06 00 3C 00 01 61 00 01 23 00 00",
        E::WildcardInTopicName,
        rc,
    );
    // MQTT 5 Response Topic "+" [MQTT-3.3.2-14].
    assert_error(
        &[V5],
        "30 08 00 01 61 04 08 00 01 2B",
        E::WildcardInTopicName,
        rc,
    );
}

/// [MQTT-4.7.3-1] topic names are at least one character long. MQTT 5 §3.3.2.3.4: an empty topic
/// name without a Topic Alias is a Protocol Error.
#[test]
fn mqtt_4_7_3_1_empty_topic_name() {
    assert_error(&[V3, V4], "30 02 00 00", E::EmptyTopicName, PROTOCOL);
    assert_error(&[V3, V4], "32 04 00 00 00 01", E::EmptyTopicName, PROTOCOL); // QoS 1, id 1
    assert_error(&[V5], "30 03 00 00 00", E::EmptyTopicName, PROTOCOL); // no properties

    // MQTT 5 with properties, but no Topic Alias among them (Message Expiry 1).
    assert_error(
        &[V5],
        "30 08 00 00 05 02 00 00 00 01",
        E::EmptyTopicName,
        PROTOCOL,
    );
    // Will topic "".
    assert_error(
        &ALL,
        "10 11 00 04 4D 51 54 54 04 06 00 3C 00 01 61 00 00 00 00",
        E::EmptyTopicName,
        PROTOCOL,
    );
}

/// [MQTT-4.7.3-1] topic filters are at least one character long.
#[test]
fn mqtt_4_7_3_1_empty_topic_filter() {
    let rc = ReasonCode::TOPIC_FILTER_INVALID;
    assert_error(&[V3, V4], "82 05 00 01 00 00 00", E::EmptyTopicFilter, rc);
    assert_error(&[V5], "82 06 00 01 00 00 00 00", E::EmptyTopicFilter, rc);
    assert_error(&[V3, V4], "A2 04 00 01 00 00", E::EmptyTopicFilter, rc);
    assert_error(&[V5], "A2 05 00 01 00 00 00", E::EmptyTopicFilter, rc);
}

/// [MQTT-4.7.1-1] '#' must be alone in the last level of a filter.
#[test]
fn mqtt_4_7_1_1_multi_level_wildcard_misplaced() {
    let rc = ReasonCode::TOPIC_FILTER_INVALID;
    let want = E::MultiLevelWildcardMisplaced;
    assert_error(&[V3, V4], "82 07 00 01 00 02 61 23 00", want, rc); // "a#"
    assert_error(&[V3, V4], "82 0A 00 01 00 05 61 2F 23 2F 62 00", want, rc); // "a/#/b"
    assert_error(&[V5], "82 08 00 01 00 00 02 23 23 00", want, rc); // "##"
    assert_error(&[V3, V4], "A2 07 00 01 00 03 23 2F 61", want, rc); // UNSUBSCRIBE "#/a"
}

/// [MQTT-4.7.1-2] '+' must be alone in its level.
#[test]
fn mqtt_4_7_1_2_single_level_wildcard_misplaced() {
    let rc = ReasonCode::TOPIC_FILTER_INVALID;
    let want = E::SingleLevelWildcardMisplaced;
    assert_error(&[V3, V4], "82 07 00 01 00 02 61 2B 00", want, rc); // "a+"
    assert_error(&[V3, V4], "82 09 00 01 00 04 61 2F 62 2B 00", want, rc); // "a/b+"
    assert_error(&[V5], "A2 07 00 01 00 00 02 2B 2B", want, rc); // UNSUBSCRIBE "++"
}

/// [MQTT-4.8.2-1] a share name is at least one character without '/', '+' or '#';
/// [MQTT-4.8.2-2] it is followed by '/' and a non-empty topic filter.
#[test]
fn mqtt_4_8_2_1_invalid_shared_subscription_syntax() {
    let rc = ReasonCode::TOPIC_FILTER_INVALID;
    let want = E::InvalidSharedSubscription;
    // "$share/g": no filter.
    assert_error(
        &[V5],
        "82 0E 00 01 00 00 08 24 73 68 61 72 65 2F 67 00",
        want,
        rc,
    );
    // "$share/g/": empty filter.
    assert_error(
        &[V5],
        "82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 67 2F 00",
        want,
        rc,
    );
    // "$share//a": empty share name.
    assert_error(
        &[V5],
        "82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 2F 61 00",
        want,
        rc,
    );
    // "$share/g+/a": wildcard in the share name.
    assert_error(
        &[V5],
        "82 11 00 01 00 00 0B 24 73 68 61 72 65 2F 67 2B 2F 61 00",
        want,
        rc,
    );
    // UNSUBSCRIBE "$share/g".
    assert_error(
        &[V5],
        "A2 0D 00 01 00 00 08 24 73 68 61 72 65 2F 67",
        want,
        rc,
    );
}

/// [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error.
#[test]
fn mqtt_3_8_3_4_no_local_on_shared_subscription() {
    // "$share/g/a" with options 0000 0100 (No Local).
    let frame = "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04";
    assert_error(&[V5], frame, E::SharedSubscriptionNoLocal, PROTOCOL);
    // The same subscription without No Local is fine.
    decode_ok(V5, "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 01");
}

// ---------------------------------------------------------------------------------------------
// Packet identifiers, SUBSCRIBE / UNSUBSCRIBE payloads
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.2.1-3] packet identifiers are non-zero, in every packet that has one.
#[test]
fn mqtt_2_2_1_3_packet_id_zero() {
    let frames_v3 = [
        "32 07 00 03 61 2F 62 00 00", // PUBLISH QoS 1
        "34 07 00 03 61 2F 62 00 00", // PUBLISH QoS 2
        "40 02 00 00",                // PUBACK
        "50 02 00 00",                // PUBREC
        "62 02 00 00",                // PUBREL
        "70 02 00 00",                // PUBCOMP
        "82 06 00 00 00 01 61 00",    // SUBSCRIBE
        "90 03 00 00 00",             // SUBACK
        "A2 05 00 00 00 01 61",       // UNSUBSCRIBE
        "B0 02 00 00",                // UNSUBACK
    ];
    for frame in frames_v3 {
        assert_error(&[V3, V4], frame, E::ZeroPacketId, PROTOCOL);
    }
    let frames_v5 = [
        "32 08 00 03 61 2F 62 00 00 00", // PUBLISH QoS 1
        "40 03 00 00 10",                // PUBACK
        "50 02 00 00",                   // PUBREC
        "62 02 00 00",                   // PUBREL
        "70 02 00 00",                   // PUBCOMP
        "82 07 00 00 00 00 01 61 00",    // SUBSCRIBE
        "90 04 00 00 00 00",             // SUBACK
        "A2 06 00 00 00 00 01 61",       // UNSUBSCRIBE
        "B0 04 00 00 00 00",             // UNSUBACK
    ];
    for frame in frames_v5 {
        assert_error(&[V5], frame, E::ZeroPacketId, PROTOCOL);
    }
}

/// [MQTT-3.8.3-2] a SUBSCRIBE has at least one topic filter.
#[test]
fn mqtt_3_8_3_2_subscribe_without_filters() {
    assert_error(
        &[V3, V4],
        "82 02 00 01",
        E::SubscribeWithoutFilters,
        PROTOCOL,
    );
    assert_error(
        &[V5],
        "82 03 00 01 00",
        E::SubscribeWithoutFilters,
        PROTOCOL,
    );
    // Properties are not filters.
    assert_error(
        &[V5],
        "82 05 00 01 02 0B 01",
        E::SubscribeWithoutFilters,
        PROTOCOL,
    );
}

/// [MQTT-3.10.3-2] an UNSUBSCRIBE has at least one topic filter.
#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters() {
    assert_error(
        &[V3, V4],
        "A2 02 00 01",
        E::UnsubscribeWithoutFilters,
        PROTOCOL,
    );
    assert_error(
        &[V5],
        "A2 03 00 01 00",
        E::UnsubscribeWithoutFilters,
        PROTOCOL,
    );
}

/// [MQTT-3.8.3-5] reserved bits of the options byte must be 0: bits 7-2 in 3.1 / 3.1.1
/// ([MQTT-3-8.3-4] there), bits 7-6 in MQTT 5. QoS 3 is Malformed too.
#[test]
fn mqtt_3_8_3_5_subscription_options_reserved_bits() {
    let want = E::SubscriptionOptionsReservedBits;
    for opts in ["04", "08", "10", "20", "40", "80", "FC", "05"] {
        // filter "a" with options `opts`
        let frame = format!("82 06 00 01 00 01 61 {opts}");
        assert_error(&[V3, V4], &frame, want, MALFORMED);
    }
    for opts in ["40", "80", "C0", "41"] {
        let frame = format!("82 07 00 01 00 00 01 61 {opts}");
        assert_error(&[V5], &frame, want, MALFORMED);
    }
    // Requested QoS 3.
    assert_error(
        &[V3, V4],
        "82 06 00 01 00 01 61 03",
        E::InvalidQoS,
        MALFORMED,
    );
    assert_error(
        &[V5],
        "82 07 00 01 00 00 01 61 03",
        E::InvalidQoS,
        MALFORMED,
    );
}

/// MQTT 5 §3.8.3.1: Retain Handling 3 is a Protocol Error.
#[test]
fn mqtt_3_8_3_1_retain_handling_3() {
    for opts in ["30", "31", "3E"] {
        let frame = format!("82 07 00 01 00 00 01 61 {opts}");
        assert_error(&[V5], &frame, E::InvalidRetainHandling, PROTOCOL);
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties
// ---------------------------------------------------------------------------------------------

/// §2.2.2.2: an identifier MQTT 5 does not define makes the packet Malformed.
#[test]
fn mqtt_2_2_2_2_unknown_property() {
    // PUBLISH "a", property length 2, property id X, one byte.
    for (id, want) in [
        ("00", 0u32),
        ("04", 4),
        ("0A", 0x0A),
        ("2B", 0x2B),
        ("7F", 0x7F),
    ] {
        let frame = format!("30 06 00 01 61 02 {id} 00");
        assert_error(&[V5], &frame, E::UnknownProperty(want), MALFORMED);
    }
    // A two-byte identifier (80 01 = 128).
    assert_error(
        &[V5],
        "30 06 00 01 61 02 80 01",
        E::UnknownProperty(128),
        MALFORMED,
    );
    // In a CONNACK (property length 2, id 0x14).
    assert_error(
        &[V5],
        "20 05 00 00 02 14 00",
        E::UnknownProperty(0x14),
        MALFORMED,
    );
}

/// §2.2.2.2: a property that is valid in MQTT 5 but not for this packet type is Malformed.
#[test]
fn mqtt_2_2_2_2_property_not_allowed_in_packet() {
    let cases = [
        // CONNECT with Topic Alias 1.
        (
            "10 11 00 04 4D 51 54 54 05 02 00 3C 03 23 00 01 00 01 61",
            0x23,
        ),
        // CONNECT with Will Delay Interval 5 in the CONNECT block (it belongs to the will).
        (
            "10 13 00 04 4D 51 54 54 05 02 00 3C 05 18 00 00 00 05 00 01 61",
            0x18,
        ),
        // Will properties with Session Expiry Interval 10.
        (
            "10 19 00 04 4D 51 54 54 05 06 00 3C 00 00 01 61 05 11 00 00 00 0A 00 01 74 00 00",
            0x11,
        ),
        // PUBLISH with Reason String "x".
        ("30 08 00 01 61 04 1F 00 01 78", 0x1F),
        // PUBACK with Subscription Identifier 1.
        ("40 06 00 01 00 02 0B 01", 0x0B),
        // SUBSCRIBE with Reason String "x".
        ("82 0B 00 01 04 1F 00 01 78 00 01 61 00", 0x1F),
        // UNSUBSCRIBE with Subscription Identifier 1.
        ("A2 08 00 01 02 0B 01 00 01 61", 0x0B),
        // SUBACK with Server Reference "h".
        ("90 08 00 01 04 1C 00 01 68 00", 0x1C),
        // DISCONNECT with Topic Alias Maximum 10.
        ("E0 05 00 03 22 00 0A", 0x22),
        // AUTH with Server Reference "h".
        ("F0 06 18 04 1C 00 01 68", 0x1C),
        // CONNACK with Request Problem Information 1.
        ("20 05 00 00 02 17 01", 0x17),
    ];
    for (frame, id) in cases {
        assert_error(&[V5], frame, E::PropertyNotAllowed(id), MALFORMED);
    }
}

/// MQTT 5 §3.1.2.11 and siblings: "It is a Protocol Error to include the <property> more than
/// once" for every property but User Property (and Subscription Identifier in PUBLISH).
#[test]
fn mqtt_3_1_2_11_duplicate_property() {
    let cases = [
        // CONNECT with Session Expiry Interval 10, twice.
        (
            "10 18 00 04 4D 51 54 54 05 02 00 3C 0A 11 00 00 00 0A 11 00 00 00 0A 00 01 61",
            0x11,
        ),
        // CONNACK with Receive Maximum 10, twice.
        ("20 09 00 00 06 21 00 0A 21 00 0A", 0x21),
        // PUBLISH with Topic Alias 1 and Topic Alias 2.
        ("30 0A 00 01 61 06 23 00 01 23 00 02", 0x23),
        // PUBLISH with Payload Format Indicator twice.
        ("30 08 00 01 61 04 01 00 01 01", 0x01),
        // SUBSCRIBE with two Subscription Identifiers (only PUBLISH may repeat it).
        ("82 0B 00 01 04 0B 01 0B 02 00 01 61 00", 0x0B),
        // PUBACK with Reason String "a" and "b".
        ("40 0C 00 01 80 08 1F 00 01 61 1F 00 01 62", 0x1F),
        // AUTH with Authentication Method "M" twice.
        ("F0 0A 18 08 15 00 01 4D 15 00 01 4D", 0x15),
    ];
    for (frame, id) in cases {
        assert_error(&[V5], frame, E::DuplicateProperty(id), PROTOCOL);
    }
}

/// User Property may appear any number of times, in any packet, order kept; Subscription
/// Identifier may repeat in PUBLISH (one per matching subscription, §3.3.2.3.8).
#[test]
fn mqtt_3_3_2_3_repeated_user_property_and_subscription_identifier_are_accepted() {
    let frame = concat!(
        "30 16",                // PUBLISH, remaining length 22
        "00 01 61",             // topic "a"
        "12",                   // property length 18
        "26 00 01 6B 00 01 31", //   User Property ("k", "1")
        "26 00 01 6B 00 01 32", //   User Property ("k", "2")
        "0B 01",                //   Subscription Identifier 1
        "0B 02",                //   Subscription Identifier 2
    );
    let Packet::Publish(p) = decode_ok(V5, frame) else {
        panic!("not a PUBLISH");
    };
    let k = MqttString::from_static("k").unwrap();
    assert_eq!(
        p.properties.message.user_properties,
        vec![
            (k.clone(), MqttString::from_static("1").unwrap()),
            (k, MqttString::from_static("2").unwrap()),
        ]
    );
    assert_eq!(
        p.properties.subscription_identifiers,
        vec![NonZeroU32::MIN, NonZeroU32::new(2).unwrap()]
    );
    // Repeated User Property in CONNECT, SUBSCRIBE and DISCONNECT too.
    decode_ok(
        V5,
        "10 1C 00 04 4D 51 54 54 05 02 00 3C 0E 26 00 01 6B 00 01 31 26 00 01 6B 00 01 31 00 01 61",
    );
    decode_ok(
        V5,
        "82 15 00 01 0E 26 00 01 6B 00 01 31 26 00 01 6B 00 01 31 00 01 61 00",
    );
    decode_ok(V5, "E0 10 00 0E 26 00 01 6B 00 01 31 26 00 01 6B 00 01 31");
}

/// MQTT 5 §3.1.2.11.3 / §3.2.2.3.3: Receive Maximum 0 is a Protocol Error.
#[test]
fn mqtt_3_1_2_11_3_receive_maximum_zero() {
    let want = E::InvalidPropertyValue(0x21);
    assert_error(
        &[V5],
        "10 11 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00 00 01 61",
        want,
        PROTOCOL,
    );
    assert_error(&[V5], "20 06 00 00 03 21 00 00", want, PROTOCOL);
}

/// MQTT 5 §3.1.2.11.4 / §3.2.2.3.6: Maximum Packet Size 0 is a Protocol Error.
#[test]
fn mqtt_3_1_2_11_4_maximum_packet_size_zero() {
    let want = E::InvalidPropertyValue(0x27);
    assert_error(
        &[V5],
        "10 13 00 04 4D 51 54 54 05 02 00 3C 05 27 00 00 00 00 00 01 61",
        want,
        PROTOCOL,
    );
    assert_error(&[V5], "20 08 00 00 05 27 00 00 00 00", want, PROTOCOL);
}

/// Byte properties that are booleans take only 0 or 1: Payload Format Indicator (§3.3.2.3.2),
/// Request Problem / Response Information (§3.1.2.11.6-7), the CONNACK "available" flags.
#[test]
fn mqtt_3_3_2_3_2_boolean_property_value_2() {
    let cases = [
        ("30 06 00 01 61 02 01 02", 0x01), // PUBLISH Payload Format Indicator 2
        (
            "10 10 00 04 4D 51 54 54 05 02 00 3C 02 17 02 00 01 61",
            0x17,
        ), // CONNECT Request Problem Information 2
        (
            "10 10 00 04 4D 51 54 54 05 02 00 3C 02 19 02 00 01 61",
            0x19,
        ), // CONNECT Request Response Information 2
        ("20 05 00 00 02 25 02", 0x25),    // CONNACK Retain Available 2
        ("20 05 00 00 02 28 FF", 0x28),    // CONNACK Wildcard Subscription Available FF
        ("20 05 00 00 02 29 02", 0x29),    // CONNACK Subscription Identifiers Available 2
        ("20 05 00 00 02 2A 02", 0x2A),    // CONNACK Shared Subscription Available 2
    ];
    for (frame, id) in cases {
        assert_error(&[V5], frame, E::InvalidPropertyValue(id), PROTOCOL);
    }
}

/// MQTT 5 §3.8.2.1.2: a Subscription Identifier of 0 is a Protocol Error (and in PUBLISH).
#[test]
fn mqtt_3_8_2_1_2_subscription_identifier_zero() {
    let want = E::InvalidPropertyValue(0x0B);
    assert_error(&[V5], "82 09 00 01 02 0B 00 00 01 61 00", want, PROTOCOL);
    assert_error(&[V5], "30 06 00 01 61 02 0B 00", want, PROTOCOL);
}

/// [MQTT-3.3.2-8] a Topic Alias of 0 is not permitted: 0x94 Topic Alias Invalid.
#[test]
fn mqtt_3_3_2_8_topic_alias_zero() {
    assert_error(
        &[V5],
        "30 07 00 01 61 03 23 00 00",
        E::ZeroTopicAlias,
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
}

/// MQTT 5 §3.2.2.3.4: Maximum QoS other than 0 or 1 is a Protocol Error.
#[test]
fn mqtt_3_2_2_3_4_maximum_qos_2() {
    assert_error(
        &[V5],
        "20 05 00 00 02 24 02",
        E::InvalidPropertyValue(0x24),
        PROTOCOL,
    );
}

/// MQTT 5 §3.1.2.11.10 / §3.2.2.3.18 / §3.15.2.2.3: Authentication Data without an
/// Authentication Method is a Protocol Error — whatever the order in the block.
#[test]
fn mqtt_3_1_2_11_10_auth_data_without_method() {
    let want = E::AuthDataWithoutMethod;
    assert_error(
        &[V5],
        "10 12 00 04 4D 51 54 54 05 02 00 3C 04 16 00 01 AA 00 01 61",
        want,
        PROTOCOL,
    );
    assert_error(&[V5], "20 07 00 00 04 16 00 01 AA", want, PROTOCOL);
    assert_error(&[V5], "F0 06 18 04 16 00 01 AA", want, PROTOCOL);
    // Data before the method is fine.
    decode_ok(
        V5,
        "10 16 00 04 4D 51 54 54 05 02 00 3C 08 16 00 01 AA 15 00 01 4D 00 01 61",
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.1.2-1] the protocol name must be the one of its level: "MQIsdp" for 3, "MQTT" for 4
/// and 5. The broker may answer 0x84 Unsupported Protocol Version.
#[test]
fn mqtt_3_1_2_1_protocol_name_wrong() {
    let rc = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    let want = E::InvalidProtocolName;
    // "MQTT" with level 3.
    assert_error(
        &ALL,
        "10 0D 00 04 4D 51 54 54 03 02 00 3C 00 01 61",
        want,
        rc,
    );
    // "MQIsdp" with level 4.
    assert_error(
        &ALL,
        "10 0F 00 06 4D 51 49 73 64 70 04 02 00 3C 00 01 61",
        want,
        rc,
    );
    // "MQTX" with level 4; "mqtt" (lower case) with level 4.
    assert_error(
        &ALL,
        "10 0D 00 04 4D 51 54 58 04 02 00 3C 00 01 61",
        want,
        rc,
    );
    assert_error(
        &ALL,
        "10 0D 00 04 6D 71 74 74 04 02 00 3C 00 01 61",
        want,
        rc,
    );
    // "MQTT" with level 5 but a zero-length name.
    assert_error(&ALL, "10 0A 00 00 05 02 00 3C 00 00 01 61", want, rc);
}

/// [MQTT-3.1.2-2] an unsupported protocol level: 0x84 Unsupported Protocol Version.
#[test]
fn mqtt_3_1_2_2_protocol_level_6() {
    let rc = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    for level in [6u8, 0, 2, 0x83] {
        let frame = format!("10 0D 00 04 4D 51 54 54 {level:02X} 02 00 3C 00 01 61");
        assert_error(&ALL, &frame, E::UnsupportedProtocolVersion(level), rc);
    }
}

/// [MQTT-3.1.2-3] the reserved CONNECT flag (bit 0) must be 0: Malformed.
#[test]
fn mqtt_3_1_2_3_reserved_connect_flag() {
    assert_error(
        &ALL,
        "10 0D 00 04 4D 51 54 54 04 03 00 3C 00 01 61",
        E::ConnectReservedFlag,
        MALFORMED,
    );
    assert_error(
        &ALL,
        "10 0E 00 04 4D 51 54 54 05 01 00 3C 00 00 01 61",
        E::ConnectReservedFlag,
        MALFORMED,
    );
}

/// [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]: without the Will flag, Will QoS and Will
/// Retain must be 0.
#[test]
fn mqtt_3_1_2_11_will_qos_or_retain_without_will_flag() {
    // flags: 0A = Will QoS 1 | Clean; 12 = Will QoS 2 | Clean; 22 = Will Retain | Clean.
    for flags in ["0A", "12", "22", "2A"] {
        let frame = format!("10 0D 00 04 4D 51 54 54 04 {flags} 00 3C 00 01 61");
        assert_error(&ALL, &frame, E::WillFlagsWithoutWill, PROTOCOL);
    }
}

/// [MQTT-3.1.2-12] (§3.1.2.6): Will QoS 3 is Malformed.
#[test]
fn mqtt_3_1_2_12_will_qos_3() {
    // flags 1E = Will QoS 3 | Will | Clean; will topic "t", payload "".
    assert_error(
        &ALL,
        "10 12 00 04 4D 51 54 54 04 1E 00 3C 00 01 61 00 01 74 00 00",
        E::InvalidQoS,
        MALFORMED,
    );
}

/// [MQTT-3.1.2-22] (3.1.1): a password needs a user name. MQTT 5 lifts the rule (§3.1.2.9).
#[test]
fn mqtt_3_1_2_22_password_without_username() {
    // flags 42 = Password | Clean; client id "a", password "pw".
    assert_error(
        &ALL,
        "10 11 00 04 4D 51 54 54 04 42 00 3C 00 01 61 00 02 70 77",
        E::PasswordWithoutUsername,
        PROTOCOL,
    );
    assert_error(
        &ALL,
        "10 13 00 06 4D 51 49 73 64 70 03 42 00 3C 00 01 61 00 02 70 77",
        E::PasswordWithoutUsername,
        PROTOCOL,
    );
    // Accepted in MQTT 5.
    let Packet::Connect(c) = decode_ok(
        V5,
        "10 12 00 04 4D 51 54 54 05 42 00 3C 00 00 01 61 00 02 70 77",
    ) else {
        panic!("not a CONNECT");
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password, Some(Bytes::from_static(b"pw")));
}

// ---------------------------------------------------------------------------------------------
// Reason codes, CONNACK flags
// ---------------------------------------------------------------------------------------------

/// Each packet may only carry its own reason codes: CONNACK [MQTT-3.2.2-8], PUBACK
/// [MQTT-3.4.2-1], PUBREC [MQTT-3.5.2-1], PUBREL [MQTT-3.6.2-1], PUBCOMP [MQTT-3.7.2-1], SUBACK
/// [MQTT-3.9.3-2], UNSUBACK [MQTT-3.11.3-2], DISCONNECT [MQTT-3.14.2-1], AUTH [MQTT-3.15.2-1].
#[test]
fn mqtt_3_4_2_1_invalid_reason_codes_per_packet() {
    let v5_cases = [
        ("20 03 00 01 00", 2, 0x01),     // CONNACK 0x01 (a SUBACK code)
        ("20 03 00 8B 00", 2, 0x8B),     // CONNACK 0x8B Server Shutting Down (DISCONNECT only)
        ("40 03 00 01 92", 4, 0x92),     // PUBACK 0x92 (PUBREL / PUBCOMP only)
        ("40 03 00 01 04", 4, 0x04),     // PUBACK 0x04
        ("50 03 00 01 92", 5, 0x92),     // PUBREC 0x92
        ("62 03 00 01 10", 6, 0x10),     // PUBREL 0x10 (PUBACK / PUBREC only)
        ("70 03 00 01 80", 7, 0x80),     // PUBCOMP 0x80
        ("90 04 00 01 00 11", 9, 0x11),  // SUBACK 0x11 (UNSUBACK only)
        ("90 04 00 01 00 03", 9, 0x03),  // SUBACK 0x03
        ("B0 04 00 01 00 01", 11, 0x01), // UNSUBACK 0x01 (SUBACK only)
        ("E0 01 01", 14, 0x01),          // DISCONNECT 0x01
        ("E0 01 8C", 14, 0x8C),          // DISCONNECT 0x8C Bad Authentication Method
        ("F0 01 01", 15, 0x01),          // AUTH 0x01
        ("F0 01 80", 15, 0x80),          // AUTH 0x80
    ];
    for (frame, packet_type, code) in v5_cases {
        let want = E::InvalidReasonCode { packet_type, code };
        assert_error(&[V5], frame, want, PROTOCOL);
    }
    // 3.1.1: CONNACK return codes 0..5 only; SUBACK 0, 1, 2, 0x80 only.
    let v3_cases = [
        ("20 02 00 06", 2, 0x06),
        ("20 02 00 80", 2, 0x80),
        ("90 03 00 01 03", 9, 0x03),
        ("90 03 00 01 87", 9, 0x87),
    ];
    for (frame, packet_type, code) in v3_cases {
        let want = E::InvalidReasonCode { packet_type, code };
        assert_error(&[V3, V4], frame, want, PROTOCOL);
    }
}

/// [MQTT-3.2.2-1] CONNACK acknowledge flags bits 7-1 are reserved (3.1.1 and 5). MQTT 3.1 has no
/// flags: its first byte is unused and anything is accepted.
#[test]
fn mqtt_3_2_2_1_connack_reserved_flags() {
    for flags in ["02", "80", "FE", "03"] {
        assert_error(
            &[V4],
            &format!("20 02 {flags} 00"),
            E::ConnAckReservedFlags,
            MALFORMED,
        );
        assert_error(
            &[V5],
            &format!("20 03 {flags} 00 00"),
            E::ConnAckReservedFlags,
            MALFORMED,
        );
    }
    let Packet::ConnAck(c) = decode_ok(V3, "20 02 FF 00") else {
        panic!("not a CONNACK");
    };
    assert!(!c.session_present);
}

/// [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1): a refused connection has Session Present 0.
#[test]
fn mqtt_3_2_2_6_session_present_with_error_code() {
    assert_error(&[V4], "20 02 01 05", E::SessionPresentOnError, PROTOCOL);
    assert_error(&[V4], "20 02 01 01", E::SessionPresentOnError, PROTOCOL);
    assert_error(&[V5], "20 03 01 87 00", E::SessionPresentOnError, PROTOCOL);
    assert_error(&[V5], "20 03 01 80 00", E::SessionPresentOnError, PROTOCOL);
}

// ---------------------------------------------------------------------------------------------
// connect_protocol_version
// ---------------------------------------------------------------------------------------------

/// The broker answers a refused first packet in the client's version: `connect_protocol_version`
/// reads it from the CONNECT header even when the rest of the CONNECT is refused or missing.
#[test]
fn connect_protocol_version_reads_the_level_of_any_readable_connect() {
    let cases: &[(&str, Option<ProtocolVersion>)] = &[
        (
            "10 0F 00 06 4D 51 49 73 64 70 03 02 00 3C 00 01 61",
            Some(V3),
        ),
        ("10 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 61", Some(V4)),
        ("10 0E 00 04 4D 51 54 54 05 02 00 3C 00 00 01 61", Some(V5)),
        // Refused by decode (reserved flag), version still known.
        ("10 0D 00 04 4D 51 54 54 04 03 00 3C 00 01 61", Some(V4)),
        ("10 0E 00 04 4D 51 54 54 05 01 00 3C 00 00 01 61", Some(V5)),
        // Only the header, name and level have arrived.
        ("10 0E 00 04 4D 51 54 54 05", Some(V5)),
        // Not enough for the level yet.
        ("10 0E 00 04 4D 51 54 54", None),
        ("10 0E 00 04 4D", None),
        ("10", None),
        ("", None),
        // Level 6, or a name that does not match its level.
        ("10 0D 00 04 4D 51 54 54 06 02 00 3C 00 01 61", None),
        ("10 0D 00 04 4D 51 54 54 03 02 00 3C 00 01 61", None),
        // Not a CONNECT.
        ("30 07 00 03 61 2F 62 68 69", None),
        ("20 02 00 00", None),
        // A broken fixed header.
        ("10 80 80 80 80 01", None),
    ];
    for (frame, want) in cases {
        assert_eq!(
            connect_protocol_version(&hex(frame)),
            *want,
            "connect_protocol_version({frame})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every variant is covered
// ---------------------------------------------------------------------------------------------

/// One frame per `DecodeError` variant. The `match` in `variant_index` has no wildcard arm, so
/// adding a variant does not compile until it gets a frame here (and, by convention, a test
/// above named after its spec statement). Longer than our functions usually are on purpose: the
/// table of variants and the table of frames must stay side by side to be checked by eye.
#[test]
fn every_decode_error_variant_has_a_frame() {
    const COUNT: usize = 37;
    fn variant_index(e: &DecodeError) -> usize {
        match e {
            E::PacketTooLarge { .. } => 0,
            E::VarIntTooLong => 1,
            E::VarIntNotMinimal => 2,
            E::ReservedPacketType(_) => 3,
            E::InvalidHeaderFlags { .. } => 4,
            E::InvalidQoS => 5,
            E::DupWithQoS0 => 6,
            E::Truncated => 7,
            E::TrailingBytes => 8,
            E::InvalidUtf8 => 9,
            E::NullCharacter => 10,
            E::WildcardInTopicName => 11,
            E::EmptyTopicName => 12,
            E::EmptyTopicFilter => 13,
            E::MultiLevelWildcardMisplaced => 14,
            E::SingleLevelWildcardMisplaced => 15,
            E::InvalidSharedSubscription => 16,
            E::SharedSubscriptionNoLocal => 17,
            E::ZeroPacketId => 18,
            E::SubscribeWithoutFilters => 19,
            E::UnsubscribeWithoutFilters => 20,
            E::SubscriptionOptionsReservedBits => 21,
            E::InvalidRetainHandling => 22,
            E::UnknownProperty(_) => 23,
            E::PropertyNotAllowed(_) => 24,
            E::DuplicateProperty(_) => 25,
            E::InvalidPropertyValue(_) => 26,
            E::ZeroTopicAlias => 27,
            E::AuthDataWithoutMethod => 28,
            E::InvalidProtocolName => 29,
            E::UnsupportedProtocolVersion(_) => 30,
            E::ConnectReservedFlag => 31,
            E::WillFlagsWithoutWill => 32,
            E::PasswordWithoutUsername => 33,
            E::InvalidReasonCode { .. } => 34,
            E::ConnAckReservedFlags => 35,
            E::SessionPresentOnError => 36,
        }
    }
    // (version, max packet size, frame)
    let frames: &[(ProtocolVersion, u32, &str)] = &[
        (V4, 4, "30 07 00 03 61 2F 62 68 69"),
        (V4, 1024, "30 80 80 80 80 01"),
        (V4, 1024, "C0 80 00"),
        (V4, 1024, "00 00"),
        (V4, 1024, "C1 00"),
        (V4, 1024, "36 05 00 03 61 2F 62"),
        (V4, 1024, "38 05 00 03 61 2F 62"),
        (V4, 1024, "30 03 00 05 61"),
        (V4, 1024, "C0 01 00"),
        (V4, 1024, "30 05 00 03 ED A0 80"),
        (V4, 1024, "30 05 00 03 61 00 62"),
        (V4, 1024, "30 05 00 03 61 2F 2B"),
        (V4, 1024, "30 02 00 00"),
        (V4, 1024, "82 05 00 01 00 00 00"),
        (V4, 1024, "82 07 00 01 00 02 61 23 00"),
        (V4, 1024, "82 07 00 01 00 02 61 2B 00"),
        (V5, 1024, "82 0E 00 01 00 00 08 24 73 68 61 72 65 2F 67 00"),
        (
            V5,
            1024,
            "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04",
        ),
        (V4, 1024, "40 02 00 00"),
        (V4, 1024, "82 02 00 01"),
        (V4, 1024, "A2 02 00 01"),
        (V4, 1024, "82 06 00 01 00 01 61 04"),
        (V5, 1024, "82 07 00 01 00 00 01 61 30"),
        (V5, 1024, "30 06 00 01 61 02 04 00"),
        (V5, 1024, "30 08 00 01 61 04 1F 00 01 78"),
        (V5, 1024, "30 0A 00 01 61 06 23 00 01 23 00 02"),
        (V5, 1024, "20 06 00 00 03 21 00 00"),
        (V5, 1024, "30 07 00 01 61 03 23 00 00"),
        (V5, 1024, "F0 06 18 04 16 00 01 AA"),
        (V4, 1024, "10 0D 00 04 4D 51 54 58 04 02 00 3C 00 01 61"),
        (V4, 1024, "10 0D 00 04 4D 51 54 54 06 02 00 3C 00 01 61"),
        (V4, 1024, "10 0D 00 04 4D 51 54 54 04 03 00 3C 00 01 61"),
        (V4, 1024, "10 0D 00 04 4D 51 54 54 04 0A 00 3C 00 01 61"),
        (
            V4,
            1024,
            "10 11 00 04 4D 51 54 54 04 42 00 3C 00 01 61 00 02 70 77",
        ),
        (V5, 1024, "E0 01 01"),
        (V4, 1024, "20 02 02 00"),
        (V4, 1024, "20 02 01 05"),
    ];
    let mut seen = [false; COUNT];
    for (i, &(v, max, frame)) in frames.iter().enumerate() {
        let mut buf = hex(frame);
        let e = match decode(&mut buf, v, max) {
            Err(e) => e,
            other => panic!("frame {i} ({frame}): {other:?}"),
        };
        let idx = variant_index(&e);
        assert_eq!(idx, i, "frame {i} ({frame}) produced {e:?}");
        seen[idx] = true;
        // Every error names a spec statement and maps to a failure reason code.
        assert!(e.spec_id().starts_with("MQTT-"), "{e:?}");
        assert!(e.reason_code().is_error(), "{e:?}");
        assert!(e.to_string().starts_with('['), "{e}");
    }
    let missing: Vec<usize> = (0..COUNT).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "variants without a frame: {missing:?}");
}

/// The reason code of each error family, in one table (the MQTT 5 answer to each violation).
#[test]
fn decode_error_reason_codes() {
    let cases = [
        (E::PacketTooLarge { size: 2, max: 1 }, 0x95),
        (E::VarIntTooLong, 0x81),
        (E::VarIntNotMinimal, 0x81),
        (E::ReservedPacketType(0), 0x81),
        (
            E::InvalidHeaderFlags {
                packet_type: 1,
                flags: 1,
            },
            0x81,
        ),
        (E::InvalidQoS, 0x81),
        (E::DupWithQoS0, 0x82),
        (E::Truncated, 0x81),
        (E::TrailingBytes, 0x81),
        (E::InvalidUtf8, 0x81),
        (E::NullCharacter, 0x81),
        (E::WildcardInTopicName, 0x90),
        (E::EmptyTopicName, 0x82),
        (E::EmptyTopicFilter, 0x8F),
        (E::MultiLevelWildcardMisplaced, 0x8F),
        (E::SingleLevelWildcardMisplaced, 0x8F),
        (E::InvalidSharedSubscription, 0x8F),
        (E::SharedSubscriptionNoLocal, 0x82),
        (E::ZeroPacketId, 0x82),
        (E::SubscribeWithoutFilters, 0x82),
        (E::UnsubscribeWithoutFilters, 0x82),
        (E::SubscriptionOptionsReservedBits, 0x81),
        (E::InvalidRetainHandling, 0x82),
        (E::UnknownProperty(4), 0x81),
        (E::PropertyNotAllowed(0x23), 0x81),
        (E::DuplicateProperty(0x11), 0x82),
        (E::InvalidPropertyValue(0x21), 0x82),
        (E::ZeroTopicAlias, 0x94),
        (E::AuthDataWithoutMethod, 0x82),
        (E::InvalidProtocolName, 0x84),
        (E::UnsupportedProtocolVersion(6), 0x84),
        (E::ConnectReservedFlag, 0x81),
        (E::WillFlagsWithoutWill, 0x82),
        (E::PasswordWithoutUsername, 0x82),
        (
            E::InvalidReasonCode {
                packet_type: 4,
                code: 0x92,
            },
            0x82,
        ),
        (E::ConnAckReservedFlags, 0x81),
        (E::SessionPresentOnError, 0x82),
    ];
    for (e, rc) in cases {
        assert_eq!(e.reason_code(), ReasonCode(rc), "{e:?}");
    }
}

/// Frames before a bad one in the same buffer are decoded normally; the bad one is then
/// reported as an error, never as `Ok(None)`.
#[test]
fn an_error_after_a_good_frame_leaves_the_good_frame_decoded() {
    let mut buf = hex("C0 00 36 05 00 03 61 2F 62");
    assert_eq!(decode(&mut buf, V4, 1024), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V4, 1024), Err(E::InvalidQoS));
}
