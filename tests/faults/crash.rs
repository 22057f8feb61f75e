//! The crash loop (issue 14): the real `coremq` binary with a data directory, a QoS 1 publisher
//! (retained messages) and a QoS 2 publisher on different shards, and two persistent
//! subscribers (one per shard), while the broker is killed with SIGKILL at random moments and
//! started again, 30 times (`FAULTS_SOAK=N` for N times as many). Then: every message a
//! publisher got PUBACK / PUBREC for reached both subscribers, each QoS 2 message exactly once
//! [MQTT-4.3.3], the persistent sessions were always there after SUBACK [MQTT-3.2.2-2], and the
//! retained value is the last acknowledged one or a later one.
//!
//! Clients here never panic on a dead broker: each runs until its connection breaks, keeping its
//! state (what it was acknowledged or received, its unreleased QoS 2 ids) for the next cycle.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use coremq::protocol::{
    decode, ClientId, Connect, ConnectProperties, Packet, ProtocolVersion, Publish, PublishAck,
    QoS, Subscribe, SubscriptionOptions, TopicFilter,
};

use crate::common::topic_name;
use crate::common::{id_on, TempDir};
use crate::{alone, packet_id, soak};

const V: ProtocolVersion = ProtocolVersion::V5;
/// Unacknowledged QoS 1/2 messages a publisher keeps in flight.
const WINDOW: usize = 8;

/// A `coremq` process on `addr` keeping its state in a data directory.
struct Process {
    child: Child,
}

impl Process {
    fn start(addr: SocketAddr, dir: &Path) -> Self {
        Self::start_with(addr, dir, None, Stdio::inherit())
    }

    /// With `file_limit`, every file it writes is limited to that many bytes (RLIMIT_FSIZE,
    /// with SIGXFSZ ignored, so a write past it fails with EFBIG: a disk that is full for it).
    fn start_with(addr: SocketAddr, dir: &Path, file_limit: Option<u64>, stderr: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coremq"));
        for (key, _) in std::env::vars() {
            if key.starts_with("COREMQ_") {
                cmd.env_remove(key);
            }
        }
        if let Some(limit) = file_limit {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .env("COREMQ_LISTEN", addr.to_string())
            .env("COREMQ_SHARDS", "2")
            .env("COREMQ_DATA_DIR", dir)
            .env("COREMQ_LOG", "warn")
            // A subscriber that sits out a cycle (or falls behind in a debug build) must not hit
            // the queue limit: a message dropped by a full queue is a limit at work (counted and
            // logged), not a loss this test looks for.
            .env("COREMQ_MAX_QUEUED_MESSAGES", "10000000")
            // Every client here, and the start-up probe, comes from 127.0.0.1.
            .env("COREMQ_CONNECTION_RATE_PER_ADDRESS", "0")
            .env("COREMQ_MAX_QUEUED_BYTES", "1000000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("coremq starts");
        let process = Self { child };
        // Ready once it answers a CONNECT (a bare TCP connect can land in a listener's backlog
        // before start-up is over: such connections were seen reset).
        let deadline = Instant::now() + Duration::from_secs(20);
        while Link::open(addr, connect_packet("crash-probe", true)).is_none() {
            assert!(
                Instant::now() < deadline,
                "coremq did not listen on {addr} within 20 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
        process
    }

    /// SIGKILL: no flush, no clean shutdown.
    fn kill(mut self) {
        self.child.kill().expect("kill -9 coremq");
        self.child.wait().expect("reap coremq");
    }

    /// SIGTERM, and the exit that follows.
    fn stop(mut self) {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("reap coremq");
        assert!(status.success(), "coremq after SIGTERM: {status}");
    }
}

impl Drop for Process {
    /// A failed test must not leave its broker running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection that reports a broken link instead of panicking.
struct Link {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Link {
    /// Connects and completes CONNECT / CONNACK; `None` when the broker is not there.
    fn open(addr: SocketAddr, connect: Connect) -> Option<(Self, bool)> {
        let stream = TcpStream::connect(addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .ok()?;
        stream.set_nodelay(true).ok()?;
        let mut link = Self {
            stream,
            buf: BytesMut::new(),
            version: connect.protocol,
        };
        link.send(&Packet::Connect(Box::new(connect))).ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match link.recv() {
                Ok(Some(Packet::ConnAck(ack))) if !ack.reason_code.is_error() => {
                    return Some((link, ack.session_present))
                }
                Ok(None) => {}
                _ => return None,
            }
        }
        None
    }

    fn send(&mut self, packet: &Packet) -> Result<(), ()> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).map_err(|_| ())?;
        self.stream.write_all(&out).map_err(|_| ())
    }

    /// The next packet; `Ok(None)` when none came within the read timeout; `Err` when the
    /// connection broke.
    fn recv(&mut self) -> Result<Option<Packet>, ()> {
        loop {
            match decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => panic!("the broker sent an undecodable packet: {e}"),
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }
}

fn connect_packet(id: &str, clean: bool) -> Connect {
    Connect {
        protocol: V,
        clean_start: clean,
        keep_alive: 0,
        client_id: ClientId::copy_from(id).unwrap(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: (!clean).then_some(3600),
            ..ConnectProperties::default()
        },
    }
}

/// A publisher's state across cycles.
#[derive(Default)]
struct Publisher {
    id: String,
    topic: &'static str,
    qos: Option<QoS>,
    retain: bool,
    next_seq: u32,
    /// Sequence numbers the broker acknowledged (PUBACK, or PUBREC for QoS 2).
    acked: BTreeSet<u32>,
}

impl Publisher {
    /// Publishes numbered messages, `WINDOW` in flight, until the link breaks or `stop`.
    fn run(&mut self, addr: SocketAddr, stop: &AtomicBool) {
        let Some((mut link, _)) = Link::open(addr, connect_packet(&self.id, true)) else {
            return;
        };
        let qos = self.qos.unwrap_or(QoS::AtLeastOnce);
        // Packet id → sequence number of the message in flight under it.
        let mut inflight: HashMap<u16, u32> = HashMap::new();
        let mut free: Vec<u16> = (1..=WINDOW as u16).rev().collect();
        loop {
            while !stop.load(Ordering::Relaxed) {
                let Some(id) = free.pop() else { break };
                self.next_seq += 1;
                let seq = self.next_seq;
                let p = Publish {
                    qos,
                    retain: self.retain,
                    packet_id: Some(packet_id(id)),
                    ..Publish::new(
                        topic_name(self.topic),
                        Bytes::copy_from_slice(&seq.to_be_bytes()),
                    )
                };
                if link.send(&Packet::Publish(p)).is_err() {
                    return;
                }
                inflight.insert(id, seq);
            }
            if stop.load(Ordering::Relaxed) && inflight.is_empty() {
                return;
            }
            let acked = match link.recv() {
                Err(()) => return,
                Ok(None) => continue,
                Ok(Some(Packet::PubAck(a))) if qos == QoS::AtLeastOnce => a,
                Ok(Some(Packet::PubRec(a))) if qos == QoS::ExactlyOnce => {
                    if link
                        .send(&Packet::PubRel(PublishAck::new(a.packet_id)))
                        .is_err()
                    {
                        return;
                    }
                    a
                }
                Ok(Some(Packet::PubComp(a))) => {
                    free.push(a.packet_id.get());
                    continue;
                }
                Ok(Some(other)) => panic!("publisher {}: unexpected {other:?}", self.id),
            };
            let Some(seq) = inflight.remove(&acked.packet_id.get()) else {
                panic!(
                    "publisher {}: ack of an id not in flight: {acked:?}",
                    self.id
                );
            };
            assert!(
                !acked.reason_code.is_error(),
                "publisher {}: refused: {acked:?}",
                self.id
            );
            self.acked.insert(seq);
            if qos == QoS::AtLeastOnce {
                free.push(acked.packet_id.get());
            }
        }
    }
}

/// A persistent subscriber's state across cycles: the QoS 2 receiver's unreleased ids live as
/// long as its session, like a real client's.
#[derive(Default)]
struct Subscriber {
    id: String,
    subscribed: bool,
    /// (topic, sequence number) → how often it arrived as a new message.
    got: HashMap<(String, u32), u32>,
    unreleased: HashSet<u16>,
    /// The broker answered CONNECT without the session after SUBACK had confirmed it.
    lost_session: usize,
    last_message: Option<Instant>,
}

impl Subscriber {
    /// Receives until the link breaks (or `stop` and a quiet second).
    fn run(&mut self, addr: SocketAddr, stop: &AtomicBool) {
        let Some((mut link, present)) = Link::open(addr, connect_packet(&self.id, false)) else {
            return;
        };
        if self.subscribed && !present {
            self.lost_session += 1;
            self.subscribed = false;
        }
        if !present {
            self.unreleased.clear();
        }
        if !self.subscribed
            && link
                .send(&subscribe_packet("crash/#", QoS::ExactlyOnce))
                .is_err()
        {
            return;
        }
        loop {
            let packet = match link.recv() {
                Err(()) => return,
                Ok(None) => {
                    let quiet = self
                        .last_message
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
                    if stop.load(Ordering::Relaxed) && quiet {
                        return;
                    }
                    continue;
                }
                Ok(Some(p)) => p,
            };
            let reply = match packet {
                Packet::SubAck(a) => {
                    assert!(!a.reason_codes[0].is_error(), "SUBACK {a:?}");
                    self.subscribed = true;
                    continue;
                }
                Packet::Publish(p) => {
                    self.last_message = Some(Instant::now());
                    let key = (
                        p.topic.as_str().to_string(),
                        u32::from_be_bytes(p.payload[..4].try_into().unwrap()),
                    );
                    match (p.qos, p.packet_id) {
                        (QoS::ExactlyOnce, Some(id)) => {
                            // A PUBLISH under an unreleased id is the same message again.
                            if self.unreleased.insert(id.get()) {
                                *self.got.entry(key).or_default() += 1;
                            }
                            Packet::PubRec(PublishAck::new(id))
                        }
                        (_, Some(id)) => {
                            *self.got.entry(key).or_default() += 1;
                            Packet::PubAck(PublishAck::new(id))
                        }
                        (_, None) => continue,
                    }
                }
                Packet::PubRel(a) => {
                    self.unreleased.remove(&a.packet_id.get());
                    Packet::PubComp(PublishAck::new(a.packet_id))
                }
                other => panic!("subscriber {}: unexpected {other:?}", self.id),
            };
            if link.send(&reply).is_err() {
                return;
            }
        }
    }
}

/// A free port on 127.0.0.1 (bound once and released).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A small xorshift generator: reproducible from the seed printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs every client on its own thread until each returns, and gives them back.
fn run_clients(
    addr: SocketAddr,
    publishers: Vec<Publisher>,
    subscribers: Vec<Subscriber>,
    stop: &Arc<AtomicBool>,
) -> (
    thread::JoinHandle<Vec<Publisher>>,
    thread::JoinHandle<Vec<Subscriber>>,
) {
    let s = stop.clone();
    let subs = thread::spawn(move || {
        let handles: Vec<_> = subscribers
            .into_iter()
            .map(|mut sub| {
                let s = s.clone();
                thread::spawn(move || {
                    sub.run(addr, &s);
                    sub
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Publishers start once the subscribers' sessions are there (first cycle only matters).
    thread::sleep(Duration::from_millis(50));
    let s = stop.clone();
    let pubs = thread::spawn(move || {
        let handles: Vec<_> = publishers
            .into_iter()
            .map(|mut p| {
                let s = s.clone();
                thread::spawn(move || {
                    p.run(addr, &s);
                    p
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (pubs, subs)
}

#[test]
fn no_acknowledged_message_is_lost_when_the_broker_is_killed_again_and_again() {
    let _guard = alone();
    let cycles = 30 * soak();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let dir = TempDir::new("crash-loop");
    let addr = free_addr();
    let mut publishers = vec![
        Publisher {
            id: id_on(2, 0, "crash-pub1"),
            topic: "crash/q1",
            qos: Some(QoS::AtLeastOnce),
            retain: true,
            ..Publisher::default()
        },
        Publisher {
            id: id_on(2, 1, "crash-pub2"),
            topic: "crash/q2",
            qos: Some(QoS::ExactlyOnce),
            ..Publisher::default()
        },
    ];
    let mut subscribers: Vec<Subscriber> = (0..2)
        .map(|shard| Subscriber {
            id: id_on(2, shard, "crash-sub"),
            ..Subscriber::default()
        })
        .collect();
    let mut kills_with_traffic = 0;
    for cycle in 0..cycles {
        let broker = Process::start(addr, &dir.path);
        let acked_before: usize = publishers.iter().map(|p| p.acked.len()).sum();
        let stop = Arc::new(AtomicBool::new(false));
        let (pubs, subs) = run_clients(addr, publishers, subscribers, &stop);
        thread::sleep(Duration::from_millis(100 + rng.below(500)));
        broker.kill();
        publishers = pubs.join().expect("publishers");
        subscribers = subs.join().expect("subscribers");
        let acked: usize = publishers.iter().map(|p| p.acked.len()).sum();
        if acked > acked_before {
            kills_with_traffic += 1;
        }
        eprintln!(
            "crash loop (seed {seed}): cycle {cycle}: {acked} messages acknowledged so far \
             ({} in this cycle)",
            acked - acked_before
        );
    }
    // Once more without a kill: the subscribers take what is left, then a clean stop.
    let broker = Process::start(addr, &dir.path);
    let stop = Arc::new(AtomicBool::new(true));
    let (pubs, subs) = run_clients(addr, Vec::new(), subscribers, &stop);
    pubs.join().unwrap();
    subscribers = subs.join().unwrap();
    // The retained value: a fresh subscriber gets it.
    let (mut link, _) = Link::open(addr, connect_packet("crash-retained", true)).expect("connects");
    link.send(&subscribe_packet("crash/q1", QoS::AtLeastOnce))
        .unwrap();
    let mut retained = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while retained.is_none() && Instant::now() < deadline {
        if let Ok(Some(Packet::Publish(p))) = link.recv() {
            retained = Some(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
        }
    }
    drop(link);
    broker.stop();

    let context = format!("seed {seed}, {cycles} cycles");
    assert!(
        kills_with_traffic * 2 >= cycles,
        "{context}: only {kills_with_traffic} kills came while messages were acknowledged"
    );
    for sub in &subscribers {
        assert_eq!(
            sub.lost_session, 0,
            "{context}: {} lost its session",
            sub.id
        );
        for p in &publishers {
            let missing: Vec<u32> = p
                .acked
                .iter()
                .copied()
                .filter(|&seq| !sub.got.contains_key(&(p.topic.to_string(), seq)))
                .collect();
            assert!(
                missing.is_empty(),
                "{context}: {} never got {} acknowledged messages of {} (of {}): {:?}",
                sub.id,
                missing.len(),
                p.topic,
                p.acked.len(),
                &missing[..missing.len().min(20)]
            );
        }
        let twice: Vec<_> = sub
            .got
            .iter()
            .filter(|((topic, _), &n)| topic == "crash/q2" && n > 1)
            .collect();
        assert!(
            twice.is_empty(),
            "{context}: {} got QoS 2 messages more than once: {twice:?}",
            sub.id
        );
    }
    let last_acked = publishers[0].acked.last().copied();
    assert!(last_acked.is_some(), "{context}: nothing acknowledged");
    assert!(
        retained >= last_acked,
        "{context}: retained {retained:?}, last acknowledged {last_acked:?}"
    );
}

/// A SUBSCRIBE to one filter at `qos`, packet id 1.
fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::copy_from(filter).unwrap(),
            SubscriptionOptions::with_qos(qos),
        )],
    })
}

/// A `PUBLISH` of `payload` to `topic` with packet id 1 (unless QoS 0).
fn publish_of(topic: &str, payload: &[u8], qos: QoS) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: (qos != QoS::AtMostOnce).then(|| packet_id(1)),
        ..Publish::new(topic_name(topic), Bytes::copy_from_slice(payload))
    })
}

/// The next packet within 5 s that is not `None` (a read timeout); `None` when the link broke.
fn next_packet(link: &mut Link) -> Option<Packet> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match link.recv() {
            Ok(Some(p)) => return Some(p),
            Ok(None) => {}
            Err(()) => return None,
        }
    }
    panic!("no packet within 5 s");
}

#[test]
fn a_full_disk_refuses_qos1_and_qos2_but_keeps_qos0_flowing() {
    let _guard = alone();
    let dir = TempDir::new("disk-full");
    let addr = free_addr();
    let log = dir.path.join("broker.log");
    let data = dir.path.join("data");
    // Each of the broker's files may grow to 256 KiB: the logs fill up after a few dozen
    // 4 KiB messages queued for an offline subscriber.
    let stderr = std::fs::File::create(&log).unwrap();
    let broker = Process::start_with(addr, &data, Some(256 << 10), stderr.into());
    let sub_id = id_on(2, 1, "full-sub");
    let (mut sub, _) = Link::open(addr, connect_packet(&sub_id, false)).expect("connects");
    sub.send(&subscribe_packet("full/#", QoS::AtLeastOnce))
        .unwrap();
    assert!(matches!(next_packet(&mut sub), Some(Packet::SubAck(_))));
    drop(sub);
    let (mut live, _) = Link::open(addr, connect_packet("full-live", true)).expect("connects");
    live.send(&subscribe_packet("live/#", QoS::AtMostOnce))
        .unwrap();
    assert!(matches!(next_packet(&mut live,), Some(Packet::SubAck(_))));

    let (mut publisher, _) =
        Link::open(addr, connect_packet(&id_on(2, 0, "full-pub"), true)).expect("connects");
    let payload = vec![b'x'; 4096];
    let mut accepted = 0;
    let refusal = loop {
        assert!(
            accepted < 1000,
            "1000 messages of 4 KiB acknowledged past a 256 KiB limit"
        );
        publisher
            .send(&publish_of("full/data", &payload, QoS::AtLeastOnce))
            .unwrap();
        match next_packet(&mut publisher) {
            Some(Packet::PubAck(a)) if !a.reason_code.is_error() => accepted += 1,
            Some(Packet::PubAck(a)) => break a,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    };
    // MQTT 5: 0x97 rather than an acknowledgement of what cannot be kept.
    assert_eq!(
        refusal.reason_code,
        coremq::protocol::ReasonCode::QUOTA_EXCEEDED
    );
    assert!(accepted > 0, "the first messages fit");
    // The next QoS 2 message is refused at once, the same way.
    publisher
        .send(&publish_of("full/data", &payload, QoS::ExactlyOnce))
        .unwrap();
    match next_packet(&mut publisher) {
        Some(Packet::PubRec(a)) => {
            assert_eq!(a.reason_code, coremq::protocol::ReasonCode::QUOTA_EXCEEDED)
        }
        other => panic!("expected PUBREC 0x97, got {other:?}"),
    }
    // QoS 0 keeps flowing.
    publisher
        .send(&publish_of("live/x", b"still here", QoS::AtMostOnce))
        .unwrap();
    match next_packet(&mut live) {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"still here"),
        other => panic!("expected the QoS 0 message, got {other:?}"),
    }
    // MQTT 3.1.1 cannot say so: its QoS 1 PUBLISH is not acknowledged, the connection closes.
    let mut old = connect_packet("full-311", true);
    old.protocol = ProtocolVersion::V3_1_1;
    let (mut old, _) = Link::open(addr, old).expect("connects");
    old.send(&publish_of("full/data", &payload, QoS::AtLeastOnce))
        .unwrap();
    assert_eq!(next_packet(&mut old), None, "3.1.1: closed without PUBACK");
    broker.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("cannot write") && text.contains("refused"),
        "the log says so at once: {text}"
    );
    // Without the limit, every acknowledged message is there.
    let broker = Process::start(addr, &data);
    let (mut sub, present) = Link::open(addr, connect_packet(&sub_id, false)).expect("connects");
    assert!(present);
    let mut got = 0;
    while got < accepted {
        match next_packet(&mut sub) {
            Some(Packet::Publish(p)) => {
                got += 1;
                sub.send(&Packet::PubAck(PublishAck::new(p.packet_id.unwrap())))
                    .unwrap();
            }
            other => panic!("after {got} of {accepted} messages: {other:?}"),
        }
    }
    drop(sub);
    broker.stop();
}
