//! A connection's outbound side as the shard sees it: packets are encoded into one buffer as they
//! are produced (by this connection's own packets or by deliveries from any publisher), and the
//! connection's task (in `net`) writes the whole buffer with one `send` when it next runs —
//! once per tick, however many packets arrived meanwhile. A slow reader only makes its own buffer
//! grow; nobody waits for it.
//!
//! Slow readers are told apart by time as well as bytes (`is_congested`): a client whose socket
//! took bytes within COREMQ_SLOW_READER_TIMEOUT is keeping up, however far behind a pause (a
//! garbage collection, a scheduling hiccup) left it, and its buffer may grow up to
//! COREMQ_MAX_OUTBOUND_BUFFER; one whose socket has taken nothing for that long is a slow reader
//! whatever its buffer holds. Worked example, timeout 1 s, cap 8 MiB, 100 MB/s of QoS 0: a
//! subscriber that pauses for 20 ms falls 2 MB behind and gets all of it; one that never reads is
//! a slow reader after 1 s (its QoS 0 messages dropped and counted) and never holds more than
//! 8 MiB.
//!
//! Lives on the shard that owns the connection; shared by `Rc` between the shard state and the
//! connection's task.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::message::Outgoing;
use crate::metrics::Counters;
use crate::notify::Notify;
use crate::protocol::{Packet, ProtocolVersion, TopicName};

/// Identifies one connection on one shard (never reused while the process runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// What a connection agreed at CONNECT, kept while it is live (in its outbox) or parked (in
/// its session's entry), so that a woken connection goes on under the same terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub version: ProtocolVersion,
    /// Effective keep alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Request Problem Information: reason strings may go on acknowledgements [MQTT-3.1.2-29].
    pub problem_information: bool,
    /// The client's Maximum Packet Size (MQTT 5; `u32::MAX` otherwise): larger packets are not
    /// sent to it.
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (MQTT 5; 0 otherwise).
    pub alias_max: u16,
}

pub struct Outbox {
    pub id: ConnId,
    terms: Terms,
    buf: RefCell<BytesMut>,
    /// Outbound topic aliases [MQTT-3.3.2-10]: topic → alias, for up to the client's Topic Alias
    /// Maximum topics, given to the first topics sent (a hot topic is sent again and again, so it
    /// is almost always among them). Aliases live as long as the connection.
    aliases: RefCell<HashMap<Bytes, NonZeroU16>>,
    ready: Notify,
    closing: Cell<bool>,
    /// The socket failed while writing: the connection ended abnormally.
    failed: Cell<bool>,
    /// Bytes waiting (queued here or taken by the writer and not yet written) beyond which the
    /// client counts as congested whatever its pace (COREMQ_MAX_OUTBOUND_BUFFER).
    max_backlog: Cell<usize>,
    /// How long the socket may take nothing before the client is a slow reader
    /// (COREMQ_SLOW_READER_TIMEOUT).
    slow_after: Cell<Duration>,
    /// Since when the socket has been taking nothing (a write would block), if it is so now.
    stalled_since: Cell<Option<Instant>>,
    /// Bytes the writer took (`take_into`) and has not written yet.
    in_writer: Cell<usize>,
    /// A delivery was held back (queued or dropped) because the buffer was full: when it
    /// drains, the session's queue must be offered again.
    held_back: Cell<bool>,
    /// The shard's counters (packets and bytes sent, message latency).
    counters: Rc<Counters>,
    /// When the oldest message queued here entered the broker, and how many are queued.
    queued: Cell<Option<(Instant, u64)>>,
    /// The same for what the writer took and has not finished writing.
    writing: Cell<Option<(Instant, u64)>>,
}

impl Outbox {
    pub fn new(id: ConnId, terms: Terms, counters: Rc<Counters>) -> Self {
        Self {
            id,
            terms,
            buf: RefCell::new(BytesMut::new()),
            aliases: RefCell::new(HashMap::new()),
            ready: Notify::new(),
            closing: Cell::new(false),
            failed: Cell::new(false),
            max_backlog: Cell::new(usize::MAX),
            slow_after: Cell::new(Duration::MAX),
            stalled_since: Cell::new(None),
            in_writer: Cell::new(0),
            held_back: Cell::new(false),
            counters,
            queued: Cell::new(None),
            writing: Cell::new(None),
        }
    }

    /// Encodes `packet` for this connection. Returns false when it was not queued: the
    /// connection is closing, or the packet exceeds the client's Maximum Packet Size
    /// [MQTT-3.1.2-24] even without the Reason String and User Properties that the server may
    /// leave out to fit it ([MQTT-3.4.2-2] and its siblings, see `Packet::strip_diagnostics`).
    pub fn send(&self, packet: &Packet) -> bool {
        if self.closing.get() {
            return false;
        }
        let (version, max) = (self.terms.version, self.terms.max_packet_size);
        if max != u32::MAX && packet.encoded_len(version) > max as usize {
            let mut bare = packet.clone();
            if bare.strip_diagnostics() && bare.encoded_len(version) <= max as usize {
                return self.encode(&bare);
            }
            self.counters.too_large();
            return false;
        }
        self.encode(packet)
    }

    fn encode(&self, packet: &Packet) -> bool {
        let ok = packet
            .encode(self.terms.version, &mut self.buf.borrow_mut())
            .is_ok();
        if ok {
            self.counters.packet_out(packet.packet_type());
        }
        self.ready.notify();
        ok
    }

    /// Sends a PUBLISH, replacing its topic by an alias when the client allows aliases: the
    /// first send of a topic carries topic and alias, later ones only the alias. Counted, and its
    /// time inside the broker measured when it is written.
    pub fn send_publish(&self, out: Outgoing) -> bool {
        let Outgoing {
            mut publish,
            received,
        } = out;
        let qos = publish.qos as u8;
        let mut assigned = None;
        let alias_max = self.terms.alias_max;
        if alias_max > 0 && self.terms.version.is_v5() {
            let mut aliases = self.aliases.borrow_mut();
            let key = publish.topic.as_bytes();
            if let Some(&alias) = aliases.get(key) {
                publish.topic = TopicName::default();
                publish.properties.topic_alias = Some(alias);
            } else if aliases.len() < alias_max as usize {
                if let Some(alias) = NonZeroU16::new(aliases.len() as u16 + 1) {
                    // A copy: the key lives as long as the connection and must not pin the
                    // publisher's read buffer.
                    let key = Bytes::copy_from_slice(key);
                    aliases.insert(key.clone(), alias);
                    publish.properties.topic_alias = Some(alias);
                    assigned = Some(key);
                }
            }
        }
        let sent = self.send(&Packet::Publish(publish));
        if let (false, Some(key)) = (sent, assigned) {
            // The client never saw this alias: forget it so the next send names the topic.
            self.aliases.borrow_mut().remove(&key);
        }
        if sent {
            self.counters.publish_out(qos);
            let batch = match self.queued.get() {
                Some((oldest, n)) => (oldest.min(received), n + 1),
                None => (received, 1),
            };
            self.queued.set(Some(batch));
        }
        sent
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

    /// Sets the slow-reader limits: COREMQ_MAX_OUTBOUND_BUFFER and COREMQ_SLOW_READER_TIMEOUT.
    pub fn set_slow_reader_limits(&self, max_backlog: usize, slow_after: Duration) {
        self.max_backlog.set(max_backlog);
        self.slow_after.set(slow_after);
    }

    /// Whether deliveries must be held back at `now` (see the module docs): the socket has taken
    /// nothing for COREMQ_SLOW_READER_TIMEOUT (a slow reader), or more than
    /// COREMQ_MAX_OUTBOUND_BUFFER waits to be written.
    pub fn is_congested(&self, now: Instant) -> bool {
        let slow = self
            .stalled_since
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) >= self.slow_after.get());
        slow || self.backlog() > self.max_backlog.get()
    }

    /// A delivery was held back (queued or dropped) because the client is congested: the writer
    /// offers the session's queue again once the buffer drains.
    pub fn note_held_back(&self) {
        self.held_back.set(true);
    }

    /// The writer found the socket full: from now on (unless it already was) the client is
    /// taking nothing.
    pub fn note_stalled(&self) {
        if self.stalled_since.get().is_none() {
            self.stalled_since.set(Some(Instant::now()));
        }
    }

    /// The stream sent everything it held (TLS records, WebSocket frames): the client is
    /// reading.
    pub fn note_flushed(&self) {
        self.stalled_since.set(None);
    }

    /// The socket took `written` bytes; `left` of what the writer took remain to be written.
    /// When none remain, the messages of the batch were written: their latency is counted.
    pub fn note_written(&self, written: usize, left: usize) {
        self.stalled_since.set(None);
        self.in_writer.set(left);
        self.counters.bytes_out(written);
        if left == 0 {
            if let Some((oldest, n)) = self.writing.take() {
                self.counters.written(oldest, n, Instant::now());
            }
        }
    }

    /// Bytes waiting to be written: queued here, or taken by the writer and not yet written.
    pub fn backlog(&self) -> usize {
        self.pending() + self.in_writer.get()
    }

    /// Whether deliveries were held back since the last call (and clears it).
    pub fn take_held_back(&self) -> bool {
        self.held_back.replace(false)
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

    /// Whether there is something to write or a close was requested since the last `Ready`;
    /// `Pending` registers the task to be woken when there is.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.ready.poll_wait(cx)
    }

    /// Registers the task to be woken by the next packet or close, without consuming a pending
    /// notification (for a writer waiting on its socket, which must still notice a close).
    pub fn watch(&self, cx: &mut Context<'_>) {
        self.ready.register(cx);
    }

    /// Swaps the queued bytes into `spare` (which must be empty) so the writer can write them
    /// while new packets queue up behind.
    pub fn take_into(&self, spare: &mut BytesMut) {
        std::mem::swap(&mut *self.buf.borrow_mut(), spare);
        self.in_writer.set(spare.len());
        self.writing.set(self.queued.take());
    }

    /// Frees the queue's buffer if nothing is queued (the connection went idle: it keeps no
    /// write buffer until it has something to send again).
    pub fn shed(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() && buf.capacity() > 0 {
            *buf = BytesMut::new();
        }
    }

    /// Nothing to write, no close asked for, nothing held back, no topic alias given out: the
    /// connection could start over with a fresh outbox and the client would not notice.
    pub fn is_quiet(&self) -> bool {
        self.pending() == 0
            && !self.closing.get()
            && !self.held_back.get()
            && self.aliases.borrow().is_empty()
    }

    /// What the connection agreed at CONNECT.
    pub fn terms(&self) -> Terms {
        self.terms
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            version: ProtocolVersion::V3_1_1,
            keep_alive: 0,
            problem_information: true,
            max_packet_size: u32::MAX,
            alias_max: 0,
        }
    }

    #[test]
    fn an_idle_outbox_sheds_its_buffer_and_a_busy_one_keeps_it() {
        let out = Outbox::new(ConnId(1), terms(), Rc::default());
        assert!(out.send(&Packet::PingResp));
        // The writer swaps its (empty, allocated) spare in and takes the queued bytes.
        let mut spare = BytesMut::with_capacity(4096);
        out.take_into(&mut spare);
        assert_eq!(&spare[..], [0xD0, 0x00]);
        assert!(out.buf.borrow().capacity() >= 4096);
        // Something queued: shed keeps it.
        assert!(out.send(&Packet::PingResp));
        out.shed();
        assert_eq!(out.pending(), 2);
        let mut spare = BytesMut::with_capacity(4096);
        out.take_into(&mut spare);
        // Nothing queued: shed frees the buffer.
        out.shed();
        assert_eq!(out.buf.borrow().capacity(), 0);
        assert!(
            out.send(&Packet::PingResp),
            "and it still queues afterwards"
        );
        assert_eq!(out.pending(), 2);
    }

    #[test]
    fn a_client_is_slow_after_its_socket_took_nothing_for_the_timeout_or_past_the_cap() {
        let out = Outbox::new(ConnId(1), terms(), Rc::default());
        out.set_slow_reader_limits(64, Duration::from_secs(1));
        let now = Instant::now();
        // Little waiting, socket taking bytes: keeping up.
        assert!(out.send(&Packet::PingResp));
        assert!(!out.is_congested(now));
        // The socket is full: still keeping up until the timeout has passed.
        out.note_stalled();
        assert!(!out.is_congested(Instant::now()));
        assert!(out.is_congested(Instant::now() + Duration::from_secs(2)));
        // It took bytes again: the clock starts over.
        out.note_written(2, 0);
        assert!(!out.is_congested(Instant::now() + Duration::from_secs(2)));
        // Past COREMQ_MAX_OUTBOUND_BUFFER, counting what the writer took: congested at once.
        let mut spare = BytesMut::new();
        for _ in 0..20 {
            out.send(&Packet::PingResp);
        }
        out.take_into(&mut spare);
        assert_eq!((out.pending(), out.backlog()), (0, 42));
        assert!(!out.is_congested(now));
        for _ in 0..12 {
            out.send(&Packet::PingResp);
        }
        assert_eq!(out.backlog(), 66);
        assert!(out.is_congested(now));
    }
}
