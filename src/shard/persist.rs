//! What this shard records in its store (COREMQ_DATA_DIR), and the promise that goes with it:
//! with COREMQ_FSYNC=always or batch, an acknowledgement that hands responsibility for a message
//! to the broker (PUBACK, PUBREC, PUBCOMP) goes out only once every record it depends on is on
//! disk, on every shard the message reached.
//!
//! Worked example, a QoS 1 PUBLISH on shard 0 matching an offline durable session on shard 1:
//! shard 0 opens a barrier for its own part and sends the message to shard 1 with the barrier's
//! token (`SyncAck`); shard 1 queues it in the session, which notes `Entered`, recorded in shard
//! 1's journal at position p; when shard 1's writer reports the log synced past p, shard 1 acks
//! the token; shard 0 acks its own part the same way (its journal may hold nothing: then at once),
//! and the PUBACK, queued in the connection's acknowledgement queue, goes out.
//!
//! Outbound QoS 2 PUBLISHes to durable sessions are held until their records are on disk too:
//! otherwise a crash could lose the packet id the subscriber already acknowledged, and the
//! message would be delivered again under a new id (twice, for a QoS 2 subscriber).
//!
//! Records are appended here only; the runtime's writer task takes them (`take_store_batch`) and
//! reports back (`store_written`). Shard-local.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::barrier::Barrier;
use super::client::{Client, Violation};
use super::filtering::Spec;
use super::outbox::{ConnId, Outbox};
use super::Shard;
use crate::config::Fsync;
use crate::mesh::{AckToken, MeshMsg, ShardId};
use crate::message::{Message, Outgoing};
use crate::protocol::{
    ClientId, MqttString, Packet, PacketId, PublishAck, QoS, ReasonCode, SubscriptionOptions,
};
use crate::session::{Change, Image, Session};
use crate::store::replay::{snapshot_retained, snapshot_session};
use crate::store::{Clock, Journal, Record};

/// A log grows to at least this before it is compacted.
const COMPACT_MIN: u64 = 64 << 20;
/// ... and to this many times its last snapshot.
const COMPACT_FACTOR: u64 = 4;

/// The shard's store state.
pub(super) struct Persist {
    journal: Journal,
    /// Barrier parts to ack once the log is synced up to a position: (position, shard, token).
    waits: VecDeque<(u64, ShardId, AckToken)>,
    /// Outbound PUBLISHes (and PUBRELs) held until the log is synced up to their position.
    held: VecDeque<(u64, Rc<Outbox>, Held)>,
    /// Held PUBLISHes per connection (later ones to the same connection wait behind them).
    held_per_conn: HashMap<ConnId, usize>,
    /// Acknowledgements wait for syncs (COREMQ_FSYNC always or batch).
    acks_wait: bool,
    /// Bytes in the log file: its last snapshot plus what was appended since.
    log_bytes: u64,
    /// Bytes of the last snapshot.
    snapshot_bytes: u64,
    /// Shutdown: the writer writes what is left, closes the log and ends.
    stopping: bool,
}

/// A packet to a durable session's connection that waits for the disk.
enum Held {
    Publish(Outgoing),
    /// A PUBREL: once the subscriber answers it with PUBCOMP it may reuse the packet id, so the
    /// record that the message was released must not be lost, or the message would be sent
    /// again after a crash.
    Packet(Packet),
}

/// What the writer does next with this shard's log.
pub enum StoreBatch {
    /// Append these records; they reach `end`.
    Append(Vec<u8>, u64),
    /// Replace the log with this snapshot (compaction), which covers everything up to `end`.
    Replace(Vec<u8>, u64),
}

/// A PUBACK / PUBREC / PUBCOMP in the connection's acknowledgement queue, and the barrier it
/// waits for (`None`: none, but an earlier one waits: acknowledgements keep their order
/// [MQTT-4.6.0-2] [MQTT-4.6.0-3]).
pub struct PendingAck {
    pub wait: Option<Barrier>,
    pub packet: Packet,
}

/// What `poll_acks` says about the connection's acknowledgement queue.
pub enum AckPoll {
    /// Room for more: go on reading.
    Room,
    /// As many acknowledgements wait as the client may have unacknowledged (COREMQ_RECEIVE_MAXIMUM):
    /// read nothing more until one goes out.
    Full,
    /// A QoS 1/2 message could not be stored and MQTT 3.1.1 cannot say so: end the connection.
    Failed(Violation),
}

impl Shard {
    /// Turns the store on for this shard, with the log size its start-up snapshot left.
    pub fn enable_store(&mut self, fsync: Fsync, log_bytes: u64) {
        self.persist = Some(std::cell::RefCell::new(Persist {
            journal: Journal::default(),
            waits: VecDeque::new(),
            held: VecDeque::new(),
            held_per_conn: HashMap::new(),
            acks_wait: fsync != Fsync::Never,
            log_bytes,
            snapshot_bytes: log_bytes,
            stopping: false,
        }));
    }

    /// Takes back what the store kept for this shard at start-up: its durable sessions (offline,
    /// with their expiry and delayed-will timers, their subscriptions in the trie and shared
    /// groups) and every retained message. Returns the barriers of the interest the
    /// subscriptions announced to other shards: the shard accepts connections once they are done.
    pub fn restore(&self, sessions: Vec<Image>, retained: Vec<Message>) -> Vec<Barrier> {
        for m in retained {
            self.apply_retained(m);
        }
        let mut waits = Vec::new();
        for image in sessions {
            let session = Session::restore(image, self.limits());
            let client_id = session.client_id.clone();
            for (key, (options, id)) in session.subscriptions.iter() {
                let Some(spec) = Spec::of_key(key) else {
                    continue;
                };
                // Compiled again here, on its home shard; refused only if the COREMQ_FILTER_MAX_*
                // limits were lowered since it was granted.
                let content = match self.compile_filter(&spec) {
                    Ok(c) => c,
                    Err((_, why)) => {
                        crate::log!(
                            Warn,
                            "restored subscription {:?} of {:?} left out: {why}",
                            key.as_str(),
                            client_id.as_str()
                        );
                        continue;
                    }
                };
                let wait = if spec.topic.is_shared() {
                    self.add_shared_member(&spec.topic, &client_id, *options, *id, content)
                } else {
                    self.add_subscriber(
                        spec.topic.as_mqtt_str(),
                        &client_id,
                        *options,
                        *id,
                        content,
                    )
                    .1
                };
                waits.extend(wait);
            }
            let mut clients = self.clients.borrow_mut();
            for at in session.wake_times() {
                clients
                    .timers
                    .push(std::cmp::Reverse((at, client_id.clone())));
            }
            clients.sessions.insert(super::clients::Entry::new(session));
        }
        waits
    }

    /// Shutdown: the writer writes what waits, closes the log and ends.
    pub fn stop_store(&self) {
        if let Some(p) = &self.persist {
            let mut p = p.borrow_mut();
            p.stopping = true;
            p.journal.wake().notify();
        }
    }

    /// Whether the writer should end once nothing waits.
    pub fn store_stopping(&self) -> bool {
        self.persist.as_ref().is_some_and(|p| p.borrow().stopping)
    }

    /// Whether acknowledgements wait for the disk.
    pub(super) fn acks_wait_for_sync(&self) -> bool {
        self.persist.as_ref().is_some_and(|p| p.borrow().acks_wait)
    }

    /// Whether the last write of the store failed (disk full, I/O error): QoS 1/2 messages are
    /// refused meanwhile.
    pub(super) fn store_failed(&self) -> bool {
        self.persist
            .as_ref()
            .is_some_and(|p| p.borrow().journal.is_failed())
    }

    fn record(&self, record: &Record) {
        if let Some(p) = &self.persist {
            p.borrow_mut().journal.append(record);
        }
    }

    /// Records what changed in a durable session since the last call.
    pub(super) fn keep(&self, session: &mut Session) {
        if !session.has_changes() {
            return;
        }
        let Some(p) = &self.persist else {
            session.take_changes();
            return;
        };
        let clock = Clock::now();
        let changes = session.take_changes();
        let client = &session.client_id;
        let mut p = p.borrow_mut();
        for change in changes {
            let client = client.clone();
            let record = match change {
                Change::Entered {
                    seq,
                    id,
                    message,
                    delivery,
                } => Record::Entered {
                    client,
                    seq,
                    id,
                    message: clock.store(&message),
                    delivery,
                },
                Change::Sent { seq, id } => Record::Sent { client, seq, id },
                Change::Released { seq } => Record::Released { client, seq },
                Change::Done { seq } => Record::Done { client, seq },
                Change::Inbound { id, add } => Record::Inbound { client, id, add },
            };
            p.journal.append(&record);
        }
    }

    /// A session becomes (or stays) durable, or stops being so, as its lifetime now says: a
    /// newly durable session is recorded whole; a durable one gets its metadata again (which
    /// clears a delayed will); one that ends with its connection is forgotten.
    pub(super) fn keep_session(&self, session: &mut Session) {
        if self.persist.is_none() {
            return;
        }
        let durable = !session.ends_with_connection();
        match (session.is_durable(), durable) {
            (false, true) => {
                session.set_durable(true);
                self.record_image(&session.image());
            }
            (true, true) => {
                self.keep(session);
                self.record_meta(session);
                if let Some(will) = session.delayed_will() {
                    self.record_will(&session.client_id, will);
                }
            }
            (true, false) => {
                session.set_durable(false);
                self.forget_session(&session.client_id);
            }
            (false, false) => {}
        }
    }

    fn record_image(&self, image: &Image) {
        if let Some(p) = &self.persist {
            let clock = Clock::now();
            let mut bytes = Vec::new();
            snapshot_session(image, &clock, &mut bytes);
            p.borrow_mut().journal.append_encoded(&bytes);
        }
    }

    fn record_meta(&self, session: &Session) {
        let clock = Clock::now();
        self.record(&Record::Session {
            client: session.client_id.clone(),
            version: session.version,
            username: session.username.clone(),
            lifetime: session.lifetime(),
            expires_at: session.expires_at().map(|t| clock.to_wall(t)),
        });
    }

    /// Records a durable session's delayed will (its message, delay and due time).
    fn record_will(&self, client: &ClientId, (message, delay, due): (Message, Duration, Instant)) {
        let clock = Clock::now();
        let delay = u32::try_from(delay.as_secs()).unwrap_or(u32::MAX);
        self.record(&Record::Will {
            client: client.clone(),
            will: Some((clock.store(&message), delay, clock.to_wall(due))),
        });
    }

    /// A durable session's delayed will went out (or was cancelled).
    pub(super) fn forget_will(&self, session: &Session) {
        if session.is_durable() {
            self.record(&Record::Will {
                client: session.client_id.clone(),
                will: None,
            });
        }
    }

    /// The session of `client` ended: forget everything recorded of it.
    pub(super) fn forget_session(&self, client: &ClientId) {
        self.record(&Record::SessionEnd {
            client: client.clone(),
        });
    }

    /// A durable session subscribed (or changed a subscription).
    pub(super) fn keep_subscription(
        &self,
        session: &Session,
        filter: &MqttString,
        options: SubscriptionOptions,
        id: Option<std::num::NonZeroU32>,
    ) {
        if session.is_durable() {
            self.record(&Record::Subscribe {
                client: session.client_id.clone(),
                filter: filter.clone(),
                options,
                id,
            });
        }
    }

    pub(super) fn forget_subscription(&self, session: &Session, filter: &MqttString) {
        if session.is_durable() {
            self.record(&Record::Unsubscribe {
                client: session.client_id.clone(),
                filter: filter.clone(),
            });
        }
    }

    /// On the topic's owner shard: a retained update to keep (`$SYS/` topics are the broker's
    /// figures, made anew after a restart: not kept).
    pub(super) fn keep_retained(&self, message: &Message) {
        if self.persist.is_some() && !message.topic.is_broker_owned() {
            self.record(&Record::Retain {
                message: Clock::now().store(message),
            });
        }
    }

    /// A barrier that completes once everything this shard recorded so far is on disk; `None`
    /// when there is nothing to wait for.
    pub(super) fn sync_wait(&self) -> Option<Barrier> {
        let p = self.persist.as_ref()?;
        if !p.borrow().acks_wait || p.borrow().journal.is_synced() {
            return None;
        }
        let (token, barrier) = self.barriers.borrow_mut().open(1);
        let mut p = p.borrow_mut();
        let at = p.journal.position();
        p.waits.push_back((at, self.id(), token));
        Some(barrier)
    }

    /// Acks `token` to shard `to` once everything recorded so far is on disk (at once when it is
    /// already, or acknowledgements do not wait).
    pub(super) fn ack_after_sync(&self, to: ShardId, token: AckToken) {
        if let Some(p) = &self.persist {
            let mut p = p.borrow_mut();
            if p.acks_wait && !p.journal.is_synced() {
                let at = p.journal.position();
                p.waits.push_back((at, to, token));
                return;
            }
        }
        self.post(to, MeshMsg::Ack(token));
    }

    /// Sends a PUBLISH to a session's connection — after its records are on disk when it is a
    /// QoS 2 delivery (or one behind a held one) and acknowledgements wait for the disk.
    pub(super) fn send_delivery(&self, conn: &Rc<Outbox>, out: Outgoing) {
        let qos2 = out.publish.qos == QoS::ExactlyOnce;
        if let Some(Held::Publish(out)) = self.hold_for_sync(conn, Held::Publish(out), qos2) {
            conn.send_publish(out);
        }
    }

    /// Sends a PUBREL for a QoS 2 delivery, once its `Released` record is on disk.
    pub(super) fn send_release(&self, conn: &Rc<Outbox>, rel: Packet) {
        if let Some(Held::Packet(p)) = self.hold_for_sync(conn, Held::Packet(rel), true) {
            conn.send(&p);
        }
    }

    /// Holds `packet` until the log is synced (when `wait` and the log is not, or when an earlier
    /// packet to the same connection is held); gives it back when it may go now.
    fn hold_for_sync(&self, conn: &Rc<Outbox>, packet: Held, wait: bool) -> Option<Held> {
        let Some(p) = &self.persist else {
            return Some(packet);
        };
        let mut p = p.borrow_mut();
        let behind = p.held_per_conn.contains_key(&conn.id);
        let must_wait = wait && p.acks_wait && !p.journal.is_synced();
        if !behind && !must_wait {
            return Some(packet);
        }
        let at = p.journal.position();
        *p.held_per_conn.entry(conn.id).or_insert(0) += 1;
        p.held.push_back((at, conn.clone(), packet));
        None
    }

    /// What the writer should do next: `None` when nothing waits. A log grown well past its last
    /// snapshot is compacted: the snapshot of this moment replaces it (and covers what waited).
    pub fn take_store_batch(&self) -> Option<StoreBatch> {
        let persist = self.persist.as_ref()?;
        let compact = {
            let p = persist.borrow();
            p.journal.pending_bytes() > 0
                && p.log_bytes > COMPACT_MIN
                && p.log_bytes > COMPACT_FACTOR * p.snapshot_bytes
        };
        if compact {
            let snapshot = self.store_snapshot();
            let mut p = persist.borrow_mut();
            let end = p.journal.discard_pending();
            p.log_bytes = snapshot.len() as u64;
            p.snapshot_bytes = p.log_bytes;
            return Some(StoreBatch::Replace(snapshot, end));
        }
        let mut p = persist.borrow_mut();
        let (bytes, end) = p.journal.take()?;
        p.log_bytes += bytes.len() as u64;
        Some(StoreBatch::Append(bytes, end))
    }

    /// Everything this shard keeps, as records: its durable sessions and the retained messages
    /// it owns.
    fn store_snapshot(&self) -> Vec<u8> {
        let clock = Clock::now();
        let mut out = Vec::new();
        crate::store::record::encode(
            &Record::Header {
                shard: self.id().0 as u32,
                shards: self.mesh.count() as u32,
            },
            &mut out,
        );
        for entry in self.clients.borrow().sessions.values() {
            if entry.session.is_durable() {
                snapshot_session(&entry.session.image(), &clock, &mut out);
            }
        }
        let me = self.id();
        self.retained.borrow().for_each(|m| {
            if self.mesh.retain_owner(m.topic.as_bytes()) == me && !m.topic.is_broker_owned() {
                snapshot_retained(m, &clock, &mut out);
            }
        });
        out
    }

    /// The writer wrote (and, unless COREMQ_FSYNC=never, synced) the log up to `end`, or failed
    /// to (`ok` false: every waiting acknowledgement learns it failed, and QoS 1/2 messages are
    /// refused until a write succeeds again). Releases what waited for it.
    pub fn store_written(&self, end: u64, ok: bool) {
        let Some(persist) = &self.persist else {
            return;
        };
        let (acks, sends) = {
            let mut p = persist.borrow_mut();
            let was_failed = p.journal.is_failed();
            p.journal.written(end, ok);
            if !ok && !was_failed {
                crate::log!(
                    Error,
                    "shard {}: the store cannot write its log: QoS 1/2 messages are refused \
                     (MQTT 5: 0x97; 3.1.1: the connection is closed) until it can",
                    self.id().0
                );
            } else if ok && was_failed {
                crate::log!(Warn, "shard {}: the store writes again", self.id().0);
            }
            let synced = p.journal.synced();
            let mut acks = Vec::new();
            while let Some(&(at, to, token)) = p.waits.front() {
                if ok && at > synced {
                    break;
                }
                p.waits.pop_front();
                acks.push((to, token));
            }
            let mut sends = Vec::new();
            while let Some((at, _, _)) = p.held.front() {
                if ok && *at > synced {
                    break;
                }
                if let Some((_, conn, out)) = p.held.pop_front() {
                    if let Some(n) = p.held_per_conn.get_mut(&conn.id) {
                        *n -= 1;
                        if *n == 0 {
                            p.held_per_conn.remove(&conn.id);
                        }
                    }
                    sends.push((conn, out));
                }
            }
            (acks, sends)
        };
        for (to, token) in acks {
            self.post(
                to,
                if ok {
                    MeshMsg::Ack(token)
                } else {
                    MeshMsg::SyncFailed(token)
                },
            );
        }
        // Not stored, but sent all the same: at least once rather than not at all.
        for (conn, held) in sends {
            if !conn.is_closing() {
                match held {
                    Held::Publish(out) => {
                        conn.send_publish(out);
                    }
                    Held::Packet(p) => {
                        conn.send(&p);
                    }
                }
            }
        }
    }

    /// `Ready` when records wait for the writer task (it sleeps on this).
    pub fn poll_store_wake(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.persist {
            Some(p) => p.borrow().journal.wake().poll_wait(cx),
            None => Poll::Pending,
        }
    }

    /// Whether records wait for the writer.
    pub fn store_pending(&self) -> bool {
        self.persist
            .as_ref()
            .is_some_and(|p| p.borrow().journal.pending_bytes() > 0)
    }

    /// Queues an acknowledgement behind those still waiting (or sends it now when none waits
    /// and it needs no wait).
    pub(super) fn send_ack(&self, client: &mut Client, packet: Packet, wait: Option<Barrier>) {
        if wait.is_none() && client.acks.is_empty() {
            client.conn.send(&packet);
        } else {
            client.acks.push_back(PendingAck { wait, packet });
        }
    }

    /// Sends the acknowledgements whose waits are over, in order. A failed wait (the store could
    /// not keep the message) turns a PUBACK / PUBREC into 0x97 Quota exceeded for MQTT 5 (and
    /// releases the inbound QoS 2 id, as an error PUBREC ends the flow), and ends a 3.1.1
    /// connection, which has no way to say so.
    pub fn poll_acks(&self, client: &mut Client, cx: &mut Context<'_>) -> AckPoll {
        while let Some(front) = client.acks.front() {
            if let Some(w) = &front.wait {
                if w.poll_done(cx).is_pending() {
                    return if client.acks.len() >= usize::from(self.config.receive_maximum) {
                        AckPoll::Full
                    } else {
                        AckPoll::Room
                    };
                }
            }
            let Some(PendingAck { wait, mut packet }) = client.acks.pop_front() else {
                break;
            };
            if wait.is_some_and(|w| w.failed()) {
                match self.refuse_unstored(client, &mut packet) {
                    Ok(()) => {}
                    Err(v) => return AckPoll::Failed(v),
                }
            }
            client.conn.send(&packet);
        }
        AckPoll::Room
    }

    /// Rewrites the acknowledgement of a message the store could not keep (see `poll_acks`).
    fn refuse_unstored(&self, client: &Client, packet: &mut Packet) -> Result<(), Violation> {
        let v5 = client.terms().version.is_v5();
        let (ack, qos2): (&mut PublishAck, bool) = match packet {
            Packet::PubAck(a) if !a.reason_code.is_error() => (a, false),
            Packet::PubRec(a) if !a.reason_code.is_error() => (a, true),
            _ => return Ok(()),
        };
        if !v5 {
            return Err(Violation {
                reason: ReasonCode::UNSPECIFIED_ERROR,
                what: "the store could not keep a QoS 1/2 message (see the log)",
            });
        }
        ack.reason_code = ReasonCode::QUOTA_EXCEEDED;
        ack.properties.reason_string = client.diagnostic("the broker could not store the message");
        if qos2 {
            let id: PacketId = ack.packet_id;
            self.with_session(client, |s| s.handle_pubrel(id));
        }
        Ok(())
    }
}
