//! Authentication and authorization (issue 5) end to end: anonymous access, Mosquitto password
//! files, the ACL file, reloading both under live connections, SCRAM-SHA-256 and a storm of bad
//! logins — through rumqttc (MQTT 3.1.1 and 5) where it can express the case, and raw bytes
//! where the exact code matters or no client can send the packet.
//!
//! Every broker has 2 shards and every case places its clients on both (`id_on`), so rules are
//! checked on the shard that accepts a connection (login), on the publisher's home shard
//! (PUBLISH), and on the subscriber's home shard (SUBSCRIBE, each delivery).
//!
//! The files live in a fresh temporary directory per test ([`Files`]). Absence of a message is
//! asserted without sleeping: the publisher sends a marker last, and the subscriber collects
//! everything up to it (one publisher's messages reach one subscriber in order).

mod acl;
mod login;
mod reload;
mod scram;
mod storm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::{
    Connect, ConnectProperties, LastWill, MqttString, Packet, PacketId, ProtocolVersion, Publish,
    PublishAck, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use coremq::Config;

use crate::common::{RawClient, TempDir, TestBroker};
use crate::Inbox;

/// Written by Mosquitto's own `mosquitto_passwd` 2.0.11 (Debian package `mosquitto`
/// 2.0.11-1.2+deb12u2), once, and pasted here (CI need not have Mosquitto):
/// ```text
/// mosquitto_passwd -c -b pw.txt alice 'wonderland'        # default: $7$ (PBKDF2-SHA512, 101 rounds)
/// mosquitto_passwd -H sha512 -b pw.txt bob 'builder'      # $6$ (SHA-512 of password + salt)
/// ```
const MOSQUITTO_ALICE: &str = "alice:$7$101$j7H2se7gCQfeTGj2$7savbhJGmymeGpe1qLbsfNPLYiIxXSPTk0eDRBs1XUNkwKlhZ+3hbkWyxlq+mWYJU81o2nLSmsJ1rhQk1hBb/w==";
const MOSQUITTO_BOB: &str = "bob:$6$GwP4AM9Jnnr8faS0$Y3oKwIceMc6eUCe+jsugU/ebJFoHj5nhvAoFk2IkheScutzBPPbzIx342NR+umd4R0VHkwYXKGN3ET8O2gm4kw==";
const ALICE_PASSWORD: &str = "wonderland";
const BOB_PASSWORD: &str = "builder";

/// Both Mosquitto users, one per line.
fn mosquitto_users() -> String {
    format!("{MOSQUITTO_ALICE}\n{MOSQUITTO_BOB}\n")
}

/// A test's password and ACL files (either may be left unwritten and unconfigured).
pub struct Files {
    /// Held for its `Drop`, which removes the files.
    _dir: TempDir,
    pub passwords: PathBuf,
    pub acl: PathBuf,
}

impl Files {
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        Self {
            passwords: dir.path.join("passwords"),
            acl: dir.path.join("acl"),
            _dir: dir,
        }
    }

    pub fn write_passwords(&self, text: &str) -> &Self {
        std::fs::write(&self.passwords, text).expect("write the password file");
        self
    }

    pub fn write_acl(&self, text: &str) -> &Self {
        std::fs::write(&self.acl, text).expect("write the ACL file");
        self
    }

    /// A 2-shard broker using the files written so far, with `COREMQ_ALLOW_ANONYMOUS` set to
    /// `anonymous` (parsed as the flag is: `auto`, `true` or `false`).
    pub fn start(&self, anonymous: &str) -> TestBroker {
        self.start_tweaked(anonymous, |_| {})
    }

    /// `start` with further configuration.
    pub fn start_tweaked(&self, anonymous: &str, tweak: impl FnOnce(&mut Config)) -> TestBroker {
        let allow_anonymous = anonymous_flag(anonymous);
        let passwords = self.passwords.exists().then(|| self.passwords.clone());
        let acl = self.acl.exists().then(|| self.acl.clone());
        TestBroker::start_with(2, |cfg| {
            cfg.allow_anonymous = allow_anonymous;
            cfg.password_file = passwords;
            cfg.acl_file = acl;
            tweak(cfg);
        })
    }
}

/// `COREMQ_ALLOW_ANONYMOUS=value` as the broker's flag table reads it.
pub fn anonymous_flag(value: &str) -> Option<bool> {
    Config::from_lookup(|flag| (flag == "COREMQ_ALLOW_ANONYMOUS").then(|| value.to_string()))
        .expect("a valid COREMQ_ALLOW_ANONYMOUS")
        .allow_anonymous
}

fn s(v: &str) -> MqttString {
    MqttString::copy_from(v).expect("a valid MQTT string")
}

/// A clean-start CONNECT (keep alive 60 s) with these credentials.
pub fn connect_packet(
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: s(id).into(),
        will: None,
        username: user.map(s),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        properties: ConnectProperties::default(),
    }
}

/// Sends `connect` on a new raw connection and returns the CONNACK's code with the client.
pub fn raw_try(broker: &TestBroker, connect: Connect) -> (ReasonCode, RawClient) {
    let mut client = RawClient::connect(broker.addr, connect.protocol);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_packet() {
        Packet::ConnAck(ack) => (ack.reason_code, client),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw client logged in with these credentials (panics unless CONNACK is a success).
pub fn raw_login(
    broker: &TestBroker,
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> RawClient {
    let (code, client) = raw_try(broker, connect_packet(version, id, user, password));
    assert_eq!(code, ReasonCode::SUCCESS, "login of {id} as {user:?}");
    client
}

/// Every byte the broker sends in answer to `connect` until it closes the connection: the exact
/// refusal on the wire.
pub fn refusal_bytes(broker: &TestBroker, connect: Connect) -> Vec<u8> {
    refusal_bytes_at(broker.addr, connect)
}

/// `refusal_bytes` for a broker at `addr` (usable from threads that do not hold the broker).
pub fn refusal_bytes_at(addr: std::net::SocketAddr, connect: Connect) -> Vec<u8> {
    use std::io::Read;
    let mut client = RawClient::connect(addr, connect.protocol);
    client.send(&Packet::Connect(Box::new(connect)));
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset after the CONNACK is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("no close after {got:02x?}: {e}"),
        }
    }
}

/// 3.1.1 CONNACK with return code 4 (bad user name or password), then close.
pub const V311_BAD_CREDENTIALS: &[u8] = &[0x20, 0x02, 0x00, 0x04];
/// 3.1.1 CONNACK with return code 5 (not authorized), then close.
pub const V311_NOT_AUTHORIZED: &[u8] = &[0x20, 0x02, 0x00, 0x05];
/// MQTT 5 CONNACK 0x86 Bad User Name or Password, no properties.
pub const V5_BAD_CREDENTIALS: &[u8] = &[0x20, 0x03, 0x00, 0x86, 0x00];
/// MQTT 5 CONNACK 0x87 Not authorized, no properties.
pub const V5_NOT_AUTHORIZED: &[u8] = &[0x20, 0x03, 0x00, 0x87, 0x00];

/// Subscribes `client` to `filters` in one SUBSCRIBE; the SUBACK's codes.
pub fn raw_subscribe(client: &mut RawClient, id: u16, filters: &[(&str, QoS)]) -> Vec<ReasonCode> {
    let packet_id = PacketId::new(id).expect("a non-zero packet id");
    client.send(&Packet::Subscribe(Subscribe {
        packet_id,
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|(f, q)| {
                let filter = TopicFilter::copy_from(f).expect("a valid filter");
                (filter, SubscriptionOptions::with_qos(*q))
            })
            .collect(),
    }));
    match client.expect_packet() {
        Packet::SubAck(a) if a.packet_id == packet_id => a.reason_codes,
        other => panic!("expected SUBACK {id}, got {other:?}"),
    }
}

/// Publishes from a client that subscribes to nothing, and returns the broker's answer: `None`
/// for QoS 0, else the PUBACK's (QoS 1) or PUBREC's (QoS 2) reason code — a successful QoS 2
/// flow is completed with PUBREL / PUBCOMP. MQTT 5's 0x10 No matching subscribers is a success
/// and comes back as `SUCCESS`: these tests are about what is allowed, not who listens.
pub fn raw_publish(
    client: &mut RawClient,
    topic: &str,
    qos: QoS,
    id: u16,
    payload: &str,
) -> Option<ReasonCode> {
    let mut publish = Publish::new(
        TopicName::copy_from(topic).expect("a valid topic"),
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    publish.qos = qos;
    let packet_id = PacketId::new(id).expect("a non-zero packet id");
    if qos != QoS::AtMostOnce {
        publish.packet_id = Some(packet_id);
    }
    client.send(&Packet::Publish(publish));
    match (qos, client.expect_packet()) {
        (QoS::AtMostOnce, other) => panic!("nothing answers a QoS 0 PUBLISH, got {other:?}"),
        (QoS::AtLeastOnce, Packet::PubAck(a)) if a.packet_id == packet_id => {
            Some(accepted(a.reason_code))
        }
        (QoS::ExactlyOnce, Packet::PubRec(a)) if a.packet_id == packet_id => {
            if !a.reason_code.is_error() {
                // [MQTT-4.3.3] complete the flow.
                client.send(&Packet::PubRel(PublishAck::new(packet_id)));
                match client.expect_packet() {
                    Packet::PubComp(c) if c.packet_id == packet_id => {}
                    other => panic!("expected PUBCOMP {id}, got {other:?}"),
                }
            }
            Some(accepted(a.reason_code))
        }
        (_, other) => panic!("expected the acknowledgement of {id}, got {other:?}"),
    }
}

/// `code`, with 0x10 No matching subscribers read as plain success.
fn accepted(code: ReasonCode) -> ReasonCode {
    if code == ReasonCode::NO_MATCHING_SUBSCRIBERS {
        ReasonCode::SUCCESS
    } else {
        code
    }
}

/// QoS 0 PUBLISH (no answer to wait for).
pub fn raw_publish_qos0(client: &mut RawClient, topic: &str, payload: &str) {
    let publish = Publish::new(
        TopicName::copy_from(topic).expect("a valid topic"),
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    client.send(&Packet::Publish(publish));
}

/// The topics of the PUBLISHes `client` receives up to and including the first on `marker`
/// (QoS 1 and 2 deliveries are acknowledged as they come).
pub fn raw_topics_until(client: &mut RawClient, marker: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        match client.expect_packet() {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        client.send(&Packet::PubAck(PublishAck::new(id)))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        client.send(&Packet::PubRec(PublishAck::new(id)));
                        match client.expect_packet() {
                            Packet::PubRel(_) => {}
                            other => panic!("expected PUBREL, got {other:?}"),
                        }
                        client.send(&Packet::PubComp(PublishAck::new(id)));
                    }
                    _ => {}
                }
                let topic = p.topic.as_str().to_string();
                let done = topic == marker;
                topics.push(topic);
                if done {
                    return topics;
                }
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// A will on `topic` (QoS 0, not retained).
pub fn will(topic: &str, payload: &str) -> LastWill {
    LastWill {
        topic: TopicName::copy_from(topic).expect("a valid topic"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// An MQTT 3.1.1 rumqttc client; its event loop runs on its own thread (see `Inbox`).
pub struct V311 {
    pub client: rumqttc::Client,
    inbox: Inbox<rumqttc::Packet, rumqttc::ConnectionError>,
}

impl V311 {
    /// Starts connecting as `id` with `credentials`, without waiting for the CONNACK.
    fn start(broker: &TestBroker, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        let inbox = Inbox::spawn(move || {
            let event = connection.recv().ok()?;
            Some(event.map(|e| match e {
                rumqttc::Event::Incoming(p) => Some(p),
                rumqttc::Event::Outgoing(_) => None,
            }))
        });
        Self { client, inbox }
    }

    /// Connected as `id` (clean session) with `credentials`; panics if refused.
    pub fn connect(broker: &TestBroker, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let peer = Self::start(broker, id, credentials);
        peer.expect(|p| matches!(p, rumqttc::Packet::ConnAck(_)).then_some(()));
        peer
    }

    /// The return code of a refused connection attempt.
    pub fn refused(
        broker: &TestBroker,
        id: &str,
        credentials: Option<(&str, &str)>,
    ) -> rumqttc::ConnectReturnCode {
        match Self::start(broker, id, credentials).inbox.expect_end() {
            rumqttc::ConnectionError::ConnectionRefused(code) => code,
            other => panic!("expected a refused connection, got {other}"),
        }
    }

    pub fn expect<T>(&self, want: impl FnMut(&rumqttc::Packet) -> Option<T>) -> T {
        self.inbox.expect(want)
    }

    pub fn next_publish(&self) -> rumqttc::Publish {
        self.expect(|p| match p {
            rumqttc::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
    }

    /// Topics received up to and including the first on `marker`.
    pub fn topics_until(&self, marker: &str) -> Vec<String> {
        let mut topics = Vec::new();
        loop {
            let p = self.next_publish();
            let done = p.topic == marker;
            topics.push(p.topic);
            if done {
                return topics;
            }
        }
    }

    pub fn subscribe(&self, filters: &[(&str, rumqttc::QoS)]) -> Vec<rumqttc::SubscribeReasonCode> {
        let filters = filters
            .iter()
            .map(|(f, q)| rumqttc::SubscribeFilter::new(f.to_string(), *q));
        self.client
            .subscribe_many(filters)
            .expect("subscribe queued");
        self.expect(|p| match p {
            rumqttc::Packet::SubAck(a) => Some(a.return_codes.clone()),
            _ => None,
        })
    }

    /// Publishes and, for QoS 1 and 2, waits until the flow completed (PUBACK, PUBCOMP).
    pub fn publish(&self, topic: &str, qos: rumqttc::QoS, retain: bool, payload: &str) {
        self.client
            .publish(topic, qos, retain, payload.as_bytes().to_vec())
            .expect("publish queued");
        match qos {
            rumqttc::QoS::AtMostOnce => {}
            rumqttc::QoS::AtLeastOnce => {
                self.expect(|p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()))
            }
            rumqttc::QoS::ExactlyOnce => {
                self.expect(|p| matches!(p, rumqttc::Packet::PubComp(_)).then_some(()))
            }
        }
    }
}

/// An MQTT 5 rumqttc client; its event loop runs on its own thread (see `Inbox`).
pub struct V5 {
    pub client: rumqttc::v5::Client,
    inbox: Inbox<rumqttc::v5::mqttbytes::v5::Packet, rumqttc::v5::ConnectionError>,
}

impl V5 {
    fn start(broker: &TestBroker, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let mut opts = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", broker.port());
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        let (client, mut connection) = rumqttc::v5::Client::new(opts, 64);
        let inbox = Inbox::spawn(move || {
            let event = connection.recv().ok()?;
            Some(event.map(|e| match e {
                rumqttc::v5::Event::Incoming(p) => Some(p),
                rumqttc::v5::Event::Outgoing(_) => None,
            }))
        });
        Self { client, inbox }
    }

    /// Connected as `id` (clean start) with `credentials`; panics if refused.
    pub fn connect(broker: &TestBroker, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let peer = Self::start(broker, id, credentials);
        peer.expect(|p| matches!(p, rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)).then_some(()));
        peer
    }

    /// The reason code of a refused connection attempt.
    pub fn refused(
        broker: &TestBroker,
        id: &str,
        credentials: Option<(&str, &str)>,
    ) -> rumqttc::v5::mqttbytes::v5::ConnectReturnCode {
        match Self::start(broker, id, credentials).inbox.expect_end() {
            rumqttc::v5::ConnectionError::ConnectionRefused(code) => code,
            other => panic!("expected a refused connection, got {other}"),
        }
    }

    pub fn expect<T>(
        &self,
        want: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
    ) -> T {
        self.inbox.expect(want)
    }

    /// Topics received up to and including the first on `marker`.
    pub fn topics_until(&self, marker: &str) -> Vec<String> {
        let mut topics = Vec::new();
        loop {
            let topic = self.expect(|p| match p {
                rumqttc::v5::mqttbytes::v5::Packet::Publish(p) => {
                    Some(String::from_utf8(p.topic.to_vec()).expect("utf-8 topic"))
                }
                _ => None,
            });
            let done = topic == marker;
            topics.push(topic);
            if done {
                return topics;
            }
        }
    }

    pub fn subscribe(
        &self,
        filters: &[(&str, rumqttc::v5::mqttbytes::QoS)],
    ) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
        let filters = filters
            .iter()
            .map(|(f, q)| rumqttc::v5::mqttbytes::v5::Filter::new(*f, *q));
        self.client
            .subscribe_many(filters)
            .expect("subscribe queued");
        self.expect(|p| match p {
            rumqttc::v5::mqttbytes::v5::Packet::SubAck(a) => Some(a.return_codes.clone()),
            _ => None,
        })
    }
}

/// Asserts `topics` are `want`, in order.
pub fn assert_topics(topics: &[String], want: &[&str]) {
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    assert_eq!(topics, want);
}

/// The ACL file's path as the broker names it in errors.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}
