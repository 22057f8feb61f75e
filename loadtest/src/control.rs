//! What the coordinator and the workers say to each other, and the read-only run settings
//! they share. Crosses threads through crossbeam channels; nothing here is mutable shared state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use coremq::protocol::{MqttString, ProtocolVersion, QoS};
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use mio::Poll;

use crate::role::{Counters, Window};
use crate::scenario::ClientSpec;
use crate::tally::{PublisherOutcome, SeqTracker};

/// Coordinator → worker.
#[derive(Debug, Clone, Copy)]
pub enum Cmd {
    Start(Window),
    /// `retained`: the retained set is in place; deferred subscribers subscribe now.
    SubscribeNow,
    /// Disconnect everyone and send the final report.
    Finish,
}

/// Worker → coordinator.
pub enum Event {
    /// Set-up finished: every client connected (and subscribed) or failed.
    Ready {
        worker: usize,
        connected: u64,
        failed: u64,
    },
    /// Cumulative counters plus the latencies recorded since the last progress event.
    Progress {
        worker: usize,
        counters: Counters,
        latency: Option<Box<Histogram<u64>>>,
        connect: Option<Box<Histogram<u64>>>,
    },
    /// Every publisher (and connect loop) of this worker stopped and was acknowledged.
    PublishingDone {
        worker: usize,
        publishers: Vec<(u32, PublisherOutcome)>,
        last_send_ns: u64,
        /// Whether every publisher (connect loop) stopped at its `--max-messages` share rather
        /// than at the window's end (rates then run to the last send); `None` when the worker
        /// has neither.
        capped: Option<bool>,
    },
    Done {
        worker: usize,
        report: Box<WorkerReport>,
    },
}

/// A worker's final figures; latency histograms hold only what no `Progress` carried yet.
pub struct WorkerReport {
    pub counters: Counters,
    /// ((subscriber, publisher), what that subscriber saw).
    pub trackers: Vec<((u32, u32), SeqTracker)>,
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub time_to_all_us: Vec<u64>,
    pub errors: Vec<String>,
    pub errors_suppressed: u64,
}

/// Run-wide settings every worker reads. Built once by the coordinator.
pub struct Config {
    pub addr: SocketAddr,
    /// Where subscribers and holders connect (`--sub-host`, `--sub-port`).
    pub sub_addr: SocketAddr,
    /// TLS and/or WebSocket (`--tls`, `--ws`), else plain TCP.
    pub layers: Option<crate::transport::Layers>,
    pub version: ProtocolVersion,
    pub qos: QoS,
    /// Persistent sessions (`--persistent`).
    pub persistent: bool,
    pub username: Option<MqttString>,
    pub password: Option<Bytes>,
    pub payload: Bytes,
    pub run: u32,
    /// Every timestamp is ns since this instant (one monotonic clock for all threads).
    pub epoch: Instant,
    pub inflight: u32,
    pub rate: Option<u64>,
    pub publishers: u32,
    pub drain_ns: u64,
    pub hard_deadline_ns: u64,
    pub streams: bool,
    /// `retained`: messages in the complete set.
    pub retained_total: Option<u64>,
}

impl Config {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// What the coordinator hands a worker thread.
pub struct Setup {
    pub index: usize,
    pub core: Option<core_affinity::CoreId>,
    pub poll: Poll,
    pub clients: Vec<ClientSpec>,
    /// `connect`: loops and cap of connects.
    pub storm: (u32, Option<u64>),
    pub config: Arc<Config>,
    pub cmds: Receiver<Cmd>,
    pub events: Sender<Event>,
}
