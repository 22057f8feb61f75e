//! The connection gate: one count of admitted connections for the whole broker, checked against
//! COREMQ_MAX_CONNECTIONS. Shared by every shard's listener (an `Arc` and one atomic add per
//! connection, never per message); a `ConnSlot` is one admitted connection's place, freed when it
//! is dropped, and travels with the connection (a hand-off, a parked socket).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
