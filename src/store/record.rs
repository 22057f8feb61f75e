//! The store's record format: what one line of a shard's log says, and how it is framed.
//!
//! A frame is `length: u32 LE | crc32: u32 LE | body`, the CRC (IEEE, `crc32fast`) over the body.
//! A body is a kind byte and its fields: integers little-endian, byte strings as a `u32` length
//! and the bytes, options as a 0/1 byte and the value. Times are wall-clock milliseconds since
//! the Unix epoch (an `Instant` means nothing after a restart); `Clock` converts.
//!
//! Worked example: `Done { client: "c", seq: 7 }` is the body `09 | 01 00 00 00 63 | 07 00 00 00
//! 00 00 00 00` (kind 9, the client id, the sequence number), framed as `0e 00 00 00 | crc | body`.
//! A reader stops at the first frame that is cut short (a torn write at the tail) or whose CRC or
//! contents do not check out, and reports how far the valid records reach.
//!
//! Pure: no I/O here (`dir.rs` reads and writes files).

use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::message::{Delivery, Message};
use crate::protocol::{
    ClientId, MessageProperties, MqttString, PacketId, ProtocolVersion, QoS, SubscriptionOptions,
    TopicFilter, TopicName,
};

/// Frame header bytes: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Largest body a reader accepts (a message is at most a packet, 256 MiB in MQTT).
pub const MAX_BODY: usize = 300 << 20;

/// One record of a shard's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of every log file: which shard wrote it, out of how many.
    Header {
        shard: u32,
        shards: u32,
    },
    /// A durable session's metadata (written when it connects and when it goes offline); it
    /// clears any delayed will (a `Will` record sets one).
    Session {
        client: ClientId,
        version: ProtocolVersion,
        username: Option<MqttString>,
        lifetime: Option<u32>,
        /// Wall-clock expiry while offline.
        expires_at: Option<u64>,
    },
    /// The session ended (expired, cleaned, or no longer durable): forget all of it.
    SessionEnd {
        client: ClientId,
    },
    Subscribe {
        client: ClientId,
        filter: MqttString,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    },
    Unsubscribe {
        client: ClientId,
        filter: MqttString,
    },
    /// A message entered the session (sent with `id`, or queued). Its expiry is wall-clock.
    Entered {
        client: ClientId,
        seq: u64,
        id: Option<PacketId>,
        message: Stored,
        delivery: Delivery,
    },
    Sent {
        client: ClientId,
        seq: u64,
        id: PacketId,
    },
    Released {
        client: ClientId,
        seq: u64,
    },
    Done {
        client: ClientId,
        seq: u64,
    },
    Inbound {
        client: ClientId,
        id: PacketId,
        add: bool,
    },
    /// A will waiting for its delay (`None`: no longer).
    Will {
        client: ClientId,
        will: Option<(Stored, u32, u64)>,
    },
    /// A retained message (empty payload: the topic's retained message is deleted).
    Retain {
        message: Stored,
    },
    /// The broker stopped cleanly after this record.
    Closed,
}

/// A message as stored: `Message` with a wall-clock expiry and no arrival time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: MessageProperties,
    pub publisher: ClientId,
    pub expires_at: Option<u64>,
}

/// Converts between `Instant`s and wall-clock milliseconds, from one reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    wall_ms: u64,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall_ms: wall_ms(SystemTime::now()),
        }
    }

    pub fn now_instant(&self) -> Instant {
        self.instant
    }

    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }

    pub fn to_wall(&self, t: Instant) -> u64 {
        if t >= self.instant {
            self.wall_ms
                .saturating_add(t.duration_since(self.instant).as_millis() as u64)
        } else {
            self.wall_ms
                .saturating_sub(self.instant.duration_since(t).as_millis() as u64)
        }
    }

    /// The `Instant` of a wall-clock time (one too far in the past to represent becomes "now":
    /// it is past either way).
    pub fn to_instant(&self, ms: u64) -> Instant {
        if ms >= self.wall_ms {
            self.instant + Duration::from_millis(ms - self.wall_ms)
        } else {
            self.instant
                .checked_sub(Duration::from_millis(self.wall_ms - ms))
                .unwrap_or(self.instant)
        }
    }

    pub fn store(&self, m: &Message) -> Stored {
        Stored {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            publisher: m.publisher.clone(),
            expires_at: m.expires_at.map(|t| self.to_wall(t)),
        }
    }

    pub fn load(&self, s: Stored) -> Message {
        Message {
            topic: s.topic,
            payload: s.payload,
            qos: s.qos,
            retain: s.retain,
            properties: s.properties,
            publisher: s.publisher,
            expires_at: s.expires_at.map(|ms| self.to_instant(ms)),
            received: self.instant,
        }
    }
}

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

mod kind {
    pub const HEADER: u8 = 1;
    pub const SESSION: u8 = 2;
    pub const SESSION_END: u8 = 3;
    pub const SUBSCRIBE: u8 = 4;
    pub const UNSUBSCRIBE: u8 = 5;
    pub const ENTERED: u8 = 6;
    pub const SENT: u8 = 7;
    pub const RELEASED: u8 = 8;
    pub const DONE: u8 = 9;
    pub const INBOUND: u8 = 10;
    pub const WILL: u8 = 11;
    pub const RETAIN: u8 = 12;
    pub const CLOSED: u8 = 13;
}

/// Appends `record`, framed, to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    let mut w = Writer(out);
    match record {
        Record::Header { shard, shards } => {
            w.u8(kind::HEADER);
            w.u32(*shard);
            w.u32(*shards);
        }
        Record::Session {
            client,
            version,
            username,
            lifetime,
            expires_at,
        } => {
            w.u8(kind::SESSION);
            w.str(client.as_str());
            w.u8(*version as u8);
            w.opt(username.as_ref(), |w, u| w.str(u.as_str()));
            w.opt(lifetime.as_ref(), |w, l| w.u32(*l));
            w.opt(expires_at.as_ref(), |w, t| w.u64(*t));
        }
        Record::SessionEnd { client } => {
            w.u8(kind::SESSION_END);
            w.str(client.as_str());
        }
        Record::Subscribe {
            client,
            filter,
            options,
            id,
        } => {
            w.u8(kind::SUBSCRIBE);
            w.str(client.as_str());
            w.str(filter.as_str());
            w.u8(options.to_byte(ProtocolVersion::V5));
            w.opt(id.as_ref(), |w, id| w.u32(id.get()));
        }
        Record::Unsubscribe { client, filter } => {
            w.u8(kind::UNSUBSCRIBE);
            w.str(client.as_str());
            w.str(filter.as_str());
        }
        Record::Entered {
            client,
            seq,
            id,
            message,
            delivery,
        } => {
            w.u8(kind::ENTERED);
            w.str(client.as_str());
            w.u64(*seq);
            w.opt(id.as_ref(), |w, id| w.u16(id.get()));
            w.message(message);
            w.delivery(delivery);
        }
        Record::Sent { client, seq, id } => {
            w.u8(kind::SENT);
            w.str(client.as_str());
            w.u64(*seq);
            w.u16(id.get());
        }
        Record::Released { client, seq } => {
            w.u8(kind::RELEASED);
            w.str(client.as_str());
            w.u64(*seq);
        }
        Record::Done { client, seq } => {
            w.u8(kind::DONE);
            w.str(client.as_str());
            w.u64(*seq);
        }
        Record::Inbound { client, id, add } => {
            w.u8(kind::INBOUND);
            w.str(client.as_str());
            w.u16(id.get());
            w.u8(u8::from(*add));
        }
        Record::Will { client, will } => {
            w.u8(kind::WILL);
            w.str(client.as_str());
            w.opt(will.as_ref(), |w, (m, delay, due)| {
                w.message(m);
                w.u32(*delay);
                w.u64(*due);
            });
        }
        Record::Retain { message } => {
            w.u8(kind::RETAIN);
            w.message(message);
        }
        Record::Closed => w.u8(kind::CLOSED),
    }
    let body_len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why reading stopped before the end of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The last frame is cut short (a write the crash interrupted).
    Torn,
    /// A frame's CRC does not match its body.
    Checksum,
    /// A frame checks out but its body does not parse (or is implausibly long).
    Malformed,
}

/// The records of a log, and where (and why) the valid part ends.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    /// Bytes of valid frames from the start.
    pub valid: usize,
    /// Why reading stopped early (`None`: every byte was a valid frame).
    pub damage: Option<Damage>,
}

/// Reads frames from the start of `data` until the end or the first damaged frame. Strings and
/// payloads are copied out (`data` is a whole file: slices would keep it alive).
pub fn decode_all(data: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < FRAME_HEADER {
            out.damage = Some(Damage::Torn);
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_BODY {
            out.damage = Some(Damage::Malformed);
            break;
        }
        if rest.len() < FRAME_HEADER + len {
            out.damage = Some(Damage::Torn);
            break;
        }
        let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(body) != crc {
            out.damage = Some(Damage::Checksum);
            break;
        }
        match decode_body(body) {
            Some(r) => out.records.push(r),
            None => {
                out.damage = Some(Damage::Malformed);
                break;
            }
        }
        at += FRAME_HEADER + len;
        out.valid = at;
    }
    out
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut r = Reader(body);
    let record = match r.u8()? {
        kind::HEADER => Record::Header {
            shard: r.u32()?,
            shards: r.u32()?,
        },
        kind::SESSION => Record::Session {
            client: r.client()?,
            version: ProtocolVersion::from_level(r.u8()?)?,
            username: r.opt(|r| r.string())?,
            lifetime: r.opt(|r| r.u32())?,
            expires_at: r.opt(|r| r.u64())?,
        },
        kind::SESSION_END => Record::SessionEnd {
            client: r.client()?,
        },
        kind::SUBSCRIBE => {
            let client = r.client()?;
            let filter = r.string()?;
            TopicFilter::new(filter.clone()).ok()?;
            Record::Subscribe {
                client,
                filter,
                options: SubscriptionOptions::from_byte(r.u8()?, ProtocolVersion::V5).ok()?,
                id: r.opt(|r| NonZeroU32::new(r.u32()?))?,
            }
        }
        kind::UNSUBSCRIBE => Record::Unsubscribe {
            client: r.client()?,
            filter: r.string()?,
        },
        kind::ENTERED => Record::Entered {
            client: r.client()?,
            seq: r.u64()?,
            id: r.opt(|r| r.packet_id())?,
            message: r.message()?,
            delivery: r.delivery()?,
        },
        kind::SENT => Record::Sent {
            client: r.client()?,
            seq: r.u64()?,
            id: r.packet_id()?,
        },
        kind::RELEASED => Record::Released {
            client: r.client()?,
            seq: r.u64()?,
        },
        kind::DONE => Record::Done {
            client: r.client()?,
            seq: r.u64()?,
        },
        kind::INBOUND => Record::Inbound {
            client: r.client()?,
            id: r.packet_id()?,
            add: r.bool()?,
        },
        kind::WILL => Record::Will {
            client: r.client()?,
            will: r.opt(|r| Some((r.message()?, r.u32()?, r.u64()?)))?,
        },
        kind::RETAIN => Record::Retain {
            message: r.message()?,
        },
        kind::CLOSED => Record::Closed,
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
            None => self.u8(0),
        }
    }
    fn message(&mut self, m: &Stored) {
        self.str(m.topic.as_str());
        self.bytes(&m.payload);
        self.u8(m.qos as u8);
        self.u8(u8::from(m.retain));
        self.str(m.publisher.as_str());
        self.opt(m.expires_at.as_ref(), |w, t| w.u64(*t));
        let p = &m.properties;
        self.opt(p.payload_format_indicator.as_ref(), |w, b| {
            w.u8(u8::from(*b))
        });
        self.opt(p.message_expiry_interval.as_ref(), |w, v| w.u32(*v));
        self.opt(p.content_type.as_ref(), |w, v| w.str(v.as_str()));
        self.opt(p.response_topic.as_ref(), |w, v| w.str(v.as_str()));
        self.opt(p.correlation_data.as_ref(), |w, v| w.bytes(v));
        self.u32(p.user_properties.len() as u32);
        for (k, v) in &p.user_properties {
            self.str(k.as_str());
            self.str(v.as_str());
        }
    }
    fn delivery(&mut self, d: &Delivery) {
        self.u8(d.qos as u8);
        self.u8(u8::from(d.retain));
        self.u32(d.subscription_ids.len() as u32);
        for id in &d.subscription_ids {
            self.u32(id.get());
        }
        self.opt(d.group.as_ref(), |w, g| w.str(g.as_str()));
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        self.take(n).map(Bytes::copy_from_slice)
    }
    fn string(&mut self) -> Option<MqttString> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        MqttString::copy_from(std::str::from_utf8(b).ok()?).ok()
    }
    fn client(&mut self) -> Option<ClientId> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        ClientId::copy_from(std::str::from_utf8(b).ok()?).ok()
    }
    fn packet_id(&mut self) -> Option<PacketId> {
        PacketId::new(self.u16()?)
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => f(self).map(Some),
            _ => None,
        }
    }
    fn message(&mut self) -> Option<Stored> {
        let topic = TopicName::new(self.string()?).ok()?;
        let payload = self.bytes()?;
        let qos = QoS::from_bits(self.u8()?).ok()?;
        let retain = self.bool()?;
        let publisher = self.client()?;
        let expires_at = self.opt(|r| r.u64())?;
        let payload_format_indicator = self.opt(|r| r.bool())?;
        let message_expiry_interval = self.opt(|r| r.u32())?;
        let content_type = self.opt(|r| r.string())?;
        let response_topic = self.opt(|r| TopicName::new(r.string()?).ok())?;
        let correlation_data = self.opt(|r| r.bytes())?;
        let n = self.u32()? as usize;
        let mut user_properties = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            user_properties.push((self.string()?, self.string()?));
        }
        Some(Stored {
            topic,
            payload,
            qos,
            retain,
            properties: MessageProperties {
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            },
            publisher,
            expires_at,
        })
    }
    fn delivery(&mut self) -> Option<Delivery> {
        let qos = QoS::from_bits(self.u8()?).ok()?;
        let retain = self.bool()?;
        let n = self.u32()? as usize;
        let mut subscription_ids = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            subscription_ids.push(NonZeroU32::new(self.u32()?)?);
        }
        let group = self.opt(|r| TopicFilter::new(r.string()?).ok())?;
        Some(Delivery {
            qos,
            retain,
            subscription_ids,
            group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Stored {
        Stored {
            topic: TopicName::copy_from("a/b").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: MessageProperties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                content_type: MqttString::copy_from("text/plain").ok(),
                response_topic: TopicName::copy_from("r/1").ok(),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![(
                    MqttString::copy_from("k").unwrap(),
                    MqttString::copy_from("v").unwrap(),
                )],
            },
            publisher: ClientId::copy_from("pub").unwrap(),
            expires_at: Some(1_700_000_000_123),
        }
    }

    fn client() -> ClientId {
        ClientId::copy_from("c").unwrap()
    }

    fn every_kind() -> Vec<Record> {
        let delivery = Delivery {
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![NonZeroU32::new(7).unwrap()],
            group: TopicFilter::copy_from("$share/g/a/#").ok(),
        };
        vec![
            Record::Header {
                shard: 1,
                shards: 2,
            },
            Record::Session {
                client: client(),
                version: ProtocolVersion::V5,
                username: MqttString::copy_from("u").ok(),
                lifetime: Some(3600),
                expires_at: Some(42),
            },
            Record::Session {
                client: client(),
                version: ProtocolVersion::V3_1_1,
                username: None,
                lifetime: None,
                expires_at: None,
            },
            Record::SessionEnd { client: client() },
            Record::Subscribe {
                client: client(),
                filter: MqttString::copy_from("a/+").unwrap(),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: crate::protocol::RetainHandling::DoNotSend,
                },
                id: NonZeroU32::new(9),
            },
            Record::Unsubscribe {
                client: client(),
                filter: MqttString::copy_from("a/+").unwrap(),
            },
            Record::Entered {
                client: client(),
                seq: 3,
                id: PacketId::new(65535),
                message: message(),
                delivery,
            },
            Record::Sent {
                client: client(),
                seq: 3,
                id: PacketId::new(1).unwrap(),
            },
            Record::Released {
                client: client(),
                seq: 3,
            },
            Record::Done {
                client: client(),
                seq: 3,
            },
            Record::Inbound {
                client: client(),
                id: PacketId::new(5).unwrap(),
                add: true,
            },
            Record::Will {
                client: client(),
                will: Some((message(), 30, 99)),
            },
            Record::Will {
                client: client(),
                will: None,
            },
            Record::Retain { message: message() },
            Record::Closed,
        ]
    }

    fn encode_all(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn every_record_kind_round_trips() {
        let records = every_kind();
        let bytes = encode_all(&records);
        let d = decode_all(&bytes);
        assert_eq!(d.damage, None);
        assert_eq!(d.valid, bytes.len());
        assert_eq!(d.records, records);
    }

    #[test]
    fn the_worked_example_is_byte_exact() {
        let mut out = Vec::new();
        encode(
            &Record::Done {
                client: client(),
                seq: 7,
            },
            &mut out,
        );
        let body = [9, 1, 0, 0, 0, b'c', 7, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(&out[..4], &[14, 0, 0, 0]);
        assert_eq!(&out[4..8], &crc32fast::hash(&body).to_le_bytes());
        assert_eq!(&out[8..], &body);
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record_before_it() {
        let records = every_kind();
        let bytes = encode_all(&records);
        let whole = encode_all(&records[..records.len() - 1]).len();
        // Every cut inside the last frame loses just that frame.
        for cut in whole + 1..bytes.len() {
            let d = decode_all(&bytes[..cut]);
            assert_eq!(d.damage, Some(Damage::Torn), "cut at {cut}");
            assert_eq!(d.valid, whole);
            assert_eq!(d.records.len(), records.len() - 1);
        }
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_mismatch_and_reading_stops_there() {
        let records = every_kind();
        let bytes = encode_all(&records);
        let first = encode_all(&records[..1]).len();
        let second = encode_all(&records[..2]).len();
        for at in first + FRAME_HEADER..second {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            let d = decode_all(&damaged);
            assert_eq!(d.damage, Some(Damage::Checksum), "flip at {at}");
            assert_eq!(d.valid, first);
            assert_eq!(d.records, records[..1]);
        }
    }

    #[test]
    fn an_implausible_length_is_malformed_not_an_allocation() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0; 16]);
        let d = decode_all(&bytes);
        assert_eq!(d.damage, Some(Damage::Malformed));
        assert_eq!(d.valid, 0);
    }

    #[test]
    fn a_valid_frame_with_a_bad_body_is_malformed() {
        // Kind 99 does not exist; and a Done record with bytes left over.
        for body in [
            vec![99u8],
            vec![9, 1, 0, 0, 0, b'c', 7, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let mut out = (body.len() as u32).to_le_bytes().to_vec();
            out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            out.extend_from_slice(&body);
            assert_eq!(decode_all(&out).damage, Some(Damage::Malformed));
        }
    }

    #[test]
    fn wall_clock_times_convert_both_ways() {
        let c = Clock::now();
        let later = c.now_instant() + Duration::from_secs(90);
        assert_eq!(c.to_wall(later), c.wall_ms() + 90_000);
        assert_eq!(c.to_instant(c.wall_ms() + 90_000), later);
        assert!(c.to_instant(0) <= c.now_instant(), "long past: past");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let d = decode_all(&data);
            proptest::prop_assert!(d.valid <= data.len());
        }

        #[test]
        fn messages_round_trip(topic in "[a-z]{1,8}(/[a-z]{1,8}){0,3}",
                               payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                               seq in proptest::num::u64::ANY,
                               expiry in proptest::option::of(proptest::num::u64::ANY)) {
            let mut m = message();
            m.topic = TopicName::copy_from(&topic).unwrap();
            m.payload = Bytes::from(payload);
            m.expires_at = expiry;
            let r = Record::Entered { client: client(), seq, id: None, message: m, delivery: Delivery::default() };
            let bytes = encode_all(std::slice::from_ref(&r));
            proptest::prop_assert_eq!(decode_all(&bytes).records, vec![r]);
        }
    }
}
