//! The only socket code: each shard's SO_REUSEPORT listener and, per connection, one task that
//! reads frames (parsed in place from the shard's read arena, `io`) and, whenever reading has to
//! wait, writes everything the shard queued in the connection's `Outbox` with one `send`.
//!
//! A connection is served on its client id's *home shard*: the shard that accepted it reads the
//! CONNECT, and if the id hashes elsewhere it hands the socket (a duplicated fd), the CONNECT and
//! any bytes read after it to the home shard through the mesh. Why move the connection rather than
//! the session: every session operation — takeover [MQTT-3.1.4-2], resumption, QoS flows, queued
//! deliveries — then happens on one shard with no cross-shard session protocol, and the cost is
//! one fd hand-off per connection, paid once at CONNECT.

mod connection;
mod io;
pub mod park;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use glommio::net::TcpListener;

pub use connection::adopt;

use crate::shard::Shard;

/// Counts the connections of all shards against COREMQ_MAX_CONNECTIONS: one atomic add per
/// connection (never per message), shared by every shard's listener.
#[derive(Clone)]
pub struct ConnectionGate {
    active: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; dropping it frees the place. Travels with a hand-off.
#[derive(Debug)]
pub struct ConnSlot(Arc<AtomicUsize>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionGate {
    pub fn new(max: usize) -> Self {
        Self {
            active: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A place for one more connection, or `None` when the broker is full.
    pub fn admit(&self) -> Option<ConnSlot> {
        let before = self.active.fetch_add(1, Ordering::Relaxed);
        let slot = ConnSlot(self.active.clone());
        (before < self.max).then_some(slot)
    }

    /// Connections currently admitted.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Accepts connections until the task is dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, gate: ConnectionGate) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_stopping() {
                    continue;
                }
                // Over the limit the connection is still read, to answer its CONNECT with
                // "quota exceeded" instead of a bare close.
                let slot = gate.admit();
                glommio::spawn_local(connection::serve(shard.clone(), stream, slot)).detach();
            }
            Err(e) => {
                crate::log!(Warn, "shard {}: accept failed: {e}", shard.id().0);
                // Back off briefly (e.g. out of file descriptors) instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
