//! A storm of failing logins does not slow an authenticated client down: password checks are
//! slow on purpose (PBKDF2) and run off the shards' event loops.
//!
//! The storm's password hash costs far more than a message round trip, as in production:
//! 210,000 rounds (coremq's default) take about 0.27 s in a release build but 5.5 s in this
//! unoptimised test build, so the stored hash here has 2,000 rounds (about 50 ms per check in a
//! debug build). Unknown users are checked against a dummy with the same cost as the file's first
//! entry, the storm's target, so every bad login costs the same.
//!
//! Behaviour, not timings: if a check ran on a shard's event loop, the shard could do nothing
//! else for its duration, and the lockstep flow below (each message needs both shards in turn)
//! would advance by less than one message per check (17 messages during the 80 bad logins, when
//! tried). Off the loop it advances thousands of times (about 4,000 to 6,000 on a 2-core
//! machine), so the test asks for at least `FLOW_PER_BAD_LOGIN` messages per bad login, and for
//! messages in every quarter of the storm.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use coremq::auth::password::PasswordHash;
use coremq::protocol::ProtocolVersion::{V3_1_1, V5 as MQTT5};
use rumqttc::QoS as Q3;

use super::*;

const STORM_THREADS: usize = 4;
const LOGINS_PER_THREAD: usize = 20;
const STORM_ITERATIONS: u32 = 2_000;
const FLOW_PER_BAD_LOGIN: usize = 2;

/// One bad login against `addr`: whether it got the exact refusal for bad credentials.
fn bad_login(addr: SocketAddr, thread: usize, i: usize) -> bool {
    let version = if i.is_multiple_of(2) { V3_1_1 } else { MQTT5 };
    let id = format!("storm-{thread}-{i}");
    let connect = if (i / 2).is_multiple_of(2) {
        connect_packet(version, &id, Some("victim"), Some("guess"))
    } else {
        connect_packet(version, &id, Some(&format!("nobody-{i}")), Some("guess"))
    };
    let want = if version.is_v5() {
        V5_BAD_CREDENTIALS
    } else {
        V311_BAD_CREDENTIALS
    };
    refusal_bytes_at(addr, connect) == want
}

#[test]
fn messages_keep_flowing_while_a_storm_of_bad_logins_runs() {
    let files = Files::new("storm");
    let victim =
        PasswordHash::pbkdf2_with_salt(b"victim's password", b"victimsalt12", STORM_ITERATIONS);
    files.write_passwords(&format!("victim:{victim}\n{}", mosquitto_users()));
    let broker = files.start("auto");
    let addr = broker.addr;

    // The good flow: alice publishes at QoS 1 from shard 1, bob receives on shard 0.
    let bob = V311::connect(
        &broker,
        &broker.id_on(0, "bob"),
        Some(("bob", BOB_PASSWORD)),
    );
    bob.subscribe(&[("flow/#", Q3::AtLeastOnce)]);
    let alice = V311::connect(
        &broker,
        &broker.id_on(1, "alice"),
        Some(("alice", ALICE_PASSWORD)),
    );
    let storm_over = AtomicBool::new(false);
    let (arrivals, storm_start, storm_end) = std::thread::scope(|scope| {
        let storm_over = &storm_over;
        let flow = scope.spawn(move || {
            let mut arrivals = Vec::new();
            let mut n = 0usize;
            // Lockstep: the next message goes out once the previous one arrived.
            while !storm_over.load(Ordering::SeqCst) {
                let topic = format!("flow/{n}");
                alice.publish(&topic, Q3::AtLeastOnce, false, "tick");
                assert_eq!(bob.next_publish().topic, topic);
                arrivals.push(Instant::now());
                n += 1;
            }
            arrivals
        });
        let storm_start = Instant::now();
        let storm: Vec<_> = (0..STORM_THREADS)
            .map(|t| {
                scope.spawn(move || {
                    (0..LOGINS_PER_THREAD)
                        .filter(|&i| bad_login(addr, t, i))
                        .count()
                })
            })
            .collect();
        let results: Vec<_> = storm.into_iter().map(|h| h.join()).collect();
        let storm_end = Instant::now();
        // Stop the flow before any assertion, or a failure would leave it running forever.
        storm_over.store(true, Ordering::SeqCst);
        let refused: usize = results.into_iter().map(|r| r.unwrap()).sum();
        assert_eq!(
            refused,
            STORM_THREADS * LOGINS_PER_THREAD,
            "every bad login gets CONNACK 0x86 / return code 4"
        );
        (flow.join().unwrap(), storm_start, storm_end)
    });

    let bad_logins = STORM_THREADS * LOGINS_PER_THREAD;
    let during: Vec<Instant> = arrivals
        .into_iter()
        .filter(|t| (storm_start..storm_end).contains(t))
        .collect();
    eprintln!(
        "{bad_logins} bad logins took {:?}; {} messages arrived meanwhile",
        storm_end - storm_start,
        during.len()
    );
    assert!(
        during.len() >= FLOW_PER_BAD_LOGIN * bad_logins,
        "only {} messages arrived during {bad_logins} bad logins",
        during.len()
    );
    let quarter = (storm_end - storm_start) / 4;
    for q in 0..4u32 {
        let from = storm_start + quarter * q;
        let window = from..from + quarter;
        let count = during.iter().filter(|t| window.contains(*t)).count();
        assert!(count > 0, "no message in quarter {q} of the storm");
    }
    // The storm left the good users' logins alone.
    raw_login(
        &broker,
        V3_1_1,
        "after-storm",
        Some("alice"),
        Some(ALICE_PASSWORD),
    );
}
