//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.
//!
//! Worked example, an MQTT 3.1.1 QoS 1 PUBLISH of "hi" to "a/b" with packet id 10:
//! `32 09 00 03 'a' '/' 'b' 00 0A 'h' 'i'` — flags 0b0010 (QoS 1), topic, packet id, payload.
//! In MQTT 5 a property block sits between packet id and payload.
//!
//! The topic and payload of a decoded PUBLISH are slices of the frame: fan-out clones the `Bytes`
//! (a reference count), never the payload.

use bytes::Bytes;

use super::error::DecodeError;
use super::property::{decode_block, encode_block, AckProperties, PropKind, PublishProperties};
use super::reason::ReasonCode;
use super::topic::TopicName;
use super::types::{PacketId, ProtocolVersion, QoS};
use super::wire::{packet_type, Out, Reader};

/// An application message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in an MQTT 5 PUBLISH that carries a Topic Alias.
    pub topic: TopicName,
    /// `Some` exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    pub properties: PublishProperties,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: TopicName, payload: Bytes) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            payload,
            properties: PublishProperties::default(),
        }
    }

    /// The fixed-header flags nibble.
    pub(crate) fn flags(&self) -> u8 {
        ((self.dup as u8) << 3) | ((self.qos as u8) << 1) | self.retain as u8
    }

    pub(crate) fn decode(
        r: &mut Reader,
        flags: u8,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_bits((flags >> 1) & 0b11)?; // [MQTT-3.3.1-4]
        let retain = flags & 1 != 0;
        // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = TopicName::new_allow_empty(r.string()?)?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let properties: PublishProperties = if v.is_v5() {
            decode_block(r, PropKind::Publish)?
        } else {
            PublishProperties::default()
        };
        // [MQTT-4.7.3-1] topic names are at least one character; MQTT 5 allows an empty one when
        // a Topic Alias stands in for it [MQTT-3.3.2-1? §3.3.2.3.4].
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicName);
        }
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            payload: r.rest(),
            properties,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        o.write_str(self.topic.as_mqtt_str());
        if let Some(id) = self.packet_id {
            o.write_u16(id.get());
        }
        if v.is_v5() {
            encode_block(&self.properties, o);
        }
        o.write_slice(&self.payload);
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (the `Packet` variant says which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    pub packet_id: PacketId,
    /// Always `SUCCESS` before MQTT 5.
    pub reason_code: ReasonCode,
    pub properties: AckProperties,
}

impl PublishAck {
    /// A success acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: AckProperties::default(),
        }
    }

    /// Reason codes allowed per packet type: [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1]
    /// [MQTT-3.7.2-1].
    fn allowed_codes(ptype: u8) -> &'static [u8] {
        match ptype {
            packet_type::PUBACK | packet_type::PUBREC => {
                &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
            }
            _ => &[0x00, 0x92],
        }
    }

    fn prop_kind(ptype: u8) -> PropKind {
        match ptype {
            packet_type::PUBACK => PropKind::PubAck,
            packet_type::PUBREC => PropKind::PubRec,
            packet_type::PUBREL => PropKind::PubRel,
            _ => PropKind::PubComp,
        }
    }

    pub(crate) fn decode(
        r: &mut Reader,
        ptype: u8,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut ack = Self::new(packet_id);
        // MQTT 5: remaining length 2 means Success with no properties; 3 means a reason code
        // with no properties [MQTT-3.4.2.1].
        if v.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            if !Self::allowed_codes(ptype).contains(&code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: ptype,
                    code,
                });
            }
            ack.reason_code = ReasonCode(code);
            if !r.is_empty() {
                ack.properties = decode_block(r, Self::prop_kind(ptype))?;
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        o.write_u16(self.packet_id.get());
        if v.is_v5() {
            let props = !self.properties.is_empty();
            if self.reason_code != ReasonCode::SUCCESS || props {
                o.write_u8(self.reason_code.0);
            }
            if props {
                encode_block(&self.properties, o);
            }
        }
    }
}
