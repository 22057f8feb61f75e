//! Shared test harness: an in-process broker on an ephemeral port with several shards, client
//! ids chosen to land on a given shard, and a raw-socket MQTT client for exact-byte cases.
#![allow(dead_code)]

pub mod pki;
pub mod ws;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use coremq::protocol::{
    decode, ClientId, ConnAck, Connect, ConnectProperties, Disconnect, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, PublishAck, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName, WillProperties,
};
use coremq::{Broker, Config};

/// Session Expiry Interval a persistent MQTT 5 session asks for (long enough to outlive a test).
const SESSION_EXPIRY: u32 = 300;

/// The CONNECT a case starts from: keep alive 0 (no timeout unless the case asks for one), no
/// will. `clean`: the session ends with the connection (3.1.1 Clean Session 1; MQTT 5 Clean Start
/// 1 and no Session Expiry Interval); otherwise it is resumed if stored and outlives the
/// connection (Clean Session 0; MQTT 5 Clean Start 0 and a Session Expiry Interval).
pub fn connect_packet(v: ProtocolVersion, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: v,
        clean_start: clean,
        keep_alive: 0,
        client_id: ClientId::copy_from(client_id).unwrap(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: (v.is_v5() && !clean).then_some(SESSION_EXPIRY),
            ..ConnectProperties::default()
        },
    }
}

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A broker started for one test, stopped when dropped.
pub struct TestBroker {
    pub broker: Broker,
    pub addr: SocketAddr,
    pub shards: usize,
}

impl TestBroker {
    /// A broker with `shards` shards on 127.0.0.1:0 and otherwise default flags.
    pub fn start(shards: usize) -> Self {
        Self::start_with(shards, |_| {})
    }

    /// Like `start`, with config tweaks.
    pub fn start_with(shards: usize, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(shards, tweak, None)
    }

    /// Like `start_with`, with an enhanced-authentication hook.
    pub fn start_full(
        shards: usize,
        tweak: impl FnOnce(&mut Config),
        authenticator: Option<coremq::auth::AuthenticatorFactory>,
    ) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards,
            pin: false,
            log: coremq::config::LogLevel::Warn,
            // Every test client comes from 127.0.0.1, many at once and some with wrong
            // passwords on purpose: the per-source guards are off unless a test turns them on
            // (`tests/faults/guard.rs`).
            max_connections_per_address: 0,
            connection_rate_per_address: None,
            login_failures: None,
            login_failures_per_user: None,
            flapping: None,
            // No `$SYS` messages among the retained ones a test counts, unless it asks.
            sys_interval: Duration::ZERO,
            ..Config::default()
        };
        tweak(&mut config);
        let broker = Broker::start_with(config, authenticator).expect("broker starts");
        let addr = broker.local_addr();
        Self {
            broker,
            addr,
            shards,
        }
    }

    /// A client id (starting with `prefix`) whose home shard is `shard`, so a test can place
    /// publisher, subscriber and reconnecting clients on the shards it wants.
    pub fn id_on(&self, shard: usize, prefix: &str) -> String {
        id_on(self.shards, shard, prefix)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// A client id starting with `prefix` whose home shard is `shard` out of `shards`.
pub fn id_on(shards: usize, shard: usize, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| coremq::mesh::home_shard(id.as_bytes(), shards).0 == shard)
        .expect("some id lands on every shard")
}

/// A raw MQTT client over a blocking socket: send exact bytes, read decoded packets.
pub struct RawClient {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl RawClient {
    pub fn connect(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// A connection from source address `source` (any of 127.0.0.0/8 works on Linux without
    /// setup), so that tests can play several hosts.
    pub fn connect_from(
        addr: SocketAddr,
        source: std::net::Ipv4Addr,
        version: ProtocolVersion,
    ) -> Self {
        Self::from_stream(tcp_from_address(addr, source), version)
    }

    /// Wraps a stream connected by the test itself (e.g. with socket options of its choosing).
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Self {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.send_bytes(&out);
    }

    /// The next packet, or `None` if the broker closed the connection first. Panics after
    /// `PATIENCE` without either.
    pub fn recv(&mut self) -> Option<Packet> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent an undecodable packet: {e}"),
            }
            assert!(Instant::now() < deadline, "no packet within {PATIENCE:?}");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no packet within {PATIENCE:?}")
                }
                // A read with a timeout fails with EINTR instead of restarting when the thread
                // is interrupted (seen in these tests with no signal sent): read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// The next packet if one comes within the read timeout; `None` on timeout or close.
    pub fn try_recv(&mut self) -> Option<Packet> {
        loop {
            match decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent an undecodable packet: {e}"),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads for `wait`, acknowledging every message (QoS 1: PUBACK; QoS 2: PUBREC, and PUBCOMP
    /// for each PUBREL) and dropping it.
    pub fn drain(&mut self, wait: Duration) {
        let end = Instant::now() + wait;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.try_recv() {
                Some(Packet::Publish(p)) => match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PublishAck::new(id))),
                    (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(PublishAck::new(id))),
                    _ => {}
                },
                Some(Packet::PubRel(a)) => {
                    self.send(&Packet::PubComp(PublishAck::new(a.packet_id)))
                }
                Some(_) => {}
                None => break,
            }
        }
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    }

    /// The next packet's bytes exactly as the broker sent them (fixed header included), for
    /// cases about the encoding itself. Panics if the connection closes or after `PATIENCE`.
    pub fn expect_frame(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(len) = frame_len(&self.buf) {
                if self.buf.len() >= len {
                    return self.buf.split_to(len).to_vec();
                }
            }
            assert!(Instant::now() < deadline, "no packet within {PATIENCE:?}");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("no packet: {e}"),
            }
        }
    }

    /// After sending a PUBLISH with `id` at `qos`, completes the sender's side of the QoS flow
    /// (PUBACK, or PUBREC / PUBREL / PUBCOMP), so the broker has routed the message when this
    /// returns. MQTT 5 may answer 0x10 No matching subscribers; both count as accepted. The
    /// next packet must be the acknowledgement.
    pub fn finish_publish(&mut self, id: PacketId, qos: QoS) {
        let accepted = |ack: &PublishAck| {
            ack.packet_id == id
                && (ack.reason_code == ReasonCode::SUCCESS
                    || ack.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS)
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.expect_packet() {
                Packet::PubAck(ack) if accepted(&ack) => {}
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.expect_packet() {
                    Packet::PubRec(ack) if accepted(&ack) => {}
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                }
                self.send(&Packet::PubRel(PublishAck::new(id)));
                assert_eq!(self.expect_packet(), Packet::PubComp(PublishAck::new(id)));
            }
        }
    }

    /// Completes the receiver's side of a delivery's QoS flow (PUBACK, or PUBREC / PUBREL /
    /// PUBCOMP).
    pub fn acknowledge(&mut self, p: &Publish) {
        let Some(id) = p.packet_id else { return };
        if p.qos == QoS::AtLeastOnce {
            self.send(&Packet::PubAck(PublishAck::new(id)));
        } else {
            self.send(&Packet::PubRec(PublishAck::new(id)));
            assert_eq!(self.expect_packet(), Packet::PubRel(PublishAck::new(id)));
            self.send(&Packet::PubComp(PublishAck::new(id)));
        }
    }

    /// Sends DISCONNECT (normal disconnection) and waits until the broker closes the connection.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )));
        assert_eq!(self.expect_close(), Vec::new());
    }

    /// Asserts the broker closes the connection, after a DISCONNECT carrying `reason` and a
    /// Reason String for MQTT 5, and after nothing at all for MQTT 3.1 / 3.1.1 (no server
    /// DISCONNECT there).
    pub fn expect_disconnect(&mut self, reason: ReasonCode) {
        let before = self.expect_close();
        if self.version.is_v5() {
            match before.as_slice() {
                [Packet::Disconnect(d)] => {
                    assert_eq!(d.reason_code, reason, "{d:?}");
                    assert!(
                        d.properties.reason_string.is_some(),
                        "a reason string: {d:?}"
                    );
                }
                other => panic!("expected one DISCONNECT {reason:?}, got {other:?}"),
            }
        } else {
            assert_eq!(before, Vec::new());
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub fn expect_publish(&mut self) -> Publish {
        match self.expect_packet() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next packet; panics if the connection closed.
    pub fn expect_packet(&mut self) -> Packet {
        self.recv().expect("a packet, not a close")
    }

    /// Asserts the broker closes the connection, ignoring packets sent before the close except
    /// that they are returned for inspection.
    pub fn expect_close(&mut self) -> Vec<Packet> {
        let mut before = Vec::new();
        while let Some(p) = self.recv() {
            before.push(p);
            assert!(
                before.len() < 1000,
                "the broker kept sending instead of closing"
            );
        }
        before
    }

    /// Asserts nothing arrives within `wait` (the connection stays open and silent), and that
    /// nothing already read is waiting to be decoded.
    pub fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes already received: {:02x?}",
            &self.buf[..]
        );
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 64];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => panic!("unexpected bytes: {:02x?}", &chunk[..n]),
            Err(_) => {}
        }
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    }
}

/// The length of the frame at the front of `buf` (fixed header included), once its fixed header
/// is complete.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for (i, b) in buf.iter().skip(1).take(4).enumerate() {
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some(1 + i + 1 + len);
        }
    }
    None
}

/// Hex string (whitespace ignored) to bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A directory of its own under the system temp dir, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "coremq-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ------------------------------------------------------------------------------------------------
// Packets and exchanges shared by the raw-byte suites (conformance, faults).
// ------------------------------------------------------------------------------------------------

pub fn topic_name(s: &str) -> TopicName {
    TopicName::copy_from(s).unwrap()
}

pub fn packet_id(id: u16) -> PacketId {
    PacketId(std::num::NonZeroU16::new(id).unwrap())
}

/// A will on `topic` with `payload`.
pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic_name(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

/// Sends `connect` on `client` and returns the broker's CONNACK, which must accept the
/// connection.
pub fn handshake(client: &mut RawClient, connect: Connect) -> Box<ConnAck> {
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_packet() {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK refused");
            ack
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Opens a connection and sends `connect`; returns the client and the broker's CONNACK, which
/// must accept the connection.
pub fn connect_with(broker: &TestBroker, connect: Connect) -> (RawClient, Box<ConnAck>) {
    let mut client = RawClient::connect(broker.addr, connect.protocol);
    let ack = handshake(&mut client, connect);
    (client, ack)
}

/// `connect_with` the default CONNECT of `connect_packet`.
pub fn connect(broker: &TestBroker, v: ProtocolVersion, client_id: &str, clean: bool) -> RawClient {
    connect_with(broker, connect_packet(v, client_id, clean)).0
}

/// Subscribes to `filters` (with packet id 1) and returns the SUBACK's codes.
/// A SUBSCRIBE of `filters` with packet id `id`.
pub fn subscribe_packet(filters: &[(&str, QoS)], id: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: packet_id(id),
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
    })
}

pub fn subscribe_codes(client: &mut RawClient, filters: &[(&str, QoS)]) -> Vec<ReasonCode> {
    client.send(&subscribe_packet(filters, 1));
    match client.expect_packet() {
        Packet::SubAck(ack) if ack.packet_id == packet_id(1) => ack.reason_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Subscribes to one filter at `qos`, which must be granted.
pub fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    assert_eq!(
        subscribe_codes(client, &[(filter, qos)]),
        vec![ReasonCode::granted(qos)]
    );
}

/// A PUBLISH of `payload` to `topic` (packet id `id` unless QoS 0).
pub fn publish_packet(topic: &str, payload: impl AsRef<[u8]>, qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(id)),
        ..Publish::new(topic_name(topic), Bytes::copy_from_slice(payload.as_ref()))
    })
}

/// A retained PUBLISH of `payload` to `topic` (packet id `id` unless QoS 0).
pub fn retained_publish(topic: &str, payload: impl AsRef<[u8]>, qos: QoS, id: u16) -> Packet {
    match publish_packet(topic, payload, qos, id) {
        Packet::Publish(p) => Packet::Publish(Publish { retain: true, ..p }),
        other => other,
    }
}

/// Publishes `payload` to `topic` and completes the sender's side of the QoS flow (PUBACK, or
/// PUBREC / PUBREL / PUBCOMP), so the broker has routed the message when this returns. The
/// client must not be subscribed to `topic` (the next packet must be the acknowledgement).
pub fn publish(client: &mut RawClient, topic: &str, payload: impl AsRef<[u8]>, qos: QoS) {
    client.send(&publish_packet(topic, payload, qos, 1));
    client.finish_publish(packet_id(1), qos);
}

/// The next packet must be a PUBLISH of `payload` to `topic`; returns it for further checks.
pub fn expect_message(client: &mut RawClient, topic: &str, payload: impl AsRef<[u8]>) -> Publish {
    let p = client.expect_publish();
    assert_eq!(p.topic.as_str(), topic);
    assert_eq!(&p.payload[..], payload.as_ref(), "payload on {topic}");
    p
}

/// PINGREQ, and the PINGRESP that shows the broker still serves this connection.
pub fn ping(client: &mut RawClient) {
    client.send(&Packet::PingReq);
    assert_eq!(client.expect_packet(), Packet::PingResp);
}

/// A TCP connection to `addr` from source address `source` (port chosen by the kernel).
pub fn tcp_from_address(addr: SocketAddr, source: std::net::Ipv4Addr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(std::net::IpAddr::V4(source), 0).into())
        .unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// One HTTP/1.1 GET to the metrics endpoint: the status code and body (the endpoint closes each
/// connection after its answer).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send request");
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("read the whole answer");
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {reply:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// A scrape of `/metrics`, parsed: each sample's value by metric name and labels.
pub struct Scrape {
    pub text: String,
    samples: Vec<Sample>,
}

/// A sample's metric name, labels and value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Scrape {
    /// Scrapes the broker's metrics endpoint (which must be on).
    pub fn of(broker: &TestBroker) -> Self {
        let addr = broker
            .broker
            .metrics_addr()
            .expect("COREMQ_METRICS_LISTEN is set");
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        Self::parse(text)
    }

    fn parse(text: String) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Self { text, samples }
    }

    /// The sum, over every sample of `name` (every shard), of those carrying all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .collect();
        assert!(
            !found.is_empty(),
            "no sample {name}{labels:?} in:\n{}",
            self.text
        );
        found.iter().sum()
    }
}

/// Scrapes until `done` holds for a scrape (counters move as the shards work through what was
/// sent) and returns that scrape; panics with the last scrape after `PATIENCE`.
pub fn scrape_until(broker: &TestBroker, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let scrape = Scrape::of(broker);
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; last scrape:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
