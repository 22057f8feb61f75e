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

mod flow;
mod kill;
mod limits;
mod park;
mod pauses;
mod reads;
mod shutdown;
mod slow_consumer;
mod storm;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::num::NonZeroU16;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coremq::protocol::{
    Connect, LastWill, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, WillProperties,
};
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

use common::connect_packet;

/// A QoS 0 will on `topic`.
fn will(topic: &str, payload: &str) -> LastWill {
    LastWill {
        topic: TopicName::copy_from(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    }
}

/// Sends `connect` on `client` and returns the CONNACK's Session Present; the CONNACK must
/// accept the connection.
fn handshake(client: &mut RawClient, connect: Connect) -> bool {
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_packet() {
        Packet::ConnAck(ack) if ack.reason_code == ReasonCode::SUCCESS => ack.session_present,
        other => panic!("expected CONNACK 0, got {other:?}"),
    }
}

fn connect_with(broker: &TestBroker, connect: Connect) -> RawClient {
    let mut client = RawClient::connect(broker.addr, connect.protocol);
    handshake(&mut client, connect);
    client
}

fn connect(broker: &TestBroker, v: ProtocolVersion, client_id: &str, clean: bool) -> RawClient {
    connect_with(broker, connect_packet(v, client_id, clean))
}

/// A TCP connection to `addr` from source address 127.0.0.`n % 250 + 2`, so that many short
/// connections do not run out of ephemeral ports to TIME_WAIT.
fn tcp_from(addr: SocketAddr, n: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source = Ipv4Addr::new(127, 0, 0, (n % 250 + 2) as u8);
    socket
        .bind(&SocketAddr::new(IpAddr::V4(source), 0).into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

fn packet_id(id: u16) -> PacketId {
    PacketId(NonZeroU16::new(id).unwrap())
}

/// Subscribes to `filters` (with packet id 1) and returns the SUBACK's codes.
fn subscribe_codes(client: &mut RawClient, filters: &[(&str, QoS)]) -> Vec<ReasonCode> {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|(f, qos)| {
                (
                    TopicFilter::copy_from(f).unwrap(),
                    SubscriptionOptions::with_qos(*qos),
                )
            })
            .collect(),
    }));
    match client.expect_packet() {
        Packet::SubAck(ack) if ack.packet_id == packet_id(1) => ack.reason_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Subscribes to one filter, which must be granted.
fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    assert_eq!(
        subscribe_codes(client, &[(filter, qos)]),
        vec![ReasonCode::granted(qos)]
    );
}

/// A PUBLISH of `payload` to `topic` (packet id `id` unless QoS 0).
fn publish_packet(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(id)),
        ..Publish::new(
            TopicName::copy_from(topic).unwrap(),
            Bytes::copy_from_slice(payload),
        )
    })
}

/// Publishes and completes the sender's side of the QoS flow (PUBACK, or PUBREC / PUBREL /
/// PUBCOMP), so the broker has routed the message when this returns. The client must not be
/// subscribed to `topic` (the next packet must be the acknowledgement).
fn publish(client: &mut RawClient, topic: &str, payload: &[u8], qos: QoS) {
    let id = packet_id(1);
    client.send(&publish_packet(topic, payload, qos, 1));
    client.finish_publish(id, qos);
}

/// The next packet, which must be a PUBLISH.
fn expect_publish(client: &mut RawClient) -> Publish {
    client.expect_publish()
}

/// The next packet must be a PUBLISH of `payload` to `topic`.
fn expect_message(client: &mut RawClient, topic: &str, payload: &[u8]) -> Publish {
    let p = expect_publish(client);
    assert_eq!(p.topic.as_str(), topic);
    assert_eq!(&p.payload[..], payload, "payload on {topic}");
    p
}

/// Completes the receiver's side of a delivery's QoS flow.
fn acknowledge(client: &mut RawClient, p: &Publish) {
    client.acknowledge(p)
}

/// Sends DISCONNECT and waits until the broker closes the connection.
fn disconnect(client: RawClient) {
    client.disconnect()
}

/// See `RawClient::expect_disconnect`.
fn expect_disconnect(client: &mut RawClient, reason: ReasonCode) {
    client.expect_disconnect(reason)
}

/// PINGREQ, and the PINGRESP that shows the broker still serves this connection.
fn ping(client: &mut RawClient) {
    client.send(&Packet::PingReq);
    assert_eq!(client.expect_packet(), Packet::PingResp);
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
