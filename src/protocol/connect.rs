//! CONNECT and CONNACK, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Worked example, an MQTT 3.1.1 CONNECT with client id "a", clean session, keep alive 60:
//! `10 0D 00 04 'M' 'Q' 'T' 'T' 04 02 00 3C 00 01 'a'` — fixed header, protocol name, level 4,
//! flags 0x02 (clean session), keep alive, then the payload (client id).
//! MQTT 5 adds a property block after the keep alive and, when there is a will, a will property
//! block before the will topic.

use bytes::Bytes;

use super::error::DecodeError;
use super::property::{
    decode_block, encode_block, ConnAckProperties, ConnectProperties, PropKind, WillProperties,
};
use super::reason::ReasonCode;
use super::topic::TopicName;
use super::types::{ClientId, MqttString, ProtocolVersion, QoS};
use super::wire::{Out, Reader};

/// A client's CONNECT. Lives only on the shard that reads it, until it becomes a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol level the client speaks; every later packet on the connection uses it.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5).
    pub clean_start: bool,
    /// Seconds; 0 disables keep alive.
    pub keep_alive: u16,
    /// May be empty: the server assigns one (3.1.1 only with clean session).
    pub client_id: ClientId,
    pub will: Option<LastWill>,
    pub username: Option<MqttString>,
    pub password: Option<Bytes>,
    pub properties: ConnectProperties,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

// CONNECT flag bits [MQTT-3.1.2.3].
const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

/// Reads protocol name and level and returns the version; shared by `decode` and
/// `connect_protocol_version`.
fn read_protocol(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let version =
        ProtocolVersion::from_level(level).ok_or(DecodeError::UnsupportedProtocolVersion(level))?;
    // [MQTT-3.1.2-1] the protocol name must match the level's.
    if name != version.protocol_name().as_bytes() {
        return Err(DecodeError::InvalidProtocolName);
    }
    Ok(version)
}

/// The protocol version a CONNECT frame at the start of `buf` asks for, without consuming it.
///
/// The broker calls this when `decode` refused a first packet, to know whether to answer with an
/// MQTT 5 CONNACK (reason code) or a 3.1.1 one (return code). `None` if `buf` does not start with a
/// readable CONNECT.
pub fn connect_protocol_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let header = super::wire::parse_fixed_header(buf, u32::MAX).ok()??;
    if header.packet_type != super::wire::packet_type::CONNECT {
        return None;
    }
    let end = header.frame_len().min(buf.len());
    let body = Bytes::copy_from_slice(buf.get(header.header_len..end)?);
    read_protocol(&mut Reader::new(body)).ok()
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let protocol = read_protocol(r)?;
        let flags = r.u8()?;
        // [MQTT-3.1.2-3] the reserved flag must be 0.
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_flag = flags & FLAG_WILL != 0;
        let will_qos = QoS::from_bits((flags >> 3) & 0b11)?; // [MQTT-3.1.2-14]
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15] no will QoS / retain without a will.
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        // [MQTT-3.1.2-22] before MQTT 5, a password needs a user name.
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            decode_block(r, PropKind::Connect)?
        } else {
            ConnectProperties::default()
        };
        // [MQTT-3.1.3-3] the client identifier comes first in the payload.
        let client_id = ClientId::from(r.string()?);
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                decode_block(r, PropKind::Will)?
            } else {
                WillProperties::default()
            };
            Some(LastWill {
                topic: r.topic_name()?,
                payload: r.binary()?,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string()).transpose()?;
        let password = has_password.then(|| r.binary()).transpose()?;
        r.finish()?;
        Ok(Self {
            protocol,
            clean_start: flags & FLAG_CLEAN != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O) {
        let v = self.protocol;
        o.write_binary(v.protocol_name().as_bytes());
        o.write_u8(v.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN;
        }
        if let Some(w) = &self.will {
            flags |= FLAG_WILL | ((w.qos as u8) << 3);
            if w.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        o.write_u8(flags);
        o.write_u16(self.keep_alive);
        if v.is_v5() {
            encode_block(&self.properties, o);
        }
        o.write_str(self.client_id.as_mqtt_str());
        if let Some(w) = &self.will {
            if v.is_v5() {
                encode_block(&w.properties, o);
            }
            o.write_str(w.topic.as_mqtt_str());
            o.write_binary(&w.payload);
        }
        if let Some(u) = &self.username {
            o.write_str(u);
        }
        if let Some(p) = &self.password {
            o.write_binary(p);
        }
    }
}

/// The server's CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Always false for MQTT 3.1, which has no such flag.
    pub session_present: bool,
    /// MQTT 5 reason code; for 3.1 / 3.1.1 it is mapped to a return code on the wire (see
    /// `return_code_v3`).
    pub reason_code: ReasonCode,
    pub properties: ConnAckProperties,
}

/// CONNECT reason codes a CONNACK may carry in MQTT 5 [MQTT-3.2.2-8].
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

impl ConnAck {
    /// A CONNACK refusing the connection with `code` (no session, no properties)
    /// [MQTT-3.2.2-6]: the server closes the connection after it [MQTT-3.2.2-5].
    pub fn refusal(code: ReasonCode) -> Self {
        Self {
            session_present: false,
            reason_code: code,
            properties: ConnAckProperties::default(),
        }
    }

    /// The 3.1.1 return code for a reason code [MQTT-3.2.2.3]: 1 unacceptable protocol version,
    /// 2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not authorized.
    pub fn return_code_v3(code: ReasonCode) -> u8 {
        match code.0 {
            0x00 => 0,
            0x84 => 1,
            0x85 => 2,
            0x86 => 4,
            0x87 | 0x8A | 0x8C => 5,
            _ => 3,
        }
    }

    fn reason_from_v3(rc: u8) -> Result<ReasonCode, DecodeError> {
        Ok(match rc {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            code => {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: super::wire::packet_type::CONNACK,
                    code,
                })
            }
        })
    }

    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        let session_present = match v {
            // MQTT 3.1 has no acknowledge flags: the byte is unused.
            ProtocolVersion::V3_1 => false,
            _ => {
                // [MQTT-3.2.2-1] bits 7-1 are reserved.
                if flags & 0xFE != 0 {
                    return Err(DecodeError::ConnAckReservedFlags);
                }
                flags & 1 != 0
            }
        };
        let code = r.u8()?;
        let (reason_code, properties) = if v.is_v5() {
            if !CONNACK_CODES.contains(&code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: super::wire::packet_type::CONNACK,
                    code,
                });
            }
            (ReasonCode(code), decode_block(r, PropKind::ConnAck)?)
        } else {
            (Self::reason_from_v3(code)?, ConnAckProperties::default())
        };
        // [MQTT-3.2.2-6] a refused connection has Session Present 0.
        if session_present && reason_code.is_error() {
            return Err(DecodeError::SessionPresentOnError);
        }
        r.finish()?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        let session_present = self.session_present && v != ProtocolVersion::V3_1;
        o.write_u8(session_present as u8);
        if v.is_v5() {
            o.write_u8(self.reason_code.0);
            encode_block(&self.properties, o);
        } else {
            o.write_u8(Self::return_code_v3(self.reason_code));
        }
    }
}

/// Marks an encoded CONNECT frame as a bridge's (Mosquitto's `try_private`: the protocol level's
/// top bit, 0x80), which tells a Mosquitto server not to send the bridge back what it published.
/// False (and the frame untouched) when `frame` is not a whole CONNECT.
pub fn mark_bridge(frame: &mut [u8]) -> bool {
    if frame.first() != Some(&0x10) {
        return false;
    }
    // The fixed header's remaining length: up to four 7-bit groups.
    let mut at = 1;
    while at < frame.len().min(5) && frame[at] & 0x80 != 0 {
        at += 1;
    }
    let name_len_at = at + 1;
    let Some(len) = frame.get(name_len_at..name_len_at + 2) else {
        return false;
    };
    let level_at = name_len_at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    match frame.get_mut(level_at) {
        Some(level) => {
            *level |= 0x80;
            true
        }
        None => false,
    }
}
