//! Starting and stopping the broker: host checks, one pinned glommio executor per shard with rings
//! and buffers sized for a small locked-memory limit, the mesh, the listeners, and shutdown.
//!
//! `Broker::start` returns once every shard listens, so tests can start a broker in-process on
//! port 0 and connect at once. With port 0, a placeholder socket reserves one port
//! (SO_REUSEPORT, bound but not listening, so it never receives connections) and every shard binds
//! that port.

mod board;
mod writer;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement};

use crate::auth::scram::ScramSha256;
use crate::auth::security::{anonymous_allowed, anonymous_policy, Security, SecurityFiles};
use crate::auth::AuthenticatorFactory;
use crate::bridge::{BridgeBoard, ShardBridges};
use crate::config::Config;
use crate::gate::{ConnectionGate, GateLimits};
use crate::mesh::{self, Mesh, MeshEnds};
use crate::metrics::http::Endpoint;
use crate::metrics::sys::SysTree;
use crate::metrics::Listener;
use crate::net::tls::TlsBoard;
use crate::net::ws::UpgradeRules;
use crate::net::Protocol;
use crate::shard::{Shard, Stats};
use board::MetricsBoard;

/// Messages per cross-shard channel (each message is a batch).
const MESH_CAPACITY: usize = 1024;
/// io_uring depth per ring; glommio makes three rings per executor.
const RING_DEPTH: usize = 256;
/// glommio's registered buffer arena, used only for file I/O, which the broker does not do.
const IO_MEMORY: usize = 64 << 10;
/// How often a shard ticks (session timers, flow-control holds, stop and reload requests, stats
/// and metrics snapshots) while it serves live connections.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long a quiet shard (no live connection: idle, or every connection parked) sleeps between
/// ticks, unless a timer is due sooner: each wake-up costs the shard's core tens of microseconds,
/// and an idle broker should cost practically nothing. Stop and reload requests then take up to
/// this long.
const QUIET_TICK: Duration = Duration::from_millis(100);
/// How long a stopping shard waits for its connections to flush and close.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long `Broker::reload` waits for every shard to take the new rules.
const RELOAD_LIMIT: Duration = Duration::from_secs(2);

/// Why the broker could not start. The message says what the host needs.
#[derive(Debug)]
pub enum StartError {
    /// io_uring is unavailable or memory cannot be locked.
    Host(String),
    /// A listener could not bind.
    Bind(String),
    /// An executor could not start.
    Executor(String),
    /// The password or ACL file is unreadable or malformed (file, line, reason).
    Config(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Host(m)
            | StartError::Bind(m)
            | StartError::Executor(m)
            | StartError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StartError {}

/// Each shard's latest `Stats`, copied out by the shard every tick (a shard's state is
/// thread-local; this is the only view of it from outside).
type StatsBoard = Arc<Vec<Mutex<Stats>>>;

/// A running broker. Dropping it stops it.
pub struct Broker {
    addr: SocketAddr,
    shards: usize,
    config: Arc<Config>,
    security: Arc<SecurityBoard>,
    stop: Arc<AtomicBool>,
    handles: Vec<ExecutorJoinHandle<()>>,
    stats: StatsBoard,
    gate: ConnectionGate,
    metrics: Arc<MetricsBoard>,
    /// The HTTP metrics endpoint (COREMQ_METRICS_LISTEN), on threads of its own.
    endpoint: Option<Endpoint>,
    /// The data directory's lock (COREMQ_DATA_DIR), held while the broker runs.
    store_lock: Option<std::fs::File>,
    /// The TLS configuration of the TLS and WSS listeners, if any (SIGHUP reloads it).
    tls: Option<Arc<TlsBoard>>,
    /// The bridges (COREMQ_BRIDGE_FILE), if any (SIGHUP reloads them).
    bridges: Option<Arc<BridgeBoard>>,
    /// The link to the other nodes (COREMQ_CLUSTER_NATS), stopped after the shards.
    cluster: Option<(
        crate::cluster::node::LinkThread,
        Arc<crate::cluster::ClusterStats>,
    )>,
}

impl Broker {
    /// Starts every shard and returns once all of them listen.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        Self::start_with(config, None)
    }

    /// Like `start`, with an authentication hook for MQTT 5 enhanced authentication: the
    /// factory makes one `Authenticator` per shard.
    pub fn start_with(
        config: Config,
        authenticator: Option<AuthenticatorFactory>,
    ) -> Result<Broker, StartError> {
        crate::log::set_level(config.log);
        let files = SecurityFiles::read(&config).map_err(|e| StartError::Config(e.to_string()))?;
        probe_host()?;
        let shards = config.shard_count();
        let opened = writer::open(&config, shards).map_err(StartError::Config)?;
        let (mut starts, retained, store_lock) = match opened {
            Some(o) => (
                o.shards.into_iter().map(Some).collect(),
                Arc::new(o.retained),
                Some(o.lock),
            ),
            None => (Vec::new(), Arc::new(Vec::new()), None),
        };
        let (addr, placeholder) = reserve_address(config.listen)?;
        let mut placeholders = vec![placeholder];
        let mut reserve = |listen: Option<SocketAddr>| -> Result<Option<SocketAddr>, StartError> {
            let Some(listen) = listen else {
                return Ok(None);
            };
            let (addr, placeholder) = reserve_address(listen)?;
            placeholders.push(placeholder);
            Ok(Some(addr))
        };
        let config = Arc::new(Config {
            listen: addr,
            tls_listen: reserve(config.tls_listen)?,
            ws_listen: reserve(config.ws_listen)?,
            wss_listen: reserve(config.wss_listen)?,
            ..config
        });
        let tls = TlsBoard::start(&config)
            .map_err(StartError::Config)?
            .map(Arc::new);
        let security = Arc::new(SecurityBoard {
            generation: AtomicU64::new(0),
            installed: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            files: Mutex::new(files),
            mock_key: ScramSha256::random_mock_key()
                .map_err(|e| StartError::Host(format!("no random source: {e}")))?,
        });
        let bridges = BridgeBoard::start(&config).map_err(StartError::Config)?;
        let (cluster_ends, cluster) = start_cluster(&config, shards)?;
        warn_if_open(&config, &security);
        let metrics = Arc::new(MetricsBoard::new(shards));
        metrics.set_node_source(node_source(
            cluster.as_ref().map(|(_, stats)| stats.clone()),
            bridges.clone(),
        ));
        let endpoint = start_endpoint(&config, &metrics)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let shared = ShardShared {
            config: config.clone(),
            authenticator,
            security: security.clone(),
            gate: ConnectionGate::new(GateLimits {
                max_connections: config.max_connections,
                max_connecting: config.max_connecting,
                max_per_address: config.max_connections_per_address,
                rate_per_address: config.connection_rate_per_address,
            }),
            stop: Arc::new(AtomicBool::new(false)),
            ready: ready_tx,
            tls: tls.clone(),
            board: Arc::new((0..shards).map(|_| Mutex::default()).collect()),
            metrics: metrics.clone(),
            bridges: bridges.clone(),
            cluster: Arc::new(
                cluster_ends
                    .into_iter()
                    .map(|e| Mutex::new(Some(e)))
                    .collect(),
            ),
        };
        let mut broker = Broker {
            addr,
            shards,
            stop: shared.stop.clone(),
            handles: Vec::with_capacity(shards),
            stats: shared.board.clone(),
            gate: shared.gate.clone(),
            config,
            security,
            metrics,
            endpoint,
            store_lock,
            tls,
            bridges,
            cluster,
        };
        let cpus = online_cpus();
        for (i, ends) in mesh::build(shards, MESH_CAPACITY).into_iter().enumerate() {
            let start = starts
                .get_mut(i)
                .and_then(Option::take)
                .map(|s| (s, retained.clone()));
            match spawn_shard(i, ends, &cpus, &shared, start) {
                Ok(h) => broker.handles.push(h),
                Err(e) => {
                    broker.stop_and_join();
                    return Err(e);
                }
            }
        }
        drop(shared);
        broker.wait_until_listening(&ready_rx)?;
        drop(placeholders);
        Ok(broker)
    }

    /// Waits until every shard listens (or one could not).
    fn wait_until_listening(
        &mut self,
        ready: &mpsc::Receiver<Result<(), String>>,
    ) -> Result<(), StartError> {
        for _ in 0..self.shards {
            let failed = match ready.recv() {
                Ok(Ok(())) => continue,
                Ok(Err(msg)) => StartError::Bind(msg),
                Err(_) => {
                    StartError::Executor(format!("a shard stopped during start-up. {HOST_NEEDS}"))
                }
            };
            self.stop_and_join();
            return Err(failed);
        }
        Ok(())
    }

    /// The address every shard listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS listener's address (the real port when configured with port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.config.tls_listen
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.config.ws_listen
    }

    /// The WebSocket over TLS listener's address.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.config.wss_listen
    }

    /// Re-reads the TLS certificate, key and client CA (SIGHUP): new connections get the new
    /// ones. On error (named flag, file and reason) the old ones stay. Nothing to do without a
    /// TLS or WSS listener.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.tls {
            Some(board) => board.reload(&self.config).map(|()| true),
            None => Ok(false),
        }
    }

    /// Re-reads COREMQ_BRIDGE_FILE (SIGHUP): bridges that changed or went stop, new ones start,
    /// unchanged ones keep their connections (at each shard's next tick). On error (file, line,
    /// reason) the running bridges stay. `Ok(None)` without a bridge file.
    pub fn reload_bridges(&self) -> Result<Option<usize>, String> {
        match &self.bridges {
            Some(board) => board.reload().map(Some),
            None => Ok(None),
        }
    }

    /// The cluster link's counters (`None` when not in a cluster).
    pub fn cluster_counts(&self) -> Option<crate::cluster::ClusterCounts> {
        self.cluster.as_ref().map(|(_, stats)| stats.snapshot())
    }

    /// Each bridge's state, by connection name (as of its shard's last tick).
    pub fn bridge_status(&self) -> std::collections::HashMap<String, crate::bridge::Status> {
        self.bridges
            .as_ref()
            .map(|b| b.status())
            .unwrap_or_default()
    }

    /// The metrics endpoint's address (the real port when configured with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::local_addr)
    }

    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The shards' counters summed, as of each shard's last tick (at most `STOP_POLL` old, or
    /// `QUIET_TICK` for a shard with no live connection).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for slot in self.stats.iter() {
            if let Ok(s) = slot.lock() {
                total.add(&s);
            }
        }
        total
    }

    /// Connections holding a place under COREMQ_MAX_CONNECTIONS, including those still in
    /// their CONNECT phase.
    pub fn admitted_connections(&self) -> usize {
        self.gate.active()
    }

    /// Re-reads the password and ACL files (SIGHUP). If either fails to parse, the old rules stay
    /// and the error (file, line, reason) is returned. Otherwise every shard switches to the new
    /// rules at its next tick (`STOP_POLL`, `QUIET_TICK` when quiet), and this returns once all have, so whatever a
    /// client sends after `reload` returns meets the new rules (a shard that has not switched
    /// within `RELOAD_LIMIT` still does at its next poll).
    pub fn reload(&self) -> Result<(), crate::auth::FileError> {
        let files = SecurityFiles::read(&self.config)?;
        if let Ok(mut current) = self.security.files.lock() {
            *current = files;
        }
        let target = self.security.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let deadline = Instant::now() + RELOAD_LIMIT;
        while self
            .security
            .installed
            .iter()
            .any(|g| g.load(Ordering::SeqCst) < target)
            && Instant::now() < deadline
            && !self.stop.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Closes every connection (MQTT 5 clients get DISCONNECT 0x8B; no wills are published) and
    /// waits for the shards to exit.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.metrics.stopping();
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.endpoint = None;
        self.cluster = None;
        // Every shard closed its log: another broker may use the directory now.
        self.store_lock = None;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

const HOST_NEEDS: &str = "coremq needs Linux io_uring (kernel 5.8 or newer, not blocked by \
    seccomp or kernel.io_uring_disabled) and, when not run as root, a locked-memory limit of at \
    least 8 MiB (`ulimit -l 8192`, LimitMEMLOCK=8M in systemd)";

/// Checks io_uring and the memlock limit before glommio tries (it panics with a misleading
/// message where io_uring is blocked).
fn probe_host() -> Result<(), StartError> {
    // The probe ring is made on a thread of its own: the kernel tears a closed ring down later
    // and then interrupts (EINTR) whatever blocking call the ring's creator is in — which would
    // otherwise be the caller of `Broker::start`, e.g. a test reading a socket.
    let probe = std::thread::Builder::new()
        .name("coremq-probe".into())
        .spawn(probe_io_uring)
        .map_err(|e| StartError::Host(format!("cannot start a thread: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the probe thread panicked")));
    if let Err(err) = probe {
        return Err(StartError::Host(format!(
            "io_uring is not available ({err}). {HOST_NEEDS}"
        )));
    }
    // SAFETY: getrlimit/geteuid only write the struct we pass.
    let (limit, root) = unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r);
        (r.rlim_cur, libc::geteuid() == 0)
    };
    if !root && limit != libc::RLIM_INFINITY && limit < 512 * 1024 {
        return Err(StartError::Host(format!(
            "the locked-memory limit is {} KiB. {HOST_NEEDS}",
            limit / 1024
        )));
    }
    Ok(())
}

/// Creates and closes a small io_uring.
fn probe_io_uring() -> std::io::Result<()> {
    // struct io_uring_params is 120 bytes; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which is large enough; we close the fd.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is the ring we just created and nothing else uses it.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// With port 0, picks a free port and holds it with a bound, non-listening SO_REUSEPORT socket
/// until every shard has bound it.
fn reserve_address(
    listen: SocketAddr,
) -> Result<(SocketAddr, Option<socket2::Socket>), StartError> {
    if listen.port() != 0 {
        return Ok((listen, None));
    }
    let bind_err = |e: std::io::Error| StartError::Bind(format!("cannot bind {listen}: {e}"));
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )
    .map_err(bind_err)?;
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.bind(&listen.into()).map_err(bind_err)?;
    let addr = socket
        .local_addr()
        .map_err(bind_err)?
        .as_socket()
        .ok_or_else(|| StartError::Bind(format!("cannot bind {listen}: not an IP address")))?;
    Ok((addr, Some(socket)))
}

/// Binds the metrics endpoint's address (so that a bad one stops start-up) and serves it.
fn start_endpoint(
    config: &Config,
    metrics: &Arc<MetricsBoard>,
) -> Result<Option<Endpoint>, StartError> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let bind_err = |e: std::io::Error| {
        StartError::Bind(format!("COREMQ_METRICS_LISTEN: cannot bind {addr}: {e}"))
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    let endpoint = Endpoint::start(listener, metrics.clone()).map_err(bind_err)?;
    crate::log!(Info, "metrics on http://{}/metrics", endpoint.local_addr());
    Ok(Some(endpoint))
}

/// Says whether anonymous clients may connect and why; a warning when the listener is not a
/// loopback address and they may.
fn warn_if_open(config: &Config, security: &SecurityBoard) {
    let has_passwords = security.files().has_passwords();
    let policy = anonymous_policy(config, has_passwords);
    if anonymous_allowed(config, has_passwords) && config.exposed().is_some() {
        crate::log!(Warn, "{policy}");
    } else {
        crate::log!(Info, "{policy}");
    }
}

/// The online CPUs, in order (empty when they cannot be read: shards then float).
fn online_cpus() -> Vec<usize> {
    match glommio::CpuSet::online() {
        Ok(set) => {
            let mut v: Vec<usize> = set.iter().map(|l| l.cpu).collect();
            v.sort_unstable();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// Starts shard `i`'s executor (pinned to its CPU when COREMQ_PIN) running `shard_main`.
fn spawn_shard(
    i: usize,
    ends: MeshEnds,
    cpus: &[usize],
    shared: &ShardShared,
    start: Option<StoreStart>,
) -> Result<ExecutorJoinHandle<()>, StartError> {
    let config = &shared.config;
    let placement = match (config.pin, cpus.is_empty()) {
        (true, false) => Placement::Fixed(cpus[i % cpus.len()]),
        _ => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        // Password checks run on this pool: not pinned, so a storm of logins competes with the
        // shard only as any other process would. The second thread waits on the idle watcher's
        // epoll set (`net::idle`); the third, with COREMQ_DATA_DIR, writes and syncs the
        // shard's log (`writer`).
        .blocking_thread_pool_placement(PoolPlacement::Unbound(if start.is_some() { 3 } else { 2 }))
        .name(&format!("coremq-shard-{i}"))
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH);
    if !config.spin_before_park.is_zero() {
        builder = builder.spin_before_park(config.spin_before_park);
    }
    let shared = shared.clone();
    builder
        .spawn(move || shard_main(shared, ends, i, start))
        .map_err(|e| StartError::Executor(format!("could not start shard {i}: {e}. {HOST_NEEDS}")))
}

/// What the starting thread gives each shard (besides its mesh ends).
#[derive(Clone)]
struct ShardShared {
    config: Arc<Config>,
    authenticator: Option<AuthenticatorFactory>,
    security: Arc<SecurityBoard>,
    gate: ConnectionGate,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), String>>,
    tls: Option<Arc<TlsBoard>>,
    board: StatsBoard,
    metrics: Arc<MetricsBoard>,
    bridges: Option<Arc<BridgeBoard>>,
    /// Each shard's cluster link and doorbell, taken by the shard at start.
    cluster: Arc<Vec<Mutex<Option<ClusterEnd>>>>,
}

/// A shard's end of the cluster link.
type ClusterEnd = (crate::cluster::ShardLink, crate::net::doorbell::BellFd);

/// What a shard starts with from the data directory: its log and sessions, and every retained
/// message.
type StoreStart = (crate::store::ShardStart, Arc<Vec<crate::message::Message>>);

/// Binds this shard's listeners: plain MQTT, and the TLS, WebSocket and WebSocket over TLS ones
/// that are configured.
fn bind_listeners(
    shared: &ShardShared,
) -> Result<Vec<(glommio::net::TcpListener, Protocol)>, String> {
    let config = &shared.config;
    let rules = || UpgradeRules {
        path: config.ws_path.clone(),
        origins: config.ws_origins.clone(),
    };
    let tls = || shared.tls.clone();
    let identity = config.tls_identity_as_username;
    let kinds = [
        (Some(config.listen), Listener::Mqtt, None, None),
        (config.tls_listen, Listener::Tls, tls(), None),
        (config.ws_listen, Listener::Ws, None, Some(rules())),
        (config.wss_listen, Listener::Wss, tls(), Some(rules())),
    ];
    let mut bound = Vec::new();
    for (addr, listener, tls, ws) in kinds {
        let Some(addr) = addr else { continue };
        let socket = glommio::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr} ({}): {e}", listener.name()))?;
        let identity_as_username = identity && tls.is_some();
        let protocol = Protocol {
            listener,
            tls,
            ws,
            identity_as_username,
        };
        bound.push((socket, protocol));
    }
    Ok(bound)
}

/// One shard's life: connect the mesh, take back what the store kept, listen, serve until
/// stopped, then close connections and the store.
async fn shard_main(shared: ShardShared, ends: MeshEnds, index: usize, start: Option<StoreStart>) {
    let listeners = match bind_listeners(&shared) {
        Ok(l) => l,
        Err(msg) => {
            let _ = shared.ready.send(Err(msg));
            return;
        }
    };
    let (mesh, inbound) = ends.connect().await;
    let mesh = Rc::new(mesh);
    let mut shard = new_shard(&shared, mesh.clone(), index);
    if let Some((s, _)) = &start {
        shard.enable_store(shared.config.fsync, s.log.len());
    }
    let cluster_end = shared
        .cluster
        .get(index)
        .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
    let bell = cluster_end.map(|(link, bell)| {
        shard.set_cluster(link);
        bell
    });
    let shard = Rc::new(shard);
    let cluster_inbound =
        bell.map(|bell| glommio::spawn_local(cluster_inbound(shard.clone(), bell)));
    let flusher = glommio::spawn_local(mesh.clone().run_flusher());
    let relief = glommio::spawn_local(mesh.clone().run_relief());
    let receivers: Vec<_> = inbound
        .into_iter()
        .map(|inb| glommio::spawn_local(mesh::receive_loop(shard.clone(), inb)))
        .collect();
    let writer = match start {
        Some((s, retained)) => {
            let waits = shard.restore(s.sessions, retained.to_vec());
            let config = &shared.config;
            let w = writer::run(shard.clone(), s.log, config.fsync, config.fsync_interval);
            let task = glommio::spawn_local(w);
            // Every shard knows this one's restored subscriptions before anyone connects.
            for w in waits {
                w.wait().await;
            }
            Some(task)
        }
        None => None,
    };
    let arrivals = glommio::spawn_local(crate::net::serve_arrivals(shard.clone()));
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|(listener, protocol)| {
            let gate = shared.gate.clone();
            let accept = crate::net::accept_loop(shard.clone(), listener, gate, Rc::new(protocol));
            glommio::spawn_local(accept)
        })
        .collect();
    let watcher = start_idle_watcher(&shard, index);
    shared.publish_stats(index, &shard);
    let _ = shared.ready.send(Ok(()));
    shared.metrics.shard_started();

    let mut bridges = shared
        .bridges
        .clone()
        .map(|board| ShardBridges::new(board, shared.gate.clone()));
    serve_until_stopped(&shared, &shard, index, bridges.as_mut()).await;
    shared.metrics.shard_stopped();
    if let Some(b) = bridges.as_mut() {
        b.stop();
    }

    drop(acceptors);
    shard.begin_shutdown();
    let deadline = Instant::now() + DRAIN_LIMIT;
    while shard.stats().connections > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if let Some(w) = watcher {
        // Parked connections were woken and closed with the rest: end the watcher's wait, so
        // that its pool thread is free when the executor ends.
        if let Some(watcher) = crate::net::idle::watcher() {
            watcher.stop();
        }
        w.await;
    }
    if let Some(w) = writer {
        shard.stop_store();
        w.await;
    }
    shared.publish_stats(index, &shard);
    mesh.close();
    drop(receivers);
    drop(arrivals);
    drop(flusher);
    drop(relief);
    drop(cluster_inbound);
}

/// Starts the cluster link when COREMQ_CLUSTER_NATS is set: each shard's end (link and
/// doorbell), and the link thread with its counters.
#[allow(clippy::type_complexity)]
fn start_cluster(
    config: &Config,
    shards: usize,
) -> Result<
    (
        Vec<ClusterEnd>,
        Option<(
            crate::cluster::node::LinkThread,
            Arc<crate::cluster::ClusterStats>,
        )>,
    ),
    StartError,
> {
    if config.cluster_nats.is_empty() {
        return Ok((Vec::new(), None));
    }
    let node_id = if config.node_id.is_empty() {
        // The host name, in the characters COREMQ_NODE_ID allows (a `.` would split the NATS
        // subject the node announces on).
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let id: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if id.is_empty() {
            "coremq".to_string()
        } else {
            id
        }
    } else {
        config.node_id.clone()
    };
    let mut bells = Vec::with_capacity(shards);
    let mut rings: Vec<Box<dyn Fn() + Send + Sync>> = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (bell, ringer) = crate::net::doorbell::pair()
            .map_err(|e| StartError::Host(format!("cluster: socket pair: {e}")))?;
        bells.push(bell);
        rings.push(Box::new(move || ringer.ring()));
    }
    crate::log!(
        Info,
        "cluster: node {node_id} joining through NATS {}",
        config.cluster_nats.join(",")
    );
    let links = crate::cluster::start(config.cluster_nats.clone(), node_id, rings)
        .map_err(|e| StartError::Host(format!("cluster: link thread: {e}")))?;
    let ends = links.shards.into_iter().zip(bells).collect();
    Ok((ends, Some((links.thread, links.stats))))
}

/// The node's own figures for the metrics: the cluster link's counters and each bridge's state.
fn node_source(
    cluster: Option<Arc<crate::cluster::ClusterStats>>,
    bridges: Option<Arc<BridgeBoard>>,
) -> board::NodeSource {
    Box::new(move || {
        let cluster = cluster.as_ref().map(|c| {
            let c = c.snapshot();
            crate::metrics::ClusterFigures {
                connected: c.connected,
                published: c.published,
                received: c.received,
                dropped: c.dropped,
                duplicates: c.duplicates,
                takeovers: c.takeovers,
            }
        });
        let mut bridges: Vec<_> = bridges
            .as_ref()
            .map(|b| b.status())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, s)| crate::metrics::BridgeFigures {
                name,
                connected: s.connected,
                connections: s.connections,
                sent: s.sent_out,
                received: s.received_in,
            })
            .collect();
        bridges.sort_by(|a, b| a.name.cmp(&b.name));
        crate::metrics::NodeFigures { cluster, bridges }
    })
}

/// Hands what the cluster sends this shard to it, sleeping on the shard's doorbell between
/// batches.
async fn cluster_inbound(shard: Rc<Shard>, bell: crate::net::doorbell::BellFd) {
    let mut bell = crate::net::doorbell::Bell::new(bell);
    loop {
        let Some(link) = shard.cluster() else { return };
        let mut handled = 0u32;
        while let Some(m) = link.try_recv() {
            shard.on_cluster(m);
            handled += 1;
            if handled.is_multiple_of(256) {
                glommio::yield_if_needed().await;
            }
        }
        link.sleeping();
        // Anything queued before the mark rang no bell.
        if let Some(m) = link.try_recv() {
            shard.on_cluster(m);
            continue;
        }
        if !bell.wait().await {
            return;
        }
    }
}

/// This shard's broker state, with the access rules as last loaded and the authenticators.
fn new_shard(shared: &ShardShared, mesh: Rc<Mesh>, index: usize) -> Shard {
    let config = &shared.config;
    let mut shard = Shard::new(Rc::new((**config).clone()), mesh);
    shard.set_authenticator(shared.authenticator.as_ref().map(|make| make()));
    let generation = shared.security.generation.load(Ordering::SeqCst);
    install_security(&shard, config, &shared.security);
    shared.security.installed[index].store(generation, Ordering::SeqCst);
    if config.password_file.is_some() {
        shard.enable_scram(shared.security.mock_key);
    }
    shard
}

/// Parked connections' sockets (COREMQ_PARK_IDLE_AFTER), watched from a blocking-pool thread.
fn start_idle_watcher(shard: &Rc<Shard>, index: usize) -> Option<glommio::Task<()>> {
    if shard.config.park_idle_after.is_zero() {
        return None;
    }
    match crate::net::idle::start(shard.clone()) {
        Ok(run) => Some(glommio::spawn_local(run)),
        Err(e) => {
            crate::log!(
                Warn,
                "shard {index}: connections will not park (epoll: {e})"
            );
            None
        }
    }
}

/// The shard's tick until a stop is asked for: session timers, flow-control holds, memory given
/// back once a second, reloaded access rules, the stats `Broker::stats` reads, snapshots for the
/// metrics board and (shard 0) the `$SYS` topics.
async fn serve_until_stopped(
    shared: &ShardShared,
    shard: &Rc<Shard>,
    index: usize,
    mut bridges: Option<&mut ShardBridges>,
) {
    let mut generation = shared.security.generation.load(Ordering::SeqCst);
    let mut collected = Instant::now();
    let mut sys = (index == 0 && !shared.config.sys_interval.is_zero())
        .then(|| SysPublisher::new(shared.config.sys_interval));
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(b) = bridges.as_deref_mut() {
            b.tick(shard);
        }
        glommio::timer::sleep(tick_interval(shard, Instant::now())).await;
        let now = Instant::now();
        shard.tick(now);
        shared.metrics.answer(index, shard);
        if let Some(sys) = sys.as_mut() {
            sys.tick(&shared.metrics, shard, now);
        }
        if now.duration_since(collected) >= COLLECT_EVERY {
            collected = now;
            shard.compact();
            return_free_memory();
        }
        let latest = shared.security.generation.load(Ordering::SeqCst);
        if latest != generation {
            generation = latest;
            install_security(shard, &shared.config, &shared.security);
            shared.security.installed[index].store(generation, Ordering::SeqCst);
        }
        shared.publish_stats(index, shard);
    }
}

/// How long the shard sleeps before its next tick: `STOP_POLL` while it serves live
/// connections, otherwise up to `QUIET_TICK` but never past its next timer.
fn tick_interval(shard: &Shard, now: Instant) -> Duration {
    if !shard.is_quiet() {
        return STOP_POLL;
    }
    let until_due = shard
        .next_due()
        .map_or(QUIET_TICK, |t| t.saturating_duration_since(now));
    until_due.clamp(STOP_POLL, QUIET_TICK)
}

/// Shard 0's `$SYS` publisher: every interval it asks the board for every shard's snapshot and,
/// once all have answered (a tick or two later), publishes the totals.
struct SysPublisher {
    every: Duration,
    next: Instant,
    /// The board generation asked for and not yet published.
    pending: Option<u64>,
    tree: SysTree,
}

impl SysPublisher {
    fn new(every: Duration) -> Self {
        Self {
            every,
            // The first publication comes a tick after start, so a client subscribing at once
            // finds the retained topics soon.
            next: Instant::now(),
            pending: None,
            tree: SysTree::default(),
        }
    }

    fn tick(&mut self, board: &MetricsBoard, shard: &Shard, now: Instant) {
        if let Some(generation) = self.pending {
            if let Some(shards) = board.ready(generation) {
                self.pending = None;
                let uptime = board.uptime().as_secs();
                let topics = self
                    .tree
                    .update(&shards, now, uptime, env!("CARGO_PKG_VERSION"));
                shard.publish_sys(topics);
            }
        }
        if now >= self.next && self.pending.is_none() {
            self.next = now + self.every;
            self.pending = Some(board.request());
        }
    }
}

impl ShardShared {
    /// Copies the shard's stats where `Broker::stats` reads them.
    fn publish_stats(&self, index: usize, shard: &Shard) {
        if let Ok(mut slot) = self.board[index].lock() {
            *slot = shard.stats();
        }
    }
}

/// The password and ACL files as last read, shared with every shard; a new `generation` tells
/// shards to rebuild their `Security` from them.
struct SecurityBoard {
    generation: AtomicU64,
    /// The generation each shard runs (by shard index), which `Broker::reload` waits for.
    installed: Vec<AtomicU64>,
    files: Mutex<SecurityFiles>,
    /// Shared by every shard's SCRAM method (stable fake salts for unknown users).
    mock_key: [u8; 32],
}

impl SecurityBoard {
    fn files(&self) -> SecurityFiles {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Builds this shard's `Security` from the board's files (validated when read).
fn install_security(shard: &Shard, config: &Config, board: &SecurityBoard) {
    match Security::build(config, &board.files()) {
        Ok(s) => shard.set_security(s),
        Err(e) => crate::log!(Error, "keeping the previous access rules: {e}"),
    }
}

/// How often a shard hands memory it freed back to the operating system.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// mimalloc delays giving freed pages back and runs the delayed work only when the thread
/// allocates or frees again, so after a burst (a connection storm: every CONNECT's state is
/// transient) a quiet shard would keep its peak memory. Run once a second on every shard.
fn return_free_memory() {
    // SAFETY: mi_collect takes no pointers; it only walks the calling thread's mimalloc heap
    // and runs the purges mimalloc delayed (harmless when mimalloc is not the global allocator,
    // as in the tests).
    unsafe { libmimalloc_sys::mi_collect(false) }
}
