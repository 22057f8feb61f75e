//! A connection storm: thousands of short-lived clients on every shard, each connecting,
//! subscribing (plain, wildcard and shared filters of its own), publishing to itself across the
//! mesh and going away — by DISCONNECT, by a close without one, by a reset, or by ending a
//! persistent session with a clean reconnect. Afterwards connections, sessions and both
//! subscription tries (this shard's filters and the interest table of other shards') are back
//! to their baseline, and resident memory has not grown compared with a warm-up storm: no
//! session, subscription, trie node or buffer leaks.

use std::thread;

use coremq::protocol::{MqttString, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{RawClient, TestBroker};
use crate::{
    alone, connect, connect_packet, eventually, expect_message, handshake, kill, publish_packet,
    rss_kib, soak, stats_when, subscribe, subscribe_codes, tcp_from, will,
};

/// Cycles per storm at soak 1.
const CYCLES: usize = 3000;
/// Client threads.
const THREADS: usize = 4;
/// Resident memory growth allowed between the warm-up storm and the measured one: a leak of one
/// read buffer (16 KiB) per connection would take 48 MiB.
const RSS_BOUND_KIB: u64 = 16 * 1024;

/// One short-lived client, number `n`.
fn cycle(broker: &TestBroker, n: usize) {
    let v = if n.is_multiple_of(2) {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let id = format!("storm-{n}");
    let persistent = n % 5 == 4;
    let mut c = connect_packet(v, &id, !persistent);
    c.will = Some(will(
        &format!("storm/will/{n}"),
        "gone",
        QoS::AtMostOnce,
        false,
    ));
    let mut client = RawClient::from_stream(tcp_from(broker.addr, n), v);
    handshake(&mut client, c);
    let own = format!("storm/{n}/+");
    let mut filters = vec![
        (own.as_str(), QoS::AtLeastOnce),
        ("storm/all/#", QoS::AtMostOnce),
    ];
    let shared = format!("$share/g{}/storm/{n}/#", n % 7);
    if v.is_v5() {
        filters.push((shared.as_str(), QoS::AtMostOnce));
    }
    let codes = subscribe_codes(&mut client, &filters);
    assert!(codes.iter().all(|c| !c.is_error()), "{codes:?}");
    // Through the trie, and (for clients homed on the other shard) the interest table.
    let topic = format!("storm/{n}/x");
    client.send(&publish_packet(&topic, b"self", QoS::AtLeastOnce, 1));
    let mut got = 0;
    // Its own message (once per matching subscription kind: plain, and shared for MQTT 5) and
    // the PUBACK, in any order.
    let expected = if v.is_v5() { 3 } else { 2 };
    while got < expected {
        match client.expect_packet() {
            Packet::Publish(p) => {
                assert_eq!(p.topic.as_str(), topic);
                client.acknowledge(&p);
            }
            Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
            other => panic!("unexpected {other:?}"),
        }
        got += 1;
    }
    match n % 4 {
        0 => client.disconnect(),
        1 => drop(client),
        2 => kill(client),
        _ => {
            client.send(&Packet::PingReq);
            assert_eq!(client.expect_packet(), Packet::PingResp);
            drop(client);
        }
    }
    if persistent {
        // End the stored session: a clean reconnect replaces it, then goes away.
        let mut client = RawClient::from_stream(tcp_from(broker.addr, n + 1), v);
        handshake(&mut client, connect_packet(v, &id, true));
        client.disconnect();
    }
}

/// `cycles` cycles over `THREADS` threads, numbered from `first`.
fn storm(broker: &TestBroker, first: usize, cycles: usize) {
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for n in (first + t..first + cycles).step_by(THREADS) {
                    cycle(broker, n);
                }
            });
        }
    });
}

#[test]
fn connection_storm_returns_the_broker_to_its_baseline() {
    let _guard = alone();
    let broker = TestBroker::start(2);
    // Long-lived clients on both shards, subscribed, so the baseline has filters in both tries.
    let mut keepers: Vec<RawClient> = (0..2)
        .map(|shard| {
            let v = ProtocolVersion::V5;
            let mut k = connect(&broker, v, &broker.id_on(shard, "keeper"), true);
            subscribe(&mut k, &format!("keep/{shard}/#"), QoS::AtLeastOnce);
            k
        })
        .collect();
    let baseline = stats_when(&broker, "keepers in place", |s| {
        s.connections == 2 && s.local_filters == 2 && s.remote_filters == 2
    });

    let cycles = CYCLES * soak();
    storm(&broker, 0, cycles / 2);
    let settled = |what: &str| {
        let s = stats_when(&broker, what, |s| {
            s.connections == baseline.connections
                && s.sessions == baseline.sessions
                && s.local_filters == baseline.local_filters
                && s.remote_filters == baseline.remote_filters
        });
        eventually(
            "places under COREMQ_MAX_CONNECTIONS freed",
            || broker.broker.admitted_connections(),
            |&n| n == 2,
        );
        s
    };
    settled("after the warm-up storm");
    let warm = rss_kib();
    storm(&broker, cycles / 2, cycles);
    let after_stats = settled("after the storm");
    let after = rss_kib();
    eprintln!(
        "storm of {cycles} cycles: RSS {warm} KiB after the warm-up ({} cycles), {after} KiB \
         after; {after_stats:?}",
        cycles / 2
    );
    assert_eq!(after_stats.retained, 0);
    assert!(
        after < warm + RSS_BOUND_KIB,
        "resident memory grew from {warm} KiB to {after} KiB"
    );
    // The keepers are still served, across the mesh.
    let (a, b) = keepers.split_at_mut(1);
    let (k0, k1) = (&mut a[0], &mut b[0]);
    k0.send(&publish_packet(
        "keep/1/x",
        b"still here",
        QoS::AtMostOnce,
        1,
    ));
    expect_message(k1, "keep/1/x", b"still here");
    k1.send(&publish_packet(
        "keep/0/x",
        b"still here",
        QoS::AtMostOnce,
        1,
    ));
    expect_message(k0, "keep/0/x", b"still here");
}

/// Retained messages outlive their publishers' connections: each must cost the broker about its
/// own size (topic, payload, properties, on every shard's replica), not the read buffer it
/// arrived in [issue 7: copy long-lived small payloads out of the read buffer]. Publishers with
/// MQTT 5 properties (strings and binary data that are also slices of the read buffer) each leave
/// one retained message and go; then the messages are cleared and the index is empty again.
#[test]
fn retained_messages_of_departed_publishers_do_not_pin_their_read_buffers() {
    let _guard = alone();
    let broker = TestBroker::start(2);
    let publish_all = |first: usize, count: usize, payload: &[u8]| {
        for n in first..first + count {
            let v = if n.is_multiple_of(2) {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let mut client = RawClient::from_stream(tcp_from(broker.addr, n), v);
            handshake(
                &mut client,
                connect_packet(v, &format!("retainer-{n}"), true),
            );
            let Packet::Publish(mut p) =
                publish_packet(&format!("retained/{n}"), payload, QoS::AtLeastOnce, 1)
            else {
                unreachable!()
            };
            p.retain = true;
            // A large QoS 0 publish (to nobody) first grows this connection's read buffer to
            // 32 KiB, and the retained message is sent in the same write so it lands in that
            // buffer: kept as a slice, it would pin the whole 32 KiB.
            let mut both = bytes::BytesMut::new();
            publish_packet("ballast", [0u8; 32 * 1024], QoS::AtMostOnce, 0)
                .encode(v, &mut both)
                .unwrap();
            if v.is_v5() {
                let m = &mut p.properties.message;
                m.content_type = Some(MqttString::from_static("text/plain").unwrap());
                m.correlation_data = Some(bytes::Bytes::from_static(b"correlation"));
                m.user_properties.push((
                    MqttString::from_static("k").unwrap(),
                    MqttString::from_static("v").unwrap(),
                ));
            }
            Packet::Publish(p).encode(v, &mut both).unwrap();
            client.send_bytes(&both);
            assert!(matches!(client.expect_packet(), Packet::PubAck(_)));
            client.disconnect();
        }
    };
    let count = 1000 * soak();
    // Measured from the first round: a warm-up would hide a pin, since a pinned buffer freed by
    // the warm-up's clearing stays resident and is reused. RSS is a process-wide, noisy measure,
    // so the bound is loose — half of what a pin costs.
    let before = rss_kib();
    publish_all(count, count, b"retained");
    // Every shard holds a replica of every retained message.
    stats_when(&broker, "all retained", |s| s.retained == 2 * count);
    let after = rss_kib();
    let per_message = (after.saturating_sub(before)) * 1024 / count as u64;
    eprintln!(
        "{count} retained messages: RSS {before} KiB before, {after} KiB after ({per_message} bytes each)"
    );
    // A pinned read buffer would be 32 KiB a message (see `publish_all`).
    assert!(
        per_message < 16 * 1024,
        "{per_message} bytes per retained message"
    );
    publish_all(count, count, b"");
    let cleared = stats_when(&broker, "cleared", |s| s.retained == 0);
    assert_eq!((cleared.connections, cleared.sessions), (0, 0));
}
