//! MQTT 5 properties: one typed struct per packet family, decoded from and encoded to the
//! property block (variable-byte length, then identifier/value pairs).
//!
//! Decoding checks, for every property, in this order: the identifier is one MQTT 5 defines
//! (else Malformed, [MQTT-2.2.2.2]); this packet may carry it (else Malformed); it is not a
//! second copy of a non-repeatable property (else Protocol Error); its value is in range
//! (booleans 0/1, Receive Maximum and Maximum Packet Size non-zero, ...; else Protocol Error).
//! Repeatable: User Property everywhere, Subscription Identifier in PUBLISH only.
//!
//! Worked example, a PUBLISH block with Message Expiry 10 and one user property ("a","b"):
//! `0E 02 00 00 00 0A 26 00 01 61 00 01 62` (length 14, then id 0x02 + u32, id 0x26 + two strings).
//!
//! MQTT 3.1 / 3.1.1 packets have no property block; their structs stay at `Default`.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::error::DecodeError;
use super::topic::TopicName;
use super::types::{MqttString, QoS, UserProperty};
use super::wire::{measure, Out, Reader};

/// Property identifiers.
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The packet (or will) a property block belongs to; selects which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropKind {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropKind {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Which packets may carry property `id` (bit set of `PropKind`), 0 for unknown identifiers.
fn allowed_in(id: u8) -> u16 {
    use PropKind::*;
    let kinds: &[PropKind] = match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => &[Publish, Will],
        id::SUBSCRIPTION_IDENTIFIER => &[Publish, Subscribe],
        id::SESSION_EXPIRY_INTERVAL => &[Connect, ConnAck, Disconnect],
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => &[ConnAck],
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => &[Connect, ConnAck, Auth],
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => &[Connect],
        id::WILL_DELAY_INTERVAL => &[Will],
        id::SERVER_REFERENCE => &[ConnAck, Disconnect],
        id::REASON_STRING => &[
            ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth,
        ],
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            &[Connect, ConnAck]
        }
        id::TOPIC_ALIAS => &[Publish],
        id::USER_PROPERTY => &[
            Connect,
            Will,
            ConnAck,
            Publish,
            PubAck,
            PubRec,
            PubRel,
            PubComp,
            Subscribe,
            SubAck,
            Unsubscribe,
            UnsubAck,
            Disconnect,
            Auth,
        ],
        _ => &[],
    };
    kinds.iter().fold(0, |m, k| m | k.bit())
}

/// One decoded property, typed by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    PayloadFormatIndicator(bool),
    MessageExpiryInterval(u32),
    ContentType(MqttString),
    ResponseTopic(TopicName),
    CorrelationData(Bytes),
    SubscriptionIdentifier(NonZeroU32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(MqttString),
    ServerKeepAlive(u16),
    AuthenticationMethod(MqttString),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(MqttString),
    ServerReference(MqttString),
    ReasonString(MqttString),
    ReceiveMaximum(NonZeroU16),
    TopicAliasMaximum(u16),
    TopicAlias(NonZeroU16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(UserProperty),
    MaximumPacketSize(NonZeroU32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

fn read_bool(r: &mut Reader, id: u8) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

/// Reads the value of property `id` (already known to be a defined identifier).
fn read_value(r: &mut Reader, id: u8) -> Result<Property, DecodeError> {
    use Property as P;
    let bad = DecodeError::InvalidPropertyValue(id);
    Ok(match id {
        id::PAYLOAD_FORMAT_INDICATOR => P::PayloadFormatIndicator(read_bool(r, id)?),
        id::MESSAGE_EXPIRY_INTERVAL => P::MessageExpiryInterval(r.u32()?),
        id::CONTENT_TYPE => P::ContentType(r.string()?),
        // [MQTT-3.3.2-14] the Response Topic is a Topic Name: no wildcards.
        id::RESPONSE_TOPIC => P::ResponseTopic(r.topic_name()?),
        id::CORRELATION_DATA => P::CorrelationData(r.binary()?),
        // [MQTT-3.8.2.1.2] a Subscription Identifier of 0 is a Protocol Error.
        id::SUBSCRIPTION_IDENTIFIER => {
            P::SubscriptionIdentifier(NonZeroU32::new(r.var_int()?).ok_or(bad)?)
        }
        id::SESSION_EXPIRY_INTERVAL => P::SessionExpiryInterval(r.u32()?),
        id::ASSIGNED_CLIENT_IDENTIFIER => P::AssignedClientIdentifier(r.string()?),
        id::SERVER_KEEP_ALIVE => P::ServerKeepAlive(r.u16()?),
        id::AUTHENTICATION_METHOD => P::AuthenticationMethod(r.string()?),
        id::AUTHENTICATION_DATA => P::AuthenticationData(r.binary()?),
        id::REQUEST_PROBLEM_INFORMATION => P::RequestProblemInformation(read_bool(r, id)?),
        id::WILL_DELAY_INTERVAL => P::WillDelayInterval(r.u32()?),
        id::REQUEST_RESPONSE_INFORMATION => P::RequestResponseInformation(read_bool(r, id)?),
        id::RESPONSE_INFORMATION => P::ResponseInformation(r.string()?),
        id::SERVER_REFERENCE => P::ServerReference(r.string()?),
        id::REASON_STRING => P::ReasonString(r.string()?),
        // [MQTT-3.1.2.11.3] [MQTT-3.2.2.3.3] Receive Maximum 0 is a Protocol Error.
        id::RECEIVE_MAXIMUM => P::ReceiveMaximum(NonZeroU16::new(r.u16()?).ok_or(bad)?),
        id::TOPIC_ALIAS_MAXIMUM => P::TopicAliasMaximum(r.u16()?),
        // [MQTT-3.3.2-8] Topic Alias 0 is not permitted.
        id::TOPIC_ALIAS => {
            P::TopicAlias(NonZeroU16::new(r.u16()?).ok_or(DecodeError::ZeroTopicAlias)?)
        }
        id::MAXIMUM_QOS => P::MaximumQoS(match r.u8()? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => return Err(bad),
        }),
        id::RETAIN_AVAILABLE => P::RetainAvailable(read_bool(r, id)?),
        id::USER_PROPERTY => P::UserProperty((r.string()?, r.string()?)),
        // [MQTT-3.1.2.11.4] Maximum Packet Size 0 is a Protocol Error.
        id::MAXIMUM_PACKET_SIZE => P::MaximumPacketSize(NonZeroU32::new(r.u32()?).ok_or(bad)?),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => P::WildcardSubscriptionAvailable(read_bool(r, id)?),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            P::SubscriptionIdentifierAvailable(read_bool(r, id)?)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => P::SharedSubscriptionAvailable(read_bool(r, id)?),
        other => return Err(DecodeError::UnknownProperty(u32::from(other))),
    })
}

/// A packet's set of properties.
pub trait PropertyBlock: Default {
    /// Takes one property that `decode_block` already checked is allowed for `kind`.
    fn apply(&mut self, p: Property) -> Result<(), DecodeError>;
    /// Writes every present property (identifier and value), without the block length.
    fn write<O: Out>(&self, o: &mut O);
    /// Checks across properties, after the whole block is read.
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// Reads a property block (length and properties) for a packet of `kind`.
pub fn decode_block<P: PropertyBlock>(r: &mut Reader, kind: PropKind) -> Result<P, DecodeError> {
    let len = r.var_int()? as usize;
    let mut block = r.sub(len)?;
    let mut props = P::default();
    let mut seen: u64 = 0;
    while !block.is_empty() {
        let raw_id = block.var_int()?;
        let Ok(id) = u8::try_from(raw_id) else {
            return Err(DecodeError::UnknownProperty(raw_id));
        };
        let allowed = allowed_in(id);
        if allowed == 0 {
            return Err(DecodeError::UnknownProperty(raw_id));
        }
        if allowed & kind.bit() == 0 {
            return Err(DecodeError::PropertyNotAllowed(id));
        }
        let repeatable = id == id::USER_PROPERTY
            || (id == id::SUBSCRIPTION_IDENTIFIER && kind == PropKind::Publish);
        let bit = 1u64 << id;
        if seen & bit != 0 && !repeatable {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        props.apply(read_value(&mut block, id)?)?;
    }
    props.validate()?;
    Ok(props)
}

/// Writes a property block: its length, then the properties.
pub fn encode_block<P: PropertyBlock, O: Out>(p: &P, o: &mut O) {
    o.write_var_int(measure(|c| p.write(c)));
    p.write(o);
}

/// How a property is put on the wire: its identifier, then its value in this form. Absent
/// (`None`) and empty fields write nothing; a `Vec` writes one property per element.
trait Wire<F> {
    fn put<O: Out>(o: &mut O, id: u8, field: &F);
}

/// One byte (Maximum QoS).
struct Byte;
/// One byte, 0 or 1.
struct Flag;
/// Two bytes.
struct U16;
/// Four bytes.
struct U32;
/// A variable byte integer (Subscription Identifier).
struct VarInt;
/// A UTF-8 string.
struct Str;
/// Binary data.
struct Bin;
/// A UTF-8 string pair (User Property).
struct Pair;

/// A scalar property: its identifier, then its value as `write` puts it.
macro_rules! wire_scalar {
    ($($form:ty: $value:ty => $write:ident($v:ident) $conv:expr;)*) => {$(
        impl Wire<Option<$value>> for $form {
            fn put<O: Out>(o: &mut O, id: u8, f: &Option<$value>) {
                if let Some($v) = f {
                    o.write_u8(id);
                    o.$write($conv);
                }
            }
        }
    )*};
}

wire_scalar! {
    Byte: QoS => write_u8(v) *v as u8;
    Flag: bool => write_u8(v) u8::from(*v);
    U16: u16 => write_u16(v) *v;
    U32: u32 => write_u32(v) *v;
}

impl Wire<Option<NonZeroU16>> for U16 {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<NonZeroU16>) {
        <U16 as Wire<Option<u16>>>::put(o, id, &f.map(|v| v.get()));
    }
}

impl Wire<Option<NonZeroU32>> for U32 {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<NonZeroU32>) {
        <U32 as Wire<Option<u32>>>::put(o, id, &f.map(|v| v.get()));
    }
}

impl Wire<Option<NonZeroU32>> for VarInt {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<NonZeroU32>) {
        if let Some(v) = f {
            o.write_u8(id);
            o.write_var_int(v.get() as usize);
        }
    }
}

impl Wire<Vec<NonZeroU32>> for VarInt {
    fn put<O: Out>(o: &mut O, id: u8, f: &Vec<NonZeroU32>) {
        for v in f {
            <VarInt as Wire<Option<NonZeroU32>>>::put(o, id, &Some(*v));
        }
    }
}

impl Wire<Option<MqttString>> for Str {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<MqttString>) {
        if let Some(v) = f {
            o.write_u8(id);
            o.write_str(v);
        }
    }
}

impl Wire<Option<TopicName>> for Str {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<TopicName>) {
        if let Some(v) = f {
            o.write_u8(id);
            o.write_str(v.as_mqtt_str());
        }
    }
}

impl Wire<Option<Bytes>> for Bin {
    fn put<O: Out>(o: &mut O, id: u8, f: &Option<Bytes>) {
        if let Some(v) = f {
            o.write_u8(id);
            o.write_binary(v);
        }
    }
}

impl Wire<Vec<UserProperty>> for Pair {
    fn put<O: Out>(o: &mut O, id: u8, f: &Vec<UserProperty>) {
        for (k, v) in f {
            o.write_u8(id);
            o.write_str(k);
            o.write_str(v);
        }
    }
}

/// A struct field that holds one value (`Option`: a repeat would replace it, but `decode_block`
/// refuses repeats first) or many (`Vec`).
trait Slot<V> {
    fn set(&mut self, v: V);
}

impl<V> Slot<V> for Option<V> {
    fn set(&mut self, v: V) {
        *self = Some(v);
    }
}

impl<V> Slot<V> for Vec<V> {
    fn set(&mut self, v: V) {
        self.push(v);
    }
}

/// Gives a property struct `take` (store a decoded property it holds, or hand it back) and
/// `put` (write the present ones) from one list, in wire order, of
/// `field: Variant as WireForm = IDENTIFIER`: decoding and encoding come from the same table and
/// cannot disagree.
macro_rules! property_fields {
    ($ty:ty { $($field:ident: $variant:ident as $wire:ident = $id:ident),* $(,)? }) => {
        impl $ty {
            /// Stores `p` if it is one of this struct's properties; gives it back otherwise.
            fn take(&mut self, p: Property) -> Result<(), Property> {
                match p {
                    $(Property::$variant(v) => Slot::set(&mut self.$field, v),)*
                    other => return Err(other),
                }
                Ok(())
            }

            /// Writes the present properties, in the table's order.
            fn put<O: Out>(&self, o: &mut O) {
                $(<$wire as Wire<_>>::put(o, id::$id, &self.$field);)*
            }
        }
    };
}

/// `property_fields` plus the `PropertyBlock` of a packet's whole block; `checks authentication`
/// adds [MQTT-3.1.2.11.10]'s rule (Authentication Data needs a method) as its `validate`.
macro_rules! property_block {
    ($ty:ty { $($fields:tt)* }) => {
        property_fields!($ty { $($fields)* });
        impl PropertyBlock for $ty {
            fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
                self.take(p).map_err(|p| not_allowed(&p))
            }

            fn write<O: Out>(&self, o: &mut O) {
                self.put(o)
            }
        }
    };
    ($ty:ty { $($fields:tt)* } checks authentication) => {
        property_fields!($ty { $($fields)* });
        impl PropertyBlock for $ty {
            fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
                self.take(p).map_err(|p| not_allowed(&p))
            }

            fn write<O: Out>(&self, o: &mut O) {
                self.put(o)
            }

            fn validate(&self) -> Result<(), DecodeError> {
                check_auth(&self.authentication_method, &self.authentication_data)
            }
        }
    };
}

/// `apply` arm for a property the struct does not hold. `decode_block` never passes one (the
/// allowed-table rejects it first); this keeps `apply` total without panicking.
fn not_allowed(p: &Property) -> DecodeError {
    DecodeError::PropertyNotAllowed(property_id(p))
}

fn property_id(p: &Property) -> u8 {
    use Property as P;
    match p {
        P::PayloadFormatIndicator(_) => id::PAYLOAD_FORMAT_INDICATOR,
        P::MessageExpiryInterval(_) => id::MESSAGE_EXPIRY_INTERVAL,
        P::ContentType(_) => id::CONTENT_TYPE,
        P::ResponseTopic(_) => id::RESPONSE_TOPIC,
        P::CorrelationData(_) => id::CORRELATION_DATA,
        P::SubscriptionIdentifier(_) => id::SUBSCRIPTION_IDENTIFIER,
        P::SessionExpiryInterval(_) => id::SESSION_EXPIRY_INTERVAL,
        P::AssignedClientIdentifier(_) => id::ASSIGNED_CLIENT_IDENTIFIER,
        P::ServerKeepAlive(_) => id::SERVER_KEEP_ALIVE,
        P::AuthenticationMethod(_) => id::AUTHENTICATION_METHOD,
        P::AuthenticationData(_) => id::AUTHENTICATION_DATA,
        P::RequestProblemInformation(_) => id::REQUEST_PROBLEM_INFORMATION,
        P::WillDelayInterval(_) => id::WILL_DELAY_INTERVAL,
        P::RequestResponseInformation(_) => id::REQUEST_RESPONSE_INFORMATION,
        P::ResponseInformation(_) => id::RESPONSE_INFORMATION,
        P::ServerReference(_) => id::SERVER_REFERENCE,
        P::ReasonString(_) => id::REASON_STRING,
        P::ReceiveMaximum(_) => id::RECEIVE_MAXIMUM,
        P::TopicAliasMaximum(_) => id::TOPIC_ALIAS_MAXIMUM,
        P::TopicAlias(_) => id::TOPIC_ALIAS,
        P::MaximumQoS(_) => id::MAXIMUM_QOS,
        P::RetainAvailable(_) => id::RETAIN_AVAILABLE,
        P::UserProperty(_) => id::USER_PROPERTY,
        P::MaximumPacketSize(_) => id::MAXIMUM_PACKET_SIZE,
        P::WildcardSubscriptionAvailable(_) => id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        P::SubscriptionIdentifierAvailable(_) => id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        P::SharedSubscriptionAvailable(_) => id::SHARED_SUBSCRIPTION_AVAILABLE,
    }
}

/// [MQTT-3.1.2.11.10] / [MQTT-3.2.2.3.18] / [MQTT-3.15.2.2.3]: Authentication Data without an
/// Authentication Method is a Protocol Error.
fn check_auth(method: &Option<MqttString>, data: &Option<Bytes>) -> Result<(), DecodeError> {
    if data.is_some() && method.is_none() {
        Err(DecodeError::AuthDataWithoutMethod)
    } else {
        Ok(())
    }
}

/// CONNECT properties (MQTT 5 §3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

property_block!(ConnectProperties {
    session_expiry_interval: SessionExpiryInterval as U32 = SESSION_EXPIRY_INTERVAL,
    receive_maximum: ReceiveMaximum as U16 = RECEIVE_MAXIMUM,
    maximum_packet_size: MaximumPacketSize as U32 = MAXIMUM_PACKET_SIZE,
    topic_alias_maximum: TopicAliasMaximum as U16 = TOPIC_ALIAS_MAXIMUM,
    request_response_information: RequestResponseInformation as Flag = REQUEST_RESPONSE_INFORMATION,
    request_problem_information: RequestProblemInformation as Flag = REQUEST_PROBLEM_INFORMATION,
    user_properties: UserProperty as Pair = USER_PROPERTY,
    authentication_method: AuthenticationMethod as Str = AUTHENTICATION_METHOD,
    authentication_data: AuthenticationData as Bin = AUTHENTICATION_DATA,
} checks authentication);

/// Properties a will message and a PUBLISH share (MQTT 5 §3.1.3.2, §3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<MqttString>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

property_fields!(MessageProperties {
    payload_format_indicator: PayloadFormatIndicator as Flag = PAYLOAD_FORMAT_INDICATOR,
    message_expiry_interval: MessageExpiryInterval as U32 = MESSAGE_EXPIRY_INTERVAL,
    content_type: ContentType as Str = CONTENT_TYPE,
    response_topic: ResponseTopic as Str = RESPONSE_TOPIC,
    correlation_data: CorrelationData as Bin = CORRELATION_DATA,
    user_properties: UserProperty as Pair = USER_PROPERTY,
});

/// Will properties (MQTT 5 §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub message: MessageProperties,
}

/// The will's own property first, then the message's.
impl PropertyBlock for WillProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::WillDelayInterval(v) => self.will_delay_interval = Some(v),
            other => self.message.take(other).map_err(|p| not_allowed(&p))?,
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        <U32 as Wire<_>>::put(o, id::WILL_DELAY_INTERVAL, &self.will_delay_interval);
        self.message.put(o);
    }
}

/// PUBLISH properties (MQTT 5 §3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub topic_alias: Option<NonZeroU16>,
    /// Only in PUBLISH from server to client [MQTT-3.3.4-6]; one per matching subscription.
    pub subscription_identifiers: Vec<NonZeroU32>,
    pub message: MessageProperties,
}

property_fields!(PublishProperties {
    topic_alias: TopicAlias as U16 = TOPIC_ALIAS,
    subscription_identifiers: SubscriptionIdentifier as VarInt = SUBSCRIPTION_IDENTIFIER,
});

/// The message's properties first, then PUBLISH's own.
impl PropertyBlock for PublishProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match self.take(p) {
            Ok(()) => Ok(()),
            Err(other) => self.message.take(other).map_err(|p| not_allowed(&p)),
        }
    }

    fn write<O: Out>(&self, o: &mut O) {
        self.message.put(o);
        self.put(o);
    }
}

/// CONNACK properties (MQTT 5 §3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only 0 or 1 on the wire; absent means 2.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<MqttString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<MqttString>,
    pub server_reference: Option<MqttString>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

property_block!(ConnAckProperties {
    session_expiry_interval: SessionExpiryInterval as U32 = SESSION_EXPIRY_INTERVAL,
    receive_maximum: ReceiveMaximum as U16 = RECEIVE_MAXIMUM,
    maximum_qos: MaximumQoS as Byte = MAXIMUM_QOS,
    retain_available: RetainAvailable as Flag = RETAIN_AVAILABLE,
    maximum_packet_size: MaximumPacketSize as U32 = MAXIMUM_PACKET_SIZE,
    assigned_client_identifier: AssignedClientIdentifier as Str = ASSIGNED_CLIENT_IDENTIFIER,
    topic_alias_maximum: TopicAliasMaximum as U16 = TOPIC_ALIAS_MAXIMUM,
    reason_string: ReasonString as Str = REASON_STRING,
    user_properties: UserProperty as Pair = USER_PROPERTY,
    wildcard_subscription_available: WildcardSubscriptionAvailable as Flag
        = WILDCARD_SUBSCRIPTION_AVAILABLE,
    subscription_identifiers_available: SubscriptionIdentifierAvailable as Flag
        = SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    shared_subscription_available: SharedSubscriptionAvailable as Flag
        = SHARED_SUBSCRIPTION_AVAILABLE,
    server_keep_alive: ServerKeepAlive as U16 = SERVER_KEEP_ALIVE,
    response_information: ResponseInformation as Str = RESPONSE_INFORMATION,
    server_reference: ServerReference as Str = SERVER_REFERENCE,
    authentication_method: AuthenticationMethod as Str = AUTHENTICATION_METHOD,
    authentication_data: AuthenticationData as Bin = AUTHENTICATION_DATA,
} checks authentication);

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and user
/// properties (MQTT 5 §3.4.2.2 and siblings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

property_block!(AckProperties {
    reason_string: ReasonString as Str = REASON_STRING,
    user_properties: UserProperty as Pair = USER_PROPERTY,
});

/// SUBSCRIBE properties (MQTT 5 §3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<NonZeroU32>,
    pub user_properties: Vec<UserProperty>,
}

property_block!(SubscribeProperties {
    subscription_identifier: SubscriptionIdentifier as VarInt = SUBSCRIPTION_IDENTIFIER,
    user_properties: UserProperty as Pair = USER_PROPERTY,
});

/// UNSUBSCRIBE properties (MQTT 5 §3.10.2.1): user properties only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: Vec<UserProperty>,
}

property_block!(UnsubscribeProperties {
    user_properties: UserProperty as Pair = USER_PROPERTY,
});

/// DISCONNECT properties (MQTT 5 §3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<MqttString>,
}

impl DisconnectProperties {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

property_block!(DisconnectProperties {
    session_expiry_interval: SessionExpiryInterval as U32 = SESSION_EXPIRY_INTERVAL,
    reason_string: ReasonString as Str = REASON_STRING,
    user_properties: UserProperty as Pair = USER_PROPERTY,
    server_reference: ServerReference as Str = SERVER_REFERENCE,
});

/// AUTH properties (MQTT 5 §3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl AuthProperties {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

property_block!(AuthProperties {
    authentication_method: AuthenticationMethod as Str = AUTHENTICATION_METHOD,
    authentication_data: AuthenticationData as Bin = AUTHENTICATION_DATA,
    reason_string: ReasonString as Str = REASON_STRING,
    user_properties: UserProperty as Pair = USER_PROPERTY,
} checks authentication);
