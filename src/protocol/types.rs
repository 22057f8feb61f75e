//! Typed protocol values: versions, QoS, packet identifiers, reason codes and validated UTF-8
//! strings. Every value here is checked once, when it is built (by the decoder or a constructor),
//! so the rest of the broker never re-validates.
//!
//! All types are plain values, `Send`, cheap to clone (strings share their `Bytes`), and may live
//! on any shard or cross shards through the mesh.

use std::fmt;
use std::num::NonZeroU16;

use bytes::Bytes;

use super::error::DecodeError;

/// The protocol level of a connection, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1 = 3,
    /// MQTT 3.1.1, level 4.
    V3_1_1 = 4,
    /// MQTT 5.0, level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// The level byte of CONNECT.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// The protocol level byte as a version, if coremq speaks it.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            3 => Some(Self::V3_1),
            4 => Some(Self::V3_1_1),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// The protocol name that CONNECT must carry for this level.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether packets carry properties and reason codes (MQTT 5).
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is not a QoS level [MQTT-3.3.1-4].
    pub fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        match bits {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

/// A packet identifier: never 0 [MQTT-2.2.1-3].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(pub NonZeroU16);

impl PacketId {
    /// `None` for 0.
    pub fn new(id: u16) -> Option<Self> {
        NonZeroU16::new(id).map(Self)
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }

    /// The identifier after this one, wrapping from 65535 to 1.
    pub fn next(self) -> Self {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(n) => Self(n),
            None => Self(NonZeroU16::MIN),
        }
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A UTF-8 string field, validated once [MQTT-1.5.4-1] [MQTT-1.5.4-2], holding a `Bytes` slice of
/// the frame it was decoded from (or of its own allocation when built locally).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MqttString(Bytes);

impl MqttString {
    /// Longest string the wire format can carry.
    pub const MAX_LEN: usize = u16::MAX as usize;

    /// Validates `bytes` as an MQTT UTF-8 string: well-formed UTF-8 (no surrogates, no overlong
    /// forms) and no U+0000.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(DecodeError::Truncated);
        }
        let s = std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.as_bytes().contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        Ok(Self(bytes))
    }

    /// Builds a string from a `&'static str`, validating it like a received one.
    pub fn from_static(s: &'static str) -> Result<Self, DecodeError> {
        Self::from_bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Builds a string by copying `s`, validating it like a received one.
    pub fn copy_from(s: &str) -> Result<Self, DecodeError> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validated the bytes as UTF-8 and the bytes are immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// A client identifier: the UTF-8 string a CONNECT names its session by [MQTT-3.1.3-2]. Empty
/// in a CONNECT that asks the server to assign one [MQTT-3.1.3-6]; the broker's messages carry
/// the empty id as their publisher.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientId(MqttString);

impl ClientId {
    /// A client id in its own allocation (one that lives as long as a session must not keep the
    /// CONNECT's read buffer alive).
    pub fn copy_from(s: &str) -> Result<Self, DecodeError> {
        MqttString::copy_from(s).map(Self)
    }

    pub fn from_static(s: &'static str) -> Result<Self, DecodeError> {
        MqttString::from_static(s).map(Self)
    }

    /// This id in its own allocation (see `copy_from`).
    pub fn detached(&self) -> Self {
        Self::copy_from(self.as_str()).unwrap_or_else(|_| self.clone())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<MqttString> for ClientId {
    fn from(s: MqttString) -> Self {
        Self(s)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A User Property: a name/value pair of UTF-8 strings. Order and duplicates are kept.
pub type UserProperty = (MqttString, MqttString);

/// What the server does with retained messages when a subscription is made (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE entry. In MQTT 3.1 / 3.1.1 only `qos` is on the wire; the
/// other fields keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with `qos` and every MQTT 5 option at its default.
    pub fn with_qos(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    pub(crate) fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if version.is_v5() {
            b |= (self.no_local as u8) << 2;
            b |= (self.retain_as_published as u8) << 3;
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }

    /// [MQTT-3.8.3-5] reserved bits must be 0; Retain Handling 3 is a Protocol Error.
    pub(crate) fn from_byte(b: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() {
            0b1100_0000
        } else {
            0b1111_1100
        };
        if b & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReservedBits);
        }
        let qos = QoS::from_bits(b & 0b11)?;
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(Self {
            qos,
            no_local: b & 0b100 != 0,
            retain_as_published: b & 0b1000 != 0,
            retain_handling,
        })
    }
}
