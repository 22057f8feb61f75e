//! The store (COREMQ_DATA_DIR, issue 14) across restarts of an in-process broker: persistent
//! sessions with their subscriptions, queued and in-flight QoS 1/2 messages, inbound QoS 2 ids,
//! retained messages, session expiry and delayed wills come back after a graceful shutdown, also
//! with another shard count; damaged data files (truncated, bytes flipped, at many offsets) never
//! keep the broker from starting. The `kill -9` crash loop with the real binary is `crash.rs`.

use std::path::Path;
use std::time::Duration;

use coremq::config::Config;
use coremq::protocol::{Packet, ProtocolVersion, PublishAck, QoS};

use crate::common::{RawClient, TempDir, TestBroker};
use crate::{
    beside, connect, connect_packet, connect_with, expect_message, handshake, packet_id, publish,
    publish_packet, subscribe, will,
};

each_version!(
    queued_messages_and_subscriptions_survive_a_restart,
    in_flight_messages_are_resent_after_a_restart,
    inbound_qos2_id_survives_a_restart,
);

/// A retained PUBLISH of `payload` to `topic` (packet id 1 unless QoS 0).
fn retained(topic: &str, payload: &[u8], qos: QoS) -> Packet {
    let mut p = publish_packet(topic, payload, qos, 1);
    if let Packet::Publish(p) = &mut p {
        p.retain = true;
    }
    p
}

/// A broker with `shards` shards keeping its state in `dir`.
fn durable(shards: usize, dir: &Path) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::start_with(shards, move |c: &mut Config| c.data_dir = Some(dir))
}

fn queued_messages_and_subscriptions_survive_a_restart(v: ProtocolVersion) {
    let _guard = beside();
    let dir = TempDir::new("store-queued");
    let sub_id;
    {
        let broker = durable(2, &dir.path);
        sub_id = broker.id_on(1, "sub");
        let mut sub = connect(&broker, v, &sub_id, false);
        subscribe(&mut sub, "q/#", QoS::ExactlyOnce);
        sub.disconnect();
        let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
        publish(&mut publisher, "q/1", b"one", QoS::AtLeastOnce);
        publish(&mut publisher, "q/2", b"two", QoS::ExactlyOnce);
        publish(&mut publisher, "q/0", b"zero", QoS::AtMostOnce);
        publisher.disconnect();
        broker.broker.shutdown();
    }
    // Back with another shard count: the session is re-homed (its home shard may change).
    for shards in [1, 3] {
        let broker = durable(shards, &dir.path);
        let mut sub = RawClient::connect(broker.addr, v);
        let ack = handshake(&mut sub, connect_packet(v, &sub_id, false));
        assert!(ack.session_present, "[MQTT-3.2.2-2] the session is back");
        if shards == 1 {
            // [MQTT-3.1.2-5] the QoS 1/2 messages that arrived while it was offline; QoS 0 was
            // not queued (COREMQ_QUEUE_QOS0 is off).
            let p = expect_message(&mut sub, "q/1", b"one");
            sub.acknowledge(&p);
            let p = expect_message(&mut sub, "q/2", b"two");
            sub.acknowledge(&p);
            sub.expect_silence(Duration::from_millis(200));
        }
        // The subscription is back too: a message published now reaches it, from every shard.
        for home in 0..shards {
            let mut publisher = connect(&broker, v, &broker.id_on(home, "pub"), true);
            publish(
                &mut publisher,
                "q/later",
                format!("from {home}"),
                QoS::AtLeastOnce,
            );
            let p = expect_message(&mut sub, "q/later", format!("from {home}"));
            sub.acknowledge(&p);
        }
        sub.disconnect();
        broker.broker.shutdown();
    }
}

fn in_flight_messages_are_resent_after_a_restart(v: ProtocolVersion) {
    let _guard = beside();
    let dir = TempDir::new("store-inflight");
    let broker = durable(2, &dir.path);
    let sub_id = broker.id_on(1, "sub");
    let mut sub = connect(&broker, v, &sub_id, false);
    subscribe(&mut sub, "f/#", QoS::ExactlyOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    publish(&mut publisher, "f/1", b"one", QoS::AtLeastOnce);
    publish(&mut publisher, "f/2", b"two", QoS::ExactlyOnce);
    let first = expect_message(&mut sub, "f/1", b"one");
    let second = expect_message(&mut sub, "f/2", b"two");
    // The QoS 2 one gets as far as PUBREL: the broker must resend the PUBREL, not the PUBLISH.
    let id2 = second.packet_id.unwrap();
    sub.send(&Packet::PubRec(PublishAck::new(id2)));
    assert_eq!(sub.expect_packet(), Packet::PubRel(PublishAck::new(id2)));
    // Unacknowledged when the broker stops.
    drop(publisher);
    drop(sub);
    broker.broker.shutdown();

    let broker = durable(2, &dir.path);
    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &sub_id, false)).session_present);
    // [MQTT-4.4.0-1] unacknowledged PUBLISH resent with DUP, same packet id; PUBREL resent.
    let again = sub.expect_publish();
    assert_eq!(
        (again.topic.as_str(), &again.payload[..]),
        ("f/1", &b"one"[..])
    );
    assert!(again.dup, "[MQTT-3.3.1-1] a resent PUBLISH has DUP set");
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(sub.expect_packet(), Packet::PubRel(PublishAck::new(id2)));
    sub.acknowledge(&again);
    sub.send(&Packet::PubComp(PublishAck::new(id2)));
    sub.expect_silence(Duration::from_millis(200));
    sub.disconnect();
    broker.broker.shutdown();

    // Acknowledged ones are gone for good.
    let broker = durable(2, &dir.path);
    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &sub_id, false)).session_present);
    sub.expect_silence(Duration::from_millis(300));
}

fn inbound_qos2_id_survives_a_restart(v: ProtocolVersion) {
    let _guard = beside();
    let dir = TempDir::new("store-inbound");
    let broker = durable(2, &dir.path);
    let mut watcher = connect(&broker, v, &broker.id_on(0, "watcher"), false);
    subscribe(&mut watcher, "x/#", QoS::AtLeastOnce);
    let pub_id = broker.id_on(1, "pub");
    let mut publisher = connect(&broker, v, &pub_id, false);
    publisher.send(&publish_packet(
        "x/once",
        b"exactly once",
        QoS::ExactlyOnce,
        7,
    ));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubRec(PublishAck::new(packet_id(7)))
    );
    let p = expect_message(&mut watcher, "x/once", b"exactly once");
    watcher.acknowledge(&p);
    drop(publisher);
    watcher.disconnect();
    broker.broker.shutdown();

    let broker = durable(2, &dir.path);
    let mut watcher = RawClient::connect(broker.addr, v);
    assert!(
        handshake(
            &mut watcher,
            connect_packet(v, &broker.id_on(0, "watcher"), false)
        )
        .session_present
    );
    let mut publisher = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut publisher, connect_packet(v, &pub_id, false)).session_present);
    // [MQTT-4.3.3-9] the resent PUBLISH is not delivered again: its id still awaits PUBREL.
    let mut again = publish_packet("x/once", b"exactly once", QoS::ExactlyOnce, 7);
    if let Packet::Publish(p) = &mut again {
        p.dup = true;
    }
    publisher.send(&again);
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubRec(PublishAck::new(packet_id(7)))
    );
    publisher.send(&Packet::PubRel(PublishAck::new(packet_id(7))));
    assert_eq!(
        publisher.expect_packet(),
        Packet::PubComp(PublishAck::new(packet_id(7)))
    );
    watcher.expect_silence(Duration::from_millis(300));
}

#[test]
fn retained_messages_survive_a_restart_and_deletions_stay_deleted() {
    let _guard = beside();
    let v = ProtocolVersion::V5;
    let dir = TempDir::new("store-retained");
    {
        let broker = durable(2, &dir.path);
        let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
        // The empty one deletes r/b [MQTT-3.3.1-10].
        for (topic, payload) in [
            ("r/a", "1"),
            ("r/b", "2"),
            ("r/c", "3"),
            ("r/a", "4"),
            ("r/b", ""),
        ] {
            publisher.send(&retained(topic, payload.as_bytes(), QoS::AtLeastOnce));
            publisher.finish_publish(packet_id(1), QoS::AtLeastOnce);
        }
        publisher.disconnect();
        broker.broker.shutdown();
    }
    let broker = durable(3, &dir.path);
    for home in 0..3 {
        let mut sub = connect(&broker, v, &broker.id_on(home, "sub"), true);
        subscribe(&mut sub, "r/#", QoS::AtLeastOnce);
        let mut got = Vec::new();
        for _ in 0..2 {
            let p = sub.expect_publish();
            assert!(p.retain, "[MQTT-3.3.1-6] sent with the retain flag");
            got.push(format!(
                "{}={}",
                p.topic.as_str(),
                String::from_utf8_lossy(&p.payload)
            ));
            sub.acknowledge(&p);
        }
        got.sort();
        assert_eq!(got, ["r/a=4", "r/c=3"], "on shard {home}");
        sub.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn session_expiry_counts_across_a_restart() {
    let _guard = beside();
    let v = ProtocolVersion::V5;
    let dir = TempDir::new("store-expiry");
    let broker = durable(2, &dir.path);
    let mut short = connect_packet(v, &broker.id_on(0, "short"), false);
    short.properties.session_expiry_interval = Some(1);
    let mut long = connect_packet(v, &broker.id_on(1, "long"), false);
    long.properties.session_expiry_interval = Some(600);
    let (c, _) = connect_with(&broker, short.clone());
    c.disconnect();
    let (c, _) = connect_with(&broker, long.clone());
    c.disconnect();
    broker.broker.shutdown();
    std::thread::sleep(Duration::from_millis(1500));

    let broker = durable(2, &dir.path);
    // [MQTT-3.1.2-23] the session ended when its expiry interval passed, restart or not.
    let mut c = RawClient::connect(broker.addr, v);
    assert!(!handshake(&mut c, short).session_present);
    let mut c = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut c, long).session_present);
}

#[test]
fn a_delayed_will_goes_out_after_a_restart() {
    let _guard = beside();
    let v = ProtocolVersion::V5;
    let dir = TempDir::new("store-will");
    let broker = durable(2, &dir.path);
    let mut c = connect_packet(v, &broker.id_on(1, "dying"), false);
    c.properties.session_expiry_interval = Some(600);
    let mut w = will("w/dying", "gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(2);
    c.will = Some(w);
    let (client, _) = connect_with(&broker, c);
    crate::kill(client);
    crate::eventually(
        "the connection ended",
        || broker.broker.stats().connections,
        |&n| n == 0,
    );
    broker.broker.shutdown();

    let broker = durable(2, &dir.path);
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), true);
    subscribe(&mut sub, "w/#", QoS::AtLeastOnce);
    sub.expect_silence(Duration::from_millis(500));
    // [MQTT-3.1.3-9] after its delay, counted from the disconnect, not from the restart.
    expect_message(&mut sub, "w/dying", b"gone");
}

/// Data written by a broker, with every kind of record.
fn fill(dir: &Path) {
    let v = ProtocolVersion::V5;
    let broker = durable(2, dir);
    for home in 0..2 {
        let mut sub = connect(&broker, v, &broker.id_on(home, "sub"), false);
        subscribe(&mut sub, "c/#", QoS::ExactlyOnce);
        sub.disconnect();
    }
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    for i in 0..20 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let topic = format!("c/{i}");
        let payload = format!("m{i}");
        if i % 5 == 0 {
            publisher.send(&retained(&topic, payload.as_bytes(), qos));
        } else {
            publisher.send(&publish_packet(&topic, payload, qos, 1));
        }
        publisher.finish_publish(packet_id(1), qos);
    }
    publisher.disconnect();
    broker.broker.shutdown();
}

/// Every file the store wrote, with its content.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((p, data));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn damaged_data_files_never_keep_the_broker_from_starting() {
    let _guard = beside();
    let v = ProtocolVersion::V5;
    let pristine = TempDir::new("store-pristine");
    fill(&pristine.path);
    let originals = files(&pristine.path);
    let logs: Vec<_> = originals
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(logs.len(), 2, "one log per shard: {originals:?}");
    let mut cases = 0;
    for (victim, content) in &originals {
        let len = content.len();
        // Offsets spread over the file: the first frame's header, the middle, the last bytes.
        let mut offsets: Vec<usize> = (0..8).map(|k| k * len / 8).collect();
        offsets.extend([1, 5, 9, len.saturating_sub(1), len.saturating_sub(3)]);
        offsets.retain(|&o| o < len.max(1));
        offsets.dedup();
        for (k, &at) in offsets.iter().enumerate() {
            for flip in [false, true] {
                if content.is_empty() && flip {
                    continue;
                }
                let dir = TempDir::new("store-damaged");
                for (p, data) in &originals {
                    let to = dir.path.join(p.strip_prefix(&pristine.path).unwrap());
                    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                    let mut data = data.clone();
                    if p == victim {
                        if flip {
                            data[at] ^= 0x5a;
                        } else {
                            data.truncate(at);
                        }
                    }
                    std::fs::write(&to, data).unwrap();
                }
                cases += 1;
                // It starts, and serves: a fresh client publishes and receives.
                let broker = durable(2, &dir.path);
                let mut c = connect(&broker, v, &format!("probe-{k}"), true);
                subscribe(&mut c, "probe", QoS::AtLeastOnce);
                let mut p = connect(&broker, v, "probe-pub", true);
                publish(&mut p, "probe", b"alive", QoS::AtLeastOnce);
                expect_message(&mut c, "probe", b"alive");
                // A damaged log loses at most what follows the damage: the other log's durable
                // subscriber is whole, beside the two probes.
                let stats =
                    crate::stats_when(&broker, "the probes counted", |s| s.connections == 2);
                assert!(
                    stats.sessions >= 3,
                    "{victim:?} at {at} (flip {flip}): {stats:?}"
                );
                drop(c);
                drop(p);
                broker.broker.shutdown();
            }
        }
    }
    assert!(cases >= 20, "only {cases} damaged copies tried");

    // Undamaged, everything is there: 2 durable subscribers, 4 retained messages (a replica on
    // each shard: 8 in the sum).
    let broker = durable(2, &pristine.path);
    let stats = crate::stats_when(&broker, "restored", |s| s.sessions > 0);
    assert_eq!((stats.sessions, stats.retained), (2, 8), "{stats:?}");
}

#[test]
fn a_log_is_compacted_once_what_it_holds_was_acknowledged() {
    let _guard = beside();
    let v = ProtocolVersion::V5;
    let dir = TempDir::new("store-compact");
    let broker = durable(2, &dir.path);
    // Subscriber and publisher on one shard: one log takes every record.
    let mut sub = connect(&broker, v, &broker.id_on(0, "sub"), false);
    subscribe(&mut sub, "big/#", QoS::AtLeastOnce);
    let mut publisher = connect(&broker, v, &broker.id_on(0, "pub"), true);
    let payload = vec![b'x'; 512 << 10];
    // 100 MiB of acknowledged messages pass through the durable session.
    for _ in 0..200 {
        publish(&mut publisher, "big/data", &payload, QoS::AtLeastOnce);
        let p = expect_message(&mut sub, "big/data", &payload);
        sub.acknowledge(&p);
    }
    // One more record after the last acknowledgement lets the writer see the grown log.
    publish(&mut publisher, "big/last", b"small", QoS::AtLeastOnce);
    let p = expect_message(&mut sub, "big/last", b"small");
    sub.acknowledge(&p);
    let logs = || -> u64 {
        files(&dir.path)
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "log"))
            .map(|(_, data)| data.len() as u64)
            .sum()
    };
    // Compacted: far below the 100 MiB that went through (the 64 MiB threshold at most).
    let size = crate::eventually("the log compacted", logs, |&n| n < 64 << 20);
    assert!(size > 0);
    // And what it kept is right: the session and its subscription.
    drop(publisher);
    drop(sub);
    broker.broker.shutdown();
    let broker = durable(2, &dir.path);
    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &broker.id_on(0, "sub"), false)).session_present);
    let mut publisher = connect(&broker, v, &broker.id_on(1, "pub"), true);
    publish(
        &mut publisher,
        "big/after",
        b"still subscribed",
        QoS::AtLeastOnce,
    );
    expect_message(&mut sub, "big/after", b"still subscribed");
}

/// A durable session's filtered subscriptions come back after a restart (with another shard
/// count) with their expressions compiled again: a `$filter/` one and a filtered shared one on
/// the same topics, each still getting only what its expression passes.
#[test]
fn filtered_subscriptions_survive_a_restart() {
    let _guard = beside();
    let dir = TempDir::new("store-filtered");
    let v = ProtocolVersion::V3_1_1;
    let sub_id;
    {
        let broker = durable(2, &dir.path);
        sub_id = broker.id_on(1, "fsub");
        let mut sub = connect(&broker, v, &sub_id, false);
        subscribe(&mut sub, "$filter/level >= 5/f/#", QoS::AtLeastOnce);
        subscribe(
            &mut sub,
            r#"$filter/kind == "text"/$share/g/f/#"#,
            QoS::AtLeastOnce,
        );
        sub.disconnect();
        broker.broker.shutdown();
    }
    let broker = durable(3, &dir.path);
    let mut sub = RawClient::connect(broker.addr, v);
    assert!(handshake(&mut sub, connect_packet(v, &sub_id, false)).session_present);
    let mut publisher = connect(&broker, v, &broker.id_on(2, "fpub"), true);
    let messages: [&[u8]; 4] = [
        br#"{"level": 1}"#,
        b"plain text",
        br#"{"level": 7}"#,
        b"\xff\x00",
    ];
    for m in messages {
        publish(&mut publisher, "f/x", m, QoS::AtLeastOnce);
    }
    // Through two routes (the shared group's and the plain subscription's): in either order.
    let mut got: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let p = sub.expect_publish();
            sub.acknowledge(&p);
            p.payload.to_vec()
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![b"plain text".to_vec(), br#"{"level": 7}"#.to_vec()]
    );
    sub.expect_silence(Duration::from_millis(300));
}
