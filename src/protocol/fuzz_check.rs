//! The codec's invariants on arbitrary bytes: the one check shared by the `decode` fuzz target
//! (`fuzz/fuzz_targets/decode.rs`) and the corpus replay test (`tests/fuzz_corpus.rs`), so the two
//! can never drift apart. Not part of the broker (hidden from the docs).
//!
//! It never panics itself: a broken invariant comes back as `Err(description)` and the caller
//! panics. A panic *inside* the codec is what the fuzzer is looking for.
//!
//! For every protocol version and for a small and a huge maximum packet size, the input is
//! decoded as a stream (frame after frame while `decode` returns `Some`), and:
//! - `Ok(None)` consumes nothing; `Ok(Some)` consumes one frame of at most `max_packet_size`
//!   bytes, and every strict prefix of that frame is `Ok(None)` (incomplete is not an error);
//! - every decoded packet re-encodes, in the version it was decoded with, to exactly
//!   `encoded_len` bytes that decode back to an equal packet (decode ∘ encode = id);
//! - re-encoded in a *later* version it is still equal: a 3.1 / 3.1.1 packet is an MQTT 5 packet
//!   with default properties and codes, and a 3.1 CONNACK is a 3.1.1 one without Session Present;
//! - re-encoded in an *earlier* version it loses exactly what that version cannot carry (see
//!   `project`), and nothing else;
//! - a CONNECT decodes the same whatever the connection's version (it carries its own), and
//!   `connect_protocol_version` agrees with it.
//!
//! The only legitimately lossy direction is therefore the downgrade: properties, MQTT 5 reason
//! codes (mapped to 3.1.1 return codes / 0x80 / nothing), No Local / Retain As Published / Retain
//! Handling, Session Present in 3.1, and AUTH (no such packet before MQTT 5). A PUBLISH whose
//! topic is empty because a Topic Alias stands in for it cannot be downgraded at all.

use bytes::BytesMut;

use super::{
    connect_protocol_version, decode, ConnAck, DecodeError, EncodeError, Packet, ProtocolVersion,
    PublishAck, ReasonCode, SubscriptionOptions,
};

/// A small limit, so that the `PacketTooLarge` path is exercised, and one no frame can exceed.
pub const MAX_PACKET_SIZES: [u32; 2] = [64, u32::MAX];

/// Every protocol version, oldest first.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// What one `check` saw, summed over every version and size limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Packets decoded (and round-tripped).
    pub packets: usize,
    /// Streams that ended in a `DecodeError`.
    pub errors: usize,
    /// Streams that ended in an incomplete frame (`Ok(None)`).
    pub incomplete: usize,
}

/// Runs every invariant of the module docs on `data`.
pub fn check(data: &[u8]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    for v in VERSIONS {
        for max in MAX_PACKET_SIZES {
            check_stream(data, v, max, &mut summary)
                .map_err(|e| format!("decoding as {v:?} with max_packet_size {max}: {e}"))?;
        }
    }
    Ok(summary)
}

fn check_stream(
    data: &[u8],
    v: ProtocolVersion,
    max: u32,
    summary: &mut Summary,
) -> Result<(), String> {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match decode(&mut buf, v, max) {
            Ok(Some(packet)) => {
                let consumed = before.len() - buf.len();
                if consumed < 2 || consumed as u64 > u64::from(max) {
                    return Err(format!(
                        "decoded {packet:?} from a frame of {consumed} bytes"
                    ));
                }
                let frame = &before[..consumed];
                check_prefixes(frame, v, max)?;
                check_packet(&packet, v, frame)
                    .map_err(|e| format!("{e}\n  packet: {packet:?}\n  frame: {frame:02x?}"))?;
                summary.packets += 1;
            }
            Ok(None) => {
                if buf != before {
                    return Err("Ok(None) consumed input".into());
                }
                summary.incomplete += usize::from(!buf.is_empty());
                return Ok(());
            }
            Err(e) => {
                // Every error must describe itself and map to a failure reason code.
                if e.to_string().is_empty() || !e.reason_code().is_error() {
                    return Err(format!("{e:?} has no message or a success reason code"));
                }
                summary.errors += 1;
                return Ok(());
            }
        }
    }
}

/// Every strict prefix of a frame that decodes is incomplete: `Ok(None)`, nothing consumed.
fn check_prefixes(frame: &[u8], v: ProtocolVersion, max: u32) -> Result<(), String> {
    // The first byte alone, the whole header (at most 5 bytes), and all but the last byte.
    for len in [1, frame.len().min(5), frame.len() - 1] {
        if len >= frame.len() {
            continue;
        }
        let mut prefix = BytesMut::from(&frame[..len]);
        let got = decode(&mut prefix, v, max);
        if got != Ok(None) || prefix.len() != len {
            return Err(format!(
                "prefix of {len} of a valid {}-byte frame gave {got:?}",
                frame.len()
            ));
        }
    }
    Ok(())
}

fn check_packet(p: &Packet, decoded_as: ProtocolVersion, frame: &[u8]) -> Result<(), String> {
    for w in VERSIONS {
        let expected = project(p, w);
        if w >= decoded_as && expected != Expected::Packet(Box::new(p.clone())) {
            return Err(format!("upgrading to {w:?} is lossy: {expected:?}"));
        }
        let got = round_trip(p, w);
        if got != expected {
            return Err(format!(
                "re-encoded as {w:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    if let Packet::Connect(c) = p {
        // A CONNECT carries its own version: the connection's does not matter.
        for w in VERSIONS {
            let got = decode(&mut BytesMut::from(frame), w, u32::MAX);
            if got != Ok(Some(p.clone())) {
                return Err(format!(
                    "the CONNECT decodes as {got:?} on a {w:?} connection"
                ));
            }
        }
        if connect_protocol_version(frame) != Some(c.protocol) {
            return Err("connect_protocol_version disagrees with decode".into());
        }
    }
    Ok(())
}

/// The outcome of encoding a packet in some version and decoding it back.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Packet(Box<Packet>),
    Encode(EncodeError),
    Decode(DecodeError),
    /// `encode` wrote a different number of bytes than `encoded_len` announced, or `decode`
    /// left some of them behind.
    Length {
        announced: usize,
        written: usize,
        left: usize,
    },
}

fn round_trip(p: &Packet, w: ProtocolVersion) -> Expected {
    let mut buf = BytesMut::new();
    if let Err(e) = p.encode(w, &mut buf) {
        return Expected::Encode(e);
    }
    let written = buf.len();
    let announced = p.encoded_len(w);
    let got = decode(&mut buf, w, u32::MAX);
    let left = buf.len();
    match got {
        Ok(Some(q)) if written == announced && left == 0 => Expected::Packet(Box::new(q)),
        Err(e) if written == announced => Expected::Decode(e),
        _ => Expected::Length {
            announced,
            written,
            left,
        },
    }
}

/// What `p` becomes when sent in version `w`: itself when `w` can carry all of it, otherwise
/// `p` without what `w` has no field for.
fn project(p: &Packet, w: ProtocolVersion) -> Expected {
    if w.is_v5() {
        return Expected::Packet(Box::new(p.clone()));
    }
    let packet = match p.clone() {
        Packet::Auth(_) => return Expected::Encode(EncodeError::NotInVersion),
        // Only MQTT 5 can stand a Topic Alias in for the topic.
        Packet::Publish(x) if x.topic.is_empty() => {
            return Expected::Decode(DecodeError::EmptyTopicName)
        }
        Packet::ConnAck(mut c) => {
            c.session_present &= w != ProtocolVersion::V3_1;
            c.reason_code = connack_code_v3(c.reason_code);
            c.properties = Default::default();
            Packet::ConnAck(c)
        }
        Packet::Publish(mut x) => {
            x.properties = Default::default();
            Packet::Publish(x)
        }
        Packet::PubAck(a) => Packet::PubAck(PublishAck::new(a.packet_id)),
        Packet::PubRec(a) => Packet::PubRec(PublishAck::new(a.packet_id)),
        Packet::PubRel(a) => Packet::PubRel(PublishAck::new(a.packet_id)),
        Packet::PubComp(a) => Packet::PubComp(PublishAck::new(a.packet_id)),
        Packet::Subscribe(mut s) => {
            s.properties = Default::default();
            for (_, o) in &mut s.filters {
                *o = SubscriptionOptions::with_qos(o.qos);
            }
            Packet::Subscribe(s)
        }
        Packet::SubAck(mut s) => {
            s.properties = Default::default();
            for c in &mut s.reason_codes {
                if c.is_error() {
                    *c = ReasonCode::UNSPECIFIED_ERROR;
                }
            }
            Packet::SubAck(s)
        }
        Packet::Unsubscribe(mut u) => {
            u.properties = Default::default();
            Packet::Unsubscribe(u)
        }
        Packet::UnsubAck(mut u) => {
            u.properties = Default::default();
            u.reason_codes.clear();
            Packet::UnsubAck(u)
        }
        Packet::Disconnect(_) => Packet::Disconnect(Default::default()),
        other @ (Packet::Connect(_) | Packet::PingReq | Packet::PingResp) => other,
    };
    Expected::Packet(Box::new(packet))
}

/// The reason code a 3.1.1 CONNACK return code decodes to, for the code `code` encodes to.
fn connack_code_v3(code: ReasonCode) -> ReasonCode {
    match ConnAck::return_code_v3(code) {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => ReasonCode::SERVER_UNAVAILABLE,
    }
}
