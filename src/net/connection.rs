//! One client connection: CONNECT phase (with a deadline), hand-off to the home shard, then the
//! connection's task (`Live`: decode → shard handlers, and the writes in between).

use std::cell::RefCell;
use std::future::Future;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::io::{self, Writer};
use crate::auth::security::Login;
use crate::auth::AuthStep;
use crate::gate::ConnSlot;
use crate::mesh::{Handoff, MeshMsg};
use crate::protocol::{
    connect_protocol_version, decode, Auth, AuthProperties, ConnAck, Connect, DecodeError,
    Disconnect, MqttString, Packet, ProtocolVersion, ReasonCode,
};
use crate::shard::{Client, ConnectOutcome, Deferred, Shard};

/// Why reading the first packet ended.
enum First {
    Connect(Box<Connect>),
    Refuse(Box<ConnAck>, ProtocolVersion),
    Close,
}

/// Reads until the first complete packet, which must be CONNECT [MQTT-3.1.0-1].
async fn read_connect(shard: &Shard, stream: &mut TcpStream, buf: &mut BytesMut) -> First {
    loop {
        // Peeked before `decode`, which consumes a whole frame even when it refuses it: a
        // refused MQTT 5 CONNECT is still answered in MQTT 5.
        let version = connect_protocol_version(buf);
        match decode(buf, ProtocolVersion::V5, shard.config.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return First::Connect(c),
            Ok(Some(_)) => return First::Close,
            Ok(None) => {}
            Err(e) => return refusal_for(e, version),
        }
        match io::fill(stream, buf).await {
            Ok(0) | Err(_) => return First::Close,
            Ok(_) => {}
        }
    }
}

/// The CONNACK a refused CONNECT gets: MQTT 5 clients the error's reason code; an unsupported
/// protocol level the 3.1.1 return code 1 [MQTT-3.1.2-2]; other 3.1.1 errors just a close.
fn refusal_for(e: DecodeError, version: Option<ProtocolVersion>) -> First {
    let ack = |code| {
        Box::new(ConnAck {
            session_present: false,
            reason_code: code,
            properties: Default::default(),
        })
    };
    match (e, version) {
        (DecodeError::UnsupportedProtocolVersion(_), _) => First::Refuse(
            ack(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
            ProtocolVersion::V3_1_1,
        ),
        (_, Some(ProtocolVersion::V5)) => First::Refuse(ack(e.reason_code()), ProtocolVersion::V5),
        _ => First::Close,
    }
}

/// Serves a connection the listener accepted on this shard.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, slot: Option<ConnSlot>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let deadline = shard.config.connect_timeout;
    let first = future::or(read_connect(&shard, &mut stream, &mut buf), async {
        glommio::timer::sleep(deadline).await;
        First::Close
    })
    .await;
    let mut connect = match first {
        First::Connect(c) => c,
        First::Refuse(ack, version) => return refuse(&shard, stream, ack, version).await,
        First::Close => return,
    };
    let Some(slot) = slot else {
        // COREMQ_MAX_CONNECTIONS reached: 0x97 Quota exceeded (return code 3 in 3.1.1).
        let ack = Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            properties: Default::default(),
        });
        crate::log!(
            Warn,
            "COREMQ_MAX_CONNECTIONS reached: refusing a connection"
        );
        return refuse(&shard, stream, ack, connect.protocol).await;
    };
    let assigned = match shard.check_connect(&mut connect) {
        ConnectOutcome::Accept { assigned } => assigned,
        ConnectOutcome::Refuse(ack) => return refuse(&shard, stream, ack, connect.protocol).await,
    };
    let refusal = |code| {
        Box::new(ConnAck {
            session_present: false,
            reason_code: code,
            properties: Default::default(),
        })
    };
    let auth_data = if connect.properties.authentication_method.is_some() {
        let exchange = future::or(
            async { Some(authenticate(&shard, &mut stream, &mut buf, &connect).await) },
            async {
                glommio::timer::sleep(deadline).await;
                None
            },
        );
        match exchange.await {
            Some(Ok((data, user))) => {
                // The exchange proved a user: it is the client's user name from now on, and a
                // user name in CONNECT must be the same one.
                if let Some(user) = user {
                    if connect.username.as_ref().is_some_and(|u| u != &user) {
                        let ack = refusal(ReasonCode::NOT_AUTHORIZED);
                        return refuse(&shard, stream, ack, connect.protocol).await;
                    }
                    connect.username = Some(user);
                }
                data
            }
            Some(Err(Some(ack))) => return refuse(&shard, stream, ack, connect.protocol).await,
            Some(Err(None)) | None => return,
        }
    } else {
        // The password file: checked off the event loop (PBKDF2 is slow on purpose), so a storm
        // of bad passwords slows nobody else down.
        let security = shard.security();
        let user = connect.username.as_ref().map(|u| u.as_str());
        let password = connect.password.as_deref();
        let ok = match security.check_login(user, password) {
            Login::Allowed => true,
            Login::NotAuthorized => {
                let ack = refusal(ReasonCode::NOT_AUTHORIZED);
                return refuse(&shard, stream, ack, connect.protocol).await;
            }
            Login::Verify(check) => {
                let ok = glommio::executor().spawn_blocking(check).await;
                if ok {
                    if let Some(u) = user {
                        security.remember(u, password.unwrap_or_default());
                    }
                }
                ok
            }
        };
        if !ok {
            crate::log!(
                Debug,
                "bad user name or password for client {:?}",
                connect.client_id.as_str()
            );
            let ack = refusal(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            return refuse(&shard, stream, ack, connect.protocol).await;
        }
        None
    };
    let home = shard.mesh.home_of(connect.client_id.as_bytes());
    // Bytes that came after CONNECT: copied, so that they pin no part of the read arena.
    let buf = BytesMut::from(&buf[..]);
    if home == shard.id() {
        // A task of its own: this one's state (CONNECT phase, authentication) is large and
        // would otherwise stay allocated for the connection's whole life.
        glommio::spawn_local(run(shard, stream, connect, assigned, auth_data, buf, slot)).detach();
        return;
    }
    match dup_fd(&stream) {
        Ok(fd) => {
            // Our fd closes with `stream`; the home shard's duplicate keeps the socket open.
            drop(stream);
            shard.mesh.send(
                home,
                MeshMsg::Handoff(Handoff {
                    fd,
                    connect,
                    assigned,
                    auth_data,
                    buf,
                    slot,
                }),
            );
        }
        Err(e) => crate::log!(Warn, "handoff failed (dup: {e}); closing the connection"),
    }
}

/// Serves a connection handed over by another shard.
pub fn adopt(shard: Rc<Shard>, h: Handoff) {
    // SAFETY: the fd is a connected TCP socket we own exclusively (it was duplicated for us).
    let stream = unsafe { TcpStream::from_raw_fd(h.fd.into_raw_fd()) };
    let live = run(
        shard,
        stream,
        h.connect,
        h.assigned,
        h.auth_data,
        h.buf,
        h.slot,
    );
    glommio::spawn_local(live).detach();
}

/// MQTT 5 enhanced authentication before CONNACK [MQTT-4.12.0]: steps the shard's
/// authenticator with the CONNECT's data, then with each AUTH 0x18 the client sends, answering
/// AUTH 0x18 while it continues. `Ok` with the final data on success; `Err(Some(CONNACK))` to
/// refuse (0x8C unknown method, 0x87 refused, 0x82 protocol error), `Err(None)` when the client
/// went away.
async fn authenticate(
    shard: &Shard,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    connect: &Connect,
) -> Result<(Option<Bytes>, Option<MqttString>), Option<Box<ConnAck>>> {
    let refusal = |code| {
        Some(Box::new(ConnAck {
            session_present: false,
            reason_code: code,
            properties: Default::default(),
        }))
    };
    let method = connect
        .properties
        .authentication_method
        .clone()
        .ok_or_else(|| refusal(ReasonCode::PROTOCOL_ERROR))?;
    let mut exchange = shard
        .authenticator_for(method.as_str())
        .and_then(|a| a.start(method.as_str(), connect.client_id.as_str()))
        .ok_or_else(|| refusal(ReasonCode::BAD_AUTHENTICATION_METHOD))?;
    let mut data = connect.properties.authentication_data.clone();
    loop {
        match exchange.step(data.as_deref()) {
            AuthStep::Success(d) => {
                let user = exchange
                    .authenticated_user()
                    .and_then(|u| MqttString::copy_from(u).ok());
                return Ok((d, user));
            }
            AuthStep::Fail => return Err(refusal(ReasonCode::NOT_AUTHORIZED)),
            AuthStep::Continue(d) => {
                let mut out = BytesMut::new();
                let challenge = Packet::Auth(Auth {
                    reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                    properties: AuthProperties {
                        authentication_method: Some(method.clone()),
                        authentication_data: d,
                        ..Default::default()
                    },
                });
                if challenge.encode(ProtocolVersion::V5, &mut out).is_err()
                    || stream.write_all(&out).await.is_err()
                {
                    return Err(None);
                }
                let reply = loop {
                    match decode(buf, ProtocolVersion::V5, shard.config.max_packet_size) {
                        Ok(Some(p)) => break p,
                        Ok(None) => {}
                        Err(e) => return Err(refusal(e.reason_code())),
                    }
                    match io::fill(stream, buf).await {
                        Ok(0) | Err(_) => return Err(None),
                        Ok(_) => {}
                    }
                };
                match reply {
                    // [MQTT-4.12.0-4] the client continues with AUTH 0x18 and the same method.
                    Packet::Auth(a)
                        if a.reason_code == ReasonCode::CONTINUE_AUTHENTICATION
                            && a.properties.authentication_method.as_ref() == Some(&method) =>
                    {
                        data = a.properties.authentication_data
                    }
                    Packet::Disconnect(_) => return Err(None),
                    _ => return Err(refusal(ReasonCode::PROTOCOL_ERROR)),
                }
            }
        }
    }
}

fn dup_fd(stream: &TcpStream) -> std::io::Result<OwnedFd> {
    // SAFETY: `stream` owns this fd and outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}

async fn refuse(shard: &Shard, mut stream: TcpStream, ack: Box<ConnAck>, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    if Packet::ConnAck(ack).encode(version, &mut out).is_ok() {
        // A client that reads nothing does not keep the refused connection (COREMQ_CLOSE_TIMEOUT).
        let _ = stream.set_write_timeout(Some(shard.config.close_timeout));
        let _ = stream.write_all(&out).await;
    }
    // [MQTT-3.2.2-5] a refused connection is closed after CONNACK.
    let _ = stream.shutdown(Shutdown::Both).await;
}

/// Runs an accepted CONNECT on its home shard until the connection ends (the returned future is
/// the connection's task).
fn run(
    shard: Rc<Shard>,
    stream: TcpStream,
    connect: Box<Connect>,
    assigned: bool,
    auth_data: Option<Bytes>,
    buf: BytesMut,
    slot: ConnSlot,
) -> Live {
    let client_max = connect
        .properties
        .maximum_packet_size
        .map_or(u32::MAX, |n| n.get());
    let alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
    let conn = shard.new_outbox(connect.protocol, client_max, alias_max);
    let client = shard.handle_connect(*connect, assigned, auth_data, conn);
    Live::new(shard, stream, client, buf, slot, None)
}

/// Starts the task of a parked connection the shard woke (see `park`) again: `deadline` is when
/// its keep alive runs out, which a woken connection still honours.
pub(super) fn resume(
    shard: Rc<Shard>,
    stream: TcpStream,
    client: Client,
    slot: ConnSlot,
    deadline: Option<Instant>,
) {
    let live = Live::new(shard, stream, client, BytesMut::new(), slot, deadline);
    glommio::spawn_local(live).detach();
}

/// A connected client's task: reads frames and hands them to the shard, and whenever reading
/// has to wait, writes what the shard queued for the client (`Writer`). Written out as a state
/// machine rather than an `async fn` because there is one per connection: this keeps an idle
/// connection's task to the state it really needs (see the README's memory figures).
struct Live {
    shard: Rc<Shard>,
    stream: RefCell<TcpStream>,
    client: Client,
    writer: Writer,
    /// Bytes read and not yet decoded (a slice of the shard's read arena, or a partial frame
    /// of our own while waiting; see `io`).
    buf: BytesMut,
    stage: Stage,
    /// 1.5 × keep alive, if any.
    idle: Option<Duration>,
    /// Runs while the socket has nothing for us, until the keep alive runs out or it is time
    /// to park (COREMQ_PARK_IDLE_AFTER), whichever comes first; reset by every read.
    idle_timer: Option<Timer>,
    /// When the keep alive runs out, counted from the last read (`None` right after a read:
    /// set when reading next has to wait).
    keep_alive_deadline: Option<Instant>,
    /// Our place under COREMQ_MAX_CONNECTIONS, freed with the task (or kept while parked).
    slot: Option<ConnSlot>,
}

enum Stage {
    /// Decoding what is buffered, reading more when it runs out.
    Reading,
    /// Flow control (`shard::flow`): a live subscriber of this client's messages is falling
    /// behind; read nothing until it catches up (the client's TCP window fills meanwhile).
    /// Checked again every millisecond.
    Paused(Timer),
    /// A packet's answer waits until every shard applied its effect (e.g. SUBACK).
    Deferred(Box<Deferred>),
    /// Reading is over and the shard knows; writing what is left, then the socket shuts down
    /// (at the latest when the timer, COREMQ_CLOSE_TIMEOUT, fires).
    Closing(Timer),
}

/// What a step of reading ended with.
enum Step {
    Pending,
    /// Quiet for COREMQ_PARK_IDLE_AFTER: park if nothing else is going on.
    Park,
    Wait(Stage),
    /// The connection is over; true when abnormally (no DISCONNECT, nor a close the broker
    /// asked for), i.e. when the will is due.
    End(bool),
}

/// Reads per poll before the task lets the others run.
const READS_PER_POLL: usize = 8;

impl Future for Live {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Closing(timer) => {
                    let written = this
                        .writer
                        .poll(cx, &this.stream, &this.client, &this.shard);
                    if written.is_pending() && Pin::new(timer).poll(cx).is_ready() {
                        crate::log!(
                            Debug,
                            "client {:?}: not reading what was left for it; cut off",
                            this.client.client_id.as_str()
                        );
                        return Poll::Ready(());
                    }
                    return written;
                }
                Stage::Paused(timer) => {
                    if Pin::new(timer).poll(cx).is_pending() {
                        break;
                    }
                    this.stage = Stage::Reading;
                }
                Stage::Deferred(deferred) => {
                    if deferred.poll_waits(cx).is_pending() {
                        break;
                    }
                    for p in &deferred.then {
                        this.client.conn.send(p);
                    }
                    this.shard.send_retained(&this.client, &deferred.retained);
                    this.stage = Stage::Reading;
                }
                Stage::Reading => match this.read(cx) {
                    Step::Pending => break,
                    Step::Park => {
                        let written = this
                            .writer
                            .poll(cx, &this.stream, &this.client, &this.shard);
                        if written.is_pending() && this.writer.is_idle() && this.park() {
                            return Poll::Ready(());
                        }
                        // Not now: reading waits again (with a fresh timer).
                    }
                    Step::Wait(stage) => this.stage = stage,
                    Step::End(abnormal) => {
                        this.shard.handle_close(&this.client, abnormal);
                        this.client.conn.close();
                        this.stage = Stage::Closing(Timer::new(this.shard.config.close_timeout));
                    }
                },
            }
        }
        // Reading waits: write meanwhile. Once writing is over the socket is shut down, and
        // reading ends with it.
        let _ = this
            .writer
            .poll(cx, &this.stream, &this.client, &this.shard);
        Poll::Pending
    }
}

impl Live {
    fn new(
        shard: Rc<Shard>,
        stream: TcpStream,
        client: Client,
        buf: BytesMut,
        slot: ConnSlot,
        keep_alive_deadline: Option<Instant>,
    ) -> Self {
        // [MQTT-3.1.2-24] no packet within 1.5 × keep alive ends the connection.
        let idle = (client.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(client.keep_alive) * 1500));
        Self {
            shard,
            stream: RefCell::new(stream),
            client,
            writer: Writer::default(),
            buf,
            stage: Stage::Reading,
            idle,
            idle_timer: None,
            keep_alive_deadline,
            slot: Some(slot),
        }
    }

    /// Decodes and handles buffered frames, reading more when they run out.
    fn read(&mut self, cx: &mut Context<'_>) -> Step {
        let client = &mut self.client;
        let shard = &*self.shard;
        let mut reads = 0;
        loop {
            if client.conn.is_closing() {
                return Step::End(client.conn.is_failed());
            }
            if shard.is_paused(&client.client_id, Instant::now) {
                return Step::Wait(Stage::Paused(Timer::new(Duration::from_millis(1))));
            }
            match decode(&mut self.buf, client.version, shard.config.max_packet_size) {
                Ok(Some(packet)) => match shard.handle_packet(client, packet) {
                    Ok(None) => {}
                    Ok(Some(deferred)) => return Step::Wait(Stage::Deferred(Box::new(deferred))),
                    Err(v) => {
                        crate::log!(Debug, "client {:?}: {}", client.client_id.as_str(), v.what);
                        disconnect(client, v.reason, v.what);
                        return Step::End(true);
                    }
                },
                Ok(None) => {
                    if reads == READS_PER_POLL {
                        // Plenty read in one go: let the shard's other tasks run.
                        cx.waker().wake_by_ref();
                        return Step::Pending;
                    }
                    match io::poll_fill(&mut self.stream.borrow_mut(), cx, &mut self.buf) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            return Step::End(!client.conn.is_closing() || client.conn.is_failed())
                        }
                        Poll::Ready(Ok(_)) => {
                            reads += 1;
                            self.idle_timer = None;
                            self.keep_alive_deadline = None;
                        }
                        Poll::Pending => {
                            if self.idle_timer.is_none() {
                                let now = Instant::now();
                                if self.keep_alive_deadline.is_none() {
                                    self.keep_alive_deadline = self.idle.map(|limit| now + limit);
                                }
                                let park_after = shard.config.park_idle_after;
                                let park_at = (!park_after.is_zero()).then(|| now + park_after);
                                let at = match (park_at, self.keep_alive_deadline) {
                                    (Some(p), Some(k)) => p.min(k),
                                    (p, k) => match p.or(k) {
                                        Some(at) => at,
                                        None => return Step::Pending,
                                    },
                                };
                                self.idle_timer =
                                    Some(Timer::new(at.saturating_duration_since(now)));
                            }
                            let Some(timer) = self.idle_timer.as_mut() else {
                                return Step::Pending;
                            };
                            if Pin::new(timer).poll(cx).is_pending() {
                                return Step::Pending;
                            }
                            self.idle_timer = None;
                            if self.keep_alive_deadline.is_none_or(|d| d > Instant::now()) {
                                return Step::Park;
                            }
                            crate::log!(
                                Debug,
                                "client {:?}: keep alive timeout",
                                client.client_id.as_str()
                            );
                            disconnect(
                                client,
                                ReasonCode::KEEP_ALIVE_TIMEOUT,
                                "[MQTT-3.1.2-24] no packet within 1.5 times the keep alive",
                            );
                            return Step::End(true);
                        }
                    }
                }
                Err(e) => {
                    crate::log!(Debug, "client {:?}: {e}", client.client_id.as_str());
                    disconnect(client, e.reason_code(), &e.to_string());
                    return Step::End(true);
                }
            }
        }
    }
}

impl Live {
    /// Parks the connection if it is quiet (see `shard::park`): the socket goes to the shard's
    /// idle watcher and this task ends. False when it must stay live.
    fn park(&mut self) -> bool {
        let Some(watcher) = super::park::watcher() else {
            return false;
        };
        if !self.buf.is_empty() || !self.client.can_park() {
            return false;
        }
        let Ok(fd) = dup_fd(&self.stream.borrow()) else {
            return false;
        };
        let raw = fd.as_raw_fd();
        let Some(slot) = self.slot.take() else {
            return false;
        };
        match self
            .shard
            .park(&self.client, fd, slot, self.keep_alive_deadline)
        {
            Ok(key) => {
                if let Err(e) = watcher.watch(raw, key) {
                    crate::log!(
                        Warn,
                        "cannot park a connection (epoll: {e}); keeping it live"
                    );
                    self.shard.wake_key(key);
                }
                true
            }
            Err(slot) => {
                self.slot = Some(slot);
                false
            }
        }
    }
}

/// Ends the connection from the server side: MQTT 5 clients get DISCONNECT with `reason` and a
/// Reason String saying why (always allowed on DISCONNECT [MQTT-3.1.2-29]); 3.1.1 has no reason
/// codes, so the connection is just closed.
fn disconnect(client: &Client, reason: ReasonCode, why: &str) {
    if client.version.is_v5() {
        let mut d = Disconnect::new(reason);
        d.properties.reason_string = MqttString::copy_from(why).ok();
        client.conn.send(&Packet::Disconnect(d));
    }
    client.conn.close();
}
