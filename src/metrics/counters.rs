//! One shard's counters: plain `Cell`s the shard's code increments as it works (never an atomic,
//! never a lock; about one add per packet), read only when a scrape asks for a snapshot. Shared by
//! `Rc` between the shard and its connections' outboxes. Lives on its shard only.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histogram tells apart, in microseconds (longer ones count as this).
const LATENCY_MAX_US: u64 = 60_000_000;

/// The kinds of listener (COREMQ_LISTEN, _TLS_LISTEN, _WS_LISTEN, _WSS_LISTEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Mqtt = 0,
    Tls = 1,
    Ws = 2,
    Wss = 3,
}

impl Listener {
    pub const ALL: [Listener; 4] = [Listener::Mqtt, Listener::Tls, Listener::Ws, Listener::Wss];

    /// The label value in metrics and the name in logs.
    pub fn name(self) -> &'static str {
        ["mqtt", "tls", "ws", "wss"][self as usize]
    }
}

pub struct Counters {
    /// Packets read from clients and sent to them, by packet type (the fixed header's high nibble).
    packets_in: [Cell<u64>; 16],
    packets_out: [Cell<u64>; 16],
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// PUBLISH packets from clients and to clients, by QoS.
    publish_in: [Cell<u64>; 3],
    publish_out: [Cell<u64>; 3],
    /// Packets not sent because they exceeded the client's Maximum Packet Size.
    too_large: Cell<u64>,
    /// PUBLISH packets the ACL kept from being routed, and deliveries it kept from a subscriber.
    denied_publish: Cell<u64>,
    denied_delivery: Cell<u64>,
    /// Content filter evaluations: the message passed / did not pass the subscription's filter.
    filter_passed: Cell<u64>,
    filter_failed: Cell<u64>,
    /// Successful logins (CONNECTs accepted).
    logins: Cell<u64>,
    /// Connections accepted per listener (`Listener` order), and those whose layers (TLS
    /// handshake, WebSocket upgrade) failed or timed out.
    accepted: [Cell<u64>; 4],
    layer_failed: [Cell<u64>; 4],
    /// Time the shard's executor spent running (not sleeping).
    busy: Cell<Duration>,
    /// Time inside the broker of the messages written to subscribers: microseconds from reading
    /// the PUBLISH to writing the batch that carried it to the subscriber's socket.
    /// (`None` only if the histogram could not be made, which valid bounds rule out.)
    latency: RefCell<Option<Histogram<u64>>>,
    latency_sum_us: Cell<u64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            packets_in: Default::default(),
            packets_out: Default::default(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            publish_in: Default::default(),
            publish_out: Default::default(),
            too_large: Cell::new(0),
            denied_publish: Cell::new(0),
            denied_delivery: Cell::new(0),
            filter_passed: Cell::new(0),
            filter_failed: Cell::new(0),
            logins: Cell::new(0),
            accepted: Default::default(),
            layer_failed: Default::default(),
            busy: Cell::new(Duration::ZERO),
            latency: RefCell::new(latency_histogram()),
            latency_sum_us: Cell::new(0),
        }
    }
}

/// An empty latency histogram: 1 µs to 60 s, 2 significant figures (about 50 KiB).
pub fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 2).ok()
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl Counters {
    pub fn packet_in(&self, packet_type: u8) {
        add(&self.packets_in[usize::from(packet_type & 15)], 1);
    }

    pub fn packet_out(&self, packet_type: u8) {
        add(&self.packets_out[usize::from(packet_type & 15)], 1);
    }

    pub fn bytes_in(&self, n: usize) {
        add(&self.bytes_in, n as u64);
    }

    pub fn bytes_out(&self, n: usize) {
        add(&self.bytes_out, n as u64);
    }

    pub fn publish_in(&self, qos: u8) {
        add(&self.publish_in[usize::from(qos.min(2))], 1);
    }

    pub fn publish_out(&self, qos: u8) {
        add(&self.publish_out[usize::from(qos.min(2))], 1);
    }

    pub fn too_large(&self) {
        add(&self.too_large, 1);
    }

    pub fn denied_publish(&self) {
        add(&self.denied_publish, 1);
    }

    pub fn denied_delivery(&self) {
        add(&self.denied_delivery, 1);
    }

    /// One content filter evaluated against a message.
    pub fn filtered(&self, passed: bool) {
        add(
            if passed {
                &self.filter_passed
            } else {
                &self.filter_failed
            },
            1,
        );
    }

    pub fn login(&self) {
        add(&self.logins, 1);
    }

    /// A connection accepted on `listener`.
    pub fn accepted(&self, listener: Listener) {
        add(&self.accepted[listener as usize], 1);
    }

    /// A connection whose TLS handshake or WebSocket upgrade on `listener` failed.
    pub fn layer_failed(&self, listener: Listener) {
        add(&self.layer_failed[listener as usize], 1);
    }

    /// The executor's running time so far (glommio's `total_runtime`, which excludes sleeping
    /// and spinning).
    pub fn set_busy(&self, total: Duration) {
        self.busy.set(total);
    }

    /// `count` messages that entered the broker no earlier than `oldest` were written at `now`
    /// (a batch: each is counted at the batch's oldest, an upper bound).
    pub fn written(&self, oldest: Instant, count: u64, now: Instant) {
        let us = now.saturating_duration_since(oldest).as_micros() as u64;
        let us = us.clamp(1, LATENCY_MAX_US);
        if let Some(h) = self.latency.borrow_mut().as_mut() {
            h.saturating_record_n(us, count);
        }
        add(&self.latency_sum_us, us.saturating_mul(count));
    }

    /// Copies the counters into `s`.
    pub fn copy_into(&self, s: &mut super::ShardSnapshot) {
        let get = |cells: &[Cell<u64>]| cells.iter().map(Cell::get).collect::<Vec<_>>();
        s.packets_in.copy_from_slice(&get(&self.packets_in));
        s.packets_out.copy_from_slice(&get(&self.packets_out));
        s.publish_in.copy_from_slice(&get(&self.publish_in));
        s.publish_out.copy_from_slice(&get(&self.publish_out));
        s.bytes_in = self.bytes_in.get();
        s.bytes_out = self.bytes_out.get();
        s.dropped.too_large = self.too_large.get();
        s.dropped.denied = self.denied_delivery.get();
        s.denied_publish = self.denied_publish.get();
        s.filter_passed = self.filter_passed.get();
        s.filter_failed = self.filter_failed.get();
        s.logins = self.logins.get();
        s.accepted.copy_from_slice(&get(&self.accepted));
        s.layer_failed.copy_from_slice(&get(&self.layer_failed));
        s.busy_seconds = self.busy.get().as_secs_f64();
        s.latency.clone_from(&self.latency.borrow());
        s.latency_sum_us = self.latency_sum_us.get();
    }
}
