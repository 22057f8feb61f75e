//! The stamp at the front of every load-test payload: who sent the message, its place in that
//! publisher's sequence, and when it was (meant to be) sent. Pure bytes in, bytes out; no clock,
//! no sockets.
//!
//! Worked example, run tag 0x0A0B0C0D, publisher 3, sequence 7, sent 1 500 ns after the run's
//! epoch (all little endian):
//!
//! ```text
//! 63 6D 4C 54 | 0D 0C 0B 0A | 03 00 00 00 | 07 00 .. 00 | DC 05 00 .. 00 | padding ('.')
//! "cmLT" magic  run tag       publisher     sequence      sent_ns
//! ```
//!
//! The subscriber subtracts `sent_ns` from its own reading of the same monotonic clock (every
//! worker shares one `Instant` epoch), so latency is end to end and needs no clock sync.

use bytes::Bytes;

/// Bytes the stamp takes; `--payload` may not be smaller.
pub const HEADER_LEN: usize = 28;

/// Marks a load-test payload: anything else on our topics is counted as foreign.
const MAGIC: [u8; 4] = *b"cmLT";

/// The decoded stamp of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Random per invocation: retained or late messages of an earlier run are not ours.
    pub run: u32,
    /// Index of the publisher in the scenario plan (0..publishers).
    pub publisher: u32,
    /// 0, 1, 2, … per publisher: gaps are losses, repeats are duplicates.
    pub seq: u64,
    /// Nanoseconds since the run's epoch: the actual send time (closed loop) or the intended one
    /// (open loop, which corrects for coordinated omission).
    pub sent_ns: u64,
}

/// Why a payload is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampError {
    /// Fewer than `HEADER_LEN` bytes.
    TooShort(usize),
    /// The first four bytes are not the magic.
    BadMagic,
}

impl Stamp {
    /// Writes the stamp over the first `HEADER_LEN` bytes of `dst` (the payload in an encoded
    /// frame: the frame is patched in place, no payload is allocated per message).
    pub fn write(&self, dst: &mut [u8]) {
        let header = &mut dst[..HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&self.run.to_le_bytes());
        header[8..12].copy_from_slice(&self.publisher.to_le_bytes());
        header[12..20].copy_from_slice(&self.seq.to_le_bytes());
        header[20..28].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads the stamp at the front of a received payload.
    pub fn read(src: &[u8]) -> Result<Stamp, StampError> {
        let Some(h) = src.get(..HEADER_LEN) else {
            return Err(StampError::TooShort(src.len()));
        };
        if h[0..4] != MAGIC {
            return Err(StampError::BadMagic);
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Stamp {
            run: u32_at(4),
            publisher: u32_at(8),
            seq: u64_at(12),
            sent_ns: u64_at(20),
        })
    }
}

/// A payload of `len` bytes with a blank stamp, shared (refcounted) by every message of a
/// publisher; the stamp is written into each encoded frame.
pub fn template(len: usize) -> Bytes {
    let mut v = vec![b'.'; len.max(HEADER_LEN)];
    v[..HEADER_LEN].fill(0);
    Bytes::from(v)
}

/// Room for the `filtered` scenario's marker, `~p<publisher>~`, right after the stamp.
pub const FILTER_MARKER_LEN: usize = 13;

/// The content filter that passes publisher `p`'s messages (and no other's) in the `filtered`
/// scenario: `payload contains "~p<p>~"` (the marker `with_marker` writes).
pub fn marker_filter(p: u32) -> String {
    format!("payload contains \"~p{p}~\"")
}

/// `template` with publisher `p`'s marker after the stamp.
pub fn with_marker(template: &Bytes, p: u32) -> Bytes {
    let mut v = template.to_vec();
    let marker = format!("~p{p}~");
    v[HEADER_LEN..HEADER_LEN + marker.len()].copy_from_slice(marker.as_bytes());
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_bytes() {
        let stamp = Stamp {
            run: 0x0A0B_0C0D,
            publisher: 3,
            seq: 7,
            sent_ns: 1_500,
        };
        let mut buf = template(64).to_vec();
        stamp.write(&mut buf);
        assert_eq!(&buf[..4], b"cmLT");
        assert_eq!(&buf[4..8], &[0x0D, 0x0C, 0x0B, 0x0A]);
        assert_eq!(&buf[20..22], &[0xDC, 0x05]);
        assert_eq!(buf[HEADER_LEN], b'.');
        assert_eq!(Stamp::read(&buf), Ok(stamp));
    }

    #[test]
    fn stamp_keeps_extreme_values() {
        let stamp = Stamp {
            run: u32::MAX,
            publisher: u32::MAX,
            seq: u64::MAX,
            sent_ns: u64::MAX - 1,
        };
        let mut buf = [0u8; HEADER_LEN];
        stamp.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Ok(stamp));
    }

    #[test]
    fn short_payload_is_refused() {
        assert_eq!(Stamp::read(b"cmLT"), Err(StampError::TooShort(4)));
        assert_eq!(Stamp::read(&[]), Err(StampError::TooShort(0)));
    }

    #[test]
    fn foreign_payload_is_refused() {
        assert_eq!(Stamp::read(&[b'x'; HEADER_LEN]), Err(StampError::BadMagic));
    }

    #[test]
    fn template_is_at_least_a_header() {
        assert_eq!(template(3).len(), HEADER_LEN);
        assert_eq!(template(100).len(), 100);
    }
}
