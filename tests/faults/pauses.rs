//! Subscribers that pause (issue 12): a QoS 0 subscriber that keeps up on average but stops
//! reading now and then — a garbage collection, a scheduling hiccup — loses nothing at a rate it
//! sustains; one that stops for longer than COREMQ_SLOW_READER_TIMEOUT is a slow reader, and
//! QoS 0 messages to it are dropped and counted; one that never reads is dropped for from then
//! on and never holds up the others. (That a never-reading subscriber costs at most
//! COREMQ_MAX_OUTBOUND_BUFFER is `slow_consumer`'s memory test.)
//!
//! The pausing reader sets a 16 KiB receive buffer, so its pauses are absorbed by the broker and
//! the broker's socket send buffer (up to 4 MiB here), not by a large receive window. The
//! publisher sends 1 KiB QoS 0 messages at a fixed rate.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use coremq::protocol::{ProtocolVersion, QoS};

use crate::common::{RawClient, TestBroker};
use crate::slow_consumer::slow_reader;
use crate::{alone, connect, connect_packet, handshake, numbered, ping, publish_packet, subscribe};

const PAYLOAD: usize = 1024;
/// Messages per second the publisher sends: 10 MB/s of payload.
const RATE: u32 = 10_000;

/// A subscriber on `topic` with a 16 KiB receive buffer; returns its socket for raw reading.
fn small_window_subscriber(
    broker: &TestBroker,
    v: ProtocolVersion,
    id: &str,
    topic: &str,
) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let mut client = RawClient::from_stream(socket.into(), v);
    handshake(&mut client, connect_packet(v, id, true));
    subscribe(&mut client, topic, QoS::AtMostOnce);
    client.stream
}

/// Reads PUBLISH frames of `PAYLOAD` bytes from `stream` until `expected` arrived or the stream
/// stays silent for 3 s; pauses for `pause` after each `every` of reading. Returns how many
/// arrived. Frames are counted by size: every one is a QoS 0 PUBLISH of the same topic.
fn read_with_pauses(
    mut stream: TcpStream,
    frame: usize,
    expected: u64,
    every: Duration,
    pause: Duration,
) -> u64 {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut next_pause = Instant::now() + every;
    while bytes / (frame as u64) < expected {
        if Instant::now() >= next_pause {
            std::thread::sleep(pause);
            next_pause = Instant::now() + every;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes += n as u64,
        }
    }
    bytes / frame as u64
}

/// Publishes `count` numbered QoS 0 messages to `topic` at `RATE` per second.
fn publish_at_rate(publisher: &mut RawClient, topic: &str, count: u32) {
    let start = Instant::now();
    for seq in 0..count {
        let due = start + Duration::from_secs_f64(f64::from(seq) / f64::from(RATE));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        publisher.send(&publish_packet(
            topic,
            numbered(seq, PAYLOAD),
            QoS::AtMostOnce,
            1,
        ));
    }
    // Everything was routed once the PINGRESP comes (one connection's packets in order).
    ping(publisher);
}

/// The size on the wire of one delivered message (the reader counts bytes).
fn frame_len(v: ProtocolVersion, topic: &str) -> usize {
    let body = 2 + topic.len() + PAYLOAD + usize::from(v.is_v5());
    1 + if body < 128 { 1 } else { 2 } + body
}

/// A pausing reader's run: its topic, whether a never-reading subscriber shares it, and how
/// long the reader pauses after each `every` of reading.
struct Pauses {
    topic: &'static str,
    with_stuck: bool,
    every: Duration,
    pause: Duration,
}

/// Runs the pausing reader beside a publisher at `RATE` for `count` messages. Returns what the
/// reader got and the QoS 0 drops the broker counted.
fn run(broker: &TestBroker, v: ProtocolVersion, count: u32, p: Pauses) -> (u64, u64) {
    let reader = small_window_subscriber(broker, v, &broker.id_on(0, "reader"), p.topic);
    // Never reads; 4 KiB receive buffer.
    let stuck = p.with_stuck.then(|| {
        let mut stuck = slow_reader(broker, v, &broker.id_on(0, "stuck"));
        subscribe(&mut stuck, p.topic, QoS::AtMostOnce);
        stuck
    });
    let mut publisher = connect(broker, v, &broker.id_on(1, "publisher"), true);
    let frame = frame_len(v, p.topic);
    let reading = std::thread::spawn(move || {
        read_with_pauses(reader, frame, u64::from(count), p.every, p.pause)
    });
    publish_at_rate(&mut publisher, p.topic, count);
    let got = reading.join().unwrap();
    ping(&mut publisher);
    let dropped = broker.broker.stats().drops.qos0_congested;
    drop(stuck);
    (got, dropped)
}

/// Pauses of `pause` after each 700 ms of reading, beside a subscriber that never reads.
fn beside_stuck(pause: Duration) -> Pauses {
    Pauses {
        topic: "pauses/t",
        with_stuck: true,
        every: Duration::from_millis(700),
        pause,
    }
}

fn a_reading_subscriber_that_pauses_loses_nothing_a_stuck_one_is_dropped_for(v: ProtocolVersion) {
    let _guard = alone();
    // 3 s at 10 MB/s; pauses of 600 ms (6 MB behind each time, more than the kernel's buffers
    // hold), well within the default 1 s slow-reader timeout.
    let count = 3 * RATE;
    let pause = Duration::from_millis(600);
    let broker = TestBroker::start(2);
    let (got, dropped) = run(&broker, v, count, beside_stuck(pause));
    eprintln!("{v:?}: default limits: the pausing reader got {got} of {count}; {dropped} dropped");
    assert_eq!(got, u64::from(count), "the pausing reader lost messages");
    // The subscriber that never reads was a slow reader after 1 s: messages to it dropped.
    assert!(dropped > 0, "nothing dropped for the stuck subscriber");

    // The same run when a full socket makes a slow reader at once (bytes alone decide, as before
    // COREMQ_SLOW_READER_TIMEOUT): the pauses cost the reader messages, so the run above is one
    // where judging by time matters.
    let broker = TestBroker::start_with(2, |c| c.slow_reader_timeout = Duration::ZERO);
    let (got, dropped) = run(&broker, v, count, beside_stuck(pause));
    eprintln!("{v:?}: timeout 0: the pausing reader got {got} of {count}; {dropped} dropped");
    assert!(got < u64::from(count), "no loss even without the timeout");
}

each_version!(a_reading_subscriber_that_pauses_loses_nothing_a_stuck_one_is_dropped_for);

/// A subscriber that stops reading for longer than the slow-reader timeout is a slow reader:
/// QoS 0 messages to it are dropped meanwhile, every one counted, and it gets the rest.
#[test]
fn a_pause_longer_than_the_slow_reader_timeout_drops_qos0_counted() {
    let _guard = alone();
    let v = ProtocolVersion::V5;
    let broker = TestBroker::start_with(2, |c| {
        c.slow_reader_timeout = Duration::from_millis(300);
    });
    let count = 2 * RATE;
    // Pauses of 1.2 s after each 300 ms of reading.
    let pauses = Pauses {
        topic: "pauses/long",
        with_stuck: false,
        every: Duration::from_millis(300),
        pause: Duration::from_millis(1200),
    };
    let (got, dropped) = run(&broker, v, count, pauses);
    eprintln!("got {got} of {count}; {dropped} dropped");
    assert!(dropped > 0, "nothing dropped during a 1.2 s pause");
    assert_eq!(
        got + dropped,
        u64::from(count),
        "every message arrived or was counted"
    );
}
