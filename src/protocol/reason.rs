//! Reason codes: MQTT 5's one-byte answers (also 3.1.1's CONNACK return codes and SUBACK codes,
//! which the encoder maps to their 3.1.1 values), and the code each decode error is answered
//! with. (Here rather than in `error.rs`, so that errors, types and reason codes import one
//! another in one direction only: `error` ← `types` ← `reason`.)

use std::fmt;

use super::error::DecodeError;
use super::types::QoS;

/// An MQTT 5 reason code (also used for 3.1.1 CONNACK return codes and SUBACK codes, which the
/// encoder maps to their 3.1.1 values).
///
/// A newtype rather than an enum because the spec gives one value several names depending on the
/// packet (0x00 is Success, Normal disconnection and Granted QoS 0).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: Self = Self(0x00);
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    pub const GRANTED_QOS_0: Self = Self(0x00);
    pub const GRANTED_QOS_1: Self = Self(0x01);
    pub const GRANTED_QOS_2: Self = Self(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: Self = Self(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    pub const MALFORMED_PACKET: Self = Self(0x81);
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    pub const SERVER_BUSY: Self = Self(0x89);
    pub const BANNED: Self = Self(0x8A);
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    pub const SERVER_MOVED: Self = Self(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);

    /// Codes of 0x80 and above are failures.
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The granted-QoS code for a QoS.
    pub fn granted(qos: QoS) -> Self {
        Self(qos as u8)
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode({:#04x})", self.0)
    }
}

impl DecodeError {
    /// The MQTT 5 reason code to send in CONNACK or DISCONNECT for this error.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion(_) | InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            WildcardInTopicName => ReasonCode::TOPIC_NAME_INVALID,
            EmptyTopicFilter
            | MultiLevelWildcardMisplaced
            | SingleLevelWildcardMisplaced
            | InvalidSharedSubscription => ReasonCode::TOPIC_FILTER_INVALID,
            ZeroTopicAlias => ReasonCode::TOPIC_ALIAS_INVALID,
            EmptyTopicName
            | DupWithQoS0
            | SharedSubscriptionNoLocal
            | ZeroPacketId
            | SubscribeWithoutFilters
            | UnsubscribeWithoutFilters
            | InvalidRetainHandling
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | WillFlagsWithoutWill
            | PasswordWithoutUsername
            | InvalidReasonCode { .. }
            | SessionPresentOnError => ReasonCode::PROTOCOL_ERROR,
            VarIntTooLong
            | VarIntNotMinimal
            | ReservedPacketType(_)
            | InvalidHeaderFlags { .. }
            | InvalidQoS
            | Truncated
            | TrailingBytes
            | InvalidUtf8
            | NullCharacter
            | SubscriptionOptionsReservedBits
            | UnknownProperty(_)
            | PropertyNotAllowed(_)
            | ConnectReservedFlag
            | ConnAckReservedFlags => ReasonCode::MALFORMED_PACKET,
        }
    }
}
