//! A shard's journal: the records it appended and not yet handed to its writer, and how far the
//! log is known durable. Positions count bytes ever appended, so "is what I appended so far on
//! disk?" is `synced() >= position`, and one sync answers it for every record before it (group
//! commit). Shard-local (`Cell`-free, inside the shard's `RefCell`); the writer task takes
//! batches (`take`) and reports back (`written`).

use super::record::{encode, Record};
use crate::notify::Notify;

#[derive(Default)]
pub struct Journal {
    /// Encoded frames waiting for the writer.
    pending: Vec<u8>,
    /// Bytes ever appended.
    appended: u64,
    /// Bytes known on disk (synced, or written with COREMQ_FSYNC=never).
    synced: u64,
    /// The last write or sync failed (disk full, I/O error) and has not succeeded since.
    failed: bool,
    /// Set when records wait: the writer task sleeps on it.
    wake: Notify,
}

impl Journal {
    pub fn append(&mut self, record: &Record) {
        let before = self.pending.len();
        encode(record, &mut self.pending);
        self.appended += (self.pending.len() - before) as u64;
        self.wake.notify();
    }

    /// Appends frames encoded already (a session's image from `replay::snapshot_session`).
    pub fn append_encoded(&mut self, frames: &[u8]) {
        self.pending.extend_from_slice(frames);
        self.appended += frames.len() as u64;
        self.wake.notify();
    }

    /// The position after everything appended so far.
    pub fn position(&self) -> u64 {
        self.appended
    }

    /// The position up to which records are known on disk.
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Whether everything appended is on disk.
    pub fn is_synced(&self) -> bool {
        self.synced >= self.appended
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    pub fn wake(&self) -> &Notify {
        &self.wake
    }

    /// The records waiting, and the position they reach.
    pub fn take(&mut self) -> Option<(Vec<u8>, u64)> {
        (!self.pending.is_empty()).then(|| (std::mem::take(&mut self.pending), self.appended))
    }

    /// Drops what waits (it is part of a snapshot taken at `position()`), returning the position.
    pub fn discard_pending(&mut self) -> u64 {
        self.pending.clear();
        self.appended
    }

    /// The writer wrote up to `end` (`ok`), or failed to.
    pub fn written(&mut self, end: u64, ok: bool) {
        if ok {
            self.synced = self.synced.max(end);
        }
        self.failed = !ok;
    }

    /// Bytes waiting for the writer.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_makes_everything_before_its_end_durable() {
        let mut j = Journal::default();
        assert!(j.is_synced());
        j.append(&Record::Closed);
        let first = j.position();
        j.append(&Record::Closed);
        assert!(!j.is_synced());
        let (bytes, end) = j.take().unwrap();
        assert_eq!(bytes.len() as u64, end);
        j.append(&Record::Closed);
        j.written(end, true);
        assert!(j.synced() >= first);
        assert!(!j.is_synced(), "the third record is not written yet");
        let (_, end) = j.take().unwrap();
        j.written(end, false);
        assert!(j.is_failed() && !j.is_synced());
        j.written(end, true);
        assert!(!j.is_failed() && j.is_synced());
    }
}
