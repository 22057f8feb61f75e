//! A subscriber that does not read, beside a fast one on the same topic: the fast one gets every
//! message, in order, as it is published; the slow one costs the broker a bounded amount of
//! memory (its outbound buffer and its session queue, never the flood); QoS 0 messages to it
//! are dropped and counted, QoS 1 messages wait in its queue (up to the queue limit, beyond it
//! dropped and counted) and arrive once it reads.

use std::time::Duration;

use coremq::protocol::{Packet, ProtocolVersion, QoS};

use crate::common::{RawClient, TestBroker};
use crate::{
    alone, beside, connect, connect_packet, eventually, handshake, numbered, ping, publish_packet,
    rss_kib, seq_of, soak, stats_when, subscribe,
};

each_version!(slow_subscriber_costs_bounded_memory_and_never_holds_up_a_fast_one);

/// A connected client whose socket receive buffer is as small as the kernel allows, so that it
/// stops the broker's writes after a few KiB when it does not read.
pub fn slow_reader(broker: &TestBroker, v: ProtocolVersion, client_id: &str) -> RawClient {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Set before connecting, so the advertised window is small from the start.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let mut client = RawClient::from_stream(socket.into(), v);
    handshake(&mut client, connect_packet(v, client_id, true));
    client
}

/// Payload size of the flood's messages.
const PAYLOAD: usize = 1024;
/// QoS 0 messages between two QoS 1 ones.
const ROUND: u32 = 16;
/// Flood volume at soak 1: 16 MiB, twice the memory bound below.
const FLOOD_MESSAGES: u32 = 16 * 1024;
/// Growth of the process's resident memory allowed during the flood: far above what the slow
/// subscriber may legitimately cost (16 KiB of outbound buffer, 100 queued messages of 1 KiB),
/// far below the flood.
const RSS_BOUND_KIB: u64 = 8 * 1024;

/// The publisher sends rounds of `ROUND` QoS 0 messages and one QoS 1 message, numbered, to
/// a topic both subscribers have; the fast subscriber (on the other shard) reads each round
/// before the next is sent. Returns the number of QoS 0 and QoS 1 messages sent.
fn flood(
    publisher: &mut RawClient,
    fast: &mut RawClient,
    messages: u32,
    first_seq: u32,
) -> (u32, u32) {
    let (mut qos0, mut qos1) = (0, 0);
    let mut seq = first_seq;
    let mut next_id = 1u16;
    while qos0 + qos1 < messages {
        for i in 0..=ROUND {
            let qos = if i == ROUND {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            publisher.send(&publish_packet(
                "flood/t",
                numbered(seq + i, PAYLOAD),
                qos,
                next_id,
            ));
        }
        match publisher.expect_packet() {
            Packet::PubAck(a) => assert_eq!(a.packet_id.get(), next_id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        next_id = next_id % 1000 + 1;
        // The fast subscriber gets the whole round, in order, before the next one is sent.
        for i in 0..=ROUND {
            let p = fast.expect_publish();
            assert_eq!(
                seq_of(&p),
                seq + i,
                "the fast subscriber's messages in order"
            );
            fast.acknowledge(&p);
        }
        seq += ROUND + 1;
        qos0 += ROUND;
        qos1 += 1;
    }
    (qos0, qos1)
}

fn slow_subscriber_costs_bounded_memory_and_never_holds_up_a_fast_one(v: ProtocolVersion) {
    let _guard = alone();
    let broker = TestBroker::start_with(2, |c| {
        c.max_outbound_buffer = 16 * 1024;
        c.max_inflight = 10;
        c.max_queued_messages = 100;
    });
    let mut publisher = connect(&broker, v, &broker.id_on(0, "publisher"), true);
    let mut fast = connect(&broker, v, &broker.id_on(1, "fast"), true);
    subscribe(&mut fast, "flood/#", QoS::AtLeastOnce);

    // Warm-up: the same flood without the slow subscriber, so that the allocator's pools and the
    // buffers the fast path needs are in place before the baseline.
    let messages = FLOOD_MESSAGES * soak() as u32;
    let (warm0, warm1) = flood(&mut publisher, &mut fast, messages / 4, 0);
    let seq = warm0 + warm1;
    let before = rss_kib();

    let mut slow = slow_reader(&broker, v, &broker.id_on(0, "slow"));
    subscribe(&mut slow, "flood/#", QoS::AtLeastOnce);
    let (qos0, qos1) = flood(&mut publisher, &mut fast, messages, seq);
    let after = rss_kib();
    eprintln!(
        "{v:?}: {qos0} QoS 0 + {qos1} QoS 1 messages of {PAYLOAD} bytes; RSS {before} KiB before \
         the flood, {after} KiB after"
    );
    assert!(
        after < before + RSS_BOUND_KIB,
        "resident memory grew from {before} KiB to {after} KiB during a flood of {} KiB",
        u64::from(qos0 + qos1) * PAYLOAD as u64 / 1024
    );
    let flooded = broker.broker.stats();
    assert!(flooded.drops.qos0_congested > 0, "{flooded:?}");
    // Other clients on the slow subscriber's shard are served.
    ping(&mut publisher);

    // The slow subscriber reads now, acknowledging as it goes, until a PINGREQ's answer comes
    // with no message before it: its queue is then empty and nothing is in flight (each
    // PUBACK, handled before the PINGREQ, would have moved a queued message into the window).
    let (mut got0, mut got1) = (0u32, 0u32);
    let (mut last0, mut last1) = (None, None);
    loop {
        slow.send(&Packet::PingReq);
        let mut round = 0;
        loop {
            let p = match slow.expect_packet() {
                Packet::PingResp => break,
                Packet::Publish(p) => p,
                other => panic!("expected PUBLISH or PINGRESP, got {other:?}"),
            };
            round += 1;
            slow.acknowledge(&p);
            let (last, got) = if p.qos == QoS::AtMostOnce {
                (&mut last0, &mut got0)
            } else {
                (&mut last1, &mut got1)
            };
            assert!(*last < Some(seq_of(&p)), "in order, no duplicates");
            *last = Some(seq_of(&p));
            *got += 1;
        }
        if round == 0 {
            break;
        }
    }
    // Every message to the slow subscriber arrived or was counted as dropped.
    let stats = stats_when(&broker, "drops accounted for", |s| {
        u64::from(got0) + s.drops.qos0_congested == u64::from(qos0)
            && u64::from(got1) + s.drops.queue_full == u64::from(qos1)
    });
    eprintln!(
        "{v:?}: the slow subscriber got {got0} QoS 0 and {got1} QoS 1 messages; dropped: {:?}",
        stats.drops
    );
    assert_eq!(stats.drops.qos0_offline + stats.drops.expired, 0);
    ping(&mut fast);
}

/// COREMQ_CLOSE_TIMEOUT: a connection taken over while its client reads nothing still has
/// messages queued for it; the broker tries to write them, and cuts the socket off after the
/// close timeout rather than keeping the connection (and its buffers) forever.
fn a_closing_connection_that_reads_nothing_is_cut_off_after_the_close_timeout(v: ProtocolVersion) {
    let _guard = beside();
    for (timeout, cut_off) in [
        (Duration::from_secs(3600), false),
        (Duration::from_millis(300), true),
    ] {
        let broker = TestBroker::start_with(2, |c| {
            c.close_timeout = timeout;
            c.max_outbound_buffer = 1 << 20;
        });
        let id = broker.id_on(0, "stuck");
        let mut stuck = slow_reader(&broker, v, &id);
        subscribe(&mut stuck, "stuck/t", QoS::AtMostOnce);
        let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
        // Far more than the 4 KiB receive window, the kernel's send buffer and the 1 MiB
        // outbound buffer take (8 MiB).
        for seq in 0..2048 {
            publisher.send(&publish_packet(
                "stuck/t",
                numbered(seq, 4096),
                QoS::AtMostOnce,
                1,
            ));
        }
        ping(&mut publisher);
        // Its outbound buffer is full (the rest of the flood was dropped for it).
        stats_when(&broker, "the stuck client congested", |s| {
            s.drops.qos0_congested > 0
        });
        // Takeover [MQTT-3.1.4-2]: the old connection must close, with writes still pending.
        let _new = connect(&broker, v, &id, true);
        // Sockets still open: the stuck one (closing), the publisher and the new connection.
        let open = || broker.broker.admitted_connections();
        if cut_off {
            eventually("the stuck connection cut off", open, |&n| n == 2);
        } else {
            std::thread::sleep(Duration::from_secs(1));
            assert_eq!(open(), 3, "still writing to the stuck client");
        }
        drop(stuck);
    }
}

each_version!(a_closing_connection_that_reads_nothing_is_cut_off_after_the_close_timeout);
