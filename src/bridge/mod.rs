//! Bridges: this broker as an MQTT client of other brokers (COREMQ_BRIDGE_FILE, in Mosquitto's
//! bridge syntax — `conf`).
//!
//! A bridge runs on the home shard of its local client id, as one task (`link`) that holds two
//! MQTT connections made with coremq's own codec: one to the remote broker (TCP or TLS,
//! `net::dial::Outbound`) and one to this broker, in-process (`net::dial::local_connection`: a
//! socket pair served like any accepted connection, trusted). Through the local connection the
//! bridge is an ordinary MQTT 5 session: its subscriptions route here like any client's, its
//! session keeps what the remote cannot take while it is down, and No Local keeps what came in
//! over the bridge from going back out over it. `relay` maps topics and packet ids between the
//! two and passes acknowledgements through, so a message is acknowledged to the broker it came
//! from only once the other broker has it.
//!
//! SIGHUP re-reads the file (`BridgeBoard::reload`); each shard then stops the bridges that
//! changed or went and starts the new ones at its next tick.

pub mod conf;
pub mod link;
pub mod relay;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::gate::ConnectionGate;
use crate::net::dial::{client_tls, ClientTls};
use crate::shard::Shard;
use conf::BridgeConf;
pub use link::Status;

/// A bridge as configured, with its TLS settings loaded.
#[derive(Clone)]
pub struct Bridge {
    pub conf: BridgeConf,
    tls: Option<Arc<ClientTls>>,
}

/// The bridge file as last read, shared with every shard; a new `generation` tells shards to
/// bring their bridges in line.
pub struct BridgeBoard {
    path: PathBuf,
    generation: AtomicU64,
    bridges: Mutex<Vec<Bridge>>,
    /// Each bridge's state, by name, as its shard last copied it.
    status: Mutex<HashMap<String, Status>>,
}

impl BridgeBoard {
    /// Reads COREMQ_BRIDGE_FILE (and the TLS files it names); `None` without one.
    pub fn start(config: &Config) -> Result<Option<Arc<BridgeBoard>>, String> {
        let Some(path) = &config.bridge_file else {
            return Ok(None);
        };
        let bridges = load(path)?;
        Ok(Some(Arc::new(BridgeBoard {
            path: path.clone(),
            generation: AtomicU64::new(1),
            bridges: Mutex::new(bridges),
            status: Mutex::default(),
        })))
    }

    /// Re-reads the file (SIGHUP). On error (file, line, reason) the running bridges stay as
    /// they are. Returns how many bridges the file has.
    pub fn reload(&self) -> Result<usize, String> {
        let bridges = load(&self.path)?;
        let n = bridges.len();
        if let Ok(mut b) = self.bridges.lock() {
            *b = bridges;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    /// Each bridge's state, by name.
    pub fn status(&self) -> HashMap<String, Status> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn load(path: &std::path::Path) -> Result<Vec<Bridge>, String> {
    let confs = conf::read(path).map_err(|e| e.to_string())?;
    confs
        .into_iter()
        .map(|conf| {
            let tls = match &conf.tls {
                None => None,
                Some(t) => {
                    let cert = t.certfile.as_deref().zip(t.keyfile.as_deref());
                    let tls = client_tls(&t.cafile, cert, t.insecure).map_err(|e| {
                        format!(
                            "COREMQ_BRIDGE_FILE {}:{}: connection {}: {e}",
                            path.display(),
                            conf.line,
                            conf.name
                        )
                    })?;
                    Some(Arc::new(tls))
                }
            };
            Ok(Bridge { conf, tls })
        })
        .collect()
}

/// The bridges one shard runs: those whose local client id has this shard as its home.
pub struct ShardBridges {
    board: Arc<BridgeBoard>,
    gate: ConnectionGate,
    generation: u64,
    running: HashMap<String, Running>,
}

struct Running {
    conf: BridgeConf,
    status: Rc<Cell<Status>>,
    /// Dropping it stops the bridge (its connections close).
    _task: glommio::Task<()>,
}

impl ShardBridges {
    pub fn new(board: Arc<BridgeBoard>, gate: ConnectionGate) -> Self {
        Self {
            board,
            gate,
            generation: 0,
            running: HashMap::new(),
        }
    }

    /// Brings this shard's bridges in line with the board (at start and after a reload), and
    /// copies their state to it. Called every tick.
    pub fn tick(&mut self, shard: &Rc<Shard>) {
        let latest = self.board.generation.load(Ordering::SeqCst);
        if latest != self.generation {
            self.generation = latest;
            self.update(shard);
        }
        if !self.running.is_empty() {
            if let Ok(mut status) = self.board.status.lock() {
                for (name, r) in &self.running {
                    status.insert(name.clone(), r.status.get());
                }
            }
        }
    }

    fn update(&mut self, shard: &Rc<Shard>) {
        let bridges = self
            .board
            .bridges
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        if let Ok(mut status) = self.board.status.lock() {
            status.retain(|name, _| bridges.iter().any(|b| &b.conf.name == name));
        }
        let mine: Vec<Bridge> = bridges
            .into_iter()
            .filter(|b| shard.home_of(b.conf.local_clientid.as_bytes()) == shard.id())
            .collect();
        self.running.retain(|name, r| {
            let keep = mine
                .iter()
                .any(|b| &b.conf.name == name && b.conf == r.conf);
            if !keep {
                crate::log!(Info, "bridge {name}: stopped (bridge file changed)");
            }
            keep
        });
        for b in mine {
            if self.running.contains_key(&b.conf.name) {
                continue;
            }
            let status = Rc::new(Cell::new(Status::default()));
            let env = link::Env {
                shard: shard.clone(),
                gate: self.gate.clone(),
                status: status.clone(),
            };
            let tls = b.tls.clone();
            let task = glommio::spawn_local(link::run(b.conf.clone(), tls, env));
            crate::log!(Info, "bridge {}: started", b.conf.name);
            self.running.insert(
                b.conf.name.clone(),
                Running {
                    conf: b.conf,
                    status,
                    _task: task,
                },
            );
        }
    }

    /// Stops every bridge (shutdown): their connections close.
    pub fn stop(&mut self) {
        self.running.clear();
    }
}
