//! DISCONNECT and AUTH: in MQTT 5 both are a reason code and properties, each omissible when it
//! has its default; before MQTT 5 DISCONNECT is empty and AUTH does not exist.
//!
//! Worked example: an MQTT 5 DISCONNECT with reason 0x04 (disconnect with will) and no properties
//! is encoded `E0 02 04 00` (and `E0 01 04` is decoded too); a normal one is `E0 00`.

use super::error::DecodeError;
use super::property::{
    decode_block, encode_block, AuthProperties, DisconnectProperties, PropKind, PropertyBlock,
};
use super::reason::ReasonCode;
use super::types::ProtocolVersion;
use super::wire::{packet_type, Out, Reader};

/// DISCONNECT reason codes [MQTT-3.14.2-1].
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// AUTH reason codes [MQTT-3.15.2-1].
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

/// A DISCONNECT from either side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Always `NORMAL_DISCONNECTION` before MQTT 5.
    pub reason_code: ReasonCode,
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut d = Self::default();
        if v.is_v5() {
            (d.reason_code, d.properties) = decode_code_and_props(
                r,
                packet_type::DISCONNECT,
                DISCONNECT_CODES,
                PropKind::Disconnect,
            )?;
        }
        // [MQTT-3.14.1] before MQTT 5 DISCONNECT has no variable header.
        r.finish()?;
        Ok(d)
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O, v: ProtocolVersion) {
        if v.is_v5() {
            write_code_and_props(
                o,
                self.reason_code,
                &self.properties,
                self.properties.is_empty(),
            );
        }
    }
}

/// An AUTH exchange step (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let (reason_code, properties) =
            decode_code_and_props(r, packet_type::AUTH, AUTH_CODES, PropKind::Auth)?;
        r.finish()?;
        Ok(Self {
            reason_code,
            properties,
        })
    }

    pub(crate) fn write<O: Out>(&self, o: &mut O) {
        write_code_and_props(
            o,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
        );
    }
}

/// The shared MQTT 5 layout: nothing (success, no properties), a reason code alone, or a reason
/// code and a property block [MQTT-3.14.2.1] [MQTT-3.15.2.1].
fn decode_code_and_props<P: PropertyBlock>(
    r: &mut Reader,
    ptype: u8,
    allowed: &[u8],
    kind: PropKind,
) -> Result<(ReasonCode, P), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, P::default()));
    }
    let code = r.u8()?;
    if !allowed.contains(&code) {
        return Err(DecodeError::InvalidReasonCode {
            packet_type: ptype,
            code,
        });
    }
    let props = if r.is_empty() {
        P::default()
    } else {
        decode_block(r, kind)?
    };
    Ok((ReasonCode(code), props))
}

fn write_code_and_props<P: PropertyBlock, O: Out>(
    o: &mut O,
    code: ReasonCode,
    props: &P,
    props_empty: bool,
) {
    // The short forms `E0 00` (success, no properties) and code-only are both valid; a reason
    // code is always followed by its property length, because several widely used clients
    // (rumqttc 0.25 among them) cannot parse a reason code without one [MQTT-3.14.2.2.1].
    if code != ReasonCode::SUCCESS || !props_empty {
        o.write_u8(code.0);
        encode_block(props, o);
    }
}
