//! Start-up time with a large store (issue 14): writes a data directory holding SESSIONS
//! persistent sessions (default 100,000) with MESSAGES queued QoS 1 messages in total (default
//! 1,000,000; 64-byte payloads), each session subscribed to one filter, then starts the broker on
//! it and reports how long `Broker::start` took to replay the logs, write the next epoch, restore
//! every session and subscription on its shard and listen — and the same for a second start (the
//! logs coremq itself wrote, after a clean shutdown).
//!
//!   cargo bench --bench recovery
//!   SESSIONS=10000 MESSAGES=100000 cargo bench --bench recovery
//!
//! Not criterion: one start is the measurement (seconds, not nanoseconds).

use std::time::{Duration, Instant};

use bytes::Bytes;
use coremq::message::{Delivery, Message};
use coremq::protocol::{
    ClientId, MqttString, ProtocolVersion, QoS, SubscriptionOptions, TopicName,
};
use coremq::session::{Image, Kept};
use coremq::store::record::{encode, Clock, Record};
use coremq::store::replay::snapshot_session;
use coremq::{Broker, Config};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let sessions = env("SESSIONS", 100_000).max(1);
    let messages = env("MESSAGES", 1_000_000);
    let dir = std::env::temp_dir().join(format!("coremq-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let epoch = dir.join("epoch-1");
    std::fs::create_dir_all(&epoch).unwrap();
    let clock = Clock::now();
    let written = Instant::now();
    let mut log = Vec::new();
    encode(
        &Record::Header {
            shard: 0,
            shards: 1,
        },
        &mut log,
    );
    let payload = Bytes::from(vec![b'x'; 64]);
    let per_session = messages / sessions;
    let mut extra = messages % sessions;
    for s in 0..sessions {
        let n = per_session + usize::from(extra > 0);
        extra = extra.saturating_sub(1);
        let topic = format!("bench/{s}");
        let image = Image {
            client_id: ClientId::copy_from(&format!("recovery-{s}")).unwrap(),
            version: ProtocolVersion::V3_1_1,
            username: None,
            lifetime: None,
            expires_at: None,
            subscriptions: vec![(
                MqttString::copy_from(&topic).unwrap(),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                None,
            )],
            messages: (0..n)
                .map(|i| Kept {
                    seq: i as u64 + 1,
                    id: None,
                    released: false,
                    message: Message {
                        topic: TopicName::copy_from(&topic).unwrap(),
                        payload: payload.clone(),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: Default::default(),
                        publisher: ClientId::default(),
                        expires_at: None,
                        received: clock.now_instant(),
                    },
                    delivery: Delivery {
                        qos: QoS::AtLeastOnce,
                        ..Delivery::default()
                    },
                })
                .collect(),
            inbound: Vec::new(),
            will: None,
        };
        snapshot_session(&image, &clock, &mut log);
    }
    std::fs::write(epoch.join("shard-0.log"), &log).unwrap();
    std::fs::write(epoch.join("COMPLETE"), b"").unwrap();
    println!(
        "store: {sessions} sessions, {messages} queued messages, {:.1} MiB of log, written in {:.2?}",
        log.len() as f64 / (1 << 20) as f64,
        written.elapsed()
    );
    drop(log);
    for round in [
        "first start (a log written outside coremq)",
        "second start (after a clean shutdown)",
    ] {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.clone()),
            log: coremq::config::LogLevel::Info,
            ..Config::default()
        };
        let started = Instant::now();
        let broker = Broker::start(config).expect("the broker starts");
        let took = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stats = broker.stats();
        while stats.sessions < sessions && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            stats = broker.stats();
        }
        println!(
            "{round}: listening after {:.2?} with {} sessions and {} filters restored (shards: {})",
            took,
            stats.sessions,
            stats.local_filters,
            broker.shard_count()
        );
        assert_eq!(stats.sessions, sessions, "every session restored");
        broker.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
