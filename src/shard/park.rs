//! Parked connections (home shard only): a connection that has been silent for
//! COREMQ_PARK_IDLE_AFTER gives up its task, outbox and timers, and the shard keeps only what it
//! needs to bring it back (`Parked`, in the session's entry) while `net` watches the socket in
//! the shard's idle watcher. Most connections of a large fleet are idle at any moment, so this
//! is what an idle connection costs (see the README's memory figures).
//!
//! A parked connection is still connected as far as MQTT is concerned: deliveries, takeover,
//! keep alive and shutdown treat it as online. Whatever needs it live *wakes* it: a fresh outbox
//! is made at once (so a delivery can be queued in the same step) and `net` is handed the socket
//! and a `Client` to start the connection's task again (`poll_arrivals`). The triggers are bytes
//! on the socket (`wake_key`), a delivery or a takeover (`unpark`), the keep alive running out
//! (`wake_due`; the woken task then ends the connection the usual way) and shutdown (`wake_all`).
//!
//! Only a connection with no state outside the session may park: nothing buffered or queued,
//! no topic aliases in either direction, no enhanced authentication, holding no publisher back.
//!
//! The same queue brings `net` the connections other shards hand over (`Arrival::Handoff`).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::clients::{Arrival, Entry, Parked, Parking, Woken};
use super::{Client, ConnId, Outbox, Shard};
use crate::gate::ConnSlot;
use crate::mesh::Carried;
use crate::protocol::wire::packet_type;

impl Shard {
    /// Parks the connection of `client` (socket `fd` and the stream's `carried` state, keep
    /// alive running out at `deadline`): its task ends once this returns `Ok` with the session's
    /// slot, under which `net` watches the socket. Gives the connection's `slot` and `carried`
    /// back when it must stay live.
    pub fn park(
        &self,
        client: &Client,
        fd: OwnedFd,
        carried: Option<Carried>,
        slot: ConnSlot,
        deadline: Option<Instant>,
    ) -> Result<u32, (ConnSlot, Option<Carried>)> {
        let refused = |slot, carried| Err((slot, carried));
        if !client.can_park() || self.is_stopping() {
            return refused(slot, carried);
        }
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        let Some(key) = clients.sessions.key_of(&client.client_id) else {
            return refused(slot, carried);
        };
        let Some(entry) = clients.sessions.by_key_mut(key) else {
            return refused(slot, carried);
        };
        if !entry.is_served_by(client.conn.id) || entry.holds.is_holding() {
            return refused(slot, carried);
        }
        entry.conn = None;
        clients.conns.remove(&client.conn.id);
        // What is in flight to it waits for acknowledgements that may take long: copy it out
        // of the read buffers it was read into (as for an offline session).
        entry.session.detach_inflight();
        if let Some(d) = deadline {
            let due = &mut clients.parking.next_due;
            *due = Some(due.map_or(d, |t| t.min(d)));
        }
        entry.parked = Some(Box::new(Parked {
            fd,
            carried,
            slot,
            deadline,
            terms: client.conn.terms(),
        }));
        clients.parking.count += 1;
        Ok(key)
    }

    /// Wakes the parked connection of the session in slot `key` (its socket became readable);
    /// nothing if it is not parked (any more).
    pub fn wake_key(&self, key: u32) {
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        if let Some(entry) = clients.sessions.by_key_mut(key) {
            self.unpark(entry, &mut clients.parking, &mut clients.conns);
        }
    }

    /// The socket of the parked connection in slot `key` became readable: `answer` (`net`'s)
    /// may answer a lone PINGREQ on it in place. When it did, the connection stays parked with
    /// its keep alive renewed, so a fleet of idle clients that ping costs no wake-ups; false when
    /// the connection must wake (anything else arrived, it is not parked, or its stream keeps
    /// state beside the socket: TLS, WebSocket).
    pub fn ping_parked(
        &self,
        key: u32,
        now: Instant,
        answer: impl FnOnce(&OwnedFd) -> bool,
    ) -> bool {
        let mut clients = self.clients.borrow_mut();
        let Some(entry) = clients.sessions.by_key_mut(key) else {
            return false;
        };
        let Some(p) = entry.parked.as_deref_mut() else {
            return false;
        };
        if p.carried.is_some() || !answer(&p.fd) {
            return false;
        }
        // [MQTT-3.1.2-24] a packet arrived: 1.5 × the keep alive from now.
        if p.terms.keep_alive > 0 {
            let keep_alive = Duration::from_millis(u64::from(p.terms.keep_alive) * 1500);
            p.deadline = Some(now + keep_alive);
        }
        let c = self.counters();
        c.packet_in(packet_type::PINGREQ);
        c.bytes_in(2);
        c.packet_out(packet_type::PINGRESP);
        c.bytes_out(2);
        true
    }

    /// Connections for `net` to serve (woken or handed over), once there are any.
    pub fn poll_arrivals(&self, cx: &mut Context<'_>) -> Poll<Vec<Arrival>> {
        let mut clients = self.clients.borrow_mut();
        let parking = &mut clients.parking;
        if parking.arrivals.is_empty() {
            parking.waiter = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(std::mem::take(&mut parking.arrivals))
    }

    /// Wakes the parked connections whose keep alive ran out by `now` (every tick; a scan only
    /// when one is due).
    pub(super) fn wake_due(&self, now: Instant) {
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        if clients.parking.next_due.is_none_or(|t| t > now) {
            return;
        }
        let mut next = None;
        for entry in clients.sessions.values_mut() {
            let Some(d) = entry.parked.as_ref().and_then(|p| p.deadline) else {
                continue;
            };
            if d <= now {
                self.unpark(entry, &mut clients.parking, &mut clients.conns);
            } else {
                next = Some(next.map_or(d, |t: Instant| t.min(d)));
            }
        }
        clients.parking.next_due = next;
    }

    /// Wakes every parked connection (shutdown).
    pub(super) fn wake_all(&self) {
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        for entry in clients.sessions.values_mut() {
            self.unpark(entry, &mut clients.parking, &mut clients.conns);
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
            carried,
            slot,
            deadline,
            terms,
        } = *p;
        let conn = self.new_outbox(terms);
        conns.insert(conn.id, conn.clone());
        entry.conn = Some(conn.clone());
        parking.count -= 1;
        parking.arrive(Arrival::Woken(Woken {
            fd,
            carried,
            slot,
            deadline,
            client: Client::new(entry.session.client_id.clone(), conn, None),
        }));
    }
}
