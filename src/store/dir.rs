//! The data directory: one generation ("epoch") of per-shard logs at a time.
//!
//! ```text
//! COREMQ_DATA_DIR/
//!   LOCK                  flock'd while a broker uses the directory
//!   epoch-7/COMPLETE      this epoch's snapshots were all written and synced
//!   epoch-7/shard-0.log   shard 0's records: its snapshot at start-up, then what happened since
//!   epoch-7/shard-1.log
//! ```
//! Start-up (`open`) replays the newest complete epoch — every `shard-*.log` in it, whatever
//! shard count wrote them, stopping each file at its first damaged frame — and writes the result
//! as the next epoch, one snapshot per shard of the new count (so a changed COREMQ_SHARDS re-homes
//! sessions), marks it complete, and only then deletes older epochs. A crash at any point leaves
//! one complete epoch to start from. A shard compacts its own log while running by writing a
//! snapshot to `shard-N.next` and renaming it over `shard-N.log` (`LogFile::replace`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::record::{decode_all, encode, Clock, Damage, Record};
use super::replay::{snapshot_retained, snapshot_session, Found, Replay};
use crate::message::Message;
use crate::session::Image;

/// One shard's log file, appended to by its writer.
pub struct LogFile {
    file: File,
    path: PathBuf,
    /// Bytes known written (the file is cut back to this after a failed write).
    len: u64,
}

impl LogFile {
    /// A new log holding `content`, synced (an existing file is replaced).
    pub fn create(path: PathBuf, content: &[u8]) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(content)?;
        file.sync_all()?;
        Ok(Self {
            file,
            path,
            len: content.len() as u64,
        })
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes`, then (with `sync`) waits until they are on disk (fdatasync). On an error
    /// (disk full, I/O error) the file is cut back to what it held before, so that a retry does
    /// not leave a torn frame in the middle of the log.
    pub fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        let result = (&self.file).write_all(bytes).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Replaces the whole log with `content` (a snapshot): written to `shard-N.next`, synced,
    /// renamed over the log, the directory synced. A crash leaves the old log or the new one.
    pub fn replace(&mut self, content: &[u8]) -> io::Result<()> {
        let next = self.path.with_extension("next");
        let fresh = LogFile::create(next.clone(), content)?;
        fs::rename(&next, &self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
        self.file = fresh.file;
        self.len = fresh.len;
        Ok(())
    }

    /// Ends the log with a `Closed` record (a clean shutdown) and syncs it.
    pub fn close(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        encode(&Record::Closed, &mut out);
        self.append(&out, true)
    }
}

/// What start-up found and did, for the log.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub found: Found,
    /// Files with a damaged part: (file, offset where the valid part ends, bytes dropped, why).
    pub damaged: Vec<(PathBuf, u64, u64, Damage)>,
    /// Every log ended with a clean shutdown.
    pub clean: bool,
    /// The epoch read (`None`: a fresh directory).
    pub from_epoch: Option<u64>,
    pub elapsed: Duration,
}

/// What each shard starts with.
pub struct ShardStart {
    pub log: LogFile,
    /// The sessions homed on this shard.
    pub sessions: Vec<Image>,
}

/// A data directory in use: held locked until dropped.
pub struct Opened {
    pub shards: Vec<ShardStart>,
    /// Every retained message (each shard keeps all of them).
    pub retained: Vec<Message>,
    pub report: Report,
    /// The directory lock (released when dropped: keep it while the broker runs).
    pub lock: File,
}

/// Opens (creating it if need be) the data directory for `shards` shards: recovers the newest
/// complete epoch and writes the next one, with each session in the log of `home(client id)`.
/// `Err` says what is wrong with the directory (not with its contents: damaged records are
/// dropped and reported, never fatal).
pub fn open(
    dir: &Path,
    shards: usize,
    home: impl Fn(&[u8]) -> usize,
    clock: &Clock,
) -> Result<Opened, String> {
    let started = Instant::now();
    let fail = |what: &str, e: io::Error| format!("COREMQ_DATA_DIR {}: {what}: {e}", dir.display());
    fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
    let lock = lock_dir(dir).map_err(|e| fail("cannot lock it", e))?;
    let epochs = list_epochs(dir).map_err(|e| fail("cannot list it", e))?;
    let current = epochs
        .iter()
        .rev()
        .find(|(_, p)| p.join("COMPLETE").exists())
        .map(|(n, p)| (*n, p.clone()));
    let mut report = Report {
        clean: true,
        from_epoch: current.as_ref().map(|(n, _)| *n),
        ..Report::default()
    };
    let mut replay = Replay::default();
    if let Some((_, path)) = &current {
        for file in list_logs(path).map_err(|e| fail("cannot list its logs", e))? {
            let data = fs::read(&file).map_err(|e| fail("cannot read a log", e))?;
            let decoded = decode_all(&data);
            if let Some(why) = decoded.damage {
                let dropped = (data.len() - decoded.valid) as u64;
                report
                    .damaged
                    .push((file.clone(), decoded.valid as u64, dropped, why));
            }
            report.clean &=
                matches!(decoded.records.last(), Some(Record::Closed)) && decoded.damage.is_none();
            for r in decoded.records {
                replay.apply(r);
            }
        }
    }
    let (images, retained, found) = replay.finish(clock);
    report.found = found;

    // The next epoch: a snapshot per shard of the new count.
    let next = epochs.last().map_or(1, |(n, _)| n + 1);
    let next_dir = dir.join(format!("epoch-{next}"));
    fs::create_dir_all(&next_dir).map_err(|e| fail("cannot create an epoch", e))?;
    let mut per_shard: Vec<Vec<Image>> = (0..shards).map(|_| Vec::new()).collect();
    for image in images {
        let i = home(image.client_id.as_bytes()).min(shards - 1);
        per_shard[i].push(image);
    }
    let mut starts = Vec::with_capacity(shards);
    for (i, sessions) in per_shard.into_iter().enumerate() {
        let mut content = Vec::new();
        encode(
            &Record::Header {
                shard: i as u32,
                shards: shards as u32,
            },
            &mut content,
        );
        for image in &sessions {
            snapshot_session(image, clock, &mut content);
        }
        for m in &retained {
            if home(m.topic.as_bytes()) == i {
                snapshot_retained(m, clock, &mut content);
            }
        }
        let log = LogFile::create(next_dir.join(format!("shard-{i}.log")), &content)
            .map_err(|e| fail("cannot write a log", e))?;
        starts.push(ShardStart { log, sessions });
    }
    File::create(next_dir.join("COMPLETE"))
        .and_then(|f| f.sync_all())
        .and_then(|()| sync_dir(&next_dir))
        .and_then(|()| sync_dir(dir))
        .map_err(|e| fail("cannot complete an epoch", e))?;
    for (n, path) in epochs {
        if n != next {
            let _ = fs::remove_dir_all(path);
        }
    }
    report.elapsed = started.elapsed();
    Ok(Opened {
        shards: starts,
        retained,
        report,
        lock,
    })
}

/// `epoch-N` directories, oldest first.
fn list_epochs(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("epoch-"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `shard-N.log` files of an epoch, by shard number.
fn list_logs(epoch: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(epoch)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("shard-"))
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the directory's lock, or fails when another broker holds it.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("another coremq uses it ({e})"),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Delivery;
    use crate::protocol::{ClientId, ProtocolVersion, QoS, TopicName};
    use crate::session::Kept;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "coremq-store-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn image(id: &str, payloads: &[&str], clock: &Clock) -> Image {
        Image {
            client_id: ClientId::copy_from(id).unwrap(),
            version: ProtocolVersion::V5,
            username: None,
            lifetime: None,
            expires_at: None,
            subscriptions: Vec::new(),
            messages: payloads
                .iter()
                .enumerate()
                .map(|(i, p)| Kept {
                    seq: i as u64 + 1,
                    id: None,
                    released: false,
                    message: Message {
                        topic: TopicName::copy_from("t").unwrap(),
                        payload: bytes::Bytes::copy_from_slice(p.as_bytes()),
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        properties: Default::default(),
                        publisher: ClientId::default(),
                        expires_at: None,
                        received: clock.now_instant(),
                    },
                    delivery: Delivery {
                        qos: QoS::AtLeastOnce,
                        ..Delivery::default()
                    },
                })
                .collect(),
            inbound: Vec::new(),
            will: None,
        }
    }

    /// Writes `images` as the logs of a complete epoch 1 of `shards` shards.
    fn seed(dir: &Path, shards: usize, images: &[Image], clock: &Clock) {
        let epoch = dir.join("epoch-1");
        fs::create_dir_all(&epoch).unwrap();
        let mut files: Vec<Vec<u8>> = vec![Vec::new(); shards];
        for (k, image) in images.iter().enumerate() {
            snapshot_session(image, clock, &mut files[k % shards]);
        }
        for (i, content) in files.iter().enumerate() {
            fs::write(epoch.join(format!("shard-{i}.log")), content).unwrap();
        }
        fs::write(epoch.join("COMPLETE"), b"").unwrap();
    }

    #[test]
    fn a_fresh_directory_starts_empty_and_a_second_start_finds_the_first_epoch() {
        let dir = tempdir("fresh");
        let clock = Clock::now();
        let opened = open(&dir, 2, |_| 0, &clock).unwrap();
        assert_eq!(opened.shards.len(), 2);
        assert_eq!(opened.report.from_epoch, None);
        drop(opened);
        let again = open(&dir, 2, |_| 0, &clock).unwrap();
        assert_eq!(again.report.from_epoch, Some(1));
        assert!(dir.join("epoch-2/COMPLETE").exists());
        assert!(!dir.join("epoch-1").exists(), "the old epoch is removed");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_broker_on_the_same_directory_is_refused() {
        let dir = tempdir("lock");
        let clock = Clock::now();
        let held = open(&dir, 1, |_| 0, &clock).unwrap();
        let err = open(&dir, 1, |_| 0, &clock).err().unwrap();
        assert!(err.contains("another coremq"), "{err}");
        drop(held);
        assert!(open(&dir, 1, |_| 0, &clock).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sessions_move_to_their_home_under_a_new_shard_count() {
        let dir = tempdir("reshard");
        let clock = Clock::now();
        let images: Vec<Image> = (0..6)
            .map(|i| image(&format!("c{i}"), &["m"], &clock))
            .collect();
        seed(&dir, 3, &images, &clock);
        let home = |id: &[u8]| usize::from(id[1] - b'0') % 2;
        let opened = open(&dir, 2, home, &clock).unwrap();
        assert_eq!(opened.report.found.sessions, 6);
        for (i, s) in opened.shards.iter().enumerate() {
            assert_eq!(s.sessions.len(), 3);
            for image in &s.sessions {
                assert_eq!(home(image.client_id.as_bytes()), i);
            }
        }
        drop(opened);
        // And the new epoch's files say the same on the next start.
        let again = open(&dir, 2, home, &clock).unwrap();
        assert_eq!(again.shards[0].sessions.len(), 3);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_incomplete_newer_epoch_is_ignored() {
        let dir = tempdir("incomplete");
        let clock = Clock::now();
        seed(&dir, 1, &[image("a", &["x"], &clock)], &clock);
        fs::create_dir_all(dir.join("epoch-2")).unwrap();
        fs::write(dir.join("epoch-2/shard-0.log"), b"garbage").unwrap();
        let opened = open(&dir, 1, |_| 0, &clock).unwrap();
        assert_eq!(opened.report.from_epoch, Some(1));
        assert_eq!(opened.report.found.sessions, 1);
        assert!(opened.report.damaged.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_truncation_and_flipped_byte_recovers_a_prefix_and_reports_it() {
        let dir = tempdir("damage");
        let clock = Clock::now();
        let images = [image("a", &["1", "2", "3"], &clock)];
        seed(&dir, 1, &images, &clock);
        let log = dir.join("epoch-1/shard-0.log");
        let original = fs::read(&log).unwrap();
        let reseed = |content: &[u8]| {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("epoch-1")).unwrap();
            fs::write(&log, content).unwrap();
            fs::write(dir.join("epoch-1/COMPLETE"), b"").unwrap();
        };
        // Where each frame ends: Session, then three Entered.
        let mut ends = Vec::new();
        let mut at = 0;
        while at < original.len() {
            let len = u32::from_le_bytes(original[at..at + 4].try_into().unwrap()) as usize;
            at += 8 + len;
            ends.push(at);
        }
        assert_eq!(ends.len(), 4);
        for cut in 0..original.len() {
            reseed(&original[..cut]);
            let opened = open(&dir, 1, |_| 0, &clock).unwrap();
            let r = &opened.report;
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let kept = opened.shards[0]
                .sessions
                .first()
                .map_or(0, |s| s.messages.len());
            assert_eq!(kept, whole.saturating_sub(1), "cut {cut}");
            let torn = cut > 0 && !ends.contains(&cut);
            assert_eq!(r.damaged.len(), usize::from(torn), "cut {cut}");
            if torn {
                let (_, offset, dropped, why) = &r.damaged[0];
                assert_eq!(
                    *offset as usize,
                    ends.iter().rev().find(|&&e| e <= cut).copied().unwrap_or(0)
                );
                assert_eq!(offset + dropped, cut as u64);
                assert_eq!(*why, Damage::Torn);
            }
        }
        for at in (0..original.len()).step_by(3) {
            let mut bad = original.clone();
            bad[at] ^= 0x5a;
            reseed(&bad);
            let opened = open(&dir, 1, |_| 0, &clock).unwrap();
            let (file, offset, dropped, _) = &opened.report.damaged[0];
            assert_eq!(file, &log);
            assert_eq!(offset + dropped, original.len() as u64, "flip at {at}");
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_replaced_log_holds_only_the_snapshot_and_appends_after_it() {
        let dir = tempdir("replace");
        fs::create_dir_all(&dir).unwrap();
        let mut log = LogFile::create(dir.join("shard-0.log"), b"").unwrap();
        let mut a = Vec::new();
        encode(&Record::Closed, &mut a);
        log.append(&a, true).unwrap();
        log.append(&a, false).unwrap();
        let mut snap = Vec::new();
        encode(
            &Record::Header {
                shard: 0,
                shards: 1,
            },
            &mut snap,
        );
        log.replace(&snap).unwrap();
        log.append(&a, true).unwrap();
        let content = fs::read(dir.join("shard-0.log")).unwrap();
        assert_eq!(
            decode_all(&content).records,
            vec![
                Record::Header {
                    shard: 0,
                    shards: 1
                },
                Record::Closed
            ]
        );
        assert!(!dir.join("shard-0.next").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
