//! Opening the data directory (COREMQ_DATA_DIR) at start-up, and each shard's log writer.
//!
//! The writer is a task on its shard: it sleeps until the shard's journal holds records, takes
//! them all (`Shard::take_store_batch`: one batch per wake-up, however many messages it covers),
//! and writes them — with `fdatasync` unless COREMQ_FSYNC=never — on the shard's blocking-pool
//! thread, so the shard's event loop never waits on the disk. Records that arrive during a write
//! share the next one: that is the group commit. With COREMQ_FSYNC=batch it first waits
//! COREMQ_FSYNC_INTERVAL so that one sync covers more. A failed write (disk full, I/O error) is
//! reported to the shard at once (QoS 1/2 messages are refused meanwhile) and retried every
//! second with the same bytes, the file having been cut back to its last good length.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{Config, Fsync};
use crate::shard::{Shard, StoreBatch};
use crate::store::{self, Clock, LogFile, Opened};

/// How long a failed write waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Opens the data directory for `shards` shards and logs what start-up recovered.
pub(super) fn open(config: &Config, shards: usize) -> Result<Option<Opened>, String> {
    let Some(dir) = &config.data_dir else {
        return Ok(None);
    };
    let opened = store::open(
        dir,
        shards,
        |id| crate::mesh::home_shard(id, shards).0,
        &Clock::now(),
    )?;
    let r = &opened.report;
    for (file, offset, dropped, why) in &r.damaged {
        crate::log!(
            Warn,
            "store: {}: damaged from byte {offset} ({why:?}): {dropped} bytes dropped, the records \
             before it recovered",
            file.display()
        );
    }
    let f = &r.found;
    crate::log!(
        Info,
        "store {}: recovered {} sessions, {} queued or in-flight messages and {} retained \
         messages ({} expired ones dropped) from {} records in {:.3} s{}",
        dir.display(),
        f.sessions,
        f.messages,
        f.retained,
        f.expired,
        f.records,
        r.elapsed.as_secs_f64(),
        match r.from_epoch {
            None => " (a new data directory)",
            Some(_) if r.clean => " (after a clean shutdown)",
            Some(_) => " (after a crash: the logs did not end with a clean shutdown)",
        }
    );
    Ok(Some(opened))
}

/// One shard's writer: runs until `Shard::stop_store`, then writes what is left, closes the log
/// with a clean-shutdown record and returns.
pub(super) async fn run(shard: Rc<Shard>, mut log: LogFile, fsync: Fsync, interval: Duration) {
    let sync = fsync != Fsync::Never;
    let mut failing = false;
    loop {
        if !shard.store_pending() {
            if shard.store_stopping() {
                break;
            }
            std::future::poll_fn(|cx| shard.poll_store_wake(cx)).await;
            if fsync == Fsync::Batch && !interval.is_zero() && !shard.store_stopping() {
                glommio::timer::sleep(interval).await;
            }
        }
        let Some(mut batch) = shard.take_store_batch() else {
            continue;
        };
        // The same batch until it is written: the file was cut back after a failed write, so a
        // retry appends (or replaces) exactly what failed.
        loop {
            let end = match &batch {
                StoreBatch::Append(_, end) | StoreBatch::Replace(_, end) => *end,
            };
            let result;
            (log, batch, result) = write(log, batch, sync).await;
            match result {
                Ok(()) => {
                    shard.store_written(end, true);
                    failing = false;
                    break;
                }
                Err(e) => {
                    if !failing {
                        crate::log!(
                            Error,
                            "store: cannot write {}: {e}; retrying every {} s",
                            log.path().display(),
                            RETRY_AFTER.as_secs()
                        );
                    }
                    failing = true;
                    shard.store_written(end, false);
                    if shard.store_stopping() {
                        crate::log!(
                            Error,
                            "store: shutting down with records of shard {} not written",
                            shard.id().0
                        );
                        return;
                    }
                    glommio::timer::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
    let started = Instant::now();
    let (log, closed) = glommio::executor()
        .spawn_blocking(move || {
            let r = log.close();
            (log, r)
        })
        .await;
    match closed {
        Ok(()) => crate::log!(
            Debug,
            "store: shard {} closed its log ({} bytes) in {:?}",
            shard.id().0,
            log.len(),
            started.elapsed()
        ),
        Err(e) => crate::log!(
            Warn,
            "store: cannot close {} cleanly: {e} (the next start will read it as after a crash)",
            log.path().display()
        ),
    }
}

/// Writes on the blocking pool; gives the log and the batch back with the result.
async fn write(
    mut log: LogFile,
    batch: StoreBatch,
    sync: bool,
) -> (LogFile, StoreBatch, std::io::Result<()>) {
    glommio::executor()
        .spawn_blocking(move || {
            let r = match &batch {
                StoreBatch::Append(bytes, _) => log.append(bytes, sync),
                StoreBatch::Replace(bytes, _) => log.replace(bytes),
            };
            (log, batch, r)
        })
        .await
}
