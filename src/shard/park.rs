//! Parked connections (home shard only): a connection that has been silent for
//! COREMQ_PARK_IDLE_AFTER gives up its task, outbox and timers, and the shard keeps only what it
//! needs to bring it back (`Parked`, in the session's entry) while `net` watches the socket in
//! the shard's idle watcher. Most connections of a large fleet are idle at any moment, so this
//! is what an idle connection costs (see the README's memory figures).
//!
//! A parked connection is still connected as far as MQTT is concerned: deliveries, takeover,
//! keep alive and shutdown treat it as online. Whatever needs it live *wakes* it: a fresh outbox
//! is made at once (so a delivery can be queued in the same step) and `net` is handed the socket
//! and a `Client` to start the connection's task again (`poll_woken`). The triggers are bytes on
//! the socket (`wake_key`), a delivery or a takeover (`unpark`), the keep alive running out
//! (`wake_due`; the woken task then ends the connection the usual way) and shutdown (`wake_all`).
//!
//! Only a connection with no state outside the session may park: nothing buffered or queued,
//! no topic aliases in either direction, no enhanced authentication, holding no publisher back.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::{Client, ConnId, Entry, Outbox, Shard};
use crate::gate::ConnSlot;

/// What a parked connection keeps (in its session's entry).
pub struct Parked {
    pub fd: OwnedFd,
    /// Its place under COREMQ_MAX_CONNECTIONS: a parked connection still counts.
    pub slot: ConnSlot,
    /// When its keep alive runs out (1.5 × keep alive after the last packet), if it has one.
    pub deadline: Option<Instant>,
    pub keep_alive: u16,
    pub problem_information: bool,
    /// The client's Maximum Packet Size and Topic Alias Maximum, for the next outbox.
    pub max_packet_size: u32,
    pub alias_max: u16,
}

/// A connection woken up, for `net` to serve again: its socket, its place, the `Client` (with
/// a fresh outbox, already the session's) and its keep-alive deadline.
pub struct Woken {
    pub fd: OwnedFd,
    pub slot: ConnSlot,
    pub client: Client,
    pub deadline: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Parking {
    /// Connections parked now.
    count: usize,
    /// No parked connection's keep alive runs out before this.
    next_due: Option<Instant>,
    woken: Vec<Woken>,
    /// `net`'s task that serves woken connections, waiting for some.
    waiter: Option<Waker>,
}

impl Parking {
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Shard {
    /// Parks the connection of `client` (socket `fd`, keep alive running out at `deadline`):
    /// its task ends once this returns `Ok` with the session's slot, under which `net` watches
    /// the socket. Gives the connection's `slot` back when it must stay live.
    pub fn park(
        &self,
        client: &Client,
        fd: OwnedFd,
        slot: ConnSlot,
        deadline: Option<Instant>,
    ) -> Result<u32, ConnSlot> {
        if !client.can_park() || self.is_stopping() {
            return Err(slot);
        }
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(key) = state.sessions.key_of(&client.client_id) else {
            return Err(slot);
        };
        let Some(entry) = state.sessions.by_key_mut(key) else {
            return Err(slot);
        };
        if !matches!(&entry.conn, Some(c) if c.id == client.conn.id) || entry.holds.is_holding() {
            return Err(slot);
        }
        let (max_packet_size, alias_max) = client.conn.client_limits();
        let parked = Parked {
            fd,
            slot,
            deadline,
            keep_alive: client.keep_alive,
            problem_information: client.problem_information,
            max_packet_size,
            alias_max,
        };
        entry.conn = None;
        state.conns.remove(&client.conn.id);
        // What is in flight to it waits for acknowledgements that may take long: copy it out
        // of the read buffers it was read into (as for an offline session).
        entry.session.detach_inflight();
        if let Some(d) = parked.deadline {
            let due = &mut state.parking.next_due;
            *due = Some(due.map_or(d, |t| t.min(d)));
        }
        entry.parked = Some(Box::new(parked));
        state.parking.count += 1;
        Ok(key)
    }

    /// Wakes the parked connection of the session in slot `key` (its socket became readable);
    /// nothing if it is not parked (any more).
    pub fn wake_key(&self, key: u32) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if let Some(entry) = state.sessions.by_key_mut(key) {
            self.unpark(entry, &mut state.parking, &mut state.conns);
        }
    }

    /// Woken connections for `net` to serve, once there are any.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<Vec<Woken>> {
        let mut state = self.state.borrow_mut();
        if state.parking.woken.is_empty() {
            state.parking.waiter = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(std::mem::take(&mut state.parking.woken))
    }

    /// Wakes the parked connections whose keep alive ran out by `now` (every tick; a scan only
    /// when one is due).
    pub(super) fn wake_due(&self, now: Instant) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.parking.next_due.is_none_or(|t| t > now) {
            return;
        }
        let mut next = None;
        for entry in state.sessions.values_mut() {
            let Some(d) = entry.parked.as_ref().and_then(|p| p.deadline) else {
                continue;
            };
            if d <= now {
                self.unpark(entry, &mut state.parking, &mut state.conns);
            } else {
                next = Some(next.map_or(d, |t: Instant| t.min(d)));
            }
        }
        state.parking.next_due = next;
    }

    /// Wakes every parked connection (shutdown).
    pub(super) fn wake_all(&self) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        for entry in state.sessions.values_mut() {
            self.unpark(entry, &mut state.parking, &mut state.conns);
        }
    }

    /// If `entry`'s connection is parked, wakes it: gives it a fresh outbox (the entry's, from
    /// now on) and queues it for `net`.
    pub(super) fn unpark(
        &self,
        entry: &mut Entry,
        parking: &mut Parking,
        conns: &mut HashMap<ConnId, Rc<Outbox>>,
    ) {
        let Some(p) = entry.parked.take() else {
            return;
        };
        let Parked {
            fd,
            slot,
            deadline,
            keep_alive,
            problem_information,
            max_packet_size,
            alias_max,
        } = *p;
        let version = entry.session.version;
        let conn = self.new_outbox(version, max_packet_size, alias_max);
        conns.insert(conn.id, conn.clone());
        entry.conn = Some(conn.clone());
        parking.count -= 1;
        parking.woken.push(Woken {
            fd,
            slot,
            deadline,
            client: Client {
                client_id: entry.session.client_id.clone(),
                version,
                conn,
                keep_alive,
                aliases: Vec::new(),
                problem_information,
                auth_method: None,
                reauth: None,
                username: entry.username.clone(),
            },
        });
        if let Some(w) = parking.waiter.take() {
            w.wake();
        }
    }
}
