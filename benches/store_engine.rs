//! The storage engine choice of issue 14, measured: coremq's per-shard append log (`LogFile`,
//! CRC-framed records, one `fdatasync` per group) against redb (an embedded B-tree store, a
//! durable commit per group) on the store's workload — each message enters a durable session (a
//! ~200-byte record) and leaves it once acknowledged (a small record in the log; a delete in redb,
//! of a message 64 entries back, as a subscriber's acknowledgements trail its deliveries).
//!
//! For commit groups of 1, 16 and 256 messages (what one sync covers under low, moderate and
//! heavy load), each engine runs for about 2 s on one thread in a temporary directory; printed:
//! messages per second, and the ratio log / redb measured in the same run.
//!
//!   cargo bench --bench store_engine

use std::time::{Duration, Instant};

use coremq::store::record::{encode, Record, Stored};
use coremq::store::LogFile;

const RUN: Duration = Duration::from_secs(2);
const PAYLOAD: usize = 64;
const TRAIL: u64 = 64;

const MESSAGES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("messages");

fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let clock = coremq::store::Clock::now();
    let message = coremq::message::Message {
        topic: coremq::protocol::TopicName::copy_from("bench/engine").unwrap(),
        payload: bytes::Bytes::copy_from_slice(payload),
        qos: coremq::protocol::QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        publisher: coremq::protocol::ClientId::copy_from("publisher").unwrap(),
        expires_at: None,
        received: clock.now_instant(),
    };
    let stored: Stored = clock.store(&message);
    encode(
        &Record::Entered {
            client: coremq::protocol::ClientId::copy_from("subscriber").unwrap(),
            seq,
            id: None,
            message: stored,
            delivery: Default::default(),
        },
        &mut out,
    );
    out
}

fn done(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode(
        &Record::Done {
            client: coremq::protocol::ClientId::copy_from("subscriber").unwrap(),
            seq,
        },
        &mut out,
    );
    out
}

/// Messages per second through the append log, `group` per fdatasync.
fn log(dir: &std::path::Path, group: u64) -> f64 {
    let mut file = LogFile::create(dir.join("shard-0.log"), &[]).unwrap();
    let payload = vec![b'x'; PAYLOAD];
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < RUN {
        let mut batch = Vec::new();
        for _ in 0..group {
            seq += 1;
            batch.extend_from_slice(&record(seq, &payload));
            if seq > TRAIL {
                batch.extend_from_slice(&done(seq - TRAIL));
            }
        }
        file.append(&batch, true).unwrap();
    }
    seq as f64 / started.elapsed().as_secs_f64()
}

/// Messages per second through redb, `group` per durable commit.
fn redb(dir: &std::path::Path, group: u64) -> f64 {
    let db = redb::Database::create(dir.join("store.redb")).unwrap();
    let payload = vec![b'x'; PAYLOAD];
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < RUN {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(MESSAGES).unwrap();
            for _ in 0..group {
                seq += 1;
                table.insert(seq, record(seq, &payload).as_slice()).unwrap();
                if seq > TRAIL {
                    table.remove(seq - TRAIL).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    seq as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let base = std::env::temp_dir().join(format!("coremq-engines-{}", std::process::id()));
    println!(
        "messages per second, one thread, durable commit per group (fdatasync / redb Immediate)"
    );
    println!(
        "{:>6} {:>12} {:>12} {:>8}",
        "group", "append log", "redb", "ratio"
    );
    for group in [1, 16, 256] {
        let a = base.join(format!("log-{group}"));
        let b = base.join(format!("redb-{group}"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let l = log(&a, group);
        let r = redb(&b, group);
        println!("{group:>6} {l:>12.0} {r:>12.0} {:>8.2}", l / r);
    }
    let _ = std::fs::remove_dir_all(&base);
}
