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

// Small writers used by every block.
fn put_u8_prop<O: Out>(o: &mut O, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        o.write_u8(id);
        o.write_u8(v);
    }
}
fn put_bool_prop<O: Out>(o: &mut O, id: u8, v: Option<bool>) {
    put_u8_prop(o, id, v.map(u8::from));
}
fn put_u16_prop<O: Out>(o: &mut O, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        o.write_u8(id);
        o.write_u16(v);
    }
}
fn put_u32_prop<O: Out>(o: &mut O, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        o.write_u8(id);
        o.write_u32(v);
    }
}
fn put_str_prop<O: Out>(o: &mut O, id: u8, v: Option<&MqttString>) {
    if let Some(v) = v {
        o.write_u8(id);
        o.write_str(v);
    }
}
fn put_bin_prop<O: Out>(o: &mut O, id: u8, v: Option<&Bytes>) {
    if let Some(v) = v {
        o.write_u8(id);
        o.write_binary(v);
    }
}
fn put_user_props<O: Out>(o: &mut O, v: &[UserProperty]) {
    for (k, val) in v {
        o.write_u8(id::USER_PROPERTY);
        o.write_str(k);
        o.write_str(val);
    }
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

impl PropertyBlock for ConnectProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        use Property as P;
        match p {
            P::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            P::ReceiveMaximum(v) => self.receive_maximum = Some(v),
            P::MaximumPacketSize(v) => self.maximum_packet_size = Some(v),
            P::TopicAliasMaximum(v) => self.topic_alias_maximum = Some(v),
            P::RequestResponseInformation(v) => self.request_response_information = Some(v),
            P::RequestProblemInformation(v) => self.request_problem_information = Some(v),
            P::UserProperty(v) => self.user_properties.push(v),
            P::AuthenticationMethod(v) => self.authentication_method = Some(v),
            P::AuthenticationData(v) => self.authentication_data = Some(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_u32_prop(o, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_prop(
            o,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(|v| v.get()),
        );
        put_u32_prop(
            o,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(|v| v.get()),
        );
        put_u16_prop(o, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_bool_prop(
            o,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_bool_prop(
            o,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_user_props(o, &self.user_properties);
        put_str_prop(
            o,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            o,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
    }

    fn validate(&self) -> Result<(), DecodeError> {
        check_auth(&self.authentication_method, &self.authentication_data)
    }
}

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

impl MessageProperties {
    fn apply(&mut self, p: Property) -> Result<(), Property> {
        use Property as P;
        match p {
            P::PayloadFormatIndicator(v) => self.payload_format_indicator = Some(v),
            P::MessageExpiryInterval(v) => self.message_expiry_interval = Some(v),
            P::ContentType(v) => self.content_type = Some(v),
            P::ResponseTopic(v) => self.response_topic = Some(v),
            P::CorrelationData(v) => self.correlation_data = Some(v),
            P::UserProperty(v) => self.user_properties.push(v),
            other => return Err(other),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_bool_prop(
            o,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32_prop(o, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_str_prop(o, id::CONTENT_TYPE, self.content_type.as_ref());
        put_str_prop(
            o,
            id::RESPONSE_TOPIC,
            self.response_topic.as_ref().map(|t| t.as_mqtt_str()),
        );
        put_bin_prop(o, id::CORRELATION_DATA, self.correlation_data.as_ref());
        put_user_props(o, &self.user_properties);
    }
}

/// Will properties (MQTT 5 §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub message: MessageProperties,
}

impl PropertyBlock for WillProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::WillDelayInterval(v) => self.will_delay_interval = Some(v),
            other => self.message.apply(other).map_err(|p| not_allowed(&p))?,
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_u32_prop(o, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        self.message.write(o);
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

impl PropertyBlock for PublishProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::TopicAlias(v) => self.topic_alias = Some(v),
            Property::SubscriptionIdentifier(v) => self.subscription_identifiers.push(v),
            other => self.message.apply(other).map_err(|p| not_allowed(&p))?,
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        self.message.write(o);
        put_u16_prop(o, id::TOPIC_ALIAS, self.topic_alias.map(|v| v.get()));
        for sid in &self.subscription_identifiers {
            o.write_u8(id::SUBSCRIPTION_IDENTIFIER);
            o.write_var_int(sid.get() as usize);
        }
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

impl PropertyBlock for ConnAckProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        use Property as P;
        match p {
            P::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            P::ReceiveMaximum(v) => self.receive_maximum = Some(v),
            P::MaximumQoS(v) => self.maximum_qos = Some(v),
            P::RetainAvailable(v) => self.retain_available = Some(v),
            P::MaximumPacketSize(v) => self.maximum_packet_size = Some(v),
            P::AssignedClientIdentifier(v) => self.assigned_client_identifier = Some(v),
            P::TopicAliasMaximum(v) => self.topic_alias_maximum = Some(v),
            P::ReasonString(v) => self.reason_string = Some(v),
            P::UserProperty(v) => self.user_properties.push(v),
            P::WildcardSubscriptionAvailable(v) => self.wildcard_subscription_available = Some(v),
            P::SubscriptionIdentifierAvailable(v) => {
                self.subscription_identifiers_available = Some(v)
            }
            P::SharedSubscriptionAvailable(v) => self.shared_subscription_available = Some(v),
            P::ServerKeepAlive(v) => self.server_keep_alive = Some(v),
            P::ResponseInformation(v) => self.response_information = Some(v),
            P::ServerReference(v) => self.server_reference = Some(v),
            P::AuthenticationMethod(v) => self.authentication_method = Some(v),
            P::AuthenticationData(v) => self.authentication_data = Some(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_u32_prop(o, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_prop(
            o,
            id::RECEIVE_MAXIMUM,
            self.receive_maximum.map(|v| v.get()),
        );
        put_u8_prop(o, id::MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8));
        put_bool_prop(o, id::RETAIN_AVAILABLE, self.retain_available);
        put_u32_prop(
            o,
            id::MAXIMUM_PACKET_SIZE,
            self.maximum_packet_size.map(|v| v.get()),
        );
        put_str_prop(
            o,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        );
        put_u16_prop(o, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str_prop(o, id::REASON_STRING, self.reason_string.as_ref());
        put_user_props(o, &self.user_properties);
        put_bool_prop(
            o,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_bool_prop(
            o,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_bool_prop(
            o,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16_prop(o, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str_prop(
            o,
            id::RESPONSE_INFORMATION,
            self.response_information.as_ref(),
        );
        put_str_prop(o, id::SERVER_REFERENCE, self.server_reference.as_ref());
        put_str_prop(
            o,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            o,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
    }

    fn validate(&self) -> Result<(), DecodeError> {
        check_auth(&self.authentication_method, &self.authentication_data)
    }
}

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

impl PropertyBlock for AckProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::ReasonString(v) => self.reason_string = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_str_prop(o, id::REASON_STRING, self.reason_string.as_ref());
        put_user_props(o, &self.user_properties);
    }
}

/// SUBSCRIBE properties (MQTT 5 §3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<NonZeroU32>,
    pub user_properties: Vec<UserProperty>,
}

impl PropertyBlock for SubscribeProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::SubscriptionIdentifier(v) => self.subscription_identifier = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        if let Some(sid) = self.subscription_identifier {
            o.write_u8(id::SUBSCRIPTION_IDENTIFIER);
            o.write_var_int(sid.get() as usize);
        }
        put_user_props(o, &self.user_properties);
    }
}

/// UNSUBSCRIBE properties (MQTT 5 §3.10.2.1): user properties only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: Vec<UserProperty>,
}

impl PropertyBlock for UnsubscribeProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_user_props(o, &self.user_properties);
    }
}

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

impl PropertyBlock for DisconnectProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        use Property as P;
        match p {
            P::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            P::ReasonString(v) => self.reason_string = Some(v),
            P::UserProperty(v) => self.user_properties.push(v),
            P::ServerReference(v) => self.server_reference = Some(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_u32_prop(o, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str_prop(o, id::REASON_STRING, self.reason_string.as_ref());
        put_user_props(o, &self.user_properties);
        put_str_prop(o, id::SERVER_REFERENCE, self.server_reference.as_ref());
    }
}

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

impl PropertyBlock for AuthProperties {
    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        use Property as P;
        match p {
            P::AuthenticationMethod(v) => self.authentication_method = Some(v),
            P::AuthenticationData(v) => self.authentication_data = Some(v),
            P::ReasonString(v) => self.reason_string = Some(v),
            P::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(&other)),
        }
        Ok(())
    }

    fn write<O: Out>(&self, o: &mut O) {
        put_str_prop(
            o,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            o,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_ref(),
        );
        put_str_prop(o, id::REASON_STRING, self.reason_string.as_ref());
        put_user_props(o, &self.user_properties);
    }

    fn validate(&self) -> Result<(), DecodeError> {
        check_auth(&self.authentication_method, &self.authentication_data)
    }
}
