//! The MQTT 3.1 / 3.1.1 / 5.0 codec: bytes in a connection's read buffer to `Packet`, and
//! `Packet` to bytes in its write buffer.
//!
//! Pure: depends on `std` and `bytes` only — no I/O, no async, no runtime, no broker types
//! (`tests/boundaries.rs` enforces this). Shared wire code lives in `wire`; the packet files
//! branch on `ProtocolVersion` only where the formats really differ (property blocks, reason
//! codes, AUTH).
//!
//! # Decoding
//! [`decode`] looks at the front of a `BytesMut`:
//! - fewer bytes than one whole frame → `Ok(None)`, nothing consumed;
//! - a fixed header announcing more than `max_packet_size` → `Err(PacketTooLarge)` at once, before
//!   the body is buffered;
//! - a whole frame → it is split off and frozen once; the packet's topic, payload, strings and
//!   binary properties are `Bytes` slices of that frame (no copies);
//! - anything the spec forbids → a [`DecodeError`] naming the spec statement and carrying the
//!   MQTT 5 reason code to answer with.
//!
//! # Encoding
//! [`Packet::encode`] appends one frame to a `BytesMut`; [`Packet::encoded_len`] gives its exact
//! size without encoding (to honour a client's Maximum Packet Size and pre-size write buffers).
//! Both run the same writer, once counting and once writing.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use coremq::protocol::{decode, Packet, ProtocolVersion, Publish, TopicName};
//!
//! let publish = Publish::new(TopicName::from_static("a/b").unwrap(), Bytes::from_static(b"hi"));
//! let mut buf = BytesMut::new();
//! Packet::Publish(publish.clone()).encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
//! assert_eq!(&buf[..], b"\x30\x07\x00\x03a/bhi");
//! let decoded = decode(&mut buf, ProtocolVersion::V3_1_1, 1024).unwrap();
//! assert_eq!(decoded, Some(Packet::Publish(publish)));
//! assert!(buf.is_empty());
//! ```

mod connect;
mod disconnect;
mod error;
#[doc(hidden)]
pub mod fuzz_check;
mod property;
mod publish;
mod reason;
mod subscribe;
mod topic;
mod types;
pub mod wire;

#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use connect::{connect_protocol_version, mark_bridge, ConnAck, Connect, LastWill};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use property::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    MessageProperties, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    WillProperties,
};
pub use publish::{Publish, PublishAck};
pub use reason::ReasonCode;
pub use subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
pub use topic::{TopicFilter, TopicName, SHARE_PREFIX};
pub use types::{
    ClientId, MqttString, PacketId, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions,
    UserProperty,
};

use wire::{measure, packet_type as pt, Out, Reader, MAX_VAR_INT};

/// One MQTT control packet, of any type and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PublishAck),
    PubRec(PublishAck),
    PubRel(PublishAck),
    PubComp(PublishAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

/// Decodes the frame at the front of `buf` (see the module docs).
///
/// `version` is the connection's protocol version (any value before CONNECT: CONNECT carries its
/// own). `max_packet_size` bounds the whole frame, fixed header included.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = wire::parse_fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    // Check the type and flags before waiting for the body: a bad header needs no more bytes.
    check_flags(header.packet_type, header.flags, version)?;
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    let mut frame = buf.split_to(header.frame_len()).freeze();
    let _ = frame.split_to(header.header_len);
    decode_body(
        &mut Reader::new(frame),
        header.packet_type,
        header.flags,
        version,
    )
    .map(Some)
}

/// [MQTT-2.1.3-1] the flags nibble is fixed for every type but PUBLISH; type 0 is reserved and so
/// is 15 (AUTH) before MQTT 5.
fn check_flags(ptype: u8, flags: u8, v: ProtocolVersion) -> Result<(), DecodeError> {
    let expected = match ptype {
        // [MQTT-3.3.1-4] QoS 3 is refused from the header alone, like the other flag errors.
        pt::PUBLISH if (flags >> 1) & 0b11 == 3 => return Err(DecodeError::InvalidQoS),
        pt::PUBLISH => return Ok(()),
        0 => return Err(DecodeError::ReservedPacketType(0)),
        pt::AUTH if !v.is_v5() => return Err(DecodeError::ReservedPacketType(pt::AUTH)),
        pt::PUBREL | pt::SUBSCRIBE | pt::UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::InvalidHeaderFlags {
            packet_type: ptype,
            flags,
        });
    }
    Ok(())
}

fn decode_body(
    r: &mut Reader,
    ptype: u8,
    flags: u8,
    v: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match ptype {
        pt::CONNECT => Packet::Connect(Box::new(Connect::decode(r)?)),
        pt::CONNACK => Packet::ConnAck(Box::new(ConnAck::decode(r, v)?)),
        pt::PUBLISH => Packet::Publish(Publish::decode(r, flags, v)?),
        pt::PUBACK => Packet::PubAck(PublishAck::decode(r, ptype, v)?),
        pt::PUBREC => Packet::PubRec(PublishAck::decode(r, ptype, v)?),
        pt::PUBREL => Packet::PubRel(PublishAck::decode(r, ptype, v)?),
        pt::PUBCOMP => Packet::PubComp(PublishAck::decode(r, ptype, v)?),
        pt::SUBSCRIBE => Packet::Subscribe(Subscribe::decode(r, v)?),
        pt::SUBACK => Packet::SubAck(SubAck::decode(r, ptype, v)?),
        pt::UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::decode(r, v)?),
        pt::UNSUBACK => Packet::UnsubAck(SubAck::decode(r, ptype, v)?),
        pt::PINGREQ => {
            r.finish()?;
            Packet::PingReq
        }
        pt::PINGRESP => {
            r.finish()?;
            Packet::PingResp
        }
        pt::DISCONNECT => Packet::Disconnect(Disconnect::decode(r, v)?),
        pt::AUTH => Packet::Auth(Auth::decode(r)?),
        other => return Err(DecodeError::ReservedPacketType(other)),
    })
}

impl Packet {
    /// The packet type number (high nibble of the first byte).
    pub fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => pt::CONNECT,
            Packet::ConnAck(_) => pt::CONNACK,
            Packet::Publish(_) => pt::PUBLISH,
            Packet::PubAck(_) => pt::PUBACK,
            Packet::PubRec(_) => pt::PUBREC,
            Packet::PubRel(_) => pt::PUBREL,
            Packet::PubComp(_) => pt::PUBCOMP,
            Packet::Subscribe(_) => pt::SUBSCRIBE,
            Packet::SubAck(_) => pt::SUBACK,
            Packet::Unsubscribe(_) => pt::UNSUBSCRIBE,
            Packet::UnsubAck(_) => pt::UNSUBACK,
            Packet::PingReq => pt::PINGREQ,
            Packet::PingResp => pt::PINGRESP,
            Packet::Disconnect(_) => pt::DISCONNECT,
            Packet::Auth(_) => pt::AUTH,
        }
    }

    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        (self.packet_type() << 4) | flags
    }

    /// Writes the variable header and payload. CONNECT ignores `v` (it carries its own).
    fn write_body<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        match self {
            Packet::Connect(p) => p.write(o),
            Packet::ConnAck(p) => p.write(o, v),
            Packet::Publish(p) => p.write(o, v),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write(o, v)
            }
            Packet::Subscribe(p) => p.write(o, v),
            Packet::SubAck(p) => p.write(o, pt::SUBACK, v),
            Packet::Unsubscribe(p) => p.write(o, v),
            Packet::UnsubAck(p) => p.write(o, pt::UNSUBACK, v),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write(o, v),
            Packet::Auth(p) => p.write(o),
        }
    }

    /// Removes the Reason String and User Properties of a packet whose sender may leave them
    /// out: the MQTT 5 acknowledgements, CONNACK, DISCONNECT and AUTH. A server must leave them out
    /// rather than exceed the client's Maximum Packet Size ([MQTT-3.2.2-19] [MQTT-3.2.2-20]
    /// [MQTT-3.4.2-2] [MQTT-3.4.2-3] and the same rule for PUBREC, PUBREL, PUBCOMP, SUBACK,
    /// UNSUBACK, DISCONNECT and AUTH). Returns whether anything was removed.
    pub fn strip_diagnostics(&mut self) -> bool {
        let (reason, users) = match self {
            Packet::ConnAck(p) => (
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => (
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::SubAck(p) | Packet::UnsubAck(p) => (
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::Disconnect(p) => (
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::Auth(p) => (
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            _ => return false,
        };
        let had = reason.is_some() || !users.is_empty();
        *reason = None;
        users.clear();
        had
    }

    /// The remaining length this packet encodes to in version `v`.
    pub fn remaining_len(&self, v: ProtocolVersion) -> usize {
        measure(|c| self.write_body(c, v))
    }

    /// The exact number of bytes `encode` appends for version `v`.
    pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let body = self.remaining_len(v);
        1 + wire::var_int_len(body) + body
    }

    /// Appends this packet, encoded for version `v`, to `dst`.
    pub fn encode(&self, v: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Packet::Auth(_) if !v.is_v5() => return Err(EncodeError::NotInVersion),
            Packet::Publish(p) if p.packet_id.is_some() != (p.qos != QoS::AtMostOnce) => {
                return Err(EncodeError::PacketIdMismatch)
            }
            _ => {}
        }
        let body = self.remaining_len(v);
        if body > MAX_VAR_INT as usize {
            return Err(EncodeError::PacketTooLarge(body));
        }
        dst.reserve(1 + wire::var_int_len(body) + body);
        dst.write_u8(self.first_byte());
        dst.write_var_int(body);
        self.write_body(dst, v);
        Ok(())
    }
}
