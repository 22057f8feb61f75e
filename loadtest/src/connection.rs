//! One MQTT client connection on a non-blocking socket: buffering, coremq's codec, and the
//! client half of the protocol flows (CONNECT/CONNACK, SUBSCRIBE/SUBACK, QoS 1 and 2 in both
//! directions, PINGREQ). It answers the broker by itself (PUBACK, PUBREC, PUBREL, PUBCOMP) and
//! reports what happened as [`ConnEvent`]s; what a message *means* (counting, latency) is the
//! worker's business, not this file's.
//!
//! Lives on one worker thread, registered in that worker's poller (edge triggered: reads and
//! writes go on until `WouldBlock`).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use coremq::protocol::{
    decode, ClientId, Connect, ConnectProperties, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName,
};
use mio::net::TcpStream;

use crate::payload::Stamp;
use crate::transport::{Layers, Transport};

/// Largest packet accepted from the broker.
const MAX_PACKET: u32 = 64 << 20;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP handshake under way; CONNECT is queued.
    Connecting,
    /// CONNECT sent, CONNACK awaited.
    AwaitConnAck,
    /// Usable: publishes and subscriptions may go out.
    Ready,
    /// Closed by either side or by an error; the socket is to be dropped.
    Closed,
}

/// Something the worker must know about.
#[derive(Debug)]
pub enum ConnEvent {
    /// CONNACK with success.
    Connected,
    /// SUBACK granting every filter.
    Subscribed,
    /// SUBACK refusing a filter.
    SubscribeRefused(ReasonCode),
    /// The payload of an application message (already acknowledged to the broker as its QoS
    /// requires).
    Message(Bytes),
    /// PUBACK / PUBREC with success: the broker owns the message.
    Confirmed,
    /// PUBACK / PUBREC with an error code (MQTT 5): message `seq` will not be delivered.
    Rejected(u64, ReasonCode),
    PingResp,
}

/// A QoS 1/2 publish the broker has not finished acknowledging.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    seq: u64,
    /// PUBREC received (QoS 2): confirmed, waiting for PUBCOMP.
    confirmed: bool,
}

/// Identity and options of the CONNECT this connection sends.
pub struct Login<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a MqttString>,
    pub password: Option<&'a Bytes>,
    pub keep_alive: u16,
    /// A persistent session rather than a clean one.
    pub persistent: bool,
}

pub struct Conn {
    stream: TcpStream,
    /// TLS and/or WebSocket between the MQTT bytes and the socket (`None`: plain TCP).
    transport: Option<Box<Transport>>,
    pub state: State,
    version: ProtocolVersion,
    /// Bytes read but not yet decoded.
    rbuf: BytesMut,
    /// Bytes encoded but not yet written.
    wbuf: BytesMut,
    /// When the TCP connect began (ns since the epoch): connect latency runs from here.
    pub opened_ns: u64,
    /// Last time bytes were queued (keep alive).
    pub last_write_ns: u64,
    next_id: PacketId,
    /// Our unacknowledged QoS 1/2 publishes by packet id.
    inflight: HashMap<u16, Outgoing>,
    /// The broker's Receive Maximum (MQTT 5), else the packet id space.
    pub receive_maximum: u16,
    /// QoS 2 messages received, PUBREL awaited: a resent PUBLISH with one of these ids is not a
    /// new delivery.
    awaiting_pubrel: HashSet<u16>,
    /// PINGREQs without PINGRESP.
    pub pings_out: u32,
    tcp_up: bool,
    /// CONNACK with success was received (the connection counted as up).
    connected: bool,
    /// Why the connection ended (EOF, socket error, decode error, refusal, DISCONNECT from the
    /// broker); set together with `State::Closed`.
    closed_why: Option<String>,
}

impl Conn {
    /// Starts a non-blocking TCP connect and queues CONNECT behind it (and behind the TLS
    /// handshake and WebSocket upgrade when `layers` asks for them).
    pub fn open(
        addr: SocketAddr,
        version: ProtocolVersion,
        login: &Login,
        layers: Option<&Layers>,
        now_ns: u64,
    ) -> io::Result<Conn> {
        let transport = match layers {
            Some(l) => Some(Box::new(Transport::new(l, now_ns as u32 ^ 0x9e37_79b9)?)),
            None => None,
        };
        let stream = TcpStream::connect(addr)?;
        let mut conn = Conn {
            stream,
            transport,
            state: State::Connecting,
            version,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(1024),
            opened_ns: now_ns,
            last_write_ns: now_ns,
            next_id: PacketId(std::num::NonZeroU16::MIN),
            inflight: HashMap::new(),
            receive_maximum: u16::MAX,
            awaiting_pubrel: HashSet::new(),
            pings_out: 0,
            tcp_up: false,
            connected: false,
            closed_why: None,
        };
        let connect = Connect {
            protocol: version,
            clean_start: !login.persistent,
            keep_alive: login.keep_alive,
            client_id: ClientId::copy_from(login.client_id)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?,
            will: None,
            username: login.username.cloned(),
            password: login.password.cloned(),
            properties: ConnectProperties {
                session_expiry_interval: (login.persistent && version.is_v5()).then_some(300),
                ..ConnectProperties::default()
            },
        };
        conn.queue(Packet::Connect(Box::new(connect)), now_ns);
        Ok(conn)
    }

    /// Whether the broker accepted the connection (it may have closed since).
    pub fn was_connected(&self) -> bool {
        self.connected
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Encodes `packet` into the write buffer. Our own packets always encode; a failure would be
    /// a bug in this file, reported as a closed connection rather than a panic.
    fn queue(&mut self, packet: Packet, now_ns: u64) {
        if let Err(e) = packet.encode(self.version, &mut self.wbuf) {
            self.close(format!("could not encode {packet:?}: {e:?}"));
        }
        self.last_write_ns = now_ns;
    }

    /// Queues a SUBSCRIBE for `filter` at `qos`.
    pub fn subscribe(&mut self, filter: &TopicFilter, qos: QoS, now_ns: u64) {
        let id = self.alloc_id();
        self.queue(
            Packet::Subscribe(Subscribe {
                packet_id: id,
                properties: SubscribeProperties::default(),
                filters: vec![(filter.clone(), SubscriptionOptions::with_qos(qos))],
            }),
            now_ns,
        );
    }

    /// The bytes queued so far, removed from the write buffer (tests decode them).
    #[cfg(test)]
    pub fn take_queued(&mut self) -> BytesMut {
        self.wbuf.split()
    }

    /// A connection to a local listener that never answers, already marked ready: enough to
    /// drive the protocol and role logic without a broker.
    #[cfg(test)]
    pub fn for_test(version: ProtocolVersion) -> (Conn, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let login = Login {
            client_id: "t",
            username: None,
            password: None,
            keep_alive: 60,
            persistent: false,
        };
        let mut c = Conn::open(listener.local_addr().unwrap(), version, &login, None, 0).unwrap();
        c.wbuf.clear();
        c.state = State::Ready;
        (c, listener)
    }

    /// Unacknowledged publishes.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes waiting for the socket.
    pub fn pending_write(&self) -> usize {
        self.wbuf.len()
    }

    /// The next free packet id (ids still in flight are skipped).
    fn alloc_id(&mut self) -> PacketId {
        let mut id = self.next_id;
        while self.inflight.contains_key(&id.get()) {
            id = id.next();
        }
        self.next_id = id.next();
        id
    }

    /// Queues one PUBLISH of `payload` with `stamp` written into its first bytes. The payload is
    /// a shared template: the stamp is patched into the encoded frame, not into a new payload.
    pub fn publish(
        &mut self,
        topic: &TopicName,
        qos: QoS,
        retain: bool,
        payload: &Bytes,
        stamp: &Stamp,
        now_ns: u64,
    ) {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.alloc_id());
        self.queue(
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain,
                topic: topic.clone(),
                packet_id,
                payload: payload.clone(),
                properties: PublishProperties::default(),
            }),
            now_ns,
        );
        // The payload is the last thing in a PUBLISH frame.
        let start = self.wbuf.len() - payload.len();
        stamp.write(&mut self.wbuf[start..]);
        if let Some(id) = packet_id {
            self.inflight.insert(
                id.get(),
                Outgoing {
                    seq: stamp.seq,
                    confirmed: false,
                },
            );
        }
    }

    /// Queues an empty retained QoS 0 PUBLISH: deletes the retained message on `topic`.
    pub fn clear_retained(&mut self, topic: &TopicName, now_ns: u64) {
        let mut p = Publish::new(topic.clone(), Bytes::new());
        p.retain = true;
        self.queue(Packet::Publish(p), now_ns);
    }

    pub fn ping(&mut self, now_ns: u64) {
        self.pings_out += 1;
        self.queue(Packet::PingReq, now_ns);
    }

    pub fn disconnect(&mut self, now_ns: u64) {
        self.queue(
            Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
            now_ns,
        );
    }

    /// Sequence numbers the broker has not confirmed (still awaiting PUBACK / PUBREC).
    pub fn unconfirmed(&self) -> impl Iterator<Item = u64> + '_ {
        self.inflight
            .values()
            .filter(|o| !o.confirmed)
            .map(|o| o.seq)
    }

    fn close(&mut self, why: String) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.closed_why = Some(why);
        }
    }

    /// Why the connection closed, once `state` is `Closed`.
    pub fn closed_why(&self) -> Option<&str> {
        self.closed_why.as_deref()
    }

    /// Writable readiness: completes the TCP handshake, then flushes.
    pub fn on_writable(&mut self) {
        if !self.tcp_up {
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.close(format!("connect: {e}")),
            }
            match self.stream.peer_addr() {
                Ok(_) => {
                    self.tcp_up = true;
                    if self.state == State::Connecting {
                        self.state = State::AwaitConnAck;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.close(format!("connect: {e}")),
            }
        }
        self.flush();
    }

    /// Writes as much of the write buffer as the socket takes.
    pub fn flush(&mut self) {
        if let Some(t) = self.transport.as_mut() {
            if !self.tcp_up || self.state == State::Closed {
                return;
            }
            // The write buffer goes down only when the transport has sent what it held, so
            // `pending_write` still tells how far behind the socket is.
            loop {
                match t.write_to(&mut self.stream) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => return self.close(format!("write: {e}")),
                }
                let before = self.wbuf.len();
                if let Err(e) = t.send(&mut self.wbuf) {
                    return self.close(format!("write: {e}"));
                }
                if self.wbuf.len() == before {
                    // Empty, or held until the WebSocket upgrade is done.
                    return;
                }
            }
        }
        while self.tcp_up && !self.wbuf.is_empty() && self.state != State::Closed {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return self.close("write returned 0".into()),
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(format!("write: {e}")),
            }
        }
    }

    /// Readable readiness: reads until `WouldBlock`, decoding and answering as it goes.
    pub fn on_readable(&mut self, scratch: &mut [u8], now_ns: u64, events: &mut Vec<ConnEvent>) {
        while self.state != State::Closed {
            match self.stream.read(scratch) {
                Ok(0) => return self.close("closed by the broker".into()),
                Ok(n) => {
                    match self.transport.as_mut() {
                        None => self.rbuf.extend_from_slice(&scratch[..n]),
                        Some(t) => {
                            if let Err(e) = t.receive(&scratch[..n], &mut self.rbuf) {
                                return self.close(e);
                            }
                            // A handshake flight, a pong, or MQTT bytes the upgrade held back.
                            self.flush();
                        }
                    }
                    self.decode_all(now_ns, events);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(format!("read: {e}")),
            }
        }
    }

    fn decode_all(&mut self, now_ns: u64, events: &mut Vec<ConnEvent>) {
        while self.state != State::Closed {
            match decode(&mut self.rbuf, self.version, MAX_PACKET) {
                Ok(Some(packet)) => self.handle(packet, now_ns, events),
                Ok(None) => return,
                Err(e) => return self.close(format!("undecodable packet from broker: {e:?}")),
            }
        }
    }

    fn handle(&mut self, packet: Packet, now_ns: u64, events: &mut Vec<ConnEvent>) {
        match packet {
            Packet::ConnAck(ack) if self.state == State::AwaitConnAck => {
                if ack.reason_code.is_error() {
                    return self
                        .close(format!("connection refused: CONNACK {:?}", ack.reason_code));
                }
                if let Some(max) = ack.properties.receive_maximum {
                    self.receive_maximum = max.get();
                }
                self.state = State::Ready;
                self.connected = true;
                events.push(ConnEvent::Connected);
            }
            Packet::SubAck(ack) => match ack.reason_codes.iter().find(|c| c.is_error()) {
                Some(&code) => events.push(ConnEvent::SubscribeRefused(code)),
                None => events.push(ConnEvent::Subscribed),
            },
            Packet::Publish(p) => self.on_publish(p, now_ns, events),
            Packet::PubAck(ack) => {
                if let Some(o) = self.inflight.remove(&ack.packet_id.get()) {
                    events.push(if ack.reason_code.is_error() {
                        ConnEvent::Rejected(o.seq, ack.reason_code)
                    } else {
                        ConnEvent::Confirmed
                    });
                }
            }
            Packet::PubRec(ack) => {
                let id = ack.packet_id.get();
                if ack.reason_code.is_error() {
                    // [MQTT-4.3.3] a failing PUBREC ends the flow: no PUBREL.
                    if let Some(o) = self.inflight.remove(&id) {
                        events.push(ConnEvent::Rejected(o.seq, ack.reason_code));
                    }
                    return;
                }
                if let Some(o) = self.inflight.get_mut(&id) {
                    if !o.confirmed {
                        o.confirmed = true;
                        events.push(ConnEvent::Confirmed);
                    }
                }
                // [MQTT-4.3.3-4] answer PUBREC with PUBREL (also a resent PUBREC).
                self.queue(Packet::PubRel(PublishAck::new(ack.packet_id)), now_ns);
            }
            Packet::PubComp(ack) => {
                self.inflight.remove(&ack.packet_id.get());
            }
            Packet::PubRel(ack) => {
                self.awaiting_pubrel.remove(&ack.packet_id.get());
                self.queue(Packet::PubComp(PublishAck::new(ack.packet_id)), now_ns);
            }
            Packet::PingResp => {
                self.pings_out = self.pings_out.saturating_sub(1);
                events.push(ConnEvent::PingResp);
            }
            Packet::Disconnect(d) => self.close(format!(
                "DISCONNECT from the broker, reason {:?}",
                d.reason_code
            )),
            other => self.close(format!(
                "unexpected packet type {} from the broker",
                other.packet_type()
            )),
        }
    }

    /// The receiver side of QoS 0/1/2 [MQTT-4.3].
    fn on_publish(&mut self, p: Publish, now_ns: u64, events: &mut Vec<ConnEvent>) {
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) => events.push(ConnEvent::Message(p.payload)),
            (QoS::AtLeastOnce, Some(id)) => {
                self.queue(Packet::PubAck(PublishAck::new(id)), now_ns);
                events.push(ConnEvent::Message(p.payload));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // A resend of a PUBLISH whose PUBREL is pending is not a new delivery.
                if self.awaiting_pubrel.insert(id.get()) {
                    events.push(ConnEvent::Message(p.payload));
                }
                self.queue(Packet::PubRec(PublishAck::new(id)), now_ns);
            }
            (_, None) => self.close("QoS > 0 PUBLISH without packet id".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(version: ProtocolVersion) -> (Conn, std::net::TcpListener) {
        Conn::for_test(version)
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn qos2_publisher_flow_confirms_on_pubrec_and_frees_on_pubcomp() {
        let (mut c, _l) = conn(ProtocolVersion::V3_1_1);
        c.state = State::Ready;
        let stamp = Stamp {
            run: 1,
            publisher: 0,
            seq: 42,
            sent_ns: 0,
        };
        let topic = TopicName::from_static("a").unwrap();
        c.publish(
            &topic,
            QoS::ExactlyOnce,
            false,
            &crate::payload::template(28),
            &stamp,
            0,
        );
        assert_eq!(c.inflight(), 1);
        assert_eq!(c.unconfirmed().collect::<Vec<_>>(), [42]);
        let mut ev = Vec::new();
        c.handle(Packet::PubRec(PublishAck::new(pid(1))), 0, &mut ev);
        assert!(matches!(ev[..], [ConnEvent::Confirmed]));
        assert_eq!(c.unconfirmed().count(), 0);
        assert_eq!(c.inflight(), 1);
        c.handle(Packet::PubComp(PublishAck::new(pid(1))), 0, &mut ev);
        assert_eq!(c.inflight(), 0);
    }

    #[test]
    fn stamp_is_patched_into_the_encoded_frame() {
        let (mut c, _l) = conn(ProtocolVersion::V5);
        let before = c.pending_write();
        let stamp = Stamp {
            run: 9,
            publisher: 3,
            seq: 5,
            sent_ns: 77,
        };
        let topic = TopicName::from_static("x/y").unwrap();
        c.publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            &crate::payload::template(40),
            &stamp,
            0,
        );
        let mut frame = BytesMut::from(&c.wbuf[before..]);
        match decode(&mut frame, ProtocolVersion::V5, MAX_PACKET).unwrap() {
            Some(Packet::Publish(p)) => assert_eq!(Stamp::read(&p.payload), Ok(stamp)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resent_qos2_publish_is_not_a_second_delivery() {
        let (mut c, _l) = conn(ProtocolVersion::V3_1_1);
        c.state = State::Ready;
        let mut p = Publish::new(TopicName::from_static("a").unwrap(), Bytes::new());
        p.qos = QoS::ExactlyOnce;
        p.packet_id = Some(pid(7));
        let mut ev = Vec::new();
        c.handle(Packet::Publish(p.clone()), 0, &mut ev);
        p.dup = true;
        c.handle(Packet::Publish(p.clone()), 0, &mut ev);
        assert_eq!(ev.len(), 1);
        c.handle(Packet::PubRel(PublishAck::new(pid(7))), 0, &mut ev);
        // After PUBREL the id may be reused for a new message.
        c.handle(Packet::Publish(p), 0, &mut ev);
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn rejected_puback_is_reported() {
        let (mut c, _l) = conn(ProtocolVersion::V5);
        c.state = State::Ready;
        let stamp = Stamp {
            run: 1,
            publisher: 0,
            seq: 3,
            sent_ns: 0,
        };
        let topic = TopicName::from_static("a").unwrap();
        c.publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            &crate::payload::template(28),
            &stamp,
            0,
        );
        let mut ack = PublishAck::new(pid(1));
        ack.reason_code = ReasonCode::QUOTA_EXCEEDED;
        let mut ev = Vec::new();
        c.handle(Packet::PubAck(ack), 0, &mut ev);
        assert!(matches!(
            ev[..],
            [ConnEvent::Rejected(3, ReasonCode::QUOTA_EXCEEDED)]
        ));
        assert_eq!(c.inflight(), 0);
    }

    #[test]
    fn packet_ids_skip_those_in_flight() {
        let (mut c, _l) = conn(ProtocolVersion::V3_1_1);
        c.inflight.insert(
            2,
            Outgoing {
                seq: 0,
                confirmed: false,
            },
        );
        assert_eq!(c.alloc_id().get(), 1);
        assert_eq!(c.alloc_id().get(), 3);
    }
}
