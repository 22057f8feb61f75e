//! Flow control (COREMQ_FLOW_CONTROL, `shard::flow`): a connected subscriber that keeps
//! acknowledging but falls behind holds its publisher back instead of losing acknowledged
//! QoS 1 messages; with flow control off, the same run overflows the queue.

use std::thread;

use coremq::protocol::{ProtocolVersion, QoS};

use crate::common::TestBroker;
use crate::{beside, connect, numbered, publish, seq_of, subscribe};

/// A publisher (its own thread, waiting for each PUBACK) sends `total` QoS 1 messages to a
/// subscriber on the other shard with a 2-message window and a 50-message queue, which reads
/// and acknowledges one message at a time, more slowly than the publisher publishes. Returns what the subscriber received and the drops.
fn run(flow_control: bool, total: u32) -> (Vec<u32>, u64) {
    let _guard = beside();
    let broker = TestBroker::start_with(2, |c| {
        c.max_inflight = 2;
        c.max_queued_messages = 50;
        c.flow_control = flow_control;
    });
    let v = ProtocolVersion::V3_1_1;
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "flow", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    let sender = thread::spawn(move || {
        for seq in 0..total {
            publish(&mut publisher, "flow", numbered(seq, 16), QoS::AtLeastOnce);
        }
        publisher
    });
    let mut got = Vec::new();
    let mut read_one = |got: &mut Vec<u32>| {
        let p = sub.expect_publish();
        // A consumer slower than the publisher, but consuming: it acknowledges everything,
        // taking a millisecond over each.
        thread::sleep(std::time::Duration::from_millis(1));
        sub.acknowledge(&p);
        got.push(seq_of(&p));
    };
    while !sender.is_finished() {
        read_one(&mut got);
    }
    // Every message is now delivered, pending or dropped; let the counters settle (shards
    // publish them every 20 ms), then read exactly what is still pending.
    thread::sleep(std::time::Duration::from_millis(200));
    let dropped = broker.broker.stats().drops.total();
    while (got.len() as u64) + dropped < u64::from(total) {
        read_one(&mut got);
    }
    let _publisher = sender.join().expect("publisher thread");
    (got, dropped)
}

#[test]
fn a_lagging_subscriber_that_acknowledges_loses_nothing() {
    let total = 500;
    let (got, dropped) = run(true, total);
    assert_eq!(
        dropped,
        0,
        "nothing dropped with flow control; got {}",
        got.len()
    );
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "every message, in order"
    );
}

#[test]
fn without_flow_control_the_queue_overflows() {
    // The same run with flow control off shows what the test above guards against.
    let total = 500;
    let (got, dropped) = run(false, total);
    assert!(
        dropped > 0,
        "the 50-message queue overflowed: got {}",
        got.len()
    );
    assert_eq!(got.len() as u64 + dropped, u64::from(total));
}
