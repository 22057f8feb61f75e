//! Graceful shutdown under load: with publishers and subscribers busy on both shards,
//! `Broker::shutdown` returns within a bounded time; every MQTT 5 client gets DISCONNECT 0x8B
//! Server shutting down before the close, MQTT 3.1.1 clients a close; no will is published
//! (the clients did nothing wrong); and the process is left clean: no broker thread, socket or
//! listener remains.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coremq::protocol::{Packet, ProtocolVersion, PublishAck, QoS, ReasonCode};

use crate::common::{RawClient, TestBroker};
use crate::{alone, connect_packet, connect_with, eventually, publish_packet, subscribe, will};

/// What a load client saw before its connection ended.
#[derive(Debug, Default)]
struct Seen {
    /// The reason code of the DISCONNECT that preceded the close, if any.
    disconnect: Option<ReasonCode>,
    acknowledged: usize,
    received: usize,
    wills: usize,
}

/// Publishes QoS 1 messages to `load/{n}` one after another, acknowledging what it receives
/// (it subscribes to `load/#` and `will/#`), until the broker ends the connection.
fn load(mut client: RawClient, n: usize, rounds: &AtomicUsize) -> Seen {
    let mut seen = Seen::default();
    let mut id = 1u16;
    loop {
        let publish = publish_packet(&format!("load/{n}"), b"load", QoS::AtLeastOnce, id);
        try_send(&mut client, &publish);
        loop {
            match client.recv() {
                None => return seen,
                Some(Packet::Disconnect(d)) => {
                    seen.disconnect = Some(d.reason_code);
                    assert_eq!(client.recv(), None, "the close follows DISCONNECT");
                    return seen;
                }
                Some(Packet::PubAck(a)) if a.packet_id.get() == id => {
                    seen.acknowledged += 1;
                    break;
                }
                Some(Packet::Publish(p)) => {
                    if p.topic.as_str().starts_with("will/") {
                        seen.wills += 1;
                    }
                    seen.received += 1;
                    if let Some(pid) = p.packet_id {
                        try_send(&mut client, &Packet::PubAck(PublishAck::new(pid)));
                    }
                }
                Some(other) => panic!("client {n}: unexpected {other:?}"),
            }
        }
        rounds.fetch_add(1, Ordering::Relaxed);
        id = id % 60000 + 1;
    }
}

/// Sends `packet`, ignoring a failure: the broker may close the connection at any moment.
fn try_send(client: &mut RawClient, packet: &Packet) {
    let mut out = bytes::BytesMut::new();
    packet.encode(client.version, &mut out).unwrap();
    let _ = client.stream.write_all(&out);
}

/// Threads of this process that belong to broker shards (named `coremq-shard-N`: the executors
/// and their helper threads).
fn shard_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("coremq-shard"))
        .count()
}

/// Sockets this process has open.
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn graceful_shutdown_under_load_disconnects_everyone_and_returns() {
    let _guard = alone();
    // The executors of brokers that ran before are joined; their helper threads may still be
    // on their way out.
    eventually("earlier brokers' threads gone", shard_threads, |&n| n == 0);
    let sockets_before = sockets();
    let broker = TestBroker::start(2);
    assert!(shard_threads() >= 2);
    let addr = broker.addr;
    let rounds = AtomicUsize::new(0);
    let clients: Vec<(ProtocolVersion, RawClient)> = (0..6)
        .map(|n| {
            let v = if n < 4 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let mut c = connect_packet(
                v,
                &broker.id_on(n % 2, &format!("load{n}")),
                n.is_multiple_of(3),
            );
            c.will = Some(will(
                &format!("will/{n}"),
                "must not be published",
                QoS::AtMostOnce,
                false,
            ));
            let mut client = connect_with(&broker, c).0;
            subscribe(&mut client, "load/#", QoS::AtLeastOnce);
            subscribe(&mut client, "will/#", QoS::AtMostOnce);
            (v, client)
        })
        .collect();

    let TestBroker { broker, .. } = broker;
    let (seen, took) = thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(n, (v, client))| {
                let rounds = &rounds;
                (v, s.spawn(move || load(client, n, rounds)))
            })
            .collect();
        eventually(
            "load running",
            || rounds.load(Ordering::Relaxed),
            |&r| r >= 300,
        );
        let start = Instant::now();
        broker.shutdown();
        let took = start.elapsed();
        let seen: Vec<(ProtocolVersion, Seen)> = handles
            .into_iter()
            .map(|(v, h)| (v, h.join().unwrap()))
            .collect();
        (seen, took)
    });
    eprintln!("shutdown under load took {took:?}; clients saw {seen:?}");
    // The shards give connections 2 s to flush and close; the rest is thread joins.
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    for (v, s) in &seen {
        assert!(s.acknowledged > 0, "{s:?}");
        assert_eq!(s.wills, 0, "a will was published during shutdown: {s:?}");
        let expected = v.is_v5().then_some(ReasonCode::SERVER_SHUTTING_DOWN);
        assert_eq!(s.disconnect, expected, "{v:?}: {s:?}");
    }

    // Nothing listens any more, and the broker's threads and sockets are gone.
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening on {addr}"
    );
    eventually("the broker's threads gone", shard_threads, |&n| n == 0);
    // (glommio leaves one eventfd per executor open, DataDog/glommio#448, so sockets are what
    // is counted.)
    eventually("broker sockets closed", sockets, |&n| n <= sockets_before);
}
