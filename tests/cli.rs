//! The `coremq` binary as an operator meets it: `--help` lists every flag, bad configuration
//! exits with status 2 and says what is wrong, and a start on an ephemeral port serves MQTT and
//! stops cleanly on SIGTERM.
//!
//! Each test runs the built binary with every inherited `COREMQ_*` variable removed, so only the
//! flags a test sets apply.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coremq::config::FLAGS;
use coremq::protocol::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};

use common::{id_on, RawClient, PATIENCE};

/// How long the broker may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The binary with a clean `COREMQ_*` environment plus `flags`.
fn coremq(flags: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coremq"));
    for (key, _) in std::env::vars() {
        if key.starts_with("COREMQ_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(flags.iter().copied());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("coremq runs")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let out = run(coremq(&[]).arg("--help"));
    assert!(out.status.success(), "coremq --help: {}", out.status);
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    for flag in FLAGS {
        let line = help
            .lines()
            .find(|l| l.split_whitespace().next() == Some(flag.name))
            .unwrap_or_else(|| panic!("{} missing from --help:\n{help}", flag.name));
        assert!(
            line.contains(&format!("(default: {})", flag.default)),
            "{}'s default {:?} missing from its --help line {line:?}",
            flag.name,
            flag.default
        );
    }
}

#[test]
fn bad_flag_value_exits_2_naming_the_flag_and_what_it_accepts() {
    let out = run(&mut coremq(&[("COREMQ_MAX_PACKET_SIZE", "lots")]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    let accepts = FLAGS
        .iter()
        .find(|f| f.name == "COREMQ_MAX_PACKET_SIZE")
        .expect("the flag exists")
        .accepts;
    for part in ["COREMQ_MAX_PACKET_SIZE", "\"lots\"", accepts] {
        assert!(err.contains(part), "{part:?} missing from {err:?}");
    }
}

#[test]
fn unknown_coremq_variable_exits_2_naming_it() {
    let out = run(&mut coremq(&[("COREMQ_MAX_PAKET_SIZE", "1MiB")]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("COREMQ_MAX_PAKET_SIZE"), "{err:?}");
    assert!(err.contains("not a coremq flag"), "{err:?}");
}

/// A broker child process, stopped and reaped (only this pid) if the test fails midway.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// The exit status, or a panic after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for coremq") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "coremq did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A raw MQTT 3.1.1 client connected as `id`, having received a successful CONNACK.
fn connect(addr: SocketAddr, id: &str) -> RawClient {
    let mut client = RawClient::connect(addr, ProtocolVersion::V3_1_1);
    client.send(&Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        client_id: MqttString::copy_from(id).unwrap(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    })));
    match client.expect_packet() {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

#[test]
fn starts_on_an_ephemeral_port_serves_mqtt_and_exits_0_on_sigterm() {
    const SHARDS: usize = 2;
    let child = coremq(&[
        ("COREMQ_LISTEN", "127.0.0.1:0"),
        ("COREMQ_SHARDS", "2"),
        ("COREMQ_LOG", "info"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("coremq starts");
    let mut broker = Running { child };

    // Stderr is drained on a thread for the broker's whole life, so it never blocks on a full
    // pipe; the lines reach the test through a channel.
    let stderr = broker.child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let addr: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("a \"listening on ADDR\" line on stderr");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            break addr.parse().expect("an address after \"listening on\"");
        }
    };
    assert_ne!(addr.port(), 0);

    // A subscriber and a publisher homed on different shards: the broker hands connections to
    // their home shard and routes between shards.
    let mut sub = connect(addr, &id_on(SHARDS, 0, "sub"));
    let mut publ = connect(addr, &id_on(SHARDS, 1, "pub"));
    let id = PacketId::new(1).unwrap();
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: id,
        properties: Default::default(),
        filters: vec![(
            TopicFilter::from_static("cli/#").unwrap(),
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
    }));
    assert!(matches!(sub.expect_packet(), Packet::SubAck(a) if a.packet_id == id));
    let publish = Publish::new(
        TopicName::from_static("cli/hello").unwrap(),
        Bytes::from_static(b"hi"),
    );
    publ.send(&Packet::Publish(publish.clone()));
    assert_eq!(sub.expect_packet(), Packet::Publish(publish));

    broker.sigterm();
    let status = broker.wait(STOP_LIMIT);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    // Stopping closed the client connections.
    assert_eq!(sub.expect_close(), []);
}
