//! One bridge's life on its shard: connect to the remote broker (trying its addresses), then to
//! this broker (in-process, `net::dial::local_connection`), subscribe on both sides, relay
//! (`relay`) until either connection ends, and start again after a backoff.
//!
//! While the remote is unreachable the local connection is closed too: its session persists
//! (`local_cleansession false`, the default), so this broker queues the QoS 1/2 messages bound for
//! the remote — bounded by COREMQ_MAX_QUEUED_MESSAGES / COREMQ_MAX_QUEUED_BYTES and counted as
//! drops beyond — and delivers them to the bridge when it is back. The remote keeps ours the same
//! way (`cleansession false`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::conf::BridgeConf;
use super::relay::{Relay, Side};
use crate::gate::ConnectionGate;
use crate::net::dial::{self, ClientTls, Outbound};
use crate::protocol::{
    decode, mark_bridge, ClientId, Connect, Disconnect, LastWill, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, QoS, RetainHandling, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName,
};
use crate::shard::Shard;

/// What a bridge needs from the shard it runs on.
pub struct Env {
    pub shard: Rc<Shard>,
    pub gate: ConnectionGate,
    /// The bridge's state, read by `Broker::bridges` (tests, logs).
    pub status: Rc<std::cell::Cell<Status>>,
}

/// Where a bridge stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    /// Successful connections since start.
    pub connections: u64,
    /// Messages relayed to the remote broker / from it, since start.
    pub sent_out: u64,
    pub received_in: u64,
}

/// The packet id of the bridge's SUBSCRIBEs (`relay` never takes it for a PUBLISH).
const SUBSCRIBE_ID: PacketId = PacketId(std::num::NonZeroU16::MAX);

/// QoS 1/2 messages this broker may have in flight toward the bridge at once.
const LOCAL_INFLIGHT: u16 = 100;

/// Why one connection of the bridge ended.
type Ended = String;

/// Runs the bridge until the task is dropped.
pub async fn run(conf: BridgeConf, tls: Option<std::sync::Arc<ClientTls>>, env: Env) {
    let mut relay = Relay::new(conf.topics.clone(), conf.outgoing_retain);
    let mut failures: u32 = 0;
    let mut first = 0;
    loop {
        let started = Instant::now();
        let (host, port) = &conf.addresses[first % conf.addresses.len()];
        let ended = connection(&conf, host, *port, tls.as_deref(), &env, &mut relay).await;
        let mut s = env.status.get();
        s.connected = false;
        env.status.set(s);
        relay.reset();
        crate::log!(
            Warn,
            "bridge {}: connection to {host}:{port} ended: {ended}",
            conf.name
        );
        // A link that stayed up a while starts its backoff afresh.
        if started.elapsed() > conf.restart_cap {
            failures = 0;
        }
        if conf.round_robin || failures > 0 {
            first += 1;
        }
        glommio::timer::sleep(backoff(&conf, failures)).await;
        failures = failures.saturating_add(1);
    }
}

/// The wait before attempt `failures` + 1: `restart_timeout` BASE doubling up to CAP, with
/// jitter (50–100 %) so that bridges restarted together do not retry in step.
fn backoff(conf: &BridgeConf, failures: u32) -> Duration {
    let exp = conf
        .restart_base
        .saturating_mul(1u32 << failures.min(16))
        .min(conf.restart_cap);
    if conf.restart_base == conf.restart_cap {
        return exp;
    }
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
    exp.mul_f64(frac).max(conf.restart_base)
}

/// A connection's packets: a read buffer and how it decodes.
struct Wire {
    version: ProtocolVersion,
    buf: BytesMut,
    out: BytesMut,
    max_packet_size: u32,
}

impl Wire {
    fn new(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            version,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            max_packet_size,
        }
    }

    fn next(&mut self) -> Result<Option<Packet>, Ended> {
        decode(&mut self.buf, self.version, self.max_packet_size)
            .map_err(|e| format!("undecodable packet: {e:?}"))
    }

    fn queue(&mut self, p: &Packet) -> Result<(), Ended> {
        p.encode(self.version, &mut self.out)
            .map_err(|e| format!("cannot encode {e:?}"))
    }
}

/// One connection of the bridge, from connecting to its end.
async fn connection(
    conf: &BridgeConf,
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    env: &Env,
    relay: &mut Relay,
) -> Ended {
    let config = &env.shard.config;
    let timeout = config.connect_timeout;
    let max = config.max_packet_size;
    let mut remote = match Outbound::connect(host, port, tls, timeout).await {
        Ok(r) => r,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let mut rw = Wire::new(conf.protocol, max);
    let connect = remote_connect(conf, max);
    let mut frame = BytesMut::new();
    if let Err(e) = Packet::Connect(Box::new(connect)).encode(conf.protocol, &mut frame) {
        return format!("cannot encode CONNECT: {e:?}");
    }
    if conf.try_private && !conf.protocol.is_v5() {
        mark_bridge(&mut frame);
    }
    if let Err(e) = remote.send(&frame).await {
        return format!("sending CONNECT: {e}");
    }
    // What the remote takes in flight from us (MQTT 5): this broker sends the bridge no more.
    let mut resends = Vec::new();
    let remote_window = match connack(&mut rw, Conn::Remote(&mut remote), timeout).await {
        Ok(ack) => {
            relay.resume(Side::Remote, ack.session_present, &mut resends);
            ack.properties
                .receive_maximum
                .map_or(LOCAL_INFLIGHT, |m| m.get())
        }
        Err(e) => return format!("remote broker: {e}"),
    };
    // The local side: a trusted in-process MQTT 5 connection.
    let mut local = match dial::local_connection(&env.shard, &env.gate) {
        Ok(l) => l,
        Err(e) => return format!("cannot open the local connection: {e}"),
    };
    let mut lw = Wire::new(ProtocolVersion::V5, max);
    let mut frame = BytesMut::new();
    if let Err(e) = Packet::Connect(Box::new(local_connect(conf, remote_window)))
        .encode(ProtocolVersion::V5, &mut frame)
    {
        return format!("cannot encode CONNECT: {e:?}");
    }
    if let Err(e) = local.write_all(&frame).await {
        return format!("local connection: {e}");
    }
    let local_keepalive = match connack(&mut lw, Conn::Local(&mut local), timeout).await {
        Ok(ack) => {
            relay.resume(Side::Local, ack.session_present, &mut resends);
            ack.properties.server_keep_alive.filter(|k| *k > 0)
        }
        Err(e) => return format!("this broker refused the bridge: {e}"),
    };
    crate::log!(
        Info,
        "bridge {}: connected to {host}:{port} as {}",
        conf.name,
        conf.remote_clientid
    );
    for (side, packet) in resends {
        let wire = match side {
            Side::Remote => &mut rw,
            Side::Local => &mut lw,
        };
        if let Err(e) = wire.queue(&packet) {
            return e;
        }
    }
    let subscribing = match subscribe(conf, &mut rw, &mut lw) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if let Some(topic) = notification_topic(conf) {
        let mut note = Publish::new(topic, Bytes::from_static(b"1"));
        note.retain = true;
        if let Err(e) = rw.queue(&Packet::Publish(note)) {
            return e;
        }
    }
    let link = Link {
        conf,
        env,
        relay,
        subscribing,
    };
    pump(link, remote, local, rw, lw, local_keepalive).await
}

/// The remote CONNECT: Mosquitto's bridge options.
fn remote_connect(conf: &BridgeConf, max_packet_size: u32) -> Connect {
    let mut c = connect_for(conf.protocol, &conf.remote_clientid, conf.cleansession);
    // MQTT 5: the remote sends nothing larger than this broker takes.
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(max_packet_size);
    c.keep_alive = conf.keepalive.as_secs().min(65535) as u16;
    c.username = conf
        .remote_username
        .as_deref()
        .and_then(|u| MqttString::copy_from(u).ok());
    c.password = conf
        .remote_password
        .as_ref()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()));
    if let Some(topic) = notification_topic(conf) {
        c.will = Some(LastWill {
            topic,
            payload: Bytes::from_static(b"0"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        });
    }
    c
}

/// The local CONNECT (MQTT 5, for No Local and Retain As Published).
fn local_connect(conf: &BridgeConf, remote_window: u16) -> Connect {
    let mut c = connect_for(
        ProtocolVersion::V5,
        &conf.local_clientid,
        conf.local_cleansession,
    );
    // What this broker may have in flight toward the bridge (and so toward the remote).
    c.properties.receive_maximum = std::num::NonZeroU16::new(LOCAL_INFLIGHT.min(remote_window));
    c.username = conf
        .local_username
        .as_deref()
        .and_then(|u| MqttString::copy_from(u).ok());
    c
}

fn connect_for(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    let mut properties = crate::protocol::ConnectProperties::default();
    if version.is_v5() && !clean {
        // The session outlives the connection for as long as the broker runs.
        properties.session_expiry_interval = Some(u32::MAX);
    }
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 0,
        client_id: ClientId::copy_from(id).unwrap_or_default(),
        will: None,
        username: None,
        password: None,
        properties,
    }
}

fn mqtt(s: &str) -> MqttString {
    MqttString::copy_from(s).unwrap_or_default()
}

/// Where the bridge's state goes (`notifications`): retained "1" once connected, and "0" as
/// the will. The file's check made sure it is a topic name.
fn notification_topic(conf: &BridgeConf) -> Option<TopicName> {
    conf.notifications
        .then(|| TopicName::new(mqtt(&conf.notification_topic)).ok())
        .flatten()
}

/// Queues the SUBSCRIBEs: inward rules on the remote, outward rules here (No Local, so what the
/// bridge publishes here does not come back to it; Retain As Published, so retained messages
/// stay retained on the other side).
/// Gives how many SUBACKs to wait for.
fn subscribe(conf: &BridgeConf, rw: &mut Wire, lw: &mut Wire) -> Result<usize, Ended> {
    let v5_remote = conf.protocol.is_v5();
    let mut remote = Vec::new();
    let mut local = Vec::new();
    for rule in &conf.topics {
        let options = |v5: bool| SubscriptionOptions {
            qos: rule.qos,
            no_local: v5,
            retain_as_published: v5,
            retain_handling: if v5 {
                RetainHandling::SendIfNew
            } else {
                RetainHandling::SendAtSubscribe
            },
        };
        if rule.direction.inward() {
            if let Ok(f) = TopicFilter::new(mqtt(&rule.remote_filter())) {
                remote.push((f, options(v5_remote)));
            }
        }
        if rule.direction.outward() {
            if let Ok(f) = TopicFilter::new(mqtt(&rule.local_filter())) {
                local.push((f, options(true)));
            }
        }
    }
    let mut sent = 0;
    for (wire, filters) in [(rw, remote), (lw, local)] {
        if filters.is_empty() {
            continue;
        }
        sent += 1;
        // SUBSCRIBE shares the connection's packet ids with the relay's PUBLISHes, which never
        // use this one.
        let packet_id = SUBSCRIBE_ID;
        wire.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: Default::default(),
            filters,
        }))?;
    }
    Ok(sent)
}

/// Either connection, for the step both take (reading CONNACK).
enum Conn<'a> {
    Remote(&'a mut Outbound),
    Local(&'a mut TcpStream),
}

impl Conn<'_> {
    async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Conn::Remote(r) => r.recv(buf).await,
            Conn::Local(l) => crate::net::dial::read(l, buf).await,
        }
    }
}

/// Reads the CONNACK (within `timeout`); `Err` with the reason when refused or not answered.
async fn connack(
    wire: &mut Wire,
    mut conn: Conn<'_>,
    timeout: Duration,
) -> Result<Box<crate::protocol::ConnAck>, Ended> {
    let read = async {
        loop {
            match wire.next()? {
                Some(Packet::ConnAck(ack)) if ack.reason_code.is_error() => {
                    return Err(format!("CONNACK refused: {}", refusal(&ack, wire.version)));
                }
                Some(Packet::ConnAck(ack)) => return Ok(ack),
                Some(other) => return Err(format!("expected CONNACK, got {other:?}")),
                None => {}
            }
            match conn.read(&mut wire.buf).await {
                Ok(0) => return Err("closed before CONNACK".to_string()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading CONNACK: {e}")),
            }
        }
    };
    future::or(read, async {
        glommio::timer::sleep(timeout).await;
        Err(format!("no CONNACK within {timeout:?}"))
    })
    .await
}

/// A refusal as the remote said it (3.1.1 return codes by their names).
fn refusal(ack: &crate::protocol::ConnAck, version: ProtocolVersion) -> String {
    let code = ack.reason_code.0;
    let name = match code {
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x8A => "banned",
        _ => "refused",
    };
    if version.is_v5() {
        format!("reason code 0x{code:02X} ({name})")
    } else {
        name.to_string()
    }
}

/// Relays between the two connections until one ends; keeps the remote's keep alive (and the
/// local one, when this broker asked for one).
async fn pump(
    mut link: Link<'_>,
    mut remote: Outbound,
    mut local: TcpStream,
    mut rw: Wire,
    mut lw: Wire,
    local_keepalive: Option<u16>,
) -> Ended {
    let conf = link.conf;
    if link.subscribing == 0 {
        link.up();
    }
    enum Event {
        Remote(std::io::Result<usize>),
        Local(std::io::Result<usize>),
        Timer,
    }
    let keepalive = conf.keepalive;
    let local_every = local_keepalive.map(|k| Duration::from_secs(u64::from(k).div_ceil(2)));
    let mut remote_in = Instant::now();
    let mut remote_out = Instant::now();
    let mut local_out = Instant::now();
    let mut sends = Vec::new();
    let ended = loop {
        if !rw.out.is_empty() {
            let out = rw.out.split();
            // A remote that stops reading is a remote that is gone.
            let sent = future::or(async { Some(remote.send(&out).await) }, async {
                glommio::timer::sleep(keepalive).await;
                None
            });
            match sent.await {
                Some(Ok(())) => {}
                Some(Err(e)) => break format!("writing to the remote broker: {e}"),
                None => break format!("the remote broker took nothing for {keepalive:?}"),
            }
            remote_out = Instant::now();
        }
        if !lw.out.is_empty() {
            let out = lw.out.split();
            if let Err(e) = local.write_all(&out).await {
                break format!("writing to this broker: {e}");
            }
            local_out = Instant::now();
        }
        // A ping is due when either direction has been quiet for the keep alive: traffic that
        // only goes out proves nothing about the way back.
        let ping_at = remote_out.min(remote_in) + keepalive;
        let dead_at = remote_in + keepalive.mul_f32(1.5);
        let local_ping_at = local_every.map(|e| local_out + e);
        let wake = [Some(ping_at), Some(dead_at), local_ping_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(dead_at);
        let (rbuf, lbuf) = (&mut rw.buf, &mut lw.buf);
        let event = future::or(
            async { Event::Remote(remote.recv(rbuf).await) },
            future::or(
                async { Event::Local(dial::read(&mut local, lbuf).await) },
                async {
                    glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
                    Event::Timer
                },
            ),
        )
        .await;
        let now = Instant::now();
        let (side, wire) = match event {
            Event::Remote(Ok(0)) => break "the remote broker closed the connection".into(),
            Event::Remote(Err(e)) => break format!("reading from the remote broker: {e}"),
            Event::Local(Ok(0)) => break "this broker closed the local connection".into(),
            Event::Local(Err(e)) => break format!("reading from this broker: {e}"),
            Event::Remote(Ok(_)) => {
                remote_in = now;
                (Side::Remote, &mut rw)
            }
            Event::Local(Ok(_)) => (Side::Local, &mut lw),
            Event::Timer => {
                if now >= dead_at {
                    break format!("no answer from the remote broker for {:?}", now - remote_in);
                }
                if now >= ping_at {
                    let _ = rw.queue(&Packet::PingReq);
                }
                if local_ping_at.is_some_and(|t| now >= t) {
                    let _ = lw.queue(&Packet::PingReq);
                }
                continue;
            }
        };
        if let Err(e) = link.handle(side, wire, &mut sends) {
            break e;
        }
        for (to, packet) in sends.drain(..) {
            let wire = match to {
                Side::Remote => &mut rw,
                Side::Local => &mut lw,
            };
            if let Err(e) = wire.queue(&packet) {
                crate::log!(Warn, "bridge {}: {e}", conf.name);
            }
        }
        let mut s = link.env.status.get();
        s.sent_out = link.relay.stats.sent_out;
        s.received_in = link.relay.stats.received_in;
        link.env.status.set(s);
    };
    if !rw.out.is_empty() {
        let _ = future::or(async { remote.send(&rw.out).await.is_ok() }, async {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            false
        })
        .await;
    }
    remote.close().await;
    ended
}

/// One connection of a bridge, while both sides are up.
struct Link<'a> {
    conf: &'a BridgeConf,
    env: &'a Env,
    relay: &'a mut Relay,
    /// SUBACKs still to come: the bridge counts as connected once both sides subscribed.
    subscribing: usize,
}

impl Link<'_> {
    fn up(&self) {
        let mut s = self.env.status.get();
        s.connected = true;
        s.connections += 1;
        self.env.status.set(s);
    }

    /// Every whole packet `wire` holds from `side`: the link's own (acks of its SUBSCRIBE,
    /// pings, a DISCONNECT) or the relay's.
    fn handle(
        &mut self,
        side: Side,
        wire: &mut Wire,
        sends: &mut Vec<super::relay::Send>,
    ) -> Result<(), Ended> {
        let who = match side {
            Side::Remote => "the remote broker",
            Side::Local => "this broker",
        };
        while let Some(packet) = wire.next()? {
            match packet {
                Packet::SubAck(ack) => {
                    if ack.reason_codes.iter().any(|c| c.is_error()) {
                        crate::log!(
                            Warn,
                            "bridge {}: {who} refused a subscription ({:?})",
                            self.conf.name,
                            ack.reason_codes
                        );
                    }
                    self.subscribing = self.subscribing.saturating_sub(1);
                    if self.subscribing == 0 {
                        self.up();
                    }
                }
                Packet::PingResp | Packet::UnsubAck(_) => {}
                Packet::Disconnect(Disconnect { reason_code, .. }) => {
                    return Err(format!("{who} sent DISCONNECT 0x{:02X}", reason_code.0));
                }
                p @ (Packet::Publish(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)) => self.relay.on_packet(side, p, sends),
                other => return Err(format!("{who} sent an unexpected {other:?}")),
            }
        }
        Ok(())
    }
}
