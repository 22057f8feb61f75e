//! A coremq cluster on NATS (COREMQ_CLUSTER_NATS): three coremq nodes on 127.0.0.1, .2 and .3
//! and a three-server NATS cluster with JetStream (Debian `nats-server`), all started by each test
//! and stopped by pid. Cross-node publish/subscribe at every QoS, one copy per node with
//! overlapping filters, takeover of a client id across nodes (0x8E), retained messages for a
//! subscriber on any node (and a node started later), shared subscriptions cluster-wide, a node
//! that dies, a NATS server that dies, and NATS unreachable and back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coremq::config::Config;
use coremq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

use super::tools::Spawned;
use crate::common::{
    connect_packet, expect_message, handshake, publish, subscribe, RawClient, TempDir, TestBroker,
};

const NATS: &str = "/usr/sbin/nats-server";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One NATS server of the test's cluster.
struct NatsServer {
    child: Option<Spawned>,
    conf: PathBuf,
    pub url: String,
    addr: SocketAddr,
}

impl NatsServer {
    fn start(&mut self) {
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        let child = Command::new(NATS)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(Spawned(child));
        // Restarted with its JetStream store in place, on a loaded 2-core machine (the whole
        // suite running), a server once did not listen within 10 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server listens on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        self.child = None;
    }
}

/// Three NATS servers with JetStream, routed to each other, on 127.0.0.1, .2 and .3.
struct NatsCluster {
    servers: Vec<NatsServer>,
    _dir: TempDir,
}

impl NatsCluster {
    fn start(name: &str) -> NatsCluster {
        assert!(
            std::path::Path::new(NATS).exists(),
            "{NATS} is missing: scripts/test (the README's test command) installs it (apt: nats-server)"
        );
        let dir = TempDir::new(&format!("nats-{name}"));
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("nats-route://127.0.0.{}:{c}", i + 1))
            .collect();
        let mut servers = Vec::new();
        for (i, (client, cluster)) in ports.iter().enumerate() {
            let host = format!("127.0.0.{}", i + 1);
            let store = dir.path.join(format!("js{i}"));
            let conf = dir.path.join(format!("n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nhost: {host}\nport: {client}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: cmq\n host: {host}\n port: {cluster}\n routes: [{}] }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .unwrap();
            servers.push(NatsServer {
                child: None,
                conf,
                url: format!("nats://{host}:{client}"),
                addr: format!("{host}:{client}").parse().unwrap(),
            });
        }
        for s in &mut servers {
            s.start();
        }
        NatsCluster { servers, _dir: dir }
    }

    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }
}

/// A coremq node on 127.0.0.`n` (2 shards) joined to `urls`.
fn node(n: u8, urls: Vec<String>) -> TestBroker {
    node_with(n, urls, 2)
}

fn node_with(n: u8, urls: Vec<String>, shards: usize) -> TestBroker {
    TestBroker::start_with(shards, |c: &mut Config| {
        c.listen = format!("127.0.0.{n}:0").parse().unwrap();
        c.cluster_nats = urls;
        c.node_id = format!("node{n}");
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// `count` nodes (127.0.0.1 up), each joined.
fn joined_nodes(nats: &NatsCluster, count: u8) -> Vec<TestBroker> {
    let nodes: Vec<TestBroker> = (1..=count).map(|n| node(n, nats.urls())).collect();
    for n in &nodes {
        wait_joined(n);
    }
    nodes
}

/// Waits until `node` is connected to NATS and has its buckets.
fn wait_joined(node: &TestBroker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node
        .broker
        .cluster_counts()
        .is_some_and(|c| c.connected && c.ready)
    {
        assert!(
            Instant::now() < deadline,
            "node joined: {:?}",
            node.broker.cluster_counts()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client(node: &TestBroker, id: &str, version: ProtocolVersion) -> RawClient {
    let mut c = RawClient::connect(node.addr, version);
    handshake(&mut c, connect_packet(version, id, true));
    c
}

/// Subscribes and waits until a message published by `from` reaches `sub` — NATS
/// subscriptions of another node are in place asynchronously.
fn subscribe_across(
    sub: &mut RawClient,
    filter: &str,
    qos: QoS,
    from: &mut RawClient,
    probe: &str,
) {
    subscribe(sub, filter, qos);
    let what = format!("{filter} reached across nodes");
    publish_until_received(from, sub, probe, Duration::from_secs(10), &what);
}

/// Publishes probes (QoS 0) on `topic` until one reaches `to`, within `patience`; then lets the
/// later probes arrive and drops them.
fn publish_until_received(
    from: &mut RawClient,
    to: &mut RawClient,
    topic: &str,
    patience: Duration,
    what: &str,
) {
    let deadline = Instant::now() + patience;
    for i in 0.. {
        publish(from, topic, format!("probe {i}"), QoS::AtMostOnce);
        to.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let got = to.try_recv();
        to.stream
            .set_read_timeout(Some(crate::common::PATIENCE))
            .unwrap();
        if let Some(Packet::Publish(p)) = got {
            to.acknowledge(&p);
            to.drain(Duration::from_millis(500));
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
    }
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

#[test]
fn cluster_routes_across_nodes_at_every_qos_once_per_node() {
    let nats = NatsCluster::start("routes");
    // The subscribers' node has one shard (no peers to tell about a filter: the cluster still
    // must hear of it), the others two.
    let nodes: Vec<TestBroker> = (1..=3)
        .map(|n| node_with(n, nats.urls(), if n == 1 { 1 } else { 2 }))
        .collect();
    for n in &nodes {
        wait_joined(n);
    }
    let mut sub = client(&nodes[0], "sub-1", ProtocolVersion::V5);
    // Overlapping filters: this node has two NATS subscriptions matching each message.
    let mut overlap = client(&nodes[0], "sub-overlap", ProtocolVersion::V3_1_1);
    subscribe(&mut overlap, "t/+", QoS::ExactlyOnce);
    let mut pub2 = client(&nodes[1], "pub-2", ProtocolVersion::V3_1_1);
    let mut pub3 = client(&nodes[2], "pub-3", ProtocolVersion::V5);
    subscribe_across(&mut sub, "t/#", QoS::ExactlyOnce, &mut pub2, "t/probe");
    overlap.drain(Duration::from_millis(300));
    let before = nodes[0].broker.cluster_counts().unwrap();
    for qos in QOS {
        let q = qos as u8;
        for (p, from) in [(&mut pub2, 2), (&mut pub3, 3)] {
            let topic = format!("t/q{q}-from{from}");
            publish(p, &topic, format!("{q} from {from}"), qos);
            let m = expect_message(&mut sub, &topic, format!("{q} from {from}"));
            assert_eq!(m.qos, qos, "QoS kept across nodes");
            sub.acknowledge(&m);
            let m = expect_message(&mut overlap, &topic, format!("{q} from {from}"));
            overlap.acknowledge(&m);
        }
    }
    // One copy each, though node 1 subscribed in NATS to t.> and t.* (and t).
    sub.expect_silence(Duration::from_millis(500));
    overlap.expect_silence(Duration::from_millis(100));
    let after = nodes[0].broker.cluster_counts().unwrap();
    assert_eq!(after.received - before.received, 6, "{before:?} {after:?}");
    assert!(
        after.duplicates > before.duplicates,
        "copies through the second subscription dropped"
    );
    // Nodes without a subscriber are not sent anything.
    assert_eq!(nodes[2].broker.cluster_counts().unwrap().received, 0);
    // And what no node wants does not go to NATS at all.
    let sent = nodes[1].broker.cluster_counts().unwrap().published;
    for i in 0..10 {
        publish(
            &mut pub2,
            &format!("nobody/{i}"),
            "stays here",
            QoS::AtLeastOnce,
        );
    }
    publish(&mut pub2, "t/last", "wanted", QoS::AtLeastOnce);
    let m = expect_message(&mut sub, "t/last", "wanted");
    sub.acknowledge(&m);
    assert_eq!(
        nodes[1].broker.cluster_counts().unwrap().published,
        sent + 1
    );
    // The same figures on /metrics.
    let scrape = crate::common::scrape_until(&nodes[0], "cluster figures", |s| {
        s.sum("coremq_cluster_connected", &[]) == 1.0
            && s.sum("coremq_cluster_messages_total", &[("direction", "in")]) >= 7.0
            && s.sum("coremq_cluster_duplicates_total", &[]) >= 1.0
    });
    let (ok, findings) = super::metrics::promtool(&["check", "metrics"], &scrape.text);
    assert!(ok, "promtool: {findings}");
}

#[test]
fn cluster_client_id_taken_over_across_nodes() {
    let nats = NatsCluster::start("takeover");
    let nodes = joined_nodes(&nats, 2);
    let mut first = client(&nodes[0], "roaming-device", ProtocolVersion::V5);
    crate::common::ping(&mut first);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = client(&nodes[1], "roaming-device", ProtocolVersion::V5);
    // [MQTT-3.1.4-2] the old connection is told and closed.
    first.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
    crate::common::ping(&mut second);
    assert!(nodes[0].broker.cluster_counts().unwrap().takeovers >= 1);
    // And back: the connection on node 2 goes.
    let _third = client(&nodes[0], "roaming-device", ProtocolVersion::V5);
    second.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER);
}

#[test]
fn cluster_retained_messages_reach_subscribers_on_every_node() {
    let nats = NatsCluster::start("retained");
    let mut nodes: Vec<TestBroker> = (1..=2).map(|n| node(n, nats.urls())).collect();
    for n in &nodes {
        wait_joined(n);
    }
    let mut p = client(&nodes[0], "retainer", ProtocolVersion::V3_1_1);
    p.send(&crate::common::retained_publish(
        "r/a",
        "kept",
        QoS::AtLeastOnce,
        1,
    ));
    p.finish_publish(crate::common::packet_id(1), QoS::AtLeastOnce);
    p.send(&crate::common::retained_publish(
        "r/b",
        "to clear",
        QoS::AtMostOnce,
        0,
    ));
    p.send(&crate::common::retained_publish(
        "r/b",
        "",
        QoS::AtMostOnce,
        0,
    ));
    crate::common::ping(&mut p);
    // A node started afterwards loads them too.
    nodes.push(node(3, nats.urls()));
    wait_joined(&nodes[2]);
    for n in &nodes[1..] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = client(n, "reader", ProtocolVersion::V3_1_1);
            subscribe(&mut s, "r/#", QoS::AtLeastOnce);
            s.stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            if let Some(Packet::Publish(m)) = s.try_recv() {
                assert_eq!((m.topic.as_str(), &m.payload[..]), ("r/a", &b"kept"[..]));
                assert!(m.retain, "sent as retained [MQTT-3.3.1-8]");
                s.acknowledge(&m);
                s.stream
                    .set_read_timeout(Some(crate::common::PATIENCE))
                    .unwrap();
                s.expect_silence(Duration::from_millis(300));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "retained message on another node"
            );
        }
    }
}

#[test]
fn cluster_shared_subscription_delivers_each_message_to_one_member_cluster_wide() {
    let nats = NatsCluster::start("shared");
    let nodes = joined_nodes(&nats, 3);
    let mut a = client(&nodes[0], "member-a", ProtocolVersion::V5);
    let mut b = client(&nodes[1], "member-b", ProtocolVersion::V5);
    subscribe(&mut a, "$share/workers/jobs/#", QoS::AtLeastOnce);
    subscribe(&mut b, "$share/workers/jobs/#", QoS::AtLeastOnce);
    // Both nodes' queue subscriptions are in place once a plain subscriber on each sees a probe.
    let mut pub3 = client(&nodes[2], "boss", ProtocolVersion::V3_1_1);
    for n in &nodes[..2] {
        let mut s = client(n, "probe-sub", ProtocolVersion::V3_1_1);
        subscribe_across(&mut s, "probe/#", QoS::AtMostOnce, &mut pub3, "probe/x");
    }
    std::thread::sleep(Duration::from_millis(300));
    let total = 40;
    for i in 0..total {
        publish(
            &mut pub3,
            &format!("jobs/{i}"),
            format!("job {i}"),
            QoS::AtLeastOnce,
        );
    }
    let mut got = Vec::new();
    for c in [&mut a, &mut b] {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        while let Some(Packet::Publish(m)) = c.try_recv() {
            c.acknowledge(&m);
            got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
    }
    got.sort();
    let mut want: Vec<String> = (0..total).map(|i| format!("job {i}")).collect();
    want.sort();
    assert_eq!(got, want, "each message to exactly one member");
}

#[test]
fn cluster_survives_a_node_and_a_nats_server_dying_and_nats_going_away() {
    let mut nats = NatsCluster::start("faults");
    let n1 = node(1, nats.urls());
    let mut n2 = Some(node(2, nats.urls()));
    let n3 = node(3, nats.urls());
    for n in [&n1, n2.as_ref().unwrap(), &n3] {
        wait_joined(n);
    }
    let mut sub = client(&n1, "sub", ProtocolVersion::V3_1_1);
    let mut pub3 = client(&n3, "pub", ProtocolVersion::V3_1_1);
    subscribe_across(&mut sub, "f/#", QoS::AtLeastOnce, &mut pub3, "f/probe");
    // Node 2 dies: its clients reconnect to another node, and the others go on.
    let mut on2 = client(n2.as_ref().unwrap(), "mover", ProtocolVersion::V3_1_1);
    for i in 0..30 {
        publish(
            &mut on2,
            &format!("f/before/{i}"),
            "from node 2",
            QoS::AtLeastOnce,
        );
    }
    // In order per topic; across topics, as the node's shards take them.
    let mut got: Vec<String> = (0..30)
        .map(|_| {
            let m = sub.expect_publish();
            sub.acknowledge(&m);
            m.topic.as_str().to_string()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("f/before/{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    n2 = None;
    assert!(n2.is_none());
    assert!(on2.try_recv().is_none(), "node 2's connections closed");
    let mut moved = client(&n1, "mover", ProtocolVersion::V3_1_1);
    publish(&mut moved, "local/x", "node 1 serves it", QoS::AtMostOnce);
    publish(&mut pub3, "f/1", "after node 2 died", QoS::AtLeastOnce);
    let m = expect_message(&mut sub, "f/1", "after node 2 died");
    sub.acknowledge(&m);
    // Node 2 comes back under the same id: its new messages are not taken for the old ones'
    // duplicates (its sequence numbers start again).
    n2 = Some(node(2, nats.urls()));
    wait_joined(n2.as_ref().unwrap());
    let mut back = client(n2.as_ref().unwrap(), "back", ProtocolVersion::V3_1_1);
    for i in 0..5 {
        publish(
            &mut back,
            &format!("f/after/{i}"),
            "node 2 again",
            QoS::AtLeastOnce,
        );
        let m = expect_message(&mut sub, &format!("f/after/{i}"), "node 2 again");
        sub.acknowledge(&m);
    }
    // A NATS server dies: the nodes on it reconnect to another.
    nats.servers[0].kill();
    publish_until_received(
        &mut pub3,
        &mut sub,
        "f/2",
        Duration::from_secs(20),
        "routing came back after a NATS server died",
    );
    // NATS goes away altogether: each node still serves its own clients.
    for s in &mut nats.servers {
        s.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while n1.broker.cluster_counts().unwrap().connected {
        assert!(Instant::now() < deadline, "node 1 noticed NATS went");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut local = client(&n1, "local-pub", ProtocolVersion::V3_1_1);
    publish(&mut local, "f/local", "still served", QoS::AtLeastOnce);
    let m = expect_message(&mut sub, "f/local", "still served");
    sub.acknowledge(&m);
    // NATS comes back: the node rejoins and routes across nodes again.
    for s in &mut nats.servers {
        s.start();
    }
    publish_until_received(
        &mut pub3,
        &mut sub,
        "f/3",
        Duration::from_secs(30),
        "routing came back with NATS",
    );
    // Shutting down while NATS is away does not wait for it.
    for s in &mut nats.servers {
        s.kill();
    }
    let started = Instant::now();
    drop(n1);
    drop(n3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
}
