//! The link thread: the NATS client (async-nats on a single-threaded tokio runtime), the node's
//! NATS subscriptions, and the two JetStream KV buckets. See the module docs of `cluster`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_lite::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::interest::{self, Announce, Wanted};
use super::subject::{self, filter_subjects, kv_key, kv_text, queue_group, topic_subject};
use super::{
    decode_message, encode_message, ClusterStats, FromCluster, SeenWindow, ShardInbox, ToCluster,
};
use crate::message::Message;
use crate::protocol::{ClientId, MqttString, QoS, TopicFilter, TopicName};

const CLIENTS_BUCKET: &str = "coremq_clients";
const RETAINED_BUCKET: &str = "coremq_retained";
/// A client id's entry is kept this long after its last connection (only its node's name).
const CLIENT_ENTRY_AGE: Duration = Duration::from_secs(24 * 3600);

/// What the link thread needs to start.
pub struct NodeConfig {
    pub urls: Vec<String>,
    pub node_id: String,
}

/// The running link thread; dropping it stops the thread (its NATS connection closes).
pub struct LinkThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LinkThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the link thread.
pub fn start(
    config: NodeConfig,
    rx: mpsc::Receiver<ToCluster>,
    shard_ctl: mpsc::UnboundedReceiver<ToCluster>,
    inboxes: Vec<ShardInbox>,
    stats: Arc<ClusterStats>,
) -> std::io::Result<LinkThread> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("coremq-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::log!(
                        Error,
                        "cluster: cannot start the link thread's runtime: {e}"
                    );
                    return;
                }
            };
            let node = Node::new(config, inboxes, stats);
            rt.block_on(node.run(rx, shard_ctl, stop_rx));
        })?;
    Ok(LinkThread {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// State shared by the link thread's tasks (all on the one thread; the mutexes are never
/// contended).
struct Shared {
    /// This node's id (the registry's values, announcement subjects).
    me: String,
    /// The origin its messages carry: the node id and a number drawn at start, so that the
    /// sequence numbers of a restarted node are never taken for the old ones' duplicates.
    origin: String,
    inboxes: Vec<ShardInbox>,
    stats: Arc<ClusterStats>,
    seen: Mutex<HashMap<String, SeenWindow>>,
    /// Counts the connections to NATS, so that the end of an older one's learning window
    /// (`LEARN_FILTERS`) does not end a newer one's.
    connections: AtomicU64,
}

/// How long after connecting to NATS (and asking every node for its filters) the shards send
/// every message to NATS rather than only those some node is known to want: the answers come
/// within milliseconds, this is the margin for a loaded host.
const LEARN_FILTERS: Duration = Duration::from_secs(2);

impl Shared {
    /// The shard a topic's messages go to (always the same one, so their order holds).
    fn shard_of(&self, topic: &str) -> &ShardInbox {
        let mut h: u32 = 0x811c_9dc5;
        for &b in topic.as_bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        &self.inboxes[h as usize % self.inboxes.len()]
    }

    fn to_all(&self, make: impl Fn() -> FromCluster) {
        for inbox in &self.inboxes {
            inbox.deliver(make(), &self.stats);
        }
    }
}

struct Node {
    config: NodeConfig,
    shared: Arc<Shared>,
    /// NATS subscriptions by filter (plain) or `$share/GROUP/FILTER` (shared): how many shards
    /// want it, and the tasks reading its subjects.
    subs: HashMap<String, (usize, Vec<JoinHandle<()>>)>,
    seq: u64,
    clients: Option<kv::Store>,
    retained: Option<kv::Store>,
    /// Key-value writes, done in order by one task off the loop (they wait for JetStream).
    kv_jobs: Option<mpsc::Sender<KvJob>>,
    /// The filters this node announces (plain and shared, without `$share/GROUP/`), by how many
    /// of its subscriptions in `subs` have them.
    announced: HashMap<String, usize>,
    /// What every node wants (`interest`).
    wanted: Wanted,
}

/// What the link thread's loop hears besides its shards.
enum Ctl {
    /// The NATS connection is (again) up.
    Connected,
    Announced(String, Announce),
    /// A node asks every other for its whole list.
    SyncAsked(String),
}

/// Reads the interest announcements and list requests of the other nodes.
async fn control_messages(mut sub: async_nats::Subscriber, me: String, ctl: mpsc::Sender<Ctl>) {
    while let Some(msg) = sub.next().await {
        let subject = msg.subject.as_str();
        let event = if subject == interest::SYNC {
            let from = String::from_utf8_lossy(&msg.payload).into_owned();
            if from == me {
                continue;
            }
            Ctl::SyncAsked(from)
        } else {
            let Some(node) = subject
                .strip_prefix(interest::ANNOUNCE)
                .and_then(|s| s.strip_prefix('.'))
            else {
                continue;
            };
            if node == me {
                continue;
            }
            let Some(a) = Announce::decode(&msg.payload) else {
                continue;
            };
            Ctl::Announced(node.to_string(), a)
        };
        if ctl.send(event).await.is_err() {
            return;
        }
    }
}

/// A key-value write.
enum KvJob {
    Retain(Box<Message>),
    Register(ClientId),
}

/// Carries out key-value writes one after the other (a topic's retained updates land in order).
async fn kv_writer(
    mut rx: mpsc::Receiver<KvJob>,
    clients: kv::Store,
    retained: kv::Store,
    me: String,
    origin: String,
) {
    while let Some(job) = rx.recv().await {
        match job {
            KvJob::Retain(m) => retain(&retained, &origin, *m).await,
            KvJob::Register(id) => register(&clients, &me, id).await,
        }
    }
}

impl Node {
    fn new(config: NodeConfig, inboxes: Vec<ShardInbox>, stats: Arc<ClusterStats>) -> Self {
        let shared = Arc::new(Shared {
            me: config.node_id.clone(),
            origin: format!("{}#{:08x}", config.node_id, boot_number()),
            inboxes,
            stats,
            seen: Mutex::default(),
            connections: AtomicU64::new(0),
        });
        Self {
            config,
            shared,
            subs: HashMap::new(),
            seq: 0,
            clients: None,
            retained: None,
            kv_jobs: None,
            announced: HashMap::new(),
            wanted: Wanted::default(),
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ToCluster>,
        mut shard_ctl: mpsc::UnboundedReceiver<ToCluster>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let stats = self.shared.stats.clone();
        let urls = self.config.urls.join(",");
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Ctl>(1024);
        let on_connect = ctl_tx.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("coremq {}", self.config.node_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let stats = stats.clone();
                let on_connect = on_connect.clone();
                async move {
                    use async_nats::Event;
                    match event {
                        Event::Connected => {
                            stats.connected.store(true, Ordering::Relaxed);
                            let _ = on_connect.try_send(Ctl::Connected);
                            crate::log!(Info, "cluster: connected to NATS");
                        }
                        Event::Disconnected => {
                            stats.connected.store(false, Ordering::Relaxed);
                            crate::log!(
                                Warn,
                                "cluster: NATS unreachable; serving local clients, reconnecting"
                            );
                        }
                        other => crate::log!(Debug, "cluster: NATS {other}"),
                    }
                }
            });
        let client = match options.connect(self.config.urls.clone()).await {
            Ok(c) => c,
            Err(e) => {
                crate::log!(Error, "cluster: COREMQ_CLUSTER_NATS {urls}: {e}");
                return;
            }
        };
        let mut control = Vec::new();
        for subject in [
            format!("{}.*", interest::ANNOUNCE),
            interest::SYNC.to_string(),
        ] {
            match client.subscribe(subject.clone()).await {
                Ok(sub) => control.push(tokio::spawn(control_messages(
                    sub,
                    self.config.node_id.clone(),
                    ctl_tx.clone(),
                ))),
                Err(e) => crate::log!(Error, "cluster: cannot subscribe to {subject}: {e}"),
            }
        }
        let js = jetstream::new(client.clone());
        // The buckets come up in the background: NATS may be unreachable now.
        let (kv_tx, mut kv_rx) = mpsc::channel(1);
        let setup = tokio::spawn(open_buckets(js, kv_tx));
        let mut watchers: Vec<JoinHandle<()>> = Vec::new();
        // The stop preempts whatever the loop waits for (NATS may be gone for good).
        let mut buckets_open = false;
        let work = async {
            loop {
                tokio::select! {
                    // In this order: interest before messages (a subscription's messages should
                    // find it in place).
                    biased;
                    buckets = kv_rx.recv(), if !buckets_open => {
                        buckets_open = true;
                        if let Some((clients, retained)) = buckets {
                            let shared = self.shared.clone();
                            watchers.push(tokio::spawn(watch_clients(clients.clone(), shared.clone())));
                            watchers.push(tokio::spawn(watch_retained(retained.clone(), shared)));
                            self.clients = Some(clients);
                            self.retained = Some(retained);
                            self.shared.stats.ready.store(true, Ordering::Relaxed);
                            crate::log!(Info, "cluster: client registry and retained messages open");
                        }
                    }
                    msg = shard_ctl.recv() => match msg {
                        Some(msg) => self.on_shard(&client, msg).await,
                        None => break,
                    },
                    msg = rx.recv() => match msg {
                        Some(msg) => self.on_shard(&client, msg).await,
                        None => break,
                    },
                    ctl = ctl_rx.recv() => {
                        if let Some(ctl) = ctl {
                            self.on_control(&client, ctl).await;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = &mut stop => {}
            _ = work => {}
        }
        setup.abort();
        for w in control {
            w.abort();
        }
        for w in watchers {
            w.abort();
        }
        for (_, (_, tasks)) in self.subs.drain() {
            for t in tasks {
                t.abort();
            }
        }
        // What is still buffered goes out if NATS is there; it may not be (shutting down with it).
        let _ = tokio::time::timeout(Duration::from_millis(200), client.flush()).await;
    }

    async fn on_shard(&mut self, client: &async_nats::Client, msg: ToCluster) {
        match msg {
            ToCluster::Publish(m) => {
                self.seq += 1;
                let now = Instant::now();
                let Some(bytes) = encode_message(&self.shared.origin, self.seq, &m, now) else {
                    return;
                };
                if client
                    .publish(topic_subject(m.topic.as_str()), bytes)
                    .await
                    .is_ok()
                {
                    self.shared.stats.published.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Key-value writes wait for JetStream's answer: off the loop, so that publishes and
            // interest go on meanwhile (and while NATS is away).
            ToCluster::Retain(m) => {
                if self.retained.is_some() {
                    self.write(KvJob::Retain(Box::new(m)));
                } else {
                    crate::log!(
                        Warn,
                        "cluster: retained message on {} not shared (NATS JetStream not reachable)",
                        m.topic.as_str()
                    );
                }
            }
            ToCluster::Interest { filter, add } => {
                self.interest(client, filter.clone(), add, None).await;
            }
            ToCluster::Shared { group, filter, add } => {
                let key = format!("$share/{group}/{filter}");
                self.interest(client, key, add, Some((group, filter))).await;
            }
            ToCluster::Connected(id) => {
                if self.clients.is_some() {
                    self.write(KvJob::Register(id));
                }
            }
        }
    }

    async fn on_control(&mut self, client: &async_nats::Client, ctl: Ctl) {
        match ctl {
            Ctl::Connected => {
                // Until their answers are in, the shards send every message to NATS.
                let round = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
                self.shared
                    .stats
                    .interest_known
                    .store(false, Ordering::Relaxed);
                self.shared.to_all(|| FromCluster::InterestKnown(false));
                // Our list first (others may have lost it), then ask for theirs.
                self.announce_all(client).await;
                let _ = client
                    .publish(interest::SYNC, Bytes::from(self.config.node_id.clone()))
                    .await;
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(LEARN_FILTERS).await;
                    if shared.connections.load(Ordering::Relaxed) == round {
                        shared.to_all(|| FromCluster::InterestKnown(true));
                        shared.stats.interest_known.store(true, Ordering::Relaxed);
                    }
                });
            }
            Ctl::SyncAsked(from) => {
                crate::log!(Debug, "cluster: node {from} asks for every node's filters");
                self.announce_all(client).await;
            }
            Ctl::Announced(node, a) => {
                let mut changes = Vec::new();
                self.wanted.apply(&node, a, &mut changes);
                self.tell_shards(changes);
            }
        }
    }

    /// Publishes this node's whole list.
    async fn announce_all(&self, client: &async_nats::Client) {
        let subject = format!("{}.{}", interest::ANNOUNCE, self.config.node_id);
        for a in Announce::whole_list(self.announced.keys()) {
            let _ = client
                .publish(subject.clone(), Bytes::from(a.encode()))
                .await;
        }
    }

    /// Tells every shard which filters some node now wants or no longer wants.
    fn tell_shards(&self, changes: Vec<interest::Change>) {
        for (filter, add) in changes {
            self.shared
                .to_all(|| FromCluster::Interest(filter.clone(), add));
        }
    }

    /// This node's subscriptions gained (`add`) or lost their last `filter`: announce it.
    async fn announce(&mut self, client: &async_nats::Client, filter: &str, add: bool) {
        let n = self.announced.entry(filter.to_string()).or_insert(0);
        let change = if add {
            *n += 1;
            (*n == 1).then(|| Announce::Add(vec![filter.to_string()]))
        } else {
            *n = n.saturating_sub(1);
            (*n == 0).then(|| {
                self.announced.remove(filter);
                Announce::Remove(vec![filter.to_string()])
            })
        };
        if let Some(a) = change {
            let subject = format!("{}.{}", interest::ANNOUNCE, self.config.node_id);
            let _ = client.publish(subject, Bytes::from(a.encode())).await;
        }
    }

    /// Queues a key-value write for the writer task (dropped and counted when it is far behind).
    fn write(&mut self, job: KvJob) {
        let (Some(clients), Some(retained)) = (self.clients.clone(), self.retained.clone()) else {
            return;
        };
        let tx = self.kv_jobs.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(super::QUEUE);
            let me = self.config.node_id.clone();
            let origin = self.shared.origin.clone();
            tokio::spawn(kv_writer(rx, clients, retained, me, origin));
            tx
        });
        if tx.try_send(job).is_err() {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a shard's interest in `key`; subscribes in NATS on the first, unsubscribes on the
    /// last. `shared`: the group and filter of a shared subscription (a queue group).
    async fn interest(
        &mut self,
        client: &async_nats::Client,
        key: String,
        add: bool,
        shared: Option<(String, String)>,
    ) {
        let filter = match &shared {
            Some((_, f)) => f.clone(),
            None => key.clone(),
        };
        let entry = self.subs.entry(key.clone()).or_insert((0, Vec::new()));
        if !add {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                if let Some((_, tasks)) = self.subs.remove(&key) {
                    for t in tasks {
                        t.abort();
                    }
                }
                self.announce(client, &filter, false).await;
                if shared.is_some() {
                    let mut changes = Vec::new();
                    self.wanted.own_shared(&filter, false, &mut changes);
                    self.tell_shards(changes);
                }
            }
            return;
        }
        entry.0 += 1;
        if entry.0 > 1 {
            return;
        }
        let group = shared
            .as_ref()
            .and_then(|_| MqttString::copy_from(&key).ok())
            .and_then(|k| TopicFilter::new(k).ok());
        let mut tasks = Vec::new();
        for subject in filter_subjects(&filter) {
            let sub = match &shared {
                None => client.subscribe(subject.clone()).await,
                Some((g, f)) => {
                    client
                        .queue_subscribe(subject.clone(), queue_group(g, f))
                        .await
                }
            };
            match sub {
                Ok(sub) => tasks.push(tokio::spawn(forward(
                    sub,
                    self.shared.clone(),
                    group.clone(),
                ))),
                Err(e) => crate::log!(Warn, "cluster: cannot subscribe to {subject}: {e}"),
            }
        }
        if let Some(e) = self.subs.get_mut(&key) {
            e.1 = tasks;
        }
        // Announced once subscribed, so a node that starts sending finds the subscription.
        self.announce(client, &filter, true).await;
        if shared.is_some() {
            let mut changes = Vec::new();
            self.wanted.own_shared(&filter, true, &mut changes);
            self.tell_shards(changes);
        }
    }
}

/// A retained message published here: into the bucket (an empty payload clears the topic).
async fn retain(store: &kv::Store, origin: &str, m: Message) {
    let key = kv_key(m.topic.as_str());
    let done = if m.payload.is_empty() {
        store.delete(&key).await.map_err(|e| e.to_string())
    } else {
        match encode_message(origin, 0, &m, Instant::now()) {
            Some(bytes) => store
                .put(&key, bytes)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    };
    if let Err(e) = done {
        crate::log!(Warn, "cluster: retained message on {key}: {e}");
    }
}

/// Records that `id` connected here, with compare-and-set on the entry's revision: of two nodes
/// racing for one id, the loser retries against the winner's entry, and whichever writes last
/// holds the id (the other sees it in its watch and disconnects its client).
async fn register(store: &kv::Store, me: &str, id: ClientId) {
    let key = kv_key(id.as_str());
    let me = Bytes::copy_from_slice(me.as_bytes());
    for _ in 0..8 {
        let written = match store.entry(key.clone()).await {
            Ok(None) => store
                .create(&key, me.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(Some(e)) if e.value == me && e.operation == kv::Operation::Put => return,
            Ok(Some(e)) => store
                .update(&key, me.clone(), e.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(()) => return,
            Err(e) => crate::log!(Debug, "cluster: registering client {key}: {e}; again"),
        }
    }
    crate::log!(Warn, "cluster: could not register client {key}");
}

/// Opens (or creates) the two buckets, retrying until NATS JetStream answers.
async fn open_buckets(js: jetstream::Context, done: mpsc::Sender<(kv::Store, kv::Store)>) {
    let mut wait = Duration::from_millis(200);
    loop {
        let clients = bucket(&js, CLIENTS_BUCKET, CLIENT_ENTRY_AGE).await;
        let retained = bucket(&js, RETAINED_BUCKET, Duration::ZERO).await;
        match (clients, retained) {
            (Ok(c), Ok(r)) => {
                let _ = done.send((c, r)).await;
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                crate::log!(Warn, "cluster: JetStream key-value buckets not ready: {e}");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// The bucket `name`, created if missing: three replicas when the NATS cluster has three
/// servers or more, else one. The bucket's stream is created directly, with the settings of a
/// key-value bucket (`KV_<name>` on `$KV.<name>.>`, one value per key): async-nats's own
/// `create_key_value` first reads the account's JetStream info, which it cannot parse from
/// nats-server 2.9 (Debian 12's).
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let mut last = String::new();
    for replicas in [3, 1] {
        let config = jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas,
            ..Default::default()
        };
        match js.create_stream(config).await {
            Ok(_) => {}
            Err(e) => last = e.to_string(),
        }
        // Created now, or by another node meanwhile.
        if let Ok(store) = js.get_key_value(name).await {
            return Ok(store);
        }
    }
    Err(format!("bucket {name}: {last}"))
}

/// Reads one NATS subscription and hands its messages to the shards: plain ones (`group`
/// `None`) once per node whatever number of subscriptions they came through, and never this
/// node's own (delivered here already); shared ones to this node's members of `group`.
async fn forward(mut sub: async_nats::Subscriber, shared: Arc<Shared>, group: Option<TopicFilter>) {
    while let Some(msg) = sub.next().await {
        let now = Instant::now();
        let Some((origin, seq, m)) = decode_message(&msg.payload, now) else {
            continue;
        };
        let topic = m.topic.as_str().to_string();
        let out = match &group {
            Some(g) => FromCluster::Shared(g.clone(), m),
            None => {
                if origin == shared.origin {
                    continue;
                }
                let first = {
                    let mut seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.entry(origin).or_default().first_time(seq)
                };
                if !first {
                    shared.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                FromCluster::Publish(m)
            }
        };
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.shard_of(&topic).deliver(out, &shared.stats);
    }
}

/// Watches the client registry: an id another node took is closed here, if connected here.
async fn watch_clients(store: kv::Store, shared: Arc<Shared>) {
    loop {
        match store.watch_all().await {
            Ok(mut watch) => {
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    if entry.operation != kv::Operation::Put || entry.value == shared.me.as_bytes()
                    {
                        continue;
                    }
                    let Some(id) = kv_text(&entry.key).and_then(|t| ClientId::copy_from(&t).ok())
                    else {
                        continue;
                    };
                    shared.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                    shared.to_all(|| FromCluster::TakenOver(id.clone()));
                }
            }
            Err(e) => crate::log!(Warn, "cluster: watching the client registry: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Loads the retained messages and applies every later change made by other nodes.
async fn watch_retained(store: kv::Store, shared: Arc<Shared>) {
    loop {
        match store.watch_with_history(">").await {
            Ok(mut watch) => {
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    let now = Instant::now();
                    let m = match entry.operation {
                        // Every change, this node's own too, in the bucket's order: so every node
                        // ends with the bucket's last word on a topic, whoever wrote it (a node's
                        // own update is applied twice: at once, and again here).
                        kv::Operation::Put => match decode_message(&entry.value, now) {
                            Some((_, _, m)) => m,
                            None => continue,
                        },
                        kv::Operation::Delete | kv::Operation::Purge => {
                            let Some(topic) = kv_text(&entry.key)
                                .and_then(|t| MqttString::copy_from(&t).ok())
                                .and_then(|t| TopicName::new(t).ok())
                            else {
                                continue;
                            };
                            cleared(topic, now)
                        }
                    };
                    if subject::node_local(m.topic.as_str()) {
                        continue;
                    }
                    let topic = m.topic.as_str().to_string();
                    shared
                        .shard_of(&topic)
                        .deliver(FromCluster::Retained(m), &shared.stats);
                }
            }
            Err(e) => crate::log!(Warn, "cluster: watching retained messages: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The message that clears a retained topic.
fn cleared(topic: TopicName, now: Instant) -> Message {
    Message {
        topic,
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
        publisher: ClientId::default(),
        expires_at: None,
        received: now,
    }
}

/// A number drawn once per start (see `Shared::origin`).
fn boot_number() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        // The clock will do: it only has to differ from the last start's.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return nanos;
    }
    u32::from_le_bytes(b)
}
