//! Wire primitives shared by every packet and version: the fixed header, variable byte integers,
//! two/four byte integers, binary data and UTF-8 strings, in both directions.
//!
//! Decoding reads from a `Reader` over one frozen frame (`Bytes`), so every string and blob it
//! returns is a zero-copy slice of that frame. Encoding writes to any `Out`: a `BytesMut` writes
//! the bytes, a `Counter` only adds up their length. Each packet has one writer used for both, so
//! `encoded_len()` can never disagree with `encode()`.
//!
//! Worked example, remaining length 321 as a variable byte integer: 321 = 2·128 + 65 →
//! `[0xC1, 0x02]` (65 | 0x80, then 2).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::topic::TopicName;
use super::types::{MqttString, PacketId};

/// Largest value a variable byte integer can hold (four bytes).
pub const MAX_VAR_INT: u32 = 268_435_455;

/// Packet type numbers (high nibble of the first byte).
pub mod packet_type {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type, 1..=15.
    pub packet_type: u8,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Length of the fixed header itself (2..=5).
    pub header_len: usize,
    /// The remaining length.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Total length of the frame.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses the fixed header at the start of `buf`, without consuming anything.
///
/// `Ok(None)` when more bytes are needed. The frame size is checked against `max_packet_size`
/// here, before any of the body is buffered [MQTT-3.1.2-24 / 3.2.2-15 size semantics].
pub fn parse_fixed_header(
    buf: &[u8],
    max_packet_size: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining_len, n)) = peek_var_int(&buf[1..])? else {
        return Ok(None);
    };
    let header = FixedHeader {
        packet_type: first >> 4,
        flags: first & 0x0F,
        header_len: 1 + n,
        remaining_len: remaining_len as usize,
    };
    if header.frame_len() > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size: header.frame_len(),
            max: max_packet_size,
        });
    }
    Ok(Some(header))
}

/// Reads a variable byte integer from the start of `buf`: value and bytes used, `Ok(None)` if
/// `buf` ends before its last byte. Errors on a fifth byte or a non-minimal encoding
/// [MQTT-1.5.5-1].
pub fn peek_var_int(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // A final byte of 0 after at least one continuation byte adds nothing: the same value
            // fits in fewer bytes.
            if i > 0 && b == 0 {
                return Err(DecodeError::VarIntNotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::VarIntTooLong)
}

/// Number of bytes `v` takes as a variable byte integer.
pub fn var_int_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A cursor over one frozen frame body. Every read checks bounds; slices share the frame.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// [MQTT-4.13.1] a frame with bytes after its last field is malformed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.remaining() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        let v = self.buf[self.pos];
        self.pos += 1;
        Ok(v)
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        let v = u16::from_be_bytes([self.buf[self.pos], self.buf[self.pos + 1]]);
        self.pos += 2;
        Ok(v)
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        let b = &self.buf[self.pos..self.pos + 4];
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.pos += 4;
        Ok(v)
    }

    pub fn var_int(&mut self) -> Result<u32, DecodeError> {
        match peek_var_int(&self.buf[self.pos..])? {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes as a slice of the frame.
    pub fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Everything left in the frame (a PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        let b = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        b
    }

    /// A sub-reader over the next `n` bytes (a property block).
    pub fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(n)?))
    }

    /// Two-byte length then that many bytes.
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A UTF-8 string field.
    pub fn string(&mut self) -> Result<MqttString, DecodeError> {
        MqttString::from_bytes(self.binary()?)
    }

    /// A non-empty topic name without wildcards.
    pub fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        TopicName::new(self.string()?)
    }

    /// A non-zero packet identifier [MQTT-2.2.1-3].
    pub fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }
}

/// Where an encoder writes: the real buffer, or a counter that only measures.
pub trait Out {
    fn write_u8(&mut self, v: u8);
    fn write_u16(&mut self, v: u16);
    fn write_u32(&mut self, v: u32);
    fn write_slice(&mut self, s: &[u8]);

    fn write_var_int(&mut self, v: usize) {
        let mut v = v;
        loop {
            let mut b = (v % 128) as u8;
            v /= 128;
            if v > 0 {
                b |= 0x80;
            }
            self.write_u8(b);
            if v == 0 {
                break;
            }
        }
    }

    /// Binary data: two-byte length and bytes. Callers keep `s` within 65535 bytes (strings are
    /// validated on construction; binary properties are bounded by the frame they came from).
    fn write_binary(&mut self, s: &[u8]) {
        self.write_u16(s.len() as u16);
        self.write_slice(s);
    }

    fn write_str(&mut self, s: &MqttString) {
        self.write_binary(s.as_bytes());
    }
}

impl Out for BytesMut {
    fn write_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn write_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn write_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn write_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// An `Out` that only counts bytes.
#[derive(Default)]
pub struct Counter(pub usize);

impl Out for Counter {
    fn write_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn write_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn write_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn write_slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
    fn write_var_int(&mut self, v: usize) {
        self.0 += var_int_len(v);
    }
}

/// Length of what `write` writes.
pub fn measure(write: impl Fn(&mut Counter)) -> usize {
    let mut c = Counter(0);
    write(&mut c);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_boundaries_round_trip() {
        for v in [
            0usize,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut b = BytesMut::new();
            b.write_var_int(v);
            assert_eq!(b.len(), var_int_len(v), "length of {v}");
            assert_eq!(peek_var_int(&b).unwrap(), Some((v as u32, b.len())));
        }
    }

    #[test]
    fn mqtt_1_5_5_var_int_errors() {
        assert_eq!(peek_var_int(&[0x80, 0x80, 0x80]).unwrap(), None);
        assert_eq!(
            peek_var_int(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            peek_var_int(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            peek_var_int(&[0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        assert_eq!(peek_var_int(&[0xC1, 0x02]).unwrap(), Some((321, 2)));
    }

    #[test]
    fn size_limit_is_checked_on_the_fixed_header_alone() {
        // A PUBLISH announcing 1,000,000 bytes, of which none have arrived.
        let mut b = BytesMut::new();
        b.write_u8(0x30);
        b.write_var_int(1_000_000);
        assert_eq!(
            parse_fixed_header(&b, 1024),
            Err(DecodeError::PacketTooLarge {
                size: 1_000_000 + 4,
                max: 1024
            })
        );
        assert_eq!(
            parse_fixed_header(&b, 2_000_000)
                .unwrap()
                .unwrap()
                .frame_len(),
            1_000_004
        );
    }
}
