//! Decode and encode errors of the codec.
//!
//! Every way a frame can be refused is one `DecodeError` variant. Each variant knows the spec
//! statement it enforces (`spec_id`) and the MQTT 5 reason code the broker must answer with
//! (`reason_code`): 0x81 Malformed Packet when the bytes cannot be parsed as the spec describes,
//! 0x82 Protocol Error when they parse but carry something the protocol forbids, and the more
//! specific codes (0x84, 0x8F, 0x90, 0x94, 0x95) where the spec names one. An MQTT 3.1.1
//! connection has no reason codes: the broker just closes it, or answers a CONNECT with the
//! matching CONNACK return code.
//!
//! Lives on every shard; `Copy`, so it can be logged and passed around freely.

use std::fmt;

/// Why a frame was refused. Incomplete input is never an error: `decode` returns `Ok(None)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet (fixed header included) is larger than the caller's maximum packet size.
    PacketTooLarge { size: usize, max: u32 },
    /// A variable byte integer uses more than four bytes.
    VarIntTooLong,
    /// A variable byte integer is not encoded in the minimum number of bytes.
    VarIntNotMinimal,
    /// Packet type 0, or AUTH (15) before MQTT 5.
    ReservedPacketType(u8),
    /// Fixed-header flag bits that the spec reserves have the wrong value.
    InvalidHeaderFlags { packet_type: u8, flags: u8 },
    /// QoS bits are `11`.
    InvalidQoS,
    /// DUP is set on a QoS 0 PUBLISH.
    DupWithQoS0,
    /// A length field points past the end of the frame.
    Truncated,
    /// Bytes are left in the frame after its last field.
    TrailingBytes,
    /// A UTF-8 string field is not well-formed UTF-8 (overlong forms, surrogates, ...).
    InvalidUtf8,
    /// A UTF-8 string field contains U+0000.
    NullCharacter,
    /// A PUBLISH or will topic contains `+` or `#`.
    WildcardInTopicName,
    /// A topic name is empty and no topic alias stands in for it.
    EmptyTopicName,
    /// A topic filter is empty.
    EmptyTopicFilter,
    /// `#` is not the last character, or not alone in its level.
    MultiLevelWildcardMisplaced,
    /// `+` is not alone in its level.
    SingleLevelWildcardMisplaced,
    /// `$share/` with an empty or wildcard share name, or with no filter after it.
    InvalidSharedSubscription,
    /// A shared subscription asks for No Local.
    SharedSubscriptionNoLocal,
    /// A packet identifier of 0 where a non-zero one is required.
    ZeroPacketId,
    /// SUBSCRIBE carries no topic filter.
    SubscribeWithoutFilters,
    /// UNSUBSCRIBE carries no topic filter.
    UnsubscribeWithoutFilters,
    /// Reserved bits of the subscription options byte are set.
    SubscriptionOptionsReservedBits,
    /// Retain Handling is 3.
    InvalidRetainHandling,
    /// Property identifier that MQTT 5 does not define.
    UnknownProperty(u32),
    /// A property that this packet type may not carry.
    PropertyNotAllowed(u8),
    /// A non-repeatable property appears more than once.
    DuplicateProperty(u8),
    /// A property value outside its range (a boolean that is not 0 or 1, Receive Maximum 0, ...).
    InvalidPropertyValue(u8),
    /// Topic Alias 0.
    ZeroTopicAlias,
    /// Authentication Data without Authentication Method.
    AuthDataWithoutMethod,
    /// CONNECT protocol name is not `MQTT` (levels 4, 5) or `MQIsdp` (level 3).
    InvalidProtocolName,
    /// CONNECT protocol level is not 3, 4 or 5.
    UnsupportedProtocolVersion(u8),
    /// The reserved CONNECT flag (bit 0) is set.
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will flag.
    WillFlagsWithoutWill,
    /// Password flag without User Name flag (MQTT 3.1 / 3.1.1).
    PasswordWithoutUsername,
    /// A reason code that this packet type may not carry.
    InvalidReasonCode { packet_type: u8, code: u8 },
    /// Reserved bits of the CONNACK acknowledge flags are set.
    ConnAckReservedFlags,
    /// CONNACK with Session Present set and a non-zero reason code.
    SessionPresentOnError,
}

impl DecodeError {
    /// The normative statement of the spec this error enforces (MQTT 5.0 numbering where the
    /// rule exists there, else MQTT 3.1.1).
    pub fn spec_id(&self) -> &'static str {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => "MQTT-3.2.2-15",
            VarIntTooLong => "MQTT-1.5.5",
            VarIntNotMinimal => "MQTT-1.5.5-1",
            ReservedPacketType(_) => "MQTT-2.1.2",
            InvalidHeaderFlags { .. } => "MQTT-2.1.3-1",
            InvalidQoS => "MQTT-3.3.1-4",
            DupWithQoS0 => "MQTT-3.3.1-2",
            Truncated | TrailingBytes => "MQTT-4.13.1",
            InvalidUtf8 => "MQTT-1.5.4-1",
            NullCharacter => "MQTT-1.5.4-2",
            WildcardInTopicName => "MQTT-3.3.2-2",
            EmptyTopicName => "MQTT-4.7.3-1",
            EmptyTopicFilter => "MQTT-4.7.3-1",
            MultiLevelWildcardMisplaced => "MQTT-4.7.1-1",
            SingleLevelWildcardMisplaced => "MQTT-4.7.1-2",
            InvalidSharedSubscription => "MQTT-4.8.2-1",
            SharedSubscriptionNoLocal => "MQTT-3.8.3-4",
            ZeroPacketId => "MQTT-2.2.1-3",
            SubscribeWithoutFilters => "MQTT-3.8.3-2",
            UnsubscribeWithoutFilters => "MQTT-3.10.3-2",
            SubscriptionOptionsReservedBits => "MQTT-3.8.3-5",
            InvalidRetainHandling => "MQTT-3.8.3-5",
            UnknownProperty(_) | PropertyNotAllowed(_) => "MQTT-2.2.2.2",
            DuplicateProperty(_) | InvalidPropertyValue(_) => "MQTT-3.1.2.11",
            ZeroTopicAlias => "MQTT-3.3.2-8",
            AuthDataWithoutMethod => "MQTT-3.1.2.11.10",
            InvalidProtocolName => "MQTT-3.1.2-1",
            UnsupportedProtocolVersion(_) => "MQTT-3.1.2-2",
            ConnectReservedFlag => "MQTT-3.1.2-3",
            WillFlagsWithoutWill => "MQTT-3.1.2-11",
            PasswordWithoutUsername => "MQTT-3.1.2-22",
            InvalidReasonCode { .. } => "MQTT-3.4.2-1",
            ConnAckReservedFlags => "MQTT-3.2.2-1",
            SessionPresentOnError => "MQTT-3.2.2-6",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        write!(f, "[{}] ", self.spec_id())?;
        match self {
            PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            VarIntTooLong => f.write_str("variable byte integer longer than 4 bytes"),
            VarIntNotMinimal => f.write_str("variable byte integer not minimally encoded"),
            ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            InvalidHeaderFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid flags {flags:#06b} for packet type {packet_type}"
                )
            }
            InvalidQoS => f.write_str("QoS 3 is not a QoS level"),
            DupWithQoS0 => f.write_str("DUP set on a QoS 0 PUBLISH"),
            Truncated => f.write_str("a length overruns the packet"),
            TrailingBytes => f.write_str("bytes left after the last field of the packet"),
            InvalidUtf8 => f.write_str("string is not well-formed UTF-8"),
            NullCharacter => f.write_str("string contains U+0000"),
            WildcardInTopicName => f.write_str("topic name contains a wildcard"),
            EmptyTopicName => f.write_str("topic name is empty"),
            EmptyTopicFilter => f.write_str("topic filter is empty"),
            MultiLevelWildcardMisplaced => {
                f.write_str("'#' must be alone in the last level of a filter")
            }
            SingleLevelWildcardMisplaced => f.write_str("'+' must be alone in its level"),
            InvalidSharedSubscription => f.write_str("malformed $share/{group}/{filter}"),
            SharedSubscriptionNoLocal => f.write_str("No Local on a shared subscription"),
            ZeroPacketId => f.write_str("packet identifier 0"),
            SubscribeWithoutFilters => f.write_str("SUBSCRIBE without topic filters"),
            UnsubscribeWithoutFilters => f.write_str("UNSUBSCRIBE without topic filters"),
            SubscriptionOptionsReservedBits => f.write_str("reserved subscription option bits set"),
            InvalidRetainHandling => f.write_str("Retain Handling 3"),
            UnknownProperty(id) => write!(f, "unknown property {id:#04x}"),
            PropertyNotAllowed(id) => write!(f, "property {id:#04x} not allowed in this packet"),
            DuplicateProperty(id) => write!(f, "property {id:#04x} included more than once"),
            InvalidPropertyValue(id) => write!(f, "property {id:#04x} has a value out of range"),
            ZeroTopicAlias => f.write_str("Topic Alias 0"),
            AuthDataWithoutMethod => f.write_str("Authentication Data without a method"),
            InvalidProtocolName => f.write_str("protocol name is not MQTT / MQIsdp"),
            UnsupportedProtocolVersion(v) => write!(f, "unsupported protocol level {v}"),
            ConnectReservedFlag => f.write_str("reserved CONNECT flag set"),
            WillFlagsWithoutWill => f.write_str("Will QoS or Will Retain without Will flag"),
            PasswordWithoutUsername => f.write_str("password without user name"),
            InvalidReasonCode { packet_type, code } => {
                write!(
                    f,
                    "reason code {code:#04x} not allowed in packet type {packet_type}"
                )
            }
            ConnAckReservedFlags => f.write_str("reserved CONNACK flags set"),
            SessionPresentOnError => f.write_str("Session Present with a non-zero reason code"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded. Values built through the typed constructors can always be
/// encoded except for these whole-packet conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The remaining length would exceed 268,435,455 bytes.
    PacketTooLarge(usize),
    /// A QoS 1/2 PUBLISH without a packet identifier, or a QoS 0 one with one.
    PacketIdMismatch,
    /// The packet does not exist in this protocol version (AUTH before MQTT 5).
    NotInVersion,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PacketTooLarge(n) => write!(f, "remaining length {n} is too large"),
            EncodeError::PacketIdMismatch => {
                f.write_str("PUBLISH packet identifier does not match its QoS")
            }
            EncodeError::NotInVersion => f.write_str("packet does not exist in this version"),
        }
    }
}

impl std::error::Error for EncodeError {}
