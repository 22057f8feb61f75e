//! The session's invariants under arbitrary sequences of operations: the one check shared by the
//! `session` fuzz target (`fuzz/fuzz_targets/session.rs`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`). Not part of the broker (hidden from the docs).
//!
//! The input's first four bytes choose the limits (window 1–8, queue 0–15 messages, 64–2104
//! bytes, whether offline QoS 0 is queued); every following byte starts an operation, with its
//! arguments in the bytes after it: deliver (QoS, link, payload size, expiry, shared group),
//! PUBACK / PUBREC / PUBCOMP (of an id in flight, or of any id), drain the queue, resume after a
//! reconnect, let time pass, change the window, hand shared messages back, and the inbound QoS 2
//! PUBLISH / PUBREL pair.
//!
//! A model — the message sequence numbers in the queue and in flight, in order — is kept beside
//! the session, and after every operation:
//! - the session's queue and window hold what the model says: `queued() ≤ max_queued`, the queued
//!   topic and payload bytes ≤ `max_queued_bytes`, and a PUBLISH goes into the window only while
//!   it has room (`inflight() ≤` the window when it was sent);
//! - every QoS 1/2 message delivered is acknowledged, in flight, queued, handed back (shared) or
//!   counted in `drops` by its reason — never lost silently — and `drops` counts exactly the
//!   messages that disappeared;
//! - a QoS 1/2 message is sent when it can be (online, window open, nothing queued ahead of it),
//!   queued messages leave in order, packet ids in flight are distinct, a first send has DUP 0
//!   and a resend on `resume` DUP 1 with the same id [MQTT-4.4.0-1], a message whose PUBREC came
//!   is resent as PUBREL [MQTT-4.3.3];
//! - acknowledgements return `true` exactly for the id and stage they finish;
//! - an inbound QoS 2 id is new until its PUBREL [MQTT-4.3.3-9].
//!
//! It never panics itself: a broken invariant comes back as `Err(description)`.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Delivery, Drops, Limits, Link, Message, Resend, Session};
use crate::protocol::{
    ClientId, MessageProperties, PacketId, ProtocolVersion, Publish, QoS, TopicFilter, TopicName,
};

/// Operations taken from one input.
pub const MAX_OPS: usize = 4096;

/// What one `check` saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub operations: usize,
    /// QoS 1/2 messages delivered to the session.
    pub delivered: usize,
    /// QoS 1/2 messages fully acknowledged.
    pub completed: usize,
    /// Messages dropped (all reasons, all QoS).
    pub dropped: u64,
    /// Resends on `resume`.
    pub resent: usize,
}

/// The model's copy of `session::Awaiting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Ack,
    Comp,
}

#[derive(Debug, Clone)]
struct Queued {
    seq: u32,
    qos: QoS,
    size: usize,
    expires_at: Option<Instant>,
    shared: bool,
}

#[derive(Debug, Clone)]
struct Flight {
    id: PacketId,
    seq: u32,
    qos: QoS,
    stage: Awaiting,
    shared: bool,
}

/// What the session should hold.
struct Model {
    limits: Limits,
    window: usize,
    queue: VecDeque<Queued>,
    inflight: Vec<Flight>,
    drops: Drops,
    incoming: HashSet<PacketId>,
    /// QoS 1/2 messages in each final state.
    completed: usize,
    handed_back: usize,
    dropped_qos12: usize,
    delivered_qos12: usize,
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

/// Runs every invariant of the module docs on the operations `data` encodes. `start` is the
/// first `now` (time is a parameter here as everywhere in `session`); later ones are derived.
pub fn check(data: &[u8], start: Instant) -> Result<Summary, String> {
    let mut input = Input { data };
    let limits = Limits {
        max_inflight: 1 + usize::from(input.byte() % 8),
        max_queued: usize::from(input.byte() % 16),
        max_queued_bytes: 64 + 8 * usize::from(input.byte()),
        queue_qos0: input.byte() & 1 == 1,
    };
    let client_id = ClientId::from_static("fuzz").map_err(|e| e.to_string())?;
    let mut session = Session::new(client_id, ProtocolVersion::V5, limits);
    let mut model = Model {
        limits,
        window: limits.max_inflight,
        queue: VecDeque::new(),
        inflight: Vec::new(),
        drops: Drops::default(),
        incoming: HashSet::new(),
        completed: 0,
        handed_back: 0,
        dropped_qos12: 0,
        delivered_qos12: 0,
    };
    let mut run = Run {
        now: start,
        seq: 0,
        summary: Summary::default(),
    };
    while !input.data.is_empty() && run.summary.operations < MAX_OPS {
        run.summary.operations += 1;
        let op = input.byte();
        operation(op, &mut session, &mut model, &mut input, &mut run)
            .and_then(|()| model.compare(&session))
            .map_err(|e| format!("operation {} (byte {op:#04x}): {e}", run.summary.operations))?;
    }
    let mut summary = run.summary;
    summary.delivered = model.delivered_qos12;
    summary.completed = model.completed;
    summary.dropped = session.drops.total();
    Ok(summary)
}

/// What carries over from one operation to the next.
struct Run {
    now: Instant,
    /// The last message's sequence number.
    seq: u32,
    summary: Summary,
}

/// One operation, chosen by `op`, on the session and the model alike.
fn operation(
    op: u8,
    session: &mut Session,
    model: &mut Model,
    input: &mut Input,
    run: &mut Run,
) -> Result<(), String> {
    let now = run.now;
    match op % 11 {
        0..=2 => {
            run.seq += 1;
            deliver(session, model, input, run.seq, now)
        }
        3 => {
            let id = pick_id(model, input);
            let want = model.finish(id, QoS::AtLeastOnce, Awaiting::Ack);
            expect_ack("handle_puback", id, session.handle_puback(id), want)
        }
        4 => {
            let id = pick_id(model, input);
            let want = match model.inflight.iter_mut().find(|f| f.id == id) {
                Some(f) if f.qos == QoS::ExactlyOnce => {
                    f.stage = Awaiting::Comp;
                    true
                }
                _ => false,
            };
            expect_ack("handle_pubrec", id, session.handle_pubrec(id), want)
        }
        5 => {
            let id = pick_id(model, input);
            let want = model.finish(id, QoS::ExactlyOnce, Awaiting::Comp);
            expect_ack("handle_pubcomp", id, session.handle_pubcomp(id), want)
        }
        6 => {
            let out = session.drain_queue(now).into_iter().map(|o| o.publish);
            model.drain(out.collect(), now, "drain_queue")
        }
        7 => resume(session, model, now, &mut run.summary),
        8 => {
            run.now += Duration::from_secs(u64::from(input.byte() % 4));
            Ok(())
        }
        9 => {
            let n = usize::from(input.byte() % 10);
            session.set_max_inflight(n);
            model.window = n.max(1);
            Ok(())
        }
        _ => shared_or_inbound(session, model, input),
    }
}

/// `take_shared`, or one step of the inbound QoS 2 ids (a PUBLISH or a PUBREL).
fn shared_or_inbound(
    session: &mut Session,
    model: &mut Model,
    input: &mut Input,
) -> Result<(), String> {
    match input.byte() % 3 {
        0 => {
            let got = session.take_shared().len();
            model.take_shared(got)
        }
        1 => {
            let id = PacketId::new(1 + input.byte() as u16 % 8).ok_or("id 0")?;
            let want = model.incoming.insert(id);
            let got = session.handle_incoming_qos2(id);
            expect_ack("handle_incoming_qos2", id, got, want)
        }
        _ => {
            let id = PacketId::new(1 + input.byte() as u16 % 8).ok_or("id 0")?;
            let want = model.incoming.remove(&id);
            expect_ack("handle_pubrel", id, session.handle_pubrel(id), want)
        }
    }
}

fn expect_ack(what: &str, id: PacketId, got: bool, want: bool) -> Result<(), String> {
    if got != want {
        return Err(format!("{what}({id}) returned {got}, expected {want}"));
    }
    Ok(())
}

/// An id in flight (most of the time, so acknowledgements mostly hit), or any id.
fn pick_id(model: &Model, input: &mut Input) -> PacketId {
    let b = input.byte();
    if b & 0x80 == 0 && !model.inflight.is_empty() {
        return model.inflight[usize::from(b) % model.inflight.len()].id;
    }
    PacketId::new(input.u16()).unwrap_or(PacketId(std::num::NonZeroU16::MIN))
}

/// A message with sequence number `seq` as the input describes it (QoS, expiry, a shared
/// group), and the link state of the delivery.
fn random_delivery(
    input: &mut Input,
    seq: u32,
    now: Instant,
) -> Result<(Message, Delivery, Link), String> {
    let flags = input.byte();
    let qos = match flags % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let link = match (flags / 3) % 3 {
        0 => Link::Online,
        1 => Link::Congested,
        _ => Link::Offline,
    };
    // None, or an interval of 0 (expired at once) or 2 seconds.
    let expiry = match (flags / 9) % 4 {
        0 | 1 => None,
        2 => Some(0),
        _ => Some(2),
    };
    let shared = flags & 0x80 != 0 && qos != QoS::AtMostOnce;
    let mut payload = seq.to_be_bytes().to_vec();
    payload.resize(4 + usize::from(input.byte() % 64), 0);
    let message = Message {
        topic: TopicName::from_static("fuzz/t").map_err(|e| e.to_string())?,
        payload: Bytes::from(payload),
        qos,
        retain: false,
        properties: MessageProperties {
            message_expiry_interval: expiry,
            ..MessageProperties::default()
        },
        publisher: ClientId::default(),
        expires_at: expiry.map(|s| now + Duration::from_secs(u64::from(s))),
        received: now,
    };
    let delivery = Delivery {
        qos,
        retain: false,
        subscription_ids: Vec::new(),
        group: shared
            .then(|| TopicFilter::from_static("$share/g/fuzz/t"))
            .transpose()
            .map_err(|e| e.to_string())?,
    };
    Ok((message, delivery, link))
}

/// Delivers a message to the session and checks it did what the model says, in the order
/// `Session::deliver` documents: expired → dropped; QoS 0 → sent, or dropped (congested,
/// offline) unless queued for an offline client; QoS 1/2 → sent while the window is open and
/// nothing waits, else queued within the limits, else dropped.
fn deliver(
    session: &mut Session,
    model: &mut Model,
    input: &mut Input,
    seq: u32,
    now: Instant,
) -> Result<(), String> {
    let (message, delivery, link) = random_delivery(input, seq, now)?;
    let (qos, shared) = (delivery.qos, delivery.group.is_some());
    let size = message.topic.as_bytes().len() + message.payload.len();
    let got = session
        .deliver(&message, delivery, link, now)
        .map(|o| o.publish);
    let qos12 = qos != QoS::AtMostOnce;
    model.delivered_qos12 += usize::from(qos12);
    if message.is_expired(now) {
        model.drops.expired += 1;
        model.dropped_qos12 += usize::from(qos12);
        return expect_none(got, "an expired message");
    }
    if !qos12 {
        match link {
            Link::Online => return expect_publish(got, seq, qos, false, "online QoS 0").map(drop),
            Link::Congested => {
                model.drops.qos0_congested += 1;
                return expect_none(got, "QoS 0 to a congested client");
            }
            Link::Offline if !model.limits.queue_qos0 => {
                model.drops.qos0_offline += 1;
                return expect_none(got, "QoS 0 to an offline client");
            }
            Link::Offline => {}
        }
    } else if link == Link::Online && model.queue.is_empty() && model.inflight.len() < model.window
    {
        let p = expect_publish(got, seq, qos, false, "QoS 1/2 with the window open")?;
        return model.sent(&p, seq, qos, shared);
    }
    let bytes: usize = model.queue.iter().map(|q| q.size).sum();
    if model.queue.len() >= model.limits.max_queued || bytes + size > model.limits.max_queued_bytes
    {
        model.drops.queue_full += 1;
        model.dropped_qos12 += usize::from(qos12);
        return expect_none(got, "a message beyond the queue limits");
    }
    model.queue.push_back(Queued {
        seq,
        qos,
        size,
        expires_at: message.expires_at,
        shared,
    });
    expect_none(got, "a message that must queue")
}

fn expect_none(got: Option<Publish>, what: &str) -> Result<(), String> {
    match got {
        None => Ok(()),
        Some(p) => Err(format!("{what} was sent: {p:?}")),
    }
}

fn seq_of(p: &Publish) -> Option<u32> {
    let b = p.payload.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn expect_publish(
    got: Option<Publish>,
    seq: u32,
    qos: QoS,
    dup: bool,
    what: &str,
) -> Result<Publish, String> {
    let p = got.ok_or_else(|| format!("{what}: message {seq} was not sent"))?;
    if seq_of(&p) != Some(seq) || p.qos != qos || p.dup != dup {
        return Err(format!(
            "{what}: expected message {seq} at {qos:?} with DUP {dup}, got {p:?}"
        ));
    }
    if p.packet_id.is_some() != (qos != QoS::AtMostOnce) {
        return Err(format!("{what}: packet id {:?} at {qos:?}", p.packet_id));
    }
    Ok(p)
}

fn resume(
    session: &mut Session,
    model: &mut Model,
    now: Instant,
    summary: &mut Summary,
) -> Result<(), String> {
    let out = session.resume(now);
    let resent = model.inflight.len();
    if out.len() < resent {
        return Err(format!("resume resent {} of {resent} in flight", out.len()));
    }
    summary.resent += resent;
    for (r, f) in out.iter().zip(&model.inflight) {
        let ok = match (r, f.stage) {
            (Resend::Publish(p), Awaiting::Ack) => {
                p.packet_id == Some(f.id) && p.dup && p.qos == f.qos && seq_of(p) == Some(f.seq)
            }
            (Resend::PubRel(id), Awaiting::Comp) => *id == f.id,
            _ => false,
        };
        if !ok {
            return Err(format!("resume sent {r:?} for {f:?}"));
        }
    }
    let mut drained = Vec::new();
    for r in out.into_iter().skip(resent) {
        match r {
            Resend::Publish(p) => drained.push(p.publish),
            other => return Err(format!("resume sent {other:?} after the resends")),
        }
    }
    model.drain(drained, now, "resume")
}

impl Model {
    /// A QoS 1/2 PUBLISH `p` of message `seq` went into the window.
    fn sent(&mut self, p: &Publish, seq: u32, qos: QoS, shared: bool) -> Result<(), String> {
        let id = p.packet_id.ok_or("QoS 1/2 without a packet id")?;
        if self.inflight.iter().any(|f| f.id == id) {
            return Err(format!("packet id {id} is already in flight"));
        }
        if self.inflight.len() >= self.window {
            return Err(format!(
                "message {seq} sent with {} in flight, window {}",
                self.inflight.len(),
                self.window
            ));
        }
        self.inflight.push(Flight {
            id,
            seq,
            qos,
            stage: Awaiting::Ack,
            shared,
        });
        Ok(())
    }

    fn finish(&mut self, id: PacketId, qos: QoS, stage: Awaiting) -> bool {
        match self
            .inflight
            .iter()
            .position(|f| f.id == id && f.qos == qos && f.stage == stage)
        {
            Some(pos) => {
                self.inflight.remove(pos);
                self.completed += 1;
                true
            }
            None => false,
        }
    }

    /// The queue drained into `out`: front first, QoS 1/2 only while the window has room,
    /// expired messages dropped on the way.
    fn drain(&mut self, out: Vec<Publish>, now: Instant, what: &str) -> Result<(), String> {
        let mut out = out.into_iter();
        while let Some(front) = self.queue.front() {
            if front.qos != QoS::AtMostOnce && self.inflight.len() >= self.window {
                break;
            }
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            if q.expires_at.is_some_and(|t| t <= now) {
                self.drops.expired += 1;
                self.dropped_qos12 += usize::from(q.qos != QoS::AtMostOnce);
                continue;
            }
            let p = expect_publish(out.next(), q.seq, q.qos, false, what)?;
            if q.qos != QoS::AtMostOnce {
                self.sent(&p, q.seq, q.qos, q.shared)?;
            }
        }
        match out.next() {
            None => Ok(()),
            Some(p) => Err(format!("{what} sent {p:?}, which was not queued")),
        }
    }

    fn take_shared(&mut self, got: usize) -> Result<(), String> {
        let before = self.inflight.len() + self.queue.len();
        self.inflight
            .retain(|f| !(f.shared && f.stage == Awaiting::Ack));
        self.queue.retain(|q| !q.shared);
        let taken = before - self.inflight.len() - self.queue.len();
        self.handed_back += taken;
        if got != taken {
            return Err(format!("take_shared returned {got}, expected {taken}"));
        }
        Ok(())
    }

    fn compare(&self, session: &Session) -> Result<(), String> {
        if session.inflight() != self.inflight.len() || session.queued() != self.queue.len() {
            return Err(format!(
                "session holds {} in flight and {} queued, expected {} and {}",
                session.inflight(),
                session.queued(),
                self.inflight.len(),
                self.queue.len()
            ));
        }
        if session.queued() > self.limits.max_queued {
            return Err(format!(
                "{} queued, limit {}",
                session.queued(),
                self.limits.max_queued
            ));
        }
        let bytes: usize = self.queue.iter().map(|q| q.size).sum();
        if bytes > self.limits.max_queued_bytes {
            return Err(format!("{bytes} bytes queued"));
        }
        if session.drops != self.drops {
            return Err(format!(
                "drops {:?}, expected {:?}",
                session.drops, self.drops
            ));
        }
        if session.incoming_unreleased() != self.incoming.len() {
            return Err(format!(
                "{} inbound QoS 2 unreleased, expected {}",
                session.incoming_unreleased(),
                self.incoming.len()
            ));
        }
        let queued_qos12 = self
            .queue
            .iter()
            .filter(|q| q.qos != QoS::AtMostOnce)
            .count();
        let accounted = self.completed
            + self.inflight.len()
            + queued_qos12
            + self.handed_back
            + self.dropped_qos12;
        if accounted != self.delivered_qos12 {
            return Err(format!(
                "{} QoS 1/2 messages delivered, {accounted} accounted for",
                self.delivered_qos12
            ));
        }
        Ok(())
    }
}
