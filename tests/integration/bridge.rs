//! Bridges (COREMQ_BRIDGE_FILE) against a real Mosquitto (Debian `mosquitto`) on loopback, started
//! by each test: both directions at QoS 0/1/2 with topic prefixes, over MQTT 3.1.1 (Mosquitto's
//! bridge flag) and MQTT 5 (No Local), nothing sent back over the bridge it came in on, messages
//! queued while the remote was down delivered after its restart, wrong credentials, a reload that
//! fixes them, TLS to the remote, and bridge files that stop start-up.

use std::path::Path;
use std::time::{Duration, Instant};

use coremq::config::Config;
use coremq::protocol::{Packet, ProtocolVersion, PublishAck, QoS};
use coremq::runtime::Broker;

use super::tools::Mosquitto;
use crate::common::pki::Pki;
use crate::common::{
    connect_packet, expect_message, handshake, publish, scrape_until, subscribe, RawClient, Scrape,
    TempDir, TestBroker,
};

/// Starts coremq (2 shards) with `bridge` as its bridge file.
fn coremq_with_bridge(dir: &TempDir, bridge: &str) -> TestBroker {
    let file = dir.path.join("bridge.conf");
    std::fs::write(&file, bridge).unwrap();
    TestBroker::start_with(2, |c: &mut Config| {
        c.bridge_file = Some(file);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// Waits until bridge `name` has connected (both sides subscribed) at least `times` times.
fn wait_connected(broker: &TestBroker, name: &str, times: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = broker
            .broker
            .bridge_status()
            .get(name)
            .copied()
            .unwrap_or_default();
        if s.connected && s.connections >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bridge {name} did not connect ({times} times): {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the remote and waits until bridge `cloud` noticed.
fn stop_remote(remote: &mut Mosquitto, broker: &TestBroker) {
    remote.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.broker.bridge_status()["cloud"].connected {
        assert!(
            Instant::now() < deadline,
            "the bridge noticed the remote went"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(addr: std::net::SocketAddr, id: &str, clean: bool) -> RawClient {
    let mut c = RawClient::connect(addr, ProtocolVersion::V3_1_1);
    handshake(&mut c, connect_packet(ProtocolVersion::V3_1_1, id, clean));
    c
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// The topic lines of the relay tests: one rule per direction, each with a prefix on one side,
/// and one both ways.
const TOPICS: &str = "topic out/# out 2 \"\" remote/\n\
                      topic in/# in 2 local/ \"\"\n\
                      topic both/# both 2\n";

fn relays_both_ways(version: &str) {
    let remote = Mosquitto::start(&format!("relay-{version}"), "allow_anonymous true");
    let dir = TempDir::new(&format!("bridge-relay-{version}"));
    let bridge = format!(
        "# as in mosquitto.conf\nconnection cloud\naddress 127.0.0.1:{}\n{TOPICS}\
         bridge_protocol_version {version}\nrestart_timeout 1\n",
        remote.port
    );
    let broker = coremq_with_bridge(&dir, &bridge);
    wait_connected(&broker, "cloud", 1);
    let mut here = client(broker.addr, "here-sub", true);
    subscribe(&mut here, "local/#", QoS::ExactlyOnce);
    subscribe(&mut here, "both/#", QoS::ExactlyOnce);
    let mut there = client(remote.addr(), "there-sub", true);
    subscribe(&mut there, "remote/#", QoS::ExactlyOnce);
    subscribe(&mut there, "both/#", QoS::ExactlyOnce);
    let mut here_pub = client(broker.addr, "here-pub", true);
    let mut there_pub = client(remote.addr(), "there-pub", true);
    for qos in QOS {
        let q = qos as u8;
        // Out, with the remote prefix added.
        publish(&mut here_pub, &format!("out/q{q}"), format!("out {q}"), qos);
        let p = expect_message(&mut there, &format!("remote/out/q{q}"), format!("out {q}"));
        assert_eq!(p.qos, qos, "QoS kept end to end");
        there.acknowledge(&p);
        // In, with the local prefix added.
        publish(&mut there_pub, &format!("in/q{q}"), format!("in {q}"), qos);
        let p = expect_message(&mut here, &format!("local/in/q{q}"), format!("in {q}"));
        assert_eq!(p.qos, qos);
        here.acknowledge(&p);
        // Both ways: each side's subscriber gets exactly one copy.
        publish(&mut here_pub, &format!("both/l{q}"), "from here", qos);
        let p = expect_message(&mut here, &format!("both/l{q}"), "from here");
        here.acknowledge(&p);
        let p = expect_message(&mut there, &format!("both/l{q}"), "from here");
        there.acknowledge(&p);
        publish(&mut there_pub, &format!("both/r{q}"), "from there", qos);
        let p = expect_message(&mut there, &format!("both/r{q}"), "from there");
        there.acknowledge(&p);
        let p = expect_message(&mut here, &format!("both/r{q}"), "from there");
        here.acknowledge(&p);
    }
    // No loop: nothing came back over the bridge it went out on.
    here.expect_silence(Duration::from_millis(600));
    there.expect_silence(Duration::from_millis(200));
    // Topics outside the rules stay where they were published.
    let mut there_all = client(remote.addr(), "there-all", true);
    subscribe(&mut there_all, "elsewhere/#", QoS::AtLeastOnce);
    publish(&mut here_pub, "elsewhere/y", "stays too", QoS::AtLeastOnce);
    there_all.expect_silence(Duration::from_millis(400));
    // The bridge on /metrics: connected, and the six messages each way.
    let counted = |s: &Scrape, direction| {
        s.sum(
            "coremq_bridge_messages_total",
            &[("bridge", "cloud"), ("direction", direction)],
        )
    };
    let scrape = scrape_until(&broker, "bridge messages counted", |s| {
        counted(s, "out") == 6.0 && counted(s, "in") == 6.0
    });
    assert_eq!(
        scrape.sum("coremq_bridge_connected", &[("bridge", "cloud")]),
        1.0
    );
    let (ok, findings) = super::metrics::promtool(&["check", "metrics"], &scrape.text);
    assert!(ok, "promtool: {findings}");
}

#[test]
fn bridge_mqtt311_relays_both_directions_at_every_qos_with_prefixes() {
    relays_both_ways("mqttv311");
}

#[test]
fn bridge_mqtt5_relays_both_directions_at_every_qos_with_prefixes() {
    relays_both_ways("mqttv50");
}

#[test]
fn bridge_delivers_messages_queued_while_the_remote_was_down() {
    // Mosquitto keeps its sessions across the restart (persistence), so the remote subscriber's
    // session is there to receive what the bridge brings once it is back.
    let mut remote = Mosquitto::start("restart", "allow_anonymous true\npersistence true");
    let dir = TempDir::new("bridge-restart");
    let bridge = format!(
        "connection cloud\naddress 127.0.0.1:{}\ntopic q/# out 2\nrestart_timeout 1 2\n",
        remote.port
    );
    let broker = coremq_with_bridge(&dir, &bridge);
    wait_connected(&broker, "cloud", 1);
    let mut there = client(remote.addr(), "there-durable", false);
    subscribe(&mut there, "q/#", QoS::ExactlyOnce);
    drop(there);
    // The bridge notices (its connection ends) and closes its local side: its session here keeps
    // the QoS 1 and 2 messages.
    stop_remote(&mut remote, &broker);
    let mut here_pub = client(broker.addr, "here-pub", true);
    for i in 0..20 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publish(&mut here_pub, &format!("q/{i}"), format!("queued {i}"), qos);
    }
    // QoS 0 is not kept for a session that is away (COREMQ_QUEUE_QOS0 off).
    publish(&mut here_pub, "q/zero", "at most once", QoS::AtMostOnce);
    remote.restart();
    wait_connected(&broker, "cloud", 2);
    let mut there = client(remote.addr(), "there-durable", false);
    // Mosquitto sends them with several in flight: answer each packet as it comes.
    let mut got = Vec::new();
    let (mut received, mut released) = (0, 0);
    while got.len() < 20 || released < received {
        match there.expect_packet() {
            Packet::Publish(p) => {
                let id = p.packet_id.expect("QoS 1 or 2");
                received += usize::from(p.qos == QoS::ExactlyOnce);
                there.send(&match p.qos {
                    QoS::ExactlyOnce => Packet::PubRec(PublishAck::new(id)),
                    _ => Packet::PubAck(PublishAck::new(id)),
                });
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            Packet::PubRel(a) => {
                released += 1;
                there.send(&Packet::PubComp(PublishAck::new(a.packet_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort_by_key(|s| s[7..].parse::<u32>().unwrap());
    let want: Vec<_> = (0..20).map(|i| format!("queued {i}")).collect();
    assert_eq!(got, want, "every queued message, once");
    there.expect_silence(Duration::from_millis(500));
}

#[test]
fn bridge_queue_while_the_remote_is_down_is_bounded_and_counted() {
    let mut remote = Mosquitto::start("bounded", "allow_anonymous true\npersistence true");
    let dir = TempDir::new("bridge-bounded");
    let file = dir.path.join("bridge.conf");
    std::fs::write(
        &file,
        format!(
            "connection cloud\naddress 127.0.0.1:{}\ntopic q/# out 1\nrestart_timeout 1\n",
            remote.port
        ),
    )
    .unwrap();
    let broker = TestBroker::start_with(2, |c: &mut Config| {
        c.bridge_file = Some(file);
        c.max_queued_messages = 5;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    wait_connected(&broker, "cloud", 1);
    let mut there = client(remote.addr(), "there-durable", false);
    subscribe(&mut there, "q/#", QoS::AtLeastOnce);
    drop(there);
    stop_remote(&mut remote, &broker);
    let mut here_pub = client(broker.addr, "here-pub", true);
    for i in 0..20 {
        publish(
            &mut here_pub,
            &format!("q/{i}"),
            format!("queued {i}"),
            QoS::AtLeastOnce,
        );
    }
    // COREMQ_MAX_QUEUED_MESSAGES=5: the rest is dropped, and counted.
    scrape_until(&broker, "15 drops counted", |s| {
        s.sum("coremq_messages_dropped_total", &[("reason", "queue_full")]) == 15.0
    });
    remote.restart();
    wait_connected(&broker, "cloud", 2);
    let mut there = client(remote.addr(), "there-durable", false);
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = there.expect_publish();
        there.acknowledge(&p);
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(
        got,
        (0..5).map(|i| format!("queued {i}")).collect::<Vec<_>>()
    );
    there.expect_silence(Duration::from_millis(500));
}

/// Mosquitto with one user (`mosquitto_passwd` writes the file) and no anonymous access.
fn remote_with_user(name: &str) -> Mosquitto {
    let remote_dir = TempDir::new(&format!("bridge-users-{name}"));
    let passwords = remote_dir.path.join("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["bridge-user", "right-password"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let lines = format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    );
    let m = Mosquitto::start(name, &lines);
    // The password file was read at start.
    drop(remote_dir);
    m
}

#[test]
fn bridge_with_wrong_credentials_stays_down_until_a_reload_fixes_them() {
    let remote = remote_with_user("creds");
    let dir = TempDir::new("bridge-creds");
    let bridge = |password: &str| {
        format!(
            "connection cloud\naddress 127.0.0.1:{}\ntopic c/# out 1\n\
             remote_username bridge-user\nremote_password {password}\nrestart_timeout 1\n",
            remote.port
        )
    };
    let broker = coremq_with_bridge(&dir, &bridge("wrong-password"));
    std::thread::sleep(Duration::from_secs(2));
    let s = broker
        .broker
        .bridge_status()
        .get("cloud")
        .copied()
        .unwrap_or_default();
    assert!(!s.connected && s.connections == 0, "refused: {s:?}");
    let log = std::fs::read_to_string(remote.dir.join("mosquitto.log")).unwrap();
    assert!(
        log.contains("not authorised"),
        "Mosquitto refused the login: {log}"
    );
    // The right password, through a reload (SIGHUP in the binary).
    std::fs::write(dir.path.join("bridge.conf"), bridge("right-password")).unwrap();
    assert_eq!(broker.broker.reload_bridges(), Ok(Some(1)));
    wait_connected(&broker, "cloud", 1);
    let mut there = {
        let mut c = RawClient::connect(remote.addr(), ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, "there-sub", true);
        connect.username = Some(coremq::protocol::MqttString::copy_from("bridge-user").unwrap());
        connect.password = Some(bytes::Bytes::from_static(b"right-password"));
        handshake(&mut c, connect);
        c
    };
    subscribe(&mut there, "c/#", QoS::AtLeastOnce);
    let mut here_pub = client(broker.addr, "here-pub", true);
    publish(&mut here_pub, "c/1", "after the reload", QoS::AtLeastOnce);
    expect_message(&mut there, "c/1", "after the reload");
    // A reload with a broken file keeps the running bridge.
    std::fs::write(
        dir.path.join("bridge.conf"),
        "connection cloud\nbogus_option 1\n",
    )
    .unwrap();
    let err = broker.broker.reload_bridges().unwrap_err();
    assert!(
        err.contains("bridge.conf:2: ") && err.contains("bogus_option"),
        "{err}"
    );
    publish(&mut here_pub, "c/2", "still bridged", QoS::AtLeastOnce);
    let p = expect_message(&mut there, "c/2", "still bridged");
    there.acknowledge(&p);
}

#[test]
fn bridge_over_tls_checks_the_remote_certificate() {
    let pki = Pki::new("bridge-tls");
    let ca = pki.ca("ca");
    let server = pki.server(&ca, "server");
    let other_ca = pki.ca("other");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lines = format!(
        "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
         allow_anonymous true",
        server.cert.display(),
        server.key.display()
    );
    let remote = Mosquitto::start("tls", &lines);
    wait_port(tls_port);
    let dir = TempDir::new("bridge-tls");
    let bridge = |name: &str, cafile: &Path| {
        format!(
            "connection {name}\naddress localhost:{tls_port}\ntopic t/# out 1\ntopic b/# in 1\n\
             bridge_cafile {}\nrestart_timeout 1\n",
            cafile.display()
        )
    };
    let file = format!(
        "{}{}",
        bridge("good", &ca.pem),
        bridge("foreign", &other_ca.pem)
    );
    let broker = coremq_with_bridge(&dir, &file);
    wait_connected(&broker, "good", 1);
    let mut there = client(remote.addr(), "there-sub", true);
    subscribe(&mut there, "t/#", QoS::AtLeastOnce);
    let mut here_pub = client(broker.addr, "here-pub", true);
    publish(&mut here_pub, "t/1", "over TLS", QoS::AtLeastOnce);
    let p = expect_message(&mut there, "t/1", "over TLS");
    there.acknowledge(&p);
    // The bridge trusting another CA never connects (and so never delivers a second copy).
    there.expect_silence(Duration::from_millis(500));
    // Messages larger than TLS records (and than rustls' buffers) both ways, several at once.
    let big: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 200_000]).collect();
    for (i, payload) in big.iter().enumerate() {
        publish(
            &mut here_pub,
            &format!("t/big{i}"),
            payload,
            QoS::AtLeastOnce,
        );
    }
    for (i, payload) in big.iter().enumerate() {
        let p = expect_message(&mut there, &format!("t/big{i}"), payload);
        there.acknowledge(&p);
    }
    let mut here_sub = client(broker.addr, "here-sub", true);
    subscribe(&mut here_sub, "b/#", QoS::AtLeastOnce);
    let mut there_pub = client(remote.addr(), "there-pub", true);
    for (i, payload) in big.iter().enumerate() {
        publish(
            &mut there_pub,
            &format!("b/big{i}"),
            payload,
            QoS::AtLeastOnce,
        );
    }
    for (i, payload) in big.iter().enumerate() {
        let p = expect_message(&mut here_sub, &format!("b/big{i}"), payload);
        here_sub.acknowledge(&p);
    }
    assert_eq!(
        broker.broker.bridge_status()["good"].connections,
        1,
        "never reconnected"
    );
    let s = broker.broker.bridge_status()["foreign"];
    assert_eq!(s.connections, 0, "{s:?}");
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} listens");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bridge_file_errors_stop_start_up_naming_file_and_line() {
    let dir = TempDir::new("bridge-errors");
    let cases = [
        ("topic a/# out 1\n", 1, "before any `connection`"),
        (
            "connection a\naddress 127.0.0.1\ntopic x/# sideways 1\n",
            3,
            "direction",
        ),
        (
            "connection a\naddress 127.0.0.1\ntopic x/# out 3\n",
            3,
            "QoS",
        ),
        (
            "connection a\naddress 127.0.0.1:99999\ntopic x\n",
            2,
            "address",
        ),
        (
            "connection a\naddress h\ntopic x\nfrobnicate yes\n",
            4,
            "unknown option",
        ),
        (
            "connection a\naddress h\ntopic x\nbridge_psk 00\n",
            4,
            "not supported",
        ),
        ("connection a\naddress h\n", 1, "no topic"),
        ("connection a\ntopic x\n", 1, "no address"),
        (
            "connection a\naddress h\ntopic x/#/y\n",
            3,
            "not a valid topic filter",
        ),
        (
            "connection a\naddress h\ntopic x\nbridge_cafile /nonexistent.pem\n",
            1,
            "bridge_cafile",
        ),
    ];
    for (i, (text, line, reason)) in cases.into_iter().enumerate() {
        let file = dir.path.join(format!("bridge{i}.conf"));
        std::fs::write(&file, text).unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            bridge_file: Some(file.clone()),
            ..Config::default()
        };
        let err = match Broker::start(config) {
            Ok(_) => panic!("started with bridge file {text:?}"),
            Err(e) => e.to_string(),
        };
        let at = format!("{}:{line}: ", file.display());
        assert!(err.contains(&at) && err.contains(reason), "{text:?}: {err}");
    }
}
