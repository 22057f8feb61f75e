//! Flow control from subscribers back to publishers, so acknowledged QoS 1/2 messages are not
//! dropped just because publishers outpace a live subscriber.
//!
//! A subscriber session that is connected and reading (`Link::Online`) but whose queue has passed
//! half of COREMQ_MAX_QUEUED_MESSAGES *holds* each publisher whose QoS 1/2 message it had to
//! queue: the publisher's home shard stops reading that publisher's connection (its TCP window
//! then fills, which is the only backpressure MQTT has). When the queue is back under a quarter,
//! the session releases its holds. Worked example, limit 1000: queue 501 after a message from
//! P → hold P (P's reader pauses); acknowledgements drain the queue to 249 → release P.
//!
//! Slow consumers must not stall everyone else: a holding session that acknowledges nothing for
//! `HOLD_LIMIT` is treated as a slow consumer — its holds are released and it holds nobody until
//! its queue has drained, so its queue overflows (counted drops) instead of pausing the
//! publishers that fast subscribers also wait for. A subscriber that keeps acknowledging, however
//! slowly, keeps its holds: its publishers go at its pace and nothing acknowledged is lost. A
//! publisher is never paused longer than `PAUSE_LIMIT` in one stretch, whatever its holders do.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Shard;
use crate::mesh::MeshMsg;
use crate::protocol::{ClientId, QoS};
use crate::session::{Link, Session};

/// How long a session may hold publishers before it counts as a slow consumer.
const HOLD_LIMIT: Duration = Duration::from_secs(1);
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
        if session.queued() * 2 <= self.config.max_queued_messages {
            return;
        }
        let h = holds.0.get_or_insert_default();
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

    /// After `session`'s queue drained: release its holds once it is back under a quarter.
    pub(super) fn relieve(&self, holds: &mut Holds, session: &Session) {
        if holds.0.is_some() && session.queued() * 4 <= self.config.max_queued_messages {
            // Back to no pressure: nothing held, nothing allocated.
            self.release_holds(holds);
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

    /// Whether reading from `client_id` is paused now (see `Flow::is_paused`).
    pub fn is_paused(&self, client_id: &ClientId, now: impl FnOnce() -> Instant) -> bool {
        self.flow.is_paused(client_id, now)
    }
}
