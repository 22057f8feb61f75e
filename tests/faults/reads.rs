//! How the broker reads sockets (`src/net/io.rs`): every connection of a shard reads into one
//! shared arena, frames larger than `ARENA_FRAME_MAX` (16 KiB) into a buffer of their own, and a
//! partial frame left waiting is copied out of the arena. Frames must arrive intact however they
//! are cut, and a stalled partial frame must not pin an arena chunk.

use std::thread::sleep;
use std::time::Duration;

use bytes::BytesMut;
use coremq::protocol::{ProtocolVersion, QoS};

use crate::common::TestBroker;
use crate::{
    alone, beside, connect, numbered, ping, publish, publish_packet, rss_kib, seq_of, subscribe,
};

/// Encodes a PUBLISH of `payload` the way `v` frames it.
fn frame(v: ProtocolVersion, topic: &str, payload: &[u8], qos: QoS, id: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    publish_packet(topic, payload, qos, id)
        .encode(v, &mut out)
        .expect("encode");
    out.to_vec()
}

/// 60 KiB of QoS 0 messages to a topic nobody reads: one arena's worth of reading, so that what
/// is read before and after it lands in different arena chunks.
fn arena_flood(v: ProtocolVersion) -> Vec<u8> {
    (0..60)
        .flat_map(|seq| frame(v, "nobody", &numbered(seq, 1000), QoS::AtMostOnce, 1))
        .collect()
}

/// Runs `round(0)`, `round(1)`, `round(2)` and returns the process's RSS growth (KiB) over each:
/// round 0 warms up (allocator, arena, table growth), round 1 is the baseline, round 2 the case
/// that must not cost more than the baseline.
fn rss_growth_by_round(mut round: impl FnMut(usize)) -> [u64; 3] {
    let mut grew = [0u64; 3];
    for (r, grew) in grew.iter_mut().enumerate() {
        let before = rss_kib();
        round(r);
        *grew = rss_kib().saturating_sub(before);
    }
    grew
}

/// Two publishers on the subscriber's shard interleave their frames cut at odd places (single
/// bytes, a header split from its body, several frames in one write), one of them sending
/// frames larger than the arena; the subscriber gets every payload intact and in order.
fn frames_cut_anywhere_and_larger_than_the_arena_arrive_intact(v: ProtocolVersion) {
    let _guard = beside();
    let broker = TestBroker::start(2);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    let mut small = connect(&broker, v, &broker.id_on(0, "small"), true);
    let mut large = connect(&broker, v, &broker.id_on(0, "large"), true);
    subscribe(&mut sub, "reads/#", QoS::AtMostOnce);

    // Sizes around the thresholds: the arena (64 KiB), the own-buffer cut-over (16 KiB).
    let large_sizes = [16 * 1024 + 1, 70 * 1024, 200 * 1024, 5];
    let mut small_stream: Vec<u8> = Vec::new();
    for seq in 0..40u32 {
        small_stream.extend(frame(
            v,
            "reads/small",
            &numbered(seq, 4 + seq as usize * 37),
            QoS::AtMostOnce,
            1,
        ));
    }
    let mut large_frames: Vec<Vec<u8>> = large_sizes
        .iter()
        .enumerate()
        .map(|(seq, &len)| {
            frame(
                v,
                "reads/large",
                &numbered(seq as u32, len),
                QoS::AtMostOnce,
                1,
            )
        })
        .collect();
    // Cut points for the small stream: single bytes first, then growing pieces.
    let mut cuts = Vec::new();
    let mut at = 0;
    let mut step = 1;
    while at < small_stream.len() {
        let end = (at + step).min(small_stream.len());
        cuts.push(at..end);
        at = end;
        step = if step < 64 { step + 1 } else { step * 2 };
    }
    let mut large_pieces = Vec::new();
    for f in large_frames.drain(..) {
        // Header and the first bytes alone, then 7 KiB pieces.
        let (head, rest) = f.split_at(3);
        large_pieces.push(head.to_vec());
        large_pieces.extend(rest.chunks(7 * 1024).map(<[u8]>::to_vec));
    }
    let rounds = cuts.len().max(large_pieces.len());
    for i in 0..rounds {
        if let Some(c) = cuts.get(i) {
            small.send_bytes(&small_stream[c.clone()]);
        }
        if let Some(p) = large_pieces.get(i) {
            large.send_bytes(p);
        }
        if i % 8 == 0 {
            // Let the broker read what is there, so frames really are cut across reads.
            sleep(Duration::from_millis(2));
        }
    }
    let (mut next_small, mut next_large) = (0u32, 0u32);
    while next_small < 40 || (next_large as usize) < large_sizes.len() {
        let p = sub.expect_publish();
        let seq = seq_of(&p);
        match p.topic.as_str() {
            "reads/small" => {
                assert_eq!(seq, next_small, "small messages in order");
                assert_eq!(
                    p.payload.as_ref(),
                    numbered(seq, 4 + seq as usize * 37).as_slice()
                );
                next_small += 1;
            }
            "reads/large" => {
                assert_eq!(seq, next_large, "large messages in order");
                let len = large_sizes[seq as usize];
                assert_eq!(p.payload.as_ref(), numbered(seq, len).as_slice());
                next_large += 1;
            }
            other => panic!("unexpected topic {other:?}"),
        }
    }
    ping(&mut small);
    ping(&mut large);
}

each_version!(frames_cut_anywhere_and_larger_than_the_arena_arrive_intact);

/// Connections that stop in the middle of a frame while others keep the shard's read arena
/// busy: each stalled partial frame is copied out of the arena, so it does not keep a 64 KiB
/// arena chunk alive (which would take `STALLED` × 64 KiB).
#[test]
fn a_stalled_partial_frame_does_not_pin_the_read_arena() {
    const STALLED: usize = 200;
    let _guard = alone();
    let v = ProtocolVersion::V3_1_1;
    let broker = TestBroker::start(2);
    let mut busy = connect(&broker, v, &broker.id_on(0, "busy"), true);
    let flood = arena_flood(v);
    let partial = frame(v, "reads/partial", &numbered(0, 100), QoS::AtMostOnce, 1);
    let mut stalled = Vec::with_capacity(3 * STALLED);
    // Round 1 holds connections that sent nothing, round 2 connections that stopped mid-frame.
    let grew = rss_growth_by_round(|round| {
        for i in 0..STALLED {
            let id = broker.id_on(0, &format!("stall{round}-{i}"));
            let mut c = connect(&broker, v, &id, true);
            if round != 1 {
                c.send_bytes(&partial[..partial.len() / 2]);
            }
            busy.send_bytes(&flood);
            ping(&mut busy);
            stalled.push(c);
        }
    });
    // Pinned arenas would add ~12.5 MiB.
    assert!(
        grew[2] < grew[1] + 4 * 1024,
        "RSS growth in KiB per {STALLED} connections (warm-up, idle, stalled mid-frame): {grew:?}"
    );
    // The stalled frames still complete.
    let mut sub = connect(&broker, v, &broker.id_on(1, "sub"), true);
    subscribe(&mut sub, "reads/partial", QoS::AtMostOnce);
    for c in stalled.iter_mut().skip(2 * STALLED).take(3) {
        c.send_bytes(&partial[partial.len() / 2..]);
        assert_eq!(seq_of(&sub.expect_publish()), 0);
    }
}

/// Persistent sessions that go offline with an unacknowledged QoS 1 message, each message read
/// into a different arena chunk (60 KiB of other traffic in between): going offline copies
/// the message out, so the sessions do not keep `SESSIONS` × 64 KiB of arenas alive.
#[test]
fn an_offline_sessions_unacknowledged_message_does_not_pin_the_read_arena() {
    const SESSIONS: usize = 200;
    let _guard = alone();
    let v = ProtocolVersion::V3_1_1;
    let broker = TestBroker::start(2);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    let flood = arena_flood(v);
    // Round 1 acknowledges before going offline (nothing in flight); round 2 goes offline with
    // the message unacknowledged.
    let grew = rss_growth_by_round(|round| {
        for i in 0..SESSIONS {
            let id = broker.id_on(0, &format!("off{round}-{i}"));
            let topic = format!("offline/{round}/{i}");
            let mut sub = connect(&broker, v, &id, false);
            subscribe(&mut sub, &topic, QoS::AtLeastOnce);
            publish(
                &mut publisher,
                &topic,
                numbered(i as u32, 10),
                QoS::AtLeastOnce,
            );
            publisher.send_bytes(&flood);
            ping(&mut publisher);
            let p = sub.expect_publish();
            if round == 1 {
                sub.acknowledge(&p);
            }
            sub.disconnect();
        }
    });
    // Pinned arenas would add ~12.5 MiB.
    assert!(
        grew[2] < grew[1] + 4 * 1024,
        "RSS growth in KiB per {SESSIONS} sessions (warm-up, acknowledged, in flight): {grew:?}"
    );
}
