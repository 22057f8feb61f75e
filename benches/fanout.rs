//! Fan-out: one publish delivered to N subscribers (N = 1, 10, 100, 1000), MQTT 3.1.1, 64-byte
//! payload (seeded xorshift), one topic.
//!
//! `fanout_local/{qos0,qos1+puback}/N` — the per-subscriber delivery path alone:
//! `Session::deliver` (link state from `Outbox::is_congested`, as `Shard` computes it) then
//! `Outbox::send_publish` (which encodes the PUBLISH into the connection's buffer), for each of N
//! sessions. Each outbox is drained with `take_into` right after its delivery (a writer task does
//! that once per tick; here it keeps memory flat) into a spare buffer that is cleared. At QoS 1
//! each delivery is also acknowledged (`Session::handle_puback`), so the window never fills.
//! Throughput counts deliveries.
//!
//! `fanout_shards/{1_shard,2_shards}/{wall,cpu_total,cpu_publisher}/N` — the whole path through
//! real shards: one glommio executor per shard (pinned to CPUs 0 and 1), connected by
//! `coremq::mesh::build` + `MeshEnds::connect` as the broker's runtime does, each running a real
//! `Shard` with its flusher task and one receive loop per peer (`Shard::on_mesh`). Subscribers
//! connect and subscribe through `Shard::handle_connect` / `Shard::handle_packet` (awaiting the
//! SUBACK barrier) on their client id's home shard: with 2 shards ⌈N/2⌉ live on shard 1 and ⌊N/2⌋
//! on shard 0 (N = 1: the only subscriber is remote). The publisher is a client on shard 0;
//! each iteration hands a decoded QoS 0 PUBLISH to `Shard::handle_packet`, i.e. topic checks,
//! ACL, `Message::from_publish`, the trie match and local delivery, the interest-table match and
//! one `Message` clone per interested shard into the mesh batch. Every 32 publishes (a read
//! buffer's worth of small PUBLISHes) the publisher task drains shard 0's outboxes and yields,
//! so the flusher ships the batch; shard 1 handles each batch (`on_mesh`: trie match and local
//! delivery) and drains its outboxes. Sockets are not involved: no syscalls are counted.
//!
//! Measured with `iter_custom`, from the first publish until shard 1 confirmed (a marker sent
//! after the last publish, FIFO behind it) that it handled everything:
//! - `wall`: elapsed time; both shards work in parallel, so this is the pipeline's throughput.
//! - `cpu_total`: CPU time of both shard threads (`CLOCK_THREAD_CPUTIME_ID`) — the cost of a
//!   publish summed over the cores, comparable with `fanout_local`.
//! - `cpu_publisher`: CPU time of shard 0 alone (local half + the cross-shard hand-off).
//!
//! `fanout_filtered/{plain,filtered_all,filtered_10pct}/cpu_total/N`: the same on one shard with
//! content filters (see `bench_filtered`): what filtering adds per subscription, and what it saves
//! when most subscribers' filters fail.
//!
//! Needs io_uring and a locked-memory limit as the broker does (see the README).

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use coremq::config::{Config, LogLevel};
use coremq::mesh::{self, home_shard, MeshMsg};
use coremq::message::{Delivery, Message};
use coremq::notify::Notify;
use coremq::protocol::{
    ClientId, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, Publish, QoS,
    RetainHandling, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName,
};
use coremq::session::{Limits, Link, Session};
use coremq::shard::{Client, ConnId, Outbox, Shard, Terms};

const TOPIC: &str = "sensors/building-7/floor-3/temperature";
const PAYLOAD: usize = 64;
const COUNTS: [usize; 4] = [1, 10, 100, 1000];
const V: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Publishes handled per tick on the publisher's shard before it yields.
const PER_TICK: u64 = 32;
/// Ack tokens from here up are the bench's markers, never a barrier's (those count from 1).
const MARKER: u64 = u64::MAX - 1;

/// `n` deterministic pseudo-random bytes (xorshift64, fixed seed).
fn payload(n: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn publish(qos: QoS) -> Publish {
    let mut p = Publish::new(TopicName::from_static(TOPIC).unwrap(), payload(PAYLOAD));
    p.qos = qos;
    p
}

fn qos_name(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "qos0",
        _ => "qos1+puback",
    }
}

// --- the per-subscriber path alone ----------------------------------------------------------------

fn bench_local(c: &mut Criterion) {
    let limits = Limits {
        max_inflight: 20,
        max_queued: 1000,
        max_queued_bytes: 64 << 20,
        queue_qos0: false,
    };
    let mut g = c.benchmark_group("fanout_local");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let message = Message::from_publish(
            publish(qos),
            ClientId::from_static("publisher").unwrap(),
            Instant::now(),
        );
        for n in COUNTS {
            let mut sessions: Vec<Session> = (0..n)
                .map(|i| {
                    let id = ClientId::copy_from(&format!("subscriber-{i}")).unwrap();
                    Session::new(id, V, limits)
                })
                .collect();
            let terms = Terms {
                version: V,
                keep_alive: 0,
                problem_information: true,
                max_packet_size: u32::MAX,
                alias_max: 0,
            };
            let counters = std::rc::Rc::new(coremq::metrics::Counters::default());
            let outboxes: Vec<Outbox> = (0..n)
                .map(|i| Outbox::new(ConnId(i as u64), terms, counters.clone()))
                .collect();
            let mut spare = BytesMut::new();
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(qos_name(qos), n), &n, |b, _| {
                b.iter(|| {
                    let now = Instant::now();
                    for (session, outbox) in sessions.iter_mut().zip(&outboxes) {
                        let delivery = Delivery {
                            qos,
                            ..Delivery::default()
                        };
                        let link = if outbox.is_congested(now) {
                            Link::Congested
                        } else {
                            Link::Online
                        };
                        if let Some(p) = session.deliver(black_box(&message), delivery, link, now) {
                            let id = p.packet_id;
                            outbox.send_publish(p);
                            if let Some(id) = id {
                                session.handle_puback(id);
                            }
                        }
                        outbox.take_into(&mut spare);
                        spare.clear();
                    }
                })
            });
            assert_eq!(sessions[0].drops.total(), 0, "deliveries were dropped");
            assert_eq!(sessions[0].inflight(), 0);
        }
    }
    g.finish();
}

// --- through real shards ----------------------------------------------------------------------------

/// What one run of `iters` publishes cost.
#[derive(Clone, Copy, Default)]
struct Report {
    wall: Duration,
    cpu_publisher: Duration,
    cpu_total: Duration,
}

/// Shards on their own executors, with N subscribers and one publisher, taking run requests.
struct Cluster {
    runs: Option<mpsc::Sender<u64>>,
    reports: mpsc::Receiver<Report>,
    handles: Vec<ExecutorJoinHandle<()>>,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Client ids `prefix-k` homed on `shard`, `n` of them.
fn ids_on(prefix: &str, shard: usize, shards: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|k| format!("{prefix}-{k}"))
        .filter(|id| home_shard(id.as_bytes(), shards).0 == shard)
        .take(n)
        .collect()
}

/// Connects `id` to `shard` and, with `subscribe`, subscribes it to that filter (`TOPIC`, or
/// `$filter/…/TOPIC`) at QoS 0, waiting for every shard to know (the SUBACK barrier).
async fn connect(shard: &Shard, id: &str, subscribe: Option<String>) -> Client {
    let connect = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 0,
        client_id: ClientId::copy_from(id).unwrap(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    let mut client = shard
        .handle_connect(connect, false, None)
        .unwrap_or_else(|_| panic!("CONNECT refused"));
    if let Some(filter) = subscribe {
        let options = SubscriptionOptions {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        };
        let sub = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: SubscribeProperties::default(),
            filters: vec![(TopicFilter::copy_from(&filter).unwrap(), options)],
        };
        let deferred = shard
            .handle_packet(&mut client, Packet::Subscribe(sub))
            .unwrap_or_else(|v| panic!("SUBSCRIBE refused: {}", v.what));
        for w in deferred.map(|d| d.waits).unwrap_or_default() {
            w.wait().await;
        }
    }
    client
}

/// What a writer task would do once per tick: take every queued byte (and drop it).
fn drain(outboxes: &[Rc<Outbox>], spare: &mut BytesMut) {
    for o in outboxes {
        o.take_into(spare);
        spare.clear();
    }
}

/// Shared between the shards of one cluster (atomics only: they run on different threads).
struct Board {
    /// Shards whose subscribers are all subscribed everywhere.
    ready: AtomicUsize,
    /// CPU nanoseconds of each non-publisher shard's thread as of its last marker.
    peer_cpu_ns: Vec<AtomicU64>,
}

/// What the subscribers subscribe to and what is published.
#[derive(Clone)]
struct Load {
    /// Subscriber k's filter.
    filter: fn(usize) -> String,
    payload: Bytes,
}

impl Load {
    /// `TOPIC`, 64 random bytes: the plain fan-out.
    fn plain() -> Self {
        Self {
            filter: |_| TOPIC.to_owned(),
            payload: payload(PAYLOAD),
        }
    }
}

impl Cluster {
    fn start(shards: usize, subscribers: usize) -> Cluster {
        Self::start_with(shards, subscribers, Load::plain())
    }

    fn start_with(shards: usize, subscribers: usize, load: Load) -> Cluster {
        coremq::log::set_level(LogLevel::Warn);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (run_tx, run_rx) = mpsc::channel::<u64>();
        let (report_tx, report_rx) = mpsc::channel::<Report>();
        let board = Arc::new(Board {
            ready: AtomicUsize::new(0),
            peer_cpu_ns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        });
        let mut control = Some((run_rx, report_tx));
        let mut handles = Vec::new();
        for (i, ends) in mesh::build(shards, 1024).into_iter().enumerate() {
            // Shard 0 gets ⌊N/2⌋ subscribers, the others share the rest (with 2: ⌈N/2⌉).
            let here = if i == 0 {
                subscribers / shards
            } else {
                let rest = subscribers - subscribers / shards;
                rest / (shards - 1) + usize::from(i - 1 < rest % (shards - 1))
            };
            let sub_ids = ids_on("subscriber", i, shards, here);
            let ctl = if i == 0 { control.take() } else { None };
            let board = board.clone();
            let load = load.clone();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(i % cpus))
                .name(&format!("bench-shard-{i}"))
                .io_memory(64 << 10)
                .ring_depth(256)
                .spawn(move || async move {
                    let (mesh, inbound) = ends.connect().await;
                    let mesh = Rc::new(mesh);
                    let config = Rc::new(Config {
                        shards,
                        ..Config::default()
                    });
                    let shard = Rc::new(Shard::new(config, mesh.clone()));
                    glommio::spawn_local(mesh.clone().run_flusher()).detach();
                    let mut outboxes = Vec::new();
                    let marker = Rc::new((Cell::new(false), Notify::new()));
                    let mut receivers = Vec::new();
                    // Filled in once the subscribers are connected; the receive loops read it.
                    let local: Rc<std::cell::RefCell<Vec<Rc<Outbox>>>> = Rc::default();
                    for inb in inbound {
                        let (shard, mesh, local) = (shard.clone(), mesh.clone(), local.clone());
                        let (board, marker) = (board.clone(), marker.clone());
                        receivers.push(glommio::spawn_local(async move {
                            let mut spare = BytesMut::new();
                            while let Some(batch) = inb.recv().await {
                                let mut marked = false;
                                for msg in batch {
                                    match msg {
                                        MeshMsg::Ack(t) if t >= MARKER => marked = true,
                                        other => mesh::dispatch(&*shard, other),
                                    }
                                }
                                drain(&local.borrow(), &mut spare);
                                if marked {
                                    if mesh.id().0 == 0 {
                                        marker.0.set(true);
                                        marker.1.notify();
                                    } else {
                                        let ns = thread_cpu().as_nanos() as u64;
                                        board.peer_cpu_ns[mesh.id().0].store(ns, Ordering::SeqCst);
                                        let _ = mesh.post(inb.from, MeshMsg::Ack(MARKER));
                                    }
                                }
                                glommio::yield_if_needed().await;
                            }
                        }));
                    }
                    let mut clients = Vec::new();
                    for id in &sub_ids {
                        // The subscriber's number in its id picks its filter.
                        let k: usize = id.rsplit('-').next().unwrap().parse().unwrap();
                        let c = connect(&shard, id, Some((load.filter)(k))).await;
                        outboxes.push(c.conn.clone());
                        clients.push(c);
                    }
                    *local.borrow_mut() = outboxes.clone();
                    board.ready.fetch_add(1, Ordering::SeqCst);
                    let Some((runs, reports)) = ctl else {
                        // Serve until the publisher's shard closes the mesh.
                        for r in receivers {
                            r.await;
                        }
                        mesh.close();
                        return;
                    };
                    let pub_id = ids_on("publisher", 0, shards, 1).remove(0);
                    let mut publisher = connect(&shard, &pub_id, None).await;
                    outboxes.push(publisher.conn.clone());
                    while board.ready.load(Ordering::SeqCst) < shards {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    let mut spare = BytesMut::new();
                    drain(&outboxes, &mut spare);
                    let mut publish = publish(QoS::AtMostOnce);
                    publish.payload = load.payload.clone();
                    // Every peer handled everything sent so far and noted its CPU time.
                    let sync = || async {
                        for peer in mesh.peers() {
                            marker.0.set(false);
                            let _ = mesh.post(peer, MeshMsg::Ack(MARKER));
                            while !marker.0.get() {
                                marker.1.wait().await;
                            }
                        }
                    };
                    sync().await;
                    let _ = reports.send(Report::default()); // ready
                    loop {
                        let iters = match runs.try_recv() {
                            Ok(n) => n,
                            Err(mpsc::TryRecvError::Empty) => {
                                glommio::timer::sleep(Duration::from_micros(100)).await;
                                continue;
                            }
                            Err(mpsc::TryRecvError::Disconnected) => break,
                        };
                        let peers_before: u64 = board
                            .peer_cpu_ns
                            .iter()
                            .map(|a| a.load(Ordering::SeqCst))
                            .sum();
                        let cpu_before = thread_cpu();
                        let start = Instant::now();
                        for i in 0..iters {
                            let packet = Packet::Publish(black_box(&publish).clone());
                            if shard.handle_packet(&mut publisher, packet).is_err() {
                                panic!("PUBLISH refused");
                            }
                            if (i + 1) % PER_TICK == 0 || i + 1 == iters {
                                drain(&outboxes, &mut spare);
                                futures_lite::future::yield_now().await;
                            }
                        }
                        sync().await;
                        let wall = start.elapsed();
                        let cpu_publisher = thread_cpu() - cpu_before;
                        let peers_after: u64 = board
                            .peer_cpu_ns
                            .iter()
                            .map(|a| a.load(Ordering::SeqCst))
                            .sum();
                        let cpu_total =
                            cpu_publisher + Duration::from_nanos(peers_after - peers_before);
                        let report = Report {
                            wall,
                            cpu_publisher,
                            cpu_total,
                        };
                        if reports.send(report).is_err() {
                            break;
                        }
                    }
                    drop(clients);
                    mesh.close();
                    for r in receivers {
                        r.await;
                    }
                })
                .expect("cannot start a shard executor (io_uring, memlock?)");
            handles.push(handle);
        }
        // The publisher's shard says when everything is subscribed.
        report_rx.recv().expect("a shard failed during set-up");
        Cluster {
            runs: Some(run_tx),
            reports: report_rx,
            handles,
        }
    }

    fn run(&self, iters: u64) -> Report {
        self.runs.as_ref().unwrap().send(iters).unwrap();
        self.reports.recv().expect("the publisher's shard stopped")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.runs.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn bench_shards(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_shards");
    for shards in [1usize, 2] {
        let name = if shards == 1 { "1_shard" } else { "2_shards" };
        for n in COUNTS {
            let cluster = Cluster::start(shards, n);
            g.throughput(Throughput::Elements(n as u64));
            for (what, pick) in [
                ("wall", (|r: &Report| r.wall) as fn(&Report) -> Duration),
                ("cpu_total", |r: &Report| r.cpu_total),
                ("cpu_publisher", |r: &Report| r.cpu_publisher),
            ] {
                if shards == 1 && what == "cpu_publisher" {
                    continue; // the same as cpu_total
                }
                g.bench_with_input(BenchmarkId::new(format!("{name}/{what}"), n), &n, |b, _| {
                    b.iter_custom(|iters| pick(&cluster.run(iters)))
                });
            }
        }
    }
    g.finish();
}

/// `fanout_filtered/{plain,filtered_all,filtered_10pct}/{cpu_total}/N`: one shard, N QoS 0
/// subscribers of one topic, a 64-byte JSON payload (`{"id": 3, "temp": 21.5, ...}`): without
/// filters; each with `temp > 0` (every message passes); each with `id == k % 10` (a tenth
/// pass). Throughput counts subscribers (matched by the trie), so the time per element is the
/// cost per subscription of a publish, filter evaluation included.
fn bench_filtered(c: &mut Criterion) {
    let json =
        Bytes::from_static(br#"{"id": 3, "temp": 21.5, "site": "north", "pad": "xxxxxxxxxxxxx"}"#);
    assert_eq!(json.len(), PAYLOAD);
    let loads: [(&str, Load); 3] = [
        (
            "plain",
            Load {
                filter: |_| TOPIC.to_owned(),
                payload: json.clone(),
            },
        ),
        (
            "filtered_all",
            Load {
                filter: |_| format!("$filter/temp > 0/{TOPIC}"),
                payload: json.clone(),
            },
        ),
        (
            "filtered_10pct",
            Load {
                filter: |k| format!("$filter/id == {}/{TOPIC}", k % 10),
                payload: json.clone(),
            },
        ),
    ];
    let mut g = c.benchmark_group("fanout_filtered");
    for n in [1usize, 10, 1000] {
        for (name, load) in &loads {
            let cluster = Cluster::start_with(1, n, load.clone());
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/cpu_total"), n),
                &n,
                |b, _| b.iter_custom(|iters| cluster.run(iters).cpu_total),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench_local, bench_shards, bench_filtered);
criterion_main!(benches);
