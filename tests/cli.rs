//! The `coremq` binary as an operator meets it: `--help` lists every flag, bad configuration
//! exits with status 2 and says what is wrong, a start on an ephemeral port serves MQTT and
//! stops cleanly on SIGTERM, `coremq passwd` writes a password file the broker accepts, a bad
//! ACL file stops start-up, and SIGHUP reloads the ACL and the TLS certificate.
//!
//! Each test runs the built binary with every inherited `COREMQ_*` variable removed, so only the
//! flags a test sets apply.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coremq::config::FLAGS;
use coremq::protocol::{
    ClientId, Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};

use common::{id_on, RawClient, TempDir, PATIENCE};

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
        self.signal(libc::SIGTERM);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
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

/// A raw client that sent CONNECT as `id` with these credentials; the CONNACK's code.
fn try_connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    credentials: Option<(&str, &str)>,
) -> (ReasonCode, RawClient) {
    let mut client = RawClient::connect(addr, version);
    client.send(&Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: ClientId::copy_from(id).unwrap(),
        will: None,
        username: credentials.map(|(u, _)| MqttString::copy_from(u).unwrap()),
        password: credentials.map(|(_, p)| Bytes::copy_from_slice(p.as_bytes())),
        properties: Default::default(),
    })));
    match client.expect_packet() {
        Packet::ConnAck(ack) => (ack.reason_code, client),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw MQTT 3.1.1 client connected as `id`, having received a successful CONNACK.
fn connect(addr: SocketAddr, id: &str) -> RawClient {
    let (code, client) = try_connect(addr, ProtocolVersion::V3_1_1, id, None);
    assert_eq!(code, ReasonCode::SUCCESS);
    client
}

/// A broker child with 2 shards on 127.0.0.1:0, logging at info, plus `flags`; its address
/// (from the "listening on ADDR" line) and the rest of its stderr, line by line.
fn start_broker(flags: &[(&str, &str)]) -> (Running, SocketAddr, mpsc::Receiver<String>) {
    let (broker, addr, lines, _before) = start_broker_logging(flags);
    (broker, addr, lines)
}

/// `start_broker`, also returning the stderr lines before "listening on".
fn start_broker_logging(
    flags: &[(&str, &str)],
) -> (Running, SocketAddr, mpsc::Receiver<String>, Vec<String>) {
    let mut all = vec![
        ("COREMQ_LISTEN", "127.0.0.1:0"),
        ("COREMQ_SHARDS", "2"),
        ("COREMQ_LOG", "info"),
    ];
    all.extend_from_slice(flags);
    let child = coremq(&all)
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
    let mut before = Vec::new();
    let line = loop {
        let line = next_line_with(&lines, "");
        if line.contains("listening on ") {
            break line;
        }
        before.push(line);
    };
    let rest = line.split("listening on ").nth(1).unwrap_or_default();
    let addr: SocketAddr = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .expect("an address after \"listening on\"");
    assert_ne!(addr.port(), 0);
    (broker, addr, lines, before)
}

/// The next stderr line containing `text` (earlier lines are skipped); panics after
/// `PATIENCE`.
fn next_line_with(lines: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no stderr line with {text:?} within {PATIENCE:?}"),
        }
    }
}

/// Secure by default: on a non-loopback listener with no settings, anonymous clients are refused
/// (3.1.1 return code 5), and start-up says so and why; on loopback they are allowed.
#[test]
fn anonymous_clients_are_refused_on_a_network_listener_unless_allowed() {
    let (_broker, addr, _lines, before) = start_broker_logging(&[("COREMQ_LISTEN", "0.0.0.0:0")]);
    let said = before.join("\n");
    assert!(
        said.contains("anonymous clients refused on 0.0.0.0:")
            && said.contains("not a loopback address"),
        "{said}"
    );
    let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let (code, _client) = try_connect(local, ProtocolVersion::V3_1_1, "anon", None);
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);

    let (_broker, addr, _lines, before) = start_broker_logging(&[]);
    assert!(
        before
            .join("\n")
            .contains("anonymous clients allowed on 127.0.0.1:"),
        "{before:?}"
    );
    let (code, _client) = try_connect(addr, ProtocolVersion::V3_1_1, "anon", None);
    assert_eq!(code, ReasonCode::SUCCESS);
}

#[test]
fn starts_on_an_ephemeral_port_serves_mqtt_and_exits_0_on_sigterm() {
    const SHARDS: usize = 2;
    let (mut broker, addr, _lines) = start_broker(&[]);

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

    // Transparent huge pages are off for the broker (they inflate its resident memory).
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id())).unwrap();
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }

    broker.sigterm();
    let status = broker.wait(STOP_LIMIT);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    // Stopping closed the client connections.
    assert_eq!(sub.expect_close(), []);
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// `coremq passwd FILE USER`, the password on stdin (not a terminal: its first line is taken).
/// 1,000 PBKDF2 rounds instead of the default 210,000, which cost seconds per hash and per
/// login in this unoptimised build.
#[test]
fn passwd_writes_a_0600_file_whose_user_the_broker_accepts() {
    let dir = TempDir::new("passwd");
    let file = dir.path.join("passwords");
    let mut child = coremq(&[])
        .args(["passwd", "--iterations=1000", path_str(&file), "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coremq passwd starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"open sesame\n")
        .unwrap();
    let out = child.wait_with_output().expect("coremq passwd runs");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("added user \"alice\""),
        "{}",
        stderr_of(&out)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("alice:$7$1000$") && text.ends_with('\n'),
        "{text:?}"
    );
    assert_eq!(text.lines().count(), 1);

    let (mut broker, addr, _lines) = start_broker(&[("COREMQ_PASSWORD_FILE", path_str(&file))]);
    for (shard, version) in [(0, ProtocolVersion::V3_1_1), (1, ProtocolVersion::V5)] {
        let id = id_on(2, shard, "alice");
        let (code, _) = try_connect(addr, version, &id, Some(("alice", "open sesame")));
        assert_eq!(code, ReasonCode::SUCCESS, "{version:?}");
        let (code, _) = try_connect(addr, version, &id, Some(("alice", "open sesame\n")));
        assert_eq!(code, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        let (code, _) = try_connect(addr, version, &id, None);
        assert_eq!(code, ReasonCode::NOT_AUTHORIZED, "{version:?}");
    }
    broker.sigterm();
    assert_eq!(broker.wait(STOP_LIMIT).code(), Some(0));
}

#[test]
fn a_malformed_acl_password_or_bridge_file_stops_start_up_with_status_2_naming_file_and_line() {
    let dir = TempDir::new("bad-files");
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "user alice\ntopic write a/#\nfrobnicate x\n").unwrap();
    let passwords = dir.path.join("passwords");
    std::fs::write(&passwords, "# users\nalice\n").unwrap();
    let bridges = dir.path.join("bridges");
    std::fs::write(
        &bridges,
        "connection a\naddress 127.0.0.1\ntopic a/# sideways\n",
    )
    .unwrap();
    let missing = dir.path.join("missing");
    for (flag, file, line) in [
        ("COREMQ_ACL_FILE", &acl, Some(3)),
        ("COREMQ_BRIDGE_FILE", &bridges, Some(3)),
        ("COREMQ_PASSWORD_FILE", &passwords, Some(2)),
        ("COREMQ_ACL_FILE", &missing, None),
    ] {
        let out = run(&mut coremq(&[
            ("COREMQ_LISTEN", "127.0.0.1:0"),
            ("COREMQ_SHARDS", "2"),
            (flag, path_str(file)),
        ]));
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        let at = match line {
            Some(n) => format!("{}:{n}: ", file.display()),
            None => format!("{}: ", file.display()),
        };
        assert!(err.contains(&at), "{at:?} missing from {err:?}");
    }
    let out = run(&mut coremq(&[
        ("COREMQ_LISTEN", "127.0.0.1:0"),
        ("COREMQ_ACL_FILE", path_str(&acl)),
    ]));
    assert!(
        stderr_of(&out).contains("frobnicate"),
        "{}",
        stderr_of(&out)
    );
}

/// A raw MQTT 5 QoS 1 PUBLISH; the PUBACK's reason code.
fn publish_qos1(client: &mut RawClient, topic: &str, id: u16) -> ReasonCode {
    let mut publish = Publish::new(
        TopicName::copy_from(topic).unwrap(),
        Bytes::from_static(b"x"),
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = PacketId::new(id);
    client.send(&Packet::Publish(publish));
    match client.expect_packet() {
        Packet::PubAck(a) => a.reason_code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn subscribe(client: &mut RawClient, filter: &str, id: u16) -> ReasonCode {
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(id).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::copy_from(filter).unwrap(),
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
    }));
    match client.expect_packet() {
        Packet::SubAck(a) => a.reason_codes[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// SIGHUP re-reads the ACL; connected clients meet the new rules; a bad file is logged with
/// its name and line and the rules stay as they were.
#[test]
fn sighup_reloads_the_acl_file() {
    let dir = TempDir::new("sighup");
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let (mut broker, addr, lines) = start_broker(&[("COREMQ_ACL_FILE", path_str(&acl))]);
    let (code, mut publ) = try_connect(addr, ProtocolVersion::V5, &id_on(2, 1, "pub"), None);
    assert_eq!(code, ReasonCode::SUCCESS);
    let mut sub = connect(addr, &id_on(2, 0, "sub"));
    assert_eq!(
        subscribe(&mut sub, "locked/#", 1),
        ReasonCode::UNSPECIFIED_ERROR
    );
    assert_eq!(
        publish_qos1(&mut publ, "locked/x", 1),
        ReasonCode::NOT_AUTHORIZED
    );

    std::fs::write(&acl, "topic readwrite open/#\ntopic readwrite locked/#\n").unwrap();
    broker.signal(libc::SIGHUP);
    // Logged once every shard runs the new rules.
    next_line_with(&lines, "reloaded");
    assert_eq!(
        subscribe(&mut sub, "locked/#", 2),
        ReasonCode::GRANTED_QOS_0
    );
    assert_eq!(publish_qos1(&mut publ, "locked/x", 2), ReasonCode::SUCCESS);
    match sub.expect_packet() {
        Packet::Publish(p) => assert_eq!(p.topic.as_str(), "locked/x"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    std::fs::write(&acl, "topic readwrite open/#\nuser\n").unwrap();
    broker.signal(libc::SIGHUP);
    let line = next_line_with(&lines, "SIGHUP");
    assert!(line.contains(&format!("{}:2: ", acl.display())), "{line}");
    assert!(line.contains("keeping the previous rules"), "{line}");
    assert_eq!(publish_qos1(&mut publ, "locked/y", 3), ReasonCode::SUCCESS);

    broker.sigterm();
    assert_eq!(broker.wait(STOP_LIMIT).code(), Some(0));
}

#[test]
fn sighup_reloads_the_bridge_file() {
    let dir = TempDir::new("sighup-bridges");
    let file = dir.path.join("bridges.conf");
    // Remotes that are not there: the bridges start and keep retrying, which is all this needs.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let block = |name: &str| format!("connection {name}\naddress {closed}\ntopic a/# out 1\n");
    std::fs::write(&file, block("first")).unwrap();
    let (mut broker, _addr, lines) = start_broker(&[("COREMQ_BRIDGE_FILE", path_str(&file))]);
    // (Its "bridge first: started" may come before the address line start_broker waits for.)
    std::fs::write(&file, format!("{}{}", block("first"), block("second"))).unwrap();
    broker.signal(libc::SIGHUP);
    // Logged by the signal handler and by the shard that starts the bridge, in either order.
    let mut waiting = vec!["bridge file reloaded (2 bridges)", "bridge second: started"];
    while !waiting.is_empty() {
        let line = next_line_with(&lines, "");
        waiting.retain(|w| !line.contains(w));
    }
    std::fs::write(&file, "connection first\naddres 127.0.0.1\n").unwrap();
    broker.signal(libc::SIGHUP);
    let line = next_line_with(&lines, "keeping the running bridges");
    assert!(line.contains(&format!("{}:2: ", file.display())), "{line}");
    broker.sigterm();
    assert_eq!(broker.wait(STOP_LIMIT).code(), Some(0));
}

/// The store's start-up report (issue 14): what it recovered, how long it took, and whether the
/// last stop was clean — SIGTERM flushes and closes every log, SIGKILL does not; a second broker
/// on the same data directory is refused while the first runs.
#[test]
fn the_store_reports_what_it_recovered_and_whether_the_last_stop_was_clean() {
    let dir = TempDir::new("cli-store");
    let data = dir.path.join("data");
    let data = data.to_str().unwrap();
    let flags = [("COREMQ_DATA_DIR", data)];
    {
        let (mut broker, addr, _lines, before) = start_broker_logging(&flags);
        let report = before.join("\n");
        assert!(report.contains("(a new data directory)"), "{report}");
        // A persistent session (Clean Session 0) with one subscription.
        let mut client = RawClient::connect(addr, ProtocolVersion::V3_1_1);
        client.send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: false,
            keep_alive: 60,
            client_id: ClientId::copy_from("kept").unwrap(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })));
        assert!(matches!(client.expect_packet(), Packet::ConnAck(_)));
        assert_eq!(
            subscribe(&mut client, "kept/#", 1),
            ReasonCode::granted(QoS::AtMostOnce)
        );
        // Another broker on the same directory stops at once, saying why.
        let out = run(&mut coremq(&[
            ("COREMQ_LISTEN", "127.0.0.1:0"),
            ("COREMQ_DATA_DIR", data),
        ]));
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("another coremq uses it"),
            "{}",
            stderr_of(&out)
        );
        broker.sigterm();
        assert_eq!(broker.wait(STOP_LIMIT).code(), Some(0));
    }
    let (mut broker, _addr, _lines, before) = start_broker_logging(&flags);
    let report = before.join("\n");
    assert!(report.contains("recovered 1 sessions"), "{report}");
    assert!(report.contains("(after a clean shutdown)"), "{report}");
    // SIGKILL: the next start says the last stop was not clean, and still recovers.
    broker.signal(libc::SIGKILL);
    broker.wait(STOP_LIMIT);
    let (_broker, _addr, _lines, before) = start_broker_logging(&flags);
    let report = before.join("\n");
    assert!(report.contains("recovered 1 sessions"), "{report}");
    assert!(report.contains("after a crash"), "{report}");
}

/// SIGHUP re-reads the TLS certificate and key: new connections get the new certificate, a
/// file that does not load is logged and the certificate in use stays; the TLS listener's
/// address is logged at start-up.
#[test]
fn sighup_rotates_the_tls_certificate() {
    use common::pki::{client_config, tls_mqtt_connect, Pki};
    let pki = Pki::new("cli-tls");
    let old_ca = pki.ca("old-ca");
    let old = pki.server(&old_ca, "server");
    let (mut broker, _addr, lines) = start_broker(&[
        ("COREMQ_TLS_LISTEN", "127.0.0.1:0"),
        ("COREMQ_TLS_CERT", path_str(&old.cert)),
        ("COREMQ_TLS_KEY", path_str(&old.key)),
    ]);
    let line = next_line_with(&lines, "MQTT over TLS on ");
    let tls: SocketAddr = line
        .split("MQTT over TLS on ")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("the TLS listener's address");
    assert_eq!(
        tls_mqtt_connect(tls, client_config(&old_ca, None), "localhost", "a"),
        Ok(0)
    );

    let new_ca = pki.ca("new-ca");
    let new = pki.server(&new_ca, "new-server");
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    broker.signal(libc::SIGHUP);
    next_line_with(&lines, "TLS certificate and key reloaded");
    assert_eq!(
        tls_mqtt_connect(tls, client_config(&new_ca, None), "localhost", "b"),
        Ok(0)
    );
    assert!(tls_mqtt_connect(tls, client_config(&old_ca, None), "localhost", "c").is_err());

    std::fs::write(&old.key, "not a key\n").unwrap();
    broker.signal(libc::SIGHUP);
    let line = next_line_with(&lines, "TLS");
    assert!(line.contains("COREMQ_TLS_KEY"), "{line}");
    assert!(
        line.contains("keeping the previous TLS certificate"),
        "{line}"
    );
    assert_eq!(
        tls_mqtt_connect(tls, client_config(&new_ca, None), "localhost", "d"),
        Ok(0)
    );

    broker.sigterm();
    assert_eq!(broker.wait(STOP_LIMIT).code(), Some(0));
}
