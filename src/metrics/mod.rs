//! What the broker counts and how it is shown: per-shard plain counters (`counters`), shards
//! only increment; a scrape asks every shard for a `ShardSnapshot` and renders the merged
//! snapshots — the Prometheus text format (`exposition`), the Mosquitto-style `$SYS` topics
//! (`sys`) — and the HTTP endpoint serving `/metrics` and `/healthz` (`http`) runs on a thread of
//! its own, so a bad HTTP client never reaches a shard.

pub mod counters;
pub mod exposition;
pub mod http;
pub mod sys;

use hdrhistogram::Histogram;

pub use counters::{Counters, Listener};

/// Deliveries dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The session's queue was full (COREMQ_MAX_QUEUED_MESSAGES / _BYTES).
    pub queue_full: u64,
    /// QoS 0 to a slow reader or past COREMQ_MAX_OUTBOUND_BUFFER.
    pub slow_reader: u64,
    /// QoS 0 to an offline session (without COREMQ_QUEUE_QOS0).
    pub offline: u64,
    /// The Message Expiry Interval ran out.
    pub expired: u64,
    /// Larger than the client's Maximum Packet Size.
    pub too_large: u64,
    /// The ACL keeps the topic from the subscriber.
    pub denied: u64,
}

/// Connections and CONNECTs refused, by reason (since start).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// The ban list names the address, client id or user name.
    pub banned: u64,
    /// The address or user name is banned for failed logins.
    pub login_banned: u64,
    /// The client id connected too often (COREMQ_FLAPPING).
    pub flapping: u64,
    /// Wrong user name or password, or failed enhanced authentication.
    pub bad_credentials: u64,
    /// Anonymous while anonymous clients are not allowed.
    pub not_authorized: u64,
    /// COREMQ_MAX_CONNECTIONS reached.
    pub quota: u64,
    /// Closed at accept: COREMQ_MAX_CONNECTIONS_PER_ADDRESS.
    pub per_address: u64,
    /// Closed at accept: COREMQ_CONNECTION_RATE_PER_ADDRESS.
    pub connection_rate: u64,
    /// Closed at accept: COREMQ_MAX_CONNECTING.
    pub connecting: u64,
}

impl Refusals {
    /// Adds another shard's counts.
    pub fn add(&mut self, o: &Refusals) {
        self.banned += o.banned;
        self.login_banned += o.login_banned;
        self.flapping += o.flapping;
        self.bad_credentials += o.bad_credentials;
        self.not_authorized += o.not_authorized;
        self.quota += o.quota;
        self.per_address += o.per_address;
        self.connection_rate += o.connection_rate;
        self.connecting += o.connecting;
    }
}

/// Figures of the node as a whole rather than of a shard: its cluster link and its bridges.
#[derive(Debug, Default, Clone)]
pub struct NodeFigures {
    pub cluster: Option<ClusterFigures>,
    pub bridges: Vec<BridgeFigures>,
}

/// The cluster link (COREMQ_CLUSTER_NATS).
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterFigures {
    pub connected: bool,
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
    pub duplicates: u64,
    pub takeovers: u64,
}

/// One bridge (COREMQ_BRIDGE_FILE).
#[derive(Debug, Default, Clone)]
pub struct BridgeFigures {
    pub name: String,
    pub connected: bool,
    pub connections: u64,
    pub sent: u64,
    pub received: u64,
}

/// One shard's figures at one moment: plain data, sent from the shard's thread to whoever
/// renders them.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub connections_live: u64,
    pub connections_parked: u64,
    pub sessions_online: u64,
    pub sessions_offline: u64,
    pub subscriptions: u64,
    pub shared_groups: u64,
    /// Every shard holds a full replica of the retained messages.
    pub retained_messages: u64,
    pub retained_bytes: u64,
    pub queued_messages: u64,
    pub inflight_messages: u64,
    pub publishers_held: u64,
    pub packets_in: [u64; 16],
    pub packets_out: [u64; 16],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub publish_in: [u64; 3],
    pub publish_out: [u64; 3],
    pub dropped: Dropped,
    /// PUBLISH packets the ACL kept from being routed.
    pub denied_publish: u64,
    /// Content filter evaluations that passed and that did not.
    pub filter_passed: u64,
    pub filter_failed: u64,
    /// Payloads scanned as JSON for content filters.
    pub filter_scans: u64,
    pub refused: Refusals,
    pub logins: u64,
    /// Connections accepted per listener (`Listener` order), and those whose TLS handshake or
    /// WebSocket upgrade failed.
    pub accepted: [u64; 4],
    pub layer_failed: [u64; 4],
    /// Messages and batches this shard sent to each shard (by index; its own stays 0).
    pub mesh_messages: Vec<u64>,
    pub mesh_batches: Vec<u64>,
    pub busy_seconds: f64,
    pub latency: Option<Histogram<u64>>,
    pub latency_sum_us: u64,
}

/// Names of the packet types by number, as labels.
pub const PACKET_TYPES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];
