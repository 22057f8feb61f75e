//! A connection's outbound side as the shard sees it: packets are encoded into one buffer as they
//! are produced (by this connection's own packets or by deliveries from any publisher), and the
//! connection's writer task (in `net`) writes the whole buffer with one `write` when it next runs
//! — once per tick, however many packets arrived meanwhile. A slow reader only makes its own buffer
//! grow; nobody waits for it.
//!
//! Lives on the shard that owns the connection; shared by `Rc` between the shard state and the
//! connection's tasks.

use std::cell::{Cell, RefCell};

use bytes::BytesMut;

use super::notify::Notify;
use crate::protocol::{Packet, ProtocolVersion};

/// Identifies one connection on one shard (never reused while the process runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

pub struct Outbox {
    pub id: ConnId,
    pub version: ProtocolVersion,
    /// The client's Maximum Packet Size (MQTT 5); larger packets are not sent to it.
    max_packet_size: u32,
    buf: RefCell<BytesMut>,
    ready: Notify,
    closing: Cell<bool>,
    /// The socket failed while writing: the connection ended abnormally.
    failed: Cell<bool>,
    dropped_too_large: Cell<u64>,
}

impl Outbox {
    pub fn new(id: ConnId, version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            id,
            version,
            max_packet_size,
            buf: RefCell::new(BytesMut::with_capacity(4096)),
            ready: Notify::new(),
            closing: Cell::new(false),
            failed: Cell::new(false),
            dropped_too_large: Cell::new(0),
        }
    }

    /// Encodes `packet` for this connection. Returns false when it was not queued: the
    /// connection is closing, or the packet exceeds the client's Maximum Packet Size
    /// [MQTT-3.1.2-24].
    pub fn send(&self, packet: &Packet) -> bool {
        if self.closing.get() {
            return false;
        }
        if self.max_packet_size != u32::MAX
            && packet.encoded_len(self.version) > self.max_packet_size as usize
        {
            self.dropped_too_large.set(self.dropped_too_large.get() + 1);
            return false;
        }
        let ok = packet
            .encode(self.version, &mut self.buf.borrow_mut())
            .is_ok();
        self.ready.notify();
        ok
    }

    /// Asks the writer to flush what is queued and then close the connection. Packets sent after
    /// this are discarded.
    pub fn close(&self) {
        self.closing.set(true);
        self.ready.notify();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// The writer could not write: close, and remember the end was abnormal.
    pub fn fail(&self) {
        self.failed.set(true);
        self.close();
    }

    /// Whether the connection ended without a close anyone asked for.
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    /// Waits until there is something to write or a close was requested.
    pub async fn ready(&self) {
        self.ready.wait().await
    }

    /// Swaps the queued bytes into `spare` (which must be empty) so the writer can write them
    /// while new packets queue up behind.
    pub fn take_into(&self, spare: &mut BytesMut) {
        std::mem::swap(&mut *self.buf.borrow_mut(), spare);
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Packets not sent because they exceeded the client's Maximum Packet Size.
    pub fn dropped_too_large(&self) -> u64 {
        self.dropped_too_large.get()
    }
}
