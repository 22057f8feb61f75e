//! Integration tests: the broker in-process (2+ shards, ephemeral port) driven by third-party
//! clients — rumqttc for MQTT 3.1.1 and 5, and Python's paho-mqtt for interop. Every test puts
//! publisher and subscriber on different shards on purpose (`TestBroker::id_on`), so each
//! delivery crosses the mesh.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod auth_hook;
mod bridge;
mod cluster;
mod filter;
mod filter_clients;
mod metrics;
mod paho;
mod rumqttc_v311;
mod rumqttc_v5;
mod shared;
mod tls;
mod tools;
mod websocket;

use std::fmt::Display;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use coremq::protocol::{ClientId, Connect, ConnectProperties, Packet, ProtocolVersion, ReasonCode};

use common::{RawClient, TestBroker, PATIENCE};

/// Runs `program script args…` and returns its standard output; panics with its stderr if it
/// fails or overruns `limit` (then it is killed — only this child, by its pid).
pub fn run_script(
    program: &str,
    script: &str,
    args: &[String],
    limit: std::time::Duration,
) -> String {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within {limit:?}");
        }
        thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{script} failed ({status}):\n{err}");
    out
}

/// A raw client that connected to `broker` as `id` (clean session, keep alive 60 s) and got a
/// successful CONNACK; `tweak` adjusts the CONNECT first (e.g. to add a will).
pub fn raw_connect_with(
    broker: &TestBroker,
    version: ProtocolVersion,
    id: &str,
    tweak: impl FnOnce(&mut Connect),
) -> RawClient {
    let mut connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: ClientId::copy_from(id).expect("a valid client id"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    tweak(&mut connect);
    let mut client = RawClient::connect(broker.addr, version);
    client.send(&Packet::Connect(Box::new(connect)));
    match client.expect_packet() {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK {ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

/// `raw_connect_with` without tweaks.
pub fn raw_connect(broker: &TestBroker, version: ProtocolVersion, id: &str) -> RawClient {
    raw_connect_with(broker, version, id, |_| {})
}

/// What a client's event loop, running on its own thread, reports: each incoming packet, then
/// the error that ended the connection — in order, so a test can publish freely (the loop keeps
/// acknowledging) and read when it wants.
pub struct Inbox<P, E> {
    rx: mpsc::Receiver<Result<P, E>>,
}

impl<P: Send + 'static, E: Display + Send + 'static> Inbox<P, E> {
    /// Runs `poll` on a new thread until it returns `None` or an error, forwarding `Some`
    /// packets (events that carry none, such as outgoing packets, come back as `Ok(None)`).
    pub fn spawn(mut poll: impl FnMut() -> Option<Result<Option<P>, E>> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            while let Some(event) = poll() {
                let item = match event {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                };
                let end = item.is_err();
                if tx.send(item).is_err() || end {
                    break;
                }
            }
        });
        Self { rx }
    }

    /// The next packet `want` accepts, skipping the others. Panics if the connection ends or
    /// nothing wanted arrives within `PATIENCE`.
    pub fn expect<T>(&self, mut want: impl FnMut(&P) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(p)) => {
                    if let Some(t) = want(&p) {
                        return t;
                    }
                }
                Ok(Err(e)) => panic!("connection ended: {e}"),
                Err(_) => panic!("the expected packet did not arrive within {PATIENCE:?}"),
            }
        }
    }

    /// The error that ends the connection, skipping packets. Panics if it stays open for
    /// `PATIENCE`.
    pub fn expect_end(&self) -> E {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return e,
                Err(_) => panic!("the connection stayed open for {PATIENCE:?}"),
            }
        }
    }
}
