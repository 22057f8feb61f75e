//! A connected client's task (`Live`): reads frames and hands them to the shard, and whenever
//! reading has to wait, writes what the shard queued for the client (`io::Writer`).
//!
//! Written out as a state machine rather than an `async fn` because there is one per connection:
//! this keeps an idle connection's task to the state it really needs (an `async fn` kept every
//! argument in every state: 1008 bytes; see the README's memory figures).

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::timer::Timer;

use super::io::{self, Writer};
use super::stream::{tcp_stream, ByteStream, Carried, Layered};
use crate::gate::ConnSlot;
use crate::mesh::ShardSet;
use crate::protocol::{
    decode, ConnAck, Disconnect, MqttString, Packet, ProtocolVersion, QoS, ReasonCode,
};
use crate::shard::{AckPoll, Admitted, Client, Deferred, Shard};

/// Runs an admitted CONNECT on its home shard: the session is taken or made and CONNACK queued,
/// and the connection's task starts.
pub fn start<S: ByteStream>(
    shard: Rc<Shard>,
    stream: S,
    admitted: Admitted,
    buf: BytesMut,
    slot: ConnSlot,
) {
    let version = admitted.connect.protocol;
    match shard.handle_connect(*admitted.connect, admitted.assigned, admitted.auth_data) {
        Ok(client) => {
            glommio::spawn_local(Live::new(shard, stream, client, buf, slot, None)).detach();
        }
        Err(ack) => {
            let refuse = refuse(shard, stream, ack, version);
            glommio::spawn_local(refuse).detach();
        }
    }
}

/// Sends the refusing CONNACK (in `version`) and closes the connection.
pub(super) async fn refuse<S: ByteStream>(
    shard: impl std::ops::Deref<Target = Shard>,
    mut stream: S,
    ack: Box<ConnAck>,
    version: ProtocolVersion,
) {
    let mut out = BytesMut::new();
    if Packet::ConnAck(ack).encode(version, &mut out).is_ok() {
        // A client that reads nothing does not keep the refused connection (COREMQ_CLOSE_TIMEOUT).
        let write = future::or(
            async { stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok() },
            async {
                glommio::timer::sleep(shard.config.close_timeout).await;
                false
            },
        );
        let _ = write.await;
    }
    // [MQTT-3.2.2-5] a refused connection is closed after CONNACK (with a WebSocket close frame
    // and TLS close_notify where the stream has them).
    std::future::poll_fn(|cx| Poll::Ready(stream.shutdown_now(Some(cx))))
        .await
        .ok();
}

/// Starts the task of a parked connection the shard woke (see `shard::park`) again, around its
/// socket and the stream state it `carried`: `deadline` is when its keep alive runs out, which
/// a woken connection still honours.
pub fn resume(
    shard: Rc<Shard>,
    fd: OwnedFd,
    carried: Option<Carried>,
    client: Client,
    slot: ConnSlot,
    deadline: Option<Instant>,
) {
    let tcp = tcp_stream(fd);
    let buf = BytesMut::new();
    match carried {
        None => {
            let live = Live::new(shard, tcp, client, buf, slot, deadline);
            glommio::spawn_local(live).detach();
        }
        Some(c) => {
            let stream = Layered::resume(tcp, c);
            let live = Live::new(shard, stream, client, buf, slot, deadline);
            glommio::spawn_local(live).detach();
        }
    }
}

struct Live<S> {
    shard: Rc<Shard>,
    stream: RefCell<S>,
    client: Client,
    writer: Writer,
    /// Bytes read and not yet decoded (a slice of the shard's read arena, or a partial frame
    /// of our own while waiting; see `io`).
    buf: BytesMut,
    phase: Phase,
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
    /// The other shards this client's last packet sent messages to.
    routed: ShardSet,
}

/// What the task is doing.
enum Phase {
    /// Decoding what is buffered, reading more when it runs out.
    Reading,
    /// Flow control (`shard::flow`): a live subscriber of this client's messages is falling
    /// behind; read nothing until it catches up (the client's TCP window fills meanwhile).
    /// Checked again every millisecond.
    Paused(Timer),
    /// The shards this client's last messages went to are behind with this shard's messages
    /// (`Mesh::poll_room`): read nothing until they catch up.
    Backlogged,
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
    Wait(Phase),
    /// The connection is over; true when abnormally (no DISCONNECT, nor a close the broker
    /// asked for), i.e. when the will is due.
    End(bool),
}

/// QoS 1 and 2 PUBLISH packets handled per poll before the task lets the others run. On QoS 1
/// pairs x100 (2 shards, three interleaved runs each) it took p99 from 16-19 ms to 12-13 ms at
/// the same throughput; QoS 1 fan-in 100->1 and fan-out 1->100 kept theirs. A budget of 8 cost
/// a tenth of the throughput; one of 16 for every packet cost QoS 0 fan-out a third.
const ACKED_PUBLISHES_PER_POLL: usize = 16;
/// Reads per poll before the task lets the others run.
const READS_PER_POLL: usize = 8;

impl<S: ByteStream> Future for Live<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Closing(_) => return this.poll_closing(cx),
                Phase::Paused(timer) => {
                    if Pin::new(timer).poll(cx).is_pending() {
                        break;
                    }
                    this.phase = Phase::Reading;
                }
                Phase::Backlogged => {
                    // A connection that is ending (takeover, shutdown) stops waiting: reading
                    // then ends it.
                    let closing = this.client.conn.is_closing();
                    if !closing && this.shard.poll_room(this.routed, cx).is_pending() {
                        break;
                    }
                    this.phase = Phase::Reading;
                }
                Phase::Deferred(deferred) => {
                    if deferred.poll_waits(cx).is_pending() {
                        break;
                    }
                    for p in &deferred.then {
                        this.client.conn.send(p);
                    }
                    this.shard.send_retained(&this.client, &deferred.retained);
                    this.phase = Phase::Reading;
                }
                Phase::Reading => match this.read(cx) {
                    Step::Pending => break,
                    Step::Park => {
                        if this.write(cx).is_pending() && this.writer.is_idle() && this.park() {
                            return Poll::Ready(());
                        }
                        // Not now: reading waits again (with a fresh timer).
                    }
                    Step::Wait(phase) => this.phase = phase,
                    Step::End(abnormal) => {
                        this.shard.handle_close(&this.client, abnormal);
                        this.client.conn.close();
                        this.phase = Phase::Closing(Timer::new(this.shard.config.close_timeout));
                    }
                },
            }
        }
        // Reading waits: write meanwhile. Once writing is over the socket is shut down, and
        // reading ends with it.
        let _ = this.write(cx);
        Poll::Pending
    }
}

impl<S: ByteStream> Live<S> {
    fn new(
        shard: Rc<Shard>,
        stream: S,
        client: Client,
        buf: BytesMut,
        slot: ConnSlot,
        keep_alive_deadline: Option<Instant>,
    ) -> Self {
        // [MQTT-3.1.2-24] no packet within 1.5 × keep alive ends the connection.
        let keep_alive = client.terms().keep_alive;
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        Self {
            shard,
            stream: RefCell::new(stream),
            client,
            writer: Writer::default(),
            buf,
            phase: Phase::Reading,
            idle,
            idle_timer: None,
            keep_alive_deadline,
            slot: Some(slot),
            routed: ShardSet::EMPTY,
        }
    }

    /// Writes what the outbox holds (see `Writer::poll`); when it drained after deliveries were
    /// held back, the session's queue is offered again.
    fn write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (shard, client) = (&self.shard, &self.client);
        self.writer.poll(cx, &self.stream, &client.conn, || {
            shard.resume_held_back(&client.client_id, client.conn.id)
        })
    }

    /// Closing: write what is left; a client that reads none of it within COREMQ_CLOSE_TIMEOUT is
    /// cut off.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let written = self.write(cx);
        let Phase::Closing(timer) = &mut self.phase else {
            return written;
        };
        if written.is_pending() && Pin::new(timer).poll(cx).is_ready() {
            crate::log!(
                Debug,
                "client {:?}: not reading what was left for it; cut off",
                self.client.client_id.as_str()
            );
            return Poll::Ready(());
        }
        written
    }

    /// Decodes and handles buffered frames, reading more when they run out.
    fn read(&mut self, cx: &mut Context<'_>) -> Step {
        let mut reads = 0;
        let mut acked = 0;
        loop {
            if self.client.conn.is_closing() {
                return Step::End(self.client.conn.is_failed());
            }
            // Acknowledgements that waited for the store go out in order as it syncs; as many
            // waiting as the client may have unacknowledged stop reading.
            match self.shard.poll_acks(&mut self.client, cx) {
                AckPoll::Room => {}
                AckPoll::Full => return Step::Pending,
                AckPoll::Failed(v) => {
                    disconnect(&self.client, v.reason, v.what);
                    return Step::End(true);
                }
            }
            if self.shard.poll_room(self.routed, cx).is_pending() {
                return Step::Wait(Phase::Backlogged);
            }
            if self.shard.is_paused(&self.client.client_id, Instant::now) {
                return Step::Wait(Phase::Paused(Timer::new(Duration::from_millis(1))));
            }
            if acked == ACKED_PUBLISHES_PER_POLL {
                // Its acknowledgements go out now, and the shard's other connections get their
                // turn before this one takes more.
                cx.waker().wake_by_ref();
                return Step::Pending;
            }
            let version = self.client.terms().version;
            match decode(&mut self.buf, version, self.shard.config.max_packet_size) {
                Ok(Some(packet)) => {
                    if matches!(&packet, Packet::Publish(p) if p.qos != QoS::AtMostOnce) {
                        acked += 1;
                    }
                    self.shard.counters().packet_in(packet.packet_type());
                    if let Some(step) = self.handle(packet) {
                        return step;
                    }
                }
                Ok(None) => {
                    if reads == READS_PER_POLL {
                        // Plenty read in one go: let the shard's other tasks run.
                        cx.waker().wake_by_ref();
                        return Step::Pending;
                    }
                    let filled = io::poll_fill(&mut *self.stream.borrow_mut(), cx, &mut self.buf);
                    match filled {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            let conn = &self.client.conn;
                            return Step::End(!conn.is_closing() || conn.is_failed());
                        }
                        Poll::Ready(Ok(n)) => {
                            self.shard.counters().bytes_in(n);
                            reads += 1;
                            self.idle_timer = None;
                            self.keep_alive_deadline = None;
                        }
                        Poll::Pending => return self.wait_idle(cx),
                    }
                }
                Err(e) => {
                    crate::log!(Debug, "client {:?}: {e}", self.client.client_id.as_str());
                    disconnect(&self.client, e.reason_code(), &e.to_string());
                    return Step::End(true);
                }
            }
        }
    }

    /// Hands one packet to the shard; `Some` when reading must stop (an answer waits for other
    /// shards, or the packet ended the connection).
    fn handle(&mut self, packet: Packet) -> Option<Step> {
        let _ = self.shard.take_routed();
        let handled = self.shard.handle_packet(&mut self.client, packet);
        self.routed = self.shard.take_routed();
        match handled {
            Ok(None) => None,
            Ok(Some(deferred)) => Some(Step::Wait(Phase::Deferred(Box::new(deferred)))),
            Err(v) => {
                let id = self.client.client_id.as_str();
                crate::log!(Debug, "client {id:?}: {}", v.what);
                disconnect(&self.client, v.reason, v.what);
                Some(Step::End(true))
            }
        }
    }

    /// Nothing to read: wait on the idle timer, which fires when it is time to park
    /// (COREMQ_PARK_IDLE_AFTER) or when the keep alive ran out, whichever is first.
    fn wait_idle(&mut self, cx: &mut Context<'_>) -> Step {
        if self.idle_timer.is_none() {
            let now = Instant::now();
            if self.keep_alive_deadline.is_none() {
                self.keep_alive_deadline = self.idle.map(|limit| now + limit);
            }
            let park_after = self.shard.config.park_idle_after;
            let park_at = (!park_after.is_zero()).then(|| now + park_after);
            let Some(at) = earliest(park_at, self.keep_alive_deadline) else {
                return Step::Pending;
            };
            self.idle_timer = Some(Timer::new(at.saturating_duration_since(now)));
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
            self.client.client_id.as_str()
        );
        disconnect(
            &self.client,
            ReasonCode::KEEP_ALIVE_TIMEOUT,
            "[MQTT-3.1.2-24] no packet within 1.5 times the keep alive",
        );
        Step::End(true)
    }

    /// Parks the connection if it is quiet (see `shard::park`): the socket goes to the shard's
    /// idle watcher and this task ends. False when it must stay live.
    fn park(&mut self) -> bool {
        let Some(watcher) = super::idle::watcher() else {
            return false;
        };
        if !self.buf.is_empty() || !self.client.can_park() {
            return false;
        }
        let Ok(fd) = self.stream.borrow().socket().try_clone_to_owned() else {
            return false;
        };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let Some(slot) = self.slot.take() else {
            return false;
        };
        let Ok(carried) = self.stream.get_mut().carry() else {
            self.slot = Some(slot);
            return false;
        };
        let deadline = self.keep_alive_deadline;
        match self.shard.park(&self.client, fd, carried, slot, deadline) {
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
            Err((slot, carried)) => {
                self.slot = Some(slot);
                self.stream.get_mut().put_back(carried);
                false
            }
        }
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Ends the connection from the server side: MQTT 5 clients get DISCONNECT with `reason` and a
/// Reason String saying why (always allowed on DISCONNECT [MQTT-3.1.2-29]); 3.1.1 has no reason
/// codes, so the connection is just closed.
fn disconnect(client: &Client, reason: ReasonCode, why: &str) {
    if client.terms().version.is_v5() {
        let mut d = Disconnect::new(reason);
        d.properties.reason_string = MqttString::copy_from(why).ok();
        client.conn.send(&Packet::Disconnect(d));
    }
    client.conn.close();
}
