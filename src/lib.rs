//! coremq: a thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! # Architecture
//! One executor per CPU core, pinned. Each core — a *shard* — owns the connections the kernel hands
//! it (SO_REUSEPORT), the sessions whose client id hashes to it (their *home shard*), its part of the
//! subscription trie and its counters. Shards share nothing mutable: cross-core traffic (publishes,
//! subscription-interest updates, session hand-offs) travels as messages over the *mesh*, a full set
//! of single-producer single-consumer queues, batched per tick. Frames are parsed in place from the
//! bytes a connection read (into its shard's read arena); topic and payload are `bytes::Bytes`
//! slices of them, so one publish fans out to any number of subscribers, on any shard, without
//! copying the payload.
//!
//! # Glossary
//! - **shard**: one pinned core and everything it owns; state is `Rc`/`RefCell`, never locks.
//! - **home shard**: the shard that owns a client id's session, chosen by hashing the id.
//! - **mesh**: the cross-shard queues and the only code that knows the shard count.
//! - **session**: the MQTT state of one client id (subscriptions, inflight, queued messages).
//!
//! # Module map (floors: a module uses only the ones below it)
//! - [`runtime`]: starting and stopping the broker — host checks, one pinned executor per
//!   shard, the mesh, the listeners, reloads, shutdown, the metrics board where shards leave
//!   snapshots for the metrics endpoint and the `$SYS` topics, and each shard's log writer
//!   (`runtime::writer`, on the shard's blocking-pool thread).
//! - [`net`]: the only socket code — listeners, the CONNECT phase (carrying out `shard`'s
//!   admission steps), the connection task, the read arena and writer, the idle watcher of
//!   parked connections, and `net::stream`, the byte-stream seam: plain TCP, or `Layered` — TLS
//!   (`net::tls`, rustls' unbuffered API) and WebSocket framing (`net::ws`) — under the same
//!   connection code, their state travelling with the socket when a connection parks or moves.
//! - [`bridge`]: bridges to other brokers (COREMQ_BRIDGE_FILE, Mosquitto's syntax) — each an
//!   MQTT client of the remote broker and, in-process, of this one (`net::dial`), relaying
//!   messages and their acknowledgements between the two; runs on a shard, beside `net`.
//! - [`cluster`]: several nodes sharing one MQTT namespace through NATS (COREMQ_CLUSTER_NATS) —
//!   the NATS client on a link thread of its own, queues to and from the shards, the subject
//!   mapping of topics and filters, the registry of client ids and the retained messages in
//!   JetStream KV. The shard uses it through `cluster::ShardLink`.
//! - [`shard`]: everything one core owns, split by part: clients (sessions, connections,
//!   parking), login, packets, routing, content filters, retained store, shared groups, flow
//!   control, barriers, and `persist` (what it records in the store, and acknowledgements that
//!   wait for the disk).
//! - [`mesh`]: the only cross-core code — `ShardSet`, the home-shard hash, `post` (owner or
//!   local), batching, and the `Handler` each shard implements for inbound messages.
//! - [`session`]: one client's MQTT state, pure (time is a parameter): QoS windows, queues,
//!   will and expiry.
//! - [`auth`]: password file, ACL, ban list, SCRAM, and the enhanced-authentication hook; pure.
//! - [`guard`]: failed-login throttling and flapping detection, pure tables the shard keeps.
//! - [`topic`]: the subscription `Trie` and the retained `TopicIndex`; pure.
//! - [`filter`]: content and type filters — the expression language, its evaluation against a
//!   message, and the shard's JSON paths with the one-pass payload scan; pure (the shard compiles
//!   a subscription's expression and evaluates it after the trie match, `shard::filtering`).
//! - [`store`]: durable state (COREMQ_DATA_DIR) — the checksummed record format, the per-shard
//!   journal, replay into session images, and the data directory's epochs of per-shard logs.
//! - [`message`]: a routed application message and how one session receives it.
//! - [`protocol`]: the pure MQTT codec (bytes ↔ [`protocol::Packet`]); std + `bytes` only.
//! - [`metrics`]: a shard's plain counters, and the Prometheus text, `$SYS` topics and HTTP
//!   endpoint made from shard snapshots (the endpoint on threads of its own, outside the shards).
//! - [`config`] (every `COREMQ_*` flag, the only reader of the environment), [`gate`] (the
//!   connection count under COREMQ_MAX_CONNECTIONS), [`notify`] (a shard-local wake-up flag),
//!   [`mod@log`] (leveled logging to standard error). [`gate`] also holds the per-address
//!   connection counts and rates checked at accept.
//!
//! `tests/boundaries.rs` checks that these imports point down only.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod filter;
pub mod gate;
pub mod guard;
pub mod log;
pub mod mesh;
pub mod message;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod protocol;
pub mod runtime;
pub mod session;
pub mod shard;
pub mod store;
pub mod topic;

pub use config::Config;
pub use runtime::{Broker, StartError};
