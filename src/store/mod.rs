//! Durable state (COREMQ_DATA_DIR): what survives a restart or a crash — durable sessions (their
//! subscriptions, queued and in-flight messages, inbound QoS 2 ids, a will waiting for its delay)
//! and retained messages.
//!
//! Each shard appends records of what changed to its own log (`journal.rs` buffers them on the
//! shard; a writer task hands each batch to a blocking-pool thread that writes and fdatasyncs
//! it, so the event loop never waits for the disk, and one sync covers every record of the batch).
//! Acknowledgements that promise durability wait for the sync that covers their records.
//! Start-up replays the logs (`dir.rs`, `replay.rs`) and starts a fresh, compacted generation.
//!
//! - `record.rs`: the frame format (length, CRC-32, body) and the records.
//! - `replay.rs`: records → session images and retained messages, and back (snapshots).
//! - `dir.rs`: the directory's epochs, the per-shard log files, start-up recovery.
//! - `journal.rs`: a shard's unwritten records and how far its log is durable.
//!
//! Nothing here knows shards, sockets or glommio: the shard decides what to record
//! (`shard::persist`), the runtime runs the writer.

pub mod dir;
pub mod journal;
pub mod record;
pub mod replay;

pub use dir::{open, LogFile, Opened, Report, ShardStart};
pub use journal::Journal;
pub use record::{Clock, Record};
