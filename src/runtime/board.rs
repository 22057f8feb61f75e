//! The metrics board: where the shards leave their snapshots when a scrape (or the `$SYS`
//! publisher) asks for them, and where the metrics endpoint reads them. The only state shared
//! between the shards and the endpoint's threads: a request counter (atomic), one slot per shard
//! (a mutex each shard takes once per requested snapshot, never on the message path) and the
//! health flags.
//!
//! A scrape bumps `requested`; each shard, at its next tick (every 20 ms, 100 ms on a shard with no live connection), sees it is behind,
//! makes a snapshot and leaves it with the generation it answers. The scrape waits until every
//! shard has answered its generation.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{exposition, http, NodeFigures, ShardSnapshot};
use crate::shard::Shard;

/// How long a scrape waits for every shard's snapshot.
const SCRAPE_LIMIT: Duration = Duration::from_secs(2);

pub(super) struct MetricsBoard {
    requested: AtomicU64,
    /// Per shard: the generation answered and the snapshot.
    slots: Vec<Mutex<(u64, Option<ShardSnapshot>)>>,
    /// Shards serving (between "listening" and the start of shutdown).
    running: AtomicUsize,
    stopping: AtomicBool,
    started: Instant,
    /// The node's own figures (cluster link, bridges), read at each scrape.
    node: Mutex<Option<NodeSource>>,
}

/// Reads the node's figures.
pub(super) type NodeSource = Box<dyn Fn() -> NodeFigures + Send + Sync>;

impl MetricsBoard {
    pub fn new(shards: usize) -> Self {
        Self {
            requested: AtomicU64::new(0),
            slots: (0..shards).map(|_| Mutex::new((0, None))).collect(),
            running: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            started: Instant::now(),
            node: Mutex::new(None),
        }
    }

    /// Where the node's own figures come from.
    pub fn set_node_source(&self, source: NodeSource) {
        if let Ok(mut n) = self.node.lock() {
            *n = Some(source);
        }
    }

    fn node_figures(&self) -> NodeFigures {
        self.node
            .lock()
            .ok()
            .and_then(|n| n.as_ref().map(|f| f()))
            .unwrap_or_default()
    }

    /// Asks every shard for a snapshot; returns the generation to wait for.
    pub fn request(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The snapshots of generation `generation` or later, once every shard left one.
    pub fn ready(&self, generation: u64) -> Option<Vec<ShardSnapshot>> {
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let slot = slot.lock().ok()?;
            match &slot.1 {
                Some(s) if slot.0 >= generation => out.push(s.clone()),
                _ => return None,
            }
        }
        Some(out)
    }

    /// A shard's tick: answers a pending request with a snapshot.
    pub fn answer(&self, index: usize, shard: &Shard) {
        let wanted = self.requested.load(Ordering::SeqCst);
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let behind = slot.lock().is_ok_and(|s| s.0 < wanted);
        if behind {
            let stats = glommio::executor().executor_stats();
            shard.counters().set_busy(stats.total_runtime());
            let snapshot = shard.snapshot();
            if let Ok(mut s) = slot.lock() {
                *s = (wanted, Some(snapshot));
            }
        }
    }

    pub fn shard_started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub fn shard_stopped(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl http::Source for MetricsBoard {
    fn metrics(&self) -> Option<String> {
        let generation = self.request();
        let deadline = Instant::now() + SCRAPE_LIMIT;
        loop {
            if let Some(shards) = self.ready(generation) {
                let uptime = self.uptime().as_secs_f64();
                return Some(exposition::render(
                    &shards,
                    &self.node_figures(),
                    uptime,
                    env!("CARGO_PKG_VERSION"),
                ));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn healthy(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
            && self.running.load(Ordering::SeqCst) == self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Source;

    #[test]
    fn healthy_only_while_every_shard_runs_and_no_shutdown_began() {
        let board = MetricsBoard::new(2);
        assert!(!board.healthy(), "starting");
        board.shard_started();
        assert!(!board.healthy(), "one of two shards");
        board.shard_started();
        assert!(board.healthy());
        board.stopping();
        assert!(!board.healthy(), "shutting down");
    }

    #[test]
    fn a_request_waits_for_every_shards_answer_to_its_generation() {
        let board = MetricsBoard::new(2);
        let generation = board.request();
        assert!(board.ready(generation).is_none());
        for (i, slot) in board.slots.iter().enumerate() {
            let snapshot = ShardSnapshot {
                shard: i,
                ..Default::default()
            };
            *slot.lock().unwrap() = (generation, Some(snapshot));
            let all = i == 1;
            assert_eq!(board.ready(generation).is_some(), all);
        }
        assert!(board.ready(board.request()).is_none(), "a newer request");
    }
}
