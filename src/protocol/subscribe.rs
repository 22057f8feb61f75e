//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.
//!
//! Worked example, an MQTT 3.1.1 SUBSCRIBE with packet id 1 to "a/#" at QoS 1:
//! `82 08 00 01 00 03 'a' '/' '#' 01` — flags 0b0010 [MQTT-3.8.1-1], packet id, then
//! (filter, options) pairs. MQTT 5 adds a property block after the packet id and uses the upper
//! bits of the options byte (No Local, Retain As Published, Retain Handling).

use super::error::DecodeError;
use super::property::{
    decode_block, encode_block, AckProperties, PropKind, SubscribeProperties, UnsubscribeProperties,
};
use super::reason::ReasonCode;
use super::topic::TopicFilter;
use super::types::{PacketId, ProtocolVersion, SubscriptionOptions};
use super::wire::{packet_type, Out, Reader};

/// A SUBSCRIBE: one or more filters with their options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub properties: SubscribeProperties,
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if v.is_v5() {
            decode_block(r, PropKind::Subscribe)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = TopicFilter::new(r.string()?)?;
            let options = SubscriptionOptions::from_byte(r.u8()?, v)?;
            // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error.
            if options.no_local && filter.is_shared() {
                return Err(DecodeError::SharedSubscriptionNoLocal);
            }
            filters.push((filter, options));
        }
        // [MQTT-3.8.3-2] at least one filter.
        if filters.is_empty() {
            return Err(DecodeError::SubscribeWithoutFilters);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        o.write_u16(self.packet_id.get());
        if v.is_v5() {
            encode_block(&self.properties, o);
        }
        for (filter, options) in &self.filters {
            o.write_str(filter.as_mqtt_str());
            o.write_u8(options.to_byte(v));
        }
    }
}

/// SUBACK codes allowed in MQTT 5 [MQTT-3.9.3-2]. MQTT 3.1.1 allows 0, 1, 2 and 0x80.
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// UNSUBACK codes allowed in MQTT 5 [MQTT-3.11.3-2].
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

/// SUBACK or UNSUBACK: a packet id, properties and one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub properties: AckProperties,
    /// One per filter of the request. Before MQTT 5 a failure is sent as 0x80 whatever its code,
    /// and UNSUBACK carries no codes at all (decoded as an empty list).
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBACK has the same shape as SUBACK.
pub type UnsubAck = SubAck;

impl SubAck {
    pub(crate) fn decode(
        r: &mut Reader,
        ptype: u8,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let is_suback = ptype == packet_type::SUBACK;
        let (properties, allowed): (AckProperties, &[u8]) = match (v.is_v5(), is_suback) {
            (true, true) => (decode_block(r, PropKind::SubAck)?, SUBACK_CODES),
            (true, false) => (decode_block(r, PropKind::UnsubAck)?, UNSUBACK_CODES),
            (false, true) => (AckProperties::default(), &[0x00, 0x01, 0x02, 0x80]),
            // [MQTT-3.11.2] a 3.1.1 UNSUBACK is the packet id alone.
            (false, false) => (AckProperties::default(), &[]),
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            if !allowed.contains(&code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: ptype,
                    code,
                });
            }
            reason_codes.push(ReasonCode(code));
        }
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, ptype: u8, v: ProtocolVersion) {
        o.write_u16(self.packet_id.get());
        if v.is_v5() {
            encode_block(&self.properties, o);
            for code in &self.reason_codes {
                o.write_u8(code.0);
            }
        } else if ptype == packet_type::SUBACK {
            for code in &self.reason_codes {
                o.write_u8(if code.is_error() { 0x80 } else { code.0 });
            }
        }
    }
}

/// An UNSUBSCRIBE: one or more filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub properties: UnsubscribeProperties,
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if v.is_v5() {
            decode_block(r, PropKind::Unsubscribe)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(TopicFilter::new(r.string()?)?);
        }
        // [MQTT-3.10.3-2] at least one filter.
        if filters.is_empty() {
            return Err(DecodeError::UnsubscribeWithoutFilters);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        o.write_u16(self.packet_id.get());
        if v.is_v5() {
            encode_block(&self.properties, o);
        }
        for filter in &self.filters {
            o.write_str(filter.as_mqtt_str());
        }
    }
}
