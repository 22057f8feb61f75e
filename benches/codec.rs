//! Codec micro-benchmarks: decode and encode of PUBLISH (16 B, 1 KiB, 64 KiB payloads; MQTT 3.1.1
//! and 5), CONNECT with MQTT 5 properties, and SUBSCRIBE with 100 filters.
//!
//! Every input is built once, outside the timed closures, from fixed data (payload bytes from a
//! seeded xorshift), so runs compare.
//!
//! `decode` consumes its buffer, so each decode iteration first copies the frame into a fresh
//! `BytesMut` — as a connection's read buffer would hold it. That copy is part of the figure, and
//! each decode group also times the copy alone (`memcpy`), in the same run: decoding proper costs
//! `memcpy+decode` minus `memcpy`. Encoding appends to a reused, pre-sized `BytesMut` (a
//! connection's write buffer), cleared each iteration.

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use coremq::protocol::{
    decode, Connect, ConnectProperties, LastWill, MessageProperties, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, PublishProperties, QoS, RetainHandling, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName, WillProperties,
};

/// Large enough for every frame here.
const MAX_PACKET_SIZE: u32 = 1 << 20;

/// `n` deterministic pseudo-random bytes (xorshift64, fixed seed).
fn payload(n: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn s(v: &str) -> MqttString {
    MqttString::copy_from(v).unwrap()
}

fn publish(v: ProtocolVersion, payload_len: usize) -> Packet {
    let mut p = Publish::new(
        TopicName::from_static("sensors/building-7/floor-3/temperature").unwrap(),
        payload(payload_len),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = PacketId::new(42);
    if v.is_v5() {
        // What a typical MQTT 5 publisher sends along.
        p.properties = PublishProperties {
            topic_alias: NonZeroU16::new(7),
            subscription_identifiers: Vec::new(),
            message: MessageProperties {
                payload_format_indicator: Some(false),
                message_expiry_interval: Some(3600),
                content_type: Some(s("application/octet-stream")),
                user_properties: vec![(s("trace-id"), s("4bf92f3577b34da6"))],
                ..MessageProperties::default()
            },
        };
    }
    Packet::Publish(p)
}

fn connect_v5() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: s("bench-client-0001").into(),
        will: Some(LastWill {
            topic: TopicName::from_static("clients/bench-client-0001/status").unwrap(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(10),
                message: MessageProperties {
                    content_type: Some(s("text/plain")),
                    ..MessageProperties::default()
                },
            },
        }),
        username: Some(s("bench")),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
        properties: ConnectProperties {
            session_expiry_interval: Some(86_400),
            receive_maximum: NonZeroU16::new(1024),
            maximum_packet_size: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(64),
            request_response_information: Some(true),
            request_problem_information: Some(true),
            user_properties: vec![(s("region"), s("eu-west")), (s("app"), s("bench"))],
            authentication_method: None,
            authentication_data: None,
        },
    }))
}

fn subscribe_100(v: ProtocolVersion) -> Packet {
    let filters = (0..100)
        .map(|i| {
            let f = match i % 4 {
                0 => format!("sensors/{i}/+/temperature"),
                1 => format!("devices/{i}/#"),
                2 => format!("$share/workers/jobs/{i}/+"),
                _ => format!("exact/topic/number/{i}"),
            };
            let options = SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: v.is_v5() && i % 2 == 1,
                retain_handling: RetainHandling::SendAtSubscribe,
            };
            (TopicFilter::copy_from(&f).unwrap(), options)
        })
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(7).unwrap(),
        properties: if v.is_v5() {
            SubscribeProperties {
                subscription_identifier: NonZeroU32::new(12),
                user_properties: Vec::new(),
            }
        } else {
            SubscribeProperties::default()
        },
        filters,
    })
}

fn frame(p: &Packet, v: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    p.encode(v, &mut buf).unwrap();
    buf.freeze()
}

/// One case: a packet, its version, and how its throughput is counted.
struct Case {
    group: &'static str,
    param: &'static str,
    version: ProtocolVersion,
    packet: Packet,
    /// Counted per bench besides bytes: filters for SUBSCRIBE.
    elements: Option<u64>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (group, version) in [
        ("publish_v3.1.1", ProtocolVersion::V3_1_1),
        ("publish_v5", ProtocolVersion::V5),
    ] {
        for (param, len) in [("16B", 16), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
            out.push(Case {
                group,
                param,
                version,
                packet: publish(version, len),
                elements: None,
            });
        }
    }
    out.push(Case {
        group: "connect_v5",
        param: "properties+will",
        version: ProtocolVersion::V5,
        packet: connect_v5(),
        elements: None,
    });
    out.push(Case {
        group: "subscribe_v5",
        param: "100_filters",
        version: ProtocolVersion::V5,
        packet: subscribe_100(ProtocolVersion::V5),
        elements: Some(100),
    });
    out
}

fn throughput(case: &Case, frame: &Bytes) -> Throughput {
    match case.elements {
        Some(n) => Throughput::Elements(n),
        None => Throughput::Bytes(frame.len() as u64),
    }
}

fn bench_decode(c: &mut Criterion) {
    for case in cases() {
        let v = case.version;
        let frame = frame(&case.packet, v);
        // The decoder must give back the packet we built, or the figures mean nothing.
        assert_eq!(
            decode(&mut BytesMut::from(&frame[..]), v, MAX_PACKET_SIZE).unwrap(),
            Some(case.packet.clone())
        );
        let mut g = c.benchmark_group(format!("decode/{}", case.group));
        g.throughput(throughput(&case, &frame));
        // Baseline: the copy into a fresh read buffer that every decode iteration below pays.
        g.bench_with_input(
            BenchmarkId::new("memcpy", case.param),
            &frame,
            |b, frame| b.iter(|| BytesMut::from(black_box(&frame[..]))),
        );
        g.bench_with_input(
            BenchmarkId::new("memcpy+decode", case.param),
            &frame,
            |b, frame| {
                b.iter(|| {
                    let mut buf = BytesMut::from(black_box(&frame[..]));
                    decode(&mut buf, v, MAX_PACKET_SIZE)
                })
            },
        );
        g.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    for case in cases() {
        let v = case.version;
        let frame = frame(&case.packet, v);
        let mut g = c.benchmark_group(format!("encode/{}", case.group));
        g.throughput(throughput(&case, &frame));
        let mut buf = BytesMut::with_capacity(frame.len());
        g.bench_with_input(
            BenchmarkId::new("encode", case.param),
            &case.packet,
            |b, p| {
                b.iter(|| {
                    buf.clear();
                    black_box(p).encode(v, &mut buf).unwrap();
                    black_box(buf.len())
                })
            },
        );
        g.finish();
    }
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
