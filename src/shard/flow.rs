//! Flow control from subscribers back to publishers, so acknowledged QoS 1/2 messages are not
//! dropped just because publishers outpace a live subscriber.
//!
//! A subscriber session that is connected and reading (`Link::Online`) but whose queue has passed
//! its *hold depth* holds each publisher whose QoS 1/2 message it had to queue: the publisher's
//! home shard stops reading that publisher's connection (its TCP window then fills, which is the
//! only backpressure MQTT has). When the queue is back under half the depth, the session releases
//! its holds. The depth is a time, not a count: `QUEUE_TIME` (5 ms) of the session's own drain
//! rate (acknowledgements per second, measured while its queue is past `FLOOR_DEPTH`), between 64
//! and half of COREMQ_MAX_QUEUED_MESSAGES — so a message waits in the queue for a few
//! milliseconds, not for as long as a count of messages takes to drain. Worked examples, limit
//! 1000: a subscriber acknowledging 4,000/s holds its publishers at 65 queued (5 ms would be 20:
//! the floor) and releases them at 32; one acknowledging 200,000/s holds at 501 (the cap).
//! Measured on QoS 1 pairs x100 (7 runs against 5): p99 209 -> 68 ms, peak RSS 92 -> 54 MiB, msgs/s
//! 385k -> 408k (medians); QoS 1 fan-in 100->1: 218k -> 213k msgs/s, p99 70 -> 80 ms.
//!
//! Slow consumers must not stall everyone else: a holding session that acknowledges nothing for
//! `HOLD_LIMIT` is treated as a slow consumer — its holds are released and it holds nobody until
//! its queue has drained, so its queue overflows (counted drops) instead of pausing the
//! publishers that fast subscribers also wait for. A subscriber that keeps acknowledging, however
//! slowly, keeps its holds: its publishers go at its pace and nothing acknowledged is lost. A
//! publisher is never paused longer than `PAUSE_LIMIT` in one stretch, whatever its holders do.
//!
//! The same holds between cores: a connection whose last packet sent messages to another shard
//! that is behind with this shard's messages reads nothing until it catches up (`note_routed`,
//! `poll_room`; the counting is the mesh's, `Mesh::poll_room`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Shard;
use crate::mesh::{MeshMsg, ShardSet};
use crate::protocol::{ClientId, QoS};
use crate::session::{Link, Session};

/// How long a session may hold publishers before it counts as a slow consumer.
const HOLD_LIMIT: Duration = Duration::from_secs(1);
/// Queue depth up to which a subscriber never holds publishers (or the limit's half, if less).
const FLOOR_DEPTH: usize = 64;
/// How much of a subscriber's own traffic its queue may hold before it holds its publishers.
const QUEUE_TIME: Duration = Duration::from_millis(5);
/// Shortest drain-rate sample.
const RATE_WINDOW: Duration = Duration::from_millis(5);
/// Longest single pause of a publisher: a safety valve should a release ever be lost.
const PAUSE_LIMIT: Duration = Duration::from_secs(10);

/// The publishers one subscriber session holds. Allocated only while the session is under
/// pressure: every session has one, and almost all of them never fall behind.
#[derive(Debug, Default)]
pub(super) struct Holds(Option<Box<HoldState>>);

impl Holds {
    /// Whether any publisher is held back.
    pub fn is_holding(&self) -> bool {
        self.0.as_ref().is_some_and(|h| !h.publishers.is_empty())
    }
}

#[derive(Debug, Default)]
struct HoldState {
    /// The hold depth in force (see `hold_depth`): 0 until the drain rate is known.
    depth: usize,
    /// Start of the current drain-rate sample: when, and `Session::completed()` then.
    sample: Option<(Instant, u64)>,
    publishers: Vec<ClientId>,
    /// When the session last made progress (acknowledged a delivery) while holding.
    since: Option<Instant>,
    /// `Session::completed()` at `since`.
    progress: u64,
    /// Held too long: no new holds until the queue drains.
    slow: bool,
}

/// This shard's side of flow control: the publishers homed here that are paused, and the
/// sessions homed here that hold publishers (anywhere) back.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Publishers homed here → how many holds they are under, and since when.
    paused: RefCell<HashMap<ClientId, (u32, Instant)>>,
    /// Sessions homed here that hold publishers back, checked every tick.
    holding: RefCell<Vec<ClientId>>,
    /// The other shards messages were sent to since `take_routed`: the connection whose packet
    /// is being handled waits for them if they fall behind (`Mesh::poll_room`).
    routed: Cell<ShardSet>,
}

impl Flow {
    /// A hold on a publisher homed here was taken or released.
    pub fn set_hold(&self, publisher: ClientId, on: bool) {
        let mut paused = self.paused.borrow_mut();
        if on {
            let e = paused.entry(publisher).or_insert((0, Instant::now()));
            if e.0 == 0 {
                e.1 = Instant::now();
            }
            e.0 += 1;
        } else if let Some(e) = paused.get_mut(&publisher) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                paused.remove(&publisher);
            }
        }
    }

    /// Publishers held back now.
    pub fn held(&self) -> usize {
        self.paused.borrow().len()
    }

    /// Whether reading from `client_id` is paused now. `now` is only called when some publisher
    /// is paused (this runs for every packet read).
    pub fn is_paused(&self, client_id: &ClientId, now: impl FnOnce() -> Instant) -> bool {
        let mut paused = self.paused.borrow_mut();
        if paused.is_empty() {
            return false;
        }
        match paused.get(client_id) {
            Some(&(holders, since)) if holders > 0 => {
                if now().duration_since(since) < PAUSE_LIMIT {
                    true
                } else {
                    // Never longer than PAUSE_LIMIT at a stretch (a lost release, a stuck
                    // holder): read again.
                    paused.remove(client_id);
                    false
                }
            }
            _ => false,
        }
    }
}

/// The queue depth past which a session holds its publishers: `QUEUE_TIME` of its own drain
/// rate (acknowledgements per second, sampled over at least `RATE_WINDOW`), between `floor` and
/// `cap` (half of COREMQ_MAX_QUEUED_MESSAGES); `floor` until the rate is known. A subscriber
/// draining 4,000 messages/s holds at 64, one draining 200,000/s at the cap.
///
/// `done` is the session's `completed()` count now.
fn hold_depth(h: &mut HoldState, done: u64, cap: usize, floor: usize, now: Instant) -> usize {
    if cap <= floor {
        return cap;
    }
    match h.sample {
        None => h.sample = Some((now, done)),
        Some((t0, c0)) => {
            let dt = now.saturating_duration_since(t0);
            if dt >= RATE_WINDOW {
                let rate = done.saturating_sub(c0) as f64 / dt.as_secs_f64();
                h.depth = ((rate * QUEUE_TIME.as_secs_f64()) as usize).clamp(floor, cap);
                h.sample = Some((now, done));
            }
        }
    }
    if h.depth == 0 {
        floor
    } else {
        h.depth
    }
}

impl Shard {
    /// After a delivery to `session`: hold `publisher` if the session is live but falling behind.
    pub(super) fn note_pressure(
        &self,
        holds: &mut Holds,
        session: &Session,
        link: Link,
        qos: QoS,
        publisher: &ClientId,
        now: Instant,
    ) {
        if !self.config.flow_control
            || qos == QoS::AtMostOnce
            || publisher.is_empty()
            || link != Link::Online
            || holds.0.as_ref().is_some_and(|h| h.slow)
        {
            return;
        }
        let cap = self.config.max_queued_messages / 2;
        let floor = FLOOR_DEPTH.min(cap);
        if session.queued() <= floor {
            return;
        }
        let h = holds.0.get_or_insert_default();
        if session.queued() <= hold_depth(h, session.completed(), cap, floor, now) {
            return;
        }
        if h.since.is_none() || session.completed() != h.progress {
            // Holding starts, or the subscriber acknowledged something since: it is consuming.
            h.since = Some(now);
            h.progress = session.completed();
        } else if h.since.is_some_and(|t| now.duration_since(t) > HOLD_LIMIT) {
            // No acknowledgement for HOLD_LIMIT: a slow consumer. Let the publishers go and
            // drop for this subscriber instead (counted).
            self.release(h);
            h.slow = true;
            return;
        }
        if !h.publishers.contains(publisher) {
            if h.publishers.is_empty() {
                self.flow
                    .holding
                    .borrow_mut()
                    .push(session.client_id.clone());
            }
            h.publishers.push(publisher.clone());
            self.hold(publisher, true);
        }
    }

    /// Called every tick: a holding session that made no progress for `HOLD_LIMIT` is a slow
    /// consumer even if nothing new is delivered to it (its publishers are paused, after all).
    pub(super) fn check_holds(&self, now: Instant) {
        if self.flow.holding.borrow().is_empty() {
            return;
        }
        let ids = std::mem::take(&mut *self.flow.holding.borrow_mut());
        let mut still = Vec::with_capacity(ids.len());
        let mut clients = self.clients.borrow_mut();
        for id in ids {
            let Some(entry) = clients.sessions.get_mut(&id) else {
                continue;
            };
            let Some(h) = entry.holds.0.as_deref_mut() else {
                continue;
            };
            if h.publishers.is_empty() {
                continue;
            }
            if entry.session.completed() != h.progress {
                h.since = Some(now);
                h.progress = entry.session.completed();
            } else if h.since.is_some_and(|t| now.duration_since(t) > HOLD_LIMIT) {
                self.release(h);
                h.slow = true;
                continue;
            }
            still.push(id);
        }
        drop(clients);
        self.flow.holding.borrow_mut().extend(still);
    }

    /// After `session`'s queue drained: release its holds once it is back under half its hold
    /// depth; forget the state (and its rate sample) once the queue is empty.
    pub(super) fn relieve(&self, holds: &mut Holds, session: &Session) {
        let Some(h) = holds.0.as_deref_mut() else {
            return;
        };
        let cap = self.config.max_queued_messages / 2;
        let depth = if h.depth == 0 { FLOOR_DEPTH } else { h.depth }.min(cap);
        let queued = session.queued();
        if queued * 2 <= depth && !h.publishers.is_empty() {
            self.release(h);
        }
        if queued == 0 && h.publishers.is_empty() {
            // Back to no pressure: nothing held, nothing allocated.
            holds.0 = None;
        }
    }

    /// Whether the session's queue may stretch (it is holding publishers back).
    pub(super) fn stretching(holds: &Holds) -> bool {
        holds
            .0
            .as_ref()
            .is_some_and(|h| !h.publishers.is_empty() && !h.slow)
    }

    /// Releases every publisher `holds` holds.
    pub(super) fn release_holds(&self, holds: &mut Holds) {
        if let Some(h) = holds.0.as_deref_mut() {
            self.release(h);
        }
    }

    fn release(&self, h: &mut HoldState) {
        for p in h.publishers.drain(..) {
            self.hold(&p, false);
        }
        h.since = None;
    }

    /// Adds or removes one hold on a publisher, on its home shard.
    fn hold(&self, publisher: &ClientId, on: bool) {
        let home = self.home_of(publisher.as_bytes());
        self.post(
            home,
            MeshMsg::Hold {
                publisher: publisher.clone(),
                on,
            },
        );
    }

    /// Messages to deliver went to the shards of `to`.
    pub(super) fn note_routed(&self, to: ShardSet) {
        self.flow.routed.set(self.flow.routed.get().union(to));
    }

    /// The other shards messages to deliver went to since the last call.
    pub fn take_routed(&self) -> ShardSet {
        self.flow.routed.replace(ShardSet::EMPTY)
    }

    /// `Pending` while a shard of `to` is behind with this shard's messages (`Mesh::poll_room`):
    /// a publisher whose messages went there reads nothing until it has caught up.
    pub fn poll_room(&self, to: ShardSet, cx: &mut Context<'_>) -> Poll<()> {
        self.mesh.poll_room(to, cx)
    }

    /// Whether reading from `client_id` is paused now (see `Flow::is_paused`).
    pub fn is_paused(&self, client_id: &ClientId, now: impl FnOnce() -> Instant) -> bool {
        self.flow.is_paused(client_id, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_depth_is_five_ms_of_the_drain_rate_between_floor_and_cap() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut h = HoldState::default();
        // Unknown rate: the floor.
        assert_eq!(hold_depth(&mut h, 100, 500, 64, t0), 64);
        // Too short a sample: still the floor.
        assert_eq!(hold_depth(&mut h, 110, 500, 64, ms(2)), 64);
        // 4,000/s (20 in 5 ms): 5 ms is 20 messages, below the floor.
        assert_eq!(hold_depth(&mut h, 120, 500, 64, ms(5)), 64);
        // 40,000/s over the next 10 ms: 200.
        assert_eq!(hold_depth(&mut h, 520, 500, 64, ms(15)), 200);
        // 200,000/s: 1,000, capped at 500.
        assert_eq!(hold_depth(&mut h, 1520, 500, 64, ms(20)), 500);
        // A small COREMQ_MAX_QUEUED_MESSAGES: its half, whatever the rate.
        assert_eq!(hold_depth(&mut HoldState::default(), 0, 10, 10, t0), 10);
    }
}
