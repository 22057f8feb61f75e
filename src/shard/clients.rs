//! The clients homed on this shard: their sessions (in a slot table), the outboxes of their live
//! connections, their parked connections and the timers of offline sessions (expiry, delayed
//! wills). Home shard only.
//!
//! One record per concern: the `Session` holds the client's MQTT state (pure); the `Entry` adds
//! where its connection is (live: an outbox; parked: a socket; or none) and the publishers it
//! holds back; the connection's own task keeps a `Client` (its per-connection MQTT state) and the
//! outbox keeps the `Terms` the connection agreed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

use super::flow::Holds;
use super::outbox::{ConnId, Outbox, Terms};
use super::table::{Keyed, SessionTable};
use super::{Client, Shard};
use crate::gate::ConnSlot;
use crate::mesh::{Carried, Handoff};
use crate::protocol::ClientId;
use crate::session::{Link, Session};

/// A session and where its connection is.
pub(super) struct Entry {
    pub session: Session,
    /// The live connection's outbox; `None` while offline or parked.
    pub conn: Option<Rc<Outbox>>,
    /// The connection, while it is parked (`park`): then `conn` is `None`.
    pub parked: Option<Box<Parked>>,
    /// Publishers this (live but lagging) subscriber holds back (see `flow`).
    pub holds: Holds,
}

impl Keyed for Entry {
    fn client_id(&self) -> &ClientId {
        &self.session.client_id
    }
}

impl Entry {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            conn: None,
            parked: None,
            holds: Holds::default(),
        }
    }

    /// Whether the client can take a delivery at `now` (see `Link`).
    pub fn link(&self, now: Instant) -> Link {
        match &self.conn {
            // Parked: idle, so nothing waits in its (future) outbox.
            None if self.parked.is_some() => Link::Online,
            None => Link::Offline,
            Some(c) if c.is_congested(now) => Link::Congested,
            Some(_) => Link::Online,
        }
    }

    /// Whether the connection `conn` is this session's current one (a takeover may have given the
    /// session to a newer connection).
    pub fn is_served_by(&self, conn: ConnId) -> bool {
        matches!(&self.conn, Some(c) if c.id == conn)
    }

    /// Connected, live or parked.
    pub fn is_online(&self) -> bool {
        self.conn.is_some() || self.parked.is_some()
    }
}

/// What a parked connection keeps (in its session's entry).
pub struct Parked {
    pub fd: OwnedFd,
    /// The stream's state beside the socket (TLS, WebSocket), if any.
    pub carried: Option<Carried>,
    /// Its place under COREMQ_MAX_CONNECTIONS: a parked connection still counts.
    pub slot: ConnSlot,
    /// When its keep alive runs out (1.5 × keep alive after the last packet), if it has one.
    pub deadline: Option<Instant>,
    /// What the connection agreed at CONNECT, for the outbox it gets when it wakes.
    pub terms: Terms,
}

/// A connection woken up, for `net` to serve again: its socket, its place, the `Client` (with
/// a fresh outbox, already the session's) and its keep-alive deadline.
pub struct Woken {
    pub fd: OwnedFd,
    pub carried: Option<Carried>,
    pub slot: ConnSlot,
    pub client: Client,
    pub deadline: Option<Instant>,
}

/// A connection for `net` to start serving on this shard.
pub enum Arrival {
    /// A parked connection woke up.
    Woken(Woken),
    /// Another shard handed over a connection whose client id is homed here.
    Handoff(Handoff),
}

/// Parked connections (`park.rs`) and connections arriving for `net` to serve.
#[derive(Default)]
pub(super) struct Parking {
    /// Connections parked now.
    pub(super) count: usize,
    /// No parked connection's keep alive runs out before this.
    pub(super) next_due: Option<Instant>,
    pub(super) arrivals: Vec<Arrival>,
    /// `net`'s task that serves arriving connections, waiting for some.
    pub(super) waiter: Option<Waker>,
}

impl Parking {
    pub fn count(&self) -> usize {
        self.count
    }

    /// Queues a connection for `net`'s task.
    pub fn arrive(&mut self, arrival: Arrival) {
        self.arrivals.push(arrival);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }
}

#[derive(Default)]
pub(super) struct Clients {
    pub sessions: SessionTable<Entry>,
    /// Every live connection on this shard, for shutdown.
    pub conns: HashMap<ConnId, Rc<Outbox>>,
    /// Parked connections (they are in `sessions`, not in `conns`) and arriving ones.
    pub parking: Parking,
    /// Session expiries and delayed wills, earliest first; stale entries are skipped.
    pub timers: BinaryHeap<Reverse<(Instant, ClientId)>>,
}

impl Clients {
    /// Connections, parked ones included.
    pub fn connections(&self) -> usize {
        self.conns.len() + self.parking.count()
    }

    /// Every live connection's outbox.
    pub fn live_outboxes(&self) -> Vec<Rc<Outbox>> {
        self.conns.values().cloned().collect()
    }

    /// Gives back the room of a connection table that emptied.
    pub fn compact(&mut self) {
        let len = self.conns.len();
        if self.conns.capacity() > 4 * len + 64 {
            self.conns.shrink_to(2 * len);
        }
    }
}

impl Shard {
    /// A connection's outbound buffer drained after deliveries were held back: offer its
    /// session's queue again.
    pub fn resume_held_back(&self, client_id: &ClientId, conn: ConnId) {
        self.drain_session(client_id, conn, Instant::now());
    }

    /// After a client's queue drained (acknowledgements freed its window): send what the window
    /// allows and release the publishers it held once it is back under the low watermark.
    pub(super) fn drain_session(&self, client_id: &ClientId, conn: ConnId, now: Instant) {
        let mut clients = self.clients.borrow_mut();
        let Some(entry) = clients.sessions.get_mut(client_id) else {
            return;
        };
        let Some(out) = entry.conn.clone().filter(|c| c.id == conn) else {
            return;
        };
        let sends = entry.session.drain_queue(now);
        self.keep(&mut entry.session);
        for p in sends {
            self.send_delivery(&out, p);
        }
        self.relieve(&mut entry.holds, &entry.session);
    }

    /// Fires the session timers due at `now`: delayed wills, and expiry of offline sessions
    /// (publishing a delayed will that is still waiting, since the session ends first
    /// [MQTT-3.1.3-9]).
    pub(super) fn fire_session_timers(&self, now: Instant) {
        loop {
            let mut clients = self.clients.borrow_mut();
            if clients
                .timers
                .peek()
                .is_none_or(|Reverse((due, _))| *due > now)
            {
                return;
            }
            let Some(Reverse((_, client_id))) = clients.timers.pop() else {
                return;
            };
            let Some(entry) = clients.sessions.get_mut(&client_id) else {
                continue;
            };
            if entry.is_online() {
                continue; // reconnected since: timers are void
            }
            let (will, expired) = entry.session.due(now);
            if will.is_some() && !expired {
                self.forget_will(&entry.session);
            }
            let ended = if expired {
                clients.sessions.remove(&client_id)
            } else {
                None
            };
            drop(clients);
            if let Some(w) = will {
                self.publish_message(w, false, now);
            }
            if let Some(e) = ended {
                self.end_session(e.session);
            }
        }
    }
}
