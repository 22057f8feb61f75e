//! What happens at each limit flag: the client over the limit gets the answer the flag documents,
//! and everyone else keeps being served.

use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use coremq::protocol::{ConnAck, Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicName};

use crate::common::{hex, RawClient, TestBroker};
use crate::{
    beside, connect, connect_packet, eventually, expect_message, numbered, ping, publish, seq_of,
    stats_when, subscribe, subscribe_codes, will,
};

each_version!(
    max_connections_refuses_with_quota_exceeded_and_serves_the_others,
    max_packet_size_is_checked_on_the_fixed_header,
    max_inflight_holds_the_rest_in_the_queue_and_drops_beyond_it,
    max_queued_messages_drops_beyond_it_for_an_offline_session,
    max_queued_bytes_drops_beyond_it_for_an_offline_session,
    max_outbound_buffer_queues_qos1_for_a_slow_reader_until_it_reads,
    max_subscriptions_refuses_the_filters_over_it,
    max_topic_length_and_levels_refuse_longer_topics_and_filters,
);

/// The CONNACK a refused CONNECT gets, as `v` puts it on the wire.
pub(crate) fn refusal(v: ProtocolVersion, code: ReasonCode) -> Packet {
    // A 3.1.1 client reads the return code back as the reason code it stands for.
    let code = if v.is_v5() {
        code
    } else {
        match ConnAck::return_code_v3(code) {
            3 => ReasonCode::SERVER_UNAVAILABLE,
            other => panic!("unexpected return code {other}"),
        }
    };
    Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: code,
        properties: Default::default(),
    }))
}

/// COREMQ_MAX_CONNECTIONS: beyond it, CONNACK 0x97 Quota exceeded (3.1.1: return code 3, Server
/// unavailable) and a close; the admitted clients on both shards carry on, and a place freed by
/// a disconnect is given to the next client.
fn max_connections_refuses_with_quota_exceeded_and_serves_the_others(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| c.max_connections = 4);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let idle: Vec<RawClient> = (0..2)
        .map(|shard| connect(&broker, v, &broker.id_on(shard, "idle"), true))
        .collect();
    subscribe(&mut sub, "limits/connections", QoS::AtLeastOnce);
    assert_eq!(broker.broker.admitted_connections(), 4);

    for shard in 0..2 {
        let mut refused = RawClient::connect(broker.addr, v);
        refused.send(&Packet::Connect(Box::new(connect_packet(
            v,
            &broker.id_on(shard, "over"),
            true,
        ))));
        // [MQTT-3.2.2-5] the refusal is followed by a close.
        assert_eq!(
            refused.expect_close(),
            vec![refusal(v, ReasonCode::QUOTA_EXCEEDED)]
        );
    }
    publish(
        &mut publisher,
        "limits/connections",
        b"served",
        QoS::AtLeastOnce,
    );
    let p = expect_message(&mut sub, "limits/connections", b"served");
    sub.acknowledge(&p);

    // A freed place goes to the next client.
    for client in idle {
        client.disconnect();
    }
    eventually(
        "places freed",
        || broker.broker.admitted_connections(),
        |&n| n == 2,
    );
    let mut late = connect(&broker, v, &broker.id_on(0, "late"), true);
    ping(&mut late);
    ping(&mut sub);
}

/// COREMQ_MAX_PACKET_SIZE counts the whole packet, fixed header included: a packet of exactly
/// the limit is served; one byte more gets DISCONNECT 0x95 (3.1.1: a close). The check is on the
/// fixed header alone — the broker answers a header announcing 256 MiB without waiting for (or
/// buffering) the body, which never comes. A CONNECT over the limit is refused the same way
/// (CONNACK 0x95 when it can be read as MQTT 5, else a close).
fn max_packet_size_is_checked_on_the_fixed_header(v: ProtocolVersion) {
    let _guard = beside();
    const MAX: usize = 1024;
    let broker = TestBroker::start_with(2, |c| c.max_packet_size = MAX as u32);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "size", QoS::AtMostOnce);
    let sized = |len: usize| {
        (0..MAX)
            .map(|n| {
                Packet::Publish(Publish::new(
                    TopicName::from_static("size").unwrap(),
                    vec![b's'; n].into(),
                ))
            })
            .find(|p| p.encoded_len(v) == len)
            .unwrap()
    };

    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let at_limit = sized(MAX);
    publisher.send(&at_limit);
    assert_eq!(sub.expect_packet(), at_limit);
    publisher.send(&sized(MAX + 1));
    publisher.expect_disconnect(ReasonCode::PACKET_TOO_LARGE);

    for shard in 0..2 {
        let mut huge = connect(&broker, v, &broker.id_on(shard, "huge"), true);
        // PUBLISH, remaining length 268,435,455: the largest MQTT allows.
        huge.send_bytes(&hex("30 ff ff ff 7f"));
        huge.expect_disconnect(ReasonCode::PACKET_TOO_LARGE);
    }

    // In the CONNECT phase: a will too large for the limit.
    let mut big_connect = connect_packet(v, &broker.id_on(1, "big-connect"), true);
    big_connect.will = Some(will(
        "size/will",
        &"w".repeat(2 * MAX),
        QoS::AtMostOnce,
        false,
    ));
    let mut client = RawClient::connect(broker.addr, v);
    client.send(&Packet::Connect(Box::new(big_connect)));
    let expected = if v.is_v5() {
        vec![refusal(v, ReasonCode::PACKET_TOO_LARGE)]
    } else {
        Vec::new()
    };
    assert_eq!(client.expect_close(), expected);
    // A CONNECT header alone, announcing 256 MiB: nothing says which version; a close.
    let mut client = RawClient::connect(broker.addr, v);
    client.send_bytes(&hex("10 ff ff ff 7f"));
    assert_eq!(client.expect_close(), Vec::new());

    ping(&mut sub);
}

/// COREMQ_MAX_INFLIGHT: a QoS 1 subscriber that does not acknowledge gets that many messages,
/// then nothing; COREMQ_MAX_QUEUED_MESSAGES more wait in its session, the rest are dropped and
/// counted. Each PUBACK then releases the next message, in order, and later messages flow.
fn max_inflight_holds_the_rest_in_the_queue_and_drops_beyond_it(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_inflight = 3;
        c.max_queued_messages = 5;
        // The exact overflow is the point here; flow control (tests/faults/flow.rs) would hold
        // the publisher back instead.
        c.flow_control = false;
    });
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    subscribe(&mut sub, "inflight", QoS::AtLeastOnce);
    for seq in 0..12 {
        publish(
            &mut publisher,
            "inflight",
            numbered(seq, 8),
            QoS::AtLeastOnce,
        );
    }
    let window: Vec<Publish> = (0..3).map(|_| sub.expect_publish()).collect();
    assert_eq!(window.iter().map(seq_of).collect::<Vec<_>>(), [0, 1, 2]);
    sub.expect_silence(Duration::from_millis(200));
    let stats = stats_when(&broker, "4 dropped", |s| s.drops.queue_full == 4);
    assert_eq!(stats.drops.total(), 4, "{stats:?}");

    // Each acknowledgement opens the window for the next queued message.
    let mut pending = window;
    for expected in 3..8 {
        let done = pending.remove(0);
        sub.acknowledge(&done);
        let next = sub.expect_publish();
        assert_eq!(seq_of(&next), expected);
        pending.push(next);
    }
    for p in &pending {
        sub.acknowledge(p);
    }
    publish(
        &mut publisher,
        "inflight",
        numbered(100, 8),
        QoS::AtLeastOnce,
    );
    assert_eq!(seq_of(&sub.expect_publish()), 100);
}

/// COREMQ_MAX_QUEUED_MESSAGES for a persistent session while offline: the first messages are
/// kept and delivered on reconnect, in order; the rest are dropped and counted.
fn max_queued_messages_drops_beyond_it_for_an_offline_session(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| c.max_queued_messages = 4);
    let id = broker.id_on(0, "offline");
    let mut sub = connect(&broker, v, &id, false);
    subscribe(&mut sub, "queued", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    for seq in 0..10 {
        publish(&mut publisher, "queued", numbered(seq, 8), QoS::AtLeastOnce);
    }
    stats_when(&broker, "6 dropped", |s| s.drops.queue_full == 6);

    let mut sub = connect(&broker, v, &id, false);
    for seq in 0..4 {
        let p = sub.expect_publish();
        assert_eq!(seq_of(&p), seq);
        sub.acknowledge(&p);
    }
    sub.expect_silence(Duration::from_millis(200));
    publish(&mut publisher, "queued", numbered(10, 8), QoS::AtLeastOnce);
    assert_eq!(seq_of(&sub.expect_publish()), 10);
}

/// COREMQ_MAX_QUEUED_BYTES (topic + payload) for a persistent session while offline: messages
/// that would take the queue over it are dropped and counted, even with room for more messages.
fn max_queued_bytes_drops_beyond_it_for_an_offline_session(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| c.max_queued_bytes = 1024);
    let id = broker.id_on(1, "offline");
    let mut sub = connect(&broker, v, &id, false);
    // 12 bytes of topic + 300 of payload: three fit in 1 KiB (936 bytes), a fourth does not.
    subscribe(&mut sub, "queued/bytes", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    for seq in 0..10 {
        publish(
            &mut publisher,
            "queued/bytes",
            numbered(seq, 300),
            QoS::AtLeastOnce,
        );
    }
    stats_when(&broker, "7 dropped", |s| s.drops.queue_full == 7);

    let mut sub = connect(&broker, v, &id, false);
    for seq in 0..3 {
        let p = sub.expect_publish();
        assert_eq!(seq_of(&p), seq);
        sub.acknowledge(&p);
    }
    sub.expect_silence(Duration::from_millis(200));
    // Small messages still fit once the queue emptied.
    publish(
        &mut publisher,
        "queued/bytes",
        numbered(10, 8),
        QoS::AtLeastOnce,
    );
    assert_eq!(seq_of(&sub.expect_publish()), 10);
}

/// COREMQ_MAX_OUTBOUND_BUFFER: a QoS 1 subscriber that stops reading fills its socket and then
/// its outbound buffer. It then counts as a slow reader: QoS 0 messages to it are dropped and
/// counted, QoS 1 messages wait in its session queue (none dropped: the queue has room) and all
/// arrive, in order, once it reads again. The flood with a fast subscriber beside it is in
/// `slow_consumer`.
fn max_outbound_buffer_queues_qos1_for_a_slow_reader_until_it_reads(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_outbound_buffer = 4096;
        c.max_inflight = 65535;
        c.max_queued_messages = 100_000;
    });
    let mut slow = crate::slow_consumer::slow_reader(&broker, v, &broker.id_on(0, "slow"));
    subscribe(&mut slow, "outbound", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    // QoS 1 messages of 4 KiB, each 64th followed by a QoS 0 one, until a QoS 0 one is dropped:
    // the socket buffers and the outbound buffer are full.
    let (mut qos1, mut qos0) = (0u32, 0u32);
    while broker.broker.stats().drops.qos0_congested == 0 {
        assert!(
            qos1 < 16 * 1024,
            "64 MiB sent and the reader never counted as slow"
        );
        publish(
            &mut publisher,
            "outbound",
            numbered(qos1, 4096),
            QoS::AtLeastOnce,
        );
        qos1 += 1;
        if qos1.is_multiple_of(64) {
            publish(
                &mut publisher,
                "outbound",
                numbered(qos0, 8),
                QoS::AtMostOnce,
            );
            qos0 += 1;
        }
    }
    // A last QoS 1 message: when it arrives, every QoS 0 message that was not dropped has
    // arrived before it.
    publish(
        &mut publisher,
        "outbound",
        numbered(qos1, 8),
        QoS::AtLeastOnce,
    );
    qos1 += 1;
    let (mut got1, mut got0) = (0u32, 0u32);
    while got1 < qos1 {
        let p = slow.expect_publish();
        if p.qos == QoS::AtMostOnce {
            got0 += 1;
            continue;
        }
        assert_eq!(seq_of(&p), got1, "QoS 1 in order");
        got1 += 1;
        slow.acknowledge(&p);
    }
    ping(&mut slow);
    // Every QoS 0 message arrived or was counted as dropped; no QoS 1 message was dropped.
    let stats = stats_when(&broker, "QoS 0 accounted for", |s| {
        u64::from(got0) + s.drops.qos0_congested == u64::from(qos0)
    });
    assert_eq!(stats.drops.queue_full, 0, "{stats:?}");
}

/// COREMQ_MAX_SUBSCRIPTIONS: the filters of a SUBSCRIBE beyond the limit get 0x97 Quota exceeded
/// (3.1.1: 0x80 Failure), the others are granted; replacing an existing subscription does not
/// count, and an UNSUBSCRIBE makes room.
fn max_subscriptions_refuses_the_filters_over_it(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| c.max_subscriptions = 3);
    let over = if v.is_v5() {
        ReasonCode::QUOTA_EXCEEDED
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    };
    let granted = ReasonCode::granted(QoS::AtMostOnce);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let filters = ["q/1", "q/2", "q/3", "q/4", "q/5"].map(|f| (f, QoS::AtMostOnce));
    assert_eq!(
        subscribe_codes(&mut sub, &filters),
        [granted, granted, granted, over, over]
    );
    assert_eq!(
        subscribe_codes(
            &mut sub,
            &[("q/1", QoS::AtMostOnce), ("q/6", QoS::AtMostOnce)]
        ),
        [granted, over]
    );
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "q/4", b"refused filter", QoS::AtMostOnce);
    publish(&mut publisher, "q/3", b"granted filter", QoS::AtMostOnce);
    expect_message(&mut sub, "q/3", b"granted filter");

    sub.send(&Packet::Unsubscribe(coremq::protocol::Unsubscribe {
        packet_id: crate::packet_id(2),
        properties: Default::default(),
        filters: vec![coremq::protocol::TopicFilter::from_static("q/2").unwrap()],
    }));
    assert!(matches!(sub.expect_packet(), Packet::UnsubAck(_)));
    assert_eq!(
        subscribe_codes(&mut sub, &[("q/6", QoS::AtMostOnce)]),
        [granted]
    );
    publish(&mut publisher, "q/6", b"room made", QoS::AtMostOnce);
    expect_message(&mut sub, "q/6", b"room made");
}

/// COREMQ_MAX_TOPIC_LENGTH and COREMQ_MAX_TOPIC_LEVELS: topics and filters at the limits are
/// served; a longer filter gets SUBACK 0x8F Topic Filter invalid (3.1.1: 0x80), a longer PUBLISH
/// topic DISCONNECT 0x90 Topic Name invalid (3.1.1: a close), a longer will topic CONNACK 0x90
/// (3.1.1: return code 3).
fn max_topic_length_and_levels_refuse_longer_topics_and_filters(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_topic_length = 16;
        c.max_topic_levels = 4;
    });
    let invalid = if v.is_v5() {
        ReasonCode::TOPIC_FILTER_INVALID
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    };
    let granted = ReasonCode::granted(QoS::AtMostOnce);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let filters = [
        ("abcdefghijklmnop", QoS::AtMostOnce),  // 16 bytes
        ("abcdefghijklmnopq", QoS::AtMostOnce), // 17 bytes
        ("a/b/+/#", QoS::AtMostOnce),           // 4 levels
        ("a/b/c/d/#", QoS::AtMostOnce),         // 5 levels
    ];
    assert_eq!(
        subscribe_codes(&mut sub, &filters),
        [granted, invalid, granted, invalid]
    );
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    publish(&mut publisher, "abcdefghijklmnop", b"16", QoS::AtMostOnce);
    expect_message(&mut sub, "abcdefghijklmnop", b"16");
    publish(&mut publisher, "a/b/c/d", b"4 levels", QoS::AtMostOnce);
    expect_message(&mut sub, "a/b/c/d", b"4 levels");

    for topic in ["abcdefghijklmnopq", "a/b/c/d/e"] {
        let mut offender = connect(&broker, v, &broker.id_on(1, "long"), true);
        offender.send(&crate::publish_packet(topic, b"x", QoS::AtMostOnce, 1));
        offender.expect_disconnect(ReasonCode::TOPIC_NAME_INVALID);
    }
    let mut long_will = connect_packet(v, &broker.id_on(0, "will"), true);
    long_will.will = Some(will("a/b/c/d/e", "too deep", QoS::AtMostOnce, false));
    let mut client = RawClient::connect(broker.addr, v);
    client.send(&Packet::Connect(Box::new(long_will)));
    assert_eq!(
        client.expect_close(),
        vec![refusal(v, ReasonCode::TOPIC_NAME_INVALID)]
    );
    ping(&mut sub);
    ping(&mut publisher);
}

/// COREMQ_CONNECT_TIMEOUT against slowloris: connections that dribble a valid CONNECT a byte at
/// a time, slower than the deadline allows, are closed before it completes (no CONNACK ever
/// comes), while clients on both shards connect and are served meanwhile.
#[test]
fn connect_timeout_closes_connections_that_dribble_their_connect() {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| c.connect_timeout = Duration::from_millis(300));
    let mut dribblers: Vec<(RawClient, Vec<u8>)> = (0..16usize)
        .map(|i| {
            let v = if i.is_multiple_of(2) {
                ProtocolVersion::V3_1_1
            } else {
                ProtocolVersion::V5
            };
            let mut bytes = bytes::BytesMut::new();
            Packet::Connect(Box::new(connect_packet(v, &format!("dribbler-{i}"), true)))
                .encode(v, &mut bytes)
                .unwrap();
            (RawClient::connect(broker.addr, v), bytes.to_vec())
        })
        .collect();
    let longest = dribblers.iter().map(|(_, b)| b.len()).max().unwrap();
    // 60 ms a byte: ~1.2 s for a CONNECT of ~20 bytes, four times the deadline.
    for i in 0..longest {
        for (client, bytes) in &mut dribblers {
            if let Some(b) = bytes.get(i) {
                // The broker may have closed already: a failed write is expected.
                let _ = client.stream.write(&[*b]);
            }
        }
        if i.is_multiple_of(4) {
            let v = ProtocolVersion::V5;
            let mut honest = connect(&broker, v, &broker.id_on(i % 2, "honest"), true);
            ping(&mut honest);
        }
        sleep(Duration::from_millis(60));
    }
    for (mut client, _) in dribblers {
        assert_eq!(
            client.expect_close(),
            Vec::new(),
            "a dribbled CONNECT was served"
        );
    }
    let stats = stats_when(&broker, "no connection left", |s| s.connections == 0);
    assert_eq!(stats.sessions, 0);
    assert_eq!(broker.broker.admitted_connections(), 0);
}
