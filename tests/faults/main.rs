//! Hostile input and overload (issue 7): what happens at each limit (`limits`), subscribers that
//! cannot keep up (`slow_consumer`), clients killed mid-flow (`kill`), connection storms
//! (`storm`) and graceful shutdown under load (`shutdown`).
//!
//! Every test starts its own broker in-process (2 shards, 127.0.0.1:0) and drives it with
//! `RawClient`, placing clients on shards on purpose (`TestBroker::id_on`). What the broker holds
//! is read from `Broker::stats` (connections, sessions, trie filters, drops by reason, summed
//! over the shards); memory from the test process's VmRSS, which includes the broker. Memory
//! checks compare with a warm-up run or a baseline in the same test, with bounds far below what
//! an unbounded buffer would take, never absolute numbers. Tests that measure the whole process
//! (RSS, threads, file descriptors) take `alone()` and run while no other test of this binary
//! does; the others take `beside()`.
//!
//! # Soak mode
//! `FAULTS_SOAK=N cargo test --release --test faults` multiplies the loop counts of the storm and
//! slow-consumer tests by N (default 1, what CI runs), e.g. `FAULTS_SOAK=20` for 60,000 storm
//! cycles and a 320 MiB flood. (Not `COREMQ_…`: the broker refuses unknown `COREMQ_*` variables at
//! start-up, and `tests/cli.rs` starts it with this environment.)

#[path = "../common/mod.rs"]
mod common;

/// Turns each `case(version)` function into a module of two tests, `case::v3_1_1` and `case::v5`.
macro_rules! each_version {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn v3_1_1() {
                super::$case(coremq::protocol::ProtocolVersion::V3_1_1)
            }

            #[test]
            fn v5() {
                super::$case(coremq::protocol::ProtocolVersion::V5)
            }
        }
    )*};
}

mod crash;
mod flow;
mod guard;
mod kill;
mod limits;
mod listeners;
mod metrics_http;
mod park;
mod pauses;
mod reads;
mod shutdown;
mod slow_consumer;
mod store;
mod storm;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use coremq::protocol::Publish;
use coremq::shard::Stats;

use common::{RawClient, TestBroker};

/// The soak multiplier (`FAULTS_SOAK`, at least 1).
fn soak() -> usize {
    std::env::var("FAULTS_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

static PROCESS: RwLock<()> = RwLock::new(());

/// For a test that measures the whole process: no other test of this binary runs meanwhile.
fn alone() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(PoisonError::into_inner)
}

/// For every other test: runs beside the others, never beside a measuring one.
fn beside() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(PoisonError::into_inner)
}

/// A `Name:   value` line of /proc/self/status, as a number (VmRSS is in KiB).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resident memory of this process (test and in-process broker), in KiB.
fn rss_kib() -> u64 {
    proc_status("VmRSS")
}

/// How long `eventually` waits.
const SETTLE: Duration = Duration::from_secs(10);

/// Polls `check` until it holds; panics with `what` and the last value after `SETTLE`.
fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {value:?} after {SETTLE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The broker's counters once `check` holds for them.
fn stats_when(broker: &TestBroker, what: &str, check: impl Fn(&Stats) -> bool) -> Stats {
    eventually(what, || broker.broker.stats(), check)
}

use common::{
    connect, connect_packet, connect_with, expect_message, handshake, packet_id, ping, publish,
    publish_packet, subscribe, subscribe_codes, will,
};

/// A TCP connection to `addr` from source address 127.0.0.`n % 250 + 2`, so that many short
/// connections do not run out of ephemeral ports to TIME_WAIT.
fn tcp_from(addr: SocketAddr, n: usize) -> TcpStream {
    common::tcp_from_address(addr, Ipv4Addr::new(127, 0, 0, (n % 250 + 2) as u8))
}

/// Ends the connection the way a killed process does when unread data is left: a TCP reset.
fn kill(client: RawClient) {
    socket2::SockRef::from(&client.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
}

/// A payload of `len` bytes starting with `seq` (big endian), for order checks.
fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.resize(len.max(4), b'.');
    p
}

/// The sequence number `numbered` put in a payload.
fn seq_of(p: &Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().unwrap())
}
